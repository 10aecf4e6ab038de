//! `kind = "timestamp-response"`: the TimeStampResp around the token, and whether
//! rejections carry a statusString (fixed texts only, never internal detail).

use serde::{Deserialize, Serialize};

use super::super::settings::Settings;
use super::ChainFilter;

/// `kind = "timestamp-response"`: whether rejections carry a statusString, overriding the
/// service's `status_text`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampResponseConfig {
    /// statusString on rejections. Default: the service's `status_text`.
    pub status_text: Option<bool>,
}

impl ChainFilter for TimestampResponseConfig {
    const REQUIRED: Option<&'static str> = Some(super::BUILDS_THE_RESPONSE);

    fn apply(&self, s: &mut Settings) {
        if self.status_text.is_some() {
            s.status_text = self.status_text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn status_text_switch() {
        let mut s = defaults();
        filter("kind = \"timestamp-response\"\nstatus_text = false").apply(&mut s);
        assert_eq!(s.status_text, Some(false));
    }
}
