//! The Prometheus HTTP query API, with Prometheus's exact JSON shapes.
//!
//! Every endpoint accepts GET with a query string and POST with a form body (merged, as
//! Prometheus does), reads one tenant (`X-Scope-OrgID`), and answers
//! `{"status":"success","data":…}` or the error envelope of [`crate::api`]. Query evaluation
//! runs on the blocking pool so a long query never stalls the runtime; a `timeout` parameter
//! (or the default of 2 minutes) bounds it with a `timeout` error (503).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};
use serde_json::{Map, Value as Json, json};
use strata_engine::{Labels, Matcher, SelectHints};
use strata_query::{EvalOptions, QueryError, Value};

use crate::api::{
    ApiError, ErrorKind, FmtValue, MAX_TIME_MS, MIN_TIME_MS, Params, fmt_value, parse_duration_ms,
    success, success_annotated, tenant, time_param, ts_secs,
};
use crate::app::AppState;

/// Default query timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Routes of the query API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route(
            "/api/v1/admin/tsdb/snapshot",
            axum::routing::post(snapshot).put(snapshot),
        )
        .route(
            "/api/v1/admin/tsdb/delete_series",
            axum::routing::post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            axum::routing::post(clean_tombstones).put(clean_tombstones),
        )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn labels_json(l: &Labels) -> Json {
    let mut m = Map::new();
    for x in l {
        m.insert(x.name.clone(), Json::String(x.value.clone()));
    }
    Json::Object(m)
}

/// `[<unix seconds>, "<value>"]`.
struct PointJson(i64, f64);

impl Serialize for PointJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&ts_secs(self.0))?;
        t.serialize_element(&Collect(FmtValue(self.1)))?;
        t.end()
    }
}

/// Serializes a `Display` as a JSON string without an intermediate `String`.
struct Collect<D>(D);

impl<D: std::fmt::Display> Serialize for Collect<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A label set as a JSON object.
struct LabelsJson<'a>(&'a Labels);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0 {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

struct VectorResult<'a>(&'a [strata_query::Sample]);

impl Serialize for VectorResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in self.0 {
            seq.serialize_element(&SampleJson(x))?;
        }
        seq.end()
    }
}

struct SampleJson<'a>(&'a strata_query::Sample);

impl Serialize for SampleJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", &LabelsJson(&self.0.labels))?;
        m.serialize_entry("value", &PointJson(self.0.t, self.0.v))?;
        m.end()
    }
}

struct MatrixResult<'a>(&'a [strata_query::SeriesPoints]);

impl Serialize for MatrixResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in self.0 {
            seq.serialize_element(&SeriesJson(x))?;
        }
        seq.end()
    }
}

struct SeriesJson<'a>(&'a strata_query::SeriesPoints);

impl Serialize for SeriesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", &LabelsJson(&self.0.labels))?;
        m.serialize_entry("values", &PointsJson(&self.0.points))?;
        m.end()
    }
}

struct PointsJson<'a>(&'a [(i64, f64)]);

impl Serialize for PointsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for &(t, v) in self.0 {
            seq.serialize_element(&PointJson(t, v))?;
        }
        seq.end()
    }
}

/// A query result as Prometheus's `data` object (`resultType` first, then `result`),
/// serialized straight to the response bytes: large range results never exist as a tree of
/// JSON values.
pub struct ValueJson<'a>(pub &'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self.0 {
            Value::Vector(samples) => {
                m.serialize_entry("resultType", "vector")?;
                m.serialize_entry("result", &VectorResult(samples))?;
            }
            Value::Matrix(series) => {
                m.serialize_entry("resultType", "matrix")?;
                m.serialize_entry("result", &MatrixResult(series))?;
            }
            Value::Scalar(t, v) => {
                m.serialize_entry("resultType", "scalar")?;
                m.serialize_entry("result", &PointJson(*t, *v))?;
            }
            Value::String(t, v) => {
                m.serialize_entry("resultType", "string")?;
                m.serialize_entry("result", &(ts_secs(*t), v))?;
            }
        }
        m.end()
    }
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Parse(m) => ApiError::bad_data(format!("invalid parameter \"query\": {m}")),
        QueryError::BadParameters(m) => ApiError::bad_data(m),
        QueryError::Unsupported(_) | QueryError::TooManySamples => {
            ApiError::new(ErrorKind::Execution, e.to_string())
        }
        QueryError::Storage(s) => ApiError::internal(s.to_string()),
        QueryError::Timeout => ApiError::new(ErrorKind::Timeout, e.to_string()),
        QueryError::Cancelled => ApiError::new(ErrorKind::Canceled, e.to_string()),
        other => ApiError::new(ErrorKind::Execution, other.to_string()),
    }
}

fn eval_options(state: &AppState, p: &Params) -> Result<EvalOptions, ApiError> {
    let lookback_ms = match p.get("lookback_delta") {
        Some(v) if !v.is_empty() => parse_duration_ms(v).map_err(|e| {
            ApiError::bad_data(format!("invalid parameter \"lookback_delta\": {e}"))
        })?,
        _ => state.options.lookback_ms,
    };
    // Which resolution queries may read: `raw`, `5m`, `1h` or `auto` (default).
    let max_source_resolution_ms = match p.get("max_source_resolution") {
        Some(v) => strata_engine::downsample::parse_max_source_resolution(v).ok_or_else(|| {
            ApiError::bad_data(format!(
                "invalid parameter \"max_source_resolution\": {v:?} is not one of raw, 5m, 1h, auto"
            ))
        })?,
        None => None,
    };
    Ok(EvalOptions {
        lookback_ms,
        max_samples: state.options.query_max_samples,
        max_source_resolution_ms,
        ..EvalOptions::default()
    })
}

fn timeout(p: &Params) -> Result<Duration, ApiError> {
    match p.get("timeout") {
        Some(v) if !v.is_empty() => parse_duration_ms(v)
            .map(|ms| Duration::from_millis(ms.max(1) as u64))
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"timeout\": {e}"))),
        _ => Ok(DEFAULT_TIMEOUT),
    }
}

/// Runs `f` on the blocking pool with a timeout.
async fn run_blocking<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError::internal(format!("query task failed: {e}"))),
        Err(_) => Err(ApiError::new(
            ErrorKind::Timeout,
            "query timed out in expression evaluation",
        )),
    }
}

/// The required `query` parameter.
fn query_param(p: &Params) -> Result<String, ApiError> {
    p.get("query")
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing"))
}

/// Sets the flag when dropped: the handler's future is dropped when the client disconnects
/// or the timeout fires, and the evaluation (on the blocking pool) sees the flag and stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Queries evaluated at once (twice the cores); further ones wait for a slot, so a burst of
/// dashboard queries cannot take every blocking thread.
fn query_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        Semaphore::new(std::thread::available_parallelism().map_or(4, |n| n.get() * 2))
    })
}

/// Evaluates `q` for a tenant on the blocking pool, timing it under `endpoint`.
async fn evaluate(
    state: &AppState,
    tenant: String,
    q: String,
    p: &Params,
    endpoint: &'static str,
    eval: impl FnOnce(
        &strata_engine::Querier,
        &str,
        &EvalOptions,
    ) -> Result<strata_query::QueryOutput, QueryError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let mut opts = eval_options(state, p)?;
    let limit = timeout(p)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    opts.timeout = Some(limit);
    opts.cancel = Some(cancel);
    let _slot = query_slots()
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("query slots: {e}")))?;
    let engine = state.engine.clone();
    let started = Instant::now();
    let out = run_blocking(limit, move || {
        let querier = engine.querier(&tenant)?;
        eval(&querier, &q, &opts).map_err(query_error)
    })
    .await?;
    state
        .metrics
        .query_duration
        .observe(&[endpoint], started.elapsed().as_secs_f64());
    Ok(success_annotated(
        ValueJson(&out.value),
        &out.warnings,
        &out.infos,
    ))
}

async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let q = query_param(&p)?;
    let t = time_param(&p, "time", now_ms())?;
    evaluate(&state, tenant, q, &p, "query", move |querier, q, opts| {
        strata_query::instant_query(querier, q, t, opts)
    })
    .await
}

async fn query_range(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let q = query_param(&p)?;
    let need = |k: &str| -> Result<i64, ApiError> {
        match p.get(k) {
            Some(v) if !v.is_empty() => time_param(&p, k, 0),
            _ => Err(ApiError::bad_data(format!(
                "invalid parameter {k:?}: missing"
            ))),
        }
    };
    let start = need("start")?;
    let end = need("end")?;
    let step = match p.get("step") {
        Some(v) if !v.is_empty() => parse_duration_ms(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?,
        _ => return Err(ApiError::bad_data("invalid parameter \"step\": missing")),
    };
    evaluate(
        &state,
        tenant,
        q,
        &p,
        "query_range",
        move |querier, q, opts| strata_query::range_query(querier, q, start, end, step, opts),
    )
    .await
}

/// Parses `match[]` selectors into matcher sets.
fn match_params(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for m in p.all("match[]") {
        let expr = strata_query::parse(m)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?;
        match expr {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                let ms = strata_query::to_engine_matchers(&vs.matchers, vs.name.as_deref())
                    .map_err(|e| {
                        ApiError::bad_data(format!("invalid parameter \"match[]\": {e}"))
                    })?;
                if ms.iter().all(|m| m.matches_empty()) {
                    return Err(ApiError::bad_data(format!(
                        "invalid parameter \"match[]\": {m}: match[] must contain at least one non-empty matcher"
                    )));
                }
                sets.push(ms);
            }
            _ => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"match[]\": {m:?} is not a series selector"
                )));
            }
        }
    }
    Ok(sets)
}

fn limit_param(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(usize::MAX),
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter \"limit\": {v:?} is not a non-negative integer"
            ))
        }),
    }
}

fn truncate_warn<T>(v: &mut Vec<T>, limit: usize) -> Vec<String> {
    if v.len() > limit {
        v.truncate(limit);
        vec!["results truncated due to limit".to_string()]
    } else {
        Vec::new()
    }
}

async fn series(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let sets = match_params(&p)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = time_param(&p, "start", MIN_TIME_MS)?;
    let end = time_param(&p, "end", MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let engine = state.engine.clone();
    let mut all = run_blocking(DEFAULT_TIMEOUT, move || {
        let q = engine.querier(&tenant)?;
        let mut all: BTreeMap<Labels, ()> = BTreeMap::new();
        for ms in &sets {
            for s in q.select(ms, start, end, &SelectHints::default())? {
                all.insert(s.labels().clone(), ());
            }
        }
        Ok(all.into_keys().collect::<Vec<_>>())
    })
    .await?;
    let warnings = truncate_warn(&mut all, limit);
    let data: Vec<Json> = all.iter().map(labels_json).collect();
    Ok(success(data, &warnings))
}

/// Shared body of `labels` and `label/<name>/values`: the union of `lookup` over every
/// `match[]` set (or over all series without one), sorted, with `limit` applied.
async fn label_lookup(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
    lookup: impl Fn(&strata_engine::Querier, &[Matcher], i64, i64) -> strata_engine::Result<Vec<String>>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let tenant = tenant(headers)?;
    let mut sets = match_params(p)?;
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let start = time_param(p, "start", MIN_TIME_MS)?;
    let end = time_param(p, "end", MAX_TIME_MS)?;
    let limit = limit_param(p)?;
    let engine = state.engine.clone();
    let mut out = run_blocking(DEFAULT_TIMEOUT, move || {
        let q = engine.querier(&tenant)?;
        let mut all = std::collections::BTreeSet::new();
        for ms in &sets {
            all.extend(lookup(&q, ms, start, end)?);
        }
        Ok(all.into_iter().collect::<Vec<_>>())
    })
    .await?;
    let warnings = truncate_warn(&mut out, limit);
    Ok(success(out, &warnings))
}

async fn labels(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    label_lookup(&state, &headers, &p, |q, ms, start, end| {
        q.label_names(ms, start, end)
    })
    .await
}

async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let name = unescape_label_name(&name)?;
    label_lookup(&state, &headers, &p, move |q, ms, start, end| {
        q.label_values(&name, ms, start, end)
    })
    .await
}

/// Label names in the path may use Prometheus's `U__` escaping for UTF-8 names.
fn unescape_label_name(name: &str) -> Result<String, ApiError> {
    let Some(rest) = name.strip_prefix("U__") else {
        return Ok(name.to_string());
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let hex: String = chars.by_ref().take_while(|&c| c != '_').collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| ApiError::bad_data(format!("invalid escaped label name {name:?}")))?;
        out.push(code);
    }
    Ok(out)
}

async fn metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let limit = limit_param(&p)?;
    let per_metric = match p.get("limit_per_metric") {
        None | Some("") | Some("0") => usize::MAX,
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::bad_data(format!("invalid parameter \"limit_per_metric\": {v:?}"))
        })?,
    };
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let mut out = Map::new();
    if let Some(t) = state.engine.existing_tenant(&tenant) {
        for (family, entries) in t.metadata().all() {
            if out.len() >= limit {
                break;
            }
            if metric.is_some_and(|m| m != family) {
                continue;
            }
            let list: Vec<Json> = entries
                .iter()
                .take(per_metric)
                .map(|m| json!({"type": m.metric_type, "help": m.help, "unit": m.unit}))
                .collect();
            out.insert(family, Json::Array(list));
        }
    }
    Ok(success(Json::Object(out), &[]))
}

/// Collects the vector selectors of an expression.
fn selectors(
    expr: &promql_parser::parser::Expr,
    out: &mut Vec<promql_parser::parser::VectorSelector>,
) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(vs) => out.push(vs.clone()),
        Expr::MatrixSelector(ms) => out.push(ms.vs.clone()),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, out);
            }
        }
        _ => {}
    }
}

async fn query_exemplars(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let expr = strata_query::parse(&query_param(&p)?).map_err(query_error)?;
    let start = time_param(&p, "start", MIN_TIME_MS)?;
    let end = time_param(&p, "end", MAX_TIME_MS)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let mut vss = Vec::new();
    selectors(&expr, &mut vss);
    let mut result = Vec::new();
    if let Some(t) = state.engine.existing_tenant(&tenant) {
        let mut refs = roaring::RoaringBitmap::new();
        for vs in &vss {
            let ms = strata_query::to_engine_matchers(&vs.matchers, vs.name.as_deref())
                .map_err(query_error)?;
            refs |= t.head().select_refs(&ms);
        }
        for (r, exemplars) in t.exemplars().query(&refs, start, end) {
            let Some(labels) = t.head().labels(r) else {
                continue;
            };
            result.push(json!({
                "seriesLabels": labels_json(&labels),
                "exemplars": exemplars.iter().map(|e| json!({
                    "labels": labels_json(&e.labels),
                    "value": fmt_value(e.value),
                    "timestamp": ts_secs(e.timestamp),
                })).collect::<Vec<_>>(),
            }));
        }
    }
    Ok(success(result, &[]))
}

async fn tsdb_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let limit = match p.get("limit") {
        None | Some("") => 10,
        Some(v) => v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            ApiError::bad_data(format!(
                "invalid parameter \"limit\": {v:?} must be a positive number"
            ))
        })?,
    };
    let list = |v: &[(String, u64)]| -> Vec<Json> {
        v.iter()
            .map(|(n, c)| json!({"name": n, "value": c}))
            .collect()
    };
    let data = match state.engine.existing_tenant(&tenant) {
        Some(t) => {
            let head = t.head();
            let c = head.cardinality(limit);
            let (min, max) = (head.min_time(), head.max_time());
            let empty = min > max;
            json!({
                "headStats": {
                    "numSeries": c.num_series,
                    "numLabelPairs": c.num_label_pairs,
                    "chunkCount": head.num_chunks(),
                    "minTime": if empty { 0 } else { min },
                    "maxTime": if empty { 0 } else { max },
                },
                "seriesCountByMetricName": list(&c.series_count_by_metric_name),
                "labelValueCountByLabelName": list(&c.label_value_count_by_label_name),
                "memoryInBytesByLabelName": list(&c.memory_in_bytes_by_label_name),
                "seriesCountByLabelValuePair": list(&c.series_count_by_label_value_pair),
            })
        }
        None => json!({
            "headStats": {"numSeries": 0, "numLabelPairs": 0, "chunkCount": 0, "minTime": 0, "maxTime": 0},
            "seriesCountByMetricName": [],
            "labelValueCountByLabelName": [],
            "memoryInBytesByLabelName": [],
            "seriesCountByLabelValuePair": [],
        }),
    };
    Ok(success(data, &[]))
}

/// `POST /api/v1/admin/tsdb/snapshot[?skip_head=true]`: hard-links every tenant's blocks (and,
/// unless `skip_head`, writes the head as a block) under `<data>/snapshots/<name>/`, which is
/// itself a valid data directory. Logged with the requesting tenant and the parameters.
async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let requester = tenant(&headers)?;
    let skip_head = match p.get("skip_head") {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"skip_head\": {other:?} is not a boolean"
            )));
        }
    };
    let engine = state.engine.clone();
    let name = run_blocking(DEFAULT_TIMEOUT, move || {
        engine
            .snapshot(!skip_head)
            .map_err(|e| ApiError::internal(format!("creating snapshot: {e}")))
    })
    .await?;
    tracing::info!(tenant = %requester, skip_head, snapshot = %name, "admin: snapshot created");
    Ok(success(json!({ "name": name }), &[]))
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series?match[]=…[&start=…][&end=…]`: deletes the
/// samples of the tenant's series matching any `match[]` selector in `[start, end]` (default:
/// all time), as Prometheus does: `204 No Content` on success. Every deletion that reaches the
/// engine, failed or not, is audited ([`crate::audit`]) and counted on `/metrics`.
async fn delete_series(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let raw: Vec<String> = p.all("match[]").into_iter().map(str::to_string).collect();
    if raw.is_empty() {
        return Err(ApiError::bad_data(
            "invalid parameter \"match[]\": no match[] parameter provided",
        ));
    }
    let sets = match_params(&p)?;
    let start = match p.get("start") {
        None | Some("") => None,
        Some(_) => Some(time_param(&p, "start", i64::MIN)?),
    };
    let end = match p.get("end") {
        None | Some("") => None,
        Some(_) => Some(time_param(&p, "end", i64::MAX)?),
    };
    let (mint, maxt) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
    if maxt < mint {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start timestamp",
        ));
    }
    let remote_addr = peer.map(|axum::Extension(c)| c.0.to_string());
    let engine = state.engine.clone();
    let metrics = state.metrics.clone();
    // Deletion, audit and accounting run to completion on the blocking pool even if the client
    // goes away, so that no deletion escapes the audit log.
    let done = tokio::task::spawn_blocking(move || {
        let mut total = strata_engine::DeleteReport::default();
        let mut failed = None;
        for set in &sets {
            match engine.delete_series(&tenant, set, mint, maxt) {
                Ok(r) => {
                    total.head_series += r.head_series;
                    total.block_series += r.block_series;
                    total.blocks += r.blocks;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let result = if failed.is_some() { "error" } else { "success" };
        metrics.deletions.inc(&[&tenant, result]);
        metrics
            .deleted_series
            .add(&[&tenant, "head"], total.head_series as f64);
        metrics
            .deleted_series
            .add(&[&tenant, "block"], total.block_series as f64);
        let record = crate::audit::DeletionRecord {
            version: crate::audit::AUDIT_FORMAT_VERSION,
            time: crate::api::rfc3339(now_ms()),
            event: "delete_series",
            tenant,
            matchers: raw,
            start_ms: start,
            end_ms: end,
            remote_addr,
            head_series: total.head_series,
            block_series: total.block_series,
            blocks: total.blocks,
            result,
            error: failed.as_ref().map(ToString::to_string),
        };
        let audited = record.record(&engine.options().data_dir);
        (failed, audited)
    })
    .await
    .map_err(|e| ApiError::internal(format!("deletion task failed: {e}")))?;
    match done {
        (Some(e), _) => Err(e.into()),
        (None, Err(e)) => {
            tracing::error!(error = %e, "writing the audit log failed after a deletion");
            Err(ApiError::internal(format!(
                "the series were deleted, but appending to the audit log failed: {e}"
            )))
        }
        (None, Ok(())) => Ok(axum::http::StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /api/v1/admin/tsdb/clean_tombstones`: rewrites the requesting tenant's blocks that
/// carry tombstones without the deleted samples (one block at a time, under the tenant's
/// maintenance lock, like any compaction). Answers 204 as Prometheus does. Audit-logged.
async fn clean_tombstones(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let t = tenant(&headers)?;
    let Some(db) = state.engine.existing_tenant(&t) else {
        tracing::info!(target: "strata::audit", tenant = %t, blocks = 0, "admin: clean_tombstones (tenant has no metrics)");
        return Ok(axum::response::IntoResponse::into_response(
            axum::http::StatusCode::NO_CONTENT,
        ));
    };
    let compaction = state.compaction.clone();
    // Rewriting is bounded by the data, not by a query timeout.
    let reports = run_blocking(Duration::from_secs(3600), move || {
        strata_compaction::clean_tombstones(
            &db,
            &compaction.options_or_default(),
            &compaction.stats,
        )
        .map_err(|e| ApiError::internal(format!("cleaning tombstones: {e}")))
    })
    .await?;
    let removed: u64 = reports
        .iter()
        .map(|r| r.samples_in.saturating_sub(r.samples_out))
        .sum();
    tracing::info!(target: "strata::audit", tenant = %t, blocks = reports.len(), samples_removed = removed, "admin: clean_tombstones");
    Ok(axum::response::IntoResponse::into_response(
        axum::http::StatusCode::NO_CONTENT,
    ))
}

async fn format_query(p: Params) -> Result<Response, ApiError> {
    let expr = strata_query::parse(&query_param(&p)?).map_err(query_error)?;
    Ok(success(expr.to_string(), &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_label_names_unescape() {
        assert_eq!(unescape_label_name("job").unwrap(), "job");
        assert_eq!(unescape_label_name("U__a_2e_b").unwrap(), "a.b");
        assert_eq!(unescape_label_name("U__a__b").unwrap(), "a_b");
        assert!(unescape_label_name("U__a_zz_").is_err());
    }

    #[test]
    fn values_render_like_prometheus() {
        let l = Labels::from_pairs(&[("__name__", "up")]).unwrap();
        let v = Value::Vector(vec![strata_query::Sample {
            labels: l,
            t: 1_500,
            v: f64::NAN,
        }]);
        let json = |v: &Value| serde_json::to_string(&ValueJson(v)).unwrap();
        assert_eq!(
            json(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up"},"value":[1.5,"NaN"]}]}"#
        );
        assert_eq!(
            json(&Value::Scalar(2000, 1.0)),
            r#"{"resultType":"scalar","result":[2,"1"]}"#
        );
        let m = Value::Matrix(vec![strata_query::SeriesPoints {
            labels: Labels::from_pairs(&[("a", "b")]).unwrap(),
            points: vec![(1000, f64::INFINITY), (2500, -0.5)],
        }]);
        assert_eq!(
            json(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"+Inf"],[2.5,"-0.5"]]}]}"#
        );
        assert_eq!(
            json(&Value::String(0, "x".into())),
            r#"{"resultType":"string","result":[0,"x"]}"#
        );
    }
}
