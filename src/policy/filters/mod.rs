//! The chain filters, one file each: its configuration (`[filter.NAME]` with `kind = ...`;
//! every field optional, `None` keeps the policy-level default), what it contributes to the
//! compiled policy, and its tests. See [`super::chain`] for placement rules.

pub mod accuracy;
pub mod certificate_verifier;
pub mod gen_time;
pub mod markers;
pub mod message_imprint;
pub mod qualified_statement;
pub mod request_validation;
pub mod storage;
pub mod timestamp_response;
pub mod timestamp_token;
pub mod tsa_name;

use serde::{Deserialize, Serialize};

use super::chain::{FilterKind, Settings};

/// `[filter.NAME]`: a configured instance of one filter kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FilterConfig {
    RequestValidation(request_validation::RequestValidationConfig),
    MessageImprint(message_imprint::MessageImprintConfig),
    TsaPolicy(markers::TsaPolicyConfig),
    GenTime(gen_time::GenTimeConfig),
    Accuracy(accuracy::AccuracyConfig),
    Nonce(markers::NonceConfig),
    SerialNumber(markers::SerialNumberConfig),
    TsaName(tsa_name::TsaNameConfig),
    QualifiedStatement(qualified_statement::QualifiedStatementConfig),
    CertificateVerifier(certificate_verifier::CertificateVerifierConfig),
    TstInfo(markers::TstInfoConfig),
    TimestampToken(timestamp_token::TimestampTokenConfig),
    TimestampResponse(timestamp_response::TimestampResponseConfig),
    Storage(storage::StorageConfig),
}

impl FilterConfig {
    pub fn kind(&self) -> FilterKind {
        match self {
            FilterConfig::RequestValidation(_) => FilterKind::RequestValidation,
            FilterConfig::MessageImprint(_) => FilterKind::MessageImprint,
            FilterConfig::TsaPolicy(_) => FilterKind::TsaPolicy,
            FilterConfig::GenTime(_) => FilterKind::GenTime,
            FilterConfig::Accuracy(_) => FilterKind::Accuracy,
            FilterConfig::Nonce(_) => FilterKind::Nonce,
            FilterConfig::SerialNumber(_) => FilterKind::SerialNumber,
            FilterConfig::TsaName(_) => FilterKind::TsaName,
            FilterConfig::QualifiedStatement(_) => FilterKind::QualifiedStatement,
            FilterConfig::CertificateVerifier(_) => FilterKind::CertificateVerifier,
            FilterConfig::TstInfo(_) => FilterKind::TstInfo,
            FilterConfig::TimestampToken(_) => FilterKind::TimestampToken,
            FilterConfig::TimestampResponse(_) => FilterKind::TimestampResponse,
            FilterConfig::Storage(_) => FilterKind::Storage,
        }
    }

    /// The built-in instance of a kind: every option left to the policy's defaults.
    pub fn builtin(kind: FilterKind) -> Self {
        match kind {
            FilterKind::RequestValidation => FilterConfig::RequestValidation(Default::default()),
            FilterKind::MessageImprint => FilterConfig::MessageImprint(Default::default()),
            FilterKind::TsaPolicy => FilterConfig::TsaPolicy(Default::default()),
            FilterKind::GenTime => FilterConfig::GenTime(Default::default()),
            FilterKind::Accuracy => FilterConfig::Accuracy(Default::default()),
            FilterKind::Nonce => FilterConfig::Nonce(Default::default()),
            FilterKind::SerialNumber => FilterConfig::SerialNumber(Default::default()),
            FilterKind::TsaName => FilterConfig::TsaName(Default::default()),
            FilterKind::QualifiedStatement => FilterConfig::QualifiedStatement(Default::default()),
            FilterKind::CertificateVerifier => {
                FilterConfig::CertificateVerifier(Default::default())
            }
            FilterKind::TstInfo => FilterConfig::TstInfo(Default::default()),
            FilterKind::TimestampToken => FilterConfig::TimestampToken(Default::default()),
            FilterKind::TimestampResponse => FilterConfig::TimestampResponse(Default::default()),
            FilterKind::Storage => FilterConfig::Storage(Default::default()),
        }
    }

    /// Pure checks of the filter's own options; each message is prefixed by the caller.
    pub fn validate(&self) -> Vec<String> {
        match self {
            FilterConfig::RequestValidation(c) => c.validate(),
            FilterConfig::Accuracy(c) => c.validate(),
            FilterConfig::MessageImprint(c) => c.validate(),
            FilterConfig::TsaName(c) => c.validate(),
            FilterConfig::TimestampToken(c) => c.validate(),
            _ => Vec::new(),
        }
    }

    /// The signer this filter names, if any (checked against `[signer.*]`).
    pub fn signer(&self) -> Option<&str> {
        match self {
            FilterConfig::TimestampToken(c) => c.signer.as_deref(),
            _ => None,
        }
    }

    /// Contributes this filter's part to the compiled policy.
    pub fn apply(&self, s: &mut Settings) {
        match self {
            FilterConfig::RequestValidation(c) => c.apply(s),
            FilterConfig::MessageImprint(c) => c.apply(s),
            FilterConfig::GenTime(c) => c.apply(s),
            FilterConfig::Accuracy(c) => c.apply(s),
            FilterConfig::TsaName(c) => c.apply(s),
            FilterConfig::QualifiedStatement(c) => c.apply(s),
            FilterConfig::CertificateVerifier(c) => c.apply(s),
            FilterConfig::TimestampToken(c) => c.apply(s),
            FilterConfig::TimestampResponse(c) => c.apply(s),
            FilterConfig::Storage(c) => c.apply(s),
            // Their part of TSTInfo is always written; see markers.rs.
            FilterConfig::TsaPolicy(_)
            | FilterConfig::Nonce(_)
            | FilterConfig::SerialNumber(_)
            | FilterConfig::TstInfo(_) => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::super::chain::Settings;
    use super::timestamp_token::EssCertId;
    use crate::protocol::oid::Oid;
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
