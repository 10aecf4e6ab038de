//! TLS certificates for tests, made by real `openssl`: a CA, server certificates for
//! 127.0.0.1 and client certificates signed by it (EC P-256).

use std::path::{Path, PathBuf};
use std::process::Command;

fn ok(cmd: &mut Command) {
    let (ok, out) = super::run(cmd);
    assert!(ok, "{out}");
}

/// A self-signed CA called `name` in `dir`: (certificate, key).
pub fn ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    ok(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// A certificate for `subject` (slash notation) issued by `ca` with the extensions `ext`
/// (`openssl x509 -extfile` lines), its key with `mode`: (certificate, key), called `name`.
pub fn issue(
    dir: &Path,
    ca: &(PathBuf, PathBuf),
    name: &str,
    subject: &str,
    ext: &str,
    mode: u32,
) -> (PathBuf, PathBuf) {
    let p = |suffix: &str| dir.join(format!("{name}.{suffix}"));
    ok(Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
        ])
        .arg(p("key"))
        .arg("-out")
        .arg(p("csr")));
    std::fs::write(p("ext"), ext).unwrap();
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-in"])
        .arg(p("csr"))
        .arg("-CA")
        .arg(&ca.0)
        .arg("-CAkey")
        .arg(&ca.1)
        .arg("-extfile")
        .arg(p("ext"))
        .arg("-out")
        .arg(p("pem")));
    std::fs::set_permissions(p("key"), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    (p("pem"), p("key"))
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`: (CA certificate,
/// server chain, server key with mode `mode`).
pub fn server(dir: &Path, mode: u32) -> (PathBuf, PathBuf, PathBuf) {
    let ca = ca(dir, "stampd test TLS CA");
    let (cert, key) = issue(
        dir,
        &ca,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName = IP:127.0.0.1\n",
        mode,
    );
    let chain = std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&ca.0).unwrap();
    let chain_file = dir.join("server-chain.pem");
    std::fs::write(&chain_file, chain).unwrap();
    (ca.0, chain_file, key)
}

/// A client certificate for `subject` from `ca` (EKU clientAuth): (certificate, key).
pub fn client(
    dir: &Path,
    ca: &(PathBuf, PathBuf),
    name: &str,
    subject: &str,
) -> (PathBuf, PathBuf) {
    issue(
        dir,
        ca,
        name,
        subject,
        "extendedKeyUsage = clientAuth\n",
        0o600,
    )
}
