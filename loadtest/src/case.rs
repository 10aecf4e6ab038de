//! Named scenarios (`loadtest/cases/*.toml`): a stampd configuration, the load, and the
//! thresholds it must meet. The runner starts stampd for the case, measures, and writes a
//! report (markdown and an SVG plot) saying what passed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::report::{self, Summary};

/// A case file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub description: String,
    /// stampd's configuration for the case (TOML text); empty: the embedded default.
    #[serde(default)]
    pub config: String,
    /// Shell commands run (bash, in the case's work directory) before stampd starts, e.g. to
    /// make a SoftHSM2 token. `STAMPD` names the stampd binary.
    #[serde(default)]
    pub setup: String,
    /// Environment for stampd and `setup` (e.g. a test PIN variable).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    pub load: Load,
    #[serde(default)]
    pub thresholds: Thresholds,
}

/// The load, as `stampd-loadtest` flags.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    #[serde(default = "default_connections")]
    pub connections: usize,
    #[serde(default = "default_duration")]
    pub duration: String,
    #[serde(default)]
    pub warmup: Option<String>,
    /// Open loop at this share of the saturation throughput, which the runner measures
    /// first (closed loop, same connections). Left out: closed loop.
    pub rate_percent: Option<f64>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub cert_req: Option<f64>,
    /// Keep-alive connections opened (one request each) and held open during the load.
    #[serde(default)]
    pub idle_connections: usize,
}

fn default_connections() -> usize {
    64
}

fn default_duration() -> String {
    "10s".into()
}

/// What the case must show; each left out is not checked.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub max_errors: Option<u64>,
    pub min_throughput: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub max_p99_9_ms: Option<f64>,
    /// Peak resident memory of stampd (VmHWM).
    pub max_rss_mib: Option<f64>,
    /// Replies per server core-second over raw aws-lc-rs P-256 signatures per
    /// core-second, both measured in this run (the raw rate right after the load, with
    /// stampd stopped, on one thread of the then idle machine; the server's CPU while it
    /// shared the cores with the load generator). 1 / ratio − 1 is what everything around
    /// the signature costs, in signatures.
    pub min_raw_sign_ratio: Option<f64>,
    /// Server CPU per reply over the floor: one raw aws-lc-rs P-256 signature plus the
    /// trivial responder's CPU per reply (`stampd-loadtest responder`: stampd's HTTP front
    /// end and token encoding, no signature, no audit trail), both measured in this run,
    /// the responder under the same load. It is the honest limit on any host: what a
    /// reply costs beyond it is what stampd adds to the signature and the HTTP.
    pub max_floor_ratio: Option<f64>,
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_stampd(stampd: &Path, work: &Path, case: &Case) -> Result<Server, String> {
    let data = work.join("data");
    let mut cmd = Command::new(stampd);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
        "--data-dir",
    ])
    .arg(&data)
    .envs(&case.env)
    .env("STAMPD_LOG", "warn")
    .current_dir(work);
    if !case.config.trim().is_empty() {
        let file = work.join("stampd.toml");
        std::fs::write(&file, &case.config).map_err(|e| e.to_string())?;
        cmd.arg("--config").arg(file);
    }
    spawn_server(cmd, "stampd: serving ").map_err(|e| format!("{}: {e}", stampd.display()))
}

/// The trivial responder (this binary's `responder` command) on a free loopback port.
fn start_responder() -> Result<Server, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(me);
    cmd.args(["responder", "--listen", "127.0.0.1:0"]);
    spawn_server(cmd, "stampd-loadtest responder: ").map_err(|e| format!("responder: {e}"))
}

/// Starts `cmd` and waits (up to 60 s) for the stdout line `READY URL ...` that says it
/// serves.
fn spawn_server(mut cmd: Command, ready: &str) -> Result<Server, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no stdout".into());
    };
    // Lines are read on their own thread, so the deadline holds even when the server
    // prints nothing.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(rest) = line.strip_prefix(ready) {
            let url = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            std::thread::spawn(move || rx.into_iter().for_each(drop));
            return Ok(Server { child, url });
        }
    }
    let _ = child.kill();
    let status = child.wait();
    Err(format!("did not start within 60 s ({status:?})"))
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(") ")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux the project targets.
    Some(Duration::from_millis(ticks * 10))
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// How many of `held` the server still keeps open: a read finds neither data nor EOF.
fn still_open(held: &[std::net::TcpStream]) -> usize {
    held.iter()
        .filter(|s| {
            let mut one = [0u8; 1];
            s.set_nonblocking(true).is_ok()
                && matches!(s.peek(&mut one), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

/// Opens `n` keep-alive connections, one request each, and returns them (held open).
fn idle_connections(url: &str, n: usize) -> Result<Vec<std::net::TcpStream>, String> {
    use std::io::Read;
    let (addr, host, path) = stampd::client::http::split_url(url)?;
    let q = stampd::protocol::request::encode(
        stampd::protocol::HashAlg::Sha256,
        &[7; 32],
        None,
        None,
        false,
    );
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
        q.len()
    )
    .into_bytes();
    req.extend_from_slice(&q);
    let sock = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let limit = Some(Duration::from_secs(10));
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(10))
            .map_err(|e| format!("idle connection {i}: {e} (raise `ulimit -n`?)"))?;
        s.set_read_timeout(limit).map_err(|e| e.to_string())?;
        s.set_write_timeout(limit).map_err(|e| e.to_string())?;
        s.write_all(&req).map_err(|e| e.to_string())?;
        // The whole reply is read, so nothing is left to read while the connection idles.
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            match crate::client::parse(&buf) {
                Some(crate::client::Exchange::Reply { status: 200, .. }) => break,
                Some(_) => return Err(format!("idle connection {i}: no 200 reply")),
                None => {}
            }
            let got = s
                .read(&mut chunk)
                .map_err(|e| format!("idle connection {i}: {e}"))?;
            if got == 0 {
                return Err(format!("idle connection {i}: closed by the server"));
            }
            buf.extend_from_slice(&chunk[..got]);
        }
        held.push(s);
    }
    Ok(held)
}

fn args_of(case: &Case, url: &str) -> Vec<String> {
    let l = &case.load;
    let mut a = vec![
        "--url".to_string(),
        url.to_string(),
        "--connections".into(),
        l.connections.to_string(),
        "--duration".into(),
        l.duration.clone(),
        "--quiet".into(),
    ];
    for (flag, v) in [
        ("--warmup", l.warmup.clone()),
        ("--hash", l.hash.clone()),
        ("--cert-req", l.cert_req.map(|c| c.to_string())),
    ] {
        if let Some(v) = v {
            a.push(flag.into());
            a.push(v);
        }
    }
    a
}

/// Runs one case; writes `OUT/NAME.md`, `NAME.json` and `NAME.svg`. Exit 0 when every
/// threshold holds.
pub fn run(file: &Path, stampd: &Path, out: &Path) -> Result<ExitCode, String> {
    // Absolute: stampd and the setup run in the case's work directory.
    let stampd = &std::fs::canonicalize(stampd).map_err(|e| {
        format!(
            "{}: {e} (build it: cargo build --release)",
            stampd.display()
        )
    })?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let work =
        std::env::temp_dir().join(format!("stampd-case-{}-{}", case.name, std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = run_in(&case, stampd, out, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_in(case: &Case, stampd: &Path, out: &Path, work: &Path) -> Result<ExitCode, String> {
    if !case.setup.trim().is_empty() {
        let status = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &case.setup])
            .current_dir(work)
            .envs(&case.env)
            .env("STAMPD", stampd)
            .status()
            .map_err(|e| format!("setup: {e}"))?;
        if !status.success() {
            return Err(format!("the case's setup failed ({status})"));
        }
    }
    let server = start_stampd(stampd, work, case)?;
    println!("case {}: stampd at {}", case.name, server.url);
    let held = idle_connections(&server.url, case.load.idle_connections)?;
    if !held.is_empty() {
        println!("holding {} idle keep-alive connections", held.len());
    }
    let parse = |url: &str| -> Result<crate::LoadArgs, String> {
        use clap::Parser;
        let argv = ["stampd-loadtest".to_string()]
            .into_iter()
            .chain(args_of(case, url));
        crate::Cli::try_parse_from(argv)
            .map(|c| c.load)
            .map_err(|e| e.to_string())
    };
    let mut saturation = None;
    let rate = match case.load.rate_percent {
        Some(pct) => {
            let s = crate::measure(&parse(&server.url)?, None)?;
            let rate = s.throughput * pct / 100.0;
            println!(
                "saturation {:.0}/s; offering {pct}%: {rate:.0}/s",
                s.throughput
            );
            saturation = Some(s);
            Some(rate)
        }
        None => None,
    };
    let pid = server.child.id();
    let (summary, cpu_us) = load_measuring_cpu(&parse(&server.url)?, rate, pid)?;
    let rss = peak_rss_mib(pid);
    let open = still_open(&held);
    drop(held);
    drop(server);
    let t = &case.thresholds;
    // Measured only when it can be compared; a failure fails the check, not the report.
    // The responder runs the same load once stampd is gone; the raw rate is measured
    // last, on the idle machine.
    let responder = t
        .max_floor_ratio
        .and(cpu_us)
        .map(|_| -> Result<f64, String> {
            let r = start_responder()?;
            println!("case {}: trivial responder at {}", case.name, r.url);
            let (s, cpu) = load_measuring_cpu(&parse(&r.url)?, rate, r.child.id())?;
            cpu.filter(|_| s.errors == 0)
                .ok_or_else(|| format!("its CPU per reply is unknown ({} errors)", s.errors))
        });
    let raw_sign = t
        .min_raw_sign_ratio
        .or(t.max_floor_ratio)
        .and(cpu_us)
        .map(|_| raw_p256_sign_us());
    let measured = Measured {
        rss,
        cpu_us,
        raw_sign_us: raw_sign.as_ref().and_then(|r| r.as_ref().ok().copied()),
        responder_us: responder.as_ref().and_then(|r| r.as_ref().ok().copied()),
        saturation: saturation.as_ref(),
    };

    let l = &summary.latency_us;
    let checks: Vec<(String, bool)> = [
        t.max_errors.map(|m| {
            (
                format!("errors {} ≤ {m}", summary.errors),
                summary.errors <= m,
            )
        }),
        t.min_throughput.map(|m| {
            (
                format!("throughput {:.0}/s ≥ {m:.0}/s", summary.throughput),
                summary.throughput >= m,
            )
        }),
        t.max_p99_ms.map(|m| {
            let v = l.p99 as f64 / 1000.0;
            (format!("p99 {v:.2} ms ≤ {m} ms"), v <= m)
        }),
        t.max_p99_9_ms.map(|m| {
            let v = l.p99_9 as f64 / 1000.0;
            (format!("p99.9 {v:.2} ms ≤ {m} ms"), v <= m)
        }),
        t.min_raw_sign_ratio.map(|m| {
            match (
                measured.raw_sign_us.zip(cpu_us),
                measured.raw_sign_ratio(),
                &raw_sign,
            ) {
                (Some((raw, cpu)), Some(r), _) => (
                    format!(
                        "server CPU per reply {cpu:.1} µs against {raw:.1} µs per raw \
                             P-256 signature: {r:.3} × the raw rate per core ≥ {m}"
                    ),
                    r >= m,
                ),
                (.., Some(Err(e))) => (format!("raw signature rate not measured: {e}"), false),
                _ => (
                    "server CPU per reply unknown (no /proc, no replies, or no CPU tick)".into(),
                    false,
                ),
            }
        }),
        t.max_floor_ratio.map(
            |m| match (cpu_us, measured.floor_us(), measured.floor_ratio()) {
                (Some(cpu), Some(floor), Some(r)) => (
                    format!(
                        "server CPU per reply {cpu:.1} µs against the floor {floor:.1} µs \
                     (raw signature + trivial responder): {r:.3} × the floor ≤ {m}"
                    ),
                    r <= m,
                ),
                _ => {
                    let why = [
                        ("raw signature", &raw_sign),
                        ("trivial responder", &responder),
                    ]
                    .into_iter()
                    .find_map(|(what, r)| match r {
                        Some(Err(e)) => Some(format!("{what}: {e}")),
                        _ => None,
                    })
                    .unwrap_or_else(|| "server CPU per reply unknown".into());
                    (format!("floor not measured: {why}"), false)
                }
            },
        ),
        t.max_rss_mib.map(|m| match rss {
            Some(v) => (format!("peak RSS {v:.1} MiB ≤ {m} MiB"), v <= m),
            None => ("peak RSS unknown (no /proc)".into(), false),
        }),
        (case.load.idle_connections > 0).then(|| {
            (
                format!(
                    "idle connections still open at the end: {open} of {}",
                    case.load.idle_connections
                ),
                open == case.load.idle_connections,
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if checks.is_empty() {
        return Err("the case sets no thresholds: nothing would be checked".into());
    }
    let passed = checks.iter().all(|(_, ok)| *ok);
    write_report(case, out, &summary, &measured, &checks, passed)?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// µs per raw aws-lc-rs P-256 signature on one thread (stampd's software signer with a
/// fresh development key, over a 180-byte message like the signed attributes, as `cargo
/// bench -- sign/ecdsa-p256`): the median of ten 200 ms rounds.
fn raw_p256_sign_us() -> Result<f64, String> {
    use stampd::signer::TokenSigner;
    let signer =
        crate::responder::dev_p256_signer("raw-sign").map_err(|e| format!("raw sign: {e}"))?;
    let message = [0x31u8; 180];
    let mut rounds = Vec::new();
    for _ in 0..10 {
        let (started, mut n) = (Instant::now(), 0u32);
        while started.elapsed() < Duration::from_millis(200) {
            let r = signer.reserve().map_err(|e| format!("raw sign: {e}"))?;
            std::hint::black_box(
                signer
                    .sign(r, &message)
                    .map_err(|e| format!("raw sign: {e}"))?,
            );
            n += 1;
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    rounds.sort_by(f64::total_cmp);
    Ok(rounds[rounds.len() / 2])
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

/// What the runner measured besides the load generator's summary.
struct Measured<'a> {
    /// Peak RSS of stampd, MiB.
    rss: Option<f64>,
    /// stampd's CPU time per correct reply, µs.
    cpu_us: Option<f64>,
    /// One raw P-256 signature, µs (median), when the case compares with it.
    raw_sign_us: Option<f64>,
    /// The trivial responder's CPU per reply under the same load, µs, when the case
    /// compares with the floor.
    responder_us: Option<f64>,
    saturation: Option<&'a Summary>,
}

impl Measured<'_> {
    /// Replies per server core-second over raw signatures per core-second.
    fn raw_sign_ratio(&self) -> Option<f64> {
        self.raw_sign_us
            .zip(self.cpu_us)
            .map(|(raw, cpu)| raw / cpu)
    }

    /// The floor: a raw signature plus the trivial responder's CPU per reply, µs.
    fn floor_us(&self) -> Option<f64> {
        self.raw_sign_us
            .zip(self.responder_us)
            .map(|(raw, resp)| raw + resp)
    }

    /// Server CPU per reply over the floor.
    fn floor_ratio(&self) -> Option<f64> {
        self.cpu_us.zip(self.floor_us()).map(|(cpu, f)| cpu / f)
    }
}

/// Runs the load against `pid`'s server and returns the summary and the server's CPU per
/// correct reply (µs) over the measured part, after the warm-up; unknown when nothing was
/// measured (the clock counts 10 ms ticks).
fn load_measuring_cpu(
    args: &crate::LoadArgs,
    rate: Option<f64>,
    pid: u32,
) -> Result<(Summary, Option<f64>), String> {
    let warmup = args.warmup;
    let cpu_before = std::thread::spawn(move || {
        std::thread::sleep(warmup);
        cpu_time(pid)
    });
    let summary = crate::measure(args, rate)?;
    let cpu_before = cpu_before.join().ok().flatten();
    let cpu_us = cpu_before
        .zip(cpu_time(pid))
        .map(|(a, b)| b.saturating_sub(a))
        .filter(|c| summary.replies > 0 && !c.is_zero())
        .map(|c| c.as_secs_f64() * 1e6 / summary.replies as f64);
    Ok((summary, cpu_us))
}

fn write_report(
    case: &Case,
    out: &Path,
    s: &Summary,
    m: &Measured<'_>,
    checks: &[(String, bool)],
    passed: bool,
) -> Result<(), String> {
    let (saturation, rss) = (m.saturation, m.rss);
    let name = &case.name;
    let svg_path: PathBuf = out.join(format!("{name}.svg"));
    let points: Vec<Summary> = saturation.into_iter().cloned().chain([s.clone()]).collect();
    std::fs::write(
        &svg_path,
        report::sweep_svg(&points, &format!("case {name}")),
    )
    .map_err(|e| e.to_string())?;
    report::write_json(
        &out.join(format!("{name}.json")),
        &serde_json::json!({ "case": name, "passed": passed, "summary": s,
                             "saturation": saturation, "peak_rss_mib": rss,
                             "server_cpu_us_per_reply": m.cpu_us,
                             "raw_p256_sign_us": m.raw_sign_us,
                             "raw_sign_ratio": m.raw_sign_ratio(),
                             "responder_cpu_us_per_reply": m.responder_us,
                             "floor_us_per_reply": m.floor_us(),
                             "floor_ratio": m.floor_ratio() }),
    )?;
    let mut md = String::new();
    let l = &s.latency_us;
    md += &format!(
        "# Case `{name}`: {}\n\n{}\n\nMachine: {}. Date: {}.\n\n",
        if passed { "passed" } else { "FAILED" },
        case.description.trim(),
        machine(),
        time_now()
    );
    if let Some(sat) = saturation {
        md += &format!(
            "Saturation (closed loop, {} connections): {:.0} replies/s.\n\n",
            sat.connections, sat.throughput
        );
    }
    md += "| mode | connections | offered/s | replies/s | p50 | p90 | p99 | p99.9 | max | errors | peak RSS | server CPU/reply |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    md += &format!(
        "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} |\n\n",
        s.mode,
        s.connections,
        s.rate.map_or("-".into(), |r| format!("{r:.0}")),
        s.throughput,
        l.p50 as f64 / 1e3,
        l.p90 as f64 / 1e3,
        l.p99 as f64 / 1e3,
        l.p99_9 as f64 / 1e3,
        l.max as f64 / 1e3,
        s.errors,
        rss.map_or("-".into(), |r| format!("{r:.1} MiB")),
        m.cpu_us.map_or("-".into(), |c| format!("{c:.1} µs"))
    );
    if let (Some(raw), Some(cpu), Some(ratio)) = (m.raw_sign_us, m.cpu_us, m.raw_sign_ratio()) {
        md += &format!(
            "Raw aws-lc-rs P-256 signature on this machine, measured right after the load: \
             {raw:.1} µs ({:.0}/s per core). stampd used {cpu:.1} µs of CPU per reply \
             ({:.0} replies per core-second): {ratio:.2} × the raw rate.\n\n",
            1e6 / raw,
            1e6 / cpu,
        );
    }
    if let (Some(raw), Some(resp), Some(cpu), Some(ratio)) =
        (m.raw_sign_us, m.responder_us, m.cpu_us, m.floor_ratio())
    {
        md += &format!(
            "Floor, measured in this run: a raw signature ({raw:.1} µs) plus the trivial \
             responder's CPU per reply under the same load ({resp:.1} µs: stampd's HTTP front \
             end and token encoding, no signature, no audit) = {:.1} µs. stampd's \
             {cpu:.1} µs per reply is {ratio:.3} × the floor.\n\n",
            raw + resp
        );
    }
    md += &format!(
        "Load: {} s measured after {} warm-up; request mix: hash {}, certReq share {}.\n\n",
        s.duration_s,
        case.load.warmup.as_deref().unwrap_or("no"),
        case.load.hash.as_deref().unwrap_or("sha256"),
        case.load.cert_req.unwrap_or(0.0)
    );
    for (kind, n) in &s.errors_by_kind {
        md += &format!("- error `{kind}`: {n}\n");
    }
    md += "\nThresholds:\n\n";
    for (what, ok) in checks {
        md += &format!("- {} {what}\n", if *ok { "pass:" } else { "FAIL:" });
    }
    std::fs::write(
        out.join(format!("{name}-percentiles.svg")),
        report::percentile_svg(&s.histogram, &format!("case {name}: latency by percentile")),
    )
    .map_err(|e| e.to_string())?;
    md += &format!(
        "\n![latency against throughput]({name}.svg)\n\n![latency by percentile]({name}-percentiles.svg)\n"
    );
    std::fs::write(out.join(format!("{name}.md")), md).map_err(|e| e.to_string())?;
    println!(
        "case {name}: {} (report in {})",
        if passed { "passed" } else { "FAILED" },
        out.join(format!("{name}.md")).display()
    );
    Ok(())
}

fn time_now() -> String {
    let d = time::OffsetDateTime::from(stampd::clock::wall_now());
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
