//! The only source of genTime.

use crate::protocol::Timestamp;

/// Why the trusted time cannot be read. Answered with `timeNotAvailable` (RFC 3161 §2.4.2),
/// never with a wrong time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("the clock is not synchronised")]
    NotSynchronised,
}

pub trait TimeSource: Send + Sync {
    fn now(&self) -> Result<Timestamp, ClockError>;
}

/// The operating system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl TimeSource for SystemClock {
    fn now(&self) -> Result<Timestamp, ClockError> {
        // A system clock set before 1970 is certainly not synchronised.
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ClockError::NotSynchronised)?;
        Ok(Timestamp {
            unix_secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        })
    }
}

/// A clock for tests: a fixed time, or no time at all.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Option<Timestamp>);

impl TimeSource for FixedClock {
    fn now(&self) -> Result<Timestamp, ClockError> {
        self.0.ok_or(ClockError::NotSynchronised)
    }
}
