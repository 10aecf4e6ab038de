//! `kind = "transaction-monitor"`: per-service and per-policy counters and an HdrHistogram
//! of latency (µs, from the first pre-processing filter to the reply), served as Prometheus
//! text at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::super::Reply;
use super::{Exchange, PreFilter};
use crate::outcome::Outcome;

/// `[preprocess.NAME]` with `kind = "transaction-monitor"`: no options yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {}

impl MonitorConfig {
    /// The monitor `name` of service `service` (both become metric labels), with empty
    /// counters.
    pub fn build(&self, name: &str, service: &str) -> Monitor {
        Monitor {
            name: name.to_string(),
            service: service.to_string(),
            stats: Mutex::new(Stats {
                outcomes: BTreeMap::new(),
                // 1 µs .. 60 s, 3 significant digits.
                latency: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            }),
        }
    }
}

struct Stats {
    /// (policy or "-", outcome) → count; outcome is "granted", a failInfo name, or "http_NNN".
    outcomes: BTreeMap<(String, String), u64>,
    latency: Option<Histogram<u64>>,
}

/// Prometheus label values: backslash, double quote and newline are escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A transaction monitor: counts each request by (policy, outcome) and records its latency
/// in µs (1 µs to 60 s, 3 significant digits), behind one mutex taken once per request.
pub struct Monitor {
    name: String,
    service: String,
    stats: Mutex<Stats>,
}

/// A monitor's counters and latency histogram at one moment (for the admin dashboard,
/// which subtracts two of them for its live figures).
#[derive(Debug, Clone)]
pub struct Figures {
    /// The service the monitor watches.
    pub service: String,
    /// (policy or "-", outcome) → count; outcome is "granted", a failInfo name, or "http_NNN".
    pub outcomes: BTreeMap<(String, String), u64>,
    /// Latency of every request recorded, µs.
    pub latency: Histogram<u64>,
}

/// A point-in-time copy of a monitor's figures.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    /// (policy or "-", outcome) → count, as in `Stats`.
    outcomes: BTreeMap<(String, String), u64>,
    /// Requests recorded.
    count: u64,
    /// Median latency, µs.
    p50_us: u64,
    /// 99th percentile latency, µs.
    p99_us: u64,
    /// Highest latency, µs.
    max_us: u64,
}

impl Monitor {
    fn snapshot(&self) -> Option<Snapshot> {
        let s = self.stats.lock().ok()?;
        let h = s.latency.as_ref()?;
        Some(Snapshot {
            outcomes: s.outcomes.clone(),
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
    }
}

impl PreFilter for Monitor {
    fn name(&self) -> &str {
        &self.name
    }

    fn after(&self, x: &Exchange<'_>, reply: &mut Reply) {
        let outcome = match &reply.outcome {
            Outcome::Granted { .. } => "granted".to_string(),
            Outcome::Rejected(f) => f.name().to_string(),
            Outcome::Refused(code) => format!("http_{code}"),
        };
        let policy = x.policy.map_or("-", |p| &p.name).to_string();
        let us = u64::try_from(x.started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut s) = self.stats.lock() {
            *s.outcomes.entry((policy, outcome)).or_default() += 1;
            if let Some(h) = s.latency.as_mut() {
                h.saturating_record(us);
            }
        }
    }

    fn figures(&self) -> Option<Figures> {
        let s = self.stats.lock().ok()?;
        Some(Figures {
            service: self.service.clone(),
            outcomes: s.outcomes.clone(),
            latency: s.latency.clone()?,
        })
    }

    fn metrics(&self, out: &mut String) {
        let Some(s) = self.snapshot() else { return };
        let svc = format!(
            "{}\",monitor=\"{}",
            escape(&self.service),
            escape(&self.name)
        );
        let svc = &svc;
        for ((policy, outcome), n) in &s.outcomes {
            let _ = writeln!(
                out,
                "stampd_requests_total{{service=\"{svc}\",policy=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(policy)
            );
        }
        for (q, v) in [("0.5", s.p50_us), ("0.99", s.p99_us), ("1", s.max_us)] {
            let _ = writeln!(
                out,
                "stampd_latency_microseconds{{service=\"{svc}\",quantile=\"{q}\"}} {v}"
            );
        }
    }
}
