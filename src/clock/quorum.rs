//! The verdict from one poll of every configured time server: which servers agree (a
//! majority must), which disagree (falsetickers, reported and left out), and how far the
//! local clock may be from UTC. Pure: samples in, decision out.
//!
//! Each usable reply says the true offset lies in θ ± λ (RFC 5905 §8, see
//! [`crate::protocol::sntp::Sample`]). The largest set of servers whose intervals share a
//! point is found by Marzullo's sweep (the intersection step of RFC 5905 §11.2.1, without
//! its clustering); if that set is a majority of the **configured** servers (an unreachable
//! server counts against the quorum, so two silent servers of three leave the clock out of
//! sync), the true offset lies in the intersection `[lo, hi]` of their intervals, and the
//! local clock is at most `max(|lo|, |hi|)` from UTC: what `max_offset_ms` is compared with.

use crate::protocol::sntp::{Leap, Sample};

/// One server's answer to one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Offset, delay and error bound, or why the reply was not usable.
    pub sample: Result<Sample, String>,
    /// The leap indicator of a usable reply.
    pub leap: Leap,
}

/// What one poll decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Indices of the servers in the agreeing majority.
    pub truechimers: Vec<usize>,
    /// Indices of servers that replied but disagree with the majority.
    pub falsetickers: Vec<usize>,
    /// The midpoint of the agreed interval (server minus local), ns. 0 without a quorum.
    pub offset_ns: i64,
    /// Half the width of the agreed interval, ns.
    pub bound_ns: u64,
    /// A leap second announced by a majority of the agreeing servers.
    pub leap: Leap,
    /// `None`: a quorum agrees. `Some(why)`: it does not.
    pub no_quorum: Option<String>,
}

impl Decision {
    /// No offset and no bound, nobody agreeing or not: the starting point of a single
    /// source's decision (`chronyc`, or the local clock trusted as it is).
    pub fn single() -> Self {
        Decision {
            truechimers: Vec::new(),
            falsetickers: Vec::new(),
            offset_ns: 0,
            bound_ns: 0,
            leap: Leap::None,
            no_quorum: None,
        }
    }

    /// The local clock's largest possible distance from UTC, |offset| + bound, ns.
    pub fn distance_ns(&self) -> u64 {
        self.offset_ns.unsigned_abs().saturating_add(self.bound_ns)
    }
}

/// Servers needed for a quorum of `configured`: a strict majority.
pub fn quorum(configured: usize) -> usize {
    configured / 2 + 1
}

/// Decides from `answers` (one per configured server, in order).
pub fn decide(answers: &[Answer]) -> Decision {
    let need = quorum(answers.len());
    let intervals: Vec<(usize, i128, i128)> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let s = a.sample.as_ref().ok()?;
            let (o, b) = (i128::from(s.offset_ns), i128::from(s.bound_ns));
            Some((i, o - b, o + b))
        })
        .collect();
    // Marzullo: sweep the endpoints; starts sort before ends at the same value (closed
    // intervals touching at one point agree).
    let mut edges: Vec<(i128, i8)> = intervals
        .iter()
        .flat_map(|&(_, lo, hi)| [(lo, -1i8), (hi, 1i8)])
        .collect();
    edges.sort();
    // Every point where the count reaches its maximum; more than one disjoint region with
    // the maximum means two different majorities.
    let (mut count, mut best, mut points) = (0usize, 0usize, Vec::new());
    for (value, kind) in edges {
        if kind < 0 {
            count += 1;
            if count > best {
                best = count;
                points.clear();
            }
            if count == best {
                points.push(value);
            }
        } else {
            count -= 1;
        }
    }
    let covering = |p: i128| -> Vec<usize> {
        intervals
            .iter()
            .filter(|&&(_, lo, hi)| lo <= p && p <= hi)
            .map(|t| t.0)
            .collect()
    };
    let chosen = covering(points.first().copied().unwrap_or(0));
    if best >= need && points.iter().any(|&p| covering(p) != chosen) {
        // E.g. [0, 10], [5, 15], [12, 20]: {1, 2} and {2, 3} both agree, and the true offset
        // may lie in either overlap. Neither is the majority: fail closed.
        return Decision {
            no_quorum: Some(format!(
                "the servers form two different majorities of {best}: no single verdict"
            )),
            ..Decision::single()
        };
    }
    let (truechimers, falsetickers): (Vec<(usize, i128, i128)>, Vec<_>) = intervals
        .iter()
        .copied()
        .partition(|&(i, _, _)| chosen.contains(&i));
    let mut d = Decision {
        truechimers: truechimers.iter().map(|t| t.0).collect(),
        falsetickers: falsetickers.iter().map(|t| t.0).collect(),
        offset_ns: 0,
        bound_ns: 0,
        leap: Leap::None,
        no_quorum: None,
    };
    if truechimers.len() < need {
        let failed = answers.len() - intervals.len();
        d.no_quorum = Some(format!(
            "{} of {} servers agree, {need} needed ({failed} without a usable reply, {} \
             disagreeing)",
            truechimers.len(),
            answers.len(),
            d.falsetickers.len()
        ));
        d.falsetickers.clear();
        if truechimers.len() <= 1 {
            // With no two servers agreeing there is no majority to call anyone false.
            d.truechimers.clear();
        }
        return d;
    }
    let lo = truechimers.iter().map(|t| t.1).max().unwrap_or(0);
    let hi = truechimers.iter().map(|t| t.2).min().unwrap_or(0);
    d.offset_ns = i64::try_from((lo + hi) / 2).unwrap_or(i64::MAX);
    d.bound_ns = u64::try_from((hi - lo) / 2).unwrap_or(u64::MAX);
    for leap in [Leap::Insert, Leap::Delete] {
        let announcing = d
            .truechimers
            .iter()
            .filter(|&&i| answers[i].leap == leap)
            .count();
        if announcing >= quorum(d.truechimers.len()) {
            d.leap = leap;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn ok(offset_ms: i64, bound_ms: u64) -> Answer {
        Answer {
            sample: Ok(Sample {
                offset_ns: offset_ms * MS,
                delay_ns: 0,
                bound_ns: bound_ms * MS as u64,
            }),
            leap: Leap::None,
        }
    }

    fn failed() -> Answer {
        Answer {
            sample: Err("timeout".into()),
            leap: Leap::None,
        }
    }

    #[test]
    fn three_agreeing_servers_give_the_intersection() {
        let d = decide(&[ok(10, 20), ok(15, 10), ok(0, 30)]);
        assert_eq!(d.no_quorum, None);
        assert_eq!(d.truechimers, vec![0, 1, 2]);
        assert!(d.falsetickers.is_empty());
        // [-10, 30] ∩ [5, 25] ∩ [-30, 30] = [5, 25]: offset 15 ms ± 10 ms, at most 25 ms.
        assert_eq!((d.offset_ns, d.bound_ns), (15 * MS, 10 * MS as u64));
        assert_eq!(d.distance_ns(), 25 * MS as u64);
    }

    #[test]
    fn one_falseticker_of_three_is_named_and_left_out() {
        let d = decide(&[ok(1, 5), ok(5_000, 5), ok(-1, 5)]);
        assert_eq!(d.no_quorum, None);
        assert_eq!(d.truechimers, vec![0, 2]);
        assert_eq!(d.falsetickers, vec![1]);
        // [-4, 6] ∩ [-6, 4] = [-4, 4].
        assert_eq!((d.offset_ns, d.bound_ns), (0, 4 * MS as u64));
    }

    #[test]
    fn two_bad_of_three_is_no_quorum() {
        // Two silent.
        let d = decide(&[ok(1, 5), failed(), failed()]);
        assert!(d
            .no_quorum
            .as_deref()
            .unwrap()
            .starts_with("1 of 3 servers agree, 2 needed"));
        // Two disagreeing with each other and with the third.
        let d = decide(&[ok(0, 5), ok(1_000, 5), ok(-1_000, 5)]);
        assert!(d.no_quorum.is_some());
        assert!(d.truechimers.is_empty() && d.falsetickers.is_empty());
        // Nothing at all.
        assert!(decide(&[failed(), failed(), failed()]).no_quorum.is_some());
        // One server configured, one answer: a quorum of one.
        assert_eq!(decide(&[ok(3, 1)]).no_quorum, None);
        // Two configured: both must agree.
        assert!(decide(&[ok(3, 1), failed()]).no_quorum.is_some());
        assert!(decide(&[ok(0, 1), ok(50, 1)]).no_quorum.is_some());
    }

    #[test]
    fn two_different_majorities_are_no_verdict() {
        // [0, 10], [5, 15], [12, 20]: A and B agree, B and C agree, A and C do not.
        let d = decide(&[ok(5, 5), ok(10, 5), ok(16, 4)]);
        assert!(d
            .no_quorum
            .as_deref()
            .unwrap()
            .contains("two different majorities"));
        // Four servers, a majority of three somewhere: unique.
        let d = decide(&[ok(5, 5), ok(10, 5), ok(8, 4), ok(100, 1)]);
        assert_eq!(d.no_quorum, None);
        assert_eq!(d.falsetickers, vec![3]);
    }

    #[test]
    fn intervals_touching_at_one_point_agree() {
        let d = decide(&[ok(0, 10), ok(20, 10), ok(10, 0)]);
        assert_eq!(d.truechimers, vec![0, 1, 2]);
        assert_eq!((d.offset_ns, d.bound_ns), (10 * MS, 0));
    }

    #[test]
    fn a_leap_second_needs_a_majority_of_the_agreeing_servers() {
        let mut answers = [ok(0, 5), ok(0, 5), ok(0, 5)];
        answers[0].leap = Leap::Insert;
        assert_eq!(decide(&answers).leap, Leap::None);
        answers[1].leap = Leap::Insert;
        assert_eq!(decide(&answers).leap, Leap::Insert);
        // A falseticker's announcement does not count.
        let mut answers = [ok(0, 5), ok(0, 5), ok(9_000, 5)];
        answers[2].leap = Leap::Delete;
        answers[0].leap = Leap::Delete;
        assert_eq!(decide(&answers).leap, Leap::None);
    }
}
