//! The write side: one batch is one `write` and one `fdatasync`, into a segment that is
//! allocated and zero-filled ahead; rotation to a new segment once one is full, and
//! retention of closed segments.

use std::os::unix::fs::FileExt;
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

impl Journal {
    /// The durability and shipping progress, shared with the shipper and readers.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
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
        if let Err(e) = self.budget.measure(&self.settings.dir, PREFILL) {
            tracing::warn!(error = %e, "cannot measure the journal's disk budget");
        }
    }

    /// The last frame written: its seq and hash (the chain head).
    pub fn head(&self) -> (u64, Hash) {
        (self.next_seq - 1, self.head)
    }

    /// Writes a batch with one write and one fdatasync. On failure nothing of the batch
    /// counts. A failed write whose bytes could be cut off again (disk full) may be retried
    /// with the next batch; a failed fdatasync, or a cut that fails, leaves the file in an
    /// unknown state, so the journal refuses every later batch until a restart repairs it.
    pub fn append<T: Journaled>(&mut self, records: &[T]) -> std::io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(std::io::Error::other(format!(
                "journal stopped after an earlier failure ({why}); restart stampd"
            )));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let (mut seq, mut head) = (self.next_seq, self.head);
        let mut checkpoints = Vec::new();
        for (i, r) in records.iter().enumerate() {
            // Checkpoints by seq, so they stay evenly spaced across restarts.
            let checkpoint = (seq + 1).is_multiple_of(self.settings.checkpoint_every);
            let last = i + 1 == records.len();
            let kind = (r.kind(), last && !checkpoint);
            head = push_frame(&mut buf, kind, seq, &head, |out| r.encode(out));
            seq += 1;
            if checkpoint {
                let now = unix_now();
                head = push_frame(&mut buf, (Kind::Checkpoint, last), seq, &head, |out| {
                    out.extend_from_slice(&now.to_le_bytes());
                });
                checkpoints.push((seq, head));
                seq += 1;
            }
        }
        if let Err(e) = self.ensure_room(self.offset + buf.len() as u64) {
            self.buf = buf;
            return Err(e);
        }
        if let Err(e) = self.file.write_all_at(&buf, self.offset) {
            // Nothing of this batch is acknowledged: zero it again so the chain stays whole.
            let zeros = vec![0u8; buf.len()];
            if let Err(undo) = self.file.write_all_at(&zeros, self.offset) {
                self.failed = Some(format!("cannot undo a failed write: {undo}"));
            }
            self.buf = buf;
            return Err(e);
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fdatasync the page cache may hold data the disk does not
            // (and the kernel may have dropped the error): cut the batch off, so a restart
            // does not find it whole, and stop.
            let _ = self.file.set_len(self.offset);
            let _ = self.file.sync_all();
            self.failed = Some(format!("fdatasync failed: {e}"));
            self.buf = buf;
            return Err(e);
        }
        self.offset += buf.len() as u64;
        self.buf = buf;
        for (seq, hash) in checkpoints {
            tracing::info!(seq, hash = %hex(&hash), "journal checkpoint");
        }
        self.next_seq = seq;
        self.head = head;
        self.publish();
        self.progress.wake.notify_one();
        Ok(())
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
    fn ensure_room(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.zeroed_to {
            return Ok(());
        }
        let target = end + PREFILL;
        // The disk budget (budget.rs): refused before any byte is written, so the batch
        // fails whole and the journal stays as it was.
        if !self
            .budget
            .measure(&self.settings.dir, target - self.zeroed_to)?
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "journal disk budget reached",
            ));
        }
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.zeroed_to;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_data()?;
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
    fn appends_reopens_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, report) = Journal::open(settings(tmp.path())).unwrap();
        assert!(report.created);
        let batch: Vec<_> = (0..10).map(sample).collect();
        j.append(&batch[..6]).unwrap();
        drop(j);
        let (mut j, report) = Journal::open(settings(tmp.path())).unwrap();
        assert_eq!((report.created, report.torn_bytes), (false, 0));
        j.append(&batch[6..]).unwrap();
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
            j.append(r).unwrap();
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
        j.append(&batch[..4]).unwrap();
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
            j.append(r).unwrap();
            j.rotate_if_full();
        }
        assert_eq!(records(tmp.path()).len(), 20);
    }
}
