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

pub mod config;
pub mod journal;
pub mod postgres;
pub mod query;
pub mod record;
pub mod sink;
pub mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use config::{AuditConfig, BatchConfig, Durability, JournalConfig, StoreKind};
pub use record::{Entry, Event, Record, RequestDigest};
pub use sink::{AuditSink, Discard, Durable, Full, Memory, TrailStatus};

use crate::error::Error;
use journal::budget::{DiskBudget, State as BudgetState};
use journal::Journal;

impl AuditConfig {
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
            max_bytes: (j.max_mib > 0).then_some(j.max_mib << 20),
            min_free_bytes: j.min_free_mib << 20,
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
                let budget = journal.budget();
                let (seq, head) = journal.head();
                tracing::info!(dir = %dir.display(), seq, head = %crate::protocol::hex::hex(&head), created = report.created, "audit journal open");
                let target = self.target(postgres_password)?;
                if target.is_some() {
                    // Nothing is shipped until the shipper has read its position.
                    progress.shipped_seq.store(0, Ordering::Release);
                }
                let writer = writer::Writer::start(journal, self.limits())
                    .map_err(|e| audit_err(e.to_string()))?;
                let (status_progress, status_dir) = (progress.clone(), dir.clone());
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
                Ok(Arc::new(Trail {
                    writer,
                    shipper,
                    budget,
                    progress: status_progress,
                    dir: status_dir,
                }))
            }
        }
    }
}

/// How long a stopping server waits for the shipper to catch up.
const SHIP_AT_STOP: Duration = Duration::from_secs(5);

/// The journal writer and, when configured, its shipper.
struct Trail {
    writer: writer::Writer,
    shipper: Option<postgres::ShipperHandle>,
    budget: Arc<DiskBudget>,
    progress: Arc<journal::Progress>,
    dir: std::path::PathBuf,
}

impl AuditSink for Trail {
    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full> {
        self.writer.submit(record, durable)
    }

    fn event(&self, event: Event) -> Result<Option<Durable>, Full> {
        self.writer.event(event)
    }

    fn writable(&self) -> Result<(), Error> {
        match self.budget.state() {
            BudgetState::Full => Err(Error::AuditNoSpace),
            BudgetState::Ok | BudgetState::Warning => Ok(()),
        }
    }

    fn roomy(&self) -> bool {
        self.budget.state() == BudgetState::Ok
    }

    fn flush_and_stop(&self) -> bool {
        let flushed = self.writer.flush_and_stop();
        if let Some(s) = &self.shipper {
            // A bounded chance for PostgreSQL to hold everything before the process goes;
            // what is left ships at the next start.
            if !s.wait_caught_up(SHIP_AT_STOP) {
                tracing::warn!(
                    "the PostgreSQL shipper did not catch up within {SHIP_AT_STOP:?}; the rest ships at the next start"
                );
            }
        }
        flushed
    }

    fn metrics(&self, out: &mut String) {
        self.writer.metrics(out);
        if let Some(s) = &self.shipper {
            s.metrics(out);
        }
    }

    fn status(&self) -> TrailStatus {
        let hash = self.progress.head_hash.lock().map(|h| *h).ok();
        TrailStatus {
            store: "journal",
            dir: Some(self.dir.display().to_string()),
            head_seq: Some(self.progress.committed_seq.load(Ordering::Acquire)),
            head_hash: hash.map(|h| crate::protocol::hex::hex(&h)),
            segments: journal::segments(&self.dir).ok().map(|s| s.len()),
        }
    }
}

impl writer::Store for Journal {
    fn commit(&mut self, batch: &[Entry]) -> Result<(), String> {
        self.append(batch).map_err(|e| format!("journal: {e}"))
    }

    fn after_commit(&mut self) {
        self.rotate_if_full();
    }

    fn idle(&mut self) {
        self.reclaim();
    }

    fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let (seq, _) = self.head();
        let _ = write!(
            out,
            "# TYPE stampd_audit_journal_seq gauge\nstampd_audit_journal_seq {seq}\n"
        );
        self.budget().metrics(out);
    }
}
