//! `kind = "gen-time"`: genTime from the time source, truncated to a precision (RFC 3161
//! §2.4.2: no trailing zeros, no lone dot, always UTC). Without a trusted time the answer is
//! `timeNotAvailable`.

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;
use crate::protocol::Precision;

/// `kind = "gen-time"`: the precision of genTime, overriding the policy's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenTimeConfig {
    /// `s`, `ms` or `us`. Default: the policy's `gen_time_precision`.
    pub precision: Option<Precision>,
}

impl ChainFilter for GenTimeConfig {
    const REQUIRED: Option<&'static str> = Some("TSTInfo needs genTime (RFC 3161 §2.4.2)");

    fn apply(&self, s: &mut Settings) {
        if let Some(p) = self.precision {
            s.precision = p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
    use crate::protocol::Precision;

    #[test]
    fn sets_the_precision() {
        let mut s = defaults();
        filter("kind = \"gen-time\"\nprecision = \"us\"").apply(&mut s);
        assert_eq!(s.precision, Precision::Micros);
    }
}
