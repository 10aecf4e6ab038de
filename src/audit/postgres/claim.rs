//! Node identity across a cluster: a node claims its (TSA identity, `server.node_id`) in
//! PostgreSQL at start and holds it with a lease it renews ([`NodeClaim`], [`NodeLease`]);
//! `stampd cluster status` reads the claims back ([`nodes`]).
//!
//! Why: serial numbers are `epoch | node id | counter` (`serial.rs`), and RFC 3161 §2.4.2
//! wants them unique for every token of one TSA. Two live nodes with one node id would issue
//! colliding serials, so the second is refused. The claim also stores the holder's serial
//! epoch: a node taking over an id whose lease expired starts its epoch past it, so even a
//! holder that was only cut off from the database (and still issues) cannot collide with the
//! new one, and learns at its next heartbeat that it lost the id, and stops.
//!
//! A claim belongs to a data directory (its `instance`, a random id kept in
//! `DATA_DIR/state/node-instance`), not to a process: a node restarted on its own data
//! directory takes its own claim back at once, as a rolling restart needs. The data
//! directory's lock (`serial.rs`) keeps two processes off one directory.

use std::time::Duration;

use tokio_postgres::Client;

use super::target::{describe, runtime, Target};

/// What [`nodes`] reports of one claim.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRow {
    /// The TSA identity (`[audit] identity`).
    pub identity: String,
    /// `server.node_id`.
    pub node_id: u16,
    /// Host and process that hold (or last held) it.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// When the holder claimed it (UTC, RFC 3339).
    pub since: String,
    /// The holder's last heartbeat (UTC, RFC 3339).
    pub heartbeat: String,
    /// The lease, in seconds: without a heartbeat for this long, the id is free.
    pub lease_seconds: i32,
    /// `live`, `expired` (no heartbeat within the lease) or `released` (stopped cleanly).
    pub state: String,
    /// The holder's serial epoch.
    pub epoch: i64,
    /// Per audit shard: its journal id, the head the holder last reported, and what
    /// PostgreSQL holds of it (`shipped`), so `lag` = head − shipped frames.
    pub shards: Vec<ShardRow>,
}

/// One audit shard of a node, as [`nodes`] reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardRow {
    /// The shard's index on its node.
    pub shard: u64,
    /// Its journal id (`audit_record.journal`).
    pub journal: i64,
    /// The journal's committed head at the last heartbeat.
    pub head: i64,
    /// The last frame shipped to PostgreSQL (0: none).
    pub shipped: i64,
    /// Frames committed on the node but not (yet) in PostgreSQL, as of the heartbeat.
    pub lag: i64,
}

/// One audit shard's head, as a heartbeat reports it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Head {
    /// The shard's index.
    pub shard: usize,
    /// Its journal id.
    pub journal: u64,
    /// Its committed head seq.
    pub seq: u64,
}

/// What the heartbeat calls: for the shards' heads to report, after each renewal that
/// reached the database, and once when the id turned out to be another's.
pub struct Hooks {
    /// The heads of this node's audit shards, read at each heartbeat.
    pub heads: Box<dyn Fn() -> Vec<Head> + Send>,
    /// After each heartbeat the database took.
    pub renewed: Box<dyn Fn() + Send>,
    /// The id is another's: the reason. Called once; the heartbeat ends.
    pub lost: Box<dyn FnOnce(String) + Send>,
    /// The claim was released (a clean stop): the id is free for others at once.
    pub released: Box<dyn FnOnce() + Send>,
}

/// A claim to make: who, for which id, held how long.
pub struct NodeClaim {
    /// The database (`[audit] postgres`).
    pub target: Target,
    /// `[audit] identity`.
    pub identity: String,
    /// `server.node_id`.
    pub node_id: u16,
    /// This data directory's instance id.
    pub instance: String,
    /// `server.node_lease_seconds`: a claim not renewed for this long may be taken over.
    pub lease: Duration,
}

/// Why a claim was not made.
#[derive(Debug)]
pub enum ClaimError {
    /// Another live node holds the id: the message names it.
    Held(String),
    /// The database did not answer (or failed).
    Unreachable(String),
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::Held(m) => f.write_str(m),
            ClaimError::Unreachable(m) => write!(f, "PostgreSQL: {m}"),
        }
    }
}

/// The advisory lock class for claims: one claimant of a node id at a time.
const LOCK_CLASS: i32 = 0x5354_4d50; // "STMP"

/// How long one claim or heartbeat may take before it counts as a failure.
const DEADLINE: Duration = Duration::from_secs(5);

/// A claim's columns, its times as UTC text: instance, host, pid, since, heartbeat,
/// lease_s, epoch, state (`live`, `expired`, `released`), lease expiry — for the claimant
/// ([`SELECT`]) and for `cluster status` ([`nodes`]) alike.
macro_rules! claim_columns {
    () => {
        "instance, host, pid, \
         to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
         to_char(heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
         lease_s, epoch, \
         CASE WHEN released THEN 'released' \
              WHEN heartbeat + lease_s * interval '1 second' < clock_timestamp() THEN 'expired' \
              ELSE 'live' END, \
         to_char((heartbeat + lease_s * interval '1 second') AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    };
}

/// One claim row ([`claim_columns`]).
const SELECT: &str = concat!(
    "SELECT ",
    claim_columns!(),
    " FROM stampd_node WHERE tsa = $1 AND node_id = $2"
);

impl NodeClaim {
    /// At start, before the claim: the serial epoch this node must start past (the last
    /// holder's; 0 for an id never claimed), or the live holder that refuses the claim.
    /// Brings the schema up to date first.
    pub fn floor(&self) -> Result<u64, ClaimError> {
        self.once(|claim, mut client| async move {
            super::migrate(&mut client)
                .await
                .map_err(|e| ClaimError::Unreachable(describe(&e)))?;
            claim.probe(&client).await
        })
    }

    /// At start: takes the id for this instance at `epoch` (past [`NodeClaim::floor`]);
    /// refused when another node took it meanwhile.
    pub fn take(&self, epoch: u64) -> Result<(), ClaimError> {
        self.once(
            |claim, mut client| async move { claim.hold(&mut client, epoch, &[], true).await },
        )
    }

    /// Runs `f` once over a fresh connection, on a runtime of its own, within [`DEADLINE`].
    fn once<'a, T, F>(&'a self, f: impl FnOnce(&'a NodeClaim, Client) -> F) -> Result<T, ClaimError>
    where
        F: std::future::Future<Output = Result<T, ClaimError>> + 'a,
    {
        let rt = runtime().map_err(|e| ClaimError::Unreachable(e.to_string()))?;
        rt.block_on(async {
            let work = async {
                let client = self
                    .target
                    .connect()
                    .await
                    .map_err(|e| ClaimError::Unreachable(describe(&e)))?;
                f(self, client).await
            };
            tokio::time::timeout(DEADLINE, work)
                .await
                .map_err(|_| ClaimError::Unreachable("no answer within 5 s".into()))?
        })
    }

    /// The epoch a claimant must exceed, or the live holder that refuses it.
    async fn probe(&self, client: &Client) -> Result<u64, ClaimError> {
        let row = client
            .query_opt(SELECT, &[&self.identity, &i32::from(self.node_id)])
            .await
            .map_err(|e| ClaimError::Unreachable(describe(&e)))?;
        let Some(row) = row else { return Ok(0) };
        let holder: String = row.get(0);
        let state: String = row.get(7);
        if holder != self.instance && state == "live" {
            return Err(ClaimError::Held(self.held_message(&row)));
        }
        Ok(u64::try_from(row.get::<_, i64>(6)).unwrap_or(0))
    }

    fn held_message(&self, row: &tokio_postgres::Row) -> String {
        format!(
            "server.node_id {} of TSA identity `{}` is held by another node: host {}, pid {}, \
             since {}, last heartbeat {} (lease {} s, expires {} unless renewed). Give this \
             node its own server.node_id, or stop the other one",
            self.node_id,
            self.identity,
            row.get::<_, String>(1),
            row.get::<_, i32>(2),
            row.get::<_, String>(3),
            row.get::<_, String>(4),
            row.get::<_, i32>(5),
            row.get::<_, String>(8),
        )
    }

    /// Takes or renews the claim for this instance at `epoch`, in one transaction under the
    /// id's advisory lock. One rule for every holder: the claim is ours to take when nobody
    /// holds it, or it is this instance's or no longer live, and its epoch is below ours;
    /// a heartbeat (`start = false`) also renews it when it is this instance's at this very
    /// epoch. Anything else is [`ClaimError::Held`] — including a second process with this
    /// data directory's instance id (a copied directory, a restored snapshot): the one that
    /// started later holds the higher epoch and keeps the id, the other learns at its next
    /// heartbeat that it lost it.
    async fn hold(
        &self,
        client: &mut Client,
        epoch: u64,
        heads: &[Head],
        start: bool,
    ) -> Result<(), ClaimError> {
        let db = |e: tokio_postgres::Error| ClaimError::Unreachable(describe(&e));
        let node = i32::from(self.node_id);
        let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
        let heads = serde_json::to_string(heads).unwrap_or_else(|_| "[]".into());
        let (host, pid) = whoami();
        let lease = i32::try_from(self.lease.as_secs()).unwrap_or(i32::MAX);
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &node],
        )
        .await
        .map_err(db)?;
        if let Some(row) = tx
            .query_opt(SELECT, &[&self.identity, &node])
            .await
            .map_err(db)?
        {
            let ours = row.get::<_, String>(0) == self.instance;
            let live = row.get::<_, String>(7) == "live";
            let theirs = row.get::<_, i64>(6);
            let renewal = !start && ours && theirs == epoch;
            let takeover = (ours || !live) && theirs < epoch;
            if !renewal && !takeover {
                let mut why = self.held_message(&row);
                if ours {
                    why += " (it has this data directory's instance id: is this a copy of \
                            that node's data directory? give each node its own)";
                }
                return Err(ClaimError::Held(why));
            }
        }
        tx.execute(
            "INSERT INTO stampd_node (tsa, node_id, instance, host, pid, since, heartbeat, \
                 lease_s, epoch, heads, released) \
             VALUES ($1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp(), $6, $7, $8::text::jsonb, false) \
             ON CONFLICT (tsa, node_id) DO UPDATE SET instance = excluded.instance, \
                 host = excluded.host, pid = excluded.pid, heartbeat = clock_timestamp(), \
                 lease_s = excluded.lease_s, epoch = excluded.epoch, heads = excluded.heads, \
                 released = false, \
                 since = CASE WHEN $9 OR stampd_node.instance <> excluded.instance \
                              THEN clock_timestamp() ELSE stampd_node.since END",
            &[
                &self.identity,
                &node,
                &self.instance,
                &host,
                &pid,
                &lease,
                &epoch,
                &heads,
                &start,
            ],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Starts the `stampd-lease` thread: a heartbeat every third of the lease (with the
    /// audit shards' heads, for `stampd cluster status`). While the database is down the
    /// node keeps serving and keeps trying; if the id turns out to be another's (it was
    /// taken over while this node could not renew it), `on_lost` is called once with the
    /// reason and the thread ends. A heartbeat takes a free id as a claim does, so a node
    /// that started while the database was down claims its id with the first one that
    /// reaches it.
    pub fn spawn(self, epoch: u64, hooks: Hooks) -> std::io::Result<NodeLease> {
        let rt = runtime()?;
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("stampd-lease".into())
            .spawn(move || {
                rt.block_on(self.beat(epoch, hooks, &stopping));
                let _ = done_tx.send(());
            })?;
        Ok(NodeLease {
            stop,
            done: done_rx,
        })
    }

    async fn beat(self, epoch: u64, hooks: Hooks, stop: &tokio::sync::Notify) {
        let every = (self.lease / 3).max(Duration::from_millis(500));
        // A renewal that takes longer than a third of the lease counts as failed.
        let deadline = every.min(DEADLINE);
        let mut client: Option<Client> = None;
        let mut failing = false;
        loop {
            let stopped = tokio::time::timeout(every, stop.notified()).await.is_ok();
            let step = async {
                if client.as_ref().is_none_or(Client::is_closed) {
                    client = Some(
                        self.target
                            .connect()
                            .await
                            .map_err(|e| ClaimError::Unreachable(describe(&e)))?,
                    );
                }
                let c = client.as_mut().expect("connected above");
                if stopped {
                    c.execute(
                        "UPDATE stampd_node SET released = true, heartbeat = clock_timestamp() \
                         WHERE tsa = $1 AND node_id = $2 AND instance = $3 AND epoch = $4",
                        &[
                            &self.identity,
                            &i32::from(self.node_id),
                            &self.instance,
                            &i64::try_from(epoch).unwrap_or(i64::MAX),
                        ],
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| ClaimError::Unreachable(describe(&e)))
                } else {
                    self.hold(c, epoch, &(hooks.heads)(), false).await
                }
            };
            match tokio::time::timeout(deadline, step).await {
                Ok(Ok(())) if stopped => {
                    (hooks.released)();
                    return;
                }
                Ok(Ok(())) => {
                    (hooks.renewed)();
                    if failing {
                        tracing::info!(node_id = self.node_id, "node lease renewed again");
                        failing = false;
                    }
                }
                Ok(Err(ClaimError::Held(why))) => {
                    tracing::error!("lost this node's id: {why}; stopping");
                    (hooks.lost)(why);
                    return;
                }
                Ok(Err(ClaimError::Unreachable(e))) => {
                    client = None;
                    if !failing {
                        tracing::warn!(node_id = self.node_id, error = %e, "cannot renew the node lease; serving on, retrying");
                        failing = true;
                    }
                }
                Err(_) => {
                    client = None;
                    if !failing {
                        tracing::warn!(
                            node_id = self.node_id,
                            deadline_ms = deadline.as_millis() as u64,
                            "cannot renew the node lease: no answer in time; serving on, retrying"
                        );
                        failing = true;
                    }
                }
            }
            if stopped {
                return;
            }
        }
    }
}

/// The running heartbeat; [`NodeLease::release`] ends it.
pub struct NodeLease {
    stop: std::sync::Arc<tokio::sync::Notify>,
    done: std::sync::mpsc::Receiver<()>,
}

impl NodeLease {
    /// Marks the claim released (a clean stop: the id is free at once) and ends the
    /// heartbeat, waiting at most `timeout` for the database; false when it did not answer
    /// (the lease then expires by itself).
    pub fn release(&self, timeout: Duration) -> bool {
        self.stop.notify_one();
        self.done.recv_timeout(timeout).is_ok()
    }
}

/// This host's name and this process's id, as a claim records them.
fn whoami() -> (String, i32) {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    (host, i32::try_from(std::process::id()).unwrap_or(i32::MAX))
}

/// Every claim in the database, with each shard's shipping position (`stampd cluster
/// status`).
pub async fn nodes(client: &Client) -> Result<Vec<NodeRow>, String> {
    let rows = client
        .query(
            concat!(
                "SELECT tsa, node_id, ",
                claim_columns!(),
                ", coalesce((SELECT jsonb_agg(jsonb_build_object('shard', h.shard, \
                     'journal', h.journal, 'head', h.seq, 'shipped', coalesce(p.seq, 0)) \
                     ORDER BY h.shard) \
                   FROM jsonb_to_recordset(n.heads) AS h(shard bigint, journal bigint, seq bigint) \
                   LEFT JOIN audit_position p ON p.tsa = n.tsa AND p.journal = h.journal), \
                   '[]'::jsonb)::text \
                 FROM stampd_node n ORDER BY tsa, node_id"
            ),
            &[],
        )
        .await
        .map_err(|e| describe(&e))?;
    rows.iter()
        .map(|r| {
            #[derive(serde::Deserialize)]
            struct Shard {
                shard: u64,
                journal: i64,
                head: i64,
                shipped: i64,
            }
            let shards: Vec<Shard> =
                serde_json::from_str(&r.get::<_, String>(11)).map_err(|e| e.to_string())?;
            // tsa, node_id, then the claim's columns from instance (2) to the expiry (10).
            Ok(NodeRow {
                identity: r.get(0),
                node_id: u16::try_from(r.get::<_, i32>(1)).unwrap_or(u16::MAX),
                host: r.get(3),
                pid: r.get(4),
                since: r.get(5),
                heartbeat: r.get(6),
                lease_seconds: r.get(7),
                epoch: r.get(8),
                state: r.get(9),
                shards: shards
                    .into_iter()
                    .map(|s| ShardRow {
                        shard: s.shard,
                        journal: s.journal,
                        head: s.head,
                        shipped: s.shipped,
                        lag: (s.head - s.shipped).max(0),
                    })
                    .collect(),
            })
        })
        .collect()
}
