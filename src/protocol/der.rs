//! A small DER writer: the token templates and the per-token splice (token.rs) write DER
//! directly, because encoding through typed values per token would cost far more than
//! copying pre-encoded parts. Everything stampd decodes goes through the `der` crate
//! (asn1.rs); the tests below decode what this writer writes with that crate.
//!
//! Only what RFC 3161 needs: single-byte tags, definite minimal lengths, minimal INTEGERs.

/// The identifier octets RFC 3161 and CMS use (X.680 universal tags; X.690 §8.1.2: bit 6
/// set for constructed encodings).
pub mod tag {
    /// UNIVERSAL 1.
    pub const BOOLEAN: u8 = 0x01;
    /// UNIVERSAL 2.
    pub const INTEGER: u8 = 0x02;
    /// UNIVERSAL 3 (primitive: DER forbids the constructed form).
    pub const BIT_STRING: u8 = 0x03;
    /// UNIVERSAL 4 (primitive).
    pub const OCTET_STRING: u8 = 0x04;
    /// UNIVERSAL 5.
    pub const NULL: u8 = 0x05;
    /// UNIVERSAL 6, OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// UNIVERSAL 12.
    pub const UTF8_STRING: u8 = 0x0c;
    /// UNIVERSAL 24.
    pub const GENERALIZED_TIME: u8 = 0x18;
    /// UTCTime.
    pub const UTC_TIME: u8 = 0x17;
    /// UNIVERSAL 16, constructed (SEQUENCE and SEQUENCE OF).
    pub const SEQUENCE: u8 = 0x30;
    /// UNIVERSAL 17, constructed (SET and SET OF).
    pub const SET: u8 = 0x31;
    /// `[n]` constructed, context-specific.
    pub const fn ctx_cons(n: u8) -> u8 {
        0xa0 | n
    }
    /// `[n]` primitive, context-specific.
    pub const fn ctx_prim(n: u8) -> u8 {
        0x80 | n
    }
}

/// Number of octets the header of a TLV with `len` content octets takes.
pub const fn header_len(len: usize) -> usize {
    if len < 0x80 {
        2
    } else if len <= 0xff {
        3
    } else if len <= 0xffff {
        4
    } else if len <= 0xff_ffff {
        5
    } else {
        6
    }
}

/// Total encoded size of a TLV with `len` content octets.
pub const fn tlv_len(len: usize) -> usize {
    header_len(len) + len
}

/// Appends a tag and a definite, minimal length.
pub fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends a whole TLV.
pub fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    write_header(out, tag, value.len());
    out.extend_from_slice(value);
}

/// Encodes a TLV into a new vector.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tlv_len(value.len()));
    write_tlv(&mut v, tag, value);
    v
}

/// Concatenates parts and wraps them in one TLV.
pub fn tlv_of(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut v = Vec::with_capacity(tlv_len(len));
    write_header(&mut v, tag, len);
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// Content octets of a minimal, non-negative INTEGER holding the big-endian magnitude `mag`.
pub fn unsigned_integer_content(mag: &[u8]) -> Vec<u8> {
    let skip = mag.iter().take_while(|&&b| b == 0).count();
    let mag = &mag[skip..];
    let mut v = Vec::with_capacity(mag.len() + 1);
    if mag.first().is_none_or(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(mag);
    v
}

/// A whole INTEGER TLV for an unsigned value.
pub fn uint(value: u64) -> Vec<u8> {
    tlv(
        tag::INTEGER,
        &unsigned_integer_content(&value.to_be_bytes()),
    )
}

/// A DER SET OF: elements sorted as octet strings (X.690 §11.6).
pub fn set_of(tag: u8, mut elements: Vec<Vec<u8>>) -> Vec<u8> {
    elements.sort();
    let parts: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
    tlv_of(tag, &parts)
}

/// True when `bytes` are a valid, minimal OID encoding (non-empty, every sub-identifier
/// minimal and terminated). Allocation-free, for the request hot path.
pub fn oid_content_valid(bytes: &[u8]) -> bool {
    let mut fresh = true;
    for &b in bytes {
        if fresh && b == 0x80 {
            return false;
        }
        fresh = b & 0x80 == 0;
    }
    !bytes.is_empty() && fresh
}

#[cfg(test)]
mod tests {
    use ::der::asn1::{IntRef, OctetStringRef};
    use ::der::Decode;

    use super::*;

    #[test]
    fn lengths_are_minimal_as_the_der_crate_reads_them() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 20] {
            let value = vec![7u8; len];
            let enc = tlv(tag::OCTET_STRING, &value);
            assert_eq!(enc.len(), tlv_len(len));
            assert_eq!(
                OctetStringRef::from_der(&enc).unwrap().as_bytes(),
                &value[..]
            );
        }
    }

    #[test]
    fn unsigned_integers_encode_minimally() {
        assert_eq!(uint(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(uint(127), vec![0x02, 0x01, 0x7f]);
        assert_eq!(uint(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(0x0100), vec![0x02, 0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer_content(&[0, 0, 0x12]), vec![0x12]);
        for mag in [&[0x80u8][..], &[0, 0, 1], &[0xff, 0xff], &[0]] {
            let enc = tlv(tag::INTEGER, &unsigned_integer_content(mag));
            // Minimal and non-negative by the der crate's rules.
            let i = IntRef::from_der(&enc).unwrap();
            assert!(i.as_bytes()[0] & 0x80 == 0);
        }
    }

    #[test]
    fn set_of_sorts_elements() {
        let s = set_of(
            tag::SET,
            vec![vec![0x30, 0x01, 0x02], vec![0x30, 0x01, 0x01]],
        );
        assert_eq!(s, vec![0x31, 0x06, 0x30, 0x01, 0x01, 0x30, 0x01, 0x02]);
    }

    #[test]
    fn oid_content_must_be_minimal_and_terminated() {
        assert!(oid_content_valid(&[0x2a, 0x03]));
        assert!(oid_content_valid(&[0x88, 0x37, 0x01]));
        assert!(!oid_content_valid(&[]));
        assert!(!oid_content_valid(&[0x2a, 0x80, 0x01]));
        assert!(!oid_content_valid(&[0x2a, 0x83]));
    }
}
