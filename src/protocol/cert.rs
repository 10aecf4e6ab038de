//! The parts of an X.509 certificate (RFC 5280 §4.1) a TSA needs: to build tokens (issuer,
//! serial, subject, the key), and to check its own certificate and the chains of tokens it
//! verifies (validity, extended key usage, basic constraints, key usage, subjectAltName).
//!
//! The certificate is decoded, strictly, by the RustCrypto `x509-cert` crate; [`CertView`]
//! adds the raw DER of the parts that tokens copy byte for byte (issuer Name and serial for
//! ESSCertID and `sid`, the subject for the TSA name, the TBSCertificate a signature covers),
//! found by walking the same bytes with `der`'s reader.

use ::der::asn1::BitStringRef;
use ::der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage as Eku, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::time::Time;
use x509_cert::Certificate;

use super::oid;
use super::time::Timestamp;

/// Why a certificate does not parse: what `der` / `x509-cert` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError(pub String);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a DER X.509 certificate: {}", self.0)
    }
}

impl std::error::Error for CertError {}

impl From<::der::oid::Error> for CertError {
    fn from(e: ::der::oid::Error) -> Self {
        CertError(e.to_string())
    }
}

impl From<::der::Error> for CertError {
    fn from(e: ::der::Error) -> Self {
        CertError(e.to_string())
    }
}

/// One DER certificate: decoded by `x509-cert`, with the raw parts borrowed from its bytes.
/// Parsing checks the structure, not the signature or the chain (that is
/// [`crate::client::verify`]'s job).
#[derive(Debug, Clone)]
pub struct CertView<'a> {
    /// The whole certificate encoding.
    pub raw: &'a [u8],
    /// TBSCertificate TLV (what the issuer signed).
    pub tbs: &'a [u8],
    /// serialNumber INTEGER TLV.
    pub serial: &'a [u8],
    /// issuer Name TLV.
    pub issuer: &'a [u8],
    /// subject Name TLV.
    pub subject: &'a [u8],
    /// `validity.notBefore` (UTCTime or GeneralizedTime), inclusive.
    pub not_before: Timestamp,
    /// `validity.notAfter`, inclusive (RFC 5280 §4.1.2.5).
    pub not_after: Timestamp,
    /// SubjectPublicKeyInfo TLV.
    pub spki: &'a [u8],
    /// SPKI algorithm OID content octets.
    pub key_alg: &'a [u8],
    /// SPKI algorithm parameters TLV (curve OID for EC), if any.
    pub key_params: Option<&'a [u8]>,
    /// subjectPublicKey BIT STRING contents without the unused-bits octet.
    pub public_key: &'a [u8],
    /// signatureAlgorithm TLV of the outer certificate.
    pub signature_alg: &'a [u8],
    /// signature BIT STRING contents without the unused-bits octet.
    pub signature: &'a [u8],
    cert: Certificate,
}

/// The extendedKeyUsage extension (RFC 5280 §4.2.1.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedKeyUsage {
    /// Marked critical (RFC 3161 §2.3 requires it for a TSA certificate).
    pub critical: bool,
    /// KeyPurposeId OIDs as content octets.
    pub purposes: Vec<Vec<u8>>,
}

/// One extension (RFC 5280 §4.1, the same shape in certificates and in RFC 3161 requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// OID content octets.
    pub oid: &'a [u8],
    /// The `critical` flag (DEFAULT FALSE).
    pub critical: bool,
    /// The `extnValue` OCTET STRING content (the DER of the extension's own value).
    pub value: &'a [u8],
}

fn timestamp(t: Time) -> Timestamp {
    let d = t.to_unix_duration();
    Timestamp {
        unix_secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos(),
    }
}

/// A BIT STRING's bytes; certificates' keys and signatures are whole octets.
fn whole_octets(b: BitStringRef<'_>) -> Result<&[u8], CertError> {
    b.as_bytes()
        .ok_or_else(|| CertError("a BIT STRING with unused bits".into()))
}

impl<'a> CertView<'a> {
    /// Parses one DER certificate spanning the whole of `raw`, extensions included; the
    /// signature is not checked.
    pub fn parse(raw: &'a [u8]) -> Result<Self, CertError> {
        let cert = Certificate::from_der(raw)?;
        // The raw parts, from the same bytes (x509-cert has just checked their structure).
        let mut outer = SliceReader::new(raw)?;
        let (tbs, signature_alg, signature) =
            outer.sequence(|r| Ok((r.tlv_bytes()?, r.tlv_bytes()?, BitStringRef::decode(r)?)))?;
        let mut t = SliceReader::new(tbs)?;
        let (serial, issuer, subject, spki) = t.sequence(|r| {
            let version = Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N0,
            };
            if r.peek_tag()? == version {
                r.tlv_bytes()?; // version
            }
            let serial = r.tlv_bytes()?;
            r.tlv_bytes()?; // signature
            let issuer = r.tlv_bytes()?;
            r.tlv_bytes()?; // validity
            let subject = r.tlv_bytes()?;
            let spki = r.tlv_bytes()?;
            // issuerUniqueID, subjectUniqueID, extensions: decoded by x509-cert.
            while !r.is_finished() {
                r.tlv_bytes()?;
            }
            Ok((serial, issuer, subject, spki))
        })?;
        let mut k = SliceReader::new(spki)?;
        let (key_alg, key_params, public_key) = k.sequence(|r| {
            let (alg, params) = r.sequence(|a| {
                let alg = super::asn1::OidRef::decode(a)?;
                let params = if a.is_finished() {
                    None
                } else {
                    Some(a.tlv_bytes()?)
                };
                Ok((alg, params))
            })?;
            Ok((alg.0, params, BitStringRef::decode(r)?))
        })?;
        let validity = &cert.tbs_certificate.validity;
        Ok(CertView {
            raw,
            tbs,
            serial,
            issuer,
            subject,
            not_before: timestamp(validity.not_before),
            not_after: timestamp(validity.not_after),
            spki,
            key_alg,
            key_params,
            public_key: whole_octets(public_key)?,
            signature_alg,
            signature: whole_octets(signature)?,
            cert,
        })
    }

    /// The certificate as `x509-cert` decoded it.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The certificate's extensions in order.
    pub fn extensions(&self) -> impl Iterator<Item = Extension<'_>> + '_ {
        let list = self.cert.tbs_certificate.extensions.as_deref();
        list.unwrap_or_default().iter().map(|e| Extension {
            oid: e.extn_id.as_bytes(),
            critical: e.critical,
            value: e.extn_value.as_bytes(),
        })
    }

    /// The first extension whose OID content octets are `id`.
    pub fn extension(&self, id: &[u8]) -> Option<Extension<'_>> {
        self.extensions().find(|e| e.oid == id)
    }

    /// The extension `id` decoded as `T`; `None` when the certificate has none.
    fn decoded<T: for<'d> Decode<'d>>(&self, id: &[u8]) -> Result<Option<(bool, T)>, CertError> {
        match self.extension(id) {
            None => Ok(None),
            Some(e) => Ok(Some((e.critical, T::from_der(e.value)?))),
        }
    }

    /// The extendedKeyUsage extension; `None` when the certificate has none.
    pub fn extended_key_usage(&self) -> Result<Option<ExtendedKeyUsage>, CertError> {
        Ok(self
            .decoded::<Eku>(oid::EXT_EXTENDED_KEY_USAGE)?
            .map(|(critical, eku)| ExtendedKeyUsage {
                critical,
                purposes: eku.0.iter().map(|p| p.as_bytes().to_vec()).collect(),
            }))
    }

    /// May this certificate issue certificates? basicConstraints cA must be TRUE
    /// (RFC 5280 §4.2.1.9) and keyUsage, when present, must allow keyCertSign (§4.2.1.3).
    /// Returns the pathLenConstraint (`None` = unlimited) when it may.
    pub fn ca_path_len(&self) -> Result<Option<Option<u64>>, CertError> {
        let Some((_, bc)) = self.decoded::<BasicConstraints>(oid::EXT_BASIC_CONSTRAINTS)? else {
            return Ok(None);
        };
        if !bc.ca {
            return Ok(None);
        }
        if let Some((_, ku)) = self.decoded::<KeyUsage>(oid::EXT_KEY_USAGE)? {
            if !ku.0.contains(KeyUsages::KeyCertSign) {
                return Ok(None);
            }
        }
        Ok(Some(bc.path_len_constraint.map(u64::from)))
    }

    /// Is `name` (a DER Name) this certificate's subject or a directoryName of its
    /// subjectAltName? Verifiers (OpenSSL's `TS_VFY_SIGNER`) refuse a TSTInfo `tsa` name
    /// that is neither.
    pub fn has_directory_name(&self, name: &[u8]) -> bool {
        if self.subject == name {
            return true;
        }
        let Ok(Some((_, san))) = self.decoded::<SubjectAltName>(oid::EXT_SUBJECT_ALT_NAME) else {
            return false;
        };
        san.0.iter().any(|g| match g {
            GeneralName::DirectoryName(n) => n.to_der().is_ok_and(|d| d == name),
            _ => false,
        })
    }

    /// Whether `t` lies within the validity period, both ends included.
    pub fn valid_at(&self, t: Timestamp) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}
