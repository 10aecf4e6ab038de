//! `kind = "storage"`: hands every issued token to the archive sink, after the response is
//! built. The audit trail (journal, PostgreSQL) will provide the real sink; until then the
//! sink is a no-op, and tests use [`MemoryArchive`] as the seam.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::super::chain::Settings;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {}

impl StorageConfig {
    pub fn apply(&self, s: &mut Settings) {
        s.archive = true;
    }
}

/// One issued token, as handed to the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub service: String,
    pub policy: String,
    pub serial: Vec<u8>,
    pub response: Vec<u8>,
}

/// Where issued tokens go.
pub trait ArchiveSink: Send + Sync {
    fn store(&self, token: Archived);
}

/// Discards tokens (until the audit trail exists).
#[derive(Debug, Default)]
pub struct NoArchive;

impl ArchiveSink for NoArchive {
    fn store(&self, _token: Archived) {}
}

/// Keeps tokens in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryArchive(pub Mutex<Vec<Archived>>);

impl ArchiveSink for MemoryArchive {
    fn store(&self, token: Archived) {
        if let Ok(mut v) = self.0.lock() {
            v.push(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{defaults, filter};

    #[test]
    fn switches_archiving_on() {
        let mut s = defaults();
        filter("kind = \"storage\"").apply(&mut s);
        assert!(s.archive);
    }
}
