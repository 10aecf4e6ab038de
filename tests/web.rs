//! The web interface in a real browser: headless Debian chromium, driven by selenium
//! (tests/web/browser.py, from the venv `tests/run.sh` sets up) through
//! /usr/bin/chromedriver, against a real `stampd serve`. Each test is one scenario of
//! browser.py on a server of its own; screenshots go to target/web-screenshots/.

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;

/// The embedded default, with a transaction monitor (the dashboard's live figures) and an
/// audit filter that keeps requests and responses (the audit browser's record pages and
/// `.tsr` downloads).
const CONFIG: &str = r#"
[[service]]
name = "default"
preprocess = ["transaction-monitor", "clock", "keep"]

[preprocess.keep]
kind = "audit"
request = true
response = true
"#;

/// Two administrators from token files: `root` (admin) and `alice` (auditor).
const USERS: &str = r#"
[[admin.user]]
name = "root"
role = "admin"
token_file = "root.token"

[[admin.user]]
name = "alice"
role = "auditor"
token_file = "alice.token"
"#;

fn python() -> Option<String> {
    let py = std::env::var("STAMPD_INTEROP_PYTHON").ok();
    if py.is_none() && std::env::var("CI").is_ok() {
        panic!("CI must run the browser tests: STAMPD_INTEROP_PYTHON is not set (tests/run.sh)");
    }
    py
}

/// Runs browser.py `scenario` against `server`; panics with its output when it fails.
fn scenario(server: &Server, scenario: &str, tokens: &[(&str, &Path)], work: &Path) {
    let Some(py) = python() else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: STAMPD_INTEROP_PYTHON is not set (run tests/run.sh)\n",
        );
        return;
    };
    let admin = server.admin.expect("the admin listener");
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/web-screenshots");
    let mut cmd = Command::new(py);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web/browser.py"))
        .arg(scenario)
        .arg("--admin")
        .arg(format!("http://{admin}"))
        .arg("--public")
        .arg(server.url())
        .arg("--ca")
        .arg(server.ca())
        .arg("--work")
        .arg(work)
        .arg("--shots")
        .arg(shots)
        .env("SE_OFFLINE", "true")
        .env("SE_AVOID_STATS", "true");
    for (flag, file) in tokens {
        cmd.arg(flag).arg(file);
    }
    let out = cmd.output().expect("run browser.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser scenario {scenario}:\n{text}");
}

/// A server on the web-test configuration, and the embedded default's admin token file.
fn start(extra: &str) -> (tempfile::TempDir, Server) {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data, Some(&format!("{CONFIG}{extra}")));
    (tmp, server)
}

fn run_default(name: &str) {
    let (tmp, server) = start("");
    let token = server.data_dir.join("admin-token");
    scenario(&server, name, &[("--token", &token)], tmp.path());
}

#[test]
fn browser_login_refuses_wrong_tokens_and_posts_without_csrf() {
    run_default("login");
}

#[test]
fn browser_dashboard_shows_the_server_and_its_live_figures_move() {
    run_default("dashboard");
}

#[test]
fn browser_disable_and_enable_a_service_both_audited() {
    run_default("disable-enable");
}

#[test]
fn browser_audit_browser_finds_a_token_and_downloads_a_verifiable_tsr() {
    run_default("audit-browser");
}

#[test]
fn browser_public_page_stamps_and_verifies_files_hashed_locally() {
    run_default("public");
}

#[test]
fn browser_an_auditor_reads_the_audit_pages_but_cannot_act() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let write = |name: &str, token: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = data.join(name);
        std::fs::write(&p, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    write("root.token", "root-token-0123456789abcdef");
    let alice = write("alice.token", "alice-token-0123456789abcdef");
    let server = Server::start(&data, Some(&format!("{CONFIG}{USERS}")));
    assert!(
        !data.join("admin-token").exists(),
        "with [[admin.user]]s no default token is created"
    );
    scenario(
        &server,
        "auditor",
        &[("--auditor-token", &alice)],
        tmp.path(),
    );
}
