//! `kind = "storage"`: keeps every issued token (the response DER) in its audit record
//! ([`crate::audit`]), whatever the audit filter's `response` setting.

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;

/// `kind = "storage"`: no options; its presence switches archiving on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {}

impl ChainFilter for StorageConfig {
    fn apply(&self, s: &mut Settings) {
        s.archive = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn switches_archiving_on() {
        let mut s = defaults();
        filter("kind = \"storage\"").apply(&mut s);
        assert!(s.archive);
    }
}
