//! Sequential replay of everything the WAL held when it was opened: the checkpoint first, then
//! the segments in order.
//!
//! Replay is built for throughput: each file is read into one reused buffer with a single
//! sequential read, each frame's body is checksummed once, and records are handed out as
//! [`RecordRef`]s borrowing that buffer, so there is no allocation or copy per record. Because
//! the records borrow the reader, [`Replay`] is a *lending* iterator:
//! [`Replay::next_record`] takes `&mut self` and each record must be consumed (decoded or
//! copied) before the next call.
//!
//! # Invariants
//!
//! * Replay only reads the byte ranges recovery verified at open (the `len` of each source), so
//!   bytes appended after open, to the fresh segment the writer created, are never seen.
//! * A frame is yielded whole or not at all: its records are handed out only after the entire
//!   frame verified, so an error ends replay on a batch boundary.
//! * After the first error, `next_record` returns `None`.
//!
//! # Durability
//!
//! Replay never writes. It re-verifies checksums (cheap next to reading) so that a file changed
//! behind the WAL's back after open is reported, not replayed. Do not call
//! [`crate::Wal::checkpoint`] while a `Replay` is still being read: the checkpoint may delete
//! files the replay has yet to reach.

use std::path::PathBuf;

use crate::error::{Corruption, Result, WalError};
use crate::files;
use crate::format::{
    self, FILE_HEADER_LEN, FRAME_HEADER_LEN, FileHeader, FileKind, HeaderError, RecordRef,
};
use crate::recovery::{WalFile, corrupt_error};

/// One file to replay and the length recovery verified.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub path: PathBuf,
    pub file: WalFile,
    pub len: u64,
}

/// Counters of a replay so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Files read (checkpoint and segments).
    pub files: u64,
    /// Frames (appended batches) read.
    pub batches: u64,
    /// Records handed out.
    pub records: u64,
    /// Bytes read from files.
    pub bytes: u64,
}

/// Lending iterator over every record in the WAL at open time, in append order.
///
/// ```no_run
/// # fn demo(dir: &std::path::Path) -> strata_wal::Result<()> {
/// let (wal, mut replay, _report) = strata_wal::Wal::open(dir, Default::default())?;
/// while let Some(record) = replay.next_record() {
///     let record = record?;
///     // decode record.kind / record.payload into the engine's structures
///     let _ = (record.kind, record.payload.len());
/// }
/// # drop(wal);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Replay {
    sources: std::vec::IntoIter<Source>,
    total_files: usize,
    buf: Vec<u8>,
    current: Option<WalFile>,
    /// Offset in `buf` of the next frame header.
    next_frame: usize,
    /// End of the current frame's body in `buf`.
    body_end: usize,
    /// Offset in `buf` of the next record header of the current frame.
    record_pos: usize,
    /// Records of the current frame not yet handed out.
    records_left: u32,
    stats: ReplayStats,
    finished: bool,
}

impl Replay {
    pub(crate) fn new(sources: Vec<Source>) -> Replay {
        Replay {
            total_files: sources.len(),
            sources: sources.into_iter(),
            buf: Vec::new(),
            current: None,
            next_frame: 0,
            body_end: 0,
            record_pos: 0,
            records_left: 0,
            stats: ReplayStats::default(),
            finished: false,
        }
    }

    /// The next record, or `None` at the end (or after an error).
    ///
    /// An error means a file changed or became unreadable after open verified it.
    pub fn next_record(&mut self) -> Option<Result<RecordRef<'_>>> {
        let (kind, start, end) = loop {
            if self.finished {
                return None;
            }
            if self.records_left > 0 {
                let body = self.buf.get(..self.body_end).unwrap_or_default();
                match format::record_at(body, self.record_pos) {
                    Some(found) => {
                        self.record_pos = found.2;
                        self.records_left -= 1;
                        self.stats.records += 1;
                        break found;
                    }
                    None => {
                        let offset = self.record_pos;
                        let reason = Corruption::RecordLayout {
                            record: 0,
                            detail: "record runs past the frame body",
                        };
                        return Some(Err(self.fail(offset, reason)));
                    }
                }
            }
            if self.next_frame < self.buf.len() {
                let rest = self.buf.get(self.next_frame..).unwrap_or_default();
                let decoded = format::decode_frame(rest).map(|f| (f.count(), f.encoded_len()));
                match decoded {
                    Ok((count, len)) => {
                        self.record_pos = self.next_frame + FRAME_HEADER_LEN;
                        self.body_end = self.next_frame + len;
                        self.records_left = count;
                        self.next_frame += len;
                        self.stats.batches += 1;
                        continue;
                    }
                    Err(reason) => {
                        let offset = self.next_frame;
                        return Some(Err(self.fail(offset, reason)));
                    }
                }
            }
            match self.sources.next() {
                Some(source) => {
                    if let Err(e) = self.load(source) {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
                None => {
                    self.finished = true;
                    self.buf = Vec::new();
                    return None;
                }
            }
        };
        let payload = self.buf.get(start..end)?;
        Some(Ok(RecordRef { kind, payload }))
    }

    /// Counters so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Number of files (checkpoint and segments) this replay covers.
    pub fn file_count(&self) -> usize {
        self.total_files
    }

    /// The file the most recent record came from.
    pub fn current_file(&self) -> Option<WalFile> {
        self.current
    }

    fn fail(&mut self, offset: usize, reason: Corruption) -> WalError {
        self.finished = true;
        match self.current {
            Some(file) => corrupt_error(file, offset, reason),
            // Frames are only decoded after a file was loaded, so `current` is set; segment 0
            // never exists and marks the impossible case.
            None => WalError::Corrupt {
                segment: 0,
                offset: offset as u64,
                reason,
            },
        }
    }

    fn load(&mut self, source: Source) -> Result<()> {
        files::read_prefix(&source.path, source.len, &mut self.buf)?;
        self.current = Some(source.file);
        self.stats.files += 1;
        self.stats.bytes += source.len;
        self.records_left = 0;
        let (kind, expected) = match source.file {
            WalFile::Checkpoint(n) => (FileKind::Checkpoint, n),
            WalFile::Segment(n) => (FileKind::Segment, n),
        };
        let header = match FileHeader::decode(&self.buf, kind) {
            Ok(header) => header,
            Err(HeaderError::Corrupt(reason)) => return Err(self.fail(0, reason)),
            Err(HeaderError::UnsupportedVersion(version)) => {
                return Err(WalError::unsupported_version(&source.path, version));
            }
        };
        if header.sequence != expected {
            return Err(self.fail(
                0,
                Corruption::SequenceMismatch {
                    expected,
                    got: header.sequence,
                },
            ));
        }
        self.next_frame = FILE_HEADER_LEN;
        Ok(())
    }
}
