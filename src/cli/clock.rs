//! `stampd clock status`: what the sync monitor would decide now.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{load_config, say, CmdResult};
use crate::clock::monitor::{Monitor, Taken};
use crate::config::Config;

/// Queries the configured sources once and prints each server's figures and the verdict;
/// exit 0 in sync (or in warning), 1 out of sync.
pub(super) fn status(config: Option<PathBuf>, json: bool) -> CmdResult {
    let cfg = match &config {
        Some(p) => load_config(p)?,
        None => Config::default(),
    };
    let errors = cfg.clock.validate();
    if !errors.is_empty() {
        return Err(format!("invalid [clock]:\n  {}", errors.join("\n  ")));
    }
    let mut monitor = Monitor::new(&cfg.clock, Box::new(|_| Taken::Done));
    let s = monitor.measure();
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
        );
    } else {
        say!("sync: {}", s.sync);
        for w in cfg.clock.warnings() {
            say!("warning: {w}");
        }
        for v in &s.servers {
            let ms = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.3} ms"));
            let what = match (&v.error, v.falseticker) {
                (Some(e), _) => format!("error: {e}"),
                (None, true) => "falseticker".into(),
                (None, false) => "agrees".into(),
            };
            say!(
                "  {}: offset {}, delay {}, bound {}, stratum {}, leap {:?}: {what}",
                v.server,
                ms(v.offset_ms),
                ms(v.delay_ms),
                ms(v.bound_ms),
                v.stratum.map_or("-".into(), |s| s.to_string()),
                v.leap,
            );
        }
        say!(
            "verdict: {} (offset {:.3} ms ± {:.3} ms, max_offset_ms {}){}",
            serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            s.offset_ms,
            s.bound_ms,
            s.max_offset_ms,
            s.reason
                .as_ref()
                .map_or(String::new(), |r| format!(": {r}"))
        );
    }
    Ok(if s.in_sync() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
