//! The connections of one core waiting for their next request. When the core's connection
//! cap is nearly used, the one idle the longest is asked to close (RFC 9112 §9.5 lets a
//! server close an idle connection at any time), so a flood of idle keep-alive connections
//! cannot lock active clients out: they get the freed descriptors.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// One connection's entry.
#[derive(Debug, Default)]
pub struct Slot {
    /// When it began to wait for its next request, as a number of the core's idle
    /// transitions (smaller: idle longer; `None`: it is busy). A counter, not a clock read:
    /// this is set twice per request.
    idle_since: Cell<Option<u64>>,
    /// It was asked to close.
    close: Cell<bool>,
    /// Its task, to wake when asked to close.
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    /// Resolves once the connection is asked to close.
    pub fn closing(self: &Rc<Self>) -> Closing {
        Closing(self.clone())
    }
}

/// See [`Slot::closing`].
pub struct Closing(Rc<Slot>);

impl Future for Closing {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.close.get() {
            return Poll::Ready(());
        }
        let mut waker = self.0.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Every connection of a core, by id.
#[derive(Debug, Default)]
pub struct IdleConnections {
    next_id: Cell<u64>,
    /// Idle transitions so far: the clock of [`Slot::idle_since`].
    transitions: Cell<u64>,
    slots: RefCell<HashMap<u64, Rc<Slot>>>,
}

/// A registration, removed when dropped (the connection ended).
pub struct Registered {
    set: Rc<IdleConnections>,
    id: u64,
    /// The connection's entry.
    pub slot: Rc<Slot>,
}

impl Registered {
    /// Marks the connection idle from now, or busy (`false`).
    pub fn set_idle(&self, idle: bool) {
        let since = idle.then(|| {
            let t = self.set.transitions.get();
            self.set.transitions.set(t + 1);
            t
        });
        self.slot.idle_since.set(since);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.set.slots.borrow_mut().remove(&self.id);
    }
}

impl IdleConnections {
    /// Registers a new (busy) connection.
    pub fn register(self: &Rc<Self>) -> Registered {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let slot = Rc::new(Slot::default());
        self.slots.borrow_mut().insert(id, slot.clone());
        Registered {
            set: self.clone(),
            id,
            slot,
        }
    }

    /// Asks the connection idle the longest to close; false when none is idle. Scans every
    /// connection of the core: it runs only when the cap is nearly used.
    pub fn close_oldest(&self) -> bool {
        let slots = self.slots.borrow();
        let oldest = slots
            .values()
            .filter(|s| !s.close.get())
            .filter_map(|s| s.idle_since.get().map(|t| (t, s)))
            .min_by_key(|(t, _)| *t);
        let Some((_, slot)) = oldest else {
            return false;
        };
        slot.close.set(true);
        if let Some(w) = slot.waker.borrow_mut().take() {
            w.wake();
        }
        true
    }
}

impl IdleConnections {
    /// Asks every idle connection to close (draining); busy ones finish first, and close
    /// after their answers (`Connection: close`).
    pub fn close_all_idle(&self) {
        while self.close_oldest() {}
    }
}

/// Runs `a` and `b` together: `Ok` with `a`'s output if it finishes first, else `Err` with
/// `b`'s (`a` is then dropped).
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Result<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Err(v));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_is_asked_first_and_busy_ones_never() {
        let set = Rc::new(IdleConnections::default());
        let busy = set.register();
        let old = set.register();
        let young = set.register();
        old.set_idle(true);
        young.set_idle(true);
        assert!(set.close_oldest());
        assert!(old.slot.close.get() && !young.slot.close.get() && !busy.slot.close.get());
        assert!(set.close_oldest());
        assert!(young.slot.close.get());
        assert!(!set.close_oldest(), "the busy one is never closed");
        drop(old);
        assert_eq!(set.slots.borrow().len(), 2);
    }
}
