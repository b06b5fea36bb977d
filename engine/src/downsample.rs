//! Downsampled data: the reserved aggregate label, the aggregates a downsampled block stores,
//! the rules that decide when a selection may read them, and the read side that stitches
//! downsampled blocks, raw blocks and the head into one aggregate stream per series.
//!
//! A downsampled block is an ordinary block (same files, same format) whose `meta.json` has
//! `resolution_ms > 0`. Each raw series appears in it as several series that carry one extra,
//! reserved label [`AGGR_LABEL`] naming the aggregate: `count`, `sum`, `min`, `max`, `counter`,
//! `last`. Each holds one point per resolution window that has samples (windows aligned to
//! absolute multiples of the resolution), stamped with the timestamp of the window's last raw
//! sample. `counter` additionally starts with the block's first raw sample. The writer lives in
//! the compaction crate; `docs/FORMAT.md` ("Downsampled blocks") specifies the layout.
//!
//! # Invariants
//!
//! - The reserved label never leaves the engine: the querier strips it from series labels,
//!   hides it from label names and values, and treats user matchers on it as matchers on an
//!   absent label.
//! - A downsampled block covers exactly the time range of the raw data it was made from, so
//!   coarser and finer data can be cut apart on block boundaries.
//! - `counter` is reset-adjusted *within its block only* (value + the values before each reset
//!   since the block's first sample); the reader makes it continuous across blocks and into raw
//!   data by comparing raw values at the boundaries (`last`, or the raw first point).
//!
//! # Exactness
//!
//! `max_over_time`, `min_over_time`, `sum_over_time`, `count_over_time` and `avg_over_time`
//! (as `sum(sum) / sum(count)`) are exact when every query window boundary falls on a window
//! boundary of the resolution; otherwise the windows at the two edges of each query window are
//! counted whole or not at all (by their last sample's timestamp). `rate`/`increase` measure
//! the increase of the continuous counter from the last point before the window to the last
//! point in it; `docs/ARCHITECTURE.md` ("Downsampling") states the rules and the measured
//! tolerances.

use crate::querier::SelectHints;

/// The reserved label that names the aggregate of a series in a downsampled block.
pub const AGGR_LABEL: &str = "__aggr__";

/// The 5-minute resolution, in ms.
pub const RES_5M: i64 = 300_000;
/// The 1-hour resolution, in ms.
pub const RES_1H: i64 = 3_600_000;

/// A query's range must be at least this many resolution windows long for a range function to
/// read that resolution (so every window holds several aggregate points).
pub const MIN_WINDOWS_PER_RANGE: i64 = 5;

/// The aggregates of a downsampled series; [`Aggregate::Avg`] is not stored, it is read as
/// `sum` and `count` together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aggregate {
    /// Number of raw samples in the window.
    Count,
    /// Sum of the raw values in the window.
    Sum,
    /// Smallest raw value in the window.
    Min,
    /// Largest raw value in the window.
    Max,
    /// Reset-adjusted counter value at the window's last sample (continuous within a block).
    Counter,
    /// Raw value of the window's last sample.
    Last,
    /// `sum` and `count` read together, for `avg_over_time` (never stored).
    Avg,
}

impl Aggregate {
    /// The aggregates stored in a downsampled block, in label-value order.
    pub const STORED: [Aggregate; 6] = [
        Aggregate::Count,
        Aggregate::Counter,
        Aggregate::Last,
        Aggregate::Max,
        Aggregate::Min,
        Aggregate::Sum,
    ];

    /// The value of [`AGGR_LABEL`] for this aggregate.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Counter => "counter",
            Aggregate::Last => "last",
            Aggregate::Avg => "avg",
        }
    }

    /// Parses a stored aggregate name.
    pub fn from_name(s: &str) -> Option<Aggregate> {
        Aggregate::STORED.into_iter().find(|a| a.name() == s)
    }

    /// The aggregate that serves a selection for PromQL function `func` over range `range_ms`
    /// (0 for an instant selector), or `None` if the selection must read raw samples.
    pub fn for_function(func: Option<&str>, range_ms: i64) -> Option<Aggregate> {
        match (func, range_ms) {
            (None, 0) => Some(Aggregate::Last),
            (Some("rate" | "increase"), r) if r > 0 => Some(Aggregate::Counter),
            (Some("max_over_time"), r) if r > 0 => Some(Aggregate::Max),
            (Some("min_over_time"), r) if r > 0 => Some(Aggregate::Min),
            (Some("sum_over_time"), r) if r > 0 => Some(Aggregate::Sum),
            (Some("count_over_time"), r) if r > 0 => Some(Aggregate::Count),
            (Some("avg_over_time"), r) if r > 0 => Some(Aggregate::Avg),
            _ => None,
        }
    }
}

/// The labels of a downsampled series without the reserved [`AGGR_LABEL`].
pub fn without_aggr_label(labels: crate::labels::Labels) -> crate::labels::Labels {
    crate::labels::Labels::from_sorted(
        labels
            .into_vec()
            .into_iter()
            .filter(|l| l.name != AGGR_LABEL)
            .collect(),
    )
}

/// True if a selection with `hints` needing `aggr` may read data of resolution `res` (> 0).
///
/// - `max_resolution_ms` caps the resolution (`Some(0)` forces raw);
/// - in range queries every step must be at least `res`;
/// - `rate`/`increase` need `range >= res`: the counter stream is continuous, so the increase
///   over a window is measured from the last point before it (see `docs/ARCHITECTURE.md`,
///   "Downsampling"), which needs one point per window;
/// - the other range functions need `range >= 5 × res`, so that the windows cut at the edges
///   of each query window weigh little;
/// - plain selections (graphs) need a range query with `step >= res`.
pub fn resolution_allowed(hints: &SelectHints, aggr: Aggregate, res: i64) -> bool {
    if res <= 0 || hints.max_resolution_ms.is_some_and(|cap| res > cap) {
        return false;
    }
    let step_ok = hints.step_ms == 0 || hints.step_ms >= res;
    match aggr {
        Aggregate::Last => hints.range_ms == 0 && hints.step_ms >= res,
        Aggregate::Counter => hints.range_ms >= res && step_ok,
        _ => hints.range_ms >= res.saturating_mul(MIN_WINDOWS_PER_RANGE) && step_ok,
    }
}

/// The coarsest resolution a selection with `hints` for `aggr` could read (0: raw only), for
/// callers that must fetch a margin of data before their range.
pub fn coarsest_allowed(hints: &SelectHints, aggr: Aggregate) -> i64 {
    [RES_1H, RES_5M]
        .into_iter()
        .find(|&r| resolution_allowed(hints, aggr, r))
        .unwrap_or(0)
}

/// Parses `raw`, `5m`, `1h` or `auto` (any case) into a resolution cap for
/// [`SelectHints::max_resolution_ms`]: `Some(0)`, `Some(300000)`, `Some(3600000)`, `None`.
pub fn parse_max_source_resolution(s: &str) -> Option<Option<i64>> {
    match s.to_ascii_lowercase().as_str() {
        "raw" | "0" | "0s" => Some(Some(0)),
        "5m" => Some(Some(RES_5M)),
        "1h" => Some(Some(RES_1H)),
        "auto" | "" => Some(None),
        _ => None,
    }
}

/// True if `v` is Prometheus's staleness marker.
pub(crate) fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == 0x7ff0_0000_0000_0002
}

/// One point of an aggregate stream before stitching: its time, the aggregate's value, the raw
/// value at that time (for counters), and the block it came from (`None`: raw data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct StitchPoint {
    pub(crate) t: i64,
    pub(crate) value: f64,
    pub(crate) raw: f64,
    pub(crate) weight: f64,
    pub(crate) segment: Option<usize>,
}

/// Turns time-ordered points of one series into the stream of `aggr`; for counters, makes the
/// block-local reset-adjusted values continuous (see the module docs). Returns `(t, value,
/// weight)` where weight is the count for [`Aggregate::Avg`] and 1 otherwise.
pub(crate) fn stitch(aggr: Aggregate, pts: &[StitchPoint]) -> Vec<(i64, f64, f64)> {
    if aggr != Aggregate::Counter {
        return pts.iter().map(|p| (p.t, p.value, p.weight)).collect();
    }
    let mut out = Vec::with_capacity(pts.len());
    let mut prev: Option<&StitchPoint> = None;
    let mut g = 0.0;
    for p in pts {
        g = match prev {
            None => p.raw,
            Some(q) if q.segment.is_some() && q.segment == p.segment => g + (p.value - q.value),
            Some(q) => {
                if p.raw >= q.raw {
                    g + (p.raw - q.raw)
                } else {
                    g + p.raw
                }
            }
        };
        out.push((p.t, g, 1.0));
        prev = Some(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(t: i64, v: f64) -> StitchPoint {
        StitchPoint {
            t,
            value: v,
            raw: v,
            weight: 1.0,
            segment: None,
        }
    }

    fn ds(t: i64, counter: f64, last: f64, seg: usize) -> StitchPoint {
        StitchPoint {
            t,
            value: counter,
            raw: last,
            weight: 1.0,
            segment: Some(seg),
        }
    }

    #[test]
    fn counter_stitching_carries_offsets_and_detects_boundary_resets() {
        // Block 0: raw 5, 8, reset to 2, 4 → counter 5, 8, 10, 12 (last = raw).
        // Block 1 starts with raw 1 (reset at the boundary), then 3.
        // Then raw data 6, reset to 1.
        let pts = vec![
            ds(0, 5.0, 5.0, 0),
            ds(10, 8.0, 8.0, 0),
            ds(20, 12.0, 4.0, 0),
            ds(30, 1.0, 1.0, 1),
            ds(40, 3.0, 3.0, 1),
            raw(50, 6.0),
            raw(60, 1.0),
        ];
        let got: Vec<f64> = stitch(Aggregate::Counter, &pts)
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(got, vec![5.0, 8.0, 12.0, 13.0, 15.0, 18.0, 19.0]);
    }

    #[test]
    fn function_mapping_and_resolution_rules() {
        assert_eq!(Aggregate::for_function(None, 0), Some(Aggregate::Last));
        assert_eq!(
            Aggregate::for_function(Some("rate"), 3_600_000),
            Some(Aggregate::Counter)
        );
        assert_eq!(Aggregate::for_function(Some("rate"), 0), None);
        assert_eq!(Aggregate::for_function(Some("irate"), 60_000), None);
        assert_eq!(Aggregate::for_function(None, 60_000), None);
        let h = SelectHints {
            step_ms: 3_600_000,
            range_ms: 3_600_000,
            func: Some("rate".into()),
            ..SelectHints::default()
        };
        assert!(resolution_allowed(&h, Aggregate::Counter, RES_5M));
        assert!(resolution_allowed(&h, Aggregate::Counter, RES_1H));
        assert_eq!(coarsest_allowed(&h, Aggregate::Counter), RES_1H);
        assert!(resolution_allowed(&h, Aggregate::Max, RES_5M));
        assert!(!resolution_allowed(&h, Aggregate::Max, RES_1H));
        let forced = SelectHints {
            max_resolution_ms: Some(0),
            ..h.clone()
        };
        assert!(!resolution_allowed(&forced, Aggregate::Counter, RES_5M));
        let small_step = SelectHints {
            step_ms: 60_000,
            ..h
        };
        assert!(!resolution_allowed(&small_step, Aggregate::Counter, RES_5M));
        let graph = SelectHints {
            step_ms: RES_5M,
            ..SelectHints::default()
        };
        assert!(resolution_allowed(&graph, Aggregate::Last, RES_5M));
        assert!(!resolution_allowed(&graph, Aggregate::Last, RES_1H));
        assert_eq!(parse_max_source_resolution("RAW"), Some(Some(0)));
        assert_eq!(parse_max_source_resolution("auto"), Some(None));
        assert_eq!(parse_max_source_resolution("7m"), None);
    }
}
