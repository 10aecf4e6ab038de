//! `kind = "pkcs11"`: keys in an HSM, signed through PKCS#11 (cryptoki) over a pool of
//! sessions.
//!
//! Sessions are `Send` but not `Sync`: each sits behind its own mutex, and a bounded
//! channel of free session indexes hands them out, so a session is used by one thread at a
//! time and requests spread over all of them. `reserve` takes an index before any work is
//! done (waiting a bounded time, so overload is refused early); `sign` uses that session
//! and gives the index back.
//!
//! Faults: a sign that fails (session closed, device removed, logged out, or anything
//! else) takes its session out of the pool and hands it to a healer thread, which opens a
//! fresh session (logging in again) with exponential backoff and puts it back. While no
//! session works `reserve` fails at once, so requests get `systemFailure` instead of
//! waiting; readiness (`GET /ready`) reports the signer down until one is back. When no
//! session reopens, the healer finalizes and initializes the module again (SoftHSM2, for
//! one, sees a reinserted token only then). A module is loaded once per process
//! ([`token::module`]); its gate keeps that re-initialisation, and shutdown, out while any
//! thread is inside a call, and sessions of an older generation are never used or closed.

pub mod token;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cryptoki::object::ObjectHandle;

use self::token::{find_key, read_certificates, Token, TokenSession};
use super::{Certified, Reservation, SignError, TokenSigner};
use crate::backoff::Backoff;
use crate::protocol::token::SignatureScheme;
use crate::protocol::Timestamp;

/// Longest `reserve` waits for a free session while some session works.
const RESERVE_WAIT: Duration = Duration::from_secs(2);

/// Where the key is: a `[signer.NAME]` with `kind = "pkcs11"`, its paths resolved and its PIN
/// read by the assembler.
pub struct Pkcs11Config<'a> {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: &'a std::path::Path,
    /// RSA keys: PKCS#1 v1.5 or PSS.
    pub rsa_padding: super::software::RsaPadding,
    /// The label of the token holding the key (the `label` of its CK_TOKEN_INFO).
    pub token_label: &'a str,
    /// The user PIN, from `pin_env`, `pin_file` or `pin_credential`; never from the config text, never logged.
    pub pin: String,
    /// The CKA_LABEL of the key pair on the token.
    pub key_label: &'a str,
    /// The certificate chain (leaf first, DER); `None` reads it from the token.
    pub chain: Option<Vec<Vec<u8>>>,
    /// Sessions in the pool (at least 1; config default 4): how many signatures can run at
    /// once.
    pub sessions: usize,
}

/// A session of the pool, or `None` while it is broken and the healer works on it.
type Slot = Mutex<Option<(TokenSession, ObjectHandle)>>;

/// What the signer and its healer thread share.
struct Pool {
    token: Token,
    key_label: String,
    slots: Vec<Slot>,
    free_tx: Sender<usize>,
    /// Sessions that work (in the free list or in use).
    up: AtomicUsize,
}

impl Pool {
    /// A fresh logged-in session and the key's handle in it.
    fn open(&self) -> Result<(TokenSession, ObjectHandle), String> {
        let session = self.token.session(false)?;
        let key = {
            let _gate = self.token.module().enter();
            if !session.current() {
                return Err("the module was re-initialised meanwhile".into());
            }
            find_key(&session, &self.key_label)?
        };
        Ok((session, key.private))
    }

    /// A session starts working.
    fn up(&self) {
        self.up.fetch_add(1, Ordering::AcqRel);
    }

    /// A session stops working; returns how many still work.
    fn down(&self) -> usize {
        let before = self
            .up
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        before.saturating_sub(1)
    }
}

/// `kind = "pkcs11"`: a key in an HSM, signed over a pool of logged-in sessions with a
/// healer thread (`pkcs11-NAME`) that reopens broken ones (see the module documentation).
pub struct Pkcs11Signer {
    pool: Arc<Pool>,
    free_rx: Receiver<usize>,
    /// Broken session indexes, to the healer; `None` once the signer is being dropped.
    broken_tx: Option<Sender<usize>>,
    /// Joined on drop, so the pool's sessions close in the dropping thread, never in a
    /// healer racing the process's exit (and the module's own teardown).
    healer: Option<std::thread::JoinHandle<()>>,
    certified: Certified,
    scheme: SignatureScheme,
}

impl Pkcs11Signer {
    /// Opens the pool's sessions (every one must open: a misconfiguration is found at
    /// start, not under load) and checks the certificate against the token's key.
    pub fn open(c: Pkcs11Config<'_>, name: &str, now: Timestamp) -> Result<Self, String> {
        let token = Token::open(c.module, c.token_label, Some(c.pin))?;
        let sessions = c.sessions.max(1);
        let (free_tx, free_rx) = crossbeam_channel::bounded(sessions);
        let mut pool = Pool {
            token,
            key_label: c.key_label.to_string(),
            slots: Vec::with_capacity(sessions),
            free_tx,
            up: AtomicUsize::new(0),
        };
        let (public, stored_chain) = {
            let first = pool
                .token
                .session(false)
                .map_err(|e| format!("logging in to token `{}`: {e}", c.token_label))?;
            let _gate = pool.token.module().enter();
            if !first.current() {
                // Another signer's healer re-initialised the module meanwhile.
                return Err("the PKCS#11 module was re-initialised while starting: retry".into());
            }
            let key = find_key(&first, c.key_label)?;
            let chain = match c.chain {
                Some(_) => None,
                None => Some(read_certificates(&first, c.key_label, &key.id)?),
            };
            (key.public, chain)
        };
        let chain = match (c.chain, stored_chain) {
            (Some(chain), _) | (None, Some(chain)) => chain,
            (None, None) => return Err("no certificate".into()),
        };
        let scheme = public.scheme(c.rsa_padding);
        let certified = Certified::new(scheme, chain, &public.bits, now)?;

        for i in 0..sessions {
            let opened = pool.open()?;
            pool.slots.push(Mutex::new(Some(opened)));
            pool.up();
            let _ = pool.free_tx.send(i);
        }
        let pool = Arc::new(pool);
        let (broken_tx, broken_rx) = crossbeam_channel::unbounded();
        let healer = Arc::clone(&pool);
        let signer = name.to_string();
        let healer = std::thread::Builder::new()
            .name(format!("pkcs11-{name}"))
            .spawn(move || heal(&healer, &broken_rx, &signer))
            .map_err(|e| format!("cannot start the session healer: {e}"))?;
        Ok(Pkcs11Signer {
            pool,
            free_rx,
            broken_tx: Some(broken_tx),
            healer: Some(healer),
            certified,
            scheme,
        })
    }
}

impl Drop for Pkcs11Signer {
    fn drop(&mut self) {
        // Disconnecting the channel ends the healer; it drops its share of the pool first.
        self.broken_tx = None;
        if let Some(healer) = self.healer.take() {
            let _ = healer.join();
        }
    }
}

/// The healer: reopens broken sessions with exponential backoff until the signer is
/// dropped. A reopened session goes back on the free list.
fn heal(pool: &Pool, broken: &Receiver<usize>, signer: &str) {
    let mut waiting: Vec<usize> = Vec::new();
    let mut backoff = Backoff::new();
    let mut next_try = Instant::now();
    loop {
        let got = if waiting.is_empty() {
            broken.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            broken.recv_timeout(next_try.saturating_duration_since(Instant::now()))
        };
        match got {
            Ok(i) => {
                if waiting.is_empty() {
                    // A first failure: retry soon (the token may be back at once, e.g.
                    // after a logout elsewhere).
                    backoff.reset();
                    next_try = Instant::now() + backoff.current();
                }
                waiting.push(i);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let module = pool.token.module();
        let generation = module.generation();
        let mut last_error = reopen(pool, &mut waiting);
        if last_error.is_some() && pool.up.load(Ordering::Acquire) == 0 {
            // Nothing works: the token may have been removed and reinserted, which some
            // modules (SoftHSM2) notice only on a fresh C_Initialize. Other signers on the
            // module reopen their sessions on their next sign.
            last_error = match module.reinitialize(generation) {
                Ok(()) => reopen(pool, &mut waiting),
                Err(e) => Some(e),
            };
        }
        let up = pool.up.load(Ordering::Acquire);
        if let Some(e) = last_error {
            let wait = backoff.advance();
            tracing::warn!(signer, sessions_up = up, retry_in_ms = wait.as_millis() as u64, error = %e, "cannot reopen PKCS#11 sessions");
            next_try = Instant::now() + wait;
        } else {
            tracing::info!(signer, sessions_up = up, "PKCS#11 sessions reopened");
        }
    }
}

/// Tries to reopen every waiting session; a reopened one goes back on the free list.
/// Returns the last error, if any stayed broken.
fn reopen(pool: &Pool, waiting: &mut Vec<usize>) -> Option<String> {
    let mut last_error = None;
    waiting.retain(|&i| match pool.open() {
        Ok(session) => {
            *pool.slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(session);
            pool.up();
            let _ = pool.free_tx.send(i);
            false
        }
        Err(e) => {
            last_error = Some(e);
            true
        }
    });
    last_error
}

impl TokenSigner for Pkcs11Signer {
    fn certified(&self) -> &Certified {
        &self.certified
    }

    fn reserve(&self) -> Result<Reservation, SignError> {
        let pooled = |slot| Reservation::pooled(slot, self.pool.free_tx.clone());
        if let Ok(slot) = self.free_rx.try_recv() {
            return Ok(pooled(slot));
        }
        // No session works: refuse now rather than after the wait.
        if self.pool.up.load(Ordering::Acquire) == 0 {
            return Err(SignError::Unavailable);
        }
        self.free_rx
            .recv_timeout(RESERVE_WAIT)
            .map(pooled)
            .map_err(|_| SignError::Unavailable)
    }

    fn sign(&self, reservation: Reservation, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let Some(slot) = self.pool.slots.get(reservation.slot()) else {
            return Err(SignError::Failed);
        };
        // A poisoned lock means a panic while signing: the session is not trusted again.
        let mut guard = slot.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = None;
            g
        });
        if guard
            .as_ref()
            .is_some_and(|(session, _)| !session.current())
        {
            // The module was re-initialised (another signer's healer): this session died
            // with it. A fresh one now spares the request; if none opens, it fails below.
            let stale = guard.take();
            drop(stale);
            *guard = self.pool.open().ok();
        }
        let result = {
            // The gate keeps C_Finalize out while the module is in this call; sessions
            // of an earlier module generation are dead.
            let _gate = self.pool.token.module().enter();
            match &*guard {
                Some((session, key)) if session.current() => {
                    token::sign(session, *key, self.scheme, message).map_err(token::p11)
                }
                Some(_) => Err("the module was re-initialised".to_string()),
                None => Err("no session could be opened".to_string()),
            }
        };
        match result {
            // Dropping the reservation puts the session back on the free list.
            Ok(signature) => Ok(signature),
            Err(e) => {
                // The index leaves the free list for the healer before anything else can
                // fail: counted down exactly once.
                let i = reservation.keep();
                // Whatever failed, a fresh session is the way back: close this one (outside
                // the gate: closing enters the module itself) and let the healer reopen.
                let broken = guard.take();
                drop(guard);
                drop(broken);
                let up = self.pool.down();
                tracing::warn!(key_id = %self.key_id(), sessions_up = up, error = %e, "PKCS#11 sign failed; reopening the session");
                if self.broken_tx.as_ref().is_none_or(|b| b.send(i).is_err()) {
                    tracing::error!(key_id = %self.key_id(), "the PKCS#11 session healer is gone: this session stays closed");
                }
                Err(SignError::Failed)
            }
        }
    }

    fn ready(&self) -> bool {
        self.pool.up.load(Ordering::Acquire) > 0
    }

    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn metrics(&self, name: &str, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "stampd_signer_sessions_up{{signer=\"{name}\"}} {}\nstampd_signer_sessions{{signer=\"{name}\"}} {}",
            self.pool.up.load(Ordering::Acquire),
            self.pool.slots.len()
        );
    }
}
