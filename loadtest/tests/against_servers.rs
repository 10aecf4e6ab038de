//! `stampd-loadtest` against real servers on loopback: stampd itself (its binary is built
//! next to this one by `cargo nextest run --workspace`) and the built-in trivial responder.
//! Every reply is checked; these tests make sure the checks and the counts are real.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOADTEST: &str = env!("CARGO_BIN_EXE_stampd-loadtest");

fn stampd_bin() -> PathBuf {
    let p = Path::new(LOADTEST).with_file_name("stampd");
    assert!(
        p.exists(),
        "{} is missing: run the workspace's tests (cargo nextest run --workspace)",
        p.display()
    );
    p
}

/// A child process killed on drop, with the base URL it printed.
struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits for a line containing `http://`.
fn start(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(i) = line.find("http://") {
            let url = line[i..].split_whitespace().next().unwrap().to_string();
            std::thread::spawn(move || lines.for_each(drop));
            return Running { child, url };
        }
    }
    let _ = child.kill();
    let status = child.wait();
    panic!("the server did not start ({status:?})");
}

fn stampd(data: &Path) -> Running {
    let mut cmd = Command::new(stampd_bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
        "--data-dir",
    ])
    .arg(data)
    .env("STAMPD_LOG", "warn");
    start(cmd)
}

/// Runs the load generator; returns (exit code, JSON summary).
fn load(url: &str, args: &[&str], dir: &Path) -> (i32, serde_json::Value) {
    let (code, summary, _) = load_printing(url, args, dir);
    (code, summary)
}

/// Runs the load generator; returns (exit code, JSON summary, what it printed on stdout).
fn load_printing(url: &str, args: &[&str], dir: &Path) -> (i32, serde_json::Value, String) {
    let json = dir.join(format!(
        "summary-{}.json",
        args.join("_").replace(['/', '.'], "-")
    ));
    let out = Command::new(LOADTEST)
        .args(["--url", url, "--quiet", "--json"])
        .arg(&json)
        .args(args)
        .output()
        .expect("run stampd-loadtest");
    let summary = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_else(|_| {
            panic!(
                "no JSON summary; output:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (
        out.status.code().unwrap_or(-1),
        summary,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn closed_and_open_loop_against_stampd_with_every_reply_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = stampd(&data);
    let ca = data.join("pki/ca.pem");
    let tsa = data.join("pki/tsa.pem");

    // Closed loop, mixed hashes and certReq, every reply verified fully.
    let (code, s) = load(
        &server.url,
        &[
            "--connections",
            "4",
            "--duration",
            "1s",
            "--hash",
            "sha256,sha384,sha512",
            "--cert-req",
            "0.5",
            "--verify-sample",
            "1",
            "--ca",
            ca.to_str().unwrap(),
            "--untrusted",
            tsa.to_str().unwrap(),
            "--hdr-log",
            dir.path().join("l.hlog").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["replies"].as_u64().unwrap() > 10, "{s}");
    assert!(s["throughput"].as_f64().unwrap() > 0.0);
    assert_eq!(s["mode"], "closed");
    let lat = &s["latency_us"];
    assert!(lat["p50"].as_u64().unwrap() <= lat["p99"].as_u64().unwrap());
    let log = std::fs::read_to_string(dir.path().join("l.hlog")).unwrap();
    assert!(
        log.contains("#[StartTime:") && log.lines().any(|l| l.starts_with("0.000,1.000,")),
        "{log}"
    );

    // Open loop: the offered rate is what arrives, on time.
    let started = Instant::now();
    let (code, s) = load(
        &server.url,
        &["--connections", "4", "--duration", "2s", "--rate", "200"],
        dir.path(),
    );
    assert_eq!(code, 0, "{s}");
    let replies = s["replies"].as_u64().unwrap();
    assert!((360..=440).contains(&replies), "200/s for 2 s: {s}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s["mode"], "open");

    // A policy the server does not offer: every reply is a counted rejection, exit 1.
    let (code, s) = load(
        &server.url,
        &[
            "--connections",
            "2",
            "--duration",
            "500ms",
            "--policy",
            "1.2.3.4",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert_eq!(s["replies"], 0);
    assert!(
        s["errors_by_kind"]["rejection:unacceptedPolicy"]
            .as_u64()
            .unwrap()
            > 0,
        "{s}"
    );

    // A wrong path: HTTP errors by status.
    let wrong = server.url.replace("/tsa", "/nope");
    let (code, s) = load(
        &wrong,
        &["--connections", "2", "--duration", "500ms"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(s["errors_by_kind"]["http-404"].as_u64().unwrap() > 0, "{s}");
}

/// Tokens requested without certReq carry no certificate: with only --ca they cannot
/// verify. They still count as `verification-failed`, and the summary says why, once.
#[test]
fn sampled_tokens_without_a_certificate_are_explained_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = stampd(&data);
    let ca = data.join("pki/ca.pem");
    let tsa = data.join("pki/tsa.pem");
    let base = [
        "--connections",
        "2",
        "--duration",
        "500ms",
        "--verify-sample",
        "1",
        "--ca",
        ca.to_str().unwrap(),
    ];

    let (code, s, stdout) = load_printing(&server.url, &base, dir.path());
    assert_eq!(code, 1, "{s}");
    let failed = s["errors_by_kind"]["verification-failed"].as_u64().unwrap();
    assert!(
        failed > 0 && s["errors"] == failed && s["replies"] == 0,
        "{s}"
    );
    let hint = s["verification_hint"]
        .as_str()
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        hint.starts_with(&format!("{failed} sampled tokens carried no certificate"))
            && hint.contains("certReq false")
            && hint.contains("--untrusted TSA.pem")
            && hint.contains("--cert-req 1"),
        "{hint}"
    );
    assert_eq!(stdout.matches(hint).count(), 1, "{stdout}");

    // The TSA certificate given, or requested in every token: they verify, no hint.
    let tsa = ["--untrusted", tsa.to_str().unwrap()];
    for extra in [&tsa[..], &["--cert-req", "1"]] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, s, stdout) = load_printing(&server.url, &args, dir.path());
        assert_eq!(code, 0, "{extra:?}: {s}");
        assert!(s["verification_hint"].is_null(), "{s}");
        assert!(!stdout.contains("carried no certificate"), "{stdout}");
    }
}

#[test]
fn the_responder_answers_fast_and_unsigned_tokens_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(LOADTEST);
    cmd.args(["responder", "--listen", "127.0.0.1:0", "--cores", "1"]);
    let responder = start(cmd);

    // Imprints and nonces are echoed: the cheap checks pass.
    let (code, s) = load(
        &responder.url,
        &["--connections", "8", "--duration", "1s"],
        dir.path(),
    );
    assert_eq!(code, 0, "{s}");
    assert!(s["replies"].as_u64().unwrap() > 100, "{s}");

    // Full verification catches the fixed signature (the checks are not a formality).
    let pki = dir.path().join("pki");
    let out = Command::new(stampd_bin())
        .args(["init", "--data-dir"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (code, s) = load(
        &responder.url,
        &[
            "--connections",
            "2",
            "--duration",
            "500ms",
            "--cert-req",
            "1",
            "--verify-sample",
            "1",
            "--ca",
            pki.join("pki/ca.pem").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        s["errors_by_kind"]["verification-failed"].as_u64().unwrap() > 0,
        "{s}"
    );
}

#[test]
fn a_sweep_draws_the_curve_and_a_dead_server_is_counted_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = stampd(&data);
    let svg = dir.path().join("curve.svg");
    let json = dir.path().join("sweep.json");
    let out = Command::new(LOADTEST)
        .args([
            "sweep",
            "--url",
            &server.url,
            "--quiet",
            "--connections",
            "4",
            "--duration",
            "500ms",
            "--steps",
            "20,60",
        ])
        .arg("--svg")
        .arg(&svg)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["steps"].as_array().unwrap().len(), 2);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3);

    // Nothing listening: connect errors, counted, and the run ends on time.
    let url = server.url.clone();
    drop(server);
    let started = Instant::now();
    let (code, s) = load(
        &url,
        &["--connections", "2", "--duration", "1s", "--timeout", "1s"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(s["errors_by_kind"]["connect"].as_u64().unwrap() > 0, "{s}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_case_starts_stampd_measures_and_reports_its_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let case = |name: &str, thresholds: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\ndescription = \"a short case\"\n\
                 config = '''\n[audit]\ndurability = \"async\"\n'''\n\
                 [load]\nconnections = 4\nduration = \"500ms\"\nrate_percent = 50\nidle_connections = 20\n\
                 [thresholds]\n{thresholds}\n"
            ),
        )
        .unwrap();
        Command::new(LOADTEST)
            .arg("case")
            .arg(&file)
            .arg("--stampd")
            .arg(stampd_bin())
            .arg("--out")
            .arg(dir.path().join("reports"))
            .output()
            .unwrap()
    };
    let out = case(
        "good",
        "max_errors = 0\nmax_rss_mib = 500\nmin_raw_sign_ratio = 0.001\nmax_floor_ratio = 1000",
    );
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("reports/good.md")).unwrap_or_default()
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.path().join("reports/good.md")).unwrap();
    assert!(
        md.contains("passed") && md.contains("pass: errors 0 ≤ 0") && md.contains("peak RSS"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("reports/good.json")).unwrap(),
    )
    .unwrap();
    assert!(json["saturation"]["throughput"].as_f64().unwrap() > 0.0);
    // The raw sign rate, measured in the run, and the ratio against it: replies per server
    // core-second over signatures per core-second, below 1 since every reply signs.
    let raw = json["raw_p256_sign_us"].as_f64().unwrap();
    let cpu = json["server_cpu_us_per_reply"].as_f64().unwrap();
    let ratio = json["raw_sign_ratio"].as_f64().unwrap();
    assert!(
        raw > 0.0 && cpu > raw && (ratio - raw / cpu).abs() < 1e-9,
        "{json}"
    );
    assert!(
        md.contains(&format!(
            "pass: server CPU per reply {cpu:.1} µs against {raw:.1} µs"
        )) && md.contains(&format!("{ratio:.3} × the raw rate per core ≥ 0.001"))
            && md.contains(&format!("({:.0} replies per core-second)", 1e6 / cpu)),
        "{md}"
    );
    // The floor: the raw signature plus the trivial responder's CPU per reply, the
    // responder driven by the same load after stampd; stampd signs, so it costs more.
    let resp = json["responder_cpu_us_per_reply"].as_f64().unwrap();
    let floor = json["floor_us_per_reply"].as_f64().unwrap();
    let over = json["floor_ratio"].as_f64().unwrap();
    assert!(
        resp > 0.0 && (floor - raw - resp).abs() < 1e-9 && (over - cpu / floor).abs() < 1e-9,
        "{json}"
    );
    assert!(
        md.contains(&format!("against the floor {floor:.1} µs"))
            && md.contains(&format!("{over:.3} × the floor ≤ 1000")),
        "{md}"
    );
    assert_eq!(json["summary"]["mode"], "open");
    assert!(dir.path().join("reports/good.svg").exists());
    let percentiles =
        std::fs::read_to_string(dir.path().join("reports/good-percentiles.svg")).unwrap();
    assert!(percentiles.contains("<polyline") && md.contains("good-percentiles.svg"));

    // A threshold no server meets: exit 1, and the report says which.
    let out = case(
        "bad",
        "max_p99_ms = 0.000001\nmin_raw_sign_ratio = 1000\nmax_floor_ratio = 0.001",
    );
    assert_eq!(out.status.code(), Some(1));
    let md = std::fs::read_to_string(dir.path().join("reports/bad.md")).unwrap();
    assert!(
        md.contains("FAILED")
            && md.contains("FAIL: p99")
            && md.contains("× the raw rate per core ≥ 1000")
            && md.contains("FAIL: server CPU per reply")
            && md.contains("× the floor ≤ 0.001"),
        "{md}"
    );
}

/// The server stops for 600 ms (SIGSTOP) during an open-loop run: the requests that were
/// due meanwhile count their wait from when they were due, so p99 shows the stall. A
/// closed-loop generator would record only the few requests in flight.
#[test]
fn open_loop_latency_counts_a_stall_from_the_intended_send_times() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = stampd(&data);
    let pid = server.child.id().to_string();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1200));
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        std::thread::sleep(Duration::from_millis(600));
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
    });
    let (code, s) = load(
        &server.url,
        &[
            "--connections",
            "4",
            "--duration",
            "3s",
            "--rate",
            "200",
            "--timeout",
            "5s",
        ],
        dir.path(),
    );
    stopper.join().unwrap();
    assert_eq!(code, 0, "{s}");
    // 120 of the 600 requests were due during the stall; the first waited ~600 ms.
    let p99 = s["latency_us"]["p99"].as_u64().unwrap();
    let max = s["latency_us"]["max"].as_u64().unwrap();
    assert!(p99 >= 300_000 && max >= 450_000, "{s}");

    // Nothing listening, open loop: errors are counted and the run ends on time.
    let url = server.url.clone();
    drop(server);
    let started = Instant::now();
    let (code, s) = load(
        &url,
        &[
            "--connections",
            "2",
            "--duration",
            "1s",
            "--rate",
            "1000",
            "--timeout",
            "1s",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        s["errors"].as_u64().unwrap() >= 900,
        "every slot is an error: {s}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}
