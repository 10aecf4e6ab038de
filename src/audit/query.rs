//! What `stampd audit export` and `query` look for, and where: a [`Query`] is matched against
//! the journal's records here ([`Query::in_journal`]) or run against PostgreSQL
//! ([`postgres::select`](super::postgres::select)).

use std::path::Path;

use super::journal::{self, Next, Position, Reader};
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

/// Where reading the journal stopped before its end.
#[derive(Debug)]
pub enum Damage {
    /// A record or event frame whose body does not decode.
    Undecodable {
        /// The frame's sequence number.
        seq: u64,
        /// What [`Record::decode`] said.
        error: &'static str,
    },
    /// A frame that cannot be read where it lies ([`Next::Corrupt`]).
    Corrupt {
        /// Where the damage starts.
        at: Position,
        /// What is wrong there.
        reason: String,
    },
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

    /// Hands every record of the journal in `dir` that matches, in order and with its seq,
    /// to `each` until `each` returns false. `Some` when the journal is damaged: the records
    /// before the damage have been handed over.
    pub fn in_journal(
        &self,
        dir: &Path,
        mut each: impl FnMut(u64, Entry) -> bool,
    ) -> Result<Option<Damage>, String> {
        if journal::segments(dir).map_or(true, |s| s.is_empty()) {
            return Err(format!("{}: no audit journal here", dir.display()));
        }
        let mut reader = Reader::open(dir, None).map_err(|e| e.to_string())?;
        loop {
            match reader.next_settled(dir).map_err(|e| e.to_string())? {
                Next::Frame(f) => {
                    let e = match journal::entry(&f) {
                        None => continue,
                        Some(Err(error)) => {
                            return Ok(Some(Damage::Undecodable { seq: f.seq, error }));
                        }
                        Some(Ok(e)) => e,
                    };
                    if self.matches(&e) && !each(f.seq, e) {
                        return Ok(None);
                    }
                }
                Next::End { .. } => return Ok(None),
                Next::Corrupt { at, reason } => return Ok(Some(Damage::Corrupt { at, reason })),
            }
        }
    }
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
}
