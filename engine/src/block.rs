//! Persistent blocks: immutable directories holding one time range of one tenant's metrics.
//!
//! The head keeps recent samples in memory; every couple of hours its oldest range is written
//! out as a **block** and the head (and WAL) can drop it. Blocks are never modified after they
//! are renamed into place: compaction writes new blocks and deletes old ones, deletion writes a
//! new `tombstones` file atomically. Immutability is what makes reading through `mmap` safe and
//! what lets blocks later move to object storage unchanged.
//!
//! The index is built for two figures: **size** (it counts in the bytes/sample headline, so
//! strings are deduplicated and front-coded, label references and chunk metadata are varints
//! delta-coded against their predecessor, nothing is padded) and **open time** (open verifies
//! checksums and loads the small label table; series records are decoded only when asked for,
//! through an offset table that makes [`Block::series`] O(1)).
//!
//! # Invariants
//!
//! - Time ranges are **inclusive on both ends**: a block covers `[min_time, max_time]` in
//!   milliseconds, and so does each chunk. Every chunk lies inside its block's range; chunks of
//!   one series are sorted and do not overlap (`next.min_time > prev.max_time`).
//! - Series ids are ordinals `0..num_series` in ascending [`Labels`] order, so iterating any
//!   postings bitmap ascending yields series sorted by label set.
//! - A block directory whose name is a block id is complete; a directory `<id>.tmp` is an
//!   unfinished write and is removed by [`cleanup_incomplete`].
//! - Bytes read from disk are never trusted: every file is checked for length, then magic, then
//!   format version, then CRC32 (Castagnoli is not used; plain CRC-32/ISO-HDLC as computed by
//!   `crc32fast`) before any of its content is decoded; decoding is bounds-checked throughout.
//!
//! # Durability
//!
//! [`BlockWriter`] writes everything under `<parent>/<id>.tmp/`, fsyncs every file and every
//! directory it created, renames the temp directory to `<parent>/<id>` and fsyncs `<parent>`.
//! A crash at any point before the rename leaves only a `.tmp` directory, which readers ignore;
//! after the parent's fsync the block is durable. Tombstones are replaced atomically by
//! [`write_tombstones`] (temp file, fsync, rename, fsync directory).
//!
//! # Layout
//!
//! ```text
//! <block-id>/                      26-char Crockford base32 ULID-like id (see `id`)
//!   meta.json                      BlockMeta as JSON, "version": 1
//!   index                          "STIX" v1 | symbols | labels | postings | series |
//!                                  series offsets | TOC (fixed 124 bytes, CRC of every section)
//!   chunks/000001 …                "STCK" v1 | chunk* ; chunk = len uvarint | encoding u8 |
//!                                  data | crc32(encoding ‖ data) u32 LE
//!   tombstones                     "STTB" v1 | body | crc32(body) u32 LE
//! ```
//!
//! Every byte is specified in `docs/FORMAT.md` (section "Blocks") and next to each encoder in
//! the submodules.

mod chunks;
mod fsutil;
mod id;
mod index;
mod meta;
mod reader;
mod tombstones;
mod varint;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

#[cfg(doc)]
use crate::labels::Labels;

pub use chunks::{DEFAULT_SEGMENT_SIZE, chunk_ref, chunk_ref_parts};
pub use id::{BLOCK_ID_LEN, block_id_time_ms, is_block_id, new_block_id, parse_block_id};
pub use index::index_file_from_sections;
pub use meta::{BlockMeta, BlockStats, CompactionMeta, META_FILE, read_meta};
pub use reader::{Block, ChunkMeta};
pub use tombstones::{TOMBSTONES_FILE, Tombstones, read_tombstones, write_tombstones};
pub use writer::{BlockWriter, BlockWriterOptions, ChunkInput, cleanup_incomplete};

/// Name of the index file inside a block directory.
pub const INDEX_FILE: &str = "index";
/// Name of the chunk segment directory inside a block directory.
pub const CHUNKS_DIR: &str = "chunks";
/// Suffix of a block directory that is still being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// Result alias for block operations.
pub type Result<T, E = BlockError> = std::result::Result<T, E>;

/// Format versions of the block files. All files of a block share one version number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum FormatVersion {
    /// The first format, specified in `docs/FORMAT.md`.
    V1 = 1,
}

impl FormatVersion {
    /// The version new blocks are written with.
    pub const CURRENT: FormatVersion = FormatVersion::V1;
    /// The oldest version this build can read.
    pub const OLDEST_SUPPORTED: FormatVersion = FormatVersion::V1;

    /// Parses a version number; `None` if this build does not know it.
    pub fn from_u32(v: u32) -> Option<FormatVersion> {
        match v {
            1 => Some(FormatVersion::V1),
            _ => None,
        }
    }

    /// The version number as written on disk.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Errors of block writing and reading.
///
/// Decoding errors name the file, the section (or chunk reference) and the byte offset, so an
/// operator can tell a torn file from a flipped bit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation, as a verb phrase ("create block dir").
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not start with the magic number of its kind.
    #[error("{file}: bad magic: expected {expected:02x?}, got {got:02x?}")]
    BadMagic {
        /// The file.
        file: PathBuf,
        /// The magic this kind of file starts with.
        expected: [u8; 4],
        /// The bytes found.
        got: [u8; 4],
    },
    /// A file carries a format version this build cannot read.
    #[error("{file}: unsupported format version {got} (this build reads {oldest}..={current})")]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// Version found.
        got: u32,
        /// Oldest readable version.
        oldest: u32,
        /// Newest readable version.
        current: u32,
    },
    /// A file or section is shorter than its structure requires.
    #[error("{file}: {section} truncated: need {expected} bytes, have {got}")]
    Truncated {
        /// The file.
        file: PathBuf,
        /// The part that is short (`header`, `toc`, a section name …).
        section: &'static str,
        /// Bytes required.
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// A section's CRC32 does not match its bytes.
    #[error(
        "{file}: checksum mismatch in {section} at offset {offset}: stored {expected:#010x}, computed {got:#010x}"
    )]
    Checksum {
        /// The file.
        file: PathBuf,
        /// The section whose bytes do not match.
        section: &'static str,
        /// Byte offset of the section in the file.
        offset: u64,
        /// CRC stored in the file.
        expected: u32,
        /// CRC computed over the bytes read.
        got: u32,
    },
    /// A section passed its checksum but its content is malformed.
    #[error("{file}: corrupt {section} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// The section.
        section: &'static str,
        /// Byte offset in the file where decoding failed.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// `meta.json` is missing fields, unparsable or inconsistent with the block.
    #[error("{file}: invalid block meta: {reason}")]
    Meta {
        /// The meta file.
        file: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A chunk reference points past the end of its segment.
    #[error(
        "{file}: chunk {chunk_ref:#x} truncated: needs bytes up to offset {need}, segment has {segment_len}"
    )]
    ChunkTruncated {
        /// The segment file.
        file: PathBuf,
        /// The chunk reference (`segment << 32 | offset`).
        chunk_ref: u64,
        /// End offset the chunk needs.
        need: u64,
        /// Length of the segment.
        segment_len: u64,
    },
    /// A chunk's CRC32 does not match its bytes.
    #[error(
        "{file}: chunk {chunk_ref:#x} checksum mismatch: stored {expected:#010x}, computed {got:#010x}"
    )]
    ChunkChecksum {
        /// The segment file.
        file: PathBuf,
        /// The chunk reference.
        chunk_ref: u64,
        /// CRC stored after the chunk.
        expected: u32,
        /// CRC computed over encoding byte and data.
        got: u32,
    },
    /// A chunk is malformed or does not match its metadata.
    #[error("{file}: chunk {chunk_ref:#x}: {reason}")]
    ChunkCorrupt {
        /// The segment file (or the chunks directory if the segment does not exist).
        file: PathBuf,
        /// The chunk reference.
        chunk_ref: u64,
        /// What was wrong.
        reason: String,
    },
    /// A series id is not in `0..num_series`.
    #[error("series id {id} out of range (block has {num_series} series)")]
    SeriesOutOfRange {
        /// Requested id.
        id: u32,
        /// Series in the block.
        num_series: u32,
    },
    /// [`BlockWriter::add_series`] was called with a label set not greater than the previous.
    #[error("series added out of order: {got} after {previous}")]
    OutOfOrder {
        /// The previously added label set.
        previous: String,
        /// The rejected label set.
        got: String,
    },
    /// A series passed to [`BlockWriter::add_series`] is invalid (chunk order, range …).
    #[error("invalid series {labels}: {reason}")]
    InvalidSeries {
        /// The label set.
        labels: String,
        /// What was wrong.
        reason: String,
    },
    /// An argument is outside its domain (e.g. `min_time > max_time`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A structure exceeds a limit of the format.
    #[error("{what} exceeds the format limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An earlier I/O error left the writer in an unknown state; drop it and start over.
    #[error("block writer is unusable after an earlier I/O error")]
    Poisoned,
}

impl BlockError {
    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BlockError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Checks a file's 5-byte header (`magic[4] | version u8`): length, then magic, then version.
/// Returns the version.
pub(crate) fn check_header(
    file: &std::path::Path,
    bytes: &[u8],
    magic: [u8; 4],
) -> Result<FormatVersion> {
    let truncated = || BlockError::Truncated {
        file: file.to_path_buf(),
        section: "header",
        expected: HEADER_LEN as u64,
        got: bytes.len() as u64,
    };
    let got: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(truncated)?;
    if got != magic {
        return Err(BlockError::BadMagic {
            file: file.to_path_buf(),
            expected: magic,
            got,
        });
    }
    let v = bytes.get(4).copied().ok_or_else(truncated)?;
    FormatVersion::from_u32(u32::from(v)).ok_or_else(|| BlockError::UnsupportedVersion {
        file: file.to_path_buf(),
        got: u32::from(v),
        oldest: u32::from(FormatVersion::OLDEST_SUPPORTED.as_u8()),
        current: u32::from(FormatVersion::CURRENT.as_u8()),
    })
}

/// Length of the `magic | version` header every binary block file starts with.
pub(crate) const HEADER_LEN: usize = 5;

/// Appends the 5-byte header to `buf`.
pub(crate) fn put_header(buf: &mut Vec<u8>, magic: [u8; 4]) {
    buf.extend_from_slice(&magic);
    buf.push(FormatVersion::CURRENT.as_u8());
}
