//! The journal: append-only segment files in `DATA_DIR/journal/`, hash-chained.
//!
//! Every frame is `len (u32 LE) | crc32 (u32 LE, of the payload) | payload`, and every
//! payload is `kind (u8) | seq (u64 LE) | prev (32 bytes) | body`: `seq` counts frames over
//! the whole journal and `prev` is the SHA-256 of the previous frame's payload, so changing,
//! removing or reordering any frame breaks the chain at the next one. Frames are:
//! - a segment header, first in every segment file (magic, journal id, segment number);
//!   a new segment is written as a temporary file and renamed, so every segment file has one;
//! - an audit record ([`Record`]);
//! - a checkpoint whenever seq reaches a multiple of `checkpoint_every` (its time; its hash
//!   is logged, so operators can anchor the chain outside this machine).
//!
//! One batch is one `write` and one `fdatasync`. A crash can leave part of the last batch
//! (a torn tail): on open it is moved aside to `SEGMENT.torn-OFFSET` and the segment cut back
//! to its last whole frame. Damage anywhere else is not a torn write and stops the start.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{digest, SHA256};

use super::record::Record;

const MAGIC: &[u8; 8] = b"STAMPDJ1";
/// Set in the kind byte of the last frame of each write: torn-tail repair uses it to tell a
/// torn batch (no batch ends after the damage) from damage to acknowledged frames.
const BATCH_END: u8 = 0x80;
/// How far ahead of the write position a segment is allocated and zero-filled. The fill
/// and its sync run inside a batch's commit: 4 MiB stalled a batch for about 10 ms on the
/// VM's disk (p99 12 ms at half load); 256 KiB costs about 1 ms, with one more metadata
/// commit per 256 KiB of records.
const PREFILL: u64 = 256 << 10;
/// len + crc.
const FRAME_HEAD: usize = 8;
/// kind + seq + prev.
const PAYLOAD_HEAD: usize = 1 + 8 + 32;
/// Longest frame we accept when reading: records are bounded by the HTTP body limit and the
/// token size, far below this.
const MAX_FRAME: usize = 16 << 20;

pub type Hash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Segment = 0,
    Record = 1,
    Checkpoint = 2,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        [Kind::Segment, Kind::Record, Kind::Checkpoint]
            .into_iter()
            .find(|k| *k as u8 == v)
    }
}

/// A place in the journal: the segment number and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    /// Past everything: for reading a journal no server is writing.
    pub const END: Position = Position {
        segment: u64::MAX,
        offset: u64::MAX,
    };
}

/// Journal settings (`[audit.journal]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    /// A segment is closed and a new one begun once it reaches this size.
    pub segment_bytes: u64,
    /// Closed segments older than this are deleted once shipped (`None`: kept for ever).
    pub retention: Option<Duration>,
    /// A checkpoint frame whenever seq reaches a multiple of this.
    pub checkpoint_every: u64,
    /// The longest damaged tail that is treated as a torn batch write and cut on open.
    pub max_torn_tail: u64,
}

/// How far the journal is durable and how far it has been shipped, shared with the shipper.
#[derive(Debug)]
pub struct Progress {
    pub journal_id: u64,
    /// The last frame known to be on disk.
    pub committed_seq: AtomicU64,
    /// Where the durable part of the journal ends: readers never look past it (with
    /// preallocated segments, a frame being written looks whole but fails its CRC).
    pub committed_at: std::sync::Mutex<Position>,
    /// The last frame shipped to PostgreSQL (`u64::MAX` without a shipper: retention may
    /// delete any closed segment).
    pub shipped_seq: AtomicU64,
    pub wake: tokio::sync::Notify,
}

impl Progress {
    /// For reading a journal no server is writing (`stampd audit ship`): everything in it is
    /// committed.
    pub fn of_stopped_journal(dir: &Path) -> Result<Progress, String> {
        let first = segments(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .first()
            .copied()
            .ok_or_else(|| format!("{}: no audit journal here", dir.display()))?;
        let path = segment_path(dir, first);
        let (journal_id, _) = segment_header(&path)
            .and_then(|f| parse_segment_header(&f.body))
            .ok_or_else(|| format!("{}: no readable segment header", path.display()))?;
        Ok(Progress {
            journal_id,
            committed_seq: AtomicU64::new(u64::MAX),
            committed_at: std::sync::Mutex::new(Position::END),
            shipped_seq: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: Kind,
    /// The last frame of one write (one batch).
    pub batch_end: bool,
    pub seq: u64,
    pub prev: Hash,
    pub hash: Hash,
    pub body: Vec<u8>,
}

/// The writer's end.
pub struct Journal {
    settings: Settings,
    /// Held while open: one writer per journal.
    _lock: File,
    file: File,
    segment: u64,
    /// Where the next frame goes.
    offset: u64,
    /// The file is allocated and zero-filled up to here: batches overwrite blocks that
    /// exist, so their fdatasync flushes data only, without a metadata journal commit
    /// (about half the latency and CPU of appending, measured on ext4).
    zeroed_to: u64,
    next_seq: u64,
    head: Hash,
    /// Set once the file is in an unknown state: every later batch fails.
    failed: Option<String>,
    /// The last rotation failed (logged once until one succeeds).
    rotate_failed: bool,
    progress: Arc<Progress>,
    buf: Vec<u8>,
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

/// Segment numbers present in `dir`, in order.
pub fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Appends one frame to `out`; returns its hash (the next frame's `prev`).
fn push_frame(
    out: &mut Vec<u8>,
    (kind, batch_end): (Kind, bool),
    seq: u64,
    prev: &Hash,
    body: impl FnOnce(&mut Vec<u8>),
) -> Hash {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEAD]);
    out.push(kind as u8 | if batch_end { BATCH_END } else { 0 });
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(prev);
    body(out);
    let payload = &out[start + FRAME_HEAD..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest(&SHA256, payload).as_ref());
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// What is at the start of `buf`.
enum Parse {
    Whole(Frame, usize),
    /// More bytes are needed (at least this many in all).
    Incomplete(usize),
    /// Zeros: the preallocated end of a segment, not yet written.
    Zero,
    Corrupt(&'static str),
}

fn parse_frame(buf: &[u8]) -> Parse {
    if buf.len() < FRAME_HEAD {
        return Parse::Incomplete(FRAME_HEAD);
    }
    if buf[..FRAME_HEAD].iter().all(|b| *b == 0) {
        return Parse::Zero;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if !(PAYLOAD_HEAD..=MAX_FRAME).contains(&len) {
        return Parse::Corrupt("impossible frame length");
    }
    let Some(payload) = buf.get(FRAME_HEAD..FRAME_HEAD + len) else {
        return Parse::Incomplete(FRAME_HEAD + len);
    };
    if crc32fast::hash(payload) != crc {
        return Parse::Corrupt("CRC mismatch");
    }
    let Some(kind) = Kind::from_u8(payload[0] & !BATCH_END) else {
        return Parse::Corrupt("unknown frame kind");
    };
    let batch_end = payload[0] & BATCH_END != 0;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&payload[1..9]);
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&payload[9..41]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest(&SHA256, payload).as_ref());
    Parse::Whole(
        Frame {
            kind,
            batch_end,
            seq: u64::from_le_bytes(seq),
            prev,
            hash,
            body: payload[PAYLOAD_HEAD..].to_vec(),
        },
        FRAME_HEAD + len,
    )
}

/// A segment header's journal id and segment number.
pub fn parse_segment_header(body: &[u8]) -> Option<(u64, u64)> {
    if body.len() != 24 || &body[..8] != MAGIC {
        return None;
    }
    let id = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let seg = u64::from_le_bytes(body[16..24].try_into().ok()?);
    Some((id, seg))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a new segment file atomically (temporary file, fsync, rename, fsync the directory)
/// holding only its header. Returns the open file and the header's hash. The file is opened
/// before the rename, so nothing after the rename can fail but the directory sync; if that
/// fails the new segment is removed again.
fn create_segment(
    dir: &Path,
    journal_id: u64,
    segment: u64,
    seq: u64,
    prev: &Hash,
) -> std::io::Result<(File, u64, Hash)> {
    let mut buf = Vec::new();
    let hash = push_frame(&mut buf, (Kind::Segment, true), seq, prev, |out| {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&journal_id.to_le_bytes());
        out.extend_from_slice(&segment.to_le_bytes());
    });
    let path = segment_path(dir, segment);
    let tmp = path.with_extension("seg.tmp");
    // Left over from an earlier attempt that failed: never used.
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&tmp)?;
    file.write_all_at(&buf, 0)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Err(e) = sync_dir(dir) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok((file, buf.len() as u64, hash))
}

/// What [`Journal::open`] found.
#[derive(Debug, Default)]
pub struct OpenReport {
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
        if let Some(cut) = tail.bad_at {
            // What a torn write left: up to the last byte that is not preallocated zero.
            let dirty = dirty_end(&bytes).max(cut);
            let len = (dirty - cut) as u64;
            if len > settings.max_torn_tail || later_batch_after(&bytes, cut, tail.last_seq) {
                return Err(format!(
                    "{}: damaged at byte {cut} with {len} bytes after it; that is not a torn \
                     write. Run `stampd audit verify --data-dir DIR` and restore the journal",
                    path.display()
                ));
            }
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
            progress: Arc::new(Progress {
                journal_id,
                committed_seq: AtomicU64::new(last_seq),
                committed_at: std::sync::Mutex::new(Position { segment, offset }),
                shipped_seq: AtomicU64::new(u64::MAX),
                wake: tokio::sync::Notify::new(),
            }),
            buf: Vec::new(),
        }
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn head(&self) -> (u64, Hash) {
        (self.next_seq - 1, self.head)
    }

    /// Writes a batch with one write and one fdatasync. On failure nothing of the batch
    /// counts. A failed write whose bytes could be cut off again (disk full) may be retried
    /// with the next batch; a failed fdatasync, or a cut that fails, leaves the file in an
    /// unknown state, so the journal refuses every later batch until a restart repairs it.
    pub fn append(&mut self, records: &[Record]) -> std::io::Result<()> {
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
            let kind = (Kind::Record, last && !checkpoint);
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
            tracing::info!(seq, hash = %super::record::hex(&hash), "journal checkpoint");
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
                .and_then(|t| t.elapsed().ok())
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the bytes that are not zero end.
fn dirty_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// Is a server writing this journal now (its lock is held)?
fn writer_running(dir: &Path) -> bool {
    File::open(dir.join("journal.lock")).is_ok_and(|f| f.try_lock().is_err())
}

/// Takes the journal's lock file: one writer (or `audit ship`) per journal.
pub fn lock_journal(dir: &Path) -> Result<File, String> {
    let path = dir.join("journal.lock");
    let lock = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    lock.try_lock().map_err(|_| {
        format!(
            "{} is locked: a running stampd writes this journal",
            path.display()
        )
    })?;
    Ok(lock)
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

/// A segment file's header frame, when it is whole.
fn segment_header(path: &Path) -> Option<Frame> {
    let f = File::open(path).ok()?;
    let mut head = [0u8; FRAME_HEAD + PAYLOAD_HEAD + 24];
    f.read_exact_at(&mut head, 0).ok()?;
    match parse_frame(&head) {
        Parse::Whole(frame, _) if frame.kind == Kind::Segment => Some(frame),
        _ => None,
    }
}

/// What a [`Reader`] found next.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// Nothing more yet (or `Incomplete` bytes of an unfinished write at the end).
    End {
        incomplete: u64,
    },
    Corrupt {
        at: Position,
        reason: String,
    },
}

/// Reads frames in order from a position, across segments, never past `limit` (the last
/// durable seq, for a live journal).
pub struct Reader {
    dir: PathBuf,
    at: Position,
    /// Where the last frame returned starts.
    last: Position,
    file: Option<File>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
}

const CHUNK: usize = 256 * 1024;

impl Reader {
    /// From `from`, or from the first segment present when `from` is `None`.
    pub fn open(dir: &Path, from: Option<Position>) -> std::io::Result<Reader> {
        let at = match from {
            Some(p) => p,
            None => Position {
                segment: segments(dir)?.first().copied().unwrap_or(1),
                offset: 0,
            },
        };
        Ok(Reader {
            dir: dir.to_path_buf(),
            at,
            last: at,
            file: None,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// The position after the last frame returned.
    pub fn position(&self) -> Position {
        self.at
    }

    /// Where the last frame returned starts.
    pub fn frame_start(&self) -> Position {
        self.last
    }

    /// Goes back to `at` (forgetting what was read).
    fn seek(&mut self, at: Position) {
        self.at = at;
        self.last = at;
        self.file = None;
        self.buf.clear();
        self.buf_at = at.offset;
    }

    /// The next frame of a journal a server may be writing (no committed position is known):
    /// a frame caught while being written looks whole in a preallocated segment but fails
    /// its CRC, so while the writer holds the journal such a frame is read again after a
    /// moment before it counts as damage.
    pub fn next_settled(&mut self, dir: &Path) -> std::io::Result<Next> {
        let mut tries = 0;
        loop {
            let before = self.position();
            match self.next(Position::END)? {
                Next::Corrupt { .. } if tries < 100 && writer_running(dir) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    self.seek(before);
                }
                other => return Ok(other),
            }
        }
    }

    /// Reads from the current position into the buffer: `need` bytes or more, but never
    /// past `limit` (bytes that are not durable yet are neither parsed nor kept).
    fn fill(&mut self, need: usize, limit: Position) -> std::io::Result<usize> {
        if self.file.is_none() {
            match File::open(segment_path(&self.dir, self.at.segment)) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = &self.file else {
            return Ok(0);
        };
        let mut want = need.max(CHUNK);
        if limit.segment == self.at.segment {
            want = want.min(limit.offset.saturating_sub(self.at.offset) as usize);
        }
        let mut chunk = vec![0u8; want];
        let mut got = 0;
        while got < chunk.len() {
            match file.read_at(&mut chunk[got..], self.at.offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        chunk.truncate(got);
        self.buf = chunk;
        self.buf_at = self.at.offset;
        Ok(got)
    }

    /// The next frame that starts before `limit` (where the durable journal ends;
    /// [`Position::END`] for a journal no server writes).
    pub fn next(&mut self, limit: Position) -> std::io::Result<Next> {
        let mut refreshed = false;
        let mut closed = false;
        loop {
            if self.at >= limit {
                // Nothing past the committed point is read, or kept: a failed batch is
                // zeroed again and rewritten.
                self.buf.clear();
                self.buf_at = self.at.offset;
                return Ok(Next::End { incomplete: 0 });
            }
            let start = (self.at.offset - self.buf_at) as usize;
            let parsed = match self.buf.get(start..) {
                Some(rest) if self.buf_at <= self.at.offset => parse_frame(rest),
                _ => Parse::Incomplete(FRAME_HEAD),
            };
            match parsed {
                Parse::Whole(frame, len) => {
                    self.last = self.at;
                    self.at.offset += len as u64;
                    return Ok(Next::Frame(frame));
                }
                Parse::Corrupt(reason) => {
                    return Ok(Next::Corrupt {
                        at: self.at,
                        reason: reason.into(),
                    })
                }
                Parse::Zero => {
                    // Whether a newer segment exists is decided before the bytes here are
                    // looked at again: if it does, this one was complete before it was
                    // created, and zeros after a fresh read are padding.
                    let next = self.at.segment + 1;
                    if !refreshed {
                        refreshed = true;
                        closed = segment_path(&self.dir, next).exists();
                        self.fill(FRAME_HEAD, limit)?;
                        continue;
                    }
                    if closed {
                        self.at = Position {
                            segment: next,
                            offset: 0,
                        };
                        self.file = None;
                        self.buf.clear();
                        self.buf_at = 0;
                        refreshed = false;
                        continue;
                    }
                    return Ok(Next::End { incomplete: 0 });
                }
                Parse::Incomplete(need) => {
                    let got = self.fill(need, limit)?;
                    if got >= need {
                        continue;
                    }
                    // The end of this segment (for now). A newer segment means this one is
                    // closed: what remains here is damage, unless nothing remains.
                    let next = Position {
                        segment: self.at.segment + 1,
                        offset: 0,
                    };
                    if segment_path(&self.dir, next.segment).exists() {
                        // Read once more: the writer may have finished this segment since.
                        let got = self.fill(need, limit)?;
                        if got >= need {
                            continue;
                        }
                        if got > 0 {
                            return Ok(Next::Corrupt {
                                at: self.at,
                                reason: format!(
                                    "{got} bytes of an incomplete frame in a closed segment"
                                ),
                            });
                        }
                        self.at = next;
                        self.file = None;
                        self.buf.clear();
                        self.buf_at = 0;
                        continue;
                    }
                    return Ok(Next::End {
                        incomplete: got as u64,
                    });
                }
            }
        }
    }
}

/// The result of [`verify`].
#[derive(Debug, Default)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
    pub segments: u64,
    pub first_seq: Option<u64>,
    pub head: Option<(u64, Hash)>,
    /// Bytes of an unfinished write at the very end (a torn tail, or a write in progress).
    pub incomplete_tail: u64,
    /// The first break, if any.
    pub broken: Option<String>,
}

/// Walks the whole journal: CRCs, the hash chain, seq continuity, segment headers.
pub fn verify(dir: &Path) -> std::io::Result<Verified> {
    let mut v = Verified::default();
    let present = segments(dir)?;
    let Some(&first) = present.first() else {
        v.broken = Some(format!("no journal segments in {}", dir.display()));
        return Ok(v);
    };
    let mut reader = Reader::open(dir, None)?;
    let mut journal_id = None;
    let mut expect_segment = first;
    loop {
        let end = reader.position();
        let frame = match reader.next_settled(dir)? {
            Next::Frame(f) => f,
            Next::End { incomplete } => {
                // Bytes after the last whole frame that are not preallocated zeros: a write
                // in progress when a server runs, a torn write (cut on the next start) when
                // none does.
                let path = segment_path(dir, end.segment);
                let rest = std::fs::read(&path)?
                    .get(end.offset as usize..)
                    .map_or(0, dirty_end) as u64;
                v.incomplete_tail = incomplete.max(rest);
                if v.incomplete_tail > 0 && !writer_running(dir) {
                    v.broken = Some(format!(
                        "segment {} offset {}: {} bytes after the last whole frame (a torn \
                         write; the next start cuts it)",
                        end.segment, end.offset, v.incomplete_tail
                    ));
                }
                // Listed again: a server may have begun a segment meanwhile.
                let newest = segments(dir)?.last().copied().unwrap_or(first);
                if end.segment != newest {
                    v.broken = Some(format!(
                        "segment {} is missing (the journal ends at segment {})",
                        end.segment + 1,
                        end.segment
                    ));
                }
                break;
            }
            Next::Corrupt { at, reason } => {
                v.broken = Some(format!(
                    "segment {} offset {}: {reason}",
                    at.segment, at.offset
                ));
                break;
            }
        };
        let at = reader.frame_start();
        let place = format!(
            "segment {} offset {} (seq {})",
            at.segment, at.offset, frame.seq
        );
        let fail = |why: &str| Some(format!("{place}: {why}"));
        if at.offset == 0 {
            let header = parse_segment_header(&frame.body).filter(|_| frame.kind == Kind::Segment);
            match header {
                None => v.broken = fail("no segment header"),
                Some((id, seg)) if seg != expect_segment || journal_id.is_some_and(|j| j != id) => {
                    v.broken = fail("segment header names another segment or journal")
                }
                Some((id, _)) => journal_id = Some(id),
            }
            expect_segment += 1;
            v.segments += 1;
        } else if frame.kind == Kind::Segment {
            v.broken = fail("segment header inside a segment");
        }
        if v.broken.is_none() {
            match v.head {
                None if (frame.seq == 0 || at.segment == 1) && frame.prev != [0; 32] => {
                    v.broken = fail("the first frame does not start the chain")
                }
                None if at.segment == 1 && frame.seq != 0 => {
                    v.broken = fail("segment 1 does not start at seq 0")
                }
                None if frame.seq == 0 => {}
                // The first segment left after retention: the chain before it is gone.
                None => v.first_seq = Some(frame.seq),
                Some((seq, _)) if frame.seq != seq + 1 => {
                    v.broken = fail(&format!("seq jumps from {seq}"))
                }
                Some((_, hash)) if frame.prev != hash => {
                    v.broken = fail("hash chain broken: the previous frame was changed or removed")
                }
                Some(_) => {}
            }
        }
        if v.broken.is_none() && frame.kind == Kind::Record {
            if let Err(e) = Record::decode(&frame.body) {
                v.broken = fail(&format!("record does not decode: {e}"));
            }
        }
        if v.broken.is_some() {
            break;
        }
        match frame.kind {
            Kind::Record => v.records += 1,
            Kind::Checkpoint => v.checkpoints += 1,
            Kind::Segment => {}
        }
        v.head = Some((frame.seq, frame.hash));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::sample;
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings {
            dir: dir.to_path_buf(),
            segment_bytes: 64 << 20,
            retention: None,
            checkpoint_every: 4,
            max_torn_tail: 1 << 20,
        }
    }

    fn records(dir: &Path) -> Vec<Record> {
        let mut r = Reader::open(dir, None).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next(Position::END).unwrap() {
                Next::Frame(f) if f.kind == Kind::Record => {
                    out.push(Record::decode(&f.body).unwrap())
                }
                Next::Frame(_) => {}
                Next::End { .. } => return out,
                Next::Corrupt { reason, .. } => panic!("{reason}"),
            }
        }
    }

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

    #[test]
    fn a_torn_tail_is_cut_and_kept_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        let batch: Vec<_> = (0..5).map(sample).collect();
        j.append(&batch).unwrap();
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
        j.append(&[sample(6)]).unwrap();
        assert_eq!(records(tmp.path()).len(), 6);
        assert!(verify(tmp.path()).unwrap().broken.is_none());
    }

    #[test]
    fn a_reader_keeps_no_bytes_past_the_committed_point_between_calls() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append(&[sample(1)]).unwrap();
        let progress = j.progress();
        let limit = || *progress.committed_at.lock().unwrap();
        // A batch being written past the committed point while the reader reads.
        let seg = segment_path(tmp.path(), 1);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0x5a; 300], j.offset).unwrap();
        let mut reader = Reader::open(tmp.path(), None).unwrap();
        assert!(matches!(reader.next(limit()).unwrap(), Next::Frame(_))); // the header
                                                                          // That batch fails and is replaced by another; the reader must see the new bytes.
        f.write_all_at(&[0; 300], j.offset).unwrap();
        j.append(&[sample(2)]).unwrap();
        let mut got = Vec::new();
        loop {
            match reader.next(limit()).unwrap() {
                Next::Frame(f) if f.kind == Kind::Record => {
                    got.push(Record::decode(&f.body).unwrap())
                }
                Next::Frame(_) => {}
                Next::End { .. } => break,
                Next::Corrupt { reason, .. } => panic!("{reason}"),
            }
        }
        assert_eq!(got, [sample(1), sample(2)]);
    }

    #[test]
    fn a_torn_batch_whose_later_sectors_landed_is_still_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append(&[sample(1), sample(2)]).unwrap();
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

    #[test]
    fn a_live_reader_never_reads_past_the_committed_point() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append(&[sample(1), sample(2)]).unwrap();
        let progress = j.progress();
        let limit = || *progress.committed_at.lock().unwrap();
        let mut reader = Reader::open(tmp.path(), None).unwrap();
        let mut seen = 0;
        loop {
            match reader.next(limit()).unwrap() {
                Next::Frame(f) => seen += usize::from(f.kind == Kind::Record),
                Next::End { .. } => break,
                Next::Corrupt { reason, .. } => panic!("{reason}"),
            }
        }
        assert_eq!(seen, 2);
        // A batch being written (preallocated, so it looks whole but fails its CRC): the
        // reader does not even look at it.
        let seg = segment_path(tmp.path(), 1);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let mut frame = Vec::new();
        push_frame(&mut frame, (Kind::Record, true), 4, &[0; 32], |o| {
            sample(9).encode(o)
        });
        frame[20] ^= 0xff;
        f.write_all_at(&frame, j.offset).unwrap();
        assert!(matches!(reader.next(limit()).unwrap(), Next::End { .. }));
        // The real batch lands there; once committed, the reader reads it.
        j.append(&[sample(3)]).unwrap();
        match reader.next(limit()).unwrap() {
            Next::Frame(f) => assert_eq!(Record::decode(&f.body).unwrap(), sample(3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bytes_after_the_preallocated_zeros_are_a_torn_write_unless_a_writer_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append(&[sample(1)]).unwrap();
        let seg = segment_path(tmp.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        assert!(bytes.len() as u64 > j.offset, "preallocated");
        assert!(verify(tmp.path()).unwrap().broken.is_none());
        // A later sector of a torn batch reached the disk, the first did not.
        let at = j.offset as usize + 600;
        bytes[at..at + 4].copy_from_slice(b"junk");
        std::fs::write(&seg, &bytes).unwrap();
        // While the writer holds the journal, that is a write in progress...
        let v = verify(tmp.path()).unwrap();
        assert!(v.broken.is_none() && v.incomplete_tail == 604, "{v:?}");
        drop(j);
        // ... without it, a torn write, which the next start cuts.
        let v = verify(tmp.path()).unwrap();
        assert!(
            v.broken.as_deref().is_some_and(|b| b.contains("torn")),
            "{v:?}"
        );
        let (_j, report) = Journal::open(settings(tmp.path())).unwrap();
        assert_eq!(report.torn_bytes, 604);
        assert!(verify(tmp.path()).unwrap().broken.is_none());
    }

    #[test]
    fn an_edited_record_is_reported_even_with_a_fixed_crc() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append(&(0..6).map(sample).collect::<Vec<_>>()).unwrap();
        drop(j);
        let seg = segment_path(tmp.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        // Find the third record frame and change its latency, then fix its CRC.
        let mut at = 0;
        let mut n = 0;
        loop {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if bytes[at + 8] == Kind::Record as u8 {
                n += 1;
                if n == 3 {
                    let end = at + 8 + len;
                    bytes[end - 21] ^= 1; // latency_us, still a valid record
                    let crc = crc32fast::hash(&bytes[at + 8..end]);
                    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
                    break;
                }
            }
            at += 8 + len;
        }
        std::fs::write(&seg, &bytes).unwrap();
        let v = verify(tmp.path()).unwrap();
        let broken = v.broken.expect("the edit is found");
        assert!(broken.contains("hash chain broken"), "{broken}");
        // Without the CRC fix the CRC check finds it first.
        let tmp2 = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp2.path())).unwrap();
        // One batch each: the damage hits acknowledged batches, with batch ends after it.
        for n in 0..6 {
            j.append(&[sample(n)]).unwrap();
        }
        drop(j);
        let seg2 = segment_path(tmp2.path(), 1);
        let mut bytes = std::fs::read(&seg2).unwrap();
        // A byte inside the third record frame (whole frames follow it; the file's zero
        // padding after the last frame is left alone).
        let (mut at, mut n) = (0, 0);
        loop {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if bytes[at + 8] & !BATCH_END == Kind::Record as u8 {
                n += 1;
                if n == 3 {
                    bytes[at + 8 + len / 2] ^= 0x40;
                    break;
                }
            }
            at += 8 + len;
        }
        std::fs::write(&seg2, &bytes).unwrap();
        let v = verify(tmp2.path()).unwrap();
        assert!(v.broken.is_some());
        // Damage in the middle is not a torn tail (whole frames follow it): the journal
        // refuses to open, however short the rest.
        let err = Journal::open(settings(tmp2.path())).err().expect("refused");
        assert!(err.contains("not a torn write"), "{err}");
    }

    #[test]
    fn a_removed_record_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append(&(0..3).map(sample).collect::<Vec<_>>()).unwrap();
        drop(j);
        let seg = segment_path(tmp.path(), 1);
        let bytes = std::fs::read(&seg).unwrap();
        // Header, then record 0: remove record 0.
        let hlen = 8 + u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let rlen = 8 + u32::from_le_bytes(bytes[hlen..hlen + 4].try_into().unwrap()) as usize;
        let mut cut = bytes[..hlen].to_vec();
        cut.extend_from_slice(&bytes[hlen + rlen..]);
        std::fs::write(&seg, &cut).unwrap();
        let broken = verify(tmp.path()).unwrap().broken.expect("found");
        assert!(broken.contains("seq jumps"), "{broken}");
    }
}
