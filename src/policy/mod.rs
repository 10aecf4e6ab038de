//! From a request body to a `TimeStampResp`: decode, select the policy, check, stamp, sign.
//!
//! The standard path, in order (each step's rejection is the RFC 3161 §2.4.2 failure info):
//! 1. decode strict DER → `badDataFormat`;
//! 2. version → `badRequest`; hash algorithm known, parameters absent/NULL → `badAlg`;
//!    digest length → `badDataFormat`;
//! 3. policy: first whose requested-policy rule matches → else `unacceptedPolicy`;
//! 4. hash algorithm on the policy's allow-list → else `badAlg`;
//! 5. extensions: none are supported → `unacceptedExtension` (RFC 3161 §2.4.2: an
//!    unrecognised extension, critical or not, is refused);
//! 6. genTime from the time source → `timeNotAvailable`; inside the TSA certificate's
//!    validity → else `systemFailure` (logged);
//! 7. serial number, reserve the signer, encode, sign → `systemFailure` on failure.

pub mod serial;

use std::sync::Arc;

use crate::protocol::oid::Oid;

use crate::clock::TimeSource;
use crate::error::Error;
use crate::protocol::status::rejection_response;
use crate::protocol::token::{self, PolicyTemplate};
use crate::protocol::{request, FailureInfo, HashAlg, Rejection, TimeStampReq};
use crate::signer::TokenSigner;
use serial::SerialSpace;

/// One policy of a service.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub oid: Oid,
    /// Requests without reqPolicy match.
    pub accept_absent: bool,
    /// Requests whose reqPolicy is one of these match.
    pub accept_oids: Vec<Oid>,
    pub hash_algorithms: Vec<HashAlg>,
    pub template: PolicyTemplate,
}

impl Policy {
    fn matches(&self, req: &TimeStampReq<'_>) -> bool {
        match req.req_policy {
            None => self.accept_absent,
            Some(p) => self.accept_oids.iter().any(|o| o.as_bytes() == p),
        }
    }
}

/// A timestamp service: its signer, its policies and how it answers.
pub struct Service {
    pub name: String,
    pub signer: Arc<dyn TokenSigner>,
    pub policies: Vec<Policy>,
    /// Send a statusString with rejections.
    pub status_text: bool,
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
    pub fn issue(&self, service: usize, body: &[u8]) -> Reply {
        let Some(svc) = self.services.get(service) else {
            return self.reject_error(true, &Error::Config("unknown service".into()));
        };
        match self.try_issue(svc, body) {
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

    fn try_issue(&self, svc: &Service, body: &[u8]) -> Result<Reply, Failure> {
        let req = request::decode(body)?;
        let alg = request::check_imprint(&req)?;
        let policy = svc
            .policies
            .iter()
            .find(|p| p.matches(&req))
            .ok_or(Rejection::new(
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
