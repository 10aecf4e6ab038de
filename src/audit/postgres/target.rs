//! The database to connect to ([`Target`], its connection string checked by [`check_dsn`])
//! and the [`runtime`] a thread's database work runs on.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls;

/// Checks a connection string without connecting: it parses, holds no password (secrets
/// come from the environment or a file), and its TLS keys (`sslmode`, `sslrootcert`; see
/// `tls.rs`) make sense.
pub fn check_dsn(dsn: &str) -> Result<(tokio_postgres::Config, tls::Mode), String> {
    let (rest, mode) =
        tls::split(dsn).map_err(|e| format!("not a valid connection string: {e}"))?;
    let config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| format!("not a valid connection string: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "holds a password; put it in postgres_password_env or postgres_password_file instead"
                .into(),
        );
    }
    Ok((config, mode))
}

/// A database to connect to, password and TLS connector included.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl Target {
    /// The database named by `dsn` (checked by [`check_dsn`]), with the password already
    /// read from its env variable or file by the caller: this module reads no secrets. With
    /// TLS, `sslrootcert` is read here.
    pub fn new(dsn: &str, password: Option<String>) -> Result<Target, String> {
        let (mut config, mode) = check_dsn(dsn)?;
        if let Some(pw) = password {
            config.password(pw);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("stampd");
        let tls = tls::connector(&mode)?;
        Ok(Target { config, tls })
    }

    /// Connects; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let client = match &self.tls {
            None => spawn(self.config.connect(NoTls).await?),
            Some(tls) => spawn(self.config.connect(tls.clone()).await?),
        };
        Ok(client)
    }
}

/// Runs the connection task on the current tokio runtime.
fn spawn<S, T>((client, connection): (Client, tokio_postgres::Connection<S, T>)) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    client
}

/// An error with its causes: tokio-postgres' own text is only its kind ("db error"), the
/// server's message and the TLS failure are in the source chain.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

/// A runtime for one thread's database work.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
