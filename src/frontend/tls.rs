//! HTTPS listeners: the rustls server configuration from a listener's PEM files (TLS 1.2
//! and 1.3 only, ALPN `http/1.1`, aws-lc-rs as the crypto provider), built once at start,
//! and the handshake, which with `client_ca` also yields the client certificate's subject.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, OnceLock};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio_rustls::{ServerTlsStream, TlsAcceptor};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::error::Error;
use crate::policy::config::TlsConfig;
use crate::protocol::cert::CertView;

/// The versions offered: TLS 1.3, and 1.2 for older clients (code-signing tools).
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// One listener's TLS side.
pub enum Tls {
    /// Server authentication only: one configuration for every connection.
    Server(TlsAcceptor),
    /// Client certificates required. monoio-rustls 0.4 gives no access to the session once
    /// the handshake is done, so each connection gets a configuration of its own whose
    /// verifier keeps the certificate it accepted (the chain is checked by webpki against
    /// `client_ca`). Session resumption is off there: a resumed session skips the verifier,
    /// and its subject could not be known.
    ClientAuth {
        provider: Arc<CryptoProvider>,
        key: Arc<SingleCertAndKey>,
        verifier: Arc<dyn ClientCertVerifier>,
    },
}

/// The client certificate a connection's verifier accepted.
#[derive(Debug)]
struct Keeping {
    inner: Arc<dyn ClientCertVerifier>,
    accepted: OnceLock<CertificateDer<'static>>,
}

impl ClientCertVerifier for Keeping {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let _ = self.accepted.set(end_entity.clone().into_owned());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server key and, with `client_ca`, the client-certificate verifier of `files`.
type Parts = (
    Arc<CryptoProvider>,
    Arc<SingleCertAndKey>,
    Option<Arc<dyn ClientCertVerifier>>,
);

fn parts(files: &TlsConfig) -> Result<Parts, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (chain, key) = server_credentials(files)?;
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        bad(format!(
            "{} / {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    let key = Arc::new(SingleCertAndKey::from(certified));
    let Some(ca) = &files.client_ca else {
        return Ok((provider, key, None));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| bad(format!("{}: {e}", ca.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad(format!("{}: {e}", ca.display())))?;
    Ok((provider, key, Some(verifier)))
}

/// One rustls configuration for every connection of a listener that does not need to know
/// the client certificate's subject (the admin listener: `client_ca` only gates who may
/// connect), for acceptors other than monoio's.
pub fn server_config_of(files: &TlsConfig) -> Result<Arc<ServerConfig>, Error> {
    let (provider, key, verifier) = parts(files)?;
    server_config(&provider, verifier, &key).map(Arc::new)
}

impl Tls {
    /// The TLS side for `files`; the error names the file and what is wrong with it.
    pub fn load(files: &TlsConfig) -> Result<Tls, Error> {
        match parts(files)? {
            (provider, key, None) => {
                let config = server_config(&provider, None, &key)?;
                Ok(Tls::Server(TlsAcceptor::from(Arc::new(config))))
            }
            (provider, key, Some(verifier)) => Ok(Tls::ClientAuth {
                provider,
                key,
                verifier,
            }),
        }
    }

    /// Runs the handshake on `io`: the session, and the subject (RFC 4514) of the client's
    /// certificate when the listener asks for one.
    pub async fn accept<IO: AsyncReadRent + AsyncWriteRent>(
        &self,
        io: IO,
    ) -> std::io::Result<(ServerTlsStream<IO>, Option<Arc<str>>)> {
        let failed = |e: monoio_rustls::TlsError| std::io::Error::other(e.to_string());
        match self {
            Tls::Server(acceptor) => Ok((acceptor.accept(io).await.map_err(failed)?, None)),
            Tls::ClientAuth {
                provider,
                key,
                verifier,
            } => {
                let keeping = Arc::new(Keeping {
                    inner: verifier.clone(),
                    accepted: OnceLock::new(),
                });
                let mut config = server_config(provider, Some(keeping.clone()), key)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                config.session_storage = Arc::new(NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
                let session = TlsAcceptor::from(Arc::new(config))
                    .accept(io)
                    .await
                    .map_err(failed)?;
                // A finished handshake with mandatory client authentication went through
                // the verifier; without a certificate here the connection is not served.
                let subject = keeping
                    .accepted
                    .get()
                    .and_then(|der| CertView::parse(der).ok())
                    .map(|c| Arc::from(c.certificate().tbs_certificate.subject.to_string()))
                    .ok_or_else(|| std::io::Error::other("no client certificate"))?;
                Ok((session, Some(subject)))
            }
        }
    }
}

/// TLS 1.3 and 1.2, ALPN `http/1.1`, the server's key, and client certificates checked by
/// `verifier` when there is one.
fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    key: &Arc<SingleCertAndKey>,
) -> Result<ServerConfig, Error> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| bad(e.to_string()))?;
    let mut config = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    }
    .with_cert_resolver(key.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn bad(what: String) -> Error {
    Error::Frontend(format!("tls: {what}"))
}

fn read(p: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| Error::io(p, e))
}

/// The CERTIFICATE blocks of a PEM file, at least one.
fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = crate::signer::software::pem_certificates(path).map_err(bad)?;
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// The server's chain and key; a key other users may read is refused.
fn server_credentials(
    files: &TlsConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
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
    let chain = certificates(&files.cert)?;
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
    Ok((chain, key))
}
