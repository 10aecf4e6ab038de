//! `stampd audit verify | export | query | migrate`: what scripts rely on. Each returns its
//! exit status (0 when all is well) and writes to the given output.

use std::io::Write;
use std::path::Path;

use crate::audit::journal::{self, ExpectedHead, HeadCheck, Verified};
use crate::audit::postgres::{self, Target};
use crate::audit::query::Query;
use crate::protocol::hex::hex;

/// `audit verify`: exit 0 only when every CRC and the whole hash chain of every shard hold,
/// and every expected head is still there.
pub fn verify(
    dir: &Path,
    expect: &[ExpectedHead],
    trusted: &[Vec<u8>],
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let wanted: Vec<u64> = expect.iter().map(|e| e.seq).collect();
    let verified = journal::verify_shards_marking(dir, &wanted, trusted)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let broken = verified.iter().any(|(_, v)| v.broken.is_some());
    let heads = journal::check_heads(expect, verified.iter().map(|(_, v)| v));
    let heads_ok = heads.iter().all(|h| h.found);
    if json {
        let mut j = journal::shards_json(dir, &verified);
        if let Some(m) = j.as_object_mut() {
            m.insert("expected_heads".into(), heads_json(&heads));
            if !heads_ok {
                m.insert("intact".into(), false.into());
            }
        }
        let _ = writeln!(out, "{j}");
        return Ok(u8::from(broken || !heads_ok));
    }
    for (shard, v) in &verified {
        let name = format!(
            "shard {shard} ({})",
            journal::shard_dir(dir, *shard).display()
        );
        say_verified(out, &name, v, "segments");
        if v.incomplete_tail > 0 {
            let _ = writeln!(
                out,
                "  tail: {} bytes of an unfinished write (a write in progress, or a torn tail the next start cuts)",
                v.incomplete_tail
            );
        }
    }
    let (records, events) = journal::totals(&verified);
    let named: Vec<(String, &Verified)> = verified
        .iter()
        .map(|(shard, v)| (format!("shard {shard}"), v))
        .collect();
    Ok(say_verdict(
        out,
        &named,
        &heads,
        &format!(
            "{} shard(s), {records} records, {events} events",
            verified.len()
        ),
    ))
}

/// One chain's summary lines: counts, head, where it starts.
fn say_verified(out: &mut dyn Write, name: &str, v: &Verified, segments: &str) {
    let _ = writeln!(
        out,
        "{name}: {} records, {} events, {} checkpoints, {} {segments}",
        v.records, v.events, v.checkpoints, v.segments
    );
    if let Some((seq, hash)) = v.head {
        let _ = writeln!(out, "  head: seq {seq}, hash {}", hex(&hash));
    }
    if let Some(a) = &v.last_anchor {
        let _ = writeln!(
            out,
            "  {} anchored checkpoints; the newest stamps seq {} hash {} at {} (serial {}): \
             --expect-head {}:{}",
            v.anchors, a.seq, a.hash, a.gen_time, a.serial, a.seq, a.hash
        );
    }
    if let Some(first) = v.first_seq {
        let _ = writeln!(
            out,
            "  starts at seq {first}: the frames before it are not here (retention, or shipped \
             before the chain was kept)"
        );
    }
}

/// The verdict: each break, each expected head, then `intact` or not; the exit status.
fn say_verdict(
    out: &mut dyn Write,
    chains: &[(String, &Verified)],
    heads: &[HeadCheck],
    intact: &str,
) -> u8 {
    let mut failed = false;
    for (name, v) in chains {
        if let Some(b) = &v.broken {
            let _ = writeln!(out, "BROKEN: {name}: {b}");
            failed = true;
        }
    }
    for h in heads {
        let what = match (h.found, h.chains_at_seq) {
            (true, _) => "present".to_string(),
            (false, 0) if h.before_start => "MISSING: before the first frame any chain here \
                                            keeps (retention, or shipped before the chain was \
                                            kept): it cannot be checked"
                .to_string(),
            (false, 0) => "MISSING: no chain reaches that seq (its newest frames were cut off, \
                           or it is another trail)"
                .to_string(),
            (false, n) => format!(
                "NOT FOUND: {n} chain(s) hold that seq, none with this hash (changed, or \
                 another trail)"
            ),
        };
        failed |= !h.found;
        let e = h.expected;
        let _ = writeln!(
            out,
            "expected head seq {} hash {}: {what}",
            e.seq,
            hex(&e.hash)
        );
    }
    if !failed {
        let _ = writeln!(out, "intact: {intact}");
    }
    u8::from(failed)
}

fn heads_json(heads: &[HeadCheck]) -> serde_json::Value {
    heads
        .iter()
        .map(|h| {
            serde_json::json!({
                "seq": h.expected.seq,
                "hash": hex(&h.expected.hash),
                "found": h.found,
                "chains_at_seq": h.chains_at_seq,
                "before_start": h.before_start,
            })
        })
        .collect()
}

/// `audit verify --postgres`: every chain PostgreSQL holds (of `identity`, of `node`),
/// re-checked from the rows alone; exit 0 only when all hold and every expected head is
/// there.
pub fn verify_postgres(
    target: &Target,
    (identity, node): (Option<&str>, Option<u16>),
    expect: &[ExpectedHead],
    trusted: &[Vec<u8>],
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let wanted: Vec<u64> = expect.iter().map(|e| e.seq).collect();
    let rt = postgres::runtime().map_err(|e| e.to_string())?;
    let chains = rt.block_on(async {
        // Read only: the schema is checked, never migrated (an auditor's role may not).
        let mut client = target.connect().await.map_err(|e| postgres::describe(&e))?;
        postgres::verify(&mut client, identity, node, &wanted, trusted).await
    })?;
    if chains.is_empty() {
        return Err("no shipped journal in this database (of that identity and node)".into());
    }
    let heads = journal::check_heads(expect, chains.iter().map(|c| &c.verified));
    let broken = chains.iter().any(|c| c.verified.broken.is_some());
    let heads_ok = heads.iter().all(|h| h.found);
    if json {
        let j = serde_json::json!({
            "intact": !broken && heads_ok,
            "chains": chains.iter().map(postgres::Chain::to_json).collect::<Vec<_>>(),
            "expected_heads": heads_json(&heads),
        });
        let _ = writeln!(out, "{j}");
        return Ok(u8::from(broken || !heads_ok));
    }
    for c in &chains {
        say_verified(out, &c.name(), &c.verified, "segment headers");
        if c.unchained_records > 0 {
            let _ = writeln!(
                out,
                "  {} records shipped before the chain table existed: in PostgreSQL, not \
                 verifiable from it",
                c.unchained_records
            );
        }
    }
    let named: Vec<(String, &Verified)> = chains.iter().map(|c| (c.name(), &c.verified)).collect();
    let records: u64 = chains.iter().map(|c| c.verified.records).sum();
    let events: u64 = chains.iter().map(|c| c.verified.events).sum();
    Ok(say_verdict(
        out,
        &named,
        &heads,
        &format!(
            "{} chain(s), {records} records, {events} events",
            chains.len()
        ),
    ))
}

/// Every record of the journal matching `query`, every shard's in time order, as JSON
/// lines. Exit 1 when a shard is damaged (what came before its damage is written, and the
/// other shards' records).
#[allow(
    clippy::print_stderr,
    reason = "stdout carries the exported records; damage is reported beside them, on stderr"
)]
pub fn export(dir: &Path, query: &Query, out: &mut dyn Write) -> Result<u8, String> {
    // A failed write stops the export: the reader went away (e.g. `| head`).
    let damage = query.in_journal(dir, |place, e| {
        writeln!(out, "{}", e.to_json_at(place)).is_ok()
    })?;
    for d in &damage {
        eprintln!("stampd: journal {d}; run `stampd audit verify`");
    }
    Ok(u8::from(!damage.is_empty()))
}

/// Records in PostgreSQL matching `query`, as JSON lines.
pub fn query_postgres(target: &Target, query: &Query, out: &mut dyn Write) -> Result<u8, String> {
    let rt = postgres::runtime().map_err(|e| e.to_string())?;
    let rows = rt.block_on(async {
        let client = target.connect().await.map_err(|e| postgres::describe(&e))?;
        postgres::select(&client, query).await
    })?;
    for (seq, r) in rows {
        if writeln!(out, "{}", r.to_json(Some(seq))).is_err() {
            break;
        }
    }
    Ok(0)
}

/// Ships every shard of a journal to PostgreSQL from the position stored there for that
/// shard (each has its own journal id), until caught up.
pub fn ship(dir: &Path, target: Target, identity: &str, out: &mut dyn Write) -> Result<u8, String> {
    let shards = journal::shards(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if shards.is_empty() {
        return Err(format!("{}: no audit journal here", dir.display()));
    }
    // Only a journal no server is writing: a live one may still cut its unsynced tail. Every
    // shard is locked before any is shipped, so a running server is found before anything
    // moves.
    let _locks = shards
        .iter()
        .map(|(_, path)| journal::lock_journal(path))
        .collect::<Result<Vec<_>, _>>()?;
    let started = std::time::Instant::now();
    let mut total = 0;
    for (shard, path) in &shards {
        let progress = journal::Progress::of_stopped_journal(path)?;
        let rows = postgres::Shipper {
            target: target.clone(),
            identity: identity.to_string(),
            dir: path.clone(),
            progress: std::sync::Arc::new(progress),
            batch_rows: crate::audit::AuditConfig::default().ship_batch_rows,
            node: None,
            shard: *shard,
        }
        .ship_once()?;
        let _ = writeln!(
            out,
            "shard {shard} ({}): shipped {rows} rows",
            path.display()
        );
        total += rows;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "shipped {total} rows from {} shard(s) in {secs:.2} s ({:.0} rows/s)",
        shards.len(),
        total as f64 / secs.max(1e-9)
    );
    Ok(0)
}

/// Creates or brings up to date stampd's schema.
pub fn migrate(target: &Target, out: &mut dyn Write) -> Result<u8, String> {
    let rt = postgres::runtime().map_err(|e| e.to_string())?;
    let applied = rt.block_on(async {
        let mut client = target.connect().await.map_err(|e| postgres::describe(&e))?;
        postgres::migrate(&mut client)
            .await
            .map_err(|e| postgres::describe(&e))
    })?;
    let _ = writeln!(
        out,
        "audit schema up to date ({applied} migration(s) applied)"
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::query::tests::{damage_record, requests, write_shard};

    fn run(f: impl FnOnce(&mut dyn Write) -> Result<u8, String>) -> (u8, String) {
        let mut out = Vec::new();
        let code = f(&mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn verify_reports_every_shard_and_names_the_broken_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_shard(dir, &requests(&[1, 2]));
        let one = journal::shard_dir(dir, 1);
        write_shard(&one, &requests(&[3]));
        let (code, text) = run(|o| verify(dir, &[], &[], false, o));
        assert_eq!(code, 0, "{text}");
        assert!(text.contains(&format!("shard 1 ({}): 1 records", one.display())));
        assert!(
            text.ends_with("intact: 2 shard(s), 3 records, 0 events\n"),
            "{text}"
        );
        damage_record(&one, 3);
        let (code, text) = run(|o| verify(dir, &[], &[], false, o));
        assert_eq!(code, 1);
        assert!(
            text.contains("\nBROKEN: shard 1: segment 1 offset "),
            "{text}"
        );
        assert!(!text.contains("BROKEN: shard 0") && !text.contains("intact"));
        let (code, json) = run(|o| verify(dir, &[], &[], true, o));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (code, &v["intact"], &v["records"]),
            (1, &false.into(), &2.into())
        );
        assert_eq!(v["shards"][1]["intact"], false, "{v}");
    }

    #[test]
    fn an_expected_head_must_still_be_there_with_its_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_shard(dir, &requests(&[1, 2, 3]));
        let (_, json) = run(|o| verify(dir, &[], &[], true, o));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let head = format!(
            "{}:{}",
            v["shards"][0]["head_seq"], v["shards"][0]["head_hash"]
        )
        .replace('"', "");
        let known: ExpectedHead = head.parse().unwrap();
        let (code, text) = run(|o| verify(dir, &[known], &[], false, o));
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains(": present\n") && text.contains("intact"),
            "{text}"
        );
        // Another hash at that seq: a different chain.
        let mut other = known;
        other.hash[0] ^= 1;
        let (code, text) = run(|o| verify(dir, &[other], &[], false, o));
        assert_eq!(code, 1);
        assert!(
            text.contains(": NOT FOUND") && !text.contains("intact"),
            "{text}"
        );
        // A head past the end: frames were cut off after it was known.
        let later = ExpectedHead {
            seq: known.seq + 5,
            hash: known.hash,
        };
        let (code, json) = run(|o| verify(dir, &[later], &[], true, o));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!((code, &v["intact"]), (1, &false.into()), "{v}");
        assert_eq!(v["expected_heads"][0]["found"], false);
        assert_eq!(v["expected_heads"][0]["chains_at_seq"], 0);
        assert!("12:zz".parse::<ExpectedHead>().is_err());
        assert!("x:00".parse::<ExpectedHead>().is_err());
    }

    #[test]
    fn export_merges_the_shards_and_names_each_entry_shard() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_shard(dir, &requests(&[1, 3]));
        write_shard(&journal::shard_dir(dir, 1), &requests(&[2]));
        let (code, text) = run(|o| export(dir, &Query::default(), o));
        assert_eq!(code, 0);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let at: Vec<(u64, &str)> = lines
            .iter()
            .map(|l| (l["shard"].as_u64().unwrap(), l["serial"].as_str().unwrap()))
            .collect();
        assert_eq!(at, [(0, "1"), (1, "2"), (0, "3")]);
        assert!(lines.iter().all(|l| l["seq"].is_u64()));
    }
}
