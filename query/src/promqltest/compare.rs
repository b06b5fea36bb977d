//! Matching an engine's result against an eval's expectations.
//!
//! This is the judge of the conformance runner, so its rules are exactly those of the format
//! (FORMAT.md §5.1–5.6), kept apart from parsing and evaluation to be tested on their own:
//! the float tolerance with its special cases for staleness markers and NaN, series matched as
//! a set (or in order with `expect ordered`), matrices sorted by labels with `_` gaps, scalar
//! versus vector, strings, and annotations per level. A mismatch is described in words and with
//! the expected and actual values rendered side by side.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use strata_engine::Labels;

use super::script::{AnnotationExpect, Eval, EvalMode, Expected, SeqValue, SeriesLine};
use crate::{Value, is_stale};

/// Relative tolerance of float comparisons.
pub const EPSILON: f64 = 1e-6;
/// Smallest positive normal f64.
const MIN_NORMAL: f64 = 2.2250738585072014e-308;

/// Most series and points printed per value in a report, to keep reports readable.
const MAX_RENDERED_SERIES: usize = 20;
const MAX_RENDERED_POINTS: usize = 30;

/// True if `a` and `b` match under the format's float rules (FORMAT.md §5.2).
pub fn floats_match(a: f64, b: f64) -> bool {
    if is_stale(a) || is_stale(b) {
        return is_stale(a) && is_stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

/// Why a result does not match, with both sides rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs, in one sentence.
    pub message: String,
    /// The expectation, rendered.
    pub expected: String,
    /// The result, rendered.
    pub got: String,
}

/// Formats a float as the scripts write it (`+Inf`, `NaN`, `stale`).
pub fn fmt_float(v: f64) -> String {
    if is_stale(v) {
        "stale".to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Renders a label set as a series description (`name{a="b"}`, `{}`).
pub fn fmt_labels(l: &Labels) -> String {
    let mut out = String::new();
    let name = l.get("__name__");
    if let Some(n) = name {
        out.push_str(n);
    }
    let rest: Vec<String> = l
        .iter()
        .filter(|x| x.name != "__name__")
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    if name.is_none() || !rest.is_empty() {
        let _ = write!(out, "{{{}}}", rest.join(", "));
    }
    out
}

fn fmt_seq(values: &[SeqValue]) -> String {
    let mut parts: Vec<String> = values
        .iter()
        .take(MAX_RENDERED_POINTS)
        .map(|v| match v {
            SeqValue::Omitted => "_".to_string(),
            SeqValue::Float(f) => fmt_float(*f),
            SeqValue::Histogram(h) => h.clone(),
        })
        .collect();
    if values.len() > MAX_RENDERED_POINTS {
        parts.push(format!("... ({} more)", values.len() - MAX_RENDERED_POINTS));
    }
    parts.join(" ")
}

fn limit_lines(mut lines: Vec<String>) -> String {
    if lines.len() > MAX_RENDERED_SERIES {
        let more = lines.len() - MAX_RENDERED_SERIES;
        lines.truncate(MAX_RENDERED_SERIES);
        lines.push(format!("... ({more} more series)"));
    }
    if lines.is_empty() {
        return "(empty)".to_string();
    }
    lines.join("\n")
}

/// Renders an expectation.
pub fn render_expected(e: &Expected) -> String {
    match e {
        Expected::Scalar(v) => format!("scalar {}", fmt_float(*v)),
        Expected::String(s) => format!("string {s:?}"),
        Expected::Series(series) => limit_lines(
            series
                .iter()
                .map(|s| format!("{} {}", fmt_labels(&s.labels), fmt_seq(&s.values)))
                .collect(),
        ),
    }
}

/// Renders a query result.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Scalar(_, f) => format!("scalar {}", fmt_float(*f)),
        Value::String(_, s) => format!("string {s:?}"),
        Value::Vector(samples) => {
            let lines = samples
                .iter()
                .map(|s| format!("{} {}", fmt_labels(&s.labels), fmt_float(s.v)))
                .collect::<Vec<_>>();
            if lines.is_empty() {
                "(empty vector)".to_string()
            } else {
                limit_lines(lines)
            }
        }
        Value::Matrix(series) => {
            let lines = series
                .iter()
                .map(|s| {
                    let mut pts: Vec<String> = s
                        .points
                        .iter()
                        .take(MAX_RENDERED_POINTS)
                        .map(|&(t, v)| format!("{}@{}", fmt_float(v), fmt_ts(t)))
                        .collect();
                    if s.points.len() > MAX_RENDERED_POINTS {
                        pts.push(format!(
                            "... ({} more)",
                            s.points.len() - MAX_RENDERED_POINTS
                        ));
                    }
                    format!("{} {}", fmt_labels(&s.labels), pts.join(" "))
                })
                .collect::<Vec<_>>();
            if lines.is_empty() {
                "(empty matrix)".to_string()
            } else {
                limit_lines(lines)
            }
        }
    }
}

/// Renders a timestamp as seconds (`90s`, `1.5s`).
fn fmt_ts(t: i64) -> String {
    if t % 1000 == 0 {
        format!("{}s", t / 1000)
    } else {
        format!("{}s", t as f64 / 1000.0)
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Scalar(..) => "scalar",
        Value::String(..) => "string",
        Value::Vector(_) => "vector",
        Value::Matrix(_) => "matrix",
    }
}

/// The time grid the expected series lines refer to: `(start, end, step)`, or `None` for an
/// instant vector expectation.
fn grid(ev: &Eval) -> Option<(i64, i64, i64)> {
    match (ev.mode, ev.range_vector) {
        (
            EvalMode::Range {
                start_ms,
                end_ms,
                step_ms,
            },
            _,
        ) => Some((start_ms, end_ms, step_ms)),
        (EvalMode::Instant { .. }, Some(rv)) => Some((rv.start_ms, rv.end_ms, rv.step_ms)),
        (EvalMode::Instant { .. }, None) => None,
    }
}

/// Compares a successful result with the eval's expected result (not annotations).
///
/// `check_order` is false for the range-mode cross-check, which ignores `expect ordered`.
pub fn compare_result(ev: &Eval, got: &Value, check_order: bool) -> Result<(), Mismatch> {
    let mismatch = |message: String| Mismatch {
        message,
        expected: render_expected(&ev.expected),
        got: render_value(got),
    };
    match (&ev.expected, got) {
        (Expected::Scalar(want), Value::Scalar(_, v)) => {
            if floats_match(*want, *v) {
                Ok(())
            } else {
                Err(mismatch(format!(
                    "expected scalar {} but got {}",
                    fmt_float(*want),
                    fmt_float(*v)
                )))
            }
        }
        (Expected::Scalar(_), other) => Err(mismatch(format!(
            "expected a scalar result, but got a {}",
            kind_name(other)
        ))),
        (Expected::String(want), Value::String(_, s)) => {
            if want == s {
                Ok(())
            } else {
                Err(mismatch(format!("expected string {want:?} but got {s:?}")))
            }
        }
        (Expected::String(_), other) => Err(mismatch(format!(
            "expected a string result, but got a {}",
            kind_name(other)
        ))),
        (Expected::Series(_), Value::Scalar(..) | Value::String(..)) => Err(mismatch(format!(
            "expected a vector or matrix result, but got a {}",
            kind_name(got)
        ))),
        (Expected::Series(series), Value::Vector(samples)) => {
            if grid(ev).is_some() && !samples.is_empty() {
                return Err(mismatch(
                    "expected a range vector (matrix), but got an instant vector".to_string(),
                ));
            }
            compare_vector(series, samples, ev.ordered && check_order).map_err(mismatch)
        }
        (Expected::Series(series), Value::Matrix(m)) => match grid(ev) {
            Some(g) => compare_matrix(series, m, g).map_err(mismatch),
            None if m.is_empty() && series.is_empty() => Ok(()),
            None => Err(mismatch(
                "expected an instant vector, but got a range vector (matrix); use 'expect range vector' for range vector results".to_string(),
            )),
        },
    }
}

fn compare_vector(
    expected: &[SeriesLine],
    samples: &[crate::Sample],
    ordered: bool,
) -> Result<(), String> {
    let by_labels: BTreeMap<&Labels, (usize, &SeriesLine)> = expected
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.labels, (i, s)))
        .collect();
    let mut seen = BTreeSet::new();
    for (pos, s) in samples.iter().enumerate() {
        let Some(&(exp_pos, exp)) = by_labels.get(&s.labels) else {
            return Err(format!(
                "unexpected series {} in result",
                fmt_labels(&s.labels)
            ));
        };
        if !seen.insert(&s.labels) {
            return Err(format!(
                "series {} appears more than once in the result",
                fmt_labels(&s.labels)
            ));
        }
        if ordered && exp_pos != pos {
            return Err(format!(
                "expected series {} at position {} but it was at position {}",
                fmt_labels(&s.labels),
                exp_pos + 1,
                pos + 1
            ));
        }
        match exp.values.first() {
            Some(SeqValue::Float(want)) => {
                if !floats_match(*want, s.v) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        fmt_float(*want),
                        fmt_labels(&s.labels),
                        fmt_float(s.v)
                    ));
                }
            }
            Some(SeqValue::Histogram(_)) => {
                return Err(format!(
                    "expected a histogram for {} but got the float {}",
                    fmt_labels(&s.labels),
                    fmt_float(s.v)
                ));
            }
            Some(SeqValue::Omitted) | None => {
                return Err(format!(
                    "expected no value for {} but got {}",
                    fmt_labels(&s.labels),
                    fmt_float(s.v)
                ));
            }
        }
    }
    for e in expected {
        if !seen.contains(&e.labels) && !matches!(e.values.first(), Some(SeqValue::Omitted) | None)
        {
            return Err(format!(
                "expected series {} not found in the result",
                fmt_labels(&e.labels)
            ));
        }
    }
    Ok(())
}

fn compare_matrix(
    expected: &[SeriesLine],
    got: &[crate::SeriesPoints],
    (start, end, step): (i64, i64, i64),
) -> Result<(), String> {
    for w in got.windows(2) {
        if let [a, b] = w
            && a.labels >= b.labels
        {
            return Err(format!(
                "matrix is not sorted by labels: {} comes before {}",
                fmt_labels(&a.labels),
                fmt_labels(&b.labels)
            ));
        }
    }
    let by_labels: BTreeMap<&Labels, &SeriesLine> =
        expected.iter().map(|s| (&s.labels, s)).collect();
    let mut seen = BTreeSet::new();
    for s in got {
        let Some(exp) = by_labels.get(&s.labels) else {
            return Err(format!(
                "unexpected series {} in result",
                fmt_labels(&s.labels)
            ));
        };
        seen.insert(&s.labels);
        let mut want: Vec<(i64, f64)> = Vec::new();
        for (k, v) in exp.values.iter().enumerate() {
            let t = i64::try_from(k)
                .ok()
                .and_then(|k| k.checked_mul(step))
                .and_then(|o| o.checked_add(start))
                .unwrap_or(i64::MAX);
            if t > end {
                return Err(format!(
                    "expected {} points for {}, but the query time range cannot return this many",
                    exp.values.len(),
                    fmt_labels(&s.labels)
                ));
            }
            match v {
                SeqValue::Omitted => {}
                SeqValue::Float(f) => want.push((t, *f)),
                SeqValue::Histogram(_) => {
                    return Err(format!(
                        "expected a histogram point at {} for {}, but this engine returns floats only",
                        fmt_ts(t),
                        fmt_labels(&s.labels)
                    ));
                }
            }
        }
        if want.len() != s.points.len() {
            return Err(format!(
                "expected {} points for {} but got {}",
                want.len(),
                fmt_labels(&s.labels),
                s.points.len()
            ));
        }
        for (i, (&(wt, wv), &(gt, gv))) in want.iter().zip(&s.points).enumerate() {
            if wt != gt {
                return Err(format!(
                    "expected point {i} of {} at {} but it is at {}",
                    fmt_labels(&s.labels),
                    fmt_ts(wt),
                    fmt_ts(gt)
                ));
            }
            if !floats_match(wv, gv) {
                return Err(format!(
                    "expected {} at {} for {} but got {}",
                    fmt_float(wv),
                    fmt_ts(wt),
                    fmt_labels(&s.labels),
                    fmt_float(gv)
                ));
            }
        }
    }
    for e in expected {
        let has_points = e.values.iter().any(|v| !matches!(v, SeqValue::Omitted));
        if !seen.contains(&e.labels) && has_points {
            return Err(format!(
                "expected series {} not found in the result",
                fmt_labels(&e.labels)
            ));
        }
    }
    Ok(())
}

/// Checks the annotations of one level (`level` is `warn` or `info`) against expectations.
pub fn compare_annotations(
    level: &str,
    expect: &AnnotationExpect,
    actual: &[String],
) -> Result<(), Mismatch> {
    let got = || {
        if actual.is_empty() {
            "(none)".to_string()
        } else {
            actual.join("\n")
        }
    };
    match expect {
        AnnotationExpect::Unchecked => Ok(()),
        AnnotationExpect::None => {
            if actual.is_empty() {
                Ok(())
            } else {
                Err(Mismatch {
                    message: format!("expected no {level} annotations"),
                    expected: "(none)".to_string(),
                    got: got(),
                })
            }
        }
        AnnotationExpect::Some(patterns) => {
            let expected = patterns
                .iter()
                .map(|p| format!("{level} {p}"))
                .collect::<Vec<_>>()
                .join("\n");
            let fail = |message: String| {
                Err(Mismatch {
                    message,
                    expected: expected.clone(),
                    got: got(),
                })
            };
            if actual.is_empty() {
                return fail(format!("expected {level} annotations but got none"));
            }
            if let Some(p) = patterns
                .iter()
                .find(|p| !actual.iter().any(|a| p.matches(a)))
            {
                return fail(format!("no {level} annotation matches the expectation {p}"));
            }
            if let Some(a) = actual
                .iter()
                .find(|a| !patterns.iter().any(|p| p.matches(a)))
            {
                return fail(format!("unexpected {level} annotation {a:?}"));
            }
            Ok(())
        }
    }
}
