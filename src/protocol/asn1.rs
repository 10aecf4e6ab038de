//! The borrowed ASN.1 types the request path decodes with the RustCrypto `der` crate (0.7):
//! strict DER (definite minimal lengths, minimal INTEGERs, canonical BOOLEANs, no trailing
//! bytes) enforced by the crate, every field a slice of the input.
//!
//! Two things the crate does not do, done here:
//! * **OIDs stay bytes.** `der` 0.7's `ObjectIdentifier` (const-oid 0.9) cannot represent a
//!   second arc above 47 under arc 2, so test and private policy OIDs such as `2.999.1.1`
//!   would not decode. [`OidRef`] keeps the content octets and checks that every
//!   sub-identifier is minimal and terminated (X.690 §8.19).
//! * **Fractional genTime.** `der` 0.7's `GeneralizedTime` has whole seconds only; tokens
//!   carry milliseconds and microseconds. [`GeneralizedTimeRef`] reads the RFC 3161 §2.4.2
//!   form (`YYYYMMDDhhmmss[.f*]Z`, no trailing zeros).
//! * **DEFAULT values must not be encoded** (X.690 §11.5). The derive accepts an explicit
//!   `FALSE` for a `BOOLEAN DEFAULT FALSE`; such fields are read as `Option<bool>` and
//!   [`no_explicit_default`] refuses `Some(false)`.

use der::asn1::{AnyRef, OctetStringRef};
use der::{
    Decode, DecodeValue, EncodeValue, ErrorKind, FixedTag, Header, Length, Reader, Sequence,
    SliceReader, Tag, Writer,
};

use super::der::oid_content_valid;
use super::time::{parse_generalized_time, Timestamp};

/// The tag of a newtype over already validated content octets, and its encoding: those
/// octets as they are.
macro_rules! content_bytes {
    ($name:ident, $tag:expr) => {
        impl EncodeValue for $name<'_> {
            fn value_len(&self) -> der::Result<Length> {
                Length::try_from(self.0.len())
            }

            fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
                writer.write(self.0)
            }
        }

        impl FixedTag for $name<'_> {
            const TAG: Tag = $tag;
        }
    };
}

/// An OBJECT IDENTIFIER's content octets, validated, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OidRef<'a>(pub &'a [u8]);

impl<'a> DecodeValue<'a> for OidRef<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_slice(header.length)?;
        if oid_content_valid(bytes) {
            Ok(OidRef(bytes))
        } else {
            Err(ErrorKind::OidMalformed.into())
        }
    }
}

content_bytes!(OidRef, Tag::ObjectIdentifier);

/// RFC 5280 §4.1.1.2 `AlgorithmIdentifier`, parameters left undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Sequence)]
pub struct AlgorithmIdentifierRef<'a> {
    /// The algorithm.
    pub algorithm: OidRef<'a>,
    /// Its parameters, when present.
    pub parameters: Option<AnyRef<'a>>,
}

/// RFC 3161 §2.4.1 `MessageImprint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Sequence)]
pub struct MessageImprintRef<'a> {
    /// The hash algorithm of the requester's digest.
    pub hash_algorithm: AlgorithmIdentifierRef<'a>,
    /// The digest.
    pub hashed_message: OctetStringRef<'a>,
}

/// RFC 5280 §4.1 `Extension`; `critical` is `BOOLEAN DEFAULT FALSE` (see
/// [`no_explicit_default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Sequence)]
pub struct ExtensionRef<'a> {
    /// The extension's OID.
    pub extn_id: OidRef<'a>,
    /// The critical flag as encoded (absent means FALSE).
    pub critical: Option<bool>,
    /// The DER of the extension's own value.
    pub extn_value: OctetStringRef<'a>,
}

/// `Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension`, validated when decoded and kept
/// as its content octets; [`ExtensionsRef::iter`] reads them again without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionsRef<'a>(&'a [u8]);

impl<'a> ExtensionsRef<'a> {
    /// No extensions (for a request without `[0]`).
    pub const EMPTY: ExtensionsRef<'static> = ExtensionsRef(&[]);

    /// The extensions, in order.
    pub fn iter(&self) -> impl Iterator<Item = ExtensionRef<'a>> + 'a {
        let mut r = SliceReader::new(self.0).ok();
        std::iter::from_fn(move || {
            let reader = r.as_mut()?;
            if reader.is_finished() {
                return None;
            }
            ExtensionRef::decode(reader).ok()
        })
    }

    /// True when there is at least one.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> DecodeValue<'a> for ExtensionsRef<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_slice(header.length)?;
        if bytes.is_empty() {
            // SIZE (1..MAX)
            return Err(Tag::Sequence.value_error());
        }
        let mut r = SliceReader::new(bytes)?;
        while !r.is_finished() {
            no_explicit_default(ExtensionRef::decode(&mut r)?.critical)?;
        }
        Ok(ExtensionsRef(bytes))
    }
}

content_bytes!(ExtensionsRef, Tag::Sequence);

/// A `BOOLEAN DEFAULT FALSE` as read (`Option<bool>`): absent is FALSE, an encoded TRUE is
/// TRUE, and an encoded FALSE is not DER (X.690 §11.5).
pub fn no_explicit_default(field: Option<bool>) -> der::Result<bool> {
    match field {
        None => Ok(false),
        Some(true) => Ok(true),
        Some(false) => Err(Tag::Boolean.non_canonical_error()),
    }
}

/// A GeneralizedTime in the RFC 3161 §2.4.2 form, fraction included: the time and the text
/// as written (the client checks its form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralizedTimeRef<'a> {
    /// The time.
    pub time: Timestamp,
    /// As written, e.g. `20300101000000.123Z`.
    pub text: &'a str,
}

impl<'a> DecodeValue<'a> for GeneralizedTimeRef<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_slice(header.length)?;
        let bad = || der::Error::from(ErrorKind::DateTime);
        let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let time = parse_generalized_time(bytes).ok_or_else(bad)?;
        Ok(GeneralizedTimeRef { time, text })
    }
}

impl FixedTag for GeneralizedTimeRef<'_> {
    const TAG: Tag = Tag::GeneralizedTime;
}

/// The content octets of an INTEGER that must not be negative (versions, nonces, serials).
pub fn non_negative(i: der::asn1::IntRef<'_>) -> der::Result<&[u8]> {
    match i.as_bytes() {
        [b, ..] if b & 0x80 != 0 => Err(Tag::Integer.value_error()),
        bytes => Ok(bytes),
    }
}

/// A non-negative INTEGER that fits in a u64 (versions, accuracy parts).
pub fn small_uint(i: der::asn1::IntRef<'_>) -> der::Result<u64> {
    match non_negative(i)? {
        b if b.len() > 9 || (b.len() == 9 && b[0] != 0) => Err(Tag::Integer.value_error()),
        b => Ok(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x))),
    }
}
