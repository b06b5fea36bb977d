//! Strata against the real OpenTelemetry Python SDK's OTLP log exporters, over loopback.
//!
//! `tests/otel/export_logs.py` logs three records through Python's `logging` and the SDK's
//! `LoggingHandler` — two inside a span — and exports them over gRPC (`LogsService/Export` on
//! `--otlp-grpc-addr`) and over HTTP protobuf (`/v1/logs` on `--otlp-http-addr`). The test reads
//! them back through the Loki API and checks the mapping: `service.name` and
//! `deployment.environment` as stream labels, the body as the line, severity, trace and span
//! ids and attributes as structured metadata.
//!
//! The SDK comes from PyPI into the virtualenv made by `tests/install-peers.sh`
//! (`$STRATA_OTEL_VENV`, default `~/.cache/strata/otel-venv`). Every wait has a deadline; the
//! server is killed by pid when its guard drops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use strata_tests::harness::{self, Strata};

fn start(data: &Path) -> Strata {
    Strata::start_with_otlp(data).unwrap()
}

fn get(addr: &str, path: &str, tenant: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Scope-OrgID: {tenant}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {raw}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn export(protocol: &str, endpoint: &str, tenant: &str, service: &str) -> String {
    let out =
        harness::run_otel_script("export_logs.py", &[protocol, endpoint, tenant, service]).unwrap();
    let id = out.trim().to_string();
    assert_eq!(id.len(), 32, "exporter printed {out:?}");
    id
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn python_sdk_exports_logs_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let tenant = "otel-logs";
    let ids = [
        ("shop-grpc", export("grpc", &s.grpc, tenant, "shop-grpc")),
        (
            "shop-http",
            export(
                "http",
                &format!("http://{}/v1/logs", s.otlp_http),
                tenant,
                "shop-http",
            ),
        ),
    ];
    for (service, trace) in &ids {
        let q = format!(r#"{{service_name="{service}", deployment_environment="e2e"}}"#);
        let v = get(
            &s.addr,
            &format!(
                "/loki/api/v1/query_range?query={}&direction=forward",
                enc(&q)
            ),
            tenant,
        );
        let mut rows: Vec<(String, Value)> = Vec::new();
        for st in v["data"]["result"].as_array().unwrap() {
            for e in st["values"].as_array().unwrap() {
                rows.push((e[1].as_str().unwrap().to_string(), st["stream"].clone()));
            }
        }
        let lines: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            lines,
            [
                "order placed",
                "payment failed: card declined",
                "no span here"
            ],
            "{v}"
        );
        let (_, placed) = &rows[0];
        assert_eq!(placed["severity_text"], "INFO");
        assert_eq!(placed["order_id"], "o-17");
        assert_eq!(placed["trace_id"], trace.as_str());
        assert_eq!(placed["span_id"].as_str().unwrap().len(), 16);
        assert_eq!(rows[1].1["severity_text"], "ERROR");
        assert_eq!(rows[1].1["trace_id"], trace.as_str());
        assert!(rows[2].1.get("trace_id").is_none(), "{}", rows[2].1);
        // The trace id finds the records through the exact trace-id index.
        let q = format!(r#"{{service_name="{service}"}} | trace_id="{trace}""#);
        let v = get(
            &s.addr,
            &format!("/loki/api/v1/query_range?query={}", enc(&q)),
            tenant,
        );
        let n: usize = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["values"].as_array().unwrap().len())
            .sum();
        assert_eq!(n, 2, "{v}");
    }
}
