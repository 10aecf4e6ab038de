//! The frame codec, pure, on bytes: `len (u32 LE) | crc32 (u32 LE, of the payload) |
//! payload`, the payload `kind (u8) | seq (u64 LE) | prev (32 bytes) | body`, and the body
//! of a segment header (magic, journal id, segment number).

use super::{Hash, Kind};
use crate::protocol::request::sha256;

pub(super) const MAGIC: &[u8; 8] = b"STAMPDJ1";
/// Set in the kind byte of the last frame of each write: torn-tail repair uses it to tell a
/// torn batch (no batch ends after the damage) from damage to acknowledged frames.
pub(super) const BATCH_END: u8 = 0x80;
/// len + crc.
pub(super) const FRAME_HEAD: usize = 8;
/// kind + seq + prev.
pub(super) const PAYLOAD_HEAD: usize = 1 + 8 + 32;
/// Longest frame we accept when reading: records are bounded by the HTTP body limit and the
/// token size, far below this.
const MAX_FRAME: usize = 16 << 20;

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// What the body holds.
    pub kind: Kind,
    /// The last frame of one write (one batch).
    pub batch_end: bool,
    /// The frame's number, counted over the whole journal from 0.
    pub seq: u64,
    /// The previous frame's hash (zeros for the journal's first frame).
    pub prev: Hash,
    /// SHA-256 of this frame's payload: what the next frame must name as `prev`.
    pub hash: Hash,
    /// The body: a segment header, an encoded record, or a checkpoint time.
    pub body: Vec<u8>,
}

/// Appends one frame to `out`; returns its hash (the next frame's `prev`).
pub(super) fn push_frame(
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
    let hash = sha256(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// What is at the start of `buf`.
pub(super) enum Parse {
    Whole(Frame, usize),
    /// More bytes are needed (at least this many in all).
    Incomplete(usize),
    /// Zeros: the preallocated end of a segment, not yet written.
    Zero,
    Corrupt(&'static str),
}

pub(super) fn parse_frame(buf: &[u8]) -> Parse {
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
    match Frame::from_payload(payload) {
        Ok(frame) => Parse::Whole(frame, FRAME_HEAD + len),
        Err(e) => Parse::Corrupt(e),
    }
}

impl Frame {
    /// The frame from its payload (`kind | seq | prev | body`), its hash computed: what a
    /// verifier does with the payloads PostgreSQL keeps (`audit_frame`).
    pub fn from_payload(payload: &[u8]) -> Result<Frame, &'static str> {
        if payload.len() < PAYLOAD_HEAD {
            return Err("payload shorter than its head");
        }
        let kind = Kind::from_u8(payload[0] & !BATCH_END).ok_or("unknown frame kind")?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&payload[1..9]);
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&payload[9..PAYLOAD_HEAD]);
        Ok(Frame {
            kind,
            batch_end: payload[0] & BATCH_END != 0,
            seq: u64::from_le_bytes(seq),
            prev,
            hash: sha256(payload),
            body: payload[PAYLOAD_HEAD..].to_vec(),
        })
    }

    /// The payload the frame was read from: what its hash and CRC cover.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(PAYLOAD_HEAD + self.body.len());
        p.push(self.kind as u8 | if self.batch_end { BATCH_END } else { 0 });
        p.extend_from_slice(&self.seq.to_le_bytes());
        p.extend_from_slice(&self.prev);
        p.extend_from_slice(&self.body);
        p
    }
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
