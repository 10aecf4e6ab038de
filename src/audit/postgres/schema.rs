//! The schema: its migrations, the SQL texts the writers run, and [`migrate`].

use tokio_postgres::Client;

/// Schema migrations, applied in order under an advisory lock; `stampd_schema` remembers
/// how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE audit_record (
    tsa             text        NOT NULL,
    journal         bigint      NOT NULL,
    seq             bigint      NOT NULL,
    serial          bytea,
    gen_time        timestamptz NOT NULL,
    gen_time_ns     bigint      NOT NULL,
    status          text        NOT NULL,
    fail_info       text,
    http_status     integer     NOT NULL,
    service         text        NOT NULL,
    policy          text,
    policy_oid      text,
    hash_algorithm  text,
    message_imprint bytea,
    nonce           bytea,
    cert_req        boolean     NOT NULL,
    client_ip       inet,
    key_id          text,
    latency_us      bigint      NOT NULL,
    request         bytea,
    response        bytea,
    PRIMARY KEY (tsa, journal, seq)
);
CREATE UNIQUE INDEX audit_record_serial ON audit_record (tsa, serial) WHERE serial IS NOT NULL;
CREATE INDEX audit_record_gen_time ON audit_record (gen_time);
CREATE INDEX audit_record_imprint ON audit_record (message_imprint);
CREATE TABLE audit_position (
    tsa      text        NOT NULL,
    journal  bigint      NOT NULL,
    segment  bigint      NOT NULL,
    "offset" bigint      NOT NULL,
    seq      bigint      NOT NULL,
    hash     bytea       NOT NULL,
    updated  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tsa, journal)
);
"#,
    r#"
ALTER TABLE audit_record ADD COLUMN request_sha256 bytea, ADD COLUMN request_length integer;
"#,
    r#"
CREATE TABLE audit_event (
    tsa      text        NOT NULL,
    journal  bigint      NOT NULL,
    seq      bigint      NOT NULL,
    time     timestamptz NOT NULL,
    time_ns  bigint      NOT NULL,
    kind     text        NOT NULL,
    event    text        NOT NULL,
    message  text        NOT NULL,
    detail   jsonb       NOT NULL,
    PRIMARY KEY (tsa, journal, seq)
);
CREATE INDEX audit_event_time ON audit_event (time);
"#,
    r#"
ALTER TABLE audit_record ADD COLUMN client_subject text;
"#,
    r#"
ALTER TABLE audit_record ADD COLUMN protocol text NOT NULL DEFAULT 'rfc3161';
"#,
    // Node claims (claim.rs): one row per (identity, node id), held by one data directory's
    // instance while its heartbeat renews the lease; `epoch` is the holder's serial epoch,
    // `heads` its audit shards' committed heads (for `stampd cluster status`).
    r#"
CREATE TABLE stampd_node (
    tsa       text        NOT NULL,
    node_id   integer     NOT NULL,
    instance  text        NOT NULL,
    host      text        NOT NULL,
    pid       integer     NOT NULL,
    since     timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL,
    lease_s   integer     NOT NULL,
    epoch     bigint      NOT NULL,
    heads     jsonb       NOT NULL,
    released  boolean     NOT NULL,
    PRIMARY KEY (tsa, node_id)
);
"#,
    // The hash chains (verify.rs): every shipped frame's payload as the journal holds it
    // (segment headers and checkpoints too), so an auditor can re-check each shard's chain
    // from the database alone; which node and shard each journal is; and the first frame
    // kept (`chain_from`: rows below it were shipped before the chain table existed).
    r#"
CREATE TABLE audit_frame (
    tsa     text   NOT NULL,
    journal bigint NOT NULL,
    seq     bigint NOT NULL,
    crc     bigint NOT NULL,
    payload bytea  NOT NULL,
    PRIMARY KEY (tsa, journal, seq)
);
ALTER TABLE audit_position ADD COLUMN node integer, ADD COLUMN shard integer,
    ADD COLUMN chain_from bigint;
"#,
];

/// A row shipped before (a crash between the commit and its acknowledgement) is skipped; a
/// serial seen before under another journal fails the insert (see
/// [`Rows::insert`](super::rows::Rows::insert)).
pub(super) const INSERT: &str = r#"
INSERT INTO audit_record (tsa, journal, seq, serial, gen_time, gen_time_ns, status, fail_info,
    http_status, service, policy, policy_oid, hash_algorithm, message_imprint, nonce, cert_req,
    client_ip, key_id, latency_us, request, response, request_sha256, request_length,
    client_subject, protocol)
SELECT $1, $2, u.seq, u.serial, timestamptz 'epoch' + (u.ns / 1000) * interval '1 microsecond',
    u.ns, u.status, u.fail_info, u.http_status, u.service, u.policy, u.policy_oid, u.hash,
    u.imprint, u.nonce, u.cert_req, u.client, u.key_id, u.latency, u.request, u.response,
    u.request_sha256, u.request_length, u.client_subject, u.protocol
FROM unnest($3::bigint[], $4::bytea[], $5::bigint[], $6::text[], $7::text[], $8::int[],
    $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::bytea[], $15::bool[],
    $16::inet[], $17::text[], $18::bigint[], $19::bytea[], $20::bytea[], $21::bytea[],
    $22::int[], $23::text[], $24::text[])
    AS u(seq, serial, ns, status, fail_info, http_status, service, policy, policy_oid, hash,
         imprint, nonce, cert_req, client, key_id, latency, request, response, request_sha256,
         request_length, client_subject, protocol)
ON CONFLICT (tsa, journal, seq) DO NOTHING
"#;

/// Events (clock synchronisation events): few, so a multi-row insert; one shipped before is
/// skipped.
pub(super) const INSERT_EVENTS: &str = r#"
INSERT INTO audit_event (tsa, journal, seq, time, time_ns, kind, event, message, detail)
SELECT $1, $2, u.seq, timestamptz 'epoch' + (u.ns / 1000) * interval '1 microsecond', u.ns,
    u.kind, u.event, u.message, u.detail::jsonb
FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
    AS u(seq, ns, kind, event, message, detail)
ON CONFLICT (tsa, journal, seq) DO NOTHING
"#;

/// Frames (their CRC and payload) in the chain table; one shipped before is skipped.
pub(super) const INSERT_FRAMES: &str = r#"
INSERT INTO audit_frame (tsa, journal, seq, crc, payload)
SELECT $1, $2, u.seq, u.crc, u.payload
FROM unnest($3::bigint[], $4::bigint[], $5::bytea[]) AS u(seq, crc, payload)
ON CONFLICT (tsa, journal, seq) DO NOTHING
"#;

/// The shipper's bulk path: binary COPY, columns in table order.
pub(super) const COPY: &str =
    "COPY audit_record (tsa, journal, seq, serial, gen_time, gen_time_ns, status, \
    fail_info, http_status, service, policy, policy_oid, hash_algorithm, message_imprint, nonce, \
    cert_req, client_ip, key_id, latency_us, request, response, request_sha256, request_length, \
    client_subject, protocol) FROM STDIN (FORMAT binary)";

/// The position only moves forward; the node and shard (unknown to `stampd audit ship`)
/// are kept once known, and `chain_from` (the first frame of the first batch whose frames
/// were kept: `$9`) once set.
pub(super) const SET_POSITION: &str = r#"
INSERT INTO audit_position (tsa, journal, segment, "offset", seq, hash, node, shard, chain_from)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (tsa, journal) DO UPDATE
SET segment = excluded.segment, "offset" = excluded."offset", seq = excluded.seq,
    hash = excluded.hash, updated = now(),
    node = coalesce(excluded.node, audit_position.node),
    shard = coalesce(excluded.shard, audit_position.shard),
    chain_from = coalesce(audit_position.chain_from, excluded.chain_from)
WHERE audit_position.seq < excluded.seq
"#;

/// The schema version this build reads and writes.
pub fn version() -> usize {
    MIGRATIONS.len()
}

/// For commands that only read (an auditor's `verify --postgres`, `cluster status`): the
/// schema must be this build's, and is never changed from here (a read-only role, a hot
/// standby, or nodes of an older build sharing the database).
pub async fn require(client: &impl tokio_postgres::GenericClient) -> Result<(), String> {
    let found: Option<i32> = client
        .query_one(
            "SELECT CASE WHEN to_regclass('stampd_schema') IS NULL THEN NULL \
             ELSE (SELECT max(version) FROM stampd_schema) END",
            &[],
        )
        .await
        .map_err(|e| super::target::describe(&e))?
        .get(0);
    let found = usize::try_from(found.unwrap_or(0)).unwrap_or(0);
    if found < version() {
        return Err(format!(
            "the database's stampd schema is at version {found}, this stampd reads version {}: \
             run `stampd audit migrate` (or let an upgraded node start) first",
            version()
        ));
    }
    Ok(())
}

/// Brings the schema up to date; returns how many migrations ran.
pub async fn migrate(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // One migrator at a time, across every node sharing the database. (Without the
    // notice that the table exists, which every start but the first would log.)
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning; \
         SELECT pg_advisory_xact_lock(7305761350); \
         CREATE TABLE IF NOT EXISTS stampd_schema (version integer NOT NULL)",
    )
    .await?;
    let done: Option<i32> = tx
        .query_one("SELECT max(version) FROM stampd_schema", &[])
        .await?
        .get(0);
    let done = usize::try_from(done.unwrap_or(0)).unwrap_or(0);
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(m).await?;
        tx.execute(
            "INSERT INTO stampd_schema (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(MIGRATIONS.len().saturating_sub(done))
}
