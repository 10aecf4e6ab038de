//! The TSA stamping its own audit trail: a token over a journal checkpoint's chain hash
//! (`audit/journal/anchor.rs`), issued like any request's — through the first enabled
//! RFC 3161 service, its clock filter (no token while the time is not trusted), policy,
//! serial space, signer and audit filter — so the anchor is itself an audited token.

use super::{RequestMeta, Tsa};
use crate::outcome::Outcome;
use crate::policy::config::Protocol;
use crate::protocol::{request, HashAlg};

impl Tsa {
    /// The DER `TimeStampResp` of a token over `hash` (SHA-256 imprint, certReq, a random
    /// nonce), or why none was issued.
    pub fn stamp_chain(&self, hash: &[u8; 32]) -> Result<Vec<u8>, String> {
        let service = self
            .services
            .iter()
            .position(|s| s.protocol == Protocol::Rfc3161 && s.switch.enabled())
            .ok_or("no enabled RFC 3161 service")?;
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness for the nonce")?;
        nonce[0] |= 1;
        let body = request::encode(HashAlg::Sha256, hash, None, Some(&nonce), true);
        let reply = self.issue(service, &body, &RequestMeta::local(""));
        match reply.outcome {
            Outcome::Granted { .. } => Ok(reply.der),
            Outcome::Rejected(f) => Err(format!("rejected: {}", f.name())),
            Outcome::Refused(status) => Err(format!("refused with HTTP {status}")),
        }
    }
}
