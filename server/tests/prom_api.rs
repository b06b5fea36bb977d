//! The Prometheus query API as Grafana's Prometheus datasource calls it: labels (with and
//! without `match[]`), label values with `match[]`, series, `query_range` as a POST form with
//! float-second timestamps, instant queries, buildinfo, metadata, status/tsdb, and the error
//! envelope. Each test checks the response shape Grafana parses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use strata_engine::{AppendSeries, Engine, EngineOptions, Labels, MetricMetadata};
use strata_server::app::{AppState, ServerOptions, router};
use strata_server::limits::{Limits, LimitsConfig};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
}

/// 3 series of `node_cpu_seconds_total` and 1 of `up`, one sample a minute for 10 minutes
/// starting at t = 1000 s, in tenant `anonymous`; one series in tenant `other`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: dir.path().to_path_buf(),
        ..EngineOptions::default()
    })
    .unwrap();
    let mut series = Vec::new();
    for (cpu, mode) in [("0", "idle"), ("0", "user"), ("1", "idle")] {
        series.push(
            Labels::from_pairs(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", cpu),
                ("mode", mode),
                ("job", "node"),
                ("instance", "host-1:9100"),
            ])
            .unwrap(),
        );
    }
    series.push(
        Labels::from_pairs(&[
            ("__name__", "up"),
            ("job", "node"),
            ("instance", "host-1:9100"),
        ])
        .unwrap(),
    );
    let samples: Vec<Vec<(i64, f64)>> = (0..series.len())
        .map(|i| {
            (0..10)
                .map(|k| (1_000_000 + k * 60_000, (i * 100 + k as usize) as f64 + 0.5))
                .collect()
        })
        .collect();
    let batch: Vec<AppendSeries> = series
        .iter()
        .zip(&samples)
        .map(|(l, s)| AppendSeries {
            labels: l,
            samples: s,
        })
        .collect();
    engine.append("anonymous", &batch).unwrap();
    let t = engine.tenant("anonymous").unwrap();
    t.ingest::<Labels>(
        &[],
        &[(
            "node_cpu_seconds_total",
            MetricMetadata {
                metric_type: "counter".into(),
                help: "Seconds the CPUs spent in each mode.".into(),
                unit: String::new(),
            },
        )],
    )
    .unwrap();
    let other = Labels::from_pairs(&[("__name__", "secret_metric"), ("job", "x")]).unwrap();
    engine
        .append(
            "other",
            &[AppendSeries {
                labels: &other,
                samples: &[(1_000_000, 1.0)],
            }],
        )
        .unwrap();
    let state = AppState::new(
        Arc::new(engine),
        Limits::new(LimitsConfig::default()),
        ServerOptions::default(),
    );
    Fixture {
        _dir: dir,
        app: router(state),
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?}, body {body:?}"
    );
    (status, serde_json::from_slice(&body).unwrap())
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    call(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_form(app: &axum::Router, uri: &str, form: &str) -> (StatusCode, Value) {
    call(
        app,
        Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap(),
    )
    .await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn labels_with_and_without_match() {
    let f = fixture();
    let (st, v) = get(&f.app, "/api/v1/labels?start=900&end=2000").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "cpu", "instance", "job", "mode"])
    );
    let (_, v) = post_form(
        &f.app,
        "/api/v1/labels",
        &format!("match[]={}&start=900&end=2000", enc("up")),
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job"])
    );
    // Outside the data's time range nothing is returned.
    let (_, v) = get(&f.app, "/api/v1/labels?start=5000&end=6000").await;
    assert_eq!(v["data"], serde_json::json!([]));
}

#[tokio::test]
async fn label_values_for_metric_list_and_with_match() {
    let f = fixture();
    let (st, v) = get(&f.app, "/api/v1/label/__name__/values?start=900&end=2000").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["data"],
        serde_json::json!(["node_cpu_seconds_total", "up"])
    );
    let uri = format!(
        "/api/v1/label/mode/values?match[]={}&start=900&end=2000",
        enc(r#"node_cpu_seconds_total{cpu="0"}"#)
    );
    let (_, v) = get(&f.app, &uri).await;
    assert_eq!(v["data"], serde_json::json!(["idle", "user"]));
    let (_, v) = get(&f.app, "/api/v1/label/mode/values?limit=1").await;
    assert_eq!(v["data"], serde_json::json!(["idle"]));
    assert_eq!(v["warnings"][0], "results truncated due to limit");
}

#[tokio::test]
async fn series_returns_label_sets() {
    let f = fixture();
    let (st, v) = post_form(
        &f.app,
        "/api/v1/series",
        &format!(
            "match[]={}&match[]={}&start=900&end=2000",
            enc(r#"{mode="idle"}"#),
            enc("up")
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["__name__"], "node_cpu_seconds_total");
    assert_eq!(data[0]["cpu"], "0");
    assert_eq!(data[2]["__name__"], "up");
    // match[] is required, and must select something.
    let (st, v) = get(&f.app, "/api/v1/series").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
    let (st, v) = get(
        &f.app,
        &format!("/api/v1/series?match[]={}", enc(r#"{job=~".*"}"#)),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("non-empty matcher"),
        "{v}"
    );
}

#[tokio::test]
async fn query_range_post_form_with_float_seconds() {
    let f = fixture();
    let form = format!(
        "query={}&start=1000.000&end=1240.5&step=60",
        enc(r#"node_cpu_seconds_total{mode="idle"}"#)
    );
    let (st, v) = post_form(&f.app, "/api/v1/query_range", &form).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    assert_eq!(result[0]["metric"]["cpu"], "0");
    let values = result[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 5);
    assert_eq!(values[0], serde_json::json!([1000, "0.5"]));
    assert_eq!(values[4], serde_json::json!([1240, "4.5"]));
    // Errors Grafana shows to the user.
    let (st, v) = post_form(
        &f.app,
        "/api/v1/query_range",
        "query=up&start=10&end=5&step=1",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
    let (st, v) = post_form(
        &f.app,
        "/api/v1/query_range",
        "query=up{&start=1&end=5&step=1",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\""),
        "{v}"
    );
}

#[tokio::test]
async fn instant_queries_and_health_check() {
    let f = fixture();
    let (st, v) = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=1100", enc("up")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"][0]["value"],
        serde_json::json!([1100, "301.5"])
    );
    assert_eq!(v["data"]["result"][0]["metric"]["__name__"], "up");
    let (st, v) = get(&f.app, "/api/v1/query?query=42&time=1100").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType": "scalar", "result": [1100, "42"]})
    );
    let (st, v) = get(
        &f.app,
        &format!(
            "/api/v1/query?query={}&time=2015-07-01T20:10:51Z",
            enc("up")
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "RFC 3339 time accepted: {v}");
}

#[tokio::test]
async fn buildinfo_is_plain_prometheus_flavour() {
    let f = fixture();
    let (st, v) = get(&f.app, "/api/v1/status/buildinfo").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].is_string());
    assert_eq!(v["data"]["features"], serde_json::json!({}));
}

#[tokio::test]
async fn metadata_and_tsdb_status() {
    let f = fixture();
    let (_, v) = get(&f.app, "/api/v1/metadata").await;
    assert_eq!(
        v["data"]["node_cpu_seconds_total"][0],
        serde_json::json!({"type": "counter", "help": "Seconds the CPUs spent in each mode.", "unit": ""})
    );
    let (_, v) = get(&f.app, "/api/v1/status/tsdb?limit=1").await;
    assert_eq!(v["data"]["headStats"]["numSeries"], 4);
    assert_eq!(v["data"]["headStats"]["minTime"], 1_000_000);
    assert_eq!(
        v["data"]["seriesCountByMetricName"],
        serde_json::json!([{"name": "node_cpu_seconds_total", "value": 3}])
    );
}

#[tokio::test]
async fn tenants_do_not_see_each_other() {
    let f = fixture();
    let (_, v) = get(&f.app, "/api/v1/label/__name__/values").await;
    assert!(
        !v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "secret_metric")
    );
    let req = Request::get("/api/v1/label/__name__/values")
        .header("X-Scope-OrgID", "other")
        .body(Body::empty())
        .unwrap();
    let (_, v) = call(&f.app, req).await;
    assert_eq!(v["data"], serde_json::json!(["secret_metric"]));
    let req = Request::get("/api/v1/labels")
        .header("X-Scope-OrgID", "no/such")
        .body(Body::empty())
        .unwrap();
    let (st, v) = call(&f.app, req).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("invalid tenant ID"));
}

#[tokio::test]
async fn promql_operators_functions_and_annotations() {
    let f = fixture();
    let (st, v) = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=1100", enc("count(up) * 2")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"], serde_json::json!({}));
    // A rate over a metric not named like a counter carries Prometheus's info annotation.
    let (st, v) = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=1100", enc("rate(up[10m])")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["infos"][0]
            .as_str()
            .unwrap()
            .contains("might not be a counter"),
        "{v}"
    );
    // What the engine cannot evaluate is a 422 naming the construct.
    let (st, v) = get(
        &f.app,
        &format!(
            "/api/v1/query?query={}&time=1100",
            enc("start_timestamp(up)")
        ),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errorType"], "execution");
    assert!(
        v["error"].as_str().unwrap().contains("not supported yet"),
        "{v}"
    );
    // Evaluation errors are 422 execution errors with Prometheus's wording.
    let (st, v) = get(
        &f.app,
        &format!(
            "/api/v1/query?query={}&time=1100",
            enc(r#"label_replace(node_cpu_seconds_total, "cpu", "x", "cpu", ".*")"#)
        ),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"].as_str().unwrap().contains("same labelset"),
        "{v}"
    );
}

#[tokio::test]
async fn bad_queries_are_bad_data_with_prometheus_wording() {
    let f = fixture();
    let cases = [
        ("sum(", "1:5: parse error: unclosed left parenthesis"),
        (
            "rate(up)",
            r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#,
        ),
        ("nosuchfn(up)", r#"unknown function with name "nosuchfn""#),
        ("up{", "parse error: unexpected end of input inside braces"),
    ];
    for (q, want) in cases {
        let (st, v) = get(&f.app, &format!("/api/v1/query?query={}&time=1100", enc(q))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["errorType"], "bad_data", "{q}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.starts_with("invalid parameter \"query\": "),
            "{q}: {msg}"
        );
        assert!(msg.contains(want), "{q}: {msg}");
    }
    // Range parameters.
    let range = |q: &str, start: &str, end: &str, step: &str| {
        format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            enc(q)
        )
    };
    let (st, v) = get(&f.app, &range("up", "2000", "1000", "60")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("end timestamp must not be before start time")
    );
    let (st, v) = get(&f.app, &range("up", "0", "100000", "1")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("11,000 points"),
        "{v}"
    );
    let (st, v) = get(&f.app, &range("up", "0", "100", "0")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("step"), "{v}");
    // A range query must not return a range vector or a string.
    let (st, v) = get(&f.app, &range("up[5m]", "1000", "1200", "60")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("range vector"), "{v}");
    // The server keeps answering.
    let (st, _) = get(
        &f.app,
        &format!("/api/v1/query?query={}&time=1100", enc("sum(up)")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn admin_snapshot_writes_a_data_directory() {
    let f = fixture();
    let req = Request::post("/api/v1/admin/tsdb/snapshot")
        .body(Body::empty())
        .unwrap();
    let (st, v) = call(&f.app, req).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let name = v["data"]["name"].as_str().unwrap().to_string();
    let snap = f._dir.path().join("snapshots").join(&name);
    // The snapshot opens as a data directory holding the head's samples as a block.
    let (copy, _) = Engine::open(EngineOptions {
        data_dir: snap,
        ..EngineOptions::default()
    })
    .unwrap();
    let q = copy.querier("anonymous").unwrap();
    let m = [strata_engine::Matcher::equal("__name__", "up")];
    let s = q
        .select(&m, 0, i64::MAX, &strata_engine::SelectHints::default())
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].samples(0, i64::MAX).unwrap().len(), 10);
    // A bad flag is bad_data.
    let req = Request::post("/api/v1/admin/tsdb/snapshot?skip_head=maybe")
        .body(Body::empty())
        .unwrap();
    let (st, v) = call(&f.app, req).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}
