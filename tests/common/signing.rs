//! The signing tools' side: a self-signed code-signing certificate, a script to sign, and
//! `osslsigncode sign -t | -ts` then `osslsigncode verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run;

/// A code-signing key and self-signed certificate (EKU codeSigning) in `dir`:
/// (certificate, key).
pub fn code_signing_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("codesign.pem"), dir.join("codesign.key"));
    let (ok, out) = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=stampd test code signing"])
        .args(["-addext", "extendedKeyUsage=codeSigning"])
        .args(["-addext", "keyUsage=digitalSignature"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "{out}");
    (cert, key)
}

/// A PowerShell script to sign (osslsigncode signs scripts as well as PE files).
pub fn script(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, "Write-Output \"stamped by stampd\"\r\n").unwrap();
    p
}

/// `osslsigncode sign` of `input` with a timestamp from `url`, legacy Authenticode
/// (`-t`) or RFC 3161 (`-ts`), signing digest `hash`: the signed file, or the tool's output.
pub fn osslsigncode_sign(
    dir: &Path,
    input: &Path,
    (cert, key): (&Path, &Path),
    flag: &str,
    url: &str,
    hash: &str,
) -> Result<PathBuf, String> {
    let out = dir.join(format!(
        "signed-{}{}-{hash}.ps1",
        flag.trim_start_matches('-'),
        input.file_stem().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&out);
    let (ok, text) = run(Command::new("osslsigncode")
        .arg("sign")
        .arg("-certs")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-h", hash, flag, url])
        .arg("-in")
        .arg(input)
        .arg("-out")
        .arg(&out));
    if ok && out.exists() {
        Ok(out)
    } else {
        Err(text)
    }
}

/// `osslsigncode verify` of `signed` trusting `signer_ca` for the signature and `tsa_ca`
/// for the timestamp: its output, after checking that both verified.
pub fn osslsigncode_verify(signed: &Path, signer_ca: &Path, tsa_ca: &Path) -> String {
    let (ok, out) = run(Command::new("osslsigncode")
        .arg("verify")
        .arg("-in")
        .arg(signed)
        .arg("-CAfile")
        .arg(signer_ca)
        .arg("-TSA-CAfile")
        .arg(tsa_ca));
    assert!(ok, "osslsigncode verify failed:\n{out}");
    assert!(
        out.contains("Timestamp Server Signature verification: ok"),
        "no verified timestamp:\n{out}"
    );
    assert!(out.contains("Signature verification: ok"), "{out}");
    out
}
