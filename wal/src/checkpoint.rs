//! Checkpoints: compacting the head of the log so old segments can be deleted.
//!
//! Like Prometheus' WAL checkpoint: once the engine has persisted the data of segments up to
//! `N` elsewhere (blocks), it asks for a checkpoint up to `N`. The previous checkpoint and
//! segments `..=N` are read in order and every record is passed to the engine's callback, which
//! drops it, keeps it, or rewrites it (e.g. keeps the series definitions still in the head and
//! drops samples now in blocks). The survivors are written to `checkpoint.N`, after which the
//! old checkpoint and segments `..=N` are deleted. Replay then reads `checkpoint.N` followed by
//! segments `N+1..`.
//!
//! # Invariants
//!
//! * `N` must be below the active segment (call [`Wal::rotate`] first), so every input file is
//!   immutable while it is read; appends carry on into later segments concurrently.
//! * `N` must be above the previous checkpoint's number: checkpoints only move forward.
//! * Record order is preserved: checkpoint records come out in log order.
//!
//! # Durability
//!
//! The checkpoint is written to `checkpoint.N.tmp`, `fdatasync`ed, renamed to `checkpoint.N`,
//! and the directory is `fsync`ed; only then are the old files deleted. A crash before the
//! rename leaves the old state plus a `.tmp` file that the next open removes; a crash after it
//! leaves the new checkpoint plus stale files that the next open removes (recovery always uses
//! the newest checkpoint and drops segments it covers). Either way the WAL replays the same
//! records, modulo the callback's filtering.
//!
//! # Layout
//!
//! A checkpoint file is a segment file with magic `SWCP` whose header sequence is `N`; its
//! records are framed in batches of about 1 MiB (see `crate::format`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Corruption, Result, WalError};
use crate::files;
use crate::format::{self, FILE_HEADER_LEN, FileHeader, FileKind, FrameEncoder, HeaderError};
use crate::recovery::{WalFile, corrupt_error};
use crate::wal::Wal;

/// Target body size of a checkpoint frame.
const CHECKPOINT_FRAME_TARGET: usize = 1024 * 1024;

/// What a checkpoint does with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointAction {
    /// Leave the record out of the checkpoint.
    Drop,
    /// Copy the record unchanged.
    Keep,
    /// Write this record instead (kinds are restricted as for `append`).
    Rewrite {
        /// Kind of the replacement record.
        kind: u8,
        /// Payload of the replacement record.
        payload: Vec<u8>,
    },
}

/// What a checkpoint did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The last segment the new checkpoint covers.
    pub upto_segment: u64,
    /// The checkpoint it replaced.
    pub previous_checkpoint: Option<u64>,
    /// Records read from the previous checkpoint and the segments.
    pub records_read: u64,
    /// Records copied unchanged.
    pub records_kept: u64,
    /// Records replaced.
    pub records_rewritten: u64,
    /// Records left out.
    pub records_dropped: u64,
    /// Size of the new checkpoint file.
    pub bytes_written: u64,
    /// Segments deleted after the checkpoint was in place.
    pub segments_deleted: Vec<u64>,
}

impl Wal {
    /// Writes a checkpoint covering the previous checkpoint and segments up to and including
    /// `upto_segment`, passing every record through `keep`, then deletes the files it replaces.
    ///
    /// `upto_segment` must be below [`Wal::current_segment`] and above
    /// [`Wal::last_checkpoint`]. Appends may continue meanwhile; only one checkpoint runs at a
    /// time. Do not run it while a [`crate::Replay`] is still being read.
    pub fn checkpoint<F>(&self, upto_segment: u64, mut keep: F) -> Result<CheckpointStats>
    where
        F: FnMut(u8, &[u8]) -> CheckpointAction,
    {
        let _checkpointing = self.checkpoint_lock.lock();
        let (first, active, previous) = {
            let writer = self.shared.writer.lock();
            (writer.first_segment, writer.segment, writer.checkpoint)
        };
        let upto = upto_segment;
        if upto >= active {
            return Err(WalError::InvalidCheckpoint {
                upto,
                reason: format!("segment {active} is the active segment; call rotate() first"),
            });
        }
        if let Some(p) = previous
            && upto <= p
        {
            return Err(WalError::InvalidCheckpoint {
                upto,
                reason: format!("checkpoint {p} already covers it"),
            });
        }
        if previous.is_none() && upto < first {
            return Err(WalError::InvalidCheckpoint {
                upto,
                reason: format!("the oldest segment is {first}"),
            });
        }

        let dir = &self.shared.dir;
        let tmp = files::checkpoint_temp_path(dir, upto);
        let mut stats = CheckpointStats {
            upto_segment: upto,
            previous_checkpoint: previous,
            ..CheckpointStats::default()
        };
        let mut inputs: Vec<WalFile> = previous.map(WalFile::Checkpoint).into_iter().collect();
        inputs.extend((first..=upto).map(WalFile::Segment));
        if let Err(error) = write_checkpoint(dir, &tmp, upto, &inputs, &mut keep, &mut stats) {
            if let Err(cleanup) = files::remove(&tmp) {
                tracing::warn!(%cleanup, "failed to remove unfinished checkpoint");
            }
            return Err(error);
        }
        let target = files::checkpoint_path(dir, upto);
        std::fs::rename(&tmp, &target)
            .map_err(WalError::io("rename checkpoint into place", &target))?;
        files::sync_dir(dir)?;
        {
            let mut writer = self.shared.writer.lock();
            writer.checkpoint = Some(upto);
            writer.first_segment = upto + 1;
        }

        // The new checkpoint is durable; the replaced files are garbage. A failure to delete
        // them is not an error of the checkpoint: the next open removes them.
        let mut garbage = Vec::new();
        if let Some(p) = previous {
            garbage.push((None, files::checkpoint_path(dir, p)));
        }
        garbage.extend((first..=upto).map(|s| (Some(s), files::segment_path(dir, s))));
        for (segment, path) in garbage {
            match files::remove(&path) {
                Ok(()) => stats.segments_deleted.extend(segment),
                Err(error) => {
                    tracing::warn!(%error, "could not delete a WAL file replaced by a checkpoint")
                }
            }
        }
        if let Err(error) = files::sync_dir(dir) {
            tracing::warn!(%error, "could not sync the WAL directory after checkpoint clean-up");
        }
        tracing::info!(
            dir = %dir.display(),
            upto,
            records_read = stats.records_read,
            records_kept = stats.records_kept + stats.records_rewritten,
            bytes = stats.bytes_written,
            "wrote WAL checkpoint"
        );
        Ok(stats)
    }
}

/// Writes the checkpoint file `tmp` from `inputs` and syncs it.
fn write_checkpoint<F>(
    dir: &Path,
    tmp: &Path,
    upto: u64,
    inputs: &[WalFile],
    keep: &mut F,
    stats: &mut CheckpointStats,
) -> Result<()>
where
    F: FnMut(u8, &[u8]) -> CheckpointAction,
{
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(WalError::io("create checkpoint", tmp))?;
    let header = FileHeader::new(FileKind::Checkpoint, upto).encode();
    out.write_all(&header)
        .map_err(WalError::io("write checkpoint", tmp))?;
    stats.bytes_written = header.len() as u64;

    let mut encoder = FrameEncoder::new();
    let mut buf = Vec::new();
    let mut written_records = 0usize;
    for &input in inputs {
        let (path, kind, number) = match input {
            WalFile::Checkpoint(n) => (files::checkpoint_path(dir, n), FileKind::Checkpoint, n),
            WalFile::Segment(n) => (files::segment_path(dir, n), FileKind::Segment, n),
        };
        files::read_all(&path, &mut buf)?;
        verify_header(&buf, kind, number, input, &path)?;
        let mut pos = FILE_HEADER_LEN;
        while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
            let frame =
                format::decode_frame(rest).map_err(|reason| corrupt_error(input, pos, reason))?;
            for record in frame.records() {
                stats.records_read += 1;
                let pushed = match keep(record.kind, record.payload) {
                    CheckpointAction::Drop => {
                        stats.records_dropped += 1;
                        continue;
                    }
                    CheckpointAction::Keep => {
                        stats.records_kept += 1;
                        encoder.push(record.kind, record.payload)
                    }
                    CheckpointAction::Rewrite { kind, payload } => {
                        stats.records_rewritten += 1;
                        encoder.push(kind, &payload)
                    }
                };
                pushed.map_err(|e| with_index(e, written_records))?;
                written_records += 1;
                if encoder.body_len() >= CHECKPOINT_FRAME_TARGET {
                    flush(&mut encoder, &mut out, tmp, stats)?;
                }
            }
            pos += frame.encoded_len();
        }
    }
    flush(&mut encoder, &mut out, tmp, stats)?;
    out.sync_data()
        .map_err(WalError::io("fsync checkpoint", tmp))
}

fn verify_header(
    bytes: &[u8],
    kind: FileKind,
    number: u64,
    input: WalFile,
    path: &Path,
) -> Result<()> {
    match FileHeader::decode(bytes, kind) {
        Ok(header) if header.sequence == number => Ok(()),
        Ok(header) => Err(corrupt_error(
            input,
            0,
            Corruption::SequenceMismatch {
                expected: number,
                got: header.sequence,
            },
        )),
        Err(HeaderError::Corrupt(reason)) => Err(corrupt_error(input, 0, reason)),
        Err(HeaderError::UnsupportedVersion(version)) => {
            Err(WalError::unsupported_version(path, version))
        }
    }
}

/// Re-labels an invalid-record error with the record's position in the checkpoint output.
fn with_index(error: WalError, index: usize) -> WalError {
    match error {
        WalError::InvalidRecord { kind, reason, .. } => WalError::InvalidRecord {
            index,
            kind,
            reason,
        },
        other => other,
    }
}

fn flush(
    encoder: &mut FrameEncoder,
    out: &mut File,
    tmp: &Path,
    stats: &mut CheckpointStats,
) -> Result<()> {
    if let Some(frame) = encoder.finish() {
        out.write_all(frame)
            .map_err(WalError::io("write checkpoint", tmp))?;
        stats.bytes_written += frame.len() as u64;
    }
    encoder.clear();
    Ok(())
}
