//! `strata-load traces`: an OTLP/HTTP trace load generator over a realistic microservice call
//! graph, to measure span ingest.
//!
//! ```text
//! strata-load traces --url http://127.0.0.1:4318/v1/traces [--traces 20000] [--batch 1000]
//!     [--concurrency 4] [--span 10m] [--tenant X] [--max-seconds 600] [--seed 42]
//!     [--server-pid PID] [--gzip] [--decode-only]
//! ```
//!
//! The call graph ([`generate_trace`]): `gateway` serves `GET /checkout`, `GET /cart` or
//! `POST /login`; it calls `auth` (which reads its user table), `cart` (one cache lookup per
//! item), and for checkouts `checkout`, which calls `payment` (charge, then a database insert),
//! `inventory` (one reservation per item) and publishes an event that `notification` consumes
//! (and mails). Every hop is a client span in the caller and a server (consumer) span in the
//! callee, as instrumented services produce. Traces have 5–40 spans; durations nest and are
//! log-normal-ish; about 3 % of payments fail, and the error propagates to the checkout and the
//! root with an `exception` event; spans carry the usual HTTP, database and messaging
//! attributes.
//!
//! Everything is encoded (OTLP protobuf, optionally gzip) before the clock starts; requests go
//! over `--concurrency` keep-alive connections. With `--server-pid` the server's CPU time and
//! peak RSS are read from `/proc`. `--decode-only` sends nothing and reports how fast one core
//! decodes the requests into the `opentelemetry-proto` structs (the decode ceiling). The last
//! line is `RESULT key=value …`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::fixture::flag;
use crate::rng::Rng;

/// Services of the call graph.
pub const SERVICES: [&str; 7] = [
    "gateway",
    "auth",
    "cart",
    "checkout",
    "payment",
    "inventory",
    "notification",
];

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// One generated span and the service that emits it.
pub struct GenSpan {
    /// Index into [`SERVICES`].
    pub service: usize,
    /// The span.
    pub span: Span,
}

/// The work a callee does inside its server span: `(builder, server span id, start)` →
/// `(end, failed)`.
type CallBody<'a, 'r> = dyn FnMut(&mut Builder<'r>, &[u8], u64) -> (u64, bool) + 'a;

struct Builder<'a> {
    rng: &'a mut Rng,
    trace_id: Vec<u8>,
    out: Vec<GenSpan>,
}

impl<'r> Builder<'r> {
    fn id(&mut self) -> Vec<u8> {
        let mut v = self.rng.next_u64();
        if v == 0 {
            v = 1;
        }
        v.to_le_bytes().to_vec()
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: usize,
        parent: &[u8],
        name: &str,
        kind: SpanKind,
        start: u64,
        end: u64,
        attrs: Vec<KeyValue>,
    ) -> Vec<u8> {
        let id = self.id();
        self.out.push(GenSpan {
            service,
            span: Span {
                trace_id: self.trace_id.clone(),
                span_id: id.clone(),
                parent_span_id: parent.to_vec(),
                name: name.to_string(),
                kind: kind as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes: attrs,
                ..Span::default()
            },
        });
        id
    }

    /// A log-normal-ish duration around `median_ms`.
    fn dur(&mut self, median_ms: f64) -> u64 {
        let u = self.rng.next_f64().clamp(1e-9, 1.0 - 1e-9);
        // Inverse of a logistic CDF: cheap, symmetric in log space, with a tail.
        let z = (u / (1.0 - u)).ln() * 0.45;
        (median_ms * z.exp() * 1e6) as u64
    }

    fn fail(&mut self, idx: usize, msg: &str) {
        if let Some(g) = self.out.get_mut(idx) {
            g.span.status = Some(Status {
                code: StatusCode::Error as i32,
                message: msg.to_string(),
            });
            g.span.events.push(Event {
                time_unix_nano: g.span.end_time_unix_nano,
                name: "exception".into(),
                attributes: vec![
                    kv("exception.type", s("PaymentDeclined")),
                    kv("exception.message", s(msg)),
                ],
                ..Event::default()
            });
        }
    }

    /// A call from `caller` to `callee`: client span, server span, `body` inside the server.
    /// Returns the end time and whether the call failed.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        caller: usize,
        parent: &[u8],
        callee: usize,
        method: &str,
        route: &str,
        start: u64,
        body: &mut CallBody<'_, 'r>,
    ) -> (u64, bool) {
        let client_idx = self.out.len();
        let cid = self.span(
            caller,
            parent,
            &format!("{method} {route}"),
            SpanKind::Client,
            start,
            start,
            vec![
                kv("http.request.method", s(method)),
                kv("server.address", s(SERVICES[callee])),
            ],
        );
        let net = self.dur(0.4);
        let server_idx = self.out.len();
        let sid = self.span(
            callee,
            &cid,
            &format!("{method} {route}"),
            SpanKind::Server,
            start + net,
            start + net,
            vec![
                kv("http.request.method", s(method)),
                kv("http.route", s(route)),
            ],
        );
        let pre = self.dur(0.2);
        let (body_end, failed) = body(self, &sid, start + net + pre);
        let server_end = body_end + self.dur(0.3);
        let client_end = server_end + net;
        let code = if failed { 500 } else { 200 };
        for (idx, end) in [(server_idx, server_end), (client_idx, client_end)] {
            if let Some(g) = self.out.get_mut(idx) {
                g.span.end_time_unix_nano = end;
                g.span
                    .attributes
                    .push(kv("http.response.status_code", i(code)));
            }
        }
        if failed {
            self.fail(server_idx, "upstream call failed");
            self.fail(client_idx, "upstream call failed");
        }
        (client_end, failed)
    }

    fn db(
        &mut self,
        service: usize,
        parent: &[u8],
        stmt: &str,
        system: &str,
        start: u64,
        median_ms: f64,
    ) -> u64 {
        let end = start + self.dur(median_ms);
        self.span(
            service,
            parent,
            stmt.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .as_str(),
            SpanKind::Client,
            start,
            end,
            vec![kv("db.system", s(system)), kv("db.statement", s(stmt))],
        );
        end
    }
}

/// Generates one trace starting at `start_ns`.
pub fn generate_trace(rng: &mut Rng, start_ns: u64) -> Vec<GenSpan> {
    let mut tid = [0u8; 16];
    tid[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    tid[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    tid[0] |= 1;
    let mut b = Builder {
        rng,
        trace_id: tid.to_vec(),
        out: Vec::with_capacity(40),
    };
    let pick = b.rng.below(10);
    let (method, route) = match pick {
        0..=2 => ("POST", "/login"),
        3..=6 => ("GET", "/cart"),
        _ => ("POST", "/checkout"),
    };
    let items = 1 + b.rng.below(8) as usize;
    let root_idx = 0;
    let root = b.span(
        0,
        &[],
        &format!("{method} {route}"),
        SpanKind::Server,
        start_ns,
        start_ns,
        vec![
            kv("http.request.method", s(method)),
            kv("http.route", s(route)),
            kv("user_agent.original", s("Mozilla/5.0")),
        ],
    );
    let mut t = start_ns + b.dur(0.5);
    // The gateway reads the session first.
    t = b.db(0, &root, "GET session", "redis", t, 0.3);
    // auth
    let (end, _) = b.call(0, &root, 1, "POST", "/verify", t, &mut |b, p, t0| {
        (
            b.db(
                1,
                p,
                "SELECT id, roles FROM users WHERE token = $1",
                "postgresql",
                t0,
                2.0,
            ),
            false,
        )
    });
    t = end;
    let mut failed = false;
    if route != "/login" {
        let (end, _) = b.call(0, &root, 2, "GET", "/cart", t, &mut |b, p, t0| {
            let mut tt = t0;
            for _ in 0..items {
                tt = b.db(2, p, "GET cart:item", "redis", tt, 0.3);
            }
            (tt, false)
        });
        t = end;
    }
    if route == "/checkout" {
        let (end, f) = b.call(0, &root, 3, "POST", "/checkout", t, &mut |b, p, t0| {
            let (e1, pay_failed) = b.call(3, p, 4, "POST", "/charge", t0, &mut |b, p2, t1| {
                let declined = b.rng.below(100) < 3;
                let wait = b.dur(25.0);
                let e = b.db(
                    4,
                    p2,
                    "INSERT INTO payments VALUES ($1, $2, $3)",
                    "postgresql",
                    t1 + wait,
                    3.0,
                );
                (e, declined)
            });
            if pay_failed {
                return (e1, true);
            }
            let (e2, _) = b.call(3, p, 5, "POST", "/reserve", e1, &mut |b, p2, t1| {
                let mut tt = t1;
                for _ in 0..items {
                    tt = b.db(
                        5,
                        p2,
                        "UPDATE stock SET n = n - 1 WHERE sku = $1",
                        "postgresql",
                        tt,
                        1.5,
                    );
                }
                (tt, false)
            });
            // Publish; the notification service consumes it a little later.
            let pe = e2 + b.dur(0.5);
            let pid = b.span(
                3,
                p,
                "order.created publish",
                SpanKind::Producer,
                e2,
                pe,
                vec![
                    kv("messaging.system", s("kafka")),
                    kv("messaging.destination.name", s("orders")),
                ],
            );
            let cs = pe + b.dur(5.0);
            let ce = cs + b.dur(4.0);
            let cid = b.span(
                6,
                &pid,
                "order.created process",
                SpanKind::Consumer,
                cs,
                ce,
                vec![
                    kv("messaging.system", s("kafka")),
                    kv("messaging.destination.name", s("orders")),
                ],
            );
            let ms = cs + b.dur(0.5);
            let me = ms + b.dur(3.0);
            b.span(
                6,
                &cid,
                "smtp send",
                SpanKind::Client,
                ms,
                me,
                vec![kv("server.address", s("smtp.internal"))],
            );
            (pe, false)
        });
        t = end;
        failed = f;
    }
    let root_end = t + b.dur(0.5);
    if let Some(g) = b.out.get_mut(root_idx) {
        g.span.end_time_unix_nano = root_end;
        g.span.attributes.push(kv(
            "http.response.status_code",
            i(if failed { 500 } else { 200 }),
        ));
    }
    if failed {
        b.fail(root_idx, "checkout failed");
    }
    b.out
}

/// Groups generated spans into one export request (one `ResourceSpans` per service).
pub fn encode_request(spans: Vec<GenSpan>) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for g in spans {
        if let Some(v) = by_service.get_mut(g.service) {
            v.push(g.span);
        }
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(SERVICES[i])),
                    kv("service.version", s("1.4.2")),
                    kv("deployment.environment", s("prod")),
                    kv("host.name", s(&format!("{}-7d9f8-{}", SERVICES[i], i % 3))),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.38.0".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// Generates `traces` traces spread over `span_ns` ending at `end_ns`, in requests of about
/// `batch` spans. Returns the requests and the span count.
pub fn generate_requests(
    traces: usize,
    batch: usize,
    seed: u64,
    end_ns: u64,
    span_ns: u64,
) -> (Vec<ExportTraceServiceRequest>, usize) {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut cur: Vec<GenSpan> = Vec::new();
    let mut total = 0;
    for k in 0..traces {
        let start = end_ns.saturating_sub(span_ns)
            + (span_ns as u128 * k as u128 / traces.max(1) as u128) as u64;
        let t = generate_trace(&mut rng, start);
        total += t.len();
        cur.extend(t);
        if cur.len() >= batch {
            out.push(encode_request(std::mem::take(&mut cur)));
        }
    }
    if !cur.is_empty() {
        out.push(encode_request(cur));
    }
    (out, total)
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = after.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// POSTs one body on a keep-alive connection (reconnecting once on a broken connection).
fn post(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: &str,
    path: &str,
    tenant: &str,
    gzip: bool,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    for attempt in 0..3 {
        if conn.is_none() {
            let st = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
            st.set_read_timeout(Some(Duration::from_secs(60)))?;
            st.set_nodelay(true)?;
            *conn = Some(BufReader::new(st));
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n",
            body.len()
        );
        if gzip {
            head.push_str("Content-Encoding: gzip\r\n");
        }
        if !tenant.is_empty() {
            head.push_str(&format!("X-Scope-OrgID: {tenant}\r\n"));
        }
        head.push_str("\r\n");
        let res = (|| -> std::io::Result<(u16, String)> {
            let st = c.get_mut();
            st.write_all(head.as_bytes())?;
            st.write_all(body)?;
            let mut line = String::new();
            c.read_line(&mut line)?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
            let mut len = 0usize;
            loop {
                line.clear();
                c.read_line(&mut line)?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut b = vec![0u8; len.min(1 << 20)];
            c.read_exact(&mut b)?;
            Ok((status, String::from_utf8_lossy(&b).into_owned()))
        })();
        match res {
            Ok(r) => return Ok(r),
            Err(_) if attempt < 2 => *conn = None,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("request failed after retries")
}

/// Entry point of `strata-load traces`.
#[allow(clippy::print_stdout)]
pub fn main(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: strata-load traces --url http://HOST:PORT/v1/traces [--traces 20000] [--batch 1000] \
             [--concurrency 4] [--span 10m] [--tenant ID] [--max-seconds 600] [--seed 42] \
             [--server-pid PID] [--gzip] [--decode-only]"
        );
        return Ok(());
    }
    let url: String = flag(args, "--url", "http://127.0.0.1:4318/v1/traces".to_string())?;
    let traces: usize = flag(args, "--traces", 20_000)?;
    let batch: usize = flag(args, "--batch", 1000)?;
    let concurrency: usize = flag(args, "--concurrency", 4)?;
    let span_s: u64 = flag(args, "--span-seconds", 600)?;
    let tenant: String = flag(args, "--tenant", String::new())?;
    let max_seconds: u64 = flag(args, "--max-seconds", 600)?;
    let seed: u64 = flag(args, "--seed", 42)?;
    let pid: u32 = flag(args, "--server-pid", 0)?;
    let gzip = args.iter().any(|a| a == "--gzip");
    let decode_only = args.iter().any(|a| a == "--decode-only");
    let rest = url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/v1/traces".to_string()),
    };
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos() as u64;
    let t0 = Instant::now();
    let (reqs, spans) =
        generate_requests(traces, batch.max(1), seed, now_ns, span_s * 1_000_000_000);
    let bodies: Vec<Vec<u8>> = reqs
        .iter()
        .map(|r| {
            let raw = r.encode_to_vec();
            if gzip {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw)?;
                e.finish()
            } else {
                Ok(raw)
            }
        })
        .collect::<std::io::Result<_>>()?;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "generated {traces} traces, {spans} spans ({:.1} spans/trace) in {} requests, {:.1} MB{} in {:.1}s",
        spans as f64 / traces.max(1) as f64,
        bodies.len(),
        bytes as f64 / 1e6,
        if gzip { " gzip" } else { "" },
        t0.elapsed().as_secs_f64()
    );
    if decode_only {
        let raw: Vec<Vec<u8>> = reqs.iter().map(|r| r.encode_to_vec()).collect();
        let start = Instant::now();
        let mut n = 0usize;
        for b in &raw {
            let r = ExportTraceServiceRequest::decode(b.as_slice())?;
            n += r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum::<usize>();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "decoded {n} spans in {secs:.3}s on one core: {:.0} spans/s",
            n as f64 / secs
        );
        println!(
            "RESULT mode=decode spans={n} seconds={secs:.3} spans_per_sec={:.0}",
            n as f64 / secs
        );
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let sent_spans = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let span_counts: Vec<usize> = reqs
        .iter()
        .map(|r| {
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum()
        })
        .collect();
    drop(reqs);
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(max_seconds);
    std::thread::scope(|sc| {
        for _ in 0..concurrency.max(1) {
            sc.spawn(|| {
                let mut conn = None;
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(k) else { break };
                    if Instant::now() > deadline {
                        break;
                    }
                    match post(&mut conn, &addr, &path, &tenant, gzip, body) {
                        Ok((200, b)) if !b.contains("rejected") => {
                            sent_spans.fetch_add(span_counts[k] as u64, Ordering::Relaxed);
                        }
                        Ok((code, b)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut e) = errors.lock()
                                && e.len() < 5
                            {
                                e.push(format!(
                                    "{code}: {}",
                                    b.chars().take(300).collect::<String>()
                                ));
                            }
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut v) = errors.lock()
                                && v.len() < 5
                            {
                                v.push(e.to_string());
                            }
                        }
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds(pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let stored = sent_spans.load(Ordering::Relaxed);
    let f = failed.load(Ordering::Relaxed);
    println!(
        "sent {stored} spans in {secs:.2}s: {:.0} spans/s, {:.1} MB/s; {f} failed requests",
        stored as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    if let Ok(e) = errors.lock() {
        for x in e.iter() {
            println!("  error: {x}");
        }
    }
    if let Some(c) = cpu {
        println!(
            "server CPU {c:.2}s ({:.2} cores, {:.2} µs/span), peak RSS {:.0} MB",
            c / secs,
            c * 1e6 / stored.max(1) as f64,
            peak_rss(pid).unwrap_or(0) as f64 / 1e6
        );
    }
    println!(
        "RESULT mode=ingest spans={stored} seconds={secs:.3} spans_per_sec={:.0} failed_requests={f} server_cpu_s={:.2} peak_rss_bytes={}",
        stored as f64 / secs,
        cpu.unwrap_or(0.0),
        peak_rss(pid).unwrap_or(0)
    );
    if f > 0 {
        bail!("{f} requests failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traces_have_the_promised_shape() {
        let mut rng = Rng::new(7);
        let mut sizes = Vec::new();
        for k in 0..500 {
            let t = generate_trace(&mut rng, 1_000_000_000 + k);
            sizes.push(t.len());
            let root = &t[0].span;
            assert!(root.parent_span_id.is_empty());
            for g in &t {
                assert!(g.span.end_time_unix_nano >= g.span.start_time_unix_nano);
                assert_eq!(g.span.trace_id, root.trace_id);
                assert!(g.span.start_time_unix_nano >= root.start_time_unix_nano);
            }
            let ids: std::collections::HashSet<&Vec<u8>> =
                t.iter().map(|g| &g.span.span_id).collect();
            assert_eq!(ids.len(), t.len());
            assert!(
                t.iter()
                    .skip(1)
                    .all(|g| ids.contains(&g.span.parent_span_id))
            );
        }
        assert!(
            sizes.iter().all(|n| (5..=40).contains(n)),
            "{:?}",
            sizes.iter().max()
        );
        assert!(sizes.iter().any(|n| *n >= 25) && sizes.iter().any(|n| *n <= 8));
        let (reqs, n) = generate_requests(100, 200, 1, 2_000_000_000_000, 1_000_000_000);
        let counted: usize = reqs
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        assert_eq!(counted, n);
    }
}
