//! The budget for buffered request bodies, shared by every core. A client that sends the
//! head of a 64 KiB request and then all of its body but the last byte holds that buffer
//! until the request deadline; thousands of them would hold gigabytes. So each body that
//! must still be read reserves its bytes here first: over the budget the request is
//! answered 503 (and the connection closed) without reading the body.
//!
//! Under memory pressure (the bodies being received hold three quarters of the budget or
//! more) the slow ones give way: a body that receives less than [`MIN_PROGRESS`] bytes in
//! a [`WINDOW`] is cut (408, connection closed), so the budget goes to clients that send,
//! and a flood of stalled bodies is shed within seconds instead of at the request timeout.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Under memory pressure, a body must receive at least [`MIN_PROGRESS`] bytes (or finish)
/// in every window of this length.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Bytes per [`WINDOW`] a body must receive under memory pressure: 8 KiB/s, far below any
/// real link, far above a stalled or trickling client.
pub const MIN_PROGRESS: usize = 8 * 1024;

/// Bytes of request bodies being received, against a limit.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
    cut: AtomicU64,
}

/// One body's progress, for the memory-pressure rule: bytes received in the current window.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    window_start: Instant,
    window_bytes: usize,
}

/// A reservation of body bytes, given back when dropped.
#[derive(Debug)]
pub struct Reserved {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            used: AtomicUsize::new(0),
            limit,
            cut: AtomicU64::new(0),
        })
    }

    /// `max_buffered_mib` as configured, or (0) an eighth of the machine's memory.
    pub fn limit_for(max_buffered_mib: u64) -> usize {
        let bytes = if max_buffered_mib > 0 {
            max_buffered_mib << 20
        } else {
            let info = rustix::system::sysinfo();
            (info.totalram as u64).saturating_mul(u64::from(info.mem_unit)) / 8
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// Reserves `bytes`, or `None` when that would pass the limit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reserved> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|&n| n <= self.limit)?;
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Reserved {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Whether bodies being received hold three quarters of the budget or more.
    pub fn under_pressure(&self) -> bool {
        self.used.load(Ordering::Relaxed).saturating_mul(4) >= self.limit.saturating_mul(3)
    }

    /// Records `bytes` received by the body of `progress` at `now`; `false` when the body
    /// must be cut: a window ended under memory pressure with less than [`MIN_PROGRESS`].
    pub fn advance(&self, progress: &mut Progress, bytes: usize, now: Instant) -> bool {
        if now.duration_since(progress.window_start) >= WINDOW {
            if progress.window_bytes < MIN_PROGRESS && self.under_pressure() {
                return false;
            }
            *progress = Progress {
                window_start: now,
                window_bytes: 0,
            };
        }
        progress.window_bytes += bytes;
        true
    }

    /// Completes once the body of `progress`, receiving nothing more, must be cut: at the
    /// end of a window under memory pressure. (Never while the budget is relaxed.)
    pub async fn stalled(&self, mut progress: Progress) {
        loop {
            monoio::time::sleep_until((progress.window_start + WINDOW).into()).await;
            if !self.advance(&mut progress, 0, Instant::now()) {
                return;
            }
        }
    }

    /// Counts a body cut by the memory-pressure rule.
    pub fn count_cut(&self) {
        self.cut.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the budget's gauges for `GET /metrics`.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# TYPE stampd_http_buffered_body_bytes gauge\nstampd_http_buffered_body_bytes {}\n\
             # TYPE stampd_http_buffered_body_limit_bytes gauge\nstampd_http_buffered_body_limit_bytes {}\n\
             # TYPE stampd_http_slow_bodies_cut_total counter\nstampd_http_slow_bodies_cut_total {}\n",
            self.used.load(Ordering::Relaxed),
            self.limit,
            self.cut.load(Ordering::Relaxed),
        );
    }
}

impl Progress {
    /// A body whose wait begins at `now`.
    pub fn starting(now: Instant) -> Self {
        Progress {
            window_start: now,
            window_bytes: 0,
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_come_back_when_dropped() {
        let b = BodyBudget::new(100);
        let first = b.reserve(60).unwrap();
        assert!(b.reserve(41).is_none());
        let second = b.reserve(40).unwrap();
        drop(first);
        assert!(b.reserve(60).is_some());
        drop(second);
        assert_eq!(b.used.load(Ordering::Relaxed), 0);
        assert!(BodyBudget::limit_for(0) > 0);
        assert_eq!(BodyBudget::limit_for(3), 3 << 20);
    }

    #[test]
    fn under_pressure_a_window_with_too_little_progress_cuts_the_body() {
        let b = BodyBudget::new(400);
        let t0 = Instant::now();
        let later = |w: u32| t0 + WINDOW * w;
        let mut p = Progress::starting(t0);
        // Relaxed: a stalled body is kept (its request timeout still applies).
        assert!(!b.under_pressure());
        assert!(b.advance(&mut p, 0, later(5)));
        let held = b.reserve(300).unwrap();
        assert!(b.under_pressure());
        // Under pressure: enough in a window keeps it, through the next window.
        let mut p = Progress::starting(t0);
        assert!(b.advance(&mut p, MIN_PROGRESS, t0));
        assert!(b.advance(&mut p, 1, later(1)));
        // A window that ends with too little cuts it.
        assert!(!b.advance(&mut p, 1, later(2)));
        drop(held);
        assert!(!b.under_pressure());
    }
}
