//! `stampd cluster status`: the nodes that claimed ids in the shared PostgreSQL, their
//! leases, and how far each audit shard is shipped.

use std::process::ExitCode;

use super::audit::PostgresArgs;
use super::{say, CmdResult};
use crate::audit::postgres;

/// Lists every node claim (identity, node id, holder, lease state, last heartbeat, serial
/// epoch) and, per audit shard, the journal head at the last heartbeat, the last frame in
/// PostgreSQL and the lag between them. Exit 0.
pub(super) fn status(pg: &PostgresArgs, json: bool) -> CmdResult {
    let target = pg.target()?;
    let rt = postgres::runtime().map_err(|e| e.to_string())?;
    let nodes = rt.block_on(async {
        // Read only: the schema is checked, never migrated.
        let client = target.connect().await.map_err(|e| postgres::describe(&e))?;
        postgres::require(&client).await?;
        postgres::nodes(&client).await
    })?;
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&nodes).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if nodes.is_empty() {
        say!("no node has claimed an id in this database");
    }
    for n in &nodes {
        say!(
            "{} node {}: {}, host {} pid {}, since {}, last heartbeat {} (lease {} s), epoch {}",
            n.identity,
            n.node_id,
            n.state,
            n.host,
            n.pid,
            n.since,
            n.heartbeat,
            n.lease_seconds,
            n.epoch
        );
        for s in &n.shards {
            say!(
                "  shard {} (journal {}): head {}, shipped {}, lag {} frames",
                s.shard,
                s.journal,
                s.head,
                s.shipped,
                s.lag
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
