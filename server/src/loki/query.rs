//! The Loki read API: `query`, `query_range`, `labels`, `label/<name>/values`, `series`,
//! `index/stats`, `index/volume`, `index/volume_range`.
//!
//! Queries run on the blocking pool. Log queries answer `resultType: "streams"` (entries as
//! `["<unix ns>", "<line>"]`, streams keyed by their final label set: stream labels, structured
//! metadata and parsed labels); metric queries answer `matrix` (range), `vector` or `scalar`
//! (instant) with Prometheus's point shape `[<unix seconds>, "<value>"]`. Instant queries of log
//! selectors are refused, as Loki refuses them.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use strata_engine::Matcher;
use strata_engine::logs::{ChunkSelect, LogStore};
use strata_query::logql::{
    self, Direction, EvalLimits, EvalStats, Expr, Grid, LabelMap, LogExpr, MetricExpr,
    SeriesResult, StreamResult,
};

use super::{LokiError, parse_loki_time};
use crate::api::{Params, fmt_value};
use crate::app::AppState;

const NS: i64 = 1_000_000_000;
/// Default look-back of queries without `start` (Loki: one hour).
const DEFAULT_RANGE_NS: i64 = 3600 * NS;
/// Default look-back of label and series queries without `start` (Loki: six hours).
const DEFAULT_LABELS_RANGE_NS: i64 = 6 * 3600 * NS;
/// Most entries a log query may return.
const MAX_LIMIT: usize = 50_000;

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn time_param(p: &Params, key: &str, default: i64) -> Result<i64, LokiError> {
    match p.get(key) {
        None | Some("") => Ok(default),
        Some(v) => parse_loki_time(v)
            .map_err(|e| LokiError::bad(format!("invalid parameter {key:?}: {e}"))),
    }
}

fn limit_param(p: &Params) -> Result<usize, LokiError> {
    match p.get("limit") {
        None | Some("") => Ok(100),
        Some(v) => {
            let n: usize = v.parse().map_err(|_| {
                LokiError::bad(format!(
                    "invalid parameter \"limit\": {v:?} is not a non-negative integer"
                ))
            })?;
            if n > MAX_LIMIT {
                return Err(LokiError::bad(format!(
                    "max entries limit per query exceeded, limit > max_entries_limit ({n} > {MAX_LIMIT})"
                )));
            }
            Ok(if n == 0 { 100 } else { n })
        }
    }
}

fn direction_param(p: &Params) -> Result<Direction, LokiError> {
    match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(o) => Err(LokiError::bad(format!(
            "invalid parameter \"direction\": {o:?} (use forward or backward)"
        ))),
    }
}

fn step_param(p: &Params, start: i64, end: i64) -> Result<i64, LokiError> {
    let default = ((end - start) / 250 / NS).max(1) * NS;
    match p.get("step") {
        None | Some("") => Ok(default),
        Some(v) => {
            let ns = if let Ok(f) = v.parse::<f64>() {
                (f * 1e9) as i64
            } else {
                logql::parser::parse_duration_ns(v)
                    .ok_or_else(|| LokiError::bad(format!("invalid parameter \"step\": {v:?}")))?
            };
            if ns <= 0 {
                return Err(LokiError::bad(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer",
                ));
            }
            Ok(ns)
        }
    }
}

fn parse_query(p: &Params) -> Result<Expr, LokiError> {
    let q = p
        .get("query")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| LokiError::bad("missing parameter \"query\""))?;
    logql::parse(q).map_err(|e| LokiError::bad(e.to_string()))
}

fn ts_secs(ns: i64) -> Json {
    if ns % NS == 0 {
        Json::from(ns / NS)
    } else {
        serde_json::Number::from_f64(ns as f64 / 1e9)
            .map(Json::Number)
            .unwrap_or(Json::Null)
    }
}

fn json_response(v: &Json) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding response: {e}"),
        )
        .into_response(),
    }
}

fn stats_json(st: &EvalStats, entries: usize, elapsed: f64) -> Json {
    let per_s = |x: u64| {
        if elapsed > 0.0 {
            (x as f64 / elapsed) as u64
        } else {
            0
        }
    };
    json!({
        "summary": {
            "bytesProcessedPerSecond": per_s(st.bytes_scanned),
            "linesProcessedPerSecond": per_s(st.entries_scanned),
            "totalBytesProcessed": st.bytes_scanned,
            "totalLinesProcessed": st.entries_scanned,
            "execTime": elapsed,
            "queueTime": 0,
            "totalEntriesReturned": entries,
            "totalChunksRef": st.chunks_selected,
            "totalChunksDownloaded": st.chunks_decoded,
        }
    })
}

/// Log streams in Loki's JSON shape.
pub fn streams_json(streams: &[StreamResult]) -> Json {
    Json::Array(
        streams
            .iter()
            .map(|s| {
                json!({
                    "stream": s.labels,
                    "values": s.entries.iter().map(|(ts, line)| json!([ts.to_string(), line])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn matrix_json(series: &[SeriesResult]) -> Json {
    Json::Array(
        series
            .iter()
            .map(|s| {
                json!({
                    "metric": s.labels,
                    "values": s.points.iter().map(|&(t, v)| json!([ts_secs(t), fmt_value(v)])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn vector_json(series: &[SeriesResult]) -> Json {
    Json::Array(
        series
            .iter()
            .filter_map(|s| {
                let &(t, v) = s.points.last()?;
                Some(json!({"metric": s.labels, "value": [ts_secs(t), fmt_value(v)]}))
            })
            .collect(),
    )
}

fn store_for(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<std::sync::Arc<LogStore>>, LokiError> {
    let tenant = crate::api::tenant(headers)?;
    Ok(state.loki.engine.existing(&tenant))
}

async fn blocking<F>(f: F) -> Response
where
    F: FnOnce() -> Result<Response, LokiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query task failed: {e}"),
        )
        .into_response(),
    }
}

fn eval_error(e: logql::LogqlError) -> LokiError {
    match e {
        logql::LogqlError::Storage(m) => LokiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        other => LokiError::bad(other.to_string()),
    }
}

fn run_metric(
    store: Option<&LogStore>,
    m: &MetricExpr,
    grid: &Grid,
    st: &mut EvalStats,
) -> Result<Vec<SeriesResult>, LokiError> {
    logql::eval_metric(store, m, grid, &EvalLimits::default(), st).map_err(eval_error)
}

/// `GET|POST /loki/api/v1/query`.
pub async fn instant(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    blocking(move || {
        let expr = parse_query(&p)?;
        let t = time_param(&p, "time", now_ns())?;
        let Expr::Metric(m) = expr else {
            return Err(LokiError::bad(
                "log queries are not supported as an instant query type; use query_range for log selectors",
            ));
        };
        let store = store_for(&state, &headers)?;
        let started = Instant::now();
        let mut st = EvalStats::default();
        let grid = Grid { start: t, end: t, step: NS };
        let series = run_metric(store.as_deref(), &m, &grid, &mut st)?;
        let (kind, result) = if logql::is_scalar(&m) {
            let v = series.first().and_then(|s| s.points.first()).map_or(f64::NAN, |p| p.1);
            ("scalar", json!([ts_secs(t), fmt_value(v)]))
        } else {
            ("vector", vector_json(&series))
        };
        Ok(json_response(&json!({
            "status": "success",
            "data": {"resultType": kind, "result": result, "stats": stats_json(&st, 0, started.elapsed().as_secs_f64())},
        })))
    })
    .await
}

/// `GET|POST /loki/api/v1/query_range`.
pub async fn range(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    blocking(move || {
        let expr = parse_query(&p)?;
        let end = time_param(&p, "end", now_ns())?;
        let start = time_param(&p, "start", end - DEFAULT_RANGE_NS)?;
        if end < start {
            return Err(LokiError::bad("end timestamp must not be before or equal to start time"));
        }
        let store = store_for(&state, &headers)?;
        let started = Instant::now();
        let mut st = EvalStats::default();
        let body = match expr {
            Expr::Log(log) => {
                let limit = limit_param(&p)?;
                let direction = direction_param(&p)?;
                let streams = match &store {
                    // A range that ends where it starts still selects the entries at `start`.
                    Some(s) => logql::eval_logs(s, &log, start, end.max(start + 1), limit, direction, &mut st)
                        .map_err(eval_error)?,
                    None => Vec::new(),
                };
                let n: usize = streams.iter().map(|s| s.entries.len()).sum();
                json!({
                    "status": "success",
                    "data": {"resultType": "streams", "result": streams_json(&streams), "stats": stats_json(&st, n, started.elapsed().as_secs_f64())},
                })
            }
            Expr::Metric(m) => {
                let step = step_param(&p, start, end)?;
                if (end - start) / step > 11_000 {
                    return Err(LokiError::bad(
                        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
                    ));
                }
                let grid = Grid { start, end, step };
                let series = run_metric(store.as_deref(), &m, &grid, &mut st)?;
                json!({
                    "status": "success",
                    "data": {"resultType": "matrix", "result": matrix_json(&series), "stats": stats_json(&st, 0, started.elapsed().as_secs_f64())},
                })
            }
        };
        Ok(json_response(&body))
    })
    .await
}

/// The stream selector of a query (the first one of a metric query).
fn first_log(expr: &Expr) -> Option<&LogExpr> {
    fn metric(m: &MetricExpr) -> Option<&LogExpr> {
        match m {
            MetricExpr::Range { log, .. } => Some(log),
            MetricExpr::Agg { inner, .. } => metric(inner),
            MetricExpr::Binary { lhs, rhs, .. } => metric(lhs).or_else(|| metric(rhs)),
            MetricExpr::Number(_) | MetricExpr::Vector(_) => None,
        }
    }
    match expr {
        Expr::Log(l) => Some(l),
        Expr::Metric(m) => metric(m),
    }
}

fn selector_param(p: &Params, key: &str) -> Result<Vec<Matcher>, LokiError> {
    match p.get(key).filter(|q| !q.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(q) => {
            let e = logql::parse(q).map_err(|e| LokiError::bad(e.to_string()))?;
            Ok(first_log(&e)
                .map(|l| l.matchers.clone())
                .unwrap_or_default())
        }
    }
}

fn label_range(p: &Params) -> Result<(i64, i64), LokiError> {
    let end = time_param(p, "end", now_ns())?;
    let start = time_param(p, "start", end - DEFAULT_LABELS_RANGE_NS)?;
    Ok((start, end.saturating_add(1)))
}

/// `GET|POST /loki/api/v1/labels`.
pub async fn labels(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    blocking(move || {
        let (start, end) = label_range(&p)?;
        let matchers = selector_param(&p, "query")?;
        let names = match store_for(&state, &headers)? {
            Some(s) => s.label_names(&matchers, start, end),
            None => Vec::new(),
        };
        Ok(json_response(&json!({"status": "success", "data": names})))
    })
    .await
}

/// `GET|POST /loki/api/v1/label/<name>/values`.
pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    blocking(move || {
        let (start, end) = label_range(&p)?;
        let matchers = selector_param(&p, "query")?;
        let values = match store_for(&state, &headers)? {
            Some(s) => s.label_values(&name, &matchers, start, end),
            None => Vec::new(),
        };
        Ok(json_response(&json!({"status": "success", "data": values})))
    })
    .await
}

/// `GET|POST /loki/api/v1/series`.
pub async fn series(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    blocking(move || {
        let (start, end) = label_range(&p)?;
        let mut selectors = p.all("match[]");
        selectors.extend(p.all("match"));
        let store = store_for(&state, &headers)?;
        let mut seen: BTreeMap<Vec<(String, String)>, ()> = BTreeMap::new();
        let mut sets: Vec<Vec<Matcher>> = Vec::new();
        for s in selectors {
            let e = logql::parse(s).map_err(|e| LokiError::bad(e.to_string()))?;
            if let Some(l) = first_log(&e) {
                sets.push(l.matchers.clone());
            }
        }
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        if let Some(store) = &store {
            for m in &sets {
                for s in store.streams(m, start, end) {
                    seen.insert(
                        s.labels
                            .iter()
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .collect(),
                        (),
                    );
                }
            }
        }
        let data: Vec<LabelMap> = seen.into_keys().map(|v| v.into_iter().collect()).collect();
        Ok(json_response(&json!({"status": "success", "data": data})))
    })
    .await
}

/// `GET|POST /loki/api/v1/index/stats`.
pub async fn stats(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    blocking(move || {
        let end = time_param(&p, "end", now_ns())?;
        let start = time_param(&p, "start", end - DEFAULT_RANGE_NS)?;
        let matchers = selector_param(&p, "query")?;
        let st = match store_for(&state, &headers)? {
            Some(s) if !matchers.is_empty() => s.stats(&matchers, start, end.saturating_add(1)),
            _ => Default::default(),
        };
        Ok(json_response(&json!({
            "streams": st.streams, "chunks": st.chunks, "bytes": st.bytes, "entries": st.entries,
        })))
    })
    .await
}

/// Bytes per target-label group, per bucket of the grid.
fn volumes(
    store: &LogStore,
    matchers: &[Matcher],
    targets: &[String],
    start: i64,
    end: i64,
    step: i64,
) -> Result<BTreeMap<LabelMap, Vec<u64>>, LokiError> {
    let buckets = ((end - start) / step).max(0) as usize + 1;
    let mut out: BTreeMap<LabelMap, Vec<u64>> = BTreeMap::new();
    for c in store.select(&ChunkSelect {
        matchers,
        start,
        end: end.saturating_add(1),
        ..ChunkSelect::default()
    }) {
        let key: LabelMap = c
            .labels
            .iter()
            .filter(|l| targets.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let slot = out.entry(key).or_insert_with(|| vec![0; buckets]);
        for (ts, len) in c.index()? {
            if ts < start || ts > end {
                continue;
            }
            let b = ((ts - start) / step) as usize;
            if let Some(x) = slot.get_mut(b.min(buckets - 1)) {
                *x += u64::from(len);
            }
        }
    }
    Ok(out)
}

fn volume_targets(p: &Params, matchers: &[Matcher]) -> Vec<String> {
    match p.get("targetLabels").filter(|t| !t.trim().is_empty()) {
        Some(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
        None => matchers.iter().map(|m| m.name.clone()).collect(),
    }
}

/// `GET|POST /loki/api/v1/index/volume`: bytes per group over the whole range, as a vector.
pub async fn volume(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    blocking(move || {
        let end = time_param(&p, "end", now_ns())?;
        let start = time_param(&p, "start", end - DEFAULT_RANGE_NS)?;
        let limit = limit_param(&p)?;
        let matchers = selector_param(&p, "query")?;
        let targets = volume_targets(&p, &matchers);
        let mut rows: Vec<(LabelMap, u64)> = match store_for(&state, &headers)? {
            Some(s) if !matchers.is_empty() => {
                let span = (end - start).max(1);
                volumes(&s, &matchers, &targets, start, end, span)?
                    .into_iter()
                    .map(|(k, v)| (k, v.iter().sum()))
                    .collect()
            }
            _ => Vec::new(),
        };
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(limit);
        let result: Vec<Json> = rows
            .into_iter()
            .map(|(k, v)| json!({"metric": k, "value": [ts_secs(end), v.to_string()]}))
            .collect();
        Ok(json_response(&json!({
            "status": "success", "data": {"resultType": "vector", "result": result},
        })))
    })
    .await
}

/// `GET|POST /loki/api/v1/index/volume_range`: bytes per group per step, as a matrix.
pub async fn volume_range(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    blocking(move || {
        let end = time_param(&p, "end", now_ns())?;
        let start = time_param(&p, "start", end - DEFAULT_RANGE_NS)?;
        let step = step_param(&p, start, end)?;
        if (end - start) / step > 11_000 {
            return Err(LokiError::bad(
                "exceeded maximum resolution of 11,000 points; increase step",
            ));
        }
        let limit = limit_param(&p)?;
        let matchers = selector_param(&p, "query")?;
        let targets = volume_targets(&p, &matchers);
        let rows = match store_for(&state, &headers)? {
            Some(s) if !matchers.is_empty() => volumes(&s, &matchers, &targets, start, end, step)?,
            _ => BTreeMap::new(),
        };
        let mut rows: Vec<(LabelMap, Vec<u64>)> = rows.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.iter().sum::<u64>()));
        rows.truncate(limit);
        let result: Vec<Json> = rows
            .into_iter()
            .map(|(k, v)| {
                let values: Vec<Json> = v
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b > 0)
                    .map(|(i, b)| json!([ts_secs(start + i as i64 * step), b.to_string()]))
                    .collect();
                json!({"metric": k, "values": values})
            })
            .collect();
        Ok(json_response(&json!({
            "status": "success", "data": {"resultType": "matrix", "result": result},
        })))
    })
    .await
}
