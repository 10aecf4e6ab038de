//! The audit trail's hot stages: building a record's bytes, and committing batches to the
//! journal (one write + one fdatasync per batch, on the disk under `target/`); then the
//! audit path alone, without signing, at one producer per core: records/s with one
//! journal shard per producer (each committed on its producer's ring) against one shard
//! committed by one writer thread that every producer hands records to (the serial stage
//! the shards remove).
//!
//!   [STAMPD_BENCH_JOURNAL=/dev/shm] cargo bench --bench audit [-- --scaling-only]

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use stampd::audit::journal::budget::DiskBudget;
use stampd::audit::journal::{Journal, Ring, Settings};
use stampd::audit::{AuditConfig, Placement, Record};
use stampd::outcome::Outcome;
use stampd::protocol::{HashAlg, Timestamp};

/// A record as the embedded default writes it: the standard chain keeps the response
/// (about 650 bytes for a P-256 token without certificates).
fn record(n: u64) -> Record {
    let mut serial = [0u8; 18];
    serial[10..].copy_from_slice(&n.to_be_bytes());
    Record {
        time: Timestamp {
            unix_secs: 1_795_000_000,
            nanos: 123_000_000,
        },
        outcome: Outcome::Granted { serial },
        service: Arc::from("default"),
        policy: Some(Arc::from("default")),
        policy_oid: Some(Arc::from("2.999.1.1")),
        hash: Some(HashAlg::Sha256),
        imprint: Some(vec![7; 32]),
        nonce: Some(n.to_be_bytes().to_vec()),
        cert_req: false,
        client: Some(IpAddr::from([127, 0, 0, 1])),
        key_id: Some(Arc::from("08af29805fbb1428")),
        latency_us: 40,
        request: None,
        response: Some(vec![0x5a; 650]),
        request_digest: None,
        client_subject: None,
        authenticode: false,
    }
}

fn bench(c: &mut Criterion) {
    let r = record(1);
    let mut out = Vec::with_capacity(1024);
    c.bench_function("audit/record_encode", |b| {
        b.iter(|| {
            out.clear();
            r.encode(&mut out);
            out.len()
        })
    });

    let dir = tempfile::Builder::new()
        .prefix("stampd-bench-journal")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let (mut journal, _) = Journal::open(Settings {
        dir: dir.path().to_path_buf(),
        segment_bytes: 1 << 30,
        retention: None,
        checkpoint_every: 10_000,
        checkpoint_interval: None,
        anchor: Default::default(),
        max_torn_tail: 16 << 20,
        budget: Arc::new(DiskBudget::new(dir.path(), None, 0)),
    })
    .unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .build()
        .unwrap();
    let mut ring = Ring::default();
    let mut g = c.benchmark_group("audit/journal_commit");
    for size in [1usize, 64] {
        let batch: Vec<Record> = (0..size as u64).map(record).collect();
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(format!("batch={size}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |batch| rt.block_on(journal.append(&mut ring, &batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Records in flight per producer (as many requests as a core has waiting on their batch).
const IN_FLIGHT: usize = 64;

/// Where the scaling runs keep their journals: `STAMPD_BENCH_JOURNAL` (e.g. a tmpfs, where
/// fdatasync costs nothing and the figures are the path's own CPU), else under `target/`.
fn scaling_dir() -> std::path::PathBuf {
    std::env::var_os("STAMPD_BENCH_JOURNAL")
        .map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), Into::into)
}

/// This process's CPU time (user + system) so far, from `/proc/self/stat` (10 ms ticks).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(") ").map_or("", |i| &stat[i + 2..]);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) * 10)
}

/// What one scaling run measured.
struct Rate {
    records_per_s: f64,
    /// The whole process's CPU (producers, committers, the kernel's io_uring workers) per
    /// record.
    cpu_us: f64,
}

/// Group-commit records/s of `producers` threads (each with a monoio runtime, like a
/// frontend core, io_uring when the kernel has it) submitting for `secs` to a journal of
/// `shards` shards committed where `placement` says.
fn records_per_second(producers: usize, shards: usize, placement: Placement, secs: f64) -> Rate {
    let dir = tempfile::Builder::new()
        .prefix("stampd-bench-shards")
        .tempdir_in(scaling_dir())
        .unwrap();
    let sink = AuditConfig::default()
        .start(dir.path(), None, shards, placement, 0, &Default::default())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (counted, counts) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..producers)
        .map(|core| {
            let (sink, stop, counted) = (sink.clone(), stop.clone(), counted.clone());
            std::thread::spawn(move || {
                let body = async move {
                    let committer = sink.attach(core).map(monoio::spawn);
                    let tasks: Vec<_> = (0..IN_FLIGHT)
                        .map(|t| {
                            let (sink, stop) = (sink.clone(), stop.clone());
                            monoio::spawn(async move {
                                let mut n = 0u64;
                                while !stop.load(Ordering::Relaxed) {
                                    let committed = match sink.submit(record(t as u64), true) {
                                        Ok(Some(d)) => d.await == Ok(true),
                                        _ => false,
                                    };
                                    if committed {
                                        n += 1;
                                    } else {
                                        // Refused (inbox full): back off as a client would.
                                        monoio::time::sleep(Duration::from_micros(50)).await;
                                    }
                                }
                                n
                            })
                        })
                        .collect();
                    let mut n = 0;
                    for t in tasks {
                        n += t.await;
                    }
                    counted.send(n).unwrap();
                    if let Some(c) = committer {
                        c.await;
                    }
                };
                monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap()
                    .block_on(body)
            })
        })
        .collect();
    let (started, cpu) = (Instant::now(), process_cpu());
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = (0..producers).map(|_| counts.recv().unwrap()).sum();
    let (elapsed, cpu) = (started.elapsed().as_secs_f64(), process_cpu() - cpu);
    assert!(sink.flush_and_stop());
    for t in threads {
        t.join().unwrap();
    }
    Rate {
        records_per_s: total as f64 / elapsed,
        cpu_us: cpu.as_secs_f64() * 1e6 / total.max(1) as f64,
    }
}

#[allow(clippy::print_stdout, reason = "a benchmark's report is its output")]
/// Prints records/s and the process's CPU per record for 1..=cores producers: one shard per
/// producer on its ring, and one shard on a writer thread. 1 / (CPU per record) is the
/// projected ceiling of one core spent on nothing but the audit path.
fn scaling() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "audit path alone, group commit, {IN_FLIGHT} in flight per producer, 3 s each, \
         journals under {}:",
        scaling_dir().display()
    );
    println!(
        "| producers | one shard per producer, on its ring | CPU per record | \
         one writer thread | CPU per record | records/s ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let mut counts: Vec<usize> = vec![1, 2, 4, 8, 16]
        .into_iter()
        .filter(|&n| n <= cores)
        .collect();
    if !counts.contains(&cores) {
        counts.push(cores);
    }
    for producers in counts {
        let sharded = records_per_second(producers, producers, Placement::Cores, 3.0);
        let single = records_per_second(producers, 1, Placement::Threads, 3.0);
        println!(
            "| {producers} | {:.0} records/s | {:.2} µs | {:.0} records/s | {:.2} µs | {:.2} |",
            sharded.records_per_s,
            sharded.cpu_us,
            single.records_per_s,
            single.cpu_us,
            sharded.records_per_s / single.records_per_s
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    if !std::env::args().any(|a| a == "--scaling-only") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    scaling();
}
