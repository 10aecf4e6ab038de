//! What `stampd audit export` and `query` look for, and where: a [`Query`] is matched against
//! the journal's records here ([`Query::in_journal`], every shard merged in time order) or
//! run against PostgreSQL ([`postgres::select`](super::postgres::select)).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use super::journal::{self, Next, Place, Position, Reader};
use super::record::{Entry, Record};
use crate::protocol::hex::unhex;
use crate::protocol::Timestamp;
use crate::serial::SERIAL_LEN;

/// What `stampd audit query` looks for; every field set must match.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Only this TSA identity's records. PostgreSQL only: a journal holds one TSA's records.
    pub identity: Option<String>,
    /// The token's serial number, padded to the full 18 octets (`--serial`, hex).
    pub serial: Option<Vec<u8>>,
    /// Records at or after this time (`--from`, inclusive).
    pub from: Option<Timestamp>,
    /// Records at or before this time (`--to`, inclusive).
    pub to: Option<Timestamp>,
    /// The imprint's digest, exactly (`--imprint`, hex).
    pub imprint: Option<Vec<u8>>,
    /// The `[[service]] name` that answered.
    pub service: Option<String>,
    /// The outcome as [`Record::status`] names it: `granted` or `rejection`.
    pub status: Option<String>,
    /// The entry's kind (`--kind`): `request` (RFC 3161), `authenticode`, or an event kind
    /// such as `clock`. Without it, requests and events both match (an event only when no
    /// request field is asked).
    pub kind: Option<String>,
}

/// A serial number as written by `export` (lowercase hex, no leading zeros) or by other
/// tools (`0x`, upper case, leading zeros).
pub fn parse_serial(s: &str) -> Result<Vec<u8>, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    if digits.is_empty() {
        return Err(format!("serial {s:?}: no digits"));
    }
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_string()
    };
    let bytes = unhex(&digits.to_ascii_lowercase())
        .ok_or_else(|| format!("serial {s}: not hexadecimal"))?;
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    if significant.len() > SERIAL_LEN {
        return Err(format!("serial {s}: longer than stampd's serial numbers"));
    }
    let mut out = vec![0u8; SERIAL_LEN - significant.len()];
    out.extend_from_slice(significant);
    Ok(out)
}

/// A query from filters as text (`stampd audit query` flags, the audit browser's form):
/// serial (hex), from and to (RFC 3339), imprint (hex), service, status.
pub fn query_of(
    serial: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    imprint: Option<&str>,
    service: Option<String>,
    status: Option<String>,
) -> Result<Query, String> {
    let time = |flag: &str, v: Option<&str>| {
        v.map(|t| {
            crate::protocol::Timestamp::parse_rfc3339(t).ok_or_else(|| {
                format!("{flag} {t}: not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)")
            })
        })
        .transpose()
    };
    if let Some(s) = status.as_deref() {
        if s != "granted" && s != "rejection" {
            return Err(format!("status {s}: granted or rejection"));
        }
    }
    Ok(Query {
        identity: None,
        serial: serial.map(parse_serial).transpose()?,
        from: time("from", from)?,
        to: time("to", to)?,
        imprint: imprint
            .map(|i| unhex(&i.to_ascii_lowercase()).ok_or(format!("imprint {i}: not hex")))
            .transpose()?,
        service,
        status,
        kind: None,
    })
}

/// Where reading a shard of the journal stopped before its end.
#[derive(Debug)]
pub enum Damage {
    /// A record or event frame whose body does not decode.
    Undecodable {
        /// The shard it is in.
        shard: usize,
        /// The frame's sequence number.
        seq: u64,
        /// What [`Record::decode`] said.
        error: &'static str,
    },
    /// A frame that cannot be read where it lies ([`Next::Corrupt`]).
    Corrupt {
        /// The shard it is in.
        shard: usize,
        /// Where the damage starts.
        at: Position,
        /// What is wrong there.
        reason: String,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Undecodable { shard, seq, error } => {
                write!(f, "shard {shard}: frame {seq} does not decode: {error}")
            }
            Damage::Corrupt { shard, at, reason } => write!(
                f,
                "shard {shard}: damaged at segment {} offset {}: {reason}",
                at.segment, at.offset
            ),
        }
    }
}

/// What a [`ShardEntries`] read next.
#[allow(
    clippy::large_enum_variant,
    reason = "a step is matched at once; boxing its entry would allocate once per entry read"
)]
enum Step {
    Entry(u64, Entry),
    End,
    Damaged(Damage),
}

/// One shard's entries in its own order.
struct ShardEntries {
    shard: usize,
    dir: PathBuf,
    reader: Reader,
    /// The next matching entry and its seq, read ahead for [`Query::in_journal`]'s merge.
    head: Option<(u64, Entry)>,
}

impl ShardEntries {
    fn open(shard: usize, dir: PathBuf) -> Result<ShardEntries, String> {
        let reader = Reader::open(&dir, None).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(ShardEntries {
            shard,
            dir,
            reader,
            head: None,
        })
    }

    /// Reads the next matching entry into `head`: its time (the merge's key), or `None` at
    /// the end or at damage (then added to `damage`).
    fn advance(&mut self, query: &Query, damage: &mut Vec<Damage>) -> Result<Option<i128>, String> {
        match self.next(query)? {
            Step::Entry(seq, e) => {
                let time = e.time().unix_nanos();
                self.head = Some((seq, e));
                Ok(Some(time))
            }
            Step::End => Ok(None),
            Step::Damaged(d) => {
                damage.push(d);
                Ok(None)
            }
        }
    }

    /// The next entry that `query` matches.
    fn next(&mut self, query: &Query) -> Result<Step, String> {
        loop {
            let next = self
                .reader
                .next_settled(&self.dir)
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
            match next {
                Next::Frame(f) => match journal::entry(&f) {
                    None => {}
                    Some(Err(error)) => {
                        return Ok(Step::Damaged(Damage::Undecodable {
                            shard: self.shard,
                            seq: f.seq,
                            error,
                        }))
                    }
                    Some(Ok(e)) if query.matches(&e) => return Ok(Step::Entry(f.seq, e)),
                    Some(Ok(_)) => {}
                },
                Next::End { .. } => return Ok(Step::End),
                Next::Corrupt { at, reason } => {
                    return Ok(Step::Damaged(Damage::Corrupt {
                        shard: self.shard,
                        at,
                        reason,
                    }))
                }
            }
        }
    }
}

/// The entry at `place` in the journal directory `dir` (only its shard is read); `None`
/// when there is none (no such shard or seq, or a record or event that does not decode).
pub fn entry_at(dir: &Path, place: Place) -> Result<Option<Entry>, String> {
    let present = journal::shards(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let Some((_, path)) = present.into_iter().find(|(s, _)| *s == place.shard) else {
        return Ok(None);
    };
    let mut shard = ShardEntries::open(place.shard, path)?;
    let all = Query::default();
    loop {
        match shard.next(&all)? {
            Step::Entry(seq, e) if seq == place.seq => return Ok(Some(e)),
            Step::Entry(seq, _) if seq < place.seq => {}
            Step::Entry(..) | Step::End | Step::Damaged(_) => return Ok(None),
        }
    }
}

impl Query {
    /// Whether `e` matches every field set (`identity` is not checked here: a journal
    /// holds one TSA's records).
    pub fn matches(&self, e: &Entry) -> bool {
        let t = e.time().unix_nanos();
        let in_time = self.from.is_none_or(|f| t >= f.unix_nanos())
            && self.to.is_none_or(|to| t <= to.unix_nanos());
        match e {
            Entry::Request(r) => {
                in_time
                    && self.kind.as_deref().is_none_or(|k| k == r.kind())
                    && self.matches_request(r)
            }
            Entry::Event(ev) => {
                in_time
                    && self.kind.as_deref().is_none_or(|k| k == &*ev.kind)
                    && !self.asks_request_fields()
            }
        }
    }

    /// Whether a field only requests have is asked for (events never match those).
    pub fn asks_request_fields(&self) -> bool {
        self.serial.is_some()
            || self.imprint.is_some()
            || self.service.is_some()
            || self.status.is_some()
    }

    fn matches_request(&self, r: &Record) -> bool {
        self.serial
            .as_ref()
            .is_none_or(|s| r.serial().is_some_and(|rs| rs[..] == s[..]))
            && self
                .imprint
                .as_ref()
                .is_none_or(|i| r.imprint.as_ref() == Some(i))
            && self.service.as_deref().is_none_or(|s| *r.service == *s)
            && self.status.as_deref().is_none_or(|s| r.status() == s)
    }

    /// Hands every entry of the journal in `dir` that matches, with its place, to `each`
    /// until `each` returns false: every shard's, merged in time order. Each shard is read
    /// in its own order (roughly by time) and the merge always hands over the earliest of
    /// the shards' next matching entries (ties: the lower shard), so the order is the same
    /// on every run over the same files, and every shard's entries come in that shard's
    /// order. A damaged shard ends at its damage and the others are read on; the damage of
    /// each such shard is returned (empty: the journal is whole, as far as it was read).
    pub fn in_journal(
        &self,
        dir: &Path,
        mut each: impl FnMut(Place, Entry) -> bool,
    ) -> Result<Vec<Damage>, String> {
        let present = journal::shards(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if present.is_empty() {
            return Err(format!("{}: no audit journal here", dir.display()));
        }
        let mut shards = present
            .into_iter()
            .map(|(shard, path)| ShardEntries::open(shard, path))
            .collect::<Result<Vec<_>, _>>()?;
        // (time of its next matching entry, shard, index) of every shard that has one.
        let mut heap = BinaryHeap::new();
        let mut damage = Vec::new();
        for (i, s) in shards.iter_mut().enumerate() {
            if let Some(time) = s.advance(self, &mut damage)? {
                heap.push(Reverse((time, s.shard, i)));
            }
        }
        while let Some(Reverse((_, shard, i))) = heap.pop() {
            let s = &mut shards[i];
            let Some((seq, e)) = s.head.take() else {
                continue;
            };
            if !each(Place { shard, seq }, e) {
                break;
            }
            if let Some(time) = s.advance(self, &mut damage)? {
                heap.push(Reverse((time, shard, i)));
            }
        }
        Ok(damage)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::journal::{shard_dir, Journal};
    use crate::audit::record::tests::sample;

    /// Writes `entries` to the journal shard in `dir` (one batch) and closes it: every test
    /// of the read side writes its journals here.
    pub(crate) fn write_shard(dir: &Path, entries: &[Entry]) {
        let (mut j, _) = Journal::open(journal::tests::settings(dir)).unwrap();
        j.append_now(entries).unwrap();
    }

    /// Requests at these times (seconds after `sample`'s base time; each its own nonce).
    pub(crate) fn requests(times: &[u64]) -> Vec<Entry> {
        times.iter().map(|&t| Entry::Request(sample(t))).collect()
    }

    /// Flips a bit inside the record of `sample(n)` in the shard in `dir` (its nonce, so
    /// the frame's CRC no longer matches).
    pub(crate) fn damage_record(dir: &Path, n: u64) {
        let seg = journal::segment_path(dir, 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes
            .windows(8)
            .position(|w| w == n.to_be_bytes())
            .expect("the record's nonce");
        bytes[at] ^= 1;
        std::fs::write(&seg, bytes).unwrap();
    }

    fn merged(dir: &Path, q: &Query) -> (Vec<(Place, u64)>, Vec<Damage>) {
        let mut got = Vec::new();
        let damage = q
            .in_journal(dir, |place, e| {
                got.push((place, e.time().unix_secs as u64 - 1_795_000_000));
                true
            })
            .unwrap();
        (got, damage)
    }

    #[test]
    fn shards_are_merged_in_time_order_each_in_its_own_order() {
        let tmp = tempfile::tempdir().unwrap();
        write_shard(tmp.path(), &requests(&[10, 40, 70]));
        // A shard's own order is only roughly by time: 45 after 50 stays after it.
        write_shard(&shard_dir(tmp.path(), 1), &requests(&[20, 50, 45]));
        write_shard(&shard_dir(tmp.path(), 2), &requests(&[30, 70]));
        let (got, damage) = merged(tmp.path(), &Query::default());
        assert!(damage.is_empty(), "{damage:?}");
        let order: Vec<(usize, u64)> = got.iter().map(|(p, t)| (p.shard, *t)).collect();
        assert_eq!(
            order,
            [
                (0, 10),
                (1, 20),
                (2, 30),
                (0, 40),
                (1, 50),
                (1, 45),
                // A tie: the lower shard first.
                (0, 70),
                (2, 70)
            ]
        );
        // Every place names its entry.
        for (place, t) in &got {
            let e = entry_at(tmp.path(), *place).unwrap().expect("found");
            assert_eq!(e, Entry::Request(sample(*t)), "{place:?}");
        }
        let missing = Place { shard: 3, seq: 1 };
        assert_eq!(entry_at(tmp.path(), missing).unwrap(), None);
        // Filters apply before the merge; `each` returning false stops it.
        let late = Query {
            from: Some(sample(45).time),
            ..Query::default()
        };
        let times: Vec<u64> = merged(tmp.path(), &late).0.iter().map(|g| g.1).collect();
        assert_eq!(times, [50, 45, 70, 70]);
        let mut seen = 0;
        Query::default()
            .in_journal(tmp.path(), |_, _| {
                seen += 1;
                seen < 3
            })
            .unwrap();
        assert_eq!(seen, 3);
    }

    #[test]
    fn a_journal_from_before_sharding_reads_as_shard_0() {
        let tmp = tempfile::tempdir().unwrap();
        write_shard(tmp.path(), &requests(&[1, 2]));
        let (got, _) = merged(tmp.path(), &Query::default());
        assert!(got.iter().all(|(p, _)| p.shard == 0), "{got:?}");
        assert_eq!(got.len(), 2);
        let j = Entry::Request(sample(1)).to_json_at(got[0].0);
        assert_eq!((&j["shard"], &j["seq"]), (&0.into(), &got[0].0.seq.into()));
        assert_eq!(j["serial"], "1");
        let empty = tempfile::tempdir().unwrap();
        let e = Query::default().in_journal(empty.path(), |_, _| true);
        assert!(e.is_err_and(|e| e.contains("no audit journal here")));
    }

    #[test]
    fn a_damaged_shard_ends_at_its_damage_and_the_others_are_read_on() {
        let tmp = tempfile::tempdir().unwrap();
        write_shard(tmp.path(), &requests(&[1, 4]));
        let one = shard_dir(tmp.path(), 1);
        write_shard(&one, &requests(&[2, 3, 5]));
        damage_record(&one, 3);
        let (got, damage) = merged(tmp.path(), &Query::default());
        let times: Vec<u64> = got.iter().map(|g| g.1).collect();
        assert_eq!(times, [1, 2, 4]);
        assert!(
            matches!(damage[..], [Damage::Corrupt { shard: 1, .. }]),
            "{damage:?}"
        );
        assert!(damage[0]
            .to_string()
            .starts_with("shard 1: damaged at segment 1"));
    }

    #[test]
    fn serials_are_read_as_other_tools_write_them() {
        let canonical = parse_serial(&format!("{:036x}", 0x1234)).unwrap();
        assert_eq!(canonical.len(), SERIAL_LEN);
        for s in ["0x1234", "1234", "0X1234", "001234", "0x01234"] {
            assert_eq!(parse_serial(s).unwrap(), canonical, "{s}");
        }
        assert!(parse_serial("xyz").is_err());
        assert!(parse_serial("").is_err() && parse_serial("0x").is_err());
        assert!(parse_serial(&"ff".repeat(19)).is_err());
    }

    #[test]
    fn every_shard_is_verified_and_a_broken_one_is_named() {
        use crate::audit::journal::{shard_dir, shards_json, verify_shards};
        let tmp = tempfile::tempdir().unwrap();
        assert!(verify_shards(tmp.path()).is_err(), "no shard at all");
        write_shard(tmp.path(), &requests(&[1, 2]));
        write_shard(&shard_dir(tmp.path(), 1), &requests(&[3]));
        let two = shard_dir(tmp.path(), 2);
        write_shard(&two, &requests(&[4, 5, 6]));
        let verified = verify_shards(tmp.path()).unwrap();
        let j = shards_json(tmp.path(), &verified);
        assert_eq!(j["intact"], true, "{j}");
        assert_eq!((&j["records"], &j["events"]), (&6.into(), &0.into()));
        damage_record(&two, 5);
        let verified = verify_shards(tmp.path()).unwrap();
        let shards: Vec<usize> = verified.iter().map(|(s, _)| *s).collect();
        assert_eq!(shards, [0, 1, 2]);
        let j = shards_json(tmp.path(), &verified);
        assert_eq!(j["intact"], false, "{j}");
        assert_eq!(j["shards"][1]["intact"], true);
        assert_eq!(j["shards"][1]["records"], 1);
        assert_eq!(j["shards"][2]["shard"], 2);
        assert_eq!(j["shards"][2]["dir"], two.display().to_string());
        assert_eq!(j["shards"][2]["records"], 1, "read up to the damage: {j}");
        assert!(j["shards"][2]["break"].is_string(), "{j}");
        assert!(j["shards"][0]["break"].is_null() && j["shards"][0]["head_seq"].is_u64());
    }
}
