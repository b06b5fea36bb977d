//! Strata against the real OpenTelemetry Python SDK, over loopback.
//!
//! The unit tests of the OTLP decoders check Strata against Strata's reading of the protocol;
//! only a real SDK can tell whether that reading is right. `tests/otel/export_trace.py` builds
//! one known trace across two services (two tracer providers, as two processes would) with
//! explicit times and exports it with the SDK's OTLP exporter — over gRPC (port given by
//! `--otlp-grpc-addr`) and over HTTP protobuf (`--otlp-http-addr`), both gzip-compressed, for a
//! tenant given in `X-Scope-OrgID`. The test then reads the trace back through the Tempo API
//! and checks the tree `?format=tree` returns: parentage, services, kinds, status, attributes,
//! durations and the critical path; then search, tags, tag values and the service map. A
//! second test exports metrics with the SDK's OTLP metric exporters (gRPC and HTTP) and reads
//! them back as Prometheus series.
//!
//! The SDK comes from PyPI into a virtualenv made by `tests/install-peers.sh`
//! (`$STRATA_OTEL_VENV`, default `~/.cache/strata/otel-venv`). A missing SDK fails the test
//! with the command that installs it. Every wait has a deadline; the server is killed by pid
//! when its guard drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use strata_tests::harness::{self, Strata};

fn start_strata(data: &Path) -> Strata {
    Strata::start_with_otlp(data).unwrap()
}

/// `GET path` with a tenant header; returns status and body.
fn get(addr: &str, path: &str, tenant: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Scope-OrgID: {tenant}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn json(addr: &str, path: &str, tenant: &str) -> Value {
    let (status, body) = get(addr, path, tenant);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Runs the trace exporter script; returns the trace id it printed.
fn export(protocol: &str, endpoint: &str, tenant: &str) -> String {
    let out = run_script("export_trace.py", &[protocol, endpoint, tenant]);
    let id = out.trim().to_string();
    assert_eq!(id.len(), 32, "exporter printed {out:?}");
    id
}

/// Runs a script of `tests/otel/` with the SDK's Python; returns its stdout.
fn run_script(name: &str, args: &[&str]) -> String {
    harness::run_otel_script(name, args).unwrap()
}

fn find<'a>(node: &'a Value, op: &str) -> Option<&'a Value> {
    if node["operation"] == op {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, op))
}

fn check_tree(t: &Value, id: &str) {
    assert_eq!(t["traceID"], id);
    assert_eq!(t["rootServiceName"], "gateway");
    assert_eq!(t["rootName"], "GET /checkout");
    assert_eq!(t["spanCount"], 5);
    assert_eq!(t["orphanSpans"], 0);
    assert_eq!(t["durationMs"], 100.0);
    assert_eq!(t["services"], serde_json::json!(["gateway", "payment"]));
    let roots = t["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{t:#}");
    let root = &roots[0];
    assert_eq!(root["kind"], "server");
    assert_eq!(root["tags"]["http.status_code"], "500");
    let kids: Vec<&str> = root["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["operation"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["auth", "checkout"]);
    let checkout = find(root, "checkout").unwrap();
    let charge = &checkout["children"][0];
    assert_eq!(charge["operation"], "charge");
    assert_eq!(charge["service"], "payment");
    assert_eq!(charge["kind"], "server");
    assert_eq!(charge["status"], "error");
    assert_eq!(charge["durationMs"], 60.0);
    assert_eq!(charge["selfTimeMs"], 20.0);
    assert_eq!(charge["tags"]["payment.method"], "card");
    assert_eq!(charge["tags"]["payment.amount"], "42.5");
    let db = &charge["children"][0];
    assert_eq!(db["operation"], "db");
    assert_eq!(db["parentSpanID"], charge["spanID"]);
    // Critical path: root → checkout → charge → db, then auth (it ran before checkout).
    let ops: Vec<&str> = t["criticalPath"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let sid = s.as_str().unwrap();
            let mut stack = vec![root];
            while let Some(n) = stack.pop() {
                if n["spanID"] == sid {
                    return n["operation"].as_str().unwrap();
                }
                stack.extend(n["children"].as_array().unwrap());
            }
            panic!("critical span {sid} not in the tree")
        })
        .collect();
    assert_eq!(ops, ["GET /checkout", "checkout", "charge", "db", "auth"]);
    for op in ["GET /checkout", "checkout", "charge", "db", "auth"] {
        assert_eq!(find(root, op).unwrap()["criticalPath"], true, "{op}");
    }
}

#[test]
fn python_sdk_exports_over_grpc_and_http_and_the_tree_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_strata(dir.path());
    let tenant = "otel-e2e";
    let grpc_id = export("grpc", &s.grpc, tenant);
    let http_id = export("http", &format!("http://{}/v1/traces", s.otlp_http), tenant);
    assert_ne!(grpc_id, http_id);

    for id in [&grpc_id, &http_id] {
        let tree = json(&s.addr, &format!("/api/traces/{id}?format=tree"), tenant);
        check_tree(&tree, id);
        // Tempo's JSON: one batch per resource, every span there with its original ids.
        let t = json(&s.addr, &format!("/api/traces/{id}"), tenant);
        let batches = t["batches"].as_array().unwrap();
        assert_eq!(batches.len(), 2);
        let spans: usize = batches
            .iter()
            .flat_map(|b| b["scopeSpans"].as_array().unwrap())
            .map(|ss| ss["spans"].as_array().unwrap().len())
            .sum();
        assert_eq!(spans, 5);
        let v2 = json(&s.addr, &format!("/api/v2/traces/{id}"), tenant);
        assert_eq!(v2["trace"]["resourceSpans"].as_array().unwrap().len(), 2);
    }
    // Tenants are apart.
    let (status, _) = get(&s.addr, &format!("/api/traces/{grpc_id}"), "someone-else");
    assert_eq!(status, 404);

    let found = json(
        &s.addr,
        "/api/search?q=%7B%20resource.service.name%20%3D%20%22payment%22%20%26%26%20status%20%3D%20error%20%7D",
        tenant,
    );
    let mut ids: Vec<&str> = found["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![grpc_id.as_str(), http_id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(found["traces"][0]["rootServiceName"], "gateway");
    assert_eq!(found["traces"][0]["spanSet"]["spans"][0]["name"], "charge");
    let found = json(
        &s.addr,
        "/api/search?tags=service.name%3Dpayment&minDuration=150ms",
        tenant,
    );
    assert_eq!(found["traces"].as_array().unwrap().len(), 0);
    let tags = json(&s.addr, "/api/v2/search/tags", tenant);
    let span_tags = tags["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "span")
        .unwrap();
    assert!(
        span_tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "db.system")
    );
    // The service map of the two traces: gateway → payment (checkout → charge, failed),
    // payment → postgresql (a client span with db.system and no instrumented callee).
    let map = json(&s.addr, "/api/service-map", tenant);
    assert_eq!(map["traces"], 2, "{map:#}");
    let node = |id: &str| {
        map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(node("gateway")["requests"], 2);
    assert_eq!(node("payment")["errors"], 2);
    assert_eq!(node("payment")["errorRate"], 1.0);
    assert_eq!(node("postgresql")["requests"], 2);
    let edges: Vec<(String, String)> = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            ("gateway".into(), "payment".into()),
            ("payment".into(), "postgresql".into())
        ]
    );
    let e = &map["edges"][0];
    assert_eq!(
        (e["requests"].as_u64(), e["errors"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(e["avgLatencyMs"], 80.0);
    assert_eq!(e["p95LatencyMs"], 80.0);

    let values = json(
        &s.addr,
        "/api/v2/search/tag/resource.service.name/values",
        tenant,
    );
    assert_eq!(
        values["tagValues"],
        serde_json::json!([{"type": "string", "value": "gateway"}, {"type": "string", "value": "payment"}])
    );
}

/// The value of an instant query that must return exactly one series.
fn one_value(addr: &str, tenant: &str, query: &str) -> String {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let v = json(addr, &format!("/api/v1/query?query={q}"), tenant);
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{query}: {v}");
    r[0]["value"][1].as_str().unwrap().to_string()
}

#[test]
fn python_sdk_exports_metrics_over_grpc_and_http_as_prometheus_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_strata(dir.path());
    let tenant = "otel-metrics";
    run_script("export_metrics.py", &["grpc", &s.grpc, tenant, "shop-grpc"]);
    let http = format!("http://{}/v1/metrics", s.otlp_http);
    run_script("export_metrics.py", &["http", &http, tenant, "shop-http"]);
    for job in ["shop-grpc", "shop-http"] {
        let sel = |name: &str, extra: &str| format!("{name}{{job=\"{job}\"{extra}}}");
        let v = |name: &str, extra: &str| one_value(&s.addr, tenant, &sel(name, extra));
        assert_eq!(v("orders_total", ",region=\"eu\""), "3");
        assert_eq!(v("orders_total", ",region=\"us\""), "5");
        assert_eq!(v("queue_depth", ""), "7");
        assert_eq!(v("checkout_duration_milliseconds_count", ""), "3");
        assert_eq!(v("checkout_duration_milliseconds_sum", ""), "555");
        assert_eq!(
            v("checkout_duration_milliseconds_bucket", ",le=\"+Inf\""),
            "3"
        );
        assert_eq!(
            v("checkout_duration_milliseconds_bucket", ",le=\"50\""),
            "2"
        );
        // The SDK's telemetry.sdk.* resource attributes land on target_info.
        assert_eq!(v("target_info", ",telemetry_sdk_language=\"python\""), "1");
    }
    // Other tenants see nothing.
    let v = json(&s.addr, "/api/v1/query?query=orders_total", "someone-else");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 0);
}
