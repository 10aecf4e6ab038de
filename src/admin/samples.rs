//! The dashboard reads the same figures `/metrics` serves: this parses that Prometheus text
//! (exposition format 0.0.4: `name{label="value",...} number`), so the two never disagree.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`; comment lines and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(line).collect()
}

/// The value of the first sample called `name` whose labels include `with`.
pub fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && with.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}

fn line(l: &str) -> Option<Sample> {
    let l = l.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let (name, mut rest) = l.split_at(l.find(['{', ' '])?);
    let mut labels = Vec::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = body.find('=')?;
            let key = body[..eq].trim().to_string();
            let quoted = body[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut end = None;
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            labels.push((key, value));
            body = &quoted[end? + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_as_prometheus_writes_them() {
        let text = "# TYPE x gauge\nx 3\ny{a=\"1\",b=\"q\\\"z\"} 2.5\nz{s=\"n\"} inf\nbroken{\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(value(&s, "x", &[]), Some(3.0));
        assert_eq!(value(&s, "y", &[("b", "q\"z")]), Some(2.5));
        assert_eq!(value(&s, "y", &[("a", "2")]), None);
        assert_eq!(value(&s, "z", &[("s", "n")]), Some(f64::INFINITY));
    }
}
