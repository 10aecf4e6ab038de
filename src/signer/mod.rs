//! Token signers. A signer owns a private key (it never leaves), knows its certificate
//! chain and hands out the pre-encoded constant parts of its tokens.
//!
//! Callers reserve first and sign once (tower's `poll_ready` pattern): with an HSM the
//! reservation is a session, taken before any expensive work so overload is refused early.

pub mod checks;
pub mod config;
pub mod pkcs11;
pub mod software;

use std::sync::Arc;

pub use crate::error::SignError;
use crate::protocol::cert::CertView;
use crate::protocol::token::{EssCertId, SignatureScheme, SignerTemplate};
use crate::protocol::{HashAlg, Timestamp};

/// A reserved right to sign once. For the software signer it carries nothing; an HSM pool
/// puts a session index here, which goes back to the pool when the reservation is dropped
/// unused (a request that fails after `reserve`, or a panic), so no session is ever lost.
#[derive(Debug)]
pub struct Reservation {
    slot: usize,
    give_back: Option<crossbeam_channel::Sender<usize>>,
}

impl Reservation {
    /// A reservation with nothing to give back.
    pub fn unpooled() -> Self {
        Reservation {
            slot: 0,
            give_back: None,
        }
    }

    /// Session `slot`, returned to `free` unless [`Reservation::keep`] takes it.
    pub fn pooled(slot: usize, free: crossbeam_channel::Sender<usize>) -> Self {
        Reservation {
            slot,
            give_back: Some(free),
        }
    }

    /// The session index this reservation holds (0 when unpooled).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Takes the slot out: it does not go back to the free list on drop.
    pub fn keep(mut self) -> usize {
        self.give_back = None;
        self.slot
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(free) = self.give_back.take() {
            let _ = free.send(self.slot);
        }
    }
}

/// A key's checked certificate chain and what tokens need from it, built the same way for
/// every kind of signer.
pub struct Certified {
    template: SignerTemplate,
    chain: Vec<Vec<u8>>,
    validity: (Timestamp, Timestamp),
    /// Shared, so each audit record takes a reference rather than a copy.
    key_id: Arc<str>,
}

impl Certified {
    /// Checks the leaf of `chain` (TSA certificate first) against the key's public key bits
    /// (`checks::check_tsa_certificate`) and encodes the template for `scheme`.
    pub fn new(
        scheme: SignatureScheme,
        chain: Vec<Vec<u8>>,
        public_key: &[u8],
        now: Timestamp,
    ) -> Result<Self, String> {
        let unparseable = || checks::CertProblem::Unparseable.to_string();
        let leaf_der = chain.first().ok_or("no CERTIFICATE PEM block found")?;
        let leaf = CertView::parse(leaf_der).map_err(|_| unparseable())?;
        checks::check_tsa_certificate(&leaf, public_key, now).map_err(|e| e.to_string())?;
        let validity = (leaf.not_before, leaf.not_after);
        let key_id = crate::protocol::hex::hex(&HashAlg::Sha256.digest(leaf.spki)[..8]).into();
        let template = SignerTemplate::new(scheme, &chain, EssCertId::V2(HashAlg::Sha256))
            .map_err(|_| unparseable())?;
        Ok(Certified {
            template,
            chain,
            validity,
            key_id,
        })
    }
}

/// A private key that signs tokens, with its checked certificate chain.
///
/// Contract:
/// * **Callers.** `policy::Tsa::issue` (step 11 and 13 of the request path in
///   docs/architecture.md) calls [`reserve`](TokenSigner::reserve) once per request after
///   the request passed every check and got its serial, then [`sign`](TokenSigner::sign)
///   once with that reservation over the DER signed attributes. `Tsa::ready` (`GET /ready`)
///   and `Tsa::metrics` (`GET /metrics`) call [`ready`](TokenSigner::ready) and
///   [`metrics`](TokenSigner::metrics); benches, tests and the load generator also sign
///   directly. The accessors (`template`, `chain`, `validity`, `key_id`) are read on every
///   request and must be plain field reads.
/// * **Threads.** One signer (`Arc<dyn TokenSigner>`) is shared by every `stampd-core-N`
///   (inline dispatch) and `stampd-worker-N` (queue dispatch), which call it concurrently.
///   With inline dispatch `reserve` and `sign` run on a core's event loop, so they must
///   return promptly: `reserve` may block only for a bounded time waiting for capacity (the
///   PKCS#11 pool waits at most 2 s for a free session, and not at all while no session
///   works); `sign` may block for one signature (an HSM round trip). `ready` and `metrics`
///   run on a core and must never block (atomics only).
/// * **Errors.** `Err(SignError::Unavailable)` from `reserve` means "no capacity now"
///   (overload or an outage); `Err(SignError::Failed)` from `sign` means this signature
///   failed. Both are the TSA's trouble, never the requester's: the request is answered with
///   a `systemFailure` rejection and nothing is retried. A signer recovers by itself (the
///   PKCS#11 healer thread); it must not panic, and it must never reveal key material.
/// * **Reservations.** Dropping a [`Reservation`] unused gives its capacity back, so a
///   request that fails between `reserve` and `sign` loses nothing.
pub trait TokenSigner: Send + Sync {
    /// The key's certificate chain and token template.
    fn certified(&self) -> &Certified;
    /// Constant DER parts for tokens signed by this key.
    fn template(&self) -> &SignerTemplate {
        &self.certified().template
    }
    /// The certificate chain, TSA certificate first (DER each).
    fn chain(&self) -> &[Vec<u8>] {
        &self.certified().chain
    }
    /// Validity of the TSA certificate (a token must not claim a time outside it).
    fn validity(&self) -> (Timestamp, Timestamp) {
        self.certified().validity
    }
    /// A short identifier of the key for logs and audit (hex of the SPKI SHA-256, 16 chars).
    fn key_id(&self) -> &Arc<str> {
        &self.certified().key_id
    }
    /// Takes the capacity for one signature (an HSM session; nothing for a key in memory),
    /// waiting a bounded time at most. `Unavailable` when there is none.
    fn reserve(&self) -> Result<Reservation, SignError>;
    /// Signs `message` (the DER signed attributes, RFC 5652 §5.4) with the scheme of the
    /// template: RSA or Ed25519 bytes, or a DER ECDSA-Sig-Value. Consumes the reservation.
    fn sign(&self, reservation: Reservation, message: &[u8]) -> Result<Vec<u8>, SignError>;
    /// Whether the signer can sign now (readiness). A key in memory always can; an HSM pool
    /// cannot while none of its sessions works.
    fn ready(&self) -> bool {
        true
    }
    /// What holds the key, for the admin dashboard: `software` or `pkcs11`.
    fn kind(&self) -> &'static str {
        "software"
    }
    /// Appends the signer's own Prometheus lines for `GET /metrics`.
    fn metrics(&self, _name: &str, _out: &mut String) {}
}

/// A signer that does not sign: it keeps another signer's certificate and templates but
/// returns a fixed 71-byte value, so whatever runs through it measures everything but the
/// signature. For benchmarks and the load generator's ceiling (`stampd-loadtest
/// responder`); no configuration can select it, and its tokens never verify.
pub struct NoSign<S>(pub S);

impl<S: TokenSigner> TokenSigner for NoSign<S> {
    fn certified(&self) -> &Certified {
        self.0.certified()
    }
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn reserve(&self) -> Result<Reservation, SignError> {
        Ok(Reservation::unpooled())
    }
    fn sign(&self, _reservation: Reservation, _message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(vec![0x30; 71])
    }
}
