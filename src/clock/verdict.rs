//! The published sync verdict and [`TrustedClock`], the [`TimeSource`] that reads it.
//!
//! The monitor thread publishes; every request reads. The request path costs one load of
//! the verdict word and one of the clock's step base (two words on one cache line that only
//! the monitor writes, about once per poll), the two system clock readings (vDSO), and a
//! few comparisons: no lock, no shared write.
//!
//! The verdict word packs: `expires` (bits 0–37, in 4 ms ticks of the monotonic clock since
//! the verdict was created: 35 years; 0 = out of sync), `bound_us` (bits 38–61: the error
//! bound in µs, saturating at 16.7 s, beyond any `max_offset_ms` the config accepts), the
//! hold flag (62) and the leap flag (63). Fail closed: a monitor that stops publishing lets
//! the verdict expire, and stamping stops (ETSI EN 319 421: a TSU stops issuing when it
//! cannot vouch for its clock).
//!
//! **genTime never goes backwards.** CLOCK_REALTIME minus CLOCK_MONOTONIC changes only when
//! the real-time clock is stepped (NTP slewing moves both alike), so a request reading a
//! difference below the published one (`base`) knows the clock stepped back and refuses. The
//! monitor, at its next poll, records the new base and a *hold*: the wall time the old
//! timeline has reached by then, an upper bound of every genTime issued before the step;
//! requests are refused until the clock passes it. Refusing, not clamping: a clamped genTime
//! would be a time the clock never showed.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use super::{ClockError, Reading, TimeSource};
use crate::protocol::Timestamp;

const EXPIRES_BITS: u32 = 38;
const EXPIRES_MASK: u64 = (1 << EXPIRES_BITS) - 1;
const BOUND_SHIFT: u32 = EXPIRES_BITS;
const BOUND_MASK: u64 = (1 << 24) - 1;
const HOLD: u64 = 1 << 62;
const LEAP: u64 = 1 << 63;
/// Milliseconds per expiry tick.
const TICK_MS: u64 = 4;
/// A step back smaller than this is reading jitter between the two clocks, not a step.
pub const STEP_TOLERANCE_NS: i64 = 100_000;
/// The largest error bound the verdict can carry, µs.
pub const MAX_BOUND_US: u64 = BOUND_MASK;

/// Why the last verdict was "out of sync" (kept beside the word, read only on refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OutReason {
    /// No verdict yet, or the sources disagree, are unreachable or too far off.
    OutOfSync = 0,
    /// A leap second was announced under `leap_seconds = "stop"`.
    LeapStop = 1,
}

/// The verdict as the monitor publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// In sync, with this error bound (µs): the distance of the local clock from UTC is at
    /// most |offset| + bound. `None`: out of sync.
    pub bound_us: Option<u64>,
    /// Valid until this much monotonic time (ms since the verdict was created) has passed.
    pub expires_ms: u64,
    /// A leap second at this Unix second (the first second of the next month), handled by
    /// refusing from one second before to one second after (`leap_seconds = "pause"`).
    pub leap_at: Option<i64>,
    /// Why out of sync, when it is.
    pub reason: OutReason,
}

/// The published state. One per process; shared by the monitor and every [`TrustedClock`].
#[derive(Debug)]
pub struct Verdict {
    word: AtomicU64,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC (ns since `epoch`) as the monitor last measured it.
    base: AtomicI64,
    /// With the hold flag: refuse while the wall clock (Unix ns) is below this.
    hold_until: AtomicI64,
    /// With the leap flag: the Unix second at which the leap takes effect.
    leap_at: AtomicI64,
    reason: AtomicU8,
    epoch: Instant,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict::new()
    }
}

impl Verdict {
    /// Out of sync until the monitor publishes.
    pub fn new() -> Self {
        Verdict {
            word: AtomicU64::new(0),
            base: AtomicI64::new(i64::MIN),
            hold_until: AtomicI64::new(0),
            leap_at: AtomicI64::new(0),
            reason: AtomicU8::new(OutReason::OutOfSync as u8),
            epoch: Instant::now(),
        }
    }

    /// Monotonic ms since the verdict was created.
    pub fn mono_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Monotonic ns since the verdict was created.
    fn mono_ns(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    /// Publishes `p` (the monitor thread only).
    pub fn publish(&self, p: Publish) {
        self.reason.store(p.reason as u8, Ordering::Relaxed);
        if let Some(at) = p.leap_at {
            self.leap_at.store(at, Ordering::Relaxed);
        }
        // A hold outlives any verdict until the monitor releases it.
        let hold = self.word.load(Ordering::Relaxed) & HOLD;
        let word = match p.bound_us {
            None => hold,
            Some(bound) => {
                let ticks = p.expires_ms.div_ceil(TICK_MS).clamp(1, EXPIRES_MASK);
                ticks
                    | (bound.min(BOUND_MASK) << BOUND_SHIFT)
                    | hold
                    | if p.leap_at.is_some() { LEAP } else { 0 }
            }
        };
        // Release: a reader that sees the leap or hold flag sees its value.
        self.word.store(word, Ordering::Release);
    }

    /// Measures CLOCK_REALTIME − CLOCK_MONOTONIC now (the smallest of a few readings: a
    /// preemption between the two readings can only make one larger) and compares it with
    /// the published base. A step back sets the hold at the wall time the old timeline has
    /// reached; returns the step (ns, negative = back) when there was one.
    pub fn track_steps(&self) -> Option<i64> {
        let base = (0..3)
            .map(|_| {
                let mono = self.mono_ns();
                wall_ns().saturating_sub(mono)
            })
            .min()
            .unwrap_or(0);
        self.track_steps_at(base, self.mono_ns())
    }

    /// [`Verdict::track_steps`] with the measured `base` and monotonic time `mono_ns`.
    fn track_steps_at(&self, base: i64, mono_ns: i64) -> Option<i64> {
        let old = self.base.swap(base, Ordering::AcqRel);
        if old == i64::MIN {
            return None;
        }
        let step = base.saturating_sub(old);
        if step < -STEP_TOLERANCE_NS {
            // A second step back while a hold is in force must not move it earlier: the
            // old base is already the lowered one then.
            let until = old
                .saturating_add(mono_ns)
                .max(self.hold().unwrap_or(i64::MIN));
            self.hold_until.store(until, Ordering::Relaxed);
            self.word.fetch_or(HOLD, Ordering::Release);
        }
        (step.abs() > STEP_TOLERANCE_NS).then_some(step)
    }

    /// Whether a hold is in force and when it ends (Unix ns).
    pub fn hold(&self) -> Option<i64> {
        (self.word.load(Ordering::Acquire) & HOLD != 0)
            .then(|| self.hold_until.load(Ordering::Relaxed))
    }

    /// Lifts the hold once the wall clock has passed it (the monitor, each poll).
    pub fn release_hold(&self) {
        if self.hold().is_some_and(|until| wall_ns() >= until) {
            self.word.fetch_and(!HOLD, Ordering::Release);
        }
    }

    /// The trusted reading at wall time `wall` (Unix time) and monotonic time `mono_ns` (ns
    /// since the verdict was created; read **before** `wall`). No division on this path:
    /// it runs once per request.
    pub fn read_at(&self, time: Timestamp, mono_ns: i64) -> Result<Reading, ClockError> {
        let wall = time
            .unix_secs
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(time.nanos));
        let word = self.word.load(Ordering::Acquire);
        let expires = word & EXPIRES_MASK;
        if expires == 0 {
            return Err(
                if self.reason.load(Ordering::Relaxed) == OutReason::LeapStop as u8 {
                    ClockError::LeapStop
                } else {
                    ClockError::OutOfSync
                },
            );
        }
        if mono_ns >= (expires * TICK_MS * 1_000_000) as i64 {
            return Err(ClockError::Expired);
        }
        if wall.saturating_sub(mono_ns)
            < self
                .base
                .load(Ordering::Relaxed)
                .saturating_sub(STEP_TOLERANCE_NS)
        {
            return Err(ClockError::SteppedBack);
        }
        if word & HOLD != 0 && wall < self.hold_until.load(Ordering::Relaxed) {
            return Err(ClockError::SteppedBack);
        }
        if word & LEAP != 0 {
            let at = i128::from(self.leap_at.load(Ordering::Relaxed)) * 1_000_000_000;
            let w = i128::from(wall);
            // The second before, the leap second itself (which Unix time folds into its
            // neighbours) and the second after.
            if w >= at - 1_000_000_000 && w < at + 1_000_000_000 {
                return Err(ClockError::LeapSecond);
            }
        }
        Ok(Reading {
            time,
            bound_us: (word >> BOUND_SHIFT) & BOUND_MASK,
        })
    }
}

/// CLOCK_REALTIME as Unix nanoseconds in an i64 (until 2262).
fn wall_ns() -> i64 {
    i64::try_from(super::wall_nanos()).unwrap_or(i64::MAX)
}

/// The production [`TimeSource`]: the system clock, trusted only while the published
/// verdict says it is in sync and has not expired, outside a leap second's window, and
/// never behind a genTime already issued.
#[derive(Debug, Clone)]
pub struct TrustedClock(pub std::sync::Arc<Verdict>);

impl TimeSource for TrustedClock {
    fn now(&self) -> Result<Reading, ClockError> {
        // Monotonic first: a preemption between the readings then only makes the wall
        // clock look ahead, never stepped back.
        let mono = self.0.mono_ns();
        let time = super::unix_time(super::wall_now()).ok_or(ClockError::NotSynchronised)?;
        self.0.read_at(time, mono)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    /// 2016-12-31T23:59:59Z + 1 s: the last leap second so far took effect at 2017-01-01.
    const LEAP_AT: i64 = 1_483_228_800;

    /// [`Verdict::read_at`] at Unix nanoseconds `wall`.
    fn read(v: &Verdict, wall: i64, mono_ns: i64) -> Result<Reading, ClockError> {
        let time = Timestamp {
            unix_secs: wall.div_euclid(S),
            nanos: wall.rem_euclid(S) as u32,
        };
        v.read_at(time, mono_ns)
    }

    fn in_sync(v: &Verdict, leap_at: Option<i64>) {
        v.publish(Publish {
            bound_us: Some(2_500),
            expires_ms: 100_000,
            leap_at,
            reason: OutReason::OutOfSync,
        });
    }

    #[test]
    fn out_of_sync_until_published_then_in_sync_until_expiry() {
        let v = Verdict::new();
        let wall = 1_800_000_000 * S;
        assert_eq!(read(&v, wall, 0), Err(ClockError::OutOfSync));
        in_sync(&v, None);
        let r = read(&v, wall, 1_000).unwrap();
        assert_eq!(r.time.unix_secs, 1_800_000_000);
        assert_eq!(r.bound_us, 2_500);
        // Just before the expiry, and at it: a monitor that stops publishing stops stamping.
        assert!(read(&v, wall, 99_999 * 1_000_000).is_ok());
        assert_eq!(
            read(&v, wall, 100_000 * 1_000_000),
            Err(ClockError::Expired)
        );
        v.publish(Publish {
            bound_us: None,
            expires_ms: 0,
            leap_at: None,
            reason: OutReason::LeapStop,
        });
        assert_eq!(read(&v, wall, 0), Err(ClockError::LeapStop));
        // Bounds saturate rather than wrap.
        v.publish(Publish {
            bound_us: Some(u64::MAX),
            expires_ms: 1,
            leap_at: None,
            reason: OutReason::OutOfSync,
        });
        assert_eq!(read(&v, wall, 0).unwrap().bound_us, MAX_BOUND_US);
    }

    #[test]
    fn a_leap_second_pauses_stamping_for_three_seconds_only() {
        let v = Verdict::new();
        in_sync(&v, Some(LEAP_AT));
        let at = |secs: i64, ns: i64| read(&v, (LEAP_AT + secs) * S + ns, 0);
        // 23:59:58.999999999 is granted; 23:59:59.0 up to 00:00:00.999999999 refused
        // (Unix time shows the leap second 23:59:60 as a repeat of one of them).
        assert!(at(-2, 999_999_999).is_ok());
        assert_eq!(at(-1, 0), Err(ClockError::LeapSecond));
        assert_eq!(at(0, 500_000_000), Err(ClockError::LeapSecond));
        assert_eq!(at(0, 999_999_999), Err(ClockError::LeapSecond));
        assert!(at(1, 0).is_ok());
        // Without the announcement the same instants are granted.
        in_sync(&v, None);
        assert!(at(0, 0).is_ok());
    }

    #[test]
    fn a_step_back_refuses_until_the_clock_passes_every_issued_gen_time() {
        let v = Verdict::new();
        in_sync(&v, None);
        let t0 = 1_800_000_000 * S;
        // The monitor measures base = wall − mono at mono 0.
        assert_eq!(v.track_steps_at(t0, 0), None);
        assert!(read(&v, t0 + S, S).is_ok());
        // At mono 2 s the clock is stepped back by 10 s: the very next request refuses.
        assert_eq!(read(&v, t0 - 8 * S, 2 * S), Err(ClockError::SteppedBack));
        // Jitter below the tolerance is no step.
        assert!(read(&v, t0 + 2 * S - STEP_TOLERANCE_NS / 2, 2 * S).is_ok());
        // The monitor's next poll (mono 3 s) sees the step and holds until the old
        // timeline's t0 + 3 s.
        assert_eq!(v.track_steps_at(t0 - 10 * S, 3 * S), Some(-10 * S));
        assert_eq!(v.hold(), Some(t0 + 3 * S));
        assert_eq!(read(&v, t0 - 7 * S, 3 * S), Err(ClockError::SteppedBack));
        // A publish keeps the hold, even across an out-of-sync verdict.
        v.publish(Publish {
            bound_us: None,
            expires_ms: 0,
            leap_at: None,
            reason: OutReason::OutOfSync,
        });
        in_sync(&v, None);
        assert_eq!(read(&v, t0 - S, 9 * S), Err(ClockError::SteppedBack));
        // Once the clock passes t0 + 3 s, tokens again: every genTime is later than any
        // issued before the step.
        assert!(read(&v, t0 + 3 * S, 13 * S).is_ok());
        // A second step back during the hold keeps the later end.
        assert_eq!(v.track_steps_at(t0 - 20 * S, 4 * S), Some(-10 * S));
        assert_eq!(v.hold(), Some(t0 + 3 * S));
        assert_eq!(v.track_steps_at(t0 - 10 * S, 5 * S), Some(10 * S));
        // A step forward is reported but holds nothing.
        assert_eq!(v.track_steps_at(t0 + 5 * S, 14 * S), Some(15 * S));
    }
}
