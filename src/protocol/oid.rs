//! Object identifiers: our own small type, because `const-oid` cannot represent arcs above
//! 39 under root 2 (X.660 allows any, and `2.999` is the example arc used in policy OIDs).
//! Constants are DER content octets, compared byte for byte on the hot path; a unit test
//! checks each against its dotted form.

use super::der::{self, tag};

/// An OID as DER content octets (X.690 §8.19), always valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Oid(Vec<u8>);

impl Oid {
    /// Parses dotted decimal, e.g. `2.999.1.1`.
    pub fn parse(dotted: &str) -> Option<Oid> {
        let arcs: Vec<u64> = dotted
            .trim()
            .split('.')
            .map(|a| {
                if a.is_empty() || (a.len() > 1 && a.starts_with('0')) {
                    None
                } else {
                    a.parse().ok()
                }
            })
            .collect::<Option<_>>()?;
        let (&first, rest) = arcs.split_first()?;
        let (&second, rest) = rest.split_first()?;
        if first > 2 || (first < 2 && second > 39) {
            return None;
        }
        let mut out = Vec::new();
        for v in
            std::iter::once(first.checked_mul(40)?.checked_add(second)?).chain(rest.iter().copied())
        {
            let mut groups = vec![(v & 0x7f) as u8];
            let mut v = v >> 7;
            while v > 0 {
                groups.push((v & 0x7f) as u8 | 0x80);
                v >>= 7;
            }
            out.extend(groups.iter().rev());
        }
        Some(Oid(out))
    }

    /// The content octets (without tag and length), as the decoders report OIDs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for Oid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&to_dotted(&self.0).unwrap_or_default())
    }
}

impl serde::Serialize for Oid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Dotted decimal of DER content octets; `None` when they are not a minimal encoding.
pub fn to_dotted(bytes: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    let mut fresh = true;
    for &b in bytes {
        if fresh && b == 0x80 {
            return None; // non-minimal sub-identifier
        }
        v = v.checked_mul(128)?.checked_add((b & 0x7f) as u64)?;
        fresh = b & 0x80 == 0;
        if fresh {
            arcs.push(v);
            v = 0;
        }
    }
    if !fresh || arcs.is_empty() {
        return None;
    }
    let (a, b) = match arcs[0] {
        x if x < 40 => (0, x),
        x if x < 80 => (1, x - 40),
        x => (2, x - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in &arcs[1..] {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Some(s)
}

/// `2.5.29.19` basicConstraints
pub const EXT_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// `2.5.29.17` subjectAltName
pub const EXT_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// `2.5.29.15` keyUsage
pub const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];

/// `1.3.6.1.5.5.7.1.3` id-pe-qcStatements (RFC 3739)
pub const PE_QC_STATEMENTS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x03];
/// `0.4.0.19422.1.1` esi4-qtstStatement-1 (ETSI EN 319 422 §9.1)
pub const ESI4_QTST_STATEMENT_1: &[u8] = &[0x04, 0x00, 0x81, 0x97, 0x5e, 0x01, 0x01];

/// DER TLV (tag 0x06) of OID content octets.
pub fn oid_tlv(content: &[u8]) -> Vec<u8> {
    der::tlv(tag::OID, content)
}

/// RFC 5652 §5.1 id-signedData.
/// `1.2.840.113549.1.7.2`
pub const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// id-data (RFC 5652 §4): the content type of an Authenticode request's ContentInfo.
pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

/// signingTime (RFC 5652 §11.3).
pub const ATTR_SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];

/// SPC_TIME_STAMP_REQUEST_OBJID 1.3.6.1.4.1.311.3.2.1: the countersignatureType of a
/// legacy Authenticode timestamp request.
pub const MS_TIMESTAMP_REQUEST: &[u8] =
    &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x03, 0x02, 0x01];

/// RFC 3161 §2.4.2 id-ct-TSTInfo.
/// `1.2.840.113549.1.9.16.1.4`
pub const CT_TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];

/// RFC 5652 §11.1 content-type attribute.
/// `1.2.840.113549.1.9.3`
pub const ATTR_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];

/// RFC 5652 §11.2 message-digest attribute.
/// `1.2.840.113549.1.9.4`
pub const ATTR_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];

/// RFC 5035 §5.4 id-aa-signingCertificateV2.
/// `1.2.840.113549.1.9.16.2.47`
pub const ATTR_SIGNING_CERTIFICATE_V2: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x2f,
];

/// RFC 2634 §5.4 id-aa-signingCertificate (ESSCertID, SHA-1).
/// `1.2.840.113549.1.9.16.2.12`
pub const ATTR_SIGNING_CERTIFICATE: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x0c,
];

/// `1.3.14.3.2.26`
pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

/// `2.16.840.1.101.3.4.2.1`
pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// `2.16.840.1.101.3.4.2.2`
pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];

/// `2.16.840.1.101.3.4.2.3`
pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// `2.16.840.1.101.3.4.2.8`
pub const SHA3_256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x08];

/// `2.16.840.1.101.3.4.2.9`
pub const SHA3_384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x09];

/// `2.16.840.1.101.3.4.2.10`
pub const SHA3_512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x0a];

/// `1.2.840.10045.4.3.2`
pub const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// `1.2.840.10045.4.3.3`
pub const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

/// `1.3.101.112`
pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// `1.2.840.113549.1.1.1`
pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// `1.2.840.113549.1.1.11`
pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];

/// `1.2.840.113549.1.1.10`
pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

/// `1.2.840.113549.1.1.8`
pub const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];

/// `1.2.840.10045.2.1`
pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// `1.2.840.10045.3.1.7`
pub const SECP256R1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// `1.3.132.0.34`
pub const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// RFC 5280 §4.2.1.12 id-kp-timeStamping.
/// `1.3.6.1.5.5.7.3.8`
pub const KP_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

/// `2.5.29.37`
pub const EXT_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];

/// `1.2.840.113549.1.1.12`
pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];

/// `1.2.840.113549.1.1.13`
pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_their_dotted_forms() {
        for (bytes, dotted) in [
            (SIGNED_DATA, "1.2.840.113549.1.7.2"),
            (CT_TST_INFO, "1.2.840.113549.1.9.16.1.4"),
            (ATTR_CONTENT_TYPE, "1.2.840.113549.1.9.3"),
            (ATTR_MESSAGE_DIGEST, "1.2.840.113549.1.9.4"),
            (ATTR_SIGNING_CERTIFICATE_V2, "1.2.840.113549.1.9.16.2.47"),
            (ATTR_SIGNING_CERTIFICATE, "1.2.840.113549.1.9.16.2.12"),
            (SHA1, "1.3.14.3.2.26"),
            (SHA256, "2.16.840.1.101.3.4.2.1"),
            (SHA384, "2.16.840.1.101.3.4.2.2"),
            (SHA512, "2.16.840.1.101.3.4.2.3"),
            (SHA3_256, "2.16.840.1.101.3.4.2.8"),
            (SHA3_384, "2.16.840.1.101.3.4.2.9"),
            (SHA3_512, "2.16.840.1.101.3.4.2.10"),
            (ECDSA_WITH_SHA256, "1.2.840.10045.4.3.2"),
            (ECDSA_WITH_SHA384, "1.2.840.10045.4.3.3"),
            (ED25519, "1.3.101.112"),
            (RSA_ENCRYPTION, "1.2.840.113549.1.1.1"),
            (SHA256_WITH_RSA, "1.2.840.113549.1.1.11"),
            (RSASSA_PSS, "1.2.840.113549.1.1.10"),
            (MGF1, "1.2.840.113549.1.1.8"),
            (EC_PUBLIC_KEY, "1.2.840.10045.2.1"),
            (SECP256R1, "1.2.840.10045.3.1.7"),
            (SECP384R1, "1.3.132.0.34"),
            (KP_TIME_STAMPING, "1.3.6.1.5.5.7.3.8"),
            (EXT_EXTENDED_KEY_USAGE, "2.5.29.37"),
            (SHA384_WITH_RSA, "1.2.840.113549.1.1.12"),
            (SHA512_WITH_RSA, "1.2.840.113549.1.1.13"),
            (EXT_BASIC_CONSTRAINTS, "2.5.29.19"),
            (EXT_KEY_USAGE, "2.5.29.15"),
            (EXT_SUBJECT_ALT_NAME, "2.5.29.17"),
            (PE_QC_STATEMENTS, "1.3.6.1.5.5.7.1.3"),
            (ESI4_QTST_STATEMENT_1, "0.4.0.19422.1.1"),
        ] {
            assert_eq!(Oid::parse(dotted).unwrap().as_bytes(), bytes, "{dotted}");
            assert_eq!(to_dotted(bytes).unwrap(), dotted);
        }
    }

    #[test]
    fn large_second_arcs_under_root_two() {
        let o = Oid::parse("2.999.1.1").unwrap();
        assert_eq!(o.as_bytes(), &[0x88, 0x37, 0x01, 0x01]);
        assert_eq!(o.to_string(), "2.999.1.1");
    }

    #[test]
    fn invalid_oids_are_refused() {
        for s in ["", "1", "3.1", "1.40", "1.2.", "1..2", "01.2", "a.b"] {
            assert!(Oid::parse(s).is_none(), "{s}");
        }
        assert!(to_dotted(&[0x2a, 0x80, 0x01]).is_none());
        assert!(to_dotted(&[0x2a, 0x86]).is_none());
    }
}
