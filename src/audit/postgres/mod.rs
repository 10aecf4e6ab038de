//! PostgreSQL: the schema and its migrations, the shipper that feeds the database from the
//! journal, the PostgreSQL-only store, and queries. tokio-postgres runs on its own small
//! current-thread tokio runtime per thread that needs it; nothing here touches the frontend
//! cores.
//!
//! The files:
//! - `target.rs`: the database to connect to ([`Target`], [`check_dsn`]) and [`runtime`];
//! - `tls.rs`: libpq's `sslmode` and `sslrootcert` as a rustls connector;
//! - `schema.rs`: the migrations, the SQL texts the writers run, and [`migrate`];
//! - `rows.rs`: records as the column arrays of one binary COPY or multi-row insert;
//! - `direct.rs`: [`DirectStore`], the `store = "postgres"` writer store;
//! - `shipper.rs`: [`Shipper`], the journal to PostgreSQL, and its [`ShipperHandle`];
//! - `select.rs`: [`select`], a [`Query`](super::query::Query) run against the database;
//! - `verify.rs`: [`verify()`], every shard's chain re-checked from the database alone;
//! - `claim.rs`: [`NodeClaim`], a node's claim of its node id with a renewed lease, and
//!   [`nodes`], the claims as `stampd cluster status` lists them.

mod claim;
mod direct;
mod rows;
mod schema;
mod select;
mod shipper;
mod target;
mod tls;
mod verify;

pub use claim::{nodes, ClaimError, Head, Hooks, NodeClaim, NodeLease, NodeRow, ShardRow};
pub use direct::DirectStore;
pub use schema::{migrate, require};
pub use select::select;
pub use shipper::{Shipper, ShipperHandle};
pub use target::{check_dsn, describe, runtime, Target};
pub use tls::Mode as TlsMode;
pub use verify::{verify, Chain};
