//! The fuzz entry point of the configuration: arbitrary text through parse, validate and
//! the effective-configuration round trip, as `stampd check-config` runs them. Called by
//! `fuzz/fuzz_targets/config.rs` and the corpus replay test; it must never panic.

use super::Config;

/// The name config messages are given, as `stampd check-config FILE` names its file.
const CONFIG_ORIGIN: &str = "fuzz.toml";

/// A configuration file's text: parsed into [`Config`] and validated (pure: no file,
/// socket or key), as `stampd check-config` does. Each message of an invalid file is
/// located (`FILE:LINE`); a valid file's effective configuration is printed as TOML and
/// JSON, and that TOML must read back into a configuration that is valid too.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut cfg) = Config::from_toml(text, CONFIG_ORIGIN) else {
        return;
    };
    match cfg.validate_as(CONFIG_ORIGIN) {
        Ok(_) => {
            cfg.server.dispatch = Some(cfg.dispatch());
            let _ = serde_json::to_string_pretty(&cfg);
            if let Ok(effective) = toml::to_string_pretty(&cfg) {
                let again = Config::from_toml(&effective, CONFIG_ORIGIN)
                    .and_then(|c| c.validate_as(CONFIG_ORIGIN));
                if let Err(e) = again {
                    panic!("the effective configuration does not load again: {e}\n{effective}");
                }
            }
        }
        Err(crate::error::Error::Config(msg)) => {
            for m in msg.lines() {
                let _ = super::locate::line_of(text, CONFIG_ORIGIN, m);
            }
        }
        Err(_) => {}
    }
}
