//! RFC 3161 §2.4.2 PKIStatusInfo: status values and failure information.

use super::der::{self, tag};

/// PKIFailureInfo named bits we emit (RFC 3161 §2.4.2). The discriminant is the bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureInfo {
    /// Unrecognized or unsupported algorithm identifier.
    BadAlg = 0,
    /// Transaction not permitted or supported.
    BadRequest = 2,
    /// The data submitted has the wrong format.
    BadDataFormat = 5,
    /// The TSA's time source is not available.
    TimeNotAvailable = 14,
    /// The requested TSA policy is not supported by the TSA.
    UnacceptedPolicy = 15,
    /// The requested extension is not supported by the TSA.
    UnacceptedExtension = 16,
    /// The request cannot be handled due to system failure.
    SystemFailure = 25,
}

impl FailureInfo {
    /// The HTTP status a legacy Authenticode request refused for this reason is answered
    /// with (that protocol has no rejection message): `400` for the client's mistakes
    /// (badDataFormat, badRequest, badAlg), `503` when the TSA cannot issue now.
    pub fn legacy_http_status(self) -> u16 {
        match self {
            FailureInfo::BadDataFormat | FailureInfo::BadRequest | FailureInfo::BadAlg => 400,
            _ => 503,
        }
    }

    /// The ASN.1 name of the bit (`badAlg`...), as logs, the audit trail and `stampd verify`
    /// write it.
    pub fn name(self) -> &'static str {
        match self {
            FailureInfo::BadAlg => "badAlg",
            FailureInfo::BadRequest => "badRequest",
            FailureInfo::BadDataFormat => "badDataFormat",
            FailureInfo::TimeNotAvailable => "timeNotAvailable",
            FailureInfo::UnacceptedPolicy => "unacceptedPolicy",
            FailureInfo::UnacceptedExtension => "unacceptedExtension",
            FailureInfo::SystemFailure => "systemFailure",
        }
    }

    /// The bit number in PKIFailureInfo (bit 0 is the most significant bit of the first
    /// octet).
    pub fn bit(self) -> u8 {
        self as u8
    }

    const ALL: [FailureInfo; 7] = [
        FailureInfo::BadAlg,
        FailureInfo::BadRequest,
        FailureInfo::BadDataFormat,
        FailureInfo::TimeNotAvailable,
        FailureInfo::UnacceptedPolicy,
        FailureInfo::UnacceptedExtension,
        FailureInfo::SystemFailure,
    ];

    /// The failure info whose bit is `bit`, if we know it.
    pub fn from_bit(bit: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.bit() == bit)
    }

    /// The failure info named `name` (as [`FailureInfo::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// DER BIT STRING with only this named bit set. X.690 §11.2.2: trailing zero bits of a
    /// named-bit list are removed, so the string ends at the set bit.
    pub fn bit_string(self) -> Vec<u8> {
        let bit = self.bit() as usize;
        let mut content = vec![0u8; bit / 8 + 2];
        content[0] = 7 - (bit % 8) as u8; // unused bits in the last octet
        content[1 + bit / 8] = 0x80 >> (bit % 8);
        der::tlv(tag::BIT_STRING, &content)
    }
}

/// PKIStatus values (RFC 3161 §2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkiStatus {
    /// A token is included, exactly as requested.
    Granted = 0,
    /// A token is included, with modifications (stampd never sends it).
    GrantedWithMods = 1,
    /// No token; failInfo says why.
    Rejection = 2,
    /// Not yet processed; the requester should ask again later (stampd never sends it).
    Waiting = 3,
    /// The TSA's certificate is about to be revoked (stampd never sends it).
    RevocationWarning = 4,
    /// The TSA's certificate has been revoked (stampd never sends it).
    RevocationNotification = 5,
}

impl PkiStatus {
    /// The status with this INTEGER value; `None` for a value RFC 3161 does not define.
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            0 => PkiStatus::Granted,
            1 => PkiStatus::GrantedWithMods,
            2 => PkiStatus::Rejection,
            3 => PkiStatus::Waiting,
            4 => PkiStatus::RevocationWarning,
            5 => PkiStatus::RevocationNotification,
            _ => return None,
        })
    }

    /// The ASN.1 name (`granted`, `rejection`...), for `stampd verify` and logs.
    pub fn name(self) -> &'static str {
        match self {
            PkiStatus::Granted => "granted",
            PkiStatus::GrantedWithMods => "grantedWithMods",
            PkiStatus::Rejection => "rejection",
            PkiStatus::Waiting => "waiting",
            PkiStatus::RevocationWarning => "revocationWarning",
            PkiStatus::RevocationNotification => "revocationNotification",
        }
    }
}

/// A reason not to issue a token: the failure info and a short, fixed, human-readable text
/// for statusString. The text is a `&'static str` on purpose: internal error details
/// (Debug output, paths, library messages) can never reach the wire through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The single failInfo bit the response carries.
    pub fail: FailureInfo,
    /// The statusString text, sent when the service's (or policy's) `status_text` is on.
    pub text: &'static str,
}

impl Rejection {
    /// A rejection with failure info `fail` and statusString `text`.
    pub const fn new(fail: FailureInfo, text: &'static str) -> Self {
        Rejection { fail, text }
    }
}

/// Encodes `PKIStatusInfo { granted }`.
pub fn granted_status_info() -> Vec<u8> {
    der::tlv(tag::SEQUENCE, &der::uint(PkiStatus::Granted as u64))
}

/// Encodes a whole `TimeStampResp` carrying a rejection and no token.
pub fn rejection_response(rejection: &Rejection, with_text: bool) -> Vec<u8> {
    let status = der::uint(PkiStatus::Rejection as u64);
    let text = if with_text {
        // PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String
        der::tlv(
            tag::SEQUENCE,
            &der::tlv(tag::UTF8_STRING, rejection.text.as_bytes()),
        )
    } else {
        Vec::new()
    };
    let info = der::tlv_of(
        tag::SEQUENCE,
        &[&status, &text, &rejection.fail.bit_string()],
    );
    der::tlv(tag::SEQUENCE, &info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_bits_are_minimal_named_bit_strings() {
        assert_eq!(
            FailureInfo::BadAlg.bit_string(),
            vec![0x03, 0x02, 0x07, 0x80]
        );
        assert_eq!(
            FailureInfo::BadRequest.bit_string(),
            vec![0x03, 0x02, 0x05, 0x20]
        );
        assert_eq!(
            FailureInfo::BadDataFormat.bit_string(),
            vec![0x03, 0x02, 0x02, 0x04]
        );
        assert_eq!(
            FailureInfo::TimeNotAvailable.bit_string(),
            vec![0x03, 0x03, 0x01, 0x00, 0x02]
        );
        assert_eq!(
            FailureInfo::SystemFailure.bit_string(),
            vec![0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40]
        );
    }

    #[test]
    fn rejection_response_golden() {
        let r = Rejection::new(FailureInfo::BadAlg, "x");
        assert_eq!(
            rejection_response(&r, true),
            vec![
                0x30, 0x0e, 0x30, 0x0c, 0x02, 0x01, 0x02, 0x30, 0x03, 0x0c, 0x01, b'x', 0x03, 0x02,
                0x07, 0x80
            ]
        );
        assert_eq!(
            rejection_response(&r, false),
            vec![0x30, 0x09, 0x30, 0x07, 0x02, 0x01, 0x02, 0x03, 0x02, 0x07, 0x80]
        );
    }
}
