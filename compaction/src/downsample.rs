//! Downsampling: writes 5-minute and 1-hour resolution copies of old blocks so that long-range
//! queries read a few aggregate points per series and window instead of every raw sample.
//!
//! A downsampled block is an ordinary block with `resolution_ms` set and the same time range
//! and `compaction.sources` as the block it was made from. Each source series becomes six
//! series, told apart by the reserved label [`AGGR_LABEL`] (`count`, `counter`, `last`, `max`,
//! `min`, `sum`; see [`strata_engine::downsample`] and `docs/FORMAT.md`, "Downsampled
//! blocks"). Per window of the resolution (aligned to absolute multiples of it) that has
//! samples there is one point per aggregate, stamped with the timestamp of the window's last
//! raw sample; `counter` also starts with the block's first raw sample, so that a reader can
//! detect a counter reset at the block boundary.
//!
//! The 1-hour copy is made from the 5-minute copy when one with the same sources exists
//! (aggregates of aggregates: counts and sums add, min/max of min/max, the last `last` and
//! `counter`), which reads 12× fewer points than raw; otherwise from the raw block.
//!
//! # Streaming
//!
//! Series are processed one at a time: a source series is decoded once, its six aggregate
//! streams are computed (a few points per window) and encoded. The block writer needs series in
//! label order, and every `__aggr__="count"` series sorts before every `__aggr__="counter"`
//! one, so the `count` series go to the writer directly and the other five streams are spilled
//! to sequential files in a temporary directory (`<random-id>.tmp`, which the tenant's open
//! removes after a crash, like any unfinished block) and copied into the writer aggregate by
//! aggregate. Memory stays bounded by one series.
//!
//! # Locking and durability
//!
//! Everything runs under [`TenantDb::lock_maintenance`]. A new copy is written with
//! [`BlockWriter`] (temp directory, fsync, rename) and published with
//! [`TenantDb::replace_blocks`]; it names the older downsampled copies it supersedes (same
//! resolution, sources a subset of its own) as `compaction.parents`, so a crash between the
//! rename and their deletion is resolved when the tenant is opened.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_engine::block::{
    Block, BlockError, BlockMeta, BlockWriter, BlockWriterOptions, DEFAULT_SEGMENT_SIZE,
    TMP_SUFFIX, new_block_id,
};
use strata_engine::chunk::{self, Encoding};
use strata_engine::downsample::{AGGR_LABEL, Aggregate, RES_1H, RES_5M, without_aggr_label};
use strata_engine::{Label, Labels, SeriesIter, TenantDb};

/// Errors of downsampling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownsampleError {
    /// The engine failed (reading the source, publishing the result).
    #[error(transparent)]
    Engine(#[from] strata_engine::Error),
    /// Writing or reading a block failed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Encoding or decoding a chunk failed.
    #[error(transparent)]
    Chunk(#[from] chunk::ChunkError),
    /// A spill file could not be written or read.
    #[error("{op} {path}: {source}")]
    Spill {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The requested resolution cannot be made from the given block.
    #[error("cannot downsample block {block} (resolution {from} ms) to resolution {to} ms")]
    InvalidResolution {
        /// The source block.
        block: String,
        /// Its resolution.
        from: i64,
        /// The requested resolution.
        to: i64,
    },
}

/// Result alias for downsampling.
pub type Result<T, E = DownsampleError> = std::result::Result<T, E>;

/// When blocks get downsampled copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownsampleOptions {
    /// A block whose newest sample is this much older than the tenant's newest sample gets a
    /// 5-minute copy (ms; 0 disables). Default 40 h.
    pub after_5m_ms: i64,
    /// ... and a 1-hour copy (ms; 0 disables). Default 10 d.
    pub after_1h_ms: i64,
}

impl Default for DownsampleOptions {
    fn default() -> Self {
        DownsampleOptions {
            after_5m_ms: 40 * 3_600_000,
            after_1h_ms: 10 * 24 * 3_600_000,
        }
    }
}

/// The six aggregate streams of one series, each `(timestamp, value)` sorted by time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesAggregates {
    /// Samples per window.
    pub count: Vec<(i64, f64)>,
    /// Sum per window.
    pub sum: Vec<(i64, f64)>,
    /// Minimum per window.
    pub min: Vec<(i64, f64)>,
    /// Maximum per window.
    pub max: Vec<(i64, f64)>,
    /// The block's first raw sample, then the reset-adjusted value at each window's end.
    pub counter: Vec<(i64, f64)>,
    /// Raw value of each window's last sample.
    pub last: Vec<(i64, f64)>,
}

impl SeriesAggregates {
    /// The stream of a stored aggregate (`Avg` has none: empty).
    pub fn stream(&self, a: Aggregate) -> &[(i64, f64)] {
        match a {
            Aggregate::Count => &self.count,
            Aggregate::Sum => &self.sum,
            Aggregate::Min => &self.min,
            Aggregate::Max => &self.max,
            Aggregate::Counter => &self.counter,
            Aggregate::Last => &self.last,
            Aggregate::Avg => &[],
        }
    }

    fn stream_mut(&mut self, a: Aggregate) -> Option<&mut Vec<(i64, f64)>> {
        Some(match a {
            Aggregate::Count => &mut self.count,
            Aggregate::Sum => &mut self.sum,
            Aggregate::Min => &mut self.min,
            Aggregate::Max => &mut self.max,
            Aggregate::Counter => &mut self.counter,
            Aggregate::Last => &mut self.last,
            Aggregate::Avg => return None,
        })
    }

    /// True if there is no window.
    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
    }
}

/// Prometheus's staleness marker: not a sample, skipped by downsampling.
fn is_stale(v: f64) -> bool {
    v.to_bits() == 0x7ff0_0000_0000_0002
}

/// `max`/`min` as the PromQL functions compute them: NaN is replaced by any number.
fn pick(acc: f64, v: f64, is_max: bool) -> f64 {
    if acc.is_nan() || (is_max && v > acc) || (!is_max && v < acc) {
        v
    } else {
        acc
    }
}

/// Running aggregates of the current window.
#[derive(Clone, Copy, Debug)]
struct Acc {
    window: i64,
    t: i64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Acc {
    fn flush(self, out: &mut SeriesAggregates) {
        out.count.push((self.t, self.count));
        out.sum.push((self.t, self.sum));
        out.min.push((self.t, self.min));
        out.max.push((self.t, self.max));
        out.last.push((self.t, self.last));
        // The counter's first point is the block's first raw sample; a window whose only
        // sample it is needs no second point.
        if out.counter.last().is_none_or(|p| p.0 != self.t) {
            out.counter.push((self.t, self.counter));
        }
    }
}

/// Aggregates raw samples (sorted by time) into windows of `res` ms aligned to absolute
/// multiples of `res`. Staleness markers are skipped; the counter is reset-adjusted from the
/// first sample on (a value lower than its predecessor is a reset).
pub fn aggregate_raw(samples: impl IntoIterator<Item = (i64, f64)>, res: i64) -> SeriesAggregates {
    let res = res.max(1);
    let mut out = SeriesAggregates::default();
    let mut acc: Option<Acc> = None;
    let mut prev: Option<f64> = None;
    let mut offset = 0.0;
    for (t, v) in samples {
        if is_stale(v) {
            continue;
        }
        if let Some(p) = prev
            && v < p
        {
            offset += p;
        }
        let counter = v + offset;
        if prev.is_none() {
            out.counter.push((t, v));
        }
        prev = Some(v);
        let window = t.div_euclid(res);
        acc = Some(match acc {
            Some(a) if a.window == window => Acc {
                t,
                count: a.count + 1.0,
                sum: a.sum + v,
                min: pick(a.min, v, false),
                max: pick(a.max, v, true),
                counter,
                last: v,
                ..a
            },
            other => {
                if let Some(a) = other {
                    a.flush(&mut out);
                }
                Acc {
                    window,
                    t,
                    count: 1.0,
                    sum: v,
                    min: v,
                    max: v,
                    counter,
                    last: v,
                }
            }
        });
    }
    if let Some(a) = acc {
        a.flush(&mut out);
    }
    out
}

/// Aggregates the aggregate streams of a finer resolution into windows of `res` ms: counts and
/// sums add, min of mins, max of maxes, the window's last `last` and `counter` point; the
/// counter's leading raw point is kept. Points are matched by timestamp, so streams thinned by
/// tombstones stay consistent.
pub fn aggregate_aggregates(input: &SeriesAggregates, res: i64) -> SeriesAggregates {
    let res = res.max(1);
    let mut out = SeriesAggregates::default();
    // The counter's first point is the first raw sample; window points follow.
    if let Some(&first) = input.counter.first() {
        out.counter.push(first);
    }
    let mut acc: Option<Acc> = None;
    let (mut sums, mut mins, mut maxs, mut lasts, mut counters) = (
        Cursor::new(&input.sum),
        Cursor::new(&input.min),
        Cursor::new(&input.max),
        Cursor::new(&input.last),
        Cursor::new(&input.counter),
    );
    for &(t, count) in &input.count {
        let (Some(sum), Some(min), Some(max), Some(last), Some(counter)) = (
            sums.at(t),
            mins.at(t),
            maxs.at(t),
            lasts.at(t),
            counters.at(t),
        ) else {
            continue;
        };
        let window = t.div_euclid(res);
        acc = Some(match acc {
            Some(a) if a.window == window => Acc {
                t,
                count: a.count + count,
                sum: a.sum + sum,
                min: pick(a.min, min, false),
                max: pick(a.max, max, true),
                counter,
                last,
                ..a
            },
            other => {
                if let Some(a) = other {
                    a.flush(&mut out);
                }
                Acc {
                    window,
                    t,
                    count,
                    sum,
                    min,
                    max,
                    counter,
                    last,
                }
            }
        });
    }
    if let Some(a) = acc {
        a.flush(&mut out);
    }
    out
}

/// Walks a time-sorted stream, answering "the value at `t`" for ascending `t`.
struct Cursor<'a> {
    points: &'a [(i64, f64)],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(points: &'a [(i64, f64)]) -> Self {
        Cursor { points, i: 0 }
    }

    fn at(&mut self, t: i64) -> Option<f64> {
        while self.points.get(self.i).is_some_and(|p| p.0 < t) {
            self.i += 1;
        }
        self.points.get(self.i).filter(|p| p.0 == t).map(|p| p.1)
    }
}

/// A chunk ready for the block writer: `(min_time, max_time, samples, encoding, bytes)`.
type Encoded = (i64, i64, u32, u8, Vec<u8>);

/// Encodes a stream into block chunks of at most [`chunk::DEFAULT_BLOCK_CHUNK_SAMPLES`] points.
/// Gorilla is used where it can hold the run: downsampled streams are already 5–60× smaller
/// than raw data, and Gorilla decodes several times faster than the range coder, which is what
/// long-range queries pay for.
fn encode_stream(points: &[(i64, f64)]) -> Result<Vec<Encoded>> {
    let mut out = Vec::new();
    for c in points.chunks(chunk::DEFAULT_BLOCK_CHUNK_SAMPLES) {
        let (Some(first), Some(last)) = (c.first(), c.last()) else {
            continue;
        };
        let bytes = chunk::encode(Encoding::Gorilla, c)?;
        out.push((
            first.0,
            last.0,
            c.len() as u32,
            Encoding::Gorilla.as_u8(),
            bytes,
        ));
    }
    Ok(out)
}

fn with_aggr(labels: &Labels, a: Aggregate) -> Labels {
    let mut v: Vec<Label> = labels.iter().cloned().collect();
    v.push(Label::new(AGGR_LABEL, a.name()));
    v.sort_by(|x, y| x.name.cmp(&y.name));
    Labels::from_sorted(v)
}

fn add(writer: &mut BlockWriter, labels: &Labels, chunks: &[Encoded]) -> Result<()> {
    let refs: Vec<(i64, i64, u32, u8, &[u8])> = chunks
        .iter()
        .map(|(a, b, n, e, d)| (*a, *b, *n, *e, d.as_slice()))
        .collect();
    writer.add_series(labels, &refs)?;
    Ok(())
}

/// Sequential spill of encoded series of one aggregate, in label order. Internal to one
/// downsampling run (removed when it ends), so it has no version: `u32 LE` label count, per
/// label `u32 LE` length + bytes for name and value, `u32 LE` chunk count, per chunk
/// `i64 LE min | i64 LE max | u32 LE samples | u8 encoding | u32 LE length | bytes`.
struct Spill {
    path: PathBuf,
    out: BufWriter<fs::File>,
}

fn spill_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DownsampleError {
    let path = path.to_path_buf();
    move |source| DownsampleError::Spill { op, path, source }
}

impl Spill {
    fn create(path: PathBuf) -> Result<Spill> {
        let f = fs::File::create(&path).map_err(spill_err("create spill file", &path))?;
        Ok(Spill {
            out: BufWriter::new(f),
            path,
        })
    }

    fn write(&mut self, labels: &Labels, chunks: &[Encoded]) -> Result<()> {
        let mut buf = Vec::new();
        let put = |buf: &mut Vec<u8>, b: &[u8]| {
            buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
            buf.extend_from_slice(b);
        };
        buf.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        for l in labels.iter() {
            put(&mut buf, l.name.as_bytes());
            put(&mut buf, l.value.as_bytes());
        }
        buf.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for (a, b, n, e, d) in chunks {
            buf.extend_from_slice(&a.to_le_bytes());
            buf.extend_from_slice(&b.to_le_bytes());
            buf.extend_from_slice(&n.to_le_bytes());
            buf.push(*e);
            put(&mut buf, d);
        }
        self.out
            .write_all(&buf)
            .map_err(spill_err("write spill file", &self.path))
    }

    /// Flushes and replays every record into `f`.
    fn replay(self, mut f: impl FnMut(Labels, Vec<Encoded>) -> Result<()>) -> Result<()> {
        let Spill { path, out } = self;
        let file = out
            .into_inner()
            .map_err(|e| spill_err("flush spill file", &path)(e.into_error()))?;
        drop(file);
        let f_in = fs::File::open(&path).map_err(spill_err("open spill file", &path))?;
        let mut r = BufReader::new(f_in);
        let rd = |r: &mut BufReader<fs::File>, n: usize| -> Result<Vec<u8>> {
            let mut b = vec![0u8; n];
            r.read_exact(&mut b)
                .map_err(spill_err("read spill file", &path))?;
            Ok(b)
        };
        let u32_at = |b: &[u8]| -> u32 {
            let mut a = [0u8; 4];
            a.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(a)
        };
        let i64_at = |b: &[u8]| -> i64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
            i64::from_le_bytes(a)
        };
        loop {
            let mut head = [0u8; 4];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(spill_err("read spill file", &path)(e)),
            }
            let n_labels = u32::from_le_bytes(head);
            let mut labels = Vec::with_capacity(n_labels.min(1024) as usize);
            for _ in 0..n_labels {
                let ln = u32_at(&rd(&mut r, 4)?) as usize;
                let name = String::from_utf8_lossy(&rd(&mut r, ln)?).into_owned();
                let lv = u32_at(&rd(&mut r, 4)?) as usize;
                let value = String::from_utf8_lossy(&rd(&mut r, lv)?).into_owned();
                labels.push(Label::new(name, value));
            }
            let n_chunks = u32_at(&rd(&mut r, 4)?);
            let mut chunks = Vec::with_capacity(n_chunks.min(1024) as usize);
            for _ in 0..n_chunks {
                let h = rd(&mut r, 8 + 8 + 4 + 1 + 4)?;
                let (a, b) = (i64_at(&h), i64_at(h.get(8..).unwrap_or(&[])));
                let n = u32_at(h.get(16..).unwrap_or(&[]));
                let e = h.get(20).copied().unwrap_or(0);
                let len = u32_at(h.get(21..).unwrap_or(&[])) as usize;
                chunks.push((a, b, n, e, rd(&mut r, len)?));
            }
            f(Labels::from_sorted(labels), chunks)?;
        }
        Ok(())
    }
}

/// Removes its directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove downsampling spill directory");
        }
    }
}

/// Decodes one series of `block` (tombstones applied) in full.
fn decode_series(block: &Block, id: u32) -> Result<(Labels, Vec<(i64, f64)>)> {
    let (labels, metas) = block.series(id)?;
    let mut chunks = Vec::with_capacity(metas.len());
    for m in &metas {
        chunks.push(strata_engine::querier::ChunkSource {
            min_time: m.min_time,
            max_time: m.max_time,
            encoding: Encoding::from_u8(m.encoding)?,
            data: block.chunk(m)?,
            priority: 0,
        });
    }
    let mut it = SeriesIter::new(chunks, block.tombstones().intervals(id).to_vec())?;
    let mut out = Vec::new();
    while let Some(s) = it.next_sample() {
        out.push(s);
    }
    if let Some(e) = it.take_err() {
        return Err(e.into());
    }
    Ok((labels, out))
}

/// Writes the `res` copy of `block` into `parent` (not published) with `parents` recorded as
/// the blocks it replaces. `block` is raw or of a finer resolution that divides `res`.
pub fn write_downsampled(
    parent: &Path,
    block: &Block,
    res: i64,
    parents: Vec<String>,
) -> Result<(BlockMeta, PathBuf)> {
    let meta = block.meta();
    let from = meta.resolution_ms;
    if res <= 0 || from >= res || (from > 0 && res % from != 0) {
        return Err(DownsampleError::InvalidResolution {
            block: meta.id.clone(),
            from,
            to: res,
        });
    }
    let mut writer = BlockWriter::create_with(
        parent,
        BlockWriterOptions {
            min_time: meta.min_time,
            max_time: meta.max_time,
            level: meta.compaction.level,
            sources: meta.compaction.sources.clone(),
            parents,
            resolution_ms: res,
            segment_size: DEFAULT_SEGMENT_SIZE,
        },
    )?;
    let spill_dir = TempDir(parent.join(format!("{}{TMP_SUFFIX}", new_block_id())));
    fs::create_dir_all(&spill_dir.0).map_err(spill_err("create spill dir", &spill_dir.0))?;
    // `count` sorts first and goes straight to the writer; the rest are spilled.
    let order = Aggregate::STORED;
    let mut spills = Vec::with_capacity(order.len());
    for a in order.iter().skip(1) {
        spills.push((*a, Spill::create(spill_dir.0.join(a.name()))?));
    }
    let mut emit = |labels: &Labels, aggs: &SeriesAggregates| -> Result<()> {
        if aggs.is_empty() {
            return Ok(());
        }
        add(
            &mut writer,
            &with_aggr(labels, Aggregate::Count),
            &encode_stream(&aggs.count)?,
        )?;
        for (a, spill) in &mut spills {
            spill.write(&with_aggr(labels, *a), &encode_stream(aggs.stream(*a))?)?;
        }
        Ok(())
    };
    if from == 0 {
        for id in block.all_postings().iter() {
            let (labels, samples) = decode_series(block, id)?;
            emit(&labels, &aggregate_raw(samples, res))?;
        }
    } else {
        // The six streams of one source series are found by walking the six postings lists
        // together: within one aggregate, ids ascend in the order of the labels without it.
        let mut lists = Vec::new();
        for a in order {
            let ids: Vec<u32> = block.postings(AGGR_LABEL, a.name())?.iter().collect();
            lists.push((a, ids.into_iter().peekable()));
        }
        loop {
            let mut cur: Option<(Labels, SeriesAggregates)> = None;
            // The smallest next label set among the lists.
            let mut min: Option<Labels> = None;
            for (_, ids) in &mut lists {
                if let Some(&id) = ids.peek() {
                    let l = without_aggr_label(block.series(id)?.0);
                    if min.as_ref().is_none_or(|m| l < *m) {
                        min = Some(l);
                    }
                }
            }
            let Some(min) = min else { break };
            for (a, ids) in &mut lists {
                let Some(&id) = ids.peek() else { continue };
                if without_aggr_label(block.series(id)?.0) != min {
                    continue;
                }
                ids.next();
                let (_, samples) = decode_series(block, id)?;
                let entry = cur.get_or_insert_with(|| (min.clone(), SeriesAggregates::default()));
                if let Some(s) = entry.1.stream_mut(*a) {
                    *s = samples;
                }
            }
            if let Some((labels, input)) = cur {
                emit(&labels, &aggregate_aggregates(&input, res))?;
            }
        }
    }
    for (_, spill) in spills {
        spill.replay(|labels, chunks: Vec<Encoded>| add(&mut writer, &labels, &chunks))?;
    }
    let out = writer.finish()?;
    drop(spill_dir);
    Ok(out)
}

fn is_subset(a: &[String], b: &[String]) -> bool {
    let b: BTreeSet<&String> = b.iter().collect();
    a.iter().all(|x| b.contains(x))
}

/// Writes and publishes the `resolution_ms` copy of `block`, replacing loaded copies of that
/// resolution whose sources it covers. Takes the tenant's maintenance lock.
pub fn downsample_block(db: &TenantDb, block: &Block, resolution_ms: i64) -> Result<BlockMeta> {
    let _maint = db.lock_maintenance();
    downsample_locked(db, block, resolution_ms)
}

fn downsample_locked(db: &TenantDb, block: &Block, res: i64) -> Result<BlockMeta> {
    let sources = &block.meta().compaction.sources;
    let parents: Vec<String> = db
        .block_metas()
        .into_iter()
        .filter(|m| m.resolution_ms == res && is_subset(&m.compaction.sources, sources))
        .map(|m| m.id)
        .collect();
    let started = std::time::Instant::now();
    let (meta, path) = write_downsampled(db.dir(), block, res, parents.clone())?;
    let published = db.replace_blocks(&path, &parents)?;
    tracing::info!(
        tenant = %db.id(),
        source = %block.meta().id,
        block = %meta.id,
        resolution_ms = res,
        series = meta.stats.num_series,
        points = meta.stats.num_samples,
        replaced = parents.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "wrote downsampled block"
    );
    Ok(published)
}

/// Downsamples every block that is due: for each resolution (5 m, then 1 h), blocks whose
/// newest sample is older than the threshold — measured against the tenant's newest sample,
/// like retention — and whose sources no block of that resolution covers yet. The 1-hour copy
/// is made from the 5-minute copy of the same sources where there is one. Returns the new
/// blocks.
pub fn downsample_due(db: &TenantDb, opts: &DownsampleOptions) -> Result<Vec<BlockMeta>> {
    let _maint = db.lock_maintenance();
    let mut out = Vec::new();
    for (res, after) in [(RES_5M, opts.after_5m_ms), (RES_1H, opts.after_1h_ms)] {
        if after <= 0 {
            continue;
        }
        let blocks: Vec<Arc<Block>> = db.blocks();
        let newest = blocks
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .unwrap_or(i64::MIN)
            .max(db.head().max_time());
        if newest == i64::MIN {
            continue;
        }
        let cutoff = newest.saturating_sub(after);
        let mut done: Vec<Vec<String>> = blocks
            .iter()
            .filter(|b| b.meta().resolution_ms == res)
            .map(|b| b.meta().compaction.sources.clone())
            .collect();
        // Coarsest candidate first, so that a 5 m copy is preferred over its raw block.
        let mut candidates: Vec<&Arc<Block>> = blocks
            .iter()
            .filter(|b| {
                let m = b.meta();
                m.resolution_ms < res
                    && (m.resolution_ms == 0 || res % m.resolution_ms == 0)
                    && m.max_time < cutoff
            })
            .collect();
        candidates.sort_by_key(|b| std::cmp::Reverse(b.meta().resolution_ms));
        for b in candidates {
            let sources = &b.meta().compaction.sources;
            if done.iter().any(|d| is_subset(sources, d)) {
                continue;
            }
            let meta = downsample_locked(db, b, res)?;
            done.push(meta.compaction.sources.clone());
            out.push(meta);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
