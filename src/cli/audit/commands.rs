//! `stampd audit verify | export | query | migrate`: what scripts rely on. Each returns its
//! exit status (0 when all is well) and writes to the given output.

use std::io::Write;
use std::path::Path;

use crate::audit::journal::{self, Kind, Next, Reader};
use crate::audit::postgres::{self, Query, Target};
use crate::audit::record::Record;
use crate::protocol::hex::{hex, unhex};
use crate::serial::SERIAL_LEN;

/// A serial number as written by `export` (lowercase hex, no leading zeros) or by other
/// tools (`0x`, upper case, leading zeros).
pub fn parse_serial(s: &str) -> Result<Vec<u8>, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    if digits.is_empty() {
        return Err(format!("--serial {s:?}: no digits"));
    }
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_string()
    };
    let bytes = unhex(&digits.to_ascii_lowercase())
        .ok_or_else(|| format!("--serial {s}: not hexadecimal"))?;
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    if significant.len() > SERIAL_LEN {
        return Err(format!("--serial {s}: longer than stampd's serial numbers"));
    }
    let mut out = vec![0u8; SERIAL_LEN - significant.len()];
    out.extend_from_slice(significant);
    Ok(out)
}

/// Builds a query from the command-line filters.
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
            return Err(format!("--status {s}: granted or rejection"));
        }
    }
    Ok(Query {
        identity: None,
        serial: serial.map(parse_serial).transpose()?,
        from: time("--from", from)?,
        to: time("--to", to)?,
        imprint: imprint
            .map(|i| unhex(&i.to_ascii_lowercase()).ok_or(format!("--imprint {i}: not hex")))
            .transpose()?,
        service,
        status,
    })
}

/// `audit verify`: exit 0 only when every CRC and the whole hash chain hold.
pub fn verify(dir: &Path, json: bool, out: &mut dyn Write) -> Result<u8, String> {
    let v = journal::verify(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (seq, hash) = v
        .head
        .map_or((None, None), |(s, h)| (Some(s), Some(hex(&h))));
    if json {
        let j = serde_json::json!({
            "intact": v.broken.is_none(),
            "records": v.records,
            "checkpoints": v.checkpoints,
            "segments": v.segments,
            "first_seq": v.first_seq,
            "head_seq": seq,
            "head_hash": hash,
            "incomplete_tail_bytes": v.incomplete_tail,
            "break": v.broken,
        });
        let _ = writeln!(out, "{j}");
    } else {
        let _ = writeln!(
            out,
            "{}: {} records, {} checkpoints, {} segments",
            dir.display(),
            v.records,
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
pub fn export(dir: &Path, query: &Query, out: &mut dyn Write) -> Result<u8, String> {
    if journal::segments(dir).map_or(true, |s| s.is_empty()) {
        return Err(format!("{}: no audit journal here", dir.display()));
    }
    let mut reader = Reader::open(dir, None).map_err(|e| e.to_string())?;
    loop {
        match reader.next_settled(dir).map_err(|e| e.to_string())? {
            Next::Frame(f) if f.kind == Kind::Record => {
                let r = match Record::decode(&f.body) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!(
                            "stampd: journal frame {} does not decode: {e}; run `stampd audit verify`",
                            f.seq
                        );
                        return Ok(1);
                    }
                };
                if query.matches(&r) && writeln!(out, "{}", r.to_json(Some(f.seq))).is_err() {
                    // The reader went away (e.g. `| head`).
                    return Ok(0);
                }
            }
            Next::Frame(_) => {}
            Next::End { .. } => return Ok(0),
            Next::Corrupt { at, reason } => {
                eprintln!(
                    "stampd: journal damaged at segment {} offset {}: {reason}; run `stampd audit verify`",
                    at.segment, at.offset
                );
                return Ok(1);
            }
        }
    }
}

/// Records in PostgreSQL matching `query`, as JSON lines.
pub fn query_postgres(target: &Target, query: &Query, out: &mut dyn Write) -> Result<u8, String> {
    let rt = postgres::runtime().map_err(|e| e.to_string())?;
    let rows = rt.block_on(async {
        let client = target.connect().await.map_err(|e| e.to_string())?;
        query.run(&client).await
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
        let mut client = target.connect().await.map_err(|e| e.to_string())?;
        postgres::migrate(&mut client)
            .await
            .map_err(|e| e.to_string())
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
    fn query_flags_are_checked() {
        assert!(query_of(None, Some("yesterday"), None, None, None, None).is_err());
        assert!(query_of(None, None, None, Some("zz"), None, None).is_err());
        assert!(query_of(None, None, None, None, None, Some("ok".into())).is_err());
        let q = query_of(
            Some("ff"),
            Some("2026-01-01T00:00:00Z"),
            None,
            Some("AB"),
            Some("s".into()),
            Some("granted".into()),
        )
        .unwrap();
        assert_eq!(q.imprint, Some(vec![0xab]));
        assert_eq!(q.from.map(|t| t.unix_secs), Some(1_767_225_600));
    }
}
