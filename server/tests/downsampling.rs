//! `max_source_resolution` on `/api/v1/query` and `/api/v1/query_range`: `auto` reads
//! downsampled blocks where they serve the query, `raw` forces raw samples, a bad value is a
//! `bad_data` error naming the parameter; the reserved aggregate label never shows in the
//! label and series APIs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use strata_compaction::downsample::{DownsampleOptions, downsample_due};
use strata_engine::{Engine, EngineOptions, HeadOptions, Labels};
use strata_server::app::{AppState, ServerOptions, router};
use strata_server::limits::{Limits, LimitsConfig};
use tower::ServiceExt;

const DAY: i64 = 86_400_000;

/// 20 days of one counter (reset every 5 days) and one gauge at a 60 s interval, imported as
/// 1-day blocks and downsampled.
fn fixture() -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: dir.path().to_path_buf(),
        head: HeadOptions {
            block_range_ms: DAY,
            ..HeadOptions::default()
        },
        ..EngineOptions::default()
    })
    .unwrap();
    let mut data = BTreeMap::new();
    let pts = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..20 * 1440)
            .map(|i| (i * 60_000 + 30_000, f(i)))
            .collect()
    };
    data.insert(
        Labels::from_pairs(&[("__name__", "req_total"), ("job", "api")]).unwrap(),
        pts(&|i| ((i % 7200) * 3 + (i * i) % 5) as f64),
    );
    data.insert(
        Labels::from_pairs(&[("__name__", "temp"), ("job", "api")]).unwrap(),
        pts(&|i| ((i * 37) % 101) as f64),
    );
    let db = engine.tenant("anonymous").unwrap();
    db.import(&data).unwrap();
    let made = downsample_due(&db, &DownsampleOptions::default()).unwrap();
    assert!(!made.is_empty());
    let state = AppState::new(
        Arc::new(engine),
        Limits::new(LimitsConfig::default()),
        ServerOptions::default(),
    );
    (dir, router(state))
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn values(v: &Value) -> Vec<f64> {
    v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn max_source_resolution_parameter() {
    let (_dir, app) = fixture();
    let range = |q: &str, res: Option<&str>| {
        let mut uri = format!(
            "/api/v1/query_range?query={}&start=86400&end={}&step=3600",
            enc(q),
            20 * 86_400
        );
        if let Some(r) = res {
            uri.push_str(&format!("&max_source_resolution={r}"));
        }
        uri
    };
    let q = "rate(req_total[1h])";
    let (s, auto) = get(&app, &range(q, None)).await;
    assert_eq!(s, StatusCode::OK, "{auto}");
    let (_, explicit_auto) = get(&app, &range(q, Some("auto"))).await;
    let (_, raw) = get(&app, &range(q, Some("raw"))).await;
    let (_, five) = get(&app, &range(q, Some("5m"))).await;
    let (a, r) = (values(&auto), values(&raw));
    assert_eq!(a.len(), r.len());
    assert!(a.len() > 400);
    assert_eq!(values(&explicit_auto), a);
    assert_ne!(a, r, "auto reads the 1 h copies");
    // At hour-aligned windows the 5 m and 1 h copies measure the same raw samples.
    assert_eq!(values(&five), a);
    for (x, y) in a.iter().zip(&r) {
        assert!((x - y).abs() <= 0.05 * y.abs().max(1.0), "{x} vs {y}");
    }
    // max_over_time over aligned 1 h windows is exact.
    let q = "max_over_time(temp[1h])";
    let (_, auto) = get(&app, &range(q, None)).await;
    let (_, raw) = get(&app, &range(q, Some("raw"))).await;
    assert_eq!(values(&auto), values(&raw));
    // Instant queries take the parameter too.
    let uri = format!(
        "/api/v1/query?query={}&time={}&max_source_resolution=raw",
        enc("max_over_time(temp[6h])"),
        10 * 86_400
    );
    let (s, v) = get(&app, &uri).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "100");
    // A bad value names the parameter.
    let (s, v) = get(&app, &range(q, Some("10m"))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("max_source_resolution"),
        "{v}"
    );
}

#[tokio::test]
async fn reserved_label_is_not_listed() {
    let (_dir, app) = fixture();
    let (_, v) = get(&app, "/api/v1/labels").await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["__name__", "job"]);
    let (_, v) = get(&app, "/api/v1/label/__aggr__/values").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = get(
        &app,
        &format!("/api/v1/series?match[]={}", enc("{job=\"api\"}")),
    )
    .await;
    let series = v["data"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{v}");
    assert!(series.iter().all(|s| s.get("__aggr__").is_none()));
}

/// The running binary's maintenance writes the copies that are due.
#[test]
fn the_server_maintenance_downsamples_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let (engine, _) = Engine::open(EngineOptions {
            data_dir: data.clone(),
            ..EngineOptions::default()
        })
        .unwrap();
        let mut series = BTreeMap::new();
        series.insert(
            Labels::from_pairs(&[("__name__", "up"), ("job", "a")]).unwrap(),
            (0..3 * 1440).map(|i| (i * 60_000, 1.0)).collect::<Vec<_>>(),
        );
        engine.tenant("anonymous").unwrap().import(&series).unwrap();
        engine.close().unwrap();
    }
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        "[storage]\nmaintenance_interval = \"1s\"\n[compaction]\nenabled = false\n[downsampling]\nafter_5m = \"1d\"\nafter_1h = \"0s\"\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_OTLP_GRPC_ADDR", "none")
        .env("STRATA_OTLP_HTTP_ADDR", "none")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = data.join("tenants/anonymous/metrics");
    let count_5m = || {
        std::fs::read_dir(&metrics)
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("meta.json")).ok())
            .filter(|b| String::from_utf8_lossy(b).contains("\"resolution_ms\": 300000"))
            .count()
    };
    // 36 raw 2 h blocks (compaction off, so they stay 2 h); those ending more than 1 d before
    // the newest sample get a 5 m copy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count_5m() < 23 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let n = count_5m();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(n, 23);
}
