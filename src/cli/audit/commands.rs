//! `stampd audit verify | export | query | migrate`: what scripts rely on. Each returns its
//! exit status (0 when all is well) and writes to the given output.

use std::io::Write;
use std::path::Path;

use crate::audit::journal;
use crate::audit::postgres::{self, Target};
use crate::audit::query::{Damage, Query};
use crate::protocol::hex::hex;

/// `audit verify`: exit 0 only when every CRC and the whole hash chain hold.
pub fn verify(dir: &Path, json: bool, out: &mut dyn Write) -> Result<u8, String> {
    let v = journal::verify(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (seq, hash) = v
        .head
        .map_or((None, None), |(s, h)| (Some(s), Some(hex(&h))));
    if json {
        let _ = writeln!(out, "{}", v.to_json());
    } else {
        let _ = writeln!(
            out,
            "{}: {} records, {} events, {} checkpoints, {} segments",
            dir.display(),
            v.records,
            v.events,
            v.checkpoints,
            v.segments
        );
        if let (Some(seq), Some(hash)) = (seq, &hash) {
            let _ = writeln!(out, "head: seq {seq}, hash {hash}");
        }
        if let Some(first) = v.first_seq {
            let _ = writeln!(
                out,
                "starts at seq {first}: earlier segments were removed by retention"
            );
        }
        if v.incomplete_tail > 0 {
            let _ = writeln!(
                out,
                "tail: {} bytes of an unfinished write (a write in progress, or a torn tail the next start cuts)",
                v.incomplete_tail
            );
        }
        match &v.broken {
            None => {
                let _ = writeln!(out, "intact");
            }
            Some(b) => {
                let _ = writeln!(out, "BROKEN: {b}");
            }
        }
    }
    Ok(u8::from(v.broken.is_some()))
}

/// Every record of the journal matching `query`, as JSON lines. Exit 1 when the journal is
/// damaged (what came before the damage is written).
#[allow(
    clippy::print_stderr,
    reason = "stdout carries the exported records; damage is reported beside them, on stderr"
)]
pub fn export(dir: &Path, query: &Query, out: &mut dyn Write) -> Result<u8, String> {
    // A failed write stops the export: the reader went away (e.g. `| head`).
    let damage = query.in_journal(dir, |seq, r| {
        writeln!(out, "{}", r.to_json(Some(seq))).is_ok()
    })?;
    match damage {
        None => Ok(0),
        Some(Damage::Undecodable { seq, error }) => {
            eprintln!(
                "stampd: journal frame {seq} does not decode: {error}; run `stampd audit verify`"
            );
            Ok(1)
        }
        Some(Damage::Corrupt { at, reason }) => {
            eprintln!(
                "stampd: journal damaged at segment {} offset {}: {reason}; run `stampd audit verify`",
                at.segment, at.offset
            );
            Ok(1)
        }
    }
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

/// Ships a journal to PostgreSQL from the position stored there, until caught up.
pub fn ship(dir: &Path, target: Target, identity: &str, out: &mut dyn Write) -> Result<u8, String> {
    // Only a journal no server is writing: a live one may still cut its unsynced tail.
    let _lock = journal::lock_journal(dir)?;
    let progress = journal::Progress::of_stopped_journal(dir)?;
    let started = std::time::Instant::now();
    let rows = postgres::Shipper {
        target,
        identity: identity.to_string(),
        dir: dir.to_path_buf(),
        progress: std::sync::Arc::new(progress),
        batch_rows: crate::audit::AuditConfig::default().ship_batch_rows,
    }
    .ship_once()?;
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "shipped {rows} rows in {secs:.2} s ({:.0} rows/s)",
        rows as f64 / secs.max(1e-9)
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
