//! Several services and policies in one process: `config/multi-service.toml` as shipped,
//! tokens verified with `openssl ts -verify`, and the policy mapper's rules over HTTP.

mod common;

use std::path::Path;
use std::process::Command;

use common::{exchange, post_bytes, run, Server};
use stampd::protocol::oid::{self, Oid};
use stampd::protocol::{request, response, FailureInfo, HashAlg, PkiStatus};

const MULTI: &str = include_str!("../config/multi-service.toml");

/// Posts an openssl query to `path` and returns (reply file, decoded policy or failInfo).
fn ask(
    server: &Server,
    dir: &Path,
    path: &str,
    name: &str,
    args: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data.txt");
    std::fs::write(&data, "multi-service\n").unwrap();
    let q = dir.join(format!("{name}.tsq"));
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-query", "-data"])
        .arg(&data)
        .args(args)
        .arg("-out")
        .arg(&q));
    assert!(ok, "{out}");
    let body = std::fs::read(&q).unwrap();
    let resp = exchange(server, &post_bytes(path, &body, "")).unwrap();
    assert_eq!(resp.status, 200);
    let r = dir.join(format!("{name}.tsr"));
    std::fs::write(&r, &resp.body).unwrap();
    (q, r)
}

fn outcome(reply: &Path) -> Result<(String, bool, usize), FailureInfo> {
    let der = std::fs::read(reply).unwrap();
    let resp = response::decode(&der).unwrap();
    match resp.token {
        Some(t) => Ok((
            oid::to_dotted(t.tst_info.policy).unwrap(),
            t.tst_info.has_extensions,
            t.certificates.len(),
        )),
        None => {
            assert_eq!(resp.status, PkiStatus::Rejection);
            Err(resp.fail_info[0])
        }
    }
}

fn openssl_verifies(server: &Server, q: &Path, r: &Path) {
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(r)
        .arg("-queryfile")
        .arg(q)
        .arg("-CAfile")
        .arg(server.ca()));
    assert!(ok && out.contains("Verification: OK"), "{out}");
}

#[test]
fn multi_service_example_serves_its_policies() {
    let tmp = common::tempdir();
    let server = Server::start(&tmp.path().join("data"), Some(MULTI));
    let dir = tmp.path();

    // /tsa without a policy → standard (2.999.1.1), TSA certificate only.
    let (q, r) = ask(&server, dir, "/tsa", "std", &["-sha256", "-cert"]);
    assert_eq!(outcome(&r), Ok(("2.999.1.1".into(), false, 1)));
    openssl_verifies(&server, &q, &r);

    // /qualified without a policy → 2.999.1.2, qcStatements, full chain, accuracy 500 ms.
    let (q, r) = ask(&server, dir, "/qualified", "qual", &["-sha384", "-cert"]);
    assert_eq!(outcome(&r), Ok(("2.999.1.2".into(), true, 2)));
    openssl_verifies(&server, &q, &r);
    let der = std::fs::read(&r).unwrap();
    let t = response::decode(&der).unwrap().token.unwrap();
    assert_eq!(t.tst_info.accuracy, Some((0, 500, 0)));

    // A policy the service does not offer → unacceptedPolicy, on both services.
    let (_, r) = ask(
        &server,
        dir,
        "/qualified",
        "q-std",
        &["-sha256", "-tspolicy", "2.999.1.1"],
    );
    assert_eq!(outcome(&r), Err(FailureInfo::UnacceptedPolicy));
    let (_, r) = ask(
        &server,
        dir,
        "/tsa",
        "t-qual",
        &["-sha256", "-tspolicy", "2.999.1.2"],
    );
    assert_eq!(outcome(&r), Err(FailureInfo::UnacceptedPolicy));

    // long-term: only with its OID *and* a 512-bit imprint.
    let (q, r) = ask(
        &server,
        dir,
        "/tsa",
        "lt",
        &["-sha512", "-cert", "-tspolicy", "2.999.1.4"],
    );
    assert_eq!(outcome(&r), Ok(("2.999.1.4".into(), false, 2)));
    openssl_verifies(&server, &q, &r);
    let (_, r) = ask(
        &server,
        dir,
        "/tsa",
        "lt256",
        &["-sha256", "-tspolicy", "2.999.1.4"],
    );
    assert_eq!(outcome(&r), Err(FailureInfo::UnacceptedPolicy));

    // internal: loopback clients may ask for 2.999.1.3 (microsecond genTime).
    let (q, r) = ask(
        &server,
        dir,
        "/tsa",
        "int",
        &["-sha256", "-cert", "-tspolicy", "2.999.1.3"],
    );
    assert_eq!(outcome(&r), Ok(("2.999.1.3".into(), false, 1)));
    openssl_verifies(&server, &q, &r);
}

#[test]
fn mapper_rules_over_http_and_fallback() {
    let tmp = common::tempdir();
    let config = r#"
        [[service]]
        name = "svc"
        path = ["/tsa", "/v2/tsa"]
        policies = ["tenant", "remote", "v2"]
        fallback_policy = "default"

        [[service]]
        name = "off"
        path = "/off"
        enabled = false

        [policy.default]
        oid = "2.999.1.1"

        [policy.tenant]
        oid = "2.999.2.1"
        match = { requested_policy = ["absent"], header = { name = "X-Tenant", regex = "^acme-[0-9]+$" } }

        [policy.remote]
        oid = "2.999.2.2"
        match = { requested_policy = ["absent"], client = ["10.0.0.0/8"] }

        [policy.v2]
        oid = "2.999.2.3"
        match = { requested_policy = ["absent"], path_regex = "^/v2/" }
        chain = "named"

        [chain.named]
        filters = ["request-validation", "message-imprint", "tsa-policy", "gen-time",
                   "accuracy", "nonce", "serial-number", "explicit-name", "tst-info",
                   "timestamp-token", "timestamp-response"]

        [filter.explicit-name]
        kind = "tsa-name"
        name = "/CN=stampd development TSA/O=stampd"
    "#;
    let server = Server::start(&tmp.path().join("data"), Some(config));
    let body = request::encode(HashAlg::Sha256, &[5; 32], None, None, false);
    let policy_of = |path: &str, headers: &str| {
        let resp = exchange(&server, &post_bytes(path, &body, headers)).unwrap();
        assert_eq!(resp.status, 200, "{path}");
        let r = response::decode(&resp.body).unwrap();
        r.token
            .map(|t| oid::to_dotted(t.tst_info.policy).unwrap())
            .ok_or(r.fail_info)
    };
    assert_eq!(
        policy_of("/tsa", "X-Tenant: acme-42\r\n"),
        Ok("2.999.2.1".into())
    );
    assert_eq!(
        policy_of("/tsa", "X-Tenant: evil\r\n"),
        Ok("2.999.1.1".into()),
        "falls back"
    );
    assert_eq!(policy_of("/v2/tsa", ""), Ok("2.999.2.3".into()));
    // Its chain names the TSA explicitly; openssl reads the name back and verifies it
    // against the certificate.
    let (q, r) = ask(
        &server,
        tmp.path(),
        "/v2/tsa",
        "named",
        &["-sha256", "-cert"],
    );
    let (ok, text) = run(Command::new("openssl")
        .args(["ts", "-reply", "-text", "-in"])
        .arg(&r));
    assert!(
        ok && text.contains("TSA: DirName:/CN=stampd development TSA/O=stampd"),
        "{text}"
    );
    openssl_verifies(&server, &q, &r);
    assert_eq!(
        policy_of("/tsa", ""),
        Ok("2.999.1.1".into()),
        "loopback is not 10/8: fallback"
    );
    // The disabled service is not served.
    assert_eq!(
        exchange(&server, &post_bytes("/off", &body, ""))
            .unwrap()
            .status,
        404
    );
    // The fallback never answers a request naming another policy.
    let named = request::encode(
        HashAlg::Sha256,
        &[5; 32],
        Some(&Oid::parse("2.999.2.2").unwrap()),
        None,
        false,
    );
    let resp = exchange(&server, &post_bytes("/tsa", &named, "")).unwrap();
    let r = response::decode(&resp.body).unwrap();
    assert_eq!(r.fail_info, vec![FailureInfo::UnacceptedPolicy]);
    drop(server);
    // A name the certificate does not carry would make every token fail verification:
    // refused at start.
    let bad = config.replace("/CN=stampd development TSA/O=stampd", "/CN=Somebody Else");
    let file = tmp.path().join("bad.toml");
    std::fs::write(&file, bad).unwrap();
    let (ok, out) = run(Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(tmp.path().join("data")));
    assert!(
        !ok && out.contains("neither the TSA certificate's subject"),
        "{out}"
    );
}

#[test]
fn preprocessing_rate_limit_and_metrics_over_http() {
    let tmp = common::tempdir();
    let config = r#"
        [[service]]
        name = "limited"
        path = "/tsa"
        preprocess = ["transaction-monitor", "audit", "strict", "clock"]

        [[service]]
        name = "polite"
        path = "/polite"
        preprocess = ["audit", "clock", "polite-limit"]

        [preprocess.strict]
        kind = "rate-limit"
        per_client = 1
        client_burst = 3

        [preprocess.polite-limit]
        kind = "rate-limit"
        per_client = 1
        client_burst = 1
        answer = "system-failure"
    "#;
    let server = Server::start(&tmp.path().join("data"), Some(config));
    let body = request::encode(HashAlg::Sha256, &[5; 32], None, None, false);
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            exchange(&server, &post_bytes("/tsa", &body, ""))
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let limited = exchange(&server, &post_bytes("/tsa", &body, "")).unwrap();
    assert_eq!(limited.header("retry-after"), Some("1"));

    // For clients that accept only HTTP 200: a systemFailure rejection instead.
    assert_eq!(
        exchange(&server, &post_bytes("/polite", &body, ""))
            .unwrap()
            .status,
        200
    );
    let resp = exchange(&server, &post_bytes("/polite", &body, "")).unwrap();
    assert_eq!(resp.status, 200);
    let r = response::decode(&resp.body).unwrap();
    assert_eq!(r.fail_info, vec![FailureInfo::SystemFailure]);

    // The monitor counted what the limit let through and what it refused.
    let text = server.metrics();
    assert!(
        text.contains(
            "stampd_requests_total{service=\"limited\",monitor=\"transaction-monitor\",policy=\"default\",outcome=\"granted\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "stampd_requests_total{service=\"limited\",monitor=\"transaction-monitor\",policy=\"-\",outcome=\"http_429\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("stampd_latency_microseconds{service=\"limited\",monitor=\"transaction-monitor\",quantile=\"0.99\"}"),
        "{text}"
    );
}

#[test]
fn http_level_refusals_reach_the_service_rate_limit_monitor_and_audit_trail() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    // One core, so one audit shard: the export lists the records in the order they were
    // sent (records of two shards within one millisecond have no order between them).
    let config = r#"
        [server]
        cores = 1

        [[service]]
        path = "/tsa"
        preprocess = ["transaction-monitor", "clock", "audit", "limit"]

        [preprocess.limit]
        kind = "rate-limit"
        per_client = 1
        client_burst = 6
    "#;
    let server = Server::start(&data, Some(config));
    let head = |method: &str, extra: &str| {
        format!("{method} /tsa HTTP/1.1\r\nHost: t\r\n{extra}\r\n").into_bytes()
    };
    let wrong_type = head("POST", "Content-Type: text/plain\r\nContent-Length: 1\r\n");
    let too_big = head(
        "POST",
        "Content-Type: application/timestamp-query\r\nContent-Length: 100000\r\n",
    );
    let statuses: Vec<u16> = [
        &wrong_type[..],
        &wrong_type,
        &too_big,
        &head("GET", ""),
        &head("POST", "Content-Type: application/timestamp-query\r\n"),
        // Rejections count too.
        &post_bytes("/tsa", b"junk", ""),
        // The client's bucket (6) is used up by its refusals: from now on, 429.
        &wrong_type,
        &post_bytes(
            "/tsa",
            &request::encode(HashAlg::Sha256, &[1; 32], None, None, false),
            "",
        ),
    ]
    .iter()
    .map(|raw| exchange(&server, raw).unwrap().status)
    .collect();
    assert_eq!(statuses, [415, 415, 413, 405, 411, 200, 429, 429]);
    // An unknown path concerns no service: answered, counted, not recorded.
    let other = b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(exchange(&server, other).unwrap().status, 404);
    let text = server.metrics();
    assert!(
        text.contains("outcome=\"http_415\"} 2") && text.contains("outcome=\"http_429\"} 2"),
        "{text}"
    );
    assert!(server.terminate().is_some_and(|s| s.success()));
    let records = common::export(&data);
    let statuses: Vec<u64> = records
        .iter()
        .map(|r| r["http_status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [415, 415, 413, 405, 411, 200, 429, 429]);
    for r in &records {
        assert_eq!(r["status"], "rejection", "{r}");
        assert_eq!(r["service"], "default", "{r}");
        assert_eq!(r["client_ip"], "127.0.0.1", "{r}");
    }
    // Nothing of a body the server did not read; the bodies it read are identified.
    for r in records[..5].iter().chain(&records[6..7]) {
        assert!(
            r["request_sha256"].is_null() && r["message_imprint"].is_null(),
            "{r}"
        );
    }
    assert_eq!(records[5]["fail_info"], "badDataFormat");
    assert_eq!(records[5]["request_length"], 4);
    assert_eq!(records[7]["message_imprint"], "01".repeat(32));
}

#[test]
fn check_config_explains_preprocess_and_chain_errors() {
    let tmp = common::tempdir();
    let file = tmp.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[[service]]
name = "s"
preprocess = ["rate-limit", "nope"]

[policy.default]
oid = "2.999.1.1"
chain = "short"

[chain.short]
filters = ["request-validation", "tst-info", "timestamp-token", "timestamp-response"]
"#,
    )
    .unwrap();
    let (ok, out) = run(Command::new(common::BIN).arg("check-config").arg(&file));
    assert!(!ok);
    let name = file.display().to_string();
    for needle in [
        &format!("{name}:4: service[0] (s).preprocess[1]: `nope` is not defined"),
        &format!("{name}:4: service[0] (s).preprocess: needs exactly one clock filter"),
        &format!("{name}:4: service[0] (s).preprocess: needs exactly one audit filter"),
        &format!("{name}:11: chain `short` lacks `nonce`"),
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn imprint_list_refuses_listed_imprints_or_all_others() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let listed = [0xab; 32];
    let list = format!("# revoked documents\n{}\n", "ab".repeat(32));
    std::fs::write(data.join("imprints.txt"), list).unwrap();
    let chain = |filter: &str| {
        format!(
            r#"filters = ["request-validation", "message-imprint", "{filter}", "tsa-policy",
                          "gen-time", "accuracy", "nonce", "serial-number", "tst-info",
                          "timestamp-token", "timestamp-response"]"#
        )
    };
    let config = format!(
        r#"
        [[service]]
        name = "deny"
        path = "/deny"
        policies = ["deny"]

        [[service]]
        name = "allow"
        path = "/allow"
        policies = ["allow"]

        [policy.deny]
        oid = "2.999.1.1"
        chain = "deny"

        [policy.allow]
        oid = "2.999.1.1"
        chain = "allow"

        [chain.deny]
        {}

        [chain.allow]
        {}

        [filter.revoked]
        kind = "imprint-list"
        file = "imprints.txt"

        [filter.only-listed]
        kind = "imprint-list"
        file = "imprints.txt"
        mode = "allow"
    "#,
        chain("revoked"),
        chain("only-listed")
    );
    let server = Server::start(&data, Some(&config));
    let answer = |path: &str, digest: &[u8]| {
        let body = request::encode(HashAlg::Sha256, digest, None, None, false);
        let resp = exchange(&server, &post_bytes(path, &body, "")).unwrap();
        assert_eq!(resp.status, 200, "{path}");
        let r = response::decode(&resp.body).unwrap();
        match r.token {
            Some(t) => {
                assert_eq!(t.tst_info.digest, digest);
                Ok(())
            }
            None => Err((r.fail_info, r.status_text)),
        }
    };
    let refused = Err((
        vec![FailureInfo::BadRequest],
        vec!["message imprint refused by policy".to_string()],
    ));
    assert_eq!(answer("/deny", &listed), refused);
    assert_eq!(answer("/deny", &[5; 32]), Ok(()));
    assert_eq!(answer("/allow", &listed), Ok(()));
    assert_eq!(answer("/allow", &[5; 32]), refused);
    drop(server);

    // The list is read at start: `check-config` (no file I/O) passes, `serve` stops and says
    // which file it could not read.
    let file = tmp.path().join("missing.toml");
    std::fs::write(&file, config.replace("imprints.txt", "missing.txt")).unwrap();
    let (ok, out) = run(Command::new(common::BIN).arg("check-config").arg(&file));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data));
    let missing = data.join("missing.txt");
    assert!(
        !ok && out.contains(&format!(
            "filter.revoked: file: cannot read {}",
            missing.display()
        )),
        "{out}"
    );
}
