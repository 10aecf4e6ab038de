//! Reading entries back: [`select`], a [`Query`] run against PostgreSQL.

use std::sync::Arc;

use tokio_postgres::Client;

use super::target::describe;
use crate::audit::query::Query;
use crate::audit::record::{Entry, Event, Record, RequestDigest};
use crate::outcome::Outcome;
use crate::protocol::{FailureInfo, HashAlg, Timestamp};
use crate::serial::SERIAL_LEN;

/// Runs `query` against PostgreSQL; each match with its journal seq, in time order
/// (records and events merged).
pub async fn select(client: &Client, query: &Query) -> Result<Vec<(u64, Entry)>, String> {
    let ns = |t: Option<Timestamp>| t.map(|t| i64::try_from(t.unix_nanos()).unwrap_or(i64::MAX));
    let records = if query
        .kind
        .as_deref()
        .is_none_or(|k| k == "request" || k == "authenticode")
    {
        select_records(client, query).await?
    } else {
        Vec::new()
    };
    let events = if query.kind.as_deref() == Some("request") || query.asks_request_fields() {
        Vec::new()
    } else {
        let rows = client
            .query(
                "SELECT seq, time_ns, kind, event, message, detail::text FROM audit_event \
                 WHERE ($1::text IS NULL OR tsa = $1) AND ($2::text IS NULL OR kind = $2) \
                 AND ($3::bigint IS NULL OR time_ns >= $3) \
                 AND ($4::bigint IS NULL OR time_ns <= $4) ORDER BY time_ns, seq",
                &[&query.identity, &query.kind, &ns(query.from), &ns(query.to)],
            )
            .await
            .map_err(|e| describe(&e))?;
        rows.iter()
            .map(event_of_row)
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut all: Vec<(u64, Entry)> = records
        .into_iter()
        .map(|(seq, r)| (seq, Entry::Request(r)))
        .chain(events)
        .collect();
    // Both lists are in time order; a stable sort merges them.
    all.sort_by_key(|(seq, e)| (e.time().unix_nanos(), *seq));
    Ok(all)
}

fn event_of_row(row: &tokio_postgres::Row) -> Result<(u64, Entry), String> {
    let col = |e: tokio_postgres::Error| format!("audit_event row: {e}");
    let ns: i64 = row.try_get(1).map_err(col)?;
    let text = |i: usize| row.try_get::<_, String>(i).map_err(col);
    Ok((
        row.try_get::<_, i64>(0).map_err(col)? as u64,
        Entry::Event(Event {
            time: time_of_ns(ns),
            kind: text(2)?.into(),
            name: text(3)?.into(),
            message: text(4)?,
            detail: text(5)?,
        }),
    ))
}

fn time_of_ns(ns: i64) -> Timestamp {
    Timestamp {
        unix_secs: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as u32,
    }
}

async fn select_records(client: &Client, query: &Query) -> Result<Vec<(u64, Record)>, String> {
    let ns = |t: Option<Timestamp>| t.map(|t| i64::try_from(t.unix_nanos()).unwrap_or(i64::MAX));
    let rows = client
        .query(
            "SELECT seq, serial, gen_time_ns, status, fail_info, http_status, service, policy, \
             policy_oid, hash_algorithm, message_imprint, nonce, cert_req, client_ip, key_id, \
             latency_us, request, response, request_sha256, request_length, client_subject, protocol FROM audit_record \
             WHERE ($1::text IS NULL OR tsa = $1) AND ($2::bytea IS NULL OR serial = $2) \
             AND ($3::bigint IS NULL OR gen_time_ns >= $3) \
             AND ($4::bigint IS NULL OR gen_time_ns <= $4) \
             AND ($5::bytea IS NULL OR message_imprint = $5) \
             AND ($6::text IS NULL OR service = $6) AND ($7::text IS NULL OR status = $7) \
             AND ($8::text IS NULL OR protocol = $8) \
             ORDER BY gen_time_ns, seq",
            &[
                &query.identity,
                &query.serial,
                &ns(query.from),
                &ns(query.to),
                &query.imprint,
                &query.service,
                &query.status,
                &match query.kind.as_deref() {
                    Some("request") => Some("rfc3161"),
                    Some("authenticode") => Some("authenticode"),
                    _ => None,
                },
            ],
        )
        .await
        .map_err(|e| describe(&e))?;
    rows.iter().map(record_of_row).collect()
}

fn record_of_row(row: &tokio_postgres::Row) -> Result<(u64, Record), String> {
    let bad = |what: &str| format!("audit_record row with an invalid {what}");
    let col = |e: tokio_postgres::Error| format!("audit_record row: {e}");
    let ns: i64 = row.try_get(2).map_err(col)?;
    let serial: Option<Vec<u8>> = row.try_get(1).map_err(col)?;
    let fail_info: Option<String> = row.try_get(4).map_err(col)?;
    let http_status: i32 = row.try_get(5).map_err(col)?;
    let outcome = match (serial, fail_info) {
        (Some(s), _) => Outcome::Granted {
            serial: <[u8; SERIAL_LEN]>::try_from(s.as_slice()).map_err(|_| bad("serial"))?,
        },
        (None, Some(f)) => {
            Outcome::Rejected(FailureInfo::from_name(&f).ok_or_else(|| bad("fail_info"))?)
        }
        (None, None) => Outcome::Refused(u16::try_from(http_status).map_err(|_| bad("status"))?),
    };
    let hash: Option<String> = row.try_get(9).map_err(col)?;
    let text = |i: usize| {
        row.try_get::<_, Option<String>>(i)
            .map(|t| t.map(Arc::from))
            .map_err(col)
    };
    let record = Record {
        time: time_of_ns(ns),
        outcome,
        service: row.try_get::<_, String>(6).map_err(col)?.into(),
        policy: text(7)?,
        policy_oid: text(8)?,
        hash: match hash {
            Some(h) => Some(HashAlg::from_name(&h).ok_or_else(|| bad("hash_algorithm"))?),
            None => None,
        },
        imprint: row.try_get(10).map_err(col)?,
        nonce: row.try_get(11).map_err(col)?,
        cert_req: row.try_get(12).map_err(col)?,
        client: row.try_get(13).map_err(col)?,
        key_id: text(14)?,
        latency_us: row.try_get::<_, i64>(15).map_err(col)? as u64,
        request: row.try_get(16).map_err(col)?,
        response: row.try_get(17).map_err(col)?,
        request_digest: {
            let sha256: Option<Vec<u8>> = row.try_get(18).map_err(col)?;
            let len: Option<i32> = row.try_get(19).map_err(col)?;
            match (sha256, len) {
                (Some(d), Some(len)) => Some(RequestDigest {
                    len: u32::try_from(len).map_err(|_| bad("request_length"))?,
                    sha256: d.try_into().map_err(|_| bad("request_sha256"))?,
                }),
                (None, None) => None,
                _ => return Err(bad("request_sha256 and request_length pair")),
            }
        },
        client_subject: text(20)?,
        authenticode: row.try_get::<_, String>(21).map_err(col)? == "authenticode",
    };
    Ok((row.try_get::<_, i64>(0).map_err(col)? as u64, record))
}
