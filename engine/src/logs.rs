//! The log store: Loki-model log streams of every tenant, with a full-text filter and a
//! trace-id index.
//!
//! A **stream** is a label set; an **entry** is `(timestamp ns, line, structured metadata)`.
//! The store keeps, per tenant ([`LogStore`]):
//!
//! - a stream registry keyed by label set, with roaring postings `name=value → streams`;
//! - a **head** buffer per stream, cut into a zstd-compressed [`chunk`] when it reaches the
//!   target size (or at flush); out-of-order entries within a window are accepted and sorted
//!   at the cut;
//! - per sealed chunk an n-gram signature ([`filter`]) that lets line filters skip chunks, and
//!   the trace ids of its entries;
//! - immutable, time-partitioned [`block`] files holding sealed chunks, the stream index, the
//!   signatures and an exact trace-id → chunk index.
//!
//! [`LogEngine`] holds the stores of all tenants under `<data>/tenants/<tenant>/logs/`.
//!
//! # Durability
//!
//! A push is validated, written to the tenant's log WAL (`logs/wal`, one [`record`] per push,
//! fsynced under the default sync mode) and only then applied to the head, so an acknowledged
//! push survives a crash and replay rebuilds exactly the accepted entries. A flush seals every
//! head, writes the sealed chunks into block files (temp file, fsync, rename, fsync dir) and
//! then drops the WAL segments it covered; pushes are held off during a flush by the write
//! gate, so no acknowledged entry is ever only in a dropped segment.
//!
//! # Locking
//!
//! Lock order: `gate` (read for pushes, write for flushes) → `inner`. The WAL append happens
//! with only the gate's read side held, so concurrent pushes share fsyncs.
//!
//! Every format is specified in `docs/FORMAT.md` (section "Log store") and next to its encoder.

pub mod block;
pub mod chunk;
mod codec;
pub mod filter;
pub mod record;
mod store;

use std::path::PathBuf;

pub use chunk::LogEntry;
pub use record::StreamEntries;
pub use store::{
    ChunkRef, ChunkSelect, LogBlockInfo, LogEngine, LogOpenReport, LogStore, LogStoreOptions,
    PushLimits, PushReport, Rejection, StoreStats, StreamInfo,
};

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Bytes read from disk or the WAL are damaged.
    #[error("corrupt {what} at offset {offset}: {reason}")]
    Corrupt {
        /// Which structure.
        what: &'static str,
        /// Byte offset in it.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// A format version this build cannot read.
    #[error("unsupported {what} format version {version}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// Compression failed.
    #[error("zstd compression failed: {0}")]
    Compression(String),
    /// A caller passed something unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] strata_wal::WalError),
    /// An earlier WAL write failed; writes are refused until restart.
    #[error("tenant {0}: an earlier log WAL write failed; writes are refused until restart")]
    WalFailed(String),
    /// A tenant id is not acceptable as a directory name.
    #[error("invalid tenant id {0:?}: must be 1-150 characters of [A-Za-z0-9_.-], not '.' or '..'")]
    InvalidTenant(String),
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
