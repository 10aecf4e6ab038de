//! `[[service]]`, `[policy.NAME]` and `[chain.NAME]`: the policy layer's configuration and
//! its pure checks. The assembler (`crate::config`) checks what spans sections and builds.

use std::net::SocketAddr;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use super::filters::accuracy::parse_duration_us;
use super::mapper::{Cidr, Rules, StringMatch};
use super::settings::Settings;
use crate::protocol::oid::Oid;
use crate::protocol::token::EssCertId;
use crate::protocol::token::{Accuracy, IncludeCerts, TsaName};
use crate::protocol::{HashAlg, Precision};

/// `[chain.NAME]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Filter names in order: built-in kinds (`nonce`, `accuracy`, ...) or `[filter.NAME]`s.
    pub filters: Vec<String>,
}

/// `[[service]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Unique name, used in logs. Default `default`.
    pub name: String,
    /// Listen address, or a list of them. Services may share an address (on different
    /// paths). Default `127.0.0.1:3180`.
    pub listen: OneOrMany,
    /// URL path requests are POSTed to, or a list of them. Default `/tsa`.
    pub path: OneOrMany,
    /// Serve this service. A disabled service is validated but not served. Default true.
    pub enabled: bool,
    /// Policy used when none of `policies` matches a request, instead of answering
    /// `unacceptedPolicy`. Default: none.
    pub fallback_policy: Option<String>,
    /// Pre-processing filters wrapping every chain, outermost first: built-in names
    /// (`clock`, `rate-limit`, `transaction-monitor`, `audit`) or `[preprocess.NAME]`s.
    /// Exactly one clock and one audit filter are needed (the audit filter may be left out
    /// only with `[audit] store = "none"`). Default `["clock", "audit"]`.
    pub preprocess: Vec<String>,
    /// Name of a `[signer.NAME]`. Default `main`.
    pub signer: String,
    /// Policy names, tried in order; the first whose `match` accepts the request is used.
    /// Empty or left out: `["default"]`, the file's `[policy.default]` or, without one, the
    /// built-in default policy (OID 2.999.1.1, the standard chain).
    pub policies: Vec<String>,
    /// Send a statusString with rejections. Default true.
    pub status_text: bool,
    /// HTTPS on this service's listen addresses: `{ cert = "...", key = "..." }`.
    /// Services sharing an address must agree. Default: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// The public timestamp pages on this service's paths: a browser's `GET` of the path
    /// shows what this TSA is, and lets a requester stamp a file (hashed in the browser)
    /// and verify a token (docs/web.md). `false`: a `GET` is answered 405, as before.
    /// Default true.
    pub public_pages: bool,
    /// What the service answers: `rfc3161` (default) or `authenticode`, the legacy
    /// Microsoft timestamps of `signtool /t` and `osslsigncode -t` (base64 in and out; the
    /// service's first policy names the records and may choose the signer; docs/authenticode.md).
    pub protocol: Protocol,
}

/// `[[service]] protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RFC 3161 `TimeStampReq` / `TimeStampResp`.
    #[default]
    Rfc3161,
    /// Legacy Authenticode `TimeStampRequest` / PKCS#7 countersignature, base64.
    Authenticode,
}

/// `tls = { cert = "...", key = "..." }` on a `[[service]]`: the listener speaks HTTPS
/// (TLS 1.2 and 1.3, ALPN `http/1.1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate, then its chain, PEM. Relative to `server.data_dir`.
    pub cert: std::path::PathBuf,
    /// Its private key, PEM (PKCS#8, SEC1 or PKCS#1), in a file only the server may read
    /// (mode 0600 or 0400). Relative to `server.data_dir`.
    pub key: std::path::PathBuf,
    /// Client-certificate authentication: the CA certificates (PEM) a client's certificate
    /// must chain to. A connection without a valid client certificate is refused at the
    /// handshake; the certificate's subject is the `client_subject` policies match on and
    /// the audit records carry. Relative to `server.data_dir`. Default: no client
    /// certificates asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<std::path::PathBuf>,
}

impl TlsConfig {
    /// The files resolved against the data directory (an absolute path stays as it is).
    pub fn resolved(&self, data_dir: &std::path::Path) -> TlsConfig {
        TlsConfig {
            cert: data_dir.join(&self.cert),
            key: data_dir.join(&self.key),
            client_ca: self.client_ca.as_ref().map(|c| data_dir.join(c)),
        }
    }
}

fn default_policy_names() -> Vec<String> {
    vec!["default".into()]
}

fn yes() -> bool {
    true
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            name: "default".into(),
            listen: OneOrMany::One("127.0.0.1:3180".into()),
            path: OneOrMany::One("/tsa".into()),
            enabled: true,
            fallback_policy: None,
            preprocess: vec!["clock".into(), "audit".into()],
            signer: "main".into(),
            policies: default_policy_names(),
            status_text: true,
            tls: None,
            public_pages: true,
            protocol: Protocol::Rfc3161,
        }
    }
}

/// `[policy.NAME]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The TSA policy OID stamped into tokens. Required in every `[policy.NAME]`; the
    /// embedded default policy uses `2.999.1.1` (the example arc: use your own).
    pub oid: String,
    /// Which requests this policy takes.
    #[serde(default, rename = "match")]
    pub match_: MatchConfig,
    /// Accepted message-imprint hash algorithms. Default: sha256, sha384, sha512, sha3-256,
    /// sha3-384, sha3-512 (add `sha1` only for legacy clients).
    #[serde(default = "default_hashes")]
    pub hash_algorithms: Vec<HashAlg>,
    /// Declared accuracy of genTime, e.g. `1s`, `500ms`, `100us`; `0s` omits it. Default `1s`.
    #[serde(default = "default_accuracy")]
    pub accuracy: String,
    /// Fraction of a second in genTime: `s`, `ms` (default) or `us`.
    #[serde(default)]
    pub gen_time_precision: Precision,
    /// Put the TSA name (certificate subject) into TSTInfo. Default true.
    #[serde(default = "yes")]
    pub tsa_name: bool,
    /// With certReq: `signer` (TSA certificate only) or `chain` (default: every certificate
    /// in the signer's cert file).
    #[serde(default)]
    pub certs: IncludeCerts,
    /// Mark tokens as qualified electronic time stamps: a qcStatements extension with
    /// esi4-qtstStatement-1 (0.4.0.19422.1.1) in TSTInfo (ETSI EN 319 422 §9.1). Only for a
    /// qualified TSA. Default false.
    #[serde(default)]
    pub qualified: bool,
    /// The filter chain: `standard` (default, built in) or a `[chain.NAME]`. Filters take
    /// the settings above unless a `[filter.NAME]` overrides them.
    #[serde(default = "standard")]
    pub chain: String,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `key = "value"`.
    One(String),
    /// `key = ["a", "b"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, one or many alike.
    pub fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// `match = { ... }` of a policy: every rule given must match; any value of a list may.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Accepted reqPolicy values: `absent` (no reqPolicy) and/or the policy's own OID.
    /// Default `["absent", <the policy's oid>]`.
    pub requested_policy: Option<Vec<String>>,
    /// Message-imprint hash algorithms this policy takes, e.g. `["sha512"]`. Default: any.
    pub hash_algorithm: Option<Vec<HashAlg>>,
    /// Client networks, e.g. `["10.0.0.0/8", "::1"]`. Default: any.
    pub client: Option<Vec<String>>,
    /// Request paths (exact). Default: any of the service's paths.
    pub path: Option<Vec<String>>,
    /// Request path as a regular expression (instead of `path`).
    pub path_regex: Option<String>,
    /// An HTTP header rule: `{ name = "X-Tenant", value = ["acme"] }` or
    /// `{ name = "X-Tenant", regex = "^acme-" }`.
    pub header: Option<HeaderMatchConfig>,
    /// The TLS client certificate's subject (RFC 4514, most significant last, e.g.
    /// `"CN=build-7,O=Acme"`), exact. Only on services with `tls.client_ca`.
    pub client_subject: Option<Vec<String>>,
    /// The client certificate's subject as a regular expression (instead of
    /// `client_subject`), e.g. `",O=Acme$"`.
    pub client_subject_regex: Option<String>,
}

/// `match.header`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact accepted values.
    pub value: Option<Vec<String>>,
    /// Accepted values as a regular expression.
    pub regex: Option<String>,
}

/// Every known hash but SHA-1 (collisions are practical: opt in only for legacy clients).
fn default_hashes() -> Vec<HashAlg> {
    HashAlg::ALL
        .into_iter()
        .filter(|h| *h != HashAlg::Sha1)
        .collect()
}

fn standard() -> String {
    "standard".into()
}

fn default_accuracy() -> String {
    "1s".into()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            oid: "2.999.1.1".into(),
            match_: MatchConfig::default(),
            hash_algorithms: default_hashes(),
            accuracy: default_accuracy(),
            gen_time_precision: Precision::Millis,
            tsa_name: true,
            certs: IncludeCerts::Chain,
            qualified: false,
            chain: standard(),
        }
    }
}
/// A policy's own values, parsed: what [`PolicyConfig::parse`] gives the assembler, which
/// then compiles the chain over [`ParsedPolicy::defaults`].
#[derive(Debug, Clone)]
pub struct ParsedPolicy {
    /// The policy OID stamped into tokens.
    pub oid: Oid,
    /// The compiled `match`.
    pub rules: Rules,
    /// The policy-level settings the chain's filters start from.
    pub defaults: Settings,
}

impl PolicyConfig {
    /// Checks and parses the policy's own keys (pure): its OID, `match` rules (requested
    /// policies, networks, paths, regular expressions, header rule), hash algorithms and
    /// accuracy. Every message starts with `policy.NAME`.
    pub fn parse(&self, name: &str) -> Result<ParsedPolicy, Vec<String>> {
        let at = format!("policy.{name}");
        let mut errors = Vec::new();
        let oid = Oid::parse(&self.oid);
        if oid.is_none() {
            errors.push(format!(
                "{at}.oid: `{}` is not a dotted OID such as \"2.999.1.1\"",
                self.oid
            ));
        }
        let m = &self.match_;
        let mut requested = Vec::new();
        for r in m.requested_policy.iter().flatten() {
            if r == "absent" {
                continue;
            }
            match (Oid::parse(r), &oid) {
                (None, _) => errors.push(format!(
                    "{at}.match.requested_policy: `{r}` is neither \"absent\" nor a dotted OID"
                )),
                // RFC 3161 §2.4.2: when reqPolicy is present the token's policy MUST
                // equal it, so a policy can only answer requests for its own OID.
                (Some(req), Some(own)) if req != *own => errors.push(format!(
                    "{at}.match.requested_policy: `{r}` differs from this policy's oid `{}`; \
                     a token must carry the requested policy (RFC 3161 §2.4.2), so list only \
                     \"absent\" and \"{}\" here, and define a separate policy for `{r}`",
                    self.oid, self.oid
                )),
                (Some(req), _) => requested.push(req),
            }
        }
        let mut client = Vec::new();
        for c in m.client.iter().flatten() {
            match Cidr::parse(c) {
                Some(net) => client.push(net),
                None => errors.push(format!(
                    "{at}.match.client: `{c}` is not an address or network; write e.g. \"10.0.0.0/8\" or \"::1\""
                )),
            }
        }
        let path = string_rule(&at, "path", &m.path, &m.path_regex, &mut errors);
        let client_subject = string_rule(
            &at,
            "client_subject",
            &m.client_subject,
            &m.client_subject_regex,
            &mut errors,
        );
        let mut header = None;
        if let Some(h) = &m.header {
            match (&h.value, &h.regex) {
                (Some(v), None) => header = Some((h.name.clone(), StringMatch::Exact(v.clone()))),
                (None, Some(r)) => match Regex::new(r) {
                    Ok(re) => header = Some((h.name.clone(), StringMatch::Regex(re))),
                    Err(e) => errors.push(format!(
                        "{at}.match.header.regex: invalid regular expression: {e}"
                    )),
                },
                _ => errors.push(format!(
                    "{at}.match.header: give exactly one of `value = [...]` or `regex = \"...\"`"
                )),
            }
        }
        if m.hash_algorithm.as_ref().is_some_and(|h| h.is_empty()) {
            errors.push(format!("{at}.match.hash_algorithm: empty list matches nothing; remove it or list algorithms"));
        }
        if self.hash_algorithms.is_empty() {
            errors.push(format!(
                "{at}.hash_algorithms: list at least one, e.g. [\"sha256\"]"
            ));
        }
        let accuracy = parse_duration_us(&self.accuracy);
        if accuracy.is_none() {
            errors.push(format!(
                "{at}.accuracy: `{}` is not a duration; write e.g. \"1s\", \"500ms\" or \"100us\"",
                self.accuracy
            ));
        }
        let (Some(oid), Some(accuracy), true) = (oid, accuracy, errors.is_empty()) else {
            return Err(errors);
        };
        let requested_policy = match &m.requested_policy {
            None => (true, vec![oid.clone()]),
            Some(list) => (list.iter().any(|s| s == "absent"), requested),
        };
        let rules = Rules {
            requested_policy: Some(requested_policy),
            hash_algorithm: m.hash_algorithm.clone(),
            client: m.client.as_ref().map(|_| client),
            path,
            header,
            client_subject,
        };
        let defaults = Settings {
            oid: oid.clone(),
            hash_algorithms: self.hash_algorithms.clone(),
            allowed_extensions: Vec::new(),
            precision: self.gen_time_precision,
            accuracy: Accuracy::from_micros(accuracy),
            tsa_name: if self.tsa_name {
                TsaName::Subject
            } else {
                TsaName::Omit
            },
            qualified: self.qualified,
            check_validity: false,
            signer: None,
            certs: self.certs,
            ess: EssCertId::V2(HashAlg::Sha256),
            status_text: None,
            archive: false,
        };
        Ok(ParsedPolicy {
            oid,
            rules,
            defaults,
        })
    }
}

/// A string rule given as `KEY = [exact values]` or `KEY_regex = "..."` (not both).
fn string_rule(
    at: &str,
    key: &str,
    exact: &Option<Vec<String>>,
    regex: &Option<String>,
    errors: &mut Vec<String>,
) -> Option<StringMatch> {
    match (exact, regex) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "{at}.match: give `{key}` or `{key}_regex`, not both"
            ));
            None
        }
        (Some(v), None) => Some(StringMatch::Exact(v.clone())),
        (None, Some(r)) => match Regex::new(r) {
            Ok(re) => Some(StringMatch::Regex(re)),
            Err(e) => {
                errors.push(format!(
                    "{at}.match.{key}_regex: invalid regular expression: {e}"
                ));
                None
            }
        },
        (None, None) => None,
    }
}

/// The addresses of a service's `listen` values, `None` where one is not an address.
pub type Addrs = Vec<Option<SocketAddr>>;

impl ServiceConfig {
    /// Checks `listen` and `path` (pure): at least one of each, addresses, paths that start
    /// with `/` and are not reserved. Gives each listen value's address.
    pub fn check_endpoints(&self, at: &str, errors: &mut Vec<String>) -> Addrs {
        if self.listen.values().is_empty() || self.path.values().is_empty() {
            errors.push(format!(
                "{at}: listen and path need at least one value each"
            ));
        }
        let addrs = self
            .listen
            .values()
            .iter()
            .map(|listen| {
                let addr = listen.parse::<SocketAddr>().ok();
                if addr.is_none() {
                    errors.push(format!(
                        "{at}.listen: `{listen}` is not an address; write e.g. \"127.0.0.1:3180\" or \"[::1]:3180\""
                    ));
                }
                addr
            })
            .collect();
        for path in self.path.values() {
            if !path.starts_with('/') || path.contains('?') || path.contains(' ') {
                errors.push(format!(
                    "{at}.path: `{path}` must start with `/`, e.g. \"/tsa\""
                ));
            }
            if path == "/health" || path == "/ready" || path == "/metrics" {
                errors.push(format!(
                    "{at}.path: `{path}` is reserved (health, readiness and metrics)"
                ));
            }
        }
        addrs
    }
}
