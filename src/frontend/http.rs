//! HTTP/1.1 request heads (RFC 9112) parsed with httparse, and the decision of what to do
//! with each request. Pure: bytes in, a decision out, so every rule is unit-tested.

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::{HttpConfig, Probes};

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A timestamp request for `service`, received on `routes[route]`, whose body is
    /// `body_len` bytes after the head.
    Timestamp {
        /// The service index the route maps to.
        service: usize,
        /// The index of the matched route in `routes`.
        route: usize,
        /// The body length from Content-Length, within `max_body_bytes`.
        body_len: usize,
        /// `Expect: 100-continue`: send `100 Continue` before reading the body.
        expect_continue: bool,
        /// What the body is: an RFC 3161 request, or a public page's form.
        form: Form,
    },
    /// `GET` (or HEAD) of a public timestamp page of the service on `routes[route]`; the
    /// connection answers 404 (405 for the path itself) when the service has them off.
    Page {
        /// The service index the route maps to.
        service: usize,
        /// The index of the matched route in `routes`.
        route: usize,
        /// Which page.
        page: Page,
        /// HEAD: the answer carries no body.
        head_only: bool,
    },
    /// `GET /health` (or HEAD): liveness, the process answers.
    Health {
        /// HEAD: the answer carries no body.
        head_only: bool,
    },
    /// `GET /ready` (or HEAD): readiness, every signer can sign.
    Ready {
        /// HEAD: the answer carries no body.
        head_only: bool,
    },
    /// `GET /metrics` (or HEAD): Prometheus text from the monitors, the audit trail and
    /// the signers.
    Metrics {
        /// HEAD: the answer carries no body.
        head_only: bool,
    },
    /// Answer with an error status. `close`: the framing is lost or the body is unread, so
    /// the connection must close after the answer. `head_only`: the request was HEAD, so
    /// the answer carries no body (RFC 9110 §9.3.2).
    Error {
        /// The status to answer (400, 404, 405, 411, 413, 415, 417, 431...).
        status: u16,
        /// Close the connection after the answer.
        close: bool,
        /// The `Allow` header of a 405.
        allow: Option<&'static str>,
        /// HEAD: the answer carries no body.
        head_only: bool,
        /// The route (index into the listener's routes) of a request refused after its
        /// path matched a timestamp service: the service hears of the refusal
        /// (`Tsa::refuse`).
        route: Option<usize>,
    },
}

/// What a POST body on a service route is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `POST PATH`: a DER `TimeStampReq` (`application/timestamp-query`).
    Rfc3161,
    /// `POST PATH/stamp`: the public page's stamp form (a digest).
    Stamp,
    /// `POST PATH/verify`: the public page's verify form (a token and a digest).
    Verify,
    /// `POST PATH` with another media type: the body of an Authenticode service
    /// (`signtool /t` sends `application/octet-stream`, or none); an RFC 3161 service answers
    /// it `415`, saying where Authenticode requests go.
    Other,
}

/// A public timestamp page (`GET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `GET PATH` asking for HTML: what this TSA is.
    Info,
    /// `GET PATH/chain.pem`.
    Chain,
    /// `GET PATH/assets/NAME`: the asset at this index of [`crate::web::ASSETS`].
    Asset(usize),
}

/// A parsed request head: the action, where the body starts, and keep-alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do with it.
    pub action: Action,
    /// Bytes of the head, request line to the blank line: the body starts here.
    pub head_len: usize,
    /// Keep the connection open after the answer (HTTP/1.1 default, `Connection` header).
    pub keep_alive: bool,
    /// HTTP/1.x minor version.
    pub minor: u8,
}

/// Not a complete head yet, or a head we must refuse before reading more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more.
    Partial,
    /// A whole head.
    Complete(Request),
    /// The head is unusable; answer `status` and close.
    Invalid { status: u16 },
}

const MAX_HEADERS: usize = 48;

/// Parses the head at the start of `buf` and decides what to do. `routes` maps a path to a
/// service index; `probes` says which probe paths the listener answers (the others are 404).
pub fn parse(
    buf: &[u8],
    limits: &HttpConfig,
    routes: &[(String, usize)],
    probes: Probes,
) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_header_bytes {
                Parsed::Invalid { status: 431 }
            } else {
                Parsed::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid { status: 431 },
        Err(_) => return Parsed::Invalid { status: 400 },
    };
    if head_len > limits.max_header_bytes {
        return Parsed::Invalid { status: 431 };
    }
    let minor = req.version.unwrap_or(1);
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = false;
    let mut content_type: Option<&[u8]> = None;
    let mut expect: Option<&[u8]> = None;
    let mut accept: Option<&[u8]> = None;
    let (mut close, mut keep_alive) = (false, false);
    let mut hosts = 0usize;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let Some(v) = parse_content_length(h.value) else {
                return Parsed::Invalid { status: 400 };
            };
            // RFC 9112 §6.3: differing Content-Length values are unrecoverable.
            if content_length.is_some_and(|c| c != v) {
                return Parsed::Invalid { status: 400 };
            }
            content_length = Some(v);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            expect = Some(h.value);
        } else if name.eq_ignore_ascii_case("accept") {
            accept = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // HTTP/1.1 is persistent unless "close"; HTTP/1.0 only with "keep-alive".
    let keep_alive = if minor == 0 {
        keep_alive && !close
    } else {
        !close
    };
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let done = |action| {
        Parsed::Complete(Request {
            action,
            head_len,
            keep_alive,
            minor,
        })
    };
    let has_body = content_length.unwrap_or(0) > 0 || transfer_encoding;
    let head_only = method == "HEAD";
    // A request with a body we will not read loses the framing: close after answering.
    let error = |status: u16, allow| {
        done(Action::Error {
            status,
            close: has_body,
            allow,
            head_only,
            route: None,
        })
    };
    let fatal = |status: u16| {
        done(Action::Error {
            status,
            close: true,
            allow: None,
            head_only,
            route: None,
        })
    };

    if transfer_encoding && content_length.is_some() {
        // RFC 9112 §6.1: both present is a smuggling vector.
        return Parsed::Invalid { status: 400 };
    }
    // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without a Host header,
    // and to any request with more than one.
    if hosts > 1 || (minor >= 1 && hosts == 0) {
        return error(400, None);
    }
    if probes.allows(path) {
        if has_body {
            // A body here would be left unread and parsed as the next request (a smuggling
            // vector behind a proxy): refuse and close.
            return fatal(400);
        }
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return error(405, Some("GET, HEAD")),
        };
        return done(match path {
            "/health" => Action::Health { head_only },
            "/ready" => Action::Ready { head_only },
            _ => Action::Metrics { head_only },
        });
    }
    // The route itself, or one of its public pages (`PATH/stamp`, `PATH/chain.pem`...).
    let found = routes.iter().enumerate().find_map(|(i, (p, s))| {
        if p == path {
            return Some((i, *s, ""));
        }
        let sub = path.strip_prefix(p.as_str())?.strip_prefix('/')?;
        Some((i, *s, sub))
    });
    let Some((route, service, sub)) = found else {
        return error(404, None);
    };
    let page = |page| {
        done(Action::Page {
            service,
            route,
            page,
            head_only,
        })
    };
    let get = method == "GET" || method == "HEAD";
    let form = match sub {
        "" if get && !has_body && accept.is_some_and(super::public::accepts_html) => {
            return page(Page::Info)
        }
        "" => Form::Rfc3161,
        "chain.pem" if get && !has_body => return page(Page::Chain),
        "stamp" => Form::Stamp,
        "verify" => Form::Verify,
        other => match other
            .strip_prefix("assets/")
            .and_then(|name| crate::web::ASSETS.iter().position(|a| a.name == name))
        {
            Some(i) if get && !has_body => return page(Page::Asset(i)),
            _ => return error(404, None),
        },
    };
    // From here on a refusal concerns the service: it is told (rate limit, monitors, audit).
    let refuse = |status: u16, close: bool, allow| {
        done(Action::Error {
            status,
            close,
            allow,
            head_only,
            route: Some(route),
        })
    };
    if method != "POST" {
        return refuse(405, has_body, Some("POST"));
    }
    if transfer_encoding {
        // Chunked bodies are not supported: a timestamp query is small and has a length.
        return refuse(411, true, None);
    }
    let Some(body_len) = content_length else {
        return refuse(411, true, None);
    };
    if body_len > limits.max_body_bytes {
        return refuse(413, true, None);
    }
    let form = match form {
        Form::Rfc3161 if !content_type.is_some_and(is_timestamp_query) => Form::Other,
        Form::Stamp | Form::Verify if !content_type.is_some_and(is_form) => {
            return refuse(415, has_body, None);
        }
        f => f,
    };
    let expect_continue = match expect {
        None => false,
        Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => minor >= 1,
        Some(_) => return refuse(417, has_body, None),
    };
    done(Action::Timestamp {
        service,
        route,
        body_len,
        expect_continue,
        form,
    })
}

/// `application/x-www-form-urlencoded`, what the public pages' forms post.
fn is_form(v: &[u8]) -> bool {
    let media = v.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
    media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

fn parse_content_length(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 12 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `application/timestamp-query`, case-insensitive, parameters (`; charset=...`) tolerated.
fn is_timestamp_query(v: &[u8]) -> bool {
    let media = v.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
    media.eq_ignore_ascii_case(b"application/timestamp-query")
}

/// The reason phrase of a status stampd sends (RFC 9110 §15); `Error` for any other.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Appends a complete response. `body` is omitted on the wire when `head_only`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[(&str, &str)],
    head_only: bool,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n"
    } else {
        b"Connection: close\r\n"
    });
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// The statuses counted in `stampd_http_refusals_total`: every error stampd answers at the
/// HTTP level (a refusal leaves no audit record, so this is where it is seen). Any other
/// status is counted as `other`.
const COUNTED: [u16; 12] = [400, 404, 405, 408, 411, 413, 415, 417, 429, 431, 500, 503];

/// HTTP-level refusals by status since start, for every core (one relaxed atomic add each).
static REFUSALS: [AtomicU64; COUNTED.len() + 1] = [const { AtomicU64::new(0) }; COUNTED.len() + 1];

/// Appends `stampd_http_refusals_total` by status for `GET /metrics`.
pub fn refusal_metrics(out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "# TYPE stampd_http_refusals_total counter");
    for (i, n) in REFUSALS.iter().enumerate() {
        let status = COUNTED.get(i).map_or("other".to_string(), u16::to_string);
        let _ = writeln!(
            out,
            "stampd_http_refusals_total{{status=\"{status}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}

/// Appends a short plain-text error response, and counts it.
pub fn write_error(
    out: &mut Vec<u8>,
    status: u16,
    keep_alive: bool,
    allow: Option<&str>,
    head_only: bool,
) {
    write_error_saying(out, status, keep_alive, allow, head_only, reason(status));
}

/// [`write_error`] with `text` (one line) as the body instead of the reason phrase.
pub fn write_error_saying(
    out: &mut Vec<u8>,
    status: u16,
    keep_alive: bool,
    allow: Option<&str>,
    head_only: bool,
    text: &str,
) {
    let slot = COUNTED
        .iter()
        .position(|&s| s == status)
        .unwrap_or(COUNTED.len());
    REFUSALS[slot].fetch_add(1, Ordering::Relaxed);
    let mut body = text.as_bytes().to_vec();
    body.push(b'\n');
    let mut extra = Vec::new();
    if let Some(a) = allow {
        extra.push(("Allow", a));
    }
    if status == 503 || status == 429 {
        extra.push(("Retry-After", "1"));
    }
    write_response(
        out,
        status,
        "text/plain; charset=utf-8",
        &body,
        keep_alive,
        &extra,
        head_only,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<(String, usize)> {
        vec![("/tsa".into(), 0), ("/other".into(), 1)]
    }

    fn p(s: &str) -> Parsed {
        parse(s.as_bytes(), &HttpConfig::default(), &routes(), Probes::ALL)
    }

    fn action(s: &str) -> Action {
        match p(s) {
            Parsed::Complete(r) => r.action,
            other => panic!("{other:?}"),
        }
    }

    const OK: &str = "POST /tsa HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\nContent-Length: 10\r\n\r\n";

    #[test]
    fn timestamp_post_is_routed() {
        assert_eq!(
            action(OK),
            Action::Timestamp {
                service: 0,
                route: 0,
                body_len: 10,
                expect_continue: false,
                form: Form::Rfc3161,
            }
        );
        let r = action("POST /other?x=1 HTTP/1.1\r\nHost: t\r\nContent-Type: Application/Timestamp-Query; charset=binary\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(
            r,
            Action::Timestamp {
                service: 1,
                route: 1,
                body_len: 3,
                expect_continue: false,
                form: Form::Rfc3161,
            }
        );
    }

    #[test]
    fn public_pages_are_routed_beside_the_rfc3161_path() {
        let get = |path: &str, accept: &str| {
            action(&format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
            ))
        };
        let page = |page, route, service| Action::Page {
            service,
            route,
            page,
            head_only: false,
        };
        // A browser's GET of the path is the info page; any other GET keeps its 405.
        assert_eq!(
            get("/tsa", "text/html,application/xhtml+xml"),
            page(Page::Info, 0, 0)
        );
        assert!(matches!(
            get("/tsa", "application/timestamp-reply"),
            Action::Error {
                status: 405,
                route: Some(0),
                ..
            }
        ));
        assert_eq!(get("/other/chain.pem", "*/*"), page(Page::Chain, 1, 1));
        let css = crate::web::ASSETS
            .iter()
            .position(|a| a.name == "stampd.css")
            .unwrap();
        assert_eq!(
            get("/tsa/assets/stampd.css", "*/*"),
            page(Page::Asset(css), 0, 0)
        );
        for unknown in ["/tsa/assets/../x", "/tsa/nope", "/tsax", "/tsa/assets/"] {
            assert!(
                matches!(get(unknown, "text/html"), Action::Error { status: 404, .. }),
                "{unknown}"
            );
        }
        // The forms: a urlencoded POST, refused as any POST is when it is not.
        let form = |path: &str, ctype: &str| {
            action(&format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: 4\r\n\r\n"
            ))
        };
        assert_eq!(
            form(
                "/tsa/stamp",
                "application/x-www-form-urlencoded;charset=UTF-8"
            ),
            Action::Timestamp {
                service: 0,
                route: 0,
                body_len: 4,
                expect_continue: false,
                form: Form::Stamp,
            }
        );
        assert!(matches!(
            form("/tsa/verify", "application/x-www-form-urlencoded"),
            Action::Timestamp {
                form: Form::Verify,
                ..
            }
        ));
        assert!(matches!(
            form("/tsa/stamp", "application/timestamp-query"),
            Action::Error { status: 415, .. }
        ));
        // On the RFC 3161 path another media type is left to the service (an Authenticode
        // service takes it; an RFC 3161 one answers 415 before reading the body).
        assert!(matches!(
            form("/tsa", "application/x-www-form-urlencoded"),
            Action::Timestamp {
                form: Form::Other,
                ..
            }
        ));
        assert!(matches!(
            get("/tsa/stamp", "text/html"),
            Action::Error { status: 405, .. }
        ));
    }

    #[test]
    fn partial_heads_wait_and_oversized_heads_are_431() {
        assert_eq!(p("POST /tsa HTTP/1.1\r\nHost"), Parsed::Partial);
        let big = format!(
            "POST /tsa HTTP/1.1\r\nHost: t\r\nX: {}\r\n",
            "a".repeat(9000)
        );
        assert_eq!(p(&big), Parsed::Invalid { status: 431 });
    }

    #[test]
    fn garbage_is_400() {
        assert_eq!(
            p("\x00\x01\x02 nonsense\r\n\r\n"),
            Parsed::Invalid { status: 400 }
        );
    }

    #[test]
    fn wrong_method_path_and_type() {
        assert_eq!(
            action("GET /tsa HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Error {
                status: 405,
                close: false,
                allow: Some("POST"),
                head_only: false,
                route: Some(0),
            }
        );
        assert_eq!(
            action("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Error {
                status: 404,
                close: false,
                allow: None,
                head_only: false,
                route: None,
            }
        );
        assert_eq!(
            action("POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"),
            Action::Timestamp {
                service: 0,
                route: 0,
                body_len: 2,
                expect_continue: false,
                form: Form::Other,
            }
        );
        assert_eq!(
            action("POST /tsa/stamp HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"),
            Action::Error {
                status: 415,
                close: true,
                allow: None,
                head_only: false,
                route: Some(0),
            }
        );
        assert_eq!(
            action("GET /health HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Health { head_only: false }
        );
        assert_eq!(
            action("HEAD /ready HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Ready { head_only: true }
        );
        assert_eq!(
            action("POST /ready HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
            Action::Error {
                status: 405,
                close: false,
                allow: Some("GET, HEAD"),
                head_only: false,
                route: None,
            }
        );
    }

    #[test]
    fn the_operational_paths_answer_get_and_head_alike() {
        assert_eq!(
            action("HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Metrics { head_only: true }
        );
        assert_eq!(
            action("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Metrics { head_only: false }
        );
        assert_eq!(
            action("POST /metrics HTTP/1.1\r\nHost: t\r\n\r\n"),
            Action::Error {
                status: 405,
                close: false,
                allow: Some("GET, HEAD"),
                head_only: false,
                route: None,
            }
        );
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        let refused = Action::Error {
            status: 400,
            close: false,
            allow: None,
            head_only: false,
            route: None,
        };
        assert_eq!(action("GET /health HTTP/1.1\r\n\r\n"), refused);
        assert_eq!(
            action("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            refused
        );
        assert_eq!(
            action("GET /health HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            refused
        );
        // HTTP/1.0 may leave it out.
        assert_eq!(
            action("GET /health HTTP/1.0\r\n\r\n"),
            Action::Health { head_only: false }
        );
        // A refused request with a body we do not read closes the connection.
        assert_eq!(
            action("POST /tsa HTTP/1.1\r\nContent-Type: application/timestamp-query\r\nContent-Length: 3\r\n\r\n"),
            Action::Error {
                status: 400,
                close: true,
                allow: None,
                head_only: false,
                route: None,
            }
        );
    }

    #[test]
    fn body_framing_rules() {
        let no_len =
            "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\n\r\n";
        assert_eq!(
            action(no_len),
            Action::Error {
                status: 411,
                close: true,
                allow: None,
                head_only: false,
                route: Some(0),
            }
        );
        let chunked = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            action(chunked),
            Action::Error {
                status: 411,
                close: true,
                allow: None,
                head_only: false,
                route: Some(0),
            }
        );
        let bad_len = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(p(bad_len), Parsed::Invalid { status: 400 });
        let two = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(p(two), Parsed::Invalid { status: 400 });
        let both = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(p(both), Parsed::Invalid { status: 400 });
        let huge = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\nContent-Length: 65537\r\n\r\n";
        assert_eq!(
            action(huge),
            Action::Error {
                status: 413,
                close: true,
                allow: None,
                head_only: false,
                route: Some(0),
            }
        );
    }

    #[test]
    fn keep_alive_rules() {
        let get = |s: &str| match p(s) {
            Parsed::Complete(r) => r.keep_alive,
            other => panic!("{other:?}"),
        };
        assert!(get("GET /health HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert!(!get(
            "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ));
        assert!(!get("GET /health HTTP/1.0\r\n\r\n"));
        assert!(get(
            "GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        ));
    }

    #[test]
    fn expect_continue() {
        let s = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
        assert_eq!(
            action(s),
            Action::Timestamp {
                service: 0,
                route: 0,
                body_len: 5,
                expect_continue: true,
                form: Form::Rfc3161,
            }
        );
        let s = "POST /tsa HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\nContent-Length: 5\r\nExpect: magic\r\n\r\n";
        assert_eq!(
            action(s),
            Action::Error {
                status: 417,
                close: true,
                allow: None,
                head_only: false,
                route: Some(0),
            }
        );
    }

    #[test]
    fn responses_are_well_formed() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            200,
            "application/timestamp-reply",
            b"abc",
            true,
            &[],
            false,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc"
        );
    }
}
