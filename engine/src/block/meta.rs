//! `meta.json`: the block's self-description.
//!
//! The meta file is JSON so that operators and tools can read it without Strata, and so that
//! compaction planning and retention can list blocks without opening their index. It is the last
//! file written into the temp directory, but completeness is signalled by the directory rename,
//! not by the meta file.
//!
//! JSON cannot start with a magic number, so the meta file is guarded differently from the
//! binary files: it must parse, its `"version"` must be a known [`FormatVersion`], and its
//! fields are validated (`id` is a canonical block id, `min_time <= max_time`,
//! `resolution_ms >= 0`) and cross-checked against the index when the block is opened
//! (`stats.num_series`, time range).
//!
//! # Durability
//!
//! Written with [`super::fsutil::write_atomic`] (temp file, fsync, rename, fsync directory).
//!
//! ```text
//! {
//!   "id": "01J9Z8…",                       block id (26 chars)
//!   "min_time": 1700000000000,             first millisecond covered (inclusive)
//!   "max_time": 1700007199999,             last millisecond covered (inclusive)
//!   "stats": {"num_series": 893, "num_chunks": 25004, "num_samples": 3000000},
//!   "compaction": {"level": 1, "sources": ["01J9Z8…"]},   (+ "parents": [...] if compacted)
//!   "resolution_ms": 0,                    0 = raw samples, else downsampling window
//!   "version": 1                           block format version
//! }
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BlockError, FormatVersion, Result, fsutil, id};

/// Name of the meta file inside a block directory.
pub const META_FILE: &str = "meta.json";

/// Description of a block, stored as `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Block id (also the directory name).
    pub id: String,
    /// First millisecond covered, inclusive.
    pub min_time: i64,
    /// Last millisecond covered, inclusive.
    pub max_time: i64,
    /// Counts of what the block holds.
    pub stats: BlockStats,
    /// Where the block came from.
    pub compaction: CompactionMeta,
    /// Downsampling resolution in milliseconds; 0 for raw samples.
    pub resolution_ms: i64,
    /// Block format version.
    pub version: u32,
}

/// Counts of what a block holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Number of series.
    pub num_series: u64,
    /// Number of chunks.
    pub num_chunks: u64,
    /// Number of samples (sum of the chunks' sample counts).
    pub num_samples: u64,
}

/// Compaction lineage of a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionMeta {
    /// 1 for blocks cut from the head; one more than the highest input level for merged blocks.
    pub level: u32,
    /// Ids of the level-1 blocks whose data this block contains.
    pub sources: Vec<String>,
    /// Ids of the blocks this block directly replaces (the inputs of the compaction that wrote
    /// it). A block named here is obsolete once this block exists; opening a tenant deletes it.
    /// Absent (empty) for blocks cut from the head or imported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

impl BlockMeta {
    /// Checks the fields that do not need the rest of the block.
    pub(crate) fn validate(&self, file: &Path) -> Result<()> {
        let bad = |reason: String| BlockError::Meta {
            file: file.to_path_buf(),
            reason,
        };
        if FormatVersion::from_u32(self.version).is_none() {
            return Err(BlockError::UnsupportedVersion {
                file: file.to_path_buf(),
                got: self.version,
                oldest: u32::from(FormatVersion::OLDEST_SUPPORTED.as_u8()),
                current: u32::from(FormatVersion::CURRENT.as_u8()),
            });
        }
        if !id::is_block_id(&self.id) {
            return Err(bad(format!("id {:?} is not a block id", self.id)));
        }
        if self.min_time > self.max_time {
            return Err(bad(format!(
                "min_time {} > max_time {}",
                self.min_time, self.max_time
            )));
        }
        if self.resolution_ms < 0 {
            return Err(bad(format!(
                "negative resolution_ms {}",
                self.resolution_ms
            )));
        }
        if let Some(s) = self.compaction.sources.iter().find(|s| !id::is_block_id(s)) {
            return Err(bad(format!("source {s:?} is not a block id")));
        }
        if let Some(s) = self.compaction.parents.iter().find(|s| !id::is_block_id(s)) {
            return Err(bad(format!("parent {s:?} is not a block id")));
        }
        if self.compaction.parents.contains(&self.id) {
            return Err(bad("block names itself as its parent".to_string()));
        }
        Ok(())
    }
}

/// Reads and validates `dir/meta.json` without opening the rest of the block.
pub fn read_meta(dir: &Path) -> Result<BlockMeta> {
    let path = dir.join(META_FILE);
    let bytes = fsutil::read_file(&path)?;
    let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| BlockError::Meta {
        file: path.clone(),
        reason: e.to_string(),
    })?;
    meta.validate(&path)?;
    Ok(meta)
}

/// Writes `dir/meta.json` atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(meta).map_err(|e| BlockError::Meta {
        file: dir.join(META_FILE),
        reason: format!("serialize: {e}"),
    })?;
    json.push(b'\n');
    fsutil::write_atomic(dir, META_FILE, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlockMeta {
        let id = id::new_block_id();
        BlockMeta {
            id: id.clone(),
            min_time: 0,
            max_time: 7_199_999,
            stats: BlockStats {
                num_series: 3,
                num_chunks: 4,
                num_samples: 500,
            },
            compaction: CompactionMeta {
                level: 1,
                sources: vec![id],
                parents: Vec::new(),
            },
            resolution_ms: 0,
            version: 1,
        }
    }

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        write_meta(dir.path(), &m).unwrap();
        assert_eq!(read_meta(dir.path()).unwrap(), m);
    }

    #[test]
    fn rejects_missing_garbled_and_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_meta(dir.path()).unwrap_err();
        assert!(matches!(err, BlockError::Io { op: "read", .. }), "{err}");

        std::fs::write(dir.path().join(META_FILE), b"{\"id\": \"x\", ").unwrap();
        let err = read_meta(dir.path()).unwrap_err();
        assert!(matches!(err, BlockError::Meta { .. }), "{err}");

        let mut m = sample();
        m.version = 9;
        write_meta(dir.path(), &m).unwrap();
        let err = read_meta(dir.path()).unwrap_err();
        assert!(
            matches!(err, BlockError::UnsupportedVersion { got: 9, .. }),
            "{err}"
        );

        let mut m = sample();
        m.min_time = 10;
        m.max_time = 9;
        write_meta(dir.path(), &m).unwrap();
        let err = read_meta(dir.path()).unwrap_err();
        assert!(matches!(err, BlockError::Meta { .. }), "{err}");

        let mut m = sample();
        m.id = "not-an-id".into();
        write_meta(dir.path(), &m).unwrap();
        let err = read_meta(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a block id"), "{err}");
    }
}
