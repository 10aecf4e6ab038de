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

/// The unit of direct I/O: offsets, lengths and buffers of `O_DIRECT` writes are multiples
/// of it (4096 covers the 512- and 4096-byte logical blocks of Linux disks).
const BLOCK: u64 = 4096;

/// Zeros to write from: a static buffer aligned for direct I/O, so the ring borrows it with
/// no copy.
#[repr(C, align(4096))]
struct Zeros([u8; 1 << 20]);
static ZEROS: Zeros = Zeros([0; 1 << 20]);

fn round_down(at: u64) -> u64 {
    at - at % BLOCK
}

fn round_up(at: u64) -> u64 {
    at.div_ceil(BLOCK) * BLOCK
}

/// The current segment file on the writing thread's monoio ring. A monoio file belongs to
/// the runtime it was made in, so the [`Journal`] (opened at start, then moved to the thread
/// that writes it) does not hold one: the writer keeps this beside it.
///
/// The file is opened with `O_DIRECT` where the file system allows it: a batch then goes
/// from the buffer to the disk as an overwrite of blocks the prefill allocated, with no
/// page-cache copy and no writeback for the `fdatasync` to do, which leaves that
/// `fdatasync` a cache flush (on io_uring, a buffered write and its writeback run in the
/// kernel's io-wq workers: measured at 4–6 µs of CPU per record on this project's VM).
/// Direct writes cover whole blocks, so the ring keeps the bytes of the last partial block
/// already written (`tail`) and writes them again ahead of the next batch. Elsewhere
/// (a file system without `O_DIRECT`) it writes through the page cache.
#[derive(Default)]
pub struct Ring(Option<Open>);

struct Open {
    segment: u64,
    file: std::rc::Rc<monoio::fs::File>,
    direct: bool,
    /// Direct I/O: the file's bytes from the last block boundary up to `tail_end`.
    tail: Vec<u8>,
    tail_end: Option<u64>,
    /// Direct I/O: the aligned buffer a batch is written from.
    out: Vec<u8>,
}

impl Ring {
    /// The open file of `segment` (at `path`; `file`, the journal's handle on it) on this
    /// thread's ring: made on the first batch after open or rotation.
    fn open(
        &mut self,
        segment: u64,
        path: &std::path::Path,
        file: &std::fs::File,
    ) -> std::io::Result<&mut Open> {
        if self.0.as_ref().is_none_or(|o| o.segment != segment) {
            use std::os::unix::fs::OpenOptionsExt;
            let (std, direct) = match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(f) => (f, true),
                Err(_) => (file.try_clone()?, false),
            };
            self.0 = Some(Open {
                segment,
                file: std::rc::Rc::new(monoio::fs::File::from_std(std)?),
                direct,
                tail: Vec::new(),
                tail_end: None,
                out: Vec::new(),
            });
        }
        self.0
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no segment file"))
    }

    /// Whether batches go to the disk with direct I/O (tests).
    #[cfg(test)]
    pub fn direct(&self) -> bool {
        self.0.as_ref().is_some_and(|o| o.direct)
    }
}

impl Open {
    /// Makes `tail` the file's bytes from the block boundary below `offset` up to it, read
    /// from `file` unless it already holds them (once per segment, or after a failed batch).
    fn tail_at(&mut self, file: &std::fs::File, offset: u64) -> std::io::Result<()> {
        if self.tail_end == Some(offset) {
            return Ok(());
        }
        use std::os::unix::fs::FileExt;
        self.tail.resize((offset - round_down(offset)) as usize, 0);
        file.read_exact_at(&mut self.tail, round_down(offset))?;
        self.tail_end = Some(offset);
        Ok(())
    }

    /// Writes `tail` + `bytes` (or zeros for `bytes.len()` bytes, when `bytes` is `None`)
    /// at the block boundary below `offset`, padded with zeros to whole blocks, from an
    /// aligned buffer.
    async fn write_direct(
        &mut self,
        offset: u64,
        len: usize,
        bytes: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let start = round_down(offset);
        let total = (round_up(offset + len as u64) - start) as usize;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        // Reserved once here, so the alignment found below stays while the buffer fills.
        out.reserve(total + BLOCK as usize);
        let pad = out.as_ptr().align_offset(BLOCK as usize);
        if pad >= BLOCK as usize {
            return Err(std::io::Error::other(
                "cannot align the journal's write buffer",
            ));
        }
        out.resize(pad, 0);
        out.extend_from_slice(&self.tail);
        match bytes {
            Some(b) => out.extend_from_slice(b),
            None => out.resize(out.len() + len, 0),
        }
        out.resize(pad + total, 0);
        use monoio::buf::IoBuf;
        let (written, slice) = self.file.write_all_at(out.slice(pad..), start).await;
        self.out = slice.into_inner();
        written
    }

    /// After `len` bytes were written at `offset` (by [`write_direct`](Open::write_direct)):
    /// keeps the new partial block for the next batch.
    fn advance(&mut self, offset: u64, len: usize) {
        let end = offset + len as u64;
        let pad = self.out.as_ptr().align_offset(BLOCK as usize);
        let from = pad + (round_down(end) - round_down(offset)) as usize;
        let to = pad + (end - round_down(offset)) as usize;
        self.tail.clear();
        self.tail.extend_from_slice(&self.out[from..to]);
        self.tail_end = Some(end);
    }
}

/// Writes zeros over `from..to` of `ring` (block-aligned for direct I/O).
async fn zero(ring: &monoio::fs::File, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.0.len() as u64) as usize;
        ring.write_all_at(&ZEROS.0[..n], at).await.0?;
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
        let len = buf.len() as u64;
        let path = segment_path(&self.settings.dir, self.segment);
        let open = match ring.open(self.segment, &path, &self.file) {
            Ok(o) => o,
            Err(e) => {
                self.buf = buf;
                return Err(e);
            }
        };
        // Direct writes end on a block boundary: the prefill must reach it.
        let end = if open.direct {
            round_up(self.offset + len)
        } else {
            self.offset + len
        };
        let file = open.file.clone();
        if let Err(e) = self.ensure_room(&file, open.direct, end).await {
            self.buf = buf;
            return Err(e);
        }
        let written = if open.direct {
            match open.tail_at(&self.file, self.offset) {
                Ok(()) => open.write_direct(self.offset, buf.len(), Some(&buf)).await,
                Err(e) => Err(e),
            }
        } else {
            let (written, back) = file.write_all_at(buf, self.offset).await;
            buf = back;
            written
        };
        let n = buf.len();
        self.buf = buf;
        if let Err(e) = written {
            // Nothing of this batch is acknowledged: zero it again so the chain stays whole.
            let undone = if open.direct {
                open.tail_end = None;
                match open.tail_at(&self.file, self.offset) {
                    Ok(()) => open.write_direct(self.offset, n, None).await,
                    Err(e) => Err(e),
                }
            } else {
                zero(&file, self.offset, self.offset + len).await
            };
            if let Err(undo) = undone {
                self.failed = Some(format!("cannot undo a failed write: {undo}"));
            }
            return Err(e);
        }
        let ring = file;
        if let Err(e) = ring.sync_data().await {
            // After a failed fdatasync the page cache may hold data the disk does not
            // (and the kernel may have dropped the error): cut the batch off, so a restart
            // does not find it whole, and stop.
            let _ = self.file.set_len(self.offset);
            let _ = self.file.sync_all();
            self.failed = Some(format!("fdatasync failed: {e}"));
            return Err(e);
        }
        if open.direct {
            open.advance(self.offset, n);
        }
        self.offset += len;
        for (seq, hash) in checkpoints {
            tracing::info!(seq, hash = %hex(&hash), "journal checkpoint");
        }
        self.next_seq = seq;
        self.head = head;
        self.publish();
        self.progress.wake.notify_one();
        Ok(())
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
    async fn ensure_room(
        &mut self,
        ring: &monoio::fs::File,
        direct: bool,
        end: u64,
    ) -> std::io::Result<()> {
        if end <= self.zeroed_to {
            return Ok(());
        }
        // Direct writes start and end on block boundaries. Up to the boundary above the
        // file's end, its last block is allocated already and reads as zeros.
        let (from, target) = if direct {
            (round_up(self.zeroed_to), round_up(end + PREFILL))
        } else {
            (self.zeroed_to, end + PREFILL)
        };
        // The disk budget (budget.rs): refused before any byte is written, so the batch
        // fails whole and the journal stays as it was.
        if !self.budget.measure(target - self.zeroed_to)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "journal disk budget reached",
            ));
        }
        zero(ring, from, target).await?;
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

    /// Batches of every size across block boundaries, a reopen in the middle of a block
    /// (the tail is read back) and a rotation: through direct I/O where the file system has
    /// it, and the chain is whole.
    #[test]
    fn direct_writes_keep_the_partial_block_and_the_chain() {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let has_direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
        std::fs::remove_file(probe).unwrap();
        let mut s = settings(tmp.path());
        s.segment_bytes = 20_000;
        let batch: Vec<_> = (0..120).map(sample).collect();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        let mut at = 0;
        for _ in 0..2 {
            let (mut j, _) = Journal::open(s.clone()).unwrap();
            let mut ring = Ring::default();
            for size in [1, 7, 2, 13, 1, 30, 3, 3] {
                rt.block_on(j.append(&mut ring, &batch[at..at + size]))
                    .unwrap();
                assert_eq!(ring.direct(), has_direct);
                j.rotate_if_full();
                at += size;
            }
        }
        assert!(segments(tmp.path()).unwrap().len() > 1);
        assert_eq!(records(tmp.path()), batch[..at].to_vec());
        let v = verify(tmp.path()).unwrap();
        assert!(v.broken.is_none(), "{:?}", v.broken);
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
