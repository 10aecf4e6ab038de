//! A real PostgreSQL server for one test: `initdb` in a temporary directory, started with
//! `pg_ctl` on a free loopback port, as the `postgres` user when the tests run as root
//! (PostgreSQL refuses to run as root). Dropping it stops the server.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// `ssl = on`, and only TLS connections over TCP accepted (`pg_hba.conf`).
    tls: bool,
}

/// The newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (tests/run.sh installs it)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_string_lossy().parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server binaries").1
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// A server with `ssl = on` presenting `cert` (chain, PEM) and `key`, which refuses TCP
    /// connections without TLS.
    pub fn start_tls(cert: &Path, key: &Path) -> Postgres {
        Postgres::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("stampd-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the PostgreSQL directory");
        }
        let pg = Postgres {
            port: free_port(),
            bin: bin_dir(),
            dir,
            tls: tls.is_some(),
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if let Some((cert, key)) = tls {
            // The key must belong to the server's user and be readable by it alone.
            for (from, to, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
                let to = data.join(to);
                std::fs::copy(from, &to).unwrap();
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .unwrap();
                if is_root() {
                    let status = Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&to)
                        .status()
                        .unwrap();
                    assert!(status.success(), "chown {}", to.display());
                }
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        pg.resume();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server tool, run as `postgres` when we are root.
    fn command(&self, tool: &str) -> Command {
        let prog = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&prog);
            c
        } else {
            Command::new(&prog)
        };
        cmd.current_dir("/");
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> String {
        let out = self.command(tool).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
        text
    }

    /// Starts (again) on the same port.
    pub fn resume(&self) {
        let data = self.data();
        let log = self.dir.path().join("log");
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            opts += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key";
        }
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn pause(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Runs SQL with psql; the unaligned, tuples-only output.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The serials of every issued token in `audit_record`, as [`super::serial_text`]
    /// writes them; asserts that none is there twice.
    pub fn serials_once(&self) -> Vec<String> {
        let serials: Vec<String> = self
            .sql("SELECT encode(serial, 'hex') FROM audit_record WHERE serial IS NOT NULL")
            .lines()
            .map(|h| {
                let bytes: Vec<u8> = (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect();
                super::serial_text(&bytes)
            })
            .collect();
        let unique: std::collections::HashSet<&String> = serials.iter().collect();
        assert_eq!(unique.len(), serials.len(), "a serial twice in PostgreSQL");
        serials
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}
