//! Opening the journal, and torn-tail repair. A crash can leave part of the last batch (a
//! torn tail): on open it is moved aside to `SEGMENT.torn-OFFSET` and the segment cut back
//! to its last whole frame. Damage anywhere else is not a torn write and stops the start.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::append::PREFILL;
use super::frame::{parse_frame, parse_segment_header, Parse, BATCH_END, FRAME_HEAD, PAYLOAD_HEAD};
use super::segment::{create_segment, lock_journal, segment_path, segments};
use super::{unix_now, Hash, Journal, Kind, Position, Progress, Settings};

/// What [`Journal::open`] found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// The directory held no segment: a new journal (with a new random id) was begun.
    pub created: bool,
    /// Bytes of a torn tail that were cut (and kept in a `.torn-*` file).
    pub torn_bytes: u64,
}

/// The state of the last segment, read on open.
struct Tail {
    journal_id: u64,
    last_seq: u64,
    head: Hash,
    /// Where whole frames end.
    whole: usize,
    /// Where damage starts, if anywhere.
    bad_at: Option<usize>,
}

/// Reads the last segment: its header, and frames while they are whole and continue the
/// chain (seq + 1, prev = hash of the previous frame).
fn scan_tail(path: &Path, bytes: &[u8]) -> Result<Tail, String> {
    let no_header = || {
        format!(
            "{}: no segment header; run `stampd audit verify`",
            path.display()
        )
    };
    let (header, mut at) = match parse_frame(bytes) {
        Parse::Whole(f, len) if f.kind == Kind::Segment => (f, len),
        _ => return Err(no_header()),
    };
    let (journal_id, _) = parse_segment_header(&header.body).ok_or_else(no_header)?;
    let (mut last_seq, mut head) = (header.seq, header.hash);
    let bad_at = loop {
        match parse_frame(&bytes[at..]) {
            Parse::Whole(f, len) if f.seq == last_seq.wrapping_add(1) && f.prev == head => {
                if f.kind == Kind::Segment {
                    break Some(at);
                }
                (last_seq, head) = (f.seq, f.hash);
                at += len;
            }
            // The end, or the preallocated rest: clean if it is all zeros (a torn write may
            // have reached later sectors but not this one).
            Parse::Incomplete(_) | Parse::Zero if bytes[at..].iter().all(|b| *b == 0) => {
                break None
            }
            _ => break Some(at),
        }
    };
    Ok(Tail {
        journal_id,
        last_seq,
        head,
        whole: at,
        bad_at,
    })
}

/// The torn tail of a last segment that [`scan_tail`] read: `None` when it ends clean,
/// `Some((cut, dirty))` for the bytes `cut..dirty` to move aside (the segment is cut back to
/// `cut`), or an error when the damage is not a torn write: more than `max_torn_tail` bytes,
/// or an acknowledged batch after it. Pure, so the decision is fuzzed on bytes alone.
fn torn_tail(
    path: &Path,
    bytes: &[u8],
    tail: &Tail,
    max_torn_tail: u64,
) -> Result<Option<(usize, usize)>, String> {
    let Some(cut) = tail.bad_at else {
        return Ok(None);
    };
    // What a torn write left: up to the last byte that is not preallocated zero.
    let dirty = dirty_end(bytes).max(cut);
    let len = (dirty - cut) as u64;
    if len > max_torn_tail || later_batch_after(bytes, cut, tail.last_seq) {
        return Err(format!(
            "{}: damaged at byte {cut} with {len} bytes after it; that is not a torn \
             write. Run `stampd audit verify --data-dir DIR` and restore the journal",
            path.display()
        ));
    }
    Ok(Some((cut, dirty)))
}

/// [`scan_tail`] and [`torn_tail`] over the bytes of a last segment, as
/// [`Journal::open`] runs them, for the fuzz target: `Ok(None)` for a clean end, the torn
/// tail's range, or why the segment cannot be opened.
pub(super) fn open_decision(
    bytes: &[u8],
    max_torn_tail: u64,
) -> Result<Option<(usize, usize)>, String> {
    let path = Path::new("fuzz.seg");
    let tail = scan_tail(path, bytes)?;
    assert!(
        tail.whole <= bytes.len(),
        "whole frames end past the segment"
    );
    torn_tail(path, bytes, &tail, max_torn_tail)
}

impl Journal {
    /// Opens the journal in `settings.dir`, creating it when absent and cutting a torn tail.
    pub fn open(settings: Settings) -> Result<(Journal, OpenReport), String> {
        let dir = &settings.dir;
        let err = |e: std::io::Error| format!("{}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(err)?;
        let lock = lock_journal(dir)?;
        let mut report = OpenReport::default();
        // A temporary segment left by a crash during rotation was never used.
        for entry in std::fs::read_dir(dir).map_err(err)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".seg.tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let present = segments(dir).map_err(err)?;
        let Some(&last) = present.last() else {
            let mut id = [0u8; 8];
            aws_lc_rs::rand::fill(&mut id).map_err(|_| "no randomness for the journal id")?;
            // Positive as a PostgreSQL bigint.
            let journal_id = u64::from_le_bytes(id) >> 1;
            let (file, offset, head) =
                create_segment(dir, journal_id, 1, 0, &[0; 32]).map_err(err)?;
            report.created = true;
            let tail = (1, offset, 0, head);
            return Ok((
                Journal::assemble(settings, lock, file, journal_id, tail),
                report,
            ));
        };
        let path = segment_path(dir, last);
        let bytes = std::fs::read(&path).map_err(err)?;
        let tail = scan_tail(&path, &bytes)?;
        if let Some((cut, dirty)) = torn_tail(&path, &bytes, &tail, settings.max_torn_tail)? {
            let len = (dirty - cut) as u64;
            let aside = path.with_extension(format!("seg.torn-{cut}-{}", unix_now()));
            let mut keep = File::create(&aside).map_err(err)?;
            keep.write_all(&bytes[cut..dirty])
                .and_then(|()| keep.sync_all())
                .map_err(err)?;
            let f = OpenOptions::new().write(true).open(&path).map_err(err)?;
            f.set_len(cut as u64).map_err(err)?;
            f.sync_all().map_err(err)?;
            report.torn_bytes = len;
            tracing::warn!(segment = %path.display(), bytes = len, kept = %aside.display(), "cut a torn journal tail (a batch that was never acknowledged)");
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(err)?;
        let zeroed_to = file.metadata().map_err(err)?.len();
        let state = (last, tail.whole as u64, tail.last_seq, tail.head);
        let mut journal = Journal::assemble(settings, lock, file, tail.journal_id, state);
        journal.zeroed_to = zeroed_to;
        Ok((journal, report))
    }

    /// `tail`: segment number, its length, the last seq and its hash.
    fn assemble(
        settings: Settings,
        lock: File,
        file: File,
        journal_id: u64,
        tail: (u64, u64, u64, Hash),
    ) -> Journal {
        let (segment, offset, last_seq, head) = tail;
        let budget = settings.budget.clone();
        // Measured at once: a journal opened on a full disk takes no records.
        if let Err(e) = budget.measure(PREFILL) {
            tracing::warn!(dir = %settings.dir.display(), error = %e, "cannot measure the journal's disk budget");
        }
        Journal {
            settings,
            _lock: lock,
            file,
            segment,
            offset,
            zeroed_to: offset,
            next_seq: last_seq + 1,
            head,
            failed: None,
            rotate_failed: false,
            last_checkpoint: std::time::Instant::now(),
            anchor_failed: false,
            budget,
            progress: Arc::new(Progress {
                journal_id,
                committed_seq: AtomicU64::new(last_seq),
                committed_at: std::sync::Mutex::new(Position { segment, offset }),
                shipped_seq: AtomicU64::new(u64::MAX),
                head_hash: std::sync::Mutex::new(head),
                wake: tokio::sync::Notify::new(),
            }),
            buf: Vec::new(),
        }
    }
}

/// Where the bytes that are not zero end.
pub(super) fn dirty_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// Does an acknowledged batch follow the damage at `from`? A torn write is the last batch:
/// whole frames after the damage may belong to it (sectors reach the disk in any order),
/// but no frame may follow the end of a batch. A whole frame after a batch end means the
/// damage hit acknowledged frames. Cheap checks (length, kind, seq range) come before the
/// CRC.
fn later_batch_after(bytes: &[u8], from: usize, last_seq: u64) -> bool {
    let max_seq = last_seq.saturating_add((bytes.len() - from) as u64);
    let mut boundary = None;
    let mut at = from + 1;
    while at + FRAME_HEAD + PAYLOAD_HEAD <= bytes.len() {
        let b = &bytes[at..];
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let plausible = len >= PAYLOAD_HEAD
            && len <= b.len() - FRAME_HEAD
            && Kind::from_u8(b[8] & !BATCH_END).is_some();
        let seq = u64::from_le_bytes([b[9], b[10], b[11], b[12], b[13], b[14], b[15], b[16]]);
        if plausible && seq > last_seq && seq <= max_seq {
            if let Parse::Whole(frame, flen) = parse_frame(b) {
                if boundary.is_some_and(|end| at >= end) {
                    return true;
                }
                if frame.batch_end {
                    boundary = Some(at + flen);
                }
                at += flen;
                continue;
            }
        }
        at += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::frame::push_frame;
    use super::super::tests::{records, settings};
    use super::super::verify;
    use super::*;
    use crate::audit::record::tests::sample;

    #[test]
    fn a_torn_tail_is_cut_and_kept_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        let batch: Vec<_> = (0..5).map(sample).collect();
        j.append_now(&batch).unwrap();
        let end = j.offset as usize;
        drop(j);
        let seg = segment_path(tmp.path(), 1);
        let whole = std::fs::read(&seg).unwrap();
        // Half of another record over the preallocated zeros, as a crash in the middle of
        // a write leaves it.
        let mut more = Vec::new();
        push_frame(&mut more, (Kind::Record, true), 99, &[0; 32], |o| {
            sample(5).encode(o)
        });
        let mut torn = whole.clone();
        torn[end..end + more.len() / 2].copy_from_slice(&more[..more.len() / 2]);
        std::fs::write(&seg, &torn).unwrap();
        // No server runs: a torn tail is not an intact journal.
        let v = verify(tmp.path()).unwrap();
        assert!(v.broken.is_some(), "{v:?}");
        let (mut j, report) = Journal::open(settings(tmp.path())).unwrap();
        assert_eq!(report.torn_bytes, (more.len() / 2) as u64);
        assert_eq!(std::fs::read(&seg).unwrap(), whole[..end]);
        j.append_now(&[sample(6)]).unwrap();
        assert_eq!(records(tmp.path()).len(), 6);
        assert!(verify(tmp.path()).unwrap().broken.is_none());
    }

    #[test]
    fn a_torn_batch_whose_later_sectors_landed_is_still_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append_now(&[sample(1), sample(2)]).unwrap();
        let end = j.offset as usize;
        let (seq, head) = j.head();
        drop(j);
        // The next batch, three frames, reached the disk except for its first sector.
        let mut batch = Vec::new();
        let mut h = head;
        for (i, n) in (3..6u64).enumerate() {
            h = push_frame(
                &mut batch,
                (Kind::Record, i == 2),
                seq + 1 + i as u64,
                &h,
                |o| sample(n).encode(o),
            );
        }
        batch[..64].fill(0xee);
        let seg = segment_path(tmp.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[end..end + batch.len()].copy_from_slice(&batch);
        std::fs::write(&seg, &bytes).unwrap();
        let (_j, report) = Journal::open(settings(tmp.path())).unwrap();
        // Up to the batch's last byte that is not zero (zeros look like preallocation).
        let dirty = batch.iter().rposition(|b| *b != 0).unwrap() + 1;
        assert_eq!(report.torn_bytes, dirty as u64);
        assert_eq!(records(tmp.path()).len(), 2);
    }
}
