//! stampd: a high-throughput RFC 3161 Time-Stamp Authority.
//!
//! Shape: [`frontend`] runs one monoio runtime per core and speaks HTTP/1.1; requests are
//! either issued on the core that received them or handed through [`pipeline`] (a bounded
//! crossbeam queue) to backend workers; [`policy`] turns a decoded request into a token with
//! constant DER parts pre-encoded; [`signer`] holds the key; [`protocol`] is the DER/CMS
//! core and does no I/O; [`clock`] is the only source of genTime; [`audit`] records every
//! request in a group-committed, hash-chained journal shipped to PostgreSQL.
//!
//! # Floors
//!
//! The modules stand on floors, bottom to top:
//!
//! 1. [`protocol`]: DER/CMS encode and decode; no I/O, no clock, no socket.
//! 2. The small leaves: [`error`], [`backoff`], [`clock`], [`serial`], [`outcome`], [`pki`],
//!    [`client`], [`secret`], [`web`] (the web pages' layout and embedded assets).
//! 3. [`signer`]: the `TokenSigner` trait, the software signer, the PKCS#11 pool.
//! 4. [`audit`]: records, the `AuditSink` trait, the journal, the writer, the shipper.
//! 5. [`policy`]: services, the policy mapper, chains, filters, pre-processing filters.
//! 6. [`pipeline`], then [`frontend`] above it: the queue to backend workers, and the
//!    per-core HTTP/1.1 servers (with the public timestamp pages); beside them [`admin`],
//!    the admin listener's web interface and JSON API.
//! 7. [`config`], the assembler: the root `Config`, its validation, and `build`.
//! 8. [`cli`]: one file per command group (with `main.rs`); beside it [`fuzzing`], the
//!    entry points of the fuzz targets, which reach down into every floor they fuzz.
//!
//! **The one rule: imports only point down** (or sideways within a floor, without a
//! circle), and no runtime module imports `config`: only the assembler and the CLI see
//! every component. A plain-data type two floors need lives on the lower one.
//! `python3 .ci/floors.py` checks it in CI; docs/architecture.md describes each floor, the
//! threads, where values cross between them, and the request path step by step.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod backoff;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod frontend;
pub mod fuzzing;
pub mod outcome;
pub mod pipeline;
pub mod pki;
pub mod policy;
pub mod protocol;
pub mod secret;
pub mod serial;
pub mod signer;
pub mod web;
