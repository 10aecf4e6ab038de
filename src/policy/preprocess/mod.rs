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
use crate::clock::ClockError;
use crate::error::{Error, Refusal};
use crate::protocol::{Rejection, TimeStampReq, Timestamp};

/// One request on its way through the onion.
pub struct Exchange<'a> {
    pub meta: &'a RequestMeta<'a>,
    pub body: &'a [u8],
    pub started: Instant,
    /// genTime's source reading, set by the clock filter.
    pub time: Option<Result<Timestamp, ClockError>>,
    /// The policy that took the request, once chosen.
    pub policy: Option<&'a Policy>,
    /// The decoded request, once the chain has decoded it.
    pub request: Option<TimeStampReq<'a>>,
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

pub trait PreFilter: Send + Sync {
    fn name(&self) -> &str;
    fn before(&self, _x: &mut Exchange<'_>) -> Result<(), Stop> {
        Ok(())
    }
    /// May change the reply: the audit filter attaches the group-commit wait, or refuses
    /// when the trail cannot take the record.
    fn after(&self, _x: &Exchange<'_>, _reply: &mut Reply) {}
    /// Appends Prometheus text for `GET /metrics` (monitors only).
    fn metrics(&self, _out: &mut String) {}
}

/// `[preprocess.NAME]`: a configured pre-processing filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PreprocessConfig {
    Clock(clock::ClockConfig),
    RateLimit(rate_limit::RateLimitConfig),
    TransactionMonitor(monitor::MonitorConfig),
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

    pub fn is_clock(&self) -> bool {
        matches!(self, PreprocessConfig::Clock(_))
    }

    pub fn is_audit(&self) -> bool {
        matches!(self, PreprocessConfig::Audit(_))
    }

    pub fn is_rate_limit(&self) -> bool {
        matches!(self, PreprocessConfig::RateLimit(_))
    }

    pub fn validate(&self) -> Vec<String> {
        match self {
            PreprocessConfig::Clock(c) => c.validate(),
            PreprocessConfig::RateLimit(c) => c.validate(),
            _ => Vec::new(),
        }
    }
}
