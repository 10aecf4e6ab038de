//! Legacy Microsoft Authenticode timestamps: what `signtool sign /t URL` and `osslsigncode
//! sign -t URL` send. Not RFC 3161: the request is the base64 text of a DER
//! `TimeStampRequest` and the answer the base64 text of a PKCS#7 `SignedData` whose signer
//! countersigns the requester's signature. The format is Microsoft's ("Time Stamping
//! Authenticode Signatures", MSDN; osslsigncode and SignServer implement the same):
//!
//! ```text
//! TimeStampRequest ::= SEQUENCE {
//!     countersignatureType  OBJECT IDENTIFIER,     -- 1.3.6.1.4.1.311.3.2.1
//!     attributes            Attributes OPTIONAL,   -- accepted, ignored
//!     content               ContentInfo }          -- id-data, [0] OCTET STRING signature
//! ```
//!
//! The reply's `SignedData` (RFC 5652, version 1) encapsulates exactly the request's
//! `ContentInfo`, always carries the certificate chain, and signs three attributes:
//! contentType (id-data), signingTime as **UTCTime** (osslsigncode ignores a stamp without
//! it) and messageDigest over the encapsulated octets. No I/O: bytes in, bytes out.

use ::der::{asn1::AnyRef, Decode, Reader, SliceReader, Tag, Tagged};
use base64::Engine as _;

use super::der::{self, tag, tlv_len, write_header};
use super::oid;
use super::time::write_utc_time;
use super::token::SignerTemplate;
use super::{HashAlg, Timestamp};

/// A decoded request, borrowing from the DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The whole `ContentInfo` TLV, copied into the reply byte for byte.
    pub content_info: &'a [u8],
    /// The OCTET STRING's contents: the signature being countersigned.
    pub content: &'a [u8],
}

/// Why a request body is refused (one line, for a `400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// The body is DER, not base64: most likely an RFC 3161 request sent to the
    /// Authenticode endpoint.
    Rfc3161Body,
    /// Not base64 text.
    NotBase64,
    /// base64, but not a `TimeStampRequest`.
    NotTimestampRequest,
    /// A `TimeStampRequest` of another countersignature type.
    WrongType,
    /// Its content is not an id-data `ContentInfo` with an OCTET STRING.
    BadContent,
}

impl BadRequest {
    /// The reason, as the `400` says it.
    pub fn text(self) -> &'static str {
        match self {
            BadRequest::Rfc3161Body => {
                "this is an Authenticode (legacy) endpoint and the body is a DER RFC 3161 \
                 request: send RFC 3161 requests (signtool /tr, osslsigncode -ts) to the RFC 3161 \
                 path instead"
            }
            BadRequest::NotBase64 => "the body is not base64 (an Authenticode TimeStampRequest)",
            BadRequest::NotTimestampRequest => {
                "the body is base64 but not a DER Authenticode TimeStampRequest"
            }
            BadRequest::WrongType => {
                "the countersignatureType is not 1.3.6.1.4.1.311.3.2.1 (an Authenticode timestamp)"
            }
            BadRequest::BadContent => {
                "the request's content is not an id-data ContentInfo holding an OCTET STRING"
            }
        }
    }
}

/// The DER of a base64 body: line breaks and other whitespace tolerated, and one trailing
/// NUL byte (some `signtool` versions send it).
pub fn unbase64(body: &[u8]) -> Result<Vec<u8>, BadRequest> {
    let body = body.strip_suffix(&[0]).unwrap_or(body);
    if body.first() == Some(&tag::SEQUENCE) {
        return Err(BadRequest::Rfc3161Body);
    }
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| BadRequest::NotBase64)
}

/// Decodes a `TimeStampRequest` (strict DER).
pub fn decode(input: &[u8]) -> Result<Request<'_>, BadRequest> {
    let bad = |_| BadRequest::NotTimestampRequest;
    let outer = AnyRef::from_der(input).map_err(bad)?;
    if outer.tag() != Tag::Sequence {
        return Err(BadRequest::NotTimestampRequest);
    }
    let body = outer.value();
    let mut r = SliceReader::new(body).map_err(bad)?;
    let kind = AnyRef::decode(&mut r).map_err(bad)?;
    if kind.tag() != Tag::ObjectIdentifier {
        return Err(BadRequest::NotTimestampRequest);
    }
    if kind.value() != oid::MS_TIMESTAMP_REQUEST {
        return Err(BadRequest::WrongType);
    }
    let mut start = usize::try_from(r.position()).map_err(bad)?;
    let mut element = AnyRef::decode(&mut r).map_err(bad)?;
    if element.tag() == Tag::Set {
        // attributes: accepted and ignored.
        start = usize::try_from(r.position()).map_err(bad)?;
        element = AnyRef::decode(&mut r).map_err(bad)?;
    }
    let end = usize::try_from(r.position()).map_err(bad)?;
    if !r.is_finished() || element.tag() != Tag::Sequence {
        return Err(BadRequest::NotTimestampRequest);
    }
    let content_info = &body[start..end];
    let content = content_octets(element.value()).ok_or(BadRequest::BadContent)?;
    Ok(Request {
        content_info,
        content,
    })
}

/// `contentType id-data, content [0] EXPLICIT OCTET STRING`: the octets.
fn content_octets(ci: &[u8]) -> Option<&[u8]> {
    let mut r = SliceReader::new(ci).ok()?;
    let ct = AnyRef::decode(&mut r).ok()?;
    if ct.tag() != Tag::ObjectIdentifier || ct.value() != oid::DATA {
        return None;
    }
    let explicit = AnyRef::decode(&mut r).ok()?;
    if explicit.tag().octet() != tag::ctx_cons(0) || !r.is_finished() {
        return None;
    }
    let octets = AnyRef::from_der(explicit.value()).ok()?;
    (octets.tag() == Tag::OctetString).then(|| octets.value())
}

/// A reply waiting for its signature.
#[derive(Debug)]
pub struct Prepared {
    /// The DER `SET OF Attribute` the signature covers (RFC 5652 §5.4).
    pub signed_attrs: Vec<u8>,
}

/// The signed attributes for `req` at `time` (truncated to the second): contentType
/// id-data, signingTime (UTCTime), messageDigest over the content octets with the signer's
/// digest. `None` for a time UTCTime cannot hold (after 2049).
pub fn prepare(signer: &SignerTemplate, req: &Request<'_>, time: Timestamp) -> Option<Prepared> {
    let attr = |id: &[u8], value: Vec<u8>| {
        der::tlv_of(
            tag::SEQUENCE,
            &[&oid::oid_tlv(id), &der::tlv(tag::SET, &value)],
        )
    };
    let mut utc = Vec::with_capacity(15);
    if !write_utc_time(&mut utc, time) {
        return None;
    }
    let digest: HashAlg = signer.scheme.digest();
    let attrs = vec![
        attr(oid::ATTR_CONTENT_TYPE, oid::oid_tlv(oid::DATA)),
        attr(oid::ATTR_SIGNING_TIME, utc),
        attr(
            oid::ATTR_MESSAGE_DIGEST,
            der::tlv(tag::OCTET_STRING, &digest.digest(req.content)),
        ),
    ];
    Some(Prepared {
        signed_attrs: der::set_of(tag::SET, attrs),
    })
}

/// The complete reply DER: `ContentInfo { signedData, SignedData }`.
pub fn finish(
    signer: &SignerTemplate,
    req: &Request<'_>,
    prepared: &Prepared,
    signature: &[u8],
) -> Vec<u8> {
    // signedAttrs go out as [0] IMPLICIT: the SET's contents under the context tag.
    let attrs = AnyRef::from_der(&prepared.signed_attrs)
        .map(|a| a.value())
        .unwrap_or_default();
    let signer_info = der::tlv_of(
        tag::SEQUENCE,
        &[
            signer.signer_info_head(),
            &der::tlv(tag::ctx_cons(0), attrs),
            signer.signature_alg(),
            &der::tlv(tag::OCTET_STRING, signature),
        ],
    );
    let signed_data = der::tlv_of(
        tag::SEQUENCE,
        &[
            &[tag::INTEGER, 1, 1], // version 1: the content is id-data (RFC 5652 §5.1)
            signer.digest_algorithms(),
            req.content_info,
            signer.certificates(),
            &der::tlv(tag::SET, &signer_info),
        ],
    );
    let mut out = Vec::with_capacity(tlv_len(
        oid::SIGNED_DATA.len() + 2 + tlv_len(signed_data.len()),
    ));
    write_header(
        &mut out,
        tag::SEQUENCE,
        oid::SIGNED_DATA.len() + 2 + tlv_len(signed_data.len()),
    );
    der::write_tlv(&mut out, tag::OID, oid::SIGNED_DATA);
    der::write_tlv(&mut out, tag::ctx_cons(0), &signed_data);
    out
}

/// The body of a `200` answer: the reply in base64 (no line breaks).
pub fn base64_reply(der: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(der)
        .into_bytes()
}

/// A request for `content`, as `osslsigncode -t` builds one (for tests and the load
/// generator).
pub fn encode_request(content: &[u8]) -> Vec<u8> {
    let content_info = der::tlv_of(
        tag::SEQUENCE,
        &[
            &oid::oid_tlv(oid::DATA),
            &der::tlv(tag::ctx_cons(0), &der::tlv(tag::OCTET_STRING, content)),
        ],
    );
    der::tlv_of(
        tag::SEQUENCE,
        &[&oid::oid_tlv(oid::MS_TIMESTAMP_REQUEST), &content_info],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_with_or_without_attributes_and_base64_tolerates_what_clients_send() {
        let der = encode_request(b"the signature");
        let req = decode(&der).unwrap();
        assert_eq!(req.content, b"the signature");
        assert_eq!(req.content_info, &der[der.len() - req.content_info.len()..]);
        // With (ignored) attributes before the content.
        let ci = req.content_info.to_vec();
        let with_attrs = der::tlv_of(
            tag::SEQUENCE,
            &[
                &oid::oid_tlv(oid::MS_TIMESTAMP_REQUEST),
                &der::tlv(tag::SET, &[]),
                &ci,
            ],
        );
        assert_eq!(decode(&with_attrs).unwrap().content, b"the signature");
        // base64 with CRLF line breaks and a trailing NUL.
        let text = base64::engine::general_purpose::STANDARD.encode(&der);
        let (a, b) = text.split_at(10);
        let body = format!("{a}\r\n{b}\r\n\0");
        assert_eq!(unbase64(body.as_bytes()).unwrap(), der);
        assert_eq!(unbase64(&der), Err(BadRequest::Rfc3161Body));
        assert_eq!(unbase64(b"not base64!"), Err(BadRequest::NotBase64));
        assert_eq!(decode(b"\x30\x00"), Err(BadRequest::NotTimestampRequest));
        let other = der::tlv_of(tag::SEQUENCE, &[&oid::oid_tlv(oid::DATA), &ci]);
        assert_eq!(decode(&other), Err(BadRequest::WrongType));
        let no_octets = der::tlv_of(
            tag::SEQUENCE,
            &[
                &oid::oid_tlv(oid::MS_TIMESTAMP_REQUEST),
                &der::tlv_of(tag::SEQUENCE, &[&oid::oid_tlv(oid::DATA)]),
            ],
        );
        assert_eq!(decode(&no_octets), Err(BadRequest::BadContent));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn signing_time_is_utctime_and_the_attributes_are_in_der_order() {
        let mut out = Vec::new();
        assert!(write_utc_time(
            &mut out,
            Timestamp {
                unix_secs: 1_764_633_600,
                nanos: 999_000_000
            }
        ));
        assert_eq!(&out[..2], &[tag::UTC_TIME, 13]);
        assert_eq!(&out[2..], b"251202000000Z");
        assert!(!write_utc_time(
            &mut Vec::new(),
            Timestamp {
                unix_secs: 2_556_144_000, // 2051
                nanos: 0
            }
        ));
    }
}
