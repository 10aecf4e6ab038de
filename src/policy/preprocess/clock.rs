//! `kind = "clock"`: reads genTime's source once per request, before anything else. The
//! TSA's trusted clock (the `[clock]` monitor's verdict) by default; a fixed virtual clock
//! for tests and demonstrations. A clock that cannot be trusted yields `timeNotAvailable`,
//! never a wrong time.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Exchange, PreFilter, Stop};
use crate::clock::{FixedClock, TimeSource};

/// `[preprocess.NAME]` with `kind = "clock"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// A fixed virtual time (RFC 3339 UTC, e.g. `2030-01-01T00:00:00Z`) instead of the
    /// trusted clock. For tests only. Default: the trusted clock (`[clock]`).
    pub fixed: Option<String>,
}

impl ClockConfig {
    /// Pure checks: `fixed`, when set, must be an RFC 3339 time.
    pub fn validate(&self) -> Vec<String> {
        match &self.fixed {
            Some(f) if crate::protocol::Timestamp::parse_rfc3339(f).is_none() => {
                vec![format!(
                    "fixed `{f}` is not an RFC 3339 time such as \"2030-01-01T00:00:00Z\""
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The filter `name`, reading `system` (the TSA's clock) unless `fixed` is set.
    pub fn build(&self, name: &str, system: Arc<dyn TimeSource>) -> Clock {
        let source: Arc<dyn TimeSource> = match self
            .fixed
            .as_deref()
            .and_then(crate::protocol::Timestamp::parse_rfc3339)
        {
            Some(t) => Arc::new(FixedClock(Some(t))),
            None => system,
        };
        Clock {
            name: name.to_string(),
            source,
        }
    }
}

/// The clock filter: reads its [`TimeSource`] once per request, in `before`, into
/// [`Exchange::time`]; genTime and the audit record's time come from that one reading.
pub struct Clock {
    name: String,
    source: Arc<dyn TimeSource>,
}

impl PreFilter for Clock {
    fn name(&self) -> &str {
        &self.name
    }

    fn before(&self, x: &mut Exchange<'_>) -> Result<(), Stop> {
        x.time = Some(self.source.now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn fixed_clocks_parse_and_bad_ones_are_reported() {
        let c = ClockConfig {
            fixed: Some("2030-01-01T00:00:00Z".into()),
        };
        assert!(c.validate().is_empty());
        let clock = c.build("c", Arc::new(SystemClock));
        assert_eq!(clock.source.now().unwrap().time.unix_secs, 1_893_456_000);
        let offset = ClockConfig {
            fixed: Some("2030-01-01T02:00:00.5+02:00".into()),
        }
        .build("c", Arc::new(SystemClock));
        let t = offset.source.now().unwrap().time;
        assert_eq!((t.unix_secs, t.nanos), (1_893_456_000, 500_000_000));
        let bad = ClockConfig {
            fixed: Some("tomorrow".into()),
        };
        assert!(bad.validate()[0].contains("RFC 3339"));
    }
}
