//! The admin interface's JSON API and the public pages without a browser: authentication
//! and roles, the actions and their audit records, the audit search and export, and the
//! public pages' forms as a browser without JavaScript posts them. Driven with curl (a real
//! HTTP client) and openssl against a real `stampd serve`.

mod common;

use std::process::Command;

use common::{run, Server};
use stampd::protocol::hex::hex;
use stampd::protocol::request::sha256;

const CONFIG: &str = r#"
[[service]]
name = "default"
preprocess = ["transaction-monitor", "clock", "keep"]

[preprocess.keep]
kind = "audit"
request = true
response = true
"#;

struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// curl with `args`: the status, the head and the body.
fn curl(args: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args(["-s", "-S", "-D", "-", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let headers = String::from_utf8_lossy(&out.stdout[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Answer {
        status,
        headers,
        body: out.stdout[split + 4..].to_vec(),
    }
}

fn admin_url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.admin.unwrap())
}

fn bearer(server: &Server) -> String {
    let token = std::fs::read_to_string(server.data_dir.join("admin-token")).unwrap();
    format!("Authorization: Bearer {}", token.trim())
}

fn start(extra: &str) -> (tempfile::TempDir, Server) {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data, Some(&format!("{CONFIG}{extra}")));
    (tmp, server)
}

/// A token request for `data` with openssl, POSTed with curl: (status, reply file).
fn stamp(server: &Server, dir: &std::path::Path, data: &[u8]) -> (u16, std::path::PathBuf) {
    let file = dir.join("data.bin");
    std::fs::write(&file, data).unwrap();
    let tsq = dir.join("req.tsq");
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-query", "-sha256", "-cert", "-data"])
        .arg(&file)
        .arg("-out")
        .arg(&tsq));
    assert!(ok, "{out}");
    let tsr = dir.join("resp.tsr");
    let a = curl(&[
        "-H",
        "Content-Type: application/timestamp-query",
        "--data-binary",
        &format!("@{}", tsq.display()),
        "-o",
        tsr.to_str().unwrap(),
        &server.url(),
    ]);
    (a.status, tsr)
}

#[test]
fn the_api_needs_a_token_and_actions_are_audited_by_name() {
    let (tmp, server) = start("");
    let auth = bearer(&server);
    // No credentials, a wrong token: 401 (probes stay open).
    assert_eq!(curl(&[&admin_url(&server, "/api/dashboard")]).status, 401);
    let wrong = curl(&[
        "-H",
        "Authorization: Bearer not-the-token-0123456789",
        &admin_url(&server, "/api/dashboard"),
    ]);
    assert_eq!(wrong.status, 401);
    assert_eq!(curl(&[&admin_url(&server, "/health")]).status, 200);
    assert_eq!(curl(&[&admin_url(&server, "/metrics")]).status, 200);
    let d = curl(&["-H", &auth, &admin_url(&server, "/api/dashboard")]);
    assert_eq!(d.status, 200);
    assert_eq!(d.header("x-frame-options").as_deref(), Some("DENY"));
    let j = d.json();
    assert_eq!(j["services"][0]["name"], "default");
    assert_eq!(j["services"][0]["enabled"], true);
    assert_eq!(j["signers"][0]["kind"], "software");
    assert_eq!(j["audit"]["store"], "journal");
    assert!(j["audit"]["shards"][0]["head_hash"].as_str().unwrap().len() == 64);

    // Disable: 503 for requests (and the refusal is counted); enable: granted again.
    let post = |path: &str| curl(&["-X", "POST", "-H", &auth, &admin_url(&server, path)]);
    assert_eq!(
        post("/api/services/default/disable").json()["enabled"],
        false
    );
    assert_eq!(stamp(&server, tmp.path(), b"off").0, 503);
    assert!(server
        .metrics()
        .contains("stampd_service_enabled{service=\"default\"} 0"));
    assert_eq!(post("/api/services/default/enable").json()["enabled"], true);
    assert_eq!(stamp(&server, tmp.path(), b"on").0, 200);
    assert_eq!(post("/api/services/nope/enable").status, 404);

    // Self-test and journal verification.
    let t = post("/api/signers/main/selftest");
    assert_eq!(t.status, 200, "{}", t.text());
    assert_eq!(t.json()["ok"], true);
    let v = post("/api/audit/verify").json();
    assert_eq!(v["intact"], true, "{v}");
    assert!(v["records"].as_u64().unwrap() >= 2);
    // One result per shard, each with its own chain's head.
    let shards = v["shards"].as_array().unwrap();
    assert!(!shards.is_empty(), "{v}");
    assert!(
        shards
            .iter()
            .all(|s| s["shard"].is_u64() && s["intact"] == true && s["head_seq"].is_u64()),
        "{v}"
    );

    // The live figures count the requests.
    let live = curl(&["-H", &auth, &admin_url(&server, "/api/live")]).json();
    assert!(
        live["services"][0]["requests_total"].as_u64().unwrap() >= 2,
        "{live}"
    );

    // Every action is in the audit trail, naming the administrator.
    let events = curl(&["-H", &auth, &admin_url(&server, "/api/audit?kind=admin")]).json();
    let names: Vec<&str> = events["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    for n in [
        "service-disabled",
        "service-enabled",
        "selftest",
        "journal-verified",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(
        events["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["detail"]["by"] == "admin"),
        "{events}"
    );
}

#[test]
fn a_reload_from_the_api_shows_the_validation_errors() {
    let (_tmp, server) = start("");
    let auth = bearer(&server);
    let file = server.data_dir.with_extension("toml");
    std::fs::write(&file, format!("{CONFIG}\n[server]\ncores = 5000\n")).unwrap();
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        &admin_url(&server, "/api/reload"),
    ]);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("server.cores"), "{}", r.text());
    std::fs::write(
        &file,
        CONFIG.replace("[[service]]", "[[service]]\npublic_pages = false"),
    )
    .unwrap();
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        &admin_url(&server, "/api/reload"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    // The reload took: the public pages are off, a browser's GET is 405 again.
    let page = curl(&["-H", "Accept: text/html", &server.url()]);
    assert_eq!(page.status, 405);
    let reloads = curl(&["-H", &auth, &admin_url(&server, "/api/audit?kind=reload")]).json();
    assert_eq!(reloads["records"].as_array().unwrap().len(), 2, "{reloads}");
    assert!(reloads.to_string().contains("admin interface (admin)"));
}

#[test]
fn the_audit_search_finds_a_token_by_serial_and_imprint_and_exports_it() {
    let (tmp, server) = start("");
    let auth = bearer(&server);
    let (status, tsr) = stamp(&server, tmp.path(), b"find me\n");
    assert_eq!(status, 200);
    let digest = hex(&sha256(b"find me\n"));
    let by_imprint = curl(&[
        "-H",
        &auth,
        &admin_url(&server, &format!("/api/audit?imprint={digest}")),
    ])
    .json();
    let found = by_imprint["records"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{by_imprint}");
    let serial = found[0]["serial"].as_str().unwrap().to_string();
    // A record is addressed by its shard and its seq in that shard.
    let (shard, seq) = (
        found[0]["shard"].as_u64().unwrap(),
        found[0]["seq"].as_u64().unwrap(),
    );
    let by_serial = curl(&[
        "-H",
        &auth,
        &admin_url(
            &server,
            &format!("/api/audit?serial=0x{serial}&status=granted"),
        ),
    ])
    .json();
    assert_eq!(by_serial["records"][0]["seq"], seq);
    assert_eq!(by_serial["records"][0]["shard"], shard);
    let none = curl(&[
        "-H",
        &auth,
        &admin_url(
            &server,
            &format!("/api/audit?serial={serial}&fail_info=badAlg"),
        ),
    ])
    .json();
    assert!(none["records"].as_array().unwrap().is_empty());
    let bad = curl(&[
        "-H",
        &auth,
        &admin_url(&server, "/api/audit?from=yesterday"),
    ]);
    assert_eq!(bad.status, 400);
    let record = curl(&[
        "-H",
        &auth,
        &admin_url(&server, &format!("/api/audit/shards/{shard}/records/{seq}")),
    ])
    .json();
    assert_eq!(
        record["decoded_response"]["token"]["serial"], serial,
        "{record}"
    );
    let download = curl(&[
        "-H",
        &auth,
        &admin_url(
            &server,
            &format!("/audit/shards/{shard}/records/{seq}/token.tsr"),
        ),
    ]);
    assert_eq!(download.body, std::fs::read(&tsr).unwrap());
    let csv = curl(&[
        "-H",
        &auth,
        &admin_url(&server, "/audit/export?status=granted&format=csv"),
    ]);
    let text = csv.text();
    assert!(text.starts_with("shard,seq,serial,status"), "{text}");
    assert!(text.contains(&serial) && text.contains(&digest));
    let jsonl = curl(&["-H", &auth, &admin_url(&server, "/audit/export")]);
    assert!(jsonl
        .text()
        .lines()
        .any(|l| l.contains(&serial) && l.contains("\"kind\":\"request\"")));
}

#[test]
fn the_public_forms_work_without_javascript() {
    let (tmp, server) = start("");
    let data = tmp.path().join("file.txt");
    std::fs::write(&data, b"stamp me without js\n").unwrap();
    let digest = hex(&sha256(b"stamp me without js\n"));
    // The page: HTML with the security headers; a GET without HTML in Accept stays 405.
    let page = curl(&[
        "-H",
        "Accept: text/html,application/xhtml+xml",
        &server.url(),
    ]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("2.999.1.1"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(curl(&[&server.url()]).status, 405);
    let chain = curl(&[&format!("{}/chain.pem", server.url())]);
    assert!(chain.text().matches("BEGIN CERTIFICATE").count() >= 2);
    assert_eq!(
        curl(&[&format!("{}/assets/public.js", server.url())]).status,
        200
    );
    assert_eq!(
        curl(&[&format!("{}/assets/nope.js", server.url())]).status,
        404
    );
    // Stamp: the form answers with the .tsr, which openssl verifies against the file.
    let tsr = tmp.path().join("form.tsr");
    let a = curl(&[
        "--data",
        &format!("hash=sha256&digest={digest}"),
        "-o",
        tsr.to_str().unwrap(),
        &format!("{}/stamp", server.url()),
    ]);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/timestamp-reply")
    );
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(&tsr)
        .arg("-data")
        .arg(&data)
        .arg("-CAfile")
        .arg(server.ca()));
    assert!(ok && out.contains("Verification: OK"), "{out}");
    // It went through the audit filter like any request.
    let export = common::export(&server.data_dir);
    assert!(
        export
            .iter()
            .any(|r| r["message_imprint"] == digest.as_str() && r["status"] == "granted"),
        "{export:?}"
    );
    // A digest of the wrong length, an unknown algorithm, the wrong media type: 4xx.
    let short = curl(&[
        "--data",
        "hash=sha256&digest=abcd",
        &format!("{}/stamp", server.url()),
    ]);
    assert_eq!(short.status, 400);
    assert!(short.text().contains("64 hex digits"));
    let alg = curl(&[
        "--data",
        "hash=md5&digest=ab",
        &format!("{}/stamp", server.url()),
    ]);
    assert_eq!(alg.status, 400);
    let media = curl(&[
        "-H",
        "Content-Type: text/plain",
        "--data",
        "x",
        &format!("{}/stamp", server.url()),
    ]);
    assert_eq!(media.status, 415);
    // Verify: valid for the file's digest, invalid for another, each check listed.
    let b64 = {
        use std::io::Write;
        let der = std::fs::read(&tsr).unwrap();
        let mut c = Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&der).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let verify = |sha: &str| {
        curl(&[
            "-H",
            "Accept: application/json",
            "--data-urlencode",
            &format!("token={b64}"),
            "--data-urlencode",
            &format!("sha256={sha}"),
            &format!("{}/verify", server.url()),
        ])
        .json()
    };
    let good = verify(&digest);
    assert_eq!(good["valid"], true, "{good}");
    let checks: Vec<&str> = good["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for c in [
        "imprint",
        "signature",
        "ESS signing certificate",
        "EKU",
        "chain",
    ] {
        assert!(checks.contains(&c), "{c} in {checks:?}");
    }
    let other = verify(&"00".repeat(32));
    assert_eq!(other["valid"], false);
    assert!(other["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["check"] == "imprint" && c["passed"] == false));
    let garbage = curl(&["--data", "token=%%%", &format!("{}/verify", server.url())]);
    assert_eq!(garbage.status, 400);
}

#[test]
fn public_pages_off_keep_the_rfc3161_answers() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let off = Server::start(
        &data,
        Some(&CONFIG.replace("[[service]]", "[[service]]\npublic_pages = false")),
    );
    let page = curl(&["-H", "Accept: text/html", &off.url()]);
    assert_eq!(page.status, 405);
    assert_eq!(page.header("allow").as_deref(), Some("POST"));
    assert_eq!(curl(&[&format!("{}/chain.pem", off.url())]).status, 404);
    let form = curl(&[
        "--data",
        &format!("hash=sha256&digest={}", "00".repeat(32)),
        &format!("{}/stamp", off.url()),
    ]);
    assert_eq!(form.status, 404);
}
