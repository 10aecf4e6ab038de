//! `stampd check-config`: validate a file and print the effective configuration.

use std::path::Path;
use std::process::ExitCode;

use super::{load_config, located, say, CmdResult};
use crate::error::Error;

#[allow(
    clippy::print_stderr,
    reason = "an invalid file's messages go to stderr, the effective configuration to stdout"
)]
pub(super) fn check_config(path: &Path, json: bool) -> CmdResult {
    let mut cfg = load_config(path)?;
    match cfg.validate_as(&path.display().to_string()) {
        Ok(_) => {
            // Effective: the defaults that depend on other settings, resolved.
            cfg.server.dispatch = Some(cfg.dispatch());
            // Warnings go to stderr, so the effective configuration stays loadable.
            for w in cfg.clock.warnings() {
                eprintln!("{}: warning: {w}", path.display());
            }
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
