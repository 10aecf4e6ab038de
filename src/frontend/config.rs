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

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (`/metrics`, `/health`, `/ready`): loopback, or any
    /// address with `tls`; `"off"` for none. `stampd serve --admin-listen ADDR|off`
    /// overrides it. Default `"127.0.0.1:3181"`.
    pub listen: String,
    /// HTTPS on the admin listener: `{ cert = "...", key = "..." }`, and `client_ca` to
    /// require client certificates. Needed to bind a non-loopback address. Default: plain
    /// HTTP (loopback only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::policy::config::TlsConfig>,
    /// Probe paths answered on every service listener too, for load balancers that probe
    /// the public port: any of `"health"`, `"ready"`, `"metrics"`. Default
    /// `["health", "ready"]`.
    pub public_probes: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:3181".into(),
            public_probes: vec!["health".into(), "ready".into()],
            tls: None,
        }
    }
}

impl AdminConfig {
    /// The address to bind, `None` for `"off"`; the error names the key. Pure.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen == "off" {
            return Ok(None);
        }
        let addr: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "admin.listen: `{}` is not an address such as \"127.0.0.1:3181\" (or \"off\")",
                self.listen
            )
        })?;
        if !addr.ip().is_loopback() && self.tls.is_none() {
            return Err(format!(
                "admin.listen: {addr} is not a loopback address; without TLS the admin \
                 listener binds to 127.0.0.1 or [::1] only: add [admin] tls = {{ cert = \
                 \"...\", key = \"...\" }} to serve it on other addresses"
            ));
        }
        Ok(Some(addr))
    }

    /// The probes service listeners answer; the error names the key. Pure.
    pub fn public(&self) -> Result<Probes, String> {
        let mut p = Probes::default();
        for name in &self.public_probes {
            match name.as_str() {
                "health" => p.health = true,
                "ready" => p.ready = true,
                "metrics" => p.metrics = true,
                other => {
                    return Err(format!(
                        "admin.public_probes: `{other}` is not one of \"health\", \"ready\", \
                         \"metrics\""
                    ))
                }
            }
        }
        Ok(p)
    }

    /// Every check of the section, as messages.
    pub fn validate(&self) -> Vec<String> {
        [self.addr().err(), self.public().err()]
            .into_iter()
            .flatten()
            .collect()
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
    fn the_admin_listener_stays_on_loopback() {
        let admin = |listen: &str| AdminConfig {
            listen: listen.into(),
            ..AdminConfig::default()
        };
        assert_eq!(
            AdminConfig::default().addr(),
            Ok(Some("127.0.0.1:3181".parse().unwrap()))
        );
        assert_eq!(admin("off").addr(), Ok(None));
        assert!(admin("[::1]:0").addr().unwrap().is_some());
        assert!(admin("0.0.0.0:3181").validate()[0].contains("not a loopback address"));
        let tls = AdminConfig {
            tls: Some(crate::policy::config::TlsConfig {
                cert: "admin.pem".into(),
                key: "admin.key".into(),
                client_ca: None,
            }),
            ..admin("0.0.0.0:3181")
        };
        assert_eq!(tls.addr(), Ok(Some("0.0.0.0:3181".parse().unwrap())));
        assert!(admin("localhost").validate()[0].contains("admin.listen"));
        let probes = AdminConfig {
            public_probes: vec!["ready".into(), "metrics".into()],
            ..AdminConfig::default()
        };
        assert_eq!(
            probes.public(),
            Ok(Probes {
                health: false,
                ready: true,
                metrics: true
            })
        );
        let bad = AdminConfig {
            public_probes: vec!["status".into()],
            ..AdminConfig::default()
        };
        assert!(bad.validate()[0].contains("admin.public_probes"));
    }

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
