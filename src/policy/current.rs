//! The TSA set being served, swapped whole by a live reload: [`Current`] holds it, and each
//! core or worker reads it through its own [`Cached`] copy, so a request costs one atomic
//! load of the generation (no lock, no shared reference count) and takes the lock only once
//! after each reload. A request already being issued finishes on the set it began with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Tsa;

/// The set every core and worker issues from.
pub struct Current {
    generation: AtomicU64,
    tsa: Mutex<Arc<Tsa>>,
}

impl Current {
    /// Serving `tsa`, generation 0.
    pub fn new(tsa: Arc<Tsa>) -> Arc<Current> {
        Arc::new(Current {
            generation: AtomicU64::new(0),
            tsa: Mutex::new(tsa),
        })
    }

    /// The set now (the slow path: a lock and a reference count).
    pub fn load(&self) -> Arc<Tsa> {
        match self.tsa.lock() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Serves `tsa` from now on; every core and worker picks it up at its next request.
    pub fn swap(&self, tsa: Arc<Tsa>) {
        match self.tsa.lock() {
            Ok(mut t) => *t = tsa,
            Err(poisoned) => *poisoned.into_inner() = tsa,
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A thread's own view of it.
    pub fn cached(self: &Arc<Self>) -> Cached {
        let seen = self.generation.load(Ordering::Acquire);
        Cached {
            current: self.clone(),
            seen,
            tsa: self.load(),
        }
    }
}

/// One thread's copy of [`Current`] (not shared: `&mut self`).
pub struct Cached {
    current: Arc<Current>,
    seen: u64,
    tsa: Arc<Tsa>,
}

impl Cached {
    /// The set to issue this request from: the cached one, refreshed after a reload.
    pub fn get(&mut self) -> &Arc<Tsa> {
        let now = self.current.generation.load(Ordering::Acquire);
        if now != self.seen {
            // Read the generation before the set: a swap in between is seen next time.
            self.tsa = self.current.load();
            self.seen = now;
        }
        &self.tsa
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{DevPki, KeyType};
    use crate::signer::software::{RsaPadding, SoftwareSigner};

    fn tsa(name: &str, pki: &DevPki) -> Arc<Tsa> {
        let now = crate::clock::unix_time(crate::clock::wall_now()).unwrap();
        let signer =
            SoftwareSigner::load(name, &pki.tsa_key, &pki.tsa_cert, RsaPadding::Pkcs1, now)
                .unwrap();
        Arc::new(Tsa::single(name, Arc::new(signer)))
    }

    #[test]
    fn a_swap_reaches_every_cached_copy_at_its_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::in_dir(dir.path());
        pki.create(KeyType::P256).unwrap();
        let tsa = |name: &str| tsa(name, &pki);
        let current = Current::new(tsa("a"));
        let mut one = current.cached();
        let mut two = current.cached();
        let old = one.get().clone();
        assert_eq!(old.services[0].name, "a");
        current.swap(tsa("b"));
        assert_eq!(one.get().services[0].name, "b");
        assert_eq!(two.get().services[0].name, "b");
        // What was taken before the swap is still whole.
        assert_eq!(old.services[0].name, "a");
        assert_eq!(current.load().services[0].name, "b");
    }
}
