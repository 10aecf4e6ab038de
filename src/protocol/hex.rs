//! Lowercase hex text of bytes, as the audit trail, logs and the CLI print them.

/// Lowercase hex of `b`, two digits per byte, no prefix.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of an even number of hex digits (either case), or `None`.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    // Checked first: from_str_radix would take a sign.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 1, 254])), Some(vec![0, 1, 254]));
        assert_eq!(unhex("0g"), None);
    }
}
