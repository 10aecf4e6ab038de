//! RFC 3161 / CMS encoding and decoding. No I/O, no clock, no sockets: bytes in, bytes out.
//! Tested and fuzzed on bytes alone (see [`fuzzing`]).

pub mod asn1;
pub mod authenticode;
pub mod cert;
pub mod der;
pub mod hex;
pub mod keys;
pub mod oid;
pub mod request;
pub mod response;
pub mod slash_dn;
pub mod sntp;
pub mod status;
pub mod time;
pub mod token;
pub mod tsp;

pub use request::{HashAlg, TimeStampReq};
pub use status::{FailureInfo, PkiStatus, Rejection};
pub use time::{Precision, Timestamp};

/// Entry points for fuzz targets: each must never panic on any input.
pub mod fuzzing {
    /// Decodes `data` as a `TimeStampReq`, then checks its imprint and walks its extensions,
    /// as the request path does.
    pub fn decode_request(data: &[u8]) {
        if let Ok(req) = super::request::decode(data) {
            let _ = super::request::check_imprint(&req);
            let _ = req.extensions().count();
        }
    }

    /// Decodes `data` as a `TimeStampResp` and any token inside it, as `stampd verify` does.
    pub fn decode_response(data: &[u8]) {
        let _ = super::response::decode(data);
    }

    /// Parses `data` as a certificate and reads its extendedKeyUsage, as the signer's
    /// startup checks do.
    pub fn parse_certificate(data: &[u8]) {
        if let Ok(c) = super::cert::CertView::parse(data) {
            let _ = c.extended_key_usage();
        }
    }
}
