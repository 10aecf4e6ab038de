//! `kind = "tsa-name"`: TSTInfo `tsa [0]` = directoryName(subject of the TSA certificate).
//! Without this filter in the chain (or with `include = false`) the field is omitted.

use serde::{Deserialize, Serialize};

use super::super::chain::Settings;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaNameConfig {
    /// Include the name. Default: the policy's `tsa_name`.
    pub include: Option<bool>,
}

impl TsaNameConfig {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(i) = self.include {
            s.tsa_name = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn include_or_not() {
        let mut s = defaults();
        filter("kind = \"tsa-name\"\ninclude = false").apply(&mut s);
        assert!(!s.tsa_name);
    }
}
