//! Query evaluation over the storage engine.
//!
//! This crate turns a parsed PromQL expression into values read through the engine's
//! [`Querier`]. It currently evaluates the expressions that need no operators or functions:
//! instant vector selectors (with `offset` and `@`), range vector selectors (instant queries
//! only), number and string literals, and parentheses around them. Everything else is parsed
//! and answered with [`QueryError::Unsupported`], so a client sees a clear message rather than a
//! wrong answer. The full evaluator grows here.
//!
//! # Selection semantics (as Prometheus 3)
//!
//! - An instant vector selector at time `t` yields, per series, the newest sample in the
//!   left-open window `(t - lookback, t]`, unless that sample is a staleness marker.
//! - A range vector selector `[r]` at time `t` yields every sample in `(t - r, t]`, staleness
//!   markers removed.
//! - `offset d` shifts the window back by `d`; `@ ts` pins it to `ts` (`start()`/`end()` to the
//!   query's start and end).
//! - Results of a plain selector keep the metric name.

use std::time::Duration;

pub mod logql;
pub mod promqltest;

pub mod traces;
use promql_parser::label::{MatchOp as PMatchOp, Matchers};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};
use strata_engine::{Labels, MatchOp, Matcher, Querier, SelectHints};

/// Prometheus's staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Default lookback delta (5 minutes).
pub const DEFAULT_LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most points a range query may return per series (as Prometheus).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// True if `v` is Prometheus's staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Errors of query evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query does not parse.
    #[error("{0}")]
    Parse(String),
    /// Valid PromQL that this version cannot evaluate yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// Parameters are inconsistent (e.g. end before start).
    #[error("{0}")]
    BadParameters(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] strata_engine::Error),
    /// A query returned more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
}

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series labels.
    pub labels: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// One series of a range vector or matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoints {
    /// Series labels.
    pub labels: Labels,
    /// `(timestamp_ms, value)` points, ascending.
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Instant vector.
    Vector(Vec<Sample>),
    /// Range vector / matrix.
    Matrix(Vec<SeriesPoints>),
    /// Scalar at a timestamp.
    Scalar(i64, f64),
    /// String at a timestamp.
    String(i64, String),
}

/// Limits and options of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Lookback delta (ms).
    pub lookback_ms: i64,
    /// Maximum samples loaded by one query.
    pub max_samples: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            lookback_ms: DEFAULT_LOOKBACK_MS,
            max_samples: 50_000_000,
        }
    }
}

/// A query's value with the annotations (warnings and infos) raised while evaluating it,
/// rendered as Prometheus's HTTP API renders them (`PromQL warning: ... (line:col)`).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutput {
    /// The result.
    pub value: Value,
    /// Warning annotations.
    pub warnings: Vec<String>,
    /// Info annotations.
    pub infos: Vec<String>,
}

/// Parses and evaluates `query` at `t` (ms).
pub fn instant_query(
    q: &Querier,
    query: &str,
    t: i64,
    opts: &EvalOptions,
) -> Result<QueryOutput, QueryError> {
    let expr = parse(query)?;
    Ok(QueryOutput {
        value: eval_instant(q, &expr, t, opts)?,
        warnings: Vec::new(),
        infos: Vec::new(),
    })
}

/// Parses and evaluates `query` over `[start, end]` every `step` (all ms).
pub fn range_query(
    q: &Querier,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    opts: &EvalOptions,
) -> Result<QueryOutput, QueryError> {
    let expr = parse(query)?;
    Ok(QueryOutput {
        value: eval_range(q, &expr, start, end, step, opts)?,
        warnings: Vec::new(),
        infos: Vec::new(),
    })
}

/// Parses a PromQL expression.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    parser::parse(query).map_err(QueryError::Parse)
}

/// Converts parser matchers into engine matchers.
pub fn to_engine_matchers(ms: &Matchers, name: Option<&str>) -> Result<Vec<Matcher>, QueryError> {
    let mut out = Vec::new();
    if let Some(n) = name {
        out.push(Matcher::equal(strata_engine::labels::METRIC_NAME, n));
    }
    for m in &ms.matchers {
        let op = match &m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| QueryError::Parse(e.to_string()))?,
        );
    }
    if !ms.or_matchers.is_empty() {
        return Err(QueryError::Unsupported(
            "selectors with 'or' matcher groups".to_string(),
        ));
    }
    Ok(out)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

fn at_ms(at: &Option<AtModifier>, t: i64, start: i64, end: i64) -> Result<i64, QueryError> {
    Ok(match at {
        None => t,
        Some(AtModifier::Start) => start,
        Some(AtModifier::End) => end,
        Some(AtModifier::At(st)) => match st.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        },
    })
}

/// Selects raw series for a vector selector over `(mint, maxt]`.
fn select(
    q: &Querier,
    vs: &VectorSelector,
    mint_excl: i64,
    maxt: i64,
    hints: &SelectHints,
    budget: &mut usize,
) -> Result<Vec<SeriesPoints>, QueryError> {
    let matchers = to_engine_matchers(&vs.matchers, vs.name.as_deref())?;
    let series = q.select(&matchers, mint_excl.saturating_add(1), maxt, hints)?;
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let points: Vec<(i64, f64)> = s.samples(mint_excl.saturating_add(1), maxt)?;
        if points.len() > *budget {
            return Err(QueryError::TooManySamples);
        }
        *budget -= points.len();
        if !points.is_empty() {
            out.push(SeriesPoints {
                labels: s.labels().clone(),
                points,
            });
        }
    }
    Ok(out)
}

fn strip(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => strip(&p.expr),
        e => e,
    }
}

/// Evaluates an instant query at `t` (ms).
pub fn eval_instant(
    q: &Querier,
    expr: &Expr,
    t: i64,
    opts: &EvalOptions,
) -> Result<Value, QueryError> {
    let mut budget = opts.max_samples;
    match strip(expr) {
        Expr::NumberLiteral(n) => Ok(Value::Scalar(t, n.val)),
        Expr::StringLiteral(s) => Ok(Value::String(t, s.val.clone())),
        Expr::VectorSelector(vs) => {
            let at = at_ms(&vs.at, t, t, t)?.saturating_sub(offset_ms(&vs.offset));
            let hints = SelectHints {
                start_ms: t,
                end_ms: t,
                ..SelectHints::default()
            };
            let series = select(
                q,
                vs,
                at.saturating_sub(opts.lookback_ms),
                at,
                &hints,
                &mut budget,
            )?;
            let mut out: Vec<Sample> = series
                .into_iter()
                .filter_map(|s| {
                    let &(_, v) = s.points.last()?;
                    (!is_stale(v)).then_some(Sample {
                        labels: s.labels,
                        t,
                        v,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(Value::Vector(out))
        }
        Expr::MatrixSelector(ms) => {
            let vs = &ms.vs;
            let range = ms.range.as_millis() as i64;
            let at = at_ms(&vs.at, t, t, t)?.saturating_sub(offset_ms(&vs.offset));
            let hints = SelectHints {
                start_ms: t,
                end_ms: t,
                range_ms: range,
                ..SelectHints::default()
            };
            let mut series = select(q, vs, at.saturating_sub(range), at, &hints, &mut budget)?;
            for s in &mut series {
                s.points.retain(|&(_, v)| !is_stale(v));
            }
            series.retain(|s| !s.points.is_empty());
            Ok(Value::Matrix(series))
        }
        other => Err(unsupported(other)),
    }
}

fn unsupported(e: &Expr) -> QueryError {
    let kind = match e {
        Expr::Aggregate(_) => "aggregations",
        Expr::Unary(_) => "unary expressions",
        Expr::Binary(_) => "binary expressions",
        Expr::Subquery(_) => "subqueries",
        Expr::Call(_) => "function calls",
        Expr::Extension(_) => "extensions",
        _ => "this expression",
    };
    QueryError::Unsupported(format!(
        "{kind} (this version evaluates selectors and literals only)"
    ))
}

/// Evaluates a range query over `[start, end]` every `step` (all ms).
pub fn eval_range(
    q: &Querier,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    opts: &EvalOptions,
) -> Result<Value, QueryError> {
    if end < start {
        return Err(QueryError::BadParameters(
            "end timestamp must not be before start time".into(),
        ));
    }
    if step <= 0 {
        return Err(QueryError::BadParameters(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step >= MAX_POINTS_PER_SERIES {
        return Err(QueryError::BadParameters(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let steps: Vec<i64> = (0..)
        .map(|i| start + i * step)
        .take_while(|&t| t <= end)
        .collect();
    match strip(expr) {
        Expr::NumberLiteral(n) => Ok(Value::Matrix(vec![SeriesPoints {
            labels: Labels::default(),
            points: steps.iter().map(|&t| (t, n.val)).collect(),
        }])),
        Expr::StringLiteral(_) => Err(QueryError::BadParameters(
            "invalid expression type \"string\" for range query, must be Scalar or instant Vector"
                .into(),
        )),
        Expr::MatrixSelector(_) => Err(QueryError::BadParameters(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
        )),
        Expr::VectorSelector(vs) => {
            let mut budget = opts.max_samples;
            let off = offset_ms(&vs.offset);
            let hints = SelectHints {
                start_ms: start,
                end_ms: end,
                step_ms: step,
                ..SelectHints::default()
            };
            // With `@`, every step evaluates at the same time.
            let eval_time = |t: i64| -> Result<i64, QueryError> {
                Ok(at_ms(&vs.at, t, start, end)?.saturating_sub(off))
            };
            let first = eval_time(start)?;
            let last = eval_time(end)?;
            let lo = first.min(last).saturating_sub(opts.lookback_ms);
            let hi = first.max(last);
            let series = select(q, vs, lo, hi, &hints, &mut budget)?;
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                let mut points = Vec::new();
                for &t in &steps {
                    let at = eval_time(t)?;
                    // Newest sample with ts in (at - lookback, at].
                    let pts = &s.points;
                    let upto = pts.partition_point(|p| p.0 <= at);
                    if upto == 0 {
                        continue;
                    }
                    if let Some(&(ts, v)) = pts.get(upto - 1)
                        && ts > at.saturating_sub(opts.lookback_ms)
                        && !is_stale(v)
                    {
                        points.push((t, v));
                    }
                }
                if !points.is_empty() {
                    out.push(SeriesPoints {
                        labels: s.labels,
                        points,
                    });
                }
            }
            Ok(Value::Matrix(out))
        }
        other => Err(unsupported(other)),
    }
}

/// Parses a Prometheus duration (`5m`, `1h30m`, `500ms`) or float seconds into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, QueryError> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(QueryError::BadParameters(format!("invalid duration {s:?}")));
        }
        return Ok(Duration::from_secs_f64(secs));
    }
    promql_parser::util::parse_duration(s)
        .map_err(|e| QueryError::BadParameters(format!("invalid duration {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_engine::{Head, HeadOptions};

    fn querier() -> Querier {
        let head = Arc::new(Head::new(HeadOptions::default()));
        let l = |job: &str| Labels::from_pairs(&[("__name__", "up"), ("job", job)]).unwrap();
        let mut acc = Vec::new();
        let (a, _) = head.get_or_create(&l("a"));
        head.append(
            a,
            &[
                (0, 1.0),
                (60_000, 2.0),
                (120_000, f64::from_bits(STALE_NAN_BITS)),
            ],
            &mut acc,
        )
        .unwrap();
        let (b, _) = head.get_or_create(&l("b"));
        head.append(b, &[(30_000, 5.0)], &mut acc).unwrap();
        Querier::new(head, Vec::new())
    }

    fn vector(v: Value) -> Vec<(String, f64)> {
        match v {
            Value::Vector(s) => s
                .into_iter()
                .map(|s| (s.labels.get("job").unwrap_or("").to_string(), s.v))
                .collect(),
            other => panic!("not a vector: {other:?}"),
        }
    }

    #[test]
    fn instant_selector_uses_lookback_and_staleness() {
        let q = querier();
        let o = EvalOptions::default();
        let e = parse("up").unwrap();
        assert_eq!(
            vector(eval_instant(&q, &e, 90_000, &o).unwrap()),
            vec![("a".into(), 2.0), ("b".into(), 5.0)]
        );
        // At 120 s series a is stale.
        assert_eq!(
            vector(eval_instant(&q, &e, 120_000, &o).unwrap()),
            vec![("b".into(), 5.0)]
        );
        // Left-open lookback: the sample at 30 s is out of (330 s - 300 s, 330 s].
        assert!(vector(eval_instant(&q, &e, 330_000, &o).unwrap()).is_empty());
        let e = parse("up offset 1m").unwrap();
        assert_eq!(
            vector(eval_instant(&q, &e, 90_000, &o).unwrap()),
            vec![("a".into(), 1.0), ("b".into(), 5.0)]
        );
        let e = parse(r#"up{job=~"b"} @ 100"#).unwrap();
        assert_eq!(
            vector(eval_instant(&q, &e, 999_000, &o).unwrap()),
            vec![("b".into(), 5.0)]
        );
    }

    #[test]
    fn range_selector_and_range_query() {
        let q = querier();
        let o = EvalOptions::default();
        match eval_instant(&q, &parse("up[1m]").unwrap(), 60_000, &o).unwrap() {
            Value::Matrix(m) => {
                assert_eq!(m.len(), 2);
                assert_eq!(
                    m[0].points,
                    vec![(60_000, 2.0)],
                    "left-open window excludes t=0"
                );
            }
            other => panic!("{other:?}"),
        }
        match eval_range(&q, &parse("up").unwrap(), 0, 120_000, 60_000, &o).unwrap() {
            Value::Matrix(m) => {
                assert_eq!(m[0].points, vec![(0, 1.0), (60_000, 2.0)]);
                assert_eq!(m[1].points, vec![(60_000, 5.0), (120_000, 5.0)]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            eval_range(&q, &parse("up").unwrap(), 0, 10_000_000_000, 1, &o),
            Err(QueryError::BadParameters(_))
        ));
    }

    #[test]
    fn literals_and_unsupported() {
        let q = querier();
        let o = EvalOptions::default();
        assert_eq!(
            eval_instant(&q, &parse("(42)").unwrap(), 5, &o).unwrap(),
            Value::Scalar(5, 42.0)
        );
        let err = eval_instant(&q, &parse("sum(up)").unwrap(), 5, &o).unwrap_err();
        assert!(err.to_string().contains("aggregations"), "{err}");
        assert!(matches!(parse("up{"), Err(QueryError::Parse(_))));
    }
}
