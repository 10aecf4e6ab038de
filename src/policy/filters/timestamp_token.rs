//! `kind = "timestamp-token"`: the CMS SignedData around TSTInfo: which signer, which
//! certificates (with certReq), and the ESS signing-certificate attribute: ESSCertIDv2
//! (RFC 5035, default, SHA-256 or a chosen hash) or ESSCertID v1 (RFC 2634, SHA-1) for
//! verifiers that know only v1 (LibreSSL).

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;
use crate::protocol::token::IncludeCerts;
use crate::protocol::HashAlg;

use crate::protocol::token::EssCertId;

/// `ess_cert_id`: which ESS signing-certificate attribute the token's SignerInfo carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EssVersion {
    /// signingCertificate with ESSCertID (RFC 2634 §5.4): the certificate hash is SHA-1, so
    /// `ess_hash` is refused. Only for verifiers that know no v2 (LibreSSL).
    V1,
    /// signingCertificateV2 with ESSCertIDv2 (RFC 5035, allowed in tokens by RFC 5816),
    /// hashing the certificate with `ess_hash`.
    V2,
}

/// `kind = "timestamp-token"`: the signer, the certificates sent with certReq and the ESS
/// signing-certificate attribute, each overriding the service's or the policy's setting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampTokenConfig {
    /// A `[signer.NAME]` other than the service's. Default: the service's signer.
    pub signer: Option<String>,
    /// With certReq: `signer` or `chain`. Default: the policy's `certs`.
    pub certs: Option<IncludeCerts>,
    /// `v2` (default) or `v1`.
    pub ess_cert_id: Option<EssVersion>,
    /// Certificate hash of ESSCertIDv2: `sha256` (default), `sha384`, `sha512`.
    pub ess_hash: Option<HashAlg>,
}

impl ChainFilter for TimestampTokenConfig {
    const REQUIRED: Option<&'static str> = Some(super::BUILDS_THE_RESPONSE);

    fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self
            .ess_hash
            .is_some_and(|h| !matches!(h, HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512))
        {
            e.push("ess_hash: sha256, sha384 or sha512".to_string());
        }
        if self.ess_cert_id == Some(EssVersion::V1) && self.ess_hash.is_some() {
            e.push(
                "ess_hash: ESSCertID v1 always hashes with SHA-1; remove ess_hash or use v2".into(),
            );
        }
        e
    }

    fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }

    fn apply(&self, s: &mut Settings) {
        if let Some(name) = &self.signer {
            s.signer = Some(name.clone());
        }
        if let Some(c) = self.certs {
            s.certs = c;
        }
        s.ess = match (self.ess_cert_id, self.ess_hash) {
            (Some(EssVersion::V1), _) => EssCertId::V1,
            (_, Some(h)) => EssCertId::V2(h),
            (Some(EssVersion::V2), None) => EssCertId::V2(HashAlg::Sha256),
            (None, None) => s.ess,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
    use super::*;

    #[test]
    fn token_options() {
        let mut s = defaults();
        filter("kind = \"timestamp-token\"\nsigner = \"rsa\"\ncerts = \"signer\"\ness_cert_id = \"v1\"")
            .apply(&mut s);
        assert_eq!(
            (s.signer.as_deref(), s.certs, s.ess),
            (Some("rsa"), IncludeCerts::Signer, EssCertId::V1)
        );
        let mut s = defaults();
        filter("kind = \"timestamp-token\"\ness_hash = \"sha512\"").apply(&mut s);
        assert_eq!(s.ess, EssCertId::V2(HashAlg::Sha512));
    }
}
