//! One HTTP/1.1 connection on one core: read, parse, answer in order, keep alive.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::http::{self, Action, Parsed};
use super::Backend;
use crate::config::HttpConfig;

/// Initial read buffer per connection; it grows only for larger requests, so idle
/// keep-alive connections stay cheap.
const INITIAL_BUF: usize = 2048;

pub struct Shared {
    pub limits: HttpConfig,
    pub routes: Vec<(String, usize)>,
    pub backend: Backend,
}

enum ReadOutcome {
    Data,
    Closed,
    TimedOut,
}

/// Reads more bytes into `buf` before `deadline`. On error, EOF or time-out the caller
/// closes the connection.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    cap: usize,
) -> ReadOutcome {
    if buf.len() == buf.capacity() {
        buf.reserve((buf.capacity()).min(cap.saturating_sub(buf.len())).max(512));
    }
    let taken = std::mem::take(buf);
    let len = taken.len();
    let read = monoio::time::timeout_at(
        deadline.into(),
        stream.read(monoio::buf::IoBufMut::slice_mut(taken, len..)),
    );
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

async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    let (res, mut back) = stream.write_all(std::mem::take(out)).await;
    back.clear();
    *out = back;
    res.is_ok()
}

pub async fn serve(mut stream: TcpStream, shared: Rc<Shared>) {
    let _ = stream.set_nodelay(true);
    let limits = &shared.limits;
    let request_timeout = Duration::from_millis(limits.request_timeout_ms);
    let idle_timeout = Duration::from_millis(limits.idle_timeout_ms);
    let cap = limits.max_header_bytes + limits.max_body_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(INITIAL_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(INITIAL_BUF);
    // When the request being received started. A new connection counts as started: its
    // first request must arrive within the request timeout, not the (longer) idle timeout,
    // so a client that connects and stays silent is dropped as early as a slow one.
    let mut started: Option<Instant> = Some(Instant::now());

    loop {
        let parsed = if buf.is_empty() {
            Parsed::Partial
        } else {
            http::parse(&buf, limits, &shared.routes)
        };
        let req = match parsed {
            Parsed::Complete(req) => req,
            Parsed::Invalid { status } => {
                http::write_error(&mut out, status, false, None);
                break;
            }
            Parsed::Partial => {
                // Send what pipelined requests produced before waiting for more input.
                if !flush(&mut stream, &mut out).await {
                    return;
                }
                let deadline = match started {
                    Some(t) => t + request_timeout,
                    None => Instant::now() + idle_timeout,
                };
                match read_more(&mut stream, &mut buf, deadline, cap).await {
                    ReadOutcome::Data => {
                        started.get_or_insert_with(Instant::now);
                        continue;
                    }
                    ReadOutcome::Closed => return,
                    ReadOutcome::TimedOut => {
                        // A request begun but not finished in time gets a 408; an idle
                        // keep-alive connection is closed quietly (RFC 9112 §9.5).
                        if started.is_some() {
                            http::write_error(&mut out, 408, false, None);
                        }
                        break;
                    }
                }
            }
        };

        let mut keep_alive = req.keep_alive;
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
            Action::Error {
                status,
                close,
                allow,
            } => {
                keep_alive &= !close;
                http::write_error(&mut out, status, keep_alive, allow);
                req.head_len
            }
            Action::Timestamp {
                service,
                body_len,
                expect_continue,
            } => {
                let need = req.head_len + body_len;
                if buf.len() < need && expect_continue {
                    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                if buf.len() < need && buf.capacity() < need {
                    buf.reserve(need - buf.len());
                }
                let deadline = started.unwrap_or_else(Instant::now) + request_timeout;
                let mut complete = true;
                while buf.len() < need {
                    if !flush(&mut stream, &mut out).await {
                        return;
                    }
                    match read_more(&mut stream, &mut buf, deadline, cap).await {
                        ReadOutcome::Data => {}
                        ReadOutcome::Closed => return,
                        ReadOutcome::TimedOut => {
                            complete = false;
                            break;
                        }
                    }
                }
                if !complete {
                    http::write_error(&mut out, 408, false, None);
                    break;
                }
                let body = &buf[req.head_len..need];
                match shared.backend.handle(service, body).await {
                    Ok(der) => http::write_response(
                        &mut out,
                        200,
                        "application/timestamp-reply",
                        &der,
                        keep_alive,
                        &[],
                        false,
                    ),
                    Err(status) => http::write_error(&mut out, status, keep_alive, None),
                }
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
    }
    if flush(&mut stream, &mut out).await {
        let _ = stream.shutdown().await;
    }
}
