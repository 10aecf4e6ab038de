//! `stampd audit verify`: walks the whole journal, every shard, and reports the first break
//! of each.

use std::path::Path;

use super::frame::parse_segment_header;
use super::open::dirty_end;
use super::reader::{Next, Reader};
use super::segment::{segment_path, segments, shard_dir, shards, writer_running};
use super::{Frame, Hash, Kind};

/// The result of [`verify`].
#[derive(Debug, Default)]
pub struct Verified {
    /// Record frames read before the end or the first break.
    pub records: u64,
    /// Event frames read (clock synchronisation events).
    pub events: u64,
    /// Checkpoint frames read.
    pub checkpoints: u64,
    /// Segment files read.
    pub segments: u64,
    /// The seq of the first frame present (above 0 once retention removed segments).
    pub first_seq: Option<u64>,
    /// The last whole frame: its seq and hash (the value to compare with a logged
    /// checkpoint).
    pub head: Option<(u64, Hash)>,
    /// Bytes of an unfinished write at the very end (a torn tail, or a write in progress).
    pub incomplete_tail: u64,
    /// The first break, if any.
    pub broken: Option<String>,
    /// The hash after each frame asked for ([`verify_marking`]): `(seq, hash)`.
    pub marks: Vec<(u64, Hash)>,
    /// Checkpoints carrying a valid anchor (a token of the TSA's own over the chain hash).
    pub anchors: u64,
    /// The newest of them: the head it proves.
    pub last_anchor: Option<super::anchor::Anchored>,
    /// The last few frames' hashes, for the anchor of a checkpoint (it stamps a frame just
    /// before it).
    recent: std::collections::VecDeque<(u64, Hash)>,
}

/// Frames kept in [`Verified::recent`]: an anchor stamps the frame before its own record(s).
const RECENT: usize = 8;

/// A chain head an auditor knows (`--expect-head SEQ:HASH`, e.g. from an anchored
/// checkpoint): the trail must still hold frame SEQ, with this hash. Truncating the newest
/// frames leaves every CRC and link intact; only a head known from elsewhere shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedHead {
    /// The frame's seq.
    pub seq: u64,
    /// The chain's hash after it.
    pub hash: Hash,
}

impl std::str::FromStr for ExpectedHead {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected SEQ:HASH (a frame's seq and 64 hex digits)");
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq = seq.trim().parse().map_err(|_| bad())?;
        let bytes = crate::protocol::hex::unhex(hash.trim()).ok_or_else(bad)?;
        Ok(ExpectedHead {
            seq,
            hash: bytes.try_into().map_err(|_| bad())?,
        })
    }
}

/// What became of each expected head in `chains`: whether a chain holds frame SEQ with its
/// hash, how many chains hold frame SEQ at all (each shard's chain counts seqs of its own),
/// and whether SEQ lies before every chain's first kept frame.
pub fn check_heads<'a>(
    expected: &[ExpectedHead],
    chains: impl Iterator<Item = &'a Verified> + Clone,
) -> Vec<HeadCheck> {
    expected
        .iter()
        .map(|e| {
            let at = chains
                .clone()
                .flat_map(|v| v.marks.iter())
                .filter(|(seq, _)| *seq == e.seq);
            HeadCheck {
                expected: *e,
                found: at.clone().any(|(_, h)| *h == e.hash),
                chains_at_seq: at.count(),
                before_start: chains.clone().any(|v| v.head.is_some())
                    && chains
                        .clone()
                        .filter(|v| v.head.is_some())
                        .all(|v| v.first_seq.unwrap_or(0) > e.seq),
            }
        })
        .collect()
}

/// One [`check_heads`] result.
#[derive(Debug, Clone, Copy)]
pub struct HeadCheck {
    /// The head looked for.
    pub expected: ExpectedHead,
    /// A chain holds it.
    pub found: bool,
    /// How many chains hold a frame with its seq (with any hash).
    pub chains_at_seq: usize,
    /// Its seq is before the first frame every chain keeps (retention removed it, or it
    /// was shipped before the chain table existed): it cannot be checked here.
    pub before_start: bool,
}

/// The chain rule every verifier applies to each frame after the first: the next seq, and
/// `prev` naming the hash of the frame before. `Err` says what is wrong.
pub fn follows(head: (u64, Hash), frame: &super::Frame) -> Result<(), String> {
    let (seq, hash) = head;
    if frame.seq != seq + 1 {
        return Err(format!("seq jumps from {seq}"));
    }
    if frame.prev != hash {
        return Err("hash chain broken: the previous frame was changed or removed".into());
    }
    Ok(())
}

impl Verified {
    /// The JSON form `stampd audit verify --json` prints and the admin API answers.
    pub fn to_json(&self) -> serde_json::Value {
        let (seq, hash) = self.head.map_or((None, None), |(s, h)| {
            (Some(s), Some(crate::protocol::hex::hex(&h)))
        });
        serde_json::json!({
            "intact": self.broken.is_none(),
            "records": self.records,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "segments": self.segments,
            "first_seq": self.first_seq,
            "head_seq": seq,
            "head_hash": hash,
            "incomplete_tail_bytes": self.incomplete_tail,
            "anchored_checkpoints": self.anchors,
            "last_anchor": self.last_anchor,
            "break": self.broken,
        })
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Event => "event",
        _ => "record",
    }
}

/// [`verify`] of every shard under the journal directory `dir`, in shard order; an error
/// when there is no shard at all. Each shard has its own chain, so one broken shard leaves
/// the others' results whole.
pub fn verify_shards(dir: &Path) -> std::io::Result<Vec<(usize, Verified)>> {
    verify_shards_marking(dir, &[], &[])
}

/// [`verify_shards`] with [`verify_marking`]'s marks and anchors checked against `trusted`.
pub fn verify_shards_marking(
    dir: &Path,
    wanted: &[u64],
    trusted: &[Vec<u8>],
) -> std::io::Result<Vec<(usize, Verified)>> {
    let present = shards(dir)?;
    if present.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no audit journal here",
        ));
    }
    present
        .into_iter()
        .map(|(shard, path)| Ok((shard, verify_marking(&path, wanted, trusted)?)))
        .collect()
}

/// The JSON form of [`verify_shards`] that `stampd audit verify --json` prints and the admin
/// API answers: `intact` (every shard), `records` and `events` (totals), and `shards`, each
/// [`Verified::to_json`] with its `shard` and `dir`.
pub fn shards_json(dir: &Path, verified: &[(usize, Verified)]) -> serde_json::Value {
    let shards: Vec<serde_json::Value> = verified
        .iter()
        .map(|(shard, v)| {
            let mut j = v.to_json();
            if let Some(m) = j.as_object_mut() {
                m.insert("shard".into(), (*shard).into());
                m.insert(
                    "dir".into(),
                    shard_dir(dir, *shard).display().to_string().into(),
                );
            }
            j
        })
        .collect();
    let (records, events) = totals(verified);
    serde_json::json!({
        "intact": verified.iter().all(|(_, v)| v.broken.is_none()),
        "records": records,
        "events": events,
        "shards": shards,
    })
}

/// Record and event frames read over all shards of a [`verify_shards`] result.
pub fn totals(verified: &[(usize, Verified)]) -> (u64, u64) {
    verified
        .iter()
        .fold((0, 0), |(r, e), (_, v)| (r + v.records, e + v.events))
}

/// Walks the whole journal: CRCs, the hash chain, seq continuity, segment headers.
pub fn verify(dir: &Path) -> std::io::Result<Verified> {
    verify_marking(dir, &[], &[])
}

/// [`verify`], keeping the hash after each frame whose seq is in `wanted` (in
/// [`Verified::marks`]), and checking anchors' certificate chains against `trusted` CA
/// certificates (none: signatures only).
pub fn verify_marking(
    dir: &Path,
    wanted: &[u64],
    trusted: &[Vec<u8>],
) -> std::io::Result<Verified> {
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
                Some(head) => {
                    if let Err(e) = follows(head, &frame) {
                        v.broken = fail(&e);
                    }
                }
            }
        }
        if v.broken.is_none() {
            if let Some(Err(e)) = super::entry(&frame) {
                v.broken = fail(&format!("{} does not decode: {e}", kind_name(frame.kind)));
            }
        }
        if v.broken.is_none() {
            if let Err(e) = v.count(&frame, wanted, trusted) {
                v.broken = fail(&e);
            }
        }
        if v.broken.is_some() {
            break;
        }
    }
    Ok(v)
}

impl Verified {
    /// Counts a frame that holds to the chain (checking a checkpoint's anchor), keeps its
    /// hash if `wanted`, and makes it the head. `Err`: the anchor does not verify.
    pub fn count(
        &mut self,
        frame: &Frame,
        wanted: &[u64],
        trusted: &[Vec<u8>],
    ) -> Result<(), String> {
        match frame.kind {
            Kind::Record => self.records += 1,
            Kind::Event => self.events += 1,
            Kind::Checkpoint => {
                self.checkpoints += 1;
                let recent = &self.recent;
                let hash_at = |seq| recent.iter().find(|(s, _)| *s == seq).map(|(_, h)| *h);
                if let Some(a) = super::anchor::check(frame, hash_at, trusted)? {
                    self.anchors += 1;
                    self.last_anchor = Some(a);
                }
            }
            Kind::Segment => {}
        }
        if wanted.contains(&frame.seq) {
            self.marks.push((frame.seq, frame.hash));
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((frame.seq, frame.hash));
        self.head = Some((frame.seq, frame.hash));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::BATCH_END;
    use super::super::tests::settings;
    use super::super::Journal;
    use super::*;
    use crate::audit::record::tests::sample;

    #[test]
    fn bytes_after_the_preallocated_zeros_are_a_torn_write_unless_a_writer_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append_now(&[sample(1)]).unwrap();
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
        j.append_now(&(0..6).map(sample).collect::<Vec<_>>())
            .unwrap();
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
            j.append_now(&[sample(n)]).unwrap();
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
        j.append_now(&(0..3).map(sample).collect::<Vec<_>>())
            .unwrap();
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
