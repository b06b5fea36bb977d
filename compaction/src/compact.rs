//! Merging blocks into one: the streaming merge behind every compaction.
//!
//! Series ids of a block are ordinals in label order, so walking each input's ids in ascending
//! order walks its series sorted by labels; a k-way merge over the inputs therefore visits every
//! series once, in the order the [`BlockWriter`] needs, holding one series per input at a time.
//! Memory is bounded by the largest series plus the output index (labels of the series
//! written so far), never by the number of samples.
//!
//! Per series the merge picks one of two paths:
//!
//! * **Copy**: the chunks of all inputs are disjoint in time, no tombstone touches them and
//!   re-chunking is off for this merge or would not join any two neighbours into one chunk of
//!   the configured size: the encoded bytes are copied as they are, without decoding.
//! * **Re-encode**: otherwise the samples are decoded through the same merge the select path
//!   uses ([`SeriesIter`]: one sample per timestamp, the earlier input in block order wins,
//!   tombstoned intervals dropped) and encoded again into chunks of the configured size. Small
//!   chunks from many 2 h blocks become one large chunk, which is what makes bytes per sample
//!   fall with compaction.
//!
//! Because both paths produce exactly what a query over the inputs returns, a query gives the
//! same answer before and after a compaction.
//!
//! # Atomicity
//!
//! The output is written by [`BlockWriter`] (temp directory, fsync, rename) and names the
//! inputs as `compaction.parents`; only then are the inputs unlisted and removed
//! ([`TenantDb::replace_blocks`]). A crash before the rename leaves a `.tmp` directory that
//! opening the tenant removes; a crash after it leaves the inputs beside their replacement,
//! and opening the tenant removes the inputs. Every sample is readable exactly once either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_engine::Labels;
use strata_engine::TenantDb;
use strata_engine::block::{Block, BlockMeta, BlockWriter, BlockWriterOptions, ChunkMeta};
use strata_engine::chunk::{self, Encoding};
use strata_engine::db::add_series_samples;
use strata_engine::querier::{ChunkSource, SeriesIter};

use crate::{CompactionError, Result, Throttle};

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Ids of the input blocks.
    pub inputs: Vec<String>,
    /// The output block, `None` if every input sample was deleted (the inputs are then
    /// removed without a replacement).
    pub output: Option<BlockMeta>,
    /// Samples read from the inputs (before deduplication and tombstones).
    pub samples_in: u64,
    /// Samples written.
    pub samples_out: u64,
    /// Series whose chunks were copied without decoding.
    pub series_copied: u64,
    /// Series decoded and re-encoded.
    pub series_reencoded: u64,
    /// Bytes of chunk data written.
    pub chunk_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Tunables of a single merge.
#[derive(Clone, Debug)]
pub struct MergeOptions {
    /// Samples per output chunk when re-encoding.
    pub chunk_samples: usize,
    /// Chunk-data write rate limit in bytes per second (0: unlimited).
    pub max_write_bytes_per_sec: u64,
    /// Join small neighbouring chunks by re-encoding them (denser, but costs a decode and an
    /// encode per sample). The compactor asks for it only when writing a block of the top
    /// level, so each sample is re-encoded once on its way up, not at every level.
    pub rechunk: bool,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            chunk_samples: chunk::DEFAULT_BLOCK_CHUNK_SAMPLES,
            max_write_bytes_per_sec: 0,
            rechunk: true,
        }
    }
}

/// One input block's position in the merge.
struct Cursor {
    block: Arc<Block>,
    ids: roaring::bitmap::IntoIter,
    current: Option<(u32, Labels, Vec<ChunkMeta>)>,
}

impl Cursor {
    fn advance(&mut self) -> Result<()> {
        self.current = match self.ids.next() {
            Some(id) => {
                let (labels, chunks) = self.block.series(id)?;
                Some((id, labels, chunks))
            }
            None => None,
        };
        Ok(())
    }
}

/// Merges the loaded blocks `inputs` (ids, in any order) of `db` into one block covering
/// `[min_time, max_time]` (which must contain every input) and publishes it in place of the
/// inputs. The caller holds [`TenantDb::lock_maintenance`].
pub fn compact_blocks(
    db: &TenantDb,
    inputs: &[String],
    min_time: i64,
    max_time: i64,
    opts: &MergeOptions,
) -> Result<CompactionReport> {
    let started = Instant::now();
    let loaded = db.blocks();
    // Block order (min, max, id) is the order readers merge in; keep it.
    let blocks: Vec<Arc<Block>> = loaded
        .iter()
        .filter(|b| inputs.contains(&b.meta().id))
        .cloned()
        .collect();
    if let Some(missing) = inputs
        .iter()
        .find(|id| !blocks.iter().any(|b| &b.meta().id == *id))
    {
        return Err(CompactionError::UnknownBlock(missing.clone()));
    }
    if let Some(b) = blocks
        .iter()
        .find(|b| b.meta().min_time < min_time || b.meta().max_time > max_time)
    {
        return Err(CompactionError::RangeTooSmall {
            block: b.meta().id.clone(),
            min_time,
            max_time,
        });
    }
    if let Some(b) = blocks.iter().find(|b| b.meta().resolution_ms != 0) {
        return Err(CompactionError::Downsampled(b.meta().id.clone()));
    }
    let mut sources: Vec<String> = blocks
        .iter()
        .flat_map(|b| b.meta().compaction.sources.iter().cloned())
        .collect();
    sources.sort();
    sources.dedup();
    let level = blocks
        .iter()
        .map(|b| b.meta().compaction.level)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let mut writer = BlockWriter::create_with(
        db.dir(),
        BlockWriterOptions {
            level,
            sources,
            parents: inputs.to_vec(),
            ..BlockWriterOptions::new(min_time, max_time)
        },
    )?;
    let mut report = CompactionReport {
        inputs: inputs.to_vec(),
        ..CompactionReport::default()
    };
    let mut throttle = Throttle::new(opts.max_write_bytes_per_sec);
    merge_into(&blocks, &mut writer, opts, &mut report, &mut throttle)?;

    if writer.stats().num_series == 0 {
        // Everything was deleted: retire the inputs without a replacement.
        drop(writer);
        strata_engine::block::cleanup_incomplete(db.dir())?;
        db.retire_blocks(inputs)?;
    } else {
        let (_, path) = writer.finish()?;
        let meta = db.replace_blocks(&path, inputs)?;
        report.output = Some(meta);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn merge_into(
    blocks: &[Arc<Block>],
    writer: &mut BlockWriter,
    opts: &MergeOptions,
    report: &mut CompactionReport,
    throttle: &mut Throttle,
) -> Result<()> {
    let mut cursors = Vec::with_capacity(blocks.len());
    for b in blocks {
        let mut c = Cursor {
            block: b.clone(),
            ids: b.all_postings().into_iter(),
            current: None,
        };
        c.advance()?;
        cursors.push(c);
    }
    let chunk_samples = opts.chunk_samples.max(1);
    let mut parts: Vec<(usize, ChunkMeta)> = Vec::new();
    // Per input, the current series' tombstoned intervals in that input.
    let mut deleted: Vec<Vec<(i64, i64)>> = vec![Vec::new(); cursors.len()];
    // The cursor holding the smallest label set; cursors with equal labels hold the same
    // series. Its labels are moved out, not cloned.
    while let Some(first) = cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.current.as_ref().map(|(_, l, _)| (i, l)))
        .min_by(|a, b| a.1.cmp(b.1))
        .map(|(i, _)| i)
    {
        let labels = match cursors.get_mut(first).and_then(|c| c.current.as_mut()) {
            Some((_, l, _)) => std::mem::take(l),
            None => break,
        };
        parts.clear();
        deleted.iter_mut().for_each(Vec::clear);
        let mut touched = false;
        for (i, c) in cursors.iter_mut().enumerate() {
            let matches = i == first || c.current.as_ref().is_some_and(|(_, l, _)| *l == labels);
            if !matches {
                continue;
            }
            if let Some((id, _, chunks)) = c.current.take() {
                let dels = c.block.tombstones().intervals(id);
                touched |= chunks.iter().any(|m| {
                    dels.iter()
                        .any(|&(a, b)| a <= m.max_time && b >= m.min_time)
                });
                parts.extend(chunks.into_iter().map(|m| (i, m)));
                if let Some(d) = deleted.get_mut(i) {
                    d.extend_from_slice(dels);
                }
            }
            c.advance()?;
        }
        report.samples_in += parts
            .iter()
            .map(|(_, m)| u64::from(m.num_samples))
            .sum::<u64>();
        let written = if !touched && can_copy(&parts, chunk_samples, opts.rechunk) {
            report.series_copied += 1;
            copy_series(blocks, writer, &labels, &mut parts)?
        } else {
            report.series_reencoded += 1;
            reencode_series(blocks, writer, &labels, &parts, &deleted, chunk_samples)?
        };
        report.samples_out += written.0;
        report.chunk_bytes += written.1;
        throttle.wrote(written.1);
    }
    Ok(())
}

/// True if the series' chunks (untouched by tombstones) can be written as they are.
fn can_copy(parts: &[(usize, ChunkMeta)], chunk_samples: usize, rechunk: bool) -> bool {
    let mut spans: Vec<(i64, i64, u32)> = parts
        .iter()
        .map(|(_, m)| (m.min_time, m.max_time, m.num_samples))
        .collect();
    spans.sort_unstable();
    let disjoint = spans.windows(2).all(|w| w[1].0 > w[0].1);
    // Re-chunking pays when two neighbouring chunks would fit in one.
    let joinable = rechunk
        && spans
            .windows(2)
            .any(|w| (w[0].2 as usize).saturating_add(w[1].2 as usize) <= chunk_samples);
    disjoint && !joinable
}

fn copy_series(
    blocks: &[Arc<Block>],
    writer: &mut BlockWriter,
    labels: &Labels,
    parts: &mut [(usize, ChunkMeta)],
) -> Result<(u64, u64)> {
    parts.sort_unstable_by_key(|(_, m)| m.min_time);
    let mut data = Vec::with_capacity(parts.len());
    for (i, m) in parts.iter() {
        let b = blocks
            .get(*i)
            .ok_or(CompactionError::Internal("cursor index"))?;
        data.push(b.chunk(m)?);
    }
    let inputs: Vec<(i64, i64, u32, u8, &[u8])> = parts
        .iter()
        .zip(&data)
        .map(|((_, m), d)| {
            (
                m.min_time,
                m.max_time,
                m.num_samples,
                m.encoding,
                d.as_ref(),
            )
        })
        .collect();
    writer.add_series(labels, &inputs)?;
    let samples = parts.iter().map(|(_, m)| u64::from(m.num_samples)).sum();
    let bytes = data.iter().map(|d| d.len() as u64).sum();
    Ok((samples, bytes))
}

fn reencode_series(
    blocks: &[Arc<Block>],
    writer: &mut BlockWriter,
    labels: &Labels,
    parts: &[(usize, ChunkMeta)],
    deleted: &[Vec<(i64, i64)>],
    chunk_samples: usize,
) -> Result<(u64, u64)> {
    let mut sources = Vec::with_capacity(parts.len());
    for (i, m) in parts {
        let b = blocks
            .get(*i)
            .ok_or(CompactionError::Internal("cursor index"))?;
        let c = ChunkSource {
            min_time: m.min_time,
            max_time: m.max_time,
            encoding: Encoding::from_u8(m.encoding).map_err(strata_engine::Error::from)?,
            data: b.chunk(m)?,
            priority: 0,
        };
        // A block's tombstones apply to its own chunks only, as on the select path.
        let dels = deleted.get(*i).map_or(&[][..], Vec::as_slice);
        sources.extend(c.without_deleted(dels)?);
    }
    let mut it = SeriesIter::new(sources, Vec::new())?;
    let mut samples = Vec::new();
    while let Some(s) = it.next_sample() {
        samples.push(s);
    }
    if let Some(e) = it.take_err() {
        return Err(e.into());
    }
    if samples.is_empty() {
        return Ok((0, 0));
    }
    let bytes = add_series_samples(writer, labels, &samples, chunk_samples)?;
    Ok((samples.len() as u64, bytes))
}
