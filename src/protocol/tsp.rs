//! The typed forms (RustCrypto `der` derives over `x509-cert` and `cms` types) of the
//! constant parts of a token: what [`super::token`]'s templates encode once per signer and
//! policy, and what the client decodes from other TSAs' tokens. RFC 3161 §2.4.2
//! (`Accuracy`), RFC 5035 and RFC 2634 (ESS signing certificate), RFC 4055 (RSASSA-PSS
//! parameters), RFC 3739 / ETSI EN 319 422 §9.1 (qcStatements). Every OID here is a
//! standard one, so const-oid's `ObjectIdentifier` holds them all.

use der::asn1::{ObjectIdentifier, OctetString};
use der::Sequence;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// RFC 3161 §2.4.2 `Accuracy`: each part absent when 0 (millis and micros are 1..999).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct AccuracyDer {
    /// Whole seconds.
    pub seconds: Option<u64>,
    /// `[0]` milliseconds.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub millis: Option<u16>,
    /// `[1]` microseconds.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub micros: Option<u16>,
}

/// RFC 5035 §4 / RFC 2634 §5.4.1 `IssuerSerial`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct IssuerSerial {
    /// `GeneralNames`: the issuer as a directoryName.
    pub issuer: Vec<GeneralName>,
    /// The certificate's serial number.
    pub serial_number: SerialNumber,
}

/// RFC 5035 §5.4.1 `ESSCertIDv2`; `hashAlgorithm` is `DEFAULT id-sha256` (absent for it).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct EssCertIdV2 {
    /// The hash algorithm of `cert_hash`, absent for SHA-256.
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    /// The hash of the whole certificate.
    pub cert_hash: OctetString,
    /// The certificate's issuer and serial.
    pub issuer_serial: Option<IssuerSerial>,
}

/// RFC 2634 §5.4.1 `ESSCertID` (SHA-1).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct EssCertId {
    /// SHA-1 of the whole certificate.
    pub cert_hash: OctetString,
    /// The certificate's issuer and serial.
    pub issuer_serial: Option<IssuerSerial>,
}

/// RFC 5035 §5.4 `SigningCertificateV2` (policies are never written, and not read).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct SigningCertificateV2 {
    /// The signing certificate first.
    pub certs: Vec<EssCertIdV2>,
    /// Certificate policies, when present.
    pub policies: Option<der::asn1::Any>,
}

/// RFC 2634 §5.4 `SigningCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct SigningCertificate {
    /// The signing certificate first.
    pub certs: Vec<EssCertId>,
    /// Certificate policies, when present.
    pub policies: Option<der::asn1::Any>,
}

/// RFC 4055 §3.1 `RSASSA-PSS-params` (every field written, as stampd signs).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct PssParams {
    /// `[0]` the hash algorithm.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub hash: AlgorithmIdentifierOwned,
    /// `[1]` the mask generation function (MGF1 with the hash).
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    pub mask_gen: AlgorithmIdentifierOwned,
    /// `[2]` the salt length in octets.
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    pub salt_length: u8,
}

/// RFC 3739 §3.2.6 `QCStatement` without statementInfo (esi4-qtstStatement-1 has none).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct QcStatement {
    /// The statement's OID.
    pub statement_id: ObjectIdentifier,
}
