//! Operating a running TSA: certificate expiry warnings and metrics, against a real
//! `stampd serve` with certificates made by real `openssl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, Server, BIN};

/// `stampd init` in `data`, then a TSA certificate for the same key from the development
/// CA, valid `days` days, with its chain: `data/NAME-chain.pem`.
fn short_lived_chain(data: &Path, name: &str, days: u32) -> PathBuf {
    let (ok, out) = run(Command::new(BIN).args(["init", "--data-dir"]).arg(data));
    assert!(ok, "{out}");
    let pki = data.join("pki");
    let ext = data.join("tsa-ext.cnf");
    std::fs::write(
        &ext,
        "extendedKeyUsage = critical, timeStamping\nkeyUsage = critical, digitalSignature\n",
    )
    .unwrap();
    let csr = data.join(format!("{name}.csr"));
    let (ok, out) = run(Command::new("openssl")
        .args(["req", "-new", "-subj", &format!("/CN={name}"), "-key"])
        .arg(pki.join("tsa.key"))
        .arg("-out")
        .arg(&csr));
    assert!(ok, "{out}");
    let leaf = data.join(format!("{name}.pem"));
    let (ok, out) = run(Command::new("openssl")
        .args(["x509", "-req", "-days", &days.to_string(), "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(pki.join("ca.pem"))
        .arg("-CAkey")
        .arg(pki.join("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&leaf));
    assert!(ok, "{out}");
    let chain = data.join(format!("{name}-chain.pem"));
    let text = std::fs::read_to_string(&leaf).unwrap()
        + &std::fs::read_to_string(pki.join("ca.pem")).unwrap();
    std::fs::write(&chain, text).unwrap();
    chain
}

#[test]
fn a_certificate_near_its_expiry_is_warned_about_and_its_end_is_a_metric() {
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let chain = short_lived_chain(&data, "short", 10);
    let config = format!(
        "[signer.main]\nkind = \"file\"\nkey = \"pki/tsa.key\"\ncert = \"{}\"\n",
        chain.display()
    );
    let server = Server::start(&data, Some(&config));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.log_count("the TSA certificate expires at") == 0 {
        assert!(std::time::Instant::now() < deadline, "no expiry warning");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.log_count("days); renew it and reload"), 1);
    let metrics = server.metrics();
    let not_after: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stampd_signer_cert_not_after_seconds{signer=\"main\"} "))
        .expect("the expiry metric")
        .parse()
        .unwrap();
    let now = time::OffsetDateTime::from(stampd::clock::wall_now()).unix_timestamp();
    assert!(
        (not_after - now - 10 * 86_400).abs() < 600,
        "{not_after} vs {now}"
    );
    drop(server);

    // With the warning window below the certificate's life left: no warning.
    let config = format!("[server]\ncert_expiry_warning_days = 5\n{config}");
    let server = Server::start(&data, Some(&config));
    assert!(server
        .metrics()
        .contains("stampd_signer_cert_not_after_seconds"));
    assert_eq!(server.log_count("the TSA certificate expires at"), 0);
}
