//! Graceful drain (SIGTERM): `/ready` answers 503 at once, every core closes its listeners,
//! idle keep-alive connections are closed, busy ones answer what they have been sent (the
//! pipelined requests included) with `Connection: close`, and [`Drain::wait`] returns once
//! no connection is left, or at the deadline.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

/// The process-wide drain state, shared by every core (and the signal thread).
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    /// Open connections on every core.
    open: AtomicUsize,
    /// One per core: fires when draining starts.
    cores: Mutex<Vec<oneshot::Sender<()>>>,
}

impl Drain {
    /// Whether draining has begun: keep-alive ends with the next answer, `/ready` is 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A core's notification, taken once per core at start.
    pub(super) fn register_core(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut cores) = self.cores.lock() {
            cores.push(tx);
        }
        rx
    }

    /// Counts a connection in (`true`) or out.
    pub(super) fn count(&self, opened: bool) {
        if opened {
            self.open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Begins draining on every core; returns at once.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Ok(mut cores) = self.cores.lock() {
            for tx in cores.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Waits until no connection is open, at most `timeout`; false when some still were.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.open.load(Ordering::Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One core's view: resolves its waiters (the accept loops) once draining starts.
#[derive(Debug, Default)]
pub(super) struct CoreDrain {
    begun: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl CoreDrain {
    /// Marks draining begun on this core and wakes every waiter.
    pub(super) fn begin(&self) {
        self.begun.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once draining has begun on this core.
    pub(super) fn begun(self: &Rc<Self>) -> Begun {
        Begun(self.clone())
    }
}

/// See [`CoreDrain::begun`].
pub(super) struct Begun(Rc<CoreDrain>);

impl Future for Begun {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.begun.get() {
            return Poll::Ready(());
        }
        // One entry per task (a core has one accept loop per listener), however often
        // it is polled.
        let mut waiters = self.0.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_notifies_every_core_and_wait_counts_connections_out() {
        let d = Drain::default();
        let mut a = d.register_core();
        let mut b = d.register_core();
        d.count(true);
        assert!(!d.is_draining());
        d.start();
        assert!(d.is_draining());
        assert_eq!(a.try_recv(), Ok(Some(())));
        assert_eq!(b.try_recv(), Ok(Some(())));
        assert!(
            !d.wait(Duration::from_millis(30)),
            "one connection is still open"
        );
        d.count(false);
        assert!(d.wait(Duration::from_millis(30)));
        assert_eq!(d.open(), 0);
    }
}
