//! `GET /` and `/api/dashboard`: every service, signer, the clock and the audit trail;
//! `/api/live`: the transaction monitors' figures over the last interval (requests/s, p50
//! and p99 latency, rejections by failInfo), which the page refreshes every second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hdrhistogram::Histogram;
use maud::{html, Markup};
use serde::Serialize;

use super::samples::{self, Sample};
use super::view::{self, Area};
use super::{Admin, App, Caller, Need};
use crate::policy::preprocess::monitor::Figures;
use crate::policy::Tsa;
use crate::protocol::cert::CertView;

/// One policy of a service.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    /// `[policy.NAME]`.
    pub name: String,
    /// The OID stamped into tokens.
    pub oid: String,
    /// Accepted imprint hash algorithms.
    pub hash_algorithms: Vec<&'static str>,
    /// Declared accuracy, µs (0: none).
    pub accuracy_us: u64,
    /// Qualified timestamps (ETSI EN 319 422).
    pub qualified: bool,
    /// The service's fallback policy.
    pub fallback: bool,
}

/// One service.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    /// `[[service]] name`.
    pub name: String,
    /// Enabled at run time (disabled: requests are answered 503).
    pub enabled: bool,
    /// `rfc3161` or `authenticode`.
    pub protocol: &'static str,
    /// Where it is served.
    pub urls: Vec<String>,
    /// Its public timestamp pages are on.
    pub public_pages: bool,
    /// It has a transaction monitor (the live figures' source).
    pub monitored: bool,
    /// Its policies, in order.
    pub policies: Vec<PolicyView>,
}

/// One signer.
#[derive(Debug, Serialize)]
pub struct SignerView {
    /// `[signer.NAME]`.
    pub name: String,
    /// `software` or `pkcs11`.
    pub kind: &'static str,
    /// The signature scheme (key type and hash), e.g. `ecdsa-p256-sha256`.
    pub scheme: &'static str,
    /// The key id the audit records name.
    pub key_id: String,
    /// The TSA certificate's subject (RFC 4514).
    pub subject: String,
    /// Its notAfter, RFC 3339.
    pub not_after: String,
    /// Days until then (negative: expired).
    pub days_left: i64,
    /// HSM sessions working (pkcs11 only).
    pub sessions_up: Option<u64>,
    /// HSM sessions in the pool (pkcs11 only).
    pub sessions: Option<u64>,
    /// It can sign now.
    pub ready: bool,
}

/// One time server of the sync monitor.
#[derive(Debug, Serialize)]
pub struct TimeServerView {
    /// Its address as configured.
    pub server: String,
    /// It answered the last poll.
    pub reachable: bool,
    /// Its offset from the local clock, ms.
    pub offset_ms: Option<f64>,
    /// Left out of the quorum as a falseticker.
    pub falseticker: bool,
}

/// The clock.
#[derive(Debug, Serialize)]
pub struct ClockView {
    /// The sync verdict is valid and in sync: tokens can be issued.
    pub in_sync: bool,
    /// The agreed offset of the time sources from the local clock, ms.
    pub offset_ms: Option<f64>,
    /// The error bound around it, ms.
    pub error_bound_ms: Option<f64>,
    /// Seconds since the last in-sync verdict.
    pub last_sync_age_s: Option<f64>,
    /// A leap second is announced.
    pub leap_pending: bool,
    /// Every time server.
    pub servers: Vec<TimeServerView>,
}

/// The PostgreSQL shipper.
#[derive(Debug, Serialize)]
pub struct ShipperView {
    /// PostgreSQL is reachable and the last shipment worked.
    pub up: bool,
    /// Journal frames not yet in PostgreSQL.
    pub lag_frames: u64,
    /// Rows shipped since start.
    pub shipped_rows: u64,
    /// Failed shipments since start.
    pub failures: u64,
}

/// The audit trail.
#[derive(Debug, Serialize)]
pub struct AuditView {
    /// Where the head is, and the journal's shape.
    #[serde(flatten)]
    pub trail: crate::audit::TrailStatus,
    /// Records committed since start.
    pub records_total: u64,
    /// Records waiting for the writer.
    pub queue_depth: u64,
    /// Bytes of the journal's segments.
    pub journal_bytes: Option<u64>,
    /// Free bytes on its filesystem.
    pub disk_free_bytes: Option<u64>,
    /// The disk budget: `ok`, `warning` or `full` (requests refused).
    pub disk_state: Option<&'static str>,
    /// The shipper, when one is configured.
    pub shipper: Option<ShipperView>,
}

/// Everything the dashboard shows (`/api/dashboard`).
#[derive(Debug, Serialize)]
pub struct Dashboard {
    /// `/ready` says 200.
    pub ready: bool,
    /// Why not, when not.
    pub not_ready: Option<String>,
    /// Every service.
    pub services: Vec<ServiceView>,
    /// Every signer in use.
    pub signers: Vec<SignerView>,
    /// The clock.
    pub clock: ClockView,
    /// The audit trail.
    pub audit: AuditView,
}

fn int(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<u64> {
    samples::value(samples, name, with)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v as u64)
}

impl Admin {
    fn dashboard(&self) -> Dashboard {
        let tsa = self.current.load();
        let samples = samples::parse(&self.probe.metrics());
        let ready = self.probe.ready();
        Dashboard {
            ready: ready.is_ok(),
            not_ready: ready.err(),
            services: self.services(&tsa, &samples),
            signers: signers(&tsa, &samples),
            clock: clock(&samples),
            audit: audit(&tsa, &samples),
        }
    }

    fn services(&self, tsa: &Tsa, samples: &[Sample]) -> Vec<ServiceView> {
        tsa.services
            .iter()
            .map(|s| {
                let policy = |p: &crate::policy::Policy, fallback| PolicyView {
                    name: p.name.to_string(),
                    oid: p.oid_text.to_string(),
                    hash_algorithms: p.hash_algorithms.iter().map(|h| h.name()).collect(),
                    accuracy_us: p.template.accuracy_us,
                    qualified: p.template.qualified,
                    fallback,
                };
                ServiceView {
                    name: s.name.clone(),
                    enabled: s.switch.enabled(),
                    protocol: match s.protocol {
                        crate::policy::config::Protocol::Rfc3161 => "rfc3161",
                        crate::policy::config::Protocol::Authenticode => "authenticode",
                    },
                    urls: self
                        .endpoints
                        .iter()
                        .filter(|e| e.service == s.name)
                        .map(|e| e.url.clone())
                        .collect(),
                    public_pages: s.public_pages,
                    // A monitor reports its latency in /metrics (read without taking the
                    // monitors' lock again).
                    monitored: samples.iter().any(|m| {
                        m.name == "stampd_latency_microseconds"
                            && m.label("service") == Some(&s.name)
                    }),
                    policies: s
                        .policies
                        .iter()
                        .map(|p| policy(p, false))
                        .chain(s.fallback.iter().map(|p| policy(p, true)))
                        .collect(),
                }
            })
            .collect()
    }
}

fn signers(tsa: &Tsa, samples: &[Sample]) -> Vec<SignerView> {
    let now = crate::clock::unix_time(crate::clock::wall_now()).map_or(0, |t| t.unix_secs);
    tsa.signers
        .iter()
        .map(|(name, s)| {
            let subject = s
                .chain()
                .first()
                .and_then(|c| CertView::parse(c).ok())
                .map(|c| c.certificate().tbs_certificate.subject.to_string())
                .unwrap_or_default();
            let not_after = s.validity().1;
            let label = [("signer", name.as_str())];
            SignerView {
                name: name.clone(),
                kind: s.kind(),
                scheme: s.template().scheme.name(),
                key_id: s.key_id().to_string(),
                subject,
                not_after: not_after.to_rfc3339(),
                days_left: (not_after.unix_secs - now).div_euclid(86_400),
                sessions_up: int(samples, "stampd_signer_sessions_up", &label),
                sessions: int(samples, "stampd_signer_sessions", &label),
                ready: s.ready(),
            }
        })
        .collect()
}

fn clock(samples: &[Sample]) -> ClockView {
    let v = |name| samples::value(samples, name, &[]);
    let mut servers: Vec<TimeServerView> = Vec::new();
    for s in samples {
        let Some(server) = s.label("server") else {
            continue;
        };
        let i = match servers.iter().position(|v| v.server == server) {
            Some(i) => i,
            None => {
                servers.push(TimeServerView {
                    server: server.to_string(),
                    reachable: false,
                    offset_ms: None,
                    falseticker: false,
                });
                servers.len() - 1
            }
        };
        match s.name.as_str() {
            "stampd_clock_server_reachable" => servers[i].reachable = s.value == 1.0,
            "stampd_clock_server_offset_seconds" => servers[i].offset_ms = Some(s.value * 1e3),
            "stampd_clock_server_falseticker" => servers[i].falseticker = s.value == 1.0,
            _ => {}
        }
    }
    ClockView {
        in_sync: v("stampd_clock_in_sync") == Some(1.0),
        offset_ms: v("stampd_clock_offset_seconds").map(|s| s * 1e3),
        error_bound_ms: v("stampd_clock_error_bound_seconds").map(|s| s * 1e3),
        last_sync_age_s: v("stampd_clock_last_sync_age_seconds").filter(|a| a.is_finite()),
        leap_pending: v("stampd_clock_leap_pending") == Some(1.0),
        servers,
    }
}

fn audit(tsa: &Tsa, samples: &[Sample]) -> AuditView {
    let n = |name| int(samples, name, &[]);
    AuditView {
        trail: tsa.audit.status(),
        records_total: n("stampd_audit_records_total").unwrap_or(0),
        queue_depth: n("stampd_audit_queue_depth").unwrap_or(0),
        journal_bytes: n("stampd_audit_journal_bytes"),
        disk_free_bytes: n("stampd_audit_disk_free_bytes"),
        disk_state: n("stampd_audit_disk_budget_state").map(|s| match s {
            0 => "ok",
            1 => "warning",
            _ => "full",
        }),
        shipper: n("stampd_audit_shipper_up").map(|up| ShipperView {
            up: up == 1,
            lag_frames: n("stampd_audit_shipper_lag_frames").unwrap_or(0),
            shipped_rows: n("stampd_audit_shipped_rows_total").unwrap_or(0),
            failures: n("stampd_audit_shipper_failures_total").unwrap_or(0),
        }),
    }
}

/// One service's live figures.
#[derive(Debug, Clone, Serialize)]
pub struct LiveService {
    /// `[[service]] name`.
    pub service: String,
    /// Requests answered since start.
    pub requests_total: u64,
    /// Tokens issued since start.
    pub granted_total: u64,
    /// Requests per second over the last interval.
    pub requests_per_s: f64,
    /// Median latency over the last interval, µs (`None`: no request in it).
    pub p50_us: Option<u64>,
    /// 99th percentile latency over the last interval, µs.
    pub p99_us: Option<u64>,
    /// Requests not granted since start, by failInfo name or `http_NNN`.
    pub not_granted: BTreeMap<String, u64>,
}

/// `/api/live`.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// Seconds the figures span.
    pub interval_s: f64,
    /// Every service with a transaction monitor.
    pub services: Vec<LiveService>,
    /// The same figures by `SERVICE.rate|p50|p99|total|granted|rejected` (what the page's
    /// `data-live` attributes name).
    pub values: BTreeMap<String, serde_json::Value>,
}

/// The monitors' figures at the last sample, to subtract from the next.
#[derive(Default)]
pub struct Sampler {
    last: Option<(Instant, BTreeMap<String, Figures>)>,
    live: Option<Live>,
}

/// Figures are worked out at most this often; callers in between get the last ones.
const MIN_INTERVAL: Duration = Duration::from_millis(900);

impl Sampler {
    /// The live figures of `tsa` at `now`, over the interval since the previous sample.
    pub fn sample(&mut self, tsa: &Tsa, now: Instant) -> Live {
        if let (Some((at, _)), Some(live)) = (&self.last, &self.live) {
            if now.duration_since(*at) < MIN_INTERVAL {
                return live.clone();
            }
        }
        let current: BTreeMap<String, Figures> = tsa
            .services
            .iter()
            .filter_map(|s| {
                s.preprocess
                    .iter()
                    .find_map(|f| f.figures())
                    .map(|f| (s.name.clone(), f))
            })
            .collect();
        let (since, previous) = match self.last.take() {
            Some((at, prev)) => (now.duration_since(at).as_secs_f64(), prev),
            None => (0.0, BTreeMap::new()),
        };
        let mut services = Vec::new();
        let mut values = BTreeMap::new();
        for (name, f) in &current {
            let total: u64 = f.outcomes.values().sum();
            let granted: u64 = f
                .outcomes
                .iter()
                .filter(|((_, o), _)| o == "granted")
                .map(|(_, n)| n)
                .sum();
            let mut not_granted = BTreeMap::new();
            for ((_, outcome), n) in &f.outcomes {
                if outcome != "granted" {
                    *not_granted.entry(outcome.clone()).or_insert(0) += n;
                }
            }
            let before = previous.get(name);
            let before_total: u64 = before.map_or(0, |b| b.outcomes.values().sum());
            let window = window(&f.latency, before.map(|b| &b.latency));
            let rate = if since > 0.0 {
                total.saturating_sub(before_total) as f64 / since
            } else {
                0.0
            };
            let q = |p| window.as_ref().map(|h| h.value_at_quantile(p));
            let svc = LiveService {
                service: name.clone(),
                requests_total: total,
                granted_total: granted,
                requests_per_s: rate,
                p50_us: q(0.5),
                p99_us: q(0.99),
                not_granted,
            };
            let rejected: u64 = svc.not_granted.values().sum();
            for (k, v) in [
                ("rate", serde_json::json!((rate * 10.0).round() / 10.0)),
                ("total", total.into()),
                ("granted", granted.into()),
                ("rejected", rejected.into()),
                (
                    "p50",
                    svc.p50_us.map_or("–".into(), |v| format!("{v} µs").into()),
                ),
                (
                    "p99",
                    svc.p99_us.map_or("–".into(), |v| format!("{v} µs").into()),
                ),
            ] {
                values.insert(format!("{name}.{k}"), v);
            }
            services.push(svc);
        }
        let live = Live {
            interval_s: since,
            services,
            values,
        };
        self.last = Some((now, current));
        self.live = Some(live.clone());
        live
    }
}

/// The latencies recorded since `before` (`None` when none were).
fn window(now: &Histogram<u64>, before: Option<&Histogram<u64>>) -> Option<Histogram<u64>> {
    let mut h = now.clone();
    if let Some(b) = before {
        if h.subtract(b).is_err() {
            return None;
        }
    }
    (!h.is_empty()).then_some(h)
}

fn yes(b: bool, good: &str, bad: &str) -> Markup {
    html! { span class=(if b { "ok" } else { "bad" }) { (if b { good } else { bad }) } }
}

fn opt<T: std::fmt::Display>(v: &Option<T>, unit: &str) -> String {
    v.as_ref().map_or("–".into(), |v| format!("{v}{unit}"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3} ms"))
}

fn render(d: &Dashboard, caller: &Caller) -> Markup {
    let csrf = view::csrf(caller);
    html! {
        h1 { "Dashboard" }
        @if d.ready {
            p.notice id="readiness" { "Ready: every signer can sign, the clock is in sync and the audit trail takes records." }
        } @else {
            p.error id="readiness" { "Not ready: " (d.not_ready.clone().unwrap_or_default()) }
        }
        section.card id="live" data-live-url="/api/live" {
            h2 { "Live figures " span.note id="live-updated" {} }
            (crate::web::without_script("The figures refresh by themselves with JavaScript; reload the page to refresh them."))
            @for s in d.services.iter().filter(|s| !s.monitored) {
                p.note { "Service " (s.name) " has no live figures: add \"transaction-monitor\" to its preprocess list." }
            }
            @for s in d.services.iter().filter(|s| s.monitored) {
                h3 { (s.name) }
                div.figures {
                    @for (key, label) in [("rate", "requests/s"), ("p50", "p50 latency"), ("p99", "p99 latency"), ("total", "requests since start"), ("granted", "tokens issued"), ("rejected", "not granted")] {
                        div.figure {
                            div.value id={ "live-" (s.name) "-" (key) } data-live={ (s.name) "." (key) } { "–" }
                            div.label { (label) }
                        }
                    }
                }
            }
        }
        section.card id="services" {
            h2 { "Services" }
            table {
                tr { th { "Service" } th { "State" } th { "Served at" } th { "Policies" } th {} }
                @for s in &d.services {
                    tr id={ "service-" (s.name) } {
                        td { (s.name) @if s.protocol == "authenticode" { div.note { "legacy Authenticode" } } }
                        td.state { (yes(s.enabled, "enabled", "disabled")) }
                        td { @for u in &s.urls { div.mono { (u) } } }
                        td {
                            @for p in &s.policies {
                                div {
                                    (p.name) " " span.mono { (p.oid) } " — " (p.hash_algorithms.join(", "))
                                    @if p.accuracy_us > 0 { ", ±" (p.accuracy_us / 1000) " ms" }
                                    @if p.qualified { ", qualified" }
                                    @if p.fallback { " (fallback)" }
                                }
                            }
                        }
                        td {
                            @let action = if s.enabled { "disable" } else { "enable" };
                            form.inline method="post" action={ "/services/" (s.name) "/" (action) } {
                                (csrf)
                                button.(if s.enabled { "danger" } else { "" }) type="submit" id={ (action) "-" (s.name) } {
                                    @if s.enabled { "Disable" } @else { "Enable" }
                                }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action="/reload" {
                (csrf)
                button.quiet type="submit" id="reload" { "Reload the configuration" }
            }
        }
        section.card id="signers" {
            h2 { "Signers" }
            table {
                tr { th { "Signer" } th { "Key" } th { "Certificate" } th { "Sessions" } th { "State" } th {} }
                @for s in &d.signers {
                    tr id={ "signer-" (s.name) } {
                        td { (s.name) }
                        td { (s.kind) ", " (s.scheme) div.note.mono { "key id " (s.key_id) } }
                        td { (s.subject) div.note { "expires " (s.not_after) " (" (s.days_left) " days)" } }
                        td { @if let (Some(up), Some(n)) = (s.sessions_up, s.sessions) { (up) " / " (n) " up" } @else { "–" } }
                        td { (yes(s.ready, "ready", "down")) }
                        td {
                            form.inline method="post" action={ "/signers/" (s.name) "/selftest" } {
                                (csrf)
                                button.quiet type="submit" id={ "selftest-" (s.name) } { "Self-test" }
                            }
                        }
                    }
                }
            }
        }
        section.card id="clock" {
            h2 { "Clock" }
            dl.facts {
                dt { "Sync" } dd id="clock-sync" { (yes(d.clock.in_sync, "in sync", "out of sync: tokens are refused (timeNotAvailable)")) }
                dt { "Offset" } dd { (ms(d.clock.offset_ms)) }
                dt { "Error bound" } dd { (ms(d.clock.error_bound_ms)) }
                dt { "Last in-sync verdict" } dd { (d.clock.last_sync_age_s.map_or("never".into(), |a| format!("{a:.1} s ago"))) }
                dt { "Leap second" } dd { @if d.clock.leap_pending { span.warn { "announced" } } @else { "none announced" } }
            }
            @if !d.clock.servers.is_empty() {
                table {
                    tr { th { "Time server" } th { "Reachable" } th { "Offset" } th { "Quorum" } }
                    @for s in &d.clock.servers {
                        tr { td.mono { (s.server) } td { (yes(s.reachable, "yes", "no")) } td { (ms(s.offset_ms)) } td { @if s.falseticker { span.bad { "falseticker" } } @else { "agrees" } } }
                    }
                }
            }
        }
        section.card id="audit" {
            h2 { "Audit trail" }
            dl.facts {
                dt { "Store" } dd { (d.audit.trail.store) @if let Some(dir) = &d.audit.trail.dir { " — " span.mono { (dir) } } }
                dt { "Size" } dd { (opt(&d.audit.journal_bytes, " bytes")) }
                dt { "Disk budget" } dd { (d.audit.disk_state.unwrap_or("–")) ", " (opt(&d.audit.disk_free_bytes, " bytes free")) }
                dt { "Records since start" } dd { (d.audit.records_total) " (queue " (d.audit.queue_depth) ")" }
                dt { "PostgreSQL" } dd {
                    @match &d.audit.shipper {
                        None => { "not configured" }
                        Some(s) => { (yes(s.up, "reachable", "unreachable")) ", lag " (s.lag_frames) " frames, " (s.shipped_rows) " rows shipped, " (s.failures) " failures" }
                    }
                }
            }
            @if !d.audit.trail.shards.is_empty() {
                table id="audit-shards" {
                    tr { th { "Shard" } th { "Head seq" } th { "Head hash" } th { "Segments" } }
                    @for s in &d.audit.trail.shards {
                        tr { td { (s.shard) } td { (s.head_seq) } td.mono { (s.head_hash) } td { (s.segments) } }
                    }
                }
            }
            form.inline method="post" action="/audit/verify" {
                (csrf)
                button.quiet type="submit" id="verify-journal" { "Verify the journal" }
            }
        }
    }
}

pub async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    // An auditor's start page is the audit browser.
    let caller = match app.caller(&headers) {
        None => return view::redirect("/login"),
        Some(c) if c.role != super::config::Role::Admin => return view::redirect("/audit"),
        Some(c) => c,
    };
    let d = app.dashboard();
    view::html(
        StatusCode::OK,
        view::page(
            Some(&caller),
            Area::Dashboard,
            "Dashboard",
            &["admin.js"],
            render(&d, &caller),
        ),
    )
}

pub async fn json(State(app): State<App>, headers: HeaderMap) -> Response {
    match app.authorize(&headers, Need::Dashboard, true, None) {
        Ok(_) => Json(app.dashboard()).into_response(),
        Err(r) => r,
    }
}

pub async fn live(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = app.authorize(&headers, Need::Dashboard, true, None) {
        return r;
    }
    let tsa = app.current.load();
    let live = app
        .sampler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sample(&tsa, Instant::now());
    Json(live).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{DevPki, KeyType};
    use crate::policy::preprocess::monitor::MonitorConfig;
    use crate::policy::RequestMeta;
    use crate::protocol::{request, HashAlg};
    use crate::signer::software::{RsaPadding, SoftwareSigner};

    #[test]
    fn live_figures_are_rates_and_percentiles_of_the_last_interval() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::in_dir(dir.path());
        pki.create(KeyType::P256).unwrap();
        let now = crate::clock::unix_time(crate::clock::wall_now()).unwrap();
        let signer =
            SoftwareSigner::load("s", &pki.tsa_key, &pki.tsa_cert, RsaPadding::Pkcs1, now).unwrap();
        let mut tsa = Tsa::single("s", std::sync::Arc::new(signer));
        tsa.services[0].preprocess.push(std::sync::Arc::new(
            MonitorConfig::default().build("m", "s"),
        ));
        let good = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
        let meta = RequestMeta::local("/tsa");
        let issue = |n: usize, body: &[u8]| {
            for _ in 0..n {
                tsa.issue(0, body, &meta);
            }
        };
        issue(10, &good);
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        let first = sampler.sample(&tsa, t0);
        assert_eq!(first.services[0].requests_total, 10);
        assert_eq!(first.services[0].requests_per_s, 0.0, "no interval yet");
        issue(20, &good);
        issue(5, b"not DER");
        // Within the minimum interval: the same figures again.
        let again = sampler.sample(&tsa, t0 + Duration::from_millis(100));
        assert_eq!(again.services[0].requests_total, 10);
        let second = sampler.sample(&tsa, t0 + Duration::from_secs(2));
        let s = &second.services[0];
        assert_eq!((s.requests_total, s.granted_total), (35, 30));
        assert_eq!(s.requests_per_s, 12.5);
        assert_eq!(s.not_granted.get("badDataFormat"), Some(&5));
        assert!(s.p50_us.is_some() && s.p99_us >= s.p50_us);
        assert_eq!(second.values["s.total"], 35);
        // Nothing in the next interval: no percentiles, no rate.
        let idle = sampler.sample(&tsa, t0 + Duration::from_secs(4));
        assert_eq!(idle.services[0].requests_per_s, 0.0);
        assert_eq!(idle.services[0].p50_us, None);
    }
}
