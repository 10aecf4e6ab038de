//! The audit trail as the request path sees it: the [`AuditSink`] trait, the [`Durable`]
//! answer of a group-commit submission, and the two sinks with no store behind them
//! ([`Discard`], [`Memory`]).

use std::sync::Mutex;

use super::{Event, Record};
use crate::error::Error;

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
///   block and never do I/O. It hands the record over (the journal: a push onto the
///   calling core's shard, `shard.rs`; PostgreSQL only: one `try_send` on the writer's
///   bounded channel) and returns. `metrics` runs on a core and must not block either;
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
    /// Takes one event of the TSA itself (a clock synchronisation event), in the same
    /// chain as the records. Called by the `stampd-clock` thread; never blocks. `Ok(Some(d))`:
    /// `d` fires once the event is committed (`false`: its batch failed, and the caller
    /// offers it again); `Ok(None)`: recorded at once, or discarded by design; `Err(Full)`:
    /// not taken now, offered again later.
    fn event(&self, event: Event) -> Result<Option<Durable>, Full>;
    /// Whether the trail can take records now: `Err` (e.g. [`Error::AuditNoSpace`] when the
    /// journal's disk budget is used up) makes the audit filter refuse requests before they
    /// are signed and `/ready` answer 503. Called on every request thread: one atomic read,
    /// never blocking.
    fn writable(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Whether the trail is below its disk budget's warning watermark. Records no token
    /// depends on (HTTP-level refusals) are written only then, so a flood of them cannot
    /// bring the journal to the point where requests are refused. One atomic read.
    fn roomy(&self) -> bool {
        true
    }
    /// Refuses new records, commits what is queued and stops (graceful shutdown); false
    /// when something could not be committed.
    fn flush_and_stop(&self) -> bool {
        true
    }
    /// Appends Prometheus text for `GET /metrics`.
    fn metrics(&self, _out: &mut String) {}
    /// Called once by each frontend core at its start, on its thread, with the core's
    /// index: from then on the records of the requests this thread answers go to that
    /// core's audit shard. Gives the shard's committer for the core to run on its runtime
    /// until the trail stops (`None`: nothing to run there, e.g. a sink with no shards,
    /// or committers on threads of their own); the core waits for it before its thread
    /// ends, so the last batch is committed by the ring that wrote the others.
    fn attach(
        &self,
        _core: usize,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> {
        None
    }
    /// Where the trail is and how far it has come, for the admin dashboard (reads a few
    /// shared values and lists the journal directory: not for the request path).
    fn status(&self) -> TrailStatus {
        TrailStatus::default()
    }
}

/// What [`AuditSink::status`] tells the admin dashboard.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TrailStatus {
    /// `journal`, `postgres` (direct), or `none` (records discarded or kept in memory).
    pub store: &'static str,
    /// The journal's directory.
    pub dir: Option<String>,
    /// The journal's shards that take records (one per frontend core).
    pub shards: Vec<ShardStatus>,
}

/// One audit shard in [`TrailStatus`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardStatus {
    /// Its number (0: the journal directory itself; N: `shard-N` in it).
    pub shard: usize,
    /// Its directory.
    pub dir: String,
    /// Its journal id (random, made with it; `journal` in PostgreSQL's rows).
    pub journal: u64,
    /// The sequence number of its last committed frame.
    pub head_seq: u64,
    /// Its hash chain's value after that frame, hex.
    pub head_hash: String,
    /// Its segment files.
    pub segments: usize,
}

/// Drops every record (`store = "none"`, for benchmarks only).
#[derive(Debug, Default)]
pub struct Discard;

impl AuditSink for Discard {
    fn submit(&self, _record: Record, _durable: bool) -> Result<Option<Durable>, Full> {
        Ok(None)
    }

    fn event(&self, _event: Event) -> Result<Option<Durable>, Full> {
        Ok(None)
    }
}

/// Keeps every record (and, apart, every event) in memory, durable at once (unit tests).
#[derive(Debug, Default)]
pub struct Memory(pub Mutex<Vec<Record>>, pub Mutex<Vec<Event>>);

impl AuditSink for Memory {
    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full> {
        self.0.lock().map_err(|_| Full)?.push(record);
        Ok(durable.then(|| {
            let (tx, rx) = futures_channel::oneshot::channel();
            let _ = tx.send(true);
            rx
        }))
    }

    fn event(&self, event: Event) -> Result<Option<Durable>, Full> {
        self.1.lock().map_err(|_| Full)?.push(event);
        Ok(None)
    }
}
