//! The 48-byte NTP packet as an SNTP client uses it (RFC 4330, RFC 5905 §7.3): the client's
//! request, the checks a server's reply must pass, and the offset and error bound one reply
//! gives. Pure: the caller supplies its own send and receive times (Unix nanoseconds) and
//! does the I/O.
//!
//! Written here rather than taken from an SNTP crate: the maintained ones (`sntpc`, `rsntp`)
//! do their own socket I/O and reduce a reply to an offset, while the monitor needs the raw
//! fields (leap indicator, stratum, kiss code, root delay and dispersion) to build an error
//! bound and a quorum, and needs to send to every server from one socket so that each
//! reply's receive time is taken when it arrives. The codec is 48 fixed bytes.

/// Length of an NTP packet without extensions or MAC.
pub const PACKET_LEN: usize = 48;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_TO_UNIX_SECS: i128 = 2_208_988_800;
/// Nanoseconds in one NTP era (2^32 seconds).
const ERA_NANOS: i128 = (1i128 << 32) * 1_000_000_000;

/// The Leap Indicator (RFC 5905 §7.3, Figure 9): a leap second at the end of the current
/// month (RFC 5905; ntpd announces it only in the last day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Leap {
    /// No warning.
    None,
    /// The last minute of the month has 61 seconds.
    Insert,
    /// The last minute of the month has 59 seconds.
    Delete,
}

/// Why a reply is not a usable time sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not 48 bytes or more.
    #[error("reply of {0} bytes, shorter than an NTP packet")]
    Short(usize),
    /// Mode is not 4 (server).
    #[error("mode {0}, not a server reply (4)")]
    Mode(u8),
    /// Version outside 1..=4.
    #[error("NTP version {0} is not supported")]
    Version(u8),
    /// Stratum 0: a kiss-o'-death packet (RFC 5905 §7.4) with its code, e.g. `RATE`,
    /// `DENY`, `RSTR`. Never an offset.
    #[error("kiss-o'-death {0}")]
    Kiss(String),
    /// Stratum 16 or more, or leap indicator 3: the server itself is not synchronised.
    #[error("the server is not synchronised (stratum {stratum}, leap indicator {li})")]
    Unsynchronised {
        /// The reply's stratum.
        stratum: u8,
        /// The reply's leap indicator.
        li: u8,
    },
    /// The origin timestamp is not the transmit timestamp we sent: a stale, duplicated or
    /// forged reply (RFC 5905 §8, "bogus packet").
    #[error("the origin timestamp does not match the request")]
    Origin,
    /// A zero transmit or receive timestamp.
    #[error("the server sent a zero timestamp")]
    ZeroTimestamp,
    /// Root delay or dispersion beyond 16 s (RFC 5905 MAXDISP): no bound worth having.
    #[error("root distance of {0} ms is too large")]
    RootDistance(u64),
}

/// The fields of a server's reply that the monitor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Leap second announcement.
    pub leap: Leap,
    /// Version the server answered with.
    pub version: u8,
    /// 1 (primary reference) to 15.
    pub stratum: u8,
    /// Round-trip delay from the server to its primary reference, nanoseconds.
    pub root_delay_ns: u64,
    /// The server's dispersion relative to its primary reference, nanoseconds.
    pub root_dispersion_ns: u64,
    /// Server time the request arrived (T2), Unix nanoseconds.
    pub receive_ns: i128,
    /// Server time the reply left (T3), Unix nanoseconds.
    pub transmit_ns: i128,
}

/// One reply's measurement of the local clock against the server (RFC 5905 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// θ: server time minus local time, nanoseconds (positive: the local clock is slow).
    pub offset_ns: i64,
    /// δ: round-trip delay minus the server's processing time, nanoseconds.
    pub delay_ns: u64,
    /// λ: the half-width of the interval that holds the true offset: δ/2 + the server's
    /// root delay/2 + its root dispersion (the root synchronisation distance, §11.2.2).
    pub bound_ns: u64,
}

/// The client request (mode 3, version 4, RFC 4330 §4) whose transmit timestamp is
/// `transmit`: the value the reply must echo as its origin timestamp. The caller picks it
/// (its send time, with random low bits) and keeps it to check the reply.
pub fn request(transmit: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 4 << 3 | 3;
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// A 64-bit NTP timestamp (32.32 seconds since 1900, era 0) for Unix nanoseconds `ns`.
/// Times past 2036 wrap into era 1, as RFC 5905 §6 prescribes.
pub fn to_ntp(ns: i128) -> u64 {
    let total = ns + NTP_TO_UNIX_SECS * 1_000_000_000;
    let total = total.rem_euclid(ERA_NANOS);
    let secs = total / 1_000_000_000;
    let frac = ((total % 1_000_000_000) << 32) / 1_000_000_000;
    ((secs as u64) << 32) | frac as u64
}

/// Unix nanoseconds of NTP timestamp `ts`, in the era that puts it nearest `pivot` (Unix
/// nanoseconds): the era is not on the wire, and a reply is never 68 years away from the
/// local clock that asked.
pub fn from_ntp(ts: u64, pivot: i128) -> i128 {
    let secs = i128::from(ts >> 32);
    let frac = (i128::from(ts & 0xffff_ffff) * 1_000_000_000) >> 32;
    let in_era = secs * 1_000_000_000 + frac - NTP_TO_UNIX_SECS * 1_000_000_000;
    let era = (pivot - in_era + ERA_NANOS / 2).div_euclid(ERA_NANOS);
    in_era + era * ERA_NANOS
}

/// An NTP short format value (16.16 seconds) in nanoseconds.
fn short_ns(b: &[u8]) -> u64 {
    let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    ((v >> 16) * 1_000_000_000) + (((v & 0xffff) * 1_000_000_000) >> 16)
}

/// RFC 5905 MAXDISP: 16 s.
const MAX_DISTANCE_NS: u64 = 16_000_000_000;

/// Checks a server's reply to the request whose transmit timestamp was `sent` (RFC 4330 §5:
/// origin timestamp first, then mode, version, stratum, kiss code, leap indicator 3, zero
/// timestamps).
/// `pivot` (the local send time, Unix nanoseconds) picks the NTP era.
pub fn decode_reply(bytes: &[u8], sent: u64, pivot: i128) -> Result<Reply, ReplyError> {
    if bytes.len() < PACKET_LEN {
        return Err(ReplyError::Short(bytes.len()));
    }
    let ts = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    // First: a packet that does not echo our transmit timestamp is not an answer to us,
    // whatever it says. Checked before anything else, so an off-path sender cannot knock a
    // server out of the quorum with a forged kiss-o'-death.
    if ts(24) != sent {
        return Err(ReplyError::Origin);
    }
    let li = bytes[0] >> 6;
    let version = (bytes[0] >> 3) & 7;
    let mode = bytes[0] & 7;
    let stratum = bytes[1];
    if mode != 4 {
        return Err(ReplyError::Mode(mode));
    }
    if !(1..=4).contains(&version) {
        return Err(ReplyError::Version(version));
    }
    if stratum == 0 {
        // The reference id of a kiss-o'-death packet is four ASCII characters.
        let code: String = bytes[12..16]
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
            .collect();
        return Err(ReplyError::Kiss(code));
    }
    if stratum >= 16 || li == 3 {
        return Err(ReplyError::Unsynchronised { stratum, li });
    }
    let (receive, transmit) = (ts(32), ts(40));
    if receive == 0 || transmit == 0 {
        return Err(ReplyError::ZeroTimestamp);
    }
    let root_delay_ns = short_ns(&bytes[4..8]);
    let root_dispersion_ns = short_ns(&bytes[8..12]);
    let distance = root_delay_ns / 2 + root_dispersion_ns;
    if distance > MAX_DISTANCE_NS {
        return Err(ReplyError::RootDistance(distance / 1_000_000));
    }
    Ok(Reply {
        leap: match li {
            1 => Leap::Insert,
            2 => Leap::Delete,
            _ => Leap::None,
        },
        version,
        stratum,
        root_delay_ns,
        root_dispersion_ns,
        receive_ns: from_ntp(receive, pivot),
        transmit_ns: from_ntp(transmit, pivot),
    })
}

impl Reply {
    /// The on-wire measurement (RFC 5905 §8): with T1 = `sent_ns` and T4 = `received_ns`
    /// (local Unix nanoseconds), θ = ((T2 − T1) + (T3 − T4)) / 2 and δ = (T4 − T1) − (T3 −
    /// T2). The true offset lies within θ ± λ, λ = δ/2 + root delay/2 + root dispersion.
    pub fn sample(&self, sent_ns: i128, received_ns: i128) -> Sample {
        let offset = ((self.receive_ns - sent_ns) + (self.transmit_ns - received_ns)) / 2;
        // A server whose clock runs backwards within the exchange (T3 < T2) or a local step
        // can make δ negative; it counts as zero, the bound still carries the root terms.
        let delay = ((received_ns - sent_ns) - (self.transmit_ns - self.receive_ns)).max(0);
        let delay = u64::try_from(delay).unwrap_or(u64::MAX);
        Sample {
            offset_ns: i64::try_from(offset).unwrap_or(if offset < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            delay_ns: delay,
            bound_ns: (delay / 2)
                .saturating_add(self.root_delay_ns / 2)
                .saturating_add(self.root_dispersion_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i128 = 1_795_000_000_123_456_789; // 2026-11-18T11:06:40.123456789Z

    /// A reply as a server builds it, byte by byte (independently of `request`).
    fn reply(li: u8, vn: u8, mode: u8, stratum: u8, origin: u64, t2: i128, t3: i128) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = li << 6 | vn << 3 | mode;
        p[1] = stratum;
        p[4..8].copy_from_slice(&0x0000_8000u32.to_be_bytes()); // root delay 0.5 s
        p[8..12].copy_from_slice(&0x0000_4000u32.to_be_bytes()); // root dispersion 0.25 s
        p[12..16].copy_from_slice(b"GPS\0");
        p[24..32].copy_from_slice(&origin.to_be_bytes());
        p[32..40].copy_from_slice(&to_ntp(t2).to_be_bytes());
        p[40..48].copy_from_slice(&to_ntp(t3).to_be_bytes());
        p
    }

    #[test]
    fn the_request_is_a_version_4_client_packet() {
        let p = request(0x0102_0304_0506_0708);
        assert_eq!(p.len(), 48);
        assert_eq!(p[0], 0x23); // LI 0, VN 4, mode 3
        assert!(p[1..40].iter().all(|&b| b == 0));
        assert_eq!(&p[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn ntp_timestamps_convert_both_ways_and_across_the_2036_era() {
        // 1970-01-01 is 2,208,988,800 s after 1900.
        assert_eq!(to_ntp(0), 2_208_988_800u64 << 32);
        assert_eq!(from_ntp(2_208_988_800u64 << 32, 0), 0);
        // Half a second is 2^31 in the fraction.
        assert_eq!(to_ntp(500_000_000) & 0xffff_ffff, 1 << 31);
        let back = from_ntp(to_ntp(T), T);
        // 2^-32 s is 0.23 ns: truncation loses at most a nanosecond.
        assert!((back - T).abs() <= 1, "{back} vs {T}");
        // 2036-02-07T06:28:16Z is the start of era 1: NTP seconds wrap to 0.
        let era1 = (1i128 << 32) - NTP_TO_UNIX_SECS;
        let later = (era1 + 100) * 1_000_000_000;
        assert_eq!(to_ntp(later) >> 32, 100);
        assert_eq!(from_ntp(to_ntp(later), later - 200 * 1_000_000_000), later);
        // Without the pivot it would read as 1900 + 100 s.
        assert_eq!(
            from_ntp(to_ntp(later), -NTP_TO_UNIX_SECS * 1_000_000_000),
            (100 - NTP_TO_UNIX_SECS) * 1_000_000_000
        );
    }

    #[test]
    fn a_good_reply_gives_offset_delay_and_bound() {
        let sent = to_ntp(T);
        // The server is 2 s ahead; 10 ms each way; 1 ms processing.
        let ms = 1_000_000i128;
        let t2 = T + 2_000 * ms + 10 * ms;
        let t3 = t2 + ms;
        let t4 = T + 21 * ms;
        let r = decode_reply(&reply(1, 4, 4, 2, sent, t2, t3), sent, T).unwrap();
        assert_eq!(r.leap, Leap::Insert);
        assert_eq!((r.version, r.stratum), (4, 2));
        assert_eq!(r.root_delay_ns, 500_000_000);
        assert_eq!(r.root_dispersion_ns, 250_000_000);
        let s = r.sample(T, t4);
        // Timestamps carry 2^-32 s (0.23 ns): allow a nanosecond.
        assert!((i128::from(s.offset_ns) - 2_000 * ms).abs() <= 1, "{s:?}");
        assert!((i128::from(s.delay_ns) - 20 * ms).abs() <= 1, "{s:?}");
        // 10 ms + 250 ms + 250 ms.
        assert!((i128::from(s.bound_ns) - 510 * ms).abs() <= 1, "{s:?}");
        // A server behind us gives a negative offset.
        let r = decode_reply(&reply(0, 3, 4, 1, sent, T - 5 * ms, T - 5 * ms), sent, T).unwrap();
        assert_eq!(r.leap, Leap::None);
        let s = r.sample(T, T);
        assert!((i128::from(s.offset_ns) + 5 * ms).abs() <= 1);
    }

    #[test]
    fn bad_replies_are_refused_with_their_reason() {
        let sent = to_ntp(T);
        let ok = |p: &[u8]| decode_reply(p, sent, T);
        assert_eq!(ok(&[0u8; 47]), Err(ReplyError::Short(47)));
        assert_eq!(ok(&reply(0, 4, 3, 2, sent, T, T)), Err(ReplyError::Mode(3)));
        assert_eq!(
            ok(&reply(0, 5, 4, 2, sent, T, T)),
            Err(ReplyError::Version(5))
        );
        assert_eq!(
            ok(&reply(0, 0, 4, 2, sent, T, T)),
            Err(ReplyError::Version(0))
        );
        let mut kiss = reply(3, 4, 4, 0, sent, T, T);
        kiss[12..16].copy_from_slice(b"RATE");
        assert_eq!(ok(&kiss), Err(ReplyError::Kiss("RATE".into())));
        kiss[12..16].copy_from_slice(b"DENY");
        assert_eq!(ok(&kiss).unwrap_err().to_string(), "kiss-o'-death DENY");
        assert_eq!(
            ok(&reply(0, 4, 4, 16, sent, T, T)),
            Err(ReplyError::Unsynchronised { stratum: 16, li: 0 })
        );
        assert_eq!(
            ok(&reply(3, 4, 4, 2, sent, T, T)),
            Err(ReplyError::Unsynchronised { stratum: 2, li: 3 })
        );
        assert_eq!(
            ok(&reply(0, 4, 4, 2, sent ^ 1, T, T)),
            Err(ReplyError::Origin)
        );
        // A kiss-o'-death that does not echo our request is not from the server we asked.
        let mut forged = reply(3, 4, 4, 0, sent ^ 1, T, T);
        forged[12..16].copy_from_slice(b"DENY");
        assert_eq!(ok(&forged), Err(ReplyError::Origin));
        let mut zero = reply(0, 4, 4, 2, sent, T, T);
        zero[40..48].fill(0);
        assert_eq!(ok(&zero), Err(ReplyError::ZeroTimestamp));
        let mut far = reply(0, 4, 4, 2, sent, T, T);
        far[8..12].copy_from_slice(&0x0011_0000u32.to_be_bytes()); // 17 s dispersion
        assert_eq!(ok(&far), Err(ReplyError::RootDistance(17_250)));
        // Longer packets (extension fields, a MAC) are read for their first 48 bytes.
        let mut long = reply(0, 4, 4, 2, sent, T, T);
        long.extend_from_slice(&[0; 20]);
        assert!(ok(&long).is_ok());
    }

    #[test]
    fn a_negative_delay_counts_as_zero() {
        let sent = to_ntp(T);
        // T3 − T2 of 1 s for a round trip of 1 ms.
        let r = decode_reply(&reply(0, 4, 4, 1, sent, T, T + 1_000_000_000), sent, T).unwrap();
        let s = r.sample(T, T + 1_000_000);
        assert_eq!(s.delay_ns, 0);
        assert_eq!(s.bound_ns, 500_000_000);
    }
}
