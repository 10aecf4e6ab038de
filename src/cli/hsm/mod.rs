//! `stampd hsm ...`: keys in an HSM through PKCS#11.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::client::read_pem_certs;
use super::{load_config, CmdResult};
use crate::config::build;
use crate::pki::KeyType;

/// Which token, and the user PIN (from the environment or a file, never the command line).
#[derive(clap::Args)]
pub(super) struct TokenArgs {
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
        pin(self.pin_env.as_deref(), self.pin_file.as_deref())
    }

    /// The token, logged in with the PIN (which these commands need).
    fn open(&self) -> Result<crate::signer::pkcs11::token::Token, String> {
        let pin = self
            .pin()?
            .ok_or("give the user PIN with --pin-env VAR or --pin-file FILE")?;
        crate::signer::pkcs11::token::Token::open(&self.module, &self.token_label, Some(pin))
    }
}

#[derive(Subcommand)]
pub(super) enum HsmCommand {
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
        rsa_padding: crate::signer::software::RsaPadding,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn hsm(cmd: HsmCommand) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let now = || {
        crate::clock::TimeSource::now(&crate::clock::SystemClock)
            .map(|r| r.time)
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
            let pin = pin(pin_env.as_deref(), pin_file.as_deref())?;
            commands::list(&module, token_label.as_deref(), pin, json, &mut out)?
        }
        HsmCommand::Keygen {
            token,
            key_label,
            key_type,
        } => commands::keygen(&token.open()?, &key_label, key_type, &mut out)?,
        HsmCommand::Csr {
            token,
            key_label,
            subject,
            out: file,
        } => commands::csr(&token.open()?, &key_label, &subject, &file, &mut out)?,
        HsmCommand::ImportCert {
            token,
            key_label,
            cert,
        } => commands::import_cert(&token.open()?, &key_label, &cert, now()?, &mut out)?,
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
                    let sc = crate::signer::config::SignerConfig {
                        kind: crate::signer::config::SignerKind::Pkcs11,
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
            if sc.kind != crate::signer::config::SignerKind::Pkcs11 {
                return Err(format!("signer `{name}` is not a PKCS#11 signer"));
            }
            let sc = sc.resolved(&data_dir);
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
            commands::selftest(&name, signer, &trusted, json, &mut out)?
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
            commands::bench(
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

/// The PIN from `--pin-env` or `--pin-file`.
fn pin(env: Option<&str>, file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let source = crate::secret::Source {
        env,
        file,
        credential: None,
    };
    crate::secret::read("the PIN", source)
}
