//! The `stampd` command line.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use stampd::client::{http, verify};
use stampd::config::{build, Config};
use stampd::error::Error;
use stampd::pki::{DevPki, KeyType};
use stampd::protocol::{request, response, HashAlg, PkiStatus};

/// `println!` that does not panic when stdout is closed (e.g. piped into `head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "stampd", version, about = "RFC 3161 Time-Stamp Authority")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (no arguments: embedded default with a development PKI).
    Serve {
        /// TOML configuration (see config/stampd.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides server.data_dir). Default ./stampd-data.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address for every service (overrides their `listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create the development PKI (CA + TSA certificate) in the data directory.
    Init {
        #[arg(long, default_value = "./stampd-data")]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "p256")]
        key_type: KeyType,
    },
    /// Request a timestamp token for a file.
    Request {
        /// The file to timestamp (`-` for standard input).
        file: PathBuf,
        /// Timestamp service URL.
        #[arg(long, default_value = "http://127.0.0.1:3180/tsa")]
        url: String,
        /// Message imprint hash: sha256, sha384, sha512, sha3-256, sha3-384, sha3-512, sha1.
        #[arg(long, default_value = "sha256")]
        hash: String,
        /// Ask for the TSA certificate in the token (certReq).
        #[arg(long)]
        cert: bool,
        /// Send no nonce.
        #[arg(long)]
        no_nonce: bool,
        /// Requested policy OID.
        #[arg(long)]
        policy: Option<String>,
        /// Where to write the reply (DER TimeStampResp).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Verify a reply (TimeStampResp, .tsr) against data and a trusted CA.
    Verify {
        /// The reply file.
        reply: PathBuf,
        /// The data that was timestamped.
        #[arg(long, conflicts_with = "digest", required_unless_present = "digest")]
        data: Option<PathBuf>,
        /// The digest that was timestamped, in hex.
        #[arg(long)]
        digest: Option<String>,
        /// Hash algorithm of --data / --digest (default: the one the token names).
        #[arg(long)]
        hash: Option<String>,
        /// Trusted CA certificate(s), PEM.
        #[arg(long)]
        ca: PathBuf,
        /// Further certificates that may complete the chain (e.g. the TSA certificate when
        /// the token carries none), PEM.
        #[arg(long)]
        untrusted: Option<PathBuf>,
        /// The file is a bare token (ContentInfo), not a TimeStampResp.
        #[arg(long)]
        token: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: verify, export and query the journal; PostgreSQL schema.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Keys in an HSM (PKCS#11): list, generate, request and store a certificate, self-test.
    #[command(subcommand)]
    Hsm(HsmCommand),
}

/// Which token, and the user PIN (from the environment or a file, never the command line).
#[derive(clap::Args)]
struct TokenArgs {
    /// The PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long)]
    module: PathBuf,
    /// The label of the token.
    #[arg(long)]
    token_label: String,
    /// Environment variable holding the user PIN.
    #[arg(long)]
    pin_env: Option<String>,
    /// File holding the user PIN.
    #[arg(long, conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
}

impl TokenArgs {
    fn pin(&self) -> Result<Option<String>, String> {
        stampd::config::secret::read("the PIN", self.pin_env.as_deref(), self.pin_file.as_deref())
    }

    /// The token, logged in with the PIN (which these commands need).
    fn open(&self) -> Result<stampd::signer::pkcs11::token::Token, String> {
        let pin = self
            .pin()?
            .ok_or("give the user PIN with --pin-env VAR or --pin-file FILE")?;
        stampd::signer::pkcs11::token::Token::open(&self.module, &self.token_label, Some(pin))
    }
}

#[derive(Subcommand)]
enum HsmCommand {
    /// Slots, tokens and their objects (private keys are listed only with a PIN).
    List {
        /// The PKCS#11 module (shared library).
        #[arg(long)]
        module: PathBuf,
        /// Only this token.
        #[arg(long)]
        token_label: Option<String>,
        #[arg(long)]
        pin_env: Option<String>,
        #[arg(long, conflicts_with = "pin_env")]
        pin_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Generate a key pair on the token (private, sensitive, not extractable).
    Keygen {
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long)]
        key_label: String,
        #[arg(long, value_enum)]
        key_type: KeyType,
    },
    /// Write a PKCS#10 certification request for the key, signed on the token.
    Csr {
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long)]
        key_label: String,
        /// Subject, e.g. "/CN=Example TSA/O=Example/C=DE".
        #[arg(long)]
        subject: String,
        /// Where to write the request (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Store the CA-issued certificate chain (PEM, TSA certificate first) with the key.
    ImportCert {
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long)]
        key_label: String,
        #[arg(long)]
        cert: PathBuf,
    },
    /// Issue a test token through the signer and verify it: a configured signer
    /// (--config, --signer), or a key given by the token flags and --key-label.
    Selftest {
        /// Configuration file holding the signer.
        #[arg(long, conflicts_with_all = ["module", "key_label"])]
        config: Option<PathBuf>,
        /// The `[signer.NAME]` to test.
        #[arg(long, default_value = "main", requires = "config")]
        signer: String,
        /// The PKCS#11 module (with --token-label, --pin-env or --pin-file, --key-label).
        #[arg(long, requires_all = ["token_label", "key_label"])]
        module: Option<PathBuf>,
        #[arg(long, requires = "module")]
        token_label: Option<String>,
        #[arg(long, requires = "module")]
        pin_env: Option<String>,
        #[arg(long, requires = "module", conflicts_with = "pin_env")]
        pin_file: Option<PathBuf>,
        #[arg(long, requires = "module")]
        key_label: Option<String>,
        /// Certificate chain file; default: the chain stored on the token.
        #[arg(long, requires = "module")]
        cert: Option<PathBuf>,
        /// Trusted CA certificate(s), PEM; default: the last certificate of the chain.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The token's raw signing rate with each number of sessions (one thread each).
    Bench {
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long)]
        key_label: String,
        /// Session counts to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        sessions: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// RSA keys: pkcs1 or pss.
        #[arg(long, value_enum, default_value = "pkcs1")]
        rsa_padding: stampd::signer::software::RsaPadding,
        #[arg(long)]
        json: bool,
    },
}

/// Where the journal is.
#[derive(clap::Args)]
struct JournalArgs {
    /// Data directory; the journal is its `journal/` directory. Default ./stampd-data.
    #[arg(long, default_value = "./stampd-data")]
    data_dir: PathBuf,
    /// The journal directory, when not DATA_DIR/journal.
    #[arg(long)]
    journal: Option<PathBuf>,
}

impl JournalArgs {
    fn dir(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(|| self.data_dir.join("journal"))
    }
}

/// A PostgreSQL database.
#[derive(clap::Args)]
struct PostgresArgs {
    /// Connection string, e.g. "host=/run/postgresql dbname=stampd" (no password in it).
    #[arg(long = "postgres", value_name = "DSN")]
    dsn: String,
    /// Environment variable holding the password.
    #[arg(long)]
    password_env: Option<String>,
    /// File holding the password.
    #[arg(long, conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
}

impl PostgresArgs {
    fn target(&self) -> Result<stampd::audit::postgres::Target, String> {
        stampd::audit::postgres::Target::new(
            &self.dsn,
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }
}

/// Record filters; every one given must match.
#[derive(clap::Args)]
struct Filters {
    /// Records at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Records at or before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every CRC and the hash chain; exit 0 only when the journal is intact.
    Verify {
        #[command(flatten)]
        journal: JournalArgs,
        #[arg(long)]
        json: bool,
    },
    /// Print records as JSON lines (serial, status, gen_time, service, policy, ...).
    Export {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        filters: Filters,
    },
    /// Find records by serial, time, message imprint, service or status, in the journal or
    /// in PostgreSQL (--postgres).
    Query {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        filters: Filters,
        /// Serial number in hex.
        #[arg(long)]
        serial: Option<String>,
        /// Message imprint (the hashed data's digest) in hex.
        #[arg(long)]
        imprint: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// granted or rejection.
        #[arg(long)]
        status: Option<String>,
        /// Query this PostgreSQL database instead of the journal.
        #[arg(long = "postgres", value_name = "DSN")]
        dsn: Option<String>,
        #[arg(long, requires = "dsn")]
        password_env: Option<String>,
        #[arg(long, requires = "dsn", conflicts_with = "password_env")]
        password_file: Option<PathBuf>,
        /// Only this TSA identity's records (PostgreSQL).
        #[arg(long, requires = "dsn")]
        identity: Option<String>,
    },
    /// Ship a journal no server is writing to PostgreSQL until caught up (e.g. the journal
    /// of a node that is gone). A running server ships its own journal.
    Ship {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        /// The TSA identity the records belong to (`[audit] identity`).
        #[arg(long, default_value = "stampd")]
        identity: String,
    },
    /// Create or update stampd's schema in PostgreSQL.
    Migrate {
        #[command(flatten)]
        postgres: PostgresArgs,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STAMPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => serve(config, data_dir, listen),
        Command::Init { data_dir, key_type } => init(&data_dir, key_type),
        Command::Request {
            file,
            url,
            hash,
            cert,
            no_nonce,
            policy,
            out,
            json,
        } => request_cmd(
            &file,
            &url,
            &hash,
            cert,
            no_nonce,
            policy.as_deref(),
            &out,
            json,
        ),
        Command::Verify {
            reply,
            data,
            digest,
            hash,
            ca,
            untrusted,
            token,
            json,
        } => verify_cmd(
            &reply,
            data.as_deref(),
            digest.as_deref(),
            hash.as_deref(),
            &ca,
            untrusted.as_deref(),
            token,
            json,
        ),
        Command::CheckConfig { file, json } => check_config(&file, json),
        Command::Audit(cmd) => audit(cmd),
        Command::Hsm(cmd) => hsm(cmd),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("stampd: {msg}");
            ExitCode::from(2)
        }
    }
}

type CmdResult = Result<ExitCode, String>;

fn load_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::from_toml(&text, &path.display().to_string()).map_err(|e| e.to_string())
}

/// Validation messages as `FILE:LINE: message`, one per line, the line found from the key
/// path each message names.
fn located(path: &Path, msg: &str) -> Vec<String> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    msg.lines()
        .map(|m| {
            let body = m.strip_prefix(&format!("{file}: ")).unwrap_or(m);
            match stampd::config::locate::line_of(&text, &file, m) {
                Some(line) => format!("{file}:{line}: {body}"),
                None => format!("{file}: {body}"),
            }
        })
        .collect()
}

fn serve(config: Option<PathBuf>, data_dir: Option<PathBuf>, listen: Option<String>) -> CmdResult {
    let mut cfg = match &config {
        Some(p) => load_config(p)?,
        None => Config::default(),
    };
    if let Some(d) = data_dir {
        cfg.server.data_dir = d;
    }
    if let Some(l) = listen {
        for s in &mut cfg.service {
            s.listen = stampd::config::OneOrMany::One(l.clone());
        }
    }
    let origin = config
        .as_ref()
        .map_or("the embedded default".to_string(), |p| {
            p.display().to_string()
        });
    cfg.validate_as(&origin).map_err(|e| match (&config, e) {
        (Some(p), Error::Config(msg)) => {
            format!(
                "invalid configuration:\n  {}",
                located(p, &msg).join("\n  ")
            )
        }
        (_, e) => format!("invalid configuration:\n{e}"),
    })?;
    let built = build::build(&cfg).map_err(|e| e.to_string())?;
    stop_on_signal(built.audit.clone())?;
    let settings = stampd::frontend::Settings {
        cores: cfg.server.cores,
        dispatch: cfg.dispatch(),
        workers: cfg.workers(),
        queue_capacity: cfg.server.queue_capacity,
        io_driver: cfg.server.io_driver,
        http: cfg.server.http.clone(),
    };
    let listeners = built.listeners.clone();
    let running = stampd::frontend::start(built.issuer.clone(), built.listeners, settings)
        .map_err(|e| e.to_string())?;
    let pki = DevPki::in_dir(&built.data_dir);
    for (l, addr) in listeners.iter().zip(&running.addrs) {
        for (path, _) in &l.routes {
            say!(
                "stampd: serving http://{addr}{path} ({} driver)",
                running.driver
            );
        }
    }
    if let (Some(addr), Some((path, _))) = (running.addrs.first(), listeners[0].routes.first()) {
        if pki.ca_cert.exists() {
            say!(
                "\nTry it:\n  echo hello > data.txt\n  openssl ts -query -data data.txt -sha256 -cert -out req.tsq\n  \
                 curl -s -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq http://{addr}{path} -o resp.tsr\n  \
                 openssl ts -verify -in resp.tsr -queryfile req.tsq -CAfile {}\n",
                pki.ca_cert.display()
            );
        }
    }
    running.wait();
    Ok(ExitCode::SUCCESS)
}

fn hsm(cmd: HsmCommand) -> CmdResult {
    use stampd::signer::pkcs11::cli;
    let mut out = std::io::stdout().lock();
    let now = || {
        stampd::clock::TimeSource::now(&stampd::clock::SystemClock)
            .map_err(|_| "the system clock is unusable".to_string())
    };
    let code = match cmd {
        HsmCommand::List {
            module,
            token_label,
            pin_env,
            pin_file,
            json,
        } => {
            let pin =
                stampd::config::secret::read("the PIN", pin_env.as_deref(), pin_file.as_deref())?;
            cli::list(&module, token_label.as_deref(), pin, json, &mut out)?
        }
        HsmCommand::Keygen {
            token,
            key_label,
            key_type,
        } => cli::keygen(&token.open()?, &key_label, key_type, &mut out)?,
        HsmCommand::Csr {
            token,
            key_label,
            subject,
            out: file,
        } => cli::csr(&token.open()?, &key_label, &subject, &file, &mut out)?,
        HsmCommand::ImportCert {
            token,
            key_label,
            cert,
        } => cli::import_cert(&token.open()?, &key_label, &cert, now()?, &mut out)?,
        HsmCommand::Selftest {
            config,
            signer,
            module,
            token_label,
            pin_env,
            pin_file,
            key_label,
            cert,
            ca,
            json,
        } => {
            let (name, sc, data_dir) = match (config, module, key_label) {
                (Some(path), _, _) => {
                    let cfg = load_config(&path)?;
                    let sc = cfg
                        .signer
                        .get(&signer)
                        .ok_or_else(|| format!("{}: no [signer.{signer}]", path.display()))?
                        .clone();
                    (signer, sc, cfg.server.data_dir)
                }
                (None, Some(module), Some(key_label)) => {
                    let sc = stampd::config::SignerConfig {
                        kind: stampd::config::SignerKind::Pkcs11,
                        module: Some(module),
                        token_label,
                        pin_env,
                        pin_file,
                        key_label: Some(key_label),
                        cert,
                        sessions: 1,
                        ..Default::default()
                    };
                    ("selftest".to_string(), sc, PathBuf::from("."))
                }
                _ => return Err("give --config FILE, or the token flags and --key-label".into()),
            };
            if sc.kind != stampd::config::SignerKind::Pkcs11 {
                return Err(format!("signer `{name}` is not a PKCS#11 signer"));
            }
            let signer = build::signer(&name, &sc, &data_dir, now()?).map_err(|e| e.to_string())?;
            let trusted = match ca {
                Some(ca) => read_pem_certs(&ca)?,
                None if signer.chain().len() > 1 => {
                    signer.chain().last().cloned().into_iter().collect()
                }
                None => {
                    return Err(
                        "the chain holds only the TSA certificate: give the CA with --ca".into(),
                    )
                }
            };
            cli::selftest(&name, signer, &trusted, json, &mut out)?
        }
        HsmCommand::Bench {
            token,
            key_label,
            sessions,
            seconds,
            rsa_padding,
            json,
        } => {
            if sessions.contains(&0) || !(0.1..=3600.0).contains(&seconds) {
                return Err("--sessions must be positive and --seconds 0.1 to 3600".into());
            }
            cli::bench(
                &token.open()?,
                &key_label,
                rsa_padding,
                &sessions,
                Duration::from_secs_f64(seconds),
                json,
                &mut out,
            )?
        }
    };
    Ok(ExitCode::from(code))
}

fn audit(cmd: AuditCommand) -> CmdResult {
    use stampd::audit::cli;
    let mut out = std::io::stdout().lock();
    let code = match cmd {
        AuditCommand::Verify { journal, json } => cli::verify(&journal.dir(), json, &mut out)?,
        AuditCommand::Export { journal, filters } => {
            let q = cli::query_of(
                None,
                filters.from.as_deref(),
                filters.to.as_deref(),
                None,
                None,
                None,
            )?;
            cli::export(&journal.dir(), &q, &mut out)?
        }
        AuditCommand::Query {
            journal,
            filters,
            serial,
            imprint,
            service,
            status,
            dsn,
            password_env,
            password_file,
            identity,
        } => {
            let mut q = cli::query_of(
                serial.as_deref(),
                filters.from.as_deref(),
                filters.to.as_deref(),
                imprint.as_deref(),
                service,
                status,
            )?;
            match dsn {
                None => cli::export(&journal.dir(), &q, &mut out)?,
                Some(dsn) => {
                    q.identity = identity;
                    let pg = PostgresArgs {
                        dsn,
                        password_env,
                        password_file,
                    };
                    cli::query_postgres(&pg.target()?, &q, &mut out)?
                }
            }
        }
        AuditCommand::Ship {
            journal,
            postgres,
            identity,
        } => cli::ship(&journal.dir(), postgres.target()?, &identity, &mut out)?,
        AuditCommand::Migrate { postgres } => cli::migrate(&postgres.target()?, &mut out)?,
    };
    Ok(ExitCode::from(code))
}

/// SIGTERM / SIGINT: commit what the audit writer holds, then exit.
fn stop_on_signal(audit: std::sync::Arc<dyn stampd::audit::AuditSink>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("stampd-signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            let Some(sig) = signals.next() else { return };
            tracing::info!(signal = sig, "stopping: committing queued audit records");
            let stopping = std::thread::spawn(move || {
                let flushed = audit.flush_and_stop();
                // No thread may be inside an HSM module while the process tears it down.
                if !stampd::signer::pkcs11::token::close_modules(Duration::from_secs(5)) {
                    tracing::error!(
                        "a call into a PKCS#11 module did not return within 5 s; exiting anyway"
                    );
                }
                if flushed {
                    tracing::info!("stopped");
                    std::process::exit(0);
                }
                tracing::error!("stopped, but queued audit records could not all be committed");
                std::process::exit(1);
            });
            if signals.next().is_some() {
                tracing::error!("second signal: exiting now, without waiting for the shutdown");
                std::process::exit(1);
            }
            let _ = stopping.join();
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

fn init(data_dir: &Path, key_type: KeyType) -> CmdResult {
    let pki = DevPki::in_dir(data_dir);
    pki.create(key_type).map_err(|e| e.to_string())?;
    say!(
        "created {} (CA) and {} / {} (TSA, {key_type:?})",
        pki.ca_cert.display(),
        pki.tsa_cert.display(),
        pki.tsa_key.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn parse_hash(name: &str) -> Result<HashAlg, String> {
    HashAlg::from_name(name).ok_or_else(|| {
        let names: Vec<_> = HashAlg::ALL.iter().map(|h| h.name()).collect();
        format!("unknown hash `{name}`; use one of {}", names.join(", "))
    })
}

fn hash_file(path: &Path, alg: HashAlg) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
    };
    let mut ctx = alg.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().to_vec())
}

#[allow(clippy::too_many_arguments)]
fn request_cmd(
    file: &Path,
    url: &str,
    hash: &str,
    cert: bool,
    no_nonce: bool,
    policy: Option<&str>,
    out: &Path,
    json: bool,
) -> CmdResult {
    let alg = parse_hash(hash)?;
    let digest = hash_file(file, alg)?;
    let policy = policy
        .map(|p| stampd::config::parse_oid(p).ok_or_else(|| format!("`{p}` is not a dotted OID")))
        .transpose()?;
    let nonce = if no_nonce {
        None
    } else {
        let mut n = [0u8; 8];
        aws_lc_rs::rand::fill(&mut n).map_err(|_| "no randomness for the nonce")?;
        Some(n.to_vec())
    };
    let body = request::encode(alg, &digest, policy.as_ref(), nonce.as_deref(), cert);
    let reply = http::post_query(url, &body, Duration::from_secs(30))?;
    if reply.status != 200 {
        return Err(format!(
            "HTTP {} from {url}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        ));
    }
    if reply.content_type != "application/timestamp-reply" {
        return Err(format!(
            "unexpected Content-Type `{}` from {url}",
            reply.content_type
        ));
    }
    std::fs::write(out, &reply.body).map_err(|e| format!("{}: {e}", out.display()))?;
    let resp = response::decode(&reply.body).map_err(|e| format!("malformed reply: {e}"))?;
    let fails: Vec<&str> = resp.fail_info.iter().map(|f| f.name()).collect();
    let mut summary = serde_json::json!({
        "status": resp.status.name(),
        "fail_info": fails,
        "status_text": resp.status_text,
        "out": out.display().to_string(),
    });
    if let Some(t) = &resp.token {
        let tst = &t.tst_info;
        if tst.digest != digest.as_slice() {
            return Err("the token's message imprint does not match the request".into());
        }
        if let Some(n) = &nonce {
            let want = stampd::protocol::der::unsigned_integer_content(n);
            if tst.nonce != Some(want.as_slice()) {
                return Err("the token's nonce does not match the request".into());
            }
        }
        summary["serial"] = verify::hex(tst.serial.strip_prefix(&[0]).unwrap_or(tst.serial)).into();
        summary["gen_time"] = tst.gen_time_text.into();
    }
    if json {
        say!("{summary}");
    } else if resp.status == PkiStatus::Granted {
        say!(
            "granted: serial {} at {} → {}",
            summary["serial"].as_str().unwrap_or(""),
            summary["gen_time"].as_str().unwrap_or(""),
            out.display()
        );
    } else {
        say!(
            "{}: {} {}",
            resp.status.name(),
            fails.join(","),
            resp.status_text.join(" / ")
        );
    }
    Ok(if resp.status == PkiStatus::Granted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_pem_certs(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = stampd::signer::software::pem_blocks(&text, "CERTIFICATE")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE PEM block", path.display()));
    }
    Ok(certs)
}

#[allow(clippy::too_many_arguments)]
fn verify_cmd(
    reply: &Path,
    data: Option<&Path>,
    digest: Option<&str>,
    hash: Option<&str>,
    ca: &Path,
    untrusted: Option<&Path>,
    bare: bool,
    json: bool,
) -> CmdResult {
    let input = std::fs::read(reply).map_err(|e| format!("{}: {e}", reply.display()))?;
    // The hash defaults to the one the token names.
    let token_hash = (|| {
        let t = if bare {
            response::decode_token(&input).ok()?
        } else {
            response::decode(&input).ok()?.token?
        };
        HashAlg::from_oid_bytes(t.tst_info.hash_oid)
    })();
    let alg = match hash {
        Some(h) => parse_hash(h)?,
        None => token_hash.unwrap_or(HashAlg::Sha256),
    };
    let digest = match (data, digest) {
        (Some(d), _) => hash_file(d, alg)?,
        (None, Some(hex)) => decode_hex(hex)?,
        (None, None) => return Err("give --data FILE or --digest HEX".into()),
    };
    let trusted = read_pem_certs(ca)?;
    let extra = untrusted
        .map(read_pem_certs)
        .transpose()?
        .unwrap_or_default();
    let expect = verify::Expectation {
        hash: alg,
        digest,
        nonce: None,
    };
    match verify::verify(&input, bare, &expect, &trusted, &extra) {
        Ok(v) => {
            if json {
                say!("{}", serde_json::to_string(&v).unwrap_or_default());
            } else {
                say!("Verification: OK");
                say!("  serial      {}", v.serial);
                say!("  genTime     {}", v.gen_time);
                say!("  policy      {}", v.policy);
                say!("  imprint     {} {}", v.hash_algorithm, v.digest);
                if let Some(n) = &v.nonce {
                    say!("  nonce       {n}");
                }
                if let Some(a) = v.accuracy_us {
                    say!("  accuracy    {a} µs");
                }
                say!(
                    "  signature   {} (chain of {})",
                    v.signature_algorithm,
                    v.chain_length
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                say!("{}", serde_json::json!({ "status": "invalid", "error": e }));
            } else {
                say!("Verification: FAILED: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    stampd::client::verify::unhex(s.trim())
        .ok_or_else(|| "--digest must be an even number of hex digits".into())
}

fn check_config(path: &Path, json: bool) -> CmdResult {
    let mut cfg = load_config(path)?;
    match cfg.validate_as(&path.display().to_string()) {
        Ok(()) => {
            // Effective: the defaults that depend on other settings, resolved.
            cfg.server.dispatch = Some(cfg.dispatch());
            if json {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?
                );
            } else {
                say!("{}: valid. Effective configuration:\n", path.display());
                say!(
                    "{}",
                    toml::to_string_pretty(&cfg).map_err(|e| e.to_string())?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Config(msg)) => {
            let errors = located(path, &msg);
            if json {
                say!(
                    "{}",
                    serde_json::json!({ "valid": false, "errors": errors })
                );
            } else {
                eprintln!("{}: invalid:", path.display());
                for e in errors {
                    eprintln!("  {e}");
                }
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.to_string()),
    }
}
