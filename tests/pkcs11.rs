//! WORK IN PROGRESS (issue 5): the PKCS#11 signer against a real SoftHSM2 token. The key is
//! generated on the token, the dev CA certifies it, tokens are issued through the pool and
//! verified with `openssl ts -verify`.

mod common;

use std::process::Command;
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use stampd::audit::Discard;
use stampd::clock::SystemClock;
use stampd::pki::{DevPki, ExternalKey, KeyType};
use stampd::policy::serial::SerialSpace;
use stampd::policy::{Issuer, Outcome, Policy, RequestMeta, Service};
use stampd::protocol::oid::Oid;
use stampd::protocol::token::{Accuracy, IncludeCerts, PolicyTemplate, TsaName};
use stampd::protocol::{request, HashAlg, Precision};
use stampd::signer::pkcs11::{Pkcs11Config, Pkcs11Signer};
use stampd::signer::software::pem_blocks;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token `tsa` (user PIN 1234) in `dir` with a key pair `tsa-key` (P-256,
/// RSA-2048 or Ed25519), and a
/// dev PKI in `dir` whose CA certified it. Returns the PKI and the PEM chain.
fn softhsm_token(dir: &std::path::Path, key_type: KeyType) -> (DevPki, String) {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // Each integration test is its own process under nextest; this one owns its token dir.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let (ok, out) = common::run(Command::new("softhsm2-util").args([
        "--init-token",
        "--free",
        "--label",
        "tsa",
        "--pin",
        "1234",
        "--so-pin",
        "5678",
    ]));
    assert!(ok, "{out}");

    // A key pair on the token.
    let point = {
        let ctx = Pkcs11::new(MODULE).unwrap();
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = ctx.get_slots_with_token().unwrap()[0];
        let session = ctx.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::new("1234".into())))
            .unwrap();
        let label = b"tsa-key".to_vec();
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
            Attribute::Label(label.clone()),
        ];
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Label(label),
            Attribute::Verify(true),
        ];
        if key_type == KeyType::Rsa2048 {
            public.push(Attribute::ModulusBits(2048.into()));
            public.push(Attribute::PublicExponent(vec![1, 0, 1]));
            let (public, _) = session
                .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                .unwrap();
            let attrs = session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .unwrap();
            let (Attribute::Modulus(n), Attribute::PublicExponent(e)) = (&attrs[0], &attrs[1])
            else {
                panic!("no RSA public key")
            };
            stampd::signer::pkcs11::rsa_public_key(n, e)
        } else {
            let (params, mechanism) = if key_type == KeyType::Ed25519 {
                // id-Ed25519 (RFC 8410)
                (
                    vec![0x06, 0x03, 0x2b, 0x65, 0x70],
                    Mechanism::EccEdwardsKeyPairGen,
                )
            } else {
                let prime256v1 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
                (prime256v1, Mechanism::EccKeyPairGen)
            };
            public.push(Attribute::EcParams(params));
            let (public, _) = session
                .generate_key_pair(&mechanism, &public, &private)
                .unwrap();
            let attrs = session
                .get_attributes(public, &[AttributeType::EcPoint])
                .unwrap();
            let Some(Attribute::EcPoint(raw)) = attrs.into_iter().next() else {
                panic!("no EC point")
            };
            // CKA_EC_POINT is an OCTET STRING around the point.
            raw[2..].to_vec()
        }
    };

    let pki = DevPki::in_dir(dir);
    pki.create(KeyType::P256).unwrap();
    let chain_pem = pki
        .issue_tsa_certificate(&ExternalKey { point, key_type })
        .unwrap();
    (pki, chain_pem)
}

fn openssl_verifies(dir: &std::path::Path, name: &str, q: &[u8], der: &[u8], ca: &std::path::Path) {
    let tsq = dir.join(format!("{name}.tsq"));
    let tsr = dir.join(format!("{name}.tsr"));
    std::fs::write(&tsq, q).unwrap();
    std::fs::write(&tsr, der).unwrap();
    let (ok, out) = common::run(
        Command::new("openssl")
            .args(["ts", "-verify", "-in"])
            .arg(&tsr)
            .arg("-queryfile")
            .arg(&tsq)
            .arg("-CAfile")
            .arg(ca),
    );
    assert!(ok && out.contains("Verification: OK"), "{out}");
}

#[test]
fn serve_signs_with_a_softhsm_p256_key_over_http() {
    serve_and_verify(KeyType::P256);
}

#[test]
fn serve_signs_with_a_softhsm_rsa2048_key_over_http() {
    serve_and_verify(KeyType::Rsa2048);
}

#[test]
fn serve_signs_with_a_softhsm_ed25519_key_over_http() {
    serve_and_verify(KeyType::Ed25519);
}

fn serve_and_verify(key_type: KeyType) {
    let tmp = common::tempdir();
    let (pki, chain_pem) = softhsm_token(tmp.path(), key_type);
    let data = tmp.path().join("d");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hsm.pem"), &chain_pem).unwrap();
    std::env::set_var("STAMPD_TEST_PIN", "1234");
    let config = format!(
        "[signer.main]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"tsa\"\n\
         pin_env = \"STAMPD_TEST_PIN\"\nkey_label = \"tsa-key\"\ncert = \"hsm.pem\"\nsessions = 2\n"
    );
    let server = common::Server::start(&data, Some(&config));
    assert!(!data.join("pki").exists(), "no dev PKI for an HSM signer");
    for i in 0..5u8 {
        let q = request::encode(HashAlg::Sha256, &[i; 32], None, Some(&[i + 1]), true);
        let r = common::exchange(&server, &common::post_bytes(&server.path, &q, "")).unwrap();
        assert_eq!(r.status, 200);
        if key_type == KeyType::Ed25519 {
            // OpenSSL's PKCS#7 code cannot verify pure Ed25519 over signed attributes
            // (README, verifier compatibility): stampd's own verifier checks these.
            let tsr = tmp.path().join(format!("http{i}.tsr"));
            std::fs::write(&tsr, &r.body).unwrap();
            let digest: String = [i; 32].iter().map(|b| format!("{b:02x}")).collect();
            let (ok, out) = common::run(
                Command::new(common::BIN)
                    .arg("verify")
                    .arg(&tsr)
                    .args(["--digest", &digest, "--hash", "sha256", "--ca"])
                    .arg(&pki.ca_cert),
            );
            assert!(ok, "{out}");
        } else {
            openssl_verifies(tmp.path(), &format!("http{i}"), &q, &r.body, &pki.ca_cert);
        }
    }
}

#[test]
fn softhsm_p256_tokens_verify_with_openssl() {
    let tmp = common::tempdir();
    let (pki, chain_pem) = softhsm_token(tmp.path(), KeyType::P256);
    let chain = pem_blocks(chain_pem.as_bytes(), "CERTIFICATE").unwrap();
    let now = stampd::clock::TimeSource::now(&SystemClock).unwrap();
    let signer = Pkcs11Signer::open(
        &Pkcs11Config {
            module: MODULE.as_ref(),
            rsa_padding: stampd::signer::software::RsaPadding::Pkcs1,
            token_label: "tsa",
            pin: "1234",
            key_label: "tsa-key",
            sessions: 4,
        },
        chain,
        now,
    )
    .unwrap();

    let oid = Oid::parse("2.999.1.1").unwrap();
    let template = PolicyTemplate::new(
        &oid,
        Accuracy::from_micros(1_000_000),
        Precision::Millis,
        TsaName::Subject,
        IncludeCerts::Chain,
        false,
    );
    let issuer = Arc::new(Issuer {
        services: vec![Service {
            name: "hsm".into(),
            signer: Arc::new(signer),
            policies: vec![Policy::simple("p", oid, vec![HashAlg::Sha256], template)],
            fallback: None,
            preprocess: Vec::new(),
            status_text: true,
        }],
        clock: Arc::new(SystemClock),
        serials: SerialSpace::ephemeral(1, 0),
        audit: Arc::new(Discard),
    });

    // Concurrent requests over the pool; every token verifies.
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let issuer = issuer.clone();
            std::thread::spawn(move || {
                (0..25u8)
                    .map(|i| {
                        let q = request::encode(HashAlg::Sha256, &[t ^ i; 32], None, None, true);
                        let reply = issuer.issue(0, &q, &RequestMeta::local("/tsa"));
                        assert!(matches!(reply.outcome, Outcome::Granted { .. }));
                        (q, reply.der)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let issued: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(issued.len(), 200);
    for (n, (q, der)) in issued.iter().enumerate().step_by(40) {
        openssl_verifies(tmp.path(), &n.to_string(), q, der, &pki.ca_cert);
    }
}
