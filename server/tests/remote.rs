//! Remote write (1.0, 2.0) and remote read through the in-process router: what is stored is
//! what the query API and remote read return, every bad input is answered with the right
//! status and a message that names the problem, and the server keeps serving afterwards.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not the helpers they share.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value as Json;
use strata_engine::{Engine, EngineOptions};
use strata_proto::prompb::{self, read_request::ResponseType};
use strata_proto::prost::Message;
use strata_proto::remote_read::{CONTENT_TYPE_STREAMED_CHUNKS, read_chunked_frames};
use strata_proto::snappy::{compress_snappy, decompress_snappy};
use strata_proto::write_v2;
use strata_proto::xor_chunk::decode_prometheus_xor_chunk;
use strata_server::app::{AppState, ServerOptions, router};
use strata_server::limits::{Limits, LimitsConfig, TenantLimits};
use tower::ServiceExt;

const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A label set as `(name, value)` pairs.
type LabelPairs<'a> = &'a [(&'a str, &'a str)];

/// A series read back: labels and samples.
type ReadSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

struct Server {
    _dir: tempfile::TempDir,
    app: Router,
    state: AppState,
}

fn server_with(limits: LimitsConfig, options: ServerOptions) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: dir.path().to_path_buf(),
        ..EngineOptions::default()
    })
    .unwrap();
    let state = AppState::new(Arc::new(engine), Limits::new(limits), options);
    Server {
        _dir: dir,
        app: router(state.clone()),
        state,
    }
}

fn server() -> Server {
    server_with(LimitsConfig::default(), ServerOptions::default())
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[track_caller]
    fn assert(&self, status: StatusCode, needles: &[&str]) {
        let text = self.text();
        assert_eq!(self.status, status, "body: {text}");
        for n in needles {
            assert!(text.contains(n), "{n:?} not in body: {text}");
        }
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs a body with the given headers (`None` leaves a header out).
async fn post(
    app: &Router,
    path: &str,
    tenant: Option<&str>,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut b = Request::post(path);
    if let Some(t) = tenant {
        b = b.header("X-Scope-OrgID", t);
    }
    if let Some(ct) = content_type {
        b = b.header("Content-Type", ct);
    }
    if let Some(e) = encoding {
        b = b.header("Content-Encoding", e);
    }
    send(app, b.body(Body::from(body)).unwrap()).await
}

async fn write_v1(app: &Router, tenant: &str, req: &prompb::WriteRequest) -> Reply {
    write_raw(app, tenant, &req.encode_to_vec()).await
}

async fn write_raw(app: &Router, tenant: &str, proto: &[u8]) -> Reply {
    let body = compress_snappy(proto).unwrap();
    post(
        app,
        "/api/v1/write",
        Some(tenant),
        Some("application/x-protobuf"),
        Some("snappy"),
        body,
    )
    .await
}

async fn write_v2(app: &Router, tenant: &str, req: &write_v2::Request) -> Reply {
    let body = compress_snappy(&req.encode_to_vec()).unwrap();
    post(
        app,
        "/api/v1/write",
        Some(tenant),
        Some(V2_CT),
        Some("snappy"),
        body,
    )
    .await
}

async fn get(app: &Router, tenant: &str, path_and_query: &str) -> Reply {
    let req = Request::get(path_and_query)
        .header("X-Scope-OrgID", tenant)
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A base time a minute ago, on a whole second.
fn t0() -> i64 {
    (now_ms() - 60_000) / 1000 * 1000
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn label(name: &str, value: &str) -> prompb::Label {
    prompb::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| prompb::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn request(series: Vec<prompb::TimeSeries>) -> prompb::WriteRequest {
    prompb::WriteRequest {
        timeseries: series,
        metadata: vec![],
    }
}

/// One good series in its own request, for "still serving" checks.
fn good(t: i64, tag: &str) -> prompb::WriteRequest {
    request(vec![series(
        &[("__name__", "still_up"), ("probe", tag)],
        &[(t, 1.0)],
    )])
}

/// Asserts that a following good request is stored and answered 204.
async fn assert_still_serving(app: &Router, tenant: &str, tag: &str) {
    let r = write_v1(app, tenant, &good(t0(), tag)).await;
    r.assert(StatusCode::NO_CONTENT, &[]);
    let q = instant(app, tenant, &format!("still_up{{probe=\"{tag}\"}}"), t0()).await;
    assert_eq!(q.len(), 1, "good write after a bad one was not stored");
}

/// Runs an instant query; returns `(labels, value)` per result.
async fn instant(app: &Router, tenant: &str, q: &str, t: i64) -> Vec<(Json, String)> {
    let r = get(
        app,
        tenant,
        &format!("/api/v1/query?query={}&time={}", enc(q), secs(t)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    j["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[tokio::test]
async fn v1_write_is_queryable_with_query_and_query_range() {
    let s = server();
    let t = t0();
    let req = request(vec![
        series(
            &[
                ("__name__", "node_load1"),
                ("instance", "a:9100"),
                ("job", "node"),
            ],
            &[(t, 1.5), (t + 15_000, 2.5), (t + 30_000, 3.5)],
        ),
        series(
            &[
                ("__name__", "node_load1"),
                ("instance", "b:9100"),
                ("job", "node"),
            ],
            &[(t, 10.0), (t + 15_000, 20.0), (t + 30_000, 30.0)],
        ),
    ]);
    let r = write_v1(&s.app, "anonymous", &req).await;
    r.assert(StatusCode::NO_CONTENT, &[]);
    assert!(r.body.is_empty());
    assert!(
        r.headers
            .get("X-Prometheus-Remote-Write-Samples-Written")
            .is_none()
    );

    let mut v = instant(&s.app, "anonymous", "node_load1", t + 30_000).await;
    v.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].1, "3.5");
    assert_eq!(v[0].0["instance"], "a:9100");
    assert_eq!(v[1].1, "30");

    let r = get(
        &s.app,
        "anonymous",
        &format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=15",
            enc("node_load1{instance=\"a:9100\"}"),
            secs(t),
            secs(t + 30_000)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let values = &j["data"]["result"][0]["values"];
    let got: Vec<&str> = values
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert_eq!(got, ["1.5", "2.5", "3.5"]);

    // The push alias (Mimir) and the explicit 1.0 proto parameter behave the same.
    let body = compress_snappy(&good(t, "push").encode_to_vec()).unwrap();
    let r = post(
        &s.app,
        "/api/v1/push",
        None,
        Some("application/x-protobuf;proto=prometheus.WriteRequest"),
        None,
        body,
    )
    .await;
    r.assert(StatusCode::NO_CONTENT, &[]);
    assert_eq!(
        instant(&s.app, "anonymous", "still_up{probe=\"push\"}", t)
            .await
            .len(),
        1
    );

    let m = get(&s.app, "anonymous", "/metrics").await.text();
    assert!(
        m.contains("strata_ingested_samples_total{tenant=\"anonymous\"} 7"),
        "{m}"
    );
}

fn v2_request(t: i64) -> write_v2::Request {
    // symbols: 0 "", 1 __name__, 2 http_requests_total, 3 job, 4 api, 5 trace_id, 6 abc123,
    // 7 help text, 8 unit, 9 http_duration_seconds_bucket, 10 le, 11 0.5
    let symbols = [
        "",
        "__name__",
        "http_requests_total",
        "job",
        "api",
        "trace_id",
        "abc123",
        "Requests served.",
        "requests",
        "http_duration_seconds_bucket",
        "le",
        "0.5",
    ];
    write_v2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: vec![
            write_v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    write_v2::Sample {
                        value: 1.0,
                        timestamp: t,
                    },
                    write_v2::Sample {
                        value: 2.0,
                        timestamp: t + 15_000,
                    },
                ],
                exemplars: vec![write_v2::Exemplar {
                    labels_refs: vec![5, 6],
                    value: 2.0,
                    timestamp: t + 15_000,
                }],
                metadata: Some(write_v2::Metadata {
                    r#type: write_v2::metadata::MetricType::Counter as i32,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                ..Default::default()
            },
            write_v2::TimeSeries {
                labels_refs: vec![1, 9, 3, 4, 10, 11],
                samples: vec![write_v2::Sample {
                    value: 7.0,
                    timestamp: t,
                }],
                metadata: Some(write_v2::Metadata {
                    r#type: write_v2::metadata::MetricType::Histogram as i32,
                    help_ref: 0,
                    unit_ref: 0,
                }),
                ..Default::default()
            },
        ],
    }
}

#[tokio::test]
async fn v2_write_stores_samples_exemplars_and_metadata() {
    let s = server();
    let t = t0();
    let r = write_v2(&s.app, "team-a", &v2_request(t)).await;
    r.assert(StatusCode::NO_CONTENT, &[]);
    assert_eq!(r.header("X-Prometheus-Remote-Write-Samples-Written"), "3");
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        "0"
    );
    assert_eq!(r.header("X-Prometheus-Remote-Write-Exemplars-Written"), "1");

    let v = instant(&s.app, "team-a", "http_requests_total", t + 15_000).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].1, "2");

    let r = get(
        &s.app,
        "team-a",
        &format!(
            "/api/v1/query_exemplars?query=http_requests_total&start={}&end={}",
            secs(t),
            secs(t + 60_000)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let e = &j["data"][0];
    assert_eq!(e["seriesLabels"]["job"], "api");
    assert_eq!(e["exemplars"][0]["labels"]["trace_id"], "abc123");
    assert_eq!(e["exemplars"][0]["value"], "2");

    let j = get(&s.app, "team-a", "/api/v1/metadata").await.json();
    assert_eq!(
        j["data"]["http_requests_total"][0],
        serde_json::json!({"type": "counter", "help": "Requests served.", "unit": "requests"})
    );
    // The bucket series' metadata is filed under its family name.
    assert_eq!(j["data"]["http_duration_seconds"][0]["type"], "histogram");

    let m = get(&s.app, "anonymous", "/metrics").await.text();
    assert!(
        m.contains("strata_ingested_exemplars_total{tenant=\"team-a\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn v1_metadata_is_stored() {
    let s = server();
    let mut req = good(t0(), "meta");
    req.metadata.push(prompb::MetricMetadata {
        r#type: prompb::metric_metadata::MetricType::Gauge as i32,
        metric_family_name: "still_up".into(),
        help: "Probe result.".into(),
        unit: String::new(),
    });
    write_v1(&s.app, "anonymous", &req)
        .await
        .assert(StatusCode::NO_CONTENT, &[]);
    let j = get(&s.app, "anonymous", "/api/v1/metadata?metric=still_up")
        .await
        .json();
    assert_eq!(
        j["data"]["still_up"][0],
        serde_json::json!({"type": "gauge", "help": "Probe result.", "unit": ""})
    );
}

#[tokio::test]
async fn nan_inf_and_stale_markers_are_stored_bit_exact() {
    let s = server();
    let t = t0();
    let values = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::from_bits(STALE_NAN),
    ];
    let samples: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (t + i as i64 * 1000, v))
        .collect();
    let r = write_v1(
        &s.app,
        "anonymous",
        &request(vec![series(&[("__name__", "odd")], &samples)]),
    )
    .await;
    r.assert(StatusCode::NO_CONTENT, &[]);

    let v = instant(&s.app, "anonymous", "odd", t + 1000).await;
    assert_eq!(v[0].1, "+Inf");
    let v = instant(&s.app, "anonymous", "odd", t + 2000).await;
    assert_eq!(v[0].1, "-Inf");

    let read = remote_read(
        &s.app,
        "anonymous",
        "odd",
        t,
        t + 10_000,
        ResponseType::Samples,
    )
    .await;
    let got: Vec<u64> = read[0].1.iter().map(|&(_, v)| v.to_bits()).collect();
    assert!(f64::from_bits(got[0]).is_nan());
    assert_eq!(got[1], f64::INFINITY.to_bits());
    assert_eq!(got[2], f64::NEG_INFINITY.to_bits());
    assert_eq!(got[3], STALE_NAN, "stale marker bit pattern changed");
}

#[tokio::test]
async fn tenants_are_isolated() {
    let s = server();
    let t = t0();
    write_v1(&s.app, "team-a", &good(t, "iso"))
        .await
        .assert(StatusCode::NO_CONTENT, &[]);
    assert_eq!(instant(&s.app, "team-a", "still_up", t).await.len(), 1);
    assert!(instant(&s.app, "team-b", "still_up", t).await.is_empty());
    assert!(
        remote_read(
            &s.app,
            "team-b",
            "still_up",
            t - 1000,
            t + 1000,
            ResponseType::Samples
        )
        .await
        .is_empty()
    );
    assert!(instant(&s.app, "anonymous", "still_up", t).await.is_empty());

    let r = write_v1(&s.app, "../etc", &good(t, "x")).await;
    r.assert(StatusCode::BAD_REQUEST, &["invalid tenant ID"]);
}

// ---------------------------------------------------------------------------------------------
// Partial writes

#[tokio::test]
async fn out_of_order_series_is_reported_and_the_good_one_stored() {
    let s = server();
    let t = t0();
    write_v1(
        &s.app,
        "anonymous",
        &request(vec![series(&[("__name__", "late")], &[(t, 1.0)])]),
    )
    .await
    .assert(StatusCode::NO_CONTENT, &[]);
    // One hour behind the series' newest sample: beyond the 10-minute out-of-order window.
    let req = request(vec![
        series(&[("__name__", "late")], &[(t - 3_600_000, 2.0)]),
        series(&[("__name__", "fine")], &[(t, 3.0)]),
    ]);
    let r = write_v1(&s.app, "anonymous", &req).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "1 of 2 samples rejected (out_of_order=1); 1 samples stored",
            "out of order sample",
            "{__name__=\"late\"}",
        ],
    );
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(instant(&s.app, "anonymous", "fine", t).await[0].1, "3");
    assert_eq!(instant(&s.app, "anonymous", "late", t).await[0].1, "1");

    // A retry of the same request is answered the same way and changes nothing.
    let r = write_v1(&s.app, "anonymous", &req).await;
    r.assert(StatusCode::BAD_REQUEST, &["out_of_order=1"]);

    let m = get(&s.app, "anonymous", "/metrics").await.text();
    assert!(
        m.contains("strata_rejected_samples_total{tenant=\"anonymous\",reason=\"out_of_order\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn v2_partial_write_reports_written_counts() {
    let s = server();
    let t = t0();
    let mut req = v2_request(t);
    // Second series: metric name label but labels unsorted (le before job) → dropped.
    req.timeseries[1].labels_refs = vec![1, 9, 10, 11, 3, 4];
    let r = write_v2(&s.app, "anonymous", &req).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "labels_not_sorted=1",
            "timeseries[1] (http_duration_seconds_bucket)",
            "must be sorted",
        ],
    );
    assert_eq!(r.header("X-Prometheus-Remote-Write-Samples-Written"), "2");
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        "0"
    );
    assert_eq!(r.header("X-Prometheus-Remote-Write-Exemplars-Written"), "1");
}

#[tokio::test]
async fn native_histograms_are_reported_not_silently_dropped() {
    let s = server();
    let t = t0();
    let mut with_hist = series(&[("__name__", "hist")], &[]);
    with_hist.histograms.push(prompb::Histogram {
        count: Some(prompb::histogram::Count::CountInt(3)),
        sum: 1.5,
        schema: 0,
        timestamp: t,
        ..Default::default()
    });
    let req = request(vec![
        with_hist,
        series(&[("__name__", "plain")], &[(t, 1.0)]),
    ]);
    let r = write_v1(&s.app, "anonymous", &req).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "native_histogram_unsupported=1",
            "does not store native histograms",
            "{__name__=\"hist\"}",
        ],
    );
    assert_eq!(instant(&s.app, "anonymous", "plain", t).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Bad input: status, message, and the server keeps serving.

#[tokio::test]
async fn malformed_snappy_is_400() {
    let s = server();
    let r = post(
        &s.app,
        "/api/v1/write",
        None,
        Some("application/x-protobuf"),
        Some("snappy"),
        b"\xff\xff\xff\xff\xff not snappy".to_vec(),
    )
    .await;
    r.assert(StatusCode::BAD_REQUEST, &["decompressing body", "snappy"]);
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    // An empty body is not a valid snappy block either.
    let r = post(&s.app, "/api/v1/write", None, None, None, Vec::new()).await;
    r.assert(StatusCode::BAD_REQUEST, &["decompressing body"]);
    assert_still_serving(&s.app, "anonymous", "snappy").await;
}

#[tokio::test]
async fn truncated_protobuf_is_400_and_nothing_is_stored() {
    let s = server();
    let t = t0();
    let req = request(vec![
        series(&[("__name__", "first")], &[(t, 1.0)]),
        series(&[("__name__", "second")], &[(t, 2.0)]),
    ]);
    let bytes = req.encode_to_vec();
    let r = write_raw(&s.app, "anonymous", &bytes[..bytes.len() - 3]).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "decoding prometheus.WriteRequest body",
            "length prefix 38 exceeds the 35 bytes left",
        ],
    );
    // All or nothing: the first, intact series was not stored either.
    assert!(instant(&s.app, "anonymous", "first", t).await.is_empty());
    assert_still_serving(&s.app, "anonymous", "truncated").await;
}

#[tokio::test]
async fn garbage_protobuf_is_400() {
    let s = server();
    let r = write_raw(
        &s.app,
        "anonymous",
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage",
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &["decoding prometheus.WriteRequest body"],
    );
    assert_still_serving(&s.app, "anonymous", "garbage").await;
}

#[tokio::test]
async fn invalid_utf8_is_400_naming_the_field() {
    let s = server();
    let t = t0();
    let req = request(vec![
        series(&[("__name__", "ok_metric")], &[(t, 1.0)]),
        series(&[("__name__", "utf"), ("job", "MARKER")], &[(t, 1.0)]),
    ]);
    let mut bytes = req.encode_to_vec();
    let pos = bytes.windows(6).position(|w| w == b"MARKER").unwrap();
    bytes[pos] = 0xff;
    bytes[pos + 1] = 0xfe;
    let r = write_raw(&s.app, "anonymous", &bytes).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &["timeseries[1].labels[1].value", "invalid UTF-8"],
    );
    assert!(
        instant(&s.app, "anonymous", "ok_metric", t)
            .await
            .is_empty()
    );
    assert_still_serving(&s.app, "anonymous", "utf8").await;
}

#[tokio::test]
async fn invalid_label_sets_are_dropped_and_named() {
    let s = server();
    let t = t0();
    let cases: [(LabelPairs, &[&str]); 4] = [
        (
            &[("__name__", "m"), ("job", "a"), ("instance", "x")],
            &[
                "labels_not_sorted=1",
                "label \"instance\" comes after \"job\"",
            ],
        ),
        (
            &[("__name__", "m"), ("job", "a"), ("job", "b")],
            &["duplicate_label_names=1", "duplicate label name \"job\""],
        ),
        (
            &[("__name__", ""), ("job", "a")],
            &["metric_name_invalid=1", "empty metric name"],
        ),
        (
            &[("job", "a")],
            &["missing_metric_name=1", "missing metric name"],
        ),
    ];
    for (i, (labels, needles)) in cases.iter().enumerate() {
        let fine = format!("fine_{i}");
        let req = request(vec![
            series(labels, &[(t, 1.0)]),
            series(&[("__name__", fine.as_str())], &[(t, 1.0)]),
        ]);
        let r = write_v1(&s.app, "anonymous", &req).await;
        r.assert(StatusCode::BAD_REQUEST, needles);
        r.assert(
            StatusCode::BAD_REQUEST,
            &["timeseries[0]", "1 samples stored", "1 series dropped"],
        );
        assert_eq!(
            instant(&s.app, "anonymous", &fine, t).await.len(),
            1,
            "case {i}"
        );
    }
    assert_still_serving(&s.app, "anonymous", "labels").await;
}

#[tokio::test]
async fn labels_over_the_limits_are_400_naming_the_limit() {
    let mut cfg = LimitsConfig::default();
    cfg.tenants.insert(
        "small".into(),
        TenantLimits {
            max_label_names_per_series: 3,
            ..TenantLimits::default()
        },
    );
    let s = server_with(cfg, ServerOptions::default());
    let t = t0();
    let long = "v".repeat(3000);
    let r = write_v1(
        &s.app,
        "anonymous",
        &request(vec![series(
            &[("__name__", "big"), ("x", &long)],
            &[(t, 1.0)],
        )]),
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "max_label_value_length=1",
            "value of label \"x\" has 3000 bytes, more than the per-tenant limit max_label_value_length=2048",
            "(3000 bytes)",
        ],
    );
    assert!(r.body.len() < 2000, "the long value is cut in the message");

    let r = write_v1(
        &s.app,
        "small",
        &request(vec![series(
            &[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "3")],
            &[(t, 1.0)],
        )]),
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &["series has 4 labels", "max_label_names_per_series=3"],
    );

    let m = get(&s.app, "anonymous", "/metrics").await.text();
    assert!(
        m.contains(
            "strata_limits_exceeded_total{tenant=\"small\",limit=\"max_label_names_per_series\"} 1"
        ),
        "{m}"
    );
    assert_still_serving(&s.app, "small", "limits").await;
}

#[tokio::test]
async fn timestamps_far_in_the_future_are_400() {
    let s = server();
    let t = t0();
    let future = now_ms() + 3_600_000;
    let req = request(vec![series(
        &[("__name__", "clock")],
        &[(t, 1.0), (future, 2.0)],
    )]);
    let r = write_v1(&s.app, "anonymous", &req).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "too_far_in_future=1",
            "too far in the future",
            "more than 10 minutes after the server's clock",
            "{__name__=\"clock\"}",
        ],
    );
    // The good sample of the same series is stored.
    assert_eq!(instant(&s.app, "anonymous", "clock", t).await[0].1, "1");
    assert_still_serving(&s.app, "anonymous", "future").await;
}

#[tokio::test]
async fn bodies_over_the_limits_are_413() {
    let s = server_with(
        LimitsConfig::default(),
        ServerOptions {
            max_request_body: 16 * 1024,
            max_decoded_body: 16 * 1024,
            ..ServerOptions::default()
        },
    );
    let r = post(
        &s.app,
        "/api/v1/write",
        None,
        Some("application/x-protobuf"),
        Some("snappy"),
        vec![0u8; 20_000],
    )
    .await;
    r.assert(
        StatusCode::PAYLOAD_TOO_LARGE,
        &["larger than the limit of 16384 bytes", "max_request_body"],
    );

    // Compresses to less than 16 KiB, decodes to more.
    let t = t0();
    let many: Vec<prompb::TimeSeries> = (0..2000)
        .map(|i| {
            series(
                &[("__name__", "repeat"), ("i", &format!("{i}"))],
                &[(t, 1.0)],
            )
        })
        .collect();
    let proto = request(many).encode_to_vec();
    assert!(proto.len() > 16 * 1024);
    let body = compress_snappy(&proto).unwrap();
    assert!(body.len() < 16 * 1024, "{}", body.len());
    let r = write_raw(&s.app, "anonymous", &proto).await;
    r.assert(
        StatusCode::PAYLOAD_TOO_LARGE,
        &["more than the limit of 16384 bytes", "max_decoded_body"],
    );
    assert!(instant(&s.app, "anonymous", "repeat", t).await.is_empty());
    assert_still_serving(&s.app, "anonymous", "413").await;
}

#[tokio::test]
async fn wrong_content_type_or_encoding_is_415() {
    let s = server();
    let body = compress_snappy(&good(t0(), "x").encode_to_vec()).unwrap();
    let r = post(
        &s.app,
        "/api/v1/write",
        None,
        Some("application/json"),
        Some("snappy"),
        body.clone(),
    )
    .await;
    r.assert(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["unsupported Content-Type \"application/json\""],
    );
    let r = post(
        &s.app,
        "/api/v1/write",
        None,
        Some("application/x-protobuf;proto=io.prometheus.write.v9.Request"),
        Some("snappy"),
        body.clone(),
    )
    .await;
    r.assert(StatusCode::UNSUPPORTED_MEDIA_TYPE, &["v9"]);
    let r = post(
        &s.app,
        "/api/v1/write",
        None,
        Some("application/x-protobuf"),
        Some("gzip"),
        body,
    )
    .await;
    r.assert(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["unsupported Content-Encoding \"gzip\""],
    );
    assert_still_serving(&s.app, "anonymous", "415").await;
}

#[tokio::test]
async fn a_body_of_the_other_version_gets_a_hint() {
    let s = server();
    // A 1.0 body sent as 2.0.
    let body = compress_snappy(&good(t0(), "x").encode_to_vec()).unwrap();
    let r = post(
        &s.app,
        "/api/v1/write",
        None,
        Some(V2_CT),
        Some("snappy"),
        body,
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "io.prometheus.write.v2.Request",
            "did you mean Content-Type application/x-protobuf?",
        ],
    );
    assert_eq!(r.header("X-Prometheus-Remote-Write-Samples-Written"), "0");
}

#[tokio::test]
async fn rate_limit_is_429_and_stores_nothing() {
    let mut cfg = LimitsConfig::default();
    cfg.tenants.insert(
        "slow".into(),
        TenantLimits {
            ingestion_rate: 10.0,
            ingestion_burst: 20.0,
            ..TenantLimits::default()
        },
    );
    let s = server_with(cfg, ServerOptions::default());
    let t = t0();
    let samples: Vec<(i64, f64)> = (0..30).map(|i| (t + i * 1000, i as f64)).collect();
    let r = write_v1(
        &s.app,
        "slow",
        &request(vec![series(&[("__name__", "burst")], &samples)]),
    )
    .await;
    r.assert(
        StatusCode::TOO_MANY_REQUESTS,
        &[
            "ingestion rate limit (10 samples/s) exceeded",
            "larger than the burst of 20",
        ],
    );
    assert!(
        instant(&s.app, "slow", "burst", t + 29_000)
            .await
            .is_empty()
    );
    let m = get(&s.app, "anonymous", "/metrics").await.text();
    assert!(
        m.contains("strata_limits_exceeded_total{tenant=\"slow\",limit=\"ingestion_rate\"} 1"),
        "{m}"
    );
    // Within the burst, the next request is accepted; another tenant is not limited.
    assert_still_serving(&s.app, "slow", "rate").await;
    write_v1(
        &s.app,
        "other",
        &request(vec![series(&[("__name__", "burst")], &samples)]),
    )
    .await
    .assert(StatusCode::NO_CONTENT, &[]);
}

#[tokio::test]
async fn series_limit_is_400_and_keeps_existing_series() {
    let mut cfg = LimitsConfig::default();
    cfg.tenants.insert(
        "tiny".into(),
        TenantLimits {
            max_series: 2,
            ..TenantLimits::default()
        },
    );
    let s = server_with(cfg, ServerOptions::default());
    let t = t0();
    let req = request(
        (0..3)
            .map(|i| {
                series(
                    &[("__name__", "card"), ("i", &i.to_string())],
                    &[(t, i as f64)],
                )
            })
            .collect(),
    );
    let r = write_v1(&s.app, "tiny", &req).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &[
            "1 of 3 samples rejected (series_limit=1); 2 samples stored",
            "per-tenant series limit of 2 exceeded",
            "max_series",
        ],
    );
    assert_eq!(instant(&s.app, "tiny", "card", t).await.len(), 2);
    // Existing series keep ingesting.
    let req = request(vec![series(
        &[("__name__", "card"), ("i", "0")],
        &[(t + 1000, 5.0)],
    )]);
    write_v1(&s.app, "tiny", &req)
        .await
        .assert(StatusCode::NO_CONTENT, &[]);
}

// ---------------------------------------------------------------------------------------------
// Remote read

/// Remote-reads `name` in `[start, end]`; returns `(labels, samples)` per series.
async fn remote_read(
    app: &Router,
    tenant: &str,
    name: &str,
    start: i64,
    end: i64,
    rt: ResponseType,
) -> Vec<ReadSeries> {
    let req = prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![prompb::LabelMatcher {
                r#type: prompb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: name.into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![rt as i32],
    };
    let r = post(
        app,
        "/api/v1/read",
        Some(tenant),
        Some("application/x-protobuf"),
        Some("snappy"),
        compress_snappy(&req.encode_to_vec()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let pairs = |ls: &[prompb::Label]| -> Vec<(String, String)> {
        ls.iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    };
    match rt {
        ResponseType::Samples => {
            assert_eq!(r.header("content-type"), "application/x-protobuf");
            assert_eq!(r.header("content-encoding"), "snappy");
            let raw = decompress_snappy(&r.body, 1 << 30).unwrap();
            let resp = prompb::ReadResponse::decode(raw.as_slice()).unwrap();
            assert_eq!(resp.results.len(), 1);
            resp.results[0]
                .timeseries
                .iter()
                .map(|ts| {
                    (
                        pairs(&ts.labels),
                        ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                    )
                })
                .collect()
        }
        ResponseType::StreamedXorChunks => {
            assert_eq!(r.header("content-type"), CONTENT_TYPE_STREAMED_CHUNKS);
            assert!(r.headers.get("content-encoding").is_none());
            let frames = read_chunked_frames(&r.body, 1 << 30).unwrap();
            let mut out: Vec<ReadSeries> = Vec::new();
            for f in frames {
                assert_eq!(f.query_index, 0);
                assert_eq!(f.chunked_series.len(), 1, "one series per frame");
                for cs in f.chunked_series {
                    let labels = pairs(&cs.labels);
                    let mut samples = Vec::new();
                    for c in &cs.chunks {
                        let part = decode_prometheus_xor_chunk(&c.data).unwrap();
                        assert!(part.len() <= 120);
                        assert_eq!(c.min_time_ms, part[0].0);
                        assert_eq!(c.max_time_ms, part[part.len() - 1].0);
                        samples.extend(part);
                    }
                    match out.last_mut() {
                        Some(last) if last.0 == labels => last.1.extend(samples),
                        _ => out.push((labels, samples)),
                    }
                }
            }
            out
        }
    }
}

#[tokio::test]
async fn remote_read_round_trips_both_response_types() {
    let s = server();
    let t = t0() - 3_600_000;
    // 300 samples per series: three XOR chunks when streamed.
    let a: Vec<(i64, f64)> = (0..300)
        .map(|i| (t + i * 10_000, i as f64 * 0.25))
        .collect();
    let b: Vec<(i64, f64)> = (0..300).map(|i| (t + i * 10_000, -(i as f64))).collect();
    let req = request(vec![
        series(&[("__name__", "rr"), ("job", "b")], &b),
        series(&[("__name__", "rr"), ("job", "a")], &a),
        series(&[("__name__", "other")], &a),
    ]);
    write_v1(&s.app, "team-r", &req)
        .await
        .assert(StatusCode::NO_CONTENT, &[]);
    let expected = vec![
        (
            vec![
                ("__name__".to_string(), "rr".to_string()),
                ("job".into(), "a".into()),
            ],
            a.clone(),
        ),
        (
            vec![
                ("__name__".to_string(), "rr".to_string()),
                ("job".into(), "b".into()),
            ],
            b.clone(),
        ),
    ];
    let end = t + 300 * 10_000;
    for rt in [ResponseType::Samples, ResponseType::StreamedXorChunks] {
        let got = remote_read(&s.app, "team-r", "rr", t, end, rt).await;
        assert_eq!(got, expected, "{rt:?}");
        // The time range is honoured.
        let got = remote_read(&s.app, "team-r", "rr", t + 100_000, t + 190_000, rt).await;
        assert_eq!(got[0].1, a[10..20].to_vec(), "{rt:?}");
    }
}

#[tokio::test]
async fn remote_read_bad_requests_are_400() {
    let s = server();
    let post_read = |body: Vec<u8>| {
        let app = s.app.clone();
        async move {
            post(
                &app,
                "/api/v1/read",
                None,
                Some("application/x-protobuf"),
                Some("snappy"),
                body,
            )
            .await
        }
    };
    let r = post_read(b"not snappy at all".to_vec()).await;
    r.assert(StatusCode::BAD_REQUEST, &["decompressing body"]);
    let r = post_read(compress_snappy(b"\x0a\x05\xff").unwrap()).await;
    r.assert(StatusCode::BAD_REQUEST, &["invalid ReadRequest"]);

    let query = |t: i32, value: &str| prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 1,
            matchers: vec![prompb::LabelMatcher {
                r#type: t,
                name: "job".into(),
                value: value.into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let r = post_read(compress_snappy(&query(2, "a(").encode_to_vec()).unwrap()).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &["queries[0].matchers[0]", "invalid matcher"],
    );
    let r = post_read(compress_snappy(&query(9, "a").encode_to_vec()).unwrap()).await;
    r.assert(StatusCode::BAD_REQUEST, &["unknown matcher type 9"]);
    let mut q = query(0, "a");
    q.accepted_response_types = vec![5];
    let r = post_read(compress_snappy(&q.encode_to_vec()).unwrap()).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        &["none of the accepted response types"],
    );

    // Still serving reads.
    let t = t0();
    write_v1(&s.app, "anonymous", &good(t, "read"))
        .await
        .assert(StatusCode::NO_CONTENT, &[]);
    let got = remote_read(&s.app, "anonymous", "still_up", t, t, ResponseType::Samples).await;
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn remote_read_enforces_the_sample_limit() {
    let s = server_with(
        LimitsConfig::default(),
        ServerOptions {
            query_max_samples: 5,
            ..ServerOptions::default()
        },
    );
    let t = t0();
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (t + i * 1000, 1.0)).collect();
    write_v1(
        &s.app,
        "anonymous",
        &request(vec![series(&[("__name__", "lots")], &samples)]),
    )
    .await
    .assert(StatusCode::NO_CONTENT, &[]);
    let req = prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: t,
            end_timestamp_ms: t + 10_000,
            matchers: vec![prompb::LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "lots".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let r = post(
        &s.app,
        "/api/v1/read",
        None,
        None,
        None,
        compress_snappy(&req.encode_to_vec()).unwrap(),
    )
    .await;
    r.assert(StatusCode::BAD_REQUEST, &["exceeded sample limit (5)"]);
}

// ---------------------------------------------------------------------------------------------
// Throughput (run by hand: prints samples/s, asserts only correctness)

/// 2000 node-exporter-like series (10 labels each), one sample each at `t`.
fn node_exporter_request(t: i64, host: usize) -> prompb::WriteRequest {
    let metrics = [
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "node_disk_read_bytes_total",
        "node_filesystem_avail_bytes",
    ];
    let mut out = Vec::with_capacity(2000);
    for i in 0..2000usize {
        let metric = metrics[i % metrics.len()];
        let instance = format!("node-{host:03}.prod.example.com:9100");
        let cpu = (i / 8 % 64).to_string();
        let device = format!("dev{}", i % 97);
        let mode = [
            "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
        ][i % 8];
        let labels = [
            ("__name__", metric),
            ("cluster", "eu-west-1"),
            ("cpu", cpu.as_str()),
            ("device", device.as_str()),
            ("env", "production"),
            ("instance", instance.as_str()),
            ("job", "node-exporter"),
            ("mode", mode),
            ("region", "eu-west"),
            ("team", "infrastructure"),
        ];
        out.push(series(&labels, &[(t, i as f64 * 1.5)]));
    }
    request(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement; run with --release --ignored --nocapture"]
async fn ingest_throughput() {
    let s = server();
    let requests = 250usize;
    let t = t0() - 30 * 60_000;
    // Hosts: each block of 2000 series repeats every 10 requests → 20 000 active series.
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|i| {
            let req = node_exporter_request(t + (i / 10) as i64 * 15_000, i % 10);
            compress_snappy(&req.encode_to_vec()).unwrap()
        })
        .collect();
    println!(
        "request: 2000 samples, {} bytes snappy, {} bytes raw",
        bodies[0].len(),
        node_exporter_request(t, 0).encode_to_vec().len()
    );
    let send_one = |app: Router, body: Vec<u8>| async move {
        let r = post(
            &app,
            "/api/v1/write",
            None,
            Some("application/x-protobuf"),
            Some("snappy"),
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    };

    // Sequential: one request at a time, each waits for its own WAL fsync.
    let (first, rest) = bodies.split_at(10);
    let start = std::time::Instant::now();
    for b in first {
        send_one(s.app.clone(), b.clone()).await;
    }
    let create = start.elapsed();
    let half = rest.len() / 2;
    let start = std::time::Instant::now();
    for b in &rest[..half] {
        send_one(s.app.clone(), b.clone()).await;
    }
    let seq = start.elapsed();
    // Concurrent: 4 senders (as Prometheus shards), fsyncs shared by group commit.
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in rest[half..].chunks(rest[half..].len().div_ceil(4)) {
        let app = s.app.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for b in chunk {
                send_one(app.clone(), b).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let conc = start.elapsed();
    let rate = |n: usize, d: std::time::Duration| (n * 2000) as f64 / d.as_secs_f64();
    println!(
        "series creation: 10 requests (20000 new series) {:.0} samples/s",
        rate(10, create)
    );
    println!(
        "sequential: {half} requests {:.0} samples/s ({:.2} ms/request)",
        rate(half, seq),
        seq.as_secs_f64() * 1000.0 / half as f64
    );
    let n = rest.len() - half;
    println!(
        "4 concurrent senders: {n} requests {:.0} samples/s",
        rate(n, conc)
    );
    let tenant = s.state.engine.existing_tenant("anonymous").unwrap();
    let wal = tenant.wal_stats();
    println!(
        "WAL fsyncs: {} taking {:.3} s in total ({:.2} ms each)",
        wal.fsyncs,
        wal.fsync_seconds,
        wal.fsync_seconds * 1000.0 / wal.fsyncs.max(1) as f64
    );
    assert_eq!(tenant.head().num_series(), 20_000);
}
