//! One HTTP/1.1 connection on one core: read, parse, answer in order, keep alive.
//!
//! Every wait has a deadline: reading a request (`request_timeout_ms`, counted from its
//! first byte or from the accept), idling between requests (`idle_timeout_ms`), and writing
//! answers (`request_timeout_ms`, so a client that never reads cannot pin memory).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::body_budget::{BodyBudget, Progress};
use super::config::HttpConfig;
use super::http::{self, Action, Form, Page, Parsed};
use super::idle::{race, IdleConnections};
use super::Backend;
use super::{legacy, public};
use crate::error::Error;
use crate::policy::{Reply, RequestMeta};

/// Initial buffer per connection; buffers grow for larger requests and shrink back once
/// idle, so idle keep-alive connections stay cheap.
const INITIAL_BUF: usize = 2048;
/// Answers buffered before they are written out, and pipelined requests answered before the
/// core moves on: backpressure against clients that pipeline much and read little, and
/// fairness between connections on one core.
const OUT_HIGH_WATER: usize = 64 * 1024;
const MAX_BATCH: usize = 32;
/// After answering a request whose body we did not read, keep reading (and discarding) this
/// long before closing, so the kernel does not reset the connection before the client has
/// read the error (a "lingering close").
const LINGER: Duration = Duration::from_millis(500);

/// What every connection of one core's listener shares (an `Rc`: it never leaves the core).
pub struct Shared {
    /// This listener's copy of the set being served (refreshed after a reload).
    pub tsa: std::cell::RefCell<crate::policy::current::Cached>,
    /// `[server.http]`: size limits and timeouts.
    pub limits: HttpConfig,
    /// The listener's routes: (path, service index).
    pub routes: Vec<(String, usize)>,
    /// The probe paths the listener answers.
    pub probes: super::config::Probes,
    /// Where requests are issued: on this core, or through the queue.
    pub backend: Backend,
    /// Bytes of bodies being received, on every core.
    pub bodies: Arc<BodyBudget>,
    /// This core's connections, for closing the longest idle first.
    pub idle: Rc<IdleConnections>,
    /// The listener's drain state: keep-alive ends, idle connections close and `/ready`
    /// says 503 once it begins.
    pub drain: Arc<super::Drain>,
    /// The listener speaks HTTPS (the public pages' URLs say so).
    pub tls: bool,
}

/// Who is at the other end: its address, and its TLS client certificate's subject.
struct Peer {
    ip: std::net::IpAddr,
    subject: Option<Arc<str>>,
}

enum ReadOutcome {
    Data,
    Closed,
    TimedOut,
}

/// Reads more bytes into the spare capacity of `buf` before `deadline`, growing it when full.
async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> ReadOutcome {
    if buf.len() == buf.capacity() {
        buf.reserve(buf.capacity().max(INITIAL_BUF));
    }
    let taken = std::mem::take(buf);
    let len = taken.len();
    let read = monoio::time::timeout_at(deadline.into(), stream.read(taken.slice_mut(len..)));
    match read.await {
        Err(_) => ReadOutcome::TimedOut,
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            match res {
                Ok(0) | Err(_) => ReadOutcome::Closed,
                Ok(_) => ReadOutcome::Data,
            }
        }
    }
}

/// Writes `out` completely before `deadline`; false when the connection must be dropped.
async fn flush<S: AsyncWriteRent>(stream: &mut S, out: &mut Vec<u8>, deadline: Instant) -> bool {
    if out.is_empty() {
        return true;
    }
    let write = monoio::time::timeout_at(deadline.into(), stream.write_all(std::mem::take(out)));
    match write.await {
        Ok((Ok(_), mut back)) => {
            back.clear();
            if back.capacity() > OUT_HIGH_WATER {
                back.shrink_to(INITIAL_BUF);
            }
            *out = back;
            true
        }
        _ => false,
    }
}

/// Writes the held answers, in order, once each may leave (see [`Backend::answer`]).
async fn write_answers(pending: &mut Vec<(Result<Reply, u16>, bool)>, out: &mut Vec<u8>) {
    for (reply, keep_alive) in pending.drain(..) {
        let answer = match reply {
            Ok(reply) => Backend::answer(reply).await,
            Err(status) => Err(status),
        };
        match answer {
            Ok(der) => http::write_response(
                out,
                200,
                "application/timestamp-reply",
                &der,
                keep_alive,
                &[],
                false,
            ),
            Err(status) => http::write_error(out, status, keep_alive, None, false),
        }
    }
}

/// Whether the service at `service` answers legacy Authenticode requests.
fn is_authenticode(shared: &Shared, service: usize) -> bool {
    shared
        .tsa
        .borrow_mut()
        .get()
        .services
        .get(service)
        .is_some_and(|s| s.protocol == crate::policy::config::Protocol::Authenticode)
}

/// Writes a public page's answer, with the web's security headers.
fn write_page(out: &mut Vec<u8>, a: &public::Answer, keep_alive: bool, head_only: bool) {
    let mut extra: Vec<(&str, &str)> = crate::web::SECURITY_HEADERS.to_vec();
    extra.extend(a.headers.iter().map(|(k, v)| (*k, v.as_str())));
    if !a.headers.iter().any(|(k, _)| *k == "Cache-Control") {
        extra.push(("Cache-Control", "no-store"));
    }
    http::write_response(
        out,
        a.status,
        a.content_type,
        &a.body,
        keep_alive,
        &extra,
        head_only,
    );
}

/// A public page's form: `stamp` issues a token through the backend (the service's
/// pre-filters, policy and audit, as for an RFC 3161 request); `verify` checks one.
async fn public_form(
    shared: &Shared,
    form: Form,
    service: usize,
    body: &[u8],
    meta: &RequestMeta<'_>,
) -> public::Answer {
    let tsa = shared.tsa.borrow_mut().get().clone();
    let ask = public::Ask {
        tsa: &tsa,
        service,
        path: meta.path,
        head: meta.head,
        tls: shared.tls,
    };
    if tsa.services.get(service).is_none_or(|s| !s.public_pages) {
        return public::not_found();
    }
    if form == Form::Verify {
        return public::verify(&ask, body);
    }
    let der = match public::stamp_request(&ask, body) {
        Ok(der) => der,
        Err(answer) => return answer,
    };
    let result = match shared.backend.reply(&shared.tsa, service, &der, meta).await {
        Ok(reply) => Backend::answer(reply).await,
        Err(Error::Overloaded) => Err(tsa.refuse(service, meta, 503)),
        Err(e) => Err(e.http_status()),
    };
    public::stamp_answer(&ask, result)
}

/// Tells the service of `route` that its request is refused at the HTTP level with
/// `status` ([`Tsa::refuse`](crate::policy::Tsa::refuse)); returns the status to answer.
fn refuse(shared: &Shared, route: usize, peer: &Peer, head: &[u8], status: u16) -> u16 {
    let (path, service) = &shared.routes[route];
    let meta = RequestMeta {
        client: peer.ip,
        path,
        head,
        client_subject: peer.subject.as_ref(),
    };
    shared
        .tsa
        .borrow_mut()
        .get()
        .refuse(*service, &meta, status)
}

/// Serves one connection until it closes, fails or times out: parses each head, answers
/// health, readiness and metrics itself, issues timestamp requests through the backend,
/// and writes the answers in request order (pipelining).
/// `stream` is the accepted TCP connection (`TCP_NODELAY` set), or the TLS session over it;
/// `subject` is the client certificate's subject, on listeners that ask for one.
pub async fn serve<S: AsyncReadRent + AsyncWriteRent>(
    mut stream: S,
    ip: std::net::IpAddr,
    subject: Option<Arc<str>>,
    shared: Rc<Shared>,
) {
    let peer = Peer { ip, subject };
    let registered = shared.idle.register();
    let limits = &shared.limits;
    let request_timeout = Duration::from_millis(limits.request_timeout_ms);
    let idle_timeout = Duration::from_millis(limits.idle_timeout_ms);
    let write_deadline = || Instant::now() + request_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(INITIAL_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(INITIAL_BUF);
    // When the request being received started. A new connection counts as started: its
    // first request must arrive within the request timeout, not the (longer) idle timeout,
    // so a client that connects and stays silent is dropped as early as a slow one.
    let mut started: Option<Instant> = Some(Instant::now());
    let mut batch = 0usize;
    // The connection ends with unread input (a refused body): linger before closing.
    let mut linger = false;
    // Timestamp answers waiting for their audit records, in request order.
    let mut pending: Vec<(Result<Reply, u16>, bool)> = Vec::new();

    loop {
        let parsed = if buf.is_empty() {
            Parsed::Partial
        } else {
            http::parse(&buf, limits, &shared.routes, shared.probes)
        };
        let req = match parsed {
            Parsed::Complete(req) => req,
            Parsed::Invalid { status } => {
                write_answers(&mut pending, &mut out).await;
                http::write_error(&mut out, status, false, None, false);
                linger = true;
                break;
            }
            Parsed::Partial => {
                // Send what pipelined requests produced before waiting for more input.
                write_answers(&mut pending, &mut out).await;
                if !flush(&mut stream, &mut out, write_deadline()).await {
                    return;
                }
                batch = 0;
                if buf.is_empty() && buf.capacity() > 4 * INITIAL_BUF {
                    buf.shrink_to(INITIAL_BUF);
                }
                let deadline = match started {
                    Some(t) => t + request_timeout,
                    None => Instant::now() + idle_timeout,
                };
                // Decided before reading: a timed-out read drops the buffer it owned.
                let begun = !buf.is_empty();
                // Between requests the connection is idle: the accept loop may ask it to
                // close when the core's cap is nearly used (idle.rs). Draining, a
                // connection with nothing received is closed now.
                if !begun && shared.drain.is_draining() {
                    break;
                }
                let idle = !begun && started.is_none();
                registered.set_idle(idle);
                let read = read_more(&mut stream, &mut buf, deadline);
                let outcome = if idle {
                    race(read, registered.slot.closing()).await
                } else {
                    Ok(read.await)
                };
                registered.set_idle(false);
                let Ok(outcome) = outcome else {
                    // Asked to close while idle: close quietly, as at the idle timeout.
                    break;
                };
                match outcome {
                    ReadOutcome::Data => {
                        started.get_or_insert_with(Instant::now);
                        continue;
                    }
                    ReadOutcome::Closed => return,
                    ReadOutcome::TimedOut => {
                        // A request begun but not finished in time gets a 408; an idle
                        // keep-alive connection is closed quietly (RFC 9112 §9.5).
                        if begun {
                            http::write_error(&mut out, 408, false, None, false);
                        }
                        break;
                    }
                }
            }
        };

        let mut keep_alive = req.keep_alive && !shared.drain.is_draining();
        if !matches!(req.action, Action::Timestamp { .. }) {
            // Answers leave in request order.
            write_answers(&mut pending, &mut out).await;
        }
        let consumed = match req.action {
            Action::Health { head_only } => {
                http::write_response(
                    &mut out,
                    200,
                    "text/plain; charset=utf-8",
                    b"ok\n",
                    keep_alive,
                    &[],
                    head_only,
                );
                req.head_len
            }
            Action::Ready { head_only } => {
                let ready = super::readiness(shared.tsa.borrow_mut().get(), &shared.drain);
                let (status, body) = match ready {
                    Ok(()) => (200, "ready\n".to_string()),
                    Err(why) => (503, format!("{why}\n")),
                };
                http::write_response(
                    &mut out,
                    status,
                    "text/plain; charset=utf-8",
                    body.as_bytes(),
                    keep_alive,
                    &[],
                    head_only,
                );
                req.head_len
            }
            Action::Metrics { head_only } => {
                let text = super::metrics_text(shared.tsa.borrow_mut().get(), &shared.bodies);
                http::write_response(
                    &mut out,
                    200,
                    "text/plain; version=0.0.4",
                    text.as_bytes(),
                    keep_alive,
                    &[],
                    head_only,
                );
                req.head_len
            }
            Action::Error {
                status,
                close,
                allow,
                head_only,
                route,
            } => {
                let status = match route {
                    Some(route) => refuse(&shared, route, &peer, &buf[..req.head_len], status),
                    None => status,
                };
                keep_alive &= !close;
                linger |= close;
                http::write_error(&mut out, status, keep_alive, allow, head_only);
                req.head_len
            }
            Action::Page {
                service,
                route,
                page,
                head_only,
            } => {
                let tsa = shared.tsa.borrow_mut().get().clone();
                let path = &shared.routes[route].0;
                let public = tsa.services.get(service).is_some_and(|s| s.public_pages);
                if !public {
                    // Pages off: the path answers as it did without them (405), the rest 404.
                    let status = match page {
                        Page::Info => refuse(&shared, route, &peer, &buf[..req.head_len], 405),
                        _ => 404,
                    };
                    let allow = (status == 405).then_some("POST");
                    http::write_error(&mut out, status, keep_alive, allow, head_only);
                } else {
                    let ask = public::Ask {
                        tsa: &tsa,
                        service,
                        path,
                        head: &buf[..req.head_len],
                        tls: shared.tls,
                    };
                    let answer = match page {
                        Page::Info => public::info(&ask),
                        Page::Chain => public::chain(&ask),
                        Page::Asset(i) => public::asset(i),
                    };
                    write_page(&mut out, &answer, keep_alive, head_only);
                }
                req.head_len
            }
            Action::Timestamp {
                service,
                route,
                body_len,
                form: Form::Other,
                ..
            } if !is_authenticode(&shared, service) => {
                // Not an RFC 3161 body: refused before it is read (and the connection
                // closed after the answer when one was sent), saying where it belongs.
                write_answers(&mut pending, &mut out).await;
                let status = refuse(&shared, route, &peer, &buf[..req.head_len], 415);
                let close = body_len > 0;
                keep_alive &= !close;
                linger |= close;
                let why = if status == 415 {
                    legacy::NOT_RFC3161
                } else {
                    http::reason(status)
                };
                http::write_error_saying(&mut out, status, keep_alive, None, false, why);
                req.head_len
            }
            Action::Timestamp {
                service,
                route,
                body_len,
                expect_continue,
                form,
            } => {
                let need = req.head_len + body_len;
                // What is still to arrive reserves its bytes first (body_budget.rs); the
                // buffer is grown to exactly the request, not doubled past it.
                let mut _reserved = None;
                if buf.len() < need {
                    let Some(r) = shared.bodies.reserve(need - buf.len()) else {
                        write_answers(&mut pending, &mut out).await;
                        let status = refuse(&shared, route, &peer, &buf[..req.head_len], 503);
                        http::write_error(&mut out, status, false, None, false);
                        linger = true;
                        break;
                    };
                    _reserved = Some(r);
                    buf.reserve_exact(need - buf.len());
                    write_answers(&mut pending, &mut out).await;
                }
                if buf.len() < need && expect_continue {
                    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                let deadline = started.unwrap_or_else(Instant::now) + request_timeout;
                // Under memory pressure a body that makes too little progress is cut
                // (body_budget.rs): checked as data arrives, and by a timer while none does.
                let mut progress = Progress::starting(Instant::now());
                let mut cut = false;
                while buf.len() < need {
                    if !flush(&mut stream, &mut out, write_deadline()).await {
                        return;
                    }
                    let had = buf.len();
                    let read = read_more(&mut stream, &mut buf, deadline);
                    match race(read, shared.bodies.stalled(progress)).await {
                        Ok(ReadOutcome::Data) => {}
                        Ok(ReadOutcome::Closed) => return,
                        Ok(ReadOutcome::TimedOut) => break,
                        // The read (and the buffer it owned) is dropped: the body is cut.
                        Err(()) => {
                            cut = true;
                            break;
                        }
                    }
                    let got = buf.len() - had;
                    if !shared.bodies.advance(&mut progress, got, Instant::now()) {
                        cut = true;
                        break;
                    }
                }
                if cut || buf.len() < need {
                    if cut {
                        shared.bodies.count_cut();
                    }
                    // A cut body's buffer went with the read it was cut in.
                    let head = buf.get(..req.head_len).unwrap_or_default();
                    let status = refuse(&shared, route, &peer, head, 408);
                    http::write_error(&mut out, status, false, None, false);
                    linger |= cut;
                    break;
                }
                let body = &buf[req.head_len..need];
                let meta = RequestMeta {
                    client: peer.ip,
                    path: &shared.routes[route].0,
                    head: &buf[..req.head_len],
                    client_subject: peer.subject.as_ref(),
                };
                let legacy_service = is_authenticode(&shared, service);
                if form != Form::Rfc3161 || legacy_service {
                    // A public page's form or an Authenticode request: answered in turn,
                    // once its stamp (if any) is durable; browsers and signing tools do not
                    // pipeline, so nothing waits behind it.
                    write_answers(&mut pending, &mut out).await;
                    if legacy_service {
                        let (status, ctype, body) =
                            legacy::answer(&shared.backend, &shared.tsa, service, body, &meta)
                                .await;
                        http::write_response(
                            &mut out,
                            status,
                            ctype,
                            &body,
                            keep_alive,
                            &[],
                            false,
                        );
                    } else {
                        let answer = public_form(&shared, form, service, body, &meta).await;
                        write_page(&mut out, &answer, keep_alive, false);
                    }
                    buf.drain(..need);
                    started = (!buf.is_empty()).then(Instant::now);
                    if !keep_alive {
                        break;
                    }
                    continue;
                }
                // The answer is held until its audit record is durable (group commit), but
                // the next pipelined request is issued meanwhile: their records share a
                // batch instead of waiting for one commit each.
                let reply = match shared
                    .backend
                    .reply(&shared.tsa, service, body, &meta)
                    .await
                {
                    Ok(reply) => Ok(reply),
                    // The queue was full: the request never reached the service, which is
                    // told now. (A worker that took it and did not answer in time may still
                    // record it: that one is not told twice.)
                    Err(Error::Overloaded) => {
                        Err(shared.tsa.borrow_mut().get().refuse(service, &meta, 503))
                    }
                    Err(e) => Err(e.http_status()),
                };
                pending.push((reply, keep_alive));
                need
            }
        };
        buf.drain(..consumed);
        started = if buf.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        if !keep_alive {
            break;
        }
        batch += 1;
        if out.len() >= OUT_HIGH_WATER || batch >= MAX_BATCH {
            // Write what we have (this also lets other connections on the core run).
            write_answers(&mut pending, &mut out).await;
            if !flush(&mut stream, &mut out, write_deadline()).await {
                return;
            }
            batch = 0;
        }
    }
    write_answers(&mut pending, &mut out).await;
    if !flush(&mut stream, &mut out, write_deadline()).await {
        return;
    }
    let _ = stream.shutdown().await;
    if linger {
        // Discard what the client still sends, briefly, so it reads our answer.
        let until = Instant::now() + LINGER;
        let mut scratch = std::mem::take(&mut buf);
        let mut drained = 0usize;
        while drained < 1 << 20 {
            scratch.clear();
            match read_more(&mut stream, &mut scratch, until).await {
                ReadOutcome::Data => drained += scratch.len(),
                _ => break,
            }
        }
    }
}
