//! `kind = "storage"`: hands every issued token to the archive sink
//! ([`crate::policy::sink`]), after the response is built.

use serde::{Deserialize, Serialize};

use super::super::chain::Settings;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {}

impl StorageConfig {
    pub fn apply(&self, s: &mut Settings) {
        s.archive = true;
    }
}

/// One issued token, as handed to the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub service: String,
    pub policy: String,
    pub serial: Vec<u8>,
    pub response: Vec<u8>,
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
