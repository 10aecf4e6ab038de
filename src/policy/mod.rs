//! From a request body to a `TimeStampResp`: decode, select the policy, check, stamp, sign.
//!
//! The standard path, in order (each step's rejection is the RFC 3161 §2.4.2 failure info):
//! 1. decode strict DER → `badDataFormat`;
//! 2. version → `badRequest`; hash algorithm known, parameters absent/NULL → `badAlg`;
//!    digest length → `badDataFormat`;
//! 3. policy: the first whose `match` rules accept the request ([`mapper`]), else the
//!    service's fallback policy if the request's reqPolicy allows it, else
//!    `unacceptedPolicy`;
//! 4. hash algorithm on the policy's allow-list → else `badAlg`;
//! 5. extensions: none are supported → `unacceptedExtension` (RFC 3161 §2.4.2: an
//!    unrecognised extension, critical or not, is refused);
//! 6. genTime from the time source → `timeNotAvailable`; inside the TSA certificate's
//!    validity → else `systemFailure` (logged);
//! 7. serial number, reserve the signer, encode, sign → `systemFailure` on failure.

pub mod mapper;
pub mod serial;

use std::sync::Arc;

use crate::clock::TimeSource;
use crate::error::Error;
use crate::protocol::oid::Oid;
use crate::protocol::status::rejection_response;
use crate::protocol::token::{self, PolicyTemplate};
use crate::protocol::{request, FailureInfo, HashAlg, Rejection, TimeStampReq};
use crate::signer::TokenSigner;
pub use mapper::RequestMeta;
use mapper::Rules;
use serial::SerialSpace;

/// One policy of a service.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub oid: Oid,
    /// Which requests this policy takes.
    pub rules: Rules,
    pub hash_algorithms: Vec<HashAlg>,
    pub template: PolicyTemplate,
}

impl Policy {
    /// A policy taking requests without reqPolicy or naming `oid` (the embedded default's
    /// rule), for tests and benches.
    pub fn simple(
        name: &str,
        oid: Oid,
        hash_algorithms: Vec<HashAlg>,
        template: PolicyTemplate,
    ) -> Self {
        let rules = Rules {
            requested_policy: Some((true, vec![oid.clone()])),
            ..Rules::default()
        };
        Policy {
            name: name.to_string(),
            oid,
            rules,
            hash_algorithms,
            template,
        }
    }

    /// May this policy answer a request with this reqPolicy at all? RFC 3161 §2.4.2: the
    /// token's policy must equal reqPolicy when present.
    fn allows_requested(&self, req: &TimeStampReq<'_>) -> bool {
        req.req_policy.is_none_or(|p| p == self.oid.as_bytes())
    }
}

/// A timestamp service: its signer, its policies and how it answers.
pub struct Service {
    pub name: String,
    pub signer: Arc<dyn TokenSigner>,
    pub policies: Vec<Policy>,
    /// Used when no policy matches and the request's reqPolicy allows it.
    pub fallback: Option<Policy>,
    /// Send a statusString with rejections.
    pub status_text: bool,
}

impl Service {
    /// The policy for a request: the first match, else the fallback.
    pub fn select(&self, req: &TimeStampReq<'_>, meta: &RequestMeta<'_>) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.rules.matches(req, meta))
            .or_else(|| self.fallback.as_ref().filter(|f| f.allows_requested(req)))
    }
}

/// What happened to one request, for logs, metrics and (later) the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Granted { serial: [u8; serial::SERIAL_LEN] },
    Rejected(FailureInfo),
}

/// A complete `TimeStampResp` and what it says.
#[derive(Debug)]
pub struct Reply {
    pub der: Vec<u8>,
    pub outcome: Outcome,
}

/// Everything needed to issue tokens; shared by every core and worker.
pub struct Issuer {
    pub services: Vec<Service>,
    pub clock: Arc<dyn TimeSource>,
    pub serials: SerialSpace,
}

enum Failure {
    Client(Rejection),
    Server(Error),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Client(r)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Server(e)
    }
}

impl Issuer {
    /// Answers one request body for service `service`. Never panics on any input; every
    /// outcome is a well-formed `TimeStampResp`.
    pub fn issue(&self, service: usize, body: &[u8], meta: &RequestMeta<'_>) -> Reply {
        let Some(svc) = self.services.get(service) else {
            return self.reject_error(true, &Error::Config("unknown service".into()));
        };
        match self.try_issue(svc, body, meta) {
            Ok(reply) => reply,
            Err(Failure::Client(r)) => Reply {
                der: rejection_response(&r, svc.status_text),
                outcome: Outcome::Rejected(r.fail),
            },
            Err(Failure::Server(e)) => {
                tracing::error!(service = %svc.name, error = %e, "request failed");
                self.reject_error(svc.status_text, &e)
            }
        }
    }

    fn reject_error(&self, with_text: bool, e: &Error) -> Reply {
        let r = Rejection::new(e.failure_info(), e.status_text());
        Reply {
            der: rejection_response(&r, with_text),
            outcome: Outcome::Rejected(r.fail),
        }
    }

    fn try_issue(
        &self,
        svc: &Service,
        body: &[u8],
        meta: &RequestMeta<'_>,
    ) -> Result<Reply, Failure> {
        let req = request::decode(body)?;
        let alg = request::check_imprint(&req)?;
        let policy = svc.select(&req, meta).ok_or(Rejection::new(
            FailureInfo::UnacceptedPolicy,
            "the requested policy is not offered here",
        ))?;
        if !policy.hash_algorithms.contains(&alg) {
            return Err(Rejection::new(FailureInfo::BadAlg, "hash algorithm not accepted").into());
        }
        if req.has_extensions() {
            return Err(Rejection::new(
                FailureInfo::UnacceptedExtension,
                "request extensions are not supported",
            )
            .into());
        }
        let gen_time = self.clock.now().map_err(|_| Error::TimeUnavailable)?;
        let (not_before, not_after) = svc.signer.validity();
        if gen_time < not_before || gen_time > not_after {
            tracing::error!(service = %svc.name, "genTime is outside the TSA certificate's validity: refusing to issue tokens");
            return Err(Error::CertificateNotValidAtGenTime.into());
        }
        let serial = self.serials.next();
        let reservation = svc.signer.reserve().map_err(Error::from)?;
        let template = svc.signer.template();
        let prepared = token::prepare(template, &policy.template, &req, &serial, gen_time)
            .map_err(|_| Error::CertificateNotValidAtGenTime)?;
        let signature = svc
            .signer
            .sign(reservation, &prepared.signed_attrs)
            .map_err(Error::from)?;
        let der = token::finish(template, &policy.template, &prepared, &signature);
        Ok(Reply {
            der,
            outcome: Outcome::Granted { serial },
        })
    }
}

#[cfg(test)]
mod tests;
