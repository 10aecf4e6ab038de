//! The shipper: [`Shipper`] feeds PostgreSQL from the journal, on its own thread, from the
//! position stored in the database; [`ShipperHandle`] holds its metrics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::rows::{CopyError, EventRows, FrameRows, Rows};
use super::schema::{migrate, INSERT, SET_POSITION};
use super::target::{describe, runtime, Target};
use crate::audit::journal::{self, Next, Position, Progress, Reader};
use crate::audit::record::Entry;
use crate::backoff::Backoff;

/// Ships the journal to PostgreSQL from its last committed position.
pub struct Shipper {
    /// The database (`[audit] postgres` and its password).
    pub target: Target,
    /// This TSA's `[audit] identity`: rows are unique per (identity, serial).
    pub identity: String,
    /// The journal directory.
    pub dir: PathBuf,
    /// How far the journal is durable (never read past it) and where shipping stands.
    pub progress: Arc<Progress>,
    /// Rows per transaction (`ship_batch_rows`, default 5000).
    pub batch_rows: usize,
    /// The node (`server.node_id`; `None` for `stampd audit ship`) and the shard index,
    /// stored with the position so `stampd audit verify --postgres --node N` finds its
    /// journals.
    pub node: Option<u16>,
    /// The shard's index on its node.
    pub shard: usize,
}

#[derive(Debug, Default)]
struct ShipStats {
    up: AtomicU64,
    rows: AtomicU64,
    failures: AtomicU64,
}

/// The running shippers' metrics: one per audit shard, reported together.
pub struct ShipperHandle {
    shards: Vec<(Arc<ShipStats>, Arc<Progress>)>,
}

/// Frames of one shard committed but not yet shipped.
fn lag(p: &Progress) -> u64 {
    p.committed_seq
        .load(Ordering::Acquire)
        .saturating_sub(p.shipped_seq.load(Ordering::Acquire))
}

impl ShipperHandle {
    /// Waits until everything committed to every shard is in PostgreSQL, at most
    /// `timeout` (the shutdown's bounded chance to catch up); false when it was not.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let behind: Vec<_> = self.shards.iter().filter(|(_, p)| lag(p) > 0).collect();
            if behind.is_empty() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            for (_, p) in behind {
                p.wake.notify_one();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Appends the shippers' Prometheus lines: up (1 only while every shard's shipper is
    /// connected), rows shipped, failures, lag in frames (summed over the shards).
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let sum = |f: fn(&ShipStats) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|(s, _)| f(s).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let up = self
            .shards
            .iter()
            .all(|(s, _)| s.up.load(Ordering::Relaxed) == 1);
        let _ = write!(
            out,
            "# TYPE stampd_audit_shipper_up gauge\nstampd_audit_shipper_up {}\n\
             # TYPE stampd_audit_shipped_rows_total counter\nstampd_audit_shipped_rows_total {}\n\
             # TYPE stampd_audit_shipper_failures_total counter\nstampd_audit_shipper_failures_total {}\n\
             # HELP stampd_audit_shipper_lag_frames Journal frames not yet in PostgreSQL.\n\
             # TYPE stampd_audit_shipper_lag_frames gauge\nstampd_audit_shipper_lag_frames {}\n",
            u8::from(up),
            sum(|s| &s.rows),
            sum(|s| &s.failures),
            self.shards.iter().map(|(_, p)| lag(p)).sum::<u64>(),
        );
    }
}

/// Longest one shipping transaction may take.
const SHIP_DEADLINE: Duration = Duration::from_secs(30);
/// How often an idle shipper looks at the journal without being woken.
const IDLE_POLL: Duration = Duration::from_millis(100);

impl Shipper {
    /// Starts the `stampd-shipper` thread (its own current-thread tokio runtime) shipping
    /// every shard in `shippers`, each over its own connection and from its own stored
    /// position. Each ships for ever, reconnecting with backoff (100 ms doubling to 5 s)
    /// after any failure; serving never waits for them.
    pub fn spawn_all(shippers: Vec<Shipper>) -> std::io::Result<ShipperHandle> {
        let parts: Vec<_> = shippers
            .into_iter()
            .map(|s| (s, Arc::new(ShipStats::default())))
            .collect();
        let handle = ShipperHandle {
            shards: parts
                .iter()
                .map(|(s, stats)| (stats.clone(), s.progress.clone()))
                .collect(),
        };
        let rt = runtime()?;
        std::thread::Builder::new()
            .name("stampd-shipper".into())
            .spawn(move || {
                rt.block_on(futures_util::future::join_all(
                    parts.iter().map(|(s, stats)| s.run(stats)),
                ))
            })?;
        Ok(handle)
    }

    async fn run(&self, stats: &ShipStats) {
        let mut backoff = Backoff::new();
        loop {
            let mut shipped_any = false;
            let failure = self.session(stats, &mut shipped_any).await;
            stats.up.store(0, Ordering::Relaxed);
            stats.failures.fetch_add(1, Ordering::Relaxed);
            if shipped_any {
                backoff.reset();
            }
            let lag = self
                .progress
                .committed_seq
                .load(Ordering::Acquire)
                .saturating_sub(self.progress.shipped_seq.load(Ordering::Acquire));
            let wait = backoff.advance();
            let retry_ms = wait.as_millis() as u64;
            match failure {
                ShipError::Database(e) => {
                    tracing::warn!(error = %e, lag_frames = lag, retry_ms, "audit shipper: PostgreSQL unavailable; the journal keeps the backlog")
                }
                ShipError::Journal(e) => {
                    tracing::error!(error = %e, lag_frames = lag, retry_ms, "audit shipper: cannot read the journal; nothing more is shipped until this is fixed")
                }
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Ships until something fails; returns what failed.
    async fn session(&self, stats: &ShipStats, shipped_any: &mut bool) -> ShipError {
        let mut client = match self.target.connect().await {
            Ok(c) => c,
            Err(e) => return ShipError::Database(describe(&e)),
        };
        match self.ship(&mut client, stats, shipped_any, false).await {
            Ok(()) => ShipError::Database("shipper stopped".into()),
            Err(e) => e,
        }
    }

    /// Ships what the journal holds now, once, and returns the rows shipped (`stampd audit
    /// ship`: a journal whose server is gone, or a benchmark).
    pub fn ship_once(self) -> Result<u64, String> {
        let rt = runtime().map_err(|e| e.to_string())?;
        let stats = ShipStats::default();
        rt.block_on(async {
            let mut client = self.target.connect().await.map_err(|e| describe(&e))?;
            self.ship(&mut client, &stats, &mut false, true)
                .await
                .map_err(|e| e.to_string())
        })?;
        Ok(stats.rows.load(Ordering::Relaxed))
    }

    /// Ships batches from the stored position; with `once`, returns when caught up. Every
    /// frame must continue the chain from the last one shipped (seq + 1, prev = its hash), so
    /// a journal that changed under a stored position is never shipped from the wrong place.
    async fn ship(
        &self,
        client: &mut Client,
        stats: &ShipStats,
        shipped_any: &mut bool,
        once: bool,
    ) -> Result<(), ShipError> {
        let db = |e: tokio_postgres::Error| ShipError::Database(describe(&e));
        let journal_err = |e: std::io::Error| ShipError::Journal(e.to_string());
        migrate(client).await.map_err(db)?;
        let journal = self.progress.journal_id as i64;
        let row = client
            .query_opt(
                "SELECT segment, \"offset\", seq, hash FROM audit_position WHERE tsa = $1 AND journal = $2",
                &[&self.identity, &journal],
            )
            .await
            .map_err(db)?;
        let (from, mut last) = match row {
            Some(r) => {
                let hash: Vec<u8> = r.try_get(3).map_err(db)?;
                let pos = Position {
                    segment: r.try_get::<_, i64>(0).map_err(db)? as u64,
                    offset: r.try_get::<_, i64>(1).map_err(db)? as u64,
                };
                let seq = r.try_get::<_, i64>(2).map_err(db)? as u64;
                let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                    ShipError::Database("audit_position.hash is not 32 bytes".into())
                })?;
                (Some(pos), Some((seq, hash)))
            }
            None => (None, None),
        };
        self.progress
            .shipped_seq
            .store(last.map_or(0, |(s, _)| s), Ordering::Release);
        let mut reader = Reader::open(&self.dir, from).map_err(journal_err)?;
        let set_position = client.prepare(SET_POSITION).await.map_err(db)?;
        stats.up.store(1, Ordering::Relaxed);
        tracing::info!(seq = last.map_or(0, |(s, _)| s), "audit shipper connected");
        loop {
            let limit = self
                .progress
                .committed_at
                .lock()
                .map_or(Position::default(), |at| *at);
            let mut records = Vec::new();
            let mut events = Vec::new();
            let mut frames = FrameRows::default();
            let mut advanced = false;
            while records.len() + events.len() < self.batch_rows {
                let frame = match reader.next(limit).map_err(journal_err)? {
                    Next::Frame(f) => f,
                    Next::End { .. } => break,
                    Next::Corrupt { at, reason } => {
                        return Err(ShipError::Journal(format!(
                            "segment {} offset {}: {reason}; run `stampd audit verify`",
                            at.segment, at.offset
                        )))
                    }
                };
                if let Some((seq, hash)) = last {
                    if frame.seq != seq + 1 || frame.prev != hash {
                        return Err(ShipError::Journal(format!(
                            "frame {} does not continue the chain from frame {seq} shipped \
                             before; run `stampd audit verify`",
                            frame.seq
                        )));
                    }
                }
                advanced = true;
                last = Some((frame.seq, frame.hash));
                frames.push(&frame);
                match journal::entry(&frame) {
                    None => {}
                    Some(Err(e)) => {
                        return Err(ShipError::Journal(format!(
                            "frame {} does not decode: {e}",
                            frame.seq
                        )))
                    }
                    Some(Ok(Entry::Request(r))) => records.push((frame.seq, r)),
                    Some(Ok(Entry::Event(e))) => events.push((frame.seq, e)),
                }
            }
            let Some((last_seq, last_hash)) = last.filter(|_| advanced) else {
                if once {
                    return Ok(());
                }
                let _ = tokio::time::timeout(IDLE_POLL, self.progress.wake.notified()).await;
                continue;
            };
            let pos = reader.position();
            let rows = Rows::of(records.iter().map(|(seq, r)| (*seq, r)));
            let event_rows = EventRows::of(events.iter().map(|(seq, e)| (*seq, e)));
            let node = self.node.map(i32::from);
            let shard = i32::try_from(self.shard).ok();
            let chain_from = frames.first_seq();
            let position: [&(dyn ToSql + Sync); 9] = [
                &self.identity,
                &journal,
                &(pos.segment as i64),
                &(pos.offset as i64),
                &(last_seq as i64),
                &&last_hash[..],
                &node,
                &shard,
                &chain_from,
            ];
            let mut bulk = !records.is_empty();
            loop {
                let commit = async {
                    let tx = client.transaction().await.map_err(db)?;
                    if bulk {
                        match rows.copy(&tx, &self.identity, journal).await {
                            Ok(_) => {}
                            Err(CopyError::Unique) => return Ok(false),
                            Err(CopyError::Failed(e)) => return Err(ShipError::Database(e)),
                        }
                    } else if !records.is_empty() {
                        let insert = tx.prepare(INSERT).await.map_err(db)?;
                        rows.insert(&tx, &insert, &self.identity, journal)
                            .await
                            .map_err(ShipError::Database)?;
                    }
                    event_rows
                        .insert(&tx, &self.identity, journal)
                        .await
                        .map_err(ShipError::Database)?;
                    frames
                        .insert(&tx, &self.identity, journal)
                        .await
                        .map_err(ShipError::Database)?;
                    tx.execute(&set_position, &position).await.map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    Ok(true)
                };
                let done = tokio::time::timeout(SHIP_DEADLINE, commit)
                    .await
                    .map_err(|_| ShipError::Database("no answer within 30 s".into()))??;
                if done {
                    break;
                }
                // Some rows are there already (a position lost or reset): ship this batch
                // again row by row, skipping them.
                tracing::warn!(seq = last_seq, "audit shipper: rows already in PostgreSQL; shipping the batch again, skipping them");
                bulk = false;
            }
            stats
                .rows
                .fetch_add((records.len() + events.len()) as u64, Ordering::Relaxed);
            *shipped_any = true;
            self.progress.shipped_seq.store(last_seq, Ordering::Release);
        }
    }
}

/// Why shipping stopped.
#[derive(Debug)]
enum ShipError {
    Database(String),
    Journal(String),
}

impl std::fmt::Display for ShipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShipError::Database(e) => write!(f, "PostgreSQL: {e}"),
            ShipError::Journal(e) => write!(f, "journal: {e}"),
        }
    }
}
