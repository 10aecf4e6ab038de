//! HTTPS listeners: the rustls server configuration from a listener's PEM files (TLS 1.2
//! and 1.3 only, ALPN `http/1.1`, aws-lc-rs as the crypto provider), built once at start.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::error::Error;
use crate::policy::config::TlsConfig;

/// The acceptor for `files`; the error names the file and what is wrong with it.
pub fn acceptor(files: &TlsConfig) -> Result<monoio_rustls::TlsAcceptor, Error> {
    let bad = |what: String| Error::Frontend(format!("tls: {what}"));
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::io(p, e));
    let mode = std::fs::metadata(&files.key)
        .map_err(|e| Error::io(&files.key, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "{}: the key is readable by other users (mode {:o}); chmod 600 it",
            files.key.display(),
            mode & 0o777
        )));
    }
    let chain: Vec<CertificateDer<'static>> = pem::parse_many(read(&files.cert)?)
        .map_err(|e| bad(format!("{}: {e}", files.cert.display())))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    if chain.is_empty() {
        return Err(bad(format!("{}: no certificate", files.cert.display())));
    }
    let key = pem::parse_many(read(&files.key)?)
        .map_err(|e| bad(format!("{}: {e}", files.key.display())))?
        .into_iter()
        .find_map(|p| -> Option<PrivateKeyDer<'static>> {
            match p.tag() {
                "PRIVATE KEY" => Some(PrivatePkcs8KeyDer::from(p.into_contents()).into()),
                "EC PRIVATE KEY" => Some(PrivateSec1KeyDer::from(p.into_contents()).into()),
                "RSA PRIVATE KEY" => Some(PrivatePkcs1KeyDer::from(p.into_contents()).into()),
                _ => None,
            }
        })
        .ok_or_else(|| bad(format!("{}: no private key", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(format!(
                "{} / {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(monoio_rustls::TlsAcceptor::from(Arc::new(config)))
}
