//! HTTPS listeners against real clients: `openssl ts` requests sent by `curl --cacert`,
//! `openssl s_client` for the protocol, ALPN and chain, and plain HTTP to an HTTPS port.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{run, Server, BIN};

/// A CA and a server certificate for 127.0.0.1 signed by it, made by `openssl`, in `dir`:
/// (CA certificate, server chain, server key with mode `mode`).
fn server_pki(dir: &Path, mode: u32) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let ok = |cmd: &mut Command| {
        let (ok, out) = run(cmd);
        assert!(ok, "{out}");
    };
    std::fs::create_dir_all(dir).unwrap();
    ok(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=stampd test TLS CA",
            "-keyout",
        ])
        .arg(p("tls-ca.key"))
        .arg("-out")
        .arg(p("tls-ca.pem")));
    ok(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(p("san.cnf"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("tls-ca.pem"))
        .arg("-CAkey")
        .arg(p("tls-ca.key"))
        .arg("-extfile")
        .arg(p("san.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
    let chain = std::fs::read_to_string(p("server.pem")).unwrap()
        + &std::fs::read_to_string(p("tls-ca.pem")).unwrap();
    std::fs::write(p("server-chain.pem"), chain).unwrap();
    std::fs::set_permissions(
        p("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .unwrap();
    (p("tls-ca.pem"), p("server-chain.pem"), p("server.key"))
}

fn tls_config(chain: &Path, key: &Path) -> String {
    format!(
        "[[service]]\nname = \"default\"\npath = \"/tsa\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
        chain.display(),
        key.display()
    )
}

#[test]
fn tokens_over_https_verify_and_the_handshake_is_tls_1_3_with_http_1_1() {
    let dir = common::tempdir();
    let (ca, chain, key) = server_pki(&dir.path().join("tls"), 0o600);
    let data = dir.path().join("d");
    let server = Server::start(&data, Some(&tls_config(&chain, &key)));
    assert!(
        server.banner.starts_with("stampd: serving https://"),
        "{}",
        server.banner
    );
    let url = format!("https://{}/tsa", server.addr);
    // The conformance path: openssl ts builds the query, curl posts it over TLS.
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("data.txt"), "over TLS\n").unwrap();
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-query", "-sha256", "-cert", "-data"])
        .arg(p("data.txt"))
        .arg("-out")
        .arg(p("q.tsq")));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
        ])
        .arg(format!("@{}", p("q.tsq").display()))
        .arg(&url)
        .arg("-o")
        .arg(p("r.tsr")));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(p("r.tsr"))
        .arg("-queryfile")
        .arg(p("q.tsq"))
        .arg("-CAfile")
        .arg(data.join("pki/ca.pem")));
    assert!(ok && out.contains("Verification: OK"), "{out}");
    // The handshake: TLS 1.3 by default, ALPN http/1.1, the configured chain verifies.
    let s_client = |extra: &[&str]| {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &server.addr.to_string(),
                "-alpn",
                "http/1.1",
            ])
            .args(["-servername", "127.0.0.1", "-CAfile"])
            .arg(&ca)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = s_client(&[]);
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(
        out.contains("CN = stampd test TLS CA"),
        "the chain is sent: {out}"
    );
    assert!(s_client(&["-tls1_2"]).contains("TLSv1.2"));
}

#[test]
fn plain_http_to_an_https_port_is_closed_and_https_goes_on() {
    let dir = common::tempdir();
    let (ca, chain, key) = server_pki(&dir.path().join("tls"), 0o400);
    let server = Server::start(&dir.path().join("d"), Some(&tls_config(&chain, &key)));
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "answered in plain text: {got:?}"
    );
    // The listener still serves TLS clients.
    let (ok, out) = run(Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&ca)
        .arg(format!("https://{}/health", server.addr)));
    assert!(ok && out.contains("ok"), "{out}");
}

#[test]
fn a_key_readable_by_others_is_refused_at_start() {
    let dir = common::tempdir();
    let (_, chain, key) = server_pki(&dir.path().join("tls"), 0o644);
    let data = dir.path().join("d");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, tls_config(&chain, &key)).unwrap();
    let (ok, out) = run(Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--config",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data));
    assert!(!ok, "{out}");
    assert!(out.contains("readable by other users (mode 644)"), "{out}");
}
