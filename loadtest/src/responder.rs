//! A trivial responder for measuring the load generator itself: stampd's own HTTP front end
//! and token encoding, with a development key whose signer does not sign (`NoSign`), no
//! audit trail and no pre-filters. Replies are well-formed, echo nonces and imprints, and
//! cost the server about 1.5 µs plus HTTP; their signatures do not verify.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use stampd::frontend::config::Listener;
use stampd::signer::{software::SoftwareSigner, NoSign};

/// A software signer with a fresh development P-256 key (made in a temporary directory,
/// removed once the key is loaded): the responder's, and the case runner's raw sign rate.
pub fn dev_p256_signer(name: &str) -> Result<SoftwareSigner, String> {
    let dir = std::env::temp_dir().join(format!("stampd-loadtest-{name}-{}", std::process::id()));
    let pki = stampd::pki::DevPki::in_dir(&dir);
    let signer = pki
        .create(stampd::pki::KeyType::P256)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let now = stampd::clock::TimeSource::now(&stampd::clock::SystemClock)
                .map_err(|_| "the system clock is unusable".to_string())?
                .time;
            SoftwareSigner::load(
                name,
                &pki.tsa_key,
                &pki.tsa_cert,
                stampd::signer::software::RsaPadding::Pkcs1,
                now,
            )
            .map_err(|e| e.to_string())
        });
    let _ = std::fs::remove_dir_all(&dir);
    signer
}

pub fn serve(listen: SocketAddr, cores: usize) -> Result<ExitCode, String> {
    let signer = dev_p256_signer("responder")?;
    let tsa = Arc::new(stampd::policy::Tsa::single(
        "responder",
        Arc::new(NoSign(signer)),
    ));
    let running = stampd::frontend::start(
        stampd::policy::current::Current::new(tsa),
        vec![Listener {
            addr: listen,
            routes: vec![("/tsa".to_string(), 0)],
            probes: stampd::frontend::config::Probes::ALL,
            tls: None,
        }],
        stampd::frontend::Settings {
            cores,
            dispatch: stampd::frontend::config::Dispatch::Inline,
            workers: 0,
            queue_capacity: 1,
            io_driver: stampd::frontend::config::IoDriver::Auto,
            http: stampd::frontend::config::HttpConfig::default(),
            // The trivial responder keeps no audit trail: it is the floor stampd is measured
            // against.
            audit: std::sync::Arc::new(stampd::audit::Discard),
        },
    )
    .map_err(|e| e.to_string())?;
    for addr in &running.addrs {
        println!("stampd-loadtest responder: http://{addr}/tsa (tokens are not signed)");
    }
    running.wait();
    Ok(ExitCode::SUCCESS)
}
