//! The differential test of the token splice: `protocol::token` writes each response by
//! copying pre-encoded parts around the per-token fields. Here the same response is built
//! from typed values with the RustCrypto `cms`, `x509-cert` and `der` crates (their own
//! SET OF sorting, INTEGER and length encodings), and the two must be byte for byte equal:
//! every key type, certReq on and off, ESSCertID v1 and v2, with and without TSA name,
//! accuracy and qcStatements, nonces of 1 to 64 octets, and random values. (The schemas of
//! the constant parts are `protocol::tsp`'s; everything per token is typed here.)

use std::sync::Arc;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, AnyRef, IntRef, Null, ObjectIdentifier, OctetString, SetOfVec, UintRef};
use der::{Decode, Encode, Sequence, Tag};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use stampd::pki::{DevPki, KeyType};
use stampd::protocol::asn1::{MessageImprintRef, OidRef};
use stampd::protocol::oid::Oid;
use stampd::protocol::request;
use stampd::protocol::token::{
    self, Accuracy, EssCertId, Extensions, IncludeCerts, PolicyTemplate, SignatureScheme,
    SignerTemplate, TsaName,
};
use stampd::protocol::tsp::{
    AccuracyDer, EssCertId as EssCertIdV1, EssCertIdV2, IssuerSerial, PssParams, QcStatement,
    SigningCertificate, SigningCertificateV2,
};
use stampd::protocol::{HashAlg, Precision, Timestamp};
use stampd::signer::software::{RsaPadding, SoftwareSigner};
use stampd::signer::TokenSigner;

const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

fn alg(o: &str, null_params: bool) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid(o),
        parameters: null_params.then(|| Any::from(Null)),
    }
}

fn hash_oid(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "1.3.14.3.2.26",
        HashAlg::Sha256 => "2.16.840.1.101.3.4.2.1",
        HashAlg::Sha384 => "2.16.840.1.101.3.4.2.2",
        HashAlg::Sha512 => "2.16.840.1.101.3.4.2.3",
        other => panic!("not used here: {other:?}"),
    }
}

fn signature_alg(scheme: SignatureScheme) -> AlgorithmIdentifierOwned {
    match scheme {
        SignatureScheme::EcdsaP256Sha256 => alg("1.2.840.10045.4.3.2", false),
        SignatureScheme::EcdsaP384Sha384 => alg("1.2.840.10045.4.3.3", false),
        SignatureScheme::Ed25519 => alg("1.3.101.112", false),
        SignatureScheme::RsaPkcs1Sha256 => alg("1.2.840.113549.1.1.11", true),
        SignatureScheme::RsaPssSha256 => {
            let sha256 = alg(hash_oid(HashAlg::Sha256), true);
            let params = PssParams {
                hash: sha256.clone(),
                mask_gen: AlgorithmIdentifierOwned {
                    oid: oid("1.2.840.113549.1.1.8"),
                    parameters: Some(Any::encode_from(&sha256).unwrap()),
                },
                salt_length: 32,
            };
            AlgorithmIdentifierOwned {
                oid: oid("1.2.840.113549.1.1.10"),
                parameters: Some(Any::encode_from(&params).unwrap()),
            }
        }
    }
}

/// RFC 5280 Extension with critical left at its DEFAULT (absent).
#[derive(Sequence)]
struct ExtensionT {
    extn_id: ObjectIdentifier,
    extn_value: OctetString,
}

/// RFC 3161 §2.4.2 TSTInfo (policy kept as bytes: 2.999.x does not fit const-oid 0.9).
#[derive(Sequence)]
struct TstInfoT<'a> {
    version: u8,
    policy: OidRef<'a>,
    message_imprint: MessageImprintRef<'a>,
    serial_number: UintRef<'a>,
    gen_time: AnyRef<'a>,
    accuracy: Option<AccuracyDer>,
    nonce: Option<IntRef<'a>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<Vec<ExtensionT>>,
}

#[derive(Sequence)]
struct PkiStatusInfoT {
    status: u8,
}

#[derive(Sequence)]
struct TimeStampRespT {
    status: PkiStatusInfoT,
    time_stamp_token: Option<ContentInfo>,
}

/// genTime as RFC 3161 §2.4.2 writes it, formatted here independently of protocol::time.
fn gen_time_text(t: Timestamp, precision: Precision) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp(t.unix_secs).unwrap();
    let digits = match precision {
        Precision::Seconds => 0,
        Precision::Millis => 3,
        Precision::Micros => 6,
    };
    let frac = format!("{:09}", t.nanos)[..digits]
        .trim_end_matches('0')
        .to_string();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{}{}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        if frac.is_empty() { "" } else { "." },
        frac
    )
}

fn attribute(o: &str, value: Any) -> Attribute {
    Attribute {
        oid: oid(o),
        values: SetOfVec::try_from(vec![value]).unwrap(),
    }
}

/// One case: everything that can vary between tokens.
struct Case {
    ess: EssCertId,
    cert_req: bool,
    include: IncludeCerts,
    tsa_name: TsaName,
    accuracy: Accuracy,
    qualified: bool,
    precision: Precision,
    hash: HashAlg,
    digest: Vec<u8>,
    nonce: Option<Vec<u8>>,
    serial: Vec<u8>,
    time: Timestamp,
    signature: Vec<u8>,
}

struct Key {
    scheme: SignatureScheme,
    chain: Vec<Vec<u8>>,
    _dir: tempfile::TempDir,
}

fn key(kind: KeyType, padding: RsaPadding) -> Key {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::in_dir(dir.path());
    pki.create(kind).unwrap();
    let now = Timestamp {
        unix_secs: 1_800_000_000,
        nanos: 0,
    };
    let signer = SoftwareSigner::load("t", &pki.tsa_key, &pki.tsa_cert, padding, now).unwrap();
    let signer: Arc<dyn TokenSigner> = Arc::new(signer);
    Key {
        scheme: signer.template().scheme,
        chain: signer.chain().to_vec(),
        _dir: dir,
    }
}

/// The request of `case`, as a client encodes it.
fn request_body(case: &Case) -> Vec<u8> {
    request::encode(
        case.hash,
        &case.digest,
        None,
        case.nonce.as_deref(),
        case.cert_req,
    )
}

/// The response `protocol::token` splices for `case`.
fn spliced(key: &Key, case: &Case) -> Vec<u8> {
    let signer = SignerTemplate::new(key.scheme, &key.chain, case.ess).unwrap();
    let policy = PolicyTemplate::new(
        &Oid::parse("2.999.1.1").unwrap(),
        case.accuracy,
        case.precision,
        case.tsa_name.clone(),
        case.include,
        case.qualified,
    )
    .unwrap();
    let body = request_body(case);
    let req = request::decode(&body).unwrap();
    let prepared = token::prepare(
        &signer,
        &policy,
        &req,
        &case.serial,
        case.time,
        &Extensions::default(),
    )
    .unwrap();
    token::finish(&signer, &policy, &prepared, &case.signature)
}

/// The same response built from typed values by the crates.
fn typed(key: &Key, case: &Case) -> Vec<u8> {
    let certs: Vec<Certificate> = key
        .chain
        .iter()
        .map(|c| Certificate::from_der(c).unwrap())
        .collect();
    let leaf = &certs[0];
    let tbs = &leaf.tbs_certificate;
    let digest_alg = key.scheme.digest();

    // TSTInfo
    let body = request_body(case);
    let req = request::decode(&body).unwrap();
    let imprint = MessageImprintRef::from_der(req.message_imprint).unwrap();
    let time_text = gen_time_text(case.time, case.precision);
    let accuracy = (!case.accuracy.is_zero()).then(|| AccuracyDer {
        seconds: (case.accuracy.seconds > 0).then_some(case.accuracy.seconds),
        millis: (case.accuracy.millis > 0).then_some(case.accuracy.millis),
        micros: (case.accuracy.micros > 0).then_some(case.accuracy.micros),
    });
    let nonce_content = req.nonce;
    let tsa = match &case.tsa_name {
        TsaName::Omit => None,
        TsaName::Subject => Some(GeneralName::DirectoryName(tbs.subject.clone())),
        TsaName::Explicit(der) => Some(GeneralName::DirectoryName(
            x509_cert::name::Name::from_der(der).unwrap(),
        )),
    };
    let extensions = case.qualified.then(|| {
        // qcStatements { QCStatement { esi4-qtstStatement-1 } } (ETSI EN 319 422 §9.1)
        let statements = vec![QcStatement {
            statement_id: oid("0.4.0.19422.1.1"),
        }];
        vec![ExtensionT {
            extn_id: oid("1.3.6.1.5.5.7.1.3"),
            extn_value: OctetString::new(statements.to_der().unwrap()).unwrap(),
        }]
    });
    let policy_oid = Oid::parse("2.999.1.1").unwrap();
    let tst = TstInfoT {
        version: 1,
        policy: OidRef(policy_oid.as_bytes()),
        message_imprint: imprint,
        serial_number: UintRef::new(&case.serial).unwrap(),
        gen_time: AnyRef::new(Tag::GeneralizedTime, time_text.as_bytes()).unwrap(),
        accuracy,
        nonce: nonce_content.map(|n| IntRef::new(n).unwrap()),
        tsa,
        extensions,
    }
    .to_der()
    .unwrap();

    // Signed attributes: SetOfVec sorts them in DER order itself.
    let cert_hash = |h: HashAlg| OctetString::new(h.digest(&key.chain[0])).unwrap();
    let issuer_serial = || IssuerSerial {
        issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
        serial_number: tbs.serial_number.clone(),
    };
    let signing_cert = match case.ess {
        EssCertId::V1 => attribute(
            "1.2.840.113549.1.9.16.2.12",
            Any::encode_from(&SigningCertificate {
                certs: vec![EssCertIdV1 {
                    cert_hash: cert_hash(HashAlg::Sha1),
                    issuer_serial: Some(issuer_serial()),
                }],
                policies: None,
            })
            .unwrap(),
        ),
        EssCertId::V2(h) => attribute(
            "1.2.840.113549.1.9.16.2.47",
            Any::encode_from(&SigningCertificateV2 {
                certs: vec![EssCertIdV2 {
                    // DEFAULT id-sha256: left out for SHA-256 (X.690 §11.5).
                    hash_algorithm: (h != HashAlg::Sha256).then(|| alg(hash_oid(h), false)),
                    cert_hash: cert_hash(h),
                    issuer_serial: Some(issuer_serial()),
                }],
                policies: None,
            })
            .unwrap(),
        ),
    };
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(
            "1.2.840.113549.1.9.3",
            Any::encode_from(&oid(TST_INFO)).unwrap(),
        ),
        attribute(
            "1.2.840.113549.1.9.4",
            Any::encode_from(&OctetString::new(digest_alg.digest(&tst)).unwrap()).unwrap(),
        ),
        signing_cert,
    ])
    .unwrap();

    let certificates = case.cert_req.then(|| {
        let chosen = match case.include {
            IncludeCerts::Signer => &certs[..1],
            IncludeCerts::Chain => &certs[..],
        };
        CertificateSet(
            SetOfVec::try_from(
                chosen
                    .iter()
                    .cloned()
                    .map(CertificateChoices::Certificate)
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        )
    });
    let signed_data = SignedData {
        version: CmsVersion::V3,
        digest_algorithms: SetOfVec::try_from(vec![alg(hash_oid(digest_alg), false)]).unwrap(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid(TST_INFO),
            econtent: Some(Any::encode_from(&OctetString::new(tst).unwrap()).unwrap()),
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![SignerInfo {
                version: CmsVersion::V1,
                sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                    issuer: tbs.issuer.clone(),
                    serial_number: tbs.serial_number.clone(),
                }),
                digest_alg: alg(hash_oid(digest_alg), false),
                signed_attrs: Some(signed_attrs),
                signature_algorithm: signature_alg(key.scheme),
                signature: OctetString::new(case.signature.clone()).unwrap(),
                unsigned_attrs: None,
            }])
            .unwrap(),
        ),
    };
    TimeStampRespT {
        status: PkiStatusInfoT { status: 0 },
        time_stamp_token: Some(ContentInfo {
            content_type: oid(SIGNED_DATA),
            content: Any::encode_from(&signed_data).unwrap(),
        }),
    }
    .to_der()
    .unwrap()
}

fn assert_same(key: &Key, case: &Case, what: &str) {
    let ours = spliced(key, case);
    let theirs = typed(key, case);
    assert!(
        ours == theirs,
        "{what}: the spliced response differs from the typed encoding\n ours:   {}\n theirs: {}",
        stampd::protocol::hex::hex(&ours),
        stampd::protocol::hex::hex(&theirs)
    );
}

fn base_case() -> Case {
    Case {
        ess: EssCertId::V2(HashAlg::Sha256),
        cert_req: true,
        include: IncludeCerts::Chain,
        tsa_name: TsaName::Subject,
        accuracy: Accuracy::from_micros(1_000_000),
        qualified: false,
        precision: Precision::Millis,
        hash: HashAlg::Sha256,
        digest: vec![0xab; 32],
        nonce: Some(vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]),
        serial: vec![0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0],
        time: Timestamp {
            unix_secs: 1_800_000_123,
            nanos: 450_000_000,
        },
        signature: vec![0x5a; 72],
    }
}

#[test]
fn every_key_type_and_option_encodes_as_the_crates_do() {
    let keys = [
        (KeyType::P256, RsaPadding::Pkcs1),
        (KeyType::P384, RsaPadding::Pkcs1),
        (KeyType::Ed25519, RsaPadding::Pkcs1),
        (KeyType::Rsa2048, RsaPadding::Pkcs1),
        (KeyType::Rsa2048, RsaPadding::Pss),
    ];
    let explicit = TsaName::Explicit(
        <x509_cert::name::Name as std::str::FromStr>::from_str("CN=Example TSA,O=Example,C=DE")
            .unwrap()
            .to_der()
            .unwrap(),
    );
    for (kind, padding) in keys {
        let key = key(kind, padding);
        for ess in [
            EssCertId::V1,
            EssCertId::V2(HashAlg::Sha256),
            EssCertId::V2(HashAlg::Sha512),
        ] {
            for cert_req in [false, true] {
                for include in [IncludeCerts::Signer, IncludeCerts::Chain] {
                    let case = Case {
                        ess,
                        cert_req,
                        include,
                        ..base_case()
                    };
                    assert_same(
                        &key,
                        &case,
                        &format!("{kind:?} {ess:?} certReq {cert_req} {include:?}"),
                    );
                }
            }
        }
        for tsa_name in [TsaName::Omit, TsaName::Subject, explicit.clone()] {
            for (accuracy, qualified) in [(0, false), (1_500, true), (2_000_001, false)] {
                let case = Case {
                    tsa_name: tsa_name.clone(),
                    accuracy: Accuracy::from_micros(accuracy),
                    qualified,
                    ..base_case()
                };
                assert_same(
                    &key,
                    &case,
                    &format!("{kind:?} {:?} accuracy {accuracy}", case.tsa_name),
                );
            }
        }
    }
}

#[test]
fn nonces_of_every_length_and_random_values_encode_as_the_crates_do() {
    let key = key(KeyType::P256, RsaPadding::Pkcs1);
    for len in 1..=64 {
        for fill in [0x00u8, 0x7f, 0x80, 0xff] {
            let mut nonce = vec![fill; len];
            nonce[len - 1] = 0x01;
            if len == 64 {
                // 64 content octets at most: a top bit set would need a 65th.
                nonce[0] &= 0x7f;
            }
            let case = Case {
                nonce: Some(nonce),
                ..base_case()
            };
            assert_same(
                &key,
                &case,
                &format!("nonce of {len} octets filled {fill:#x}"),
            );
        }
    }
    // Random values from a fixed seed (splitmix64): digests, serials, nonces, times,
    // precisions and signature lengths.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let bytes = |n: usize, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
        (0..n).map(|_| next() as u8).collect()
    };
    for i in 0..300 {
        let hash = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512][i % 3];
        let nonce_len = (next() % 65) as usize;
        let mut serial = bytes(1 + (next() % 20) as usize, &mut next);
        serial[0] |= 1; // a positive serial
        let case = Case {
            hash,
            digest: bytes(hash.digest_len(), &mut next),
            nonce: (nonce_len > 0).then(|| {
                let mut n = bytes(nonce_len, &mut next);
                n[nonce_len - 1] |= 1;
                if nonce_len == 64 {
                    n[0] &= 0x7f;
                }
                n
            }),
            serial,
            time: Timestamp {
                unix_secs: (next() % 4_000_000_000) as i64,
                nanos: (next() % 1_000_000_000) as u32,
            },
            precision: [Precision::Seconds, Precision::Millis, Precision::Micros]
                [(next() % 3) as usize],
            signature: bytes(1 + (next() % 600) as usize, &mut next),
            cert_req: next() % 2 == 0,
            accuracy: Accuracy::from_micros(next() % 3_000_000),
            ..base_case()
        };
        assert_same(&key, &case, &format!("random case {i}"));
    }
}
