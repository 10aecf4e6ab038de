//! The one error type of stampd, and its one mapping to the wire.
//!
//! A requester's malformed request is never an `Error`: it is a
//! [`Rejection`] value answered with HTTP 200. `Error` is for
//! everything else that stops a request or the server: the TSA's own trouble (configuration,
//! files, the key, the clock, the audit store, overload) and the refusals a service decides
//! on (rate limits). [`Error::origin`] says where it came from, so logs and metrics can tell
//! them apart; [`Error::refusal`] is the only place that decides how it looks to a requester.

use std::path::{Path, PathBuf};

use crate::protocol::{FailureInfo, Rejection};

/// Why signing failed. Never the requester's fault: mapped to `systemFailure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// Every HSM session is busy or broken (an outage, or more load than sessions).
    #[error("no signing capacity available")]
    Unavailable,
    /// The key refused or failed the operation.
    #[error("the signing operation failed")]
    Failed,
}

/// Where an [`Error`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The requester: a refusal the service chose (rate limit), not a fault.
    Client,
    /// The configuration text.
    Config,
    /// The host: files, the data directory, threads, sockets.
    Host,
    /// A signer: the key, its certificate, the HSM.
    Signer,
    /// The audit trail's store (journal or PostgreSQL).
    Audit,
    /// The trusted clock.
    Clock,
    /// No capacity left (a full queue).
    Capacity,
}

impl Origin {
    /// The name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Config => "config",
            Origin::Host => "host",
            Origin::Signer => "signer",
            Origin::Audit => "audit",
            Origin::Clock => "clock",
            Origin::Capacity => "capacity",
        }
    }
}

/// How a request stopped by an [`Error`] is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `TimeStampResp` with status rejection (HTTP 200), RFC 3161 §2.4.2.
    Reject(Rejection),
    /// An HTTP status with no `TimeStampResp`, before or instead of the RFC 3161 layer.
    Http(u16),
}

/// Everything that stops a request or the server and is not the requester's mistake.
/// [`Error::origin`] classifies it for logs and metrics; [`Error::refusal`] decides the
/// answer on the wire. The `Display` text is for logs and the CLI, never for statusString.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message says where and what to write instead.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The data directory's state (serial epoch, locks) cannot be used as it is.
    #[error("{0}")]
    State(String),
    /// A signer could not be set up.
    #[error("signer `{name}`: {reason}")]
    Signer {
        /// The `[signer.NAME]`.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The development PKI could not be created.
    #[error("dev PKI: {0}")]
    Pki(String),
    /// The HTTP frontend could not start.
    #[error("frontend: {0}")]
    Frontend(String),
    /// The audit trail could not be opened or started.
    #[error("audit: {0}")]
    AuditStart(String),
    /// The trusted time is not available (clock not synchronised).
    #[error("time source unavailable")]
    TimeUnavailable,
    /// Signing failed or no signing capacity was left.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// genTime could not be encoded or lies outside the TSA certificate's validity.
    #[error("genTime outside the TSA certificate's validity")]
    CertificateNotValidAtGenTime,
    /// The backend queue is full.
    #[error("backend queue full")]
    Overloaded,
    /// A backend worker vanished or did not answer in time.
    #[error("backend worker did not answer")]
    BackendGone,
    /// The audit trail cannot take the record now (its queue is full or its writer gone):
    /// nothing leaves without a record.
    #[error("audit trail cannot take the record")]
    AuditFull,
    /// The audit batch holding the record could not be committed: the token is withheld.
    #[error("audit batch not committed")]
    AuditFailed,
    /// The journal's disk budget is used up (`[audit.journal] max_mib`, `min_free_mib`):
    /// requests are refused before they are signed until space is freed.
    #[error("audit journal disk budget reached")]
    AuditNoSpace,
    /// The audit record did not become durable in time.
    #[error("audit commit did not finish in time")]
    AuditStalled,
    /// The client went over a rate limit; `http`: answer 429, else a `systemFailure`
    /// rejection (for clients that only understand RFC 3161).
    #[error("request rate limit exceeded")]
    RateLimited {
        /// Answer with HTTP 429 rather than a rejection.
        http: bool,
    },
    /// A request was routed to a service that does not exist (a bug, never input).
    #[error("unknown service")]
    UnknownService,
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Where the error came from.
    pub fn origin(&self) -> Origin {
        match self {
            Error::RateLimited { .. } => Origin::Client,
            Error::Config(_) => Origin::Config,
            Error::Io { .. }
            | Error::State(_)
            | Error::Pki(_)
            | Error::Frontend(_)
            | Error::BackendGone
            | Error::UnknownService => Origin::Host,
            Error::Signer { .. } | Error::Sign(_) | Error::CertificateNotValidAtGenTime => {
                Origin::Signer
            }
            Error::AuditStart(_)
            | Error::AuditFull
            | Error::AuditFailed
            | Error::AuditNoSpace
            | Error::AuditStalled => Origin::Audit,
            Error::TimeUnavailable => Origin::Clock,
            Error::Overloaded => Origin::Capacity,
        }
    }

    /// RFC 3161 failure info for a request that failed because of this error (§2.4.2:
    /// `timeNotAvailable` when the time source is not available, else `systemFailure`).
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
            Error::RateLimited { .. } => "request rate limit exceeded, retry later",
            Error::AuditFailed | Error::AuditNoSpace => "the audit trail is unavailable",
            _ => "the TSA could not issue a token",
        }
    }

    /// How a request stopped by this error is answered. At the HTTP level: a full backend
    /// queue, a lost worker or an audit trail that cannot take or commit the record in time
    /// (503: retry elsewhere or later), a rate limit that asks for it (429). Every other
    /// error is an RFC 3161 rejection with [`Error::failure_info`] and [`Error::status_text`].
    pub fn refusal(&self) -> Refusal {
        match self {
            Error::Overloaded | Error::BackendGone | Error::AuditFull | Error::AuditStalled => {
                Refusal::Http(503)
            }
            Error::RateLimited { http: true } => Refusal::Http(429),
            _ => Refusal::Reject(Rejection::new(self.failure_info(), self.status_text())),
        }
    }

    /// The HTTP status of [`Error::refusal`] (200 for a rejection, which is a
    /// `TimeStampResp`).
    pub fn http_status(&self) -> u16 {
        match self.refusal() {
            Refusal::Http(status) => status,
            Refusal::Reject(_) => 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_follow_one_mapping() {
        assert_eq!(Error::Overloaded.refusal(), Refusal::Http(503));
        assert_eq!(Error::BackendGone.http_status(), 503);
        assert_eq!(Error::AuditFull.http_status(), 503);
        assert_eq!(
            Error::RateLimited { http: true }.refusal(),
            Refusal::Http(429)
        );
        match (Error::RateLimited { http: false }).refusal() {
            Refusal::Reject(r) => {
                assert_eq!(r.fail, FailureInfo::SystemFailure);
                assert_eq!(r.text, "request rate limit exceeded, retry later");
            }
            other => panic!("{other:?}"),
        }
        match Error::TimeUnavailable.refusal() {
            Refusal::Reject(r) => assert_eq!(r.fail, FailureInfo::TimeNotAvailable),
            other => panic!("{other:?}"),
        }
        assert_eq!(Error::Sign(SignError::Unavailable).origin(), Origin::Signer);
        assert_eq!(Error::AuditFailed.origin(), Origin::Audit);
        assert_eq!(Error::RateLimited { http: true }.origin(), Origin::Client);
    }
}
