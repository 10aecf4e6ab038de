//! stampd: a high-throughput RFC 3161 Time-Stamp Authority.
//!
//! Shape: [`frontend`] runs one monoio runtime per core and speaks HTTP/1.1; requests are
//! either issued on the core that received them or handed through [`pipeline`] (a bounded
//! crossbeam queue) to backend workers; [`policy`] turns a decoded request into a token with
//! constant DER parts pre-encoded; [`signer`] holds the key; [`protocol`] is the DER/CMS
//! core and does no I/O; [`clock`] is the only source of genTime; [`audit`] records every
//! request in a group-committed, hash-chained journal shipped to PostgreSQL.
#![forbid(unsafe_code)]

pub mod audit;
pub mod backoff;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod frontend;
pub mod outcome;
pub mod pipeline;
pub mod pki;
pub mod policy;
pub mod protocol;
pub mod serial;
pub mod signer;
