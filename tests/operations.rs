//! Operating a running TSA: certificate expiry warnings and metrics, against a real
//! `stampd serve` with certificates made by real `openssl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{exchange, post_bytes, run, Server, BIN};
use stampd::protocol::{request, response, HashAlg, PkiStatus};

/// `stampd init` in `data` (once), then a TSA certificate `CN=NAME` for the same key from
/// the development CA, valid from an hour ago for `days` days, with its chain:
/// `data/NAME-chain.pem`.
fn short_lived_chain(data: &Path, name: &str, days: i64) -> PathBuf {
    if !data.join("pki/ca.pem").exists() {
        let (ok, out) = run(Command::new(BIN).args(["init", "--data-dir"]).arg(data));
        assert!(ok, "{out}");
    }
    let pki = data.join("pki");
    let csr = data.join(format!("{name}.csr"));
    let (ok, out) = run(Command::new("openssl")
        .args(["req", "-new", "-subj", &format!("/CN={name}"), "-key"])
        .arg(pki.join("tsa.key"))
        .arg("-out")
        .arg(&csr));
    assert!(ok, "{out}");
    let leaf = data.join(format!("{name}.pem"));
    common::ca::issue_tsa_certificate(
        &data.join("openssl-ca"),
        &pki.join("ca.pem"),
        &pki.join("ca.key"),
        &csr,
        &leaf,
        days,
    );
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

/// A token with certReq for a fixed digest: the whole reply (DER).
fn stamp(server: &Server) -> Vec<u8> {
    let body = request::encode(HashAlg::Sha256, &[3; 32], None, None, true);
    let r = exchange(server, &post_bytes(&server.path, &body, "")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        response::decode(&r.body).unwrap().status,
        PkiStatus::Granted
    );
    r.body
}

fn signed_by(reply: &[u8], name: &str) -> bool {
    reply.windows(name.len()).any(|w| w == name.as_bytes())
}

fn signer_config(chain: &Path, extra: &str) -> String {
    format!(
        "{extra}[signer.main]\nkind = \"file\"\nkey = \"pki/tsa.key\"\ncert = \"{}\"\n",
        chain.display()
    )
}

#[test]
fn a_reload_rotates_the_certificate_and_refuses_what_needs_a_restart() {
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let a = short_lived_chain(&data, "rotation-a", 365);
    let b = short_lived_chain(&data, "rotation-b", 365);
    let server = Server::start(&data, Some(&signer_config(&a, "")));
    // The harness keeps the configuration beside the data directory.
    let file = data.with_extension("toml");
    let before = stamp(&server);
    assert!(signed_by(&before, "rotation-a"));
    let reload = || {
        let out = Command::new(BIN)
            .args(["reload", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // A new certificate in the file, then `stampd reload`: new tokens carry it.
    std::fs::write(&file, signer_config(&b, "")).unwrap();
    let (code, out) = reload();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("configuration reloaded"), "{out}");
    let after = stamp(&server);
    assert!(signed_by(&after, "rotation-b") && !signed_by(&after, "rotation-a"));
    // The token issued before still verifies, with the certificate it carries.
    let old = dir.path().join("before.tsr");
    std::fs::write(&old, &before).unwrap();
    let (ok, out) = run(Command::new(BIN)
        .arg("verify")
        .arg(&old)
        .args(["--digest", &"03".repeat(32), "--ca"])
        .arg(data.join("pki/ca.pem")));
    assert!(ok, "{out}");
    // A restart-only key: refused, nothing changes.
    std::fs::write(&file, signer_config(&a, "[server]\nnode_id = 7\n")).unwrap();
    let (code, out) = reload();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("[server] changed, which needs a restart"),
        "{out}"
    );
    assert!(signed_by(&stamp(&server), "rotation-b"));
    // An invalid file: refused with the file and line, as check-config says it.
    std::fs::write(&file, "[signer.main]\nkind = \"file\"\nbogus = 1\n").unwrap();
    let (code, out) = reload();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("line 3") && out.contains("unknown field `bogus`"),
        "{out}"
    );
    let bad_policy = "[policy.default]\noid = \"2.999.1.1\"\naccuracy = \"soon\"\n";
    std::fs::write(&file, signer_config(&b, bad_policy)).unwrap();
    let (code, out) = reload();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{}:3", file.display())), "{out}");
    assert!(signed_by(&stamp(&server), "rotation-b"));
    // SIGHUP does the same as the command.
    std::fs::write(&file, signer_config(&a, "")).unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !signed_by(&stamp(&server), "rotation-a") {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(server);
    // Every attempt is in the audit trail, with who asked and the file's hash.
    let reloads: Vec<serde_json::Value> = common::export_all(&data)
        .into_iter()
        .filter(|e| e["kind"] == "reload")
        .collect();
    let names: Vec<&str> = reloads
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "reloaded",
            "reload-refused",
            "reload-refused",
            "reload-refused",
            "reloaded"
        ]
    );
    assert!(reloads[0]["detail"]["by"]
        .as_str()
        .unwrap()
        .starts_with("stampd reload (pid"));
    assert_eq!(reloads[4]["detail"]["by"], "SIGHUP");
    assert_eq!(
        reloads[0]["detail"]["config_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let (ok, out) = run(Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&data));
    assert!(ok, "{out}");
}

#[test]
fn reloads_under_load_drop_no_connection_and_refuse_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let a = short_lived_chain(&data, "load-a", 365);
    let b = short_lived_chain(&data, "load-b", 365);
    let server = Server::start(&data, Some(&signer_config(&a, "")));
    let file = data.with_extension("toml");
    let addr = Arc::new(Mutex::new(server.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..3)
        .map(|seed| {
            let (addr, stop, path) = (addr.clone(), stop.clone(), server.path.clone());
            std::thread::spawn(move || common::load(&addr, &path, &stop, seed))
        })
        .collect();
    for i in 0..6 {
        let chain = if i % 2 == 0 { &b } else { &a };
        std::fs::write(&file, signer_config(chain, "")).unwrap();
        let (ok, out) = run(Command::new(BIN).args(["reload", "--data-dir"]).arg(&data));
        assert!(ok, "{out}");
    }
    stop.store(true, Ordering::Relaxed);
    let (mut granted, mut other) = (0, 0);
    for l in loaders {
        let seen = l.join().unwrap();
        granted += seen.granted.len();
        other += seen.other;
    }
    assert!(granted > 50, "too little load: {granted}");
    assert_eq!(other, 0, "a request failed during a reload");
    drop(server);
    let reloaded = common::export_all(&data)
        .iter()
        .filter(|e| e["event"] == "reloaded")
        .count();
    assert_eq!(reloaded, 6);
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_on_its_notify_socket() {
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut cmd = Command::new(BIN);
    cmd.env("NOTIFY_SOCKET", &path);
    let server = Server::start_command(cmd, &data, Some(""));
    assert_eq!(next(), "READY=1\nSTATUS=serving");
    server.signal("HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(), "READY=1");
    server.signal("TERM");
    assert_eq!(next(), "STOPPING=1");
    assert!(server
        .wait_exit(std::time::Duration::from_secs(30))
        .success());
}

#[test]
fn logs_can_be_json_lines() {
    let dir = common::tempdir();
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json"]);
    let server = Server::start_command(cmd, &dir.path().join("d"), None);
    // The start-up warning about sync = "none", as one JSON object.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.log_count("development only") == 0 {
        assert!(std::time::Instant::now() < deadline, "no clock warning");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let lines = server.log_lines();
    let warning = lines
        .iter()
        .find(|l| l.contains("development only"))
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(warning).unwrap();
    assert_eq!(j["level"], "WARN");
    assert!(j["fields"]["message"]
        .as_str()
        .unwrap()
        .starts_with("clock.sync = \"none\""));
    assert!(j["timestamp"].is_string() && j["target"].is_string());
    for l in &lines {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "{l}");
    }
}

#[test]
fn the_systemd_unit_verifies() {
    // systemd-analyze (tests/run.sh installs systemd when it is missing) checks the unit's
    // syntax, its directives, and that ExecStart exists.
    let dir = common::tempdir();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/stampd.service"
    ))
    .unwrap()
    .replace("/usr/bin/stampd", BIN);
    let file = dir.path().join("stampd.service");
    std::fs::write(&file, unit).unwrap();
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(&file));
    assert!(ok && out.trim().is_empty(), "{out}");
}
