//! Startup checks on a TSA certificate, pure functions over bytes and a time.

use crate::protocol::cert::CertView;
use crate::protocol::{oid, Timestamp};

/// What is wrong with a TSA certificate. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    /// The leaf is not DER X.509 (or its chain could not be encoded into the template).
    #[error("the certificate could not be parsed as DER X.509")]
    Unparseable,
    /// The certificate is for another key.
    #[error("the certificate's public key does not match the private key")]
    KeyMismatch,
    /// No extendedKeyUsage extension (RFC 3161 §2.3 requires one).
    #[error("the certificate has no extendedKeyUsage extension; a TSA certificate needs a critical EKU with only id-kp-timeStamping (RFC 3161 §2.3)")]
    EkuMissing,
    /// extendedKeyUsage is present but not critical (RFC 3161 §2.3).
    #[error("the certificate's extendedKeyUsage is not marked critical (RFC 3161 §2.3 requires critical)")]
    EkuNotCritical,
    /// extendedKeyUsage names another purpose than id-kp-timeStamping, or more than it.
    #[error("the certificate's extendedKeyUsage must hold exactly id-kp-timeStamping (1.3.6.1.5.5.7.3.8) and nothing else")]
    EkuWrongPurpose,
    /// The current time lies outside the certificate's validity.
    #[error(
        "the certificate is not valid now (valid from {not_before} to {not_after}, now {now})"
    )]
    NotValidNow {
        /// The certificate's notBefore, RFC 3339.
        not_before: String,
        /// The certificate's notAfter, RFC 3339.
        not_after: String,
        /// The time checked, RFC 3339.
        now: String,
    },
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
        Ok(Some(eku)) if !eku.critical => return Err(CertProblem::EkuNotCritical),
        Ok(Some(eku)) => {
            if eku.purposes != [oid::KP_TIME_STAMPING] {
                return Err(CertProblem::EkuWrongPurpose);
            }
        }
    }
    if !cert.valid_at(now) {
        return Err(CertProblem::NotValidNow {
            not_before: cert.not_before.to_rfc3339(),
            not_after: cert.not_after.to_rfc3339(),
            now: now.to_rfc3339(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, CustomExtension, KeyPair};

    /// A self-signed P-256 certificate with the given EKU extension (DER content, critical).
    fn cert_with_eku(eku: Option<(Vec<u8>, bool)>) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["tsa".to_string()]).unwrap();
        if let Some((content, critical)) = eku {
            let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], content);
            ext.set_criticality(critical);
            params.custom_extensions = vec![ext];
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), key.public_key_raw().to_vec())
    }

    const TIME_STAMPING: [u8; 12] = [0x30, 0x0a, 0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3, 8];

    fn check(eku: Option<(Vec<u8>, bool)>) -> Result<(), CertProblem> {
        let (der, public) = cert_with_eku(eku);
        let view = CertView::parse(&der).unwrap();
        let now = Timestamp {
            unix_secs: time::OffsetDateTime::from(crate::clock::wall_now()).unix_timestamp(),
            nanos: 0,
        };
        check_tsa_certificate(&view, &public, now)
    }

    #[test]
    fn eku_must_be_present_critical_and_only_time_stamping() {
        assert_eq!(check(Some((TIME_STAMPING.to_vec(), true))), Ok(()));
        assert_eq!(check(None), Err(CertProblem::EkuMissing));
        assert_eq!(
            check(Some((TIME_STAMPING.to_vec(), false))),
            Err(CertProblem::EkuNotCritical)
        );
        // timeStamping + serverAuth (1.3.6.1.5.5.7.3.1)
        let two = vec![
            0x30, 0x14, 0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3, 8, 0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3,
            1,
        ];
        assert_eq!(check(Some((two, true))), Err(CertProblem::EkuWrongPurpose));
    }

    #[test]
    fn key_mismatch_is_reported() {
        let (der, _) = cert_with_eku(Some((TIME_STAMPING.to_vec(), true)));
        let view = CertView::parse(&der).unwrap();
        let now = Timestamp {
            unix_secs: time::OffsetDateTime::from(crate::clock::wall_now()).unix_timestamp(),
            nanos: 0,
        };
        assert_eq!(
            check_tsa_certificate(&view, &[4; 65], now),
            Err(CertProblem::KeyMismatch)
        );
    }
}
