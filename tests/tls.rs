//! HTTPS listeners against real clients: `openssl ts` requests sent by `curl --cacert`,
//! `openssl s_client` for the protocol, ALPN and chain, and plain HTTP to an HTTPS port.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{run, Server, BIN};

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
    let (ca, chain, key) = common::tls::server(&dir.path().join("tls"), 0o600);
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
    let (ca, chain, key) = common::tls::server(&dir.path().join("tls"), 0o400);
    let server = Server::start(&dir.path().join("d"), Some(&tls_config(&chain, &key)));
    assert_closed_to_plain_http(server.addr, "/health");
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
    let (_, chain, key) = common::tls::server(&dir.path().join("tls"), 0o644);
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

/// `curl` trusting `ca`, presenting `cert` (certificate, key) when given.
fn curl(ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> Command {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--cacert"]).arg(ca);
    if let Some((c, k)) = cert {
        curl.arg("--cert").arg(c).arg("--key").arg(k);
    }
    curl
}

/// A plain-HTTP `GET path` to the HTTPS port `addr` gets no plain-text answer.
fn assert_closed_to_plain_http(addr: std::net::SocketAddr, path: &str) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "answered in plain text: {got:?}"
    );
}

/// The token's policy OID, as `openssl ts -reply -text` prints it.
fn policy_of(reply: &Path) -> String {
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-reply", "-text", "-in"])
        .arg(reply));
    assert!(ok, "{out}");
    out.lines()
        .find_map(|l| l.strip_prefix("Policy OID: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn client_certificates_are_required_matched_to_policies_and_audited() {
    let dir = common::tempdir();
    let pki = dir.path().join("tls");
    let (ca, chain, key) = common::tls::server(&pki, 0o600);
    let clients = common::tls::ca(&pki, "client CA");
    let acme = common::tls::client(&pki, &clients, "acme", "/O=Acme/CN=build-7");
    let other = common::tls::client(&pki, &clients, "other", "/O=Else/CN=someone");
    let rogue_ca = common::tls::ca(&pki, "rogue CA");
    let rogue = common::tls::client(&pki, &rogue_ca, "rogue", "/O=Acme/CN=build-7");
    let config = format!(
        "[[service]]\nname = \"default\"\npath = \"/tsa\"\npolicies = [\"acme\", \"default\"]\n\
         tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}\n\
         [policy.acme]\noid = \"2.999.1.7\"\nmatch = {{ client_subject_regex = \",O=Acme$\" }}\n",
        chain.display(),
        key.display(),
        clients.0.display()
    );
    let data = dir.path().join("d");
    let server = Server::start(&data, Some(&config));
    let p = |n: &str| dir.path().join(n);
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-query", "-sha256", "-cert", "-digest"])
        .arg("a".repeat(64))
        .arg("-out")
        .arg(p("q.tsq")));
    assert!(ok, "{out}");
    let post = |cert: Option<&(PathBuf, PathBuf)>, out: &str| {
        run(curl(&ca, cert)
            .args(["-H", "Content-Type: application/timestamp-query"])
            .arg("--data-binary")
            .arg(format!("@{}", p("q.tsq").display()))
            .arg(format!("https://{}/tsa", server.addr))
            .arg("-o")
            .arg(p(out)))
    };
    // Refused at the handshake: no certificate, or one from a CA the service does not trust.
    for (cert, what) in [(None, "no certificate"), (Some(&rogue), "an untrusted CA")] {
        let (ok, out) = post(cert, "refused.tsr");
        assert!(!ok, "a client with {what} was served: {out}");
    }
    // Each client's subject picks its policy.
    let (ok, out) = post(Some(&acme), "acme.tsr");
    assert!(ok, "{out}");
    assert_eq!(policy_of(&p("acme.tsr")), "2.999.1.7");
    let (ok, out) = post(Some(&other), "other.tsr");
    assert!(ok, "{out}");
    assert_eq!(policy_of(&p("other.tsr")), "2.999.1.1");
    for reply in ["acme.tsr", "other.tsr"] {
        let (ok, out) = run(Command::new("openssl")
            .args(["ts", "-verify", "-in"])
            .arg(p(reply))
            .arg("-queryfile")
            .arg(p("q.tsq"))
            .arg("-CAfile")
            .arg(data.join("pki/ca.pem")));
        assert!(ok && out.contains("Verification: OK"), "{out}");
    }
    // The audit records name the client certificate (RFC 4514 subjects); the refused
    // handshakes never reached a service, so they have none.
    drop(server);
    let records = common::export(&data);
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["policy"].as_str().unwrap(),
                r["client_subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("acme", "CN=build-7,O=Acme"),
            ("default", "CN=someone,O=Else")
        ]
    );
}

#[test]
fn the_admin_listener_over_tls_asks_for_a_client_certificate() {
    let dir = common::tempdir();
    let pki = dir.path().join("tls");
    let (ca, chain, key) = common::tls::server(&pki, 0o600);
    let operators = common::tls::ca(&pki, "operators CA");
    let operator = common::tls::client(&pki, &operators, "operator", "/CN=ops-1");
    let config = format!(
        "[admin]\ntls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}\n",
        chain.display(),
        key.display(),
        operators.0.display()
    );
    let server = Server::start(&dir.path().join("d"), Some(&config));
    let admin = server.admin.expect("the admin listener");
    let get = |cert: Option<&(PathBuf, PathBuf)>| {
        run(curl(&ca, cert).arg(format!("https://{admin}/metrics")))
    };
    let (ok, out) = get(None);
    assert!(!ok, "metrics without a client certificate: {out}");
    let (ok, out) = get(Some(&operator));
    assert!(ok && out.contains("stampd_"), "{out}");
    // Plain HTTP to it is closed, as on any HTTPS port.
    assert_closed_to_plain_http(admin, "/metrics");
}
