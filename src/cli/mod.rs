//! The `stampd` command line: one file per command group. The only floor that sees every
//! component (with `config`, the assembler), and the only place that exits the process.

mod admin;
mod audit;
mod check_config;
mod client;
mod clock;
mod cluster;
mod hsm;
mod init;
mod notify;
mod reload;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::pki::KeyType;

/// `println!` that does not panic when stdout is closed (e.g. piped into `head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
use say;

#[derive(Parser)]
#[command(name = "stampd", version, about = "RFC 3161 Time-Stamp Authority")]
struct Cli {
    /// Log lines on standard error: `text`, or `json` (one object per line: `timestamp`,
    /// `level`, `target`, `fields` with `message`).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// The admin listener's address, or `off` (overrides `[admin] listen`).
        #[arg(long, value_name = "ADDR|off")]
        admin_listen: Option<String>,
    },
    /// Ask the server running on a data directory to reload its configuration (as SIGHUP
    /// does), and print the result: exit 0 when it reloaded, 1 when it refused.
    Reload {
        /// The running server's data directory. Default ./stampd-data.
        #[arg(long, default_value = "./stampd-data")]
        data_dir: PathBuf,
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
    Audit(audit::AuditCommand),
    /// The admin interface's administrators: hash a password.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The clock's sync monitor.
    #[command(subcommand)]
    Clock(ClockCommand),
    /// Several nodes sharing one PostgreSQL: their node-id claims and shipping.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Keys in an HSM (PKCS#11): list, generate, request and store a certificate, self-test.
    #[command(subcommand)]
    Hsm(hsm::HsmCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The nodes that claimed ids in the database: holder, lease (live, expired or
    /// released), last heartbeat, serial epoch, and per audit shard the journal head, the
    /// last frame shipped and the lag.
    Status {
        #[command(flatten)]
        postgres: audit::PostgresArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClockCommand {
    /// Query the configured time sources once and print what the monitor would decide
    /// (per server: offset, delay, stratum, leap; the verdict). Exit 0 in sync, 1 out.
    Status {
        /// TOML configuration (its `[clock]`); default: the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line: parses the arguments, runs the command, and gives its exit code
/// (2 with a message on stderr when the command failed).
#[allow(
    clippy::print_stderr,
    reason = "a failed command's message is for the person at the terminal"
)]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STAMPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            admin_listen,
        } => serve::serve(config, data_dir, listen, admin_listen),
        Command::Init { data_dir, key_type } => init::init(&data_dir, key_type),
        Command::Reload { data_dir } => reload::reload_cmd(&data_dir),
        Command::Request {
            file,
            url,
            hash,
            cert,
            no_nonce,
            policy,
            out,
            json,
        } => client::request_cmd(
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
        } => client::verify_cmd(
            &reply,
            data.as_deref(),
            digest.as_deref(),
            hash.as_deref(),
            &ca,
            untrusted.as_deref(),
            token,
            json,
        ),
        Command::CheckConfig { file, json } => check_config::check_config(&file, json),
        Command::Audit(cmd) => audit::audit(cmd),
        Command::Admin(cmd) => admin::admin(cmd),
        Command::Clock(ClockCommand::Status { config, json }) => clock::status(config, json),
        Command::Cluster(ClusterCommand::Status { postgres, json }) => {
            cluster::status(&postgres, json)
        }
        Command::Hsm(cmd) => hsm::hsm(cmd),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("stampd: {msg}");
            ExitCode::from(2)
        }
    }
}

/// What a command gives back: its exit code, or a message for stderr (exit code 2).
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
            match crate::config::locate::line_of(&text, &file, m) {
                Some(line) => format!("{file}:{line}: {body}"),
                None => format!("{file}: {body}"),
            }
        })
        .collect()
}
