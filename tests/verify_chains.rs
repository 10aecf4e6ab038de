//! The client verifier's chain rules on tokens issued by the software signer: a proper CA
//! chain verifies, an end-entity certificate cannot act as a CA for a TSA certificate.

use rcgen::{BasicConstraints, CertificateParams, CustomExtension, IsCa, Issuer, KeyPair};
use stampd::client::verify::{verify, Expectation, Verified};
use stampd::protocol::token::{self, Accuracy, IncludeCerts, PolicyTemplate, SignerTemplate};
use stampd::protocol::{request, HashAlg, Precision, Timestamp};
use stampd::signer::software::{RsaPadding, SoftwareSigner};
use stampd::signer::TokenSigner;

fn now() -> Timestamp {
    Timestamp {
        unix_secs: time::OffsetDateTime::from(stampd::clock::wall_now()).unix_timestamp(),
        nanos: 0,
    }
}

fn tsa_params() -> CertificateParams {
    let mut p = CertificateParams::new(vec![]).unwrap();
    let mut eku = CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        vec![0x30, 0x0a, 0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3, 8],
    );
    eku.set_criticality(true);
    p.custom_extensions = vec![eku];
    p
}

/// Issues a token with `chain` (TSA first) and verifies it against `ca`.
fn issue_and_verify(tsa_key: &KeyPair, chain: Vec<Vec<u8>>, ca: &[u8]) -> Result<Verified, String> {
    let signer =
        SoftwareSigner::from_der(&tsa_key.serialize_der(), chain, RsaPadding::Pkcs1, now())?;
    let oid = stampd::protocol::oid::Oid::parse("2.999.1.1").unwrap();
    let policy = PolicyTemplate::new(
        &oid,
        Accuracy::default(),
        Precision::Seconds,
        stampd::protocol::token::TsaName::Omit,
        IncludeCerts::Chain,
        false,
    )
    .unwrap();
    let body = request::encode(HashAlg::Sha256, &[3; 32], None, None, true);
    let req = request::decode(&body).unwrap();
    let template: &SignerTemplate = signer.template();
    let prepared =
        token::prepare(template, &policy, &req, &[1], now(), &Default::default()).unwrap();
    let sig = signer
        .sign(signer.reserve().unwrap(), &prepared.signed_attrs)
        .unwrap();
    let der = token::finish(template, &policy, &prepared, &sig);
    let expect = Expectation {
        hash: HashAlg::Sha256,
        digest: vec![3; 32],
        nonce: None,
    };
    verify(&der, false, &expect, &[ca.to_vec()], &[])
}

#[test]
fn chains_through_a_proper_ca_verify() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let tsa_key = KeyPair::generate().unwrap();
    let tsa = tsa_params().signed_by(&tsa_key, &issuer).unwrap();
    let v = issue_and_verify(&tsa_key, vec![tsa.der().to_vec()], ca_cert.der()).unwrap();
    assert_eq!(v.chain_length, 2);
}

#[test]
fn an_end_entity_cannot_issue_a_tsa_certificate() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_issuer = Issuer::new(ca, &ca_key);
    // An ordinary end-entity certificate (e.g. a TLS client certificate) under the CA...
    let ee_key = KeyPair::generate().unwrap();
    let ee_params = CertificateParams::new(vec!["client.example".into()]).unwrap();
    let ee = ee_params.signed_by(&ee_key, &ca_issuer).unwrap();
    let ee_issuer = Issuer::new(
        CertificateParams::new(vec!["client.example".into()]).unwrap(),
        &ee_key,
    );
    // ...mints itself a "TSA" certificate.
    let tsa_key = KeyPair::generate().unwrap();
    let tsa = tsa_params().signed_by(&tsa_key, &ee_issuer).unwrap();
    let err = issue_and_verify(
        &tsa_key,
        vec![tsa.der().to_vec(), ee.der().to_vec()],
        ca_cert.der(),
    )
    .unwrap_err();
    assert!(err.contains("without being a CA"), "{err}");
}
