//! What makes a reply right: HTTP 200 with a TimeStampResp, status granted, the request's
//! imprint and nonce echoed, a token present; on a sample, the whole token verified
//! (signature, ESS, chain to the given CA). Anything else is an error of a named kind.

use stampd::client::verify::{self, magnitude, Expectation};
use stampd::protocol::{response, PkiStatus};

use crate::mix::Prepared;

/// Trust for full verification: CA certificates, and certificates that may complete the
/// chain (the TSA certificate, for tokens requested without certReq).
pub struct Trust {
    pub anchors: Vec<Vec<u8>>,
    pub extra: Vec<Vec<u8>>,
}

/// Why a reply is wrong.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// An error of this kind, e.g. `imprint-mismatch`, `http-503`.
    Kind(String),
    /// A `verification-failed` token that carries no certificate, with no untrusted
    /// certificate given to complete the chain: it cannot verify, and the summary says why.
    Uncertified,
}

impl Failure {
    /// The error kind it is counted under.
    pub fn kind(&self) -> &str {
        match self {
            Failure::Kind(kind) => kind,
            Failure::Uncertified => "verification-failed",
        }
    }
}

impl From<String> for Failure {
    fn from(kind: String) -> Failure {
        Failure::Kind(kind)
    }
}

impl From<&str> for Failure {
    fn from(kind: &str) -> Failure {
        Failure::Kind(kind.to_string())
    }
}

/// Checks a reply body (HTTP status 200 already seen). `trust`: verify the token fully.
pub fn reply(body: &[u8], sent: &Prepared, trust: Option<&Trust>) -> Result<(), Failure> {
    let resp = response::decode(body).map_err(|_| "undecodable-reply".to_string())?;
    if resp.status != PkiStatus::Granted && resp.status != PkiStatus::GrantedWithMods {
        // e.g. "rejection:systemFailure", "waiting"
        let fail = resp
            .fail_info
            .first()
            .map(|f| format!(":{}", f.name()))
            .unwrap_or_default();
        return Err(format!("{}{fail}", resp.status.name()).into());
    }
    let token = resp.token.ok_or("granted-without-token")?;
    let tst = &token.tst_info;
    if tst.hash_oid != sent.hash.oid() || tst.digest != sent.digest.as_slice() {
        return Err("imprint-mismatch".into());
    }
    match (&sent.nonce, tst.nonce) {
        (None, None) => {}
        (Some(n), Some(got)) if magnitude(n) == magnitude(got) => {}
        _ => return Err("nonce-mismatch".into()),
    }
    if sent.cert_req && token.certificates.is_empty() {
        return Err("certreq-ignored".into());
    }
    if let Some(trust) = trust {
        let expect = Expectation {
            hash: sent.hash,
            digest: sent.digest.clone(),
            nonce: sent.nonce.clone(),
        };
        verify::verify(body, false, &expect, &trust.anchors, &trust.extra).map_err(|_| {
            if token.certificates.is_empty() && trust.extra.is_empty() {
                Failure::Uncertified
            } else {
                Failure::from("verification-failed")
            }
        })?;
    }
    Ok(())
}
