//! The audit trail: every request's [`Record`], made durable before a group-commit
//! response is released (DESIGN.md, "Durability contract").
//!
//! ```text
//! audit pre-filter ──submit──▶ its core's shard ──▶ committer on that core (shard.rs)
//!                                                  write + fdatasync per batch, io_uring
//!                  ──submit──▶ Writer (one thread, batches) ──▶ PostgreSQL only
//!                                                  (store = "postgres"): one transaction
//!   every shard ──▶ Shipper (tokio-postgres on its own runtime) ──▶ PostgreSQL
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
pub mod shard;
pub mod sink;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use config::{AuditConfig, BatchConfig, Durability, JournalConfig, StoreKind};
pub use record::{Entry, Event, Record, RequestDigest};
pub use shard::{capturing, Placement};
pub use sink::{AuditSink, Discard, Durable, Full, Memory, ShardStatus, TrailStatus};

use crate::error::Error;
use journal::budget::DiskBudget;
use journal::Journal;

impl AuditConfig {
    fn journal_settings(
        &self,
        dir: PathBuf,
        budget: Arc<DiskBudget>,
        anchor: &journal::anchor::Anchor,
    ) -> journal::Settings {
        let j = &self.journal;
        journal::Settings {
            dir,
            segment_bytes: j.segment_mib << 20,
            retention: (j.retention_days > 0)
                .then(|| Duration::from_secs(j.retention_days * 86_400)),
            checkpoint_every: j.checkpoint_every,
            checkpoint_interval: (j.checkpoint_seconds > 0)
                .then(|| Duration::from_secs(j.checkpoint_seconds)),
            anchor: anchor.clone(),
            // One batch is one write: a torn write is at most one batch (its records may
            // pass the byte limit by one record, bounded by the HTTP body limit).
            max_torn_tail: 2 * (self.batch.max_bytes as u64) + (4 << 20),
            budget,
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

    /// Opens the store in `journal_dir` (`journal.dir` resolved by the caller), starts it
    /// and, with `postgres`, the shipper. The journal has `shards` shards, one per frontend
    /// core, committed where `placement` says; each is opened (its torn tail repaired, its
    /// damage refusing the start), and so is every shard an earlier run left beyond them.
    /// `postgres_password`: read by the caller from `postgres_password_env` or
    /// `postgres_password_file`. `node_id` goes with the shipped positions; `anchor` stamps
    /// the journals' checkpoints once set (by the caller, when the TSA is assembled).
    pub fn start(
        &self,
        journal_dir: &Path,
        postgres_password: Option<String>,
        shards: usize,
        placement: Placement,
        node_id: u16,
        anchor: &journal::anchor::Anchor,
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
                let j = &self.journal;
                std::fs::create_dir_all(journal_dir)
                    .map_err(|e| audit_err(format!("{}: {e}", journal_dir.display())))?;
                let budget = Arc::new(DiskBudget::new(
                    journal_dir,
                    (j.max_mib > 0).then_some(j.max_mib << 20),
                    j.min_free_mib << 20,
                ));
                let mut indexes: Vec<usize> = (0..shards.max(1)).collect();
                let present = journal::shards(journal_dir)
                    .map_err(|e| audit_err(format!("{}: {e}", journal_dir.display())))?;
                indexes.extend(
                    present
                        .iter()
                        .map(|(n, _)| *n)
                        .filter(|&n| n >= shards.max(1)),
                );
                let target = self.target(postgres_password)?;
                let mut journals = Vec::new();
                for n in indexes {
                    let dir = journal::shard_dir(journal_dir, n);
                    let (journal, _) =
                        Journal::open(self.journal_settings(dir, budget.clone(), anchor))
                            .map_err(|e| audit_err(format!("audit shard {n}: {e}")))?;
                    let (seq, head) = journal.head();
                    let role = if n < shards.max(1) {
                        "writing"
                    } else {
                        "retired: shipped, not written"
                    };
                    tracing::info!(shard = n, dir = %journal.dir().display(), seq, head = %crate::protocol::hex::hex(&head), role, "audit journal shard open");
                    if target.is_some() {
                        // Nothing is shipped until the shipper has read its position.
                        journal.progress().shipped_seq.store(0, Ordering::Release);
                    }
                    journals.push((n, journal));
                }
                let trail = shard::Shards::start(
                    journals,
                    shards.max(1),
                    self.limits(),
                    placement,
                    budget,
                    journal_dir.to_path_buf(),
                )
                .map_err(|e| audit_err(e.to_string()))?;
                let Some(target) = target else {
                    return Ok(Arc::new(trail));
                };
                let shippers = trail
                    .progress()
                    .into_iter()
                    .map(|(shard, dir, progress)| postgres::Shipper {
                        target: target.clone(),
                        identity: self.identity.clone(),
                        dir,
                        progress,
                        batch_rows: self.ship_batch_rows,
                        node: Some(node_id),
                        shard,
                    })
                    .collect();
                let handle =
                    postgres::Shipper::spawn_all(shippers).map_err(|e| audit_err(e.to_string()))?;
                Ok(Arc::new(trail.with_shipper(handle)))
            }
        }
    }
}
