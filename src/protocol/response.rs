//! Decoding of `TimeStampResp` and the token inside it, for clients (`stampd verify`,
//! the load generator) and tests. Strict DER, zero-copy.
//!
//! The token's CMS structure is decoded and checked by the RustCrypto `cms` crate (RFC
//! 5652); the fields the client checks byte for byte are then borrowed from the same bytes
//! with `der`'s reader, and `TSTInfo` is decoded here with `der` (its policy OID and
//! fractional genTime are what the crates' types cannot hold: see [`super::asn1`]).

use ::der::asn1::{BitStringRef, IntRef, OctetStringRef, Utf8StringRef};
use ::der::{Decode, Reader, SliceReader, Tag, TagMode, TagNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};

use super::asn1::{small_uint, GeneralizedTimeRef, MessageImprintRef, OidRef};
use super::oid;
use super::status::{FailureInfo, PkiStatus};
use super::time::Timestamp;

/// Why a response or token does not decode: what `der` or `cms` said, or which RFC 3161
/// rule broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl From<::der::Error> for DecodeError {
    fn from(e: ::der::Error) -> Self {
        DecodeError(e.to_string())
    }
}

fn invalid(what: &str) -> DecodeError {
    DecodeError(what.to_string())
}

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

impl<'a> SignerInfo<'a> {
    /// The bytes the signature covers: signedAttrs re-tagged as `SET OF` (RFC 5652 §5.4).
    pub fn signed_attrs_der(&self) -> Vec<u8> {
        super::der::tlv(super::der::tag::SET, self.signed_attrs)
    }

    /// The single value of the signed attribute `id`, as a TLV.
    pub fn attribute(&self, id: &[u8]) -> Option<&'a [u8]> {
        let mut r = SliceReader::new(self.signed_attrs).ok()?;
        while !r.is_finished() {
            let (oid, values) = r
                .sequence(|a| Ok((OidRef::decode(a)?, a.tlv_bytes()?)))
                .ok()?;
            if oid.0 == id {
                let mut set = SliceReader::new(content(values, Tag::Set).ok()?).ok()?;
                let value = set.tlv_bytes().ok()?;
                return set.is_finished().then_some(value);
            }
        }
        None
    }
}

/// The content octets of the single TLV `tlv`, which must carry `tag`.
fn content(tlv: &[u8], tag: Tag) -> ::der::Result<&[u8]> {
    let mut r = SliceReader::new(tlv)?;
    let header = ::der::Header::decode(&mut r)?;
    header.tag.assert_eq(tag)?;
    let value = r.read_slice(header.length)?;
    r.finish(value)
}

/// Decodes a DER `TimeStampResp`, and the token inside it when there is one. Strict DER:
/// trailing bytes, indefinite lengths and unknown fields are errors.
pub fn decode(input: &[u8]) -> Result<Response<'_>, DecodeError> {
    let mut outer = SliceReader::new(input)?;
    let (status, texts, bits, token) = outer.sequence(|r| {
        let (status, texts, bits) = r.sequence(|si| {
            let status = IntRef::decode(si)?;
            let texts = Option::<Vec<Utf8StringRef<'_>>>::decode(si)?;
            let bits = Option::<BitStringRef<'_>>::decode(si)?;
            Ok((status, texts, bits))
        })?;
        let token = if r.is_finished() {
            None
        } else {
            Some(r.tlv_bytes()?)
        };
        Ok((status, texts, bits, token))
    })?;
    outer.finish(())?;
    let status = match status.as_bytes() {
        [n] => PkiStatus::from_u64(u64::from(*n)),
        _ => None,
    }
    .ok_or_else(|| invalid("unknown PKIStatus"))?;
    let status_text = texts
        .unwrap_or_default()
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    let mut fail_info = Vec::new();
    if let Some(bits) = bits {
        for (i, set) in bits.bits().enumerate() {
            if set {
                let bit = u8::try_from(i).map_err(|_| invalid("failInfo too long"))?;
                fail_info.extend(FailureInfo::from_bit(bit));
            }
        }
    }
    Ok(Response {
        status,
        status_text,
        fail_info,
        token: token.map(decode_token).transpose()?,
    })
}

/// Decodes a token (ContentInfo with SignedData over TSTInfo).
pub fn decode_token(raw: &[u8]) -> Result<Token<'_>, DecodeError> {
    // The whole CMS structure, typed and checked by `cms`.
    let ci = ContentInfo::from_der(raw)?;
    if ci.content_type.as_bytes() != oid::SIGNED_DATA {
        return Err(invalid("the token is not SignedData"));
    }
    let sd: SignedData = ci.content.decode_as()?;
    if sd.encap_content_info.econtent_type.as_bytes() != oid::CT_TST_INFO {
        return Err(invalid("the token's eContentType is not id-ct-TSTInfo"));
    }
    if sd
        .signer_infos
        .0
        .iter()
        .any(|si| !matches!(si.sid, SignerIdentifier::IssuerAndSerialNumber(_)))
    {
        return Err(invalid("a SignerInfo without IssuerAndSerialNumber"));
    }
    // The parts the client compares byte for byte, borrowed from the same bytes.
    let mut r = SliceReader::new(raw)?;
    let (tst_info_der, certificates, infos) = r.sequence(|ci| {
        OidRef::decode(ci)?;
        let explicit = Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        };
        let sd = content(ci.tlv_bytes()?, explicit)?;
        SliceReader::new(sd)?.sequence(|sd| {
            IntRef::decode(sd)?;
            sd.tlv_bytes()?; // digestAlgorithms
            let econtent = sd.sequence(|encap| {
                OidRef::decode(encap)?;
                let inner = content(encap.tlv_bytes()?, explicit)?;
                Ok(OctetStringRef::from_der(inner)?.as_bytes())
            })?;
            let mut certificates = Vec::new();
            let certs =
                sd.context_specific::<ImplicitSetRef<'_>>(TagNumber::N0, TagMode::Implicit)?;
            if let Some(set) = certs {
                let mut c = SliceReader::new(set.0)?;
                while !c.is_finished() {
                    certificates.push(c.tlv_bytes()?);
                }
            }
            sd.context_specific::<ImplicitSetRef<'_>>(TagNumber::N1, TagMode::Implicit)?; // crls
            let sis = content(sd.tlv_bytes()?, Tag::Set)?;
            let mut infos = Vec::new();
            let mut s = SliceReader::new(sis)?;
            while !s.is_finished() {
                infos.push(s.sequence(|si| {
                    let version = IntRef::decode(si)?;
                    let (issuer, serial) =
                        si.sequence(|sid| Ok((sid.tlv_bytes()?, sid.tlv_bytes()?)))?;
                    let digest_alg = si.sequence(|a| {
                        let alg = OidRef::decode(a)?;
                        while !a.is_finished() {
                            a.tlv_bytes()?;
                        }
                        Ok(alg)
                    })?;
                    let signed_attrs = si
                        .context_specific::<ImplicitSetRef<'_>>(TagNumber::N0, TagMode::Implicit)?
                        .map(|s| s.0)
                        .unwrap_or_default();
                    let signature_alg = si.tlv_bytes()?;
                    let signature = OctetStringRef::decode(si)?.as_bytes();
                    while !si.is_finished() {
                        si.tlv_bytes()?; // unsignedAttrs
                    }
                    Ok(SignerInfo {
                        version: small_uint(version)?,
                        sid_issuer: issuer,
                        sid_serial: serial,
                        digest_alg: digest_alg.0,
                        signed_attrs,
                        signature_alg,
                        signature,
                    })
                })?);
            }
            Ok((econtent, certificates, infos))
        })
    })?;
    r.finish(())?;
    Ok(Token {
        raw,
        signed_data_version: sd.version as u64,
        tst_info_der,
        tst_info: decode_tst_info(tst_info_der)?,
        certificates,
        signer_infos: infos,
    })
}

/// An IMPLICIT `[n] SET OF ...` kept as its content octets (certificates, crls,
/// signedAttrs): `cms` has checked what is inside.
struct ImplicitSetRef<'a>(&'a [u8]);

impl<'a> ::der::DecodeValue<'a> for ImplicitSetRef<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: ::der::Header) -> ::der::Result<Self> {
        Ok(ImplicitSetRef(reader.read_slice(header.length)?))
    }
}

impl ::der::FixedTag for ImplicitSetRef<'_> {
    const TAG: Tag = Tag::Set;
}

/// Decodes a DER `TSTInfo` (the eContent of a token), strictly.
pub fn decode_tst_info(input: &[u8]) -> Result<TstInfo<'_>, DecodeError> {
    let mut outer = SliceReader::new(input)?;
    let t = outer.sequence(|t| {
        let version = small_uint(IntRef::decode(t)?)?;
        let policy = OidRef::decode(t)?.0;
        let message_imprint = t.tlv_bytes()?;
        let mi = MessageImprintRef::from_der(message_imprint)?;
        let serial = IntRef::decode(t)?.as_bytes();
        let gen_time = GeneralizedTimeRef::decode(t)?;
        let accuracy = Option::<AccuracyRef<'_>>::decode(t)?
            .map(|a| -> ::der::Result<(u64, u64, u64)> {
                let part = |v: Option<IntRef<'_>>| v.map_or(Ok(0), small_uint);
                Ok((part(a.seconds)?, part(a.millis)?, part(a.micros)?))
            })
            .transpose()?;
        let ordering = super::asn1::no_explicit_default(Option::<bool>::decode(t)?)?;
        let nonce = Option::<IntRef<'_>>::decode(t)?.map(|n| n.as_bytes());
        let explicit = |n| Tag::ContextSpecific {
            constructed: true,
            number: n,
        };
        // `[0]` around a CHOICE is explicit: it holds exactly one GeneralName TLV.
        let tsa = if t.peek_tag().ok() == Some(explicit(TagNumber::N0)) {
            let mut name = SliceReader::new(content(t.tlv_bytes()?, explicit(TagNumber::N0))?)?;
            let general_name = name.tlv_bytes()?;
            Some(name.finish(general_name)?)
        } else {
            None
        };
        let has_extensions = t
            .context_specific::<ImplicitSetRef<'_>>(TagNumber::N1, TagMode::Implicit)?
            .is_some();
        Ok(TstInfo {
            version,
            policy,
            message_imprint,
            hash_oid: mi.hash_algorithm.algorithm.0,
            digest: mi.hashed_message.as_bytes(),
            serial,
            gen_time: gen_time.time,
            gen_time_text: gen_time.text,
            accuracy,
            ordering,
            nonce,
            tsa,
            has_extensions,
        })
    })?;
    Ok(outer.finish(t)?)
}

/// RFC 3161 §2.4.2 `Accuracy`: seconds, `[0]` millis, `[1]` micros, each optional.
#[derive(::der::Sequence)]
struct AccuracyRef<'a> {
    seconds: Option<IntRef<'a>>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    millis: Option<IntRef<'a>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    micros: Option<IntRef<'a>>,
}
