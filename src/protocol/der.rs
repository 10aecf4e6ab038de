//! A strict, zero-copy DER reader and a small DER writer.
//!
//! Only what RFC 3161 needs: single-byte tags, definite lengths of at most four octets,
//! minimal INTEGERs. The reader never allocates and never recurses on its own: callers walk
//! a fixed schema, so nesting depth is bounded by the schema, not by the input.

/// Why a byte string is not acceptable DER. Every variant maps to `badDataFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerError {
    /// The input ended inside a TLV.
    Truncated,
    /// BER indefinite length (`0x80`), forbidden in DER (X.690 §10.1).
    IndefiniteLength,
    /// A length not in its shortest form (X.690 §10.1).
    NonMinimalLength,
    /// A declared length larger than we accept or than the input holds.
    LengthTooLarge,
    /// High-tag-number form; nothing in RFC 3161 uses it.
    UnsupportedTag,
    /// A different tag than the schema requires at this position.
    UnexpectedTag {
        /// The tag the schema requires.
        expected: u8,
        /// The tag in the input.
        found: u8,
    },
    /// An INTEGER with redundant leading octets, or empty (X.690 §8.3.2).
    NonMinimalInteger,
    /// A BOOLEAN that is not a single 0x00 or 0xFF octet (X.690 §11.1).
    InvalidBoolean,
    /// Bytes left over after the outermost value or inside a constructed value.
    TrailingData,
    /// A value that is well-formed DER but out of range for its field.
    InvalidValue,
}

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DerError::Truncated => "truncated DER",
            DerError::IndefiniteLength => "indefinite length is not DER",
            DerError::NonMinimalLength => "non-minimal DER length",
            DerError::LengthTooLarge => "declared length too large",
            DerError::UnsupportedTag => "unsupported tag form",
            DerError::UnexpectedTag { .. } => "unexpected tag",
            DerError::NonMinimalInteger => "non-minimal INTEGER",
            DerError::InvalidBoolean => "invalid BOOLEAN",
            DerError::TrailingData => "trailing data",
            DerError::InvalidValue => "value out of range",
        };
        f.write_str(s)
    }
}

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

/// One decoded TLV: the tag, the content octets, and the whole encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The identifier octet (single-byte tags only).
    pub tag: u8,
    /// The content octets.
    pub value: &'a [u8],
    /// The whole encoding: identifier, length and content octets.
    pub raw: &'a [u8],
}

/// Reads consecutive TLVs from a slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf` (typically the content octets of a constructed TLV).
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// True when every TLV has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The tag of the next TLV, if any, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Reads the next TLV of any tag.
    pub fn read_any(&mut self) -> Result<Tlv<'a>, DerError> {
        let buf = self.buf;
        let (&tag, rest) = buf.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::UnsupportedTag);
        }
        let (&first, rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else if first == 0x80 {
            return Err(DerError::IndefiniteLength);
        } else {
            let n = (first & 0x7f) as usize;
            // Four length octets are 4 GiB: anything longer is refused before we look at it.
            if n > 4 {
                return Err(DerError::LengthTooLarge);
            }
            if rest.len() < n {
                return Err(DerError::Truncated);
            }
            let (octets, rest) = rest.split_at(n);
            if octets[0] == 0 {
                return Err(DerError::NonMinimalLength);
            }
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | b as usize);
            if len < 0x80 {
                return Err(DerError::NonMinimalLength);
            }
            (len, rest)
        };
        // The declared length is checked against what we hold, never allocated.
        if rest.len() < len {
            return Err(if len > buf.len() {
                DerError::LengthTooLarge
            } else {
                DerError::Truncated
            });
        }
        let header = buf.len() - rest.len();
        let value = &rest[..len];
        let raw = &buf[..header + len];
        self.buf = &rest[len..];
        Ok(Tlv { tag, value, raw })
    }

    /// Reads the next TLV and requires `expected` as its tag.
    pub fn read(&mut self, expected: u8) -> Result<Tlv<'a>, DerError> {
        match self.peek_tag() {
            None => Err(DerError::Truncated),
            Some(found) if found != expected => Err(DerError::UnexpectedTag { expected, found }),
            Some(_) => self.read_any(),
        }
    }

    /// Reads the next TLV only if it carries `tag`.
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads a constructed value and returns a reader over its contents.
    pub fn read_nested(&mut self, tag: u8) -> Result<Reader<'a>, DerError> {
        Ok(Reader::new(self.read(tag)?.value))
    }

    /// Reads an INTEGER and checks that it is minimally encoded (X.690 §8.3.2).
    pub fn read_integer(&mut self) -> Result<Tlv<'a>, DerError> {
        let tlv = self.read(tag::INTEGER)?;
        check_minimal_integer(tlv.value)?;
        Ok(tlv)
    }

    /// Reads a small non-negative INTEGER.
    pub fn read_u64(&mut self) -> Result<u64, DerError> {
        let tlv = self.read_integer()?;
        integer_to_u64(tlv.value)
    }

    /// Reads an OBJECT IDENTIFIER whose content is a valid minimal encoding (X.690 §8.19).
    pub fn read_oid(&mut self) -> Result<&'a [u8], DerError> {
        let v = self.read(tag::OID)?.value;
        if oid_content_valid(v) {
            Ok(v)
        } else {
            Err(DerError::InvalidValue)
        }
    }

    /// Reads a DER BOOLEAN (only 0x00 and 0xFF are allowed, X.690 §11.1).
    pub fn read_bool(&mut self) -> Result<bool, DerError> {
        let tlv = self.read(tag::BOOLEAN)?;
        match tlv.value {
            [0x00] => Ok(false),
            [0xff] => Ok(true),
            _ => Err(DerError::InvalidBoolean),
        }
    }

    /// Requires that everything has been consumed.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Decodes exactly one TLV that spans the whole input.
pub fn read_single(input: &[u8], tag: u8) -> Result<Tlv<'_>, DerError> {
    let mut r = Reader::new(input);
    let tlv = r.read(tag)?;
    r.finish()?;
    Ok(tlv)
}

/// Checks INTEGER content octets are minimal (X.690 §8.3.2): not empty, and no redundant
/// leading 0x00 or 0xFF octet.
pub fn check_minimal_integer(v: &[u8]) -> Result<(), DerError> {
    match v {
        [] => Err(DerError::NonMinimalInteger),
        [0x00, b, ..] if b & 0x80 == 0 => Err(DerError::NonMinimalInteger),
        [0xff, b, ..] if b & 0x80 != 0 => Err(DerError::NonMinimalInteger),
        _ => Ok(()),
    }
}

/// True when a minimal INTEGER encoding is negative.
pub fn integer_is_negative(v: &[u8]) -> bool {
    v.first().is_some_and(|b| b & 0x80 != 0)
}

/// The value of non-negative INTEGER content octets that fits in 64 bits; `InvalidValue`
/// when negative or larger.
pub fn integer_to_u64(v: &[u8]) -> Result<u64, DerError> {
    if integer_is_negative(v) {
        return Err(DerError::InvalidValue);
    }
    let v = v.strip_prefix(&[0]).unwrap_or(v);
    if v.len() > 8 {
        return Err(DerError::InvalidValue);
    }
    Ok(v.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
}

// ---------------------------------------------------------------------------------------------
// Writer

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
    use super::*;

    #[test]
    fn lengths_round_trip_minimally() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 70000] {
            let value = vec![7u8; len];
            let enc = tlv(tag::OCTET_STRING, &value);
            assert_eq!(enc.len(), tlv_len(len));
            let got = read_single(&enc, tag::OCTET_STRING).unwrap();
            assert_eq!(got.value.len(), len);
            assert_eq!(got.raw, &enc[..]);
        }
    }

    #[test]
    fn rejects_indefinite_and_non_minimal_lengths() {
        assert_eq!(
            read_single(&[0x30, 0x80, 0, 0], tag::SEQUENCE),
            Err(DerError::IndefiniteLength)
        );
        assert_eq!(
            read_single(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], tag::OCTET_STRING),
            Err(DerError::NonMinimalLength)
        );
        assert_eq!(
            read_single(&[0x04, 0x82, 0x00, 0x81], tag::OCTET_STRING),
            Err(DerError::NonMinimalLength)
        );
    }

    #[test]
    fn huge_declared_lengths_are_refused_without_allocating() {
        assert_eq!(
            read_single(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], tag::SEQUENCE),
            Err(DerError::LengthTooLarge)
        );
        assert_eq!(
            read_single(&[0x30, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1], tag::SEQUENCE),
            Err(DerError::LengthTooLarge)
        );
        assert_eq!(
            read_single(&[0x30, 0x03, 0x01], tag::SEQUENCE),
            Err(DerError::Truncated)
        );
    }

    #[test]
    fn rejects_trailing_bytes_and_wrong_tags() {
        assert_eq!(
            read_single(&[0x05, 0x00, 0x00], tag::NULL),
            Err(DerError::TrailingData)
        );
        assert_eq!(
            read_single(&[0x05, 0x00], tag::SEQUENCE),
            Err(DerError::UnexpectedTag {
                expected: 0x30,
                found: 0x05
            })
        );
        assert_eq!(
            read_single(&[0x1f, 0x81, 0x00], 0x1f),
            Err(DerError::UnsupportedTag)
        );
    }

    #[test]
    fn integers_must_be_minimal() {
        assert!(check_minimal_integer(&[0x00]).is_ok());
        assert!(check_minimal_integer(&[0x00, 0x80]).is_ok());
        assert!(check_minimal_integer(&[0xff, 0x7f]).is_ok());
        assert_eq!(check_minimal_integer(&[]), Err(DerError::NonMinimalInteger));
        assert_eq!(
            check_minimal_integer(&[0x00, 0x7f]),
            Err(DerError::NonMinimalInteger)
        );
        assert_eq!(
            check_minimal_integer(&[0xff, 0x80]),
            Err(DerError::NonMinimalInteger)
        );
    }

    #[test]
    fn unsigned_integers_encode_minimally() {
        assert_eq!(uint(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(uint(127), vec![0x02, 0x01, 0x7f]);
        assert_eq!(uint(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(0x0100), vec![0x02, 0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer_content(&[0, 0, 0x12]), vec![0x12]);
        assert_eq!(integer_to_u64(&[0x00, 0x80]).unwrap(), 128);
        assert_eq!(integer_to_u64(&[0x80]), Err(DerError::InvalidValue));
    }

    #[test]
    fn booleans_are_strict() {
        assert_eq!(Reader::new(&[0x01, 0x01, 0xff]).read_bool(), Ok(true));
        assert_eq!(Reader::new(&[0x01, 0x01, 0x00]).read_bool(), Ok(false));
        assert_eq!(
            Reader::new(&[0x01, 0x01, 0x01]).read_bool(),
            Err(DerError::InvalidBoolean)
        );
    }

    #[test]
    fn set_of_sorts_elements() {
        let s = set_of(
            tag::SET,
            vec![vec![0x30, 0x01, 0x02], vec![0x30, 0x01, 0x01]],
        );
        assert_eq!(s, vec![0x31, 0x06, 0x30, 0x01, 0x01, 0x30, 0x01, 0x02]);
    }
}
