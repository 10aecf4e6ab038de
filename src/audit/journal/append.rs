//! The write side: one batch is one `write` and one `fdatasync`, into a segment that is
//! allocated and zero-filled ahead; rotation to a new segment once one is full, and
//! retention of closed segments.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::budget::{DiskBudget, State};
use super::frame::push_frame;
use super::segment::{create_segment, segment_header, segment_path, segments};
use super::{unix_now, Hash, Journal, Journaled, Kind, Position, Progress};
use crate::protocol::hex::hex;

/// How far ahead of the write position a segment is allocated and zero-filled. The fill
/// and its sync run inside a batch's commit: 4 MiB stalled a batch for about 10 ms on the
/// VM's disk (p99 12 ms at half load); 256 KiB costs about 1 ms, with one more metadata
/// commit per 256 KiB of records.
pub(super) const PREFILL: u64 = 256 << 10;

/// Zeros to write from: a static buffer, so the ring borrows it with no copy.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// The current segment file on the writing thread's monoio ring. A monoio file belongs to
/// the runtime it was made in, so the [`Journal`] (opened at start, then moved to the thread
/// that writes it) does not hold one: the writer keeps this beside it.
#[derive(Default)]
pub struct Ring(Option<(u64, std::rc::Rc<monoio::fs::File>)>);

impl Ring {
    /// The file of `segment` (`file`, the journal's handle on it) on this thread's ring:
    /// made on the first batch after open or rotation.
    fn file(
        &mut self,
        segment: u64,
        file: &std::fs::File,
    ) -> std::io::Result<std::rc::Rc<monoio::fs::File>> {
        match &self.0 {
            Some((s, f)) if *s == segment => Ok(f.clone()),
            _ => {
                let f = std::rc::Rc::new(monoio::fs::File::from_std(file.try_clone()?)?);
                self.0 = Some((segment, f.clone()));
                Ok(f)
            }
        }
    }
}

/// Writes zeros over `from..to` of `ring`.
async fn zero(ring: &monoio::fs::File, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        ring.write_all_at(&ZEROS[..n], at).await.0?;
        at += n as u64;
    }
    Ok(())
}

impl Journal {
    /// The durability and shipping progress, shared with the shipper and readers.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The directory of its segment files (its shard's).
    pub fn dir(&self) -> &std::path::Path {
        &self.settings.dir
    }

    /// The disk budget, for the request path's check and `/ready`.
    pub fn budget(&self) -> Arc<DiskBudget> {
        self.budget.clone()
    }

    /// While the budget is not `Ok`: deletes what retention allows, then measures again (the
    /// writer calls this when idle, so a full journal notices freed space by itself).
    pub fn reclaim(&mut self) {
        if self.budget.state() == State::Ok {
            return;
        }
        self.prune();
        if let Err(e) = self.budget.measure(PREFILL) {
            tracing::warn!(error = %e, "cannot measure the journal's disk budget");
        }
    }

    /// The last frame written: its seq and hash (the chain head).
    pub fn head(&self) -> (u64, Hash) {
        (self.next_seq - 1, self.head)
    }

    /// Writes a batch with one write and one fdatasync, both submitted to the calling
    /// thread's monoio ring (a frontend core's io_uring: the core goes on serving while the
    /// disk works; under the epoll driver they are plain syscalls on the shard's own
    /// thread). On failure nothing of the batch counts. A failed write whose bytes could be
    /// cut off again (disk full) may be retried with the next batch; a failed fdatasync, or
    /// a cut that fails, leaves the file in an unknown state, so the journal refuses every
    /// later batch until a restart repairs it.
    pub async fn append<T: Journaled>(
        &mut self,
        ring: &mut Ring,
        records: &[T],
    ) -> std::io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(std::io::Error::other(format!(
                "journal stopped after an earlier failure ({why}); restart stampd"
            )));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let (mut seq, mut head) = (self.next_seq, self.head);
        let mut checkpoints = Vec::new();
        // A checkpoint after this batch's last record when one is due by time (and none
        // came by count in this batch).
        let mut due = self
            .settings
            .checkpoint_interval
            .is_some_and(|t| self.last_checkpoint.elapsed() >= t);
        for (i, r) in records.iter().enumerate() {
            // Checkpoints by seq, so they stay evenly spaced across restarts.
            let last = i + 1 == records.len();
            let checkpoint =
                (seq + 1).is_multiple_of(self.settings.checkpoint_every) || (last && due);
            let kind = (r.kind(), last && !checkpoint);
            head = push_frame(&mut buf, kind, seq, &head, |out| r.encode(out));
            seq += 1;
            if checkpoint {
                due = false;
                let now = unix_now();
                // The token over the hash after the last frame, and its own record, written
                // before the checkpoint so both are durable with it (not counted for
                // checkpoints: an anchor never causes the next one).
                let stamped = seq - 1;
                let (anchor, made) = self.anchor(&head);
                for record in &made {
                    head = push_frame(&mut buf, (Kind::Record, false), seq, &head, |out| {
                        record.encode(out)
                    });
                    seq += 1;
                }
                head = push_frame(&mut buf, (Kind::Checkpoint, last), seq, &head, |out| {
                    super::anchor::body(out, now, anchor.as_deref().map(|der| (stamped, der)));
                });
                checkpoints.push((seq, head, anchor.is_some()));
                seq += 1;
            }
        }
        let len = buf.len() as u64;
        let ring = match ring.file(self.segment, &self.file) {
            Ok(r) => r,
            Err(e) => {
                self.buf = buf;
                return Err(e);
            }
        };
        if let Err(e) = self.ensure_room(&ring, self.offset + len).await {
            self.buf = buf;
            return Err(e);
        }
        let (written, buf) = ring.write_all_at(buf, self.offset).await;
        self.buf = buf;
        if let Err(e) = written {
            // Nothing of this batch is acknowledged: zero it again so the chain stays whole.
            if let Err(undo) = zero(&ring, self.offset, self.offset + len).await {
                self.failed = Some(format!("cannot undo a failed write: {undo}"));
            }
            return Err(e);
        }
        if let Err(e) = ring.sync_data().await {
            // After a failed fdatasync the page cache may hold data the disk does not
            // (and the kernel may have dropped the error): cut the batch off, so a restart
            // does not find it whole, and stop.
            let _ = self.file.set_len(self.offset);
            let _ = self.file.sync_all();
            self.failed = Some(format!("fdatasync failed: {e}"));
            return Err(e);
        }
        self.offset += len;
        if !checkpoints.is_empty() {
            self.last_checkpoint = std::time::Instant::now();
        }
        for (seq, hash, anchored) in checkpoints {
            tracing::info!(seq, hash = %hex(&hash), anchored, "journal checkpoint");
        }
        self.next_seq = seq;
        self.head = head;
        self.publish();
        self.progress.wake.notify_one();
        Ok(())
    }

    /// A token over the chain's hash `head` for the checkpoint after it, when an anchor is
    /// set and can stamp now (failures are logged once until one succeeds), and the
    /// records issuing it made. With an HSM signer this is one HSM signature on the
    /// committer per checkpoint.
    fn anchor(&mut self, head: &Hash) -> (Option<Vec<u8>>, Vec<super::super::Record>) {
        let Some(stamp) = self.settings.anchor.get() else {
            return (None, Vec::new());
        };
        let (stamped, made) = stamp(head);
        match stamped {
            Ok(der) => {
                if std::mem::take(&mut self.anchor_failed) {
                    tracing::info!(dir = %self.settings.dir.display(), "journal checkpoints anchored again");
                }
                (Some(der), made)
            }
            Err(why) => {
                if !std::mem::replace(&mut self.anchor_failed, true) {
                    tracing::warn!(dir = %self.settings.dir.display(), %why, "journal checkpoint not anchored (no token over its hash); the next ones are tried");
                }
                (None, made)
            }
        }
    }

    /// [`append`](Journal::append) from outside any runtime, on a runtime of its own (tests).
    #[cfg(test)]
    pub fn append_now<T: Journaled>(&mut self, records: &[T]) -> std::io::Result<()> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()?
            .block_on(async { self.append(&mut Ring::default(), records).await })
    }

    /// Tells readers how far the journal is durable.
    fn publish(&self) {
        if let Ok(mut at) = self.progress.committed_at.lock() {
            *at = Position {
                segment: self.segment,
                offset: self.offset,
            };
        }
        if let Ok(mut h) = self.progress.head_hash.lock() {
            *h = self.head;
        }
        self.progress
            .committed_seq
            .store(self.next_seq - 1, Ordering::Release);
    }

    /// Makes sure the file is allocated and zero-filled up to `end`, extending it by
    /// [`PREFILL`] at a time (one metadata commit per extension, not per batch).
    async fn ensure_room(&mut self, ring: &monoio::fs::File, end: u64) -> std::io::Result<()> {
        if end <= self.zeroed_to {
            return Ok(());
        }
        let target = end + PREFILL;
        // The disk budget (budget.rs): refused before any byte is written, so the batch
        // fails whole and the journal stays as it was.
        if !self.budget.measure(target - self.zeroed_to)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "journal disk budget reached",
            ));
        }
        zero(ring, self.zeroed_to, target).await?;
        ring.sync_data().await?;
        self.zeroed_to = target;
        Ok(())
    }

    /// Begins a new segment once this one is full. Called after a batch is acknowledged:
    /// a failure here fails no batch; it is logged and tried again after the next one.
    pub fn rotate_if_full(&mut self) {
        if self.offset < self.settings.segment_bytes || self.failed.is_some() {
            return;
        }
        let next = self.segment + 1;
        match create_segment(
            &self.settings.dir,
            self.progress.journal_id,
            next,
            self.next_seq,
            &self.head,
        ) {
            Ok((file, offset, head)) => {
                // The closed segment ends at its last frame, without zero padding. Best
                // effort: readers skip zeros in a closed segment.
                let _ = self
                    .file
                    .set_len(self.offset)
                    .and_then(|()| self.file.sync_all());
                self.file = file;
                self.segment = next;
                self.offset = offset;
                self.zeroed_to = offset;
                self.head = head;
                self.next_seq += 1;
                self.rotate_failed = false;
                self.publish();
                self.prune();
            }
            Err(e) => {
                if !self.rotate_failed {
                    tracing::error!(error = %e, "cannot begin a new journal segment; the current one grows");
                }
                self.rotate_failed = true;
            }
        }
    }

    /// Retention: deletes closed segments older than the retention period whose every frame
    /// has been shipped.
    fn prune(&self) {
        let Some(keep) = self.settings.retention else {
            return;
        };
        let dir = &self.settings.dir;
        let Ok(present) = segments(dir) else { return };
        let shipped = self.progress.shipped_seq.load(Ordering::Acquire);
        for pair in present.windows(2) {
            let (seg, next) = (pair[0], pair[1]);
            let path = segment_path(dir, seg);
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| crate::clock::wall_now().duration_since(t).ok())
                .is_some_and(|age| age > keep);
            // The segment's last frame is the one before the next segment's header.
            let last = segment_header(&segment_path(dir, next)).map(|h| h.seq.saturating_sub(1));
            if old && last.is_some_and(|l| l <= shipped) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(segment = %path.display(), "journal segment removed (retention)")
                    }
                    Err(e) => {
                        tracing::warn!(segment = %path.display(), error = %e, "cannot remove journal segment")
                    }
                }
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{records, settings};
    use super::super::verify;
    use super::*;
    use crate::audit::record::tests::sample;

    #[test]
    fn a_checkpoint_due_by_time_ends_the_batch_and_carries_its_anchor() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(tmp.path());
        s.checkpoint_every = 1_000;
        s.checkpoint_interval = Some(Duration::ZERO);
        let stamped = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = stamped.clone();
        assert!(s.anchor.set(Box::new(move |hash| {
            seen.lock().unwrap().push(*hash);
            // The stamp's own record comes back with it.
            (Ok(b"not a TimeStampResp".to_vec()), vec![sample(9)])
        })));
        let (mut j, _) = Journal::open(s).unwrap();
        j.append_now(&[sample(1), sample(2)]).unwrap();
        // After the batch's last record: the stamp's record, then the checkpoint.
        let (seq, _) = j.head();
        assert_eq!(
            seq, 4,
            "segment header, two records, the stamp's record, the checkpoint"
        );
        assert_eq!(records(tmp.path()), vec![sample(1), sample(2), sample(9)]);
        let stamped = stamped.lock().unwrap().clone();
        assert_eq!(stamped.len(), 1, "one checkpoint: by time, once per batch");
        let v = verify(tmp.path()).unwrap();
        assert_eq!((v.records, v.checkpoints), (3, 1));
        // An anchor that is not a valid token over that hash breaks the verification.
        let broken = v.broken.unwrap_or_default();
        assert!(broken.contains("anchor: not a TimeStampResp"), "{broken}");
    }

    #[test]
    fn appends_reopens_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, report) = Journal::open(settings(tmp.path())).unwrap();
        assert!(report.created);
        let batch: Vec<_> = (0..10).map(sample).collect();
        j.append_now(&batch[..6]).unwrap();
        drop(j);
        let (mut j, report) = Journal::open(settings(tmp.path())).unwrap();
        assert_eq!((report.created, report.torn_bytes), (false, 0));
        j.append_now(&batch[6..]).unwrap();
        assert_eq!(records(tmp.path()), batch);
        let v = verify(tmp.path()).unwrap();
        assert_eq!((v.records, v.checkpoints, v.segments), (10, 3, 1));
        assert!(v.broken.is_none(), "{:?}", v.broken);
        assert_eq!(v.head, Some(j.head()));
    }

    #[test]
    fn rotates_segments_and_reads_across_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(tmp.path());
        s.segment_bytes = 400;
        let (mut j, _) = Journal::open(s.clone()).unwrap();
        let batch: Vec<_> = (0..20).map(sample).collect();
        for r in batch.chunks(3) {
            j.append_now(r).unwrap();
            j.rotate_if_full();
        }
        assert!(segments(tmp.path()).unwrap().len() > 3);
        assert_eq!(records(tmp.path()), batch);
        let v = verify(tmp.path()).unwrap();
        assert!(v.broken.is_none(), "{:?}", v.broken);
        // Retention: everything old enough and shipped goes, the open segment stays.
        drop(j);
        s.retention = Some(Duration::ZERO);
        let (mut j, _) = Journal::open(s).unwrap();
        j.progress.shipped_seq.store(u64::MAX, Ordering::Release);
        std::thread::sleep(Duration::from_millis(5));
        j.append_now(&batch[..4]).unwrap();
        j.rotate_if_full();
        let left = segments(tmp.path()).unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        let v = verify(tmp.path()).unwrap();
        assert!(v.broken.is_none() && v.first_seq.is_some(), "{v:?}");
    }

    #[test]
    fn retention_keeps_what_is_not_shipped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(tmp.path());
        s.segment_bytes = 400;
        s.retention = Some(Duration::ZERO);
        let (mut j, _) = Journal::open(s).unwrap();
        j.progress.shipped_seq.store(0, Ordering::Release);
        for r in (0..20).map(sample).collect::<Vec<_>>().chunks(3) {
            j.append_now(r).unwrap();
            j.rotate_if_full();
        }
        assert_eq!(records(tmp.path()).len(), 20);
    }
}
