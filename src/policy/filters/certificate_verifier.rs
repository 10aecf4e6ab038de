//! `kind = "certificate-verifier"`: refuses to issue (`systemFailure`, logged as an error)
//! when genTime ± accuracy falls outside the TSA certificate's validity: such a token would
//! not verify, or would claim a time the certificate does not cover.

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;

/// `kind = "certificate-verifier"`: no options; its presence switches the validity check on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateVerifierConfig {}

impl ChainFilter for CertificateVerifierConfig {
    fn apply(&self, s: &mut Settings) {
        s.check_validity = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn switches_the_check_on() {
        let mut s = defaults();
        filter("kind = \"certificate-verifier\"").apply(&mut s);
        assert!(s.check_validity);
    }
}
