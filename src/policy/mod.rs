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
//! 6. the chain's request filters ([`filters::RequestFilter`]), in chain order → their
//!    rejection (`imprint-list`: `badRequest`); they may add TSTInfo extensions;
//! 7. genTime from the time source → `timeNotAvailable`; inside the TSA certificate's
//!    validity → else `systemFailure` (logged);
//! 8. serial number, reserve the signer, encode, sign → `systemFailure` on failure.

mod anchor;
pub mod chain;
pub mod config;
pub mod current;
pub mod filters;
mod legacy;
pub mod mapper;
pub mod preprocess;
pub mod settings;
pub mod switch;

use std::sync::Arc;

use crate::audit::{AuditSink, Durable};
use crate::clock::TimeSource;
use crate::error::{Error, Refusal};
use crate::outcome::Outcome;
use crate::protocol::oid::Oid;
use crate::protocol::status::rejection_response;
use crate::protocol::token::{self, PolicyTemplate, SignerTemplate};
use crate::protocol::{request, FailureInfo, HashAlg, Rejection, TimeStampReq};
use crate::serial::{self, SerialSpace};
use crate::signer::TokenSigner;
pub use mapper::RequestMeta;
use mapper::Rules;
use preprocess::{Exchange, PreFilter, Stop};
use std::time::Instant;

/// One policy of a service, compiled from its filter chain (see [`chain`]).
pub struct Policy {
    /// The `[policy.NAME]` name, for logs, metrics and the audit trail.
    pub name: Arc<str>,
    /// The policy OID stamped into every token (TSTInfo.policy).
    pub oid: Oid,
    /// `oid` in dotted form, for the audit trail.
    pub oid_text: Arc<str>,
    /// Which requests this policy takes.
    pub rules: Rules,
    /// message-imprint: accepted hash algorithms.
    pub hash_algorithms: Vec<HashAlg>,
    /// request-validation: recognised request extensions (OID, may it be critical?).
    pub allowed_extensions: Vec<(Oid, bool)>,
    /// gen-time, accuracy, tsa-name, qualified-statement, timestamp-token (certs): the
    /// constant parts of TSTInfo.
    pub template: PolicyTemplate,
    /// genTime ± this many µs must lie inside the TSA certificate's validity: the accuracy
    /// with a certificate-verifier in the chain, 0 without (a token is never signed outside
    /// the certificate's validity).
    pub validity_margin_us: u64,
    /// timestamp-token: a signer other than the service's.
    pub signer: Option<Arc<dyn TokenSigner>>,
    /// timestamp-token: token constants when they differ from the signer's own (ESSCertID
    /// v1, another ESSCertIDv2 hash, another signer).
    pub signer_template: Option<SignerTemplate>,
    /// timestamp-response: send a statusString with rejections, overriding the service's
    /// `status_text` (`None`: the service decides).
    pub status_text_override: Option<bool>,
    /// storage: keep each issued token (the response DER) in its audit record.
    pub archive: bool,
    /// The chain's per-request filters, in chain order; empty for the standard chain.
    pub request_filters: Vec<Arc<dyn filters::RequestFilter>>,
}

impl Policy {
    /// The standard chain with default options for requests without reqPolicy or naming
    /// `oid` (the embedded default's rule), for tests and benches.
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
            name: name.into(),
            oid_text: oid.to_string().into(),
            oid,
            rules,
            hash_algorithms,
            allowed_extensions: Vec::new(),
            template,
            validity_margin_us: 0,
            signer: None,
            signer_template: None,
            status_text_override: None,
            archive: false,
            request_filters: Vec::new(),
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
    /// The `[[service]] name`, for logs, metrics and the audit trail.
    pub name: String,
    /// The service's `signer`, used unless a policy's timestamp-token filter names another.
    pub signer: Arc<dyn TokenSigner>,
    /// The policies, tried in order ([`Service::select`]).
    pub policies: Vec<Policy>,
    /// Used when no policy matches and the request's reqPolicy allows it.
    pub fallback: Option<Policy>,
    /// Pre-processing filters, outermost first.
    pub preprocess: Vec<Arc<dyn PreFilter>>,
    /// Send a statusString with rejections.
    pub status_text: bool,
    /// Run-time on/off (the admin interface); off: requests are answered 503.
    pub switch: Arc<switch::Switch>,
    /// Serve the public timestamp pages on this service's paths.
    pub public_pages: bool,
    /// RFC 3161, or legacy Authenticode ([`Tsa::issue`] answers either).
    pub protocol: config::Protocol,
}

impl Service {
    /// The policy for a request: the first match, else the fallback.
    pub fn select(&self, req: &TimeStampReq<'_>, meta: &RequestMeta<'_>) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.rules.matches(req, meta))
            .or_else(|| {
                // The fallback keeps its own rules (client, header, path, hash) but takes
                // requests without reqPolicy or naming its own OID.
                self.fallback
                    .as_ref()
                    .filter(|f| f.allows_requested(req) && f.rules.matches_any_policy(req, meta))
            })
    }
}

/// A complete `TimeStampResp` and what it says.
#[derive(Debug)]
pub struct Reply {
    /// The `TimeStampResp` DER; empty when the outcome is an HTTP refusal.
    pub der: Vec<u8>,
    /// What happened, for the audit trail, metrics and the HTTP status.
    pub outcome: Outcome,
    /// Group commit: the reply may leave only once this fires with `true`.
    pub durable: Option<Durable>,
}

impl Reply {
    /// A reply with nothing to wait for.
    pub fn new(der: Vec<u8>, outcome: Outcome) -> Reply {
        Reply {
            der,
            outcome,
            durable: None,
        }
    }

    /// The `TimeStampResp` of a rejection; `with_text`: with its statusString.
    pub fn rejected(r: &Rejection, with_text: bool) -> Reply {
        Reply::new(rejection_response(r, with_text), Outcome::Rejected(r.fail))
    }

    /// The answer to a request stopped by `e`, as [`Error::refusal`] maps it: a rejection,
    /// or an HTTP status with no `TimeStampResp`.
    pub fn refused(e: &Error, with_text: bool) -> Reply {
        match e.refusal() {
            Refusal::Reject(r) => Reply::rejected(&r, with_text),
            Refusal::Http(status) => Reply::new(Vec::new(), Outcome::Refused(status)),
        }
    }

    /// The body of a 200 answer, or the HTTP status to answer instead, once the audit
    /// record is durable (group commit). When its batch could not be committed, the token
    /// is withheld: a token missing from the audit trail is never released, and the
    /// requester gets `systemFailure` instead.
    pub async fn release(self) -> Result<Vec<u8>, u16> {
        if let Some(durable) = self.durable {
            if durable.await != Ok(true) {
                return match Error::AuditFailed.refusal() {
                    Refusal::Reject(r) => Ok(rejection_response(&r, true)),
                    Refusal::Http(status) => Err(status),
                };
            }
        }
        match self.outcome {
            Outcome::Refused(status) => Err(status),
            _ => Ok(self.der),
        }
    }
}

/// Everything needed to issue tokens; shared by every core and worker.
pub struct Tsa {
    /// Every service, indexed by the frontend's routes.
    pub services: Vec<Service>,
    /// The TSA's clock: the clock filters' default source, and genTime for a service
    /// without a clock filter.
    pub clock: Arc<dyn TimeSource>,
    /// The serial-number space shared by every service.
    pub serials: Arc<SerialSpace>,
    /// The audit trail (for its metrics; services' audit filters hold it too).
    pub audit: Arc<dyn AuditSink>,
    /// Every signer in use, by name (for readiness and metrics; policies hold them too).
    pub signers: Vec<(String, Arc<dyn TokenSigner>)>,
}

/// Issues one token through `signer` for a random SHA-256 digest with a nonce and certReq,
/// and verifies it (imprint, nonce, ESS, signature, chain to `trusted`): `stampd hsm
/// selftest` and the admin interface's self-test. Returns the verified facts and how long
/// the issue took.
pub fn selftest(
    name: &str,
    signer: Arc<dyn TokenSigner>,
    trusted: &[Vec<u8>],
) -> Result<(crate::client::verify::Verified, std::time::Duration), String> {
    use crate::client::verify::{self, Expectation};
    let tsa = Tsa::single(name, signer);
    let mut digest = [0u8; 32];
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut digest).map_err(|_| "no randomness")?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness")?;
    nonce[0] |= 1; // a nonce with no leading zero octet
    let started = Instant::now();
    let q = request::encode(HashAlg::Sha256, &digest, None, Some(&nonce), true);
    let reply = tsa.issue(0, &q, &RequestMeta::local("/selftest"));
    let elapsed = started.elapsed();
    let verified = verify::verify(
        &reply.der,
        false,
        &Expectation {
            hash: HashAlg::Sha256,
            digest: digest.to_vec(),
            nonce: Some(nonce.to_vec()),
        },
        trusted,
        &[],
    )?;
    Ok((verified, elapsed))
}

/// The pre-processing onion around `inner`: `before` in the service's order until one stops
/// the request, then `inner` (given that stop, if any) makes the reply, then `after` in
/// reverse order for every filter whose `before` ran.
fn onion<'a>(
    svc: &'a Service,
    x: &mut Exchange<'a>,
    inner: impl FnOnce(Option<Stop>, &mut Exchange<'a>) -> Reply,
) -> Reply {
    let mut entered = 0;
    let mut stopped = None;
    for f in &svc.preprocess {
        entered += 1;
        if let Err(stop) = f.before(x) {
            stopped = Some(stop);
            break;
        }
    }
    let mut reply = inner(stopped, x);
    for f in svc.preprocess[..entered].iter().rev() {
        f.after(x, &mut reply);
    }
    reply
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

impl Tsa {
    /// One service over `signer` with one policy (OID 2.999.1.1, SHA-2 family imprints,
    /// 1 s accuracy, milliseconds, the chain on certReq), no pre-filters and no audit
    /// trail: for `stampd hsm selftest` and the load generator's responder.
    pub fn single(name: &str, signer: Arc<dyn TokenSigner>) -> Tsa {
        use crate::protocol::token::{Accuracy, IncludeCerts, TsaName};
        let oid = Oid::parse("2.999.1.1").expect("a valid OID");
        let template = PolicyTemplate::new(
            &oid,
            Accuracy::from_micros(1_000_000),
            crate::protocol::Precision::Millis,
            TsaName::Subject,
            IncludeCerts::Chain,
            false,
        )
        .expect("the fixed policy encodes");
        let hashes = vec![HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];
        Tsa {
            services: vec![Service {
                name: name.into(),
                signer: Arc::clone(&signer),
                policies: vec![Policy::simple(name, oid, hashes, template)],
                fallback: None,
                preprocess: Vec::new(),
                status_text: true,
                switch: switch::Switches::default().of(name),
                public_pages: false,
                protocol: config::Protocol::Rfc3161,
            }],
            clock: Arc::new(crate::clock::SystemClock),
            serials: Arc::new(serial::SerialSpace::ephemeral(0, 0)),
            audit: Arc::new(crate::audit::Discard),
            signers: vec![(name.to_string(), signer)],
        }
    }

    /// Answers one request body for service `service`. Never panics on any input; every
    /// outcome is a well-formed `TimeStampResp`.
    ///
    /// The service's pre-processing filters wrap the chain: `before` in order, then the
    /// chain, then `after` in reverse order for every filter whose `before` ran.
    pub fn issue(&self, service: usize, body: &[u8], meta: &RequestMeta<'_>) -> Reply {
        let Some(svc) = self.services.get(service) else {
            return Reply::refused(&Error::UnknownService, true);
        };
        if !svc.switch.enabled() {
            // Disabled by an administrator: refused like an overloaded backend, before the
            // body is looked at; the pre-filters count, limit and audit it.
            return Reply::new(
                Vec::new(),
                Outcome::Refused(self.refuse(service, meta, 503)),
            );
        }
        let mut x = Exchange {
            meta,
            body,
            started: Instant::now(),
            time: None,
            policy: None,
            request: None,
            authenticode: None,
            http_refusal: false,
        };
        if svc.protocol == config::Protocol::Authenticode {
            return onion(svc, &mut x, |stopped, x| match stopped {
                Some(Stop::Http(status)) => Reply::new(Vec::new(), Outcome::Refused(status)),
                Some(Stop::Reject(r)) => legacy::refused(&r),
                None => legacy::issue(self, svc, x),
            });
        }
        onion(svc, &mut x, |stopped, x| match stopped {
            Some(Stop::Http(status)) => Reply::new(Vec::new(), Outcome::Refused(status)),
            Some(Stop::Reject(r)) => Reply::rejected(&r, svc.status_text),
            None => self.run_chain(svc, x),
        })
    }

    /// Passes a request of service `service` that the frontend refuses at the HTTP level
    /// (`status`: 405, 411, 413, 415 or 417 for its head, 503 for a body over the
    /// buffered-bodies budget or a full queue, 408 for a body not received in time) through
    /// the service's pre-filters, without its body: the rate limit counts it against the
    /// client, the transaction monitors count it, and the audit filter records it while the
    /// journal is below its disk budget's warning watermark. Returns the status to answer:
    /// `status`, or 429 when the client is over its rate limit.
    pub fn refuse(&self, service: usize, meta: &RequestMeta<'_>, status: u16) -> u16 {
        let Some(svc) = self.services.get(service) else {
            return status;
        };
        let mut x = Exchange {
            meta,
            body: b"",
            started: Instant::now(),
            time: None,
            policy: None,
            request: None,
            authenticode: None,
            http_refusal: true,
        };
        // A rejection needs a request to answer: a filter that would reject (the audit
        // trail out of budget) leaves the HTTP status as it is.
        let reply = onion(svc, &mut x, |stopped, _| match stopped {
            Some(Stop::Http(limited)) => Reply::new(Vec::new(), Outcome::Refused(limited)),
            _ => Reply::new(Vec::new(), Outcome::Refused(status)),
        });
        match reply.outcome {
            Outcome::Refused(answer) => answer,
            _ => status,
        }
    }

    fn run_chain<'a>(&self, svc: &'a Service, x: &mut Exchange<'a>) -> Reply {
        // The service's statusString setting until a policy (timestamp-response) decides.
        let mut status_text = svc.status_text;
        match self.try_issue(svc, x, &mut status_text) {
            Ok(reply) => reply,
            Err(Failure::Client(r)) => Reply::rejected(&r, status_text),
            Err(Failure::Server(e)) => {
                let origin = e.origin().name();
                if matches!(
                    e,
                    Error::Sign(crate::signer::SignError::Unavailable) | Error::TimeUnavailable
                ) {
                    // Every request during an HSM outage or overload, or while the clock is
                    // out of sync: the signer and the clock monitor log the change of state
                    // themselves, and /metrics counts; one line per request would flood.
                    tracing::debug!(service = %svc.name, origin, error = %e, "request failed");
                } else {
                    tracing::error!(service = %svc.name, origin, error = %e, "request failed");
                }
                Reply::refused(&e, status_text)
            }
        }
    }

    /// Prometheus text from every service's transaction monitors and the audit trail.
    pub fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for svc in &self.services {
            for f in &svc.preprocess {
                f.metrics(&mut out);
            }
        }
        let _ = writeln!(out, "# TYPE stampd_service_enabled gauge");
        for svc in &self.services {
            let _ = writeln!(
                out,
                "stampd_service_enabled{{service=\"{}\"}} {}",
                svc.name,
                u8::from(svc.switch.enabled())
            );
        }
        self.audit.metrics(&mut out);
        self.clock.metrics(&mut out);
        for (name, signer) in &self.signers {
            let _ = writeln!(
                out,
                "stampd_signer_up{{signer=\"{name}\"}} {}\n\
                 stampd_signer_cert_not_after_seconds{{signer=\"{name}\"}} {}",
                u8::from(signer.ready()),
                signer.validity().1.unix_secs
            );
            signer.metrics(name, &mut out);
        }
        out
    }

    /// A warning for each signer whose TSA certificate expires within `days` of `now`
    /// (or has expired): what the daily expiry check logs.
    pub fn expiry_warnings(&self, now: crate::protocol::Timestamp, days: u64) -> Vec<String> {
        self.signers
            .iter()
            .filter_map(|(name, signer)| {
                let not_after = signer.validity().1;
                let left = not_after.unix_secs - now.unix_secs;
                let within = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
                (left < within).then(|| {
                    if left <= 0 {
                        format!(
                            "signer {name}: the TSA certificate expired at {}; tokens are refused",
                            not_after.to_rfc3339()
                        )
                    } else {
                        format!(
                            "signer {name}: the TSA certificate expires at {} (in {} days); \
                             renew it and reload",
                            not_after.to_rfc3339(),
                            left / 86_400
                        )
                    }
                })
            })
            .collect()
    }

    /// Readiness: every part a token needs can work now. `Err` names the signers that
    /// cannot sign and an audit trail that cannot take records (its disk budget used up).
    pub fn ready(&self) -> Result<(), String> {
        let down: Vec<&str> = self
            .signers
            .iter()
            .filter(|(_, s)| !s.ready())
            .map(|(n, _)| n.as_str())
            .collect();
        let mut problems = Vec::new();
        if !down.is_empty() {
            problems.push(format!("signer down: {}", down.join(", ")));
        }
        if let Err(e) = self.clock.now() {
            // genTime would be refused with timeNotAvailable.
            problems.push(format!("clock: {e}"));
        }
        if let Err(e) = self.audit.writable() {
            problems.push(e.to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn try_issue<'a>(
        &self,
        svc: &'a Service,
        x: &mut Exchange<'a>,
        status_text: &mut bool,
    ) -> Result<Reply, Failure> {
        let req = request::decode(x.body)?;
        x.request = Some(req.clone());
        let alg = request::check_imprint(&req)?;
        let policy = svc.select(&req, x.meta).ok_or(Rejection::new(
            FailureInfo::UnacceptedPolicy,
            "the requested policy is not offered here",
        ))?;
        x.policy = Some(policy);
        *status_text = policy.status_text_override.unwrap_or(svc.status_text);
        if !policy.hash_algorithms.contains(&alg) {
            return Err(Rejection::new(FailureInfo::BadAlg, "hash algorithm not accepted").into());
        }
        for ext in req.extensions() {
            let recognised = policy.allowed_extensions.iter().any(|(oid, critical_ok)| {
                oid.as_bytes() == ext.oid && (*critical_ok || !ext.critical)
            });
            if !recognised {
                return Err(Rejection::new(
                    FailureInfo::UnacceptedExtension,
                    "request extension not supported",
                )
                .into());
            }
        }
        // The seam: every check above has passed; nothing of the token exists yet.
        let extensions = filters::filter_request(policy, &req, x.meta)?;
        // From the clock filter's reading; the TSA's own clock when the service has none.
        let reading = x
            .time
            .unwrap_or_else(|| self.clock.now())
            .map_err(|_| Error::TimeUnavailable)?;
        // The clock's error bound must fit the accuracy the token declares (ETSI EN 319 421:
        // the time is within the declared accuracy of UTC, or no token).
        let accuracy = policy.template.accuracy_us;
        if accuracy != 0 && reading.bound_us > accuracy {
            return Err(Error::TimeUnavailable.into());
        }
        let gen_time = reading.time;
        let signer = policy.signer.as_ref().unwrap_or(&svc.signer);
        let (not_before, not_after) = signer.validity();
        let t = gen_time.unix_nanos();
        let margin = policy.validity_margin_us as i128 * 1_000;
        if t - margin < not_before.unix_nanos() || t + margin > not_after.unix_nanos() {
            tracing::error!(service = %svc.name, policy = %policy.name, "genTime ± accuracy is outside the TSA certificate's validity: refusing to issue tokens");
            return Err(Error::CertificateNotValidAtGenTime.into());
        }
        let serial = self.serials.next();
        let reservation = signer.reserve().map_err(Error::from)?;
        let template = policy.signer_template.as_ref().unwrap_or(signer.template());
        let prepared = token::prepare(
            template,
            &policy.template,
            &req,
            &serial,
            gen_time,
            &extensions,
        )
        .map_err(|_| Error::CertificateNotValidAtGenTime)?;
        let signature = signer
            .sign(reservation, &prepared.signed_attrs)
            .map_err(Error::from)?;
        let der = token::finish(template, &policy.template, &prepared, &signature);
        Ok(Reply::new(der, Outcome::Granted { serial }))
    }
}

#[cfg(test)]
mod tests;
