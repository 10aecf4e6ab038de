//! The journal: append-only segment files in `DATA_DIR/journal/`, hash-chained.
//!
//! Every frame is `len (u32 LE) | crc32 (u32 LE, of the payload) | payload`, and every
//! payload is `kind (u8) | seq (u64 LE) | prev (32 bytes) | body`: `seq` counts frames over
//! the whole journal and `prev` is the SHA-256 of the previous frame's payload, so changing,
//! removing or reordering any frame breaks the chain at the next one. Frames are:
//! - a segment header, first in every segment file (magic, journal id, segment number);
//!   a new segment is written as a temporary file and renamed, so every segment file has one;
//! - an audit record ([`Record`](super::Record));
//! - a checkpoint whenever seq reaches a multiple of `checkpoint_every`, and after the first
//!   batch `checkpoint_seconds` after the last one: its time, its hash logged, and a
//!   timestamp token of the TSA's own over the chain's hash ([`anchor`]).
//!
//! One batch is one `write` and one `fdatasync`. A crash can leave part of the last batch
//! (a torn tail): on open it is moved aside to `SEGMENT.torn-OFFSET` and the segment cut back
//! to its last whole frame. Damage anywhere else is not a torn write and stops the start.
//!
//! The files:
//! - `frame.rs`: the frame codec, on bytes ([`Frame`], segment header bodies);
//! - `segment.rs`: segment files (names, listing, atomic creation) and the journal lock;
//! - `open.rs`: [`Journal::open`] and torn-tail repair;
//! - `append.rs`: the write side ([`Journal::append`], rotation, retention);
//! - `reader.rs`: [`Reader`], frames in order across segments;
//! - `verify.rs`: [`verify()`], the whole-journal check, and [`verify_shards`] over every shard.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod anchor;
mod append;
pub use append::Ring;
pub mod budget;
mod frame;
mod open;
mod reader;
mod segment;
mod verify;

pub use frame::{parse_segment_header, Frame};
pub use open::OpenReport;
pub use reader::{Next, Reader};
pub use segment::{lock_journal, segment_path, segments, shard_dir, shards};
pub use verify::{
    check_heads, follows, shards_json, totals, verify, verify_marking, verify_shards,
    verify_shards_marking, ExpectedHead, HeadCheck, Verified,
};

use segment::segment_header;

/// A SHA-256 digest: a frame's hash (of its payload), which the next frame names as `prev`.
pub type Hash = [u8; 32];

/// What a frame holds (the low 7 bits of its kind byte; values are on disk, never reuse one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A segment header: first frame of every segment file (magic, journal id, number).
    Segment = 0,
    /// An audit [`Record`](super::Record) in its binary form.
    Record = 1,
    /// A checkpoint: its wall-clock time (Unix seconds, u64 LE), then the `TimeStampResp`
    /// anchoring it, if any ([`anchor`]); its hash is logged.
    Checkpoint = 2,
    /// An audit [`Event`](super::Event) (a clock synchronisation event) in its binary form.
    Event = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        [Kind::Segment, Kind::Record, Kind::Checkpoint, Kind::Event]
            .into_iter()
            .find(|k| *k as u8 == v)
    }
}

/// What the journal appends: a request's record, an event, or either.
pub trait Journaled {
    /// The frame kind it is written as.
    fn kind(&self) -> Kind;
    /// Appends the frame body.
    fn encode(&self, out: &mut Vec<u8>);
}

impl Journaled for super::Record {
    fn kind(&self) -> Kind {
        Kind::Record
    }
    fn encode(&self, out: &mut Vec<u8>) {
        super::Record::encode(self, out)
    }
}

impl Journaled for super::Entry {
    fn kind(&self) -> Kind {
        match self {
            super::Entry::Request(_) => Kind::Record,
            super::Entry::Event(_) => Kind::Event,
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        super::Entry::encode(self, out)
    }
}

/// The entry a record or event frame holds; `None` for segment headers and checkpoints.
pub fn entry(frame: &Frame) -> Option<Result<super::Entry, &'static str>> {
    match frame.kind {
        Kind::Record => Some(super::Record::decode(&frame.body).map(super::Entry::Request)),
        Kind::Event => Some(super::Event::decode(&frame.body).map(super::Entry::Event)),
        Kind::Segment | Kind::Checkpoint => None,
    }
}

impl super::Entry {
    /// The JSON object of the journal's `export` and `query`: [`Entry::to_json`](super::Entry::to_json) with the
    /// entry's `seq` and its `shard` (a seq names an entry only within its shard).
    pub fn to_json_at(&self, place: Place) -> serde_json::Value {
        let mut j = self.to_json(Some(place.seq));
        if let Some(m) = j.as_object_mut() {
            m.insert("shard".into(), place.shard.into());
        }
        j
    }
}

/// A place in the journal: the segment number and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The segment number (the file `NNNNNNNNNNNNNNNNNNNN.seg`).
    pub segment: u64,
    /// Bytes from the start of that segment file.
    pub offset: u64,
}

impl Position {
    /// Past everything: for reading a journal no server is writing.
    pub const END: Position = Position {
        segment: u64::MAX,
        offset: u64::MAX,
    };
}

/// Where an entry lies in a sharded journal: its shard and its seq in that shard's chain
/// (seq alone names an entry only within one shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The shard ([`shard_dir`]).
    pub shard: usize,
    /// The frame's seq in that shard.
    pub seq: u64,
}

/// Journal settings (`[audit.journal]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directory of the segment files (`[audit.journal] dir`, resolved).
    pub dir: PathBuf,
    /// A segment is closed and a new one begun once it reaches this size.
    pub segment_bytes: u64,
    /// Closed segments older than this are deleted once shipped (`None`: kept for ever).
    pub retention: Option<Duration>,
    /// A checkpoint frame whenever seq reaches a multiple of this.
    pub checkpoint_every: u64,
    /// ... and at the end of the first batch this long after the last checkpoint (`None`:
    /// by seq only).
    pub checkpoint_interval: Option<Duration>,
    /// Stamps each checkpoint's chain hash ([`anchor`]); unset: checkpoints not anchored.
    pub anchor: anchor::Anchor,
    /// The longest damaged tail that is treated as a torn batch write and cut on open.
    pub max_torn_tail: u64,
    /// The disk budget, one for every shard of the journal directory.
    pub budget: Arc<budget::DiskBudget>,
}

/// How far the journal is durable and how far it has been shipped, shared with the shipper.
#[derive(Debug)]
pub struct Progress {
    /// This journal's random id, written in every segment header (the shipper's rows name
    /// it, so two journals never collide in PostgreSQL).
    pub journal_id: u64,
    /// The last frame known to be on disk.
    pub committed_seq: AtomicU64,
    /// Where the durable part of the journal ends: readers never look past it (with
    /// preallocated segments, a frame being written looks whole but fails its CRC).
    pub committed_at: std::sync::Mutex<Position>,
    /// The last frame shipped to PostgreSQL (`u64::MAX` without a shipper: retention may
    /// delete any closed segment).
    pub shipped_seq: AtomicU64,
    /// The hash chain's value after the last committed frame (the admin dashboard shows it).
    pub head_hash: std::sync::Mutex<Hash>,
    /// Poked by the writer after each commit, so the shipper ships at once rather than at
    /// its next poll.
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
            head_hash: std::sync::Mutex::new([0; 32]),
            wake: tokio::sync::Notify::new(),
        })
    }
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
    /// When the last checkpoint was written (or the journal opened).
    last_checkpoint: std::time::Instant,
    /// The last checkpoint could not be anchored (logged once until one is).
    anchor_failed: bool,
    progress: Arc<Progress>,
    /// The disk budget, measured when a segment is extended and while the journal is full.
    budget: Arc<budget::DiskBudget>,
    buf: Vec<u8>,
}

/// Entry points for fuzz targets, on the bytes of a segment file alone (no directory).
pub mod fuzzing {
    use super::frame::{parse_frame, parse_segment_header, Parse, FRAME_HEAD};
    use super::{open, Kind};
    use crate::audit::record::Record;

    /// Reads `bytes` as a segment file, damaged or not, never panicking: as `Journal::open`
    /// reads the last segment (its header, the hash chain, the torn-tail decision with a
    /// 1 MiB limit), then frame by frame as `stampd audit verify` and the shipper do,
    /// decoding segment headers, checkpoints and records (each record must encode back to
    /// itself). Then once more with every frame's CRC made right, so that mutated bytes
    /// reach the chain checks and the record decoder rather than stopping at the CRC.
    pub fn segment(bytes: &[u8]) {
        read(bytes);
        let fixed = with_crcs_fixed(bytes);
        if fixed != bytes {
            read(&fixed);
        }
    }

    fn read(bytes: &[u8]) {
        if let Ok(Some((cut, dirty))) = open::open_decision(bytes, 1 << 20) {
            assert!(
                cut < dirty && dirty <= bytes.len(),
                "torn tail {cut}..{dirty}"
            );
        }
        let mut at = 0;
        while let Some(rest) = bytes.get(at..) {
            let Parse::Whole(frame, len) = parse_frame(rest) else {
                break;
            };
            assert!(len > FRAME_HEAD && len <= rest.len(), "frame length {len}");
            match frame.kind {
                Kind::Segment => {
                    let _ = parse_segment_header(&frame.body);
                }
                Kind::Checkpoint => {}
                Kind::Event => {
                    if let Ok(e) = super::super::Event::decode(&frame.body) {
                        let mut out = Vec::new();
                        e.encode(&mut out);
                        assert_eq!(out.len(), e.encoded_len(), "event encoded_len");
                        assert_eq!(super::super::Event::decode(&out).as_ref(), Ok(&e));
                    }
                }
                Kind::Record => {
                    if let Ok(r) = Record::decode(&frame.body) {
                        let mut out = Vec::new();
                        r.encode(&mut out);
                        assert_eq!(out.len(), r.encoded_len(), "encoded_len");
                        assert_eq!(Record::decode(&out).as_ref(), Ok(&r), "re-encoded");
                        let _ = r.to_json(Some(frame.seq));
                    }
                }
            }
            at += len;
        }
    }

    /// `bytes` with the CRC of every frame whose length field fits recomputed.
    fn with_crcs_fixed(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let mut at = 0;
        while let Some(head) = out.get(at..at + FRAME_HEAD) {
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let Some(payload) = out.get(at + FRAME_HEAD..at + FRAME_HEAD + len) else {
                break;
            };
            if len == 0 {
                break;
            }
            let crc = crc32fast::hash(payload);
            out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            at += FRAME_HEAD + len;
        }
        out
    }
}

/// Wall-clock Unix seconds for checkpoint bodies and torn-tail file names (not genTime).
fn unix_now() -> u64 {
    crate::clock::wall_now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
#[cfg(test)]
pub(crate) mod tests {
    use super::super::record::Record;
    use super::*;

    pub(crate) fn settings(dir: &Path) -> Settings {
        Settings {
            dir: dir.to_path_buf(),
            segment_bytes: 64 << 20,
            retention: None,
            checkpoint_every: 4,
            checkpoint_interval: None,
            anchor: Default::default(),
            max_torn_tail: 1 << 20,
            budget: Arc::new(budget::DiskBudget::new(dir, None, 0)),
        }
    }

    pub(crate) fn records(dir: &Path) -> Vec<Record> {
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
}
