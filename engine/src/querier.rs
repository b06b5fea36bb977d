//! The select path: matchers + time range → sorted series with merged sample iterators.
//!
//! A [`Querier`] is a consistent view of one tenant: the head plus the blocks that existed when
//! it was created (blocks are reference-counted, so a block retired by a later cut or
//! compaction stays readable until the querier is dropped).
//!
//! # Resolving matchers
//!
//! Matchers are answered from postings: a matcher that rejects the empty value (`job="api"`,
//! `job=~"a.+"`) contributes the union of the postings of the values it accepts, and these are
//! intersected; a matcher that accepts the empty value (`job!="api"`, `job=""`, `job=~".*"`)
//! also selects series lacking the label, so it is applied by subtracting the postings of the
//! values it rejects. With no restricting matcher the start set is all series.
//!
//! # Merging
//!
//! A series may have chunks in several blocks, in the head and in the head's out-of-order
//! buffer. [`SeriesIter`] sorts the chunks by start time, streams chunks that do not overlap any
//! other straight from their decoder (the common case), and decodes and merges groups of
//! overlapping chunks, keeping one sample per timestamp: the one from the highest-priority
//! source (in-order data before out-of-order data, then source order). Deleted intervals apply
//! to their own source only: a block's tombstones to that block's chunks, the head's deleted
//! intervals to head chunks ([`ChunkSource::without_deleted`]), so samples written later into
//! a deleted range by another source (a backfill) stay visible.

use std::sync::Arc;

use bytes::Bytes;
use roaring::RoaringBitmap;

use crate::block::Block;
use crate::chunk::{ChunkIter, Encoding};
use crate::downsample::{
    AGGR_LABEL, Aggregate, StitchPoint, is_stale_marker, resolution_allowed, stitch,
};
use crate::error::{Error, Result};
use crate::head::{Head, HeadChunk};
use crate::labels::{Labels, MatchOp, Matcher};

/// Hints from the query layer about how the selected data will be used. Storage may use them
/// to skip data or read downsampled blocks; the answer to the select itself does not change.
#[derive(Clone, Debug, Default)]
pub struct SelectHints {
    /// Evaluation start of the query (ms).
    pub start_ms: i64,
    /// Evaluation end of the query (ms).
    pub end_ms: i64,
    /// Step of a range query (ms), 0 for instant queries.
    pub step_ms: i64,
    /// Range of the enclosing range selector (ms), 0 if none.
    pub range_ms: i64,
    /// Function applied to the selection, if any (e.g. `rate`).
    pub func: Option<String>,
    /// The coarsest downsampling resolution (ms) the selection may read: `None` lets the
    /// querier choose (the coarsest that serves the function, step and range), `Some(0)` forces
    /// raw samples. See [`crate::downsample::resolution_allowed`].
    pub max_resolution_ms: Option<i64>,
}

/// Resolves matchers over an index given three accessors: all postings, postings of the values
/// of a label satisfying a predicate, and postings of one exact pair.
pub(crate) fn resolve_postings(
    matchers: &[Matcher],
    all: impl Fn() -> RoaringBitmap,
    matching: impl Fn(&Matcher, &dyn Fn(&str) -> bool) -> RoaringBitmap,
) -> RoaringBitmap {
    let mut result: Option<RoaringBitmap> = None;
    let mut subtract = Vec::new();
    // Most selective first: equality matchers, then regexes.
    let mut ordered: Vec<&Matcher> = matchers.iter().collect();
    ordered.sort_by_key(|m| match m.op {
        MatchOp::Equal => 0,
        MatchOp::Regex => 1,
        MatchOp::NotEqual => 2,
        MatchOp::NotRegex => 3,
    });
    for m in ordered {
        if result.as_ref().is_some_and(RoaringBitmap::is_empty) {
            return RoaringBitmap::new();
        }
        if !m.matches_empty() {
            let bm = matching(m, &|v| m.matches(v));
            result = Some(match result {
                None => bm,
                Some(r) => r & bm,
            });
        } else {
            subtract.push(matching(m, &|v| !m.matches(v)));
        }
    }
    let mut result = result.unwrap_or_else(all);
    for s in subtract {
        result -= s;
    }
    result
}

/// Resolves matchers against a block's index.
pub(crate) fn block_postings(block: &Block, matchers: &[Matcher]) -> Result<RoaringBitmap> {
    let failed = std::cell::RefCell::new(None);
    let bm = resolve_postings(
        matchers,
        || block.all_postings(),
        |m, pred| {
            let mut out = RoaringBitmap::new();
            if m.op == MatchOp::Equal {
                match block.postings(&m.name, &m.value) {
                    Ok(p) => return p,
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(e);
                        return out;
                    }
                }
            }
            let values = match block.label_values(&m.name) {
                Ok(v) => v,
                Err(e) => {
                    failed.borrow_mut().get_or_insert(e);
                    return out;
                }
            };
            for v in values.iter().filter(|v| pred(v)) {
                match block.postings(&m.name, v) {
                    Ok(p) => out |= p,
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(e);
                    }
                }
            }
            out
        },
    );
    match failed.into_inner() {
        Some(e) => Err(e.into()),
        None => Ok(bm),
    }
}

/// One chunk of a series, from any source.
#[derive(Clone, Debug)]
pub struct ChunkSource {
    /// First timestamp.
    pub min_time: i64,
    /// Last timestamp.
    pub max_time: i64,
    /// Encoding of `data`.
    pub encoding: Encoding,
    /// Encoded bytes (zero-copy for block chunks).
    pub data: Bytes,
    /// Merge priority on equal timestamps: lower wins (0 = in-order data, 1 = out-of-order).
    pub priority: u8,
}

impl ChunkSource {
    /// Applies tombstoned intervals (inclusive ms) to this chunk: unchanged if none touches
    /// it, otherwise decoded, filtered and re-encoded in memory (tombstones are rare and
    /// compaction removes them), `None` if nothing is left. Tombstones of a block apply to that
    /// block's chunks only, so samples written after a deletion (a later backfill into the same
    /// range) stay visible.
    pub fn without_deleted(self, deleted: &[(i64, i64)]) -> Result<Option<ChunkSource>> {
        if !deleted
            .iter()
            .any(|&(a, b)| a <= self.max_time && b >= self.min_time)
        {
            return Ok(Some(self));
        }
        // Wholly inside one interval: nothing to decode.
        if deleted
            .iter()
            .any(|&(a, b)| a <= self.min_time && self.max_time <= b)
        {
            return Ok(None);
        }
        let mut samples = crate::chunk::decode_all(self.encoding, self.data)?;
        samples.retain(|&(t, _)| !deleted.iter().any(|&(a, b)| t >= a && t <= b));
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Ok(None);
        };
        let (min_time, max_time) = (first.0, last.0);
        // The chunk lives for one query: encode it fast (Gorilla), not small, unless it holds
        // more samples than a Gorilla chunk can.
        let (encoding, data) = if samples.len() <= crate::chunk::GORILLA_MAX_SAMPLES {
            let mut app = crate::chunk::GorillaAppender::new();
            for &(t, v) in &samples {
                app.append(t, v);
            }
            (Encoding::Gorilla, app.finish().into_vec())
        } else {
            crate::chunk::encode_best(&samples)
        };
        Ok(Some(ChunkSource {
            min_time,
            max_time,
            encoding,
            data: Bytes::from(data),
            priority: self.priority,
        }))
    }

    fn from_head(c: &HeadChunk, ooo: bool) -> Self {
        ChunkSource {
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: Encoding::Gorilla,
            data: c.data.clone(),
            priority: u8::from(ooo),
        }
    }
}

/// `(timestamp, value, weight)`: a point of a downsampled stream (see
/// [`Series::into_weighted`]).
pub type WeightedPoint = (i64, f64, f64);

/// A selected series: its labels and its chunks overlapping the selected range.
///
/// A series read (partly) from downsampled blocks carries the aggregate it yields
/// ([`Series::aggregate`]); its samples are then that aggregate's stream, stitched from
/// downsampled blocks and raw data, decoded when the series is iterated.
#[derive(Clone, Debug)]
pub struct Series {
    labels: Labels,
    chunks: Vec<ChunkSource>,
    deleted: Vec<(i64, i64)>,
    downsampled: Option<Box<DownsampledParts>>,
}

/// The downsampled pieces of a series: per downsampled block, the chunks of the aggregate and
/// (for counters and averages) of its companion stream.
#[derive(Clone, Debug)]
struct DownsampledParts {
    aggregate: Aggregate,
    resolution_ms: i64,
    mint: i64,
    maxt: i64,
    blocks: Vec<DsBlockPart>,
}

#[derive(Clone, Debug)]
struct DsBlockPart {
    /// Index of the block in the querier's block list (identifies the counter domain).
    block: usize,
    main: Vec<ChunkSource>,
    /// `last` for counters, `count` for averages.
    companion: Vec<ChunkSource>,
    deleted: Vec<(i64, i64)>,
}

impl Series {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The series' raw chunks (unordered, possibly overlapping).
    pub fn chunks(&self) -> &[ChunkSource] {
        &self.chunks
    }

    /// The aggregate this series' samples are, if it was read from downsampled blocks;
    /// `None` for raw samples.
    pub fn aggregate(&self) -> Option<Aggregate> {
        self.downsampled.as_ref().map(|d| d.aggregate)
    }

    /// The coarsest resolution (ms) among the data read for this series; 0 for raw.
    pub fn resolution_ms(&self) -> i64 {
        self.downsampled.as_ref().map_or(0, |d| d.resolution_ms)
    }

    /// An iterator over the merged, deduplicated samples, ascending by timestamp. The caller
    /// bounds it to the selected range with `seek` and by checking timestamps; chunks may hold
    /// samples outside the range. For a downsampled series the samples are the aggregate's
    /// stream (for [`Aggregate::Avg`], the sums; see [`Series::into_weighted`]).
    pub fn iter(&self) -> Result<SeriesIter> {
        self.clone().into_parts().map(|p| p.1)
    }

    /// Consumes the series into its labels and a sample iterator, without copying either.
    pub fn into_parts(self) -> Result<(Labels, SeriesIter)> {
        if self.downsampled.is_some() {
            let (labels, pts) = self.into_weighted()?;
            let merged = pts.into_iter().map(|(t, v, _)| (t, v)).collect();
            return Ok((labels, SeriesIter::from_samples(merged)));
        }
        let it = SeriesIter::new(self.chunks, self.deleted)?;
        Ok((self.labels, it))
    }

    /// Consumes the series into its labels and `(t, value, weight)` points in `[mint, maxt]`
    /// of the selection: for [`Aggregate::Avg`] value is a sum and weight the number of raw
    /// samples it sums; otherwise weight is 1. Raw samples map into the aggregate's domain
    /// (count → 1, counter → continued reset-adjusted value, others → the value); staleness
    /// markers are kept only for [`Aggregate::Last`].
    pub fn into_weighted(self) -> Result<(Labels, Vec<WeightedPoint>)> {
        let Some(ds) = self.downsampled else {
            let mut it = SeriesIter::new(self.chunks, self.deleted)?;
            let mut out = Vec::new();
            while let Some((t, v)) = it.next_sample() {
                out.push((t, v, 1.0));
            }
            if let Some(e) = it.take_err() {
                return Err(e);
            }
            return Ok((self.labels, out));
        };
        let aggr = ds.aggregate;
        let (mint, maxt) = (ds.mint, ds.maxt);
        let mut pts: Vec<StitchPoint> = Vec::new();
        for part in ds.blocks {
            let main = decode_range(part.main, part.deleted.clone(), mint, maxt)?;
            let companion = if part.companion.is_empty() {
                Vec::new()
            } else {
                decode_range(part.companion, part.deleted, mint, maxt)?
            };
            let mut ci = 0usize;
            for (t, v) in main {
                // The companion stream has a point at every window point of the main stream
                // (the counter's extra first point has none: there the raw value is the value).
                while companion.get(ci).is_some_and(|c| c.0 < t) {
                    ci += 1;
                }
                let comp = companion.get(ci).filter(|c| c.0 == t).map(|c| c.1);
                let (raw, weight) = match aggr {
                    Aggregate::Counter => (comp.unwrap_or(v), 1.0),
                    Aggregate::Avg => match comp {
                        Some(n) => (v, n),
                        None => continue,
                    },
                    _ => (v, 1.0),
                };
                pts.push(StitchPoint {
                    t,
                    value: v,
                    raw,
                    weight,
                    segment: Some(part.block),
                });
            }
        }
        let keep_stale = aggr == Aggregate::Last;
        for (t, v) in decode_range(self.chunks, self.deleted, mint, maxt)? {
            if !keep_stale && is_stale_marker(v) {
                continue;
            }
            let value = if aggr == Aggregate::Count { 1.0 } else { v };
            pts.push(StitchPoint {
                t,
                value,
                raw: v,
                weight: 1.0,
                segment: None,
            });
        }
        // Parts are disjoint in time; a stable sort keeps each part's order.
        pts.sort_by_key(|p| p.t);
        pts.dedup_by_key(|p| p.t);
        Ok((self.labels, stitch(aggr, &pts)))
    }

    /// Decodes all samples in `[mint, maxt]`.
    pub fn samples(&self, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>> {
        self.iter()?.collect_range(mint, maxt)
    }
}

enum Segment {
    Chunk(ChunkSource),
    Merged(Vec<(i64, f64)>),
}

impl Segment {
    fn max_time(&self) -> i64 {
        match self {
            Segment::Chunk(c) => c.max_time,
            Segment::Merged(v) => v.last().map_or(i64::MIN, |s| s.0),
        }
    }
}

enum Active {
    Chunk(Box<ChunkIter>),
    Merged(Vec<(i64, f64)>, usize),
}

/// Iterator over the merged samples of one series.
pub struct SeriesIter {
    segments: std::vec::IntoIter<Segment>,
    active: Option<Active>,
    /// Deleted intervals, sorted and merged.
    deleted: Vec<(i64, i64)>,
    /// First interval of `deleted` that may still hold a later sample (samples come in
    /// ascending time, so it only moves forward).
    del_pos: usize,
    cur: Option<(i64, f64)>,
    err: Option<Error>,
}

impl SeriesIter {
    /// Builds an iterator over samples already decoded (sorted by time).
    pub fn from_samples(samples: Vec<(i64, f64)>) -> Self {
        SeriesIter {
            segments: vec![Segment::Merged(samples)].into_iter(),
            active: None,
            deleted: Vec::new(),
            del_pos: 0,
            cur: None,
            err: None,
        }
    }

    /// Builds an iterator over head chunks `(chunk, is_ooo)`, skipping the `deleted`
    /// intervals.
    pub fn from_head(chunks: &[(HeadChunk, bool)], deleted: Vec<(i64, i64)>) -> Result<Self> {
        SeriesIter::new(
            chunks
                .iter()
                .map(|(c, ooo)| ChunkSource::from_head(c, *ooo))
                .collect(),
            deleted,
        )
    }

    /// Builds an iterator over arbitrary chunks and tombstoned intervals.
    pub fn new(mut chunks: Vec<ChunkSource>, deleted: Vec<(i64, i64)>) -> Result<Self> {
        chunks.sort_by(|a, b| {
            a.min_time
                .cmp(&b.min_time)
                .then(a.priority.cmp(&b.priority))
        });
        let mut segments = Vec::with_capacity(chunks.len());
        let mut group: Vec<ChunkSource> = Vec::new();
        let mut group_max = i64::MIN;
        for c in chunks {
            if !group.is_empty() && c.min_time > group_max {
                segments.push(flush_group(std::mem::take(&mut group))?);
            }
            group_max = if group.is_empty() {
                c.max_time
            } else {
                group_max.max(c.max_time)
            };
            group.push(c);
        }
        if !group.is_empty() {
            segments.push(flush_group(group)?);
        }
        Ok(SeriesIter {
            segments: segments.into_iter(),
            active: None,
            deleted: normalize_intervals(deleted),
            del_pos: 0,
            cur: None,
            err: None,
        })
    }

    /// True if `t` is deleted. Calls must come with non-decreasing `t`.
    fn is_deleted(&mut self, t: i64) -> bool {
        while let Some(&(_, b)) = self.deleted.get(self.del_pos) {
            if b >= t {
                break;
            }
            self.del_pos += 1;
        }
        self.deleted.get(self.del_pos).is_some_and(|&(a, _)| a <= t)
    }

    fn activate(&mut self, seg: Segment) -> bool {
        match seg {
            Segment::Chunk(c) => match ChunkIter::new(c.encoding, c.data) {
                Ok(it) => {
                    self.active = Some(Active::Chunk(Box::new(it)));
                    true
                }
                Err(e) => {
                    self.err = Some(e.into());
                    false
                }
            },
            Segment::Merged(v) => {
                self.active = Some(Active::Merged(v, 0));
                true
            }
        }
    }

    fn raw_next(&mut self) -> Option<(i64, f64)> {
        loop {
            if self.err.is_some() {
                return None;
            }
            match self.active.as_mut() {
                Some(Active::Chunk(it)) => {
                    if let Some(s) = it.next_sample() {
                        return Some(s);
                    }
                    if let Some(e) = it.take_err() {
                        self.err = Some(Error::Chunk(e));
                        return None;
                    }
                }
                Some(Active::Merged(v, i)) => {
                    if let Some(&s) = v.get(*i) {
                        *i += 1;
                        return Some(s);
                    }
                }
                None => {}
            }
            self.active = None;
            let seg = self.segments.next()?;
            if !self.activate(seg) {
                return None;
            }
        }
    }

    /// The next sample, or `None` at the end or on error (see [`SeriesIter::take_err`]).
    pub fn next_sample(&mut self) -> Option<(i64, f64)> {
        loop {
            let s = self.raw_next();
            match s {
                Some((t, _)) if !self.deleted.is_empty() && self.is_deleted(t) => continue,
                _ => {
                    self.cur = s;
                    return s;
                }
            }
        }
    }

    /// Advances to the first sample with timestamp ≥ `t` and returns it. Never moves backwards:
    /// if the current sample already satisfies the bound it is returned again.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        if let Some(c) = self.cur
            && c.0 >= t
        {
            return Some(c);
        }
        // Skip whole segments that end before t.
        if self.active.is_none() {
            loop {
                let seg = self.segments.next()?;
                if seg.max_time() >= t {
                    if !self.activate(seg) {
                        return None;
                    }
                    break;
                }
            }
        }
        let mut sought = None;
        match self.active.as_mut() {
            Some(Active::Chunk(it)) => {
                sought = it.seek(t);
                if sought.is_none()
                    && let Some(e) = it.take_err()
                {
                    self.err = Some(Error::Chunk(e));
                    return None;
                }
            }
            Some(Active::Merged(v, i)) => {
                let rest = v.get(*i..).unwrap_or(&[]);
                *i += rest.partition_point(|s| s.0 < t);
            }
            None => {}
        }
        if let Some(s) = sought
            && (self.deleted.is_empty() || !self.is_deleted(s.0))
        {
            self.cur = Some(s);
            return Some(s);
        }
        loop {
            let s = self.next_sample()?;
            if s.0 >= t {
                return Some(s);
            }
        }
    }

    /// The error that ended iteration early, if any.
    pub fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }

    /// Collects the samples in `[mint, maxt]`, or the error that ended iteration.
    pub fn collect_range(mut self, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>> {
        let mut out = Vec::new();
        let mut cur = self.seek(mint);
        while let Some(s) = cur {
            if s.0 > maxt {
                break;
            }
            out.push(s);
            cur = self.next_sample();
        }
        match self.err.take() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Sorts intervals and merges overlapping and adjacent ones (the intervals of a merged series
/// come from several sources).
fn normalize_intervals(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    if v.len() < 2 {
        return v;
    }
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Decodes the samples of `chunks` (minus `deleted`) in `[mint, maxt]`.
fn decode_range(
    chunks: Vec<ChunkSource>,
    deleted: Vec<(i64, i64)>,
    mint: i64,
    maxt: i64,
) -> Result<Vec<(i64, f64)>> {
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    if let ([c], true) = (chunks.as_slice(), deleted.is_empty()) {
        // One chunk, nothing masked: decode it directly.
        let mut it = ChunkIter::new(c.encoding, c.data.clone())?;
        let mut out = Vec::with_capacity(it.num_samples().min(1 << 16));
        let mut cur = it.seek(mint);
        while let Some(s) = cur {
            if s.0 > maxt {
                break;
            }
            out.push(s);
            cur = it.next_sample();
        }
        if let Some(e) = it.take_err() {
            return Err(e.into());
        }
        return Ok(out);
    }
    SeriesIter::new(chunks, deleted)?.collect_range(mint, maxt)
}

fn flush_group(mut group: Vec<ChunkSource>) -> Result<Segment> {
    if group.len() == 1
        && let Some(c) = group.pop()
    {
        return Ok(Segment::Chunk(c));
    }
    let mut all: Vec<(i64, u8, usize, f64)> = Vec::new();
    for (idx, c) in group.into_iter().enumerate() {
        let samples = crate::chunk::decode_all(c.encoding, c.data)?;
        all.extend(samples.into_iter().map(|(t, v)| (t, c.priority, idx, v)));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all.dedup_by_key(|s| s.0);
    Ok(Segment::Merged(
        all.into_iter().map(|(t, _, _, v)| (t, v)).collect(),
    ))
}

/// Drops user matchers on the reserved [`AGGR_LABEL`] that accept the empty value (no visible
/// series has the label); `None` if one rejects it (nothing can match).
fn without_reserved(matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut out = Vec::with_capacity(matchers.len());
    for m in matchers {
        if m.name == AGGR_LABEL {
            if !m.matches("") {
                return None;
            }
        } else {
            out.push(m.clone());
        }
    }
    Some(out)
}

/// Sorts and merges inclusive intervals.
fn normalize(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// True if `[lo, hi]` lies inside the union of the sorted, merged intervals `claimed`.
fn covered(claimed: &[(i64, i64)], lo: i64, hi: i64) -> bool {
    claimed.iter().any(|&(a, b)| a <= lo && hi <= b)
}

/// Reads the series of one downsampled block for `aggr` (and its companion stream) into `out`,
/// keyed by the labels without [`AGGR_LABEL`]; samples in `claimed` are masked.
fn read_downsampled(
    block: &Block,
    block_idx: usize,
    aggr: Aggregate,
    matchers: &[Matcher],
    claimed: &[(i64, i64)],
) -> Result<Vec<(Labels, DsBlockPart)>> {
    let (main, companion) = match aggr {
        Aggregate::Counter => (Aggregate::Counter, Some(Aggregate::Last)),
        Aggregate::Avg => (Aggregate::Sum, Some(Aggregate::Count)),
        a => (a, None),
    };
    let m = block.meta();
    // Only the claims that cut into this block mask its samples.
    let claims: Vec<(i64, i64)> = claimed
        .iter()
        .copied()
        .filter(|&(a, b)| a <= m.max_time && b >= m.min_time)
        .collect();
    let postings = |a: Aggregate| -> Result<RoaringBitmap> {
        let mut ms = matchers.to_vec();
        ms.push(Matcher::equal(AGGR_LABEL, a.name()));
        block_postings(block, &ms)
    };
    let chunks_of = |metas: &[crate::block::ChunkMeta]| -> Result<Vec<ChunkSource>> {
        let mut chunks = Vec::with_capacity(metas.len());
        for m in metas
            .iter()
            .filter(|m| !covered(&claims, m.min_time, m.max_time))
        {
            chunks.push(ChunkSource {
                min_time: m.min_time,
                max_time: m.max_time,
                encoding: Encoding::from_u8(m.encoding)?,
                data: block.chunk(m)?,
                priority: 0,
            });
        }
        Ok(chunks)
    };
    let deleted_of = |id: u32| -> Vec<(i64, i64)> {
        let mut d = block.tombstones().intervals(id).to_vec();
        d.extend(claims.iter().copied());
        d
    };
    let main_ids = postings(main)?;
    let comp_ids = match companion {
        Some(c) => Some(postings(c)?),
        None => None,
    };
    // Within one aggregate, ids ascend in the order of the labels without `__aggr__`, and the
    // writer gives every source series all six aggregates: the i-th companion id belongs to
    // the i-th main id. Blocks that break this are joined by labels instead.
    let by_position = comp_ids.as_ref().is_some_and(|c| c.len() == main_ids.len());
    let mut comp_by_labels: std::collections::HashMap<Labels, u32> =
        std::collections::HashMap::new();
    if let (Some(c), false) = (&comp_ids, by_position) {
        for id in c {
            comp_by_labels.insert(
                crate::downsample::without_aggr_label(block.series(id)?.0),
                id,
            );
        }
    }
    let mut comp_iter = comp_ids.as_ref().map(|c| c.iter());
    let mut out = Vec::with_capacity(main_ids.len() as usize);
    for id in &main_ids {
        let (labels, metas) = block.series(id)?;
        let comp_id = match (&mut comp_iter, by_position) {
            (Some(it), true) => it.next(),
            _ => None,
        };
        let labels = crate::downsample::without_aggr_label(labels);
        let chunks = chunks_of(&metas)?;
        if chunks.is_empty() {
            continue;
        }
        let mut comp_chunks = Vec::new();
        if companion.is_some() {
            let cid = comp_id.or_else(|| comp_by_labels.get(&labels).copied());
            if let Some(cid) = cid {
                comp_chunks = chunks_of(&block.series_chunks(cid)?)?;
            }
            if comp_chunks.is_empty() && aggr == Aggregate::Avg {
                continue;
            }
        }
        out.push((
            labels,
            DsBlockPart {
                block: block_idx,
                main: chunks,
                companion: comp_chunks,
                deleted: deleted_of(id),
            },
        ));
    }
    if comp_ids.is_some() && !by_position {
        // A join by labels may have kept an order the writer did not guarantee.
        out.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(out)
}

/// Downsampled parts of one series: its labels, the coarsest resolution among them, and the
/// parts in block order.
type DsEntry = (Labels, (i64, Vec<DsBlockPart>));

/// Merges one block's parts (sorted by labels) into `acc` (sorted by labels).
fn merge_parts(acc: Vec<DsEntry>, parts: Vec<(Labels, DsBlockPart)>, res: i64) -> Vec<DsEntry> {
    let mut out = Vec::with_capacity(acc.len().max(parts.len()));
    let mut a = acc.into_iter().peekable();
    let mut p = parts.into_iter().peekable();
    loop {
        let ord = match (a.peek(), p.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.0.cmp(&y.0),
        };
        match ord {
            std::cmp::Ordering::Less => out.extend(a.next()),
            std::cmp::Ordering::Greater => {
                if let Some((l, part)) = p.next() {
                    out.push((l, (res, vec![part])));
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((l, (r, mut v))), Some((_, part))) = (a.next(), p.next()) {
                    v.push(part);
                    out.push((l, (r.max(res), v)));
                }
            }
        }
    }
    out
}

/// Maps `f` over `items` on up to the available cores, keeping their order (blocks of a
/// downsampled selection are read in parallel; each read is independent).
fn par_blocks<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / 2);
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut groups: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        groups.push(items.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| s.spawn(move || g.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// A consistent read view of one tenant: its head and blocks.
pub struct Querier {
    head: Arc<Head>,
    blocks: Vec<Arc<Block>>,
}

impl Querier {
    /// Creates a querier over a head and a set of blocks.
    pub fn new(head: Arc<Head>, blocks: Vec<Arc<Block>>) -> Self {
        Querier { head, blocks }
    }

    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.head.min_time() <= maxt && self.head.max_time() >= mint
    }

    fn blocks_in(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &Arc<Block>> {
        self.blocks
            .iter()
            .filter(move |b| b.meta().min_time <= maxt && b.meta().max_time >= mint)
    }

    /// Selects the series matching all `matchers` that have samples in `[mint, maxt]`, sorted
    /// by labels, each with its chunks from every source.
    ///
    /// When `hints` name a function that downsampled data can serve (see
    /// [`Aggregate::for_function`] and [`resolution_allowed`]), the coarsest allowed resolution
    /// is read where its blocks exist, finer resolutions where they do not, raw blocks and the
    /// head for the rest; every returned series then carries the aggregate it yields
    /// ([`Series::aggregate`]). Otherwise only raw blocks and the head are read.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        let Some(matchers) = without_reserved(matchers) else {
            return Ok(Vec::new());
        };
        let matchers = matchers.as_slice();
        let aggr = Aggregate::for_function(hints.func.as_deref(), hints.range_ms);
        let mut resolutions: Vec<i64> = match aggr {
            Some(a) => self
                .blocks
                .iter()
                .map(|b| b.meta().resolution_ms)
                .filter(|&r| resolution_allowed(hints, a, r))
                .collect(),
            None => Vec::new(),
        };
        resolutions.sort_unstable_by(|a, b| b.cmp(a));
        resolutions.dedup();

        // Downsampled parts per series, sorted by labels.
        let mut ds: Vec<DsEntry> = Vec::new();
        // Time ranges already served by coarser data, sorted and disjoint.
        let mut claimed: Vec<(i64, i64)> = Vec::new();
        if let Some(aggr) = aggr {
            for &res in &resolutions {
                let mut new_claims = Vec::new();
                let mut todo = Vec::new();
                for (idx, block) in self.blocks.iter().enumerate() {
                    let m = block.meta();
                    if m.resolution_ms != res || m.min_time > maxt || m.max_time < mint {
                        continue;
                    }
                    let range = (m.min_time.max(mint), m.max_time.min(maxt));
                    if covered(&claimed, range.0, range.1) {
                        continue;
                    }
                    todo.push((idx, block));
                    new_claims.push(range);
                }
                let claims = &claimed;
                let read = par_blocks(todo, |(idx, block)| {
                    read_downsampled(block, idx, aggr, matchers, claims)
                });
                for parts in read {
                    ds = merge_parts(ds, parts?, res);
                }
                claimed.extend(new_claims);
                claimed = normalize(claimed);
            }
        }

        let mut out: Vec<Series> = Vec::new();
        for block in self.blocks_in(mint, maxt) {
            if block.meta().resolution_ms != 0
                || covered(&claimed, block.meta().min_time, block.meta().max_time)
            {
                continue;
            }
            let ids = block_postings(block, matchers)?;
            let tomb = block.tombstones();
            for id in &ids {
                let (labels, metas) = block.series(id)?;
                let deleted = tomb.intervals(id);
                let mut chunks = Vec::new();
                for m in metas.iter().filter(|m| {
                    m.max_time >= mint
                        && m.min_time <= maxt
                        && !covered(&claimed, m.min_time, m.max_time)
                }) {
                    let c = ChunkSource {
                        min_time: m.min_time,
                        max_time: m.max_time,
                        encoding: Encoding::from_u8(m.encoding)?,
                        data: block.chunk(m)?,
                        priority: 0,
                    };
                    chunks.extend(c.without_deleted(deleted)?);
                }
                if !chunks.is_empty() {
                    out.push(Series {
                        labels,
                        chunks,
                        deleted: Vec::new(),
                        downsampled: None,
                    });
                }
            }
        }
        if self.head_overlaps(mint, maxt) {
            let refs = self.head.select_refs(matchers);
            for r in &refs {
                if let Some(d) = self.head.series_data(r, mint, maxt) {
                    let mut chunks = Vec::with_capacity(d.chunks.len());
                    for (c, ooo) in &d.chunks {
                        let c = ChunkSource::from_head(c, *ooo);
                        if d.deleted.is_empty() {
                            chunks.push(c);
                        } else {
                            chunks.extend(c.without_deleted(&d.deleted)?);
                        }
                    }
                    // A series whose selected samples are all deleted is not selected.
                    if !chunks.is_empty() {
                        out.push(Series {
                            labels: d.labels,
                            chunks,
                            deleted: Vec::new(),
                            downsampled: None,
                        });
                    }
                }
            }
        }
        // Stable sort keeps block order before head order for equal label sets.
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut merged: Vec<Series> = Vec::with_capacity(out.len());
        for s in out {
            match merged.last_mut() {
                Some(last) if last.labels == s.labels => {
                    last.chunks.extend(s.chunks);
                    last.deleted.extend(s.deleted);
                }
                _ => merged.push(s),
            }
        }
        let (Some(aggr), false) = (aggr, claimed.is_empty()) else {
            return Ok(merged);
        };
        // Some range was served by downsampled data: every series yields the aggregate, raw
        // samples outside the claimed ranges mapped into its domain.
        let mut result = Vec::with_capacity(merged.len().max(ds.len()));
        let mut raw = merged.into_iter().peekable();
        let mut down = ds.into_iter().peekable();
        loop {
            let take_raw = match (raw.peek(), down.peek()) {
                (None, None) => break,
                (Some(_), None) => Some(true),
                (None, Some(_)) => Some(false),
                (Some(r), Some((l, _))) => match r.labels.cmp(l) {
                    std::cmp::Ordering::Less => Some(true),
                    std::cmp::Ordering::Greater => Some(false),
                    std::cmp::Ordering::Equal => None,
                },
            };
            let (labels, chunks, mut deleted, res, blocks) = match take_raw {
                Some(true) => match raw.next() {
                    Some(r) => (r.labels, r.chunks, r.deleted, 0, Vec::new()),
                    None => break,
                },
                Some(false) => match down.next() {
                    Some((l, (res, parts))) => (l, Vec::new(), Vec::new(), res, parts),
                    None => break,
                },
                None => match (raw.next(), down.next()) {
                    (Some(r), Some((_, (res, parts)))) => {
                        (r.labels, r.chunks, r.deleted, res, parts)
                    }
                    _ => break,
                },
            };
            if let (Some(lo), Some(hi)) = (
                chunks.iter().map(|c| c.min_time).min(),
                chunks.iter().map(|c| c.max_time).max(),
            ) {
                deleted.extend(claimed.iter().copied().filter(|&(a, b)| a <= hi && b >= lo));
            }
            result.push(Series {
                labels,
                chunks,
                deleted,
                downsampled: Some(Box::new(DownsampledParts {
                    aggregate: aggr,
                    resolution_ms: res,
                    mint,
                    maxt,
                    blocks,
                })),
            });
        }
        Ok(result)
    }

    /// Sorted label names of series with data in `[mint, maxt]` matching `matchers` (all
    /// series if none).
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        if matchers.is_empty() {
            for b in self.blocks_in(mint, maxt) {
                names.extend(b.label_names()?.into_iter().filter(|n| n != AGGR_LABEL));
            }
            if self.head_overlaps(mint, maxt) {
                names.extend(self.head.label_names());
            }
        } else {
            for s in self.select(matchers, mint, maxt, &SelectHints::default())? {
                names.extend(s.labels.iter().map(|l| l.name.clone()));
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Sorted values of label `name` over series with data in `[mint, maxt]` matching
    /// `matchers` (all series if none).
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values = std::collections::BTreeSet::new();
        if name == AGGR_LABEL {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            for b in self.blocks_in(mint, maxt) {
                values.extend(b.label_values(name)?);
            }
            if self.head_overlaps(mint, maxt) {
                values.extend(self.head.label_values(name));
            }
        } else {
            for s in self.select(matchers, mint, maxt, &SelectHints::default())? {
                if let Some(v) = s.labels.get(name) {
                    values.insert(v.to_string());
                }
            }
        }
        Ok(values.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{self, GorillaAppender};

    fn src(samples: &[(i64, f64)], priority: u8) -> ChunkSource {
        let mut app = GorillaAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        ChunkSource {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            encoding: chunk::Encoding::Gorilla,
            data: Bytes::from(app.finish()),
            priority,
        }
    }

    fn collect(mut it: SeriesIter) -> Vec<(i64, f64)> {
        let mut v = Vec::new();
        while let Some(s) = it.next_sample() {
            v.push(s);
        }
        assert!(it.take_err().is_none());
        v
    }

    #[test]
    fn non_overlapping_chunks_stream_in_order() {
        let it = SeriesIter::new(
            vec![
                src(&[(10, 1.0), (20, 2.0)], 0),
                src(&[(1, 0.5), (5, 0.7)], 0),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(collect(it), vec![(1, 0.5), (5, 0.7), (10, 1.0), (20, 2.0)]);
    }

    #[test]
    fn overlapping_chunks_merge_and_dedup_by_priority() {
        let it = SeriesIter::new(
            vec![
                src(&[(1, 1.0), (3, 3.0), (5, 5.0)], 0),
                src(&[(2, 2.0), (3, 99.0), (6, 6.0)], 1),
                src(&[(10, 10.0)], 0),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(
            collect(it),
            vec![(1, 1.0), (2, 2.0), (3, 3.0), (5, 5.0), (6, 6.0), (10, 10.0)]
        );
    }

    #[test]
    fn seek_and_tombstones() {
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 10, i as f64)).collect();
        let chunks = samples.chunks(120).map(|c| src(c, 0)).collect();
        let mut it = SeriesIter::new(chunks, vec![(1000, 1990)]).unwrap();
        assert_eq!(it.seek(995), Some((2000, 200.0)));
        assert_eq!(
            it.seek(5),
            Some((2000, 200.0)),
            "seek never moves backwards"
        );
        assert_eq!(it.next_sample(), Some((2010, 201.0)));
        let mut it = SeriesIter::new(vec![src(&samples, 0)], vec![]).unwrap();
        assert_eq!(it.seek(1234), Some((1240, 124.0)));
        assert_eq!(it.seek(5000), None);
    }

    #[test]
    fn deleted_intervals_from_several_sources_merge() {
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 10, i as f64)).collect();
        let chunks = || samples.chunks(120).map(|c| src(c, 0)).collect::<Vec<_>>();
        // Unsorted, overlapping and adjacent, as a block's and the head's intervals arrive.
        let deleted = vec![
            (2500, 2600),
            (1500, 1990),
            (1000, 1600),
            (2601, 2700),
            (5, 5),
        ];
        let want: Vec<(i64, f64)> = samples
            .iter()
            .copied()
            .filter(|&(t, _)| !(1000..=1990).contains(&t) && !(2500..=2700).contains(&t))
            .collect();
        assert_eq!(
            collect(SeriesIter::new(chunks(), deleted.clone()).unwrap()),
            want
        );
        let mut it = SeriesIter::new(chunks(), deleted).unwrap();
        assert_eq!(it.seek(990), Some((990, 99.0)));
        assert_eq!(it.seek(1000), Some((2000, 200.0)));
        assert_eq!(it.seek(2500), Some((2710, 271.0)));
        assert_eq!(it.next_sample(), Some((2720, 272.0)));
    }

    #[test]
    fn resolve_postings_semantics() {
        // Series 0: job=a; 1: job=b; 2: no job.
        let vals = [("a", 0u32), ("b", 1)];
        let matching = |m: &Matcher, pred: &dyn Fn(&str) -> bool| {
            let mut out = RoaringBitmap::new();
            if m.name == "job" {
                for (v, id) in vals {
                    if pred(v) {
                        out.insert(id);
                    }
                }
            }
            out
        };
        let all = || (0..3).collect::<RoaringBitmap>();
        let run =
            |ms: &[Matcher]| -> Vec<u32> { resolve_postings(ms, all, matching).iter().collect() };
        assert_eq!(run(&[Matcher::equal("job", "a")]), vec![0]);
        assert_eq!(
            run(&[Matcher::new(MatchOp::NotEqual, "job", "a").unwrap()]),
            vec![1, 2]
        );
        assert_eq!(run(&[Matcher::equal("job", "")]), vec![2]);
        assert_eq!(
            run(&[Matcher::new(MatchOp::Regex, "job", ".+").unwrap()]),
            vec![0, 1]
        );
        assert_eq!(
            run(&[Matcher::new(MatchOp::Regex, "job", "a|").unwrap()]),
            vec![0, 2]
        );
        assert_eq!(
            run(&[Matcher::new(MatchOp::NotRegex, "job", "a|b").unwrap()]),
            vec![2]
        );
        assert_eq!(run(&[]), vec![0, 1, 2]);
    }
}
