//! Serial numbers: unique per TSA identity, across restarts, cores and nodes.
//!
//! Layout (18 octets, big-endian, always positive, 143 bits at most, within RFC 3161's
//! 160-bit limit):
//!
//! ```text
//! | epoch: u64 | node id: u16 | counter: u64 |
//! ```
//!
//! * `epoch` is taken at start as `max(previous epoch + 1, Unix seconds now)` and made
//!   durable (fsync) before the first token. The persisted part survives a clock stepped
//!   back; the time part survives a wiped data directory (as long as the clock is right and
//!   restarts are more than a second apart, which the persisted part covers otherwise).
//! * `node id` separates nodes that share a key (config `server.node_id`, distinct per node).
//! * `counter` is one atomic shared by every core, so two cores never draw the same value.
//!
//! A lock on the state file stops two processes from sharing one data directory.
//!
//! With PostgreSQL, a node also claims its node id there (`audit/postgres/claim.rs`): the
//! claim belongs to this data directory's instance id ([`instance_id`]), and a node taking
//! over an id moves its epoch past the last holder's ([`SerialSpace::advance_past`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// Octets in every serial number stampd issues: epoch (8), node id (2), counter (8). Fixed,
/// so the audit trail stores serials as fixed-size keys.
pub const SERIAL_LEN: usize = 18;
// RFC 3161 §2.4.2: serialNumber is at most 160 bits.
const _: () = assert!(SERIAL_LEN * 8 <= 160);

/// The serial-number space of one process: the epoch and node id fixed at start, and one
/// counter every core and worker draws from (one relaxed atomic add per token). Opened from
/// a data directory, it holds the lock on `DATA_DIR/state/serial.lock` while it lives.
#[derive(Debug)]
pub struct SerialSpace {
    prefix: [u8; 10],
    counter: AtomicU64,
    /// `serial-epoch`, for [`SerialSpace::advance_past`]; `None` in memory.
    path: Option<PathBuf>,
    _lock: Option<File>,
}

impl SerialSpace {
    /// An in-memory space (tests, benches): the epoch is given, nothing is persisted.
    pub fn ephemeral(epoch: u64, node_id: u16) -> Self {
        SerialSpace {
            prefix: prefix(epoch, node_id),
            counter: AtomicU64::new(0),
            path: None,
            _lock: None,
        }
    }

    /// Opens the persisted space in `state_dir`, advancing and syncing the epoch.
    pub fn open(state_dir: &Path, node_id: u16, now_unix_secs: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
        let lock_path = state_dir.join("serial.lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::State(format!(
                "{} is locked: another stampd process uses this data directory \
                 (give each process its own --data-dir)",
                lock_path.display()
            )));
        }
        let path = state_dir.join("serial-epoch");
        let previous = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| {
                Error::State(format!(
                    "{}: not a number; remove it only if you are sure no token was issued \
                     with this data directory",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let epoch = previous
            .checked_add(1)
            .ok_or_else(|| Error::State(format!("{}: epoch exhausted", path.display())))?
            .max(now_unix_secs);
        persist(&path, epoch)?;
        Ok(SerialSpace {
            prefix: prefix(epoch, node_id),
            counter: AtomicU64::new(0),
            path: Some(path),
            _lock: Some(lock),
        })
    }

    /// The epoch every serial of this space carries.
    pub fn epoch(&self) -> u64 {
        u64::from_be_bytes(self.prefix[..8].try_into().unwrap_or_default())
    }

    /// Moves the epoch past `floor` (durably), before any serial is drawn: a node taking over
    /// a node id from another holder must not reuse the holder's epochs.
    pub fn advance_past(&mut self, floor: u64) -> Result<(), Error> {
        if self.epoch() > floor {
            return Ok(());
        }
        let epoch = floor
            .checked_add(1)
            .ok_or_else(|| Error::State("serial epoch exhausted".into()))?;
        if let Some(path) = &self.path {
            persist(path, epoch)?;
        }
        self.prefix[..8].copy_from_slice(&epoch.to_be_bytes());
        Ok(())
    }

    /// The next serial number (big-endian magnitude).
    pub fn next(&self) -> [u8; SERIAL_LEN] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut s = [0u8; SERIAL_LEN];
        s[..10].copy_from_slice(&self.prefix);
        s[10..].copy_from_slice(&n.to_be_bytes());
        s
    }
}

/// This data directory's instance id (`STATE_DIR/node-instance`, 32 hex digits, made on
/// first use): a node's claim of its node id belongs to it, so a node restarted on its own
/// data directory takes its claim back at once.
pub fn instance_id(state_dir: &Path) -> Result<String, Error> {
    let path = state_dir.join("node-instance");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() == 32 && s.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Ok(s.trim().to_string())
        }
        Ok(_) => {
            return Err(Error::State(format!(
                "{}: not an instance id (32 hex digits); remove it to make a new one",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| Error::State("no randomness for the instance id".into()))?;
    let id = crate::protocol::hex::hex(&id);
    write_durably(&path, &format!("{id}\n"))?;
    Ok(id)
}

/// Remembers that this data directory held `node_id` of `identity` in PostgreSQL at
/// `now_unix_secs` (`STATE_DIR/node-claimed`: a claim or heartbeat that reached the database),
/// so that it may start while the database is down — within its lease of that moment.
pub fn remember_claim(
    state_dir: &Path,
    identity: &str,
    node_id: u16,
    now_unix_secs: u64,
) -> Result<(), Error> {
    write_durably(
        &state_dir.join("node-claimed"),
        &format!("{node_id} {now_unix_secs} {identity}\n"),
    )
}

/// Forgets the claim (the id was found held by another node).
pub fn forget_claim(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join("node-claimed"));
}

/// Whether this data directory held `node_id` of `identity` less than `lease_secs` before
/// `now_unix_secs`: no other node can have taken it over since (a lease lapses only
/// `lease_secs` after its last heartbeat).
pub fn claimed_within(
    state_dir: &Path,
    identity: &str,
    node_id: u16,
    now_unix_secs: u64,
    lease_secs: u64,
) -> bool {
    let Ok(text) = std::fs::read_to_string(state_dir.join("node-claimed")) else {
        return false;
    };
    let mut parts = text.trim_end().splitn(3, ' ');
    let (Some(id), Some(at), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    id == node_id.to_string()
        && name == identity
        && at
            .parse::<u64>()
            .is_ok_and(|at| now_unix_secs.saturating_sub(at) < lease_secs && at <= now_unix_secs)
}

fn prefix(epoch: u64, node_id: u16) -> [u8; 10] {
    let mut p = [0u8; 10];
    p[..8].copy_from_slice(&epoch.to_be_bytes());
    p[8..].copy_from_slice(&node_id.to_be_bytes());
    p
}

/// Writes `epoch` atomically and durably.
fn persist(path: &Path, epoch: u64) -> Result<(), Error> {
    write_durably(path, &format!("{epoch}\n"))
}

/// Writes `text` atomically and durably: temp file, fsync, rename, fsync directory.
fn write_durably(path: &Path, text: &str) -> Result<(), Error> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn serials_unique_across_concurrent_threads() {
        let space = std::sync::Arc::new(SerialSpace::ephemeral(1, 0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = space.clone();
                std::thread::spawn(move || (0..10_000).map(|_| s.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for s in h.join().unwrap() {
                assert!(all.insert(s));
            }
        }
        assert_eq!(all.len(), 40_000);
    }

    #[test]
    fn epoch_advances_across_restart_even_if_clock_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = SerialSpace::open(dir.path(), 0, 100_000).unwrap().next();
        // Same second, and then a clock stepped back by a day: epochs still grow.
        let b = SerialSpace::open(dir.path(), 0, 100_000).unwrap().next();
        let c = SerialSpace::open(dir.path(), 0, 100_000 - 86_400)
            .unwrap()
            .next();
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    }

    #[test]
    fn second_process_on_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SerialSpace::open(dir.path(), 0, 5).unwrap();
        let err = SerialSpace::open(dir.path(), 0, 5).unwrap_err();
        assert!(err.to_string().contains("another stampd process"), "{err}");
    }

    #[test]
    fn a_taken_over_node_id_starts_past_the_holders_epoch_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut space = SerialSpace::open(dir.path(), 3, 1_000).unwrap();
        assert_eq!(space.epoch(), 1_000);
        space.advance_past(999).unwrap();
        assert_eq!(space.epoch(), 1_000, "already past the floor: unchanged");
        space.advance_past(5_000).unwrap();
        assert_eq!(space.epoch(), 5_001);
        assert_eq!(&space.next()[..8], &5_001u64.to_be_bytes());
        drop(space);
        // Durable: the next start goes on from it, though the clock says 1000.
        assert_eq!(
            SerialSpace::open(dir.path(), 3, 1_000).unwrap().epoch(),
            5_002
        );
    }

    #[test]
    fn the_instance_id_is_made_once_and_a_claim_is_remembered_per_id_within_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let id = instance_id(dir.path()).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(instance_id(dir.path()).unwrap(), id);
        assert!(!claimed_within(dir.path(), "tsa", 1, 1_000, 30));
        remember_claim(dir.path(), "tsa", 1, 1_000).unwrap();
        assert!(claimed_within(dir.path(), "tsa", 1, 1_029, 30));
        assert!(
            !claimed_within(dir.path(), "tsa", 1, 1_030, 30),
            "the lease lapsed"
        );
        assert!(
            !claimed_within(dir.path(), "tsa", 1, 999, 30),
            "a clock stepped back"
        );
        assert!(!claimed_within(dir.path(), "tsa", 2, 1_001, 30));
        assert!(!claimed_within(dir.path(), "other", 1, 1_001, 30));
        forget_claim(dir.path());
        assert!(!claimed_within(dir.path(), "tsa", 1, 1_001, 30));
        std::fs::write(dir.path().join("node-instance"), "junk\n").unwrap();
        assert!(instance_id(dir.path()).is_err());
    }

    #[test]
    fn nodes_sharing_a_key_never_collide() {
        let a = SerialSpace::ephemeral(7, 1);
        let b = SerialSpace::ephemeral(7, 2);
        let sa: HashSet<_> = (0..1000).map(|_| a.next()).collect();
        assert!((0..1000).all(|_| !sa.contains(&b.next())));
    }

    #[test]
    fn serials_are_positive_and_fit_160_bits() {
        let s = SerialSpace::ephemeral(u64::MAX >> 1, u16::MAX).next();
        assert!(s[0] & 0x80 == 0);
    }
}
