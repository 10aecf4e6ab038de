//! A minimal, zero-copy view of an X.509 certificate (RFC 5280 §4.1): the raw parts a TSA
//! needs to build tokens (issuer, serial, subject) and to check its own certificate
//! (validity, extended key usage, public key).

use super::der::{tag, DerError, Reader};
use super::oid;
use super::time::{parse_generalized_time, Timestamp};

/// The parts of one DER certificate, borrowed from its bytes. Parsing checks the structure,
/// not the signature or the chain (that is [`crate::client::verify`]'s job).
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
    /// Extensions TLVs content (`SEQUENCE OF Extension` contents), empty when absent.
    extensions: &'a [u8],
    /// signatureAlgorithm TLV of the outer certificate.
    pub signature_alg: &'a [u8],
    /// signature BIT STRING contents without the unused-bits octet.
    pub signature: &'a [u8],
}

/// The extendedKeyUsage extension (RFC 5280 §4.2.1.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedKeyUsage<'a> {
    /// Marked critical (RFC 3161 §2.3 requires it for a TSA certificate).
    pub critical: bool,
    /// KeyPurposeId OIDs as content octets.
    pub purposes: Vec<&'a [u8]>,
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

fn read_time(r: &mut Reader<'_>) -> Result<Timestamp, DerError> {
    const UTC_TIME: u8 = 0x17;
    let t = r.read_any()?;
    match t.tag {
        // RFC 5280 §4.1.2.5.1: YYMMDDHHMMSSZ, YY >= 50 means 19YY.
        UTC_TIME => {
            let yy = t.value.get(..2).ok_or(DerError::InvalidValue)?;
            let century: &[u8] = if yy < b"50".as_slice() { b"20" } else { b"19" };
            let full = [century, t.value].concat();
            parse_generalized_time(&full).ok_or(DerError::InvalidValue)
        }
        tag::GENERALIZED_TIME => parse_generalized_time(t.value).ok_or(DerError::InvalidValue),
        found => Err(DerError::UnexpectedTag {
            expected: tag::GENERALIZED_TIME,
            found,
        }),
    }
}

fn bit_string_bytes(v: &[u8]) -> Result<&[u8], DerError> {
    match v.split_first() {
        Some((0, rest)) => Ok(rest),
        _ => Err(DerError::InvalidValue),
    }
}

impl<'a> CertView<'a> {
    /// Parses one DER certificate spanning the whole of `raw`, extensions included; the
    /// signature is not checked.
    pub fn parse(raw: &'a [u8]) -> Result<Self, DerError> {
        let mut cert = Reader::new(super::der::read_single(raw, tag::SEQUENCE)?.value);
        let tbs_tlv = cert.read(tag::SEQUENCE)?;
        let signature_alg = cert.read(tag::SEQUENCE)?.raw;
        let signature = bit_string_bytes(cert.read(tag::BIT_STRING)?.value)?;
        cert.finish()?;

        let mut tbs = Reader::new(tbs_tlv.value);
        tbs.read_optional(tag::ctx_cons(0))?; // version
        let serial = tbs.read(tag::INTEGER)?.raw;
        tbs.read(tag::SEQUENCE)?; // signature
        let issuer = tbs.read(tag::SEQUENCE)?.raw;
        let mut validity = tbs.read_nested(tag::SEQUENCE)?;
        let not_before = read_time(&mut validity)?;
        let not_after = read_time(&mut validity)?;
        validity.finish()?;
        let subject = tbs.read(tag::SEQUENCE)?.raw;
        let spki_tlv = tbs.read(tag::SEQUENCE)?;
        let mut spki = Reader::new(spki_tlv.value);
        let mut alg = spki.read_nested(tag::SEQUENCE)?;
        let key_alg = alg.read(tag::OID)?.value;
        let key_params = if alg.is_empty() {
            None
        } else {
            Some(alg.read_any()?.raw)
        };
        let public_key = bit_string_bytes(spki.read(tag::BIT_STRING)?.value)?;
        tbs.read_optional(tag::ctx_prim(1))?; // issuerUniqueID
        tbs.read_optional(tag::ctx_prim(2))?; // subjectUniqueID
        let extensions = match tbs.read_optional(tag::ctx_cons(3))? {
            Some(t) => Reader::new(t.value).read(tag::SEQUENCE)?.value,
            None => &[],
        };
        tbs.finish()?;
        let view = CertView {
            raw,
            tbs: tbs_tlv.raw,
            serial,
            issuer,
            subject,
            not_before,
            not_after,
            spki: spki_tlv.raw,
            key_alg,
            key_params,
            public_key,
            extensions,
            signature_alg,
            signature,
        };
        // Validate the extension list once so the iterator below can skip error handling.
        let mut r = Reader::new(extensions);
        while !r.is_empty() {
            read_extension(&mut r)?;
        }
        Ok(view)
    }

    /// The certificate's extensions in order (already validated by [`CertView::parse`]).
    pub fn extensions(&self) -> impl Iterator<Item = Extension<'a>> + 'a {
        let mut r = Reader::new(self.extensions);
        std::iter::from_fn(move || {
            if r.is_empty() {
                None
            } else {
                read_extension(&mut r).ok()
            }
        })
    }

    /// The first extension whose OID content octets are `id`.
    pub fn extension(&self, id: &[u8]) -> Option<Extension<'a>> {
        self.extensions().find(|e| e.oid == id)
    }

    /// The extendedKeyUsage extension; `None` when the certificate has none.
    pub fn extended_key_usage(&self) -> Result<Option<ExtendedKeyUsage<'a>>, DerError> {
        let Some(ext) = self.extension(oid::EXT_EXTENDED_KEY_USAGE) else {
            return Ok(None);
        };
        let mut seq = Reader::new(super::der::read_single(ext.value, tag::SEQUENCE)?.value);
        let mut purposes = Vec::new();
        while !seq.is_empty() {
            purposes.push(seq.read(tag::OID)?.value);
        }
        Ok(Some(ExtendedKeyUsage {
            critical: ext.critical,
            purposes,
        }))
    }

    /// May this certificate issue certificates? basicConstraints cA must be TRUE
    /// (RFC 5280 §4.2.1.9) and keyUsage, when present, must allow keyCertSign (§4.2.1.3).
    /// Returns the pathLenConstraint (`None` = unlimited) when it may.
    pub fn ca_path_len(&self) -> Result<Option<Option<u64>>, DerError> {
        let Some(bc) = self.extension(oid::EXT_BASIC_CONSTRAINTS) else {
            return Ok(None);
        };
        let mut r = Reader::new(super::der::read_single(bc.value, tag::SEQUENCE)?.value);
        let ca = if r.peek_tag() == Some(tag::BOOLEAN) {
            r.read_bool()?
        } else {
            false
        };
        let path_len = if r.is_empty() {
            None
        } else {
            Some(r.read_u64()?)
        };
        r.finish()?;
        if !ca {
            return Ok(None);
        }
        if let Some(ku) = self.extension(oid::EXT_KEY_USAGE) {
            let bits = super::der::read_single(ku.value, tag::BIT_STRING)?.value;
            // keyCertSign is bit 5: the first content octet after the unused-bits count.
            if bits.get(1).is_none_or(|b| b & 0x04 == 0) {
                return Ok(None);
            }
        }
        Ok(Some(path_len))
    }

    /// Is `name` (a DER Name) this certificate's subject or a directoryName of its
    /// subjectAltName? Verifiers (OpenSSL's `TS_VFY_SIGNER`) refuse a TSTInfo `tsa` name
    /// that is neither.
    pub fn has_directory_name(&self, name: &[u8]) -> bool {
        if self.subject == name {
            return true;
        }
        let Some(san) = self.extension(oid::EXT_SUBJECT_ALT_NAME) else {
            return false;
        };
        let Ok(seq) = super::der::read_single(san.value, tag::SEQUENCE) else {
            return false;
        };
        let mut r = Reader::new(seq.value);
        while let Ok(general_name) = r.read_any() {
            if general_name.tag == tag::ctx_cons(4) && general_name.value == name {
                return true;
            }
        }
        false
    }

    /// Whether `t` lies within the validity period, both ends included.
    pub fn valid_at(&self, t: Timestamp) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

/// Reads one `Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
/// extnValue OCTET STRING }`.
pub fn read_extension<'a>(r: &mut Reader<'a>) -> Result<Extension<'a>, DerError> {
    let mut e = r.read_nested(tag::SEQUENCE)?;
    let oid = e.read_oid()?;
    let critical = if e.peek_tag() == Some(tag::BOOLEAN) {
        e.read_bool()?
    } else {
        false
    };
    let value = e.read(tag::OCTET_STRING)?.value;
    e.finish()?;
    Ok(Extension {
        oid,
        critical,
        value,
    })
}
