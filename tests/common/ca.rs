//! A CA for tests, run by real `openssl ca`: TSA certificates for certificate requests.

use std::path::Path;
use std::process::Command;

/// `openssl ca` (its database in `dir`) issues `leaf` for `csr` with `ca_cert` / `ca_key`: a
/// TSA certificate (critical EKU timeStamping), valid from an hour ago (a token's genTime ±
/// accuracy must fall inside it) for `days` days.
pub fn issue_tsa_certificate(
    dir: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    csr: &Path,
    leaf: &Path,
    days: i64,
) {
    if !dir.exists() {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = tsa_ca\n[tsa_ca]\ndir = {}\ndatabase = $dir/index.txt\n\
                 new_certs_dir = $dir\nserial = $dir/serial\ndefault_md = sha256\n\
                 policy = any\nunique_subject = no\nx509_extensions = tsa\n\
                 [any]\ncommonName = supplied\norganizationName = optional\ncountryName = optional\n\
                 [tsa]\nextendedKeyUsage = critical, timeStamping\n\
                 keyUsage = critical, digitalSignature\nsubjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n",
                dir.display()
            ),
        )
        .unwrap();
    }
    let stamp = |t: time::OffsetDateTime| {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let now = time::OffsetDateTime::from(stampd::clock::wall_now());
    let (ok, out) = super::run(
        Command::new("openssl")
            .args(["ca", "-batch", "-notext", "-config"])
            .arg(dir.join("ca.cnf"))
            .arg("-cert")
            .arg(ca_cert)
            .arg("-keyfile")
            .arg(ca_key)
            .args(["-startdate", &stamp(now - time::Duration::hours(1))])
            .args(["-enddate", &stamp(now + time::Duration::days(days))])
            .arg("-in")
            .arg(csr)
            .arg("-out")
            .arg(leaf),
    );
    assert!(ok, "{out}");
}
