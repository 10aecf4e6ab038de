//! Who may use the admin interface: the administrators (from `[[admin.user]]`, or the one
//! token of the embedded default), their login sessions, the CSRF token of each session, and
//! the delay that makes guessing credentials slow.
//!
//! A browser logs in once (`POST /login`) and carries a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` over TLS, a bounded lifetime); every state-changing request
//! is a POST carrying the session's CSRF token. Scripts use the JSON API with
//! `Authorization: Bearer TOKEN` instead (token users only): no cookie, so no CSRF.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::config::{AdminUserConfig, Role};
use crate::protocol::hex::hex;

/// The cookie that carries a session id.
pub const SESSION_COOKIE: &str = "stampd_session";
/// The embedded default's token file, in the data directory.
pub const TOKEN_FILE: &str = "admin-token";
/// Sessions held at once; the oldest goes when a login would pass it.
const MAX_SESSIONS: usize = 1024;
/// Consecutive failures from one address are forgotten after this long.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// The longest delay of a failed login.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// `len` random bytes, hex (the operating system's CSPRNG through aws-lc).
pub fn random_hex(len: usize) -> String {
    let mut b = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut b).expect("the system random generator works");
    hex(&b)
}

/// An argon2id hash (PHC string, default parameters: 19 MiB, 2 passes) of `password`, with a
/// random salt: what `[[admin.user]] password_hash` holds.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "no random salt".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn sha256(s: &str) -> [u8; 32] {
    crate::protocol::request::sha256(s.as_bytes())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    // The lengths are public (digests, or tokens of one length); the contents are compared
    // in constant time.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum Credential {
    /// An argon2 PHC string.
    Password(String),
    /// SHA-256 of the token: the token itself is not kept.
    Token([u8; 32]),
}

/// One administrator.
pub struct User {
    /// The login name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    credential: Credential,
}

/// Every administrator, and where the embedded default's token is.
pub struct Users {
    users: Vec<User>,
    /// `DATA_DIR/admin-token` when there are no `[[admin.user]]`s.
    pub token_file: Option<PathBuf>,
}

impl Users {
    /// The administrators of `configured`, their tokens read now (relative files against
    /// `data_dir`); without any, the one `admin` whose token is in `DATA_DIR/admin-token`
    /// (created, mode 0600, when missing).
    pub fn load(configured: &[AdminUserConfig], data_dir: &Path) -> Result<Users, String> {
        if configured.is_empty() {
            let path = data_dir.join(TOKEN_FILE);
            let token = default_token(&path)?;
            return Ok(Users {
                users: vec![User {
                    name: "admin".into(),
                    role: Role::Admin,
                    credential: Credential::Token(sha256(&token)),
                }],
                token_file: Some(path),
            });
        }
        let mut users = Vec::new();
        for u in configured {
            let credential = match &u.password_hash {
                Some(h) => Credential::Password(h.clone()),
                None => {
                    let file = u.token_file.as_ref().map(|f| data_dir.join(f));
                    let source = crate::secret::Source {
                        env: u.token_env.as_deref(),
                        file: file.as_deref(),
                        credential: u.token_credential.as_deref(),
                    };
                    let what = format!("admin.user {}'s token", u.name);
                    let token = crate::secret::read(&what, source)?
                        .filter(|t| t.len() >= 16)
                        .ok_or_else(|| format!("{what}: at least 16 characters"))?;
                    Credential::Token(sha256(&token))
                }
            };
            users.push(User {
                name: u.name.clone(),
                role: u.role,
                credential,
            });
        }
        Ok(Users {
            users,
            token_file: None,
        })
    }

    /// The administrator `name` (or, with no name, the one whose token `secret` is) when
    /// `secret` is their password or token. An argon2 check takes tens of milliseconds:
    /// call it off the event loop.
    pub fn check(&self, name: &str, secret: &str) -> Option<&User> {
        let digest = sha256(secret);
        let matches = |u: &&User| match &u.credential {
            Credential::Token(t) => same(t, &digest),
            Credential::Password(phc) => PasswordHash::new(phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &h)
                    .is_ok()
            }),
        };
        if name.is_empty() {
            self.users
                .iter()
                .filter(|u| matches!(u.credential, Credential::Token(_)))
                .find(matches)
        } else {
            self.users.iter().filter(|u| u.name == name).find(matches)
        }
    }

    /// The token user whose token `bearer` is (the JSON API's `Authorization: Bearer`).
    pub fn bearer(&self, bearer: &str) -> Option<&User> {
        let digest = sha256(bearer);
        self.users
            .iter()
            .find(|u| matches!(&u.credential, Credential::Token(t) if same(t, &digest)))
    }
}

/// The embedded default's token: read from `path`, or created there (mode 0600). A file
/// others may read is refused, as for TLS keys.
fn default_token(path: &Path) -> Result<String, String> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{}: the admin token is readable by other users (mode {mode:o}); chmod 600 it",
                    path.display()
                ));
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(format!(
                    "{}: the admin token is shorter than 16 characters",
                    path.display()
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_hex(24);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            use std::io::Write;
            f.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!(file = %path.display(), "created the admin token");
            Ok(token)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A logged-in administrator.
#[derive(Debug, Clone)]
pub struct Session {
    /// The login name.
    pub user: String,
    /// Their role.
    pub role: Role,
    /// The token every state-changing request of this session must carry.
    pub csrf: String,
    expires: Instant,
}

/// The login sessions (in memory: a restart logs everyone out).
pub struct Sessions {
    lifetime: Duration,
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Sessions that last `lifetime` from login.
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session for the administrator `user` with `role`: its id (the cookie's value).
    pub fn open(&self, user: &str, role: Role) -> String {
        let id = random_hex(32);
        let session = Session {
            user: user.to_string(),
            role,
            csrf: random_hex(32),
            expires: Instant::now() + self.lifetime,
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), session);
        id
    }

    /// The live session `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id` (logout).
    pub fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Failed logins: counted, and each delayed longer while one address keeps failing.
#[derive(Default)]
pub struct Throttle {
    /// Failed logins since start (`stampd_admin_login_failures_total`).
    pub failures: AtomicU64,
    recent: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// Notes a failure from `ip`; returns how long to wait before answering: 1 s, doubled
    /// for each consecutive failure from that address in the last 15 minutes, at most 30 s.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        recent.retain(|_, (_, at)| now.duration_since(*at) < FAILURE_MEMORY);
        let entry = recent.entry(ip).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let delay = Duration::from_secs(1) * 2u32.saturating_pow(entry.0 - 1).min(64);
        delay.min(MAX_DELAY)
    }

    /// A successful login from `ip` clears its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

/// Whether `given` is the session's CSRF token.
pub fn csrf_ok(session: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|g| same(g.as_bytes(), session.csrf.as_bytes()))
}

/// Shared by the handlers: users, sessions, throttle.
pub struct Auth {
    /// The administrators.
    pub users: Users,
    /// Their sessions.
    pub sessions: Sessions,
    /// Failed-login accounting.
    pub throttle: Throttle,
    /// Cookies carry `Secure` (the listener is HTTPS).
    pub secure: bool,
}

impl Auth {
    /// The `Set-Cookie` value that starts session `id`.
    pub fn cookie(&self, id: &str) -> String {
        format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.sessions.lifetime().as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Appends the login figures for `GET /metrics`.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let live = self.sessions.live.lock().map_or(0, |l| {
            l.values().filter(|s| s.expires > Instant::now()).count()
        });
        let _ = write!(
            out,
            "# TYPE stampd_admin_login_failures_total counter\n\
             stampd_admin_login_failures_total {}\n\
             # TYPE stampd_admin_sessions gauge\nstampd_admin_sessions {live}\n",
            self.throttle.failures.load(Ordering::Relaxed)
        );
    }

    /// The `Set-Cookie` value that ends the session.
    pub fn expired_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The session id in a `Cookie` header value.
pub fn session_id(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_token_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::load(&[], dir.path()).unwrap();
        let path = users.token_file.clone().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        assert_eq!(
            users.check("", &token).map(|u| u.name.as_str()),
            Some("admin")
        );
        assert!(users.check("", "wrong-token-wrong-token").is_none());
        assert!(users.bearer(&token).is_some());
        // Read again, not replaced.
        let again = Users::load(&[], dir.path()).unwrap();
        assert!(again.check("admin", &token).is_some());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Users::load(&[], dir.path()).err().unwrap();
        assert!(e.contains("readable by other users"), "{e}");
    }

    #[test]
    fn passwords_are_checked_against_their_argon2_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let cfg = AdminUserConfig {
            name: "alice".into(),
            role: Role::Auditor,
            password_hash: Some(hash),
            token_env: None,
            token_file: None,
            token_credential: None,
        };
        let users = Users::load(&[cfg], Path::new("/nonexistent")).unwrap();
        assert!(users.check("alice", "correct horse").is_some());
        assert!(users.check("alice", "wrong").is_none());
        assert!(users.check("bob", "correct horse").is_none());
        // A password is not a bearer token, and a nameless login tries tokens only.
        assert!(users.bearer("correct horse").is_none());
        assert!(users.check("", "correct horse").is_none());
    }

    #[test]
    fn sessions_expire_and_failures_back_off() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let id = sessions.open("a", Role::Admin);
        let s = sessions.get(&id).unwrap();
        assert!(csrf_ok(&s, Some(&s.csrf)));
        assert!(!csrf_ok(&s, Some("x")) && !csrf_ok(&s, None));
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&id).is_none());
        let t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let delays: Vec<u64> = (0..7).map(|_| t.failed(ip).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        t.succeeded(ip);
        assert_eq!(t.failed(ip).as_secs(), 1);
        assert_eq!(t.failures.load(Ordering::Relaxed), 8);
        assert_eq!(session_id("a=b; stampd_session=xyz"), Some("xyz"));
        assert_eq!(session_id("stampd_session="), None);
    }
}
