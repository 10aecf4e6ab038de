//! Public keys and signatures in the DER forms certificates and CMS carry, built from the
//! bare numbers a PKCS#11 token hands out.

use super::der::{self, tag};

/// RSAPublicKey (RFC 8017 §A.1.1) from the token's modulus and exponent (unsigned
/// big-endian).
pub fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    der::tlv_of(tag::SEQUENCE, &[&unsigned_int(n), &unsigned_int(e)])
}

/// An unsigned big-endian number as a DER INTEGER: no redundant leading zeros, one zero
/// added when the top bit is set.
fn unsigned_int(v: &[u8]) -> Vec<u8> {
    der::tlv(tag::INTEGER, &der::unsigned_integer_content(v))
}

/// r‖s (each half the length) as a DER ECDSA-Sig-Value (RFC 5480 §2.2.3 via RFC 3279).
pub fn ecdsa_sig_value(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(der::tlv_of(
        tag::SEQUENCE,
        &[&unsigned_int(r), &unsigned_int(s)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[63] = 1; // s is 1
        let der = ecdsa_sig_value(&raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(ecdsa_sig_value(&[1, 2, 3]).is_none());
        assert!(ecdsa_sig_value(&[]).is_none());
    }

    #[test]
    fn rsa_public_keys_are_minimal_unsigned_integers() {
        // n = 0x00 0x80..., e = 65537: n keeps one zero for its top bit, e has none.
        let der = rsa_public_key(&[0, 0x80, 1], &[0, 1, 0, 1]);
        assert_eq!(
            der,
            [0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]
        );
    }
}
