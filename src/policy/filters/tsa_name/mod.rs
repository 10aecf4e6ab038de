//! `kind = "tsa-name"`: TSTInfo `tsa [0]`: directoryName(subject of the TSA certificate), or
//! an explicit directoryName. Without this filter in the chain (or with `include = false`)
//! the field is omitted.

mod slash_name;

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;
use crate::protocol::token::TsaName;

/// `kind = "tsa-name"`: whether TSTInfo carries the `tsa` field, and which name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaNameConfig {
    /// Include the name. Default: the policy's `tsa_name`.
    pub include: Option<bool>,
    /// An explicit name instead of the certificate subject, OpenSSL style:
    /// `/C=DE/O=Example/CN=Example TSA`. Default: the certificate subject.
    pub name: Option<String>,
}

impl ChainFilter for TsaNameConfig {
    fn validate(&self) -> Vec<String> {
        match self.name.as_deref().map(slash_name::from_slash_string) {
            Some(Err(e)) => vec![format!("name: {e}")],
            _ => Vec::new(),
        }
    }

    fn apply(&self, s: &mut Settings) {
        let explicit = self
            .name
            .as_deref()
            .and_then(|n| slash_name::from_slash_string(n).ok());
        s.tsa_name = match (self.include, explicit) {
            (Some(false), _) => TsaName::Omit,
            (_, Some(der)) => TsaName::Explicit(der),
            (Some(true), None) => TsaName::Subject,
            (None, None) => s.tsa_name.clone(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
    use crate::protocol::token::TsaName;

    #[test]
    fn include_or_not_or_an_explicit_name() {
        let mut s = defaults();
        filter("kind = \"tsa-name\"\ninclude = false").apply(&mut s);
        assert_eq!(s.tsa_name, TsaName::Omit);
        let mut s = defaults();
        filter("kind = \"tsa-name\"\nname = \"/C=DE/CN=T\"").apply(&mut s);
        assert!(matches!(s.tsa_name, TsaName::Explicit(_)));
        assert!(!filter("kind = \"tsa-name\"\nname = \"CN=T\"")
            .validate()
            .is_empty());
    }
}
