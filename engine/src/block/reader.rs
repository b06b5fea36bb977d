//! [`Block`]: an opened, verified, memory-mapped block.
//!
//! Opening a block reads and validates `meta.json`, maps the index and verifies its header, TOC
//! and section checksums, loads the label table, reads the tombstones, and maps every chunk
//! segment after checking its header. Series records and symbols stay in the mapping and are
//! decoded per request; chunks are verified (CRC) each time they are read and handed out as
//! [`Bytes`] views of the mapping, so a query copies no chunk data.
//!
//! # Invariants
//!
//! A `Block` is immutable and `Send + Sync`; share it behind an `Arc`. Every [`Bytes`] it hands
//! out keeps its segment mapping alive, so a chunk stays valid even if the block is closed (or
//! deleted by retention) while a query still holds it.
//!
//! # Durability
//!
//! Read-only. The files must not be modified while open (see `fsutil::map_file`).
//!
//! ```text
//! Block ─┬─ meta: BlockMeta            (meta.json, parsed)
//!        ├─ index: IndexReader         (index, mmapped; label table decoded)
//!        ├─ segments: [Bytes]          (chunks/000001 …, mmapped)
//!        └─ tombstones: Tombstones     (tombstones, parsed)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::chunks::Segments;
use super::index::IndexReader;
use super::meta::{BlockMeta, META_FILE, read_meta};
use super::tombstones::{TOMBSTONES_FILE, Tombstones, read_tombstones};
use super::{BlockError, CHUNKS_DIR, INDEX_FILE, Result, fsutil};
use crate::labels::Labels;

/// Where a chunk is and what it holds; stored per chunk in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Timestamp of the first sample (ms, inclusive).
    pub min_time: i64,
    /// Timestamp of the last sample (ms, inclusive).
    pub max_time: i64,
    /// Number of samples in the chunk (at least 1).
    pub num_samples: u32,
    /// Chunk encoding tag (`crate::chunk::Encoding::as_u8`), opaque to the block layer.
    pub encoding: u8,
    /// `segment << 32 | offset` of the chunk in `chunks/`.
    pub chunk_ref: u64,
}

/// An open block.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    /// Shared with the copies made by [`Block::reload_tombstones`].
    index: Arc<IndexReader>,
    /// Shared with the copies made by [`Block::reload_tombstones`].
    segments: Arc<Segments>,
    tombstones: Tombstones,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Block {
    /// Opens and verifies the block in `dir`.
    pub fn open(dir: &Path) -> Result<Block> {
        let meta = read_meta(dir)?;
        let meta_file = dir.join(META_FILE);
        if dir.file_name().and_then(|n| n.to_str()) != Some(meta.id.as_str()) {
            tracing::warn!(dir = %dir.display(), id = %meta.id, "block directory name differs from its id");
        }
        let index_path = dir.join(INDEX_FILE);
        let index = IndexReader::open(&index_path, fsutil::map_file(&index_path)?)?;
        if u64::from(index.num_series()) != meta.stats.num_series {
            return Err(BlockError::Meta {
                file: meta_file,
                reason: format!(
                    "stats.num_series is {} but the index holds {} series",
                    meta.stats.num_series,
                    index.num_series()
                ),
            });
        }
        if index.time_range() != (meta.min_time, meta.max_time) {
            return Err(BlockError::Meta {
                file: meta_file,
                reason: format!(
                    "time range [{}, {}] differs from the index's {:?}",
                    meta.min_time,
                    meta.max_time,
                    index.time_range()
                ),
            });
        }
        let tombstones = read_checked_tombstones(dir, index.num_series())?;
        let segments = Segments::open(&dir.join(CHUNKS_DIR))?;
        if meta.stats.num_chunks > 0 && segments.len() == 0 {
            return Err(BlockError::Meta {
                file: meta_file,
                reason: format!("{} chunks but no chunk segments", meta.stats.num_chunks),
            });
        }
        tracing::debug!(
            dir = %dir.display(),
            series = index.num_series(),
            segments = segments.len(),
            "opened block"
        );
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index: Arc::new(index),
            segments: Arc::new(segments),
            tombstones,
        })
    }

    /// A copy of this block with its `tombstones` file read again (after
    /// [`super::write_tombstones`] replaced it). Index and chunk mappings are shared, not
    /// reopened; holders of `self` keep seeing the old tombstones.
    pub fn reload_tombstones(&self) -> Result<Block> {
        let tombstones = read_checked_tombstones(&self.dir, self.index.num_series())?;
        Ok(Block {
            dir: self.dir.clone(),
            meta: self.meta.clone(),
            index: Arc::clone(&self.index),
            segments: Arc::clone(&self.segments),
            tombstones,
        })
    }

    /// The block's meta data.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of series; ids are `0..num_series()`.
    pub fn num_series(&self) -> u32 {
        self.index.num_series()
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Result<Vec<String>> {
        Ok(self.index.label_names())
    }

    /// All values of label `name`, sorted; empty if the name is absent.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        self.index.label_values(name)
    }

    /// Ids of the series carrying `name=value`; empty if none. Series ids are ordinals in
    /// label-set order, so iterating the bitmap ascending yields sorted series.
    pub fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        self.index.postings(name, value)
    }

    /// Ids of all series.
    pub fn all_postings(&self) -> RoaringBitmap {
        let mut b = RoaringBitmap::new();
        b.insert_range(0..self.index.num_series());
        b
    }

    /// Labels and chunk metadata (sorted by time) of series `id`.
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        self.index.series(id)
    }

    /// Chunk metadata of series `id` without decoding its labels (for a reader that already
    /// knows which series the id is).
    pub fn series_chunks(&self, id: u32) -> Result<Vec<ChunkMeta>> {
        self.index.series_chunks(id)
    }

    /// The encoded bytes of a chunk, verified against its CRC and encoding byte. Zero-copy: a
    /// view into the mapped segment.
    pub fn chunk(&self, meta: &ChunkMeta) -> Result<Bytes> {
        self.segments.chunk(meta.chunk_ref, meta.encoding)
    }

    /// Deleted intervals per series.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Sizes of the index parts (header, each section, TOC) in bytes, for size accounting.
    pub fn index_sections(&self) -> Vec<(&'static str, u64)> {
        self.index.section_sizes()
    }

    /// Total size of the mapped chunk segments in bytes.
    pub fn chunks_size_bytes(&self) -> u64 {
        self.segments.total_len()
    }

    /// Total bytes of all files of the block (meta, index, tombstones, chunk segments).
    pub fn size_bytes(&self) -> Result<u64> {
        dir_size(&self.dir)
    }
}

/// Reads `dir/tombstones` and checks that every series id is one of the block's.
fn read_checked_tombstones(dir: &Path, num_series: u32) -> Result<Tombstones> {
    let tombstones = read_tombstones(dir)?;
    if let Some(max) = tombstones.max_series()
        && max >= num_series
    {
        return Err(BlockError::Corrupt {
            file: dir.join(TOMBSTONES_FILE),
            section: "tombstones body",
            offset: 0,
            reason: format!("series id {max} beyond the block's {num_series} series"),
        });
    }
    Ok(tombstones)
}

/// Sum of file sizes in `dir` and its subdirectories (block dirs are two levels deep).
fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    let entries = fs::read_dir(dir).map_err(|e| BlockError::io("list block dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BlockError::io("list block dir", dir, e))?;
        let path = entry.path();
        let md = entry
            .metadata()
            .map_err(|e| BlockError::io("stat", &path, e))?;
        if md.is_dir() {
            total = total.saturating_add(dir_size(&path)?);
        } else {
            total = total.saturating_add(md.len());
        }
    }
    Ok(total)
}
