//! The PKCS#11 signer against a real SoftHSM2 token, set up the way an operator does it:
//! `softhsm2-util --init-token`, `stampd hsm keygen`, `stampd hsm csr`, a CA (`openssl x509
//! -req`) issuing the TSA certificate, `stampd hsm import-cert`, then `stampd serve` with the
//! certificate read from the token. Tokens are checked with `openssl ts -verify` (Ed25519
//! with `stampd verify`: OpenSSL cannot verify pure Ed25519 over signed attributes).
//!
//! Every test owns a token directory in a temp dir (`SOFTHSM2_CONF`); nextest runs each
//! test in its own process, so setting the variable is safe.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stampd::clock::SystemClock;
use stampd::outcome::Outcome;
use stampd::policy::{RequestMeta, Tsa};
use stampd::protocol::{request, FailureInfo, HashAlg};
use stampd::signer::pkcs11::{Pkcs11Config, Pkcs11Signer};
use stampd::signer::TokenSigner;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN_ENV: &str = "STAMPD_TEST_PIN";

/// A SoftHSM2 setup in a temp dir: token `tsa` (user PIN 1234 in `STAMPD_TEST_PIN`) and a
/// CA made by `stampd init` (its key signs the TSA certificates).
struct Hsm {
    dir: tempfile::TempDir,
    tokens: PathBuf,
    ca_cert: PathBuf,
    ca_key: PathBuf,
}

impl Hsm {
    fn new() -> Hsm {
        let dir = common::tempdir();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var(PIN_ENV, "1234");
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
        let ca_dir = dir.path().join("ca");
        let (ok, out) = common::run(
            Command::new(common::BIN)
                .arg("init")
                .arg("--data-dir")
                .arg(&ca_dir),
        );
        assert!(ok, "{out}");
        Hsm {
            tokens,
            ca_cert: ca_dir.join("pki/ca.pem"),
            ca_key: ca_dir.join("pki/ca.key"),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `stampd hsm SUB --module --token-label tsa --pin-env STAMPD_TEST_PIN ARGS`.
    fn stampd_hsm(&self, sub: &str, args: &[&str]) -> (bool, String) {
        common::run(
            Command::new(common::BIN)
                .args([
                    "hsm",
                    sub,
                    "--module",
                    MODULE,
                    "--token-label",
                    "tsa",
                    "--pin-env",
                    PIN_ENV,
                ])
                .args(args),
        )
    }

    /// keygen → csr → the CA issues a TSA certificate (critical EKU timeStamping) →
    /// import-cert: a key labelled `label` ready to serve.
    fn provision(&self, label: &str, key_type: &str) {
        let (ok, out) = self.stampd_hsm("keygen", &["--key-label", label, "--key-type", key_type]);
        assert!(ok && out.contains("BEGIN PUBLIC KEY"), "{out}");
        let csr = self.path(&format!("{label}.csr"));
        let (ok, out) = self.stampd_hsm(
            "csr",
            &[
                "--key-label",
                label,
                "--subject",
                &format!("/CN={label} TSA/O=stampd tests/C=DE"),
                "--out",
                csr.to_str().unwrap(),
            ],
        );
        assert!(ok, "{out}");
        // The CA checks the request's signature (made on the token) before issuing.
        let (ok, out) = common::run(
            Command::new("openssl")
                .args(["req", "-verify", "-noout", "-in"])
                .arg(&csr),
        );
        assert!(ok, "{out}");
        let leaf = self.path(&format!("{label}.pem"));
        self.ca_issues(&csr, &leaf);
        let chain = self.path(&format!("{label}-chain.pem"));
        let text = std::fs::read_to_string(&leaf).unwrap()
            + &std::fs::read_to_string(&self.ca_cert).unwrap();
        std::fs::write(&chain, text).unwrap();
        let (ok, out) = self.stampd_hsm(
            "import-cert",
            &["--key-label", label, "--cert", chain.to_str().unwrap()],
        );
        assert!(ok && out.contains("stored 2 certificate(s)"), "{out}");
    }

    /// `openssl ca` issues a TSA certificate (critical EKU timeStamping) for the request,
    /// valid from an hour ago (a token's genTime ± accuracy must fall inside it).
    fn ca_issues(&self, csr: &Path, leaf: &Path) {
        common::ca::issue_tsa_certificate(
            &self.path("openssl-ca"),
            &self.ca_cert,
            &self.ca_key,
            csr,
            leaf,
            30,
        );
    }

    /// The signer of key `label` (certificate from the token) with `sessions` sessions.
    fn signer(&self, label: &str, sessions: usize) -> Pkcs11Signer {
        let now = stampd::clock::TimeSource::now(&SystemClock).unwrap().time;
        Pkcs11Signer::open(
            Pkcs11Config {
                module: Path::new(MODULE),
                rsa_padding: stampd::signer::software::RsaPadding::Pkcs1,
                token_label: "tsa",
                pin: "1234".into(),
                key_label: label,
                chain: None,
                sessions,
            },
            label,
            now,
        )
        .unwrap()
    }

    fn openssl_verifies(&self, name: &str, q: &[u8], der: &[u8]) {
        let tsq = self.path(&format!("{name}.tsq"));
        let tsr = self.path(&format!("{name}.tsr"));
        std::fs::write(&tsq, q).unwrap();
        std::fs::write(&tsr, der).unwrap();
        let (ok, out) = common::run(
            Command::new("openssl")
                .args(["ts", "-verify", "-in"])
                .arg(&tsr)
                .arg("-queryfile")
                .arg(&tsq)
                .arg("-CAfile")
                .arg(&self.ca_cert),
        );
        assert!(ok && out.contains("Verification: OK"), "{out}");
    }

    fn stampd_verifies(&self, name: &str, digest: &[u8], der: &[u8]) {
        let tsr = self.path(&format!("{name}.tsr"));
        std::fs::write(&tsr, der).unwrap();
        let (ok, out) = common::run(
            Command::new(common::BIN)
                .arg("verify")
                .arg(&tsr)
                .args([
                    "--digest",
                    &stampd::protocol::hex::hex(digest),
                    "--hash",
                    "sha256",
                    "--ca",
                ])
                .arg(&self.ca_cert),
        );
        assert!(ok, "{out}");
    }
}

fn get(server: &common::Server, path: &str) -> common::Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    common::exchange(server, raw.as_bytes()).unwrap()
}

/// The whole operator path for every key type, then one server with a service per key.
#[test]
fn keygen_csr_ca_import_then_serve_for_every_key_type() {
    let hsm = Hsm::new();
    let keys = [
        ("p256", "p256"),
        ("p384", "p384"),
        ("rsa", "rsa2048"),
        ("ed", "ed25519"),
    ];
    for (label, kind) in keys {
        hsm.provision(label, kind);
    }

    // list shows the token and, with the PIN, the private keys and certificates.
    let (ok, out) = hsm.stampd_hsm("list", &[]);
    assert!(ok && out.contains("token `tsa`"), "{out}");
    for (label, _) in keys {
        assert_eq!(
            out.lines()
                .filter(|l| l.trim_start().starts_with("private-key")
                    && l.contains(&format!("`{label}`")))
                .count(),
            1,
            "{out}"
        );
    }
    assert_eq!(out.matches("certificate `p256`").count(), 2, "{out}");
    let (ok, out) =
        common::run(Command::new(common::BIN).args(["hsm", "list", "--module", MODULE, "--json"]));
    assert!(ok, "{out}");
    let slots: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = slots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["token"]["label"] == "tsa")
        .unwrap();
    let objects = token["token"]["objects"].as_array().unwrap();
    // Without a PIN, no private key is visible.
    assert!(objects.iter().all(|o| o["class"] != "private-key"), "{out}");
    assert!(
        objects
            .iter()
            .any(|o| o["class"] == "public-key" && o["label"] == "p384"),
        "{out}"
    );

    // selftest through the flags (chain read from the token).
    let (ok, out) = hsm.stampd_hsm("selftest", &["--key-label", "p384"]);
    assert!(
        ok && out.contains("passed") && out.contains("ecdsa"),
        "{out}"
    );

    let data = hsm.path("data");
    std::fs::create_dir(&data).unwrap();
    let mut config = String::new();
    for (label, _) in keys {
        config += &format!(
            "[signer.{label}]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"tsa\"\n\
             pin_env = \"{PIN_ENV}\"\nkey_label = \"{label}\"\nsessions = 2\n\n\
             [[service]]\nname = \"{label}\"\npath = \"/{label}\"\nsigner = \"{label}\"\n\n"
        );
    }
    let file = hsm.path("hsm.toml");
    std::fs::write(&file, &config).unwrap();
    // selftest through the configuration, and check-config shows the queue default.
    let (ok, out) = common::run(
        Command::new(common::BIN)
            .args(["hsm", "selftest", "--signer", "rsa", "--config"])
            .arg(&file),
    );
    assert!(ok && out.contains("rsa-pkcs1-sha256"), "{out}");
    let (ok, out) = common::run(Command::new(common::BIN).arg("check-config").arg(&file));
    assert!(ok && out.contains("dispatch = \"queue\""), "{out}");

    let server = common::Server::start(&data, Some(&config));
    assert!(!data.join("pki").exists(), "no dev PKI for an HSM signer");
    assert_eq!(get(&server, "/ready").status, 200);
    for (label, _) in keys {
        for i in 0..3u8 {
            let digest = [i; 32];
            let q = request::encode(HashAlg::Sha256, &digest, None, Some(&[i + 1]), true);
            let r = common::exchange(&server, &common::post_bytes(&format!("/{label}"), &q, ""))
                .unwrap();
            assert_eq!(r.status, 200);
            let name = format!("{label}{i}");
            if label == "ed" {
                hsm.stampd_verifies(&name, &digest, &r.body);
            } else {
                hsm.openssl_verifies(&name, &q, &r.body);
            }
        }
    }
    let metrics = server.metrics();
    // SIGTERM while signs are in flight: a clean exit (the module is closed first, never
    // torn down under a running C_Sign).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = ["/p256", "/rsa", "/ed", "/p384"]
        .into_iter()
        .map(|path| {
            let (stop, addr) = (stop.clone(), server.addr);
            std::thread::spawn(move || {
                let q = request::encode(HashAlg::Sha256, &[7; 32], None, None, false);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                        break;
                    };
                    use std::io::Write as _;
                    if s.write_all(&common::post_bytes(path, &q, "")).is_err() {
                        break;
                    }
                    let _ = common::read_response(&mut s, &mut Vec::new());
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = server.terminate();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        metrics.contains("stampd_signer_up{signer=\"p256\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stampd_signer_sessions_up{signer=\"ed\"} 2"),
        "{metrics}"
    );
}

/// Generated keys never leave the token and only sign; `hsm bench` measures the raw rate.
#[test]
fn generated_keys_are_sign_only_and_never_extractable_and_bench_measures() {
    let hsm = Hsm::new();
    for (label, kind) in [("e", "p256"), ("r", "rsa2048"), ("d", "ed25519")] {
        let (ok, out) = hsm.stampd_hsm("keygen", &["--key-label", label, "--key-type", kind]);
        assert!(ok, "{out}");
        let token = stampd::signer::pkcs11::token::Token::open(
            Path::new(MODULE),
            "tsa",
            Some("1234".into()),
        )
        .unwrap();
        let session = token.session(false).unwrap();
        let key = stampd::signer::pkcs11::token::find_key(&session, label).unwrap();
        assert_eq!(
            stampd::signer::pkcs11::token::key_protection(&session, key.private).unwrap(),
            [true, false, true, true],
            "{label}: sensitive, not extractable, always sensitive, never extractable"
        );
        use cryptoki::object::{Attribute, AttributeType};
        let attrs = session
            .get_attributes(key.private, &[AttributeType::Decrypt, AttributeType::Sign])
            .unwrap();
        assert!(attrs.contains(&Attribute::Sign(true)), "{label}: {attrs:?}");
        assert!(
            !attrs.contains(&Attribute::Decrypt(true)),
            "{label}: {attrs:?}"
        );
    }
    let (ok, out) = hsm.stampd_hsm(
        "bench",
        &[
            "--key-label",
            "e",
            "--sessions",
            "1,2",
            "--seconds",
            "0.3",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, sessions) in rows.iter().zip([1, 2]) {
        assert_eq!(row["sessions"], sessions);
        assert!(row["signs"].as_u64().unwrap() > 0, "{out}");
    }
}

/// Mistakes an operator makes get clear errors, and the PIN is never echoed.
#[test]
fn hsm_commands_refuse_mistakes_clearly() {
    let hsm = Hsm::new();
    hsm.provision("k", "p256");
    let (ok, out) = hsm.stampd_hsm("keygen", &["--key-label", "k", "--key-type", "p256"]);
    assert!(!ok && out.contains("already exists"), "{out}");

    std::env::set_var("STAMPD_WRONG_PIN", "9999");
    let (ok, out) = common::run(Command::new(common::BIN).args([
        "hsm",
        "keygen",
        "--module",
        MODULE,
        "--token-label",
        "tsa",
        "--pin-env",
        "STAMPD_WRONG_PIN",
        "--key-label",
        "x",
        "--key-type",
        "p256",
    ]));
    assert!(
        !ok && out.contains("C_Login failed: PinIncorrect") && !out.contains("9999"),
        "{out}"
    );
    let (ok, out) = common::run(Command::new(common::BIN).args([
        "hsm",
        "keygen",
        "--module",
        MODULE,
        "--token-label",
        "tsa",
        "--pin-env",
        "STAMPD_UNSET_PIN_VAR",
        "--key-label",
        "x",
        "--key-type",
        "p256",
    ]));
    assert!(!ok && out.contains("STAMPD_UNSET_PIN_VAR"), "{out}");
    let (ok, out) = common::run(Command::new(common::BIN).args([
        "hsm",
        "list",
        "--module",
        MODULE,
        "--token-label",
        "nope",
    ]));
    assert!(!ok && out.contains("no token labelled `nope`"), "{out}");
    let (ok, out) = common::run(Command::new(common::BIN).args([
        "hsm",
        "list",
        "--module",
        MODULE,
        "--pin-env",
        PIN_ENV,
    ]));
    assert!(!ok && out.contains("needs --token-label"), "{out}");

    // A certificate for another key is refused, and so is one without the TSA EKU.
    hsm.provision("other", "p256");
    let (ok, out) = hsm.stampd_hsm(
        "import-cert",
        &[
            "--key-label",
            "k",
            "--cert",
            hsm.path("other-chain.pem").to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("does not match"), "{out}");
    let (ok, out) = hsm.stampd_hsm(
        "import-cert",
        &["--key-label", "k", "--cert", hsm.ca_cert.to_str().unwrap()],
    );
    assert!(!ok && out.contains("does not match"), "{out}");
    let (ok, out) = hsm.stampd_hsm(
        "csr",
        &[
            "--key-label",
            "k",
            "--subject",
            "CN=no slash",
            "--out",
            hsm.path("x.csr").to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("must start with /"), "{out}");
    let (ok, out) = hsm.stampd_hsm(
        "csr",
        &[
            "--key-label",
            "missing",
            "--subject",
            "/CN=x",
            "--out",
            hsm.path("x.csr").to_str().unwrap(),
        ],
    );
    assert!(
        !ok && out.contains("no private key labelled `missing`"),
        "{out}"
    );

    // A server whose PIN variable is unset refuses to start, naming the variable only.
    let data = hsm.path("data");
    std::fs::create_dir(&data).unwrap();
    let config = format!(
        "[signer.main]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"tsa\"\n\
         pin_env = \"STAMPD_UNSET_PIN_VAR\"\nkey_label = \"k\"\n"
    );
    let file = hsm.path("bad.toml");
    std::fs::write(&file, &config).unwrap();
    let (ok, out) = common::run(
        Command::new(common::BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&file),
    );
    assert!(!ok && out.contains("STAMPD_UNSET_PIN_VAR"), "{out}");
}

/// 200 concurrent requests over 4 sessions all verify; then every session is logged out
/// from outside (C_Logout from another session of this process): the failed requests get
/// systemFailure, never a wrong token, and the healer brings the pool back by itself.
#[test]
fn the_pool_spreads_requests_and_recovers_from_a_logout() {
    let hsm = Hsm::new();
    hsm.provision("tsa-key", "p256");
    let signer = Arc::new(hsm.signer("tsa-key", 4));
    let tsa = Arc::new(Tsa::single("hsm", signer.clone()));

    let run = |tag: u8| {
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let tsa = tsa.clone();
                std::thread::spawn(move || {
                    (0..25u8)
                        .map(|i| {
                            let q = request::encode(
                                HashAlg::Sha256,
                                &[tag ^ t ^ i; 32],
                                None,
                                Some(&[t + 1, i]),
                                true,
                            );
                            let reply = tsa.issue(0, &q, &RequestMeta::local("/tsa"));
                            (q, reply)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    };
    let issued = run(0);
    assert_eq!(issued.len(), 200);
    assert!(issued
        .iter()
        .all(|(_, r)| matches!(r.outcome, Outcome::Granted { .. })));
    for (n, (q, r)) in issued.iter().enumerate().step_by(40) {
        hsm.openssl_verifies(&format!("a{n}"), q, &r.der);
    }

    // Log every session out from outside the pool.
    let other = stampd::signer::pkcs11::token::Token::open(Path::new(MODULE), "tsa", None).unwrap();
    other.session(false).unwrap().logout().unwrap();
    let replies = run(0x55);
    let failed = replies
        .iter()
        .filter(|(_, r)| r.outcome == Outcome::Rejected(FailureInfo::SystemFailure))
        .count();
    assert!(failed >= 1, "a logged-out session must fail its request");
    for (n, (q, r)) in replies.iter().enumerate() {
        match r.outcome {
            Outcome::Granted { .. } if n % 20 == 0 => {
                hsm.openssl_verifies(&format!("b{n}"), q, &r.der)
            }
            Outcome::Granted { .. } | Outcome::Rejected(FailureInfo::SystemFailure) => {}
            ref other => panic!("unexpected outcome {other:?}"),
        }
    }
    // The healer reopens and logs in again; service resumes with every session.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        metrics.clear();
        signer.metrics("hsm", &mut metrics);
        if metrics.contains("stampd_signer_sessions_up{signer=\"hsm\"} 4") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        metrics.contains("sessions_up{signer=\"hsm\"} 4"),
        "{metrics}"
    );
    let again = run(0xaa);
    assert!(again
        .iter()
        .all(|(_, r)| matches!(r.outcome, Outcome::Granted { .. })));
    assert!(tsa.ready().is_ok());
}

/// The token disappears under a running server (its directory is moved away) and comes
/// back: meanwhile requests get systemFailure quickly (no hang), /ready says the signer is
/// down; afterwards the server signs again by itself.
#[test]
fn a_removed_token_means_system_failure_then_service_resumes() {
    let hsm = Hsm::new();
    hsm.provision("k", "p256");
    let data = hsm.path("data");
    std::fs::create_dir(&data).unwrap();
    hsm.provision("k2", "p384");
    // Two signers on the same module: the first one's recovery must not break the other.
    let config = format!(
        "[signer.main]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"tsa\"\n\
         pin_env = \"{PIN_ENV}\"\nkey_label = \"k\"\nsessions = 2\n\
         [signer.two]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"tsa\"\n\
         pin_credential = \"hsm-pin\"\nkey_label = \"k2\"\nsessions = 1\n\
         [[service]]\nname = \"main\"\npath = \"/tsa\"\n\
         [[service]]\nname = \"two\"\npath = \"/two\"\nsigner = \"two\"\n"
    );
    // The second signer's PIN is a systemd credential (LoadCredential=hsm-pin:...), as
    // systemd hands it over: a file in $CREDENTIALS_DIRECTORY.
    let credentials = hsm.path("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("hsm-pin"), "1234\n").unwrap();
    let mut cmd = Command::new(common::BIN);
    cmd.env("CREDENTIALS_DIRECTORY", &credentials);
    let server = common::Server::start_command(cmd, &data, Some(&config));
    let ask_at = |path: &str, i: u8| {
        let q = request::encode(HashAlg::Sha256, &[i; 32], None, Some(&[i, 1]), true);
        let started = Instant::now();
        let r = common::exchange(&server, &common::post_bytes(path, &q, "")).unwrap();
        assert_eq!(r.status, 200, "RFC 3161 answers travel as 200");
        let resp = stampd::protocol::response::decode(&r.body).unwrap();
        (
            q,
            r.body.clone(),
            resp.status,
            resp.fail_info,
            started.elapsed(),
        )
    };
    let ask = |i: u8| ask_at("/tsa", i);
    let (q, body, status, _, _) = ask(1);
    assert_eq!(status, stampd::protocol::PkiStatus::Granted);
    hsm.openssl_verifies("before", &q, &body);
    let (q, body, status, _, _) = ask_at("/two", 2);
    assert_eq!(status, stampd::protocol::PkiStatus::Granted);
    hsm.openssl_verifies("before-two", &q, &body);

    let away = hsm.path("tokens-away");
    std::fs::rename(&hsm.tokens, &away).unwrap();
    let mut saw_failure = false;
    for i in 10..20u8 {
        let (_, _, status, fail, took) = ask(i);
        assert!(took < Duration::from_secs(5), "no hang: {took:?}");
        if status == stampd::protocol::PkiStatus::Rejection {
            assert_eq!(fail, vec![FailureInfo::SystemFailure]);
            saw_failure = true;
        }
    }
    assert!(saw_failure, "requests must fail while the token is gone");
    // Still gone after several reopen attempts: every request fails fast.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 20..23u8 {
        let (_, _, status, fail, took) = ask(i);
        assert_eq!(status, stampd::protocol::PkiStatus::Rejection);
        assert_eq!(fail, vec![FailureInfo::SystemFailure]);
        // Well under the 2 s a request would wait for a session while some session works.
        assert!(
            took < Duration::from_millis(1500),
            "fails at once: {took:?}"
        );
    }
    let ready = get(&server, "/ready");
    assert_eq!(ready.status, 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("main"));
    let metrics = server.metrics();
    assert!(
        metrics.contains("stampd_signer_up{signer=\"main\"} 0"),
        "{metrics}"
    );

    std::fs::rename(&away, &hsm.tokens).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (q, body, status, _, _) = ask(30);
        if status == stampd::protocol::PkiStatus::Granted {
            hsm.openssl_verifies("after", &q, &body);
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The other signer's session died with the module's re-initialisation: its next
    // request opens a fresh one instead of failing.
    let (q, body, status, _, _) = ask_at("/two", 31);
    assert_eq!(status, stampd::protocol::PkiStatus::Granted);
    hsm.openssl_verifies("after-two", &q, &body);
    assert_eq!(get(&server, "/ready").status, 200);
}

/// osslsigncode with a key in SoftHSM2: a legacy Authenticode countersignature (`-t`) and an
/// RFC 3161 token (`-ts`), both signed on the token, both verified by `osslsigncode verify`.
#[test]
fn osslsigncode_stamps_signed_by_an_hsm_key_verify() {
    use common::signing::{code_signing_cert, osslsigncode_sign, osslsigncode_verify, script};
    let hsm = Hsm::new();
    hsm.provision("code", "p256");
    let config = format!(
        "[signer.main]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"tsa\"\n\
         pin_env = \"{PIN_ENV}\"\nkey_label = \"code\"\nsessions = 1\n\n\
         [[service]]\nname = \"default\"\n\n\
         [[service]]\nname = \"authenticode\"\npath = \"/authenticode\"\nprotocol = \"authenticode\"\n"
    );
    let data = hsm.path("data");
    let server = common::Server::start(&data, Some(&config));
    let dir = hsm.path("signing");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = code_signing_cert(&dir);
    let file = script(&dir, "hsm.ps1");
    for (flag, path) in [("-t", "/authenticode"), ("-ts", "/tsa")] {
        let url = format!("http://{}{path}", server.addr);
        let signed = osslsigncode_sign(&dir, &file, (&cert, &key), flag, &url, "sha256")
            .unwrap_or_else(|e| panic!("{flag}: {e}"));
        let out = osslsigncode_verify(&signed, &cert, &hsm.ca_cert);
        assert!(out.contains("CN=code TSA"), "{out}");
    }
}
