//! The timestamp token: TSTInfo (RFC 3161 §2.4.2) inside CMS SignedData (RFC 5652 §5),
//! signed with ESS signing-certificate-v2 (RFC 5035 / RFC 5816).
//!
//! Everything that does not change from one token to the next is encoded once, when a
//! template is built; a token then costs one TSTInfo, one digest, three signed attributes
//! and the assembly of the envelope around the signature. Signing itself is outside this
//! module: [`prepare`] yields the bytes to sign, [`finish`] wraps the signature.

use ::der::asn1::{Any, ContextSpecific, Null, ObjectIdentifier, OctetString, SetOfVec};
use ::der::{Decode, Encode, TagMode, TagNumber};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::CertificateSet;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use super::asn1::OidRef;
use super::cert::{CertError, CertView};
use super::der::{self, header_len, tag, tlv_len, write_header};
use super::oid;
use super::request::{HashAlg, TimeStampReq};
use super::time::{write_generalized_time, Precision, Timestamp};
use super::tsp::{
    self, AccuracyDer, EssCertIdV2, IssuerSerial, PssParams, QcStatement, SigningCertificate,
    SigningCertificateV2,
};

/// How the TSA key signs. The digest algorithm follows the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// ECDSA on P-256 with SHA-256 (RFC 5758 §3.2); the signature is a DER
    /// `ECDSA-Sig-Value` (RFC 5753 §2.1.1).
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384 (RFC 5758 §3.2); the signature is a DER
    /// `ECDSA-Sig-Value` (RFC 5753 §2.1.1).
    EcdsaP384Sha384,
    /// Pure Ed25519 over the signed attributes; RFC 8419 §3.1 requires SHA-512 as the
    /// digest algorithm when signed attributes are present.
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 4055 §5), the scheme every RFC 3161 verifier
    /// knows; RSA keys use it unless the signer asks for PSS.
    RsaPkcs1Sha256,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32 (RFC 4056).
    RsaPssSha256,
}

impl SignatureScheme {
    /// The digest algorithm that goes with the key: SignedData's `digestAlgorithms`, the
    /// SignerInfo's `digestAlgorithm` and the hash of the `messageDigest` attribute over
    /// TSTInfo (RFC 5652 §5.4). SHA-512 for Ed25519 (RFC 8419 §3.1), else the hash the
    /// signature algorithm names.
    pub fn digest(self) -> HashAlg {
        match self {
            SignatureScheme::EcdsaP256Sha256
            | SignatureScheme::RsaPkcs1Sha256
            | SignatureScheme::RsaPssSha256 => HashAlg::Sha256,
            SignatureScheme::EcdsaP384Sha384 => HashAlg::Sha384,
            SignatureScheme::Ed25519 => HashAlg::Sha512,
        }
    }

    /// A stable lower-case label (`ecdsa-p256-sha256`, `rsa-pss-sha256`, ...) for logs;
    /// never parsed back.
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            SignatureScheme::EcdsaP384Sha384 => "ecdsa-p384-sha384",
            SignatureScheme::Ed25519 => "ed25519",
            SignatureScheme::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            SignatureScheme::RsaPssSha256 => "rsa-pss-sha256",
        }
    }

    /// signatureAlgorithm AlgorithmIdentifier for the SignerInfo.
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        let bare = |oid| AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        };
        // RFC 4055 §2.1: SHA-256 inside RSA parameters carries NULL.
        let sha256_null = || AlgorithmIdentifierOwned {
            oid: typed_oid::SHA256,
            parameters: Some(Any::from(Null)),
        };
        match self {
            // RFC 5758 §3.2: ECDSA parameters are absent.
            SignatureScheme::EcdsaP256Sha256 => bare(typed_oid::ECDSA_WITH_SHA256),
            SignatureScheme::EcdsaP384Sha384 => bare(typed_oid::ECDSA_WITH_SHA384),
            // RFC 8410 §3: parameters absent.
            SignatureScheme::Ed25519 => bare(typed_oid::ED25519),
            // RFC 4055 §5: parameters NULL.
            SignatureScheme::RsaPkcs1Sha256 => AlgorithmIdentifierOwned {
                oid: typed_oid::SHA256_WITH_RSA,
                parameters: Some(Any::from(Null)),
            },
            // RSASSA-PSS-params (RFC 4055 §3.1) with SHA-256 everywhere, salt 32.
            SignatureScheme::RsaPssSha256 => {
                let params = PssParams {
                    hash: sha256_null(),
                    mask_gen: AlgorithmIdentifierOwned {
                        oid: typed_oid::MGF1,
                        parameters: Any::encode_from(&sha256_null()).ok(),
                    },
                    salt_length: 32,
                };
                AlgorithmIdentifierOwned {
                    oid: typed_oid::RSASSA_PSS,
                    parameters: Any::encode_from(&params).ok(),
                }
            }
        }
    }
}

/// The standard OIDs of the templates, as const-oid values (checked at compile time).
mod typed_oid {
    use ::der::asn1::ObjectIdentifier as O;
    pub const SHA256: O = O::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const ECDSA_WITH_SHA256: O = O::new_unwrap("1.2.840.10045.4.3.2");
    pub const ECDSA_WITH_SHA384: O = O::new_unwrap("1.2.840.10045.4.3.3");
    pub const ED25519: O = O::new_unwrap("1.3.101.112");
    pub const SHA256_WITH_RSA: O = O::new_unwrap("1.2.840.113549.1.1.11");
    pub const RSASSA_PSS: O = O::new_unwrap("1.2.840.113549.1.1.10");
    pub const MGF1: O = O::new_unwrap("1.2.840.113549.1.1.8");
    pub const ATTR_CONTENT_TYPE: O = O::new_unwrap("1.2.840.113549.1.9.3");
    pub const CT_TST_INFO: O = O::new_unwrap("1.2.840.113549.1.9.16.1.4");
    pub const ATTR_SIGNING_CERTIFICATE: O = O::new_unwrap("1.2.840.113549.1.9.16.2.12");
    pub const ATTR_SIGNING_CERTIFICATE_V2: O = O::new_unwrap("1.2.840.113549.1.9.16.2.47");
    pub const ESI4_QTST_STATEMENT_1: O = O::new_unwrap("0.4.0.19422.1.1");
}

/// Which certificates a token carries when the requester asks for them (certReq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncludeCerts {
    /// Only the TSA certificate.
    Signer,
    /// The TSA certificate and every certificate configured after it.
    #[default]
    Chain,
}

/// Which ESS signing-certificate attribute tokens carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EssCertId {
    /// signingCertificate (RFC 2634): ESSCertID with a SHA-1 certificate hash, for
    /// verifiers that know only v1 (LibreSSL).
    V1,
    /// signingCertificateV2 (RFC 5035) with this certificate hash (SHA-256 by default).
    V2(HashAlg),
}

/// Constant parts of every token signed by one key, derived from its certificate.
#[derive(Debug, Clone)]
pub struct SignerTemplate {
    /// The key's signature scheme: it fixes the digest algorithm and the
    /// signatureAlgorithm encoded here, and tells the signer how to sign
    /// [`Prepared::signed_attrs`].
    pub scheme: SignatureScheme,
    /// `SET OF DigestAlgorithmIdentifier` of SignedData.
    digest_algorithms: Vec<u8>,
    /// SignerInfo prefix: version 1, sid (IssuerAndSerialNumber), digestAlgorithm.
    signer_info_head: Vec<u8>,
    signature_alg: Vec<u8>,
    content_type_attr: Vec<u8>,
    signing_cert_attr: Vec<u8>,
    /// `[0] IMPLICIT CertificateSet` with the TSA certificate only / with the chain.
    certs_signer: Vec<u8>,
    certs_chain: Vec<u8>,
    /// TSTInfo `tsa [0] GeneralName` = directoryName(subject of the TSA certificate).
    tsa_name: Vec<u8>,
    /// The DER order of the three signed attributes.
    attr_order: [Attr; 3],
}

impl SignerTemplate {
    /// SignerInfo's version, sid and digestAlgorithm, encoded.
    pub fn signer_info_head(&self) -> &[u8] {
        &self.signer_info_head
    }

    /// SignerInfo's signatureAlgorithm, encoded.
    pub fn signature_alg(&self) -> &[u8] {
        &self.signature_alg
    }

    /// SignedData's `SET OF DigestAlgorithmIdentifier`, encoded.
    pub fn digest_algorithms(&self) -> &[u8] {
        &self.digest_algorithms
    }

    /// SignedData's `certificates [0]` with the whole chain, encoded.
    pub fn certificates(&self) -> &[u8] {
        &self.certs_chain
    }

    /// `chain` is the TSA certificate first, then the rest of its chain (DER each).
    pub fn new(
        scheme: SignatureScheme,
        chain: &[Vec<u8>],
        ess: EssCertId,
    ) -> Result<Self, CertError> {
        let leaf_der = chain
            .first()
            .ok_or_else(|| CertError("an empty certificate chain".into()))?;
        let leaf = CertView::parse(leaf_der)?;
        let tbs = &leaf.certificate().tbs_certificate;
        let digest = scheme.digest();
        let digest_alg = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::from_bytes(digest.oid())?,
            parameters: None,
        };

        // version 1, sid IssuerAndSerialNumber (RFC 5652 §10.2.4, the sid pyHanko and
        // others expect), digestAlgorithm.
        let sid = IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        };
        let signer_info_head = [1u8.to_der()?, sid.to_der()?, digest_alg.to_der()?].concat();

        let content_type_attr = Attribute {
            oid: typed_oid::ATTR_CONTENT_TYPE,
            values: SetOfVec::try_from(vec![Any::encode_from(&typed_oid::CT_TST_INFO)?])?,
        }
        .to_der()?;

        // RFC 5035 §5.4 SigningCertificateV2 / RFC 2634 §5.4 SigningCertificate, naming the
        // TSA certificate by hash and IssuerSerial { directoryName(issuer), serial }.
        let issuer_serial = Some(IssuerSerial {
            issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
            serial_number: tbs.serial_number.clone(),
        });
        let (attr_oid, value) = match ess {
            EssCertId::V1 => (
                typed_oid::ATTR_SIGNING_CERTIFICATE,
                Any::encode_from(&SigningCertificate {
                    certs: vec![tsp::EssCertId {
                        cert_hash: OctetString::new(HashAlg::Sha1.digest(leaf_der))?,
                        issuer_serial,
                    }],
                    policies: None,
                })?,
            ),
            EssCertId::V2(h) => (
                typed_oid::ATTR_SIGNING_CERTIFICATE_V2,
                Any::encode_from(&SigningCertificateV2 {
                    certs: vec![EssCertIdV2 {
                        // DEFAULT id-sha256: written only for another hash (X.690 §11.5).
                        hash_algorithm: match h {
                            HashAlg::Sha256 => None,
                            other => Some(AlgorithmIdentifierOwned {
                                oid: ObjectIdentifier::from_bytes(other.oid())?,
                                parameters: None,
                            }),
                        },
                        cert_hash: OctetString::new(h.digest(leaf_der))?,
                        issuer_serial,
                    }],
                    policies: None,
                })?,
            ),
        };
        let signing_cert_attr = Attribute {
            oid: attr_oid,
            values: SetOfVec::try_from(vec![value])?,
        }
        .to_der()?;

        // The attributes' order in the DER SET depends only on their headers and OIDs, never
        // on the digest bytes (the OIDs differ before the digest starts), so it is fixed here.
        let md_placeholder = message_digest_attr(&vec![0; digest.digest_len()]);
        let mut attr_order = [
            Attr::ContentType,
            Attr::MessageDigest,
            Attr::SigningCertificate,
        ];
        attr_order.sort_by_key(|a| match a {
            Attr::ContentType => &content_type_attr,
            Attr::MessageDigest => &md_placeholder,
            Attr::SigningCertificate => &signing_cert_attr,
        });

        // SignedData `certificates [0] IMPLICIT CertificateSet`: SetOfVec sorts the chain
        // into DER order.
        let certificate_set = |certs: &[Vec<u8>]| -> Result<Vec<u8>, CertError> {
            let choices = certs
                .iter()
                .map(|c| Certificate::from_der(c).map(CertificateChoices::Certificate))
                .collect::<Result<Vec<_>, _>>()?;
            let set = CertificateSet(SetOfVec::try_from(choices)?);
            Ok(ContextSpecific {
                tag_number: TagNumber::N0,
                tag_mode: TagMode::Implicit,
                value: set,
            }
            .to_der()?)
        };
        let certs_signer = certificate_set(&chain[..1])?;
        let certs_chain = certificate_set(chain)?;
        let tsa_name = explicit_directory_name(tbs.subject.clone())?;

        Ok(SignerTemplate {
            scheme,
            digest_algorithms: SetOfVec::try_from(vec![digest_alg])?.to_der()?,
            signer_info_head,
            signature_alg: scheme.algorithm_identifier().to_der()?,
            content_type_attr,
            signing_cert_attr,
            certs_signer,
            certs_chain,
            tsa_name,
            attr_order,
        })
    }
}

/// TSTInfo `tsa [0] EXPLICIT GeneralName` holding directoryName(`name`) (RFC 3161 §2.4.2).
fn explicit_directory_name(name: x509_cert::name::Name) -> ::der::Result<Vec<u8>> {
    ContextSpecific {
        tag_number: TagNumber::N0,
        tag_mode: TagMode::Explicit,
        value: GeneralName::DirectoryName(name),
    }
    .to_der()
}

/// The three signed attributes of every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    ContentType,
    MessageDigest,
    SigningCertificate,
}

fn message_digest_attr(digest: &[u8]) -> Vec<u8> {
    der::tlv_of(
        tag::SEQUENCE,
        &[
            &oid::oid_tlv(oid::ATTR_MESSAGE_DIGEST),
            &der::tlv(tag::SET, &der::tlv(tag::OCTET_STRING, digest)),
        ],
    )
}

/// The `accuracy` of TSTInfo (RFC 3161 §2.4.2), in whole seconds, milliseconds and
/// microseconds (each part 0 = absent; millis and micros 0..=999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    /// Whole seconds; 0 leaves `seconds` out.
    pub seconds: u64,
    /// Milliseconds, 0..=999; 0 leaves `millis [0]` out (the ASN.1 range is 1..999).
    pub millis: u16,
    /// Microseconds, 0..=999; 0 leaves `micros [1]` out (the ASN.1 range is 1..999).
    pub micros: u16,
}

impl Accuracy {
    /// Splits a total in microseconds into seconds, millis and micros (`1_500` → 1 ms
    /// 500 µs). 0 is no accuracy at all: the field is left out of TSTInfo.
    pub fn from_micros(total: u64) -> Self {
        Accuracy {
            seconds: total / 1_000_000,
            millis: (total / 1_000 % 1_000) as u16,
            micros: (total % 1_000) as u16,
        }
    }

    /// The whole accuracy in microseconds: the margin genTime may be off by either way
    /// (RFC 3161 §2.4.2: the time is genTime ± accuracy).
    pub fn total_micros(&self) -> u64 {
        self.seconds * 1_000_000 + self.millis as u64 * 1_000 + self.micros as u64
    }

    /// No accuracy declared: TSTInfo carries no `accuracy` field. RFC 3161 §2.4.2 makes it
    /// OPTIONAL; ETSI EN 319 422 wants one, so the default policy declares 1 s.
    pub fn is_zero(&self) -> bool {
        self.seconds == 0 && self.millis == 0 && self.micros == 0
    }

    /// `Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER (1..999)
    /// OPTIONAL, micros [1] INTEGER (1..999) OPTIONAL }`; zero parts are omitted, and a
    /// zero accuracy is no field at all.
    fn encode(&self) -> ::der::Result<Vec<u8>> {
        if self.is_zero() {
            return Ok(Vec::new());
        }
        AccuracyDer {
            seconds: (self.seconds > 0).then_some(self.seconds),
            millis: (self.millis > 0).then_some(self.millis),
            micros: (self.micros > 0).then_some(self.micros),
        }
        .to_der()
    }
}

/// TSTInfo's `tsa` field (RFC 3161 §2.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsaName {
    /// No `tsa` field (RFC 3161 §2.4.2: OPTIONAL).
    Omit,
    /// directoryName(subject of the TSA certificate).
    Subject,
    /// directoryName(this DER Name).
    Explicit(Vec<u8>),
}

/// TSTInfo extensions (RFC 3161 §2.4.2 `extensions [1] IMPLICIT Extensions OPTIONAL`): the
/// DER of each `Extension`, in the order pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions(Vec<u8>);

impl Extensions {
    /// Appends `Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
    /// extnValue OCTET STRING }` (RFC 5280 §4.1). `oid` is the OID's content octets, `value`
    /// the DER that extnValue wraps. `critical` is never written: DER leaves out a DEFAULT
    /// value (X.690 §11.5), and ETSI EN 319 422 §5.2 allows no critical extension in a token.
    pub fn push(&mut self, oid: &[u8], value: &[u8]) {
        let oid = oid::oid_tlv(oid);
        let value_len = tlv_len(value.len());
        write_header(&mut self.0, tag::SEQUENCE, oid.len() + value_len);
        self.0.extend_from_slice(&oid);
        der::write_tlv(&mut self.0, tag::OCTET_STRING, value);
    }
}

/// Constant parts of TSTInfo for one policy.
#[derive(Debug, Clone)]
pub struct PolicyTemplate {
    /// `version 1` followed by the policy OID TLV.
    head: Vec<u8>,
    accuracy: Vec<u8>,
    /// The policy's own extensions (qcStatements for qualified stamps), before any a
    /// request's filters add.
    extensions: Extensions,
    /// How many digits of a second genTime keeps (RFC 3161 §2.4.2: the fraction has no
    /// trailing zeros).
    pub precision: Precision,
    /// TSTInfo's `tsa` field. After [`PolicyTemplate::new`], `Explicit` holds the
    /// complete `[0] EXPLICIT GeneralName` TLV, ready to copy into TSTInfo.
    pub tsa_name: TsaName,
    /// Which certificates a token carries when the request sets certReq (RFC 3161 §2.4.1:
    /// without certReq, none).
    pub include_certs: IncludeCerts,
    /// The declared accuracy in µs (0: none declared): the most the clock's error bound
    /// may be when a token is issued.
    pub accuracy_us: u64,
    /// Tokens carry the qcStatements of a qualified timestamp (ETSI EN 319 422 §9.1).
    pub qualified: bool,
}

impl PolicyTemplate {
    /// Encodes the constant parts of TSTInfo for `policy` (TSTInfo.policy, RFC 3161
    /// §2.4.2). A zero `accuracy` leaves the field out. `qualified` adds the qcStatements
    /// extension with esi4-qtstStatement-1 (ETSI EN 319 422 §9.1) to every token; set it
    /// only for a qualified TSA.
    pub fn new(
        policy: &oid::Oid,
        accuracy: Accuracy,
        precision: Precision,
        tsa_name: TsaName,
        include_certs: IncludeCerts,
        qualified: bool,
    ) -> ::der::Result<Self> {
        let mut extensions = Extensions::default();
        if qualified {
            // ETSI EN 319 422 §9.1: TSTInfo extensions [1] IMPLICIT Extensions holding
            // qcStatements (RFC 3739) with QCStatement { esi4-qtstStatement-1 }.
            let statements = vec![QcStatement {
                statement_id: typed_oid::ESI4_QTST_STATEMENT_1,
            }];
            extensions.push(oid::PE_QC_STATEMENTS, &statements.to_der()?);
        }
        Ok(PolicyTemplate {
            // version 1, then the policy OID (kept as bytes: see asn1.rs).
            head: [1u8.to_der()?, OidRef(policy.as_bytes()).to_der()?].concat(),
            accuracy: accuracy.encode()?,
            accuracy_us: accuracy.total_micros(),
            extensions,
            precision,
            tsa_name: match tsa_name {
                TsaName::Explicit(name) => {
                    TsaName::Explicit(explicit_directory_name(Name::from_der(&name)?)?)
                }
                other => other,
            },
            include_certs,
            qualified,
        })
    }
}

/// A token waiting for its signature.
#[derive(Debug)]
pub struct Prepared {
    /// DER TSTInfo (the eContent).
    pub tst_info: Vec<u8>,
    /// DER `SET OF Attribute` (tag 0x31): the exact bytes the signature covers
    /// (RFC 5652 §5.4).
    pub signed_attrs: Vec<u8>,
    attrs_header_len: usize,
    cert_req: bool,
}

/// Why a token could not be prepared. Not the requester's fault: `systemFailure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareError {
    /// genTime outside years 0..=9999.
    TimeOutOfRange,
}

/// Builds TSTInfo and the signed attributes for one request.
///
/// `serial` is the big-endian magnitude of a positive serial number (RFC 3161 §2.4.2: at
/// most 160 bits); it is encoded as a minimal INTEGER here. `extensions` are this request's
/// own, after the policy's.
pub fn prepare(
    signer: &SignerTemplate,
    policy: &PolicyTemplate,
    req: &TimeStampReq<'_>,
    serial: &[u8],
    gen_time: Timestamp,
    extensions: &Extensions,
) -> Result<Prepared, PrepareError> {
    // --- TSTInfo
    let mut gen = Vec::with_capacity(24);
    if !write_generalized_time(&mut gen, gen_time, policy.precision) {
        return Err(PrepareError::TimeOutOfRange);
    }
    let serial = der::unsigned_integer_content(serial);
    let tsa_name: &[u8] = match &policy.tsa_name {
        TsaName::Omit => &[],
        TsaName::Subject => &signer.tsa_name,
        TsaName::Explicit(encoded) => encoded,
    };
    // `Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension`: with none, the field is absent.
    let extensions_len = policy.extensions.0.len() + extensions.0.len();
    let extensions_tlv_len = match extensions_len {
        0 => 0,
        n => tlv_len(n),
    };
    let body_len = policy.head.len()
        + req.message_imprint.len()
        + tlv_len(serial.len())
        + gen.len()
        + policy.accuracy.len()
        + req.nonce.map_or(0, |n| tlv_len(n.len()))
        + tsa_name.len()
        + extensions_tlv_len;
    let mut tst = Vec::with_capacity(tlv_len(body_len));
    write_header(&mut tst, tag::SEQUENCE, body_len);
    tst.extend_from_slice(&policy.head);
    tst.extend_from_slice(req.message_imprint);
    der::write_tlv(&mut tst, tag::INTEGER, &serial);
    tst.extend_from_slice(&gen);
    tst.extend_from_slice(&policy.accuracy);
    // ordering: DEFAULT FALSE, omitted (ETSI EN 319 422 §5.2: ordering false).
    if let Some(nonce) = req.nonce {
        der::write_tlv(&mut tst, tag::INTEGER, nonce);
    }
    tst.extend_from_slice(tsa_name);
    if extensions_len > 0 {
        write_header(&mut tst, tag::ctx_cons(1), extensions_len);
        tst.extend_from_slice(&policy.extensions.0);
        tst.extend_from_slice(&extensions.0);
    }

    // --- signed attributes, in the DER order fixed by the template
    let md_attr = message_digest_attr(&signer.scheme.digest().digest(&tst));
    let attr = |a: Attr| -> &[u8] {
        match a {
            Attr::ContentType => &signer.content_type_attr,
            Attr::MessageDigest => &md_attr,
            Attr::SigningCertificate => &signer.signing_cert_attr,
        }
    };
    let attrs_len: usize = signer.attr_order.iter().map(|&a| attr(a).len()).sum();
    let mut signed_attrs = Vec::with_capacity(tlv_len(attrs_len));
    write_header(&mut signed_attrs, tag::SET, attrs_len);
    for a in signer.attr_order {
        signed_attrs.extend_from_slice(attr(a));
    }
    Ok(Prepared {
        tst_info: tst,
        signed_attrs,
        attrs_header_len: header_len(attrs_len),
        cert_req: req.cert_req,
    })
}

/// Wraps a prepared token and its signature into a complete granted `TimeStampResp`.
pub fn finish(
    signer: &SignerTemplate,
    policy: &PolicyTemplate,
    prepared: &Prepared,
    signature: &[u8],
) -> Vec<u8> {
    let attrs_content = &prepared.signed_attrs[prepared.attrs_header_len..];
    let certs: &[u8] = match (prepared.cert_req, policy.include_certs) {
        (false, _) => &[],
        (true, IncludeCerts::Signer) => &signer.certs_signer,
        (true, IncludeCerts::Chain) => &signer.certs_chain,
    };

    // Lengths, inside out.
    let signer_info_len = signer.signer_info_head.len()
        + tlv_len(attrs_content.len())
        + signer.signature_alg.len()
        + tlv_len(signature.len());
    let signer_infos_len = tlv_len(signer_info_len);
    let econtent_len = tlv_len(tlv_len(prepared.tst_info.len()));
    let encap_len = oid::CT_TST_INFO.len() + 2 + econtent_len;
    let signed_data_len = 3
        + signer.digest_algorithms.len()
        + tlv_len(encap_len)
        + certs.len()
        + tlv_len(signer_infos_len);
    let content_info_len = oid::SIGNED_DATA.len() + 2 + tlv_len(tlv_len(signed_data_len));
    const STATUS_GRANTED: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x00];
    let resp_len = STATUS_GRANTED.len() + tlv_len(content_info_len);

    let mut out = Vec::with_capacity(tlv_len(resp_len));
    write_header(&mut out, tag::SEQUENCE, resp_len);
    out.extend_from_slice(&STATUS_GRANTED);
    write_header(&mut out, tag::SEQUENCE, content_info_len);
    der::write_tlv(&mut out, tag::OID, oid::SIGNED_DATA);
    write_header(&mut out, tag::ctx_cons(0), tlv_len(signed_data_len));
    write_header(&mut out, tag::SEQUENCE, signed_data_len);
    out.extend_from_slice(&[tag::INTEGER, 1, 3]); // version 3: eContentType is not id-data
    out.extend_from_slice(&signer.digest_algorithms);
    write_header(&mut out, tag::SEQUENCE, encap_len);
    der::write_tlv(&mut out, tag::OID, oid::CT_TST_INFO);
    write_header(&mut out, tag::ctx_cons(0), tlv_len(prepared.tst_info.len()));
    der::write_tlv(&mut out, tag::OCTET_STRING, &prepared.tst_info);
    out.extend_from_slice(certs);
    write_header(&mut out, tag::SET, signer_infos_len);
    write_header(&mut out, tag::SEQUENCE, signer_info_len);
    out.extend_from_slice(&signer.signer_info_head);
    der::write_tlv(&mut out, tag::ctx_cons(0), attrs_content);
    out.extend_from_slice(&signer.signature_alg);
    der::write_tlv(&mut out, tag::OCTET_STRING, signature);
    debug_assert_eq!(out.len(), out.capacity());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["tsa".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_chain_entry_that_is_not_a_certificate_is_refused() {
        let leaf = self_signed();
        let v2 = EssCertId::V2(HashAlg::Sha256);
        let scheme = SignatureScheme::EcdsaP256Sha256;
        assert!(SignerTemplate::new(scheme, &[leaf.clone(), self_signed()], v2).is_ok());
        // Found by the certificate fuzz target: a second PEM block that is not DER X.509
        // (here PEM text itself, and a SEQUENCE that is no certificate) went into every
        // token's certificates and made the token undecodable.
        for bad in [b"-----BEGIN".to_vec(), vec![0x30, 0x03, 0x02, 0x01, 0x01]] {
            assert!(SignerTemplate::new(scheme, &[leaf.clone(), bad], v2).is_err());
        }
    }

    #[test]
    fn a_certificate_whose_serial_is_not_a_minimal_integer_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["tsa".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x12, 0x34, 0x56]));
        let mut der = params.self_signed(&key).unwrap().der().to_vec();
        let v2 = EssCertId::V2(HashAlg::Sha256);
        let scheme = SignatureScheme::EcdsaP256Sha256;
        assert!(SignerTemplate::new(scheme, std::slice::from_ref(&der), v2).is_ok());
        // Found by the certificate fuzz target (on the earlier private reader): 02 03 00 34
        // 56 (a redundant leading zero) went into sid and issuerSerial, and the token did
        // not decode.
        let at = der
            .windows(5)
            .position(|w| w == [0x02, 0x03, 0x12, 0x34, 0x56])
            .unwrap();
        der[at + 2] = 0x00;
        // x509-cert refuses the non-minimal INTEGER when the certificate is parsed.
        assert!(CertView::parse(&der).is_err());
        assert!(SignerTemplate::new(scheme, &[der], v2).is_err());
    }

    #[test]
    fn the_typed_oids_are_the_byte_constants() {
        for (typed, bytes) in [
            (typed_oid::SHA256, oid::SHA256),
            (typed_oid::ECDSA_WITH_SHA256, oid::ECDSA_WITH_SHA256),
            (typed_oid::ECDSA_WITH_SHA384, oid::ECDSA_WITH_SHA384),
            (typed_oid::ED25519, oid::ED25519),
            (typed_oid::SHA256_WITH_RSA, oid::SHA256_WITH_RSA),
            (typed_oid::RSASSA_PSS, oid::RSASSA_PSS),
            (typed_oid::MGF1, oid::MGF1),
            (typed_oid::ATTR_CONTENT_TYPE, oid::ATTR_CONTENT_TYPE),
            (typed_oid::CT_TST_INFO, oid::CT_TST_INFO),
            (
                typed_oid::ATTR_SIGNING_CERTIFICATE,
                oid::ATTR_SIGNING_CERTIFICATE,
            ),
            (
                typed_oid::ATTR_SIGNING_CERTIFICATE_V2,
                oid::ATTR_SIGNING_CERTIFICATE_V2,
            ),
            (typed_oid::ESI4_QTST_STATEMENT_1, oid::ESI4_QTST_STATEMENT_1),
        ] {
            assert_eq!(typed.as_bytes(), bytes, "{typed}");
        }
    }

    #[test]
    fn extensions_are_der_and_never_critical() {
        let mut e = Extensions::default();
        e.push(&[0x2a, 0x03], &[0x05, 0x00]);
        e.push(&[0x2a, 0x04], b"");
        // SEQUENCE { OID 1.2.3, OCTET STRING { NULL } }, SEQUENCE { OID 1.2.4, OCTET STRING {} }
        let want = [
            0x30, 0x08, 0x06, 0x02, 0x2a, 0x03, 0x04, 0x02, 0x05, 0x00, //
            0x30, 0x06, 0x06, 0x02, 0x2a, 0x04, 0x04, 0x00,
        ];
        assert_eq!(e.0, want);
    }
}
