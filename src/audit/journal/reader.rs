//! Reading the journal: frames in order from a position, across segments, never past the
//! committed point of a live journal.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::frame::{parse_frame, Frame, Parse, FRAME_HEAD};
use super::segment::{segment_path, segments, writer_running};
use super::Position;

/// What a [`Reader`] found next.
#[derive(Debug)]
pub enum Next {
    /// The next whole frame, its length, CRC and kind checked.
    Frame(Frame),
    /// Nothing more yet (or `Incomplete` bytes of an unfinished write at the end).
    End {
        /// Bytes after the last whole frame: a write in progress, or a torn tail.
        incomplete: u64,
    },
    /// A frame that cannot be read where it lies: an impossible length, a CRC mismatch, an
    /// unknown kind, or an incomplete frame in a closed segment. ([`Reader::next_settled`]
    /// reads it again while a writer may still be finishing it.)
    Corrupt {
        /// Where the bad frame starts.
        at: Position,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads frames in order from a position, across segments, never past `limit` (the last
/// durable seq, for a live journal).
pub struct Reader {
    dir: PathBuf,
    at: Position,
    /// Where the last frame returned starts.
    last: Position,
    file: Option<File>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
}

const CHUNK: usize = 256 * 1024;

impl Reader {
    /// From `from`, or from the first segment present when `from` is `None`.
    pub fn open(dir: &Path, from: Option<Position>) -> std::io::Result<Reader> {
        let at = match from {
            Some(p) => p,
            None => Position {
                segment: segments(dir)?.first().copied().unwrap_or(1),
                offset: 0,
            },
        };
        Ok(Reader {
            dir: dir.to_path_buf(),
            at,
            last: at,
            file: None,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// The position after the last frame returned.
    pub fn position(&self) -> Position {
        self.at
    }

    /// Where the last frame returned starts.
    pub fn frame_start(&self) -> Position {
        self.last
    }

    /// Goes back to `at` (forgetting what was read).
    fn seek(&mut self, at: Position) {
        self.at = at;
        self.last = at;
        self.file = None;
        self.buf.clear();
        self.buf_at = at.offset;
    }

    /// The next frame of a journal a server may be writing (no committed position is known):
    /// a frame caught while being written looks whole in a preallocated segment but fails
    /// its CRC, so while the writer holds the journal such a frame is read again after a
    /// moment before it counts as damage.
    pub fn next_settled(&mut self, dir: &Path) -> std::io::Result<Next> {
        let mut tries = 0;
        loop {
            let before = self.position();
            match self.next(Position::END)? {
                Next::Corrupt { .. } if tries < 100 && writer_running(dir) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    self.seek(before);
                }
                other => return Ok(other),
            }
        }
    }

    /// Reads from the current position into the buffer: `need` bytes or more, but never
    /// past `limit` (bytes that are not durable yet are neither parsed nor kept).
    fn fill(&mut self, need: usize, limit: Position) -> std::io::Result<usize> {
        if self.file.is_none() {
            match File::open(segment_path(&self.dir, self.at.segment)) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = &self.file else {
            return Ok(0);
        };
        let mut want = need.max(CHUNK);
        if limit.segment == self.at.segment {
            want = want.min(limit.offset.saturating_sub(self.at.offset) as usize);
        }
        let mut chunk = vec![0u8; want];
        let mut got = 0;
        while got < chunk.len() {
            match file.read_at(&mut chunk[got..], self.at.offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        chunk.truncate(got);
        self.buf = chunk;
        self.buf_at = self.at.offset;
        Ok(got)
    }

    /// The next frame that starts before `limit` (where the durable journal ends;
    /// [`Position::END`] for a journal no server writes).
    pub fn next(&mut self, limit: Position) -> std::io::Result<Next> {
        let mut refreshed = false;
        let mut closed = false;
        loop {
            if self.at >= limit {
                // Nothing past the committed point is read, or kept: a failed batch is
                // zeroed again and rewritten.
                self.buf.clear();
                self.buf_at = self.at.offset;
                return Ok(Next::End { incomplete: 0 });
            }
            let start = (self.at.offset - self.buf_at) as usize;
            let parsed = match self.buf.get(start..) {
                Some(rest) if self.buf_at <= self.at.offset => parse_frame(rest),
                _ => Parse::Incomplete(FRAME_HEAD),
            };
            match parsed {
                Parse::Whole(frame, len) => {
                    self.last = self.at;
                    self.at.offset += len as u64;
                    return Ok(Next::Frame(frame));
                }
                Parse::Corrupt(reason) => {
                    return Ok(Next::Corrupt {
                        at: self.at,
                        reason: reason.into(),
                    })
                }
                Parse::Zero => {
                    // Whether a newer segment exists is decided before the bytes here are
                    // looked at again: if it does, this one was complete before it was
                    // created, and zeros after a fresh read are padding.
                    let next = self.at.segment + 1;
                    if !refreshed {
                        refreshed = true;
                        closed = segment_path(&self.dir, next).exists();
                        self.fill(FRAME_HEAD, limit)?;
                        continue;
                    }
                    if closed {
                        self.at = Position {
                            segment: next,
                            offset: 0,
                        };
                        self.file = None;
                        self.buf.clear();
                        self.buf_at = 0;
                        refreshed = false;
                        continue;
                    }
                    return Ok(Next::End { incomplete: 0 });
                }
                Parse::Incomplete(need) => {
                    let got = self.fill(need, limit)?;
                    if got >= need {
                        continue;
                    }
                    // The end of this segment (for now). A newer segment means this one is
                    // closed: what remains here is damage, unless nothing remains.
                    let next = Position {
                        segment: self.at.segment + 1,
                        offset: 0,
                    };
                    if segment_path(&self.dir, next.segment).exists() {
                        // Read once more: the writer may have finished this segment since.
                        let got = self.fill(need, limit)?;
                        if got >= need {
                            continue;
                        }
                        if got > 0 {
                            return Ok(Next::Corrupt {
                                at: self.at,
                                reason: format!(
                                    "{got} bytes of an incomplete frame in a closed segment"
                                ),
                            });
                        }
                        self.at = next;
                        self.file = None;
                        self.buf.clear();
                        self.buf_at = 0;
                        continue;
                    }
                    return Ok(Next::End {
                        incomplete: got as u64,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::super::frame::push_frame;
    use super::super::tests::settings;
    use super::super::{Journal, Kind};
    use super::*;
    use crate::audit::record::tests::sample;
    use crate::audit::record::Record;

    #[test]
    fn a_reader_keeps_no_bytes_past_the_committed_point_between_calls() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append_now(&[sample(1)]).unwrap();
        let progress = j.progress();
        let limit = || *progress.committed_at.lock().unwrap();
        // A batch being written past the committed point while the reader reads.
        let seg = segment_path(tmp.path(), 1);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0x5a; 300], j.offset).unwrap();
        let mut reader = Reader::open(tmp.path(), None).unwrap();
        assert!(matches!(reader.next(limit()).unwrap(), Next::Frame(_))); // the header
                                                                          // That batch fails and is replaced by another; the reader must see the new bytes.
        f.write_all_at(&[0; 300], j.offset).unwrap();
        j.append_now(&[sample(2)]).unwrap();
        let mut got = Vec::new();
        loop {
            match reader.next(limit()).unwrap() {
                Next::Frame(f) if f.kind == Kind::Record => {
                    got.push(Record::decode(&f.body).unwrap())
                }
                Next::Frame(_) => {}
                Next::End { .. } => break,
                Next::Corrupt { reason, .. } => panic!("{reason}"),
            }
        }
        assert_eq!(got, [sample(1), sample(2)]);
    }

    #[test]
    fn a_live_reader_never_reads_past_the_committed_point() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(settings(tmp.path())).unwrap();
        j.append_now(&[sample(1), sample(2)]).unwrap();
        let progress = j.progress();
        let limit = || *progress.committed_at.lock().unwrap();
        let mut reader = Reader::open(tmp.path(), None).unwrap();
        let mut seen = 0;
        loop {
            match reader.next(limit()).unwrap() {
                Next::Frame(f) => seen += usize::from(f.kind == Kind::Record),
                Next::End { .. } => break,
                Next::Corrupt { reason, .. } => panic!("{reason}"),
            }
        }
        assert_eq!(seen, 2);
        // A batch being written (preallocated, so it looks whole but fails its CRC): the
        // reader does not even look at it.
        let seg = segment_path(tmp.path(), 1);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let mut frame = Vec::new();
        push_frame(&mut frame, (Kind::Record, true), 4, &[0; 32], |o| {
            sample(9).encode(o)
        });
        frame[20] ^= 0xff;
        f.write_all_at(&frame, j.offset).unwrap();
        assert!(matches!(reader.next(limit()).unwrap(), Next::End { .. }));
        // The real batch lands there; once committed, the reader reads it.
        j.append_now(&[sample(3)]).unwrap();
        match reader.next(limit()).unwrap() {
            Next::Frame(f) => assert_eq!(Record::decode(&f.body).unwrap(), sample(3)),
            other => panic!("{other:?}"),
        }
    }
}
