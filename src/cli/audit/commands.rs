//! `stampd audit verify | export | query | migrate`: what scripts rely on. Each returns its
//! exit status (0 when all is well) and writes to the given output.

use std::io::Write;
use std::path::Path;

use crate::audit::journal;
use crate::audit::postgres::{self, Target};
use crate::audit::query::Query;
use crate::protocol::hex::hex;

/// `audit verify`: exit 0 only when every CRC and the whole hash chain of every shard hold.
pub fn verify(dir: &Path, json: bool, out: &mut dyn Write) -> Result<u8, String> {
    let verified = journal::verify_shards(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let broken = verified.iter().any(|(_, v)| v.broken.is_some());
    if json {
        let _ = writeln!(out, "{}", journal::shards_json(dir, &verified));
        return Ok(u8::from(broken));
    }
    for (shard, v) in &verified {
        let _ = writeln!(
            out,
            "shard {shard} ({}): {} records, {} events, {} checkpoints, {} segments",
            journal::shard_dir(dir, *shard).display(),
            v.records,
            v.events,
            v.checkpoints,
            v.segments
        );
        if let Some((seq, hash)) = v.head {
            let _ = writeln!(out, "  head: seq {seq}, hash {}", hex(&hash));
        }
        if let Some(first) = v.first_seq {
            let _ = writeln!(
                out,
                "  starts at seq {first}: earlier segments were removed by retention"
            );
        }
        if v.incomplete_tail > 0 {
            let _ = writeln!(
                out,
                "  tail: {} bytes of an unfinished write (a write in progress, or a torn tail the next start cuts)",
                v.incomplete_tail
            );
        }
    }
    if broken {
        for (shard, v) in &verified {
            if let Some(b) = &v.broken {
                let _ = writeln!(out, "BROKEN: shard {shard}: {b}");
            }
        }
    } else {
        let (records, events) = journal::totals(&verified);
        let _ = writeln!(
            out,
            "intact: {} shard(s), {records} records, {events} events",
            verified.len()
        );
    }
    Ok(u8::from(broken))
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
        let (code, text) = run(|o| verify(dir, false, o));
        assert_eq!(code, 0, "{text}");
        assert!(text.contains(&format!("shard 1 ({}): 1 records", one.display())));
        assert!(
            text.ends_with("intact: 2 shard(s), 3 records, 0 events\n"),
            "{text}"
        );
        damage_record(&one, 3);
        let (code, text) = run(|o| verify(dir, false, o));
        assert_eq!(code, 1);
        assert!(
            text.contains("\nBROKEN: shard 1: segment 1 offset "),
            "{text}"
        );
        assert!(!text.contains("BROKEN: shard 0") && !text.contains("intact"));
        let (code, json) = run(|o| verify(dir, true, o));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (code, &v["intact"], &v["records"]),
            (1, &false.into(), &2.into())
        );
        assert_eq!(v["shards"][1]["intact"], false, "{v}");
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
