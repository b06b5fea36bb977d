//! File-system helpers: listing the WAL directory, creating segments, syncing directories.
//!
//! Every helper maps `io::Error` to [`WalError::Io`] with the operation and path, so callers
//! propagate with `?` and the error still says which file failed.
//!
//! # Durability
//!
//! * [`create_segment`] writes the file header, `fdatasync`s the file and `fsync`s the
//!   directory before returning, so a segment that an acknowledged batch lands in is itself
//!   durable (its directory entry included).
//! * [`truncate`] uses `fsync` (not `fdatasync`) because the file size is what changes.
//! * Renames and removals are made durable by the caller with [`sync_dir`], once per group of
//!   directory changes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::format::{self, FileHeader, FileKind, FileName};

/// Name of the lock file that keeps a second writer out of the directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// WAL files found in a directory, each list sorted ascending.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<u64>,
    pub checkpoints: Vec<u64>,
    pub temps: Vec<u64>,
}

/// Lists the WAL files in `dir`; unrecognised names are ignored.
pub(crate) fn list(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(WalError::io("list WAL directory", dir))? {
        let entry = entry.map_err(WalError::io("list WAL directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match format::parse_file_name(name) {
            Some(FileName::Segment(n)) => listing.segments.push(n),
            Some(FileName::Checkpoint(n)) => listing.checkpoints.push(n),
            Some(FileName::CheckpointTemp(n)) => listing.temps.push(n),
            None => {
                if name != LOCK_FILE {
                    tracing::debug!(
                        file = name,
                        dir = %dir.display(),
                        "ignoring unknown file in WAL directory",
                    );
                }
            }
        }
    }
    listing.segments.sort_unstable();
    listing.checkpoints.sort_unstable();
    listing.temps.sort_unstable();
    Ok(listing)
}

/// Path of segment `n`.
pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format::segment_file_name(n))
}

/// Path of checkpoint `upto`.
pub(crate) fn checkpoint_path(dir: &Path, upto: u64) -> PathBuf {
    dir.join(format::checkpoint_file_name(upto))
}

/// Path of the temporary file checkpoint `upto` is written to.
pub(crate) fn checkpoint_temp_path(dir: &Path, upto: u64) -> PathBuf {
    dir.join(format::checkpoint_temp_file_name(upto))
}

/// Takes the exclusive directory lock; fails with [`WalError::Locked`] if another writer has it.
///
/// The lock (an advisory `flock`) lives as long as the returned file.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(WalError::io("open WAL lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(WalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(source)) => Err(WalError::Io {
            op: "lock WAL directory",
            path,
            source,
        }),
    }
}

/// `fsync`s a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io("fsync WAL directory", dir))
}

/// Replaces the contents of `buf` with the whole file at `path`.
pub(crate) fn read_all(path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let mut file = File::open(path).map_err(WalError::io("open WAL file", path))?;
    if let Ok(meta) = file.metadata() {
        buf.reserve(usize::try_from(meta.len()).unwrap_or(0));
    }
    file.read_to_end(buf)
        .map_err(WalError::io("read WAL file", path))?;
    Ok(())
}

/// Replaces the contents of `buf` with the first `len` bytes of the file at `path`; fails if
/// the file is shorter.
pub(crate) fn read_prefix(path: &Path, len: u64, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    buf.reserve(usize::try_from(len).unwrap_or(0));
    let file = File::open(path).map_err(WalError::io("open WAL file", path))?;
    file.take(len)
        .read_to_end(buf)
        .map_err(WalError::io("read WAL file", path))?;
    if (buf.len() as u64) < len {
        return Err(WalError::Io {
            op: "read WAL file",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "file shrank to {} bytes after recovery validated {len}",
                    buf.len()
                ),
            ),
        });
    }
    Ok(())
}

/// Creates segment `n` with its header, durably, and returns it opened for appending.
///
/// If any step after the creation fails, the half-made file is removed again so that a retry
/// does not trip over it.
pub(crate) fn create_segment(dir: &Path, n: u64) -> Result<File> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(WalError::io("create segment", &path))?;
    let header = FileHeader::new(FileKind::Segment, n).encode();
    let finish = (&file)
        .write_all(&header)
        .map_err(WalError::io("write segment header", &path))
        .and_then(|()| {
            file.sync_data()
                .map_err(WalError::io("fsync segment", &path))
        })
        .and_then(|()| sync_dir(dir));
    if let Err(err) = finish {
        drop(file);
        if let Err(cleanup) = fs::remove_file(&path) {
            tracing::warn!(
                path = %path.display(),
                error = %cleanup,
                "failed to remove half-created segment",
            );
        }
        return Err(err);
    }
    Ok(file)
}

/// Truncates the file at `path` to `len` bytes and makes the new size durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(WalError::io("open WAL file for truncation", path))?;
    file.set_len(len)
        .map_err(WalError::io("truncate WAL file", path))?;
    file.sync_all()
        .map_err(WalError::io("fsync truncated WAL file", path))
}

/// Removes a file; a file that is already gone counts as removed.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(WalError::Io {
            op: "remove WAL file",
            path: path.to_path_buf(),
            source,
        }),
    }
}
