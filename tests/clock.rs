//! Trusted time, end to end: a real `stampd serve` whose `[clock]` points at fake SNTP
//! servers on loopback (tests/common/sntp.rs) or at a fake `chronyc`. The system clock is
//! never changed: the fake servers lie about the time instead.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::sntp::FakeSntp;
use common::{exchange, post_bytes, run, Server, BIN};
use stampd::protocol::{request, response, FailureInfo, HashAlg, PkiStatus};

/// One request: `Ok(())` for a token, `Err(failInfo)` for a rejection.
fn stamp(server: &Server) -> Result<(), Vec<FailureInfo>> {
    let body = request::encode(HashAlg::Sha256, &[7; 32], None, Some(&[1]), false);
    let r = exchange(server, &post_bytes(&server.path, &body, "")).expect("a reply");
    assert_eq!(r.status, 200, "RFC 3161 answers are HTTP 200");
    let resp = response::decode(&r.body).unwrap();
    match resp.status {
        PkiStatus::Granted => Ok(()),
        _ => Err(resp.fail_info.clone()),
    }
}

fn get(server: &Server, path: &str) -> (u16, String) {
    let r = exchange(
        server,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
    )
    .expect("a reply");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Polls `cond` until it holds (a readiness probe, not a sleep); panics after 10 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused(server: &Server) -> bool {
    stamp(server) == Err(vec![FailureInfo::TimeNotAvailable])
}

/// Polls fast enough for short tests, with a timeout generous enough for a loaded 2-core CI
/// machine (a reply later than the timeout counts as no reply).
const POLL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 250;

/// Long enough for two polls: to show that something stays as it is.
fn two_polls() {
    std::thread::sleep(Duration::from_millis(2 * POLL_MS + 100));
}

fn config(servers: &[&FakeSntp], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    format!(
        "[clock]\nsync = \"sntp\"\nservers = [{}]\npoll_interval_ms = {POLL_MS}\n\
         timeout_ms = {TIMEOUT_MS}\nmax_offset_ms = 1000\nwarn_offset_ms = 500\n{extra}",
        list.join(", ")
    )
}

/// Sets every fake server's behaviour alike.
fn set_all(fakes: &[FakeSntp], f: impl Fn(&mut common::sntp::Behaviour)) {
    for fake in fakes {
        fake.set(&f);
    }
}

/// `stampd_clock_offset_seconds` from /metrics.
fn offset(server: &Server) -> f64 {
    metric(server, "stampd_clock_offset_seconds")
        .parse()
        .unwrap()
}

fn metric(server: &Server, line_start: &str) -> String {
    let text = server.metrics();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// The clock events of the journal, by name, in order.
fn events(data: &std::path::Path) -> Vec<String> {
    common::export_all(data)
        .into_iter()
        .filter(|e| e["kind"] == "clock")
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

fn verify_journal(data: &std::path::Path) {
    let (ok, out) = run(Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(data));
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");
}

#[test]
fn out_of_sync_refuses_within_a_poll_and_back_in_sync_stamps_again() {
    let fakes = [FakeSntp::start(), FakeSntp::start(), FakeSntp::start()];
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let server = Server::start(&data, Some(&config(&fakes.each_ref(), "")));
    // The first poll ran before the server started serving.
    assert_eq!(stamp(&server), Ok(()));
    assert_eq!(get(&server, "/ready").0, 200);
    assert_eq!(metric(&server, "stampd_clock_in_sync"), "1");
    assert_eq!(
        metric(
            &server,
            &format!(
                "stampd_clock_server_reachable{{server=\"{}\"}}",
                fakes[0].addr
            )
        ),
        "1"
    );
    // All three servers say the local clock is 5 s slow.
    set_all(&fakes, |b| b.offset_ms = 5_000);
    let flipped = Instant::now();
    wait_for("timeNotAvailable", || refused(&server));
    // One poll is 300 ms (+ the timeout); allow for a slow machine.
    assert!(
        flipped.elapsed() < Duration::from_secs(3),
        "{:?}",
        flipped.elapsed()
    );
    let (status, body) = get(&server, "/ready");
    assert_eq!(status, 503);
    assert!(body.contains("clock: the clock is out of sync"), "{body}");
    assert_eq!(metric(&server, "stampd_clock_in_sync"), "0");
    assert!((offset(&server) - 5.0).abs() < 0.01, "{}", offset(&server));
    // Back within the bound: tokens again, no restart.
    set_all(&fakes, |b| b.offset_ms = 3);
    wait_for("a token again", || stamp(&server).is_ok());
    assert_eq!(get(&server, "/ready").0, 200);
    assert!(
        (offset(&server) - 0.003).abs() < 0.002,
        "{}",
        offset(&server)
    );
    // 600 ms: a warning, still stamping.
    set_all(&fakes, |b| b.offset_ms = 600);
    wait_for("a warning", || server.log_count("clock warning") == 1);
    assert_eq!(stamp(&server), Ok(()));
    // One log line per change of state, none per refused request.
    assert_eq!(server.log_count("clock out-of-sync"), 1);
    assert_eq!(server.log_count("request failed"), 0);
    drop(server);
    assert_eq!(
        events(&data),
        [
            "monitor-started",
            "in-sync",
            "out-of-sync",
            "back-in-sync",
            "warning"
        ]
    );
    verify_journal(&data);
    // The events are in the journal with their detail, and `query --kind clock` finds them.
    let (ok, out) = run(Command::new(BIN)
        .args(["audit", "query", "--kind", "clock", "--data-dir"])
        .arg(&data));
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let out_of_sync = &lines[2];
    assert!(out_of_sync["message"]
        .as_str()
        .unwrap()
        .contains("beyond max_offset_ms = 1000"));
    assert_eq!(
        out_of_sync["detail"]["servers"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn one_falseticker_is_outvoted_and_two_bad_servers_of_three_stop_stamping() {
    let fakes = [FakeSntp::start(), FakeSntp::start(), FakeSntp::start()];
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let server = Server::start(&data, Some(&config(&fakes.each_ref(), "")));
    fakes[1].set(|b| b.offset_ms = 10_000);
    let falseticker = format!(
        "stampd_clock_server_falseticker{{server=\"{}\"}}",
        fakes[1].addr
    );
    wait_for("the falseticker reported", || {
        metric(&server, &falseticker) == "1"
    });
    assert_eq!(stamp(&server), Ok(()), "two of three still agree");
    assert_eq!(metric(&server, "stampd_clock_in_sync"), "1");
    // The third goes silent: one agreeing server of three is no quorum.
    fakes[2].set(|b| b.silent = true);
    wait_for("no quorum", || refused(&server));
    assert_eq!(get(&server, "/ready").0, 503);
    let reachable = format!(
        "stampd_clock_server_reachable{{server=\"{}\"}}",
        fakes[2].addr
    );
    assert_eq!(metric(&server, &reachable), "0");
    // A kiss-o'-death is a failure, not an offset: still no quorum with the third back
    // but sending RATE.
    fakes[2].set(|b| {
        b.silent = false;
        b.kiss = Some(*b"RATE");
    });
    two_polls();
    assert!(refused(&server));
    fakes[2].set(|b| b.kiss = None);
    wait_for("quorum again", || stamp(&server).is_ok());
    drop(server);
    let names = events(&data);
    assert_eq!(
        names,
        [
            "monitor-started",
            "in-sync",
            "falseticker",
            "out-of-sync",
            "back-in-sync"
        ],
        "one event per change, in order"
    );
    verify_journal(&data);
}

#[test]
fn silent_servers_and_an_error_bound_beyond_the_declared_accuracy_refuse() {
    let fakes = [FakeSntp::start(), FakeSntp::start(), FakeSntp::start()];
    let dir = common::tempdir();
    let data = dir.path().join("d");
    // A second policy with an accuracy of 100 ms, taking requests for its OID.
    let extra = "\n[[service]]\nname = \"default\"\nlisten = \"127.0.0.1:0\"\npath = \"/tsa\"\n\
                 policies = [\"default\", \"tight\"]\n\n[policy.tight]\noid = \"2.999.1.2\"\n\
                 accuracy = \"100ms\"\nmatch = { requested_policy = [\"2.999.1.2\"] }\n";
    let server = Server::start(&data, Some(&config(&fakes.each_ref(), extra)));
    let tight = |server: &Server| {
        let policy = stampd::protocol::oid::Oid::parse("2.999.1.2").unwrap();
        let body = request::encode(HashAlg::Sha256, &[9; 32], Some(&policy), None, false);
        let r = exchange(server, &post_bytes(&server.path, &body, "")).unwrap();
        let resp = response::decode(&r.body).unwrap();
        (resp.status, resp.fail_info.clone())
    };
    assert_eq!(tight(&server).0, PkiStatus::Granted);
    // A 300 ms root dispersion: in sync for the 1 s policy, too coarse for the 100 ms one.
    set_all(&fakes, |b| b.root_dispersion_ms = 300);
    wait_for("the tight policy refused", || {
        tight(&server).1 == [FailureInfo::TimeNotAvailable]
    });
    assert_eq!(stamp(&server), Ok(()));
    // Every server silent: no verdict, nothing stamped.
    set_all(&fakes, |b| b.silent = true);
    wait_for("silence refuses", || refused(&server));
    assert_eq!(get(&server, "/ready").0, 503);
}

#[test]
fn a_leap_second_pauses_only_at_midnight_and_stop_refuses_until_restart() {
    let fakes = [FakeSntp::start(), FakeSntp::start(), FakeSntp::start()];
    set_all(&fakes, |b| b.li = 1);
    let dir = common::tempdir();
    let data = dir.path().join("d");
    // pause: outside the window around the end of the month, tokens as usual. (Inside the
    // window is tested on an injected clock: src/clock/verdict.rs.)
    let server = Server::start(
        &data,
        Some(&config(&fakes.each_ref(), "leap_seconds = \"pause\"\n")),
    );
    assert_eq!(stamp(&server), Ok(()));
    assert_eq!(metric(&server, "stampd_clock_leap_pending"), "1");
    drop(server);
    assert_eq!(
        events(&data),
        ["monitor-started", "in-sync", "leap-announced"]
    );
    // stop: refused from the announcement on, even after the servers stop announcing.
    let data = dir.path().join("s");
    let stop = config(&fakes.each_ref(), "leap_seconds = \"stop\"\n");
    let server = Server::start(&data, Some(&stop));
    assert!(refused(&server));
    assert!(get(&server, "/ready").1.contains("restart to resume"));
    set_all(&fakes, |b| b.li = 0);
    two_polls();
    assert!(refused(&server), "stop holds until a restart");
    drop(server);
    let server = Server::start(&data, Some(&stop));
    assert_eq!(stamp(&server), Ok(()));
    drop(server);
    verify_journal(&data);
}

#[test]
fn kernel_sync_reads_chronyc() {
    let dir = common::tempdir();
    let state = dir.path().join("tracking");
    let chronyc = dir.path().join("chronyc");
    std::fs::write(&chronyc, format!("#!/bin/sh\ncat {}\n", state.display())).unwrap();
    std::fs::set_permissions(
        &chronyc,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let report = |offset: &str, leap: &str| {
        std::fs::write(
            &state,
            format!(
                "C0A80001,ntp.example,2,1795000000.0,{offset},0,0,0,0,0,0.002,0.001,64,{leap}\n"
            ),
        )
        .unwrap();
    };
    report("0.000100", "Normal");
    let data = dir.path().join("d");
    let text = format!(
        "[clock]\nsync = \"kernel\"\nchronyc = \"{}\"\npoll_interval_ms = {POLL_MS}\n\
         timeout_ms = {TIMEOUT_MS}\n",
        chronyc.display()
    );
    let server = Server::start(&data, Some(&text));
    assert_eq!(stamp(&server), Ok(()));
    report("0.000100", "Not synchronised");
    wait_for("unsynchronised chrony refuses", || refused(&server));
    report("2.5", "Normal");
    two_polls();
    assert!(refused(&server), "2.5 s off is beyond max_offset_ms");
    report("-0.0002", "Normal");
    wait_for("in sync again", || stamp(&server).is_ok());
}

#[test]
fn sync_none_warns_at_start_and_check_config_flags_it() {
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let server = Server::start(&data, None);
    assert_eq!(server.log_count("clock.sync = \"none\""), 1);
    assert_eq!(stamp(&server), Ok(()));
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let (ok, out) = run(Command::new(BIN).arg("check-config").arg(&file));
    assert!(ok, "{out}");
    assert!(out.contains("warning: clock.sync = \"none\""), "{out}");
    assert!(out.contains("development only"), "{out}");
    // A production [clock] has no such warning.
    std::fs::write(
        &file,
        "[clock]\nsync = \"sntp\"\nservers = [\"a\", \"b\", \"c\"]\n",
    )
    .unwrap();
    let (ok, out) = run(Command::new(BIN).arg("check-config").arg(&file));
    assert!(ok && !out.contains("warning: "), "{out}");
    // And a broken one names its key, with the line.
    std::fs::write(&file, "[clock]\nsync = \"sntp\"\n").unwrap();
    let (ok, out) = run(Command::new(BIN).arg("check-config").arg(&file));
    assert!(!ok && out.contains("clock.servers"), "{out}");
}

#[test]
fn clock_status_prints_each_server_and_exits_by_the_verdict() {
    let fakes = [FakeSntp::start(), FakeSntp::start(), FakeSntp::start()];
    fakes[2].set(|b| b.offset_ms = 20_000);
    let dir = common::tempdir();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, config(&fakes.each_ref(), "")).unwrap();
    let status = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["clock", "status", "--config"]).arg(&file);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = status(false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("verdict: in-sync"), "{text}");
    assert!(
        text.contains(&format!("{}: offset", fakes[2].addr)),
        "{text}"
    );
    assert!(text.contains("falseticker"), "{text}");
    assert!(text.contains("stratum 1"), "{text}");
    fakes[1].set(|b| b.offset_ms = -20_000);
    let (code, text) = status(true);
    assert_eq!(code, Some(1), "{text}");
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["state"], "out-of-sync");
    assert_eq!(j["servers"].as_array().unwrap().len(), 3);
    assert!(j["reason"].as_str().unwrap().contains("servers agree"));
}

#[test]
fn a_reload_changes_the_offset_thresholds_from_the_next_poll_and_nothing_else_of_clock() {
    let fake = FakeSntp::start();
    fake.set(|b| b.offset_ms = 300);
    let dir = common::tempdir();
    let data = dir.path().join("d");
    let text = config(&[&fake], "");
    let server = Server::start(&data, Some(&text));
    wait_for("in sync 300 ms off, within 1000", || stamp(&server).is_ok());
    // The harness keeps the configuration beside the data directory.
    let file = data.with_extension("toml");
    let reload = |text: &str| {
        std::fs::write(&file, text).unwrap();
        run(Command::new(BIN).args(["reload", "--data-dir"]).arg(&data))
    };
    let strict = text
        .replace("max_offset_ms = 1000", "max_offset_ms = 100")
        .replace("warn_offset_ms = 500", "warn_offset_ms = 50");
    let (ok, out) = reload(&strict);
    assert!(ok, "{out}");
    wait_for("out of sync: 300 ms is beyond 100", || refused(&server));
    let (ok, out) = reload(&text);
    assert!(ok, "{out}");
    wait_for("back in sync", || stamp(&server).is_ok());
    // Where the time comes from needs a restart.
    let (ok, out) = reload(&text.replace("poll_interval_ms = 300", "poll_interval_ms = 400"));
    assert!(
        !ok && out.contains("[clock] (other than max_offset_ms and warn_offset_ms) changed"),
        "{out}"
    );
    assert!(stamp(&server).is_ok());
}
