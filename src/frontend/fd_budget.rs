//! The file descriptor budget. Every connection holds one descriptor; when the process runs
//! out, `accept` fails with EMFILE while the kernel keeps completing handshakes, and a
//! legitimate client waits unanswered. So at start the soft `RLIMIT_NOFILE` is raised to the
//! hard limit, a reserve is kept for everything that is not a connection, and the
//! connection cap of each core is clamped to its share of the rest: over it a connection is
//! answered 503 at once, and `accept` never meets EMFILE.

/// Descriptors kept for what is not a client connection: the listeners, journal segments,
/// PostgreSQL and HSM sessions, the dev PKI's files, stdio, and the admin side.
pub const RESERVE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit where it is lower; gives the soft limit
/// in effect (`None`: unlimited or unknown).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if limit.current != limit.maximum && setrlimit(Resource::Nofile, raised).is_ok() {
        return limit.maximum;
    }
    limit.current
}

/// The connections each of `cores` cores may hold with `nofile` descriptors: the configured
/// `per_core`, or less when the descriptors would not cover it (at least 1).
pub fn per_core_connections(per_core: usize, cores: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return per_core;
    };
    let share = nofile.saturating_sub(RESERVE) / cores.max(1) as u64;
    per_core
        .min(usize::try_from(share).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_clamped_to_the_descriptors_left_after_the_reserve() {
        // 20,000 descriptors, 2 cores: (20,000 - 256) / 2 = 9,872 each, under 16,384.
        assert_eq!(per_core_connections(16_384, 2, Some(20_000)), 9_872);
        assert_eq!(per_core_connections(100, 2, Some(20_000)), 100);
        assert_eq!(per_core_connections(100, 2, None), 100);
        assert_eq!(per_core_connections(100, 4, Some(200)), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_nofile_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(soft, now.current);
        assert_eq!(now.current, now.maximum);
    }
}
