//! File-system helpers for block files: fsync of directories, atomic replacement, mmap.
//!
//! Every durable step of the block writer goes through here so the ordering is written once:
//! data is fsynced before the rename that publishes it, and the directory holding a new or
//! renamed entry is fsynced after it.
//!
//! # Durability
//!
//! [`write_atomic`] gives all-or-nothing replacement of one file: `name.tmp` is written and
//! fsynced, renamed over `name`, and the directory is fsynced. A crash leaves either the old or
//! the new file (and possibly a stale `name.tmp`, which the next write truncates).
//!
//! ```text
//! write_atomic(dir, name):  dir/name.tmp ──write+fsync──▶ rename ──▶ dir/name ──▶ fsync(dir)
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use bytes::Bytes;

use super::{BlockError, Result};

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BlockError::io("fsync dir", dir, e))
}

/// Atomically replaces `dir/name` with `bytes` (temp file, fsync, rename, fsync dir).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| BlockError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| BlockError::io("write", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| BlockError::io("rename into place", &path, e))?;
    sync_dir(dir)
}

/// Maps a whole file read-only and wraps the mapping in [`Bytes`], so slices of it can be handed
/// out without copying and keep the mapping alive.
#[allow(unsafe_code)]
pub(crate) fn map_file(path: &Path) -> Result<Bytes> {
    let file = File::open(path).map_err(|e| BlockError::io("open", path, e))?;
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes change (or reads fault) if the file
    // is modified or truncated while mapped. Block files are immutable once their directory is
    // renamed into place: Strata never writes, truncates or reuses them while a `Block` is open
    // (compaction and retention only create new blocks and unlink old ones, and unlinking keeps
    // the mapped pages alive until the mapping is dropped). The mapping is read-only.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| BlockError::io("mmap", path, e))?;
    Ok(Bytes::from_owner(map))
}

/// Reads a file fully, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| BlockError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"two");
        assert!(!dir.path().join("f.tmp").exists());
        let mapped = map_file(&dir.path().join("f")).unwrap();
        assert_eq!(&mapped[..], b"two");
    }

    #[test]
    fn missing_file_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = map_file(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, BlockError::Io { op: "open", .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
