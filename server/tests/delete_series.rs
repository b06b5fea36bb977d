//! `POST|PUT /api/v1/admin/tsdb/delete_series` through the router: deleted samples disappear
//! from `query_range` (head and blocks), other series and tenants keep theirs, bad requests
//! are `bad_data`, and every deletion lands in the audit log and on `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use strata_engine::{AppendSeries, Engine, EngineOptions, Labels};
use strata_server::app::{AppState, ServerOptions, router};
use strata_server::limits::{Limits, LimitsConfig};
use tower::ServiceExt;

/// `up{instance="a"|"b"}`, one sample a minute for 20 minutes from t = 0, in tenants
/// `anonymous` and `other`. With `persist`, the anonymous tenant's data is in blocks.
fn fixture(persist: bool) -> (tempfile::TempDir, Arc<Engine>, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: dir.path().to_path_buf(),
        ..EngineOptions::default()
    })
    .unwrap();
    let series: Vec<Labels> = ["a", "b"]
        .iter()
        .map(|i| Labels::from_pairs(&[("__name__", "up"), ("instance", i)]).unwrap())
        .collect();
    let samples: Vec<(i64, f64)> = (0..20).map(|k| (k * 60_000, k as f64)).collect();
    let batch: Vec<AppendSeries> = series
        .iter()
        .map(|l| AppendSeries {
            labels: l,
            samples: &samples,
        })
        .collect();
    for tenant in ["anonymous", "other"] {
        engine.append(tenant, &batch).unwrap();
    }
    if persist {
        engine.tenant("anonymous").unwrap().persist_all().unwrap();
    }
    let engine = Arc::new(engine);
    let state = AppState::new(
        engine.clone(),
        Limits::new(LimitsConfig::default()),
        ServerOptions::default(),
    );
    (dir, engine, router(state))
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Timestamps (seconds) returned by `query_range` for each instance of `up`. A 1 s lookback
/// makes every step show exactly the sample at its timestamp, so a deleted sample is a
/// missing step.
async fn points(app: &axum::Router, tenant: &str) -> Vec<(String, Vec<i64>)> {
    let req =
        Request::get("/api/v1/query_range?query=up&start=0&end=1140&step=60&lookback_delta=1s")
            .header("X-Scope-OrgID", tenant)
            .body(Body::empty())
            .unwrap();
    let (st, body) = send(app, req).await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut out: Vec<(String, Vec<i64>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let inst = s["metric"]["instance"].as_str().unwrap().to_string();
            let ts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_f64().unwrap() as i64)
                .collect();
            (inst, ts)
        })
        .collect();
    out.sort();
    out
}

fn delete_form(form: &str) -> Request<Body> {
    Request::post("/api/v1/admin/tsdb/delete_series")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

async fn check_deletes(persist: bool) {
    let (dir, _engine, app) = fixture(persist);
    let all: Vec<i64> = (0..20).map(|k| k * 60).collect();
    assert_eq!(
        points(&app, "anonymous").await,
        vec![("a".into(), all.clone()), ("b".into(), all.clone())]
    );
    // Minutes 5..=9 of instance a (a form body, RFC 3339 start, Unix-seconds end).
    let form = format!(
        "match[]={}&start={}&end=540",
        enc("up{instance=\"a\"}"),
        enc("1970-01-01T00:05:00Z")
    );
    let (st, body) = send(&app, delete_form(&form)).await;
    assert_eq!(
        st,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(body.is_empty());
    let a: Vec<i64> = all
        .iter()
        .copied()
        .filter(|t| !(300..=540).contains(t))
        .collect();
    assert_eq!(
        points(&app, "anonymous").await,
        vec![("a".into(), a.clone()), ("b".into(), all.clone())]
    );
    assert_eq!(raw_samples(&app, "up{instance=\"a\"}").await, a);
    // PUT with the query string and no range: all of instance b.
    let req = Request::put(format!(
        "/api/v1/admin/tsdb/delete_series?match[]={}",
        enc("{__name__=\"up\",instance=\"b\"}")
    ))
    .body(Body::empty())
    .unwrap();
    let (st, _) = send(&app, req).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let got = points(&app, "anonymous").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "a");
    // The other tenant is untouched.
    assert_eq!(
        points(&app, "other").await,
        vec![("a".into(), all.clone()), ("b".into(), all)]
    );
    // Both deletions are in the audit log.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0]["version"], 1);
    assert_eq!(lines[0]["tenant"], "anonymous");
    assert_eq!(lines[0]["matchers"][0], "up{instance=\"a\"}");
    assert_eq!(lines[0]["start_ms"], 300_000);
    assert_eq!(lines[0]["end_ms"], 540_000);
    assert_eq!(lines[0]["result"], "success");
    let (head, block) = if persist { (0, 1) } else { (1, 0) };
    assert_eq!(lines[0]["head_series"], head);
    assert_eq!(lines[0]["block_series"], block);
    assert_eq!(lines[1]["start_ms"], Value::Null);
    // And counted on /metrics.
    let (st, body) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("strata_series_deletions_total{tenant=\"anonymous\",result=\"success\"} 2\n"),
        "{text}"
    );
}

/// The raw samples' timestamps (seconds) of a selector over the whole fixture range.
async fn raw_samples(app: &axum::Router, selector: &str) -> Vec<i64> {
    let q = enc(&format!("{selector}[30m]"));
    let req = Request::get(format!("/api/v1/query?query={q}&time=1199"))
        .body(Body::empty())
        .unwrap();
    let (st, body) = send(app, req).await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["data"]["result"][0]["values"]
        .as_array()
        .map(|vals| vals.iter().map(|p| p[0].as_f64().unwrap() as i64).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn delete_series_in_the_head() {
    check_deletes(false).await;
}

#[tokio::test]
async fn delete_series_in_blocks() {
    check_deletes(true).await;
}

#[tokio::test]
async fn bad_requests_are_bad_data() {
    let (dir, _engine, app) = fixture(false);
    let cases = [
        ("", "match[]"),
        ("start=0", "match[]"),
        ("match[]=up{", "match[]"),
        ("match[]=rate(up[5m])", "match[]"),
        (r#"match[]={job=~".*"}"#, "match[]"),
        ("match[]=up&start=yesterday", "start"),
        ("match[]=up&end=nope", "end"),
        ("match[]=up&start=100&end=50", "end"),
    ];
    for (form, param) in cases {
        let form = form.replace('{', "%7B").replace('}', "%7D");
        let (st, body) = send(&app, delete_form(&form)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{form}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "error", "{form}");
        assert_eq!(v["errorType"], "bad_data", "{form}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(param), "{form}: {msg}");
    }
    // GET is not a deletion.
    let (st, _) = send(
        &app,
        Request::get("/api/v1/admin/tsdb/delete_series?match[]=up")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    // Nothing was deleted and nothing audited.
    assert_eq!(points(&app, "anonymous").await.len(), 2);
    assert!(!dir.path().join("audit.log").exists());
    // A valid deletion that matches nothing is still a 204, and audited.
    let (st, _) = send(&app, delete_form("match[]=does_not_exist")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(log.contains("\"head_series\":0"), "{log}");
}
