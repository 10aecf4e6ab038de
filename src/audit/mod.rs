//! The audit trail: every request's [`Record`], made durable before a group-commit
//! response is released (DESIGN.md, "Durability contract").
//!
//! ```text
//! audit pre-filter ──submit──▶ Writer (one thread, batches) ──▶ Store
//!                                                  journal: write + fdatasync per batch
//!                                                  or PostgreSQL only: one transaction
//!        journal ──▶ Shipper (tokio-postgres on its own runtime) ──▶ PostgreSQL
//! ```
//!
//! The shipper stores its journal position in the same transaction as the rows, and rows are
//! idempotent on (TSA identity, serial) and (identity, journal, seq): a crash or a database
//! outage neither loses nor duplicates a record.

pub mod journal;
pub mod postgres;
pub mod query;
pub mod record;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use record::Record;

use crate::error::Error;
use journal::Journal;

/// Fires with `true` once the record is durable, `false` when its batch failed.
pub type Durable = futures_channel::oneshot::Receiver<bool>;

/// The trail cannot take the record now (queue full or writer gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Where the audit pre-filter hands records: the audit trail as the request path sees it.
///
/// Contract:
/// * **Callers.** `policy::preprocess::audit::Audit::after` calls
///   [`submit`](AuditSink::submit) once per request that reached the filter, issued or not
///   (step 15 of the request path in docs/architecture.md). The CLI's signal thread calls
///   [`flush_and_stop`](AuditSink::flush_and_stop) once, at SIGTERM/SIGINT;
///   `Tsa::metrics` calls [`metrics`](AuditSink::metrics) for `GET /metrics`. One sink
///   (`Arc<dyn AuditSink>`) is shared by every service's audit filter.
/// * **Threads.** `submit` runs on every `stampd-core-N` (inline dispatch) and
///   `stampd-worker-N` (queue dispatch) concurrently, on the request path: it must never
///   block and never do I/O. It hands the record over (the real writer: one `try_send` on
///   a bounded channel) and returns. `metrics` runs on a core and must not block either;
///   `flush_and_stop` runs on its own thread and may block while the queued records are
///   committed (the writer's two waits are bounded by 30 s each).
/// * **Durability.** With `durable`, `Ok(Some(d))`: `d` fires `true` once the record is
///   committed, `false` when its batch failed; the frontend withholds the token unless it
///   gets `true`. A dropped sender (the writer gone) counts as not committed. Without
///   `durable` (async), `Ok(None)`: the record is queued and the reply leaves at once. A
///   sink that makes records durable at once (or discards them) may answer `Ok(None)` or
///   an already-fired `Durable`.
/// * **Errors.** `Err(Full)` means "cannot take this record now" (the queue is full, or
///   the trail is stopping or gone). It is never waited on: the request is answered 503
///   and no token leaves without its record. A sink must not lose a record it accepted
///   with `durable` without firing `false`.
pub trait AuditSink: Send + Sync {
    /// Takes one record. With `durable`, the answer is a [`Durable`] that fires once the
    /// record is committed (group commit); without, the record is queued (async).
    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full>;
    /// Refuses new records, commits what is queued and stops (graceful shutdown); false
    /// when something could not be committed.
    fn flush_and_stop(&self) -> bool {
        true
    }
    /// Appends Prometheus text for `GET /metrics`.
    fn metrics(&self, _out: &mut String) {}
}

/// Drops every record (`store = "none"`, for benchmarks only).
#[derive(Debug, Default)]
pub struct Discard;

impl AuditSink for Discard {
    fn submit(&self, _record: Record, _durable: bool) -> Result<Option<Durable>, Full> {
        Ok(None)
    }
}

/// Keeps every record in memory, durable at once (unit tests).
#[derive(Debug, Default)]
pub struct Memory(pub Mutex<Vec<Record>>);

impl AuditSink for Memory {
    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full> {
        self.0.lock().map_err(|_| Full)?.push(record);
        Ok(durable.then(|| {
            let (tx, rx) = futures_channel::oneshot::channel();
            let _ = tx.send(true);
            rx
        }))
    }
}

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
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: PathBuf::from("journal"),
            segment_mib: 64,
            retention_days: 0,
            checkpoint_every: 10_000,
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
                if self.postgres_password_env.is_some() && self.postgres_password_file.is_some() {
                    errors.push(
                        "audit: set postgres_password_env or postgres_password_file, not both"
                            .into(),
                    );
                }
            }
            None if self.store == StoreKind::Postgres => errors.push(
                "audit.store = \"postgres\" needs audit.postgres (a connection string)".into(),
            ),
            None => {}
        }
        errors
    }

    fn journal_settings(&self, journal_dir: &Path) -> journal::Settings {
        let j = &self.journal;
        journal::Settings {
            dir: journal_dir.to_path_buf(),
            segment_bytes: j.segment_mib << 20,
            retention: (j.retention_days > 0)
                .then(|| Duration::from_secs(j.retention_days * 86_400)),
            checkpoint_every: j.checkpoint_every,
            // One batch is one write: a torn write is at most one batch (its records may
            // pass the byte limit by one record, bounded by the HTTP body limit).
            max_torn_tail: 2 * (self.batch.max_bytes as u64) + (4 << 20),
        }
    }

    fn limits(&self) -> writer::Limits {
        writer::Limits {
            max_records: self.batch.max_records,
            max_bytes: self.batch.max_bytes,
            interval: Duration::from_micros(self.batch.interval_us),
            queue_capacity: self.batch.queue_capacity,
        }
    }

    fn target(&self, password: Option<String>) -> Result<Option<postgres::Target>, Error> {
        self.postgres
            .as_deref()
            .map(|dsn| {
                postgres::Target::new(dsn, password)
                    .map_err(|e| Error::Config(format!("audit.postgres: {e}")))
            })
            .transpose()
    }

    /// Opens the store (repairing a torn journal tail) in `journal_dir` (`journal.dir`
    /// resolved by the caller), starts the writer and, with `postgres`, the shipper.
    /// `postgres_password`: read by the caller from `postgres_password_env` or
    /// `postgres_password_file`.
    pub fn start(
        &self,
        journal_dir: &Path,
        postgres_password: Option<String>,
    ) -> Result<Arc<dyn AuditSink>, Error> {
        let audit_err = Error::AuditStart;
        match self.store {
            StoreKind::None => {
                tracing::warn!(
                    "audit.store = \"none\": audit records are DISCARDED; for benchmarks only"
                );
                Ok(Arc::new(Discard))
            }
            StoreKind::Postgres => {
                let target = self.target(postgres_password)?.ok_or_else(|| {
                    Error::Config("audit.store = \"postgres\" needs audit.postgres".into())
                })?;
                let store = postgres::DirectStore::new(target, &self.identity)
                    .map_err(|e| audit_err(e.to_string()))?;
                let writer = writer::Writer::start(store, self.limits())
                    .map_err(|e| audit_err(e.to_string()))?;
                tracing::info!("audit trail: PostgreSQL only (no journal)");
                Ok(Arc::new(writer))
            }
            StoreKind::Journal => {
                let settings = self.journal_settings(journal_dir);
                let dir = settings.dir.clone();
                let (journal, report) = Journal::open(settings).map_err(audit_err)?;
                let progress = journal.progress();
                let (seq, head) = journal.head();
                tracing::info!(dir = %dir.display(), seq, head = %record::hex(&head), created = report.created, "audit journal open");
                let target = self.target(postgres_password)?;
                if target.is_some() {
                    // Nothing is shipped until the shipper has read its position.
                    progress.shipped_seq.store(0, Ordering::Release);
                }
                let writer = writer::Writer::start(journal, self.limits())
                    .map_err(|e| audit_err(e.to_string()))?;
                let shipper = match target {
                    None => None,
                    Some(target) => Some(
                        postgres::Shipper {
                            target,
                            identity: self.identity.clone(),
                            dir,
                            progress,
                            batch_rows: self.ship_batch_rows,
                        }
                        .spawn()
                        .map_err(|e| audit_err(e.to_string()))?,
                    ),
                };
                Ok(Arc::new(Trail { writer, shipper }))
            }
        }
    }
}

/// The journal writer and, when configured, its shipper.
struct Trail {
    writer: writer::Writer,
    shipper: Option<postgres::ShipperHandle>,
}

impl AuditSink for Trail {
    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full> {
        self.writer.submit(record, durable)
    }

    fn flush_and_stop(&self) -> bool {
        self.writer.flush_and_stop()
    }

    fn metrics(&self, out: &mut String) {
        self.writer.metrics(out);
        if let Some(s) = &self.shipper {
            s.metrics(out);
        }
    }
}

impl writer::Store for Journal {
    fn commit(&mut self, batch: &[Record]) -> Result<(), String> {
        self.append(batch).map_err(|e| format!("journal: {e}"))
    }

    fn after_commit(&mut self) {
        self.rotate_if_full();
    }

    fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let (seq, _) = self.head();
        let _ = write!(
            out,
            "# TYPE stampd_audit_journal_seq gauge\nstampd_audit_journal_seq {seq}\n"
        );
    }
}
