//! `[admin]`: where the admin listener binds, its TLS, the probes the service listeners
//! answer too, and the administrators who may log in to the web interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::frontend::config::Probes;

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (web interface, JSON API, `/metrics`, `/health`,
    /// `/ready`): loopback, or any address with `tls`; `"off"` for none. `stampd serve
    /// --admin-listen ADDR|off` overrides it. Default `"127.0.0.1:3181"`.
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
    /// A login session lasts this many minutes, then the administrator logs in again
    /// (1 to 1440). Default 60.
    pub session_minutes: u64,
    /// `[[admin.user]]`: who may log in. Without any, the server creates a random token in
    /// `DATA_DIR/admin-token` (mode 0600) on first start: the token of one `admin` user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<AdminUserConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:3181".into(),
            public_probes: vec!["health".into(), "ready".into()],
            tls: None,
            session_minutes: 60,
            user: Vec::new(),
        }
    }
}

/// What an administrator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: the dashboard, the actions (enable, disable, reload, self-test, verify
    /// the journal) and the audit pages.
    Admin,
    /// The audit pages only (search, records, tokens, export); no action.
    Auditor,
}

impl Role {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

/// `[[admin.user]]`: one administrator. The credential is never in this file: an argon2
/// password hash (`stampd admin hash-password` makes one), or a token read from the
/// environment, a file or a systemd credential. Exactly one of the four.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUserConfig {
    /// The login name (letters, digits, `.`, `_`, `-`; at most 64), named in the audit
    /// records of this administrator's actions.
    pub name: String,
    /// `admin` or `auditor`.
    pub role: Role,
    /// An argon2 hash in PHC form (`$argon2id$v=19$...`) of the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// The environment variable holding this user's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// A file holding this user's token (relative to the data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A systemd credential (`LoadCredential=`) holding this user's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_credential: Option<String>,
}

impl AdminUserConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        let at = format!("admin.user `{}`", self.name);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            errors.push(format!(
                "{at}: a name is 1 to 64 letters, digits, `.`, `_` or `-`"
            ));
        }
        let set = [
            self.password_hash.is_some(),
            self.token_env.is_some(),
            self.token_file.is_some(),
            self.token_credential.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            errors.push(format!(
                "{at}: set exactly one of password_hash, token_env, token_file and \
                 token_credential (a password or token never goes in this file)"
            ));
        }
        if let Some(h) = &self.password_hash {
            if let Err(e) = argon2::PasswordHash::new(h) {
                errors.push(format!(
                    "{at}: password_hash is not a PHC hash string ({e}); make one with \
                     `stampd admin hash-password`"
                ));
            } else if !h.starts_with("$argon2") {
                errors.push(format!("{at}: password_hash must be an argon2 hash"));
            }
        }
        if let Some(c) = &self.token_credential {
            if let Err(e) = crate::secret::check_credential_name(c) {
                errors.push(format!("{at}: token_credential: {e}"));
            }
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
        let mut errors: Vec<String> = [self.addr().err(), self.public().err()]
            .into_iter()
            .flatten()
            .collect();
        if !(1..=1440).contains(&self.session_minutes) {
            errors.push("admin.session_minutes: 1 to 1440 (minutes)".into());
        }
        for (i, u) in self.user.iter().enumerate() {
            u.validate(&mut errors);
            if self.user[..i].iter().any(|o| o.name == u.name) {
                errors.push(format!("admin.user `{}`: the name is used twice", u.name));
            }
        }
        errors
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
    fn an_administrator_has_one_credential_and_never_a_password_in_the_file() {
        let user = |f: &dyn Fn(&mut AdminUserConfig)| {
            let mut u = AdminUserConfig {
                name: "alice".into(),
                role: Role::Admin,
                password_hash: None,
                token_env: Some("ALICE_TOKEN".into()),
                token_file: None,
                token_credential: None,
            };
            f(&mut u);
            AdminConfig {
                user: vec![u],
                ..AdminConfig::default()
            }
            .validate()
        };
        assert!(user(&|_| {}).is_empty());
        assert!(user(&|u| u.token_env = None)[0].contains("exactly one"));
        assert!(user(&|u| u.token_file = Some("t".into()))[0].contains("exactly one"));
        assert!(user(&|u| u.name = "a b".into())[0].contains("a name is"));
        let plain = user(&|u| {
            u.token_env = None;
            u.password_hash = Some("hunter2".into());
        });
        assert!(plain[0].contains("not a PHC hash string"), "{plain:?}");
        // `echo "correct horse battery" | stampd admin hash-password`
        let hashed = "$argon2id$v=19$m=19456,t=2,p=1$otUumN6R0ZaJS2UVaLj2DQ$f644L8JpzkVh9XH3tFkT58Lgdiq5Yf5RhhNg4kJfFZc".to_string();
        assert!(user(&|u| {
            u.token_env = None;
            u.password_hash = Some(hashed.clone());
        })
        .is_empty());
        let twice = AdminConfig {
            session_minutes: 0,
            user: vec![
                AdminUserConfig {
                    name: "a".into(),
                    role: Role::Auditor,
                    password_hash: None,
                    token_env: Some("A".into()),
                    token_file: None,
                    token_credential: None,
                };
                2
            ],
            ..AdminConfig::default()
        };
        let errors = twice.validate();
        assert!(errors.iter().any(|e| e.contains("session_minutes")));
        assert!(errors.iter().any(|e| e.contains("used twice")));
    }
}
