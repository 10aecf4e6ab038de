//! RFC 3161 / CMS encoding and decoding. No I/O, no clock, no sockets: bytes in, bytes out.
//! Tested and fuzzed on bytes alone (see [`fuzzing`]).

pub mod cert;
pub mod der;
pub mod hex;
pub mod keys;
pub mod name;
pub mod oid;
pub mod request;
pub mod response;
pub mod status;
pub mod time;
pub mod token;

pub use request::{HashAlg, TimeStampReq};
pub use status::{FailureInfo, PkiStatus, Rejection};
pub use time::{Precision, Timestamp};

/// Entry points for fuzz targets: each must never panic on any input.
pub mod fuzzing {
    pub fn decode_request(data: &[u8]) {
        if let Ok(req) = super::request::decode(data) {
            let _ = super::request::check_imprint(&req);
            let _ = req.extensions().count();
        }
    }

    pub fn decode_response(data: &[u8]) {
        let _ = super::response::decode(data);
    }

    pub fn parse_certificate(data: &[u8]) {
        if let Ok(c) = super::cert::CertView::parse(data) {
            let _ = c.extended_key_usage();
        }
    }
}
