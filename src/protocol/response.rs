//! Decoding of `TimeStampResp` and the token inside it, for clients (`stampd verify`,
//! the load generator) and tests. Strict DER, zero-copy.

use super::der::{self, tag, DerError, Reader};
use super::oid;
use super::status::{FailureInfo, PkiStatus};
use super::time::{parse_generalized_time, Timestamp};

/// A decoded `TimeStampResp` (RFC 3161 §2.4.2), borrowing from the input bytes.
#[derive(Debug, Clone)]
pub struct Response<'a> {
    /// `PKIStatusInfo.status`: granted, rejection, waiting...
    pub status: PkiStatus,
    /// `PKIStatusInfo.statusString`, one entry per UTF8String (invalid UTF-8 replaced);
    /// empty when absent.
    pub status_text: Vec<String>,
    /// Named failure bits that were set, lowest first.
    pub fail_info: Vec<FailureInfo>,
    /// `timeStampToken`: present when granted, absent on a rejection.
    pub token: Option<Token<'a>>,
}

/// A decoded timestamp token: a CMS `ContentInfo` holding `SignedData` over a `TSTInfo`
/// (RFC 3161 §2.4.2, RFC 5652 §5). Fields borrow from the input bytes.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    /// The whole ContentInfo TLV.
    pub raw: &'a [u8],
    /// `SignedData.version` (3 for tokens with an eContentType other than id-data).
    pub signed_data_version: u64,
    /// DER TSTInfo (eContent octets).
    pub tst_info_der: &'a [u8],
    /// The decoded `TSTInfo`.
    pub tst_info: TstInfo<'a>,
    /// Each certificate TLV of `SignedData.certificates`, in order; empty when absent (a
    /// request without certReq).
    pub certificates: Vec<&'a [u8]>,
    /// Every `SignerInfo`, in order (a stampd token has exactly one).
    pub signer_infos: Vec<SignerInfo<'a>>,
}

/// One CMS `SignerInfo` (RFC 5652 §5.3) whose `sid` is an `IssuerAndSerialNumber`.
#[derive(Debug, Clone)]
pub struct SignerInfo<'a> {
    /// `SignerInfo.version` (1 with IssuerAndSerialNumber).
    pub version: u64,
    /// The issuer Name TLV of IssuerAndSerialNumber.
    pub sid_issuer: &'a [u8],
    /// The serialNumber INTEGER TLV of IssuerAndSerialNumber.
    pub sid_serial: &'a [u8],
    /// digestAlgorithm OID content octets.
    pub digest_alg: &'a [u8],
    /// The content octets of `[0] signedAttrs`; the signature covers them under a SET tag.
    pub signed_attrs: &'a [u8],
    /// signatureAlgorithm AlgorithmIdentifier TLV.
    pub signature_alg: &'a [u8],
    /// The signature value (OCTET STRING content): RSA or Ed25519 bytes, or a DER
    /// ECDSA-Sig-Value.
    pub signature: &'a [u8],
}

impl<'a> SignerInfo<'a> {
    /// The bytes the signature covers: signedAttrs re-tagged as `SET OF` (RFC 5652 §5.4).
    pub fn signed_attrs_der(&self) -> Vec<u8> {
        der::tlv(tag::SET, self.signed_attrs)
    }

    /// The single value of the signed attribute `id`, as a TLV.
    pub fn attribute(&self, id: &[u8]) -> Option<&'a [u8]> {
        let mut r = Reader::new(self.signed_attrs);
        while let Ok(mut a) = r.read_nested(tag::SEQUENCE) {
            let Ok(t) = a.read(tag::OID) else { return None };
            if t.value == id {
                let mut values = a.read_nested(tag::SET).ok()?;
                let v = values.read_any().ok()?;
                return values.is_empty().then_some(v.raw);
            }
        }
        None
    }
}

/// A decoded `TSTInfo` (RFC 3161 §2.4.2), borrowing from the input bytes.
#[derive(Debug, Clone)]
pub struct TstInfo<'a> {
    /// `version` (1).
    pub version: u64,
    /// The policy OID's content octets.
    pub policy: &'a [u8],
    /// The whole `messageImprint` SEQUENCE TLV, to compare with the request's.
    pub message_imprint: &'a [u8],
    /// The imprint's hash algorithm OID content octets.
    pub hash_oid: &'a [u8],
    /// The imprint's digest (`hashedMessage` content).
    pub digest: &'a [u8],
    /// serialNumber INTEGER content octets.
    pub serial: &'a [u8],
    /// `genTime`, parsed.
    pub gen_time: Timestamp,
    /// `genTime` as written, e.g. `20300101000000.123Z`, to check its form (RFC 3161
    /// §2.4.2: no trailing zeros in the fraction).
    pub gen_time_text: &'a str,
    /// `accuracy` as (seconds, millis, micros), absent parts 0; `None` when absent.
    pub accuracy: Option<(u64, u64, u64)>,
    /// `ordering` (DEFAULT FALSE; ETSI EN 319 422 requires false).
    pub ordering: bool,
    /// The `nonce` INTEGER's content octets, echoed from the request.
    pub nonce: Option<&'a [u8]>,
    /// The GeneralName TLV inside `tsa [0]`.
    pub tsa: Option<&'a [u8]>,
    /// Whether `extensions [1]` is present (its contents are not decoded).
    pub has_extensions: bool,
}

/// Decodes a DER `TimeStampResp`, and the token inside it when there is one. Strict DER:
/// trailing bytes, indefinite lengths and unknown fields are errors.
pub fn decode(input: &[u8]) -> Result<Response<'_>, DerError> {
    let mut resp = Reader::new(der::read_single(input, tag::SEQUENCE)?.value);
    let mut si = resp.read_nested(tag::SEQUENCE)?;
    let status = PkiStatus::from_u64(si.read_u64()?).ok_or(DerError::InvalidValue)?;
    let mut status_text = Vec::new();
    if let Some(t) = si.read_optional(tag::SEQUENCE)? {
        let mut r = Reader::new(t.value);
        while !r.is_empty() {
            let s = r.read(tag::UTF8_STRING)?.value;
            status_text.push(String::from_utf8_lossy(s).into_owned());
        }
    }
    let mut fail_info = Vec::new();
    if let Some(t) = si.read_optional(tag::BIT_STRING)? {
        let (_, bits) = t.value.split_first().ok_or(DerError::InvalidValue)?;
        for (i, byte) in bits.iter().enumerate() {
            for b in 0..8 {
                if byte & (0x80 >> b) != 0 {
                    let bit = u8::try_from(i * 8 + b).map_err(|_| DerError::InvalidValue)?;
                    fail_info.extend(FailureInfo::from_bit(bit));
                }
            }
        }
    }
    si.finish()?;
    let token = match resp.peek_tag() {
        Some(_) => Some(decode_token(resp.read(tag::SEQUENCE)?.raw)?),
        None => None,
    };
    resp.finish()?;
    Ok(Response {
        status,
        status_text,
        fail_info,
        token,
    })
}

/// Decodes a token (ContentInfo with SignedData over TSTInfo).
pub fn decode_token(raw: &[u8]) -> Result<Token<'_>, DerError> {
    let mut ci = Reader::new(der::read_single(raw, tag::SEQUENCE)?.value);
    if ci.read(tag::OID)?.value != oid::SIGNED_DATA {
        return Err(DerError::InvalidValue);
    }
    let mut explicit = ci.read_nested(tag::ctx_cons(0))?;
    ci.finish()?;
    let mut sd = explicit.read_nested(tag::SEQUENCE)?;
    explicit.finish()?;
    let signed_data_version = sd.read_u64()?;
    sd.read(tag::SET)?; // digestAlgorithms
    let mut encap = sd.read_nested(tag::SEQUENCE)?;
    if encap.read(tag::OID)?.value != oid::CT_TST_INFO {
        return Err(DerError::InvalidValue);
    }
    let mut econtent = encap.read_nested(tag::ctx_cons(0))?;
    let tst_info_der = econtent.read(tag::OCTET_STRING)?.value;
    econtent.finish()?;
    encap.finish()?;
    let mut certificates = Vec::new();
    if let Some(t) = sd.read_optional(tag::ctx_cons(0))? {
        let mut r = Reader::new(t.value);
        while !r.is_empty() {
            certificates.push(r.read(tag::SEQUENCE)?.raw);
        }
    }
    sd.read_optional(tag::ctx_cons(1))?; // crls
    let mut sis = sd.read_nested(tag::SET)?;
    sd.finish()?;
    let mut signer_infos = Vec::new();
    while !sis.is_empty() {
        let mut s = sis.read_nested(tag::SEQUENCE)?;
        let version = s.read_u64()?;
        let mut sid = s.read_nested(tag::SEQUENCE)?;
        let sid_issuer = sid.read(tag::SEQUENCE)?.raw;
        let sid_serial = sid.read_integer()?.raw;
        sid.finish()?;
        let digest_alg = s.read_nested(tag::SEQUENCE)?.read(tag::OID)?.value;
        let signed_attrs = s.read(tag::ctx_cons(0))?.value;
        let signature_alg = s.read(tag::SEQUENCE)?.raw;
        let signature = s.read(tag::OCTET_STRING)?.value;
        s.read_optional(tag::ctx_cons(1))?; // unsignedAttrs
        s.finish()?;
        signer_infos.push(SignerInfo {
            version,
            sid_issuer,
            sid_serial,
            digest_alg,
            signed_attrs,
            signature_alg,
            signature,
        });
    }
    Ok(Token {
        raw,
        signed_data_version,
        tst_info_der,
        tst_info: decode_tst_info(tst_info_der)?,
        certificates,
        signer_infos,
    })
}

/// Decodes a DER `TSTInfo` (the eContent of a token), strictly.
pub fn decode_tst_info(input: &[u8]) -> Result<TstInfo<'_>, DerError> {
    let mut t = Reader::new(der::read_single(input, tag::SEQUENCE)?.value);
    let version = t.read_u64()?;
    let policy = t.read(tag::OID)?.value;
    let mi = t.read(tag::SEQUENCE)?;
    let mut mir = Reader::new(mi.value);
    let hash_oid = mir.read_nested(tag::SEQUENCE)?.read(tag::OID)?.value;
    let digest = mir.read(tag::OCTET_STRING)?.value;
    let serial = t.read_integer()?.value;
    let gt = t.read(tag::GENERALIZED_TIME)?;
    let gen_time = parse_generalized_time(gt.value).ok_or(DerError::InvalidValue)?;
    let gen_time_text = std::str::from_utf8(gt.value).map_err(|_| DerError::InvalidValue)?;
    let accuracy = match t.read_optional(tag::SEQUENCE)? {
        Some(a) => {
            let mut r = Reader::new(a.value);
            let seconds = if r.peek_tag() == Some(tag::INTEGER) {
                r.read_u64()?
            } else {
                0
            };
            let mut small = |tg: u8| -> Result<u64, DerError> {
                match r.read_optional(tg)? {
                    Some(v) => der::integer_to_u64(v.value),
                    None => Ok(0),
                }
            };
            let millis = small(tag::ctx_prim(0))?;
            let micros = small(tag::ctx_prim(1))?;
            r.finish()?;
            Some((seconds, millis, micros))
        }
        None => None,
    };
    let ordering = if t.peek_tag() == Some(tag::BOOLEAN) {
        t.read_bool()?
    } else {
        false
    };
    let nonce = t.read_optional(tag::INTEGER)?.map(|n| n.value);
    let tsa = match t.read_optional(tag::ctx_cons(0))? {
        Some(n) => Some(der::read_single(n.value, n.value.first().copied().unwrap_or(0))?.raw),
        None => None,
    };
    let has_extensions = t.read_optional(tag::ctx_cons(1))?.is_some();
    t.finish()?;
    Ok(TstInfo {
        version,
        policy,
        message_imprint: mi.raw,
        hash_oid,
        digest,
        serial,
        gen_time,
        gen_time_text,
        accuracy,
        ordering,
        nonce,
        tsa,
        has_extensions,
    })
}
