//! `kind = "accuracy"`: the declared accuracy of genTime (RFC 3161 §2.4.2; ETSI EN 319 422
//! requires it). Without this filter in the chain, TSTInfo carries no accuracy.

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;
use crate::protocol::token::Accuracy;

/// `kind = "accuracy"`: TSTInfo carries an accuracy, the policy's or this one. `0s` omits
/// the field after all; validation refuses one over an hour or finer than genTime's precision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyConfig {
    /// E.g. `1s`, `500ms`, `100us`. Default: the policy's `accuracy`.
    pub accuracy: Option<String>,
}

impl ChainFilter for AccuracyConfig {
    fn validate(&self) -> Vec<String> {
        match &self.accuracy {
            Some(a) if parse_duration_us(a).is_none() => {
                vec![format!(
                    "accuracy `{a}` is not a duration; write e.g. \"500ms\""
                )]
            }
            _ => Vec::new(),
        }
    }

    fn apply(&self, s: &mut Settings) {
        if let Some(us) = self.accuracy.as_deref().and_then(parse_duration_us) {
            s.accuracy = Accuracy::from_micros(us);
        }
    }
}

/// Parses `1s`, `500ms`, `100us` (also `µs`) into microseconds.
pub fn parse_duration_us(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix("us").or_else(|| s.strip_suffix("µs")) {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000)
    } else {
        return None;
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
    use super::parse_duration_us;
    use crate::protocol::token::Accuracy;

    #[test]
    fn sets_and_validates_the_accuracy() {
        let mut s = defaults();
        filter("kind = \"accuracy\"\naccuracy = \"500ms\"").apply(&mut s);
        assert_eq!(s.accuracy, Accuracy::from_micros(500_000));
        assert!(!filter("kind = \"accuracy\"\naccuracy = \"soon\"")
            .validate()
            .is_empty());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_us("1s"), Some(1_000_000));
        assert_eq!(parse_duration_us("500ms"), Some(500_000));
        assert_eq!(parse_duration_us("100us"), Some(100));
        assert_eq!(parse_duration_us("0s"), Some(0));
        assert_eq!(parse_duration_us("1h"), None);
    }
}
