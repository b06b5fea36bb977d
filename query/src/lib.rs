//! Query evaluation over the storage engine.
//!
//! This crate turns a parsed PromQL expression into values read through the engine's
//! [`Querier`]: the whole stable language (selectors, `offset`/`@`, subqueries, operators with
//! vector matching, aggregations, functions) plus the experimental pieces the parser accepts
//! (`limitk`/`limit_ratio`, `fill*` modifiers, `*_over_time` extensions). The evaluator lives
//! in the `promql` module; [`promqltest`] runs Prometheus's test scripts against it. What is
//! not implemented (native histograms, `info()`) is answered with [`QueryError::Unsupported`]
//! rather than a wrong answer.
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
mod promql;
pub mod promqltest;
pub mod traces;

use promql_parser::label::{MatchOp as PMatchOp, Matchers};
use promql_parser::parser::{self, Expr};
use strata_engine::{Labels, MatchOp, Matcher, Querier};

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
    /// Evaluation failed (Prometheus's `execution` error type).
    #[error("{0}")]
    Execution(String),
    /// The query ran longer than its timeout.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The query was cancelled (e.g. the client went away).
    #[error("query was canceled in expression evaluation")]
    Cancelled,
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
    /// Step of subqueries written without one (`[5m:]`), ms.
    pub subquery_step_ms: i64,
    /// Evaluation time limit.
    pub timeout: Option<std::time::Duration>,
    /// Set to true to abandon the evaluation (checked between series).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Threads one query may use to decode and compute series. Default: the available cores.
    pub parallelism: usize,
    /// The coarsest downsampled resolution (ms) selections may read: `None` (default) lets
    /// the storage pick the coarsest that serves each selection, `Some(0)` forces raw data.
    pub max_source_resolution_ms: Option<i64>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            lookback_ms: DEFAULT_LOOKBACK_MS,
            max_samples: 50_000_000,
            subquery_step_ms: 60_000,
            timeout: None,
            cancel: None,
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_source_resolution_ms: None,
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
    let (value, ann) = promql::run(q, &expr, query, t, t, 0, true, opts)?;
    Ok(QueryOutput {
        value,
        warnings: ann.warnings,
        infos: ann.infos,
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
    check_range(start, end, step)?;
    let (value, ann) = promql::run(q, &expr, query, start, end, step, false, opts)?;
    Ok(QueryOutput {
        value,
        warnings: ann.warnings,
        infos: ann.infos,
    })
}

/// Parses a PromQL expression.
///
/// Errors are worded and positioned as Prometheus reports them:
/// `1:6: parse error: expected type range vector in call to function "rate", got instant vector`.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    parser::parse(query).map_err(|m| QueryError::Parse(parse_error_message(query, &m)))
}

/// Rewrites a parser message in Prometheus's words and prefixes the `line:col` it is about.
fn parse_error_message(query: &str, msg: &str) -> String {
    let mut m = msg
        .replace("expected type matrix", "expected type range vector")
        .replace("expected type vector", "expected type instant vector")
        .replace("got vector", "got instant vector")
        .replace("got matrix", "got range vector");
    // `function 'rate'` → `function "rate"`.
    let mut func = None;
    if let Some(i) = m.find("function '")
        && let Some(j) = m[i + 10..].find('\'')
    {
        let name = m[i + 10..i + 10 + j].to_string();
        m = format!("{}function \"{name}\"{}", &m[..i], &m[i + 11 + j..]);
        func = Some(name);
    }
    if let Some(name) = m.strip_prefix("unknown function with name '") {
        m = format!(
            "unknown function with name \"{}\"",
            name.trim_end_matches('\'')
        );
    }
    let at = |needle: &str| query.find(needle);
    let offset =
        if m.contains("end of input") || m.contains("unclosed") || m == "invalid promql query" {
            Some(query.len())
        } else if let Some(name) = m.strip_prefix("unknown function with name ") {
            at(&name.replace('"', ""))
        } else if let Some(f) = &func {
            // The argument of the call.
            at(&format!("{f}(")).map(|i| {
                let rest = &query[i + f.len() + 1..];
                i + f.len() + 1 + (rest.len() - rest.trim_start().len())
            })
        } else if let Some(c) = m
            .rsplit(": '")
            .next()
            .filter(|c| c.len() <= 5 && m.contains(": '"))
        {
            at(c.trim_end_matches('\''))
        } else {
            None
        }
        .unwrap_or(0);
    let before = &query[..offset.min(query.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}: parse error: {m}")
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

fn check_range(start: i64, end: i64, step: i64) -> Result<(), QueryError> {
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
    Ok(())
}

/// Evaluates an instant query at `t` (ms).
pub fn eval_instant(
    q: &Querier,
    expr: &Expr,
    t: i64,
    opts: &EvalOptions,
) -> Result<Value, QueryError> {
    Ok(promql::run(q, expr, "", t, t, 0, true, opts)?.0)
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
    check_range(start, end, step)?;
    Ok(promql::run(q, expr, "", start, end, step, false, opts)?.0)
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
        match eval_instant(&q, &parse("sum(up)").unwrap(), 5, &o).unwrap() {
            Value::Vector(v) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
        let err = eval_instant(&q, &parse("start_timestamp(up)").unwrap(), 5, &o).unwrap_err();
        assert!(matches!(err, QueryError::Unsupported(_)), "{err}");
        assert!(matches!(parse("up{"), Err(QueryError::Parse(_))));
    }

    #[test]
    fn limits_and_cancellation() {
        let q = querier();
        // The sample limit stops a query before it holds more than the limit.
        let o = EvalOptions {
            max_samples: 2,
            ..EvalOptions::default()
        };
        let err = instant_query(&q, "up[10m]", 120_000, &o).unwrap_err();
        assert!(matches!(err, QueryError::TooManySamples), "{err}");
        assert_eq!(
            err.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
        // A cancelled query stops with `Cancelled`.
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let o = EvalOptions {
            cancel: Some(flag),
            ..EvalOptions::default()
        };
        let err = range_query(&q, "sum(rate(up[1m]))", 0, 120_000, 1000, &o).unwrap_err();
        assert!(matches!(err, QueryError::Cancelled), "{err}");
        // An expired timeout stops with `Timeout`.
        let o = EvalOptions {
            timeout: Some(Duration::ZERO),
            ..EvalOptions::default()
        };
        std::thread::sleep(Duration::from_millis(2));
        let err = instant_query(&q, "up", 60_000, &o).unwrap_err();
        assert!(matches!(err, QueryError::Timeout), "{err}");
        // Annotations carry the position of the sub-expression.
        let out = instant_query(&q, "rate(up[2m])", 120_000, &EvalOptions::default()).unwrap();
        assert_eq!(
            out.infos,
            vec![
                "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:6)"
                    .to_string()
            ]
        );
    }
}
