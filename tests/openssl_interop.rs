//! Tokens from the real server verify with `openssl ts -verify` (and with `stampd verify`,
//! and with an independent Python verifier when the test command set one up) for every key
//! type, several imprint hashes, with and without nonce and certReq.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, Server, BIN};

fn openssl_query(
    dir: &Path,
    data: &Path,
    hash: &str,
    nonce: bool,
    cert: bool,
) -> std::path::PathBuf {
    let q = dir.join(format!("{hash}-{nonce}-{cert}.tsq"));
    let mut cmd = Command::new("openssl");
    cmd.args(["ts", "-query", "-data"])
        .arg(data)
        .arg(format!("-{hash}"))
        .arg("-out")
        .arg(&q);
    if !nonce {
        cmd.arg("-no_nonce");
    }
    if cert {
        cmd.arg("-cert");
    }
    let (ok, out) = run(&mut cmd);
    assert!(ok, "openssl ts -query: {out}");
    q
}

fn post_file(server: &Server, query: &Path, out: &Path) {
    let body = std::fs::read(query).unwrap();
    let resp = common::exchange(server, &common::post_bytes(&server.path, &body, "")).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/timestamp-reply")
    );
    std::fs::write(out, &resp.body).unwrap();
}

/// The independent verifier set up by `tests/run.sh` (a venv with rfc3161-client).
fn python_verifier() -> Option<(String, String)> {
    let py = std::env::var("STAMPD_INTEROP_PYTHON").ok();
    if py.is_none() && std::env::var("CI").is_ok() {
        panic!("CI must run the independent verifier: STAMPD_INTEROP_PYTHON is not set");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/verify.py").to_string();
    py.map(|p| (p, script))
}

/// OpenSSL's PKCS#7 verifier (used by `openssl ts -verify` 3.0 and by rfc3161-client) can
/// verify neither pure Ed25519 over signed attributes (RFC 8419) nor RSASSA-PSS (it assumes
/// PKCS#1 v1.5 padding). Those tokens are checked with `stampd verify` and pyHanko instead.
fn openssl_can_verify(key_type: &str, rsa_padding: Option<&str>) -> bool {
    key_type != "ed25519" && rsa_padding != Some("pss")
}

fn check_key_type(key_type: &str, rsa_padding: Option<&str>) {
    let tmp = common::tempdir();
    let data_dir = tmp.path().join("data");
    let (ok, out) = run(Command::new(BIN)
        .args(["init", "--key-type", key_type, "--data-dir"])
        .arg(&data_dir));
    assert!(ok, "init: {out}");
    let config =
        rsa_padding.map(|p| format!("[signer.main]\nkind = \"file\"\nrsa_padding = \"{p}\"\n"));
    let server = Server::start(&data_dir, config.as_deref());
    let data = tmp.path().join("data.txt");
    std::fs::write(&data, format!("stampd interop {key_type}\n")).unwrap();
    let python = python_verifier();

    for hash in ["sha256", "sha384", "sha512", "sha3-256", "sha3-512"] {
        for (nonce, cert) in [(true, true), (false, false), (true, false), (false, true)] {
            let label = format!("{key_type}/{rsa_padding:?} {hash} nonce={nonce} cert={cert}");
            let q = openssl_query(tmp.path(), &data, hash, nonce, cert);
            let r = q.with_extension("tsr");
            post_file(&server, &q, &r);

            let mut verify = Command::new("openssl");
            verify
                .args(["ts", "-verify", "-in"])
                .arg(&r)
                .arg("-queryfile")
                .arg(&q);
            verify.arg("-CAfile").arg(server.ca());
            if !cert {
                // No certificates in the token: the TSA certificate comes from outside.
                verify.arg("-untrusted").arg(server.tsa_cert());
            }
            let (ok, out) = run(&mut verify);
            if openssl_can_verify(key_type, rsa_padding) {
                assert!(ok && out.contains("Verification: OK"), "{label}: {out}");
            }

            let mut ours = Command::new(BIN);
            ours.arg("verify")
                .arg(&r)
                .arg("--data")
                .arg(&data)
                .arg("--ca")
                .arg(server.ca());
            if !cert {
                ours.arg("--untrusted").arg(server.tsa_cert());
            }
            let (ok, out) = run(&mut ours);
            assert!(
                ok && out.contains("Verification: OK"),
                "{label}: stampd verify: {out}"
            );

            // The Python libraries know SHA-2 imprints only.
            if let (Some((py, script)), false) = (&python, hash.contains('3')) {
                let mut cmd = Command::new(py);
                cmd.arg(script)
                    .arg("--tsr")
                    .arg(&r)
                    .arg("--data")
                    .arg(&data)
                    .arg("--ca")
                    .arg(server.ca());
                if !cert {
                    cmd.arg("--tsa-cert").arg(server.tsa_cert());
                }
                let which = if openssl_can_verify(key_type, rsa_padding) {
                    "all"
                } else {
                    "pyhanko"
                };
                let (ok, out) = run(cmd.args(["--verifier", which]));
                assert!(ok, "{label}: independent verifier ({which}): {out}");
            }
        }
    }

    // The verifiers are not fooled: a different file does not verify.
    let q = openssl_query(tmp.path(), &data, "sha256", true, true);
    let r = q.with_extension("tsr");
    post_file(&server, &q, &r);
    let other = tmp.path().join("other.txt");
    std::fs::write(&other, "something else\n").unwrap();
    let (ok, _) = run(Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(&r)
        .arg("-data")
        .arg(&other)
        .arg("-CAfile")
        .arg(server.ca()));
    assert!(
        !ok || !openssl_can_verify(key_type, rsa_padding),
        "{key_type}: openssl accepted a token for other data"
    );
    if let Some((py, script)) = &python {
        let (ok, _) = run(Command::new(py)
            .arg(script)
            .arg("--tsr")
            .arg(&r)
            .arg("--data")
            .arg(&other)
            .arg("--ca")
            .arg(server.ca()));
        assert!(
            !ok,
            "{key_type}: the independent verifier accepted a token for other data"
        );
    }
    let (ok, _) = run(Command::new(BIN)
        .arg("verify")
        .arg(&r)
        .arg("--data")
        .arg(&other)
        .arg("--ca")
        .arg(server.ca()));
    assert!(
        !ok,
        "{key_type}: stampd verify accepted a token for other data"
    );
}

#[test]
fn p256_tokens_verify_with_openssl() {
    check_key_type("p256", None);
}

#[test]
fn p384_tokens_verify_with_openssl() {
    check_key_type("p384", None);
}

#[test]
fn ed25519_tokens_verify_with_openssl() {
    check_key_type("ed25519", None);
}

#[test]
fn rsa2048_pkcs1_tokens_verify_with_openssl() {
    check_key_type("rsa2048", None);
}

#[test]
fn rsa3072_pkcs1_tokens_verify_with_openssl() {
    check_key_type("rsa3072", None);
}

#[test]
fn rsa2048_pss_tokens_verify_with_pyhanko_and_stampd() {
    check_key_type("rsa2048", Some("pss"));
}

#[test]
fn stampd_request_and_verify_round_trip() {
    let tmp = common::tempdir();
    let server = Server::start(&tmp.path().join("data"), None);
    let data = tmp.path().join("doc.pdf");
    std::fs::write(&data, vec![42u8; 100_000]).unwrap();
    let out = tmp.path().join("doc.tsr");
    for hash in ["sha256", "sha512", "sha3-384"] {
        let (ok, text) = run(Command::new(BIN)
            .args(["request"])
            .arg(&data)
            .args([
                "--url",
                &server.url(),
                "--hash",
                hash,
                "--cert",
                "--json",
                "-o",
            ])
            .arg(&out));
        assert!(ok, "request: {text}");
        let summary: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(summary["status"], "granted");
        let (ok, text) = run(Command::new(BIN)
            .arg("verify")
            .arg(&out)
            .arg("--data")
            .arg(&data)
            .arg("--ca")
            .arg(server.ca())
            .arg("--json"));
        assert!(ok, "verify: {text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["serial"], summary["serial"]);
        assert_eq!(v["policy"], "2.999.1.1");
        // openssl agrees.
        let (ok, text) = run(Command::new("openssl")
            .args(["ts", "-verify", "-in"])
            .arg(&out)
            .arg("-data")
            .arg(&data)
            .arg("-CAfile")
            .arg(server.ca()));
        assert!(ok, "openssl: {text}");
    }
    // An unknown policy is rejected, and the CLI says so with exit code 1.
    let (ok, text) = run(Command::new(BIN)
        .args(["request"])
        .arg(&data)
        .args(["--url", &server.url(), "--policy", "1.2.3.4", "-o"])
        .arg(&out));
    assert!(!ok && text.contains("unacceptedPolicy"), "{text}");
    // SHA-1 is off by default: badAlg.
    let (ok, text) = run(Command::new(BIN)
        .args(["request"])
        .arg(&data)
        .args(["--url", &server.url(), "--hash", "sha1", "-o"])
        .arg(&out));
    assert!(!ok && text.contains("badAlg"), "{text}");
}
