//! Filters whose part of TSTInfo has no options: `tsa-policy` (the policy OID is the
//! policy's `oid`, RFC 3161 §2.4.2), `nonce` (echoed byte for byte when the request has one:
//! a MUST), `serial-number` (see `crate::serial`), `tst-info` (assembles TSTInfo in DER
//! field order). They are required in every chain, so their presence is checked, not
//! configured.

use serde::{Deserialize, Serialize};

use super::ChainFilter;

/// `kind = "tsa-policy"`: no options; the OID is the policy's `oid`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaPolicyConfig {}

impl ChainFilter for TsaPolicyConfig {
    const REQUIRED: Option<&'static str> = Some("TSTInfo needs a policy (RFC 3161 §2.4.2)");
}

/// `kind = "nonce"`: no options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceConfig {}

impl ChainFilter for NonceConfig {
    const REQUIRED: Option<&'static str> =
        Some("a request's nonce MUST be echoed (RFC 3161 §2.4.2)");
}

/// `kind = "serial-number"`: no options (the layout is `server.node_id` and the epoch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialNumberConfig {}

impl ChainFilter for SerialNumberConfig {
    const REQUIRED: Option<&'static str> =
        Some("TSTInfo needs a unique serialNumber (RFC 3161 §2.4.2)");
}

/// `kind = "tst-info"`: no options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TstInfoConfig {}

impl ChainFilter for TstInfoConfig {
    const REQUIRED: Option<&'static str> = Some(super::BUILDS_THE_RESPONSE);
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn markers_take_no_options_and_change_nothing() {
        for kind in ["tsa-policy", "nonce", "serial-number", "tst-info"] {
            let f = filter(&format!("kind = \"{kind}\""));
            let mut s = defaults();
            f.apply(&mut s);
            assert_eq!(format!("{s:?}"), format!("{:?}", defaults()));
            assert!(toml::from_str::<super::super::FilterConfig>(&format!(
                "kind = \"{kind}\"\nx = 1"
            ))
            .is_err());
        }
    }
}
