//! OTLP trace ingest and the Tempo API through the real router, in process.
//!
//! Covers the protocol details a client depends on: both encodings and gzip, the status codes
//! and `google.rpc.Status` bodies of bad requests, partial success, tenants kept apart, the
//! protobuf answers Grafana asks for, and the errors of the query endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;
use strata_engine::{Engine, EngineOptions};
use strata_server::app::{AppState, ServerOptions, router};
use strata_server::limits::{Limits, LimitsConfig};
use strata_server::otlp::body::RpcStatus;
use strata_server::tempo::{TempoTrace, TraceByIdResponse};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: dir.path().to_path_buf(),
        ..EngineOptions::default()
    })
    .unwrap();
    let state = AppState::new(
        Arc::new(engine),
        Limits::new(LimitsConfig::default()),
        ServerOptions {
            data_dir: dir.path().display().to_string(),
            ..ServerOptions::default()
        },
    );
    Fixture {
        _dir: dir,
        app: router(state),
    }
}

const TRACE: [u8; 16] = [
    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
];
const TRACE_HEX: &str = "5b8efff798038103d269b633813fc60c";

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

fn span(id: u8, parent: u8, name: &str, start_ms: u64, dur_ms: u64, status: i32) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: name.into(),
        kind: if parent == 0 { 2 } else { 3 },
        start_time_unix_nano: 1_795_255_200_000_000_000 + start_ms * 1_000_000,
        end_time_unix_nano: 1_795_255_200_000_000_000 + (start_ms + dur_ms) * 1_000_000,
        attributes: vec![kv(
            "http.status_code",
            any_value::Value::IntValue(if status == 2 { 503 } else { 200 }),
        )],
        status: Some(Status {
            code: status,
            message: String::new(),
        }),
        ..Span::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.into()),
                )],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body, ct)
}

fn post(path: &str, ct: &str, tenant: Option<&str>, gzip: bool, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", ct);
    if let Some(t) = tenant {
        b = b.header("x-scope-orgid", t);
    }
    let body = if gzip {
        b = b.header("content-encoding", "gzip");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&body).unwrap();
        e.finish().unwrap()
    } else {
        body
    };
    b.body(Body::from(body)).unwrap()
}

fn get(path: &str, tenant: Option<&str>, accept: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(t) = tenant {
        b = b.header("x-scope-orgid", t);
    }
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn ingest_in_both_encodings_and_read_back_as_grafana_does() {
    let f = fixture();
    // Protobuf, gzip: the root and one child.
    let req = request(
        "gateway",
        vec![
            span(1, 0, "GET /checkout", 0, 100, 0),
            span(2, 1, "call payment", 10, 80, 0),
        ],
    );
    let (st, body, ct) = call(
        &f.app,
        post(
            "/v1/traces",
            "application/x-protobuf",
            Some("t1"),
            true,
            req.encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ct, "application/x-protobuf");
    assert!(
        ExportTraceServiceResponse::decode(body.as_slice())
            .unwrap()
            .partial_success
            .is_none()
    );
    // JSON, minutes later in a separate request: the payment service's server span.
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"payment"}}}}]}},
        "scopeSpans":[{{"spans":[{{"traceId":"{TRACE_HEX}","spanId":"0303030303030303","parentSpanId":"0202020202020202",
        "name":"charge","kind":2,"startTimeUnixNano":"1795255200015000000","endTimeUnixNano":"1795255200085000000",
        "status":{{"code":2}}}}]}}]}}]}}"#
    );
    let (st, body, ct) = call(
        &f.app,
        post(
            "/v1/traces",
            "application/json",
            Some("t1"),
            false,
            json.into_bytes(),
        ),
    )
    .await;
    assert_eq!((st, ct.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(body, b"{}");

    // Grafana: v2 with protobuf first.
    let (st, body, _) = call(
        &f.app,
        get(
            &format!("/api/v2/traces/{TRACE_HEX}"),
            Some("t1"),
            Some("application/protobuf"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r = TraceByIdResponse::decode(body.as_slice()).unwrap();
    let t = r.trace.unwrap();
    assert_eq!(t.resource_spans.len(), 2, "one batch per resource");
    let n: usize = t
        .resource_spans
        .iter()
        .flat_map(|b| &b.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(n, 3);
    // v1 protobuf and JSON.
    let (st, body, _) = call(
        &f.app,
        get(
            &format!("/api/traces/{TRACE_HEX}"),
            Some("t1"),
            Some("application/protobuf"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        TempoTrace::decode(body.as_slice())
            .unwrap()
            .resource_spans
            .len(),
        2
    );
    let (st, body, _) = call(
        &f.app,
        get(&format!("/api/traces/{TRACE_HEX}"), Some("t1"), None),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["batches"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["batches"][0]["scopeSpans"][0]["spans"][0]["traceId"],
        TRACE_HEX
    );
    // The tree joins the two requests.
    let (_, body, _) = call(
        &f.app,
        get(
            &format!("/api/traces/{TRACE_HEX}?format=tree"),
            Some("t1"),
            None,
        ),
    )
    .await;
    let tree: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tree["spanCount"], 3);
    assert_eq!(
        tree["roots"][0]["children"][0]["children"][0]["operation"],
        "charge"
    );
    assert_eq!(
        tree["roots"][0]["children"][0]["children"][0]["service"],
        "payment"
    );
    assert_eq!(tree["criticalPath"].as_array().unwrap().len(), 3);

    // Other tenants see nothing.
    let (st, body, _) = call(&f.app, get(&format!("/api/traces/{TRACE_HEX}"), None, None)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(String::from_utf8_lossy(&body).trim(), "trace not found");

    // Search, tags.
    let (st, body, _) = call(
        &f.app,
        get(
            "/api/search?q=%7B%20status%20%3D%20error%20%7D&limit=5",
            Some("t1"),
            None,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["traces"][0]["traceID"], TRACE_HEX);
    assert_eq!(v["traces"][0]["rootServiceName"], "gateway");
    assert_eq!(v["traces"][0]["spanSet"]["spans"][0]["name"], "charge");
    let (_, body, _) = call(
        &f.app,
        get(
            "/api/search?tags=service.name%3Dpayment&minDuration=50ms",
            Some("t1"),
            None,
        ),
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    let (_, body, _) = call(&f.app, get("/api/search/tags", Some("t1"), None)).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["tagNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "http.status_code")
    );
    let (_, body, _) = call(
        &f.app,
        get("/api/search/tag/service.name/values", Some("t1"), None),
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["tagValues"], serde_json::json!(["gateway", "payment"]));
    let (_, body, _) = call(
        &f.app,
        get(
            "/api/v2/search/tag/span.http.status_code/values",
            Some("t1"),
            None,
        ),
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["tagValues"],
        serde_json::json!([{"type": "int", "value": "200"}])
    );
    let (_, body, _) = call(
        &f.app,
        get("/api/v2/search/tag/status/values", Some("t1"), None),
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["tagValues"][0],
        serde_json::json!({"type": "keyword", "value": "error"})
    );
    let (st, body, _) = call(&f.app, get("/api/echo", None, None)).await;
    assert_eq!((st, body.as_slice()), (StatusCode::OK, b"echo".as_slice()));
    let (st, body, _) = call(&f.app, get("/api/status/buildinfo", None, None)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["version"].is_string());
}

#[tokio::test]
async fn bad_requests_get_clear_otlp_errors() {
    let f = fixture();
    // Undecodable protobuf: 400 with a google.rpc.Status naming the message.
    let (st, body, ct) = call(
        &f.app,
        post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            false,
            vec![0xff, 0xff, 0xff],
        ),
    )
    .await;
    assert_eq!(
        (st, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/x-protobuf")
    );
    let s = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(s.code, 3);
    assert!(
        s.message.contains("ExportTraceServiceRequest"),
        "{}",
        s.message
    );
    // Bad JSON: 400 in JSON.
    let (st, body, _) = call(
        &f.app,
        post(
            "/v1/traces",
            "application/json",
            None,
            false,
            b"{\"resourceSpans\":[{".to_vec(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3);
    // Not gzip although it says so.
    let mut r = post(
        "/v1/traces",
        "application/x-protobuf",
        None,
        false,
        b"plain".to_vec(),
    );
    r.headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    assert_eq!(call(&f.app, r).await.0, StatusCode::BAD_REQUEST);
    // Unsupported content type / encoding: 415.
    assert_eq!(
        call(
            &f.app,
            post("/v1/traces", "text/plain", None, false, b"x".to_vec())
        )
        .await
        .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let mut r = post(
        "/v1/traces",
        "application/x-protobuf",
        None,
        false,
        b"x".to_vec(),
    );
    r.headers_mut()
        .insert("content-encoding", "br".parse().unwrap());
    assert_eq!(call(&f.app, r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Bad tenant: 400.
    let req = request("x", vec![span(1, 0, "a", 0, 1, 0)]);
    assert_eq!(
        call(
            &f.app,
            post(
                "/v1/traces",
                "application/x-protobuf",
                Some("../x"),
                false,
                req.encode_to_vec()
            )
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    // Invalid spans: partial success, the valid one stored.
    let mut bad_ids = span(2, 0, "b", 0, 1, 0);
    bad_ids.span_id = vec![1, 2, 3];
    let backwards = span(3, 0, "c", 10, 0, 0);
    let mut backwards = backwards;
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
    let req = request("x", vec![span(1, 0, "a", 0, 1, 0), bad_ids, backwards]);
    let (st, body, _) = call(
        &f.app,
        post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            false,
            req.encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let ps = ExportTraceServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_spans, 2);
    assert!(
        ps.error_message
            .contains("spans[1]: spanId must be 8 bytes"),
        "{}",
        ps.error_message
    );
    assert!(
        ps.error_message.contains("spans[2]: endTimeUnixNano"),
        "{}",
        ps.error_message
    );
    assert_eq!(
        call(&f.app, get(&format!("/api/traces/{TRACE_HEX}"), None, None))
            .await
            .0,
        StatusCode::OK
    );

    // Query errors name the parameter.
    for (path, want) in [
        ("/api/traces/not-hex", "invalid trace id"),
        ("/api/traces/abc?format=xml", "format"),
        ("/api/search?q=%7B%20foo%20%3D%201%20%7D", "\"q\""),
        ("/api/search?minDuration=fast", "minDuration"),
        ("/api/search?limit=-1", "limit"),
        ("/api/search?start=10&end=5", "start"),
        ("/api/v2/search/tag/nope/values", "invalid tag"),
        ("/api/service-map?start=x", "start"),
    ] {
        let (st, body, _) = call(&f.app, get(path, None, None)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(want), "{path}: {text}");
    }
}
