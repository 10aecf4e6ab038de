//! `stampd serve`: build the configured services and run them until a signal stops them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::reload::Reloader;
use super::{load_config, located, say, CmdResult};
use crate::config::{build, Config};
use crate::error::Error;
use crate::pki::DevPki;
use crate::policy::current::Current;

pub(super) fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    admin_listen: Option<String>,
) -> CmdResult {
    let mut cfg = match &config {
        Some(p) => load_config(p)?,
        None => Config::default(),
    };
    // The command line's overrides, applied again to every reloaded file.
    let overrides = move |cfg: &mut Config| {
        if let Some(d) = &data_dir {
            cfg.server.data_dir = d.clone();
        }
        if let Some(l) = &listen {
            for s in &mut cfg.service {
                s.listen = crate::policy::config::OneOrMany::One(l.clone());
            }
        }
        if let Some(a) = &admin_listen {
            cfg.admin.listen = a.clone();
        }
    };
    overrides(&mut cfg);
    let origin = config
        .as_ref()
        .map_or("the embedded default".to_string(), |p| {
            p.display().to_string()
        });
    let valid = cfg.validate_as(&origin).map_err(|e| match (&config, e) {
        (Some(p), Error::Config(msg)) => {
            format!(
                "invalid configuration:\n  {}",
                located(p, &msg).join("\n  ")
            )
        }
        (_, e) => format!("invalid configuration:\n{e}"),
    })?;
    let built = build::build(&valid).map_err(|e| e.to_string())?;
    let settings = crate::frontend::Settings {
        cores: cfg.server.cores,
        dispatch: cfg.dispatch(),
        workers: cfg.workers(),
        queue_capacity: cfg.server.queue_capacity,
        io_driver: cfg.server.io_driver,
        http: cfg.server.http.clone(),
        audit: built.audit.clone(),
    };
    let listeners = built.listeners.clone();
    let current = Current::new(built.tsa.clone());
    // The journals' checkpoints are stamped by the TSA as it serves (reloads included).
    if let Some(anchor) = &built.anchor {
        let serving = current.clone();
        anchor.set(Box::new(move |hash| {
            crate::audit::capturing(|| serving.load().stamp_chain(hash))
        }));
    }
    let running = crate::frontend::start(current.clone(), built.listeners, settings)
        .map_err(|e| e.to_string())?;
    watch_expiry(current.clone(), cfg.server.cert_expiry_warning_days)?;
    let reloader = Reloader {
        file: config.clone(),
        overrides: Box::new(overrides),
        current,
        kept: built.kept.clone(),
        running: valid.clone(),
    };
    reloader.write_pid_file();
    let readiness = reloader.current.clone();
    let reloader = Arc::new(Mutex::new(reloader));
    // A node that lost its id stops as SIGTERM stops it (drain, audit flush), unless it is
    // stopping already (a second SIGTERM would skip the flush).
    let lease = match built.claim {
        Some(claim) => {
            let drain = running.drain();
            let lost = Box::new(move |_why: String| {
                if !drain.is_draining() {
                    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
                }
            });
            Some(
                claim
                    .hold(built.audit.clone(), lost)
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    handle_signals(
        reloader.clone(),
        built.audit.clone(),
        lease,
        running.drain(),
        Duration::from_millis(cfg.server.drain_timeout_ms),
    )?;
    let mut endpoints = Vec::new();
    for (l, addr) in listeners.iter().zip(&running.addrs) {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        for (path, service) in &l.routes {
            let url = format!("{scheme}://{addr}{path}");
            endpoints.push(crate::admin::Endpoint {
                service: built.tsa.services[*service].name.clone(),
                url,
            });
        }
    }
    if let Some(admin) = valid.admin.clone() {
        let users = crate::admin::auth::Users::load(&cfg.admin.user, &built.data_dir)?;
        let token_file = users.token_file.clone();
        let journal = (cfg.audit.store == crate::audit::StoreKind::Journal)
            .then(|| valid.journal_dir.clone());
        let reload: crate::admin::Reload = Box::new(move |who: &str| {
            reloader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reload_as(who)
        });
        let parts = crate::admin::Parts {
            current: readiness.clone(),
            probe: running.probe(),
            endpoints: endpoints.clone(),
            journal,
            reload,
            users,
            session_minutes: cfg.admin.session_minutes,
        };
        let scheme = if admin.tls.is_some() { "https" } else { "http" };
        let bound = crate::admin::start(&admin, parts).map_err(|e| e.to_string())?;
        say!("stampd: admin on {scheme}://{bound}/ (web interface, /api/, /metrics, /health, /ready)");
        if let Some(f) = token_file {
            say!(
                "stampd: log in at {scheme}://{bound}/login with the token in {}",
                f.display()
            );
        }
    }
    let pki = DevPki::in_dir(&built.data_dir);
    for e in &endpoints {
        say!("stampd: serving {} ({} driver)", e.url, running.driver);
    }
    if let (Some(addr), Some((path, _))) = (running.addrs.first(), listeners[0].routes.first()) {
        if pki.ca_cert.exists() {
            say!(
                "\nTry it:\n  echo hello > data.txt\n  openssl ts -query -data data.txt -sha256 -cert -out req.tsq\n  \
                 curl -s -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq http://{addr}{path} -o resp.tsr\n  \
                 openssl ts -verify -in resp.tsr -queryfile req.tsq -CAfile {}\n",
                pki.ca_cert.display()
            );
        }
    }
    notify_when_ready(readiness);
    running.wait();
    // The cores end only when a drain has closed their connections; the signal thread then
    // commits the audit trail and ends the process. Returning here would end it first.
    loop {
        std::thread::park();
    }
}

/// Under systemd (`$NOTIFY_SOCKET`): `READY=1` once every listener is bound (they are, when
/// this runs) and the signers, the clock and the audit trail are ready (`/ready`); until
/// then `STATUS=` says what is missing.
fn notify_when_ready(current: std::sync::Arc<Current>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("stampd-notify".into())
        .spawn(move || {
            let mut said = String::new();
            loop {
                match current.load().ready() {
                    Ok(()) => {
                        super::notify::notify("READY=1\nSTATUS=serving");
                        return;
                    }
                    Err(why) if why != said => {
                        super::notify::notify(&format!("STATUS=not ready: {why}"));
                        said = why;
                    }
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
}

/// Logs a warning for each TSA certificate near its expiry, at start and once a day.
fn watch_expiry(current: std::sync::Arc<Current>, days: u64) -> Result<(), String> {
    let check = move || {
        if let Some(now) = crate::clock::unix_time(crate::clock::wall_now()) {
            for w in current.load().expiry_warnings(now, days) {
                tracing::warn!("{w}");
            }
        }
    };
    // The first check before the server says it is serving.
    check();
    std::thread::Builder::new()
        .name("stampd-expiry".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(86_400));
            check();
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the expiry check: {e}"))
}

/// SIGHUP: reload ([`Reloader::reload`]). SIGTERM / SIGINT: drain (`/ready` 503, listeners
/// closed, open connections answer what they were sent, at most `drain_timeout`), commit what
/// the audit writer holds, give the shipper a bounded chance to catch up, release the node
/// lease, then exit 0. A
/// second SIGTERM / SIGINT exits at once.
#[allow(
    clippy::disallowed_methods,
    reason = "cli/ may exit: the cores never return, so the signal thread ends the process \
              once the audit writer has flushed"
)]
fn handle_signals(
    reloader: Arc<Mutex<Reloader>>,
    audit: std::sync::Arc<dyn crate::audit::AuditSink>,
    lease: Option<crate::audit::postgres::NodeLease>,
    drain: std::sync::Arc<crate::frontend::Drain>,
    drain_timeout: Duration,
) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("stampd-signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            let sig = loop {
                match signals.next() {
                    Some(SIGHUP) => reloader.lock().unwrap_or_else(|p| p.into_inner()).reload(),
                    Some(sig) => break sig,
                    None => return,
                }
            };
            tracing::info!(signal = sig, "stopping: draining connections");
            super::notify::notify("STOPPING=1");
            let stopping = std::thread::spawn(move || {
                drain.start();
                if !drain.wait(drain_timeout) {
                    tracing::warn!(
                        open = drain.open(),
                        "drain_timeout_ms passed with connections still open; stopping anyway"
                    );
                }
                tracing::info!("drained: committing queued audit records");
                let flushed = audit.flush_and_stop();
                // The node id is free at once for whoever starts next (the shipper has had
                // its chance to catch up in the flush).
                if lease.is_some_and(|l| !l.release(Duration::from_secs(2))) {
                    tracing::warn!("could not release the node lease; it expires by itself");
                }
                // No thread may be inside an HSM module while the process tears it down.
                if !crate::signer::pkcs11::token::close_modules(Duration::from_secs(5)) {
                    tracing::error!(
                        "a call into a PKCS#11 module did not return within 5 s; exiting anyway"
                    );
                }
                if flushed {
                    tracing::info!("stopped");
                    std::process::exit(0);
                }
                tracing::error!("stopped, but queued audit records could not all be committed");
                std::process::exit(1);
            });
            for sig in signals.by_ref() {
                if sig != SIGHUP {
                    tracing::error!("second signal: exiting now, without waiting for the shutdown");
                    std::process::exit(1);
                }
            }
            let _ = stopping.join();
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}
