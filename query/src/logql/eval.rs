//! Evaluation of LogQL over a tenant's [`LogStore`]: log queries (streams) and metric queries
//! (vectors and matrices).
//!
//! # Log queries
//!
//! The store returns the chunks of the selected streams that may hold matches (its n-gram
//! filters drop chunks that lack a required `|=` literal); chunks are visited newest first
//! (`backward`) or oldest first (`forward`), each line runs through the pipeline, and a heap
//! keeps the best `limit` entries. Visiting stops as soon as no remaining chunk can beat the
//! worst kept entry, so `limit` queries over large ranges read only the chunks they need.
//!
//! # Metric queries
//!
//! A range aggregation turns every surviving entry into a sample (1 per line, the line's
//! bytes, or the unwrapped value), groups samples by their final label set, and slides the
//! window `(t - range, t]` over the step grid. Without pipeline stages the samples come from
//! the chunks' timestamp column only, so lines are never decompressed. Vector aggregations
//! and binary operators work on the step grid.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use strata_engine::Labels;
use strata_engine::logs::{ChunkRef, ChunkSelect, LogStore};

use super::LogqlError;
use super::ast::*;
use super::pipeline::{LabelMap, Pipeline};

/// Order of log results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Newest first (Loki's default).
    #[default]
    Backward,
    /// Oldest first.
    Forward,
}

/// One stream of a log query result.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamResult {
    /// Final labels.
    pub labels: LabelMap,
    /// `(ts ns, line)` in the requested direction.
    pub entries: Vec<(i64, String)>,
}

/// One series of a metric result; `points` are `(ts ns, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesResult {
    /// Labels.
    pub labels: LabelMap,
    /// Points, ascending.
    pub points: Vec<(i64, f64)>,
}

/// Statistics of one evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvalStats {
    /// Chunks (and head buffers) the store selected.
    pub chunks_selected: usize,
    /// Chunks actually decoded.
    pub chunks_decoded: usize,
    /// Entries that went through the pipeline.
    pub entries_scanned: u64,
    /// Raw bytes of those entries.
    pub bytes_scanned: u64,
}

/// Limits of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalLimits {
    /// Most series a metric query may produce. Default: 50 000.
    pub max_series: usize,
    /// Most points (series × steps). Default: 50 000 000.
    pub max_points: usize,
}

impl Default for EvalLimits {
    fn default() -> Self {
        EvalLimits {
            max_series: 50_000,
            max_points: 50_000_000,
        }
    }
}

fn storage(e: strata_engine::logs::LogError) -> LogqlError {
    LogqlError::Storage(e.to_string())
}

struct Heaped {
    ts: i64,
    seq: u64,
    labels: Arc<LabelMap>,
    line: String,
}

impl PartialEq for Heaped {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Heaped {}
impl PartialOrd for Heaped {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Heaped {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

fn has_trace_label(store: &LogStore, log: &LogExpr, start: i64, end: i64) -> bool {
    store
        .label_names(&log.matchers, start, end)
        .iter()
        .any(|n| strata_engine::logs::filter::is_trace_id_name(n))
}

fn select(
    store: &LogStore,
    log: &LogExpr,
    pipeline: &Pipeline,
    start: i64,
    end: i64,
) -> Vec<ChunkRef> {
    let literals = pipeline.required_literals();
    let trace_id = pipeline
        .required_trace_id()
        .filter(|_| !has_trace_label(store, log, start, end));
    store.select(&ChunkSelect {
        matchers: &log.matchers,
        start,
        end,
        literals: &literals,
        trace_id,
    })
}

/// Evaluates a log query over `[start, end)` (ns).
pub fn eval_logs(
    store: &LogStore,
    log: &LogExpr,
    start: i64,
    end: i64,
    limit: usize,
    direction: Direction,
    stats: &mut EvalStats,
) -> Result<Vec<StreamResult>, LogqlError> {
    let pipeline = Pipeline::new(&log.stages);
    let mut chunks = select(store, log, &pipeline, start, end);
    stats.chunks_selected += chunks.len();
    match direction {
        Direction::Backward => chunks.sort_by_key(|c| Reverse(c.max_t)),
        Direction::Forward => chunks.sort_by_key(|c| c.min_t),
    }
    let limit = limit.max(1);
    // Backward keeps the `limit` newest: a min-heap (Reverse). Forward keeps the oldest: a
    // max-heap.
    let mut newest: BinaryHeap<Reverse<Heaped>> = BinaryHeap::new();
    let mut oldest: BinaryHeap<Heaped> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut label_cache: HashMap<LabelMap, Arc<LabelMap>> = HashMap::new();
    for c in &chunks {
        let full = match direction {
            Direction::Backward => newest.len() >= limit,
            Direction::Forward => oldest.len() >= limit,
        };
        if full {
            let stop = match direction {
                Direction::Backward => newest.peek().is_some_and(|w| c.max_t < w.0.ts),
                Direction::Forward => oldest.peek().is_some_and(|w| c.min_t > w.ts),
            };
            if stop {
                break;
            }
        }
        stats.chunks_decoded += 1;
        let mut err = None;
        c.for_each(|e| {
            if err.is_some() || e.ts < start || e.ts >= end {
                return;
            }
            stats.entries_scanned += 1;
            stats.bytes_scanned += e.line.len() as u64;
            let Some(p) = pipeline.process(e.ts, &e.line, &c.labels, &e.metadata) else {
                return;
            };
            let labels = match label_cache.get(&p.labels) {
                Some(l) => l.clone(),
                None => {
                    let a = Arc::new(p.labels.clone());
                    label_cache.insert(p.labels, a.clone());
                    a
                }
            };
            seq += 1;
            let h = Heaped {
                ts: e.ts,
                seq,
                labels,
                line: p.line,
            };
            match direction {
                Direction::Backward => {
                    newest.push(Reverse(h));
                    if newest.len() > limit {
                        newest.pop();
                    }
                }
                Direction::Forward => {
                    oldest.push(h);
                    if oldest.len() > limit {
                        oldest.pop();
                    }
                }
            }
        })
        .map_err(|e| err = Some(e))
        .ok();
        if let Some(e) = err {
            return Err(storage(e));
        }
    }
    let mut kept: Vec<Heaped> = match direction {
        Direction::Backward => newest.into_iter().map(|r| r.0).collect(),
        Direction::Forward => oldest.into_iter().collect(),
    };
    match direction {
        Direction::Backward => kept.sort_by(|a, b| b.cmp(a)),
        Direction::Forward => kept.sort(),
    }
    let mut by_stream: BTreeMap<Arc<LabelMap>, Vec<(i64, String)>> = BTreeMap::new();
    for h in kept {
        by_stream.entry(h.labels).or_default().push((h.ts, h.line));
    }
    Ok(by_stream
        .into_iter()
        .map(|(labels, entries)| StreamResult {
            labels: (*labels).clone(),
            entries,
        })
        .collect())
}

/// Series with one optional value per grid step.
type GridSeries = Vec<(LabelMap, Vec<Option<f64>>)>;

/// A metric value on the step grid.
#[derive(Clone, Debug)]
enum Val {
    Scalar(f64),
    /// Series with one optional value per step.
    Grid(GridSeries),
}

/// The step grid of an evaluation.
#[derive(Clone, Debug)]
pub struct Grid {
    /// First evaluation time (ns).
    pub start: i64,
    /// Last evaluation time (ns), inclusive.
    pub end: i64,
    /// Step (ns), > 0.
    pub step: i64,
}

impl Grid {
    fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step) as usize + 1
        }
    }

    fn at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// Evaluates a metric query on a grid; an instant query is a grid of one point.
pub fn eval_metric(
    store: Option<&LogStore>,
    expr: &MetricExpr,
    grid: &Grid,
    limits: &EvalLimits,
    stats: &mut EvalStats,
) -> Result<Vec<SeriesResult>, LogqlError> {
    if grid.step <= 0 {
        return Err(LogqlError::BadParameters("step must be positive".into()));
    }
    let n = grid.len();
    let v = eval(store, expr, grid, limits, stats)?;
    Ok(match v {
        Val::Scalar(x) => vec![SeriesResult {
            labels: LabelMap::new(),
            points: (0..n).map(|i| (grid.at(i), x)).collect(),
        }],
        Val::Grid(series) => series
            .into_iter()
            .filter_map(|(labels, vals)| {
                let points: Vec<(i64, f64)> = vals
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (grid.at(i), v)))
                    .collect();
                (!points.is_empty()).then_some(SeriesResult { labels, points })
            })
            .collect(),
    })
}

/// True if the expression evaluates to a scalar.
pub fn is_scalar(expr: &MetricExpr) -> bool {
    match expr {
        MetricExpr::Number(_) => true,
        MetricExpr::Binary { lhs, rhs, .. } => is_scalar(lhs) && is_scalar(rhs),
        _ => false,
    }
}

fn eval(
    store: Option<&LogStore>,
    expr: &MetricExpr,
    grid: &Grid,
    limits: &EvalLimits,
    stats: &mut EvalStats,
) -> Result<Val, LogqlError> {
    match expr {
        MetricExpr::Number(x) => Ok(Val::Scalar(*x)),
        MetricExpr::Vector(x) => Ok(Val::Grid(vec![(
            LabelMap::new(),
            vec![Some(*x); grid.len()],
        )])),
        MetricExpr::Range {
            func,
            param,
            log,
            range_ns,
            offset_ns,
            grouping,
        } => {
            let Some(store) = store else {
                return Ok(Val::Grid(Vec::new()));
            };
            eval_range(
                store,
                *func,
                *param,
                log,
                *range_ns,
                *offset_ns,
                grouping.as_ref(),
                grid,
                limits,
                stats,
            )
        }
        MetricExpr::Agg {
            op,
            param,
            grouping,
            inner,
        } => {
            let v = eval(store, inner, grid, limits, stats)?;
            let Val::Grid(series) = v else {
                return Err(LogqlError::Execution(
                    "aggregations need a vector operand, not a scalar".into(),
                ));
            };
            Ok(Val::Grid(aggregate(
                *op,
                *param,
                grouping.as_ref(),
                series,
                grid.len(),
            )?))
        }
        MetricExpr::Binary {
            op,
            return_bool,
            lhs,
            rhs,
        } => {
            let l = eval(store, lhs, grid, limits, stats)?;
            let r = eval(store, rhs, grid, limits, stats)?;
            binary(*op, *return_bool, l, r)
        }
    }
}

fn group_key(labels: &LabelMap, g: Option<&Grouping>) -> LabelMap {
    match g {
        None => LabelMap::new(),
        Some(g) if g.without => labels
            .iter()
            .filter(|(k, _)| !g.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(g) => labels
            .iter()
            .filter(|(k, _)| g.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn labels_map(l: &Labels) -> LabelMap {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn eval_range(
    store: &LogStore,
    func: RangeFn,
    param: Option<f64>,
    log: &LogExpr,
    range_ns: i64,
    offset_ns: i64,
    grouping: Option<&Grouping>,
    grid: &Grid,
    limits: &EvalLimits,
    stats: &mut EvalStats,
) -> Result<Val, LogqlError> {
    let n = grid.len();
    // Samples are needed in (start - offset - range, end - offset].
    let lo = grid
        .start
        .saturating_sub(offset_ns)
        .saturating_sub(range_ns)
        .saturating_add(1);
    let hi = grid.end.saturating_sub(offset_ns).saturating_add(1);
    let pipeline = Pipeline::new(&log.stages);
    let chunks = select(store, log, &pipeline, lo, hi);
    stats.chunks_selected += chunks.len();
    let mut samples: HashMap<Arc<LabelMap>, Vec<(i64, f64)>> = HashMap::new();
    let use_bytes = matches!(func, RangeFn::Bytes | RangeFn::BytesRate);
    if pipeline.is_empty() {
        // Timestamps and sizes only; the lines stay compressed.
        let mut by_stream: HashMap<u32, Arc<LabelMap>> = HashMap::new();
        for c in &chunks {
            stats.chunks_decoded += 1;
            let key = by_stream
                .entry(c.stream_id)
                .or_insert_with(|| Arc::new(group_key_opt(&labels_map(&c.labels), grouping)))
                .clone();
            let idx = c.index().map_err(storage)?;
            let out = samples.entry(key).or_default();
            for (ts, len) in idx {
                if ts >= lo && ts < hi {
                    stats.entries_scanned += 1;
                    stats.bytes_scanned += u64::from(len);
                    out.push((ts, if use_bytes { f64::from(len) } else { 1.0 }));
                }
            }
        }
    } else {
        let mut cache: HashMap<LabelMap, Arc<LabelMap>> = HashMap::new();
        for c in &chunks {
            stats.chunks_decoded += 1;
            let mut err = None;
            c.for_each(|e| {
                if e.ts < lo || e.ts >= hi {
                    return;
                }
                stats.entries_scanned += 1;
                stats.bytes_scanned += e.line.len() as u64;
                let Some(p) = pipeline.process(e.ts, &e.line, &c.labels, &e.metadata) else {
                    return;
                };
                let v = match p.value {
                    Some(v) => v,
                    None if use_bytes => e.line.len() as f64,
                    None => 1.0,
                };
                let key = group_key_opt(&p.labels, grouping);
                let key = match cache.get(&key) {
                    Some(k) => k.clone(),
                    None => {
                        let a = Arc::new(key.clone());
                        cache.insert(key, a.clone());
                        a
                    }
                };
                samples.entry(key).or_default().push((e.ts, v));
            })
            .map_err(|e| err = Some(e))
            .ok();
            if let Some(e) = err {
                return Err(storage(e));
            }
            if samples.len() > limits.max_series {
                return Err(LogqlError::Execution(format!(
                    "maximum of series ({}) reached for a single query",
                    limits.max_series
                )));
            }
        }
    }
    if samples.len().saturating_mul(n) > limits.max_points {
        return Err(LogqlError::Execution(format!(
            "the query would produce more than {} points",
            limits.max_points
        )));
    }
    let range_s = range_ns as f64 / 1e9;
    let mut out = Vec::with_capacity(samples.len());
    for (labels, mut pts) in samples {
        pts.sort_by_key(|p| p.0);
        let mut vals = vec![None; n];
        let (mut a, mut b) = (0usize, 0usize);
        for (i, slot) in vals.iter_mut().enumerate() {
            let t = grid.at(i) - offset_ns;
            let from = t - range_ns; // exclusive
            while b < pts.len() && pts.get(b).is_some_and(|p| p.0 <= t) {
                b += 1;
            }
            while a < b && pts.get(a).is_some_and(|p| p.0 <= from) {
                a += 1;
            }
            let w = pts.get(a..b).unwrap_or_default();
            if w.is_empty() {
                continue;
            }
            *slot = Some(range_value(func, param, w, range_s));
        }
        out.push(((*labels).clone(), vals));
    }
    if func == RangeFn::Absent {
        // 1 where no series had a sample; labels from the equality matchers.
        let labels: LabelMap = log
            .matchers
            .iter()
            .filter(|m| m.op == strata_engine::MatchOp::Equal)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        let vals: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let any = out
                    .iter()
                    .any(|(_, v)| v.get(i).is_some_and(Option::is_some));
                (!any).then_some(1.0)
            })
            .collect();
        return Ok(Val::Grid(vec![(labels, vals)]));
    }
    Ok(Val::Grid(out))
}

fn group_key_opt(labels: &LabelMap, g: Option<&Grouping>) -> LabelMap {
    match g {
        None => labels.clone(),
        Some(_) => group_key(labels, g),
    }
}

/// The φ-quantile, as PromQL computes it.
fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    crate::promql::numeric::quantile(q, vals)
}

/// One PromQL aggregation kernel over values (see `promql::aggregate::reduce`).
fn reduce(op: &str, xs: impl IntoIterator<Item = f64>) -> f64 {
    crate::promql::aggregate::reduce(op, xs).unwrap_or(f64::NAN)
}

fn range_value(func: RangeFn, param: Option<f64>, w: &[(i64, f64)], range_s: f64) -> f64 {
    let n = w.len() as f64;
    let vals = || w.iter().map(|p| p.1);
    match func {
        RangeFn::Count => n,
        RangeFn::Rate => n / range_s,
        RangeFn::Bytes | RangeFn::Sum => reduce("sum", vals()),
        RangeFn::BytesRate => reduce("sum", vals()) / range_s,
        RangeFn::Avg => reduce("avg", vals()),
        RangeFn::Min => reduce("min", vals()),
        RangeFn::Max => reduce("max", vals()),
        RangeFn::Stdvar => reduce("stdvar", vals()),
        RangeFn::Stddev => reduce("stddev", vals()),
        RangeFn::Quantile => {
            let mut v: Vec<f64> = w.iter().map(|p| p.1).collect();
            quantile(param.unwrap_or(0.5), &mut v)
        }
        RangeFn::First => w.first().map_or(f64::NAN, |p| p.1),
        RangeFn::Last => w.last().map_or(f64::NAN, |p| p.1),
        RangeFn::Absent => 1.0,
    }
}

fn aggregate(
    op: AggOp,
    param: Option<f64>,
    grouping: Option<&Grouping>,
    series: GridSeries,
    n: usize,
) -> Result<GridSeries, LogqlError> {
    let mut groups: BTreeMap<LabelMap, Vec<usize>> = BTreeMap::new();
    for (i, (labels, _)) in series.iter().enumerate() {
        groups
            .entry(group_key(labels, grouping))
            .or_default()
            .push(i);
    }
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        let k = param.unwrap_or(1.0);
        if k.is_nan() || k < 1.0 {
            return Err(LogqlError::Execution(format!(
                "parameter of topk/bottomk must be >= 1, got {k}"
            )));
        }
        let k = k as usize;
        let mut keep: Vec<Vec<Option<f64>>> = vec![vec![None; n]; series.len()];
        for members in groups.values() {
            for step in 0..n {
                let mut vals: Vec<(f64, usize)> = members
                    .iter()
                    .filter_map(|&i| {
                        series
                            .get(i)?
                            .1
                            .get(step)
                            .copied()
                            .flatten()
                            .map(|v| (v, i))
                    })
                    .collect();
                vals.sort_by(|a, b| {
                    let o = a.0.total_cmp(&b.0);
                    if op == AggOp::Topk { o.reverse() } else { o }
                });
                for (v, i) in vals.into_iter().take(k) {
                    if let Some(slot) = keep.get_mut(i).and_then(|s| s.get_mut(step)) {
                        *slot = Some(v);
                    }
                }
            }
        }
        return Ok(series
            .into_iter()
            .zip(keep)
            .map(|((l, _), v)| (l, v))
            .filter(|(_, v)| v.iter().any(Option::is_some))
            .collect());
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, members) in groups {
        let mut vals = vec![None; n];
        for (step, slot) in vals.iter_mut().enumerate() {
            let xs: Vec<f64> = members
                .iter()
                .filter_map(|&i| series.get(i)?.1.get(step).copied().flatten())
                .collect();
            if xs.is_empty() {
                continue;
            }
            let name = match op {
                AggOp::Sum => "sum",
                AggOp::Avg => "avg",
                AggOp::Min => "min",
                AggOp::Max => "max",
                AggOp::Count => "count",
                AggOp::Stdvar => "stdvar",
                AggOp::Stddev => "stddev",
                AggOp::Topk | AggOp::Bottomk => "",
            };
            *slot = Some(reduce(name, xs.iter().copied()));
        }
        out.push((key, vals));
    }
    Ok(out)
}

fn arith(op: BinOp, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        BinOp::Eq => return (a == b).then_some(a),
        BinOp::Ne => return (a != b).then_some(a),
        BinOp::Gt => return (a > b).then_some(a),
        BinOp::Ge => return (a >= b).then_some(a),
        BinOp::Lt => return (a < b).then_some(a),
        BinOp::Le => return (a <= b).then_some(a),
    })
}

fn is_cmp(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le
    )
}

fn combine(op: BinOp, return_bool: bool, a: f64, b: f64, keep: f64) -> Option<f64> {
    if is_cmp(op) {
        let hit = arith(op, a, b).is_some();
        if return_bool {
            Some(if hit { 1.0 } else { 0.0 })
        } else {
            hit.then_some(keep)
        }
    } else {
        arith(op, a, b)
    }
}

fn binary(op: BinOp, return_bool: bool, l: Val, r: Val) -> Result<Val, LogqlError> {
    Ok(match (l, r) {
        (Val::Scalar(a), Val::Scalar(b)) => {
            if is_cmp(op) && !return_bool {
                return Err(LogqlError::Execution(
                    "comparisons between scalars must use the bool modifier".into(),
                ));
            }
            Val::Scalar(combine(op, true, a, b, a).unwrap_or(f64::NAN))
        }
        (Val::Grid(s), Val::Scalar(b)) => Val::Grid(
            s.into_iter()
                .map(|(l, v)| {
                    let v = v
                        .into_iter()
                        .map(|x| x.and_then(|a| combine(op, return_bool, a, b, a)))
                        .collect();
                    (l, v)
                })
                .collect(),
        ),
        (Val::Scalar(a), Val::Grid(s)) => Val::Grid(
            s.into_iter()
                .map(|(l, v)| {
                    let v = v
                        .into_iter()
                        .map(|x| x.and_then(|b| combine(op, return_bool, a, b, b)))
                        .collect();
                    (l, v)
                })
                .collect(),
        ),
        (Val::Grid(ls), Val::Grid(rs)) => {
            let right: HashMap<&LabelMap, &Vec<Option<f64>>> =
                rs.iter().map(|(l, v)| (l, v)).collect();
            let mut out = Vec::new();
            for (l, lv) in &ls {
                let Some(rv) = right.get(l) else { continue };
                let v = lv
                    .iter()
                    .zip(rv.iter())
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => combine(op, return_bool, *a, *b, *a),
                        _ => None,
                    })
                    .collect();
                out.push((l.clone(), v));
            }
            Val::Grid(out)
        }
    })
}
