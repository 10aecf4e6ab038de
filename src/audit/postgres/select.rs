//! Reading records back: [`select`], a [`Query`] run against PostgreSQL.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::audit::query::Query;
use crate::audit::record::{Record, RequestDigest};
use crate::outcome::Outcome;
use crate::protocol::{FailureInfo, HashAlg, Timestamp};
use crate::serial::SERIAL_LEN;

/// Runs `query` against PostgreSQL; each match with its journal seq, in time order.
pub async fn select(client: &Client, query: &Query) -> Result<Vec<(u64, Record)>, String> {
    let ns = |t: Option<Timestamp>| t.map(|t| i64::try_from(t.unix_nanos()).unwrap_or(i64::MAX));
    let rows = client
        .query(
            "SELECT seq, serial, gen_time_ns, status, fail_info, http_status, service, policy, \
             policy_oid, hash_algorithm, message_imprint, nonce, cert_req, client_ip, key_id, \
             latency_us, request, response, request_sha256, request_length FROM audit_record \
             WHERE ($1::text IS NULL OR tsa = $1) AND ($2::bytea IS NULL OR serial = $2) \
             AND ($3::bigint IS NULL OR gen_time_ns >= $3) \
             AND ($4::bigint IS NULL OR gen_time_ns <= $4) \
             AND ($5::bytea IS NULL OR message_imprint = $5) \
             AND ($6::text IS NULL OR service = $6) AND ($7::text IS NULL OR status = $7) \
             ORDER BY gen_time_ns, seq",
            &[
                &query.identity,
                &query.serial,
                &ns(query.from),
                &ns(query.to),
                &query.imprint,
                &query.service,
                &query.status,
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
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
        time: Timestamp {
            unix_secs: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as u32,
        },
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
    };
    Ok((row.try_get::<_, i64>(0).map_err(col)? as u64, record))
}
