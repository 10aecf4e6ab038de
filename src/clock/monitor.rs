//! The sync monitor: one thread per process (`stampd-clock`) that polls the configured
//! source every `poll_interval_ms`, decides whether the clock is within `max_offset_ms` of
//! UTC, publishes the [`Verdict`] with an expiry, and reports every change of state as an
//! [`Event`] (audited by the caller, and logged here): ETSI EN 319 421 asks a TSA to stop
//! issuing when its clock is out of sync and to record every synchronisation event.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::config::{ClockConfig, LeapMode, SyncKind};
use super::quorum::{self, Answer, Decision};
use super::sntp::{self, Polled, Server};
use super::verdict::{OutReason, Publish, TrustedClock, Verdict};
use super::{chrony, ClockError, Reading, TimeSource};
use crate::protocol::sntp::Leap;

/// RFC 5905 PHI: the frequency tolerance a disciplined clock is assumed to keep, 15 ppm.
/// The published bound grows by PHI × the verdict's lifetime, so it still holds when the
/// verdict is read just before it expires.
const PHI_PPM: u64 = 15;
/// Events kept for the audit trail while it cannot take them.
const MAX_PENDING_EVENTS: usize = 1024;

/// The monitor's view of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Before the first poll.
    Unknown,
    /// Within `warn_offset_ms`.
    InSync,
    /// Beyond `warn_offset_ms`, within `max_offset_ms`: still stamping.
    Warning,
    /// Beyond `max_offset_ms`, no quorum, or stopped for a leap second.
    OutOfSync,
}

/// One server's part in the last poll.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStatus {
    /// As configured.
    pub server: String,
    /// Server minus local, ms, when it answered.
    pub offset_ms: Option<f64>,
    /// Round-trip delay, ms.
    pub delay_ms: Option<f64>,
    /// Its interval's half-width (delay/2 + root delay/2 + root dispersion), ms.
    pub bound_ms: Option<f64>,
    /// Its stratum.
    pub stratum: Option<u8>,
    /// Its leap indicator.
    pub leap: Leap,
    /// Why its reply was not usable.
    pub error: Option<String>,
    /// It answered but disagrees with the majority.
    pub falseticker: bool,
}

/// The result of the last poll: `stampd clock status`, `/metrics`, the events' detail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// `sntp`, `kernel` or `none`.
    pub sync: &'static str,
    /// The verdict.
    pub state: State,
    /// Why out of sync (or why in warning).
    pub reason: Option<String>,
    /// The agreed offset (server minus local), ms.
    pub offset_ms: f64,
    /// The error bound around it, ms.
    pub bound_ms: f64,
    /// `max_offset_ms` from the configuration.
    pub max_offset_ms: u64,
    /// A leap second the sources announce.
    pub leap: Leap,
    /// Per server (`sntp`), or the one chrony reference (`kernel`).
    pub servers: Vec<ServerStatus>,
    #[serde(skip)]
    last_sync: Option<Instant>,
}

impl Status {
    fn new(sync: &'static str, max_offset_ms: u64) -> Self {
        Status {
            sync,
            state: State::Unknown,
            reason: Some("no poll yet".into()),
            offset_ms: 0.0,
            bound_ms: 0.0,
            max_offset_ms,
            leap: Leap::None,
            servers: Vec::new(),
            last_sync: None,
        }
    }

    /// In sync or in warning: tokens are issued.
    pub fn in_sync(&self) -> bool {
        matches!(self.state, State::InSync | State::Warning)
    }
}

/// One synchronisation event, for the audit trail and the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened (the system time; it is what the event may be about).
    pub time: std::time::SystemTime,
    /// `monitor-started`, `in-sync`, `warning`, `out-of-sync`, `back-in-sync`,
    /// `falseticker`, `falseticker-cleared`, `leap-announced`, `clock-stepped`,
    /// `monitor-stalled`.
    pub name: &'static str,
    /// One line for people.
    pub message: String,
    /// The poll's status and what is particular to the event, as JSON.
    pub detail: serde_json::Value,
}

/// What the audit trail did with an event.
pub enum Taken {
    /// Recorded (or, without a trail, dropped by design).
    Done,
    /// Queued: fires `true` once committed, `false` (or is dropped) when its batch failed;
    /// the monitor then offers the event again.
    Queued(futures_channel::oneshot::Receiver<bool>),
    /// Not taken now (queue full, trail stopping): offered again at the next poll.
    Refused,
}

/// Takes an event for the audit trail.
pub type EventSink = Box<dyn FnMut(&Event) -> Taken + Send>;

enum Source {
    Sntp(Vec<Server>),
    Chrony(std::path::PathBuf),
    Local,
}

/// `max_offset_ms` and `warn_offset_ms`, which a reload may change: the monitor reads them
/// at every poll, so new thresholds hold from the next poll on.
#[derive(Debug)]
pub struct Thresholds {
    max_offset_ms: AtomicU64,
    warn_offset_ms: AtomicU64,
}

impl Thresholds {
    /// `(max_offset_ms, warn_offset_ms)`.
    pub fn get(&self) -> (u64, u64) {
        (
            self.max_offset_ms.load(Ordering::Relaxed),
            self.warn_offset_ms.load(Ordering::Relaxed),
        )
    }

    /// New thresholds (validated: warn at most max).
    pub fn set(&self, max_offset_ms: u64, warn_offset_ms: u64) {
        self.max_offset_ms.store(max_offset_ms, Ordering::Relaxed);
        self.warn_offset_ms.store(warn_offset_ms, Ordering::Relaxed);
    }
}

/// The monitor: create it, [`Monitor::poll`] once at start (so a server with good sources
/// is in sync from its first request), then [`Monitor::spawn`] it.
pub struct Monitor {
    config: ClockConfig,
    thresholds: Arc<Thresholds>,
    source: Source,
    verdict: Arc<Verdict>,
    status: Arc<Mutex<Status>>,
    events: EventSink,
    pending: VecDeque<Event>,
    /// Events handed to the trail, waiting for their commit, in order.
    in_flight: VecDeque<(Event, futures_channel::oneshot::Receiver<bool>)>,
    /// The announced leap second's instant (Unix second), kept until it has passed, so the
    /// window's second after stays refused when the servers stop announcing at midnight.
    leap_at: Option<i64>,
    expires_ms: u64,
    stopped_for_leap: bool,
}

/// The [`TimeSource`] of a served TSA: the published verdict, plus the monitor's figures
/// for `/metrics`.
#[derive(Clone)]
pub struct MonitoredClock {
    trusted: TrustedClock,
    status: Arc<Mutex<Status>>,
}

impl Monitor {
    /// A monitor for `config` (validated), reporting events to `events`.
    pub fn new(config: &ClockConfig, events: EventSink) -> Self {
        let source = match config.sync {
            SyncKind::Sntp => Source::Sntp(config.servers.iter().map(|s| Server::new(s)).collect()),
            SyncKind::Kernel => Source::Chrony(config.chronyc.clone()),
            SyncKind::None => Source::Local,
        };
        Monitor {
            config: config.clone(),
            thresholds: Arc::new(Thresholds {
                max_offset_ms: AtomicU64::new(config.max_offset_ms),
                warn_offset_ms: AtomicU64::new(config.warn_offset_ms),
            }),
            source,
            verdict: Arc::new(Verdict::new()),
            status: Arc::new(Mutex::new(Status::new(
                config.sync_name(),
                config.max_offset_ms,
            ))),
            events,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            leap_at: None,
            expires_ms: 0,
            stopped_for_leap: false,
        }
    }

    /// Logs the configuration's warnings (loudly for `sync = "none"`) and records that the
    /// monitor started, with its sources and thresholds: the first event of a served TSA.
    pub fn announce(&mut self) {
        for w in self.config.warnings() {
            tracing::warn!("{w}");
        }
        let c = &self.config;
        let started = Event {
            time: super::wall_now(),
            name: "monitor-started",
            message: format!("clock monitor started (sync = \"{}\")", c.sync_name()),
            detail: json!({
                "sync": c.sync_name(),
                "servers": c.servers,
                "max_offset_ms": c.max_offset_ms,
                "warn_offset_ms": c.warn_offset_ms,
                "poll_interval_ms": c.poll_interval_ms,
                "leap_seconds": c.leap_seconds,
            }),
        };
        self.emit(started);
    }

    /// The thresholds the monitor reads at every poll (a reload sets them).
    pub fn thresholds(&self) -> Arc<Thresholds> {
        self.thresholds.clone()
    }

    /// The served clock: the published verdict and the status behind `/metrics`.
    pub fn clock(&self) -> MonitoredClock {
        MonitoredClock {
            trusted: TrustedClock(self.verdict.clone()),
            status: self.status.clone(),
        }
    }

    /// One poll: measure, decide, publish, report. Returns the new status.
    pub fn poll(&mut self) -> Status {
        let before = self.status.lock().map(|s| s.clone()).ok();
        if let Some(step) = self.verdict.track_steps() {
            self.emit(Event {
                time: super::wall_now(),
                name: "clock-stepped",
                message: format!(
                    "the system clock was stepped {} by {:.3} ms{}",
                    if step < 0 { "back" } else { "forward" },
                    step.unsigned_abs() as f64 / 1e6,
                    if step < 0 {
                        "; refusing until it passes the last genTime"
                    } else {
                        ""
                    }
                ),
                detail: json!({ "step_ns": step }),
            });
        }
        self.verdict.release_hold();
        let (decision, servers) = self.query();
        // Checked after the query, before the new verdict: a verdict that expired at any
        // time since the last poll, the query included (a slow DNS lookup or chronyc).
        if self.expires_ms != 0 && self.verdict.mono_ms() >= self.expires_ms {
            self.emit(Event {
                time: super::wall_now(),
                name: "monitor-stalled",
                message: "the sync verdict expired before the monitor renewed it: stamping \
                          was refused meanwhile"
                    .into(),
                detail: json!({ "expired_ms_ago": self.verdict.mono_ms() - self.expires_ms }),
            });
        }
        let status = self.judge(decision, servers);
        if let Some(before) = before {
            self.report(&before, &status);
        }
        self.flush_events();
        if let Ok(mut s) = self.status.lock() {
            *s = status.clone();
        }
        status
    }

    /// Queries the source once, decides and publishes, without reporting events:
    /// `stampd clock status`, and the body of [`Monitor::poll`].
    pub fn measure(&mut self) -> Status {
        let (decision, servers) = self.query();
        self.judge(decision, servers)
    }

    /// One query of the source and its decision.
    fn query(&mut self) -> (Decision, Vec<ServerStatus>) {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match &mut self.source {
            Source::Sntp(list) => {
                let polled = sntp::poll(list, timeout);
                let answers: Vec<Answer> = polled.iter().map(|p| p.answer.clone()).collect();
                let d = quorum::decide(&answers);
                let servers = server_statuses(list, &polled, &d);
                (d, servers)
            }
            Source::Chrony(path) => chrony_decision(&chrony::tracking(path, timeout)),
            Source::Local => (Decision::single(), Vec::new()),
        }
    }

    /// Turns a decision into the published verdict and the status.
    fn judge(&mut self, d: Decision, servers: Vec<ServerStatus>) -> Status {
        let c = &self.config;
        let lifetime_ms = c.expiry_ms();
        // The bound must hold until the verdict expires: add the drift a disciplined clock
        // may gather meanwhile.
        let drift_ns = match self.source {
            Source::Local => 0,
            _ => lifetime_ms * 1_000_000 * PHI_PPM / 1_000_000,
        };
        let distance_ns = d.distance_ns().saturating_add(drift_ns);
        let (max_offset_ms, warn_offset_ms) = self.thresholds.get();
        let mut status = Status::new(c.sync_name(), max_offset_ms);
        status.offset_ms = d.offset_ns as f64 / 1e6;
        status.bound_ms = (d.bound_ns + drift_ns) as f64 / 1e6;
        status.leap = d.leap;
        status.servers = servers;
        if d.no_quorum.is_some() {
            // Without a majority nobody can be called false: keep the last poll's view, so
            // a falseticker is not reported again when the quorum returns.
            if let Ok(last) = self.status.lock() {
                for s in &mut status.servers {
                    s.falseticker = last
                        .servers
                        .iter()
                        .any(|l| l.server == s.server && l.falseticker);
                }
            }
        }
        if d.leap != Leap::None && c.leap_seconds == LeapMode::Stop {
            self.stopped_for_leap = true;
        }
        let (state, reason) = if self.stopped_for_leap {
            (
                State::OutOfSync,
                Some(
                    "a leap second was announced and leap_seconds = \"stop\": restart to resume"
                        .into(),
                ),
            )
        } else if let Some(why) = d.no_quorum {
            (State::OutOfSync, Some(why))
        } else if distance_ns > max_offset_ms * 1_000_000 {
            (
                State::OutOfSync,
                Some(format!(
                    "|offset| + error bound is {:.3} ms, beyond max_offset_ms = {max_offset_ms}",
                    distance_ns as f64 / 1e6,
                )),
            )
        } else if distance_ns > warn_offset_ms * 1_000_000 {
            (
                State::Warning,
                Some(format!(
                    "|offset| + error bound is {:.3} ms, beyond warn_offset_ms = {warn_offset_ms}",
                    distance_ns as f64 / 1e6,
                )),
            )
        } else {
            (State::InSync, None)
        };
        status.state = state;
        status.reason = reason;
        let now_secs = super::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // Kept until the window's last second has passed, whatever the servers say after
        // midnight.
        if self.leap_at.is_some_and(|at| now_secs > at) {
            self.leap_at = None;
        }
        if d.leap != Leap::None && c.leap_seconds == LeapMode::Pause && self.leap_at.is_none() {
            self.leap_at = Some(end_of_month(super::wall_now()));
        }
        let leap_at = self.leap_at;
        if status.in_sync() {
            status.last_sync = Some(Instant::now());
            self.expires_ms = self.verdict.mono_ms() + lifetime_ms;
            self.verdict.publish(Publish {
                bound_us: Some(distance_ns / 1_000),
                expires_ms: self.expires_ms,
                leap_at,
                reason: OutReason::OutOfSync,
            });
        } else {
            status.last_sync = self.status.lock().ok().and_then(|s| s.last_sync);
            self.expires_ms = 0;
            self.verdict.publish(Publish {
                bound_us: None,
                expires_ms: 0,
                leap_at: None,
                reason: if self.stopped_for_leap {
                    OutReason::LeapStop
                } else {
                    OutReason::OutOfSync
                },
            });
        }
        status
    }

    /// The events between two statuses.
    fn report(&mut self, before: &Status, now: &Status) {
        let detail = serde_json::to_value(now).unwrap_or_default();
        if before.state != now.state {
            let name = match (before.state, now.state) {
                (_, State::Warning) => "warning",
                (_, State::OutOfSync) => "out-of-sync",
                (State::OutOfSync, State::InSync) => "back-in-sync",
                _ => "in-sync",
            };
            let message = match &now.reason {
                Some(why) => format!("clock {name}: {why}"),
                None => format!(
                    "clock {name}: offset {:.3} ms ± {:.3} ms",
                    now.offset_ms, now.bound_ms
                ),
            };
            self.emit(Event {
                time: super::wall_now(),
                name,
                message,
                detail: detail.clone(),
            });
        }
        for s in &now.servers {
            let was = before
                .servers
                .iter()
                .find(|b| b.server == s.server)
                .is_some_and(|b| b.falseticker);
            if s.falseticker != was {
                let (name, what) = if s.falseticker {
                    ("falseticker", "disagrees with the majority; left out")
                } else {
                    ("falseticker-cleared", "agrees with the majority again")
                };
                self.emit(Event {
                    time: super::wall_now(),
                    name,
                    message: format!(
                        "time server {} {what} (offset {} ms)",
                        s.server,
                        s.offset_ms.map_or("?".into(), |o| format!("{o:.3}"))
                    ),
                    detail: json!({ "server": s.server, "status": detail }),
                });
            }
        }
        if now.leap != Leap::None && before.leap == Leap::None {
            self.emit(Event {
                time: super::wall_now(),
                name: "leap-announced",
                message: format!(
                    "a leap second ({:?}) is announced for the end of the month; leap_seconds = \"{}\"",
                    now.leap,
                    serde_json::to_value(self.config.leap_seconds)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                detail: detail.clone(),
            });
        }
    }

    /// Logs `e` and hands it to the audit trail (queued when the trail cannot take it).
    fn emit(&mut self, e: Event) {
        let good = matches!(
            e.name,
            "in-sync" | "back-in-sync" | "falseticker-cleared" | "monitor-started"
        );
        if good {
            tracing::info!(event = e.name, "{}", e.message);
        } else {
            tracing::warn!(event = e.name, "{}", e.message);
        }
        if self.pending.len() == MAX_PENDING_EVENTS {
            tracing::error!(
                "the audit trail has not taken clock events for a long time; dropping the oldest"
            );
            self.pending.pop_front();
        }
        self.pending.push_back(e);
        self.flush_events();
    }

    /// Settles the events in flight (a failed commit puts its event back in line) and offers
    /// the waiting ones.
    fn flush_events(&mut self) {
        let mut failed = Vec::new();
        while let Some((_, rx)) = self.in_flight.front_mut() {
            match rx.try_recv() {
                Ok(None) => break, // not committed yet; later ones wait behind it
                Ok(Some(true)) => {}
                Ok(Some(false)) | Err(_) => {
                    tracing::warn!("a clock event's audit batch failed; offering it again");
                    if let Some((e, _)) = self.in_flight.front() {
                        failed.push(e.clone());
                    }
                }
            }
            self.in_flight.pop_front();
        }
        for e in failed.into_iter().rev() {
            self.pending.push_front(e);
        }
        while let Some(e) = self.pending.front() {
            match (self.events)(e) {
                Taken::Done => {}
                Taken::Queued(rx) => {
                    if let Some(e) = self.pending.front() {
                        self.in_flight.push_back((e.clone(), rx));
                    }
                }
                Taken::Refused => break,
            }
            self.pending.pop_front();
        }
    }

    /// Runs the monitor on its own thread, one poll per `poll_interval_ms`.
    pub fn spawn(mut self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let interval = Duration::from_millis(self.config.poll_interval_ms);
        std::thread::Builder::new()
            .name("stampd-clock".into())
            .spawn(move || loop {
                let started = Instant::now();
                self.poll();
                std::thread::sleep(interval.saturating_sub(started.elapsed()));
            })
    }
}

fn server_statuses(list: &[Server], polled: &[Polled], d: &Decision) -> Vec<ServerStatus> {
    list.iter()
        .zip(polled)
        .enumerate()
        .map(|(i, (s, p))| {
            let sample = p.answer.sample.as_ref().ok();
            ServerStatus {
                server: s.name.clone(),
                offset_ms: sample.map(|x| x.offset_ns as f64 / 1e6),
                delay_ms: sample.map(|x| x.delay_ns as f64 / 1e6),
                bound_ms: sample.map(|x| x.bound_ns as f64 / 1e6),
                stratum: p.stratum,
                leap: p.answer.leap,
                error: p.answer.sample.as_ref().err().cloned(),
                falseticker: d.falsetickers.contains(&i),
            }
        })
        .collect()
}

fn chrony_decision(t: &Result<chrony::Tracking, String>) -> (Decision, Vec<ServerStatus>) {
    let mut d = Decision::single();
    let server = match t {
        Ok(t) => {
            if t.unsynchronised {
                d.no_quorum = Some("chronyd reports the clock as not synchronised".into());
            } else {
                d.offset_ns = t.offset_ns;
                d.bound_ns = t.bound_ns;
                d.leap = t.leap;
            }
            ServerStatus {
                server: t.reference.clone(),
                offset_ms: Some(t.offset_ns as f64 / 1e6),
                delay_ms: None,
                bound_ms: Some(t.bound_ns as f64 / 1e6),
                stratum: Some(t.stratum),
                leap: t.leap,
                error: None,
                falseticker: false,
            }
        }
        Err(e) => {
            d.no_quorum = Some(e.clone());
            ServerStatus {
                server: "chronyd".into(),
                offset_ms: None,
                delay_ms: None,
                bound_ms: None,
                stratum: None,
                leap: Leap::None,
                error: Some(e.clone()),
                falseticker: false,
            }
        }
    };
    (d, vec![server])
}

/// The Unix second that starts the next UTC month: when a leap second announced now takes
/// effect (RFC 5905 §7.3: "the last minute of the current month").
pub fn end_of_month(now: std::time::SystemTime) -> i64 {
    let t = time::OffsetDateTime::from(now);
    let (year, month) = match t.month() {
        time::Month::December => (t.year() + 1, time::Month::January),
        m => (t.year(), m.next()),
    };
    time::Date::from_calendar_date(year, month, 1)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .unwrap_or(i64::MAX)
}

impl TimeSource for MonitoredClock {
    fn now(&self) -> Result<Reading, ClockError> {
        self.trusted.now()
    }

    fn metrics(&self, out: &mut String) {
        let Ok(s) = self.status.lock().map(|s| s.clone()) else {
            return;
        };
        let live = !matches!(
            self.trusted.now(),
            Err(ClockError::OutOfSync | ClockError::Expired | ClockError::LeapStop)
        );
        let _ = writeln!(
            out,
            "# HELP stampd_clock_in_sync 1 while the sync verdict is valid and in sync.\n\
             # TYPE stampd_clock_in_sync gauge\nstampd_clock_in_sync {}",
            u8::from(live && s.in_sync())
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            out,
            "stampd_clock_offset_seconds",
            "Agreed offset of the time sources from the local clock.",
            s.offset_ms / 1e3,
        );
        gauge(
            out,
            "stampd_clock_error_bound_seconds",
            "Error bound around the offset.",
            s.bound_ms / 1e3,
        );
        let age = s
            .last_sync
            .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
        gauge(
            out,
            "stampd_clock_last_sync_age_seconds",
            "Time since the last in-sync verdict.",
            age,
        );
        gauge(
            out,
            "stampd_clock_leap_pending",
            "1 while a leap second is announced.",
            f64::from(u8::from(s.leap != Leap::None)),
        );
        if s.servers.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP stampd_clock_server_offset_seconds Offset of each time server from the local clock.\n\
             # TYPE stampd_clock_server_offset_seconds gauge"
        );
        for v in &s.servers {
            if let Some(o) = v.offset_ms {
                let _ = writeln!(
                    out,
                    "stampd_clock_server_offset_seconds{{server=\"{}\"}} {}",
                    v.server,
                    o / 1e3
                );
            }
        }
        for (name, help, f) in [
            (
                "stampd_clock_server_reachable",
                "1 when the server's last reply was usable.",
                (|v: &ServerStatus| v.error.is_none()) as fn(&ServerStatus) -> bool,
            ),
            (
                "stampd_clock_server_falseticker",
                "1 when the server disagrees with the majority.",
                |v: &ServerStatus| v.falseticker,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for v in &s.servers {
                let _ = writeln!(out, "{name}{{server=\"{}\"}} {}", v.server, u8::from(f(v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_seconds_take_effect_at_the_start_of_the_next_month() {
        let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        // 2016-12-31T12:00:00Z → 2017-01-01T00:00:00Z.
        assert_eq!(end_of_month(at(1_483_185_600)), 1_483_228_800);
        // 2015-06-30T23:59:59Z → 2015-07-01T00:00:00Z.
        assert_eq!(end_of_month(at(1_435_708_799)), 1_435_708_800);
    }

    fn events() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            Box::new(move |e: &Event| {
                s.lock().unwrap().push(e.clone());
                Taken::Done
            }),
            seen,
        )
    }

    #[test]
    fn sync_none_is_in_sync_and_says_so_once() {
        let (sink, seen) = events();
        let mut m = Monitor::new(&ClockConfig::default(), sink);
        m.announce();
        let clock = m.clock();
        assert_eq!(clock.now(), Err(ClockError::OutOfSync));
        assert_eq!(m.poll().state, State::InSync);
        assert!(clock.now().is_ok());
        m.poll();
        let names: Vec<_> = seen.lock().unwrap().iter().map(|e| e.name).collect();
        assert_eq!(names, ["monitor-started", "in-sync"]);
        let mut text = String::new();
        clock.metrics(&mut text);
        assert!(text.contains("stampd_clock_in_sync 1"), "{text}");
    }

    #[test]
    fn an_event_whose_batch_failed_is_offered_again_in_order() {
        type Offer = (&'static str, futures_channel::oneshot::Sender<bool>);
        let offers: Arc<Mutex<Vec<Offer>>> = Arc::default();
        let o = offers.clone();
        let sink: EventSink = Box::new(move |e: &Event| {
            let (tx, rx) = futures_channel::oneshot::channel();
            o.lock().unwrap().push((e.name, tx));
            Taken::Queued(rx)
        });
        let mut m = Monitor::new(&ClockConfig::default(), sink);
        m.announce();
        // The batch holding monitor-started fails.
        let (name, tx) = offers.lock().unwrap().pop().unwrap();
        assert_eq!(name, "monitor-started");
        tx.send(false).unwrap();
        m.poll();
        let names: Vec<_> = offers.lock().unwrap().iter().map(|o| o.0).collect();
        assert_eq!(names, ["monitor-started", "in-sync"]);
        // Committed ones are settled and not offered again.
        for (_, tx) in offers.lock().unwrap().drain(..) {
            tx.send(true).unwrap();
        }
        m.poll();
        assert!(offers.lock().unwrap().is_empty());
        assert!(m.in_flight.is_empty() && m.pending.is_empty());
    }

    #[test]
    fn a_chronyc_that_fails_puts_the_clock_out_of_sync_and_events_wait_for_the_trail() {
        let config = ClockConfig {
            sync: SyncKind::Kernel,
            chronyc: "/nonexistent/chronyc".into(),
            ..ClockConfig::default()
        };
        let taken = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t, o) = (taken.clone(), open.clone());
        let sink: EventSink = Box::new(move |e: &Event| {
            if o.load(std::sync::atomic::Ordering::Relaxed) {
                t.lock().unwrap().push(e.name);
                Taken::Done
            } else {
                Taken::Refused
            }
        });
        let mut m = Monitor::new(&config, sink);
        m.announce();
        let s = m.poll();
        assert_eq!(s.state, State::OutOfSync);
        assert!(s.reason.unwrap().starts_with("cannot run"));
        assert_eq!(m.clock().now(), Err(ClockError::OutOfSync));
        assert!(taken.lock().unwrap().is_empty());
        // The trail takes them again: nothing was lost, order kept.
        open.store(true, std::sync::atomic::Ordering::Relaxed);
        m.poll();
        assert_eq!(*taken.lock().unwrap(), ["monitor-started", "out-of-sync"]);
    }
}
