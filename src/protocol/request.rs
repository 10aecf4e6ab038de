//! RFC 3161 §2.4.1 TimeStampReq, decoded as strict DER without copying.
//!
//! ```text
//! TimeStampReq ::= SEQUENCE {
//!    version          INTEGER { v1(1) },
//!    messageImprint   MessageImprint,
//!    reqPolicy        TSAPolicyId             OPTIONAL,
//!    nonce            INTEGER                 OPTIONAL,
//!    certReq          BOOLEAN                 DEFAULT FALSE,
//!    extensions       [0] IMPLICIT Extensions OPTIONAL }
//! MessageImprint ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING }
//! ```

use super::asn1::{self, ExtensionsRef, MessageImprintRef, OidRef};
use super::cert::Extension;
use super::der::{self, tag};
use super::oid;
use super::status::{FailureInfo, Rejection};

/// Largest nonce we echo, in content octets. RFC 3161 sets no bound; 64 octets (512 bits)
/// covers every client we know of (most send 64 bits, some 160) and bounds the work.
pub const MAX_NONCE_OCTETS: usize = 64;

/// Message imprint hash algorithms stampd knows. Which of them a policy accepts is config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlg {
    /// SHA-1 (FIPS 180-4), 20 octets. Broken for collisions: accept it only for legacy
    /// clients.
    Sha1,
    /// SHA-256 (FIPS 180-4), 32 octets.
    Sha256,
    /// SHA-384 (FIPS 180-4), 48 octets.
    Sha384,
    /// SHA-512 (FIPS 180-4), 64 octets.
    Sha512,
    /// SHA3-256 (FIPS 202), 32 octets.
    #[serde(rename = "sha3-256")]
    Sha3_256,
    /// SHA3-384 (FIPS 202), 48 octets.
    #[serde(rename = "sha3-384")]
    Sha3_384,
    /// SHA3-512 (FIPS 202), 64 octets.
    #[serde(rename = "sha3-512")]
    Sha3_512,
}

/// SHA-256 of `data` as a fixed array (journal frame hashes, audit request digests).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref());
    out
}

impl HashAlg {
    /// Every algorithm, in a fixed order. Append only: an audit record stores its hash
    /// algorithm as the index here plus one, so reordering would misread old journals.
    pub const ALL: [HashAlg; 7] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
        HashAlg::Sha3_256,
        HashAlg::Sha3_384,
        HashAlg::Sha3_512,
    ];

    /// The algorithm's OID content octets (RFC 3279 for SHA-1, RFC 5754 §2 for SHA-2,
    /// NIST's CSOR arc for SHA-3).
    pub fn oid(self) -> &'static [u8] {
        match self {
            HashAlg::Sha1 => oid::SHA1,
            HashAlg::Sha256 => oid::SHA256,
            HashAlg::Sha384 => oid::SHA384,
            HashAlg::Sha512 => oid::SHA512,
            HashAlg::Sha3_256 => oid::SHA3_256,
            HashAlg::Sha3_384 => oid::SHA3_384,
            HashAlg::Sha3_512 => oid::SHA3_512,
        }
    }

    /// The algorithm whose OID content octets are `bytes`; `None` when stampd does not know
    /// it (answered with `badAlg`).
    pub fn from_oid_bytes(bytes: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.oid() == bytes)
    }

    /// The algorithm named `name` as in config and on the command line (`sha256`,
    /// `sha3-256`...), ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    /// The digest length in octets; a request's hashedMessage must have exactly this length
    /// (`badDataFormat` otherwise).
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 | HashAlg::Sha3_256 => 32,
            HashAlg::Sha384 | HashAlg::Sha3_384 => 48,
            HashAlg::Sha512 | HashAlg::Sha3_512 => 64,
        }
    }

    /// The config and command-line name, lower case (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Sha3_256 => "sha3-256",
            HashAlg::Sha3_384 => "sha3-384",
            HashAlg::Sha3_512 => "sha3-512",
        }
    }

    fn aws(self) -> &'static aws_lc_rs::digest::Algorithm {
        use aws_lc_rs::digest as d;
        match self {
            HashAlg::Sha1 => &d::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &d::SHA256,
            HashAlg::Sha384 => &d::SHA384,
            HashAlg::Sha512 => &d::SHA512,
            HashAlg::Sha3_256 => &d::SHA3_256,
            HashAlg::Sha3_384 => &d::SHA3_384,
            HashAlg::Sha3_512 => &d::SHA3_512,
        }
    }

    /// Hashes `data` (pure computation, no I/O).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(self.aws(), data)
            .as_ref()
            .to_vec()
    }

    /// A streaming hasher, for files.
    pub fn hasher(self) -> aws_lc_rs::digest::Context {
        aws_lc_rs::digest::Context::new(self.aws())
    }

    /// `AlgorithmIdentifier` with parameters absent (RFC 5754 §2: SHA-2 parameters SHOULD be
    /// absent).
    pub fn algorithm_identifier(self) -> Vec<u8> {
        der::tlv(tag::SEQUENCE, &oid::oid_tlv(self.oid()))
    }
}

/// A decoded request. Slices point into the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeStampReq<'a> {
    /// `version`; only 1 is accepted, by [`check_imprint`] (`badRequest`).
    pub version: u64,
    /// The whole MessageImprint TLV, copied into TSTInfo byte for byte (RFC 3161 §2.4.2).
    pub message_imprint: &'a [u8],
    /// OID content octets of hashAlgorithm.
    pub hash_oid: &'a [u8],
    /// True when hashAlgorithm carried parameters other than absent or NULL.
    pub hash_params_invalid: bool,
    /// The hashedMessage octets (the digest of the requester's data).
    pub digest: &'a [u8],
    /// reqPolicy OID content octets.
    pub req_policy: Option<&'a [u8]>,
    /// Nonce INTEGER content octets, echoed exactly.
    pub nonce: Option<&'a [u8]>,
    /// certReq: put the TSA certificate (and, per policy, its chain) into the token.
    pub cert_req: bool,
    extensions: ExtensionsRef<'a>,
}

impl<'a> TimeStampReq<'a> {
    /// The hash algorithm, if stampd knows it.
    pub fn hash_alg(&self) -> Option<HashAlg> {
        HashAlg::from_oid_bytes(self.hash_oid)
    }

    /// The request extensions (structure already validated by [`decode`]).
    pub fn extensions(&self) -> impl Iterator<Item = Extension<'a>> + 'a {
        self.extensions.iter().map(|e| Extension {
            oid: e.extn_id.0,
            critical: e.critical == Some(true),
            value: e.extn_value.as_bytes(),
        })
    }

    /// True when the request carries `extensions [0]`.
    pub fn has_extensions(&self) -> bool {
        !self.extensions.is_empty()
    }
}

const BAD_FORMAT: Rejection = Rejection::new(
    FailureInfo::BadDataFormat,
    "request is not a valid DER TimeStampReq",
);

/// Decodes a `TimeStampReq`. Structural errors are `badDataFormat` (RFC 3161 §2.4.2).
/// Semantic checks that depend on configuration (hash allow-list, policy, extensions) are
/// left to [`crate::policy`]; [`check_imprint`] does the ones that do not.
pub fn decode(input: &[u8]) -> Result<TimeStampReq<'_>, Rejection> {
    decode_der(input).map_err(|e| match e {
        Malformed::Der => BAD_FORMAT,
        Malformed::NonceTooLong => NONCE_TOO_LONG,
        Malformed::ExplicitDefault => EXPLICIT_DEFAULT,
    })
}

/// The nonce is valid DER but longer than [`MAX_NONCE_OCTETS`]: said precisely, since RFC
/// 3161 itself sets no bound.
const NONCE_TOO_LONG: Rejection =
    Rejection::new(FailureInfo::BadDataFormat, "nonce longer than 64 octets");

/// `certReq FALSE` written out: DER omits a DEFAULT value (X.690 §11.5), so the request is
/// not DER. Said precisely, since the fix on the client's side is simple.
const EXPLICIT_DEFAULT: Rejection = Rejection::new(
    FailureInfo::BadDataFormat,
    "certReq FALSE is encoded; DER omits DEFAULT values",
);

/// Why a request does not decode.
enum Malformed {
    /// Not DER, or not a TimeStampReq (which rule broke is not told to the requester).
    Der,
    /// A nonce over [`MAX_NONCE_OCTETS`].
    NonceTooLong,
    /// `certReq` encoded with its DEFAULT value.
    ExplicitDefault,
}

impl From<::der::Error> for Malformed {
    fn from(_: ::der::Error) -> Self {
        Malformed::Der
    }
}

fn decode_der(input: &[u8]) -> Result<TimeStampReq<'_>, Malformed> {
    use ::der::asn1::IntRef;
    use ::der::{Decode, Encode, Reader, SliceReader, TagMode, TagNumber};
    let mut outer = SliceReader::new(input)?;
    // A nested reader's positions count from the start of the SEQUENCE's content.
    let base = usize::try_from(outer.peek_header()?.encoded_len()?)?;
    let req = outer.sequence(|r| {
        let version = IntRef::decode(r)?;
        // The whole MessageImprint TLV is copied into TSTInfo as it came: its span of the
        // input, by the reader's positions.
        let start = base + usize::try_from(r.position())?;
        let imprint = MessageImprintRef::decode(r)?;
        let end = base + usize::try_from(r.position())?;
        let message_imprint = input.get(start..end).ok_or(::der::ErrorKind::Failed)?;
        let req_policy = Option::<OidRef<'_>>::decode(r)?;
        let nonce = Option::<IntRef<'_>>::decode(r)?;
        let cert_req = Option::<bool>::decode(r)?;
        let extensions = r
            .context_specific::<ExtensionsRef<'_>>(TagNumber::N0, TagMode::Implicit)?
            .unwrap_or(ExtensionsRef::EMPTY);
        Ok((
            version,
            message_imprint,
            imprint,
            req_policy,
            nonce,
            cert_req,
            extensions,
        ))
    })?;
    let (version, message_imprint, imprint, req_policy, nonce, cert_req, extensions) =
        outer.finish(req)?;
    // INTEGER content octets, minimal (checked by `der`); version and nonce are never
    // negative.
    let version = asn1::small_uint(version)?;
    let nonce = nonce.map(asn1::non_negative).transpose()?;
    let cert_req = asn1::no_explicit_default(cert_req).map_err(|_| Malformed::ExplicitDefault)?;
    if nonce.is_some_and(|n| n.len() > MAX_NONCE_OCTETS) {
        return Err(Malformed::NonceTooLong);
    }
    // Parameters absent or NULL (RFC 5754 §2); anything else is refused by check_imprint.
    let hash_params_invalid = imprint
        .hash_algorithm
        .parameters
        .is_some_and(|p| ::der::Tagged::tag(&p) != ::der::Tag::Null || !p.value().is_empty());
    Ok(TimeStampReq {
        version,
        message_imprint,
        hash_oid: imprint.hash_algorithm.algorithm.0,
        hash_params_invalid,
        digest: imprint.hashed_message.as_bytes(),
        req_policy: req_policy.map(|p| p.0),
        nonce,
        cert_req,
        extensions,
    })
}

/// Checks the parts of a request that need no configuration: version (`badRequest`), hash
/// algorithm parameters (`badAlg`) and digest length (`badDataFormat`). Returns the hash
/// algorithm, or `badAlg` when stampd does not know it.
pub fn check_imprint(req: &TimeStampReq<'_>) -> Result<HashAlg, Rejection> {
    if req.version != 1 {
        return Err(Rejection::new(
            FailureInfo::BadRequest,
            "unsupported request version",
        ));
    }
    let alg = req.hash_alg().ok_or(Rejection::new(
        FailureInfo::BadAlg,
        "unsupported hash algorithm",
    ))?;
    if req.hash_params_invalid {
        return Err(Rejection::new(
            FailureInfo::BadAlg,
            "unexpected hash algorithm parameters",
        ));
    }
    if req.digest.len() != alg.digest_len() {
        return Err(Rejection::new(
            FailureInfo::BadDataFormat,
            "digest length does not match the hash algorithm",
        ));
    }
    Ok(alg)
}

/// Encodes a request (used by `stampd request`, tests and benches).
pub fn encode(
    alg: HashAlg,
    digest: &[u8],
    policy: Option<&oid::Oid>,
    nonce: Option<&[u8]>,
    cert_req: bool,
) -> Vec<u8> {
    let imprint = der::tlv_of(
        tag::SEQUENCE,
        &[
            &alg.algorithm_identifier(),
            &der::tlv(tag::OCTET_STRING, digest),
        ],
    );
    let policy = policy
        .map(|p| oid::oid_tlv(p.as_bytes()))
        .unwrap_or_default();
    let nonce = nonce
        .map(|n| der::tlv(tag::INTEGER, &der::unsigned_integer_content(n)))
        .unwrap_or_default();
    let cert_req: &[u8] = if cert_req { &[0x01, 0x01, 0xff] } else { &[] };
    der::tlv_of(
        tag::SEQUENCE,
        &[&der::uint(1), &imprint, &policy, &nonce, cert_req],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Not;

    fn sha256_req(nonce: Option<&[u8]>, cert_req: bool) -> Vec<u8> {
        encode(HashAlg::Sha256, &[0xab; 32], None, nonce, cert_req)
    }

    #[test]
    fn decodes_what_it_encodes() {
        let policy = oid::Oid::parse("2.999.1.1").unwrap();
        let bytes = encode(
            HashAlg::Sha384,
            &[1; 48],
            Some(&policy),
            Some(&[0x80, 1]),
            true,
        );
        let req = decode(&bytes).unwrap();
        assert_eq!(req.version, 1);
        assert_eq!(req.hash_alg(), Some(HashAlg::Sha384));
        assert_eq!(req.digest, &[1; 48]);
        // The imprint is its whole TLV, exactly as it came: after the SEQUENCE header and
        // `02 01 01`.
        let imprint = der::tlv_of(
            tag::SEQUENCE,
            &[
                &HashAlg::Sha384.algorithm_identifier(),
                &der::tlv(tag::OCTET_STRING, &[1; 48]),
            ],
        );
        assert_eq!(req.message_imprint, &imprint[..]);
        assert_eq!(&bytes[2 + 3..2 + 3 + imprint.len()], &imprint[..]);
        assert_eq!(req.req_policy, Some(policy.as_bytes()));
        assert_eq!(req.nonce, Some(&[0x00, 0x80, 0x01][..]));
        assert!(req.cert_req);
        assert!(!req.has_extensions());
        assert_eq!(check_imprint(&req), Ok(HashAlg::Sha384));
    }

    /// Output of `openssl ts -query -digest <32 zero bytes> -sha256 -no_nonce` (OpenSSL 3.0).
    const OPENSSL_QUERY: &str = "30360201013031300d060960864801650304020105000420\
                                 0000000000000000000000000000000000000000000000000000000000000000";

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn golden_openssl_query() {
        let golden = unhex(OPENSSL_QUERY);
        let req = decode(&golden).unwrap();
        assert_eq!(check_imprint(&req), Ok(HashAlg::Sha256));
        assert!(req.hash_params_invalid.not());
        assert_eq!(req.digest, &[0u8; 32]);
        assert_eq!(req.nonce, None);
        assert!(!req.cert_req);
        // openssl writes NULL parameters; we write them absent (RFC 5754 §2). Both decode.
        let ours = encode(HashAlg::Sha256, &[0; 32], None, None, false);
        assert_eq!(ours.len() + 2, golden.len());
        assert_eq!(decode(&ours).unwrap().digest, req.digest);
    }

    #[test]
    fn trailing_bytes_are_bad_data_format() {
        let mut bytes = sha256_req(None, false);
        bytes.push(0);
        assert_eq!(decode(&bytes).unwrap_err().fail, FailureInfo::BadDataFormat);
    }

    #[test]
    fn indefinite_length_is_bad_data_format() {
        let mut bytes = sha256_req(None, false);
        bytes[1] = 0x80;
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(decode(&bytes).unwrap_err().fail, FailureInfo::BadDataFormat);
    }

    #[test]
    fn non_minimal_nonce_and_negative_nonce_are_rejected() {
        let good = sha256_req(Some(&[0x05]), false);
        assert!(decode(&good).is_ok());
        // Replace nonce 02 01 05 by 02 02 00 05 (non-minimal) and fix the outer length.
        let mut bad = good.clone();
        let pos = bad.len() - 3;
        bad.splice(pos.., [0x02, 0x02, 0x00, 0x05]);
        bad[1] += 1;
        assert_eq!(decode(&bad).unwrap_err().fail, FailureInfo::BadDataFormat);
        let mut neg = good.clone();
        let last = neg.len() - 1;
        neg[last] = 0xff;
        assert_eq!(decode(&neg).unwrap_err().fail, FailureInfo::BadDataFormat);
    }

    #[test]
    fn an_explicit_default_cert_req_is_bad_data_format() {
        // SEQUENCE { version, imprint, BOOLEAN }: certReq written out. DER omits a DEFAULT
        // value (X.690 §11.5), so FALSE is refused; TRUE is not the default and is fine.
        let with = |boolean: &[u8]| {
            let plain = sha256_req(None, false);
            let mut content = plain[2..].to_vec();
            content.extend_from_slice(boolean);
            let mut v = vec![0x30, content.len() as u8];
            v.extend_from_slice(&content);
            v
        };
        let explicit_false = decode(&with(&[0x01, 0x01, 0x00])).unwrap_err();
        assert_eq!(explicit_false.fail, FailureInfo::BadDataFormat);
        assert_eq!(
            explicit_false.text,
            "certReq FALSE is encoded; DER omits DEFAULT values"
        );
        assert!(decode(&with(&[0x01, 0x01, 0xff])).unwrap().cert_req);
        assert_eq!(
            decode(&with(&[0x01, 0x01, 0x01])).unwrap_err().fail,
            FailureInfo::BadDataFormat
        );
    }

    #[test]
    fn other_der_violations_inside_the_request_are_bad_data_format() {
        let seq = sha256_req(None, false)[2..].to_vec();
        let ext_oid = oid::oid_tlv(oid::Oid::parse("1.2.3.4").unwrap().as_bytes());
        // An extension with critical FALSE written out.
        let e = der::tlv_of(
            tag::SEQUENCE,
            &[
                &ext_oid,
                &[0x01, 0x01, 0x00],
                &der::tlv(tag::OCTET_STRING, b"v"),
            ],
        );
        let bytes = der::tlv_of(tag::SEQUENCE, &[&seq, &der::tlv(tag::ctx_cons(0), &e)]);
        assert_eq!(decode(&bytes).unwrap_err().fail, FailureInfo::BadDataFormat);
        // An AlgorithmIdentifier with a third element.
        let alg = der::tlv_of(
            tag::SEQUENCE,
            &[&oid::oid_tlv(oid::SHA256), &[0x05, 0x00], &[0x05, 0x00]],
        );
        let imprint = der::tlv_of(
            tag::SEQUENCE,
            &[&alg, &der::tlv(tag::OCTET_STRING, &[0; 32])],
        );
        let bytes = der::tlv_of(tag::SEQUENCE, &[&der::uint(1), &imprint]);
        assert_eq!(decode(&bytes).unwrap_err().fail, FailureInfo::BadDataFormat);
        // An empty INTEGER as the version, and a version past u64.
        let imprint = &seq[3..];
        for version in [
            &[0x02, 0x00][..],
            &[0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let bytes = der::tlv_of(tag::SEQUENCE, &[version, imprint]);
            assert_eq!(decode(&bytes).unwrap_err().fail, FailureInfo::BadDataFormat);
        }
        // The largest version that fits is decoded (and refused later with badRequest).
        let max = [
            0x02, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let bytes = der::tlv_of(tag::SEQUENCE, &[&max, imprint]);
        assert_eq!(decode(&bytes).unwrap().version, u64::MAX);
    }

    #[test]
    fn long_nonces_echo_up_to_the_limit() {
        let n160 = [0x7fu8; 20];
        let req_bytes = sha256_req(Some(&n160), false);
        assert_eq!(decode(&req_bytes).unwrap().nonce, Some(&n160[..]));
        let too_long = [0x11u8; MAX_NONCE_OCTETS + 1];
        let req_bytes = sha256_req(Some(&too_long), false);
        assert_eq!(
            decode(&req_bytes).unwrap_err().fail,
            FailureInfo::BadDataFormat
        );
        assert_eq!(
            decode(&req_bytes).unwrap_err().text,
            "nonce longer than 64 octets"
        );
    }

    #[test]
    fn semantic_checks_map_to_the_right_failure() {
        let bytes = encode(HashAlg::Sha256, &[0; 31], None, None, false);
        let req = decode(&bytes).unwrap();
        assert_eq!(
            check_imprint(&req).unwrap_err().fail,
            FailureInfo::BadDataFormat
        );

        let mut v2 = encode(HashAlg::Sha256, &[0; 32], None, None, false);
        v2[4] = 2; // version
        let req = decode(&v2).unwrap();
        assert_eq!(
            check_imprint(&req).unwrap_err().fail,
            FailureInfo::BadRequest
        );

        // MD5 (1.2.840.113549.2.5) is unknown → badAlg.
        let md5 = oid::Oid::parse("1.2.840.113549.2.5").unwrap();
        let alg = der::tlv(tag::SEQUENCE, &oid::oid_tlv(md5.as_bytes()));
        let imprint = der::tlv_of(
            tag::SEQUENCE,
            &[&alg, &der::tlv(tag::OCTET_STRING, &[0; 16])],
        );
        let bytes = der::tlv_of(tag::SEQUENCE, &[&der::uint(1), &imprint]);
        let req = decode(&bytes).unwrap();
        assert_eq!(check_imprint(&req).unwrap_err().fail, FailureInfo::BadAlg);

        // Parameters other than NULL → badAlg.
        let alg = der::tlv_of(tag::SEQUENCE, &[&oid::oid_tlv(oid::SHA256), &der::uint(1)]);
        let imprint = der::tlv_of(
            tag::SEQUENCE,
            &[&alg, &der::tlv(tag::OCTET_STRING, &[0; 32])],
        );
        let bytes = der::tlv_of(tag::SEQUENCE, &[&der::uint(1), &imprint]);
        let req = decode(&bytes).unwrap();
        assert_eq!(check_imprint(&req).unwrap_err().fail, FailureInfo::BadAlg);
    }

    #[test]
    fn extensions_are_parsed_with_criticality() {
        let ext_oid = oid::oid_tlv(oid::Oid::parse("1.2.3.4").unwrap().as_bytes());
        let e1 = der::tlv_of(
            tag::SEQUENCE,
            &[
                &ext_oid,
                &[0x01, 0x01, 0xff],
                &der::tlv(tag::OCTET_STRING, b"v"),
            ],
        );
        let e2 = der::tlv_of(
            tag::SEQUENCE,
            &[&ext_oid, &der::tlv(tag::OCTET_STRING, b"w")],
        );
        let exts = der::tlv_of(tag::ctx_cons(0), &[&e1, &e2]);
        let seq = sha256_req(None, false)[2..].to_vec();
        let bytes = der::tlv_of(tag::SEQUENCE, &[&seq, &exts]);
        let req = decode(&bytes).unwrap();
        let got: Vec<_> = req
            .extensions()
            .map(|e| (e.critical, e.value.to_vec()))
            .collect();
        assert_eq!(got, vec![(true, b"v".to_vec()), (false, b"w".to_vec())]);

        let empty = der::tlv_of(tag::SEQUENCE, &[&seq, &[0xa0, 0x00]]);
        assert_eq!(decode(&empty).unwrap_err().fail, FailureInfo::BadDataFormat);
    }

    #[test]
    fn invalid_oids_are_bad_data_format() {
        let body = encode(HashAlg::Sha256, &[0; 32], None, None, false);
        // Replace the hash OID's last octet by 0x81: an unterminated sub-identifier.
        let mut bad = body.clone();
        bad[19] = 0x81;
        assert_eq!(decode(&bad).unwrap_err().fail, FailureInfo::BadDataFormat);
    }

    #[test]
    fn fields_out_of_order_are_rejected() {
        // certReq before nonce.
        let seq = sha256_req(None, false)[2..].to_vec();
        let bytes = der::tlv_of(tag::SEQUENCE, &[&seq, &[0x01, 0x01, 0xff], &der::uint(5)]);
        assert_eq!(decode(&bytes).unwrap_err().fail, FailureInfo::BadDataFormat);
    }

    #[test]
    fn never_panics_on_truncations_or_bit_flips() {
        let base = encode(HashAlg::Sha512, &[9; 64], None, Some(&[1, 2, 3]), true);
        for cut in 0..base.len() {
            let _ = decode(&base[..cut]);
        }
        for i in 0..base.len() {
            for bit in 0..8 {
                let mut b = base.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b).map(|r| check_imprint(&r));
            }
        }
    }
}
