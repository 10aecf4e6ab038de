//! The one error type of stampd, and its one mapping to the wire.
//!
//! A requester's mistake is never an `Error`: it is a [`Rejection`](crate::protocol::Rejection)
//! value answered with HTTP 200. `Error` is for the TSA's own trouble (configuration, files,
//! the key, the clock, overload); [`Error::failure_info`] and [`Error::http_status`] are the
//! only places that decide how such trouble looks to a requester.

use std::path::{Path, PathBuf};

use crate::protocol::FailureInfo;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message says where and what to write instead.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A signer could not be set up.
    #[error("signer `{name}`: {reason}")]
    Signer { name: String, reason: String },
    /// The development PKI could not be created.
    #[error("dev PKI: {0}")]
    Pki(String),
    /// The HTTP frontend could not start.
    #[error("frontend: {0}")]
    Frontend(String),
    /// The trusted time is not available (clock not synchronised).
    #[error("time source unavailable")]
    TimeUnavailable,
    /// Signing failed or no signing capacity was left.
    #[error(transparent)]
    Sign(#[from] crate::signer::SignError),
    /// genTime could not be encoded or lies outside the TSA certificate's validity.
    #[error("genTime outside the TSA certificate's validity")]
    CertificateNotValidAtGenTime,
    /// The backend queue is full.
    #[error("backend queue full")]
    Overloaded,
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// RFC 3161 failure info for a request that failed because of this error.
    pub fn failure_info(&self) -> FailureInfo {
        match self {
            Error::TimeUnavailable => FailureInfo::TimeNotAvailable,
            _ => FailureInfo::SystemFailure,
        }
    }

    /// The fixed statusString sent with [`Error::failure_info`]; never internal detail.
    pub fn status_text(&self) -> &'static str {
        match self {
            Error::TimeUnavailable => "trusted time is not available",
            Error::Overloaded => "server busy, retry later",
            _ => "the TSA could not issue a token",
        }
    }

    /// HTTP status when the error is answered at the HTTP layer instead of as a
    /// `TimeStampResp` (overload is refused before the request is decoded).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Overloaded => 503,
            _ => 500,
        }
    }
}
