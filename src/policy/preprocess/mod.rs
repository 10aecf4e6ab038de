//! Pre-processing filters: they wrap every chain like an onion. `before` runs in the
//! service's order before the policy is chosen; `after` runs in reverse order once the reply
//! exists, for every filter whose `before` ran, on rejections and failures too.

pub mod audit;
pub mod clock;
pub mod monitor;
pub mod rate_limit;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::mapper::RequestMeta;
use super::{Policy, Reply};
use crate::clock::{ClockError, Reading};
use crate::error::{Error, Refusal};
use crate::protocol::{Rejection, TimeStampReq};

/// One request on its way through the onion.
pub struct Exchange<'a> {
    /// The request's context: client address, path, HTTP head.
    pub meta: &'a RequestMeta<'a>,
    /// The request body (DER `TimeStampReq`, not yet decoded).
    pub body: &'a [u8],
    /// When `Tsa::issue` began, for the audit record's latency.
    pub started: Instant,
    /// genTime's source reading, set by the clock filter.
    pub time: Option<Result<Reading, ClockError>>,
    /// The policy that took the request, once chosen.
    pub policy: Option<&'a Policy>,
    /// The decoded request, once the chain has decoded it.
    pub request: Option<TimeStampReq<'a>>,
    /// An Authenticode request's digest algorithm and messageDigest (the digest of the
    /// signature it countersigns), once decoded: the audit record's imprint.
    pub authenticode: Option<(crate::protocol::HashAlg, Vec<u8>)>,
    /// The frontend refused the request at the HTTP level before the service saw its body
    /// (`Tsa::refuse`): `body` is empty and the reply is that refusal.
    pub http_refusal: bool,
}

/// Why a pre-processing filter stops a request before the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Answer with this RFC 3161 rejection.
    Reject(Rejection),
    /// Answer at the HTTP level (e.g. 429), with no TimeStampResp.
    Http(u16),
}

impl From<Error> for Stop {
    /// The one mapping of [`Error::refusal`], for a filter that stops a request.
    fn from(e: Error) -> Self {
        match e.refusal() {
            Refusal::Reject(r) => Stop::Reject(r),
            Refusal::Http(status) => Stop::Http(status),
        }
    }
}

/// A pre-processing filter (`[preprocess.NAME]`): one layer of the onion around a service's
/// chain.
///
/// Contract:
/// * **Callers.** `policy::Tsa::issue`, once per request of a service that lists the
///   filter: [`before`](PreFilter::before) in the service's `preprocess` order, then the
///   chain, then [`after`](PreFilter::after) in reverse order for every filter whose
///   `before` was called, the one that stopped the request included, and whatever the
///   outcome (issued, rejected, refused). `Tsa::metrics` calls
///   [`metrics`](PreFilter::metrics) for `GET /metrics`. Built once at start; one
///   instance (`Arc<dyn PreFilter>`) serves every core and worker.
/// * **Threads.** Every method runs on the backend thread of the request, a
///   `stampd-core-N` with inline dispatch or a `stampd-worker-N` with queue dispatch,
///   concurrently with the same filter on the others; `metrics` runs on a core. So a filter
///   must never block: no I/O, no waiting on another thread, no lock held for more than a
///   few field updates (the rate limit's shard mutex, the monitor's counters). The audit
///   filter hands its record over without waiting; the wait for durability happens later,
///   on the core, outside the filter.
/// * **Errors.** `before` returning `Err(Stop)` ends the request there: the filters after
///   it and the chain do not run, and the reply is the `Stop`'s rejection or HTTP status.
///   `after` cannot fail but may replace the reply (the audit filter answers 503 when the
///   trail cannot take the record). A filter must not panic on any request.
pub trait PreFilter: Send + Sync {
    /// The filter's `[preprocess.NAME]` (or built-in kind) name, for logs and metrics.
    fn name(&self) -> &str;
    /// Runs before policy selection; may record into `x` (the clock filter's reading) or
    /// stop the request.
    fn before(&self, _x: &mut Exchange<'_>) -> Result<(), Stop> {
        Ok(())
    }
    /// May change the reply: the audit filter attaches the group-commit wait, or refuses
    /// when the trail cannot take the record.
    fn after(&self, _x: &Exchange<'_>, _reply: &mut Reply) {}
    /// Appends Prometheus text for `GET /metrics` (monitors only).
    fn metrics(&self, _out: &mut String) {}
    /// A copy of the monitor's counters and latency histogram (monitors only), from which
    /// the admin dashboard works out its live rates and percentiles.
    fn figures(&self) -> Option<monitor::Figures> {
        None
    }
    /// One line for the public timestamp page saying what this filter means for a
    /// requester (rate limits only), e.g. "at most 100 requests/s per client address".
    fn describe(&self) -> Option<String> {
        None
    }
}

/// `[preprocess.NAME]`: a configured pre-processing filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PreprocessConfig {
    /// `kind = "clock"`: reads genTime's source once per request.
    Clock(clock::ClockConfig),
    /// `kind = "rate-limit"`: token buckets per client IP and per service.
    RateLimit(rate_limit::RateLimitConfig),
    /// `kind = "transaction-monitor"`: counts outcomes and latencies for `/metrics`.
    TransactionMonitor(monitor::MonitorConfig),
    /// `kind = "audit"`: one audit record per request.
    Audit(audit::AuditFilterConfig),
}

impl PreprocessConfig {
    /// The built-in instance named by its kind, with default options.
    pub fn builtin(name: &str) -> Option<Self> {
        Some(match name {
            "clock" => PreprocessConfig::Clock(Default::default()),
            "rate-limit" => PreprocessConfig::RateLimit(Default::default()),
            "transaction-monitor" => PreprocessConfig::TransactionMonitor(Default::default()),
            "audit" => PreprocessConfig::Audit(Default::default()),
            _ => return None,
        })
    }

    /// `kind = "clock"` (every service lists exactly one: the source of genTime).
    pub fn is_clock(&self) -> bool {
        matches!(self, PreprocessConfig::Clock(_))
    }

    /// `kind = "audit"` (every service lists exactly one, unless `[audit] store = "none"`).
    pub fn is_audit(&self) -> bool {
        matches!(self, PreprocessConfig::Audit(_))
    }

    /// `kind = "rate-limit"` (it must come after the audit filter, so refusals are audited).
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, PreprocessConfig::RateLimit(_))
    }

    /// Pure checks of the filter's options; each message names the key.
    pub fn validate(&self) -> Vec<String> {
        match self {
            PreprocessConfig::Clock(c) => c.validate(),
            PreprocessConfig::RateLimit(c) => c.validate(),
            PreprocessConfig::Audit(c) => c.validate(),
            _ => Vec::new(),
        }
    }
}
