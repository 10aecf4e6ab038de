//! Startup checks on a TSA certificate, pure functions over bytes and a time.

use crate::protocol::cert::CertView;
use crate::protocol::{oid, Timestamp};

/// What is wrong with a TSA certificate. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("the certificate could not be parsed as DER X.509")]
    Unparseable,
    #[error("the certificate's public key does not match the private key")]
    KeyMismatch,
    #[error("the certificate has no extendedKeyUsage extension; a TSA certificate needs a critical EKU with only id-kp-timeStamping (RFC 3161 §2.3)")]
    EkuMissing,
    #[error("the certificate's extendedKeyUsage is not marked critical (RFC 3161 §2.3 requires critical)")]
    EkuNotCritical,
    #[error("the certificate's extendedKeyUsage must hold exactly id-kp-timeStamping (1.3.6.1.5.5.7.3.8) and nothing else")]
    EkuWrongPurpose,
    #[error(
        "the certificate is not valid now (valid from {not_before} to {not_after}, now {now})"
    )]
    NotValidNow {
        not_before: String,
        not_after: String,
        now: String,
    },
}

fn rfc3339(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.unix_secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.unix_secs.to_string())
}

/// Checks the TSA certificate against the key's public key bytes (the subjectPublicKey BIT
/// STRING contents: EC point, Ed25519 key, or PKCS#1 RSAPublicKey) and the current time.
pub fn check_tsa_certificate(
    cert: &CertView<'_>,
    public_key: &[u8],
    now: Timestamp,
) -> Result<(), CertProblem> {
    if cert.public_key != public_key {
        return Err(CertProblem::KeyMismatch);
    }
    match cert.extended_key_usage() {
        Err(_) => return Err(CertProblem::Unparseable),
        Ok(None) => return Err(CertProblem::EkuMissing),
        Ok(Some((false, _))) => return Err(CertProblem::EkuNotCritical),
        Ok(Some((true, purposes))) => {
            if purposes != [oid::KP_TIME_STAMPING] {
                return Err(CertProblem::EkuWrongPurpose);
            }
        }
    }
    if !cert.valid_at(now) {
        return Err(CertProblem::NotValidNow {
            not_before: rfc3339(cert.not_before),
            not_after: rfc3339(cert.not_after),
            now: rfc3339(now),
        });
    }
    Ok(())
}
