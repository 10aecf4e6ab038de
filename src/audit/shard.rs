//! The sharded journal: one audit shard per frontend core, so the trail has no serial stage
//! and a record never crosses a thread (DESIGN.md, "thread-per-core frontends write audit
//! records asynchronously in batches").
//!
//! ```text
//! stampd-core-N: request task ──push──▶ shard N's inbox ──▶ committer task (same core)
//!                                                         frames, CRC, SHA-256 chain,
//!                                                         write + fdatasync on the core's
//!                                                         io_uring, then the waiters
//! ```
//!
//! Each shard is a whole journal ([`Journal`]: its own directory, segments, journal id, hash
//! chain, lock, torn-tail repair and checkpoints), committed by a task on its core's runtime:
//! the core appends the records of the requests it answers to its shard's inbox (an
//! uncontended lock, no wake-up while the committer sleeps out its interval), and the
//! committer writes the batch through the core's ring, so the core goes on serving while
//! the disk works, and releases the waiters (same-thread wakes). Pacing follows the single
//! writer's rule, per shard: an idle shard commits at once; a busy one at most once per
//! `interval_us`, sooner when a batch fills (`max_records`, `max_bytes`).
//!
//! Who writes where:
//! * a frontend core's requests (inline dispatch): its own shard;
//! * requests handed to backend workers (queue dispatch): the worker runs the audit filter
//!   [`on_behalf_of`] the core that owns the request, so its record joins that core's shard;
//! * the TSA's own events (clock synchronisation, reload, administrator actions) come from
//!   other threads and go to shard 0.
//!
//! Under the epoll driver a core cannot wait for the disk without stopping, so each shard's
//! committer runs on a thread of its own (`stampd-audit-N`) instead, with the same code.
//!
//! Shards left from a run with more cores are opened too (their locks, torn tails and
//! damage are checked like the others') and shipped until empty, but take no new records.

use std::cell::Cell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::journal::budget::{DiskBudget, State as BudgetState};
use super::journal::{self, Journal, Progress, Ring};
use super::record::{Entry, Event, Record};
use super::writer::Limits;
use super::{AuditSink, Durable, Full, TrailStatus};
use crate::error::Error;

/// How long an idle shard waits before its housekeeping (while the disk budget is full it
/// is measured again, so freed space is noticed without traffic).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Longest a shutdown waits for every shard to commit what is queued.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

thread_local! {
    /// The shard this thread's records go to: set on a frontend core by
    /// [`AuditSink::attach`], and by a backend worker for the request it runs.
    static HOME: Cell<Option<usize>> = const { Cell::new(None) };
    /// While set ([`capturing`]), this thread's records are kept here instead of queued.
    static CAPTURE: std::cell::RefCell<Option<Vec<Record>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the records this thread submits kept aside instead of queued, and gives
/// them back with its result: a journal anchoring a checkpoint issues a token inside its
/// own commit, and writes that token's record in the same batch as the checkpoint holding
/// it (both durable together), where queuing it would leave it for the next batch.
pub fn capturing<T>(f: impl FnOnce() -> T) -> (T, Vec<Record>) {
    let before = CAPTURE.with(|c| c.replace(Some(Vec::new())));
    let result = f();
    let records = CAPTURE.with(|c| c.replace(before)).unwrap_or_default();
    (result, records)
}

/// `record`, unless [`capturing`] took it.
fn uncaptured(record: Record) -> Option<Record> {
    CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(kept) => {
            kept.push(record);
            None
        }
        None => Some(record),
    })
}

/// The shard of the calling thread (a frontend core's), for handing a request to a worker.
pub fn home() -> Option<usize> {
    HOME.with(Cell::get)
}

/// Runs `f` (a backend worker issuing a request) with its records going to `shard`, the
/// shard of the core that owns the request.
pub fn on_behalf_of<R>(shard: Option<usize>, f: impl FnOnce() -> R) -> R {
    let before = HOME.with(|h| h.replace(shard));
    let r = f();
    HOME.with(|h| h.set(before));
    r
}

/// Where the committers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the frontend cores' io_uring runtimes (each core runs its shard's committer).
    Cores,
    /// On one thread per shard (the epoll driver: a core would stop for every fdatasync).
    Threads,
}

/// What waits in a shard for its next batch.
#[derive(Default)]
struct Inbox {
    entries: Vec<Entry>,
    /// One per entry: the group-commit waiter, or none (async).
    acks: Vec<Option<oneshot::Sender<bool>>>,
    bytes: usize,
    /// The committer, while it waits for records or for a batch to fill.
    waker: Option<Waker>,
    /// It is sleeping out the interval: wake it only for a full batch.
    pacing: bool,
    /// Refusing records: the stop has begun.
    stopping: bool,
    /// Told once everything queued at the stop is committed (`false`: not all of it).
    stopped: Option<std::sync::mpsc::Sender<bool>>,
}

#[derive(Debug, Default)]
struct Stats {
    records: AtomicU64,
    batches: AtomicU64,
    failed_records: AtomicU64,
    commit_ns: AtomicU64,
    refused: AtomicU64,
}

/// One core's shard: its inbox and, until its committer starts, its journal.
struct Shard {
    index: usize,
    inbox: Mutex<Inbox>,
    journal: Mutex<Option<Journal>>,
    progress: Arc<Progress>,
    dir: PathBuf,
    stats: Stats,
    limits: Limits,
    /// A committer has been started for it.
    attached: AtomicBool,
}

impl Shard {
    /// Queues one entry (never blocks: an uncontended lock on its own core), waking the
    /// committer when it waits for work, or for a full batch while it paces.
    fn push(&self, entry: Entry, ack: Option<oneshot::Sender<bool>>) -> Result<(), Full> {
        let waker = {
            let Ok(mut inbox) = self.inbox.lock() else {
                return Err(Full);
            };
            if inbox.stopping || inbox.entries.len() >= self.limits.queue_capacity {
                drop(inbox);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Full);
            }
            inbox.bytes += entry.encoded_len();
            inbox.entries.push(entry);
            inbox.acks.push(ack);
            let full = inbox.entries.len() >= self.limits.max_records
                || inbox.bytes >= self.limits.max_bytes;
            if !inbox.pacing || full {
                inbox.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Waits until records wait (`full`: until a batch is full) or the stop begins.
    async fn wait(&self, full: bool) {
        std::future::poll_fn(|cx| {
            let Ok(mut inbox) = self.inbox.lock() else {
                return Poll::Ready(());
            };
            let enough = if full {
                inbox.entries.len() >= self.limits.max_records
                    || inbox.bytes >= self.limits.max_bytes
            } else {
                !inbox.entries.is_empty()
            };
            if enough || inbox.stopping {
                inbox.waker = None;
                inbox.pacing = false;
                Poll::Ready(())
            } else {
                inbox.waker = Some(cx.waker().clone());
                inbox.pacing = full;
                Poll::Pending
            }
        })
        .await
    }

    /// Whether records wait in the inbox.
    fn waiting(&self) -> bool {
        self.inbox.lock().is_ok_and(|i| !i.entries.is_empty())
    }

    /// Moves the next batch (at most the limits) out of the inbox; also says whether more
    /// is waiting, and whether the stop has begun.
    fn take(
        &self,
        batch: &mut Vec<Entry>,
        acks: &mut Vec<Option<oneshot::Sender<bool>>>,
    ) -> (bool, bool) {
        let Ok(mut inbox) = self.inbox.lock() else {
            return (false, true);
        };
        let mut n = 0;
        let mut bytes = 0;
        while n < inbox.entries.len()
            && n < self.limits.max_records
            && bytes < self.limits.max_bytes
        {
            bytes += inbox.entries[n].encoded_len();
            n += 1;
        }
        if n == inbox.entries.len() {
            std::mem::swap(batch, &mut inbox.entries);
            std::mem::swap(acks, &mut inbox.acks);
        } else {
            batch.extend(inbox.entries.drain(..n));
            acks.extend(inbox.acks.drain(..n));
        }
        inbox.bytes -= bytes;
        (!inbox.entries.is_empty(), inbox.stopping)
    }

    /// The committer: batches, commits and releases waiters until the stop, then commits
    /// what is left and says so.
    async fn commit_loop(self: Arc<Self>, mut journal: Journal) {
        let mut ring = Ring::default();
        let mut batch = Vec::with_capacity(self.limits.max_records);
        let mut acks = Vec::with_capacity(self.limits.max_records);
        let mut last_start: Option<Instant> = None;
        let mut backlog = false;
        // Records arrived while the previous batch was being committed, or nobody waited
        // for it (async): the next commit keeps the interval.
        let mut pace = false;
        let mut all_ok = true;
        loop {
            if !backlog {
                if monoio::time::timeout(IDLE_TICK, self.wait(false))
                    .await
                    .is_err()
                {
                    journal.reclaim();
                    continue;
                }
                // Paced from the previous commit's start: under load (or async) the batch
                // takes what arrives until one interval after the previous commit began. A
                // shard that was idle while its previous batch was committed commits at once:
                // a lone requester, or one sending back to back over one connection, waits
                // one fdatasync and not the interval. The runtime's timer counts whole
                // milliseconds, so a paced wait lasts at least the interval and up to about
                // 1 ms more.
                if let Some(at) = last_start.filter(|_| pace) {
                    let now = Instant::now();
                    let deadline = at + self.limits.interval;
                    if deadline > now {
                        let _ = monoio::time::timeout(deadline - now, self.wait(true)).await;
                    }
                }
            }
            let (more, stopping) = self.take(&mut batch, &mut acks);
            // Full, and more waiting: the next batch starts at once.
            backlog = more;
            if !batch.is_empty() {
                last_start = Some(Instant::now());
                let waited = acks.iter().any(Option::is_some);
                let (ok, busy) = self
                    .commit(&mut journal, &mut ring, &mut batch, &mut acks)
                    .await;
                all_ok &= ok || !stopping;
                pace = !waited || busy;
            }
            if stopping && !more {
                break;
            }
        }
        // The journal's lock goes before the stop is told: whoever waited for the stop may
        // open the journal again at once (a restart in-process, a test).
        drop(ring);
        drop(journal);
        if let Ok(mut inbox) = self.inbox.lock() {
            if let Some(done) = inbox.stopped.take() {
                let _ = done.send(all_ok);
            }
        }
    }

    /// Commits one batch and releases its waiters. Says whether it succeeded, and whether
    /// records arrived while it was committed (looked at before the waiters are released,
    /// so a requester's next record, sent once its reply is out, does not count).
    async fn commit(
        &self,
        journal: &mut Journal,
        ring: &mut Ring,
        batch: &mut Vec<Entry>,
        acks: &mut Vec<Option<oneshot::Sender<bool>>>,
    ) -> (bool, bool) {
        let started = Instant::now();
        let result = journal.append(ring, batch).await;
        let s = &self.stats;
        s.commit_ns.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        s.batches.fetch_add(1, Ordering::Relaxed);
        let ok = match result {
            Ok(()) => {
                s.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                s.failed_records
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                // Group-commit requesters get systemFailure; async records are lost, and
                // this line is the evidence.
                tracing::error!(shard = self.index, records = batch.len(), error = %e, "audit batch not committed");
                false
            }
        };
        let busy = self.waiting();
        for ack in acks.drain(..).flatten() {
            let _ = ack.send(ok);
        }
        batch.clear();
        // Rotation after the waiters are released: a failure there fails no batch.
        journal.rotate_if_full();
        (ok, busy)
    }

    /// The journal, for the one committer: `None` once one has it.
    fn claim(&self) -> Option<Journal> {
        if self.attached.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.journal.lock().ok()?.take()
    }

    /// The committer future for a core's runtime, once.
    fn committer(self: &Arc<Self>) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
        let journal = self.claim()?;
        Some(Box::pin(self.clone().commit_loop(journal)))
    }

    /// The committer on a thread of its own (`stampd-audit-N`), once.
    fn spawn_committer(self: &Arc<Self>) -> std::io::Result<()> {
        let Some(journal) = self.claim() else {
            return Ok(());
        };
        let shard = self.clone();
        std::thread::Builder::new()
            .name(format!("stampd-audit-{}", self.index))
            .spawn(move || run_alone(shard.commit_loop(journal)))
            .map(drop)
    }
}

/// The sharded journal trail: the [`AuditSink`] of `store = "journal"`.
pub struct Shards {
    shards: Vec<Arc<Shard>>,
    /// Shards of an earlier run with more cores: read and shipped, never written.
    retired: Vec<(usize, Journal)>,
    placement: Placement,
    shipper: Option<super::postgres::ShipperHandle>,
    budget: Arc<DiskBudget>,
    dir: PathBuf,
}

/// How long a stopping server waits for the shipper to catch up.
const SHIP_AT_STOP: Duration = Duration::from_secs(5);

impl Shards {
    /// The trail over `journals` (shard index and its opened journal): the first `active`
    /// take records, the others are retired. With [`Placement::Threads`] the committers
    /// start here; with [`Placement::Cores`] each core starts its own ([`AuditSink::attach`]).
    pub fn start(
        journals: Vec<(usize, Journal)>,
        active: usize,
        limits: Limits,
        placement: Placement,
        budget: Arc<DiskBudget>,
        dir: PathBuf,
    ) -> std::io::Result<Shards> {
        let mut shards = Vec::new();
        let mut retired = Vec::new();
        for (index, journal) in journals {
            if index >= active {
                retired.push((index, journal));
                continue;
            }
            shards.push(Arc::new(Shard {
                index,
                progress: journal.progress(),
                dir: journal.dir().to_path_buf(),
                journal: Mutex::new(Some(journal)),
                inbox: Mutex::default(),
                stats: Stats::default(),
                limits,
                attached: AtomicBool::new(false),
            }));
        }
        if placement == Placement::Threads {
            for s in &shards {
                s.spawn_committer()?;
            }
        }
        Ok(Shards {
            shards,
            retired,
            placement,
            shipper: None,
            budget,
            dir,
        })
    }

    /// Ships every shard (the active and the retired) with `shipper`.
    pub fn with_shipper(mut self, shipper: super::postgres::ShipperHandle) -> Shards {
        self.shipper = Some(shipper);
        self
    }

    /// Every shard's directory and progress, for the shipper.
    pub fn progress(&self) -> Vec<(usize, PathBuf, Arc<Progress>)> {
        self.shards
            .iter()
            .map(|s| (s.index, s.dir.clone(), s.progress.clone()))
            .chain(
                self.retired
                    .iter()
                    .map(|(n, j)| (*n, j.dir().to_path_buf(), j.progress())),
            )
            .collect()
    }

    fn shard_for_records(&self) -> &Shard {
        let home = home().unwrap_or(0);
        &self.shards[home % self.shards.len()]
    }
}

/// Runs one committer on a runtime of its own (the epoll placement, and a stop that finds
/// a shard whose core never started).
fn run_alone(task: impl Future<Output = ()>) {
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(task),
        Err(e) => tracing::error!(error = %e, "cannot build the audit shard's runtime"),
    }
}

impl AuditSink for Shards {
    fn submit(&self, record: Record, durable: bool) -> Result<Option<Durable>, Full> {
        let Some(record) = uncaptured(record) else {
            return Ok(None);
        };
        let (ack, wait) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.shard_for_records()
            .push(Entry::Request(record), ack)
            .map(|()| wait)
    }

    fn event(&self, event: Event) -> Result<Option<Durable>, Full> {
        let (tx, rx) = oneshot::channel();
        self.shards[0]
            .push(Entry::Event(event), Some(tx))
            .map(|()| Some(rx))
    }

    fn attach(&self, core: usize) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
        let index = core % self.shards.len();
        HOME.with(|h| h.set(Some(index)));
        match self.placement {
            Placement::Cores => self.shards[index].committer(),
            Placement::Threads => None,
        }
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
        let mut waits = Vec::new();
        for s in &self.shards {
            let (tx, rx) = std::sync::mpsc::channel();
            let waker = match s.inbox.lock() {
                Ok(mut inbox) => {
                    // From now on records are refused (503): none lands after the last batch.
                    inbox.stopping = true;
                    inbox.stopped = Some(tx);
                    inbox.waker.take()
                }
                Err(_) => None,
            };
            if let Some(w) = waker {
                w.wake();
            }
            // A shard whose core never started its committer: commit it on a thread.
            if let Err(e) = s.spawn_committer() {
                tracing::error!(shard = s.index, error = %e, "cannot start a thread to commit the audit shard");
            }
            waits.push(rx);
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        let flushed = waits.iter().all(|rx| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or(false)
        });
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
        use std::fmt::Write;
        let sum = |f: fn(&Stats) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(&s.stats).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let depth: usize = self
            .shards
            .iter()
            .map(|s| s.inbox.lock().map_or(0, |i| i.entries.len()))
            .sum();
        let _ = write!(
            out,
            "# TYPE stampd_audit_records_total counter\nstampd_audit_records_total {}\n\
             # TYPE stampd_audit_batches_total counter\nstampd_audit_batches_total {}\n\
             # TYPE stampd_audit_failed_records_total counter\nstampd_audit_failed_records_total {}\n\
             # TYPE stampd_audit_refused_total counter\nstampd_audit_refused_total {}\n\
             # TYPE stampd_audit_commit_seconds_total counter\nstampd_audit_commit_seconds_total {:.6}\n\
             # TYPE stampd_audit_queue_depth gauge\nstampd_audit_queue_depth {depth}\n\
             # TYPE stampd_audit_shards gauge\nstampd_audit_shards {}\n\
             # TYPE stampd_audit_journal_seq gauge\n",
            sum(|s| &s.records),
            sum(|s| &s.batches),
            sum(|s| &s.failed_records),
            sum(|s| &s.refused),
            sum(|s| &s.commit_ns) as f64 / 1e9,
            self.shards.len(),
        );
        for s in &self.shards {
            let seq = s.progress.committed_seq.load(Ordering::Acquire);
            let _ = writeln!(
                out,
                "stampd_audit_journal_seq{{shard=\"{}\"}} {seq}",
                s.index
            );
        }
        self.budget.metrics(out);
        if let Some(s) = &self.shipper {
            s.metrics(out);
        }
    }

    fn status(&self) -> TrailStatus {
        let shards = self
            .shards
            .iter()
            .map(|s| super::sink::ShardStatus {
                shard: s.index,
                dir: s.dir.display().to_string(),
                journal: s.progress.journal_id,
                head_seq: s.progress.committed_seq.load(Ordering::Acquire),
                head_hash: s
                    .progress
                    .head_hash
                    .lock()
                    .map(|h| crate::protocol::hex::hex(&*h))
                    .unwrap_or_default(),
                segments: journal::segments(&s.dir).map_or(0, |v| v.len()),
            })
            .collect();
        TrailStatus {
            store: "journal",
            dir: Some(self.dir.display().to_string()),
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::journal::tests::settings;
    use crate::audit::record::tests::sample;

    fn limits(records: usize, interval_ms: u64) -> Limits {
        Limits {
            max_records: records,
            max_bytes: 1 << 20,
            interval: Duration::from_millis(interval_ms),
            queue_capacity: 1024,
        }
    }

    fn trail(dir: &std::path::Path, active: usize, l: Limits, placement: Placement) -> Shards {
        let s = settings(dir);
        let budget = s.budget.clone();
        let journals = (0..active)
            .map(|i| {
                let mut s = s.clone();
                s.dir = journal::shard_dir(dir, i);
                (i, Journal::open(s).unwrap().0)
            })
            .collect();
        Shards::start(journals, active, l, placement, budget, dir.to_path_buf()).unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn each_core_writes_its_own_shard_and_workers_write_their_cores() {
        let tmp = tempfile::tempdir().unwrap();
        let t = Arc::new(trail(tmp.path(), 2, limits(100, 0), Placement::Cores));
        // Two "cores": threads with a runtime each, attached like frontend cores.
        let (done, submitted) = std::sync::mpsc::channel();
        let cores: Vec<_> = (0..2)
            .map(|core| {
                let (t, done) = (t.clone(), done.clone());
                std::thread::spawn(move || {
                    block_on(async {
                        let committer = monoio::spawn(t.attach(core).unwrap());
                        for n in 0..5 {
                            let d = t.submit(sample(core as u64 * 100 + n), true).unwrap();
                            assert_eq!(d.unwrap().await, Ok(true));
                        }
                        done.send(()).unwrap();
                        // Runs until the trail stops, as on a frontend core.
                        committer.await;
                    })
                })
            })
            .collect();
        for _ in 0..2 {
            submitted.recv().unwrap();
        }
        // A worker issuing for core 1; an event from elsewhere goes to shard 0.
        let wait = on_behalf_of(Some(1), || t.submit(sample(999), true).unwrap().unwrap());
        assert_eq!(block_on(wait), Ok(true));
        let ev = t.event(sample_event()).unwrap().unwrap();
        assert_eq!(block_on(ev), Ok(true));
        assert!(t.flush_and_stop());
        for c in cores {
            c.join().unwrap();
        }
        let serials = |shard| -> Vec<u64> {
            journal::tests::records(&journal::shard_dir(tmp.path(), shard))
                .iter()
                .map(|r| (r.time.unix_secs - 1_795_000_000) as u64)
                .collect()
        };
        assert_eq!(serials(0), vec![0, 1, 2, 3, 4]);
        let mut one = serials(1);
        one.sort_unstable();
        assert_eq!(one, vec![100, 101, 102, 103, 104, 999]);
        for shard in 0..2 {
            let v = journal::verify(&journal::shard_dir(tmp.path(), shard)).unwrap();
            assert!(v.broken.is_none(), "{v:?}");
        }
        assert_eq!(journal::verify(tmp.path()).unwrap().events, 1);
    }

    fn sample_event() -> Event {
        Event::now(
            "clock",
            "synchronised",
            "test".into(),
            &serde_json::json!({}),
        )
    }

    #[test]
    fn a_busy_shard_is_paced_and_a_full_batch_wakes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let t = Arc::new(trail(tmp.path(), 1, limits(4, 10_000), Placement::Threads));
        let started = Instant::now();
        let batches = || t.shards[0].stats.batches.load(Ordering::Relaxed);
        let until_batches = |n| {
            while batches() < n {
                assert!(started.elapsed() < Duration::from_secs(5), "{}", batches());
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // An async record: nobody waited for its batch, so the next commit keeps the
        // interval (10 s)...
        assert!(t.submit(sample(0), false).unwrap().is_none());
        until_batches(1);
        // ...unless a batch fills: four records wake the committer at once.
        let waits: Vec<_> = (1..=4)
            .map(|n| t.submit(sample(n), true).unwrap().unwrap())
            .collect();
        for rx in waits {
            assert_eq!(block_on(rx), Ok(true));
        }
        assert_eq!(batches(), 2);
        // Nothing arrived while that batch was committed: the shard is idle, and the next
        // record is committed at once, not an interval later (one requester waits one
        // fdatasync).
        assert_eq!(
            block_on(t.submit(sample(5), true).unwrap().unwrap()),
            Ok(true)
        );
        assert_eq!(batches(), 3);
        // After another async batch, a record waits out the interval; the stop brings its
        // commit forward.
        assert!(t.submit(sample(6), false).unwrap().is_none());
        until_batches(4);
        let mut last = t.submit(sample(7), true).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(last.try_recv(), Ok(None), "paced: not committed yet");
        assert!(t.flush_and_stop());
        assert_eq!(block_on(last), Ok(true));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(batches(), 5);
        assert!(
            t.submit(sample(8), false).is_err(),
            "a stopped trail refuses"
        );
    }

    #[test]
    fn a_full_inbox_refuses_and_a_shard_whose_core_never_came_is_flushed_at_the_stop() {
        let tmp = tempfile::tempdir().unwrap();
        let mut l = limits(100, 0);
        l.queue_capacity = 3;
        let t = trail(tmp.path(), 1, l, Placement::Cores);
        let accepted = (0..5)
            .filter(|&n| t.submit(sample(n), false).is_ok())
            .count();
        assert_eq!(accepted, 3);
        assert!(t.flush_and_stop());
        assert_eq!(journal::tests::records(tmp.path()).len(), 3);
    }

    #[test]
    fn retired_shards_are_kept_for_shipping_but_take_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trail(tmp.path(), 3, limits(100, 0), Placement::Threads);
        assert!(t.flush_and_stop());
        drop(t);
        // Fewer cores now: shard 2 is retired.
        let s = settings(tmp.path());
        let journals = (0..3)
            .map(|i| {
                let mut s = s.clone();
                s.dir = journal::shard_dir(tmp.path(), i);
                (i, Journal::open(s).unwrap().0)
            })
            .collect();
        let t = Shards::start(
            journals,
            2,
            limits(100, 0),
            Placement::Threads,
            s.budget.clone(),
            tmp.path().into(),
        )
        .unwrap();
        assert_eq!((t.shards.len(), t.retired.len()), (2, 1));
        assert_eq!(t.progress().len(), 3);
        assert!(t.flush_and_stop());
    }
}
