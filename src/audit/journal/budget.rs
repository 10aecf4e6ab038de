//! The journal's disk budget: a cap on the journal's own size and a reserve of free space
//! on its filesystem. A request flood (even of refused requests) must not fill the disk, and
//! the journal must never tear because the disk filled under it: it is refused room to grow
//! while one more extension would break the budget, and the server refuses requests (with
//! `systemFailure`, `/ready` 503) until shipping and retention, or the operator, free space.
//!
//! The journal only takes disk when it extends a segment (the write side zero-fills
//! ahead of the write position), so the budget is measured and enforced there, on the
//! writer thread; request threads read the state from one atomic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// How full the budget is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Room to grow.
    Ok,
    /// Past the warning watermark: the journal holds 90% of `max_mib`, or the filesystem's
    /// free space is under twice `min_free_mib`.
    Warning,
    /// The next extension would break the budget: no more records are taken.
    Full,
}

/// The budget and what was last measured against it.
#[derive(Debug)]
pub struct DiskBudget {
    /// The journal directory: its files and every shard's count (one budget for all).
    root: PathBuf,
    /// Largest the journal's files may grow, in bytes (`None`: no cap).
    max_bytes: Option<u64>,
    /// Free space to leave on the journal's filesystem, in bytes.
    min_free_bytes: u64,
    journal_bytes: AtomicU64,
    free_bytes: AtomicU64,
    state: AtomicU8,
}

impl DiskBudget {
    /// A budget of at most `max_bytes` of journal under `root` (`None`: no cap), all shards
    /// together, and at least `min_free_bytes` left free on its filesystem; nothing measured
    /// yet.
    pub fn new(root: &Path, max_bytes: Option<u64>, min_free_bytes: u64) -> Self {
        DiskBudget {
            root: root.to_path_buf(),
            max_bytes,
            min_free_bytes,
            journal_bytes: AtomicU64::new(0),
            free_bytes: AtomicU64::new(u64::MAX),
            state: AtomicU8::new(State::Ok as u8),
        }
    }

    /// The state as last measured.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Ok,
            1 => State::Warning,
            _ => State::Full,
        }
    }

    /// Measures the journal (the files of every shard, its filesystem's free space) and
    /// updates the state, logging once when it changes. `growth`: the bytes the next
    /// extension needs. Gives whether that extension fits.
    pub fn measure(&self, growth: u64) -> std::io::Result<bool> {
        let dir = &self.root;
        let mut journal = file_bytes(dir)?;
        for (shard, path) in super::segment::shards(dir)? {
            if shard > 0 {
                journal += file_bytes(&path)?;
            }
        }
        let vfs = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
        let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        self.journal_bytes.store(journal, Ordering::Relaxed);
        self.free_bytes.store(free, Ordering::Relaxed);
        let fits = self.max_bytes.is_none_or(|m| journal + growth <= m)
            && free >= self.min_free_bytes.saturating_add(growth);
        let warn = self.max_bytes.is_some_and(|m| journal >= m / 10 * 9)
            || free < self.min_free_bytes.saturating_mul(2);
        let state = match (fits, warn) {
            (false, _) => State::Full,
            (true, true) => State::Warning,
            (true, false) => State::Ok,
        };
        let before = self.state();
        self.state.store(state as u8, Ordering::Release);
        if state != before {
            let max_mib = self.max_bytes.map(|m| m >> 20);
            let min_free_mib = self.min_free_bytes >> 20;
            let (journal_mib, free_mib) = (journal >> 20, free >> 20);
            match state {
                State::Full => tracing::error!(
                    journal_mib,
                    free_mib,
                    ?max_mib,
                    min_free_mib,
                    "audit journal disk budget reached: requests are refused until space is freed"
                ),
                State::Warning => tracing::warn!(
                    journal_mib,
                    free_mib,
                    ?max_mib,
                    min_free_mib,
                    "audit journal disk budget nearly used"
                ),
                State::Ok => tracing::info!(
                    journal_mib,
                    free_mib,
                    "audit journal disk budget: room again"
                ),
            }
        }
        Ok(fits)
    }

    /// Appends the budget's gauges for `GET /metrics`.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let free = self.free_bytes.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# TYPE stampd_audit_journal_bytes gauge\nstampd_audit_journal_bytes {}\n\
             # TYPE stampd_audit_disk_free_bytes gauge\nstampd_audit_disk_free_bytes {}\n\
             # TYPE stampd_audit_disk_budget_state gauge\nstampd_audit_disk_budget_state {}\n",
            self.journal_bytes.load(Ordering::Relaxed),
            if free == u64::MAX { 0 } else { free },
            self.state() as u8,
        );
    }
}

/// The sizes of the files directly in `dir`.
fn file_bytes(dir: &Path) -> std::io::Result<u64> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_on_the_journal_turns_full_before_it_is_broken_and_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 900]).unwrap();
        let budget = DiskBudget::new(dir.path(), Some(1000), 0);
        assert!(budget.measure(50).unwrap());
        // 900 of 1000 is at the 90% watermark.
        assert_eq!(budget.state(), State::Warning);
        assert!(!budget.measure(101).unwrap());
        assert_eq!(budget.state(), State::Full);
        std::fs::write(dir.path().join("a"), vec![0u8; 10]).unwrap();
        assert!(budget.measure(101).unwrap());
        assert_eq!(budget.state(), State::Ok);
        let mut m = String::new();
        budget.metrics(&mut m);
        assert!(m.contains("stampd_audit_journal_bytes 10\n"), "{m}");
    }

    #[test]
    fn the_free_space_reserve_counts() {
        let dir = tempfile::tempdir().unwrap();
        // No filesystem here has u64::MAX / 2 bytes free.
        let budget = DiskBudget::new(dir.path(), None, u64::MAX / 2);
        assert!(!budget.measure(1).unwrap());
        assert_eq!(budget.state(), State::Full);
    }
}
