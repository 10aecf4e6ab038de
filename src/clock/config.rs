//! `[clock]`: how the process knows its clock is in sync (one monitor per process).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::verdict::MAX_BOUND_US;

/// Where the sync verdict comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncKind {
    /// Query `servers` over SNTP each poll; a majority must agree.
    Sntp,
    /// The host's NTP daemon (chrony), through `chronyc -c tracking`.
    Kernel,
    /// Trust the local clock as it is. Development only: warns at start and in
    /// `check-config`.
    None,
}

/// What an announced leap second does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeapMode {
    /// Ignore it (e.g. behind leap-smearing servers).
    None,
    /// Refuse with `timeNotAvailable` from one second before midnight UTC of the leap day
    /// to one second after.
    Pause,
    /// Refuse from the announcement until an operator restarts the server.
    Stop,
}

/// `[clock]`. Every key has a default, so the table may be left out (then `sync = "none"`,
/// with a warning: production configurations set `sync = "sntp"` or `"kernel"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// `sntp`, `kernel` or `none`. Default `none` (development).
    pub sync: SyncKind,
    /// SNTP servers, `host:port` (port 123 when left out). At least one with `sntp`; three
    /// or more so that one falseticker is outvoted.
    pub servers: Vec<String>,
    /// Out of sync when |offset| + error bound exceeds this, ms. Default 1000.
    pub max_offset_ms: u64,
    /// A warning (logged and audited, still stamping) beyond this, ms. Default 500.
    pub warn_offset_ms: u64,
    /// Time between polls, ms. Default 1000. The verdict expires after two polls and the
    /// timeout: a stalled monitor stops stamping.
    pub poll_interval_ms: u64,
    /// How long a poll waits for replies (or for chronyc), ms. Default 500; below the poll
    /// interval.
    pub timeout_ms: u64,
    /// `none`, `pause` or `stop`. Default `pause`.
    pub leap_seconds: LeapMode,
    /// The chronyc program for `sync = "kernel"`. Default `chronyc` (found on PATH).
    pub chronyc: PathBuf,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            sync: SyncKind::None,
            servers: Vec::new(),
            max_offset_ms: 1000,
            warn_offset_ms: 500,
            poll_interval_ms: 1000,
            timeout_ms: 500,
            leap_seconds: LeapMode::Pause,
            chronyc: PathBuf::from("chronyc"),
        }
    }
}

impl ClockConfig {
    /// Pure checks; each message starts with `clock.KEY`.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        match self.sync {
            SyncKind::Sntp if self.servers.is_empty() => e.push(
                "clock.servers: sync = \"sntp\" needs at least one server (three or more, so \
                 that one falseticker is outvoted)"
                    .to_string(),
            ),
            SyncKind::Kernel | SyncKind::None if !self.servers.is_empty() => e.push(format!(
                "clock.servers: only read with sync = \"sntp\" (sync is \"{}\")",
                self.sync_name()
            )),
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.servers {
            if s.trim().is_empty() || s.contains(char::is_whitespace) {
                e.push(format!("clock.servers: `{s}` is not a host or host:port"));
            } else if !seen.insert(super::sntp::Server::new(s).with_port()) {
                // Counted twice, one server could outvote the rest.
                e.push(format!("clock.servers: `{s}` is listed twice"));
            }
        }
        let max_ms = MAX_BOUND_US / 1000;
        if self.max_offset_ms == 0 || self.max_offset_ms > max_ms {
            e.push(format!(
                "clock.max_offset_ms: {} is outside 1..={max_ms}",
                self.max_offset_ms
            ));
        }
        if self.warn_offset_ms > self.max_offset_ms {
            e.push(format!(
                "clock.warn_offset_ms: {} is above max_offset_ms ({})",
                self.warn_offset_ms, self.max_offset_ms
            ));
        }
        if !(50..=3_600_000).contains(&self.poll_interval_ms) {
            e.push(format!(
                "clock.poll_interval_ms: {} is outside 50..=3600000",
                self.poll_interval_ms
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms >= self.poll_interval_ms {
            e.push(format!(
                "clock.timeout_ms: {} must be above 0 and below poll_interval_ms ({})",
                self.timeout_ms, self.poll_interval_ms
            ));
        }
        e
    }

    /// What `check-config` and the start-up log warn about.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        match self.sync {
            SyncKind::None => w.push(
                "clock.sync = \"none\": the local clock is trusted without any check that it \
                 is in sync with UTC; for development only (set sync = \"sntp\" or \"kernel\" \
                 in production, ETSI EN 319 421)"
                    .to_string(),
            ),
            SyncKind::Sntp if self.servers.len() < 3 => w.push(format!(
                "clock.servers: {} server(s): a quorum needs a majority, and with fewer than \
                 three one falseticker cannot be outvoted",
                self.servers.len()
            )),
            _ => {}
        }
        w
    }

    /// `sync` as written in the file.
    pub fn sync_name(&self) -> &'static str {
        match self.sync {
            SyncKind::Sntp => "sntp",
            SyncKind::Kernel => "kernel",
            SyncKind::None => "none",
        }
    }

    /// How long a published verdict stays valid, ms: two polls and a timeout.
    pub fn expiry_ms(&self) -> u64 {
        2 * self.poll_interval_ms + self.timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClockConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_warn_about_none() {
        let c = ClockConfig::default();
        assert!(c.validate().is_empty());
        assert!(c.warnings()[0].contains("development only"));
        let c = parse("sync = \"sntp\"\nservers = [\"a:123\", \"b\", \"c\"]");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(c.warnings().is_empty());
        assert_eq!(c.expiry_ms(), 2_500);
    }

    #[test]
    fn bad_values_name_their_key() {
        let errs = |t: &str| parse(t).validate().join("\n");
        assert!(errs("sync = \"sntp\"").contains("clock.servers: sync = \"sntp\" needs"));
        assert!(errs("servers = [\"a\"]").contains("only read with sync = \"sntp\""));
        assert!(errs("max_offset_ms = 0").contains("clock.max_offset_ms"));
        assert!(errs("max_offset_ms = 100").contains("clock.warn_offset_ms"));
        assert!(errs("poll_interval_ms = 10").contains("clock.poll_interval_ms"));
        assert!(errs("timeout_ms = 1000").contains("clock.timeout_ms"));
        assert!(errs("sync = \"sntp\"\nservers = [\"a b\"]").contains("not a host"));
        assert!(errs("sync = \"sntp\"\nservers = [\"a\", \"b\", \"a:123\"]")
            .contains("`a:123` is listed twice"));
        assert!(toml::from_str::<ClockConfig>("sync = \"gps\"").is_err());
        assert!(toml::from_str::<ClockConfig>("leap = \"pause\"").is_err());
        let few = parse("sync = \"sntp\"\nservers = [\"a\"]");
        assert!(few.warnings()[0].contains("falseticker cannot be outvoted"));
    }
}
