//! PostgreSQL: the schema and its migrations, the shipper that feeds the database from the
//! journal, the PostgreSQL-only store, and queries. tokio-postgres runs on its own small
//! current-thread tokio runtime per thread that needs it; nothing here touches the frontend
//! cores.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::journal::{Kind, Next, Position, Progress, Reader};
use super::record::Record;
use crate::policy::serial::SERIAL_LEN;
use crate::policy::Outcome;
use crate::protocol::{FailureInfo, HashAlg, Timestamp};

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
    updated  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tsa, journal)
);
"#];

/// Any conflict (a row shipped before a crash, or a serial seen before) is skipped: rows are
/// idempotent on (tsa, journal, seq) and on (tsa, serial).
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
ON CONFLICT DO NOTHING
"#;

const SET_POSITION: &str = r#"
INSERT INTO audit_position (tsa, journal, segment, "offset", seq) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tsa, journal) DO UPDATE
SET segment = excluded.segment, "offset" = excluded."offset", seq = excluded.seq, updated = now()
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
    pub fn new(
        dsn: &str,
        password_env: Option<&str>,
        password_file: Option<&Path>,
    ) -> Result<Target, String> {
        let mut config = check_dsn(dsn)?;
        if let Some(var) = password_env {
            let pw = std::env::var(var)
                .map_err(|_| format!("the environment variable {var} is not set"))?;
            config.password(pw);
        }
        if let Some(file) = password_file {
            let pw =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            config.password(pw.trim_end_matches(['\r', '\n']));
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

/// Column arrays for one multi-row insert.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    serial: Vec<Option<Vec<u8>>>,
    ns: Vec<i64>,
    status: Vec<&'static str>,
    fail_info: Vec<Option<&'static str>>,
    http_status: Vec<i32>,
    service: Vec<String>,
    policy: Vec<Option<String>>,
    policy_oid: Vec<Option<String>>,
    hash: Vec<Option<&'static str>>,
    imprint: Vec<Option<Vec<u8>>>,
    nonce: Vec<Option<Vec<u8>>>,
    cert_req: Vec<bool>,
    client: Vec<Option<std::net::IpAddr>>,
    key_id: Vec<Option<String>>,
    latency: Vec<i64>,
    request: Vec<Option<Vec<u8>>>,
    response: Vec<Option<Vec<u8>>>,
}

impl Rows {
    fn len(&self) -> usize {
        self.seq.len()
    }

    fn push(&mut self, seq: u64, r: Record) {
        let (fail_info, http_status) = match r.outcome {
            Outcome::Granted { .. } => (None, 200),
            Outcome::Rejected(f) => (Some(f.name()), 200),
            Outcome::Refused(s) => (None, i32::from(s)),
        };
        self.seq.push(seq as i64);
        self.serial.push(r.serial().map(|s| s.to_vec()));
        self.ns
            .push(i64::try_from(r.time.unix_nanos()).unwrap_or(i64::MAX));
        self.status.push(r.status());
        self.fail_info.push(fail_info);
        self.http_status.push(http_status);
        self.service.push(r.service.to_string());
        self.policy.push(r.policy.map(|p| p.to_string()));
        self.policy_oid.push(r.policy_oid.map(|p| p.to_string()));
        self.hash.push(r.hash.map(HashAlg::name));
        self.imprint.push(r.imprint);
        self.nonce.push(r.nonce);
        self.cert_req.push(r.cert_req);
        self.client.push(r.client);
        self.key_id.push(r.key_id.map(|k| k.to_string()));
        self.latency
            .push(i64::try_from(r.latency_us).unwrap_or(i64::MAX));
        self.request.push(r.request);
        self.response.push(r.response);
    }

    async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        stmt: &Statement,
        identity: &str,
        journal: i64,
    ) -> Result<u64, tokio_postgres::Error> {
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
        tx.execute(stmt, &params).await
    }
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

impl DirectStore {
    pub fn new(target: Target, identity: &str) -> std::io::Result<DirectStore> {
        let mut id = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| std::io::Error::other("no randomness"))?;
        Ok(DirectStore {
            rt: runtime()?,
            target,
            identity: identity.to_string(),
            client: None,
            journal: (u64::from_le_bytes(id) >> 1) as i64,
            seq: 0,
        })
    }
}

impl super::writer::Store for DirectStore {
    fn commit(&mut self, batch: &[Record]) -> Result<(), String> {
        let mut rows = Rows::default();
        for r in batch {
            self.seq += 1;
            rows.push(self.seq, r.clone());
        }
        let (target, identity, journal) = (&self.target, &self.identity, self.journal);
        let slot = &mut self.client;
        let result = self.rt.block_on(async {
            if slot.is_none() {
                let mut client = target.connect().await?;
                migrate(&mut client).await?;
                let stmt = client.prepare(INSERT).await?;
                *slot = Some((client, stmt));
            }
            let Some((client, stmt)) = slot.as_mut() else {
                unreachable!("connected above")
            };
            let tx = client.transaction().await?;
            rows.insert(&tx, stmt, identity, journal).await?;
            tx.commit().await
        });
        result.map_err(|e| {
            // Reconnect on the next batch.
            self.client = None;
            format!("PostgreSQL: {e}")
        })
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

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
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
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut shipped_any = false;
            let e = self.session(stats, &mut shipped_any).await;
            stats.up.store(0, Ordering::Relaxed);
            stats.failures.fetch_add(1, Ordering::Relaxed);
            if shipped_any {
                backoff = BACKOFF_MIN;
            }
            let lag = self
                .progress
                .committed_seq
                .load(Ordering::Acquire)
                .saturating_sub(self.progress.shipped_seq.load(Ordering::Acquire));
            tracing::warn!(error = %e, lag_frames = lag, retry_ms = backoff.as_millis() as u64, "audit shipper: PostgreSQL unavailable; the journal keeps the backlog");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Ships until something fails; returns what failed.
    async fn session(&self, stats: &ShipStats, shipped_any: &mut bool) -> String {
        let mut client = match self.target.connect().await {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        match self.ship(&mut client, stats, shipped_any, false).await {
            Ok(()) => "shipper stopped".into(),
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
            self.ship(&mut client, &stats, &mut false, true).await
        })?;
        Ok(stats.rows.load(Ordering::Relaxed))
    }

    /// Ships batches from the stored position; with `once`, returns when caught up.
    async fn ship(
        &self,
        client: &mut Client,
        stats: &ShipStats,
        shipped_any: &mut bool,
        once: bool,
    ) -> Result<(), String> {
        let pg = |e: tokio_postgres::Error| e.to_string();
        migrate(client).await.map_err(pg)?;
        let journal = self.progress.journal_id as i64;
        let row = client
            .query_opt(
                "SELECT segment, \"offset\", seq FROM audit_position WHERE tsa = $1 AND journal = $2",
                &[&self.identity, &journal],
            )
            .await
            .map_err(pg)?;
        let (from, mut last_seq) = match row {
            Some(r) => (
                Some(Position {
                    segment: r.get::<_, i64>(0) as u64,
                    offset: r.get::<_, i64>(1) as u64,
                }),
                r.get::<_, i64>(2) as u64,
            ),
            None => (None, 0),
        };
        self.progress.shipped_seq.store(last_seq, Ordering::Release);
        let mut reader = Reader::open(&self.dir, from).map_err(|e| e.to_string())?;
        let insert = client.prepare(INSERT).await.map_err(pg)?;
        let set_position = client.prepare(SET_POSITION).await.map_err(pg)?;
        stats.up.store(1, Ordering::Relaxed);
        tracing::info!(seq = last_seq, "audit shipper connected");
        loop {
            let limit = self.progress.committed_seq.load(Ordering::Acquire);
            let mut rows = Rows::default();
            let mut advanced = false;
            while rows.len() < self.batch_rows {
                match reader.next(limit).map_err(|e| e.to_string())? {
                    Next::Frame(f) => {
                        advanced = true;
                        last_seq = f.seq;
                        if f.kind == Kind::Record {
                            let r = Record::decode(&f.body).map_err(|e| {
                                format!("journal frame {} does not decode: {e}", f.seq)
                            })?;
                            rows.push(f.seq, r);
                        }
                    }
                    Next::End { .. } => break,
                    Next::Corrupt { at, reason } => {
                        return Err(format!(
                            "journal segment {} offset {}: {reason}; run `stampd audit verify`",
                            at.segment, at.offset
                        ))
                    }
                }
            }
            if !advanced {
                if once {
                    return Ok(());
                }
                let _ = tokio::time::timeout(IDLE_POLL, self.progress.wake.notified()).await;
                continue;
            }
            let pos = reader.position();
            let tx = client.transaction().await.map_err(pg)?;
            if rows.len() > 0 {
                rows.insert(&tx, &insert, &self.identity, journal)
                    .await
                    .map_err(pg)?;
            }
            tx.execute(
                &set_position,
                &[
                    &self.identity,
                    &journal,
                    &(pos.segment as i64),
                    &(pos.offset as i64),
                    &(last_seq as i64),
                ],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            stats.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
            *shipped_any = true;
            self.progress.shipped_seq.store(last_seq, Ordering::Release);
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
    let ns: i64 = row.get(2);
    let serial: Option<Vec<u8>> = row.get(1);
    let fail_info: Option<String> = row.get(4);
    let http_status: i32 = row.get(5);
    let outcome = match (serial, fail_info) {
        (Some(s), _) => Outcome::Granted {
            serial: <[u8; SERIAL_LEN]>::try_from(s.as_slice()).map_err(|_| bad("serial"))?,
        },
        (None, Some(f)) => {
            Outcome::Rejected(FailureInfo::from_name(&f).ok_or_else(|| bad("fail_info"))?)
        }
        (None, None) => Outcome::Refused(u16::try_from(http_status).map_err(|_| bad("status"))?),
    };
    let hash: Option<String> = row.get(9);
    let text = |i: usize| row.get::<_, Option<String>>(i).map(Arc::from);
    let record = Record {
        time: Timestamp {
            unix_secs: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as u32,
        },
        outcome,
        service: row.get::<_, String>(6).into(),
        policy: text(7),
        policy_oid: text(8),
        hash: match hash {
            Some(h) => Some(HashAlg::from_name(&h).ok_or_else(|| bad("hash_algorithm"))?),
            None => None,
        },
        imprint: row.get(10),
        nonce: row.get(11),
        cert_req: row.get(12),
        client: row.get(13),
        key_id: text(14),
        latency_us: row.get::<_, i64>(15) as u64,
        request: row.get(16),
        response: row.get(17),
    };
    Ok((row.get::<_, i64>(0) as u64, record))
}
