//! The shared harness: starts the real `stampd` binary on a loopback port and talks to it
//! over real sockets. Every test owns its server; dropping it kills the process.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

pub mod ca;
pub mod pg;
pub mod signing;
pub mod sntp;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_stampd");

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub path: String,
    pub data_dir: PathBuf,
    /// The line the server printed when it started ("... (io_uring driver)").
    pub banner: String,
    /// The admin listener (`/metrics`, `/health`, `/ready`), unless it is off.
    pub admin: Option<SocketAddr>,
    /// Every line the server wrote to stderr (its log, at `warn`), also passed on to the
    /// test's stderr.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `stampd serve --data-dir DIR --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
    /// [--config FILE]`.
    pub fn start(data_dir: &Path, config: Option<&str>) -> Server {
        Server::spawn(
            Command::new(BIN),
            data_dir,
            config,
            "127.0.0.1:0",
            "127.0.0.1:0",
        )
    }

    /// [`Server::start`] listening on `listen` (a node behind a load balancer, restarted on
    /// the address the balancer knows).
    pub fn start_at(data_dir: &Path, config: Option<&str>, listen: SocketAddr) -> Server {
        let listen = listen.to_string();
        Server::spawn(Command::new(BIN), data_dir, config, &listen, "127.0.0.1:0")
    }

    /// [`Server::start`] from `cmd` (`stampd` with the environment the test wants).
    pub fn start_command(cmd: Command, data_dir: &Path, config: Option<&str>) -> Server {
        Server::spawn(cmd, data_dir, config, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// [`Server::start`] with `--admin-listen ADDR` (e.g. `off`) instead of a free port.
    pub fn start_with_admin(data_dir: &Path, config: Option<&str>, admin: &str) -> Server {
        Server::spawn(Command::new(BIN), data_dir, config, "127.0.0.1:0", admin)
    }

    /// [`Server::start`] with at most `nofile` open files (hard and soft limit, by
    /// util-linux `prlimit`).
    pub fn start_with_nofile(data_dir: &Path, config: Option<&str>, nofile: u64) -> Server {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}")).arg("--").arg(BIN);
        Server::spawn(cmd, data_dir, config, "127.0.0.1:0", "127.0.0.1:0")
    }

    fn spawn(
        mut cmd: Command,
        data_dir: &Path,
        config: Option<&str>,
        listen: &str,
        admin: &str,
    ) -> Server {
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .arg("--admin-listen")
            .arg(admin);
        if let Some(text) = config {
            let file = data_dir.with_extension("toml");
            std::fs::write(&file, text).unwrap();
            cmd.arg("--config").arg(&file);
        }
        cmd.env("STAMPD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn stampd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(std::io::stderr(), "{line}");
                lines.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let admin_at = line
                        .strip_prefix("stampd: admin on http://")
                        .or_else(|| line.strip_prefix("stampd: admin on https://"));
                    if let Some(rest) = admin_at {
                        admin = rest
                            .split_whitespace()
                            .next()
                            .map(|a| a.trim_end_matches('/').parse().unwrap());
                    }
                    let serving = line
                        .strip_prefix("stampd: serving http://")
                        .or_else(|| line.strip_prefix("stampd: serving https://"));
                    if let Some(rest) = serving {
                        let url = rest.split_whitespace().next().unwrap();
                        let slash = url.find('/').unwrap();
                        return Server {
                            child,
                            addr: url[..slash].parse().unwrap(),
                            path: url[slash..].to_string(),
                            data_dir: data_dir.to_path_buf(),
                            banner: line.clone(),
                            admin,
                            log,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("stampd did not start (status {:?})", child.wait());
                }
            }
        }
    }

    /// Every line of the server's log so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many lines of the server's log so far contain `text`.
    pub fn log_count(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size in bytes (`VmRSS` of /proc/PID/status).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib << 10
    }

    /// `GET path` on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.admin.expect("an admin listener")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, &mut Vec::new()).expect("an admin reply");
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    }

    /// `GET /metrics` from the admin listener.
    pub fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200);
        body
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("pki/ca.pem")
    }

    pub fn tsa_cert(&self) -> PathBuf {
        self.data_dir.join("pki/tsa.pem")
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Stops the server gracefully (SIGTERM) and waits for it; returns how it exited.
    pub fn terminate(mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().ok()
    }

    /// Sends `signal` (e.g. `TERM`, `HUP`) without waiting.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the server to exit by itself (after [`Server::signal`]), at most `timeout`.
    pub fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server the hard way (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP response read off a stream.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads exactly one HTTP response (Content-Length framed) from `s`, keeping any extra
/// bytes in `pending` for the next call.
pub fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Response> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = r.parse(pending) {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let status = r.code.unwrap();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            while pending.len() < n + len {
                let mut buf = [0u8; 65536];
                let got = s.read(&mut buf).ok()?;
                if got == 0 {
                    return None;
                }
                pending.extend_from_slice(&buf[..got]);
            }
            let body = pending[n..n + len].to_vec();
            pending.drain(..n + len);
            return Some(Response {
                status,
                headers,
                body,
            });
        }
        let mut buf = [0u8; 65536];
        let got = s.read(&mut buf).ok()?;
        if got == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..got]);
    }
}

/// Sends raw bytes and reads one response.
pub fn exchange(server: &Server, raw: &[u8]) -> Option<Response> {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    read_response(&mut s, &mut Vec::new())
}

/// A well-formed timestamp POST for `body`.
pub fn post_bytes(path: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Runs a command and returns (success, combined output).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A throwaway directory under the system temp dir.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A serial number as `stampd audit export` writes it: the INTEGER's value in lowercase hex
/// without leading zeros.
pub fn serial_text(serial: &[u8]) -> String {
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    let t = hex.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// What a load thread saw.
#[derive(Debug, Default)]
pub struct Load {
    /// Serials of every granted token received.
    pub granted: Vec<String>,
    /// Replies that were not granted tokens (HTTP errors or rejections).
    pub other: u64,
}

/// Issues requests over a keep-alive connection until `stop`, reconnecting to the address
/// in `addr` (a restarted server has a new one) when the connection breaks.
pub fn load(
    addr: &std::sync::Mutex<SocketAddr>,
    path: &str,
    stop: &std::sync::atomic::AtomicBool,
    seed: u64,
) -> Load {
    use stampd::protocol::{request, response, HashAlg, PkiStatus};
    use std::sync::atomic::Ordering;
    let mut seen = Load::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let target = *addr.lock().unwrap();
        let Ok(mut s) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = s.set_nodelay(true);
        let mut pending = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&seed.to_be_bytes());
            digest[8..16].copy_from_slice(&n.to_be_bytes());
            let body = request::encode(
                HashAlg::Sha256,
                &digest,
                None,
                Some(&n.to_be_bytes()),
                false,
            );
            if s.write_all(&post_bytes(path, &body, "")).is_err() {
                break;
            }
            let Some(r) = read_response(&mut s, &mut pending) else {
                break;
            };
            match response::decode(&r.body) {
                Ok(resp) if r.status == 200 && resp.status == PkiStatus::Granted => {
                    let token = resp.token.expect("granted replies carry a token");
                    seen.granted.push(serial_text(token.tst_info.serial));
                }
                _ => seen.other += 1,
            }
        }
    }
    seen
}

/// Load threads ([`load`], one connection each) against an address that may change (a
/// restarted server has a new one); stop them with [`Loaders::finish`].
pub struct Loaders {
    /// Where they send; set it to a restarted server's address.
    pub addr: Arc<Mutex<SocketAddr>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Load>>,
}

impl Loaders {
    /// `n` threads POSTing to `path` at `addr`, their digests seeded from `seed` on.
    pub fn start(addr: SocketAddr, path: &str, n: u64, seed: u64) -> Loaders {
        let addr = Arc::new(Mutex::new(addr));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (seed..seed + n)
            .map(|seed| {
                let (addr, stop, path) = (addr.clone(), stop.clone(), path.to_string());
                std::thread::spawn(move || load(&addr, &path, &stop, seed))
            })
            .collect();
        Loaders {
            addr,
            stop,
            threads,
        }
    }

    /// Stops them; what they saw, together.
    pub fn finish(self) -> Load {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = Load::default();
        for t in self.threads {
            let l = t.join().unwrap();
            all.granted.extend(l.granted);
            all.other += l.other;
        }
        all
    }
}

/// `stampd audit export` of a data directory: one JSON value per request record (the
/// clock's events left out; [`export_all`] keeps them).
pub fn export(data_dir: &Path) -> Vec<serde_json::Value> {
    export_all(data_dir)
        .into_iter()
        .filter(|r| r["kind"] == "request")
        .collect()
}

/// The standard output of `cmd`, which must succeed (its stderr in the failure).
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `stampd audit export` of a data directory: every entry, requests and events, in order.
pub fn export_all(data_dir: &Path) -> Vec<serde_json::Value> {
    stdout_of(
        Command::new(BIN)
            .args(["audit", "export", "--data-dir"])
            .arg(data_dir),
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}
