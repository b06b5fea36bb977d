//! `strata-load logs`: a Loki push load generator, to measure log ingest on realistic data.
//!
//! ```text
//! strata-load logs --url http://127.0.0.1:PORT [--lines 1000000] [--format json|protobuf]
//!     [--batch 1000] [--concurrency 4] [--span 1h] [--tenant X] [--max-seconds 600]
//!     [--seed 42] [--server-pid PID] [--replay DIR] [--needle-out FILE] [--metadata]
//! ```
//!
//! - **Generated mode** (default): 20 services over 51 streams (`{job="app", service, pod}`;
//!   eleven services run three pods, nine run two), each service logging in one format —
//!   JSON, logfmt or plain text — with a skewed level mix (75 % info, 12 % debug, 9 % warn,
//!   4 % error), realistic fields (method, path, status, duration, user, bytes) and a trace
//!   id shared by the few lines of one request, written in the line (and, with `--metadata`,
//!   also sent as `trace_id` structured metadata). Lines average about 185 bytes. One rare token
//!   (`needle-<seed>`) and one trace id are written to `--needle-out` for needle queries.
//! - **Replay mode** (`--replay ../shared/data/loghub`): every `*.log` file under the
//!   directory becomes a stream `{job="loghub", dataset="<dir>"}`, replayed line by line (the
//!   files are repeated until `--lines` lines were sent).
//!
//! Everything is encoded before the clock starts (JSON, or protobuf + snappy), so the measured
//! phase spends the client's CPU on sockets only; requests go over `--concurrency` keep-alive
//! connections. Timestamps spread evenly over `--span` ending now, in order within each
//! stream. With `--server-pid`, the server's CPU time and peak RSS are read from `/proc`. The
//! last line is `RESULT key=value …`, parsed by `bench/bench-logs.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use strata_proto::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use strata_proto::prost::Message;

use crate::fixture::flag;
use crate::rng::Rng;

/// One log line of the workload.
#[derive(Clone, Debug)]
pub struct GenLine {
    /// Index of its stream in [`Workload::streams`].
    pub stream: usize,
    /// Unix nanoseconds.
    pub ts: i64,
    /// The line.
    pub line: String,
    /// Trace id carried as structured metadata (and in the line), if any.
    pub trace_id: Option<String>,
}

/// Streams and lines to push.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    /// Stream label sets as `(name, value)` pairs.
    pub streams: Vec<Vec<(String, String)>>,
    /// Lines, in sending order.
    pub lines: Vec<GenLine>,
}

const SERVICES: [&str; 20] = [
    "checkout",
    "cart",
    "auth",
    "payment",
    "catalog",
    "search",
    "shipping",
    "email",
    "frontend",
    "gateway",
    "inventory",
    "recommend",
    "reviews",
    "ads",
    "currency",
    "profile",
    "orders",
    "notify",
    "billing",
    "media",
];
const PATHS: [&str; 8] = [
    "/api/v1/items",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/login",
    "/api/v1/search",
    "/static/app.js",
    "/api/v1/orders/{id}",
    "/healthz",
];
const MESSAGES: [&str; 8] = [
    "request served",
    "cache miss, loading from database",
    "upstream call finished",
    "user session refreshed",
    "query executed",
    "message published to queue",
    "rate limit check passed",
    "response compressed",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

fn hex32(r: &mut Rng) -> String {
    format!("{:016x}{:016x}", r.next_u64(), r.next_u64())
}

/// Generates `n` lines over `span_ns` ending at `end_ns`.
pub fn generate(
    n: usize,
    seed: u64,
    end_ns: i64,
    span_ns: i64,
    metadata: bool,
) -> (Workload, String, String) {
    let mut streams = Vec::new();
    let mut service_of = Vec::new();
    for (i, s) in SERVICES.iter().enumerate() {
        let pods = if i < 11 { 3 } else { 2 };
        for p in 0..pods {
            streams.push(vec![
                ("job".to_string(), "app".to_string()),
                ("pod".to_string(), format!("{s}-{:x}", 0x5f00 + p * 17 + i)),
                ("service".to_string(), (*s).to_string()),
            ]);
            service_of.push(i);
        }
    }
    let mut r = Rng::new(seed);
    let needle = format!("needle-{seed}");
    let needle_at = n / 2;
    let mut needle_trace = String::new();
    let mut lines = Vec::with_capacity(n);
    let mut trace = hex32(&mut r);
    let mut trace_left = 0u64;
    let step = (span_ns / n.max(1) as i64).max(1);
    let start = end_ns - span_ns;
    for i in 0..n {
        let stream = r.below(streams.len() as u64) as usize;
        let svc_idx = service_of.get(stream).copied().unwrap_or(0);
        let svc = SERVICES.get(svc_idx).copied().unwrap_or("app");
        if trace_left == 0 {
            trace = hex32(&mut r);
            trace_left = 1 + r.below(6);
        }
        trace_left -= 1;
        let roll = r.below(100);
        let level = match roll {
            0..=3 => "error",
            4..=12 => "warn",
            13..=24 => "debug",
            _ => "info",
        };
        let pick = |r: &mut Rng, a: &[&'static str]| {
            a.get(r.below(a.len() as u64) as usize)
                .copied()
                .unwrap_or("")
        };
        let method = pick(&mut r, &METHODS);
        let path = pick(&mut r, &PATHS);
        let mut msg = pick(&mut r, &MESSAGES).to_string();
        if level == "error" && r.chance(0.3) {
            msg = "timeout contacting upstream".to_string();
        }
        if i == needle_at {
            msg = format!("{msg} {needle}");
            needle_trace = trace.clone();
        }
        let status = match level {
            "error" => 500 + r.below(4) as u32,
            "warn" => 400 + r.below(30) as u32,
            _ => 200 + r.below(5) as u32,
        };
        let dur = r.below(2500) as f64 / 10.0;
        let user = r.below(100_000);
        let bytes = r.below(50_000);
        let line = match svc_idx % 3 {
            0 => format!(
                r#"{{"level":"{level}","ts":"{}","service":"{svc}","msg":"{msg}","method":"{method}","path":"{path}","status":{status},"duration_ms":{dur},"user_id":{user},"trace_id":"{trace}"}}"#,
                (start + i as i64 * step) / 1_000_000
            ),
            1 => format!(
                r#"level={level} service={svc} msg="{msg}" method={method} path={path} status={status} duration={dur}ms bytes={bytes} user={user} trace_id={trace}"#
            ),
            _ => format!(
                "{} [{}] {svc}: {method} {path} -> {status} in {dur}ms ({bytes} bytes) user={user} trace={trace} {msg}",
                level.to_ascii_uppercase(),
                (start + i as i64 * step) / 1_000_000_000
            ),
        };
        lines.push(GenLine {
            stream,
            ts: start + i as i64 * step,
            line,
            trace_id: metadata.then(|| trace.clone()),
        });
    }
    (Workload { streams, lines }, needle, needle_trace)
}

/// Reads every `*.log` file under `dir` (one stream per file) and repeats them up to `n` lines.
pub fn replay(dir: &Path, n: usize, end_ns: i64, span_ns: i64) -> anyhow::Result<Workload> {
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            for e in std::fs::read_dir(&p)? {
                let f = e?.path();
                if f.extension().is_some_and(|x| x == "log") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no *.log files under {}", dir.display());
    }
    let mut streams = Vec::new();
    let mut sources: Vec<Vec<String>> = Vec::new();
    for f in &files {
        let text = std::fs::read(f)?;
        let text = String::from_utf8_lossy(&text);
        let ls: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if ls.is_empty() {
            continue;
        }
        let name = f
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        streams.push(vec![
            ("dataset".to_string(), name),
            ("job".to_string(), "loghub".to_string()),
        ]);
        sources.push(ls);
    }
    let step = (span_ns / n.max(1) as i64).max(1);
    let start = end_ns - span_ns;
    let mut lines = Vec::with_capacity(n);
    let mut pos = vec![0usize; sources.len()];
    let mut i = 0;
    while lines.len() < n {
        let s = i % sources.len();
        i += 1;
        let Some(src) = sources.get(s) else { break };
        let p = pos.get(s).copied().unwrap_or(0);
        let Some(l) = src.get(p % src.len()) else {
            continue;
        };
        if let Some(x) = pos.get_mut(s) {
            *x += 1;
        }
        lines.push(GenLine {
            stream: s,
            ts: start + lines.len() as i64 * step,
            line: l.clone(),
            trace_id: None,
        });
    }
    Ok(Workload { streams, lines })
}

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Encodes one request (lines grouped by stream) as Loki JSON.
pub fn encode_json(w: &Workload, batch: &[GenLine]) -> Vec<u8> {
    let mut by_stream: std::collections::BTreeMap<usize, Vec<&GenLine>> = Default::default();
    for l in batch {
        by_stream.entry(l.stream).or_default().push(l);
    }
    let mut s = String::with_capacity(batch.iter().map(|l| l.line.len() + 100).sum());
    s.push_str("{\"streams\":[");
    for (k, (stream, ls)) in by_stream.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str("{\"stream\":{");
        for (j, (n, v)) in w.streams.get(*stream).into_iter().flatten().enumerate() {
            if j > 0 {
                s.push(',');
            }
            json_escape(n, &mut s);
            s.push(':');
            json_escape(v, &mut s);
        }
        s.push_str("},\"values\":[");
        for (j, l) in ls.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            s.push_str(&format!("[\"{}\",", l.ts));
            json_escape(&l.line, &mut s);
            if let Some(t) = &l.trace_id {
                s.push_str(",{\"trace_id\":");
                json_escape(t, &mut s);
                s.push('}');
            }
            s.push(']');
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s.into_bytes()
}

/// Encodes one request as snappy-compressed `logproto.PushRequest`.
pub fn encode_protobuf(w: &Workload, batch: &[GenLine]) -> anyhow::Result<Vec<u8>> {
    let mut by_stream: std::collections::BTreeMap<usize, Vec<&GenLine>> = Default::default();
    for l in batch {
        by_stream.entry(l.stream).or_default().push(l);
    }
    let req = PushRequest {
        streams: by_stream
            .into_iter()
            .map(|(s, ls)| {
                let labels: Vec<String> = w
                    .streams
                    .get(s)
                    .into_iter()
                    .flatten()
                    .map(|(n, v)| format!("{n}={v:?}"))
                    .collect();
                StreamAdapter {
                    labels: format!("{{{}}}", labels.join(", ")),
                    entries: ls
                        .iter()
                        .map(|l| EntryAdapter {
                            timestamp: Some(Timestamp::from_nanos(l.ts)),
                            line: l.line.as_bytes().to_vec(),
                            structured_metadata: l
                                .trace_id
                                .iter()
                                .map(|t| LabelPairAdapter {
                                    name: "trace_id".into(),
                                    value: t.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                    hash: 0,
                }
            })
            .collect(),
    };
    Ok(strata_proto::snappy::compress_snappy(&req.encode_to_vec())?)
}

fn cpu_seconds_of(pid: u32) -> Option<f64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = after.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn rss_of(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Sends one request on a keep-alive connection; returns the status.
fn send(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: &str,
    path: &str,
    ctype: &str,
    tenant: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    for attempt in 0..3 {
        if conn.is_none() {
            let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.set_nodelay(true)?;
            *conn = Some(BufReader::new(s));
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !tenant.is_empty() {
            head.push_str(&format!("X-Scope-OrgID: {tenant}\r\n"));
        }
        head.push_str("\r\n");
        let res = (|| -> std::io::Result<(u16, String)> {
            let s = c.get_mut();
            s.write_all(head.as_bytes())?;
            s.write_all(body)?;
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
            let mut b = vec![0u8; len];
            c.read_exact(&mut b)?;
            Ok((status, String::from_utf8_lossy(&b).into_owned()))
        })();
        match res {
            Ok(r) => return Ok(r),
            Err(e) if attempt < 2 => {
                *conn = None;
                let _ = e;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("request failed after retries")
}

/// Entry point of `strata-load logs`.
#[allow(clippy::print_stdout)]
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let url: String = flag(args, "--url", String::new())?;
    let Some(addr) = url
        .strip_prefix("http://")
        .map(|u| u.trim_end_matches('/').to_string())
    else {
        bail!("--url http://HOST:PORT is required");
    };
    let lines: usize = flag(args, "--lines", 1_000_000)?;
    let format: String = flag(args, "--format", "json".to_string())?;
    let batch: usize = flag(args, "--batch", 1000)?;
    let concurrency: usize = flag(args, "--concurrency", 4)?;
    let span_s: f64 = flag(args, "--span-seconds", 3600.0)?;
    let tenant: String = flag(args, "--tenant", String::new())?;
    let max_seconds: f64 = flag(args, "--max-seconds", 600.0)?;
    let seed: u64 = flag(args, "--seed", 42)?;
    let pid: u32 = flag(args, "--server-pid", 0)?;
    let replay_dir: String = flag(args, "--replay", String::new())?;
    let needle_out: String = flag(args, "--needle-out", String::new())?;
    let metadata = args.iter().any(|a| a == "--metadata");
    if batch == 0 || concurrency == 0 || lines == 0 {
        bail!("--lines, --batch and --concurrency must be positive");
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos() as i64;
    let span = (span_s * 1e9) as i64;
    let started = Instant::now();
    let (w, needle, trace) = if replay_dir.is_empty() {
        generate(lines, seed, now - 1_000_000_000, span, metadata)
    } else {
        (
            replay(Path::new(&replay_dir), lines, now - 1_000_000_000, span)?,
            String::new(),
            String::new(),
        )
    };
    let raw_bytes: usize = w.lines.iter().map(|l| l.line.len()).sum();
    let (ctype, bodies): (&str, Vec<Vec<u8>>) = match format.as_str() {
        "json" => (
            "application/json",
            w.lines.chunks(batch).map(|b| encode_json(&w, b)).collect(),
        ),
        "protobuf" => (
            "application/x-protobuf",
            w.lines
                .chunks(batch)
                .map(|b| encode_protobuf(&w, b))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => bail!("--format must be json or protobuf, not {other:?}"),
    };
    let wire: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "encoded: lines={} streams={} raw_bytes={} avg_line={:.0} requests={} wire_bytes={} in {:.1}s",
        w.lines.len(),
        w.streams.len(),
        raw_bytes,
        raw_bytes as f64 / w.lines.len().max(1) as f64,
        bodies.len(),
        wire,
        started.elapsed().as_secs_f64()
    );
    if !needle_out.is_empty() {
        std::fs::write(
            &needle_out,
            format!(
                "NEEDLE={needle}\nTRACE={trace}\nSTART_NS={}\nEND_NS={}\n",
                now - span - 2_000_000_000,
                now
            ),
        )?;
    }
    let next = AtomicUsize::new(0);
    let sent_lines = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let cpu0 = cpu_seconds_of(pid);
    let t0 = Instant::now();
    let deadline = Duration::from_secs_f64(max_seconds);
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                let mut conn = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    if t0.elapsed() > deadline {
                        break;
                    }
                    match send(&mut conn, &addr, "/loki/api/v1/push", ctype, &tenant, body) {
                        Ok((204, _)) => {
                            let n = w.lines.len().saturating_sub(i * batch).min(batch);
                            sent_lines.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Ok((st, b)) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut e) = errors.lock()
                                && e.len() < 5
                            {
                                e.push(format!(
                                    "{st}: {}",
                                    b.chars().take(300).collect::<String>()
                                ));
                            }
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
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
    let secs = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds_of(pid)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let n = sent_lines.load(Ordering::Relaxed);
    let bytes_sent = raw_bytes as f64 * n as f64 / w.lines.len().max(1) as f64;
    if let Ok(e) = errors.lock() {
        for x in e.iter() {
            println!("error: {x}");
        }
    }
    let rss = rss_of(pid, "VmRSS:").unwrap_or(0);
    let hwm = rss_of(pid, "VmHWM:").unwrap_or(0);
    println!(
        "RESULT format={format} lines={n} failures={} seconds={secs:.3} lines_per_s={:.0} mb_per_s={:.2} server_cpu_s={cpu:.2} cpu_s_per_million={:.2} rss_bytes={rss} peak_rss_bytes={hwm}",
        failures.load(Ordering::Relaxed),
        n as f64 / secs,
        bytes_sent / secs / 1e6,
        cpu / (n as f64 / 1e6),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_look_like_the_target_workload() {
        let (w, needle, trace) = generate(5000, 7, 10_000_000_000_000, 3_600_000_000_000, true);
        assert_eq!(w.streams.len(), 51);
        let avg = w.lines.iter().map(|l| l.line.len()).sum::<usize>() as f64 / 5000.0;
        assert!((150.0..260.0).contains(&avg), "average line {avg}");
        assert_eq!(
            w.lines.iter().filter(|l| l.line.contains(&needle)).count(),
            1
        );
        assert!(w.lines.iter().any(|l| l.line.contains(&trace)));
        let errors = w
            .lines
            .iter()
            .filter(|l| l.line.to_ascii_lowercase().contains("error"))
            .count();
        assert!(errors > 50 && errors < 500, "{errors}");
        let json = encode_json(&w, &w.lines[..100]);
        assert!(json.starts_with(b"{\"streams\":["));
        assert!(!encode_protobuf(&w, &w.lines[..100]).unwrap().is_empty());
    }
}
