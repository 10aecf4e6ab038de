//! Entries as rows: [`Rows`], the column arrays of one binary COPY or multi-row insert of
//! records, [`EventRows`], the events' insert, and [`FrameRows`], the chain table's.

use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::schema::{COPY, INSERT_EVENTS, INSERT_FRAMES};
use super::target::describe;
use crate::audit::journal::Frame;
use crate::audit::record::{Event, Record};
use crate::protocol::HashAlg;

/// Column arrays for one multi-row insert or COPY, borrowed from the records.
#[derive(Default)]
pub(super) struct Rows<'a> {
    seq: Vec<i64>,
    serial: Vec<Option<&'a [u8]>>,
    ns: Vec<i64>,
    status: Vec<&'static str>,
    fail_info: Vec<Option<&'static str>>,
    http_status: Vec<i32>,
    service: Vec<&'a str>,
    policy: Vec<Option<&'a str>>,
    policy_oid: Vec<Option<&'a str>>,
    hash: Vec<Option<&'static str>>,
    imprint: Vec<Option<&'a [u8]>>,
    nonce: Vec<Option<&'a [u8]>>,
    cert_req: Vec<bool>,
    client: Vec<Option<std::net::IpAddr>>,
    key_id: Vec<Option<&'a str>>,
    latency: Vec<i64>,
    request: Vec<Option<&'a [u8]>>,
    response: Vec<Option<&'a [u8]>>,
    request_sha256: Vec<Option<&'a [u8]>>,
    request_length: Vec<Option<i32>>,
    client_subject: Vec<Option<&'a str>>,
    protocol: Vec<&'static str>,
}

impl<'a> Rows<'a> {
    pub(super) fn of(records: impl Iterator<Item = (u64, &'a Record)>) -> Rows<'a> {
        let mut rows = Rows::default();
        for (seq, r) in records {
            let (fail_info, http_status) = r.fail_info_and_http_status();
            rows.seq.push(seq as i64);
            rows.serial.push(r.serial().map(|s| &s[..]));
            rows.ns
                .push(i64::try_from(r.time.unix_nanos()).unwrap_or(i64::MAX));
            rows.status.push(r.status());
            rows.fail_info.push(fail_info);
            rows.http_status.push(i32::from(http_status));
            rows.service.push(&r.service);
            rows.policy.push(r.policy.as_deref());
            rows.policy_oid.push(r.policy_oid.as_deref());
            rows.hash.push(r.hash.map(HashAlg::name));
            rows.imprint.push(r.imprint.as_deref());
            rows.nonce.push(r.nonce.as_deref());
            rows.cert_req.push(r.cert_req);
            rows.client.push(r.client);
            rows.key_id.push(r.key_id.as_deref());
            rows.latency
                .push(i64::try_from(r.latency_us).unwrap_or(i64::MAX));
            rows.request.push(r.request.as_deref());
            rows.response.push(r.response.as_deref());
            let digest = r.request_digest.as_ref();
            rows.request_sha256.push(digest.map(|d| &d.sha256[..]));
            rows.request_length
                .push(digest.map(|d| i32::try_from(d.len).unwrap_or(i32::MAX)));
            rows.client_subject.push(r.client_subject.as_deref());
            rows.protocol.push(r.protocol());
        }
        rows
    }

    /// Writes every row with COPY (binary), the fastest bulk path. COPY cannot skip rows:
    /// any unique violation fails it ([`CopyError::Unique`]), and the caller then ships the
    /// batch again with [`Rows::insert`], which skips rows already there. The shipper stores
    /// its position in the same transaction as the rows, so that only happens when a
    /// position was lost or reset.
    pub(super) async fn copy(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        identity: &str,
        journal: i64,
    ) -> Result<u64, CopyError> {
        use tokio_postgres::types::Type;
        let failed = |e: tokio_postgres::Error| CopyError::Failed(describe(&e));
        let sink = tx.copy_in(COPY).await.map_err(failed)?;
        let types = [
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
            Type::TIMESTAMPTZ,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
            Type::BOOL,
            Type::INET,
            Type::TEXT,
            Type::INT8,
            Type::BYTEA,
            Type::BYTEA,
            Type::BYTEA,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
        ];
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for i in 0..self.seq.len() {
            let ns = self.ns[i];
            let gen_time =
                std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
            let row: [&(dyn ToSql + Sync); 25] = [
                &identity,
                &journal,
                &self.seq[i],
                &self.serial[i],
                &gen_time,
                &ns,
                &self.status[i],
                &self.fail_info[i],
                &self.http_status[i],
                &self.service[i],
                &self.policy[i],
                &self.policy_oid[i],
                &self.hash[i],
                &self.imprint[i],
                &self.nonce[i],
                &self.cert_req[i],
                &self.client[i],
                &self.key_id[i],
                &self.latency[i],
                &self.request[i],
                &self.response[i],
                &self.request_sha256[i],
                &self.request_length[i],
                &self.client_subject[i],
                &self.protocol[i],
            ];
            writer.as_mut().write(&row).await.map_err(failed)?;
        }
        writer.finish().await.map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                CopyError::Unique
            } else {
                failed(e)
            }
        })
    }

    /// Inserts every row. Rows already present (same identity, journal and seq: shipped
    /// before a crash) are skipped; a serial already present under another journal is an
    /// error, never skipped: it means two TSAs share one identity.
    pub(super) async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        stmt: &Statement,
        identity: &str,
        journal: i64,
    ) -> Result<u64, String> {
        let params: [&(dyn ToSql + Sync); 24] = [
            &identity,
            &journal,
            &self.seq,
            &self.serial,
            &self.ns,
            &self.status,
            &self.fail_info,
            &self.http_status,
            &self.service,
            &self.policy,
            &self.policy_oid,
            &self.hash,
            &self.imprint,
            &self.nonce,
            &self.cert_req,
            &self.client,
            &self.key_id,
            &self.latency,
            &self.request,
            &self.response,
            &self.request_sha256,
            &self.request_length,
            &self.client_subject,
            &self.protocol,
        ];
        tx.execute(stmt, &params).await.map_err(|e| {
            let serial_clash = e
                .as_db_error()
                .is_some_and(|d| d.constraint() == Some("audit_record_serial"));
            if serial_clash {
                format!(
                    "a serial number is already in PostgreSQL under identity `{identity}` from \
                     another journal: two TSAs share this identity or node_id ({e})"
                )
            } else {
                describe(&e)
            }
        })
    }
}

/// Why a COPY failed.
pub(super) enum CopyError {
    /// A row is there already (see [`Rows::copy`]).
    Unique,
    Failed(String),
}

/// Column arrays of the events of one batch.
#[derive(Default)]
pub(super) struct EventRows<'a> {
    seq: Vec<i64>,
    ns: Vec<i64>,
    kind: Vec<&'a str>,
    event: Vec<&'a str>,
    message: Vec<&'a str>,
    detail: Vec<&'a str>,
}

impl<'a> EventRows<'a> {
    pub(super) fn of(events: impl Iterator<Item = (u64, &'a Event)>) -> EventRows<'a> {
        let mut rows = EventRows::default();
        for (seq, e) in events {
            rows.seq.push(seq as i64);
            rows.ns
                .push(i64::try_from(e.time.unix_nanos()).unwrap_or(i64::MAX));
            rows.kind.push(&e.kind);
            rows.event.push(&e.name);
            rows.message.push(&e.message);
            rows.detail.push(&e.detail);
        }
        rows
    }

    /// Inserts every row (none: nothing to do); rows already there are skipped.
    pub(super) async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        identity: &str,
        journal: i64,
    ) -> Result<(), String> {
        let params: [&(dyn ToSql + Sync); 8] = [
            &identity,
            &journal,
            &self.seq,
            &self.ns,
            &self.kind,
            &self.event,
            &self.message,
            &self.detail,
        ];
        insert_arrays(tx, INSERT_EVENTS, self.seq.is_empty(), &params).await
    }
}

/// Every frame of a batch as the chain table keeps it: seq, CRC and payload.
#[derive(Default)]
pub(super) struct FrameRows {
    seq: Vec<i64>,
    crc: Vec<i64>,
    payload: Vec<Vec<u8>>,
}

impl FrameRows {
    pub(super) fn push(&mut self, frame: &Frame) {
        let payload = frame.payload();
        self.seq.push(frame.seq as i64);
        self.crc.push(i64::from(crc32fast::hash(&payload)));
        self.payload.push(payload);
    }

    /// The first frame's seq, if any.
    pub(super) fn first_seq(&self) -> Option<i64> {
        self.seq.first().copied()
    }

    /// Inserts every row; rows already there are skipped.
    pub(super) async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        identity: &str,
        journal: i64,
    ) -> Result<(), String> {
        let params: [&(dyn ToSql + Sync); 5] =
            [&identity, &journal, &self.seq, &self.crc, &self.payload];
        insert_arrays(tx, INSERT_FRAMES, self.seq.is_empty(), &params).await
    }
}

/// One multi-row insert of column arrays (`sql` unnests them); nothing when `empty`.
async fn insert_arrays(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    empty: bool,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), String> {
    if empty {
        return Ok(());
    }
    tx.execute(sql, params)
        .await
        .map(|_| ())
        .map_err(|e| describe(&e))
}
