//! The Tempo HTTP API, as Grafana's Tempo datasource calls it, plus Strata's tree view of a
//! trace.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /api/traces/{id}` | `{"batches":[ResourceSpans…]}` (OTLP JSON), or protobuf `Trace` when `Accept: application/protobuf`; `?format=tree`: the span tree with the critical path |
//! | `GET /api/v2/traces/{id}` | `{"trace":{"resourceSpans":[…]},"status":"COMPLETE"}`, or protobuf `TraceByIDResponse` |
//! | `GET /api/search` | `q` (TraceQL subset) or `tags` (logfmt), `minDuration`, `maxDuration`, `limit`, `start`, `end`, `spss` |
//! | `GET /api/search/tags`, `/api/v2/search/tags` | attribute names (v2: by scope, with intrinsics) |
//! | `GET /api/search/tag/{tag}/values`, `/api/v2/search/tag/{tag}/values` | values (v2: typed) |
//! | `GET /api/echo` | `echo` |
//! | `GET /api/status/buildinfo` | version |
//! | `GET /api/service-map` | Strata's service dependency graph over `start`..`end` |
//!
//! The protobuf messages `Trace` (field 1: repeated `ResourceSpans`) and `TraceByIDResponse`
//! (1: trace, 3: status, 4: message) are defined here with the field numbers Tempo's API uses,
//! so Grafana decodes them unchanged. Errors: 400 for bad parameters (with the parameter named),
//! 404 `trace not found`. The tenant is `X-Scope-OrgID`, default `anonymous`.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use serde_json::{Value as Json, json};
use strata_engine::traces::{AttrScope, AttrValue, SpanRecord, TenantTraces};
use strata_query::traces::traceql::{Cond, Field, Op, Query, SetOp, SpansetExpr, Value};
use strata_query::traces::{SearchRequest, SpanNode, TraceTree, build_tree, parse, search};

use crate::api::{ApiError, ErrorKind, Params};
use crate::app::AppState;

/// Default and largest `limit` of a search.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 10_000;
/// Candidate traces a search inspects at most.
const MAX_INSPECTED: usize = 100_000;

/// Routes of the Tempo API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/traces/{id}", get(trace_v1))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/search", get(handle_search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
        .route("/api/echo", get(echo))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/service-map", get(service_map))
}

/// Tempo's `Trace` message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TempoTrace {
    /// The spans, grouped by resource and scope.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// Tempo's `TraceByIDResponse` message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    /// The trace.
    #[prost(message, optional, tag = "1")]
    pub trace: Option<TempoTrace>,
    /// 0 complete, 1 partial.
    #[prost(int32, tag = "3")]
    pub status: i32,
    /// Why partial.
    #[prost(string, tag = "4")]
    pub message: String,
}

fn json_response(status: StatusCode, v: &Json) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

fn error(e: &ApiError) -> Response {
    if e.status().is_server_error() {
        tracing::error!(error = %e.message, "trace query failed");
    }
    (
        e.status(),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{}\n", e.message),
    )
        .into_response()
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/protobuf") || v.contains("application/x-protobuf"))
}

/// Parses a 1–32 hex digit trace id (shorter ids are left-padded with zeros, as Tempo does).
pub fn parse_trace_id(s: &str) -> Result<[u8; 16], ApiError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_data(format!(
            "invalid trace id {s:?}: want 1-32 hexadecimal digits"
        )));
    }
    let padded = format!("{s:0>32}");
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(padded.get(2 * i..2 * i + 2).unwrap_or("00"), 16)
            .map_err(|_| ApiError::bad_data(format!("invalid trace id {s:?}")))?;
    }
    Ok(id)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tenant_store(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<std::sync::Arc<TenantTraces>>, ApiError> {
    let tenant = crate::api::tenant(headers)?;
    Ok(state.traces.existing_tenant(&tenant))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("reading traces: {e}"))
}

/// Reads a trace (blocking).
fn load_trace(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Vec<SpanRecord>, [u8; 16]), ApiError> {
    let id = parse_trace_id(id)?;
    let Some(store) = tenant_store(state, headers)? else {
        return Ok((Vec::new(), id));
    };
    Ok((store.trace(&id).map_err(internal)?, id))
}

/// Groups stored spans back into `ResourceSpans` (same resource and scope together).
pub fn batches(spans: &[SpanRecord]) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    for s in spans {
        let Ok(rs) = ResourceSpans::decode(s.payload.as_slice()) else {
            tracing::warn!(span = %hex(&s.span_id), "stored span payload does not decode; skipped");
            continue;
        };
        let batch = match out
            .iter_mut()
            .find(|b| b.resource == rs.resource && b.schema_url == rs.schema_url)
        {
            Some(b) => b,
            None => {
                out.push(ResourceSpans {
                    resource: rs.resource.clone(),
                    scope_spans: Vec::new(),
                    schema_url: rs.schema_url.clone(),
                });
                let Some(b) = out.last_mut() else { continue };
                b
            }
        };
        for ss in rs.scope_spans {
            match batch
                .scope_spans
                .iter_mut()
                .find(|x| x.scope == ss.scope && x.schema_url == ss.schema_url)
            {
                Some(x) => x.spans.extend(ss.spans),
                None => batch.scope_spans.push(ss),
            }
        }
    }
    out
}

async fn trace_v1(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let tree = params.get("format") == Some("tree");
    if let Some(f) = params.get("format")
        && f != "tree"
    {
        return error(&ApiError::bad_data(format!(
            "invalid parameter \"format\": {f:?} (only \"tree\")"
        )));
    }
    let proto = wants_protobuf(&headers);
    let res = tokio::task::spawn_blocking(move || load_trace(&state, &headers, &id)).await;
    let (spans, id) = match res {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return error(&e),
        Err(e) => return error(&ApiError::internal(e.to_string())),
    };
    if spans.is_empty() {
        return error(&ApiError::new(ErrorKind::NotFound, "trace not found"));
    }
    if tree {
        return json_response(StatusCode::OK, &tree_json(&id, build_tree(spans)));
    }
    let b = batches(&spans);
    if proto {
        let body = TempoTrace { resource_spans: b }.encode_to_vec();
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/protobuf"),
            )],
            body,
        )
            .into_response();
    }
    json_response(StatusCode::OK, &json!({ "batches": b }))
}

async fn trace_v2(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let proto = wants_protobuf(&headers);
    let res = tokio::task::spawn_blocking(move || load_trace(&state, &headers, &id)).await;
    let spans = match res {
        Ok(Ok((s, _))) => s,
        Ok(Err(e)) => return error(&e),
        Err(e) => return error(&ApiError::internal(e.to_string())),
    };
    if spans.is_empty() {
        return error(&ApiError::new(ErrorKind::NotFound, "trace not found"));
    }
    let b = batches(&spans);
    if proto {
        let body = TraceByIdResponse {
            trace: Some(TempoTrace { resource_spans: b }),
            status: 0,
            message: String::new(),
        }
        .encode_to_vec();
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/protobuf"),
            )],
            body,
        )
            .into_response();
    }
    json_response(
        StatusCode::OK,
        &json!({ "trace": { "resourceSpans": b }, "status": "COMPLETE" }),
    )
}

fn kind_name(k: u8) -> &'static str {
    match k {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn status_name(s: u8) -> &'static str {
    match s {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn node_json(t: &TraceTree, n: &SpanNode) -> Json {
    let Some(s) = t.spans.get(n.index) else {
        return Json::Null;
    };
    let tags: serde_json::Map<String, Json> = s
        .attrs
        .iter()
        .filter(|a| a.scope == AttrScope::Span)
        .map(|a| (a.key.clone(), Json::String(a.value.to_text())))
        .collect();
    json!({
        "spanID": hex(&s.span_id),
        "parentSpanID": if s.is_root() { String::new() } else { hex(&s.parent_span_id) },
        "service": s.service,
        "operation": s.name,
        "kind": kind_name(s.kind),
        "status": status_name(s.status),
        "startTimeUnixNano": s.start_ns.to_string(),
        "durationNanos": s.duration_ns().to_string(),
        "durationMs": ms(s.duration_ns()),
        "selfTimeMs": ms(n.self_time_ns),
        "criticalPath": n.critical,
        "tags": tags,
        "children": n.children.iter().map(|c| node_json(t, c)).collect::<Vec<_>>(),
    })
}

/// Strata's tree view of a trace.
pub fn tree_json(id: &[u8; 16], t: TraceTree) -> Json {
    let lo = t.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let hi = t.spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
    let root = t
        .roots
        .first()
        .and_then(|r| t.spans.get(r.index))
        .filter(|s| s.is_root());
    let services: BTreeSet<&str> = t.spans.iter().map(|s| s.service.as_str()).collect();
    json!({
        "traceID": hex(id),
        "rootServiceName": root.map(|r| r.service.as_str()).unwrap_or("<root span not yet received>"),
        "rootName": root.map(|r| r.name.as_str()).unwrap_or(""),
        "startTimeUnixNano": lo.to_string(),
        "durationMs": ms(hi.saturating_sub(lo)),
        "spanCount": t.spans.len(),
        "orphanSpans": t.orphans,
        "services": services,
        "criticalPath": t.critical_path.iter().filter_map(|&i| t.spans.get(i)).map(|s| hex(&s.span_id)).collect::<Vec<_>>(),
        "roots": t.roots.iter().map(|r| node_json(&t, r)).collect::<Vec<_>>(),
    })
}

fn any_value(v: &AttrValue) -> AnyValue {
    AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    }
}

/// Unix seconds (Tempo's `start`/`end`) to ns.
fn secs_param(p: &Params, key: &str, default: u64) -> Result<u64, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| (f * 1e9).min(u64::MAX as f64) as u64)
            .ok_or_else(|| {
                ApiError::bad_data(format!(
                    "invalid parameter {key:?}: {v:?} is not Unix seconds"
                ))
            }),
    }
}

fn duration_param(p: &Params, key: &str) -> Result<Option<u64>, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(v) => strata_query::traces::traceql::parse_duration_ns(v)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_data(format!(
                    "invalid parameter {key:?}: {v:?} is not a duration such as 100ms or 2s"
                ))
            }),
    }
}

fn usize_param(p: &Params, key: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<usize>().map(|n| n.min(max)).map_err(|_| {
            ApiError::bad_data(format!("invalid parameter {key:?}: {v:?} is not a count"))
        }),
    }
}

/// Splits logfmt `a=b c="d e"` into pairs.
pub fn parse_logfmt(s: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| {
            ApiError::bad_data(format!(
                "invalid parameter \"tags\": {rest:?} is not key=value"
            ))
        })?;
        let key = rest[..eq].trim().to_string();
        if key.is_empty() || key.contains(' ') {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"tags\": bad key in {rest:?}"
            )));
        }
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or_else(|| {
                ApiError::bad_data("invalid parameter \"tags\": unterminated quote")
            })?;
            value = r[..end].to_string();
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = rest[end..].trim_start();
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Turns Tempo's tag search into an equivalent query: each tag must hold for some span.
pub fn tags_query(tags: &[(String, String)]) -> Query {
    let mut expr: Option<SpansetExpr> = None;
    for (k, v) in tags {
        let (field, value) = match k.as_str() {
            "name" => (Field::Name, Value::Str(v.clone())),
            "status" | "status.code" => (
                Field::Status,
                match v.as_str() {
                    "error" | "2" | "STATUS_CODE_ERROR" => Value::Status(2),
                    "ok" | "1" | "STATUS_CODE_OK" => Value::Status(1),
                    _ => Value::Status(0),
                },
            ),
            _ => {
                let value = if let Ok(i) = v.parse::<i64>() {
                    Value::Int(i)
                } else if let Ok(b) = v.parse::<bool>() {
                    Value::Bool(b)
                } else {
                    Value::Str(v.clone())
                };
                (Field::Attr(None, k.clone()), value)
            }
        };
        let f = SpansetExpr::Filter(Cond::Cmp(field, Op::Eq, value, None));
        expr = Some(match expr {
            None => f,
            Some(e) => SpansetExpr::Binary(Box::new(e), SetOp::And, Box::new(f)),
        });
    }
    Query {
        expr: expr.unwrap_or(SpansetExpr::Filter(Cond::True)),
        count_filters: Vec::new(),
    }
}

/// Attribute fields a query mentions (shown with matched spans).
fn query_attrs(q: &Query) -> Vec<(Option<AttrScope>, String)> {
    fn cond(c: &Cond, out: &mut Vec<(Option<AttrScope>, String)>) {
        match c {
            Cond::And(a, b) | Cond::Or(a, b) => {
                cond(a, out);
                cond(b, out);
            }
            Cond::Not(a) => cond(a, out),
            Cond::Cmp(Field::Attr(s, k), ..) | Cond::Exists(Field::Attr(s, k))
                if !out.iter().any(|(s2, k2)| s2 == s && k2 == k) =>
            {
                out.push((*s, k.clone()));
            }
            _ => {}
        }
    }
    fn set(e: &SpansetExpr, out: &mut Vec<(Option<AttrScope>, String)>) {
        match e {
            SpansetExpr::Filter(c) => cond(c, out),
            SpansetExpr::Binary(a, _, b) => {
                set(a, out);
                set(b, out);
            }
        }
    }
    let mut out = Vec::new();
    set(&q.expr, &mut out);
    out
}

fn run_search(state: &AppState, headers: &HeaderMap, p: &Params) -> Result<Json, ApiError> {
    let query = match (
        p.get("q").filter(|q| !q.trim().is_empty()),
        p.get("tags").filter(|t| !t.trim().is_empty()),
    ) {
        (Some(q), _) => {
            parse(q).map_err(|e| ApiError::bad_data(format!("invalid parameter \"q\": {e}")))?
        }
        (None, Some(t)) => tags_query(&parse_logfmt(t)?),
        (None, None) => tags_query(&[]),
    };
    let req = SearchRequest {
        start_ns: secs_param(p, "start", 0)?,
        end_ns: secs_param(p, "end", u64::MAX)?,
        min_duration_ns: duration_param(p, "minDuration")?,
        max_duration_ns: duration_param(p, "maxDuration")?,
        limit: usize_param(p, "limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        spans_per_spanset: usize_param(p, "spss", 3, 1000)?,
        max_inspected: MAX_INSPECTED,
        query,
    };
    if req.start_ns > req.end_ns {
        return Err(ApiError::bad_data(
            "invalid parameters: \"start\" is after \"end\"",
        ));
    }
    let Some(store) = tenant_store(state, headers)? else {
        return Ok(
            json!({"traces": [], "metrics": {"inspectedTraces": 0, "completedJobs": 1, "totalJobs": 1}}),
        );
    };
    let res = search(&store, &req).map_err(internal)?;
    let shown = query_attrs(&req.query);
    let traces: Vec<Json> = res
        .traces
        .iter()
        .map(|t| {
            let spans: Vec<Json> = t
                .matched
                .iter()
                .map(|s| {
                    let attrs: Vec<KeyValue> = shown
                        .iter()
                        .filter_map(|(sc, k)| {
                            s.attr(*sc, k).map(|v| KeyValue {
                                key: k.clone(),
                                value: Some(any_value(v)),
                                ..KeyValue::default()
                            })
                        })
                        .collect();
                    json!({
                        "spanID": hex(&s.span_id),
                        "name": s.name,
                        "startTimeUnixNano": s.start_ns.to_string(),
                        "durationNanos": s.duration_ns().to_string(),
                        "attributes": attrs,
                    })
                })
                .collect();
            let set = json!({"spans": spans, "matched": t.matched_count});
            json!({
                "traceID": hex(&t.trace_id),
                "rootServiceName": t.root_service.as_deref().unwrap_or("<root span not yet received>"),
                "rootTraceName": t.root_name.as_deref().unwrap_or(""),
                "startTimeUnixNano": t.start_ns.to_string(),
                "durationMs": t.duration_ns / 1_000_000,
                "spanSet": set,
                "spanSets": [set],
            })
        })
        .collect();
    Ok(json!({
        "traces": traces,
        "metrics": {"inspectedTraces": res.inspected, "completedJobs": 1, "totalJobs": 1},
    }))
}

async fn handle_search(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    match tokio::task::spawn_blocking(move || run_search(&state, &headers, &p)).await {
        Ok(Ok(v)) => json_response(StatusCode::OK, &v),
        Ok(Err(e)) => error(&e),
        Err(e) => error(&ApiError::internal(e.to_string())),
    }
}

/// Intrinsic TraceQL fields, listed in the v2 tag scopes.
const INTRINSICS: [&str; 8] = [
    "duration",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "status",
    "statusMessage",
    "traceDuration",
];

fn tag_names(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
) -> Result<BTreeSet<(AttrScope, String)>, ApiError> {
    let start = secs_param(p, "start", 0)?;
    let end = secs_param(p, "end", u64::MAX)?;
    Ok(match tenant_store(state, headers)? {
        Some(s) => s.tag_names(start, end),
        None => BTreeSet::new(),
    })
}

async fn tags_v1(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    match tag_names(&state, &headers, &p) {
        Ok(names) => {
            let names: BTreeSet<&str> = names.iter().map(|(_, k)| k.as_str()).collect();
            json_response(StatusCode::OK, &json!({ "tagNames": names }))
        }
        Err(e) => error(&e),
    }
}

async fn tags_v2(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    let names = match tag_names(&state, &headers, &p) {
        Ok(n) => n,
        Err(e) => return error(&e),
    };
    let limit = match usize_param(&p, "limit", 5000, 100_000) {
        Ok(l) => l,
        Err(e) => return error(&e),
    };
    let want = p.get("scope").unwrap_or("all");
    let mut scopes = Vec::new();
    for (name, scope) in [("resource", AttrScope::Resource), ("span", AttrScope::Span)] {
        if want == "all" || want == name {
            let tags: Vec<&str> = names
                .iter()
                .filter(|(s, _)| *s == scope)
                .map(|(_, k)| k.as_str())
                .take(limit)
                .collect();
            scopes.push(json!({"name": name, "tags": tags}));
        }
    }
    if want == "all" || want == "intrinsic" {
        scopes.push(json!({"name": "intrinsic", "tags": INTRINSICS}));
    }
    json_response(StatusCode::OK, &json!({ "scopes": scopes }))
}

/// Percent-decodes once more (Grafana double-encodes tag names in the path).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

fn tag_values(
    state: &AppState,
    headers: &HeaderMap,
    tag: &str,
    p: &Params,
    scoped: bool,
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let tag = percent_decode(tag);
    let start = secs_param(p, "start", 0)?;
    let end = secs_param(p, "end", u64::MAX)?;
    let limit = usize_param(p, "limit", 1000, 100_000)?;
    let keywords = |vals: &[&str]| {
        vals.iter()
            .map(|v| ("keyword", (*v).to_string()))
            .collect::<Vec<_>>()
    };
    if scoped {
        match tag.as_str() {
            "status" => return Ok(keywords(&["error", "ok", "unset"])),
            "kind" => {
                return Ok(keywords(&[
                    "client",
                    "consumer",
                    "internal",
                    "producer",
                    "server",
                    "unspecified",
                ]));
            }
            _ => {}
        }
    }
    let (scope, key) = if !scoped {
        (None, tag.as_str())
    } else if let Some(k) = tag.strip_prefix("resource.") {
        (Some(AttrScope::Resource), k)
    } else if let Some(k) = tag.strip_prefix("span.") {
        (Some(AttrScope::Span), k)
    } else if let Some(k) = tag.strip_prefix('.') {
        (None, k)
    } else if matches!(tag.as_str(), "name" | "rootName" | "rootServiceName") {
        (
            None,
            if tag == "rootServiceName" {
                "service.name"
            } else {
                "name"
            },
        )
    } else {
        return Err(ApiError::bad_data(format!(
            "invalid tag {tag:?}: use resource.<key>, span.<key>, .<key> or an intrinsic"
        )));
    };
    let Some(store) = tenant_store(state, headers)? else {
        return Ok(Vec::new());
    };
    Ok(store
        .tag_values(scope, key, start, end, limit)
        .into_iter()
        .collect())
}

async fn tag_values_v1(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    p: Params,
) -> Response {
    match tag_values(&state, &headers, &tag, &p, false) {
        Ok(v) => {
            let vals: BTreeSet<String> = v.into_iter().map(|(_, v)| v).collect();
            json_response(StatusCode::OK, &json!({ "tagValues": vals }))
        }
        Err(e) => error(&e),
    }
}

async fn tag_values_v2(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    p: Params,
) -> Response {
    match tag_values(&state, &headers, &tag, &p, true) {
        Ok(v) => {
            let vals: Vec<Json> = v
                .into_iter()
                .map(|(t, v)| json!({"type": t, "value": v}))
                .collect();
            json_response(StatusCode::OK, &json!({ "tagValues": vals }))
        }
        Err(e) => error(&e),
    }
}

/// Traces a service map reads at most (bounds the cost of one request).
const SERVICE_MAP_MAX_TRACES: usize = 200_000;

fn stats_json(s: &strata_query::traces::Stats, window_s: f64) -> Json {
    json!({
        "requests": s.requests,
        "requestRate": s.requests as f64 / window_s,
        "errors": s.errors,
        "errorRate": s.error_rate(),
        "avgLatencyMs": s.avg_ms(),
        "p95LatencyMs": s.p95_ms(),
    })
}

fn run_service_map(state: &AppState, headers: &HeaderMap, p: &Params) -> Result<Json, ApiError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let end_ms = crate::api::time_param(p, "end", now_ms)?;
    let start_ms = crate::api::time_param(p, "start", end_ms - 3_600_000)?;
    if start_ms >= end_ms {
        return Err(ApiError::bad_data(
            "invalid parameters: \"start\" must be before \"end\"",
        ));
    }
    let to_ns = |ms: i64| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000);
    let hints = strata_engine::traces::SearchHints {
        start_ns: to_ns(start_ms),
        end_ns: to_ns(end_ms),
        ..Default::default()
    };
    let mut map = strata_query::traces::ServiceMap::default();
    let mut traces = 0usize;
    let mut truncated = false;
    if let Some(store) = tenant_store(state, headers)? {
        let mut seen = std::collections::HashSet::new();
        let mut err = None;
        store
            .search(&hints, |id, _| {
                if !seen.insert(*id) {
                    return std::ops::ControlFlow::Continue(());
                }
                if seen.len() > SERVICE_MAP_MAX_TRACES {
                    truncated = true;
                    return std::ops::ControlFlow::Break(());
                }
                match store.trace(id) {
                    Ok(spans) => {
                        traces += 1;
                        map.add_trace(&spans);
                        std::ops::ControlFlow::Continue(())
                    }
                    Err(e) => {
                        err = Some(e);
                        std::ops::ControlFlow::Break(())
                    }
                }
            })
            .map_err(internal)?;
        if let Some(e) = err {
            return Err(internal(e));
        }
    }
    let window_s = (end_ms - start_ms) as f64 / 1000.0;
    let nodes: Vec<Json> = map
        .nodes
        .iter()
        .map(|(name, s)| {
            let mut v = stats_json(s, window_s);
            v["id"] = json!(name);
            v
        })
        .collect();
    let edges: Vec<Json> = map
        .edges
        .iter()
        .map(|((a, b), s)| {
            let mut v = stats_json(s, window_s);
            v["source"] = json!(a);
            v["target"] = json!(b);
            v
        })
        .collect();
    Ok(json!({
        "start": crate::api::rfc3339(start_ms),
        "end": crate::api::rfc3339(end_ms),
        "traces": traces,
        "truncated": truncated,
        "nodes": nodes,
        "edges": edges,
    }))
}

async fn service_map(State(state): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    match tokio::task::spawn_blocking(move || run_service_map(&state, &headers, &p)).await {
        Ok(Ok(v)) => json_response(StatusCode::OK, &v),
        Ok(Err(e)) => error(&e),
        Err(e) => error(&ApiError::internal(e.to_string())),
    }
}

async fn echo() -> &'static str {
    "echo"
}

async fn buildinfo() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "version": crate::app::VERSION,
            "revision": option_env!("STRATA_GIT_REVISION").unwrap_or("unknown"),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trace_ids_parse_and_pad() {
        let id = parse_trace_id("5B8EFFF798038103D269B633813FC60C").unwrap();
        assert_eq!(hex(&id), "5b8efff798038103d269b633813fc60c");
        let short = parse_trace_id("abc").unwrap();
        assert_eq!(hex(&short), "00000000000000000000000000000abc");
        for bad in ["", "xyz", &"a".repeat(33)] {
            assert_eq!(
                parse_trace_id(bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST
            );
        }
    }

    #[test]
    fn logfmt_tags() {
        let t = parse_logfmt(r#"service.name=cart name="GET /x" http.status_code=500"#).unwrap();
        assert_eq!(t[1], ("name".into(), "GET /x".into()));
        assert_eq!(t.len(), 3);
        assert!(parse_logfmt("novalue").is_err());
        assert!(parse_logfmt("a=\"open").is_err());
        let q = tags_query(&t);
        assert!(matches!(q.expr, SpansetExpr::Binary(..)));
    }

    #[test]
    fn double_encoded_tags() {
        assert_eq!(
            percent_decode("resource.service.name"),
            "resource.service.name"
        );
        assert_eq!(percent_decode("span.http%2Emethod"), "span.http.method");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
