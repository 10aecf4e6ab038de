//! `[audit]`: the audit trail's configuration and its pure checks. The assembler
//! (`crate::config`) resolves its paths and reads the PostgreSQL password; [`super::AuditConfig::start`]
//! opens the store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::postgres;

/// When a response may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Only once its record is committed (one fdatasync per batch). No issued token is ever
    /// missing from the trail.
    #[default]
    GroupCommit,
    /// At once; the record follows. A crash loses the records not yet committed: those of
    /// the batch being written and those queued behind it (normally at most one
    /// `interval_us` plus one fdatasync, at most `queue_capacity` records when the disk
    /// stalls).
    Async,
}

/// Where records are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The local journal (then shipped to PostgreSQL when `postgres` is set).
    #[default]
    Journal,
    /// PostgreSQL only: group commit waits for the database commit; while the database is
    /// down, requests get `systemFailure`.
    Postgres,
    /// Nowhere. For measuring the cost of auditing only; logged loudly at start.
    None,
}

/// `[audit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `journal` (default), `postgres` or `none`.
    pub store: StoreKind,
    /// Default durability of services' audit filters: `group-commit` (default) or `async`.
    pub durability: Durability,
    /// This TSA's name in PostgreSQL: serial numbers are unique per identity. Default
    /// `stampd`; give independent TSAs sharing a database different identities.
    pub identity: String,
    /// libpq-style connection string of the PostgreSQL database (no password in it).
    /// Unset: no shipping.
    pub postgres: Option<String>,
    /// Environment variable holding the PostgreSQL password.
    pub postgres_password_env: Option<String>,
    /// File holding the PostgreSQL password (relative to the data directory).
    pub postgres_password_file: Option<PathBuf>,
    /// The systemd credential holding the PostgreSQL password, read from
    /// `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredential=NAME:FILE` in the unit).
    pub postgres_password_credential: Option<String>,
    /// Rows per shipping transaction (one binary COPY + the journal position). Default 5000.
    pub ship_batch_rows: usize,
    /// `[audit.journal]`: where the journal lives, segment size, retention, checkpoints.
    pub journal: JournalConfig,
    /// `[audit.batch]`: the writer's batch limits, commit pacing and queue.
    pub batch: BatchConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            store: StoreKind::Journal,
            durability: Durability::GroupCommit,
            identity: "stampd".into(),
            postgres: None,
            postgres_password_env: None,
            postgres_password_file: None,
            postgres_password_credential: None,
            ship_batch_rows: 5000,
            journal: JournalConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}

/// `[audit.journal]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of the segment files, relative to the data directory. Default `journal`.
    pub dir: PathBuf,
    /// A new segment is begun once one reaches this size, in MiB. Default 64.
    pub segment_mib: u64,
    /// Closed segments older than this many days are deleted once shipped; 0 keeps them
    /// for ever. Default 0.
    pub retention_days: u64,
    /// A checkpoint (logged with its chain hash) whenever the frame count reaches a
    /// multiple of this. Default 10000.
    pub checkpoint_every: u64,
    /// ... and after the first batch this many seconds after the last checkpoint, so a
    /// quiet journal is anchored too; 0: by count only. Default 600.
    pub checkpoint_seconds: u64,
    /// Anchor every checkpoint: a timestamp token of this TSA's own over the chain's hash
    /// (through the first RFC 3161 service, so only while the clock is trusted), kept in the
    /// checkpoint and audited like any token. Default true.
    pub anchor: bool,
    /// Largest the journal's files may grow, in MiB; 0 = no cap. Default 0.
    pub max_mib: u64,
    /// Free space to leave on the journal's filesystem, in MiB: once the next 256 KiB
    /// extension would cut into it, requests are refused with `systemFailure` and `/ready`
    /// answers 503 until space is freed. Default 64.
    pub min_free_mib: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: PathBuf::from("journal"),
            segment_mib: 64,
            retention_days: 0,
            checkpoint_every: 10_000,
            checkpoint_seconds: 600,
            anchor: true,
            max_mib: 0,
            min_free_mib: 64,
        }
    }
}

/// `[audit.batch]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch closes at this many records. Default 1024.
    pub max_records: usize,
    /// ... or this many bytes. Default 4 MiB.
    pub max_bytes: usize,
    /// Least time in µs between the starts of two commits. Default 500. A record that
    /// finds the writer idle and this long since the last commit is committed at once;
    /// records arriving sooner share the next commit. Each commit costs one fdatasync (on
    /// the reference VM about 120 µs of waiting; what commits cost in CPU is in README
    /// "Performance"), so this caps their rate (2000/s by default; only a backlog of full
    /// batches goes faster) at the cost of up to one interval of latency under load (plus
    /// the commit in progress, when commits take longer than the interval). 0: commit
    /// whenever the writer is free (lowest latency at moderate load, most fsyncs).
    pub interval_us: u64,
    /// Before `interval_us` there was `max_delay_us` (a delay after a batch's first
    /// record); it is refused with a message saying so rather than as an unknown key.
    #[serde(default, skip_serializing)]
    max_delay_us: Option<serde::de::IgnoredAny>,
    /// Records waiting for the writer; when full, requests are refused with 503. Default
    /// 16384 (about 4 MiB).
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: 1024,
            max_bytes: 4 << 20,
            interval_us: 500,
            max_delay_us: None,
            queue_capacity: 16_384,
        }
    }
}

impl AuditConfig {
    /// Pure checks, messages naming the key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let b = &self.batch;
        if b.max_records == 0 || b.max_bytes == 0 || b.queue_capacity == 0 {
            errors.push(
                "audit.batch: max_records, max_bytes and queue_capacity must be at least 1".into(),
            );
        }
        if b.max_delay_us.is_some() {
            errors.push(
                "audit.batch.max_delay_us: replaced by interval_us (least time between the \
                 starts of two commits; an idle writer commits at once)"
                    .into(),
            );
        }
        if b.interval_us > 1_000_000 {
            errors.push("audit.batch.interval_us: at most 1000000 (1 s)".into());
        }
        let j = &self.journal;
        if j.segment_mib == 0 || j.checkpoint_every == 0 {
            errors
                .push("audit.journal: segment_mib and checkpoint_every must be at least 1".into());
        }
        if j.checkpoint_seconds > 86_400 {
            errors
                .push("audit.journal.checkpoint_seconds: at most 86400 (0: by count only)".into());
        }
        if j.segment_mib > 4096 {
            errors.push("audit.journal.segment_mib: at most 4096".into());
        }
        if j.retention_days > 36_500 {
            errors.push(
                "audit.journal.retention_days: at most 36500 (0 keeps segments for ever)".into(),
            );
        }
        if b.max_bytes > 64 << 20 {
            errors.push("audit.batch.max_bytes: at most 67108864 (64 MiB)".into());
        }
        if self.identity.is_empty() {
            errors.push("audit.identity: must not be empty".into());
        }
        if self.ship_batch_rows == 0 {
            errors.push("audit.ship_batch_rows: must be at least 1".into());
        }
        match &self.postgres {
            Some(dsn) => {
                if let Err(e) = postgres::check_dsn(dsn) {
                    errors.push(format!("audit.postgres: {e}"));
                }
                let sources = [
                    self.postgres_password_env.is_some(),
                    self.postgres_password_file.is_some(),
                    self.postgres_password_credential.is_some(),
                ];
                if sources.iter().filter(|s| **s).count() > 1 {
                    errors.push(
                        "audit: set one of postgres_password_env, postgres_password_file and \
                         postgres_password_credential"
                            .into(),
                    );
                }
                if let Some(Err(e)) = self
                    .postgres_password_credential
                    .as_deref()
                    .map(crate::secret::check_credential_name)
                {
                    errors.push(format!("audit.postgres_password_credential: {e}"));
                }
            }
            None if self.store == StoreKind::Postgres => errors.push(
                "audit.store = \"postgres\" needs audit.postgres (a connection string)".into(),
            ),
            None => {}
        }
        errors
    }
}
