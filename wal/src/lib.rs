//! `strata-wal`: a segmented write-ahead log of typed, checksummed, batch-framed records.
//!
//! The engine writes every ingested series and sample here before acknowledging it, and replays
//! the log at start-up to rebuild its in-memory head. The WAL knows nothing of series or
//! samples: a record is a kind byte plus opaque bytes, and the engine owns the payload formats.
//!
//! # Why it is built this way
//!
//! * **Segments** (files of about [`WalOptions::segment_size`], default 128 MiB) let old data be
//!   deleted a file at a time once a [checkpoint](Wal::checkpoint) has carried over what is
//!   still needed.
//! * **Batch frames.** One [`Wal::append`] call writes one frame, checksummed as a whole, with a
//!   single `write`; replay yields a frame entirely or not at all, so a multi-record append is
//!   atomic across crashes without a separate commit record.
//! * **Replay as a sequential scan.** Files are read whole into one reused buffer and records
//!   are lent out as slices of it ([`Replay::next_record`]), so replay costs a read and a CRC
//!   pass over the bytes plus a few instructions per record.
//! * **The durability contract is in the types**: [`SyncMode`] says when an acknowledged append
//!   is on disk; [`RecoveryMode`] says what opening may drop.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/LOCK                    advisory lock: one writer per directory
//! <dir>/checkpoint.00000041     records carried over from segments ..=41 (at most one)
//! <dir>/00000042                segments, contiguous; the highest is the active one
//! <dir>/00000043
//! <dir>/checkpoint.00000043.tmp a checkpoint being written (removed on open)
//! ```
//!
//! Byte layouts are in the [`format`](mod@format) module and `docs/FORMAT.md` (section "Write-ahead log").
//!
//! # Record kinds
//!
//! Kinds `1..=239` belong to the caller. Kind 0 and kinds `240..=255` are reserved for the WAL
//! framing and rejected by `append` ([`format::is_reserved_kind`]).
//!
//! # Recovery
//!
//! [`Wal::open`] verifies every frame of the newest checkpoint and of every later segment
//! before accepting appends. A torn tail of the newest segment (damage with no verifiable frame
//! after it: an interrupted write) is truncated with a warning. Any other damage fails the open
//! with [`WalError::Corrupt`] naming segment and offset, unless [`RecoveryMode::Repair`] was
//! asked for, which keeps the longest valid prefix and reports exactly what it dropped
//! ([`RepairReport`]). Nothing is dropped without a log line and a report entry. After open,
//! appends go to a fresh segment.
//!
//! # Durability
//!
//! * [`SyncMode::EveryBatch`] (default): `append` returns after `fdatasync`; concurrent appends
//!   share syncs (group commit).
//! * [`SyncMode::Interval`]: `append` returns after `write`; a background thread syncs at most
//!   once per interval; a power loss can lose up to the last interval.
//! * New segments and checkpoints are made durable together with their directory entries;
//!   checkpoints are written to a temporary file and renamed, so a crash at any point leaves
//!   either the old or the new state, both replayable.
//! * A failed `fdatasync` poisons the WAL ([`WalError::Poisoned`]) until it is reopened.
//!
//! # Locking
//!
//! [`Wal`] is `Send + Sync`. Appends serialise only on the `write` call; see the `wal` module
//! for the lock order. One checkpoint runs at a time, concurrently with appends.
//!
//! # Example
//!
//! ```no_run
//! use strata_wal::{CheckpointAction, Wal, WalOptions};
//! # fn demo() -> strata_wal::Result<()> {
//! let (wal, mut replay, report) = Wal::open("data/wal", WalOptions::default())?;
//! if let Some(report) = report {
//!     eprintln!("WAL recovery dropped {} bytes", report.bytes_dropped());
//! }
//! while let Some(record) = replay.next_record() {
//!     let record = record?;
//!     let _ = (record.kind, record.payload);
//! }
//! wal.append(&[(1, b"series".as_slice()), (2, b"samples".as_slice())])?;
//! let next = wal.rotate()?;
//! wal.checkpoint(next - 1, |kind, _payload| {
//!     if kind == 1 { CheckpointAction::Keep } else { CheckpointAction::Drop }
//! })?;
//! wal.close()?;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod error;
mod files;
pub mod format;
mod options;
mod recovery;
mod replay;
mod wal;

#[cfg(test)]
mod tests;

pub use checkpoint::{CheckpointAction, CheckpointStats};
pub use error::{Corruption, Result, WalError};
pub use format::{FormatVersion, RecordRef};
pub use options::{DEFAULT_SEGMENT_SIZE, MIN_SEGMENT_SIZE, RecoveryMode, SyncMode, WalOptions};
pub use recovery::{DropCause, Dropped, RepairReport, WalFile};
pub use replay::{Replay, ReplayStats};
pub use wal::{Wal, WalStats};
