//! PostgreSQL: the schema and its migrations, the shipper that feeds the database from the
//! journal, the PostgreSQL-only store, and queries. tokio-postgres runs on its own small
//! current-thread tokio runtime per thread that needs it; nothing here touches the frontend
//! cores.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::journal::{Kind, Next, Position, Progress, Reader};
use super::record::Record;
use crate::backoff::Backoff;
use crate::outcome::Outcome;
use crate::protocol::{FailureInfo, HashAlg, Timestamp};
use crate::serial::SERIAL_LEN;

/// Schema migrations, applied in order under an advisory lock; `stampd_schema` remembers
/// how many ran.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// A row shipped before (a crash between the commit and its acknowledgement) is skipped; a
/// serial seen before under another journal fails the insert (see [`Rows::insert`]).
const INSERT: &str = r#"
INSERT INTO audit_record (tsa, journal, seq, serial, gen_time, gen_time_ns, status, fail_info,
    http_status, service, policy, policy_oid, hash_algorithm, message_imprint, nonce, cert_req,
    client_ip, key_id, latency_us, request, response)
SELECT $1, $2, u.seq, u.serial, timestamptz 'epoch' + (u.ns / 1000) * interval '1 microsecond',
    u.ns, u.status, u.fail_info, u.http_status, u.service, u.policy, u.policy_oid, u.hash,
    u.imprint, u.nonce, u.cert_req, u.client, u.key_id, u.latency, u.request, u.response
FROM unnest($3::bigint[], $4::bytea[], $5::bigint[], $6::text[], $7::text[], $8::int[],
    $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::bytea[], $15::bool[],
    $16::inet[], $17::text[], $18::bigint[], $19::bytea[], $20::bytea[])
    AS u(seq, serial, ns, status, fail_info, http_status, service, policy, policy_oid, hash,
         imprint, nonce, cert_req, client, key_id, latency, request, response)
ON CONFLICT (tsa, journal, seq) DO NOTHING
"#;

/// The shipper's bulk path: binary COPY, columns in table order.
const COPY: &str = "COPY audit_record (tsa, journal, seq, serial, gen_time, gen_time_ns, status, \
    fail_info, http_status, service, policy, policy_oid, hash_algorithm, message_imprint, nonce, \
    cert_req, client_ip, key_id, latency_us, request, response) FROM STDIN (FORMAT binary)";

/// The position only moves forward.
const SET_POSITION: &str = r#"
INSERT INTO audit_position (tsa, journal, segment, "offset", seq, hash)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tsa, journal) DO UPDATE
SET segment = excluded.segment, "offset" = excluded."offset", seq = excluded.seq,
    hash = excluded.hash, updated = now()
WHERE audit_position.seq < excluded.seq
"#;

/// Checks a connection string without connecting: it parses, holds no password (secrets
/// come from the environment or a file), and asks for no TLS (not supported yet).
pub fn check_dsn(dsn: &str) -> Result<tokio_postgres::Config, String> {
    let config = tokio_postgres::Config::from_str(dsn)
        .map_err(|e| format!("not a valid connection string: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "holds a password; put it in postgres_password_env or postgres_password_file instead"
                .into(),
        );
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("sslmode=require: TLS to PostgreSQL is not supported yet; connect over a Unix socket or loopback".into());
    }
    Ok(config)
}

/// A database to connect to, password included.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
}

impl Target {
    /// The database named by `dsn` (checked by [`check_dsn`]), with the password already
    /// read from its env variable or file by the caller: this module reads no secrets.
    pub fn new(dsn: &str, password: Option<String>) -> Result<Target, String> {
        let mut config = check_dsn(dsn)?;
        if let Some(pw) = password {
            config.password(pw);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("stampd");
        Ok(Target { config })
    }

    /// Connects; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

/// A runtime for one thread's database work.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Brings the schema up to date; returns how many migrations ran.
pub async fn migrate(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // One migrator at a time, across every node sharing the database.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7305761350); \
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

/// Column arrays for one multi-row insert or COPY, borrowed from the records.
#[derive(Default)]
struct Rows<'a> {
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
}

impl<'a> Rows<'a> {
    fn of(records: impl Iterator<Item = (u64, &'a Record)>) -> Rows<'a> {
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
        }
        rows
    }

    /// Writes every row with COPY (binary), the fastest bulk path. COPY cannot skip rows:
    /// any unique violation fails it ([`Unique`]), and the caller then ships the batch again
    /// with [`Rows::insert`], which skips rows already there. The shipper stores its
    /// position in the same transaction as the rows, so that only happens when a position
    /// was lost or reset.
    async fn copy(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        identity: &str,
        journal: i64,
    ) -> Result<u64, CopyError> {
        use tokio_postgres::types::Type;
        let failed = |e: tokio_postgres::Error| CopyError::Failed(e.to_string());
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
        ];
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for i in 0..self.seq.len() {
            let ns = self.ns[i];
            let gen_time =
                std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
            let row: [&(dyn ToSql + Sync); 21] = [
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
    async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        stmt: &Statement,
        identity: &str,
        journal: i64,
    ) -> Result<u64, String> {
        let params: [&(dyn ToSql + Sync); 20] = [
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
                e.to_string()
            }
        })
    }
}

/// Why a COPY failed.
enum CopyError {
    /// A row is there already (see [`Rows::copy`]).
    Unique,
    Failed(String),
}

/// `store = "postgres"`: each batch is one transaction; no journal.
pub struct DirectStore {
    rt: tokio::runtime::Runtime,
    target: Target,
    identity: String,
    client: Option<(Client, Statement)>,
    /// This process's rows: a random id per start and a counter.
    journal: i64,
    seq: u64,
}

/// Longest a database round (connect, insert, commit) may take before it counts as failed.
const DB_DEADLINE: Duration = Duration::from_secs(10);

impl DirectStore {
    pub fn new(target: Target, identity: &str) -> std::io::Result<DirectStore> {
        let mut id = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| std::io::Error::other("no randomness"))?;
        let mut store = DirectStore {
            rt: runtime()?,
            target,
            identity: identity.to_string(),
            client: None,
            journal: (u64::from_le_bytes(id) >> 1) as i64,
            seq: 0,
        };
        // Find a wrong password or an absent database at start, not at the first request.
        if let Err(e) = store.connect() {
            tracing::warn!(error = %e, "audit: PostgreSQL is not reachable yet; requests get systemFailure until it is");
        }
        Ok(store)
    }

    fn connect(&mut self) -> Result<(), String> {
        let target = &self.target;
        let connected = self.rt.block_on(async {
            tokio::time::timeout(DB_DEADLINE, async {
                let mut client = target.connect().await?;
                migrate(&mut client).await?;
                let stmt = client.prepare(INSERT).await?;
                Ok::<_, tokio_postgres::Error>((client, stmt))
            })
            .await
        });
        match connected {
            Ok(Ok(c)) => {
                self.client = Some(c);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("PostgreSQL: {e}")),
            Err(_) => Err("PostgreSQL: no answer within 10 s".into()),
        }
    }

    fn insert(&mut self, batch: &[Record], first_seq: u64) -> Result<(), String> {
        let (identity, journal) = (&self.identity, self.journal);
        let Some((client, stmt)) = self.client.as_mut() else {
            return Err("PostgreSQL: not connected".into());
        };
        let rows = Rows::of((first_seq..).zip(batch));
        // The timer must be created inside the runtime.
        let done = self.rt.block_on(async {
            tokio::time::timeout(DB_DEADLINE, async {
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| format!("PostgreSQL: {e}"))?;
                rows.insert(&tx, stmt, identity, journal)
                    .await
                    .map_err(|e| format!("PostgreSQL: {e}"))?;
                tx.commit().await.map_err(|e| format!("PostgreSQL: {e}"))
            })
            .await
        });
        done.unwrap_or_else(|_| Err("PostgreSQL: no answer within 10 s".into()))
    }
}

impl super::writer::Store for DirectStore {
    fn commit(&mut self, batch: &[Record]) -> Result<(), String> {
        let first = self.seq + 1;
        self.seq += batch.len() as u64;
        // A connection the server closed while idle (restart, idle timeout, failover) is
        // replaced once; the insert is idempotent on (identity, journal, seq).
        for attempt in 0..2 {
            if self.client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                self.connect()?;
            }
            match self.insert(batch, first) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let closed = self.client.as_ref().is_none_or(|(c, _)| c.is_closed());
                    self.client = None;
                    if attempt == 1 || !closed {
                        return Err(e);
                    }
                }
            }
        }
        Err("PostgreSQL: unreachable".into())
    }
}

/// Ships the journal to PostgreSQL from its last committed position.
pub struct Shipper {
    pub target: Target,
    pub identity: String,
    pub dir: PathBuf,
    pub progress: Arc<Progress>,
    pub batch_rows: usize,
}

#[derive(Debug, Default)]
struct ShipStats {
    up: AtomicU64,
    rows: AtomicU64,
    failures: AtomicU64,
}

/// The running shipper's metrics.
pub struct ShipperHandle {
    stats: Arc<ShipStats>,
    progress: Arc<Progress>,
}

impl ShipperHandle {
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let committed = self.progress.committed_seq.load(Ordering::Acquire);
        let shipped = self.progress.shipped_seq.load(Ordering::Acquire);
        let s = &self.stats;
        let _ = write!(
            out,
            "# TYPE stampd_audit_shipper_up gauge\nstampd_audit_shipper_up {}\n\
             # TYPE stampd_audit_shipped_rows_total counter\nstampd_audit_shipped_rows_total {}\n\
             # TYPE stampd_audit_shipper_failures_total counter\nstampd_audit_shipper_failures_total {}\n\
             # HELP stampd_audit_shipper_lag_frames Journal frames not yet in PostgreSQL.\n\
             # TYPE stampd_audit_shipper_lag_frames gauge\nstampd_audit_shipper_lag_frames {}\n",
            s.up.load(Ordering::Relaxed),
            s.rows.load(Ordering::Relaxed),
            s.failures.load(Ordering::Relaxed),
            committed.saturating_sub(shipped),
        );
    }
}

/// Longest one shipping transaction may take.
const SHIP_DEADLINE: Duration = Duration::from_secs(30);
/// How often an idle shipper looks at the journal without being woken.
const IDLE_POLL: Duration = Duration::from_millis(100);

impl Shipper {
    pub fn spawn(self) -> std::io::Result<ShipperHandle> {
        let stats = Arc::new(ShipStats::default());
        let handle = ShipperHandle {
            stats: stats.clone(),
            progress: self.progress.clone(),
        };
        let rt = runtime()?;
        std::thread::Builder::new()
            .name("stampd-shipper".into())
            .spawn(move || rt.block_on(self.run(&stats)))?;
        Ok(handle)
    }

    async fn run(self, stats: &ShipStats) {
        let mut backoff = Backoff::new();
        loop {
            let mut shipped_any = false;
            let failure = self.session(stats, &mut shipped_any).await;
            stats.up.store(0, Ordering::Relaxed);
            stats.failures.fetch_add(1, Ordering::Relaxed);
            if shipped_any {
                backoff.reset();
            }
            let lag = self
                .progress
                .committed_seq
                .load(Ordering::Acquire)
                .saturating_sub(self.progress.shipped_seq.load(Ordering::Acquire));
            let wait = backoff.advance();
            let retry_ms = wait.as_millis() as u64;
            match failure {
                ShipError::Database(e) => {
                    tracing::warn!(error = %e, lag_frames = lag, retry_ms, "audit shipper: PostgreSQL unavailable; the journal keeps the backlog")
                }
                ShipError::Journal(e) => {
                    tracing::error!(error = %e, lag_frames = lag, retry_ms, "audit shipper: cannot read the journal; nothing more is shipped until this is fixed")
                }
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Ships until something fails; returns what failed.
    async fn session(&self, stats: &ShipStats, shipped_any: &mut bool) -> ShipError {
        let mut client = match self.target.connect().await {
            Ok(c) => c,
            Err(e) => return ShipError::Database(e.to_string()),
        };
        match self.ship(&mut client, stats, shipped_any, false).await {
            Ok(()) => ShipError::Database("shipper stopped".into()),
            Err(e) => e,
        }
    }

    /// Ships what the journal holds now, once, and returns the rows shipped (`stampd audit
    /// ship`: a journal whose server is gone, or a benchmark).
    pub fn ship_once(self) -> Result<u64, String> {
        let rt = runtime().map_err(|e| e.to_string())?;
        let stats = ShipStats::default();
        rt.block_on(async {
            let mut client = self.target.connect().await.map_err(|e| e.to_string())?;
            self.ship(&mut client, &stats, &mut false, true)
                .await
                .map_err(|e| e.to_string())
        })?;
        Ok(stats.rows.load(Ordering::Relaxed))
    }

    /// Ships batches from the stored position; with `once`, returns when caught up. Every
    /// frame must continue the chain from the last one shipped (seq + 1, prev = its hash), so
    /// a journal that changed under a stored position is never shipped from the wrong place.
    async fn ship(
        &self,
        client: &mut Client,
        stats: &ShipStats,
        shipped_any: &mut bool,
        once: bool,
    ) -> Result<(), ShipError> {
        let db = |e: tokio_postgres::Error| ShipError::Database(e.to_string());
        let journal_err = |e: std::io::Error| ShipError::Journal(e.to_string());
        migrate(client).await.map_err(db)?;
        let journal = self.progress.journal_id as i64;
        let row = client
            .query_opt(
                "SELECT segment, \"offset\", seq, hash FROM audit_position WHERE tsa = $1 AND journal = $2",
                &[&self.identity, &journal],
            )
            .await
            .map_err(db)?;
        let (from, mut last) = match row {
            Some(r) => {
                let hash: Vec<u8> = r.try_get(3).map_err(db)?;
                let pos = Position {
                    segment: r.try_get::<_, i64>(0).map_err(db)? as u64,
                    offset: r.try_get::<_, i64>(1).map_err(db)? as u64,
                };
                let seq = r.try_get::<_, i64>(2).map_err(db)? as u64;
                let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                    ShipError::Database("audit_position.hash is not 32 bytes".into())
                })?;
                (Some(pos), Some((seq, hash)))
            }
            None => (None, None),
        };
        self.progress
            .shipped_seq
            .store(last.map_or(0, |(s, _)| s), Ordering::Release);
        let mut reader = Reader::open(&self.dir, from).map_err(journal_err)?;
        let set_position = client.prepare(SET_POSITION).await.map_err(db)?;
        stats.up.store(1, Ordering::Relaxed);
        tracing::info!(seq = last.map_or(0, |(s, _)| s), "audit shipper connected");
        loop {
            let limit = self
                .progress
                .committed_at
                .lock()
                .map_or(Position::default(), |at| *at);
            let mut records = Vec::new();
            let mut advanced = false;
            while records.len() < self.batch_rows {
                let frame = match reader.next(limit).map_err(journal_err)? {
                    Next::Frame(f) => f,
                    Next::End { .. } => break,
                    Next::Corrupt { at, reason } => {
                        return Err(ShipError::Journal(format!(
                            "segment {} offset {}: {reason}; run `stampd audit verify`",
                            at.segment, at.offset
                        )))
                    }
                };
                if let Some((seq, hash)) = last {
                    if frame.seq != seq + 1 || frame.prev != hash {
                        return Err(ShipError::Journal(format!(
                            "frame {} does not continue the chain from frame {seq} shipped \
                             before; run `stampd audit verify`",
                            frame.seq
                        )));
                    }
                }
                advanced = true;
                last = Some((frame.seq, frame.hash));
                if frame.kind == Kind::Record {
                    let r = Record::decode(&frame.body).map_err(|e| {
                        ShipError::Journal(format!("frame {} does not decode: {e}", frame.seq))
                    })?;
                    records.push((frame.seq, r));
                }
            }
            let Some((last_seq, last_hash)) = last.filter(|_| advanced) else {
                if once {
                    return Ok(());
                }
                let _ = tokio::time::timeout(IDLE_POLL, self.progress.wake.notified()).await;
                continue;
            };
            let pos = reader.position();
            let rows = Rows::of(records.iter().map(|(seq, r)| (*seq, r)));
            let position: [&(dyn ToSql + Sync); 6] = [
                &self.identity,
                &journal,
                &(pos.segment as i64),
                &(pos.offset as i64),
                &(last_seq as i64),
                &&last_hash[..],
            ];
            let mut bulk = !records.is_empty();
            loop {
                let commit = async {
                    let tx = client.transaction().await.map_err(db)?;
                    if bulk {
                        match rows.copy(&tx, &self.identity, journal).await {
                            Ok(_) => {}
                            Err(CopyError::Unique) => return Ok(false),
                            Err(CopyError::Failed(e)) => return Err(ShipError::Database(e)),
                        }
                    } else if !records.is_empty() {
                        let insert = tx.prepare(INSERT).await.map_err(db)?;
                        rows.insert(&tx, &insert, &self.identity, journal)
                            .await
                            .map_err(ShipError::Database)?;
                    }
                    tx.execute(&set_position, &position).await.map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    Ok(true)
                };
                let done = tokio::time::timeout(SHIP_DEADLINE, commit)
                    .await
                    .map_err(|_| ShipError::Database("no answer within 30 s".into()))??;
                if done {
                    break;
                }
                // Some rows are there already (a position lost or reset): ship this batch
                // again row by row, skipping them.
                tracing::warn!(seq = last_seq, "audit shipper: rows already in PostgreSQL; shipping the batch again, skipping them");
                bulk = false;
            }
            stats
                .rows
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            *shipped_any = true;
            self.progress.shipped_seq.store(last_seq, Ordering::Release);
        }
    }
}

/// Why shipping stopped.
#[derive(Debug)]
enum ShipError {
    Database(String),
    Journal(String),
}

impl std::fmt::Display for ShipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShipError::Database(e) => write!(f, "PostgreSQL: {e}"),
            ShipError::Journal(e) => write!(f, "journal: {e}"),
        }
    }
}

/// What `stampd audit query` looks for; every field set must match.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub identity: Option<String>,
    pub serial: Option<Vec<u8>>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub imprint: Option<Vec<u8>>,
    pub service: Option<String>,
    pub status: Option<String>,
}

impl Query {
    pub fn matches(&self, r: &Record) -> bool {
        let t = r.time.unix_nanos();
        self.serial
            .as_ref()
            .is_none_or(|s| r.serial().is_some_and(|rs| rs[..] == s[..]))
            && self.from.is_none_or(|f| t >= f.unix_nanos())
            && self.to.is_none_or(|to| t <= to.unix_nanos())
            && self
                .imprint
                .as_ref()
                .is_none_or(|i| r.imprint.as_ref() == Some(i))
            && self.service.as_deref().is_none_or(|s| *r.service == *s)
            && self.status.as_deref().is_none_or(|s| r.status() == s)
    }

    /// Runs against PostgreSQL; each match with its journal seq.
    pub async fn run(&self, client: &Client) -> Result<Vec<(u64, Record)>, String> {
        let ns =
            |t: Option<Timestamp>| t.map(|t| i64::try_from(t.unix_nanos()).unwrap_or(i64::MAX));
        let rows = client
            .query(
                "SELECT seq, serial, gen_time_ns, status, fail_info, http_status, service, policy, \
                 policy_oid, hash_algorithm, message_imprint, nonce, cert_req, client_ip, key_id, \
                 latency_us, request, response FROM audit_record \
                 WHERE ($1::text IS NULL OR tsa = $1) AND ($2::bytea IS NULL OR serial = $2) \
                 AND ($3::bigint IS NULL OR gen_time_ns >= $3) \
                 AND ($4::bigint IS NULL OR gen_time_ns <= $4) \
                 AND ($5::bytea IS NULL OR message_imprint = $5) \
                 AND ($6::text IS NULL OR service = $6) AND ($7::text IS NULL OR status = $7) \
                 ORDER BY gen_time_ns, seq",
                &[
                    &self.identity,
                    &self.serial,
                    &ns(self.from),
                    &ns(self.to),
                    &self.imprint,
                    &self.service,
                    &self.status,
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
        rows.iter().map(record_of_row).collect()
    }
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
    };
    Ok((row.try_get::<_, i64>(0).map_err(col)? as u64, record))
}
