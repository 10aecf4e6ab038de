//! TLS to PostgreSQL with libpq's connection-string keys: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert`. tokio-postgres knows only
//! `disable`, `prefer` and `require` and reads no certificates, so [`split`] takes these
//! keys out of the string and [`connector`] builds the rustls connector they ask for
//! (tokio-postgres-rustls, aws-lc-rs).
//!
//! As in libpq (PostgreSQL docs, "SSL Support", table "SSL Mode Descriptions"):
//! `require` encrypts but checks no certificate, unless `sslrootcert` is given, when it
//! checks the chain as `verify-ca` does; `verify-ca` checks the chain against
//! `sslrootcert`; `verify-full` also checks that the certificate names the host. Unlike
//! libpq, `prefer` (tokio-postgres' default) connects without TLS, and the verifying modes
//! need `sslrootcert` (there is no `~/.postgresql/root.crt` to fall back on).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the connection string asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `disable`, `prefer` or no `sslmode`: no TLS.
    Plain,
    /// `require` without `sslrootcert`: encrypted, the server not authenticated.
    Encrypt,
    /// `verify-ca`, or `require` with `sslrootcert`: the chain must lead to `sslrootcert`.
    VerifyCa(PathBuf),
    /// `verify-full`: the chain, and the host name (or address) in the certificate.
    VerifyFull(PathBuf),
}

/// Splits `dsn` (key=value or URL form) into the string tokio-postgres gets (`sslmode`
/// rewritten to `require` when TLS is asked for, `sslrootcert` removed) and the [`Mode`].
pub fn split(dsn: &str) -> Result<(String, Mode), String> {
    let url = dsn.starts_with("postgres://") || dsn.starts_with("postgresql://");
    let (head, mut pairs) = if url {
        match dsn.split_once('?') {
            None => (dsn.to_string(), Vec::new()),
            Some((head, query)) => (head.to_string(), url_pairs(query)?),
        }
    } else {
        (String::new(), key_value_pairs(dsn)?)
    };
    let take = |pairs: &mut Vec<(String, String)>, key: &str| {
        let value = pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        pairs.retain(|(k, _)| k != key);
        value
    };
    let ssl_mode = take(&mut pairs, "sslmode");
    let root = take(&mut pairs, "sslrootcert").map(PathBuf::from);
    let mode =
        match (ssl_mode.as_deref(), root) {
            (None | Some("disable" | "prefer"), None) => Mode::Plain,
            (None | Some("disable" | "prefer"), Some(_)) => return Err(
                "sslrootcert is given but sslmode does not ask for TLS; use sslmode=verify-full"
                    .into(),
            ),
            (Some("require"), None) => Mode::Encrypt,
            (Some("require" | "verify-ca"), Some(root)) => Mode::VerifyCa(root),
            (Some("verify-full"), Some(root)) => Mode::VerifyFull(root),
            (Some(m @ ("verify-ca" | "verify-full")), None) => {
                return Err(format!(
                    "sslmode={m} needs sslrootcert=FILE, the CA certificate(s) the server's chain \
                 must lead to"
                ))
            }
            (Some(other), _) => {
                return Err(format!(
                    "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                ))
            }
        };
    let passed = match mode {
        Mode::Plain => ssl_mode,
        _ => Some("require".into()),
    };
    if let Some(m) = passed {
        pairs.push(("sslmode".into(), m));
    }
    let rest = if url {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match query.is_empty() {
            true => head,
            false => format!("{head}?{}", query.join("&")),
        }
    } else {
        let quoted: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        quoted.join(" ")
    };
    Ok((rest, mode))
}

/// `a=1&b=2`, values percent-decoded (the URL's values go back as they came).
fn url_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or(format!("`{p}` is not KEY=VALUE"))?;
            match k {
                "sslrootcert" => Ok((k.to_string(), percent_decode(v)?)),
                _ => Ok((k.to_string(), v.to_string())),
            }
        })
        .collect()
}

fn percent_decode(v: &str) -> Result<String, String> {
    let mut out = Vec::new();
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).map_err(|_| format!("bad escape in `{v}`"))?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{v}` is not UTF-8"))
}

/// libpq's `key = value` list: values bare or single-quoted, `\` escaping inside quotes.
fn key_value_pairs(dsn: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=` and value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or("a value ends in `\\`")?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

/// The connector for `mode`; `None` for [`Mode::Plain`]. Reads `sslrootcert`.
pub fn connector(mode: &Mode) -> Result<Option<MakeRustlsConnect>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let roots = |path: &PathBuf| -> Result<Arc<rustls::RootCertStore>, String> {
        let mut store = rustls::RootCertStore::empty();
        for der in crate::signer::software::pem_certificates(path)? {
            store
                .add(CertificateDer::from(der))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Arc::new(store))
    };
    let config = match mode {
        Mode::Plain => return Ok(None),
        Mode::VerifyFull(root) => builder
            .with_root_certificates(roots(root)?)
            .with_no_client_auth(),
        Mode::Encrypt | Mode::VerifyCa(_) => {
            let chain = match mode {
                Mode::VerifyCa(root) => Some(
                    WebPkiServerVerifier::builder_with_provider(roots(root)?, provider.clone())
                        .build()
                        .map_err(|e| e.to_string())?,
                ),
                _ => None,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NameBlind { chain, provider }))
                .with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// `require` and `verify-ca`: the handshake's signatures are checked; the chain is
/// checked against the roots when there are some; the host name never is.
#[derive(Debug)]
struct NameBlind {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameBlind {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_map_to_what_tokio_postgres_and_rustls_do() {
        let (rest, mode) = split("host=db port=5432 user=stampd").unwrap();
        assert_eq!(
            (rest.as_str(), mode),
            ("host='db' port='5432' user='stampd'", Mode::Plain)
        );
        let (rest, mode) = split("host=db sslmode=prefer").unwrap();
        assert_eq!(
            (rest.as_str(), mode),
            ("host='db' sslmode='prefer'", Mode::Plain)
        );
        let (rest, mode) = split("host=db sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), mode),
            ("host='db' sslmode='require'", Mode::Encrypt)
        );
        let (rest, mode) =
            split("host = db sslmode=verify-full sslrootcert='/etc/pg ca/it\\'s.pem'").unwrap();
        assert_eq!(rest, "host='db' sslmode='require'");
        assert_eq!(mode, Mode::VerifyFull("/etc/pg ca/it's.pem".into()));
        let (_, mode) = split("host=db sslmode=require sslrootcert=/ca.pem").unwrap();
        assert_eq!(mode, Mode::VerifyCa("/ca.pem".into()));
        let (rest, mode) =
            split("postgresql://u@db:5433/audit?sslmode=verify-ca&sslrootcert=%2Fca%20x.pem&connect_timeout=3")
                .unwrap();
        assert_eq!(
            rest,
            "postgresql://u@db:5433/audit?connect_timeout=3&sslmode=require"
        );
        assert_eq!(mode, Mode::VerifyCa("/ca x.pem".into()));
        assert_eq!(
            split("postgres://db/a").unwrap(),
            ("postgres://db/a".into(), Mode::Plain)
        );
        // What the string becomes still parses, with the same meaning.
        let config: tokio_postgres::Config = split("host=db sslmode=verify-full sslrootcert=/x")
            .unwrap()
            .0
            .parse()
            .unwrap();
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn unclear_tls_settings_are_refused_with_the_fix() {
        for (dsn, needle) in [
            ("host=db sslmode=verify-full", "needs sslrootcert=FILE"),
            ("host=db sslrootcert=/ca.pem", "use sslmode=verify-full"),
            ("host=db sslmode=always", "use disable, prefer, require"),
            ("host=db sslrootcert='/x", "no closing quote"),
            ("host db", "has no `=`"),
        ] {
            let e = split(dsn).unwrap_err();
            assert!(e.contains(needle), "{dsn}: {e}");
        }
        let e = connector(&Mode::VerifyFull("/nonexistent/ca.pem".into())).err();
        assert!(e.is_some_and(|e| e.contains("/nonexistent/ca.pem")));
        assert!(connector(&Mode::Plain).unwrap().is_none());
        assert!(connector(&Mode::Encrypt).unwrap().is_some());
    }
}
