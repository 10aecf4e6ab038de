//! `kind = "audit"`: one record per request (issued or not) with what the operator chose to
//! keep, handed to the audit trail ([`crate::audit`]). With group commit the reply waits
//! until the record is durable; when the trail cannot take the record the request is
//! refused with 503, so no token ever leaves without its record.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::Reply;
use super::{Exchange, PreFilter};
use crate::audit::{AuditSink, Durability, Record};
use crate::clock::{SystemClock, TimeSource};
use crate::error::Error;
use crate::outcome::Outcome;
use crate::protocol::{request, HashAlg, Timestamp};

/// `[preprocess.NAME]` with `kind = "audit"`: what each record keeps, and when a reply may
/// leave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFilterConfig {
    /// Keep the request DER. Default false.
    pub request: bool,
    /// Keep the response DER. Default false (the storage filter keeps issued tokens).
    pub response: bool,
    /// Keep the client's IP address. Default true.
    pub client_ip: bool,
    /// `group-commit` or `async`; default: `[audit] durability`.
    pub durability: Option<Durability>,
}

impl Default for AuditFilterConfig {
    fn default() -> Self {
        AuditFilterConfig {
            request: false,
            response: false,
            client_ip: true,
            durability: None,
        }
    }
}

impl AuditFilterConfig {
    /// The filter of service `service` (signed by `key_id`), with the trail's default
    /// durability `durability`.
    pub fn build(
        &self,
        name: &str,
        service: &str,
        key_id: &str,
        durability: Durability,
        sink: Arc<dyn AuditSink>,
    ) -> Audit {
        Audit {
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
    sink: Arc<dyn AuditSink>,
}

impl PreFilter for Audit {
    fn name(&self) -> &str {
        &self.name
    }

    fn after(&self, x: &Exchange<'_>, reply: &mut Reply) {
        let c = &self.config;
        // Decoded by the chain; decoded here when a pre-filter stopped the request first.
        let req = match &x.request {
            Some(r) => Some(r.clone()),
            None => request::decode(x.body).ok(),
        };
        let granted = matches!(reply.outcome, Outcome::Granted { .. });
        // The signer's key id, for issued tokens only.
        let key_id = || match x.policy.and_then(|p| p.signer.as_ref()) {
            Some(s) => s.key_id().clone(),
            None => self.key_id.clone(),
        };
        let keep_response = c.response || (granted && x.policy.is_some_and(|p| p.archive));
        let record = Record {
            // genTime for issued tokens (the clock filter's reading); otherwise the trusted
            // time, or the system time when there was none.
            time: match (x.time, x.policy) {
                // Exactly the token's genTime: the reading cut to the policy's precision.
                (Some(Ok(t)), Some(p)) if granted => {
                    let unit = (p.template.precision.unit_us() * 1_000) as u32;
                    Timestamp {
                        nanos: t.nanos - t.nanos % unit,
                        ..t
                    }
                }
                (Some(Ok(t)), _) => t,
                _ => SystemClock.now().unwrap_or(Timestamp {
                    unix_secs: 0,
                    nanos: 0,
                }),
            },
            outcome: reply.outcome.clone(),
            service: self.service.clone(),
            policy: x.policy.map(|p| p.name.clone()),
            policy_oid: x.policy.map(|p| p.oid_text.clone()),
            hash: req
                .as_ref()
                .and_then(|r| HashAlg::from_oid_bytes(r.hash_oid)),
            imprint: req.as_ref().map(|r| r.digest.to_vec()),
            nonce: req.as_ref().and_then(|r| r.nonce.map(<[u8]>::to_vec)),
            cert_req: req.as_ref().is_some_and(|r| r.cert_req),
            client: c.client_ip.then_some(x.meta.client),
            key_id: granted.then(key_id),
            latency_us: u64::try_from(x.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            request: c.request.then(|| x.body.to_vec()),
            response: keep_response.then(|| reply.der.clone()),
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
