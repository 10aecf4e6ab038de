//! The only source of genTime.
//!
//! genTime is read through a [`TimeSource`], which refuses to answer when the time cannot be
//! trusted (ETSI EN 319 421: stop issuing when out of sync). Everything else that needs the
//! wall clock (file names, the development PKI's validity, load-test reports) reads
//! [`wall_now`], which makes no such promise. clippy.toml forbids `SystemTime::now` and
//! `OffsetDateTime::now_utc` everywhere but here.

pub mod chrony;
pub mod config;
pub mod monitor;
pub mod quorum;
pub mod sntp;
pub mod verdict;

use std::time::SystemTime;

use crate::protocol::Timestamp;

/// One trusted reading of the clock: genTime, and the error bound the sync monitor vouches
/// for at that moment (the policy refuses when it exceeds its declared accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The current UTC time, to nanoseconds.
    pub time: Timestamp,
    /// The largest distance of `time` from UTC that the monitor vouches for, µs: the
    /// sources' |offset| + error bound. 0 where nothing is measured (`sync = "none"`, a
    /// fixed test clock).
    pub bound_us: u64,
}

/// Why the trusted time cannot be read. Answered with `timeNotAvailable` (RFC 3161 §2.4.2),
/// never with a wrong time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The source does not know the time within its declared accuracy: the system clock is
    /// before 1970, or a test clock was built without a time.
    #[error("the clock is not synchronised")]
    NotSynchronised,
    /// The sync monitor's verdict is "out of sync": no quorum of time servers agrees, the
    /// offset is beyond `max_offset_ms`, or there has been no verdict yet.
    #[error("the clock is out of sync")]
    OutOfSync,
    /// The monitor has not renewed its verdict in time (stalled or gone): fail closed.
    #[error("the sync verdict has expired (the monitor is not reporting)")]
    Expired,
    /// Inside the window around an announced leap second (`leap_seconds = "pause"`).
    #[error("a leap second is in progress")]
    LeapSecond,
    /// A leap second was announced under `leap_seconds = "stop"`: refused until restart.
    #[error("a leap second was announced and leap_seconds = \"stop\": restart to resume")]
    LeapStop,
    /// The system clock was stepped back: refused until it passes every genTime issued.
    #[error("the system clock was stepped back; waiting until it passes the last genTime")]
    SteppedBack,
}

/// A source of genTime: the time stamped into every token.
///
/// Contract:
/// * **Callers.** The pre-processing clock filter (`policy::preprocess::clock::Clock::before`)
///   reads it once per request, before policy selection; `policy::Tsa::issue` reads
///   `Tsa::clock` itself when a service has no clock filter; the audit filter reads
///   [`SystemClock`] for the time of a record whose request got no reading. One value is
///   shared (`Arc<dyn TimeSource>`) by every core and worker.
/// * **Threads.** `now` is called concurrently from every `stampd-core-N` (inline dispatch)
///   and `stampd-worker-N` (queue dispatch), on the request path, so it must be cheap
///   (a system call, or one atomic read of a published verdict) and must never block: no
///   lock held across I/O, no network round trip. A sync monitor, where there is one, runs
///   on its own thread and publishes a verdict with an expiry; `now` only reads it.
/// * **Errors.** `Err` means "the time cannot be trusted now": the request is answered with
///   a `timeNotAvailable` rejection and no token. An implementation must return `Err` rather
///   than a time it cannot vouch for.
pub trait TimeSource: Send + Sync {
    /// The current UTC time, to nanoseconds (cut to the policy's precision later), with its
    /// error bound, or why it cannot be trusted.
    fn now(&self) -> Result<Reading, ClockError>;
    /// Appends Prometheus text for `GET /metrics` (the sync monitor's figures).
    fn metrics(&self, _out: &mut String) {}
}

/// The operating system's wall-clock time, for everything that is **not** genTime: journal
/// segment and checkpoint times, file ages for retention, the development PKI's validity,
/// certificates made by tests, load-test reports.
///
/// It carries no sync verdict, so it must never be stamped into a token: genTime comes only
/// from a [`TimeSource`]. This is the one place that reads `SystemTime::now` for the crate
/// (clippy.toml's `disallowed-methods` points everything else here).
#[allow(
    clippy::disallowed_methods,
    reason = "the one wall-clock reading, documented as not for genTime"
)]
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// [`wall_now`] as Unix nanoseconds (negative before 1970): the SNTP exchange's local
/// timestamps and the step check's readings, never genTime.
pub fn wall_nanos() -> i128 {
    match wall_now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// `t` as Unix time; `None` before 1970 (a clock set there is certainly not synchronised).
pub fn unix_time(t: SystemTime) -> Option<Timestamp> {
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(Timestamp {
        unix_secs: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    })
}

/// The operating system's real-time clock, trusted as it is, with no sync monitor: for unit
/// tests and for [`crate::policy::Tsa`]s built without a configuration. A served TSA reads
/// [`verdict::TrustedClock`] (even with `sync = "none"`, which still refuses after a step
/// back).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl TimeSource for SystemClock {
    fn now(&self) -> Result<Reading, ClockError> {
        let time = unix_time(wall_now()).ok_or(ClockError::NotSynchronised)?;
        Ok(Reading { time, bound_us: 0 })
    }
}

/// A clock for tests: a fixed time, or no time at all (`FixedClock(None)` answers every
/// request with `timeNotAvailable`).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Option<Timestamp>);

impl TimeSource for FixedClock {
    fn now(&self) -> Result<Reading, ClockError> {
        self.0
            .map(|time| Reading { time, bound_us: 0 })
            .ok_or(ClockError::NotSynchronised)
    }
}
