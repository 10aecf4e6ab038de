//! The frontend's own settings: the `[server]` keys it reads (`io_driver`, `dispatch`,
//! `[server.http]` limits) and the listeners it binds. The assembler (`crate::config`) fills
//! them in; the frontend never reads the configuration file itself.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Which I/O driver the runtimes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoDriver {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// epoll only (containers that forbid io_uring).
    Epoll,
}

/// How a request travels from the HTTP core to the signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dispatch {
    /// Sign on the core that received the request (no hand-off; fastest for software keys).
    #[default]
    Inline,
    /// Hand requests to backend workers through a bounded queue (for HSM signing).
    Queue,
}

/// `[server.http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request head (request line + headers) in bytes; more → 431. Default 8192.
    pub max_header_bytes: usize,
    /// Largest request body in bytes; more → 413 before the body is read. Default 65536.
    pub max_body_bytes: usize,
    /// Time allowed to receive a whole request, in ms, counted from its first byte (or from
    /// the accept, for a connection's first request); then 408 and close (slowloris
    /// defence). Default 10000.
    pub request_timeout_ms: u64,
    /// Time an idle keep-alive connection is kept open between requests, in ms. Default
    /// 60000.
    pub idle_timeout_ms: u64,
    /// Open connections per core; more are answered 503 (Retry-After: 1) and closed.
    /// Default 16384; clamped at start to what the open-file limit allows (`fd_budget`).
    pub max_connections_per_core: usize,
    /// Request bodies being received, at most this many MiB on all cores together; a body
    /// that would pass it is answered 503 (and the connection closed) without being read.
    /// 0: an eighth of the machine's memory. Default 0.
    pub max_buffered_mib: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: 8192,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections_per_core: 16_384,
            max_buffered_mib: 0,
        }
    }
}

impl HttpConfig {
    /// Checks the limits (pure). Each message names the key under `server.http`.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (key, v) in [
            ("max_header_bytes", self.max_header_bytes),
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections_per_core", self.max_connections_per_core),
        ] {
            if v == 0 {
                errors.push(format!("server.http.{key}: must be at least 1"));
            }
        }
        if self.max_body_bytes > 1 << 20 {
            // A TimeStampReq is a few hundred bytes; the audit journal's frames are bounded.
            errors.push("server.http.max_body_bytes: at most 1048576 (1 MiB)".into());
        }
        if self.max_header_bytes < 256 {
            errors.push("server.http.max_header_bytes: at least 256 bytes".into());
        }
        for (key, v) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if v == 0 {
                errors.push(format!(
                    "server.http.{key}: must be at least 1 (milliseconds)"
                ));
            }
        }
        errors
    }
}

/// One listening socket and the paths it serves.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The address to bind (port 0: any free port, the same on every core).
    pub addr: SocketAddr,
    /// (path, service index).
    pub routes: Vec<(String, usize)>,
    /// Which of `/health`, `/ready` and `/metrics` it answers (404 for the others).
    pub probes: Probes,
    /// HTTPS, with these files (paths resolved); plain HTTP without.
    pub tls: Option<crate::policy::config::TlsConfig>,
}

/// The probe paths a listener answers: the admin listener all three; a service listener
/// `/health` and `/ready` by default (`[admin] public_probes`), for load balancers that probe
/// the public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Probes {
    /// `GET /health`: liveness.
    pub health: bool,
    /// `GET /ready`: readiness.
    pub ready: bool,
    /// `GET /metrics`: Prometheus text.
    pub metrics: bool,
}

impl Probes {
    /// All three: the admin listener.
    pub const ALL: Probes = Probes {
        health: true,
        ready: true,
        metrics: true,
    };

    /// Whether `path` is a probe this listener answers.
    pub fn allows(&self, path: &str) -> bool {
        match path {
            "/health" => self.health,
            "/ready" => self.ready,
            "/metrics" => self.metrics,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_name_their_keys_under_server_http() {
        let c = HttpConfig {
            max_body_bytes: 2 << 20,
            idle_timeout_ms: 0,
            ..HttpConfig::default()
        };
        assert_eq!(
            c.validate(),
            [
                "server.http.max_body_bytes: at most 1048576 (1 MiB)",
                "server.http.idle_timeout_ms: must be at least 1 (milliseconds)",
            ]
        );
    }
}
