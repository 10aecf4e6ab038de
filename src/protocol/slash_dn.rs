//! OpenSSL's slash notation for distinguished names (`/C=DE/O=Example/CN=Example TSA`, as
//! `openssl req -subj` takes it): split into `(key, value)` pairs in the order given, most
//! significant first. `\` escapes the next character (a `/` or `\` inside a value). Which
//! keys are known and how values encode is the caller's business (the dev PKI's subjects,
//! the tsa-name filter's explicit name).

/// The `(key, value)` pairs of `text`; the error says what is wrong in plain words.
pub fn split(text: &str) -> Result<Vec<(String, String)>, String> {
    let body = text
        .strip_prefix('/')
        .ok_or("a name must start with /, e.g. \"/C=DE/O=Example/CN=Example TSA\"")?;
    let (mut parts, mut part) = (Vec::new(), String::new());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => part.push(chars.next().ok_or("the name ends in `\\`")?),
            '/' => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    parts
        .into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !v.is_empty() => Ok((k.trim().to_string(), v.to_string())),
            Some((k, _)) => Err(format!("`{k}` has an empty value")),
            None => Err(format!("`{p}` is not KEY=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_in_order_with_escapes() {
        let pairs = split("/C=DE/O=A\\/B/CN=T").unwrap();
        let want = [("C", "DE"), ("O", "A/B"), ("CN", "T")];
        assert_eq!(
            pairs,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
        for bad in ["CN=x", "/CN", "/CN=", "/CN=x\\"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
