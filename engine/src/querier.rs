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

/// A selected series: its labels and its chunks overlapping the selected range.
#[derive(Clone, Debug)]
pub struct Series {
    labels: Labels,
    chunks: Vec<ChunkSource>,
    deleted: Vec<(i64, i64)>,
}

impl Series {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The series' chunks (unordered, possibly overlapping).
    pub fn chunks(&self) -> &[ChunkSource] {
        &self.chunks
    }

    /// An iterator over the merged, deduplicated samples, ascending by timestamp. The caller
    /// bounds it to the selected range with `seek` and by checking timestamps; chunks may hold
    /// samples outside the range.
    pub fn iter(&self) -> Result<SeriesIter> {
        SeriesIter::new(self.chunks.clone(), self.deleted.clone())
    }

    /// Consumes the series into its labels and a sample iterator, without copying either.
    pub fn into_parts(self) -> Result<(Labels, SeriesIter)> {
        let it = SeriesIter::new(self.chunks, self.deleted)?;
        Ok((self.labels, it))
    }

    /// Decodes all samples in `[mint, maxt]`.
    pub fn samples(&self, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>> {
        let mut it = self.iter()?;
        let mut out = Vec::new();
        let mut cur = it.seek(mint);
        while let Some(s) = cur {
            if s.0 > maxt {
                break;
            }
            out.push(s);
            cur = it.next_sample();
        }
        if let Some(e) = it.take_err() {
            return Err(e);
        }
        Ok(out)
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
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        let mut out: Vec<Series> = Vec::new();
        for block in self.blocks_in(mint, maxt) {
            let ids = block_postings(block, matchers)?;
            let tomb = block.tombstones();
            for id in &ids {
                let (labels, metas) = block.series(id)?;
                let deleted = tomb.intervals(id);
                let mut chunks = Vec::new();
                for m in metas
                    .iter()
                    .filter(|m| m.max_time >= mint && m.min_time <= maxt)
                {
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
        Ok(merged)
    }

    /// Sorted label names of series with data in `[mint, maxt]` matching `matchers` (all
    /// series if none).
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        if matchers.is_empty() {
            for b in self.blocks_in(mint, maxt) {
                names.extend(b.label_names()?);
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
