//! `store = "postgres"`: [`DirectStore`], the writer's store that commits each batch to
//! PostgreSQL, with no journal.

use std::time::Duration;

use tokio_postgres::{Client, Statement};

use super::rows::{EventRows, Rows};
use super::schema::{migrate, INSERT};
use super::target::{describe, runtime, Target};
use crate::audit::record::Entry;
use crate::audit::writer::Store;

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
    /// A store writing as `identity` to `target`, with its own current-thread runtime. It
    /// tries to connect (and migrate the schema) at once, but a database that is down only
    /// logs a warning: batches fail (`systemFailure`) until it is reachable.
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
            Ok(Err(e)) => Err(format!("PostgreSQL: {}", describe(&e))),
            Err(_) => Err("PostgreSQL: no answer within 10 s".into()),
        }
    }

    fn insert(&mut self, batch: &[Entry], first_seq: u64) -> Result<(), String> {
        let (identity, journal) = (&self.identity, self.journal);
        let Some((client, stmt)) = self.client.as_mut() else {
            return Err("PostgreSQL: not connected".into());
        };
        let numbered = || (first_seq..).zip(batch);
        let rows = Rows::of(numbered().filter_map(|(seq, e)| match e {
            Entry::Request(r) => Some((seq, r)),
            Entry::Event(_) => None,
        }));
        let events = EventRows::of(numbered().filter_map(|(seq, e)| match e {
            Entry::Event(ev) => Some((seq, ev)),
            Entry::Request(_) => None,
        }));
        // The timer must be created inside the runtime.
        let done = self.rt.block_on(async {
            tokio::time::timeout(DB_DEADLINE, async {
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| format!("PostgreSQL: {}", describe(&e)))?;
                rows.insert(&tx, stmt, identity, journal)
                    .await
                    .map_err(|e| format!("PostgreSQL: {e}"))?;
                events
                    .insert(&tx, identity, journal)
                    .await
                    .map_err(|e| format!("PostgreSQL: {e}"))?;
                tx.commit()
                    .await
                    .map_err(|e| format!("PostgreSQL: {}", describe(&e)))
            })
            .await
        });
        done.unwrap_or_else(|_| Err("PostgreSQL: no answer within 10 s".into()))
    }
}

impl Store for DirectStore {
    fn commit(&mut self, batch: &[Entry]) -> Result<(), String> {
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
