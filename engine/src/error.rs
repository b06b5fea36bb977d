//! Errors of the storage engine.
//!
//! One enum for the crate; the modules that decode bytes (chunks, blocks) have their own enums
//! with offsets and expected/got context, wrapped here. Translation to HTTP status codes happens
//! only in the server.

use std::path::PathBuf;

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A label set violates the label invariants (duplicate/empty names …).
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// A matcher could not be built (bad regex …).
    #[error("invalid matcher: {0}")]
    InvalidMatcher(String),
    /// A chunk could not be encoded or decoded.
    #[error(transparent)]
    Chunk(#[from] crate::chunk::ChunkError),
    /// A block could not be written or read.
    #[error(transparent)]
    Block(#[from] crate::block::BlockError),
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] strata_wal::WalError),
    /// A WAL record of the engine could not be decoded.
    #[error("invalid WAL record of type {record_type}: {reason}")]
    Record {
        /// Record type byte.
        record_type: u8,
        /// What was wrong.
        reason: String,
    },
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
    /// A series ref does not exist in the head.
    #[error("unknown series ref {0}")]
    UnknownSeries(u32),
    /// An earlier WAL write of this tenant failed; writes are refused until restart so that no
    /// acknowledged sample can be missing from the WAL.
    #[error(
        "tenant {0}: an earlier WAL write failed; writes are refused until the server restarts"
    )]
    WalFailed(String),
    /// Creating a series would exceed the tenant's series limit.
    #[error("per-tenant series limit of {0} exceeded")]
    SeriesLimit(u64),
    /// A WAL replay worker thread panicked.
    #[error("a WAL replay worker thread panicked")]
    ReplayWorker,
    /// A tenant id is not acceptable as a directory name.
    #[error("invalid tenant id {0:?}: must be 1-150 characters of [A-Za-z0-9_.-], not '.' or '..'")]
    InvalidTenant(String),
    /// A block to be replaced is not (or no longer) among the tenant's blocks.
    #[error("block {0} is not loaded (deleted or replaced meanwhile)")]
    BlockNotLoaded(String),
}

impl Error {
    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
