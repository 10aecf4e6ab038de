//! `stampd audit verify --postgres`: every shard's hash chain re-checked from the rows in
//! PostgreSQL alone, so an auditor needs no access to the nodes' disks. The shipper keeps
//! each frame's payload in `audit_frame` (segment headers and checkpoints too); this walks
//! them in seq order — CRC, seq continuity from the first shipped frame, each `prev` naming
//! the hash of the frame before — checks every `audit_record` / `audit_event` row against
//! the frame it was shipped from (so the queryable tables cannot be edited unseen), and the
//! shipper's stored position against the chain's head.

use std::collections::HashMap;

use tokio_postgres::{Client, GenericClient};

use super::target::describe;
use crate::audit::journal::{self, follows, parse_segment_header, Frame, Kind, Verified};
use crate::audit::record::Entry;

/// One journal (a node's shard) as PostgreSQL holds it, and what its walk found.
#[derive(Debug)]
pub struct Chain {
    /// The TSA identity.
    pub identity: String,
    /// The journal id.
    pub journal: i64,
    /// The node and shard that shipped it (unknown for journals shipped by `stampd audit
    /// ship` or before the chain table existed).
    pub node: Option<i32>,
    /// Its shard index on that node.
    pub shard: Option<i32>,
    /// The walk: counts, first seq, head, marks and the first break.
    pub verified: Verified,
    /// Records below the first frame in the chain table (shipped by a stampd older than the
    /// table): in PostgreSQL, but not verifiable from it.
    pub unchained_records: i64,
}

impl Chain {
    /// "identity node N shard S (journal J)".
    pub fn name(&self) -> String {
        let opt = |v: Option<i32>| v.map_or("?".into(), |v| v.to_string());
        format!(
            "{} node {} shard {} (journal {})",
            self.identity,
            opt(self.node),
            opt(self.shard),
            self.journal
        )
    }

    /// The JSON form `--json` prints: [`Verified::to_json`] with the chain's names.
    pub fn to_json(&self) -> serde_json::Value {
        let mut j = self.verified.to_json();
        if let Some(m) = j.as_object_mut() {
            m.insert("identity".into(), self.identity.clone().into());
            m.insert("journal".into(), self.journal.into());
            m.insert("node".into(), self.node.into());
            m.insert("shard".into(), self.shard.into());
            m.insert("unchained_records".into(), self.unchained_records.into());
            m.remove("incomplete_tail_bytes");
        }
        j
    }
}

/// Frames fetched per query.
const PAGE: i64 = 5000;

/// Walks every journal in the database (of `identity`, of `node`, when given), keeping the
/// hash after each frame whose seq is in `wanted` and checking anchors' certificate chains
/// against `trusted` CA certificates (none: signatures only). One read-only snapshot
/// (repeatable read), so shippers committing meanwhile do not show as breaks.
pub async fn verify(
    client: &mut Client,
    identity: Option<&str>,
    node: Option<u16>,
    wanted: &[u64],
    trusted: &[Vec<u8>],
) -> Result<Vec<Chain>, String> {
    let db = |e: tokio_postgres::Error| describe(&e);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db)?;
    super::schema::require(&tx).await?;
    let node = node.map(i32::from);
    let journals = tx
        .query(
            "SELECT tsa, journal, node, shard, seq, hash, chain_from FROM audit_position \
             WHERE ($1::text IS NULL OR tsa = $1) AND ($2::int IS NULL OR node = $2) \
             ORDER BY tsa, node, shard, journal",
            &[&identity, &node],
        )
        .await
        .map_err(db)?;
    let mut chains = Vec::new();
    for j in &journals {
        let mut chain = Chain {
            identity: j.get(0),
            journal: j.get(1),
            node: j.get(2),
            shard: j.get(3),
            verified: Verified::default(),
            unchained_records: 0,
        };
        let (pos_seq, pos_hash, chain_from): (i64, Vec<u8>, Option<i64>) =
            (j.get(4), j.get(5), j.get(6));
        walk(&tx, &mut chain, wanted, trusted).await?;
        let v = &mut chain.verified;
        if v.broken.is_none() {
            v.broken = against_position(v, pos_seq, &pos_hash, chain_from);
        }
        // Rows no frame accounts for past the head: inserted, or their frames removed.
        let past = v.head.map_or(-1, |(seq, _)| seq as i64);
        let start = chain_from.unwrap_or(i64::MAX);
        let stray: i64 = tx
            .query_one(
                "SELECT (SELECT count(*) FROM audit_record \
                         WHERE tsa = $1 AND journal = $2 AND seq > $3 AND seq >= $4) \
                      + (SELECT count(*) FROM audit_event \
                         WHERE tsa = $1 AND journal = $2 AND seq > $3 AND seq >= $4)",
                &[&chain.identity, &chain.journal, &past, &start],
            )
            .await
            .map_err(db)?
            .get(0);
        if v.broken.is_none() && stray > 0 {
            v.broken = Some(format!(
                "{stray} rows in audit_record or audit_event past the chain's head (seq {past})"
            ));
        }
        // Rows shipped before the chain table existed: below its first frame.
        chain.unchained_records = tx
            .query_one(
                "SELECT count(*) FROM audit_record WHERE tsa = $1 AND journal = $2 AND seq < $3",
                &[&chain.identity, &chain.journal, &start],
            )
            .await
            .map_err(db)?
            .get(0);
        chains.push(chain);
    }
    // Rows of a journal no shipper ever recorded a position for: not shipped by stampd.
    let orphans = tx
        .query(
            "SELECT DISTINCT r.tsa, r.journal FROM (SELECT tsa, journal FROM audit_record \
                 UNION SELECT tsa, journal FROM audit_event) r \
             LEFT JOIN audit_position p ON p.tsa = r.tsa AND p.journal = r.journal \
             WHERE p.journal IS NULL AND ($1::text IS NULL OR r.tsa = $1) AND $2::int IS NULL",
            &[&identity, &node],
        )
        .await
        .map_err(db)?;
    for o in &orphans {
        let mut verified = Verified::default();
        verified.broken = Some("rows of a journal no shipper recorded a position for".into());
        chains.push(Chain {
            identity: o.get(0),
            journal: o.get(1),
            node: None,
            shard: None,
            verified,
            unchained_records: 0,
        });
    }
    tx.commit().await.map_err(db)?;
    Ok(chains)
}

/// The chain against the shipper's position: it starts where the position says frames were
/// first kept, and ends at the position's seq with its hash.
fn against_position(
    v: &Verified,
    pos_seq: i64,
    pos_hash: &[u8],
    chain_from: Option<i64>,
) -> Option<String> {
    let first = v.head.map(|_| v.first_seq.unwrap_or(0) as i64);
    match (chain_from, first, v.head) {
        (None, None, _) => None,
        (None, Some(_), _) => {
            Some("frames in the chain table, but the position says none were kept".into())
        }
        (Some(from), None, _) => Some(format!(
            "no frames in the chain table, but they were kept from seq {from}: removed"
        )),
        (Some(from), Some(first), _) if first != from => Some(format!(
            "the chain table starts at seq {first}, but frames were kept from seq {from}: \
             the frames before {first} were removed"
        )),
        (_, _, Some((seq, hash))) if seq as i64 != pos_seq || hash[..] != *pos_hash => {
            Some(format!(
                "the chain ends at seq {seq}, but the shipper's position is seq {pos_seq}: \
                 frames after {seq} were removed, or the position changed"
            ))
        }
        _ => None,
    }
}

/// The key columns of an `audit_record` row, as its frame must give them back.
#[derive(Debug, PartialEq)]
struct RecordKey {
    serial: Option<Vec<u8>>,
    ns: i64,
    status: String,
    imprint: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
}

/// Walks one journal's frames in pages, stopping at the first break.
async fn walk(
    client: &impl GenericClient,
    chain: &mut Chain,
    wanted: &[u64],
    trusted: &[Vec<u8>],
) -> Result<(), String> {
    let db = |e: tokio_postgres::Error| describe(&e);
    let (tsa, journal) = (&chain.identity, &chain.journal);
    let v = &mut chain.verified;
    let mut after = -1i64;
    loop {
        let frames = client
            .query(
                "SELECT seq, crc, payload FROM audit_frame \
                 WHERE tsa = $1 AND journal = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                &[tsa, journal, &after, &PAGE],
            )
            .await
            .map_err(db)?;
        let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
            return Ok(());
        };
        let (lo, hi): (i64, i64) = (first.get(0), last.get(0));
        let mut records: HashMap<i64, RecordKey> = client
            .query(
                "SELECT seq, serial, gen_time_ns, status, message_imprint, response \
                 FROM audit_record WHERE tsa = $1 AND journal = $2 AND seq BETWEEN $3 AND $4",
                &[tsa, journal, &lo, &hi],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let key = RecordKey {
                    serial: r.get(1),
                    ns: r.get(2),
                    status: r.get(3),
                    imprint: r.get(4),
                    response: r.get(5),
                };
                (r.get::<_, i64>(0), key)
            })
            .collect();
        let mut events: HashMap<i64, (i64, String)> = client
            .query(
                "SELECT seq, time_ns, event FROM audit_event \
                 WHERE tsa = $1 AND journal = $2 AND seq BETWEEN $3 AND $4",
                &[tsa, journal, &lo, &hi],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get::<_, i64>(0), (r.get(1), r.get(2))))
            .collect();
        for row in &frames {
            let seq: i64 = row.get(0);
            let crc: i64 = row.get(1);
            let payload: Vec<u8> = row.get(2);
            let fail = |why: String| Some(format!("seq {seq}: {why}"));
            if i64::from(crc32fast::hash(&payload)) != crc {
                v.broken = fail("CRC mismatch".into());
                return Ok(());
            }
            let frame = match Frame::from_payload(&payload) {
                Ok(f) if f.seq as i64 == seq => f,
                Ok(f) => {
                    v.broken = fail(format!("the payload is frame {}", f.seq));
                    return Ok(());
                }
                Err(e) => {
                    v.broken = fail(e.into());
                    return Ok(());
                }
            };
            let linked = match v.head {
                None if frame.seq == 0 && frame.prev != [0; 32] => {
                    Err("the first frame does not start the chain".to_string())
                }
                None => {
                    if frame.seq > 0 {
                        v.first_seq = Some(frame.seq);
                    }
                    Ok(())
                }
                Some(head) => follows(head, &frame),
            };
            let checked =
                linked.and_then(|()| against_rows(&frame, journal, &mut records, &mut events));
            let counted = checked.and_then(|()| v.count(&frame, wanted, trusted));
            if let Err(e) = counted {
                v.broken = fail(e);
                return Ok(());
            }
            if frame.kind == Kind::Segment {
                v.segments += 1;
            }
        }
        // Rows no frame accounts for: inserted, or their frames removed.
        if let Some(seq) = records.keys().chain(events.keys()).min() {
            v.broken = Some(format!(
                "seq {seq}: a row in audit_record or audit_event without its frame"
            ));
            return Ok(());
        }
        after = hi;
    }
}

/// A record or event frame has its row, and the row says what the frame says; a segment
/// header names this journal.
fn against_rows(
    frame: &Frame,
    journal: &i64,
    records: &mut HashMap<i64, RecordKey>,
    events: &mut HashMap<i64, (i64, String)>,
) -> Result<(), String> {
    let seq = frame.seq as i64;
    match journal::entry(frame) {
        None if frame.kind == Kind::Segment => match parse_segment_header(&frame.body) {
            Some((id, _)) if id as i64 == *journal => Ok(()),
            _ => Err("a segment header of another journal".into()),
        },
        None => Ok(()),
        Some(Err(e)) => Err(format!("the frame does not decode: {e}")),
        Some(Ok(Entry::Request(r))) => {
            let expect = RecordKey {
                serial: r.serial().map(|s| s.to_vec()),
                ns: i64::try_from(r.time.unix_nanos()).unwrap_or(i64::MAX),
                status: r.status().into(),
                imprint: r.imprint.clone(),
                response: r.response.clone(),
            };
            match records.remove(&seq) {
                None => Err("its audit_record row is missing".into()),
                Some(row) if row != expect => Err(
                    "its audit_record row differs from the frame (serial, gen_time, status, \
                     imprint or response changed)"
                        .into(),
                ),
                Some(_) => Ok(()),
            }
        }
        Some(Ok(Entry::Event(e))) => {
            let ns = i64::try_from(e.time.unix_nanos()).unwrap_or(i64::MAX);
            match events.remove(&seq) {
                None => Err("its audit_event row is missing".into()),
                Some((t, name)) if t != ns || *name != *e.name => {
                    Err("its audit_event row differs from the frame".into())
                }
                Some(_) => Ok(()),
            }
        }
    }
}
