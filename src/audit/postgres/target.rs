//! The database to connect to ([`Target`], its connection string checked by [`check_dsn`])
//! and the [`runtime`] a thread's database work runs on.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// Checks a connection string without connecting: it parses, holds no password (secrets
/// come from the environment or a file), and asks for no TLS (not supported yet).
pub fn check_dsn(dsn: &str) -> Result<tokio_postgres::Config, String> {
    let config = tokio_postgres::Config::from_str(dsn)
        .map_err(|e| format!("not a valid connection string: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "holds a password; put it in postgres_password_env or postgres_password_file instead"
                .into(),
        );
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("sslmode=require: TLS to PostgreSQL is not supported yet; connect over a Unix socket or loopback".into());
    }
    Ok(config)
}

/// A database to connect to, password included.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
}

impl Target {
    /// The database named by `dsn` (checked by [`check_dsn`]), with the password already
    /// read from its env variable or file by the caller: this module reads no secrets.
    pub fn new(dsn: &str, password: Option<String>) -> Result<Target, String> {
        let mut config = check_dsn(dsn)?;
        if let Some(pw) = password {
            config.password(pw);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("stampd");
        Ok(Target { config })
    }

    /// Connects; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

/// A runtime for one thread's database work.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
