//! The SNTP client's I/O: one poll of every configured server, in parallel, from one UDP
//! socket per address family, so each reply's receive time (T4) is taken the moment it
//! arrives. Packets are built and checked by [`crate::protocol::sntp`].

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::quorum::Answer;
use crate::protocol::sntp::{self, Leap, Reply};

/// How often a host name is looked up again once it has resolved.
const REFRESH: Duration = Duration::from_secs(300);

/// One configured server and its last resolved address.
#[derive(Debug, Clone)]
pub struct Server {
    /// As configured: `host:port` (port 123 when left out).
    pub name: String,
    addr: Option<SocketAddr>,
    resolved_at: Option<Instant>,
}

impl Server {
    /// A server from its configured name; resolved at the first poll, then every five
    /// minutes.
    pub fn new(name: &str) -> Self {
        Server {
            name: name.to_string(),
            addr: None,
            resolved_at: None,
        }
    }

    /// `name` with port 123 added when it has none (IPv6 literals in brackets).
    pub(super) fn with_port(&self) -> String {
        let n = &self.name;
        let has_port = match n.rfind(']') {
            Some(close) => n[close..].contains(':'),
            None => n.matches(':').count() == 1,
        };
        if has_port {
            n.clone()
        } else if n.contains(':') && !n.starts_with('[') {
            format!("[{n}]:123")
        } else {
            format!("{n}:123")
        }
    }

    /// The address to ask. A literal address needs no lookup; a host name is looked up on
    /// another thread, waited for at most `deadline`, so a slow or dead resolver cannot
    /// hold the poll past the verdict's expiry; the last good address is kept when a lookup
    /// fails or is late.
    fn resolve(&mut self, deadline: Duration) -> Result<SocketAddr, String> {
        let name = self.with_port();
        if let Ok(literal) = name.parse::<SocketAddr>() {
            return Ok(literal);
        }
        if self.addr.is_some() && self.resolved_at.is_some_and(|t| t.elapsed() < REFRESH) {
            return self.addr.ok_or_else(|| "no address".into());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let lookup = name.clone();
        let spawned = std::thread::Builder::new()
            .name("stampd-clock-dns".into())
            .spawn(move || {
                let _ = tx.send(lookup.to_socket_addrs().map(|mut a| a.next()));
            });
        let answer = match spawned {
            Ok(_) => rx
                .recv_timeout(deadline)
                .map_err(|_| "lookup timed out".to_string()),
            Err(e) => Err(format!("cannot start a lookup: {e}")),
        };
        match answer {
            Ok(Ok(Some(a))) => {
                self.addr = Some(a);
                self.resolved_at = Some(Instant::now());
            }
            Ok(Ok(None)) if self.addr.is_none() => return Err("resolves to no address".into()),
            Ok(Err(e)) if self.addr.is_none() => return Err(format!("cannot resolve: {e}")),
            Err(e) if self.addr.is_none() => return Err(format!("cannot resolve: {e}")),
            _ => {}
        }
        self.addr.ok_or_else(|| "no address".into())
    }
}

/// What one server said in one poll, for `clock status`, metrics and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The monitor's view of the reply.
    pub answer: Answer,
    /// Stratum of a usable reply.
    pub stratum: Option<u8>,
}

/// Queries every server once and waits up to `timeout` for all replies.
pub fn poll(servers: &mut [Server], timeout: Duration) -> Vec<Polled> {
    let fail = |why: String| Polled {
        answer: Answer {
            sample: Err(why),
            leap: Leap::None,
        },
        stratum: None,
    };
    let mut out: Vec<Polled> = (0..servers.len())
        .map(|_| fail("no reply within the timeout".into()))
        .collect();
    // Per server: (address, transmit timestamp sent, local send time).
    let mut pending: Vec<Option<(SocketAddr, u64, i128)>> = vec![None; servers.len()];
    let mut sockets: Vec<(bool, UdpSocket)> = Vec::new();
    let started = Instant::now();
    for i in 0..servers.len() {
        let left = timeout.saturating_sub(started.elapsed());
        let addr = match servers[i].resolve(left) {
            Ok(a) => a,
            Err(e) => {
                out[i] = fail(e);
                continue;
            }
        };
        // Two names for one address are one server: it must not count twice.
        if let Some(j) = pending[..i]
            .iter()
            .position(|p| p.is_some_and(|(a, _, _)| a == addr))
        {
            out[i] = fail(format!("the same address as {}", servers[j].name));
            continue;
        }
        let v6 = addr.is_ipv6();
        if !sockets.iter().any(|(f, _)| *f == v6) {
            let bind = if v6 { "[::]:0" } else { "0.0.0.0:0" };
            match UdpSocket::bind(bind) {
                Ok(sock) => sockets.push((v6, sock)),
                Err(e) => {
                    out[i] = fail(format!("cannot open a UDP socket: {e}"));
                    continue;
                }
            }
        }
        let Some((_, sock)) = sockets.iter().find(|(f, _)| *f == v6) else {
            continue;
        };
        let sent_ns = super::wall_nanos();
        // The server only echoes the transmit timestamp (the offset uses `sent_ns`, kept
        // here), so its fraction is random: an off-path sender cannot guess what a reply
        // must echo.
        let mut noise = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut noise);
        let transmit =
            (sntp::to_ntp(sent_ns) & !0xffff_ffff) | u64::from(u32::from_le_bytes(noise));
        match sock.send_to(&sntp::request(transmit), addr) {
            Ok(_) => pending[i] = Some((addr, transmit, sent_ns)),
            Err(e) => out[i] = fail(format!("send failed: {e}")),
        }
    }
    let deadline = started + timeout;
    let mut buf = [0u8; 512];
    for (_, sock) in &sockets {
        let _ = sock.set_nonblocking(true);
    }
    // Replies come on either socket; poll both with short sleeps only when there are two
    // families, else block on the one with the remaining time.
    while pending.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut got = false;
        for (_, sock) in &sockets {
            if sockets.len() == 1 {
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_read_timeout(Some(left));
            }
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let received_ns = super::wall_nanos();
            got = true;
            let Some(i) = pending
                .iter()
                .position(|p| p.is_some_and(|(a, _, _)| a == from))
            else {
                continue; // not from a server we asked
            };
            let Some((_, transmit, sent_ns)) = pending[i] else {
                continue;
            };
            match sntp::decode_reply(&buf[..n], transmit, sent_ns) {
                Ok(reply) => {
                    pending[i] = None;
                    out[i] = usable(&reply, sent_ns, received_ns);
                }
                // A bogus packet (wrong origin) may be a stale reply: keep waiting for
                // the real one.
                Err(sntp::ReplyError::Origin) => {}
                Err(e) => {
                    pending[i] = None;
                    out[i] = fail(e.to_string());
                }
            }
        }
        if !got && sockets.len() > 1 {
            std::thread::sleep(Duration::from_millis(1).min(left));
        }
    }
    out
}

fn usable(reply: &Reply, sent_ns: i128, received_ns: i128) -> Polled {
    Polled {
        answer: Answer {
            sample: Ok(reply.sample(sent_ns, received_ns)),
            leap: reply.leap,
        },
        stratum: Some(reply.stratum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_ntp_port_when_they_have_none() {
        assert_eq!(Server::new("ntp.example").with_port(), "ntp.example:123");
        assert_eq!(Server::new("127.0.0.1:5123").with_port(), "127.0.0.1:5123");
        assert_eq!(Server::new("::1").with_port(), "[::1]:123");
        assert_eq!(Server::new("[::1]").with_port(), "[::1]:123");
        assert_eq!(Server::new("[::1]:9").with_port(), "[::1]:9");
    }

    #[test]
    fn a_silent_server_times_out_and_an_unresolvable_one_says_so() {
        // A bound socket that never answers.
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut servers = vec![
            Server::new(&quiet.local_addr().unwrap().to_string()),
            Server::new("127.0.0.1:notaport"),
        ];
        let started = Instant::now();
        let got = poll(&mut servers, Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            got[0].answer.sample,
            Err("no reply within the timeout".into())
        );
        assert!(got[1]
            .answer
            .sample
            .as_ref()
            .unwrap_err()
            .starts_with("cannot resolve"));
    }
}
