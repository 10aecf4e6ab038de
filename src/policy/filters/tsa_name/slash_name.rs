//! The explicit TSA name: an X.501 Name from an OpenSSL-style slash string
//! (`/C=DE/O=Example/CN=Example TSA`). The order is the DER order (most significant first),
//! as in `openssl req -subj`.

use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::{Any, SetOfVec};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Encode, Tag};
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};

/// (short name, attribute type, string type): the X.520 / PKCS#9 types OpenSSL writes.
const ATTRIBUTES: [(&str, &str, Tag); 9] = [
    ("C", "2.5.4.6", Tag::PrintableString),
    ("ST", "2.5.4.8", Tag::Utf8String),
    ("L", "2.5.4.7", Tag::Utf8String),
    ("O", "2.5.4.10", Tag::Utf8String),
    ("OU", "2.5.4.11", Tag::Utf8String),
    ("CN", "2.5.4.3", Tag::Utf8String),
    ("SERIALNUMBER", "2.5.4.5", Tag::PrintableString),
    ("organizationIdentifier", "2.5.4.97", Tag::Utf8String),
    ("emailAddress", "1.2.840.113549.1.9.1", Tag::Ia5String),
];

fn printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// Encodes `/KEY=value/KEY=value...` as a DER Name (one attribute per RDN, built and encoded
/// with `x509-cert`). `\/` escapes a slash inside a value.
pub fn from_slash_string(s: &str) -> Result<Vec<u8>, String> {
    let mut rdns = Vec::new();
    for (key, value) in crate::protocol::slash_dn::split(s)? {
        let value = value.as_str();
        let (_, attr, string_tag) = ATTRIBUTES
            .iter()
            .find(|(k, _, _)| k.eq_ignore_ascii_case(key.trim()))
            .ok_or_else(|| {
                let known: Vec<_> = ATTRIBUTES.iter().map(|a| a.0).collect();
                format!("unknown attribute `{key}`; use one of {}", known.join(", "))
            })?;
        if value.len() > 256 {
            return Err(format!("`{key}` needs a value of 1 to 256 characters"));
        }
        let ok = match *string_tag {
            Tag::PrintableString => printable(value),
            Tag::Ia5String => value.is_ascii(),
            _ => true,
        };
        let country = key.eq_ignore_ascii_case("C");
        if !ok || (country && (value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphabetic())))
        {
            return Err(format!(
                "`{key}={value}` has characters its type cannot hold (C: two letters)"
            ));
        }
        let atv = AttributeTypeAndValue {
            oid: ObjectIdentifier::new_unwrap(attr),
            value: Any::new(*string_tag, value.as_bytes()).map_err(|e| format!("`{key}`: {e}"))?,
        };
        let rdn = SetOfVec::try_from(vec![atv]).map_err(|e| format!("`{key}`: {e}"))?;
        rdns.push(RelativeDistinguishedName(rdn));
    }
    RdnSequence(rdns).to_der().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_in_the_given_order() {
        let n = from_slash_string("/C=DE/CN=T").unwrap();
        assert_eq!(
            n,
            vec![
                0x30, 0x19, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D',
                b'E', 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'T'
            ]
        );
        assert!(from_slash_string("/O=A\\/B").is_ok());
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        for bad in ["CN=x", "/CN", "/XX=1", "/C=DEU", "/CN="] {
            assert!(from_slash_string(bad).is_err(), "{bad}");
        }
    }
}
