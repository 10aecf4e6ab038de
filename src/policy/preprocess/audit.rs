//! `kind = "audit"`: one record per request (issued or not) with what the operator chose to
//! keep, handed to the audit trail ([`crate::audit`]). With group commit the reply waits
//! until the record is durable; when the trail cannot take the record the request is
//! refused with 503, so no token ever leaves without its record.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::Reply;
use super::{Exchange, PreFilter, Stop};
use crate::audit::{AuditSink, Durability, Record, RequestDigest};
use crate::clock::{SystemClock, TimeSource};
use crate::error::Error;
use crate::outcome::Outcome;
use crate::protocol::{request, HashAlg, Timestamp};

/// The most of a refused request's body a record may keep, in bytes.
const MAX_REFUSED_REQUEST_BYTES: usize = 4096;

/// `[preprocess.NAME]` with `kind = "audit"`: what each record keeps, and when a reply may
/// leave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFilterConfig {
    /// Keep the request DER. Default false. Of a request that got no token, only its first
    /// `refused_request_bytes` bytes are kept, so refused requests cannot fill the journal.
    pub request: bool,
    /// With `request = true`: how many bytes of a refused request's body a record keeps
    /// (0 to 4096). Default 256.
    pub refused_request_bytes: usize,
    /// Keep the response DER. Default false (the storage filter keeps issued tokens).
    pub response: bool,
    /// Keep the client's IP address. Default true.
    pub client_ip: bool,
    /// Keep the subject of the client's TLS certificate (listeners with `tls.client_ca`).
    /// Default true.
    pub client_subject: bool,
    /// `group-commit` or `async`; default: `[audit] durability`.
    pub durability: Option<Durability>,
}

impl Default for AuditFilterConfig {
    fn default() -> Self {
        AuditFilterConfig {
            request: false,
            refused_request_bytes: 256,
            response: false,
            client_ip: true,
            client_subject: true,
            durability: None,
        }
    }
}

impl AuditFilterConfig {
    /// Checks the options (pure).
    pub fn validate(&self) -> Vec<String> {
        if self.refused_request_bytes > MAX_REFUSED_REQUEST_BYTES {
            vec![format!(
                "refused_request_bytes: at most {MAX_REFUSED_REQUEST_BYTES} (a refused request's record is bounded)"
            )]
        } else {
            Vec::new()
        }
    }

    /// The filter of service `service` (signed by `key_id`; `authenticode`: a legacy
    /// Authenticode service), with the trail's default durability `durability`.
    pub fn build(
        &self,
        name: &str,
        service: &str,
        key_id: &str,
        authenticode: bool,
        durability: Durability,
        sink: Arc<dyn AuditSink>,
    ) -> Audit {
        Audit {
            authenticode,
            name: name.to_string(),
            service: service.into(),
            key_id: key_id.into(),
            config: self.clone(),
            group_commit: self.durability.unwrap_or(durability) == Durability::GroupCommit,
            sink,
        }
    }
}

/// The audit filter: in `after`, builds one [`Record`] per request and submits it to the
/// [`AuditSink`]; with group commit the reply carries the wait for durability.
pub struct Audit {
    name: String,
    service: Arc<str>,
    key_id: Arc<str>,
    config: AuditFilterConfig,
    group_commit: bool,
    authenticode: bool,
    sink: Arc<dyn AuditSink>,
}

impl PreFilter for Audit {
    fn name(&self) -> &str {
        &self.name
    }

    /// Refuses the request before anything is signed while the trail cannot take records
    /// (the journal's disk budget is used up): `systemFailure`, never a token without one.
    fn before(&self, _x: &mut Exchange<'_>) -> Result<(), Stop> {
        self.sink.writable().map_err(Stop::from)
    }

    fn after(&self, x: &Exchange<'_>, reply: &mut Reply) {
        let c = &self.config;
        // Decoded by the chain; decoded here when a pre-filter stopped the request first.
        let req = match &x.request {
            Some(r) => Some(r.clone()),
            None => request::decode(x.body).ok(),
        };
        let granted = matches!(reply.outcome, Outcome::Granted { .. });
        if !granted && self.sink.writable().is_err() {
            // Out of disk budget: a refusal's record is kept only within the budget (an
            // issued token's record is always submitted; its batch fails if there is no room).
            return;
        }
        if x.http_refusal && !self.sink.roomy() {
            // An HTTP-level refusal is recorded only below the warning watermark: garbage
            // cannot use up the room that tokens' records need. (It is still counted in
            // stampd_http_refusals_total.)
            return;
        }
        // The signer's key id, for issued tokens only.
        let key_id = || match x.policy.and_then(|p| p.signer.as_ref()) {
            Some(s) => s.key_id().clone(),
            None => self.key_id.clone(),
        };
        let keep_response = c.response || (granted && x.policy.is_some_and(|p| p.archive));
        let record = Record {
            // genTime for issued tokens (the clock filter's reading); otherwise the trusted
            // time, or the system time when there was none.
            //
            // Every record's time is cut to the precision of the policy that took the request
            // (for an issued token exactly its genTime), or to milliseconds (the default
            // gen_time_precision) before one did, so records of grants and refusals compare.
            time: {
                let t = match x.time {
                    Some(Ok(r)) => r.time,
                    _ => SystemClock.now().map_or(
                        Timestamp {
                            unix_secs: 0,
                            nanos: 0,
                        },
                        |r| r.time,
                    ),
                };
                let unit_us = x.policy.map_or(1_000, |p| p.template.precision.unit_us());
                let unit = (unit_us * 1_000) as u32;
                Timestamp {
                    nanos: t.nanos - t.nanos % unit,
                    ..t
                }
            },
            outcome: reply.outcome.clone(),
            service: self.service.clone(),
            policy: x.policy.map(|p| p.name.clone()),
            policy_oid: x.policy.map(|p| p.oid_text.clone()),
            hash: req
                .as_ref()
                .and_then(|r| HashAlg::from_oid_bytes(r.hash_oid))
                .or(x.authenticode.as_ref().map(|(h, _)| *h)),
            // Only an imprint of its algorithm's length: a refused request's digest can be
            // as long as the body (a 65,000-byte "SHA-256" digest is valid DER).
            imprint: req
                .as_ref()
                .filter(|r| {
                    HashAlg::from_oid_bytes(r.hash_oid)
                        .is_some_and(|h| h.digest_len() == r.digest.len())
                })
                .map(|r| r.digest.to_vec())
                .or_else(|| x.authenticode.as_ref().map(|(_, d)| d.clone())),
            nonce: req.as_ref().and_then(|r| r.nonce.map(<[u8]>::to_vec)),
            cert_req: req.as_ref().is_some_and(|r| r.cert_req),
            client: c.client_ip.then_some(x.meta.client),
            client_subject: x.meta.client_subject.filter(|_| c.client_subject).cloned(),
            key_id: granted.then(key_id),
            latency_us: u64::try_from(x.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            request: (c.request && !x.http_refusal).then(|| {
                let keep = if granted {
                    x.body.len()
                } else {
                    x.body.len().min(c.refused_request_bytes)
                };
                x.body[..keep].to_vec()
            }),
            response: keep_response.then(|| reply.der.clone()),
            // A refusal keeps at most a prefix of its body: the digest and length identify
            // the whole of it (an issued token's record has the imprint and serial instead).
            authenticode: self.authenticode,
            request_digest: (!granted && !x.http_refusal).then(|| RequestDigest {
                len: u32::try_from(x.body.len()).unwrap_or(u32::MAX),
                sha256: request::sha256(x.body),
            }),
        };
        match self.sink.submit(record, self.group_commit) {
            Ok(durable) => reply.durable = durable,
            Err(_) => {
                // The trail cannot take the record: nothing leaves without one. (Counted in
                // stampd_audit_refused_total; not logged per request on the frontend core.)
                *reply = Reply::refused(&Error::AuditFull, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_request_prefix_is_bounded() {
        assert!(AuditFilterConfig::default().validate().is_empty());
        let big = AuditFilterConfig {
            refused_request_bytes: MAX_REFUSED_REQUEST_BYTES + 1,
            ..AuditFilterConfig::default()
        };
        assert!(big.validate()[0].contains("refused_request_bytes: at most 4096"));
    }
}
