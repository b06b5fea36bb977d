//! The PromQL evaluator.
//!
//! Every expression is evaluated over a whole grid of steps at once (an instant query is a
//! grid of one step), series at a time: a selector reads each series once for the whole query
//! and slides its lookback or range window along the steps, so a range query never re-selects
//! per step. Intermediate instant vectors are dense (one slot per step, a reserved NaN payload
//! marking "no sample"), which keeps binary operators and aggregations to index loops.
//!
//! Semantics follow Prometheus 3: left-open windows, staleness markers, `@`/`offset`, subquery
//! steps aligned to absolute multiples, and delayed `__name__` removal — functions and operators
//! that drop the metric name only flag the series; names are removed (and duplicate label sets
//! reported) when the result leaves the evaluator, so `label_replace` can still read them.

pub(crate) mod aggregate;
mod binary;
mod functions;
pub(crate) mod numeric;

use std::collections::HashMap;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Instant;

use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use strata_engine::downsample::Aggregate;
use strata_engine::labels::METRIC_NAME;
use strata_engine::{Label, Labels, Querier, SelectHints};

use crate::{EvalOptions, QueryError, Sample, SeriesPoints, Value, is_stale};

/// Bit pattern marking "no value at this step" in dense step vectors. Values read from storage
/// that happen to carry it are turned into an ordinary NaN.
const ABSENT_BITS: u64 = 0x7ff0_0000_0000_0bad;

/// The "no value" marker.
#[inline]
pub(crate) fn absent() -> f64 {
    f64::from_bits(ABSENT_BITS)
}

/// True if `v` is the "no value" marker.
#[inline]
pub(crate) fn is_absent(v: f64) -> bool {
    v.to_bits() == ABSENT_BITS
}

/// The evaluation steps of one (sub)query.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub(crate) start: i64,
    pub(crate) step: i64,
    pub(crate) n: usize,
}

impl Grid {
    pub(crate) fn new(start: i64, end: i64, step: i64) -> Grid {
        let n = if end < start || step <= 0 {
            if end == start { 1 } else { 0 }
        } else {
            ((end - start) / step + 1) as usize
        };
        Grid { start, step, n }
    }

    #[inline]
    pub(crate) fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// A series of an instant vector over the grid.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    pub(crate) labels: Labels,
    /// The metric name is to be removed when the result leaves the evaluator.
    pub(crate) drop_name: bool,
    /// One value per step; [`absent`] where the series has no sample.
    pub(crate) vals: Vec<f64>,
}

/// A series of a range vector: raw points.
#[derive(Clone, Debug)]
pub(crate) struct RangeSeries {
    pub(crate) labels: Labels,
    pub(crate) drop_name: bool,
    pub(crate) pts: Vec<(i64, f64)>,
    /// The downsampled aggregate the points are, `None` for raw samples.
    pub(crate) aggregate: Option<Aggregate>,
    /// For [`Aggregate::Avg`]: the number of raw samples behind each point (whose value is
    /// their sum); empty otherwise.
    pub(crate) weights: Vec<f64>,
}

/// A range vector over the grid: per step the window `(end - range, end]`.
#[derive(Clone, Debug)]
pub(crate) struct RangeVal {
    pub(crate) series: Vec<RangeSeries>,
    pub(crate) range: i64,
    /// Window end per step (the step time, shifted by `offset`/`@`).
    pub(crate) ends: Vec<i64>,
}

impl RangeVal {
    /// Calls `f(step, window)` for every step, windows found by sliding two cursors.
    pub(crate) fn windows<'a>(
        &self,
        pts: &'a [(i64, f64)],
        f: impl FnMut(usize, &'a [(i64, f64)]),
    ) {
        RangeWindows {
            range: self.range,
            ends: &self.ends,
        }
        .windows(pts, f)
    }
}

/// The windows of a range vector: per step `(end - range, end]`.
pub(crate) struct RangeWindows<'e> {
    pub(crate) range: i64,
    pub(crate) ends: &'e [i64],
}

impl RangeWindows<'_> {
    /// Calls `f(step, window)` for every step, windows found by sliding two cursors.
    pub(crate) fn windows<'a>(
        &self,
        pts: &'a [(i64, f64)],
        mut f: impl FnMut(usize, &'a [(i64, f64)]),
    ) {
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut last_end = i64::MIN;
        for (i, &end) in self.ends.iter().enumerate() {
            if end < last_end {
                lo = 0;
                hi = 0;
            }
            last_end = end;
            let start = end.saturating_sub(self.range);
            while hi < pts.len() && pts[hi].0 <= end {
                hi += 1;
            }
            while lo < hi && pts[lo].0 <= start {
                lo += 1;
            }
            f(i, &pts[lo..hi]);
        }
    }
}

/// An intermediate value.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<Series>),
    Range(RangeVal),
}

impl Val {
    fn kind(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Range(_) => "range vector",
        }
    }
}

/// Annotations raised during evaluation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Annotations {
    pub(crate) warnings: Vec<String>,
    pub(crate) infos: Vec<String>,
}

/// State of one query evaluation.
pub(crate) struct Evaluator<'a> {
    q: &'a Querier,
    opts: &'a EvalOptions,
    query_start: i64,
    query_end: i64,
    samples: usize,
    text: &'a str,
    started: Instant,
    pub(crate) annotations: Annotations,
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

/// Text that starts expression `e` in a query, to locate annotations: the printed expression,
/// or for calls and selectors the leading name.
pub(crate) fn expr_needle(e: &Expr) -> String {
    match e {
        Expr::Call(c) => format!("{}(", c.func.name),
        Expr::VectorSelector(vs) => vs.name.clone().unwrap_or_else(|| e.to_string()),
        Expr::MatrixSelector(ms) => ms.vs.name.clone().unwrap_or_else(|| e.to_string()),
        Expr::Paren(p) => expr_needle(&p.expr),
        _ => e.to_string(),
    }
}

pub(crate) fn strip(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => strip(&p.expr),
        e => e,
    }
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        q: &'a Querier,
        opts: &'a EvalOptions,
        text: &'a str,
        query_start: i64,
        query_end: i64,
    ) -> Self {
        Evaluator {
            q,
            opts,
            query_start,
            query_end,
            samples: 0,
            text,
            started: Instant::now(),
            annotations: Annotations::default(),
        }
    }

    /// Fails if the query was cancelled or ran out of time.
    pub(crate) fn check_cancel(&self) -> Result<(), QueryError> {
        if let Some(c) = &self.opts.cancel
            && c.load(AtomicOrdering::Relaxed)
        {
            return Err(QueryError::Cancelled);
        }
        if let Some(t) = self.opts.timeout
            && self.started.elapsed() > t
        {
            return Err(QueryError::Timeout);
        }
        Ok(())
    }

    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(st)) => Some(match st.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            }),
        }
    }

    /// Window end per step for a selector or subquery with these modifiers.
    fn ref_times(&self, at: &Option<AtModifier>, off: i64, g: &Grid) -> Vec<i64> {
        let at = self.at_ms(at);
        (0..g.n)
            .map(|i| at.unwrap_or_else(|| g.t(i)).saturating_sub(off))
            .collect()
    }

    /// Records an annotation about the sub-expression whose text starts with `needle`.
    pub(crate) fn warn(&mut self, msg: String, needle: &str) {
        let s = format!("PromQL warning: {msg}{}", self.position(needle));
        if !self.annotations.warnings.contains(&s) {
            self.annotations.warnings.push(s);
        }
    }

    /// Records an info annotation.
    pub(crate) fn info(&mut self, msg: String, needle: &str) {
        let s = format!("PromQL info: {msg}{}", self.position(needle));
        if !self.annotations.infos.contains(&s) {
            self.annotations.infos.push(s);
        }
    }

    /// Records a warning about expression `e` (its position found in the query text).
    pub(crate) fn warn_at(&mut self, msg: String, e: &Expr) {
        let needle = expr_needle(e);
        self.warn(msg, &needle);
    }

    /// Records an info about expression `e`.
    pub(crate) fn info_at(&mut self, msg: String, e: &Expr) {
        let needle = expr_needle(e);
        self.info(msg, &needle);
    }

    fn position(&self, needle: &str) -> String {
        let idx = if needle.is_empty() {
            Some(0)
        } else {
            self.text.find(needle)
        };
        match idx {
            Some(i) => {
                let before = &self.text[..i];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" ({line}:{col})")
            }
            None => String::new(),
        }
    }

    /// Decodes each selected series' samples in `(mint_excl, maxt]` (staleness markers
    /// dropped with `drop_stale`) and maps it with `f` right away, on up to the available
    /// cores: a series' samples live only while `f` runs, so a range function over many
    /// series never holds all their samples at once.
    pub(crate) fn select_map<R: Send>(
        &mut self,
        vs: &VectorSelector,
        mint_excl: i64,
        maxt: i64,
        hints: &SelectHints,
        drop_stale: bool,
        f: impl Fn(RangeSeries) -> Option<R> + Sync,
    ) -> Result<Vec<R>, QueryError> {
        let matchers = crate::to_engine_matchers(&vs.matchers, vs.name.as_deref())?;
        let series = self
            .q
            .select(&matchers, mint_excl.saturating_add(1), maxt, hints)?;
        self.check_cancel()?;
        let mint = mint_excl.saturating_add(1);
        thread_local! {
            /// Samples of the previous series decoded on this thread: series of one selector
            /// tend to have similar counts, so buffers start at the right size.
            static LAST_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(16) };
        }
        let decoded = par_map(series, self.opts.parallelism, |s| {
            if let Some(aggregate) = s.aggregate() {
                // Downsampled: the aggregate's stream, stitched and mapped by the engine.
                let (labels, points) = s.into_weighted()?;
                let mut pts = Vec::with_capacity(points.len());
                let mut weights = Vec::new();
                for (t, v, w) in points {
                    if t < mint || t > maxt || (drop_stale && is_stale(v)) {
                        continue;
                    }
                    pts.push((t, if is_absent(v) { f64::NAN } else { v }));
                    if aggregate == Aggregate::Avg {
                        weights.push(w);
                    }
                }
                let n = pts.len();
                if n == 0 {
                    return Ok((0, None));
                }
                return Ok((
                    n,
                    f(RangeSeries {
                        labels,
                        drop_name: false,
                        pts,
                        aggregate: Some(aggregate),
                        weights,
                    }),
                ));
            }
            let (labels, mut it) = s.into_parts()?;
            let mut pts = Vec::with_capacity(LAST_LEN.with(|c| c.get()));
            let mut cur = it.seek(mint);
            while let Some((t, v)) = cur {
                if t > maxt {
                    break;
                }
                if !(drop_stale && is_stale(v)) {
                    pts.push((t, if is_absent(v) { f64::NAN } else { v }));
                }
                cur = it.next_sample();
            }
            if let Some(e) = it.take_err() {
                return Err(QueryError::Storage(e));
            }
            let n = pts.len();
            LAST_LEN.with(|c| c.set(n.max(16)));
            if n == 0 {
                return Ok((0, None));
            }
            Ok((
                n,
                f(RangeSeries {
                    labels,
                    drop_name: false,
                    pts,
                    aggregate: None,
                    weights: Vec::new(),
                }),
            ))
        });
        let mut out = Vec::with_capacity(decoded.len());
        for d in decoded {
            let (n, r) = d?;
            self.samples += n;
            if self.samples > self.opts.max_samples {
                return Err(QueryError::TooManySamples);
            }
            if let Some(r) = r {
                out.push(r);
            }
        }
        self.check_cancel()?;
        Ok(out)
    }

    /// Counts `n` more samples held by the evaluation against the limit.
    pub(crate) fn account(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples += n;
        if self.samples > self.opts.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    fn hints(&self, g: &Grid, range: i64, func: Option<&str>) -> SelectHints {
        SelectHints {
            start_ms: g.start,
            end_ms: g.t(g.n.saturating_sub(1)),
            step_ms: if g.n > 1 { g.step } else { 0 },
            range_ms: range,
            func: func.map(str::to_string),
            max_resolution_ms: self.opts.max_source_resolution_ms,
        }
    }

    /// Evaluates an instant vector selector; with `timestamps`, values are the sample times.
    pub(crate) fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        g: &Grid,
        timestamps: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let refs = self.ref_times(&vs.at, offset_ms(&vs.offset), g);
        let matchers = crate::to_engine_matchers(&vs.matchers, vs.name.as_deref())?;
        self.select_steps(&matchers, &refs, g, timestamps)
    }

    /// Selects series by engine matchers and reduces them to one value per step: the newest
    /// sample in the lookback window before each of `refs`.
    pub(crate) fn select_steps(
        &mut self,
        matchers: &[strata_engine::Matcher],
        refs: &[i64],
        g: &Grid,
        timestamps: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let (Some(&lo), Some(&hi)) = (refs.iter().min(), refs.iter().max()) else {
            return Ok(Vec::new());
        };
        let lookback = self.opts.lookback_ms;
        let hints = self.hints(g, 0, None);
        // Downsampled data (read only when the step is at least its resolution) is looked up
        // as far back as one step, so that a point per resolution window is always found.
        let widest = lookback.max(hints.step_ms);
        let series = self.q.select(
            matchers,
            lo.saturating_sub(widest).saturating_add(1),
            hi,
            &hints,
        )?;
        self.check_cancel()?;
        // Each series is decoded once, stopping at the last step, and reduced to one value per
        // step on the way (no intermediate sample buffer).
        let decoded = par_map(series, self.opts.parallelism, |s| {
            // Downsampled points are one per resolution window: look back at least that far.
            let lookback = lookback.max(s.resolution_ms());
            let from = lo.saturating_sub(lookback).saturating_add(1);
            let (labels, mut it) = s.into_parts()?;
            let mut vals = vec![absent(); g.n];
            let mut any = false;
            let mut read = 0usize;
            let mut last: Option<(i64, f64)> = None;
            let mut cur = it.seek(from);
            for (i, &r) in refs.iter().enumerate() {
                while let Some((t, v)) = cur {
                    if t > r {
                        break;
                    }
                    last = Some((t, v));
                    read += 1;
                    cur = it.next_sample();
                }
                if let Some((t, v)) = last
                    && t > r.saturating_sub(lookback)
                    && !is_stale(v)
                {
                    let v = if is_absent(v) { f64::NAN } else { v };
                    vals[i] = if timestamps { t as f64 / 1000.0 } else { v };
                    any = true;
                }
            }
            if let Some(e) = it.take_err() {
                return Err(QueryError::Storage(e));
            }
            Ok((
                read,
                any.then_some(Series {
                    labels,
                    drop_name: false,
                    vals,
                }),
            ))
        });
        let mut out = Vec::with_capacity(decoded.len());
        for d in decoded {
            let (read, s) = d?;
            self.samples += read;
            if self.samples > self.opts.max_samples {
                return Err(QueryError::TooManySamples);
            }
            if let Some(s) = s {
                out.push(s);
            }
        }
        self.account(out.len() * g.n)?;
        Ok(out)
    }

    /// The window ends and selection bounds of a range vector selector: per step the window
    /// end, and `(mint_excl, maxt)` covering all windows; `None` for an empty grid.
    pub(crate) fn range_bounds(
        &self,
        vs: &VectorSelector,
        range: i64,
        g: &Grid,
    ) -> (Vec<i64>, Option<(i64, i64)>) {
        let ends = self.ref_times(&vs.at, offset_ms(&vs.offset), g);
        let bounds = match (ends.iter().min(), ends.iter().max()) {
            (Some(&lo), Some(&hi)) => Some((lo.saturating_sub(range), hi)),
            _ => None,
        };
        (ends, bounds)
    }

    /// Selection hints for a range selector under `func`.
    pub(crate) fn range_hints(&self, g: &Grid, range: i64, func: &str) -> SelectHints {
        self.hints(g, range, Some(func))
    }

    /// Evaluates a range vector selector.
    pub(crate) fn matrix_selector(
        &mut self,
        vs: &VectorSelector,
        range: i64,
        g: &Grid,
        func: Option<&str>,
    ) -> Result<RangeVal, QueryError> {
        let ends = self.ref_times(&vs.at, offset_ms(&vs.offset), g);
        let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(RangeVal {
                series: Vec::new(),
                range,
                ends,
            });
        };
        let hints = self.hints(g, range, func);
        let series = self.select_map(vs, lo.saturating_sub(range), hi, &hints, true, Some)?;
        Ok(RangeVal {
            series,
            range,
            ends,
        })
    }

    /// Evaluates a subquery into a range vector.
    fn subquery(
        &mut self,
        sq: &promql_parser::parser::SubqueryExpr,
        g: &Grid,
    ) -> Result<RangeVal, QueryError> {
        let range = sq.range.as_millis() as i64;
        let step = match sq.step {
            Some(s) if !s.is_zero() => s.as_millis() as i64,
            _ => self.opts.subquery_step_ms,
        }
        .max(1);
        let ends = self.ref_times(&sq.at, offset_ms(&sq.offset), g);
        let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(RangeVal {
                series: Vec::new(),
                range,
                ends,
            });
        };
        let first = lo.saturating_sub(range);
        let mut start = first.div_euclid(step) * step;
        if start < first {
            start += step;
        }
        let series = if start > hi {
            Vec::new()
        } else {
            let inner = Grid::new(start, hi, step);
            if inner.n > 11_000_000 {
                return Err(QueryError::TooManySamples);
            }
            match self.eval(&sq.expr, &inner)? {
                Val::Vector(v) => v
                    .into_iter()
                    .map(|s| RangeSeries {
                        pts: s
                            .vals
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| !is_absent(**v))
                            .map(|(i, &v)| (inner.t(i), v))
                            .collect(),
                        labels: s.labels,
                        drop_name: s.drop_name,
                        aggregate: None,
                        weights: Vec::new(),
                    })
                    .filter(|s| !s.pts.is_empty())
                    .collect(),
                Val::Scalar(v) => vec![RangeSeries {
                    labels: Labels::default(),
                    drop_name: false,
                    aggregate: None,
                    weights: Vec::new(),
                    pts: v
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (inner.t(i), v))
                        .collect(),
                }],
                other => {
                    return Err(QueryError::BadParameters(format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        other.kind()
                    )));
                }
            }
        };
        Ok(RangeVal {
            series,
            range,
            ends,
        })
    }

    /// Evaluates `e` over the grid.
    pub(crate) fn eval(&mut self, e: &Expr, g: &Grid) -> Result<Val, QueryError> {
        self.check_cancel()?;
        match e {
            Expr::Paren(p) => self.eval(&p.expr, g),
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; g.n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, g, false)?)),
            Expr::MatrixSelector(ms) => Ok(Val::Range(self.matrix_selector(
                &ms.vs,
                ms.range.as_millis() as i64,
                g,
                None,
            )?)),
            Expr::Subquery(sq) => Ok(Val::Range(self.subquery(sq, g)?)),
            Expr::Unary(u) => match self.eval(&u.expr, g)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(mut v) => {
                    for s in &mut v {
                        for x in &mut s.vals {
                            if !is_absent(*x) {
                                *x = -*x;
                            }
                        }
                        s.drop_name = true;
                    }
                    Ok(Val::Vector(v))
                }
                other => Err(QueryError::BadParameters(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                    other.kind()
                ))),
            },
            Expr::Binary(b) => self.binary(b, g),
            Expr::Aggregate(a) => self.aggregate(a, g),
            Expr::Call(c) => self.call(c, g),
            Expr::Extension(_) => Err(QueryError::Unsupported("extension expressions".to_string())),
        }
    }

    /// Evaluates `e` and requires an instant vector.
    pub(crate) fn eval_vector(&mut self, e: &Expr, g: &Grid) -> Result<Vec<Series>, QueryError> {
        match self.eval(e, g)? {
            Val::Vector(v) => Ok(v),
            other => Err(QueryError::BadParameters(format!(
                "expected type instant vector, got {}",
                other.kind()
            ))),
        }
    }

    /// Evaluates `e` and requires a scalar.
    pub(crate) fn eval_scalar(&mut self, e: &Expr, g: &Grid) -> Result<Vec<f64>, QueryError> {
        match self.eval(e, g)? {
            Val::Scalar(v) => Ok(v),
            other => Err(QueryError::BadParameters(format!(
                "expected type scalar, got {}",
                other.kind()
            ))),
        }
    }
}

/// Maps `f` over `items` on up to `threads` scoped threads, order kept. Items are handed out
/// in small batches that idle threads claim, so one expensive stretch of series (they come
/// sorted by labels, i.e. grouped by metric) does not leave the other threads waiting. Small
/// inputs run on the calling thread.
pub(crate) fn par_map<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const MIN_PER_THREAD: usize = 128;
    const BATCH: usize = 32;
    let threads = threads.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let mut batches: Vec<Mutex<Option<Vec<T>>>> = Vec::with_capacity(items.len() / BATCH + 1);
    let mut it = items.into_iter();
    loop {
        let b: Vec<T> = it.by_ref().take(BATCH).collect();
        if b.is_empty() {
            break;
        }
        batches.push(Mutex::new(Some(b)));
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = batches.get(i) else {
                break;
            };
            let batch = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(b) = batch {
                done.push((i, b.into_iter().map(&f).collect()));
            }
        }
        done
    };
    let mut parts: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for h in handles {
            match h.join() {
                Ok(v) => all.extend(v),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        all
    });
    parts.sort_unstable_by_key(|p| p.0);
    parts.into_iter().flat_map(|p| p.1).collect()
}

/// Removes flagged metric names and merges series that end up with equal labels; two of them
/// holding a value at the same step is an error.
pub(crate) fn finish_names(v: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    let mut out: Vec<Series> = Vec::with_capacity(v.len());
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(v.len());
    for mut s in v {
        if s.drop_name {
            s.labels = drop_name(&s.labels);
            s.drop_name = false;
        }
        merge_into(&mut out, &mut index, s)?;
    }
    Ok(out)
}

/// Adds `s` to `out`, merging with an earlier series of equal labels.
pub(crate) fn merge_into(
    out: &mut Vec<Series>,
    index: &mut HashMap<Labels, usize>,
    s: Series,
) -> Result<(), QueryError> {
    match index.get(&s.labels) {
        Some(&i) => {
            let Some(dst) = out.get_mut(i) else {
                return Ok(());
            };
            for (d, v) in dst.vals.iter_mut().zip(s.vals) {
                if is_absent(v) {
                    continue;
                }
                if !is_absent(*d) {
                    return Err(QueryError::Execution(
                        "vector cannot contain metrics with the same labelset".to_string(),
                    ));
                }
                *d = v;
            }
            dst.drop_name |= s.drop_name;
        }
        None => {
            index.insert(s.labels.clone(), out.len());
            out.push(s);
        }
    }
    Ok(())
}

/// `labels` without `__name__`.
pub(crate) fn drop_name(labels: &Labels) -> Labels {
    if labels.get(METRIC_NAME).is_none() {
        return labels.clone();
    }
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| l.name != METRIC_NAME)
            .cloned()
            .collect(),
    )
}

/// Builds labels from sorted-or-not pairs, dropping empty values.
pub(crate) fn labels_from(mut v: Vec<Label>) -> Labels {
    v.retain(|l| !l.value.is_empty());
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.dedup_by(|a, b| a.name == b.name);
    Labels::from_sorted(v)
}

/// Evaluates a parsed query over a grid and converts the result to the public [`Value`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    q: &Querier,
    expr: &Expr,
    text: &str,
    start: i64,
    end: i64,
    step: i64,
    instant: bool,
    opts: &EvalOptions,
) -> Result<(Value, Annotations), QueryError> {
    let mut ev = Evaluator::new(q, opts, text, start, end);
    let g = if instant {
        Grid {
            start,
            step: 1,
            n: 1,
        }
    } else {
        Grid::new(start, end, step)
    };
    let val = ev.eval(expr, &g)?;
    let value = match val {
        Val::Scalar(v) => {
            if instant {
                Value::Scalar(start, v.first().copied().unwrap_or(f64::NAN))
            } else {
                Value::Matrix(vec![SeriesPoints {
                    labels: Labels::default(),
                    points: v.iter().enumerate().map(|(i, &x)| (g.t(i), x)).collect(),
                }])
            }
        }
        Val::Str(s) => {
            if instant {
                Value::String(start, s)
            } else {
                return Err(QueryError::BadParameters(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector"
                        .into(),
                ));
            }
        }
        Val::Range(r) => {
            if !instant {
                return Err(QueryError::BadParameters(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            let end_t = r.ends.first().copied().unwrap_or(start);
            let from = end_t.saturating_sub(r.range);
            let mut out: Vec<SeriesPoints> = Vec::with_capacity(r.series.len());
            for s in r.series {
                let points: Vec<(i64, f64)> = s
                    .pts
                    .into_iter()
                    .filter(|&(t, _)| t > from && t <= end_t)
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let labels = if s.drop_name {
                    drop_name(&s.labels)
                } else {
                    s.labels
                };
                out.push(SeriesPoints { labels, points });
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
        Val::Vector(v) => {
            let v = finish_names(v)?;
            if instant {
                Value::Vector(
                    v.into_iter()
                        .filter_map(|s| {
                            let x = *s.vals.first()?;
                            (!is_absent(x)).then_some(Sample {
                                labels: s.labels,
                                t: start,
                                v: x,
                            })
                        })
                        .collect(),
                )
            } else {
                let mut out: Vec<SeriesPoints> = v
                    .into_iter()
                    .filter_map(|s| {
                        let points: Vec<(i64, f64)> = s
                            .vals
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| !is_absent(**x))
                            .map(|(i, &x)| (g.t(i), x))
                            .collect();
                        (!points.is_empty()).then_some(SeriesPoints {
                            labels: s.labels,
                            points,
                        })
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        }
    };
    Ok((value, ev.annotations))
}

#[cfg(test)]
mod tests {
    #[test]
    fn par_map_keeps_order() {
        let v: Vec<usize> = (0..10_000).collect();
        let out = super::par_map(v, 4, |x| x * 2);
        assert_eq!(out, (0..10_000).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(super::par_map(vec![1, 2, 3], 4, |x| x + 1), vec![2, 3, 4]);
    }
}
