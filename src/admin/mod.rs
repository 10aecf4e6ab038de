//! The admin listener: the web interface for operators and auditors (dashboard, actions,
//! audit browser), its JSON API under `/api/` (docs/admin-api.md), and the probes
//! (`/health`, `/ready`, `/metrics`). It runs on a runtime of its own — one `stampd-admin`
//! thread with a current-thread tokio runtime and axum — so nothing here ever runs on a
//! frontend core, and it keeps answering while the frontends drain.
//!
//! Pages are rendered on the server (maud); the only scripts are the embedded assets of
//! [`crate::web`], and every page works without them except the live figures.

mod actions;
mod audit_pages;
pub mod auth;
pub mod config;
mod dashboard;
mod login;
mod samples;
mod view;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::Error;
use crate::frontend::config::Listener;
use crate::frontend::Probe;
use crate::policy::current::Current;
use auth::{Auth, Session};
use config::Role;

/// Connections the admin listener holds at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;
/// Time a connection has to send a request head, and a TLS handshake to finish.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a reload as the administrator named: `Ok` once the new configuration serves, or
/// the validation and build errors.
pub type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where a service can be reached, for the dashboard.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The `[[service]] name`.
    pub service: String,
    /// Its URL, e.g. `http://127.0.0.1:3180/tsa`.
    pub url: String,
}

/// What the admin interface reads and acts on, handed over by `stampd serve`.
pub struct Parts {
    /// The set being served (services, signers, clock, audit trail).
    pub current: Arc<Current>,
    /// Readiness and metrics of the frontends.
    pub probe: Probe,
    /// Every service's URLs (fixed until a restart).
    pub endpoints: Vec<Endpoint>,
    /// The audit journal's directory, when the trail has one.
    pub journal: Option<PathBuf>,
    /// The reload action.
    pub reload: Reload,
    /// Who may log in.
    pub users: auth::Users,
    /// How long a login lasts.
    pub session_minutes: u64,
}

/// The admin interface's state, shared by its handlers.
struct Admin {
    current: Arc<Current>,
    probe: Probe,
    endpoints: Vec<Endpoint>,
    journal: Option<PathBuf>,
    reload: Reload,
    auth: Auth,
    sampler: Mutex<dashboard::Sampler>,
}

type App = Arc<Admin>;

/// The client address of the request being served (set per connection).
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

/// Binds the admin `listener` and serves it on the `stampd-admin` thread; returns the
/// bound address.
pub fn start(listener: &Listener, parts: Parts) -> Result<SocketAddr, Error> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Error::Frontend(format!("admin listener {}: {what}: {e}", listener.addr))
    };
    let tls = listener
        .tls
        .as_ref()
        .map(crate::frontend::server_config_of)
        .transpose()?
        .map(tokio_rustls::TlsAcceptor::from);
    let socket =
        std::net::TcpListener::bind(listener.addr).map_err(|e| failed("cannot listen", &e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| failed("cannot listen", &e))?;
    let bound = socket
        .local_addr()
        .map_err(|e| failed("cannot listen", &e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| failed("cannot start its runtime", &e))?;
    let Parts {
        current,
        probe,
        endpoints,
        journal,
        reload,
        users,
        session_minutes,
    } = parts;
    let app = Arc::new(Admin {
        current,
        probe,
        endpoints,
        journal,
        reload,
        auth: Auth {
            users,
            sessions: auth::Sessions::new(Duration::from_secs(session_minutes * 60)),
            throttle: Default::default(),
            secure: tls.is_some(),
        },
        sampler: Mutex::new(dashboard::Sampler::default()),
    });
    let routes = router(app);
    std::thread::Builder::new()
        .name("stampd-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(l) => accept_loop(l, tls, routes).await,
                    Err(e) => tracing::error!(error = %e, "the admin listener cannot run"),
                }
            });
        })
        .map_err(|e| failed("cannot start its thread", &e))?;
    Ok(bound)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    routes: Router,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (routes, tls) = (routes.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(stream, peer.ip(), routes).await,
                Some(acceptor) => {
                    // Plain HTTP to the HTTPS port, or no valid client certificate where one
                    // is required, fails the handshake: the connection is closed.
                    if let Ok(Ok(session)) =
                        tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await
                    {
                        connection(session, peer.ip(), routes).await;
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 on one connection until it closes.
async fn connection<S>(io: S, peer: IpAddr, routes: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        routes.clone().oneshot(req.map(Body::new))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/assets/{name}", get(asset))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/", get(dashboard::page))
        .route("/api/dashboard", get(dashboard::json))
        .route("/api/live", get(dashboard::live))
        .route("/services/{name}/{action}", post(actions::service_page))
        .route("/api/services/{name}/{action}", post(actions::service_json))
        .route("/reload", post(actions::reload_page))
        .route("/api/reload", post(actions::reload_json))
        .route("/signers/{name}/selftest", post(actions::selftest_page))
        .route("/api/signers/{name}/selftest", post(actions::selftest_json))
        .route("/audit/verify", post(actions::verify_page))
        .route("/api/audit/verify", post(actions::verify_json))
        .route("/audit", get(audit_pages::search_page))
        .route("/api/audit", get(audit_pages::search_json))
        .route("/audit/export", get(audit_pages::export))
        .route("/audit/records/{seq}", get(audit_pages::record_page))
        .route("/api/audit/records/{seq}", get(audit_pages::record_json))
        .route("/audit/records/{seq}/token.tsr", get(audit_pages::token))
        .route(
            "/audit/shards/{shard}/records/{seq}",
            get(audit_pages::record_page),
        )
        .route(
            "/api/audit/shards/{shard}/records/{seq}",
            get(audit_pages::record_json),
        )
        .route(
            "/audit/shards/{shard}/records/{seq}/token.tsr",
            get(audit_pages::token),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// The web's security headers on every answer, and no caching of anything but assets.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (k, v) in crate::web::SECURITY_HEADERS {
        h.insert(k, HeaderValue::from_static(v));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

async fn ready(State(app): State<App>) -> Response {
    match app.probe.ready() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let mut text = app.probe.metrics();
    app.auth.metrics(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match crate::web::asset(&name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            a.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Someone logged in (a session) or holding a bearer token.
#[derive(Debug, Clone)]
struct Caller {
    /// The login name.
    name: String,
    /// Their role.
    role: Role,
    /// The browser session, `None` for a bearer token.
    session: Option<Session>,
}

/// What a handler needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The dashboard: administrators.
    Dashboard,
    /// The audit pages: administrators and auditors.
    Audit,
    /// An action (a POST that changes something): administrators, with the session's CSRF
    /// token (or a bearer token), from this site.
    Act,
}

impl Admin {
    /// The caller of a request with `headers`, if they are logged in or hold a token.
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.auth.users.bearer(token.trim()).map(|u| Caller {
                name: u.name.clone(),
                role: u.role,
                session: None,
            });
        }
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(auth::session_id)?;
        self.auth.sessions.get(id).map(|s| Caller {
            name: s.user.clone(),
            role: s.role,
            session: Some(s),
        })
    }

    /// The caller, if they may do what `need` says; otherwise the answer to give: a
    /// redirect to the login page (pages) or 401 (the API) without a session, 403 for a
    /// role that may not, a missing CSRF token or a cross-site request. `csrf` is the token
    /// the request carries (form field or `X-CSRF-Token`).
    #[allow(
        clippy::result_large_err,
        reason = "the refusal is the whole axum Response the handler returns, made once per refused request"
    )]
    fn authorize(
        &self,
        headers: &HeaderMap,
        need: Need,
        api: bool,
        csrf: Option<&str>,
    ) -> Result<Caller, Response> {
        let Some(caller) = self.caller(headers) else {
            return Err(if api {
                view::json_error(
                    StatusCode::UNAUTHORIZED,
                    "log in, or send Authorization: Bearer TOKEN",
                )
            } else {
                view::redirect("/login")
            });
        };
        let forbid = |why: &str| {
            if api {
                view::json_error(StatusCode::FORBIDDEN, why)
            } else {
                view::message_page(&caller, StatusCode::FORBIDDEN, "Not allowed", why)
            }
        };
        let allowed = match need {
            Need::Audit => true,
            Need::Dashboard | Need::Act => caller.role == Role::Admin,
        };
        if !allowed {
            return Err(forbid(&format!(
                "the {} role may read the audit pages only",
                caller.role.name()
            )));
        }
        if need == Need::Act {
            let cross_site = headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"cross-site");
            if cross_site {
                return Err(forbid("a cross-site request may not act here"));
            }
            if let Some(session) = &caller.session {
                let given =
                    csrf.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
                if !auth::csrf_ok(session, given) {
                    return Err(forbid(
                        "the request carries no valid CSRF token: reload the page and try again",
                    ));
                }
            }
        }
        Ok(caller)
    }

    /// Records an administrator's action in the audit trail (`kind = "admin"`), and
    /// answers once it is committed (at most 5 s), so what the action's page says is already
    /// in the trail the audit pages read.
    async fn audit(&self, caller: &str, name: &str, message: String, detail: serde_json::Value) {
        let mut detail = detail;
        if let Some(map) = detail.as_object_mut() {
            map.insert("by".into(), caller.into());
        }
        let event = crate::audit::Event::now("admin", name, message, &detail);
        let taken = self.current.load().audit.event(event);
        let committed = match taken {
            Ok(None) => true,
            Ok(Some(durable)) => tokio::time::timeout(std::time::Duration::from_secs(5), durable)
                .await
                .is_ok_and(|r| r.unwrap_or(false)),
            Err(_) => false,
        };
        if !committed {
            tracing::error!(
                by = caller,
                action = name,
                "the audit trail could not commit an admin action's record"
            );
        }
    }
}
