//! Legacy Authenticode timestamps on a service with `protocol = "authenticode"`: the same
//! pre-processing onion as RFC 3161 (clock, rate limit, audit, monitor), then decode, the
//! trusted time, the signer and the countersignature ([`crate::protocol::authenticode`]).
//!
//! There is no rejection message in this protocol, so a refused request is a
//! [`Outcome::Rejected`] whose `der` is the one-line reason: the frontend answers it `400`
//! (the client's mistake) or `503` (the TSA cannot issue now: the clock is out of sync, the
//! signer is down). An issued stamp is `Granted` with a serial from the TSA's serial space:
//! the legacy format carries none, so the serial is the audit record's identifier only.

use super::preprocess::Exchange;
use super::{Reply, Service, Tsa};
use crate::error::{Error, Refusal};
use crate::outcome::Outcome;
use crate::protocol::authenticode::{self, BadRequest};
use crate::protocol::{FailureInfo, Rejection};

/// A rejection as this protocol answers it: the reason as the body.
pub fn refused(r: &Rejection) -> Reply {
    Reply::new(r.text.as_bytes().to_vec(), Outcome::Rejected(r.fail))
}

fn bad(b: BadRequest) -> Reply {
    Reply::new(
        b.text().as_bytes().to_vec(),
        Outcome::Rejected(FailureInfo::BadDataFormat),
    )
}

fn failed(e: &Error) -> Reply {
    match e.refusal() {
        Refusal::Reject(r) => refused(&r),
        Refusal::Http(status) => Reply::new(Vec::new(), Outcome::Refused(status)),
    }
}

/// Issues the countersignature for `x`'s body.
pub fn issue<'a>(tsa: &Tsa, svc: &'a Service, x: &mut Exchange<'a>) -> Reply {
    let der = match authenticode::unbase64(x.body) {
        Ok(d) => d,
        Err(b) => return bad(b),
    };
    let req = match authenticode::decode(&der) {
        Ok(r) => r,
        Err(b) => return bad(b),
    };
    // The service's first policy names the records and may name another signer.
    let policy = svc.policies.first().or(svc.fallback.as_ref());
    x.policy = policy;
    let signer = policy
        .and_then(|p| p.signer.as_ref())
        .unwrap_or(&svc.signer);
    let template = signer.template();
    let digest = template.scheme.digest();
    x.authenticode = Some((digest, digest.digest(req.content)));
    let reading = match x.time.unwrap_or_else(|| tsa.clock.now()) {
        Ok(r) => r,
        Err(_) => return failed(&Error::TimeUnavailable),
    };
    // As for RFC 3161: the clock's error bound within the declared accuracy, the time
    // inside the certificate's validity (ETSI EN 319 421).
    let accuracy = policy.map_or(0, |p| p.template.accuracy_us);
    if accuracy != 0 && reading.bound_us > accuracy {
        return failed(&Error::TimeUnavailable);
    }
    let (not_before, not_after) = signer.validity();
    let t = reading.time.unix_nanos();
    if t < not_before.unix_nanos() || t > not_after.unix_nanos() {
        tracing::error!(service = %svc.name, "the time is outside the TSA certificate's validity: refusing Authenticode stamps");
        return failed(&Error::CertificateNotValidAtGenTime);
    }
    let Some(prepared) = authenticode::prepare(template, &req, reading.time) else {
        return failed(&Error::CertificateNotValidAtGenTime);
    };
    let serial = tsa.serials.next();
    let signature = match signer
        .reserve()
        .and_then(|r| signer.sign(r, &prepared.signed_attrs))
    {
        Ok(s) => s,
        Err(e) => return failed(&Error::from(e)),
    };
    Reply::new(
        authenticode::finish(template, &req, &prepared, &signature),
        Outcome::Granted { serial },
    )
}
