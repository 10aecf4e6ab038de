//! The issuing path with fakes: a fixed clock, software signers over a fresh dev PKI, an
//! ephemeral serial space. Tokens are checked with the independent verifier in `client`.

use std::sync::Arc;

use super::filters::{RequestContext, RequestFilter};
use super::{Policy, RequestMeta, Service, Tsa};
use crate::audit::{Discard, Memory};
use crate::client::verify::{self, Expectation};
use crate::clock::FixedClock;
use crate::outcome::Outcome;
use crate::pki::{DevPki, KeyType};
use crate::protocol::der::{self, tag};
use crate::protocol::oid::{self, Oid};
use crate::protocol::response;
use crate::protocol::token::{Accuracy, IncludeCerts, PolicyTemplate, TsaName};
use crate::protocol::{request, FailureInfo, HashAlg, PkiStatus, Precision, Rejection, Timestamp};
use crate::serial::SerialSpace;
use crate::signer::software::{pem_blocks, RsaPadding, SoftwareSigner};

const NOW: Timestamp = Timestamp {
    unix_secs: 0,
    nanos: 0,
};

fn now() -> Timestamp {
    let d = crate::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp {
        unix_secs: d.as_secs() as i64,
        nanos: 123_456_789,
    }
}

struct Fixture {
    tsa: Tsa,
    ca: Vec<Vec<u8>>,
    _dir: tempfile::TempDir,
}

fn policy(oid_s: &str, precision: Precision, certs: IncludeCerts) -> Policy {
    let oid = Oid::parse(oid_s).unwrap();
    let template = PolicyTemplate::new(
        &oid,
        Accuracy::from_micros(1_500),
        precision,
        TsaName::Subject,
        certs,
        false,
    )
    .unwrap();
    let hashes = vec![
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
        HashAlg::Sha3_256,
    ];
    Policy::simple("p", oid, hashes, template)
}

fn local() -> RequestMeta<'static> {
    RequestMeta::local("/tsa")
}

fn fixture(key: KeyType, padding: RsaPadding, clock: Option<Timestamp>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::in_dir(dir.path());
    pki.create(key).unwrap();
    let signer = SoftwareSigner::load("t", &pki.tsa_key, &pki.tsa_cert, padding, now()).unwrap();
    let ca = pem_blocks(&std::fs::read(&pki.ca_cert).unwrap(), "CERTIFICATE").unwrap();
    let tsa = Tsa {
        services: vec![Service {
            name: "s".into(),
            signer: Arc::new(signer),
            policies: vec![policy("2.999.1.1", Precision::Millis, IncludeCerts::Chain)],
            fallback: None,
            preprocess: Vec::new(),
            status_text: true,
            switch: crate::policy::switch::Switches::default().of("s"),
            public_pages: true,
            protocol: crate::policy::config::Protocol::Rfc3161,
        }],
        clock: Arc::new(FixedClock(clock)),
        serials: Arc::new(SerialSpace::ephemeral(1, 0)),
        audit: Arc::new(Discard),
        signers: Vec::new(),
    };
    Fixture { tsa, ca, _dir: dir }
}

fn expect(hash: HashAlg, digest: &[u8], nonce: Option<&[u8]>) -> Expectation {
    Expectation {
        hash,
        digest: digest.to_vec(),
        nonce: nonce.map(<[u8]>::to_vec),
    }
}

#[test]
fn every_key_type_issues_verifiable_tokens() {
    for (key, padding) in [
        (KeyType::P256, RsaPadding::Pkcs1),
        (KeyType::P384, RsaPadding::Pkcs1),
        (KeyType::Ed25519, RsaPadding::Pkcs1),
        (KeyType::Rsa2048, RsaPadding::Pkcs1),
        (KeyType::Rsa2048, RsaPadding::Pss),
    ] {
        let f = fixture(key, padding, Some(now()));
        for hash in [HashAlg::Sha256, HashAlg::Sha512, HashAlg::Sha3_256] {
            let digest = vec![0x5a; hash.digest_len()];
            let nonce = [0x80, 0, 0, 0, 0, 0, 0, 1];
            let body = request::encode(hash, &digest, None, Some(&nonce), true);
            let reply = f.tsa.issue(0, &body, &local());
            assert!(
                matches!(reply.outcome, Outcome::Granted { .. }),
                "{key:?} {hash:?}"
            );
            let v = verify::verify(
                &reply.der,
                false,
                &expect(hash, &digest, Some(&nonce)),
                &f.ca,
                &[],
            )
            .unwrap_or_else(|e| panic!("{key:?} {padding:?} {hash:?}: {e}"));
            assert_eq!(v.policy, "2.999.1.1");
            assert_eq!(v.accuracy_us, Some(1_500));
        }
    }
}

#[test]
fn nonce_is_echoed_exactly_and_cert_req_controls_certificates() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let nonce: Vec<u8> = (1..=20).collect(); // 160 bits
    for cert_req in [false, true] {
        let body = request::encode(HashAlg::Sha256, &[1; 32], None, Some(&nonce), cert_req);
        let sent = request::decode(&body).unwrap().nonce.unwrap().to_vec();
        let reply = f.tsa.issue(0, &body, &local());
        let resp = response::decode(&reply.der).unwrap();
        let token = resp.token.unwrap();
        assert_eq!(token.tst_info.nonce, Some(sent.as_slice()));
        assert_eq!(token.certificates.len(), if cert_req { 2 } else { 0 });
        assert_eq!(token.signer_infos.len(), 1);
        assert_eq!(token.signed_data_version, 3);
        // Without certificates, the verifier needs the TSA certificate from elsewhere.
        let res = verify::verify(
            &reply.der,
            false,
            &expect(HashAlg::Sha256, &[1; 32], None),
            &f.ca,
            &[],
        );
        assert_eq!(res.is_ok(), cert_req, "{res:?}");
    }
}

#[test]
fn token_structure_is_canonical() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let body = request::encode(HashAlg::Sha256, &[7; 32], None, None, false);
    let reply = f.tsa.issue(0, &body, &local());
    let token = response::decode(&reply.der).unwrap().token.unwrap();
    let tst = &token.tst_info;
    // The imprint is copied byte for byte.
    assert_eq!(
        tst.message_imprint,
        request::decode(&body).unwrap().message_imprint
    );
    // Serial: minimal (decode checks it), positive INTEGER.
    assert!(tst.serial[0] & 0x80 == 0);
    assert!(!tst.ordering && tst.nonce.is_none() && tst.tsa.is_some() && !tst.has_extensions);
    // Signed attributes form a DER-sorted SET.
    let si = &token.signer_infos[0];
    let mut r = ::der::SliceReader::new(si.signed_attrs).unwrap();
    let mut attrs = Vec::new();
    while !::der::Reader::is_finished(&r) {
        attrs.push(::der::Reader::tlv_bytes(&mut r).unwrap().to_vec());
    }
    let mut sorted = attrs.clone();
    sorted.sort();
    assert_eq!(attrs, sorted);
    assert_eq!(attrs.len(), 3);
    assert!(si.attribute(oid::ATTR_SIGNING_CERTIFICATE_V2).is_some());
}

#[test]
fn gen_time_precision_and_truncation() {
    let t = Timestamp {
        unix_secs: now().unix_secs,
        nanos: 120_999_999,
    };
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(t));
    let body = request::encode(HashAlg::Sha256, &[7; 32], None, None, false);
    let der = f.tsa.issue(0, &body, &local()).der;
    let token = response::decode(&der).unwrap().token.unwrap();
    assert!(
        token.tst_info.gen_time_text.ends_with(".12Z"),
        "{}",
        token.tst_info.gen_time_text
    );
}

fn rejection(f: &Fixture, body: &[u8]) -> (FailureInfo, Vec<String>) {
    let reply = f.tsa.issue(0, body, &local());
    let resp = response::decode(&reply.der).unwrap();
    assert_eq!(resp.status, PkiStatus::Rejection);
    assert!(resp.token.is_none());
    assert_eq!(resp.fail_info.len(), 1);
    assert_eq!(reply.outcome, Outcome::Rejected(resp.fail_info[0]));
    (resp.fail_info[0], resp.status_text)
}

#[test]
fn every_rejection_carries_the_right_failure_info() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    assert_eq!(rejection(&f, b"garbage").0, FailureInfo::BadDataFormat);
    assert_eq!(rejection(&f, &[]).0, FailureInfo::BadDataFormat);
    let mut trailing = ok.clone();
    trailing.push(0);
    assert_eq!(rejection(&f, &trailing).0, FailureInfo::BadDataFormat);
    // SHA-1 is known but off by default in this policy.
    let sha1 = request::encode(HashAlg::Sha1, &[1; 20], None, None, false);
    assert_eq!(rejection(&f, &sha1).0, FailureInfo::BadAlg);
    let short = request::encode(HashAlg::Sha256, &[1; 20], None, None, false);
    assert_eq!(rejection(&f, &short).0, FailureInfo::BadDataFormat);
    let other = Oid::parse("2.999.9").unwrap();
    let pol = request::encode(HashAlg::Sha256, &[1; 32], Some(&other), None, false);
    assert_eq!(rejection(&f, &pol).0, FailureInfo::UnacceptedPolicy);
    // Any extension is refused (RFC 3161 §2.4.2).
    let inner = sequence_content(&ok);
    let ext = der::tlv_of(
        tag::SEQUENCE,
        &[
            &oid::oid_tlv(Oid::parse("1.2.3").unwrap().as_bytes()),
            &der::tlv(tag::OCTET_STRING, b"x"),
        ],
    );
    let with_ext = der::tlv_of(tag::SEQUENCE, &[&inner, &der::tlv(tag::ctx_cons(0), &ext)]);
    let (fail, text) = rejection(&f, &with_ext);
    assert_eq!(fail, FailureInfo::UnacceptedExtension);
    assert_eq!(text, vec!["request extension not supported".to_string()]);
}

#[test]
fn unsynchronised_clock_is_time_not_available() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, None);
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    assert_eq!(rejection(&f, &ok).0, FailureInfo::TimeNotAvailable);
}

#[test]
fn gen_time_outside_certificate_validity_is_system_failure() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(NOW));
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    let (fail, text) = rejection(&f, &ok);
    assert_eq!(fail, FailureInfo::SystemFailure);
    assert_eq!(text, vec!["the TSA could not issue a token".to_string()]);
}

#[test]
fn serial_numbers_differ_per_token() {
    let f = fixture(KeyType::Ed25519, RsaPadding::Pkcs1, Some(now()));
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    let serials: std::collections::HashSet<_> = (0..200)
        .map(|_| match f.tsa.issue(0, &ok, &local()).outcome {
            Outcome::Granted { serial } => serial,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(serials.len(), 200);
}

#[test]
fn startup_checks_refuse_bad_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let a = DevPki::in_dir(&dir.path().join("a"));
    let b = DevPki::in_dir(&dir.path().join("b"));
    a.create(KeyType::P256).unwrap();
    b.create(KeyType::P256).unwrap();
    // Key of one PKI with the certificate of the other.
    let err = SoftwareSigner::load("x", &a.tsa_key, &b.tsa_cert, RsaPadding::Pkcs1, now())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not match the private key"), "{err}");
    // The CA certificate has no timeStamping EKU.
    let ca_key = a.ca_key.clone();
    let err = SoftwareSigner::load("x", &ca_key, &a.ca_cert, RsaPadding::Pkcs1, now())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("extendedKeyUsage"), "{err}");
    // Not valid now.
    let err = SoftwareSigner::load("x", &a.tsa_key, &a.tsa_cert, RsaPadding::Pkcs1, NOW)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not valid now"), "{err}");
}

#[test]
fn fallback_policy_answers_only_what_it_may() {
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    // The only policy takes SHA-512 imprints; a fallback takes the rest.
    let svc = &mut f.tsa.services[0];
    svc.policies[0].rules.hash_algorithm = Some(vec![HashAlg::Sha512]);
    svc.fallback = Some(policy(
        "2.999.1.9",
        Precision::Seconds,
        IncludeCerts::Signer,
    ));
    let policy_of = |reply: super::Reply| {
        let resp = response::decode(&reply.der).unwrap();
        let t = resp.token.expect("granted");
        crate::protocol::oid::to_dotted(t.tst_info.policy).unwrap()
    };
    let sha512 = request::encode(HashAlg::Sha512, &[1; 64], None, None, false);
    assert_eq!(policy_of(f.tsa.issue(0, &sha512, &local())), "2.999.1.1");
    let sha256 = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    assert_eq!(policy_of(f.tsa.issue(0, &sha256, &local())), "2.999.1.9");
    // A request naming another policy is never answered by the fallback (RFC 3161 §2.4.2).
    let other = Oid::parse("2.999.1.5").unwrap();
    let named = request::encode(HashAlg::Sha256, &[1; 32], Some(&other), None, false);
    assert_eq!(rejection(&f, &named).0, FailureInfo::UnacceptedPolicy);
}

/// A qualified policy's constants: 500 ms accuracy, milliseconds, the chain on certReq.
fn qualified_template(oid: &Oid) -> PolicyTemplate {
    PolicyTemplate::new(
        oid,
        Accuracy::from_micros(500_000),
        Precision::Millis,
        TsaName::Subject,
        IncludeCerts::Chain,
        true,
    )
    .unwrap()
}

#[test]
fn qualified_policies_carry_the_qc_statement() {
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let oid = Oid::parse("2.999.1.2").unwrap();
    let template = qualified_template(&oid);
    f.tsa.services[0].policies = vec![Policy::simple("q", oid, vec![HashAlg::Sha256], template)];
    let body = request::encode(HashAlg::Sha256, &[1; 32], None, None, true);
    let reply = f.tsa.issue(0, &body, &local());
    let token = response::decode(&reply.der).unwrap().token.unwrap();
    assert!(token.tst_info.has_extensions);
    // extensions [1] { Extension { id-pe-qcStatements, OCTET STRING { SEQ { SEQ { esi4-qtstStatement-1 } } } } }
    let der = token.tst_info_der;
    assert_eq!(
        &der[der.len() - 29..],
        &[
            0xa1, 0x1b, 0x30, 0x19, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x03,
            0x04, 0x0d, 0x30, 0x0b, 0x30, 0x09, 0x06, 0x07, 0x04, 0x00, 0x81, 0x97, 0x5e, 0x01,
            0x01
        ]
    );
    verify::verify(
        &reply.der,
        false,
        &expect(HashAlg::Sha256, &[1; 32], None),
        &f.ca,
        &[],
    )
    .unwrap();
}

/// A request filter that refuses digests starting with 0xee and stamps every other token
/// with extension 1.2.3.4 = NULL.
struct Stamp;

impl RequestFilter for Stamp {
    fn on_request(&self, cx: &mut RequestContext<'_>) -> Result<(), Rejection> {
        if cx.request.digest[0] == 0xee {
            return Err(Rejection::new(
                FailureInfo::BadDataFormat,
                "refused by the test filter",
            ));
        }
        cx.add_extension(&Oid::parse("1.2.3.4").unwrap(), &[0x05, 0x00]);
        Ok(())
    }
}

#[test]
fn request_filters_run_after_the_policy_checks_and_refuse_or_add_extensions() {
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let oid = Oid::parse("2.999.1.2").unwrap();
    let qualified = qualified_template(&oid);
    let mut p = Policy::simple("q", oid, vec![HashAlg::Sha256], qualified);
    p.request_filters.push(Arc::new(Stamp));
    f.tsa.services[0].policies = vec![p];

    // Its refusal is the answer, with its failInfo and statusString...
    let refused = request::encode(HashAlg::Sha256, &[0xee; 32], None, None, false);
    let (fail, text) = rejection(&f, &refused);
    assert_eq!(fail, FailureInfo::BadDataFormat);
    assert_eq!(text, vec!["refused by the test filter".to_string()]);
    // ...but only once the policy's own checks passed (SHA-1 is not on its allow-list).
    let sha1 = request::encode(HashAlg::Sha1, &[0xee; 20], None, None, false);
    assert_eq!(rejection(&f, &sha1).0, FailureInfo::BadAlg);

    // Its extension follows the policy's qcStatements in the one extensions [1].
    let body = request::encode(HashAlg::Sha256, &[1; 32], None, None, true);
    let reply = f.tsa.issue(0, &body, &local());
    let token = response::decode(&reply.der).unwrap().token.unwrap();
    let der = token.tst_info_der;
    let qc_statements = [
        0x30, 0x19, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x03, 0x04, 0x0d, 0x30,
        0x0b, 0x30, 0x09, 0x06, 0x07, 0x04, 0x00, 0x81, 0x97, 0x5e, 0x01, 0x01,
    ];
    // Extension { 1.2.3.4, OCTET STRING { NULL } }, critical absent (DEFAULT FALSE).
    let stamp = [
        0x30, 0x09, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x02, 0x05, 0x00,
    ];
    let want = [&[0xa1, 0x26][..], &qc_statements, &stamp].concat();
    assert_eq!(&der[der.len() - want.len()..], &want[..]);
    verify::verify(
        &reply.der,
        false,
        &expect(HashAlg::Sha256, &[1; 32], None),
        &f.ca,
        &[],
    )
    .unwrap();
}

fn request_with_extension(critical: bool) -> Vec<u8> {
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    let inner = sequence_content(&ok);
    let crit: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    let ext = der::tlv_of(
        tag::SEQUENCE,
        &[
            &oid::oid_tlv(Oid::parse("1.2.3.4").unwrap().as_bytes()),
            crit,
            &der::tlv(tag::OCTET_STRING, b"x"),
        ],
    );
    der::tlv_of(tag::SEQUENCE, &[&inner, &der::tlv(tag::ctx_cons(0), &ext)])
}

#[test]
fn request_validation_allow_list_separates_critical_extensions() {
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    f.tsa.services[0].policies[0].allowed_extensions =
        vec![(Oid::parse("1.2.3.4").unwrap(), false)];
    let granted = f.tsa.issue(0, &request_with_extension(false), &local());
    assert!(matches!(granted.outcome, Outcome::Granted { .. }));
    assert_eq!(
        rejection(&f, &request_with_extension(true)).0,
        FailureInfo::UnacceptedExtension
    );
    f.tsa.services[0].policies[0].allowed_extensions = vec![(Oid::parse("1.2.3.4").unwrap(), true)];
    let granted = f.tsa.issue(0, &request_with_extension(true), &local());
    assert!(matches!(granted.outcome, Outcome::Granted { .. }));
}

#[test]
fn ess_cert_id_v1_and_other_v2_hashes_verify() {
    use crate::protocol::token::{EssCertId, SignerTemplate};
    for ess in [EssCertId::V1, EssCertId::V2(HashAlg::Sha512)] {
        let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
        let signer = f.tsa.services[0].signer.clone();
        let template = SignerTemplate::new(signer.template().scheme, signer.chain(), ess).unwrap();
        f.tsa.services[0].policies[0].signer_template = Some(template);
        let body = request::encode(HashAlg::Sha256, &[2; 32], None, None, true);
        let reply = f.tsa.issue(0, &body, &local());
        let token = response::decode(&reply.der).unwrap().token.unwrap();
        let si = &token.signer_infos[0];
        let (v1, v2) = (
            si.attribute(oid::ATTR_SIGNING_CERTIFICATE).is_some(),
            si.attribute(oid::ATTR_SIGNING_CERTIFICATE_V2).is_some(),
        );
        assert_eq!((v1, v2), (ess == EssCertId::V1, ess != EssCertId::V1));
        verify::verify(
            &reply.der,
            false,
            &expect(HashAlg::Sha256, &[2; 32], None),
            &f.ca,
            &[],
        )
        .unwrap_or_else(|e| panic!("{ess:?}: {e}"));
    }
}

/// An audit filter over an in-memory trail, outermost in service 0.
fn audited(f: &mut Fixture, config: super::preprocess::audit::AuditFilterConfig) -> Arc<Memory> {
    use crate::audit::Durability;
    let sink = Arc::new(Memory::default());
    let audit = config.build(
        "audit",
        "s",
        "k",
        false,
        Durability::GroupCommit,
        sink.clone(),
    );
    f.tsa.services[0].preprocess.insert(0, Arc::new(audit));
    sink
}

#[test]
fn storage_keeps_issued_tokens_in_the_audit_trail() {
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let sink = audited(&mut f, Default::default());
    let body = request::encode(HashAlg::Sha256, &[2; 32], None, None, false);
    f.tsa.issue(0, &body, &local());
    assert_eq!(
        sink.0.lock().unwrap()[0].response,
        None,
        "no response DER without the storage filter"
    );
    f.tsa.services[0].policies[0].archive = true;
    let reply = f.tsa.issue(0, &body, &local());
    // Rejections are not archived as issued tokens.
    f.tsa.issue(0, b"junk", &local());
    let stored = sink.0.lock().unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[1].response.as_ref(), Some(&reply.der));
    assert_eq!(
        (&*stored[1].service, stored[1].policy.as_deref()),
        ("s", Some("p"))
    );
    assert_eq!(stored[2].response, None);
}

#[test]
fn ready_names_a_clock_that_cannot_give_the_time() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    assert_eq!(f.tsa.ready(), Ok(()));
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, None);
    let why = f.tsa.ready().unwrap_err();
    assert!(why.starts_with("clock: "), "{why}");
}

/// An in-memory trail past its disk budget's warning watermark (still writable).
#[derive(Default)]
struct NearlyFull(Memory);

impl crate::audit::AuditSink for NearlyFull {
    fn submit(
        &self,
        record: crate::audit::Record,
        durable: bool,
    ) -> Result<Option<crate::audit::Durable>, crate::audit::Full> {
        self.0.submit(record, durable)
    }
    fn event(
        &self,
        event: crate::audit::Event,
    ) -> Result<Option<crate::audit::Durable>, crate::audit::Full> {
        self.0.event(event)
    }
    fn roomy(&self) -> bool {
        false
    }
}

#[test]
fn http_refusals_are_recorded_without_a_body_and_only_while_the_trail_is_roomy() {
    use crate::audit::Durability;
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let sink = audited(&mut f, Default::default());
    assert_eq!(f.tsa.refuse(0, &local(), 413), 413);
    let records = sink.0.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, Outcome::Refused(413));
    assert_eq!(
        (records[0].request_digest, records[0].policy.as_ref()),
        (None, None)
    );
    // Past the warning watermark: answered as before, not recorded; a rejected request
    // still is (its record is the only trace of it).
    let tight = Arc::new(NearlyFull::default());
    let audit = super::preprocess::audit::AuditFilterConfig::default().build(
        "audit",
        "s",
        "k",
        false,
        Durability::GroupCommit,
        tight.clone(),
    );
    f.tsa.services[0].preprocess[0] = Arc::new(audit);
    assert_eq!(f.tsa.refuse(0, &local(), 415), 415);
    f.tsa.issue(0, b"junk", &local());
    let kept = tight.0 .0.lock().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].outcome,
        Outcome::Rejected(FailureInfo::BadDataFormat)
    );
    assert_eq!(kept[0].request_digest.map(|d| d.len), Some(4));
}

/// A pre-processing filter that writes down when it runs, and may stop requests.
struct Recorder {
    name: &'static str,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<super::preprocess::Stop>,
}

impl super::preprocess::PreFilter for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    fn before(
        &self,
        _x: &mut super::preprocess::Exchange<'_>,
    ) -> Result<(), super::preprocess::Stop> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}.before", self.name));
        self.stop.map_or(Ok(()), Err)
    }
    fn after(&self, x: &super::preprocess::Exchange<'_>, reply: &mut super::Reply) {
        let what = match &reply.outcome {
            Outcome::Granted { .. } => "granted".to_string(),
            Outcome::Rejected(f) => f.name().to_string(),
            Outcome::Refused(c) => c.to_string(),
        };
        let policy = x.policy.map_or("-", |p| &p.name);
        self.log
            .lock()
            .unwrap()
            .push(format!("{}.after({what},{policy})", self.name));
    }
}

#[test]
fn preprocessing_wraps_the_chain_like_an_onion() {
    use super::preprocess::{PreFilter, Stop};
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = |name, stop| {
        Arc::new(Recorder {
            name,
            log: log.clone(),
            stop,
        }) as Arc<dyn PreFilter>
    };
    f.tsa.services[0].preprocess = vec![rec("a", None), rec("b", None), rec("c", None)];
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    f.tsa.issue(0, &ok, &local());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "a.before",
            "b.before",
            "c.before",
            "c.after(granted,p)",
            "b.after(granted,p)",
            "a.after(granted,p)"
        ]
    );
    // The after-phase runs on rejections too.
    log.lock().unwrap().clear();
    f.tsa.issue(0, b"junk", &local());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "a.before",
            "b.before",
            "c.before",
            "c.after(badDataFormat,-)",
            "b.after(badDataFormat,-)",
            "a.after(badDataFormat,-)"
        ]
    );
    // A filter that stops the request: the chain never runs, and only the entered filters
    // unwind.
    log.lock().unwrap().clear();
    f.tsa.services[0].preprocess = vec![
        rec("a", None),
        rec("b", Some(Stop::Http(429))),
        rec("c", None),
    ];
    let reply = f.tsa.issue(0, &ok, &local());
    assert_eq!(reply.outcome, Outcome::Refused(429));
    assert_eq!(
        *log.lock().unwrap(),
        ["a.before", "b.before", "b.after(429,-)", "a.after(429,-)"]
    );
}

#[test]
fn the_clock_filter_sets_gen_time_and_audit_records_every_request() {
    use super::preprocess::audit::AuditFilterConfig;
    use super::preprocess::clock::ClockConfig;
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, None); // tsa clock: no time
    let clock = ClockConfig {
        fixed: Some("2027-03-04T05:06:07Z".into()),
    }
    .build("clock", Arc::new(FixedClock(None)));
    f.tsa.services[0].preprocess = vec![Arc::new(clock)];
    let sink = audited(
        &mut f,
        AuditFilterConfig {
            request: true,
            ..Default::default()
        },
    );
    let nonce = [0x01, 0x02];
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, Some(&nonce), true);
    let reply = f.tsa.issue(0, &ok, &local());
    // Group commit: the reply carries the wait for its record.
    assert!(reply.durable.is_some());
    let token = response::decode(&reply.der).unwrap().token.unwrap();
    assert_eq!(token.tst_info.gen_time_text, "20270304050607Z");
    f.tsa.issue(0, b"junk", &local());
    let records = sink.0.lock().unwrap();
    assert_eq!(records.len(), 2);
    let r = &records[0];
    assert!(matches!(r.outcome, Outcome::Granted { .. }));
    assert_eq!(r.time.unix_secs, 1_804_136_767);
    assert_eq!(r.policy.as_deref(), Some("p"));
    assert_eq!(r.policy_oid.as_deref(), Some("2.999.1.1"));
    assert_eq!(r.hash, Some(HashAlg::Sha256));
    assert_eq!(r.imprint.as_deref(), Some(&[1u8; 32][..]));
    assert_eq!(r.nonce.as_deref(), Some(&nonce[..]));
    assert!(r.cert_req);
    assert_eq!(r.key_id.as_deref(), Some("k"));
    assert_eq!(r.request.as_deref(), Some(&ok[..]));
    assert_eq!(r.client, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(
        records[1].outcome,
        Outcome::Rejected(FailureInfo::BadDataFormat)
    );
    assert_eq!(
        (records[1].imprint.as_ref(), records[1].key_id.as_ref()),
        (None, None)
    );
}

#[test]
fn a_full_audit_trail_refuses_instead_of_releasing_a_token() {
    struct Full;
    impl crate::audit::AuditSink for Full {
        fn submit(
            &self,
            _r: crate::audit::Record,
            _durable: bool,
        ) -> Result<Option<crate::audit::Durable>, crate::audit::Full> {
            Err(crate::audit::Full)
        }
        fn event(
            &self,
            _e: crate::audit::Event,
        ) -> Result<Option<crate::audit::Durable>, crate::audit::Full> {
            Err(crate::audit::Full)
        }
    }
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let audit = super::preprocess::audit::AuditFilterConfig::default().build(
        "audit",
        "s",
        "k",
        false,
        crate::audit::Durability::Async,
        Arc::new(Full),
    );
    f.tsa.services[0].preprocess = vec![Arc::new(audit)];
    let ok = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    let reply = f.tsa.issue(0, &ok, &local());
    assert_eq!(reply.outcome, Outcome::Refused(503));
    assert!(reply.der.is_empty());
}

#[test]
fn the_fallback_policy_keeps_its_own_rules() {
    use super::mapper::Cidr;
    let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let svc = &mut f.tsa.services[0];
    svc.policies[0].rules.hash_algorithm = Some(vec![HashAlg::Sha512]);
    let mut internal = policy("2.999.1.9", Precision::Seconds, IncludeCerts::Signer);
    internal.rules.client = Some(vec![Cidr::parse("10.0.0.0/8").unwrap()]);
    svc.fallback = Some(internal);
    // From loopback the fallback's client rule does not match: no policy at all.
    let sha256 = request::encode(HashAlg::Sha256, &[1; 32], None, None, false);
    assert_eq!(rejection(&f, &sha256).0, FailureInfo::UnacceptedPolicy);
    // From 10/8 it does.
    let inside = RequestMeta {
        client: "10.1.2.3".parse().unwrap(),
        path: "/tsa",
        head: b"",
        client_subject: None,
    };
    let reply = f.tsa.issue(0, &sha256, &inside);
    assert!(matches!(reply.outcome, Outcome::Granted { .. }));
}

/// The content octets of a DER SEQUENCE (test inputs are built around them).
fn sequence_content(tlv: &[u8]) -> Vec<u8> {
    use ::der::{Decode, Reader};
    let mut r = ::der::SliceReader::new(tlv).unwrap();
    let header = ::der::Header::decode(&mut r).unwrap();
    r.read_slice(header.length).unwrap().to_vec()
}

#[test]
fn a_disabled_service_refuses_with_503_until_enabled_again() {
    let f = fixture(KeyType::P256, RsaPadding::Pkcs1, Some(now()));
    let req = crate::protocol::request::encode(HashAlg::Sha256, &[7; 32], None, None, false);
    assert!(f.tsa.services[0].switch.set(false));
    let reply = f.tsa.issue(0, &req, &local());
    assert!(
        matches!(reply.outcome, Outcome::Refused(503)),
        "{:?}",
        reply.outcome
    );
    f.tsa.services[0].switch.set(true);
    let reply = f.tsa.issue(0, &req, &local());
    assert!(
        matches!(reply.outcome, Outcome::Granted { .. }),
        "{:?}",
        reply.outcome
    );
}

#[test]
fn authenticode_stamps_use_the_trusted_clock_and_refuse_without_it() {
    use crate::protocol::authenticode;
    let body = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(authenticode::encode_request(b"signature"))
            .into_bytes()
    };
    let legacy = |clock: Option<Timestamp>| {
        let mut f = fixture(KeyType::P256, RsaPadding::Pkcs1, clock);
        f.tsa.services[0].protocol = crate::policy::config::Protocol::Authenticode;
        f
    };
    // In sync: a countersignature (ContentInfo signedData) with a serial as identifier.
    let f = legacy(Some(now()));
    let reply = f.tsa.issue(0, &body, &local());
    assert!(
        matches!(reply.outcome, Outcome::Granted { .. }),
        "{:?}",
        reply.outcome
    );
    assert_eq!(&reply.der[..1], &[tag::SEQUENCE]);
    assert!(reply
        .der
        .windows(oid::SIGNED_DATA.len())
        .any(|w| w == oid::SIGNED_DATA));
    // No trusted time: refused (503 at the HTTP level), never a stamp with a doubtful time.
    let f = legacy(None);
    let reply = f.tsa.issue(0, &body, &local());
    assert!(
        matches!(
            reply.outcome,
            Outcome::Rejected(FailureInfo::TimeNotAvailable)
        ),
        "{:?}",
        reply.outcome
    );
    assert_eq!(FailureInfo::TimeNotAvailable.legacy_http_status(), 503);
    // Bad input: a reason, badDataFormat (400).
    let reply = legacy(Some(now())).tsa.issue(0, b"%%%", &local());
    assert!(matches!(
        reply.outcome,
        Outcome::Rejected(FailureInfo::BadDataFormat)
    ));
    assert!(String::from_utf8_lossy(&reply.der).contains("not base64"));
}
