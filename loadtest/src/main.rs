//! `stampd-loadtest`: load for any RFC 3161 HTTP timestamp server, with every reply checked.
#![forbid(unsafe_code)]

mod case;
mod check;
mod client;
mod mix;
mod report;
mod responder;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "stampd-loadtest",
    version,
    about = "Load generator for RFC 3161 timestamp servers (any server, over HTTP)",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Steps the offered rate up to saturation (open loop) and draws the
    /// throughput–latency curve.
    Sweep {
        #[command(flatten)]
        load: Box<LoadArgs>,
        /// Offered rates as percentages of the saturation throughput, which a closed-loop
        /// run measures first.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,25,50,70,80,90,100,110"
        )]
        steps: Vec<f64>,
        /// Where to write the curve (SVG).
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Runs a named scenario (loadtest/cases/*.toml): starts stampd with the case's
    /// configuration, measures, and writes a report (markdown, JSON, SVG). Exit 0 when
    /// every threshold holds.
    Case {
        /// The case file.
        file: PathBuf,
        /// The stampd binary to start.
        #[arg(long, default_value = "target/release/stampd")]
        stampd: PathBuf,
        /// Where the report goes.
        #[arg(long, default_value = "target/loadtest-reports")]
        out: PathBuf,
    },
    /// A trivial responder: stampd's HTTP front end and token encoding with a signer that
    /// does not sign (its tokens do not verify). Measures the load generator's own ceiling.
    Responder {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3181")]
        listen: std::net::SocketAddr,
        /// Frontend cores (0: all).
        #[arg(long, default_value_t = 0)]
        cores: usize,
    },
}

#[derive(clap::Args, Clone)]
struct LoadArgs {
    /// The timestamp service, e.g. http://127.0.0.1:3180/tsa (http only).
    #[arg(long, required = true)]
    url: Option<String>,
    /// Concurrent keep-alive connections (closed loop: concurrent requesters).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to measure, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before measuring (not counted), e.g. 1s.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Open loop: requests per second over all connections, sent on schedule; latency
    /// counts from the intended send time. Without it: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Load threads (one runtime each); 0: one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// A request (connect, send and reply) taking longer fails as `timeout`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Message imprint hash algorithms, used in turn (sha256, sha384, sha512, sha3-256, ...).
    #[arg(long, default_value = "sha256")]
    hash: String,
    /// Share of requests asking for the TSA certificate (certReq), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    cert_req: f64,
    /// Send no nonces.
    #[arg(long)]
    no_nonce: bool,
    /// Requested policy OIDs, used in turn (comma-separated). Default: none.
    #[arg(long)]
    policy: Option<String>,
    /// Share of replies whose token is verified fully (signature, ESS, chain), 0 to 1.
    /// Needs --ca.
    #[arg(long, default_value_t = 0.0, requires = "ca")]
    verify_sample: f64,
    /// Trusted CA certificate(s) for --verify-sample (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Certificates that may complete the chain, e.g. the TSA certificate for replies
    /// without certReq (PEM).
    #[arg(long)]
    untrusted: Option<PathBuf>,
    /// Write the summary as JSON (throughput, errors, latency percentiles...).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write per-second latency histograms as an HdrHistogram interval log.
    #[arg(long)]
    hdr_log: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("`{s}`: give a unit (ms, s, m)"))?;
    let n: f64 = n.parse().map_err(|_| format!("`{s}`: not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: units are ms, s and m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}`: out of range"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_once(&cli.load).map(|s| exit_code(&s)),
        Some(Command::Sweep { load, steps, svg }) => sweep(&load, &steps, svg.as_deref()),
        Some(Command::Responder { listen, cores }) => responder::serve(listen, cores),
        Some(Command::Case { file, stampd, out }) => case::run(&file, &stampd, &out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stampd-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}

/// 0 when every request got a correct reply, 1 otherwise.
fn exit_code(s: &report::Summary) -> ExitCode {
    if s.errors == 0 && s.replies > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_certs(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    stampd::signer::software::pem_blocks(&text, "CERTIFICATE")
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn plan(a: &LoadArgs, rate: Option<f64>) -> Result<client::Plan, String> {
    let url = a.url.as_deref().ok_or("--url is required")?;
    let (addr, host, path) = stampd::client::http::split_url(url)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if let Some(r) = rate {
        // Each connection's gap between sends must be a real duration.
        let gap = Duration::try_from_secs_f64(a.connections as f64 / r).ok();
        if !(r > 0.0 && gap.is_some_and(|g| g >= Duration::from_micros(1))) {
            return Err("--rate must be positive, and at most 1,000,000 per connection".into());
        }
    }
    if a.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    if !(0.0..=1.0).contains(&a.verify_sample) {
        return Err("--verify-sample is a share between 0 and 1".into());
    }
    let trust = match &a.ca {
        Some(ca) => Some(Arc::new(check::Trust {
            anchors: read_certs(ca)?,
            extra: a
                .untrusted
                .as_deref()
                .map(read_certs)
                .transpose()?
                .unwrap_or_default(),
        })),
        None => None,
    };
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Ok(client::Plan {
        addr,
        host,
        path,
        connections: a.connections,
        threads: threads.min(a.connections),
        warmup: a.warmup,
        duration: a.duration,
        rate,
        timeout: a.timeout,
        mix: mix::Mix::parse(&a.hash, a.cert_req, !a.no_nonce, a.policy.as_deref())?,
        verify_every: if a.verify_sample > 0.0 {
            (1.0 / a.verify_sample).round().max(1.0) as u64
        } else {
            0
        },
        trust,
    })
}

/// One measurement with a live progress line; prints the table and writes the files.
fn measure(a: &LoadArgs, rate: Option<f64>) -> Result<report::Summary, String> {
    let plan = Arc::new(plan(a, rate)?);
    let progress = Arc::new(client::Progress::default());
    let started = stampd::clock::wall_now();
    let start = Instant::now();
    let total = plan.warmup + plan.duration;
    let warmup = plan.warmup;
    let printer = (!a.quiet).then(|| {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            let (mut last_ok, mut tick) = (0, 1u64);
            loop {
                let at = start + Duration::from_secs(tick);
                if at > start + total {
                    break;
                }
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let ok = progress.ok.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                let phase = if Duration::from_secs(tick) <= warmup {
                    " (warm-up)"
                } else {
                    ""
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r[{tick:>4} s] {:>9} replies/s  {ok:>10} replies  {errors:>6} errors{phase}   ",
                    ok - last_ok
                );
                let _ = err.flush();
                last_ok = ok;
                tick += 1;
            }
            eprintln!();
        })
    });
    let stats = client::run(Arc::clone(&plan), progress, start)?;
    if let Some(p) = printer {
        let _ = p.join();
    }
    let url = a.url.as_deref().unwrap_or_default();
    let summary = report::Summary::new(url, plan.connections, rate, plan.duration, &stats);
    report::table(&summary, &mut std::io::stdout().lock()).map_err(|e| e.to_string())?;
    if let Some(path) = &a.hdr_log {
        // The log's intervals start when the measurement does, after the warm-up.
        report::write_hdr_log(path, started + plan.warmup, &stats)?;
    }
    Ok(summary)
}

fn run_once(a: &LoadArgs) -> Result<report::Summary, String> {
    let summary = measure(a, a.rate)?;
    if let Some(path) = &a.json {
        report::write_json(path, &summary)?;
    }
    Ok(summary)
}

fn sweep(a: &LoadArgs, steps: &[f64], svg: Option<&std::path::Path>) -> CmdResult {
    if steps.is_empty() || steps.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
        return Err("--steps are positive percentages".into());
    }
    if a.rate.is_some() {
        return Err("sweep sets the rates itself (--steps): leave out --rate".into());
    }
    println!("saturation (closed loop, {} connections):", a.connections);
    let saturation = measure(a, None)?;
    if saturation.throughput <= 0.0 {
        return Err("no correct replies at saturation: nothing to sweep".into());
    }
    let mut points = Vec::new();
    for pct in steps {
        let rate = saturation.throughput * pct / 100.0;
        println!("\n{pct}% of saturation: {rate:.0} requests/s offered");
        points.push(measure(a, Some(rate))?);
    }
    if let Some(path) = svg {
        let title = format!(
            "{} — saturation {:.0}/s, {} connections",
            a.url.as_deref().unwrap_or_default(),
            saturation.throughput,
            a.connections
        );
        std::fs::write(path, report::sweep_svg(&points, &title))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &a.json {
        report::write_json(
            path,
            &serde_json::json!({ "saturation": saturation, "steps": points }),
        )?;
    }
    let errors: u64 = points.iter().map(|p| p.errors).sum::<u64>() + saturation.errors;
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

type CmdResult = Result<ExitCode, String>;
