//! The audit writer of `store = "postgres"`: a thread that takes records from a bounded
//! queue, commits them in batches to its [`Store`] (one PostgreSQL transaction), then
//! releases the group-commit waiters of that batch. (The journal has no writer thread: each
//! frontend core commits its own shard, `shard.rs`, with the same pacing rule.)
//!
//! Commits are paced, not delayed: a commit starts at least `interval` after the previous
//! one started. A record that finds the writer idle and the interval passed is committed at
//! once (light traffic pays one fdatasync of latency, not a batching delay); records that
//! arrive sooner, or during a commit, wait for the next one and share it. So there is at
//! most one fdatasync per interval, which bounds the sync rate the disk sees under load. A
//! batch also closes at `max_records` (the submitter that fills it wakes the writer) or
//! `max_bytes`; while batches fill and more records wait (a backlog), commits
//! follow each other without pacing, since pacing would only grow the queue.
//!
//! When the queue is full, [`Writer::submit`] refuses at once (the caller answers 503): a
//! frontend core never blocks on the audit trail, and no record is dropped silently.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use futures_channel::oneshot;

use super::record::{Entry, Event, Record};
use super::{AuditSink, Durable, Full};

/// Longest a shutdown waits for the writer to commit what is queued.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// Where a batch goes: PostgreSQL directly ([`DirectStore`](super::postgres::DirectStore)),
/// or a test's store.
///
/// Contract:
/// * **Callers and thread.** [`Writer::start`] moves the store into the `stampd-audit`
///   thread, which owns it alone (`&mut self`, no lock): every method runs there, one call
///   at a time, never on a frontend core or worker. So a store may block: on the database
///   (one transaction, with its own deadline: `DirectStore` gives up after 10 s). While it blocks, records queue up to
///   `queue_capacity` and further requests are refused with 503.
/// * **commit.** Called once per batch, in order, with at least one record. `Ok` means the
///   whole batch is durable: the writer then releases its group-commit waiters with `true`.
///   `Err` means none of it may be counted on: the waiters get `false` (their tokens are
///   withheld, the requesters get `systemFailure`), async records of the batch are lost and
///   the error is logged. The writer goes on with the next batch, so a store decides
///   whether it can recover (PostgreSQL reconnects).
pub trait Store: Send + 'static {
    /// Makes the whole batch durable, or none of it.
    fn commit(&mut self, batch: &[Entry]) -> Result<(), String>;
}

/// Batch limits (`[audit.batch]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A batch closes at this many records (`max_records`, default 1024).
    pub max_records: usize,
    /// ... or once its records' encoded size reaches this many bytes (`max_bytes`, default
    /// 4 MiB).
    pub max_bytes: usize,
    /// Least time between the starts of two commits.
    pub interval: Duration,
    /// Records the queue holds before `submit` refuses (`queue_capacity`, default 16,384).
    pub queue_capacity: usize,
}

// Records travel by value through the channel's preallocated slots: boxing them would add
// an allocation per request to save queue memory (capacity × ~250 bytes).
#[allow(
    clippy::large_enum_variant,
    reason = "records travel by value; boxing adds an allocation per request"
)]
enum Msg {
    /// A record or event and its group-commit waiter.
    Entry(Entry, Option<oneshot::Sender<bool>>),
    /// Commit what is queued, then stop and say so.
    Stop(std::sync::mpsc::Sender<()>),
}

#[derive(Debug, Default)]
struct Stats {
    records: AtomicU64,
    batches: AtomicU64,
    failed_records: AtomicU64,
    commit_ns: AtomicU64,
    refused: AtomicU64,
}

/// The handle to the audit writer: submissions go through a bounded channel to the
/// `stampd-audit` thread, which batches and commits them to its [`Store`]. Cheap to call
/// from any thread; dropping it ends the thread once the queue drains.
pub struct Writer {
    tx: Sender<Msg>,
    stopped: AtomicBool,
    /// Submissions between the stop check and the queue.
    in_flight: AtomicUsize,
    stats: Arc<Stats>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, to wake it from its pacing sleep.
    writer: std::thread::Thread,
    max_records: usize,
}

impl Writer {
    /// Starts the `stampd-audit` thread over `store` with `limits`; fails only when the
    /// thread cannot be spawned.
    pub fn start(store: impl Store, limits: Limits) -> std::io::Result<Writer> {
        let (tx, rx) = crossbeam_channel::bounded(limits.queue_capacity.max(1));
        let stats = Arc::new(Stats::default());
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("stampd-audit".into())
                .spawn(move || run(store, limits, &rx, &stats))?
        };
        Ok(Writer {
            tx,
            stopped: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            stats,
            writer: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
            max_records: limits.max_records,
        })
    }
}

impl Writer {
    /// Queues `m` unless stopping or full.
    fn send(&self, m: Msg) -> Result<(), Full> {
        // Counted in flight before the stop flag is read: a stop waits for every
        // submission that got past the flag, so none lands after the last batch.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = if self.stopped.load(Ordering::SeqCst) {
            Err(Full)
        } else {
            self.tx.try_send(m).map_err(|e| match e {
                TrySendError::Full(_) | TrySendError::Disconnected(_) => Full,
            })
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match sent {
            // A full batch is waiting: the writer need not sleep out the interval.
            Ok(()) if self.tx.len() >= self.max_records => self.writer.unpark(),
            Ok(()) => {}
            Err(Full) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        sent
    }
}

impl AuditSink for Writer {
    /// A writer serves the sink itself only in front of PostgreSQL (`store = "postgres"`);
    /// the journal's is wrapped with its shipper.
    fn status(&self) -> super::TrailStatus {
        super::TrailStatus {
            store: "postgres",
            ..Default::default()
        }
    }

    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full> {
        let (ack, wait) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.send(Msg::Entry(Entry::Request(record), ack))
            .map(|()| wait)
    }

    fn event(&self, event: Event) -> Result<Option<Durable>, Full> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Entry(Entry::Event(event), Some(tx)))
            .map(|()| Some(rx))
    }

    fn flush_and_stop(&self) -> bool {
        // From now on records are refused (503): none can slip in after the last batch.
        self.stopped.store(true, Ordering::SeqCst);
        let settled = Instant::now() + Duration::from_secs(1);
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < settled {
            std::thread::yield_now();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = self.tx.send_timeout(Msg::Stop(tx), STOP_DEADLINE).is_ok();
        // Do not wait out the commit interval.
        self.writer.unpark();
        let stopped = sent && rx.recv_timeout(STOP_DEADLINE).is_ok();
        if stopped {
            if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = t.join();
            }
        }
        stopped
    }

    fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# TYPE stampd_audit_records_total counter\nstampd_audit_records_total {}\n\
             # TYPE stampd_audit_batches_total counter\nstampd_audit_batches_total {}\n\
             # TYPE stampd_audit_failed_records_total counter\nstampd_audit_failed_records_total {}\n\
             # TYPE stampd_audit_refused_total counter\nstampd_audit_refused_total {}\n\
             # TYPE stampd_audit_commit_seconds_total counter\nstampd_audit_commit_seconds_total {:.6}\n\
             # TYPE stampd_audit_queue_depth gauge\nstampd_audit_queue_depth {}\n",
            load(&s.records),
            load(&s.batches),
            load(&s.failed_records),
            load(&s.refused),
            load(&s.commit_ns) as f64 / 1e9,
            self.tx.len(),
        );
    }
}

/// Adds a message to the batch, or notes the stop request.
fn take(
    m: Msg,
    batch: &mut Vec<Entry>,
    acks: &mut Vec<oneshot::Sender<bool>>,
    bytes: &mut usize,
    stop: &mut Option<std::sync::mpsc::Sender<()>>,
) {
    match m {
        Msg::Entry(r, ack) => {
            *bytes += r.encoded_len();
            batch.push(r);
            acks.extend(ack);
        }
        Msg::Stop(done) => *stop = Some(done),
    }
}

fn run(mut store: impl Store, limits: Limits, rx: &Receiver<Msg>, stats: &Stats) {
    let mut batch = Vec::with_capacity(limits.max_records);
    let mut acks = Vec::with_capacity(limits.max_records);
    let mut stop: Option<std::sync::mpsc::Sender<()>> = None;
    // Whether everything queued at the stop was committed.
    let mut stop_ok = true;
    let mut last_start: Option<Instant> = None;
    // The previous batch closed full.
    let mut backlog = false;
    loop {
        // Stopping: drain what is queued, batch by batch, without waiting.
        let first = if stop.is_some() {
            match rx.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        // Paced from the previous commit's start: after a quiet spell the deadline has
        // passed and the batch closes with what is queued now; under load the batch takes
        // everything that arrives until one interval after the previous commit began.
        let deadline = match last_start {
            Some(at) if stop.is_none() && !backlog => at + limits.interval,
            _ => Instant::now(),
        };
        let mut bytes = 0usize;
        take(first, &mut batch, &mut acks, &mut bytes, &mut stop);
        while stop.is_none() && batch.len() < limits.max_records && bytes < limits.max_bytes {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch, &mut acks, &mut bytes, &mut stop),
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    // Sleep until the deadline (thread park, not a wait on the channel): a
                    // receiver waiting on the channel costs every submitter a futex wake-up,
                    // and each wake-up of this thread takes a core from the frontends. A
                    // submitter that fills a batch, or a stop request, unparks it early.
                    std::thread::park_timeout(deadline - now);
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        // Full, and more waiting: the next batch starts at once.
        backlog =
            (batch.len() >= limits.max_records || bytes >= limits.max_bytes) && !rx.is_empty();
        if !batch.is_empty() {
            last_start = Some(Instant::now());
            let ok = commit(&mut store, &mut batch, &mut acks, stats);
            if stop.is_some() {
                stop_ok &= ok;
            }
        }
    }
    if let Some(done) = stop {
        if stop_ok {
            let _ = done.send(());
        }
    }
}

/// Commits one batch and releases its waiters; false when it failed.
fn commit(
    store: &mut impl Store,
    batch: &mut Vec<Entry>,
    acks: &mut Vec<oneshot::Sender<bool>>,
    stats: &Stats,
) -> bool {
    let started = Instant::now();
    let result = store.commit(batch);
    stats.commit_ns.fetch_add(
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    stats.batches.fetch_add(1, Ordering::Relaxed);
    let ok = match result {
        Ok(()) => {
            stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            true
        }
        Err(e) => {
            stats
                .failed_records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            // Group-commit requesters get systemFailure; async records are lost, and this
            // line is the evidence.
            tracing::error!(records = batch.len(), waiting = acks.len(), error = %e, "audit batch not committed");
            false
        }
    };
    for ack in acks.drain(..) {
        let _ = ack.send(ok);
    }
    batch.clear();
    ok
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::sample;
    use super::*;

    /// Records every batch; can be told to fail or to stall.
    #[derive(Clone, Default)]
    struct Batches {
        seen: Arc<Mutex<Vec<usize>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        gate: Arc<Mutex<()>>,
        /// Commits begun (before the gate).
        entered: Arc<AtomicUsize>,
    }

    impl Store for Batches {
        fn commit(&mut self, batch: &[Entry]) -> Result<(), String> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let _gate = self.gate.lock().unwrap();
            self.seen.lock().unwrap().push(batch.len());
            if self.fail.load(Ordering::SeqCst) {
                return Err("disk on fire".into());
            }
            Ok(())
        }
    }

    impl Batches {
        /// Holds the writer inside the commit of one record, so what is submitted next
        /// queues up behind it.
        fn stall_on_first(&self, w: &Writer) -> (std::sync::MutexGuard<'_, ()>, Durable) {
            let gate = self.gate.lock().unwrap();
            let first = w.submit(sample(100), true).unwrap().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.entered.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "the writer never began a commit");
                std::thread::yield_now();
            }
            (gate, first)
        }
    }

    fn limits(records: usize, bytes: usize, interval_ms: u64) -> Limits {
        Limits {
            max_records: records,
            max_bytes: bytes,
            interval: Duration::from_millis(interval_ms),
            queue_capacity: 1024,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The oneshot needs no I/O: a monoio runtime without a driver timer is enough.
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Submits `n` records behind a stalled commit, releases it, and returns the batches.
    fn batches_behind_a_stall(limits: Limits, n: u64) -> Vec<usize> {
        let store = Batches::default();
        let w = Writer::start(store.clone(), limits).unwrap();
        let (gate, first) = store.stall_on_first(&w);
        let waits: Vec<_> = (0..n)
            .map(|n| w.submit(sample(n), true).unwrap().unwrap())
            .collect();
        drop(gate);
        assert_eq!(block_on(first), Ok(true));
        for rx in waits {
            assert_eq!(block_on(rx), Ok(true));
        }
        let seen = store.seen.lock().unwrap().clone();
        seen
    }

    #[test]
    fn a_batch_closes_at_max_records_and_a_backlog_is_not_paced() {
        // A long interval: only the record limit can close the first batch, and a batch
        // closed full with more waiting lets the next (partial) one start at once: paced, it
        // would wait 10 s.
        let started = Instant::now();
        assert_eq!(
            batches_behind_a_stall(limits(4, 1 << 20, 10_000), 6),
            vec![1, 4, 2]
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_filled_batch_wakes_a_pacing_writer() {
        let store = Batches::default();
        let w = Writer::start(store.clone(), limits(4, 1 << 20, 10_000)).unwrap();
        let started = Instant::now();
        assert_eq!(
            block_on(w.submit(sample(0), true).unwrap().unwrap()),
            Ok(true)
        );
        // The writer sleeps until 10 s after that commit; the fifth record leaves a full
        // batch queued behind the one it holds, and wakes it.
        let waits: Vec<_> = (1..=5)
            .map(|n| w.submit(sample(n), true).unwrap().unwrap())
            .collect();
        for rx in waits {
            assert_eq!(block_on(rx), Ok(true));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(*store.seen.lock().unwrap(), vec![1, 4, 1]);
    }

    #[test]
    fn a_stop_does_not_wait_out_the_interval() {
        let store = Batches::default();
        let w = Writer::start(store.clone(), limits(100, 1 << 20, 10_000)).unwrap();
        assert_eq!(
            block_on(w.submit(sample(0), true).unwrap().unwrap()),
            Ok(true)
        );
        let started = Instant::now();
        assert!(w.submit(sample(1), false).unwrap().is_none());
        assert!(w.flush_and_stop());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(*store.seen.lock().unwrap(), vec![1, 1]);
    }

    #[test]
    fn a_batch_closes_at_max_bytes() {
        let one = sample(0).encoded_len();
        assert_eq!(
            batches_behind_a_stall(limits(100, 3 * one, 10_000), 6),
            vec![1, 3, 3]
        );
    }

    #[test]
    fn an_idle_writer_commits_at_once_and_commits_are_paced_by_the_interval() {
        let store = Batches::default();
        let interval = Duration::from_secs(1);
        let w = Writer::start(store.clone(), limits(100, 1 << 20, 1000)).unwrap();
        // Nothing committed before: at once.
        let started = Instant::now();
        assert_eq!(
            block_on(w.submit(sample(0), true).unwrap().unwrap()),
            Ok(true)
        );
        assert!(started.elapsed() < interval, "{:?}", started.elapsed());
        // Two more within the interval: one batch, no earlier than one interval after the
        // first commit began.
        let rx1 = w.submit(sample(1), true).unwrap().unwrap();
        let rx2 = w.submit(sample(2), true).unwrap().unwrap();
        assert_eq!(block_on(rx1), Ok(true));
        assert_eq!(block_on(rx2), Ok(true));
        assert!(started.elapsed() >= interval);
        assert_eq!(*store.seen.lock().unwrap(), vec![1, 2]);
        // After a quiet spell longer than the interval: at once again.
        std::thread::sleep(interval + Duration::from_millis(50));
        let quiet = Instant::now();
        assert_eq!(
            block_on(w.submit(sample(3), true).unwrap().unwrap()),
            Ok(true)
        );
        assert!(quiet.elapsed() < interval, "{:?}", quiet.elapsed());
        assert_eq!(*store.seen.lock().unwrap(), vec![1, 2, 1]);
    }

    #[test]
    fn group_commit_waits_for_the_store_and_learns_of_failure() {
        let store = Batches::default();
        let w = Writer::start(store.clone(), limits(10, 1 << 20, 0)).unwrap();
        let gate = store.gate.lock().unwrap();
        let mut rx = w.submit(sample(0), true).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // The store has not returned: the waiter is not released.
        assert_eq!(rx.try_recv(), Ok(None));
        drop(gate);
        assert_eq!(block_on(rx), Ok(true));
        store.fail.store(true, Ordering::SeqCst);
        let rx = w.submit(sample(1), true).unwrap().unwrap();
        assert_eq!(block_on(rx), Ok(false));
        // Async submissions have nothing to wait for.
        assert!(w.submit(sample(2), false).unwrap().is_none());
    }

    #[test]
    fn a_full_queue_refuses_and_stop_flushes() {
        let store = Batches::default();
        let mut l = limits(1, 1 << 20, 0);
        l.queue_capacity = 2;
        let w = Writer::start(store.clone(), l).unwrap();
        let gate = store.gate.lock().unwrap();
        let mut accepted = 0;
        let mut refused = 0;
        for n in 0..10 {
            match w.submit(sample(n), false) {
                Ok(_) => accepted += 1,
                Err(Full) => refused += 1,
            }
        }
        assert!(refused > 0 && accepted >= 2, "{accepted} {refused}");
        drop(gate);
        w.flush_and_stop();
        let seen: usize = store.seen.lock().unwrap().iter().sum();
        assert_eq!(seen, accepted);
        assert!(w.submit(sample(0), false).is_err());
    }
}
