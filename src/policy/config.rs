//! `[[service]]`, `[policy.NAME]` and `[chain.NAME]`: the policy layer's configuration and
//! its pure checks. The assembler (`crate::config`) checks what spans sections and builds.

use serde::{Deserialize, Serialize};

use crate::protocol::token::IncludeCerts;
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
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
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
