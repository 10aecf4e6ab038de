//! The node's identity at start: its serial space, and with `audit.postgres` its claim of
//! `server.node_id` in PostgreSQL (`audit/postgres/claim.rs`) and the heartbeat that holds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::postgres::{ClaimError, Head, Hooks, NodeClaim, NodeLease, Target};
use crate::audit::AuditSink;
use crate::error::Error;
use crate::serial::{self, SerialSpace};

use super::Config;

/// A claim made at start, for [`Claimed::hold`] to keep once the server runs.
pub struct Claimed {
    claim: NodeClaim,
    epoch: u64,
    state_dir: PathBuf,
}

/// Opens the serial space in `state_dir` (taking the data directory's lock first) and, with
/// `audit.postgres`, claims the node id: refused while another live node holds it; past the
/// last holder's epoch when taken over. A node whose database does not answer starts only
/// if this data directory held the claim less than a lease ago (no other node can have
/// taken it over since; its heartbeat claims it once the database answers); any other
/// node cannot know that no other node holds its id, and does not start.
pub fn open(
    config: &Config,
    state_dir: &Path,
    password: Option<&str>,
    now_unix_secs: u64,
) -> Result<(SerialSpace, Option<Claimed>), Error> {
    let node_id = config.server.node_id;
    let mut serials = SerialSpace::open(state_dir, node_id, now_unix_secs)?;
    let Some(dsn) = config.audit.postgres.as_deref() else {
        tracing::warn!(
            node_id,
            "no audit.postgres: nothing checks that no other node uses this server.node_id; \
             nodes sharing a TSA key issue unique serial numbers only if each has its own"
        );
        return Ok((serials, None));
    };
    let identity = &config.audit.identity;
    let lease = config.server.node_lease_seconds;
    let claim = NodeClaim {
        target: Target::new(dsn, password.map(str::to_string))
            .map_err(|e| Error::Config(format!("audit.postgres: {e}")))?,
        identity: identity.clone(),
        node_id,
        instance: serial::instance_id(state_dir)?,
        lease: Duration::from_secs(lease),
    };
    let taken = match claim.floor() {
        Ok(floor) => {
            serials.advance_past(floor)?;
            claim.take(serials.epoch())
        }
        Err(e) => Err(e),
    };
    match taken {
        Ok(()) => {
            serial::remember_claim(state_dir, identity, node_id, now_unix_secs)?;
            tracing::info!(
                node_id,
                epoch = serials.epoch(),
                "node id claimed in PostgreSQL"
            );
        }
        Err(ClaimError::Held(why)) => {
            serial::forget_claim(state_dir);
            return Err(Error::State(why));
        }
        Err(ClaimError::Unreachable(e))
            if serial::claimed_within(state_dir, identity, node_id, now_unix_secs, lease) =>
        {
            tracing::warn!(
                node_id,
                error = %e,
                "cannot reach PostgreSQL to claim this node's id; this data directory held it \
                 less than a lease ago, so it starts, and claims it once the database answers"
            );
        }
        Err(ClaimError::Unreachable(e)) => {
            return Err(Error::State(format!(
                "cannot claim server.node_id {node_id} in PostgreSQL ({e}): a node that did not \
                 hold its id within the last node_lease_seconds does not start without the \
                 database, which alone knows whether another node holds it"
            )))
        }
    }
    let epoch = serials.epoch();
    Ok((
        serials,
        Some(Claimed {
            claim,
            epoch,
            state_dir: state_dir.to_path_buf(),
        }),
    ))
}

impl Claimed {
    /// Starts the claim's heartbeat, reporting the audit shards' heads and remembering each
    /// renewal in the data directory. `lost` is called once if the id turns out to be
    /// another's: the node must then stop issuing under it.
    pub fn hold(
        self,
        audit: Arc<dyn AuditSink>,
        lost: Box<dyn FnOnce(String) + Send>,
    ) -> Result<NodeLease, Error> {
        let Claimed {
            claim,
            epoch,
            state_dir,
        } = self;
        let (identity, node_id) = (claim.identity.clone(), claim.node_id);
        let forget = state_dir.clone();
        let released = state_dir.clone();
        let hooks = Hooks {
            heads: Box::new(move || {
                audit
                    .status()
                    .shards
                    .iter()
                    .map(|s| Head {
                        shard: s.shard,
                        journal: s.journal,
                        seq: s.head_seq,
                    })
                    .collect()
            }),
            renewed: Box::new(move || {
                if let Some(now) = crate::clock::unix_time(crate::clock::wall_now()) {
                    let secs = u64::try_from(now.unix_secs).unwrap_or(0);
                    let _ = serial::remember_claim(&state_dir, &identity, node_id, secs);
                }
            }),
            lost: Box::new(move |why| {
                serial::forget_claim(&forget);
                lost(why);
            }),
            released: Box::new(move || serial::forget_claim(&released)),
        };
        claim
            .spawn(epoch, hooks)
            .map_err(|e| Error::Config(format!("cannot start the node lease: {e}")))
    }
}
