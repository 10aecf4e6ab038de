//! Live reload: SIGHUP (or `stampd reload --data-dir D`, which asks the server in `D` through
//! its pid file) re-reads the configuration, validates it, builds the new services, policies,
//! chains, filters and signers beside the running ones, and switches every core and worker
//! to them between requests. On any error nothing changes. Every attempt is an audit event
//! (`kind = "reload"`) and a log line.
//!
//! The command and the server talk through two files in `D/state/`: `reload-request` (who
//! asks, and a nonce) before the signal, and `reload-result` (the nonce, then `ok` or
//! `failed` and the messages) after the attempt.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{located, say, CmdResult};
use crate::audit::Event;
use crate::config::build::{assemble, Kept};
use crate::config::{Config, ValidatedConfig};
use crate::error::Error;
use crate::policy::current::Current;
use crate::protocol::hex::hex;

const PID_FILE: &str = "stampd.pid";
const REQUEST_FILE: &str = "reload-request";
const RESULT_FILE: &str = "reload-result";

/// What the command line changed in the file's configuration (`serve --data-dir`,
/// `--listen`, `--admin-listen`), applied again to every reloaded file.
pub(super) type Overrides = Box<dyn Fn(&mut Config) + Send>;

/// The server's side: what a reload starts from.
pub(super) struct Reloader {
    /// The configuration file; `None`: the embedded default (a reload then re-reads the
    /// certificates and keys it names).
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
    pub current: Arc<Current>,
    pub kept: Kept,
    /// The configuration in effect.
    pub running: ValidatedConfig,
}

impl Reloader {
    /// Writes the pid file the `reload` command finds the server by.
    pub fn write_pid_file(&self) {
        let state = self.running.data_dir.join("state");
        let _ = std::fs::write(state.join(PID_FILE), format!("{}\n", std::process::id()));
    }

    /// One reload attempt, from a signal; logs, audits and answers a waiting command.
    pub fn reload(&mut self) {
        let state = self.running.data_dir.join("state");
        let request = std::fs::read_to_string(state.join(REQUEST_FILE)).ok();
        let _ = std::fs::remove_file(state.join(REQUEST_FILE));
        let (nonce, who) = match request.as_deref().and_then(|r| r.split_once('\n')) {
            Some((nonce, who)) => (nonce.to_string(), who.trim().to_string()),
            None => (String::new(), "SIGHUP".to_string()),
        };
        let outcome = self.reload_as(&who);
        let (ok, message) = match &outcome {
            Ok(()) => (true, "configuration reloaded".to_string()),
            Err(e) => (false, format!("reload refused: {e}")),
        };
        let result = format!("{nonce}\n{}\n{message}\n", if ok { "ok" } else { "failed" });
        let _ = std::fs::write(state.join(RESULT_FILE), result);
    }

    /// One reload attempt asked for by `who` (a signal, `stampd reload`, an administrator
    /// in the admin interface); logs and audits it. `Err`: why nothing changed.
    pub fn reload_as(&mut self, who: &str) -> Result<(), String> {
        super::notify::reloading();
        let (text, hash) = match &self.file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => {
                    let hash = hex(&crate::protocol::request::sha256(t.as_bytes()));
                    (Ok(t), hash)
                }
                Err(e) => (Err(format!("{}: {e}", p.display())), String::new()),
            },
            None => (Ok(String::new()), "embedded default".into()),
        };
        let outcome = text.and_then(|t| self.attempt(&t));
        let (name, ok, message) = match &outcome {
            Ok(()) => ("reloaded", true, "configuration reloaded".to_string()),
            Err(e) => ("reload-refused", false, format!("reload refused: {e}")),
        };
        if ok {
            tracing::info!(by = %who, config_sha256 = %hash, "{message}");
        } else {
            tracing::error!(by = %who, config_sha256 = %hash, "{message}");
        }
        let event = Event::now(
            "reload",
            name,
            message.clone(),
            &serde_json::json!({
                "by": who,
                "config_sha256": hash,
                "result": if ok { "ok" } else { "failed" },
            }),
        );
        if self.kept.audit().event(event).is_err() {
            tracing::error!("the audit trail could not take the reload's record");
        }
        super::notify::notify("READY=1");
        outcome
    }

    /// Validates `text`, refuses restart-only changes, builds beside, then swaps.
    fn attempt(&mut self, text: &str) -> Result<(), String> {
        let origin = self
            .file
            .as_ref()
            .map_or("the embedded default".to_string(), |p| {
                p.display().to_string()
            });
        let mut cfg = match &self.file {
            // A parse error carries its line and column already, as check-config shows it.
            Some(_) => Config::from_toml(text, &origin).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        (self.overrides)(&mut cfg);
        let valid = cfg.validate_as(&origin).map_err(|e| self.located(e))?;
        let changed = restart_only_changes(&self.running, &valid);
        if !changed.is_empty() {
            return Err(format!(
                "{} changed, which needs a restart; nothing was changed",
                changed.join(", ")
            ));
        }
        let tsa = assemble(&valid, &self.kept).map_err(|e| e.to_string())?;
        self.current.swap(Arc::new(tsa));
        // From the monitor's next poll on (the verdict it published stands until then).
        let clock = &valid.config.clock;
        self.kept
            .clock_thresholds()
            .set(clock.max_offset_ms, clock.warn_offset_ms);
        self.running = valid;
        Ok(())
    }

    /// A configuration error as `check-config` prints it (file:line: message).
    fn located(&self, e: Error) -> String {
        match (&self.file, e) {
            (Some(p), Error::Config(msg)) => located(p, &msg).join("\n"),
            (_, e) => e.to_string(),
        }
    }
}

/// What a reload cannot change in place, named as in the file: the listen addresses and
/// their paths, the services' number and order, `[server]` (data directory, node id, cores,
/// dispatch, HTTP limits), `[audit]`, `[clock]` but its thresholds, and `[admin]`.
fn restart_only_changes(old: &ValidatedConfig, new: &ValidatedConfig) -> Vec<String> {
    fn differ<T: serde::Serialize>(a: &T, b: &T) -> bool {
        serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
    }
    let (o, n) = (&old.config, &new.config);
    let mut changed: Vec<String> = [
        ("[server]", differ(&o.server, &n.server)),
        ("[audit]", differ(&o.audit, &n.audit)),
        (
            "[clock] (other than max_offset_ms and warn_offset_ms)",
            differ(&but_thresholds(&o.clock), &but_thresholds(&n.clock)),
        ),
        ("[admin]", differ(&o.admin, &n.admin)),
    ]
    .into_iter()
    .filter(|(_, d)| *d)
    .map(|(name, _)| name.to_string())
    .collect();
    let routes = |v: &ValidatedConfig| {
        v.listeners
            .iter()
            .map(|l| (l.addr, l.routes.clone()))
            .collect::<Vec<_>>()
    };
    if routes(old) != routes(new) {
        changed.push("the services' listen addresses or paths".into());
    }
    let names = |v: &ValidatedConfig| {
        v.services
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    if names(old) != names(new) {
        changed.push("the enabled services (their names or order)".into());
    }
    changed
}

/// `[clock]` without the thresholds a reload may change.
fn but_thresholds(c: &crate::clock::config::ClockConfig) -> crate::clock::config::ClockConfig {
    crate::clock::config::ClockConfig {
        max_offset_ms: 0,
        warn_offset_ms: 0,
        ..c.clone()
    }
}

/// `stampd reload --data-dir D`: asks the server running on `D` to reload, waits for the
/// result (at most 60 s) and prints it; exit 0 when it reloaded, 1 when it refused.
pub(super) fn reload_cmd(data_dir: &Path) -> CmdResult {
    let state = data_dir.join("state");
    let pid_file = state.join(PID_FILE);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .map_err(|e| {
            format!(
                "{}: {e} (is a server running on this data directory?)",
                pid_file.display()
            )
        })?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a process id", pid_file.display()))?;
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| format!("{}: not a process id", pid_file.display()))?;
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_string())?;
    let nonce = hex(&nonce);
    let who = format!(
        "stampd reload (pid {}, uid {})",
        std::process::id(),
        rustix::process::getuid().as_raw()
    );
    std::fs::write(state.join(REQUEST_FILE), format!("{nonce}\n{who}\n"))
        .map_err(|e| format!("{}: {e}", state.display()))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .map_err(|e| format!("cannot signal process {}: {e}", pid.as_raw_nonzero()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(result) = std::fs::read_to_string(state.join(RESULT_FILE)) {
            let mut lines = result.lines();
            if lines.next() == Some(nonce.as_str()) {
                let ok = lines.next() == Some("ok");
                for l in lines {
                    say!("{l}");
                }
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
        }
        if Instant::now() >= deadline {
            return Err("the server did not answer within 60 s; see its log".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
