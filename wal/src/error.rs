//! Errors of the write-ahead log.
//!
//! One enum, [`WalError`], for everything the crate returns, plus [`Corruption`], the typed
//! reason carried by the corruption variants. Corruption reasons are an enum rather than a
//! string so that tests (and the engine's metrics) can match on exactly what was wrong, and so
//! that the recovery code can tell an *incomplete* write (a torn tail) from *damaged* bytes.
//!
//! Every variant names the file (segment or checkpoint number, or path) and, where it applies,
//! the byte offset, so an operator can find the spot with `xxd`. Errors are not logged here;
//! they are logged once, by whoever handles them.
//!
//! # Durability
//!
//! [`WalError::Poisoned`] is the only error after which the WAL refuses all further writes: a
//! failed `fsync` leaves the kernel's dirty pages in an unknown state (they may have been
//! dropped), so retrying the sync and reporting success would acknowledge data that is gone.
//! Reopening the WAL re-reads what actually reached the disk.

use std::path::PathBuf;

/// Result alias of the WAL crate.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// Everything that can go wrong in the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation, as a verb phrase ("read segment", "fsync directory", …).
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A segment is damaged somewhere other than a torn tail of the newest segment.
    #[error("corrupt WAL segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment number.
        segment: u64,
        /// Byte offset in the segment of the first frame (or header) that failed verification.
        offset: u64,
        /// What was wrong.
        reason: Corruption,
    },
    /// A checkpoint file is damaged. Checkpoints are written whole and renamed into place, so
    /// damage to one is never a torn write.
    #[error("corrupt WAL checkpoint {checkpoint} at offset {offset}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint's number (the last segment it covers).
        checkpoint: u64,
        /// Byte offset in the checkpoint file.
        offset: u64,
        /// What was wrong.
        reason: Corruption,
    },
    /// A file carries a format version this build cannot read.
    #[error(
        "{path}: WAL format version {version} is not supported (this build reads versions \
         {oldest} to {current})"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        version: u16,
        /// Oldest version this build reads.
        oldest: u16,
        /// Version this build writes.
        current: u16,
    },
    /// Another `Wal` (in this or another process) holds the directory lock.
    #[error("WAL directory {dir} is locked by another writer")]
    Locked {
        /// The WAL directory.
        dir: PathBuf,
    },
    /// A record handed to `append` or returned by a checkpoint callback is not acceptable.
    #[error("invalid record {index} (kind {kind}): {reason}")]
    InvalidRecord {
        /// Position of the record in its batch (or in the checkpoint's output).
        index: usize,
        /// The record's kind byte.
        kind: u8,
        /// What was wrong.
        reason: &'static str,
    },
    /// A batch is larger than one frame can hold.
    #[error("batch body of {bytes} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge {
        /// Size the batch body would have had.
        bytes: u64,
        /// [`crate::format::MAX_FRAME_BODY`].
        max: u64,
    },
    /// A checkpoint was requested for a range it cannot cover.
    #[error("cannot checkpoint up to segment {upto}: {reason}")]
    InvalidCheckpoint {
        /// The requested last segment.
        upto: u64,
        /// Why not.
        reason: String,
    },
    /// The options are out of bounds.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    /// An earlier write or fsync failed; the WAL accepts nothing more until it is reopened.
    #[error("WAL is unusable after an earlier failure ({reason}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned it.
        reason: String,
    },
}

impl WalError {
    /// Builds a closure mapping an `io::Error` to [`WalError::Io`] with context.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }

    /// [`WalError::UnsupportedVersion`] for `path` with this build's supported range.
    pub(crate) fn unsupported_version(path: &std::path::Path, version: u16) -> WalError {
        WalError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            oldest: crate::format::FormatVersion::OLDEST_SUPPORTED.as_u16(),
            current: crate::format::FormatVersion::CURRENT.as_u16(),
        }
    }
}

/// What exactly is wrong with damaged WAL bytes.
///
/// The `Short*` variants mean the bytes end early (the shape of an interrupted write); the others
/// mean bytes are present but wrong. Recovery uses the distinction only for the report; the
/// torn-tail decision is made on position (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is shorter than its fixed header.
    #[error("file header truncated: {available} of {needed} bytes present")]
    ShortFileHeader {
        /// Header length.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The file does not start with the expected magic number.
    #[error("bad magic: expected {expected:02x?}, got {got:02x?}")]
    BadMagic {
        /// Magic of this kind of file.
        expected: [u8; 4],
        /// Bytes found.
        got: [u8; 4],
    },
    /// The file header's checksum does not match its bytes.
    #[error("file header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    FileHeaderChecksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum of the header bytes as read.
        computed: u32,
    },
    /// The reserved header field is not zero.
    #[error("reserved file header field is {0:#06x}, expected 0")]
    ReservedBits(u16),
    /// The sequence number in the header disagrees with the file name.
    #[error("file header names number {got}, the file name says {expected}")]
    SequenceMismatch {
        /// Number from the file name.
        expected: u64,
        /// Number from the header.
        got: u64,
    },
    /// Fewer bytes than a frame header remain.
    #[error("frame header truncated: {available} of 16 bytes present")]
    ShortFrameHeader {
        /// Bytes present.
        available: usize,
    },
    /// The frame header's own checksum does not match.
    #[error("frame header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    FrameHeaderChecksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// The frame header is self-consistent but describes an impossible frame.
    #[error("implausible frame header: body_len {body_len}, count {count}")]
    ImplausibleFrame {
        /// Declared body length.
        body_len: u32,
        /// Declared record count.
        count: u32,
    },
    /// The frame body extends past the end of the file.
    #[error("frame truncated: needs {needed} bytes, {available} present")]
    ShortFrame {
        /// Frame length (header + body).
        needed: u64,
        /// Bytes present from the frame start.
        available: u64,
    },
    /// The frame body's checksum does not match.
    #[error("frame body checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    FrameChecksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// The body passed its checksum but its records do not tile it.
    #[error("record {record} of frame: {detail}")]
    RecordLayout {
        /// Index of the offending record in the frame.
        record: u32,
        /// What was wrong.
        detail: &'static str,
    },
    /// A segment is missing from the otherwise contiguous sequence.
    #[error("segment is missing (next present segment is {next_present})")]
    MissingSegment {
        /// The next segment number found on disk.
        next_present: u64,
    },
}
