//! `kind = "audit"`: one record per request (issued or not) with what the operator chose to
//! keep, handed to the audit sink ([`crate::policy::sink`]).

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::sink::Sink;
use super::super::{Outcome, Reply};
use super::{Exchange, PreFilter};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Keep the request DER. Default false.
    pub request: bool,
    /// Keep the response DER. Default false.
    pub response: bool,
    /// Keep the client's IP address. Default true.
    pub client_ip: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            request: false,
            response: false,
            client_ip: true,
        }
    }
}

impl AuditConfig {
    pub fn build(&self, name: &str, sink: Arc<dyn Sink<AuditRecord>>) -> Audit {
        Audit {
            name: name.to_string(),
            config: self.clone(),
            sink,
        }
    }
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub service: String,
    pub policy: Option<String>,
    pub outcome: Outcome,
    pub client: Option<IpAddr>,
    pub request: Option<Vec<u8>>,
    pub response: Option<Vec<u8>>,
    pub latency_us: u64,
}

pub struct Audit {
    name: String,
    config: AuditConfig,
    sink: Arc<dyn Sink<AuditRecord>>,
}

impl PreFilter for Audit {
    fn name(&self) -> &str {
        &self.name
    }

    fn after(&self, x: &Exchange<'_>, reply: &Reply) {
        let c = &self.config;
        self.sink.put(AuditRecord {
            service: x.service.to_string(),
            policy: x.policy.clone(),
            outcome: reply.outcome.clone(),
            client: c.client_ip.then_some(x.meta.client),
            request: c.request.then(|| x.body.to_vec()),
            response: c.response.then(|| reply.der.clone()),
            latency_us: u64::try_from(x.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
}
