//! The audit trail's hot stages: building a record's bytes, and committing batches to the
//! journal (one write + one fdatasync per batch, on the disk under `target/`).

use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stampd::audit::journal::{Journal, Settings};
use stampd::audit::Record;
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
        max_torn_tail: 16 << 20,
        max_bytes: None,
        min_free_bytes: 0,
    })
    .unwrap();
    let mut g = c.benchmark_group("audit/journal_commit");
    for size in [1usize, 64] {
        let batch: Vec<Record> = (0..size as u64).map(record).collect();
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(format!("batch={size}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |batch| journal.append(&batch).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
