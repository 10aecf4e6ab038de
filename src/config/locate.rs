//! Finds the line a validation message is about, so `stampd check-config` can say
//! `FILE:LINE: message`. Messages start with the key path they concern (`service[1] (x).path`,
//! `policy.p.accuracy`, `server.http.max_body_bytes`, `filter.f`, `FILE: chain `c`, ...`);
//! this maps the path to the table header and, when present, the key's line.

/// The 1-based line of the table (and key) a message's path names, if found.
pub fn line_of(text: &str, origin: &str, message: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let (header, key) = target(origin, message)?;
    let start = match header {
        Header::Table(name) => lines.iter().position(|l| is_header(l, &name, false))?,
        Header::ArrayItem(name, index) => {
            lines
                .iter()
                .enumerate()
                .filter(|(_, l)| is_header(l, &name, true))
                .nth(index)?
                .0
        }
    };
    let Some(key) = key else {
        return Some(start + 1);
    };
    let found = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
    Some(found.map_or(start, |i| start + 1 + i) + 1)
}

enum Header {
    Table(String),
    ArrayItem(String, usize),
}

fn is_header(line: &str, name: &str, array: bool) -> bool {
    let l = line.trim();
    let inner = if array {
        l.strip_prefix("[[").and_then(|r| r.split("]]").next())
    } else {
        l.strip_prefix('[')
            .filter(|r| !r.starts_with('['))
            .and_then(|r| r.split(']').next())
    };
    inner.is_some_and(|i| i.trim().replace(['"', '\''], "") == name)
}

/// (table, first key) named by the start of a message.
fn target(origin: &str, message: &str) -> Option<(Header, Option<String>)> {
    // "FILE: chain `NAME`, position N ..." / "FILE: chain `NAME` ..."
    if let Some(rest) = message.strip_prefix(&format!("{origin}: chain `")) {
        let name = rest.split('`').next()?;
        return Some((
            Header::Table(format!("chain.{name}")),
            Some("filters".into()),
        ));
    }
    let path = message.split(": ").next()?.trim();
    if let Some(rest) = path.strip_prefix("service[") {
        let (index, rest) = rest.split_once(']')?;
        let key = rest
            .split_once(").")
            .map(|(_, k)| k)
            .or_else(|| rest.strip_prefix('.'));
        let key = key.map(|k| k.split(['.', '[']).next().unwrap_or(k).to_string());
        return Some((
            Header::ArrayItem("service".into(), index.parse().ok()?),
            key,
        ));
    }
    let path = path.trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> = path.split('.').collect();
    let (table_len, key) = match *parts.first()? {
        "server" if parts.get(1) == Some(&"http") => (2, parts.get(2)),
        "server" => (1, parts.get(1)),
        _ => (2.min(parts.len()), parts.get(2)),
    };
    Some((
        Header::Table(parts[..table_len].join(".")),
        key.map(|k| k.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[server]
cores = 2000

[server.http]
max_body_bytes = 0

[[service]]
name = "a"

[[service]]
name = "b"
path = "tsa"

[policy.p]
oid = "2.999.1.1"
accuracy = "soon"

[chain.c]
filters = ["nonce"]
"#;

    #[test]
    fn messages_map_to_lines() {
        assert_eq!(
            line_of(TEXT, "f.toml", "server.cores: at most 1024"),
            Some(2)
        );
        assert_eq!(
            line_of(
                TEXT,
                "f.toml",
                "server.http.max_body_bytes: must be at least 1"
            ),
            Some(5)
        );
        assert_eq!(
            line_of(
                TEXT,
                "f.toml",
                "service[1] (b): path `tsa` must start with `/`"
            ),
            Some(10)
        );
        assert_eq!(line_of(TEXT, "f.toml", "service[1] (b).path: x"), Some(12));
        assert_eq!(
            line_of(
                TEXT,
                "f.toml",
                "policy.p.accuracy: `soon` is not a duration"
            ),
            Some(16)
        );
        assert_eq!(
            line_of(TEXT, "f.toml", "policy.p.chain: `x` is not defined"),
            Some(14)
        );
        assert_eq!(
            line_of(TEXT, "f.toml", "f.toml: chain `c`, position 1 `nonce` ..."),
            Some(19)
        );
        assert_eq!(line_of(TEXT, "f.toml", "policy.missing.oid: x"), None);
        // A policy message mentioning a chain is about the policy.
        assert_eq!(
            line_of(TEXT, "f.toml", "policy.p.qualified: chain `c` has no ..."),
            Some(14)
        );
    }
}
