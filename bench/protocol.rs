//! Micro benchmarks of the hot stages (see bench/README.md for what each measures).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use stampd::audit::Discard;
use stampd::clock::monitor::{Monitor, Taken};
use stampd::clock::SystemClock;
use stampd::clock::TimeSource;
use stampd::pki::{DevPki, KeyType};
use stampd::policy::preprocess::clock::ClockConfig;
use stampd::policy::{Policy, RequestMeta, Service, Tsa};
use stampd::protocol::oid::Oid;
use stampd::protocol::token::{self, Accuracy, IncludeCerts, PolicyTemplate};
use stampd::protocol::{request, HashAlg, Precision};
use stampd::serial::SerialSpace;
use stampd::signer::software::{RsaPadding, SoftwareSigner};
use stampd::signer::{NoSign, TokenSigner};

fn signer(key: KeyType, padding: RsaPadding) -> (SoftwareSigner, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::in_dir(dir.path());
    pki.create(key).unwrap();
    let now = SystemClock.now().unwrap().time;
    let s = SoftwareSigner::load("bench", &pki.tsa_key, &pki.tsa_cert, padding, now).unwrap();
    (s, dir)
}

/// The fixed request every benchmark uses: SHA-256 imprint, 64-bit nonce.
fn query(cert_req: bool) -> Vec<u8> {
    request::encode(
        HashAlg::Sha256,
        &[7; 32],
        None,
        Some(&[1, 2, 3, 4, 5, 6, 7, 8]),
        cert_req,
    )
}

fn policy_template() -> PolicyTemplate {
    let oid = Oid::parse("2.999.1.1").unwrap();
    PolicyTemplate::new(
        &oid,
        Accuracy::from_micros(1_000_000),
        Precision::Millis,
        stampd::protocol::token::TsaName::Subject,
        IncludeCerts::Chain,
        false,
    )
    .unwrap()
}

fn bench_decode(c: &mut Criterion) {
    let body = query(true);
    c.bench_function("request_decode", |b| {
        b.iter(|| {
            let req = request::decode(black_box(&body)).unwrap();
            black_box(request::check_imprint(&req).unwrap());
        })
    });
}

fn bench_encode(c: &mut Criterion) {
    let (s, _dir) = signer(KeyType::P256, RsaPadding::Pkcs1);
    let template = s.template();
    let policy = policy_template();
    let now = SystemClock.now().unwrap().time;
    let fake_signature = [0x30u8; 71];
    // No extensions of a request's own, as with the standard chain.
    let none = token::Extensions::default();
    for cert_req in [false, true] {
        let body = query(cert_req);
        let req = request::decode(&body).unwrap();
        let serial = [0x12u8; 18];
        c.bench_function(&format!("token_encode_no_sign/cert_req={cert_req}"), |b| {
            b.iter(|| {
                let p = token::prepare(template, &policy, black_box(&req), &serial, now, &none)
                    .unwrap();
                black_box(token::finish(template, &policy, &p, &fake_signature));
            })
        });
        // The two halves: TSTInfo with the signed attributes (message digest included),
        // then the SignedData and TimeStampResp around a signature.
        c.bench_function(&format!("tstinfo_signed_attrs/cert_req={cert_req}"), |b| {
            b.iter(|| {
                black_box(token::prepare(
                    template,
                    &policy,
                    black_box(&req),
                    &serial,
                    now,
                    &none,
                ))
            })
        });
        let p = token::prepare(template, &policy, &req, &serial, now, &none).unwrap();
        c.bench_function(&format!("response_envelope/cert_req={cert_req}"), |b| {
            b.iter(|| {
                black_box(token::finish(
                    template,
                    &policy,
                    black_box(&p),
                    &fake_signature,
                ))
            })
        });
    }
}

fn bench_sign(c: &mut Criterion) {
    let message = [0x31u8; 180]; // about the size of the signed attributes
    for (name, key, padding) in [
        ("ecdsa-p256", KeyType::P256, RsaPadding::Pkcs1),
        ("ecdsa-p384", KeyType::P384, RsaPadding::Pkcs1),
        ("ed25519", KeyType::Ed25519, RsaPadding::Pkcs1),
        ("rsa2048-pkcs1", KeyType::Rsa2048, RsaPadding::Pkcs1),
        ("rsa2048-pss", KeyType::Rsa2048, RsaPadding::Pss),
        ("rsa3072-pkcs1", KeyType::Rsa3072, RsaPadding::Pkcs1),
    ] {
        let (s, _dir) = signer(key, padding);
        c.bench_function(&format!("sign/{name}"), |b| {
            b.iter(|| {
                let r = s.reserve().unwrap();
                black_box(s.sign(r, black_box(&message)).unwrap());
            })
        });
    }
}

/// The clock as a served TSA reads it: the sync monitor's published verdict (`sync =
/// "none"`, its thread running, so the verdict does not expire during a long run).
fn monitored_clock() -> Arc<dyn TimeSource> {
    let mut monitor = Monitor::new(
        &stampd::clock::config::ClockConfig::default(),
        Box::new(|_| Taken::Done),
    );
    monitor.poll();
    let clock = Arc::new(monitor.clock());
    monitor.spawn().unwrap();
    clock
}

/// One genTime reading: the bare system clock against the verdict's checks (expiry, step
/// back, leap window) on top of it.
fn bench_clock(c: &mut Criterion) {
    c.bench_function("clock/system", |b| b.iter(|| black_box(SystemClock.now())));
    let trusted = monitored_clock();
    c.bench_function("clock/trusted", |b| b.iter(|| black_box(trusted.now())));
}

/// The standard chain (all filters, clock pre-filter) over `signer`, reading the
/// [`monitored_clock`].
fn standard_tsa(signer: Arc<dyn TokenSigner>) -> Tsa {
    let oid = Oid::parse("2.999.1.1").unwrap();
    let clock = monitored_clock();
    Tsa {
        services: vec![Service {
            name: "bench".into(),
            signer,
            policies: vec![Policy::simple(
                "p",
                oid,
                vec![HashAlg::Sha256],
                policy_template(),
            )],
            fallback: None,
            preprocess: vec![Arc::new(
                ClockConfig::default().build("clock", clock.clone()),
            )],
            status_text: true,
            switch: stampd::policy::switch::Switches::default().of("bench"),
            public_pages: false,
            protocol: stampd::policy::config::Protocol::Rfc3161,
        }],
        clock,
        serials: Arc::new(SerialSpace::ephemeral(1, 0)),
        audit: Arc::new(Discard),
        signers: Vec::new(),
    }
}

fn bench_issue(c: &mut Criterion) {
    let (s, _dir) = signer(KeyType::P256, RsaPadding::Pkcs1);
    let (s2, _dir2) = signer(KeyType::P256, RsaPadding::Pkcs1);
    let real = standard_tsa(Arc::new(s));
    let no_sign = standard_tsa(Arc::new(NoSign(s2)));
    let meta = RequestMeta::local("/tsa");
    for cert_req in [false, true] {
        let body = query(cert_req);
        c.bench_function(
            &format!("issue_p256_end_to_end_no_http/cert_req={cert_req}"),
            |b| b.iter(|| black_box(real.issue(0, black_box(&body), &meta))),
        );
        c.bench_function(
            &format!("standard_chain_no_sign/cert_req={cert_req}"),
            |b| b.iter(|| black_box(no_sign.issue(0, black_box(&body), &meta))),
        );
    }
}

/// The queue hand-off (`dispatch = "queue"`): a request into the bounded queue, a worker
/// thread issuing it (standard chain, no signature) and the reply back through its oneshot,
/// against the same issue inline. The difference is the hand-off's cost per request.
fn bench_handoff(c: &mut Criterion) {
    let (s, _dir) = signer(KeyType::P256, RsaPadding::Pkcs1);
    let tsa = Arc::new(standard_tsa(Arc::new(NoSign(s))));
    let (queue, _workers) =
        stampd::pipeline::start(stampd::policy::current::Current::new(tsa.clone()), 1, 1024)
            .unwrap();
    let body = query(false);
    let meta = RequestMeta::local("/tsa");
    c.bench_function("handoff/inline_no_sign", |b| {
        b.iter(|| black_box(tsa.issue(0, black_box(&body), &meta)))
    });
    c.bench_function("handoff/queue_round_trip_no_sign", |b| {
        b.iter(|| {
            let (tx, mut rx) = futures_channel::oneshot::channel();
            let env = stampd::pipeline::Envelope {
                shard: None,
                service: 0,
                body: body.clone(),
                client: std::net::IpAddr::from([127, 0, 0, 1]),
                path: "/tsa".into(),
                head: Vec::new(),
                client_subject: None,
                reply: tx,
            };
            assert!(queue.try_submit(env).is_ok());
            loop {
                match rx.try_recv() {
                    Ok(Some(reply)) => break black_box(reply),
                    Ok(None) => std::hint::spin_loop(),
                    Err(_) => panic!("worker gone"),
                }
            }
        })
    });
}

criterion_group!(
    benches,
    bench_decode,
    bench_clock,
    bench_encode,
    bench_sign,
    bench_issue,
    bench_handoff
);
criterion_main!(benches);
