//! Exponential backoff for reconnecting to what failed (the PKCS#11 token's sessions, the
//! PostgreSQL shipper's database): the first retry soon, since the peer is often back at once,
//! then doubling so an outage is not hammered.

use std::time::Duration;

/// Retry delays from 100 ms doubling up to 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first delay after a fresh failure.
    pub const MIN: Duration = Duration::from_millis(100);
    /// The longest delay: a recovered peer is noticed within this.
    pub const MAX: Duration = Duration::from_secs(5);

    /// A backoff whose next delay is [`Backoff::MIN`].
    pub fn new() -> Self {
        Backoff { next: Self::MIN }
    }

    /// The delay to wait now, without advancing.
    pub fn current(&self) -> Duration {
        self.next
    }

    /// The delay to wait now; the one after it is twice as long, up to [`Backoff::MAX`].
    pub fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    /// Back to [`Backoff::MIN`] (something worked).
    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.advance().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.current(), Backoff::MIN);
    }
}
