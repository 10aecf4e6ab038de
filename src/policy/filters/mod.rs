//! The chain filters, one file each: its configuration (`[filter.NAME]` with `kind = ...`;
//! every field optional, `None` keeps the policy-level default), what it contributes to the
//! compiled policy, its per-request part if it has one, and its tests. See [`super::chain`]
//! for placement rules.
//!
//! Every kind is listed once, in the `filter_kinds!` invocation below; the macro writes
//! [`FilterKind`] (names, built-in or not, why required) and [`FilterConfig`] (the serde enum
//! of `[filter.NAME]` tables and its dispatch to each kind's [`ChainFilter`]).
//!
//! Most filters only contribute settings when the chain is compiled. A filter with a
//! [`RequestFilter`] also runs once per request, at the fixed point its contract describes.

pub mod accuracy;
pub mod certificate_verifier;
pub mod gen_time;
pub mod imprint_list;
pub mod markers;
pub mod message_imprint;
pub mod qualified_statement;
pub mod request_validation;
pub mod storage;
pub mod timestamp_response;
pub mod timestamp_token;
pub mod tsa_name;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::mapper::RequestMeta;
use super::settings::Settings;
use super::Policy;
use crate::protocol::oid::Oid;
use crate::protocol::token::Extensions;
use crate::protocol::{Rejection, TimeStampReq};

/// What one filter kind's configuration does. Every part has a no-op default: most kinds
/// only [`apply`](ChainFilter::apply) their options to the compiled policy.
pub trait ChainFilter {
    /// Why a chain cannot do without this filter, if it cannot (checked at load).
    const REQUIRED: Option<&'static str> = None;
    /// Whether the kind's name alone is a filter (`filters = ["nonce"]`, options at their
    /// defaults) and the kind is part of the standard chain. `false` for a kind that cannot
    /// work without options: only a `[filter.NAME]` brings it into a chain.
    const BUILTIN: bool = true;

    /// Pure checks of the filter's own options; each message is prefixed by the caller.
    fn validate(&self) -> Vec<String> {
        Vec::new()
    }

    /// The signer this filter names, if any (checked against `[signer.*]`).
    fn signer(&self) -> Option<&str> {
        None
    }

    /// Contributes this filter's part to the compiled policy (pure: validation runs it too).
    fn apply(&self, _s: &mut Settings) {}

    /// The part that runs per request, built when the configuration is built (at start, not
    /// by `check-config`): it may read files, relative paths resolving against `data_dir`.
    /// `Err` is a message for the operator, prefixed by the caller.
    fn request_filter(&self, _data_dir: &Path) -> Result<Option<Arc<dyn RequestFilter>>, String> {
        Ok(None)
    }
}

/// Why the three closing filters are required.
const BUILDS_THE_RESPONSE: &str = "it builds the response";

/// Writes [`FilterKind`] and [`FilterConfig`] from one list of `Kind = "name" => Config`,
/// each with its doc comment, in the standard chain's order. The doc is required (the
/// pattern matches no kind without one); it documents the [`FilterKind`] variant, and the
/// [`FilterConfig`] variant links to it.
macro_rules! filter_kinds {
    ($($(#[doc = $doc:literal])+ $kind:ident = $name:literal => $config:ty,)+) => {
        /// Every kind of chain filter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FilterKind {
            $($(#[doc = $doc])+ $kind,)+
        }

        impl FilterKind {
            /// Every kind, in the standard chain's order.
            pub const ALL: &'static [FilterKind] = &[$(FilterKind::$kind,)+];

            /// The name used in configuration files.
            pub fn name(self) -> &'static str {
                match self {
                    $(FilterKind::$kind => $name,)+
                }
            }

            /// The built-in filter called `name` (only kinds usable by their name alone).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|k| k.is_builtin() && k.name() == name)
            }

            /// Why a chain cannot do without this filter, if it cannot.
            pub fn required_because(self) -> Option<&'static str> {
                match self {
                    $(FilterKind::$kind => <$config as ChainFilter>::REQUIRED,)+
                }
            }

            /// See [`ChainFilter::BUILTIN`].
            pub fn is_builtin(self) -> bool {
                match self {
                    $(FilterKind::$kind => <$config as ChainFilter>::BUILTIN,)+
                }
            }
        }

        /// `[filter.NAME]`: a configured instance of one filter kind.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum FilterConfig {
            $(
                #[doc = concat!("`kind = \"", $name, "\"`: the options of [`FilterKind::",
                    stringify!($kind), "`].")]
                #[serde(rename = $name)]
                $kind($config),
            )+
        }

        impl FilterConfig {
            /// The kind this table configures (its `kind = "..."`).
            pub fn kind(&self) -> FilterKind {
                match self {
                    $(FilterConfig::$kind(_) => FilterKind::$kind,)+
                }
            }

            /// The built-in instance of a kind: every option left to the policy's defaults.
            pub fn builtin(kind: FilterKind) -> Self {
                match kind {
                    $(FilterKind::$kind => FilterConfig::$kind(Default::default()),)+
                }
            }

            /// See [`ChainFilter::validate`].
            pub fn validate(&self) -> Vec<String> {
                match self {
                    $(FilterConfig::$kind(c) => c.validate(),)+
                }
            }

            /// See [`ChainFilter::signer`].
            pub fn signer(&self) -> Option<&str> {
                match self {
                    $(FilterConfig::$kind(c) => c.signer(),)+
                }
            }

            /// See [`ChainFilter::apply`].
            pub fn apply(&self, s: &mut Settings) {
                match self {
                    $(FilterConfig::$kind(c) => c.apply(s),)+
                }
            }

            /// See [`ChainFilter::request_filter`].
            pub fn request_filter(
                &self,
                data_dir: &Path,
            ) -> Result<Option<Arc<dyn RequestFilter>>, String> {
                match self {
                    $(FilterConfig::$kind(c) => c.request_filter(data_dir),)+
                }
            }
        }
    };
}

filter_kinds! {
    /// `request-validation`: the request's version (v1, else `badRequest`) and its
    /// extensions, an unrecognised one refused with `unacceptedExtension` (RFC 3161 §2.4.2).
    RequestValidation = "request-validation" => request_validation::RequestValidationConfig,
    /// `message-imprint`: the imprint's hash algorithm on the allow-list (`badAlg`) and its
    /// digest of that algorithm's length (`badDataFormat`).
    MessageImprint = "message-imprint" => message_imprint::MessageImprintConfig,
    /// `tsa-policy`: TSTInfo.policy, the policy's OID (RFC 3161 §2.4.2).
    TsaPolicy = "tsa-policy" => markers::TsaPolicyConfig,
    /// `gen-time`: genTime from the time source at the policy's precision (RFC 3161 §2.4.2);
    /// `timeNotAvailable` without a trusted time.
    GenTime = "gen-time" => gen_time::GenTimeConfig,
    /// `accuracy`: TSTInfo.accuracy, the declared accuracy of genTime; absent without it.
    Accuracy = "accuracy" => accuracy::AccuracyConfig,
    /// `nonce`: echoes the request's nonce byte for byte (RFC 3161 §2.4.2: a MUST).
    Nonce = "nonce" => markers::NonceConfig,
    /// `serial-number`: a serialNumber unique for every token of this TSA (RFC 3161 §2.4.2),
    /// laid out from `server.node_id` and the epoch.
    SerialNumber = "serial-number" => markers::SerialNumberConfig,
    /// `tsa-name`: TSTInfo.tsa, the TSA certificate's subject or an explicit name; absent
    /// without it.
    TsaName = "tsa-name" => tsa_name::TsaNameConfig,
    /// `qualified-statement`: qcStatements with esi4-qtstStatement-1 in every token, which
    /// makes it a qualified electronic time stamp (ETSI EN 319 422 §9.1).
    QualifiedStatement = "qualified-statement" => qualified_statement::QualifiedStatementConfig,
    /// `certificate-verifier`: refuses to sign (`systemFailure`) when genTime ± accuracy falls
    /// outside the TSA certificate's validity.
    CertificateVerifier = "certificate-verifier" => certificate_verifier::CertificateVerifierConfig,
    /// `imprint-list`: refuses requests by message imprint against a deny or allow list
    /// (`badRequest`); only as a `[filter.NAME]` with its `file`.
    ImprintList = "imprint-list" => imprint_list::ImprintListConfig,
    /// `tst-info`: assembles TSTInfo in DER field order (RFC 3161 §2.4.2).
    TstInfo = "tst-info" => markers::TstInfoConfig,
    /// `timestamp-token`: the CMS SignedData around TSTInfo (RFC 3161 §2.4.2): signer,
    /// certificates with certReq, ESS signing-certificate attribute (RFC 5816).
    TimestampToken = "timestamp-token" => timestamp_token::TimestampTokenConfig,
    /// `timestamp-response`: the TimeStampResp around the token, and statusString on
    /// rejections (RFC 3161 §2.4.2).
    TimestampResponse = "timestamp-response" => timestamp_response::TimestampResponseConfig,
    /// `storage`: keeps each issued token (the response DER) in its audit record.
    Storage = "storage" => storage::StorageConfig,
}

/// A chain filter's per-request phase (the seam for filters that decide per request, after
/// pingora's request phases).
///
/// **When.** Once per request, on the thread that issues the token: the frontend core that
/// took the connection (`dispatch = "inline"`) or a backend worker (`dispatch = "queue"`). It
/// is called at one fixed point of `Tsa::try_issue` (see [`filter_request`]): after the
/// request is decoded and checked (version, imprint), its policy chosen, its hash algorithm
/// found on the policy's allow-list and every extension recognised; before genTime is read,
/// the serial number taken, the signer reserved and TSTInfo built. The chain's request
/// filters run in chain order, wherever they stand before `tst-info`.
///
/// **Must not block.** No I/O, no waiting, no lock held for long: an inline core serves
/// every other connection from the same thread. Whatever a filter needs from files is read
/// when it is built ([`ChainFilter::request_filter`]).
///
/// **Errors.** `Err(rejection)` answers this request with that RFC 3161 rejection (status
/// rejection, its failInfo, its fixed statusString) and stops it: no later filter runs, no
/// serial number is spent, nothing is signed, the audit trail records the rejection. It is
/// the answer to the requester, not a server fault, and is not logged; a filter that cannot
/// decide because of its own failure answers `systemFailure` and logs why itself.
pub trait RequestFilter: Send + Sync {
    /// Sees the request; may refuse it or add TSTInfo extensions. Default: accept, add none.
    fn on_request(&self, _cx: &mut RequestContext<'_>) -> Result<(), Rejection> {
        Ok(())
    }
}

/// One request as a [`RequestFilter`] sees it, and the TSTInfo extensions filters add to
/// its token.
pub struct RequestContext<'r> {
    /// The decoded request, already checked: version, imprint, hash algorithm on the
    /// policy's allow-list, every extension recognised.
    pub request: &'r TimeStampReq<'r>,
    /// Where it came from: client address, URL path, HTTP head.
    pub meta: &'r RequestMeta<'r>,
    /// The policy chosen for it, whose chain holds this filter.
    pub policy: &'r Policy,
    extensions: Extensions,
}

impl RequestContext<'_> {
    /// Adds a TSTInfo extension (RFC 3161 §2.4.2 `extensions`, optional) to this request's
    /// token, after the policy's own (qcStatements). `value` is the DER of extnValue's
    /// content. Never critical: ETSI EN 319 422 §5.2 allows no critical extension in a
    /// token, so the seam cannot express one. RFC 5280 §4.2: an extension appears at most
    /// once, so `oid` must differ from the policy's and other filters' extensions.
    pub fn add_extension(&mut self, oid: &Oid, value: &[u8]) {
        self.extensions.push(oid.as_bytes(), value);
    }
}

/// Runs `policy`'s request filters over one request (the standard chain has none: one
/// empty-slice check). `Ok`: the extensions they added, for this request's TSTInfo.
pub fn filter_request(
    policy: &Policy,
    request: &TimeStampReq<'_>,
    meta: &RequestMeta<'_>,
) -> Result<Extensions, Rejection> {
    let mut cx = RequestContext {
        request,
        meta,
        policy,
        extensions: Extensions::default(),
    };
    for f in &policy.request_filters {
        f.on_request(&mut cx)?;
    }
    Ok(cx.extensions)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::super::settings::Settings;
    use crate::protocol::oid::Oid;
    use crate::protocol::token::EssCertId;
    use crate::protocol::token::{Accuracy, IncludeCerts, TsaName};
    use crate::protocol::{HashAlg, Precision};

    /// Policy-level defaults as the embedded default configuration sets them.
    pub fn defaults() -> Settings {
        Settings {
            oid: Oid::parse("2.999.1.1").unwrap(),
            hash_algorithms: vec![HashAlg::Sha256],
            allowed_extensions: Vec::new(),
            precision: Precision::Millis,
            accuracy: Accuracy::from_micros(1_000_000),
            tsa_name: TsaName::Subject,
            qualified: false,
            check_validity: false,
            signer: None,
            certs: IncludeCerts::Chain,
            ess: EssCertId::V2(HashAlg::Sha256),
            status_text: None,
            archive: false,
        }
    }

    /// Parses one `[filter.x]` table.
    pub fn filter(toml_text: &str) -> super::FilterConfig {
        toml::from_str(toml_text).unwrap()
    }
}
