//! [`BlockWriter`]: writes one block into a temp directory and publishes it atomically.
//!
//! The writer streams chunks to segment files as series arrive (chunk bytes are never held in
//! memory) and accumulates the index in memory in compact form: label pairs as temporary string
//! ids, chunk metadata already varint-encoded (a few bytes per chunk), postings as roaring
//! bitmaps. The index needs every string before it can assign final symbol references, so it is
//! written at [`BlockWriter::finish`].
//!
//! # Invariants
//!
//! Series arrive in strictly increasing [`Labels`] order, so the i-th series added gets id i and
//! ids sort like label sets. Chunks of a series are sorted by time, do not overlap (inclusive
//! bounds: `next.min_time > prev.max_time`), hold at least one sample and lie inside the block's
//! `[min_time, max_time]`. A rejected `add_series` (validation error) leaves the writer
//! unchanged; an I/O error poisons it.
//!
//! # Durability
//!
//! Nothing is visible under the block's id until [`BlockWriter::finish`] has fsynced every file
//! and directory in `<id>.tmp/` and renamed it to `<id>`; the parent directory is fsynced last.
//! Dropping an unfinished writer removes its temp directory; a crash leaves it behind for
//! [`cleanup_incomplete`].
//!
//! ```text
//! create ──▶ <parent>/<id>.tmp/chunks/          add_series* ──▶ chunks/000001 …
//! finish ──▶ index, tombstones, meta.json (fsync each) ──▶ fsync chunks/, <id>.tmp/
//!        ──▶ rename <id>.tmp → <id> ──▶ fsync <parent>
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use super::chunks::{DEFAULT_SEGMENT_SIZE, SegmentWriter};
use super::index::IndexBuilder;
use super::meta::{BlockMeta, BlockStats, CompactionMeta, write_meta};
use super::reader::ChunkMeta;
use super::tombstones::{Tombstones, write_tombstones};
use super::{BlockError, CHUNKS_DIR, FormatVersion, INDEX_FILE, Result, TMP_SUFFIX, fsutil, id};
use crate::labels::Labels;

/// One chunk as passed to [`BlockWriter::add_series`]:
/// `(min_time, max_time, num_samples, encoding, encoded bytes)`.
pub type ChunkInput<'a> = (i64, i64, u32, u8, &'a [u8]);

/// Everything that describes a block before its first series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockWriterOptions {
    /// First millisecond covered, inclusive.
    pub min_time: i64,
    /// Last millisecond covered, inclusive. `max_time - min_time` must fit in an `i64`.
    pub max_time: i64,
    /// Compaction level (1 for blocks cut from the head).
    pub level: u32,
    /// Source block ids; if empty, the block's own id is recorded.
    pub sources: Vec<String>,
    /// Blocks this one replaces (compaction inputs); recorded as `compaction.parents`.
    pub parents: Vec<String>,
    /// Downsampling resolution in ms (0 = raw).
    pub resolution_ms: i64,
    /// Size at which chunk segments rotate. Default 512 MiB; clamped to 32-bit offsets.
    pub segment_size: u64,
}

impl BlockWriterOptions {
    /// Options for a raw level-1 block over `[min_time, max_time]`.
    pub fn new(min_time: i64, max_time: i64) -> Self {
        BlockWriterOptions {
            min_time,
            max_time,
            level: 1,
            sources: Vec::new(),
            parents: Vec::new(),
            resolution_ms: 0,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Writes one block. See the module docs for the protocol.
pub struct BlockWriter {
    parent: PathBuf,
    id: String,
    tmp_dir: PathBuf,
    opts: BlockWriterOptions,
    segments: Option<SegmentWriter>,
    index: Option<IndexBuilder>,
    last: Option<Labels>,
    stats: BlockStats,
    poisoned: bool,
    published: bool,
}

impl std::fmt::Debug for BlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("tmp_dir", &self.tmp_dir)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl BlockWriter {
    /// Starts a block in a temp dir under `parent` (`<parent>/<id>.tmp`), creating `parent` if
    /// needed. `[min_time, max_time]` is inclusive.
    pub fn create(
        parent: &Path,
        min_time: i64,
        max_time: i64,
        level: u32,
        sources: Vec<String>,
    ) -> Result<BlockWriter> {
        BlockWriter::create_with(
            parent,
            BlockWriterOptions {
                level,
                sources,
                ..BlockWriterOptions::new(min_time, max_time)
            },
        )
    }

    /// Starts a block with explicit options (resolution, segment size …).
    pub fn create_with(parent: &Path, opts: BlockWriterOptions) -> Result<BlockWriter> {
        if opts.min_time > opts.max_time
            || i128::from(opts.max_time) - i128::from(opts.min_time) > i128::from(i64::MAX)
        {
            return Err(BlockError::InvalidArgument(format!(
                "block range [{}, {}] is empty or wider than 2^63-1 ms",
                opts.min_time, opts.max_time
            )));
        }
        if opts.resolution_ms < 0 {
            return Err(BlockError::InvalidArgument(format!(
                "negative resolution_ms {}",
                opts.resolution_ms
            )));
        }
        if let Some(s) = opts.sources.iter().find(|s| !id::is_block_id(s)) {
            return Err(BlockError::InvalidArgument(format!(
                "source {s:?} is not a block id"
            )));
        }
        fs::create_dir_all(parent)
            .map_err(|e| BlockError::io("create block parent dir", parent, e))?;
        let id = id::new_block_id();
        let tmp_dir = parent.join(format!("{id}{TMP_SUFFIX}"));
        fs::create_dir(&tmp_dir)
            .map_err(|e| BlockError::io("create block temp dir", &tmp_dir, e))?;
        let chunks_dir = tmp_dir.join(CHUNKS_DIR);
        // From here on, Drop removes the temp dir if we fail.
        let mut w = BlockWriter {
            parent: parent.to_path_buf(),
            id,
            tmp_dir,
            segments: None,
            index: Some(IndexBuilder::new(opts.min_time, opts.max_time)),
            opts,
            last: None,
            stats: BlockStats::default(),
            poisoned: false,
            published: false,
        };
        fs::create_dir(&chunks_dir)
            .map_err(|e| BlockError::io("create chunks dir", &chunks_dir, e))?;
        w.segments = Some(SegmentWriter::new(chunks_dir, w.opts.segment_size));
        tracing::debug!(dir = %w.tmp_dir.display(), "started block");
        Ok(w)
    }

    /// The id the block will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The temp directory being written.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// Counts so far.
    pub fn stats(&self) -> &BlockStats {
        &self.stats
    }

    /// Adds one series. Series MUST be added in strictly increasing `Labels` order; chunks
    /// `(min_time, max_time, num_samples, encoding, bytes)` sorted by time, non-overlapping
    /// (inclusive bounds), non-empty and inside the block's range. Violations are rejected with
    /// [`BlockError::OutOfOrder`] or [`BlockError::InvalidSeries`] and leave the writer usable.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkInput<'_>]) -> Result<()> {
        if self.poisoned {
            return Err(BlockError::Poisoned);
        }
        self.validate(labels, chunks)?;
        // From here on a failure leaves chunks written without their series: poison.
        self.poisoned = true;
        let segments = self.segments.as_mut().ok_or(BlockError::Poisoned)?;
        let mut metas = Vec::with_capacity(chunks.len());
        for &(min_time, max_time, num_samples, encoding, data) in chunks {
            let chunk_ref = segments.write_chunk(encoding, data)?;
            metas.push(ChunkMeta {
                min_time,
                max_time,
                num_samples,
                encoding,
                chunk_ref,
            });
        }
        self.index
            .as_mut()
            .ok_or(BlockError::Poisoned)?
            .add_series(labels, &metas)?;
        self.poisoned = false;
        self.stats.num_series += 1;
        self.stats.num_chunks += chunks.len() as u64;
        self.stats.num_samples += chunks.iter().map(|c| u64::from(c.2)).sum::<u64>();
        self.last = Some(labels.clone());
        Ok(())
    }

    fn validate(&self, labels: &Labels, chunks: &[ChunkInput<'_>]) -> Result<()> {
        let invalid = |reason: String| BlockError::InvalidSeries {
            labels: labels.to_string(),
            reason,
        };
        if labels.is_empty() {
            return Err(invalid("empty label set".into()));
        }
        if labels
            .iter()
            .any(|l| l.name.is_empty() || l.value.is_empty())
        {
            return Err(invalid("empty label name or value".into()));
        }
        if labels
            .as_slice()
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.name >= b.name))
        {
            return Err(invalid("label names not sorted and unique".into()));
        }
        if let Some(last) = &self.last
            && labels <= last
        {
            return Err(BlockError::OutOfOrder {
                previous: last.to_string(),
                got: labels.to_string(),
            });
        }
        let mut prev_max: Option<i64> = None;
        for (i, &(min, max, n, _, _)) in chunks.iter().enumerate() {
            if min > max {
                return Err(invalid(format!(
                    "chunk {i}: min_time {min} > max_time {max}"
                )));
            }
            if min < self.opts.min_time || max > self.opts.max_time {
                return Err(invalid(format!(
                    "chunk {i} [{min}, {max}] outside block [{}, {}]",
                    self.opts.min_time, self.opts.max_time
                )));
            }
            if n == 0 {
                return Err(invalid(format!("chunk {i} has no samples")));
            }
            if let Some(p) = prev_max
                && min <= p
            {
                return Err(invalid(format!(
                    "chunk {i} starts at {min}, not after the previous chunk's end {p}"
                )));
            }
            prev_max = Some(max);
        }
        Ok(())
    }

    /// Writes index, tombstones (empty) and meta.json, fsyncs every file and directory, renames
    /// `<id>.tmp` to `<id>` and fsyncs the parent. Returns the meta and the final path.
    pub fn finish(mut self) -> Result<(BlockMeta, PathBuf)> {
        if self.poisoned {
            return Err(BlockError::Poisoned);
        }
        self.poisoned = true;
        let segments = self.segments.take().ok_or(BlockError::Poisoned)?;
        let chunk_bytes = segments.bytes_written();
        segments.finish()?;
        let index = self.index.take().ok_or(BlockError::Poisoned)?;
        let index_bytes = index.write(&self.tmp_dir.join(INDEX_FILE))?;
        write_tombstones(&self.tmp_dir, &Tombstones::new())?;
        let sources = if self.opts.sources.is_empty() {
            vec![self.id.clone()]
        } else {
            std::mem::take(&mut self.opts.sources)
        };
        let meta = BlockMeta {
            id: self.id.clone(),
            min_time: self.opts.min_time,
            max_time: self.opts.max_time,
            stats: self.stats.clone(),
            compaction: CompactionMeta {
                level: self.opts.level,
                sources,
                parents: self.opts.parents.clone(),
            },
            resolution_ms: self.opts.resolution_ms,
            version: u32::from(FormatVersion::CURRENT.as_u8()),
        };
        write_meta(&self.tmp_dir, &meta)?;
        fsutil::sync_dir(&self.tmp_dir)?;
        let final_dir = self.parent.join(&self.id);
        if final_dir.exists() {
            return Err(BlockError::io(
                "publish block",
                &final_dir,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        fs::rename(&self.tmp_dir, &final_dir)
            .map_err(|e| BlockError::io("rename block into place", &final_dir, e))?;
        self.published = true;
        fsutil::sync_dir(&self.parent)?;
        tracing::info!(
            block = %meta.id,
            series = meta.stats.num_series,
            chunks = meta.stats.num_chunks,
            samples = meta.stats.num_samples,
            index_bytes,
            chunk_bytes,
            "wrote block"
        );
        Ok((meta, final_dir))
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Close segment files before removing them.
        self.segments = None;
        match fs::remove_dir_all(&self.tmp_dir) {
            Ok(()) => tracing::debug!(dir = %self.tmp_dir.display(), "removed unfinished block"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.tmp_dir.display(), error = %e, "could not remove unfinished block")
            }
        }
    }
}

/// Removes leftover `<block-id>.tmp` directories (a crash mid-write) under `parent`; returns
/// what was removed, sorted. Other entries are left alone. A missing `parent` is not an error.
pub fn cleanup_incomplete(parent: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BlockError::io("list blocks", parent, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BlockError::io("list blocks", parent, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(TMP_SUFFIX)) else {
            continue;
        };
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| BlockError::io("stat", &path, e))?
            .is_dir();
        if !is_dir || !id::is_block_id(stem) {
            continue;
        }
        fs::remove_dir_all(&path)
            .map_err(|e| BlockError::io("remove incomplete block", &path, e))?;
        tracing::info!(dir = %path.display(), "removed incomplete block");
        removed.push(path);
    }
    if !removed.is_empty() {
        fsutil::sync_dir(parent)?;
    }
    removed.sort();
    Ok(removed)
}
