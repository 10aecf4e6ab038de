//! Segment files: their names and listing, atomic creation of a new one (holding only its
//! header frame), reading a segment's header, and the lock that allows one writer (or
//! `audit ship`) per journal.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{parse_frame, push_frame, Frame, Parse, FRAME_HEAD, MAGIC, PAYLOAD_HEAD};
use super::{Hash, Kind};

/// The file of segment `segment` in `dir`: its number in 20 digits, `.seg`, so names sort
/// in order.
pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

/// Segment numbers present in `dir`, in order.
pub fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The directory of audit shard `shard` under the journal directory `dir`: shard 0 is `dir`
/// itself (so a journal written before sharding is shard 0), shard N is `dir/shard-N`.
pub fn shard_dir(dir: &Path, shard: usize) -> PathBuf {
    if shard == 0 {
        dir.to_path_buf()
    } else {
        dir.join(format!("shard-{shard}"))
    }
}

/// The shards present under the journal directory `dir`, in order: `(shard, its directory)`
/// for `dir` itself when it holds segments, and for every `shard-N` subdirectory. Shards
/// the server no longer writes (fewer cores than before) are listed like the others.
pub fn shards(dir: &Path) -> std::io::Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    if !segments(dir)?.is_empty() {
        out.push((0, dir.to_path_buf()));
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let shard = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0);
        if let (Some(n), true) = (shard, entry.file_type()?.is_dir()) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a new segment file atomically (temporary file, fsync, rename, fsync the directory)
/// holding only its header. Returns the open file and the header's hash. The file is opened
/// before the rename, so nothing after the rename can fail but the directory sync; if that
/// fails the new segment is removed again.
pub(super) fn create_segment(
    dir: &Path,
    journal_id: u64,
    segment: u64,
    seq: u64,
    prev: &Hash,
) -> std::io::Result<(File, u64, Hash)> {
    let mut buf = Vec::new();
    let hash = push_frame(&mut buf, (Kind::Segment, true), seq, prev, |out| {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&journal_id.to_le_bytes());
        out.extend_from_slice(&segment.to_le_bytes());
    });
    let path = segment_path(dir, segment);
    let tmp = path.with_extension("seg.tmp");
    // Left over from an earlier attempt that failed: never used.
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&tmp)?;
    file.write_all_at(&buf, 0)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Err(e) = sync_dir(dir) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok((file, buf.len() as u64, hash))
}

/// A segment file's header frame, when it is whole.
pub(super) fn segment_header(path: &Path) -> Option<Frame> {
    let f = File::open(path).ok()?;
    let mut head = [0u8; FRAME_HEAD + PAYLOAD_HEAD + 24];
    f.read_exact_at(&mut head, 0).ok()?;
    match parse_frame(&head) {
        Parse::Whole(frame, _) if frame.kind == Kind::Segment => Some(frame),
        _ => None,
    }
}

/// Takes the journal's lock file: one writer (or `audit ship`) per journal.
pub fn lock_journal(dir: &Path) -> Result<File, String> {
    let path = dir.join("journal.lock");
    let lock = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    lock.try_lock().map_err(|_| {
        format!(
            "{} is locked: a running stampd writes this journal",
            path.display()
        )
    })?;
    Ok(lock)
}

/// Is a server writing this journal now (its lock is held)?
pub(super) fn writer_running(dir: &Path) -> bool {
    File::open(dir.join("journal.lock")).is_ok_and(|f| f.try_lock().is_err())
}
