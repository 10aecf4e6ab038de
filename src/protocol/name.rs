//! X.501 Names from OpenSSL-style slash strings (`/C=DE/O=Example/CN=Example TSA`), for
//! an explicit TSA name. The order is the DER order (most significant first), as in
//! `openssl req -subj`.

use super::der::{self, tag};
use super::oid;

const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;

/// (short name, attribute OID content, string type): the X.520 / PKCS#9 types OpenSSL
/// writes.
const ATTRIBUTES: [(&str, &[u8], u8); 9] = [
    ("C", &[0x55, 0x04, 0x06], PRINTABLE_STRING),
    ("ST", &[0x55, 0x04, 0x08], tag::UTF8_STRING),
    ("L", &[0x55, 0x04, 0x07], tag::UTF8_STRING),
    ("O", &[0x55, 0x04, 0x0a], tag::UTF8_STRING),
    ("OU", &[0x55, 0x04, 0x0b], tag::UTF8_STRING),
    ("CN", &[0x55, 0x04, 0x03], tag::UTF8_STRING),
    ("SERIALNUMBER", &[0x55, 0x04, 0x05], PRINTABLE_STRING),
    (
        "organizationIdentifier",
        &[0x55, 0x04, 0x61],
        tag::UTF8_STRING,
    ),
    (
        "emailAddress",
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        IA5_STRING,
    ),
];

fn printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// Encodes `/KEY=value/KEY=value...` as a DER Name (one attribute per RDN). `\/` escapes a
/// slash inside a value.
pub fn from_slash_string(s: &str) -> Result<Vec<u8>, String> {
    let body = s
        .strip_prefix('/')
        .ok_or("a name starts with `/`, e.g. \"/C=DE/O=Example/CN=Example TSA\"")?;
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            '/' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    let mut rdns = Vec::new();
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not KEY=value"))?;
        let (_, attr, string_tag) = ATTRIBUTES
            .iter()
            .find(|(k, _, _)| k.eq_ignore_ascii_case(key.trim()))
            .ok_or_else(|| {
                let known: Vec<_> = ATTRIBUTES.iter().map(|a| a.0).collect();
                format!("unknown attribute `{key}`; use one of {}", known.join(", "))
            })?;
        if value.is_empty() || value.len() > 256 {
            return Err(format!("`{key}` needs a value of 1 to 256 characters"));
        }
        let ok = match *string_tag {
            PRINTABLE_STRING => printable(value),
            IA5_STRING => value.is_ascii(),
            _ => true,
        };
        let country = key.eq_ignore_ascii_case("C");
        if !ok || (country && (value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphabetic())))
        {
            return Err(format!(
                "`{key}={value}` has characters its type cannot hold (C: two letters)"
            ));
        }
        let atv = der::tlv_of(
            tag::SEQUENCE,
            &[
                &oid::oid_tlv(attr),
                &der::tlv(*string_tag, value.as_bytes()),
            ],
        );
        rdns.push(der::tlv(tag::SET, &atv));
    }
    let parts: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
    Ok(der::tlv_of(tag::SEQUENCE, &parts))
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
