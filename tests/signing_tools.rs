//! The signing tools people use, against a real `stampd serve` on loopback: osslsigncode
//! with legacy Authenticode (`-t`) and RFC 3161 (`-ts`) timestamps, jarsigner, and pyHanko
//! signing a PDF with a PAdES signature timestamp; each also against a policy that takes
//! SHA-384/512 only, where the tool can ask for it. Then the compatibility rules these
//! tools impose, each checked so a regression fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::signing::{code_signing_cert, osslsigncode_sign, osslsigncode_verify, script};
use common::{run, Server};
use stampd::protocol::{authenticode, request, HashAlg};

/// The embedded default's two services (`/tsa`, `/authenticode`), and `/strong`: an RFC
/// 3161 service whose only policy takes SHA-384 and SHA-512 imprints.
const CONFIG: &str = r#"
[[service]]
name = "default"

[[service]]
name = "authenticode"
path = "/authenticode"
protocol = "authenticode"

[[service]]
name = "strong"
path = "/strong"
policies = ["strong"]

[policy.strong]
oid = "2.999.1.3"
match = { requested_policy = ["absent", "2.999.1.3"] }
hash_algorithms = ["sha384", "sha512"]
"#;

fn start() -> (tempfile::TempDir, Server) {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    let server = Server::start(&data, Some(CONFIG));
    (tmp, server)
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

#[test]
fn osslsigncode_authenticode_and_rfc3161_timestamps_verify() {
    let (tmp, server) = start();
    let dir = tmp.path();
    let (cert, key) = code_signing_cert(dir);
    let file = script(dir, "tool.ps1");
    let signer = (cert.as_path(), key.as_path());
    // Legacy Authenticode: the countersignature carries the signing time.
    let signed = osslsigncode_sign(
        dir,
        &file,
        signer,
        "-t",
        &url(&server, "/authenticode"),
        "sha256",
    )
    .unwrap();
    let out = osslsigncode_verify(&signed, &cert, &server.ca());
    assert!(out.contains("CN=stampd development TSA"), "{out}");
    // RFC 3161, SHA-256 and (to the strong policy) SHA-384 and SHA-512 imprints.
    for (path, hash) in [
        ("/tsa", "sha256"),
        ("/strong", "sha384"),
        ("/strong", "sha512"),
    ] {
        let signed = osslsigncode_sign(dir, &file, signer, "-ts", &url(&server, path), hash)
            .unwrap_or_else(|e| panic!("{path} {hash}: {e}"));
        let out = osslsigncode_verify(&signed, &cert, &server.ca());
        assert!(out.contains("Timestamp time:"), "{out}");
    }
    // A SHA-256 imprint is not what the strong policy takes: the tool reports a failure.
    assert!(osslsigncode_sign(
        dir,
        &file,
        signer,
        "-ts",
        &url(&server, "/strong"),
        "sha256"
    )
    .is_err());
    // The same countersignatures reached the audit trail, each kind its own.
    let export = common::export_all(&server.data_dir);
    let kinds = |k: &str| export.iter().filter(|r| r["kind"] == k).count();
    assert_eq!(kinds("authenticode"), 1, "{export:?}");
    let legacy = export.iter().find(|r| r["kind"] == "authenticode").unwrap();
    assert_eq!(legacy["status"], "granted");
    assert_eq!(legacy["service"], "authenticode");
    assert!(legacy["serial"].is_string() && legacy["message_imprint"].is_string());
}

#[test]
fn jarsigner_timestamps_verify_strict() {
    let (tmp, server) = start();
    let dir = tmp.path();
    std::fs::write(dir.join("hello.txt"), "stamped by stampd\n").unwrap();
    let jar = dir.join("app.jar");
    let (ok, out) = run(Command::new("jar")
        .arg("cf")
        .arg(&jar)
        .arg("-C")
        .arg(dir)
        .arg("hello.txt"));
    assert!(ok, "{out}");
    let keystore = dir.join("signer.p12");
    let keytool = |args: &[&str]| {
        let (ok, out) = run(Command::new("keytool").args(args));
        assert!(ok, "keytool {args:?}: {out}");
    };
    let ks = keystore.to_str().unwrap();
    keytool(&[
        "-genkeypair",
        "-alias",
        "signer",
        "-keyalg",
        "EC",
        "-groupname",
        "secp256r1",
        "-dname",
        "CN=stampd test jar signer",
        "-validity",
        "30",
        "-keystore",
        ks,
        "-storetype",
        "PKCS12",
        "-storepass",
        "changeit",
        "-keypass",
        "changeit",
    ]);
    // Trust: the signer's own certificate and stampd's CA.
    let signer_pem = dir.join("signer.pem");
    keytool(&[
        "-exportcert",
        "-alias",
        "signer",
        "-keystore",
        ks,
        "-storepass",
        "changeit",
        "-rfc",
        "-file",
        signer_pem.to_str().unwrap(),
    ]);
    let trust = dir.join("trust.p12");
    let ts = trust.to_str().unwrap();
    for (alias, file) in [
        ("signer", signer_pem.as_path()),
        ("stampd", server.ca().as_path()),
    ] {
        keytool(&[
            "-importcert",
            "-noprompt",
            "-alias",
            alias,
            "-file",
            file.to_str().unwrap(),
            "-keystore",
            ts,
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
        ]);
    }
    for (path, digest) in [
        ("/tsa", "SHA-256"),
        ("/strong", "SHA-384"),
        ("/strong", "SHA-512"),
    ] {
        let signed = dir.join(format!("app-{}.jar", digest.replace('-', "")));
        let (ok, out) = run(Command::new("jarsigner")
            .args(["-keystore", ks, "-storepass", "changeit", "-tsa"])
            .arg(url(&server, path))
            .args(["-tsadigestalg", digest, "-signedjar"])
            .arg(&signed)
            .arg(&jar)
            .arg("signer"));
        assert!(ok, "jarsigner {path} {digest}: {out}");
        let (ok, out) = run(Command::new("jarsigner")
            .args(["-verify", "-strict", "-verbose", "-certs", "-keystore", ts])
            .args(["-storepass", "changeit"])
            .arg(&signed));
        assert!(ok && out.contains("jar verified."), "{out}");
        assert!(
            out.contains("Timestamped by \"O=stampd, CN=stampd development TSA\""),
            "{out}"
        );
        assert!(
            out.contains(&format!("Timestamp digest algorithm: {digest}")),
            "{out}"
        );
    }
}

#[test]
fn pyhanko_pades_signature_timestamp_is_valid_and_trusted() {
    let Ok(py) = std::env::var("STAMPD_INTEROP_PYTHON") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run pyHanko: STAMPD_INTEROP_PYTHON is not set (tests/run.sh)"
        );
        return;
    };
    let (tmp, server) = start();
    for (path, digest) in [("/tsa", "sha256"), ("/strong", "sha512")] {
        let work = tmp.path().join(digest);
        std::fs::create_dir_all(&work).unwrap();
        let (ok, out) = run(Command::new(&py)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/pades.py"
            ))
            .arg(url(&server, path))
            .arg(server.ca())
            .arg(&work)
            .arg(digest));
        assert!(ok, "pyHanko {digest}: {out}");
        let summary: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(summary["timestamp"]["trusted"], true, "{summary}");
    }
    // The strong policy took pyHanko's SHA-512 imprint (nothing else would pass it).
    let export = common::export(&server.data_dir);
    assert!(
        export.iter().any(|r| r["service"] == "strong"
            && r["status"] == "granted"
            && r["hash_algorithm"] == "sha512"),
        "{export:?}"
    );
}

/// POSTs `body` to `path` with `content_type`: the response.
fn post(server: &Server, path: &str, content_type: &str, body: &[u8]) -> common::Response {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    common::exchange(server, &raw).expect("an answer")
}

#[test]
fn authenticode_answers_base64_and_refuses_bad_input_with_a_reason() {
    let (_tmp, server) = start();
    let der = authenticode::encode_request(b"a signature to countersign");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&der)
    };
    // Line breaks and one trailing NUL are tolerated.
    let (a, b) = b64.split_at(20);
    let body = format!("{a}\r\n{b}\r\n\0");
    let r = post(
        &server,
        "/authenticode",
        "application/octet-stream",
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let pkcs7 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&r.body)
            .unwrap()
    };
    // openssl reads it as PKCS#7 SignedData with the chain.
    let file = server.data_dir.with_extension("p7");
    std::fs::write(&file, &pkcs7).unwrap();
    let (ok, out) = run(Command::new("openssl")
        .args(["pkcs7", "-inform", "DER", "-print_certs", "-noout", "-in"])
        .arg(&file));
    assert!(
        ok && out.contains("stampd development TSA") && out.contains("development CA"),
        "{out}"
    );
    let (ok, out) = run(Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(&file));
    assert!(ok, "{out}");
    assert!(
        out.contains("signingTime") && out.contains("UTCTIME"),
        "{out}"
    );
    // Mistakes get a 400 with a one-line reason, never a 5xx.
    let q = request::encode(HashAlg::Sha256, &[1; 32], None, None, true);
    let r = post(&server, "/authenticode", "application/timestamp-query", &q);
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body).contains("RFC 3161"),
        "{:?}",
        r.body
    );
    for bad in [&b"%%% not base64"[..], b"AAAA", b""] {
        let r = post(&server, "/authenticode", "application/octet-stream", bad);
        assert_eq!(r.status, 400, "{bad:?}");
    }
    // Base64 sent to the RFC 3161 path: told where it belongs.
    let r = post(&server, "/tsa", "application/octet-stream", b64.as_bytes());
    assert_eq!(r.status, 415);
    assert!(
        String::from_utf8_lossy(&r.body).contains("Authenticode"),
        "{:?}",
        r.body
    );
}

fn openssl_text(dir: &Path, der: &[u8], reply: bool) -> String {
    let f = dir.join("r.tsr");
    std::fs::write(&f, der).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["ts", "-reply", "-text", "-in"]).arg(&f);
    if !reply {
        cmd.arg("-token_out");
    }
    let (ok, out) = run(&mut cmd);
    assert!(ok, "{out}");
    out
}

#[test]
fn compatibility_rules_the_signing_tools_rely_on() {
    let (tmp, server) = start();
    for (path, hash) in [("/tsa", HashAlg::Sha256), ("/strong", HashAlg::Sha384)] {
        for cert_req in [true, false] {
            let q = request::encode(hash, &hash.digest(b"x"), None, Some(&[9]), cert_req);
            let r = post(&server, path, "application/timestamp-query", &q);
            // HTTP 200 only, and exactly this media type, without parameters.
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("content-type"),
                Some("application/timestamp-reply")
            );
            let resp = stampd::protocol::response::decode(&r.body).unwrap();
            // granted (0), never grantedWithMods.
            assert_eq!(resp.status, stampd::protocol::PkiStatus::Granted);
            let text = openssl_text(tmp.path(), &r.body, true);
            assert!(text.contains("Status: Granted."), "{text}");
            // certReq set: the certificates are in the token; not set: none.
            let token = resp.token.unwrap();
            assert_eq!(
                !token.certificates.is_empty(),
                cert_req,
                "{path} certReq {cert_req}"
            );
        }
    }
    // A rejection is a 200 too (the tools read the status, not the HTTP code).
    let q = request::encode(HashAlg::Sha256, &[1; 32], None, None, true);
    let r = post(&server, "/strong", "application/timestamp-query", &q);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/timestamp-reply")
    );
    // The TSA certificate carries the critical timeStamping EKU, alone.
    let (ok, out) = run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "extendedKeyUsage", "-in"])
        .arg(server.tsa_cert()));
    assert!(ok, "{out}");
    assert!(
        out.contains("critical") && out.contains("Time Stamping"),
        "{out}"
    );
    assert!(
        !out.contains("Code Signing") && !out.contains("Server Auth"),
        "{out}"
    );
}
