//! The budget for buffered request bodies, shared by every core. A client that sends the
//! head of a 64 KiB request and then all of its body but the last byte holds that buffer
//! until the request deadline; thousands of them would hold gigabytes. So each body that
//! must still be read reserves its bytes here first: over the budget the request is
//! answered 503 (and the connection closed) without reading the body.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of request bodies being received, against a limit.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
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

    /// Appends the budget's gauges for `GET /metrics`.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# TYPE stampd_http_buffered_body_bytes gauge\nstampd_http_buffered_body_bytes {}\n\
             # TYPE stampd_http_buffered_body_limit_bytes gauge\nstampd_http_buffered_body_limit_bytes {}\n",
            self.used.load(Ordering::Relaxed),
            self.limit
        );
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
}
