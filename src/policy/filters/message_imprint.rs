//! `kind = "message-imprint"`: the imprint's hash algorithm must be on the allow-list
//! (`badAlg`) and its digest must have that algorithm's length (`badDataFormat`).

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;
use crate::protocol::HashAlg;

/// `kind = "message-imprint"`: the hash algorithm allow-list, overriding the policy's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageImprintConfig {
    /// Accepted hash algorithms. Default: the policy's `hash_algorithms`.
    pub hash_algorithms: Option<Vec<HashAlg>>,
}

impl ChainFilter for MessageImprintConfig {
    const REQUIRED: Option<&'static str> = Some("the imprint's hash and length must be checked");

    fn validate(&self) -> Vec<String> {
        match &self.hash_algorithms {
            Some(h) if h.is_empty() => vec!["hash_algorithms: list at least one".into()],
            _ => Vec::new(),
        }
    }

    fn apply(&self, s: &mut Settings) {
        if let Some(h) = &self.hash_algorithms {
            s.hash_algorithms = h.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
    use crate::protocol::HashAlg;

    #[test]
    fn overrides_the_policy_allow_list() {
        let mut s = defaults();
        filter("kind = \"message-imprint\"").apply(&mut s);
        assert_eq!(s.hash_algorithms, vec![HashAlg::Sha256]);
        filter("kind = \"message-imprint\"\nhash_algorithms = [\"sha512\"]").apply(&mut s);
        assert_eq!(s.hash_algorithms, vec![HashAlg::Sha512]);
        assert!(!filter("kind = \"message-imprint\"\nhash_algorithms = []")
            .validate()
            .is_empty());
    }
}
