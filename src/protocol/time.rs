//! genTime as a DER GeneralizedTime with an optional fraction of a second.
//!
//! RFC 3161 §2.4.2: the time is UTC ("Z"), the fraction has no trailing zeros, and a fraction
//! of zero is written without the dot at all. The `der` crate has no fractional seconds, so
//! this is our own.

use super::der::tag;

/// A point in time: whole seconds since the Unix epoch plus nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z, ignoring leap seconds (Unix time); negative
    /// before 1970.
    pub unix_secs: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    pub nanos: u32,
}

impl Timestamp {
    /// RFC 3339 in UTC with only the sub-second digits the instant has (none when whole),
    /// e.g. `2026-11-18T11:06:40.000005Z`: the audit trail's and the CLI's text form.
    pub fn to_rfc3339(self) -> String {
        let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(self.unix_secs) else {
            return self.unix_secs.to_string();
        };
        let base = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        if self.nanos == 0 {
            format!("{base}Z")
        } else {
            let frac = format!("{:09}", self.nanos);
            format!("{base}.{}Z", frac.trim_end_matches('0'))
        }
    }

    /// Parses RFC 3339 text with any offset into the instant it names.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let dt =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Timestamp {
            unix_secs: dt.unix_timestamp(),
            nanos: dt.nanosecond(),
        })
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i128 {
        self.unix_secs as i128 * 1_000_000_000 + self.nanos as i128
    }
}

/// How many digits of a second genTime carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Whole seconds.
    #[serde(rename = "s")]
    Seconds,
    /// Up to three digits.
    #[default]
    #[serde(rename = "ms")]
    Millis,
    /// Up to six digits.
    #[serde(rename = "us")]
    Micros,
}

impl Precision {
    /// One unit of this precision, in microseconds.
    pub fn unit_us(self) -> u64 {
        match self {
            Precision::Seconds => 1_000_000,
            Precision::Millis => 1_000,
            Precision::Micros => 1,
        }
    }

    /// The config name: `s`, `ms` or `us`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Seconds => "s",
            Precision::Millis => "ms",
            Precision::Micros => "us",
        }
    }
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push_digits(out: &mut Vec<u8>, mut v: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for i in (0..width).rev() {
        out[start + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Writes the GeneralizedTime TLV for `t` truncated (never rounded up: a token must not
/// claim a time that has not yet come) to `precision`. Years outside 0..=9999 cannot be
/// written and return `false`.
pub fn write_generalized_time(out: &mut Vec<u8>, t: Timestamp, precision: Precision) -> bool {
    let days = t.unix_secs.div_euclid(86_400);
    let secs_of_day = t.unix_secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return false;
    }
    let (mut frac, mut digits) = match precision {
        Precision::Seconds => (0, 0),
        Precision::Millis => (t.nanos / 1_000_000, 3),
        Precision::Micros => (t.nanos / 1_000, 6),
    };
    while digits > 0 && frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    let len = 15 + if digits > 0 { 1 + digits } else { 0 };
    out.push(tag::GENERALIZED_TIME);
    out.push(len as u8);
    push_digits(out, year as u32, 4);
    push_digits(out, month, 2);
    push_digits(out, day, 2);
    push_digits(out, secs_of_day / 3600, 2);
    push_digits(out, secs_of_day / 60 % 60, 2);
    push_digits(out, secs_of_day % 60, 2);
    if digits > 0 {
        out.push(b'.');
        push_digits(out, frac, digits);
    }
    out.push(b'Z');
    true
}

/// Writes the UTCTime TLV (`YYMMDDHHMMSSZ`, RFC 5280 §4.1.2.5.1) for `t` truncated to the
/// second: what Authenticode's signingTime attribute must be (osslsigncode ignores a stamp
/// without it). Years outside 1950..=2049 cannot be written and return `false`.
pub fn write_utc_time(out: &mut Vec<u8>, t: Timestamp) -> bool {
    let days = t.unix_secs.div_euclid(86_400);
    let secs_of_day = t.unix_secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    if !(1950..=2049).contains(&year) {
        return false;
    }
    out.push(tag::UTC_TIME);
    out.push(13);
    push_digits(out, (year % 100) as u32, 2);
    push_digits(out, month, 2);
    push_digits(out, day, 2);
    push_digits(out, secs_of_day / 3600, 2);
    push_digits(out, secs_of_day / 60 % 60, 2);
    push_digits(out, secs_of_day % 60, 2);
    out.push(b'Z');
    true
}

/// Parses a DER GeneralizedTime content (as written above, fraction optional) back into a
/// timestamp. Used by the verifier and tests.
pub fn parse_generalized_time(s: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(s).ok()?;
    let s = s.strip_suffix('Z')?;
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) if !f.is_empty() && !f.ends_with('0') && f.len() <= 9 => (m, f),
        Some(_) => return None,
        None => (s, ""),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main[r].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
    };
    let secs = time::PrimitiveDateTime::new(date, t)
        .assume_utc()
        .unix_timestamp();
    Some(Timestamp {
        unix_secs: secs,
        nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: i64, nanos: u32, p: Precision) -> String {
        let mut v = Vec::new();
        assert!(write_generalized_time(
            &mut v,
            Timestamp {
                unix_secs: secs,
                nanos
            },
            p
        ));
        assert_eq!(v[0], 0x18);
        assert_eq!(v[1] as usize, v.len() - 2);
        String::from_utf8(v[2..].to_vec()).unwrap()
    }

    #[test]
    fn formats_whole_seconds() {
        assert_eq!(fmt(0, 0, Precision::Seconds), "19700101000000Z");
        assert_eq!(
            fmt(1_700_000_000, 999_999_999, Precision::Seconds),
            "20231114221320Z"
        );
    }

    #[test]
    fn fraction_has_no_trailing_zeros_and_no_lone_dot() {
        // RFC 3161 §2.4.2
        assert_eq!(fmt(1_700_000_000, 0, Precision::Millis), "20231114221320Z");
        assert_eq!(
            fmt(1_700_000_000, 500_000_000, Precision::Millis),
            "20231114221320.5Z"
        );
        assert_eq!(
            fmt(1_700_000_000, 120_000_000, Precision::Micros),
            "20231114221320.12Z"
        );
        assert_eq!(
            fmt(1_700_000_000, 123_456_789, Precision::Micros),
            "20231114221320.123456Z"
        );
        assert_eq!(
            fmt(1_700_000_000, 999_999, Precision::Millis),
            "20231114221320Z"
        );
    }

    #[test]
    fn leap_years_and_month_ends() {
        assert_eq!(fmt(951_782_400, 0, Precision::Seconds), "20000229000000Z");
        assert_eq!(fmt(4_102_444_799, 0, Precision::Seconds), "20991231235959Z");
    }

    #[test]
    fn parse_round_trips() {
        for (s, n) in [
            (1_700_000_000i64, 123_000_000u32),
            (0, 0),
            (4_102_444_799, 456_789_000),
        ] {
            let text = fmt(s, n, Precision::Micros);
            let t = parse_generalized_time(text.as_bytes()).unwrap();
            assert_eq!(
                t,
                Timestamp {
                    unix_secs: s,
                    nanos: n
                }
            );
        }
        assert!(parse_generalized_time(b"20231114221320.Z").is_none());
        assert!(parse_generalized_time(b"20231114221320.50Z").is_none());
        assert!(parse_generalized_time(b"20231114221320").is_none());
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = Timestamp {
            unix_secs: 1_795_000_000,
            nanos: 5_000,
        };
        assert_eq!(t.to_rfc3339(), "2026-11-18T11:06:40.000005Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T12:06:40+01:00").map(|t| t.unix_secs),
            Some(1_795_000_000)
        );
    }
}
