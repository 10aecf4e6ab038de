//! `kind = "request-validation"`: the request's version (v1, else `badRequest`) and its
//! extensions. RFC 3161 §2.4.2: an extension the TSA does not recognise, critical or not,
//! is refused with `unacceptedExtension`. This filter lists the ones it recognises.

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;
use crate::protocol::oid::Oid;

/// `kind = "request-validation"`: the request extensions this chain recognises, by OID.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestValidationConfig {
    /// Extension OIDs accepted when not marked critical. Default: none.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Extension OIDs accepted even when marked critical. Default: none.
    #[serde(default)]
    pub critical_extensions: Vec<String>,
}

impl ChainFilter for RequestValidationConfig {
    const REQUIRED: Option<&'static str> = Some("requests must be checked (version, extensions)");

    fn validate(&self) -> Vec<String> {
        self.extensions
            .iter()
            .chain(&self.critical_extensions)
            .filter(|o| Oid::parse(o).is_none())
            .map(|o| format!("`{o}` is not a dotted OID"))
            .collect()
    }

    fn apply(&self, s: &mut Settings) {
        let parse = |o: &String| Oid::parse(o);
        s.allowed_extensions
            .extend(self.extensions.iter().filter_map(parse).map(|o| (o, false)));
        s.allowed_extensions.extend(
            self.critical_extensions
                .iter()
                .filter_map(parse)
                .map(|o| (o, true)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};
    use crate::protocol::oid::Oid;

    #[test]
    fn lists_recognised_extensions() {
        let f = filter("kind = \"request-validation\"\nextensions = [\"1.2.3\"]\ncritical_extensions = [\"1.2.4\"]");
        let mut s = defaults();
        f.apply(&mut s);
        assert_eq!(
            s.allowed_extensions,
            vec![
                (Oid::parse("1.2.3").unwrap(), false),
                (Oid::parse("1.2.4").unwrap(), true)
            ]
        );
        assert!(
            filter("kind = \"request-validation\"\nextensions = [\"x\"]").validate()[0]
                .contains("`x`")
        );
    }
}
