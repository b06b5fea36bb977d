//! The real `strata` binary speaking the Loki API: logs pushed as JSON and as snappy
//! protobuf (with structured metadata) are queried back through `query_range`, `query`,
//! `labels`, `label/<name>/values`, `series`, `index/stats` and `index/volume`, and every result
//! is compared with a reference computed here from the pushed lines. Bad input gets the
//! documented status and message, and a `kill -9` loses nothing that was acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use strata_proto::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use strata_proto::prost::Message;
use strata_tests::harness::{self, Strata};

fn start(data: &Path) -> Strata {
    Strata::start(data, &[]).unwrap()
}

fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    harness::http(addr, method, path, headers, body).unwrap()
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn get_json(addr: &str, path: &str) -> Json {
    let (status, body) = http(addr, "GET", path, &[], b"");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

struct Line {
    service: &'static str,
    ts: i64,
    line: String,
    trace: Option<String>,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn dataset(base: i64) -> Vec<Line> {
    (0..300)
        .map(|i: i64| {
            let service = ["checkout", "cart", "auth"][(i % 3) as usize];
            let level = if i % 7 == 0 { "error" } else { "info" };
            let trace = (i % 5 == 0).then(|| format!("{:032x}", 0xabc000 + i));
            let line = match i % 3 {
                0 => format!(
                    r#"{{"level":"{level}","msg":"order {i} placed","ms":{}}}"#,
                    i % 90
                ),
                1 => format!("level={level} msg=\"cart {i}\" took={}ms", i % 40),
                _ => format!(
                    "{level}: auth attempt {i} {}",
                    if i % 11 == 0 { "timeout" } else { "ok" }
                ),
            };
            Line {
                service,
                ts: base + i * 1_000_000_000,
                line,
                trace,
            }
        })
        .collect()
}

/// Pushes the even lines as JSON and the odd lines as snappy protobuf (with trace ids as
/// structured metadata).
fn push_all(addr: &str, lines: &[Line]) {
    for svc in ["checkout", "cart", "auth"] {
        let json_values: Vec<Json> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| i % 2 == 0 && l.service == svc)
            .map(|(_, l)| match &l.trace {
                Some(t) => serde_json::json!([l.ts.to_string(), l.line, {"trace_id": t}]),
                None => serde_json::json!([l.ts.to_string(), l.line]),
            })
            .collect();
        let body = serde_json::json!({"streams": [{"stream": {"job": "app", "service": svc}, "values": json_values}]});
        let (status, text) = http(
            addr,
            "POST",
            "/loki/api/v1/push",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 204, "JSON push: {text}");
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: format!(r#"{{job="app", service="{svc}"}}"#),
                entries: lines
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| i % 2 == 1 && l.service == svc)
                    .map(|(_, l)| EntryAdapter {
                        timestamp: Some(Timestamp::from_nanos(l.ts)),
                        line: l.line.as_bytes().to_vec(),
                        structured_metadata: l
                            .trace
                            .iter()
                            .map(|t| LabelPairAdapter {
                                name: "trace_id".into(),
                                value: t.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: 0,
            }],
        };
        let body = strata_proto::snappy::compress_snappy(&req.encode_to_vec()).unwrap();
        let (status, text) = http(
            addr,
            "POST",
            "/loki/api/v1/push",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        );
        assert_eq!(status, 204, "protobuf push: {text}");
    }
}

fn stream_entries(v: &Json) -> Vec<(i64, String, Json)> {
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for e in s["values"].as_array().unwrap() {
            out.push((
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
                s["stream"].clone(),
            ));
        }
    }
    out.sort_by_key(|e| e.0);
    out
}

fn check_queries(addr: &str, lines: &[Line], base: i64) {
    let (start, end) = (base - 1_000_000_000, base + 400 * 1_000_000_000);
    let range = |q: &str, extra: &str| {
        get_json(
            addr,
            &format!(
                "/loki/api/v1/query_range?query={}&start={start}&end={end}{extra}",
                enc(q)
            ),
        )
    };
    // Line filter over both encodings.
    let got = stream_entries(&range(r#"{job="app"} |= "timeout""#, "&limit=1000"));
    let want: Vec<i64> = lines
        .iter()
        .filter(|l| l.line.contains("timeout"))
        .map(|l| l.ts)
        .collect();
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), want);
    // A trace id from structured metadata, through the trace index.
    let t = lines[10].trace.clone().unwrap();
    let got = stream_entries(&range(&format!(r#"{{job="app"}} | trace_id="{t}""#), ""));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, lines[10].line);
    assert_eq!(got[0].2["trace_id"], t.as_str());
    // json parser + label filter, limit and direction.
    let got = stream_entries(&range(
        r#"{service="checkout"} | json | level="error""#,
        "&limit=1000&direction=forward",
    ));
    let want: Vec<i64> = lines
        .iter()
        .filter(|l| l.service == "checkout" && l.line.contains(r#""level":"error""#))
        .map(|l| l.ts)
        .collect();
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), want);
    let got = stream_entries(&range(r#"{job="app"}"#, "&limit=7"));
    let newest: Vec<i64> = lines.iter().rev().take(7).map(|l| l.ts).rev().collect();
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), newest);
    // logfmt + duration filter.
    let got = stream_entries(&range(
        r#"{service="cart"} | logfmt | took >= 30ms"#,
        "&limit=1000",
    ));
    let want = lines
        .iter()
        .filter(|l| l.service == "cart")
        .filter(|l| {
            l.line
                .split("took=")
                .nth(1)
                .and_then(|x| x.trim_end_matches("ms").parse::<i64>().ok())
                .is_some_and(|ms| ms >= 30)
        })
        .count();
    assert_eq!(got.len(), want);
    // Metric query: matrix.
    let v = range(
        r#"sum by (service) (count_over_time({job="app"}[1m]))"#,
        "&step=60",
    );
    assert_eq!(v["data"]["resultType"], "matrix");
    for s in v["data"]["result"].as_array().unwrap() {
        let svc = s["metric"]["service"].as_str().unwrap();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1e9).round() as i64;
            let n: f64 = p[1].as_str().unwrap().parse().unwrap();
            let want = lines
                .iter()
                .filter(|l| l.service == svc && l.ts > t - 60_000_000_000 && l.ts <= t)
                .count();
            assert_eq!(n, want as f64, "{svc} at {t}");
        }
    }
    // Instant metric query and Grafana's health check.
    let v = get_json(
        addr,
        &format!(
            "/loki/api/v1/query?query={}&time={end}",
            enc(r#"sum(count_over_time({job="app"} |= "error" [10m]))"#)
        ),
    );
    assert_eq!(v["data"]["resultType"], "vector");
    let n: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        n,
        lines.iter().filter(|l| l.line.contains("error")).count() as f64
    );
    let v = get_json(
        addr,
        &format!("/loki/api/v1/query?query={}", enc("vector(1)+vector(1)")),
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    // Labels, values, series, stats, volume.
    let v = get_json(
        addr,
        &format!("/loki/api/v1/labels?start={start}&end={end}"),
    );
    assert_eq!(v["data"], serde_json::json!(["job", "service"]));
    let v = get_json(
        addr,
        &format!("/loki/api/v1/label/service/values?start={start}&end={end}"),
    );
    assert_eq!(v["data"], serde_json::json!(["auth", "cart", "checkout"]));
    let v = get_json(
        addr,
        &format!(
            "/loki/api/v1/series?match[]={}&start={start}&end={end}",
            enc(r#"{service=~"c.*"}"#)
        ),
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let v = get_json(
        addr,
        &format!(
            "/loki/api/v1/index/stats?query={}&start={start}&end={end}",
            enc(r#"{job="app"}"#)
        ),
    );
    assert_eq!(v["entries"], lines.len());
    assert_eq!(v["streams"], 3);
    assert_eq!(
        v["bytes"],
        lines.iter().map(|l| l.line.len()).sum::<usize>()
    );
    let v = get_json(
        addr,
        &format!(
            "/loki/api/v1/index/volume?query={}&start={start}&end={end}&targetLabels=service",
            enc(r#"{job="app"}"#)
        ),
    );
    let total: u64 = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        total as usize,
        lines.iter().map(|l| l.line.len()).sum::<usize>()
    );
}

#[test]
fn push_and_query_through_the_loki_api() {
    let dir = tempfile::tempdir().unwrap();
    let base = (now_ns() / 1_000_000_000 - 600) * 1_000_000_000;
    let lines = dataset(base);
    let s = start(dir.path());
    push_all(&s.addr, &lines);
    check_queries(&s.addr, &lines, base);

    // Bad input: clear errors, server stays up.
    let json = [("Content-Type", "application/json")];
    let (st, body) = http(
        &s.addr,
        "POST",
        "/loki/api/v1/push",
        &json,
        b"{\"streams\": [",
    );
    assert_eq!(st, 400);
    assert!(body.contains("invalid JSON"), "{body}");
    let (st, body) = http(
        &s.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/x-protobuf")],
        b"\xff\xff\xff\xff",
    );
    assert_eq!(st, 400, "{body}");
    let old = (now_ns() - 30 * 86_400 * 1_000_000_000).to_string();
    let big = "x".repeat(300_000);
    let body = serde_json::json!({"streams": [{"stream": {"job": "bad"}, "values": [[old, "too old"], [now_ns().to_string(), big], [now_ns().to_string(), "fine"]]}]});
    let (st, text) = http(
        &s.addr,
        "POST",
        "/loki/api/v1/push",
        &json,
        body.to_string().as_bytes(),
    );
    assert_eq!(st, 400);
    assert!(text.contains("older than"), "{text}");
    assert!(text.contains("max line size"), "{text}");
    assert!(text.contains("2 of 3 entries refused"), "{text}");
    let (st, text) = http(
        &s.addr,
        "POST",
        "/loki/api/v1/push",
        &json,
        br#"{"streams":[{"stream":{"bad-name":"x"},"values":[]}]}"#,
    );
    assert_eq!(st, 400);
    assert!(text.contains("invalid label name"), "{text}");
    let (st, text) = http(
        &s.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(st, 415, "{text}");
    let (st, text) = http(
        &s.addr,
        "GET",
        &format!(
            "/loki/api/v1/query_range?query={}",
            enc(r#"{job="app"} |= "x" | "#)
        ),
        &[],
        b"",
    );
    assert_eq!(st, 400);
    assert!(text.starts_with("parse error at line 1, col "), "{text}");
    let (st, _) = http(&s.addr, "GET", "/-/ready", &[], b"");
    assert_eq!(st, 200);

    // OTLP logs (HTTP JSON on the main port): resource attributes become stream labels,
    // the trace id and severity structured metadata.
    let ts = (base + 500 * 1_000_000_000).to_string();
    let otlp = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "otel-svc"}},
            {"key": "host.name", "value": {"stringValue": "h1"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": ts, "severityText": "WARN", "severityNumber": 13,
            "body": {"stringValue": "disk almost full"},
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}]});
    let (st, text) = http(
        &s.addr,
        "POST",
        "/v1/logs",
        &json,
        otlp.to_string().as_bytes(),
    );
    assert_eq!(st, 200, "{text}");
    let v = get_json(
        &s.addr,
        &format!(
            "/loki/api/v1/query_range?query={}&start={}&end={}",
            enc(r#"{service_name="otel-svc"} | severity_text="WARN""#),
            base,
            base + 600 * 1_000_000_000
        ),
    );
    let got = stream_entries(&v);
    assert_eq!(got.len(), 1, "{v}");
    assert_eq!(got[0].1, "disk almost full");
    assert_eq!(got[0].2["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(got[0].2["span_id"], "eee19b7ec3c1b174");
    assert_eq!(got[0].2["host_name"], "h1");

    // kill -9: everything acknowledged is back after the restart (WAL replay).
    drop(s); // SIGKILL
    let s = start(dir.path());
    check_queries(&s.addr, &lines, base);
}

/// `kill -9` while a client pushes: after the restart every acknowledged batch is there (and
/// at most the one batch in flight is there without its acknowledgement).
#[test]
fn kill_9_during_ingest_loses_nothing_acknowledged() {
    const PER_BATCH: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let base = (now_ns() / 1_000_000_000 - 300) * 1_000_000_000;
    let s = start(dir.path());
    let addr = s.addr.clone();
    let pusher = std::thread::spawn(move || {
        let mut acked = 0usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let values: Vec<Json> = (0..PER_BATCH)
                .map(|j| {
                    let ts = base + (acked * PER_BATCH + j) as i64 * 1_000_000;
                    serde_json::json!([ts.to_string(), format!("batch-{acked} line-{j} payload")])
                })
                .collect();
            let body =
                serde_json::json!({"streams": [{"stream": {"job": "crash"}, "values": values}]});
            let Ok(mut sock) = TcpStream::connect(&addr) else {
                break;
            };
            let body = body.to_string();
            let req = format!(
                "POST /loki/api/v1/push HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if sock.write_all(req.as_bytes()).is_err() {
                break;
            }
            let mut resp = String::new();
            if sock.read_to_string(&mut resp).is_err() || !resp.starts_with("HTTP/1.1 204") {
                break;
            }
            acked += 1;
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(700));
    drop(s); // SIGKILL
    let acked = pusher.join().unwrap();
    assert!(acked > 0, "no batch was acknowledged before the kill");
    let s = start(dir.path());
    let end = base + 200 * 1_000_000_000;
    let v = get_json(
        &s.addr,
        &format!(
            "/loki/api/v1/query?query={}&time={end}",
            enc(r#"sum(count_over_time({job="crash"}[1h]))"#)
        ),
    );
    let n: usize = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        n == acked * PER_BATCH || n == (acked + 1) * PER_BATCH,
        "{acked} batches acknowledged, {n} lines after restart"
    );
    // The last acknowledged batch is complete.
    let q = format!(r#"{{job="crash"}} |= "batch-{} ""#, acked - 1);
    let got = get_json(
        &s.addr,
        &format!(
            "/loki/api/v1/query_range?query={}&start={base}&end={end}&limit=1000",
            enc(&q)
        ),
    );
    assert_eq!(stream_entries(&got).len(), PER_BATCH);
}

/// Reads one WebSocket frame sent by the server (unmasked); returns opcode and payload.
fn ws_frame(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).unwrap();
    (h[0] & 0x0f, payload)
}

/// `/loki/api/v1/tail` over a WebSocket: lines pushed after the tail started arrive as
/// messages in Loki's shape.
#[test]
fn live_tail_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let mut ws = TcpStream::connect(&s.addr).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let path = format!(
        "/loki/api/v1/tail?query={}",
        enc(r#"{job="tail"} |= "hello""#)
    );
    write!(
        ws,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        s.addr
    )
    .unwrap();
    let mut r = BufReader::new(ws);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        if l == "\r\n" {
            break;
        }
    }
    let now = now_ns();
    let body = serde_json::json!({"streams": [{"stream": {"job": "tail"}, "values": [
        [now.to_string(), "hello from the tail"], [(now + 1).to_string(), "skipped line"]]}]});
    let (st, text) = http(
        &s.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(st, 204, "{text}");
    let (op, payload) = ws_frame(&mut r);
    assert_eq!(op, 1, "text frame expected");
    let v: Json = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["streams"][0]["stream"]["job"], "tail", "{v}");
    assert_eq!(
        v["streams"][0]["values"][0][1], "hello from the tail",
        "{v}"
    );
    assert_eq!(
        v["streams"][0]["values"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    // A metric query is refused before the upgrade.
    let (st, text) = http(
        &s.addr,
        "GET",
        &format!(
            "/loki/api/v1/tail?query={}",
            enc(r#"count_over_time({job="tail"}[1m])"#)
        ),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    assert_eq!(st, 400, "{text}");
}
