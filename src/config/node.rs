//! The node's identity at start: its serial space, and with `audit.postgres` its claim of
//! `server.node_id` in PostgreSQL (`audit/postgres/claim.rs`) and the heartbeat that holds it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::postgres::{ClaimError, Head, NodeClaim, NodeLease, Target};
use crate::audit::AuditSink;
use crate::error::Error;
use crate::serial::{self, SerialSpace};

use super::Config;

/// Opens the serial space in `state_dir` (taking the data directory's lock first) and, with
/// `audit.postgres`, claims the node id: refused while another live node holds it; past the
/// last holder's epoch when taken over. A node whose database does not answer starts only
/// if this data directory held the claim before (its heartbeat then claims it once the
/// database answers); one that never claimed its id cannot know that no other node holds it.
pub fn open(
    config: &Config,
    state_dir: &Path,
    password: Option<&str>,
    now_unix_secs: u64,
) -> Result<(SerialSpace, Option<NodeClaim>), Error> {
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
    let claim = NodeClaim {
        target: Target::new(dsn, password.map(str::to_string))
            .map_err(|e| Error::Config(format!("audit.postgres: {e}")))?,
        identity: identity.clone(),
        node_id,
        instance: serial::instance_id(state_dir)?,
        lease: Duration::from_secs(config.server.node_lease_seconds),
    };
    let taken = claim.floor().and_then(|floor| {
        serials
            .advance_past(floor)
            .map_err(|e| ClaimError::Unreachable(e.to_string()))?;
        claim.take(serials.epoch())
    });
    match taken {
        Ok(()) => {
            serial::remember_claim(state_dir, identity, node_id)?;
            tracing::info!(
                node_id,
                epoch = serials.epoch(),
                "node id claimed in PostgreSQL"
            );
        }
        Err(ClaimError::Held(why)) => return Err(Error::State(why)),
        Err(ClaimError::Unreachable(e)) if serial::claimed_before(state_dir, identity, node_id) => {
            tracing::warn!(
                node_id,
                error = %e,
                "cannot reach PostgreSQL to claim this node's id; it held the id before, so it \
                 starts, and claims it once the database answers"
            );
        }
        Err(ClaimError::Unreachable(e)) => {
            return Err(Error::State(format!(
                "cannot claim server.node_id {node_id} in PostgreSQL ({e}): a node that never \
                 held its id does not start without the database, which alone knows whether \
                 another node holds it"
            )))
        }
    }
    Ok((serials, Some(claim)))
}

/// Starts the claim's heartbeat, reporting the audit shards' heads. A node that lost its id
/// stops as SIGTERM stops it (drain, audit flush): it must not issue under another's id.
pub fn hold(claim: NodeClaim, epoch: u64, audit: Arc<dyn AuditSink>) -> Result<NodeLease, Error> {
    let heads = Box::new(move || {
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
    });
    let on_lost = Box::new(|_why: String| {
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
    });
    claim
        .spawn(epoch, heads, on_lost)
        .map_err(|e| Error::Config(format!("cannot start the node lease: {e}")))
}
