//! The load: HTTP/1.1 keep-alive connections on monoio, many per thread, one runtime per
//! thread. Closed loop (each connection sends its next request when the reply is in) or
//! open loop (each connection sends on a fixed schedule, and latency counts from the
//! intended send time, so a stalled server is not hidden by the generator waiting for it:
//! no coordinated omission).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::check::{self, Failure, Trust};
use crate::mix::{Mix, Prepared};

/// Requests made ahead per connection (they repeat after this many).
const POOL: usize = 256;
/// Highest latency recorded, in microseconds (larger values are clamped).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// What to run.
pub struct Plan {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total requests per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub mix: Mix,
    /// Verify one reply in this many fully (0: never).
    pub verify_every: u64,
    pub trust: Option<Arc<Trust>>,
}

/// Live counters the progress line reads.
#[derive(Default)]
pub struct Progress {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

/// What one thread saw (after the warm-up).
pub struct Stats {
    /// Latency of every correct reply, µs.
    pub latency: Histogram<u64>,
    /// The same, per second of the measurement (for the HdrHistogram log).
    pub intervals: Vec<Histogram<u64>>,
    pub ok: u64,
    /// Correct replies that arrived before the window closed (throughput counts these).
    pub ok_in_window: u64,
    pub errors: BTreeMap<String, u64>,
    /// Of the `verification-failed` errors: sampled tokens that carried no certificate,
    /// with no untrusted certificate to complete the chain.
    pub uncertified: u64,
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: histogram(),
            intervals: Vec::new(),
            ok: 0,
            ok_in_window: 0,
            errors: BTreeMap::new(),
            uncertified: 0,
        }
    }

    pub fn merge(&mut self, other: Stats) {
        let _ = self.latency.add(&other.latency);
        for (i, h) in other.intervals.into_iter().enumerate() {
            if self.intervals.len() <= i {
                self.intervals.resize_with(i + 1, histogram);
            }
            let _ = self.intervals[i].add(&h);
        }
        self.ok += other.ok;
        self.ok_in_window += other.ok_in_window;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.uncertified += other.uncertified;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Runs the plan on `threads` threads; returns the merged statistics.
pub fn run(plan: Arc<Plan>, progress: Arc<Progress>, start: Instant) -> Result<Stats, String> {
    let handles: Vec<_> = (0..plan.threads)
        .map(|t| {
            let (plan, progress) = (Arc::clone(&plan), Arc::clone(&progress));
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || thread_main(t, &plan, progress, start))
                .map_err(|e| format!("cannot start a load thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut total = Stats::new();
    for h in handles {
        total.merge(h.join().map_err(|_| "a load thread panicked")??);
    }
    Ok(total)
}

fn thread_main(
    t: usize,
    plan: &Arc<Plan>,
    progress: Arc<Progress>,
    start: Instant,
) -> Result<Stats, String> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let stats = Rc::new(RefCell::new(Stats::new()));
    rt.block_on(async {
        let tasks: Vec<_> = (t..plan.connections)
            .step_by(plan.threads)
            .map(|conn| {
                let (plan, stats, progress) =
                    (Arc::clone(plan), Rc::clone(&stats), Arc::clone(&progress));
                monoio::spawn(
                    async move { connection(conn, &plan, &stats, &progress, start).await },
                )
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .map_err(|_| "statistics still shared".to_string())
}

/// The whole request on the wire.
fn wire(plan: &Plan, req: &Prepared) -> Vec<u8> {
    let mut v = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
        plan.path,
        plan.host,
        req.body.len()
    )
    .into_bytes();
    v.extend_from_slice(&req.body);
    v
}

/// How one exchange ended.
pub enum Exchange {
    /// A complete reply: HTTP status, body range in the buffer, whether it closes.
    Reply {
        status: u16,
        body: std::ops::Range<usize>,
        consumed: usize,
        close: bool,
    },
    Failed(&'static str),
}

/// Lateness up to this is the timer's (millisecond wheel), not the server's.
const TIMER_SLACK: Duration = Duration::from_millis(2);
/// Largest reply accepted; anything bigger is an error, never an allocation.
const MAX_REPLY: usize = 1 << 20;

/// Records one outcome of a request whose slot is in the measured window.
fn record(
    stats: &RefCell<Stats>,
    progress: &Progress,
    result: Result<(Duration, bool), &Failure>,
    second: usize,
) {
    let mut st = stats.borrow_mut();
    match result {
        Ok((latency, in_window)) => {
            let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
            st.ok += 1;
            st.ok_in_window += u64::from(in_window);
            let _ = st.latency.record(us);
            if st.intervals.len() <= second {
                st.intervals.resize_with(second + 1, histogram);
            }
            let _ = st.intervals[second].record(us);
            progress.ok.fetch_add(1, Ordering::Relaxed);
        }
        Err(failure) => {
            *st.errors.entry(failure.kind().to_string()).or_default() += 1;
            st.uncertified += u64::from(*failure == Failure::Uncertified);
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn connection(
    conn: usize,
    plan: &Plan,
    stats: &RefCell<Stats>,
    progress: &Progress,
    start: Instant,
) {
    let reqs = plan.mix.prepare(conn as u64, POOL);
    let wires: Vec<Vec<u8>> = reqs.iter().map(|r| wire(plan, r)).collect();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    // Open loop: this connection's share of the rate, its sends spread evenly over the
    // connections' phases (the gap is validated by `main::plan`).
    let gap = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r));
    let mut next = start
        + gap.map_or(Duration::ZERO, |g| {
            g.mul_f64(conn as f64 / plan.connections as f64)
        });
    let mut stream: Option<TcpStream> = None;
    let mut out = Vec::with_capacity(512);
    let mut buf = Vec::with_capacity(8192);
    let mut k = 0usize;
    loop {
        // `intended`: when the request is due; `from`: where its latency counts from.
        let (intended, from) = match gap {
            Some(g) => {
                let t = next;
                next += g;
                let now = Instant::now();
                if t > now {
                    monoio::time::sleep_until(t.into()).await;
                } else if now >= end + plan.timeout {
                    // Requests due in the window are still sent after it closes (their
                    // latency counts from when they were due), but only until one timeout
                    // past it: what is still unsent then is counted, never dropped.
                    if t >= measure_from && t < end {
                        let behind = 1 + ((end - t).as_nanos() / g.as_nanos().max(1)) as u64;
                        let mut st = stats.borrow_mut();
                        *st.errors.entry("behind-schedule".into()).or_default() += behind;
                        progress.errors.fetch_add(behind, Ordering::Relaxed);
                    }
                    break;
                }
                // Latency counts from the intended time (the server's delay, including a
                // busy connection: no coordinated omission), except for the timer's own
                // millisecond of lateness.
                let sent = Instant::now();
                let from = if sent.saturating_duration_since(t) <= TIMER_SLACK {
                    sent
                } else {
                    t
                };
                (t, from)
            }
            None => {
                let now = Instant::now();
                (now, now)
            }
        };
        if intended >= end {
            break;
        }
        let counted = intended >= measure_from;
        let second = intended.saturating_duration_since(measure_from).as_secs() as usize;
        let i = k % POOL;
        k += 1;
        // A kept-alive connection the server closed while idle fails before any reply
        // byte: that request is sent once more on a fresh connection.
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let reused = stream.is_some();
            let s = match &mut stream {
                Some(s) => s,
                None => {
                    match monoio::time::timeout(plan.timeout, TcpStream::connect(plan.addr)).await {
                        Ok(Ok(s)) => {
                            let _ = s.set_nodelay(true);
                            buf.clear();
                            stream.insert(s)
                        }
                        Ok(Err(_)) | Err(_) => break Err("connect"),
                    }
                }
            };
            out.clear();
            out.extend_from_slice(&wires[i]);
            match monoio::time::timeout(plan.timeout, exchange(s, &mut out, &mut buf)).await {
                Ok(Exchange::Failed("closed" | "write"))
                    if reused && buf.is_empty() && attempts == 1 =>
                {
                    stream = None;
                }
                Ok(Exchange::Failed(kind)) => break Err(kind),
                Err(_) => break Err("timeout"),
                Ok(reply) => break Ok(reply),
            }
        };
        let done = Instant::now();
        let verdict: Result<(), Failure> = match outcome {
            Ok(Exchange::Reply {
                status,
                body,
                consumed,
                close,
            }) => {
                let verdict = if status != 200 {
                    Err(format!("http-{status}").into())
                } else if buf.len() > consumed {
                    // Bytes nobody asked for: the connection's framing is lost.
                    Err("unexpected-bytes".into())
                } else {
                    let trust = (plan.verify_every > 0
                        && (k as u64).is_multiple_of(plan.verify_every))
                    .then_some(plan.trust.as_deref())
                    .flatten();
                    check::reply(&buf[body], &reqs[i], trust)
                };
                if close || buf.len() > consumed {
                    stream = None;
                }
                buf.clear();
                verdict
            }
            Ok(Exchange::Failed(kind)) | Err(kind) => {
                stream = None;
                Err(kind.into())
            }
        };
        if counted {
            record(
                stats,
                progress,
                verdict.as_ref().map(|()| (done - from, done < end)),
                second,
            );
        }
        if stream.is_none() && verdict.is_err() && Instant::now() < end {
            // Not a spin on a dead server: the schedule catches up afterwards.
            monoio::time::sleep(Duration::from_millis(100).min(plan.timeout)).await;
        }
    }
}

/// Writes one request and reads its reply into `buf`.
async fn exchange(s: &mut TcpStream, out: &mut Vec<u8>, buf: &mut Vec<u8>) -> Exchange {
    let (res, back) = s.write_all(std::mem::take(out)).await;
    *out = back;
    if res.is_err() {
        return Exchange::Failed("write");
    }
    loop {
        if let Some(done) = parse(buf) {
            return done;
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(4096));
        }
        let taken = std::mem::take(buf);
        let len = taken.len();
        let (res, slice) = s.read(monoio::buf::IoBufMut::slice_mut(taken, len..)).await;
        *buf = slice.into_inner();
        match res {
            Ok(0) => return Exchange::Failed("closed"),
            Err(_) => return Exchange::Failed("read"),
            Ok(_) => {}
        }
    }
}

/// A complete reply at the start of `buf`, or `None` while more bytes are needed.
pub fn parse(buf: &[u8]) -> Option<Exchange> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_REPLY => {
            return Some(Exchange::Failed("reply-too-large"))
        }
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Exchange::Failed("bad-http")),
    };
    let mut length = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Timestamp replies are small: servers send them with a length.
            return Some(Exchange::Failed("chunked-reply"));
        }
    }
    let Some(length) = length else {
        return Some(Exchange::Failed("no-content-length"));
    };
    let total = match head.checked_add(length) {
        Some(t) if t <= MAX_REPLY => t,
        _ => return Some(Exchange::Failed("reply-too-large")),
    };
    if buf.len() < total {
        return None;
    }
    Some(Exchange::Reply {
        status: resp.code.unwrap_or(0),
        body: head..total,
        consumed: total,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1";
        match parse(r) {
            Some(Exchange::Reply {
                status,
                body,
                consumed,
                close,
            }) => {
                assert_eq!((status, body, consumed, close), (200, 38..41, 41, false));
            }
            _ => panic!("complete"),
        }
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab").is_none());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le").is_none());
        assert!(matches!(
            parse(b"HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            Some(Exchange::Reply {
                status: 503,
                close: true,
                ..
            })
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n"),
            Some(Exchange::Failed("no-content-length"))
        ));
        assert!(matches!(
            parse(b"garbage\r\n\r\n"),
            Some(Exchange::Failed("bad-http"))
        ));
        // A length that would overflow, or more than a reply can be: an error, not a panic
        // or an allocation.
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(matches!(
            parse(huge),
            Some(Exchange::Failed("reply-too-large"))
        ));
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n";
        assert!(matches!(
            parse(big),
            Some(Exchange::Failed("reply-too-large"))
        ));
    }
}
