//! `kind = "accuracy"`: the declared accuracy of genTime (RFC 3161 §2.4.2; ETSI EN 319 422
//! requires it). Without this filter in the chain, TSTInfo carries no accuracy.

use serde::{Deserialize, Serialize};

use super::super::chain::Settings;
use crate::config::parse_duration_us;
use crate::protocol::token::Accuracy;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyConfig {
    /// E.g. `1s`, `500ms`, `100us`. Default: the policy's `accuracy`.
    pub accuracy: Option<String>,
}

impl AccuracyConfig {
    pub fn validate(&self) -> Vec<String> {
        match &self.accuracy {
            Some(a) if parse_duration_us(a).is_none() => {
                vec![format!(
                    "accuracy `{a}` is not a duration; write e.g. \"500ms\""
                )]
            }
            _ => Vec::new(),
        }
    }

    pub fn apply(&self, s: &mut Settings) {
        if let Some(us) = self.accuracy.as_deref().and_then(parse_duration_us) {
            s.accuracy = Accuracy::from_micros(us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
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
}
