//! Open-time verification of the WAL directory: torn-tail truncation, corruption detection and
//! repair.
//!
//! Recovery reads every live file once, front to back, and verifies every frame before the WAL
//! accepts a single append, because the promise is "acknowledged data is never silently
//! dropped": a damaged byte anywhere must stop the server (or be repaired on request and
//! reported), not be discovered half-way through replay after new data was appended behind it.
//!
//! # Rules
//!
//! The *log* is the newest checkpoint (if any) followed by the segments numbered after it, which
//! must be contiguous. Its first failure decides the outcome:
//!
//! * **Torn tail.** The failure is in the newest segment and no complete, verified frame starts
//!   at any later byte offset of that segment. Only the last write can be incomplete (every
//!   earlier batch was written before it, and with `SyncMode::EveryBatch` synced before it), so
//!   this is an interrupted write: the segment is truncated to the failure offset (or removed if
//!   even its header is damaged), a `warn!` names segment, offset and bytes, and the drop appears
//!   in the returned [`RepairReport`] with [`DropCause::TornTail`]. Both recovery modes do this.
//! * **Corruption.** Anything else: damage in a checkpoint or an older segment, damage in the
//!   newest segment followed by a verified frame, a missing segment number. With
//!   [`RecoveryMode::TolerateTornTail`] opening fails with [`WalError::Corrupt`] (or
//!   [`WalError::CorruptCheckpoint`]) naming the file and the offset of the first frame that
//!   failed, and nothing is modified. With [`RecoveryMode::Repair`] the log is cut there: every
//!   later segment is removed, the damaged file is truncated at the failure offset (removed if
//!   its header is damaged), and each drop is listed in the report.
//! * **Unknown version.** A header with a valid checksum and an unknown version is always an
//!   error ([`WalError::UnsupportedVersion`]); repair never deletes data it cannot read.
//!
//! Leftover `checkpoint.N.tmp` files are removed. Checkpoints older than the newest, and
//! segments the newest checkpoint covers, are removed (a crash between the checkpoint's rename
//! and its clean-up leaves them behind).
//!
//! # Durability
//!
//! Repair removes the later segments (newest first) and syncs the directory *before* truncating
//! the damaged file, so a crash during repair leaves a directory that the next repair reduces to
//! the same valid prefix, never one in which data after the cut becomes reachable again.

use std::path::{Path, PathBuf};

use crate::error::{Corruption, Result, WalError};
use crate::files::{self, Listing};
use crate::format::{self, FILE_HEADER_LEN, FileHeader, FileKind, HeaderError};
use crate::options::RecoveryMode;
use crate::replay::Source;

/// A WAL file, by kind and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WalFile {
    /// A checkpoint covering segments up to and including the number.
    Checkpoint(u64),
    /// A segment.
    Segment(u64),
}

impl std::fmt::Display for WalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalFile::Checkpoint(n) => write!(f, "checkpoint {n}"),
            WalFile::Segment(n) => write!(f, "segment {n}"),
        }
    }
}

/// Why bytes were dropped at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropCause {
    /// An interrupted write at the end of the newest segment.
    TornTail(Corruption),
    /// The first corruption found; the log was cut here (repair mode only).
    Corrupt(Corruption),
    /// The file came after the cut and was removed whole (repair mode only).
    FollowsCorruption,
}

/// One range of bytes that recovery dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The file the bytes belonged to.
    pub file: WalFile,
    /// Offset of the first dropped byte (0 when the whole file was removed).
    pub offset: u64,
    /// Number of bytes dropped.
    pub bytes: u64,
    /// Whether the file was removed rather than truncated.
    pub file_removed: bool,
    /// Frames (appended batches) in the dropped range that still verified and were dropped
    /// anyway because they follow the cut. A lower bound of what was lost: the contents of the
    /// damaged frame itself cannot be counted.
    pub intact_batches: u64,
    /// Records in those intact frames.
    pub intact_records: u64,
    /// Why.
    pub cause: DropCause,
}

/// Everything that opening the WAL dropped, in log order. Returned whenever anything was
/// dropped, including a torn tail in [`RecoveryMode::TolerateTornTail`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The drops, in log order.
    pub dropped: Vec<Dropped>,
}

impl RepairReport {
    /// Total bytes dropped.
    pub fn bytes_dropped(&self) -> u64 {
        self.dropped.iter().map(|d| d.bytes).sum()
    }

    /// Records in intact frames that were dropped (a lower bound of the records lost).
    pub fn intact_records_dropped(&self) -> u64 {
        self.dropped.iter().map(|d| d.intact_records).sum()
    }

    /// Files that were removed whole.
    pub fn files_removed(&self) -> Vec<WalFile> {
        self.dropped
            .iter()
            .filter(|d| d.file_removed)
            .map(|d| d.file)
            .collect()
    }

    /// Whether the only thing dropped was a torn tail (no corruption was repaired).
    pub fn is_torn_tail_only(&self) -> bool {
        self.dropped
            .iter()
            .all(|d| matches!(d.cause, DropCause::TornTail(_)))
    }
}

/// The verified state of the directory after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The surviving checkpoint.
    pub checkpoint: Option<u64>,
    /// Surviving segments, ascending and contiguous.
    pub segments: Vec<u64>,
    /// Files to replay, in order, with their verified lengths.
    pub sources: Vec<Source>,
    /// Number for the segment the writer creates next.
    pub next_segment: u64,
    /// What was dropped, if anything.
    pub report: Option<RepairReport>,
}

/// Result of verifying one file.
struct FileCheck {
    valid_len: usize,
    damage: Option<(usize, Corruption)>,
}

/// What to do to one file once verification has finished.
enum Action {
    Truncate(PathBuf, u64),
    Remove(PathBuf),
}

fn path_of(dir: &Path, file: WalFile) -> PathBuf {
    match file {
        WalFile::Checkpoint(n) => files::checkpoint_path(dir, n),
        WalFile::Segment(n) => files::segment_path(dir, n),
    }
}

/// The corruption error for `file`: [`WalError::Corrupt`] or [`WalError::CorruptCheckpoint`].
pub(crate) fn corrupt_error(file: WalFile, offset: usize, reason: Corruption) -> WalError {
    match file {
        WalFile::Checkpoint(checkpoint) => WalError::CorruptCheckpoint {
            checkpoint,
            offset: offset as u64,
            reason,
        },
        WalFile::Segment(segment) => WalError::Corrupt {
            segment,
            offset: offset as u64,
            reason,
        },
    }
}

/// Verifies the header and every frame of one file held in `bytes`.
fn check_file(bytes: &[u8], file: WalFile, path: &Path) -> Result<FileCheck> {
    let (kind, expected) = match file {
        WalFile::Checkpoint(n) => (FileKind::Checkpoint, n),
        WalFile::Segment(n) => (FileKind::Segment, n),
    };
    match FileHeader::decode(bytes, kind) {
        Err(HeaderError::UnsupportedVersion(version)) => {
            Err(WalError::unsupported_version(path, version))
        }
        Err(HeaderError::Corrupt(reason)) => Ok(FileCheck {
            valid_len: 0,
            damage: Some((0, reason)),
        }),
        Ok(header) if header.sequence != expected => Ok(FileCheck {
            valid_len: 0,
            damage: Some((
                0,
                Corruption::SequenceMismatch {
                    expected,
                    got: header.sequence,
                },
            )),
        }),
        Ok(_) => {
            let scan = format::scan_frames(bytes, FILE_HEADER_LEN);
            Ok(FileCheck {
                valid_len: scan.valid_len,
                damage: scan.damage,
            })
        }
    }
}

/// Verifies (and, per `mode`, truncates or repairs) the WAL in `dir`.
pub(crate) fn recover(dir: &Path, mode: RecoveryMode) -> Result<Recovered> {
    let listing = files::list(dir)?;
    remove_temporaries(dir, &listing)?;
    let plan = plan_log(dir, &listing);
    let walk = walk_log(dir, &plan.log, mode)?;
    let Walk {
        sources,
        mut dropped,
        cut_actions,
        after_cut,
    } = walk;
    dropped.extend(describe_after_cut(dir, &after_cut)?);
    apply(dir, &after_cut, cut_actions, &plan.superseded)?;

    let surviving_checkpoint = sources.iter().find_map(|s| match s.file {
        WalFile::Checkpoint(n) => Some(n),
        WalFile::Segment(_) => None,
    });
    let segments: Vec<u64> = sources
        .iter()
        .filter_map(|s| match s.file {
            WalFile::Segment(n) => Some(n),
            WalFile::Checkpoint(_) => None,
        })
        .collect();
    // Continue right after the last surviving file so the log stays contiguous; with nothing
    // left, move past every number ever seen.
    let last_surviving = segments.last().copied().or(surviving_checkpoint);
    let highest_seen = listing
        .segments
        .iter()
        .chain(&listing.checkpoints)
        .max()
        .copied();
    let next_segment = match (last_surviving, highest_seen) {
        (Some(last), _) => last.checked_add(1),
        (None, Some(high)) => high.checked_add(1),
        (None, None) => Some(1),
    }
    .ok_or_else(|| WalError::Poisoned {
        reason: "segment numbers exhausted".to_string(),
    })?;

    Ok(Recovered {
        checkpoint: surviving_checkpoint,
        segments,
        sources,
        next_segment,
        report: if dropped.is_empty() {
            None
        } else {
            Some(RepairReport { dropped })
        },
    })
}

/// Removes `checkpoint.N.tmp` files: checkpoints whose writing was interrupted.
fn remove_temporaries(dir: &Path, listing: &Listing) -> Result<()> {
    for &upto in &listing.temps {
        let path = files::checkpoint_temp_path(dir, upto);
        files::remove(&path)?;
        tracing::info!(
            path = %path.display(),
            "removed unfinished checkpoint left by an interrupted run",
        );
    }
    if !listing.temps.is_empty() {
        files::sync_dir(dir)?;
    }
    Ok(())
}

/// The files of the log in order, and the files the newest checkpoint supersedes.
struct Plan {
    log: Vec<WalFile>,
    superseded: Vec<PathBuf>,
}

fn plan_log(dir: &Path, listing: &Listing) -> Plan {
    let checkpoint = listing.checkpoints.last().copied();
    let mut superseded = Vec::new();
    let mut log = Vec::new();
    if let Some(c) = checkpoint {
        for &old in listing.checkpoints.iter().filter(|&&n| n < c) {
            superseded.push(files::checkpoint_path(dir, old));
        }
        for &s in listing.segments.iter().filter(|&&s| s <= c) {
            superseded.push(files::segment_path(dir, s));
        }
        log.push(WalFile::Checkpoint(c));
    }
    log.extend(
        listing
            .segments
            .iter()
            .filter(|&&s| checkpoint.is_none_or(|c| s > c))
            .map(|&s| WalFile::Segment(s)),
    );
    Plan { log, superseded }
}

/// Outcome of verifying the log, before anything is modified.
struct Walk {
    /// Files (or verified prefixes of files) to replay.
    sources: Vec<Source>,
    /// Drops decided so far (torn tail or the cut).
    dropped: Vec<Dropped>,
    /// Truncation or removal of the torn or cut file.
    cut_actions: Vec<Action>,
    /// Files after the cut, all to be removed (repair mode only).
    after_cut: Vec<WalFile>,
}

/// Verifies every file of `log` in order and decides what to drop; modifies nothing. Fails on
/// corruption unless `mode` is `Repair`.
fn walk_log(dir: &Path, log: &[WalFile], mode: RecoveryMode) -> Result<Walk> {
    let newest = log.last().copied();
    let mut walk = Walk {
        sources: Vec::new(),
        dropped: Vec::new(),
        cut_actions: Vec::new(),
        after_cut: Vec::new(),
    };
    let mut buf = Vec::new();
    let mut previous: Option<u64> = None;
    for (index, &file) in log.iter().enumerate() {
        if let WalFile::Segment(n) = file
            && let Some(expected) = previous.and_then(|p| p.checked_add(1))
            && n != expected
        {
            let reason = Corruption::MissingSegment { next_present: n };
            if mode != RecoveryMode::Repair {
                return Err(WalError::Corrupt {
                    segment: expected,
                    offset: 0,
                    reason,
                });
            }
            tracing::warn!(
                segment = expected,
                next_present = n,
                "WAL repair: segment missing; dropping every later segment",
            );
            walk.dropped.push(Dropped {
                file: WalFile::Segment(expected),
                offset: 0,
                bytes: 0,
                file_removed: false,
                intact_batches: 0,
                intact_records: 0,
                cause: DropCause::Corrupt(reason),
            });
            walk.after_cut.extend(log.get(index..).unwrap_or_default());
            return Ok(walk);
        }
        previous = Some(match file {
            WalFile::Checkpoint(n) | WalFile::Segment(n) => n,
        });

        let path = path_of(dir, file);
        files::read_all(&path, &mut buf)?;
        let check = check_file(&buf, file, &path)?;
        let Some((offset, reason)) = check.damage else {
            walk.sources.push(Source {
                path,
                file,
                len: check.valid_len as u64,
            });
            continue;
        };
        let bytes = buf.len().saturating_sub(offset) as u64;
        let remove = offset < FILE_HEADER_LEN;
        let torn = Some(file) == newest
            && matches!(file, WalFile::Segment(_))
            && format::find_valid_frame(&buf, offset + 1).is_none();
        let cause = if torn {
            tracing::warn!(
                file = %file,
                offset,
                bytes_dropped = bytes,
                reason = %reason,
                removed = remove,
                "WAL: cutting off torn tail of the newest segment (interrupted write)",
            );
            DropCause::TornTail(reason)
        } else if mode == RecoveryMode::Repair {
            DropCause::Corrupt(reason)
        } else {
            return Err(corrupt_error(file, offset, reason));
        };
        let (intact_batches, intact_records) = if torn {
            (0, 0)
        } else {
            format::count_intact(&buf, offset)
        };
        if !torn {
            tracing::warn!(
                file = %file,
                offset,
                bytes_dropped = bytes,
                intact_records,
                cause = ?cause,
                "WAL repair: cutting the log at corruption",
            );
        }
        walk.dropped.push(Dropped {
            file,
            offset: offset as u64,
            bytes,
            file_removed: remove,
            intact_batches,
            intact_records,
            cause,
        });
        if remove {
            walk.cut_actions.push(Action::Remove(path));
        } else {
            walk.cut_actions
                .push(Action::Truncate(path.clone(), offset as u64));
            walk.sources.push(Source {
                path,
                file,
                len: offset as u64,
            });
        }
        if !torn {
            walk.after_cut
                .extend(log.get(index + 1..).unwrap_or_default());
            return Ok(walk);
        }
    }
    Ok(walk)
}

/// Report entries for the files after the cut, with the intact records each still held.
fn describe_after_cut(dir: &Path, after_cut: &[WalFile]) -> Result<Vec<Dropped>> {
    let mut buf = Vec::new();
    let mut dropped = Vec::with_capacity(after_cut.len());
    for &file in after_cut {
        files::read_all(&path_of(dir, file), &mut buf)?;
        let start = if FileHeader::decode(&buf, FileKind::Segment).is_ok() {
            FILE_HEADER_LEN
        } else {
            0
        };
        let (intact_batches, intact_records) = format::count_intact(&buf, start);
        tracing::warn!(
            file = %file,
            bytes = buf.len(),
            intact_records,
            "WAL repair: removing file after the cut",
        );
        dropped.push(Dropped {
            file,
            offset: 0,
            bytes: buf.len() as u64,
            file_removed: true,
            intact_batches,
            intact_records,
            cause: DropCause::FollowsCorruption,
        });
    }
    Ok(dropped)
}

/// Carries out the decisions: later files first (newest first, then a directory sync), then
/// the cut itself, then the superseded files.
fn apply(
    dir: &Path,
    after_cut: &[WalFile],
    cut_actions: Vec<Action>,
    superseded: &[PathBuf],
) -> Result<()> {
    if !after_cut.is_empty() {
        for &file in after_cut.iter().rev() {
            files::remove(&path_of(dir, file))?;
        }
        files::sync_dir(dir)?;
    }
    let mut removed_any = false;
    for action in cut_actions {
        match action {
            Action::Truncate(path, len) => files::truncate(&path, len)?,
            Action::Remove(path) => {
                files::remove(&path)?;
                removed_any = true;
            }
        }
    }
    for path in superseded {
        files::remove(path)?;
        tracing::info!(
            path = %path.display(),
            "removed WAL file superseded by the newest checkpoint",
        );
    }
    if removed_any || !superseded.is_empty() {
        files::sync_dir(dir)?;
    }
    Ok(())
}
