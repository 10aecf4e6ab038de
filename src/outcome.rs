//! What happened to one request: the fact the audit trail, logs and metrics record.

use crate::protocol::FailureInfo;
use crate::serial::SERIAL_LEN;

/// What happened to one request, for logs, metrics and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A token was issued with this serial number (minimal-length INTEGER content, padded).
    Granted {
        /// The token's serialNumber.
        serial: [u8; SERIAL_LEN],
    },
    /// Answered with an RFC 3161 rejection carrying this failure info.
    Rejected(FailureInfo),
    /// Refused at the HTTP level with this status (e.g. 429 from the rate limit); no
    /// `TimeStampResp` was sent.
    Refused(u16),
}
