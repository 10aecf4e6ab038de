//! `kind = "qualified-statement"`: marks tokens as qualified electronic time stamps with a
//! qcStatements extension holding esi4-qtstStatement-1 (ETSI EN 319 422 §9.1). Off unless
//! the chain has it (the standard chain has it when the policy says `qualified = true`).

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;

/// `kind = "qualified-statement"`: no options; its presence makes every token qualified, so
/// validation requires the policy to say `qualified = true` too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualifiedStatementConfig {}

impl ChainFilter for QualifiedStatementConfig {
    fn apply(&self, s: &mut Settings) {
        s.qualified = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn switches_the_statement_on() {
        let mut s = defaults();
        filter("kind = \"qualified-statement\"").apply(&mut s);
        assert!(s.qualified);
    }
}
