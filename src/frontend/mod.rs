//! Thread-per-core HTTP/1.1 frontends on monoio: one runtime per core, io_uring where the
//! kernel allows it and epoll otherwise, one SO_REUSEPORT listener per core and address.
//! The only monoio code in stampd.

mod body_budget;
pub mod config;
mod conn;
mod drain;
mod fd_budget;
mod http;
mod idle;
mod legacy;
mod public;
mod tls;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_channel::oneshot;
use monoio::net::{ListenerOpts, TcpListener};

use crate::error::Error;
use crate::pipeline::{self, Envelope, Queue};
use crate::policy;
use crate::policy::current::{Cached, Current};
use crate::policy::{Reply, RequestMeta};
use body_budget::BodyBudget;
use config::{Dispatch, HttpConfig, IoDriver, Listener};
pub use drain::Drain;
pub use tls::server_config_of;

/// Entry points for fuzz targets, on bytes alone (no socket).
pub mod fuzzing {
    use std::sync::OnceLock;

    use super::config::{HttpConfig, Probes};
    use super::http::{self, Action, Parsed};

    /// Parses the request heads in `data` as a connection reads them: with the default
    /// limits and two routes (`/tsa` to service 0, `/tsa/v2` to service 1), each head after
    /// the previous one's body while the connection is kept alive. Checks what `conn.rs`
    /// relies on when it slices its buffer: a head never claims more bytes than were read,
    /// a body it admits is within `max_body_bytes`, and a route index is one of the routes.
    pub fn http_heads(data: &[u8]) {
        static SETUP: OnceLock<(HttpConfig, Vec<(String, usize)>)> = OnceLock::new();
        let (limits, routes) = SETUP.get_or_init(|| {
            let routes = vec![("/tsa".to_string(), 0), ("/tsa/v2".to_string(), 1)];
            (HttpConfig::default(), routes)
        });
        let mut rest = data;
        while let Parsed::Complete(req) = http::parse(rest, limits, routes, Probes::ALL) {
            assert!(
                req.head_len > 0 && req.head_len <= rest.len(),
                "head_len {} of {} bytes",
                req.head_len,
                rest.len()
            );
            let body_len = match req.action {
                Action::Timestamp {
                    service,
                    route,
                    body_len,
                    ..
                } => {
                    assert!(body_len <= limits.max_body_bytes, "body_len {body_len}");
                    assert_eq!(routes.get(route).map(|r| r.1), Some(service), "route");
                    body_len
                }
                Action::Error { close: true, .. } => return,
                Action::Error {
                    route: Some(route), ..
                } => {
                    assert!(route < routes.len(), "route {route}");
                    0
                }
                _ => 0,
            };
            match rest.get(req.head_len + body_len..) {
                Some(next) if req.keep_alive && !next.is_empty() => rest = next,
                _ => return,
            }
        }
    }
}

/// Longest a core waits for a backend worker's answer.
pub(crate) const BACKEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a core sends a request.
#[derive(Clone)]
pub enum Backend {
    /// Issue on this core, from its cached copy of the current set.
    Inline,
    /// Hand to backend workers.
    Queue(Queue),
}

impl Backend {
    /// The reply for one body, or an HTTP status when the backend is overloaded. It may
    /// not leave before [`Backend::answer`] says so. `tsa` is the core's copy of the set
    /// being served (inline dispatch issues from it, without waiting in between).
    pub async fn reply(
        &self,
        tsa: &std::cell::RefCell<Cached>,
        service: usize,
        body: &[u8],
        meta: &RequestMeta<'_>,
    ) -> Result<Reply, Error> {
        match self {
            Backend::Inline => Ok(tsa.borrow_mut().get().issue(service, body, meta)),
            Backend::Queue(queue) => {
                let (tx, rx) = oneshot::channel();
                let env = Envelope {
                    service,
                    body: body.to_vec(),
                    client: meta.client,
                    path: meta.path.to_string(),
                    head: meta.head.to_vec(),
                    client_subject: meta.client_subject.cloned(),
                    shard: crate::audit::shard::home(),
                    reply: tx,
                };
                if queue.try_submit(env).is_err() {
                    return Err(Error::Overloaded);
                }
                // A worker that vanished or hangs is a server failure, not a requester's:
                // answer 503 rather than hold the connection for ever.
                match monoio::time::timeout(BACKEND_DEADLINE, rx).await {
                    Ok(Ok(reply)) => Ok(reply),
                    _ => Err(Error::BackendGone),
                }
            }
        }
    }

    /// The 200 body or HTTP status of a reply, once its audit record is durable (group
    /// commit), waiting at most 30 s (then 503).
    pub async fn answer(reply: Reply) -> Result<Vec<u8>, u16> {
        if reply.durable.is_none() {
            return reply.release().await;
        }
        monoio::time::timeout(BACKEND_DEADLINE, reply.release())
            .await
            .unwrap_or(Err(Error::AuditStalled.http_status()))
    }
}

/// Frontend settings, filled in from `[server]` by the assembler.
#[derive(Clone)]
pub struct Settings {
    /// Frontend cores (`stampd-core-N` threads, one monoio runtime each); 0 = one per CPU.
    pub cores: usize,
    /// Where requests are issued: on the core (`inline`) or by backend workers (`queue`).
    pub dispatch: Dispatch,
    /// Backend workers with queue dispatch; 0 = one per core.
    pub workers: usize,
    /// Envelopes the backend queue holds (queue dispatch); when full, requests get 503.
    pub queue_capacity: usize,
    /// io_uring when available (`auto`), or epoll.
    pub io_driver: IoDriver,
    /// `[server.http]`: size limits, timeouts, connections per core.
    pub http: HttpConfig,
    /// The audit trail: each core attaches to it at start and runs its shard's committer.
    pub audit: Arc<dyn crate::audit::AuditSink>,
}

/// The frontend cores `[server] cores` asks for (0: one per CPU).
pub fn core_count(configured: usize) -> usize {
    if configured == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        configured
    }
}

/// Whether the cores run on io_uring with `driver` (`auto`: when the kernel has it).
pub fn uses_uring(driver: IoDriver) -> bool {
    driver == IoDriver::Auto && monoio::utils::detect_uring()
}

/// A running server: its bound addresses; dropping it does not stop it.
pub struct Running {
    /// The bound address of each listener, in the order given (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// The I/O driver in use: `io_uring` or `epoll`.
    pub driver: &'static str,
    cores: Vec<std::thread::JoinHandle<()>>,
    parts: CoreParts,
}

impl Running {
    /// The frontends' drain state, for the signal thread.
    pub fn drain(&self) -> Arc<Drain> {
        self.parts.drain.clone()
    }

    /// What the admin listener reports on the frontends: readiness (503 while draining)
    /// and the `/metrics` text.
    pub fn probe(&self) -> Probe {
        Probe {
            tsa: self.parts.tsa.clone(),
            drain: self.parts.drain.clone(),
            bodies: self.parts.bodies.clone(),
        }
    }

    /// Blocks until every core stops (they run until the process ends).
    pub fn wait(self) {
        for c in self.cores {
            let _ = c.join();
        }
    }
}

/// Starts the cores; returns once every listener is bound (or with the first bind error).
pub fn start(
    tsa: Arc<Current>,
    listeners: Vec<Listener>,
    mut s: Settings,
) -> Result<Running, Error> {
    let cores = core_count(s.cores);
    // The connection cap follows the descriptors the process really has (fd_budget.rs): a
    // configured cap above them is clamped, with a warning, rather than refused, so the
    // same configuration runs on hosts with different limits.
    let nofile = fd_budget::raise_nofile_limit();
    let per_core = fd_budget::per_core_connections(s.http.max_connections_per_core, cores, nofile);
    if per_core < s.http.max_connections_per_core {
        tracing::warn!(
            configured = s.http.max_connections_per_core,
            per_core,
            cores,
            nofile,
            reserve = fd_budget::RESERVE,
            "server.http.max_connections_per_core is more than the open-file limit allows; clamped"
        );
        s.http.max_connections_per_core = per_core;
    }
    let metrics = tsa.clone();
    let backend = match s.dispatch {
        Dispatch::Inline => Backend::Inline,
        Dispatch::Queue => {
            let workers = if s.workers == 0 { cores } else { s.workers };
            let (queue, _workers) = pipeline::start(tsa, workers, s.queue_capacity)
                .map_err(|e| Error::Frontend(format!("cannot start workers: {e}")))?;
            Backend::Queue(queue)
        }
    };
    let uring = uses_uring(s.io_driver);
    let driver = if uring { "io_uring" } else { "epoll" };
    // Port 0 means "any": bind the first core, then give the others the same port.
    let mut listeners = listeners;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Vec<SocketAddr>, String>>();
    let mut handles = Vec::new();
    let bodies = BodyBudget::new(BodyBudget::limit_for(s.http.max_buffered_mib));
    let parts = CoreParts {
        tsa: metrics.clone(),
        backend,
        http: s.http.clone(),
        bodies: bodies.clone(),
        drain: Arc::new(Drain::default()),
        uring,
        audit: s.audit.clone(),
    };
    for core in 0..cores {
        let listeners_here = listeners.clone();
        let parts = parts.clone();
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("stampd-core-{core}"))
            .spawn(move || run_core(core, listeners_here, parts, ready))
            .map_err(|e| Error::Frontend(format!("cannot start core thread: {e}")))?;
        handles.push(handle);
        let bound = ready_rx
            .recv()
            .map_err(|_| Error::Frontend("a core stopped during start".into()))?
            .map_err(Error::Frontend)?;
        if core == 0 {
            for (l, a) in listeners.iter_mut().zip(&bound) {
                l.addr = *a;
            }
        }
    }
    let addrs = listeners.iter().map(|l| l.addr).collect();
    tracing::info!(cores, driver, dispatch = ?s.dispatch, "frontend started");
    Ok(Running {
        addrs,
        driver,
        cores: handles,
        parts,
    })
}

/// Readiness and metrics of the running frontends, for the admin listener (its own thread).
#[derive(Clone)]
pub struct Probe {
    tsa: Arc<Current>,
    drain: Arc<Drain>,
    bodies: Arc<BodyBudget>,
}

impl Probe {
    /// `/ready`: `Err` says why not (draining, a signer down, the clock, the audit trail).
    pub fn ready(&self) -> Result<(), String> {
        readiness(&self.tsa.load(), &self.drain)
    }

    /// `/metrics`: the Prometheus text of the services, the audit trail, the clock, the
    /// signers and the frontends.
    pub fn metrics(&self) -> String {
        metrics_text(&self.tsa.load(), &self.bodies)
    }
}

/// `/ready` of `tsa` behind frontends in `drain` state.
fn readiness(tsa: &policy::Tsa, drain: &Drain) -> Result<(), String> {
    if drain.is_draining() {
        Err("draining: the server is stopping".to_string())
    } else {
        tsa.ready()
    }
}

/// `/metrics` of `tsa` and the frontends.
fn metrics_text(tsa: &policy::Tsa, bodies: &BodyBudget) -> String {
    let mut text = tsa.metrics();
    http::refusal_metrics(&mut text);
    accept_metrics(&mut text);
    bodies.metrics(&mut text);
    text
}

/// What every core gets: the issuing side, the limits and the process-wide budgets.
#[derive(Clone)]
struct CoreParts {
    tsa: Arc<Current>,
    backend: Backend,
    http: HttpConfig,
    bodies: Arc<BodyBudget>,
    drain: Arc<Drain>,
    uring: bool,
    audit: Arc<dyn crate::audit::AuditSink>,
}

fn run_core(
    core: usize,
    listeners: Vec<Listener>,
    parts: CoreParts,
    ready: std::sync::mpsc::Sender<Result<Vec<SocketAddr>, String>>,
) {
    let CoreParts {
        tsa,
        backend,
        http,
        bodies,
        drain,
        uring,
        audit,
    } = parts;
    let drained = drain.register_core();
    let body = async move {
        // This core's audit shard: its records go there, committed by this task on this
        // core's ring (audit/shard.rs).
        let committer = audit.attach(core).map(monoio::spawn);
        let opts = ListenerOpts::new()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(4096);
        let mut bound = Vec::new();
        let mut addrs = Vec::new();
        for l in &listeners {
            let tls = match l.tls.as_ref().map(tls::Tls::load).transpose() {
                Ok(t) => t.map(Rc::new),
                Err(e) => {
                    let _ = ready.send(Err(format!("{}: {e}", l.addr)));
                    return;
                }
            };
            match TcpListener::bind_with_config(l.addr, &opts) {
                Ok(tl) => {
                    addrs.push(tl.local_addr().unwrap_or(l.addr));
                    bound.push((tl, l.routes.clone(), l.probes, tls));
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("cannot listen on {}: {e}", l.addr)));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(addrs));
        let open = Rc::new(Cell::new(0usize));
        let idle = Rc::new(idle::IdleConnections::default());
        let core_drain = Rc::new(drain::CoreDrain::default());
        {
            // Draining: the accept loops end (their listeners close) and the idle
            // keep-alive connections are asked to close; busy ones finish their answers.
            let (core_drain, idle) = (core_drain.clone(), idle.clone());
            monoio::spawn(async move {
                if let Ok(()) = drained.await {
                    core_drain.begin();
                    idle.close_all_idle();
                }
            });
        }
        let mut tasks = Vec::new();
        for (listener, routes, probes, tls) in bound {
            let shared = Rc::new(conn::Shared {
                tsa: std::cell::RefCell::new(tsa.cached()),
                limits: http.clone(),
                routes,
                probes,
                backend: backend.clone(),
                bodies: bodies.clone(),
                idle: idle.clone(),
                drain: drain.clone(),
                tls: tls.is_some(),
            });
            let accepting = accept_loop(listener, shared, open.clone(), tls);
            tasks.push(monoio::spawn(idle::race(accepting, core_drain.begun())));
        }
        for t in tasks {
            let _ = t.await;
        }
        // Drained: wait for this core's connections, then let the thread end.
        while open.get() > 0 {
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The trail's stop commits this core's last batch on this runtime.
        if let Some(c) = committer {
            c.await;
        }
    };
    let result = if uring {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(body))
    } else {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(body))
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot build the I/O runtime");
    }
}

/// Failed `accept` calls since start, on every core.
static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);
/// At most one "accept failed" line per core this often.
const ACCEPT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// The first wait after a failed accept, doubling up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
/// The longest wait between accepts while they fail.
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// Appends `stampd_accept_errors_total` for `GET /metrics`.
pub fn accept_metrics(out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# TYPE stampd_accept_errors_total counter\nstampd_accept_errors_total {}\n",
        ACCEPT_ERRORS.load(Ordering::Relaxed)
    );
}

async fn accept_loop(
    listener: TcpListener,
    shared: Rc<conn::Shared>,
    open: Rc<Cell<usize>>,
    tls: Option<Rc<tls::Tls>>,
) {
    let mut last_log: Option<std::time::Instant> = None;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => {
                backoff = ACCEPT_BACKOFF_MIN;
                s
            }
            Err(e) => {
                // EMFILE and friends (the descriptor budget should keep them away): back off
                // instead of spinning, count them, and log at most once a second per core.
                let n = ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed) + 1;
                let now = std::time::Instant::now();
                if last_log.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY) {
                    tracing::warn!(error = %e, accept_errors_total = n, "accept failed");
                    last_log = Some(now);
                }
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let shared = shared.clone();
        let cap = shared.limits.max_connections_per_core;
        // Near the cap, the connection idle the longest makes room (idle.rs): a flood of
        // idle keep-alive connections gives way to clients that send requests. At the cap,
        // with none idle, the new one is refused at once.
        if open.get() + (cap / 32).max(1) >= cap {
            shared.idle.close_oldest();
        }
        if open.get() >= cap {
            // A plain 503 is no answer on an HTTPS port: close at once there.
            if tls.is_none() {
                monoio::spawn(refuse(stream));
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.set(open.get() + 1);
        let drain = shared.drain.clone();
        drain.count(true);
        let open = open.clone();
        let tls = tls.clone();
        monoio::spawn(async move {
            match tls {
                None => conn::serve(stream, peer.ip(), None, shared).await,
                Some(tls) => {
                    // The handshake has the request timeout; a client that does not speak
                    // TLS (plain HTTP to an HTTPS port), or has no valid certificate where
                    // one is required, fails it and is closed.
                    let limit = std::time::Duration::from_millis(shared.limits.request_timeout_ms);
                    if let Ok(Ok((session, subject))) =
                        monoio::time::timeout(limit, tls.accept(stream)).await
                    {
                        conn::serve(session, peer.ip(), subject, shared).await;
                    }
                }
            }
            open.set(open.get() - 1);
            drain.count(false);
        });
    }
}

/// Answers 503 to a connection over the per-core limit and closes it.
async fn refuse(mut stream: monoio::net::TcpStream) {
    use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
    let mut out = Vec::new();
    http::write_error(&mut out, 503, false, None, false);
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
}
