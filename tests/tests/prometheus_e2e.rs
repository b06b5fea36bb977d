//! Strata against a real Prometheus, over loopback.
//!
//! Unit tests of the remote-write decoder and the remote-read encoder check Strata against
//! Strata's reading of the protocol; only a real Prometheus can tell whether that reading is
//! right. These tests run the `prometheus` binary (Debian's package; `tests/install-peers.sh`
//! installs it) next to the real `strata` binary:
//!
//! - `prometheus_remote_write_matches_prometheus`: Prometheus scrapes Strata and itself every
//!   second and remote-writes everything to Strata; the same `query_range` asked of both must
//!   return the same series with the same values, as exact strings, at every step.
//! - `prometheus_remote_read_from_strata`: Strata starts on a data directory holding a block
//!   and a WAL; Prometheus, with no local data, answers `query_range` through `remote_read`
//!   from Strata, and its answer must equal what the written samples imply.
//!
//! A missing `prometheus` binary fails the tests (it does not skip them), so CI cannot go green
//! without the comparison having run. Every wait has a deadline, and every child process is
//! killed by pid when its guard drops, also when an assertion panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use strata_engine::{AppendSeries, DEFAULT_TENANT, Engine, EngineOptions, Labels};
use strata_tests::harness::Strata;

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Kills (SIGKILL, by pid) and reaps a child process when dropped.
struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl ChildGuard {
    /// Panics (with `log`) if the process has exited.
    fn assert_running(&mut self, log: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}; log:\n{log}", self.name);
        }
    }
}

/// The `prometheus` binary on PATH; fails the test with the fix if there is none.
fn prometheus_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("prometheus");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "the `prometheus` binary is not on PATH: these end-to-end tests need a real Prometheus. \
         Run `bash tests/install-peers.sh` (installs Debian's prometheus package) and retry."
    );
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `strata` on `data` with an ephemeral loopback port and waits for `storage ready`.
fn start_strata(data: &Path) -> Strata {
    Strata::start(data, &[]).unwrap()
}

/// A running Prometheus.
struct Prometheus {
    guard: ChildGuard,
    addr: String,
    log_file: PathBuf,
}

impl Prometheus {
    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Starts Prometheus with `config` (YAML) and its TSDB under `dir` on a free loopback port,
/// and waits until it is ready.
fn start_prometheus(dir: &Path, config: &str) -> Prometheus {
    start_prometheus_on(dir, config, free_port())
}

/// Like [`start_prometheus`], on a given port.
fn start_prometheus_on(dir: &Path, config: &str, port: u16) -> Prometheus {
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let log_file = dir.join("prometheus.log");
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(prometheus_bin())
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let mut p = Prometheus {
        guard: ChildGuard {
            name: "prometheus",
            child,
        },
        addr,
        log_file,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = p.log();
        p.guard.assert_running(&log);
        if let Ok((200, _)) = http_get(&p.addr, "/-/ready") {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within 60 s; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP and JSON
// ---------------------------------------------------------------------------------------------

/// `GET path` over a fresh connection; returns status and body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: strata-e2e\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a query-string value.
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

/// A parsed JSON value; numbers keep their text.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }
}

/// A small recursive-descent JSON parser (the test crate has no JSON dependency).
struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    m.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(format!("unexpected input at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|e| e.to_string());
                }
                Some(b'\\') => {
                    let esc = *self.s.get(self.i + 1).ok_or("bad escape")?;
                    self.i += 2;
                    match esc {
                        b'"' | b'\\' | b'/' => out.push(esc),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("bad \\u escape")?;
                            let code = u32::from_str_radix(&String::from_utf8_lossy(hex), 16)
                                .map_err(|e| e.to_string())?;
                            self.i += 4;
                            // Surrogate pairs do not occur in these label values.
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut b = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

/// A matrix result: label set (rendered sorted) → points as (timestamp ms, value string).
type Matrix = BTreeMap<String, Vec<(i64, String)>>;

/// Runs `/api/v1/query_range` and returns the matrix, or an error with the response.
fn query_range(addr: &str, query: &str, start: i64, end: i64, step: i64) -> Result<Matrix, String> {
    let path = format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
        enc(query)
    );
    let (status, body) = http_get(addr, &path).map_err(|e| format!("GET {addr}{path}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {addr}{path}: HTTP {status}: {body}"));
    }
    let json = JsonParser::parse(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
    let data = json.get("data").ok_or_else(|| format!("no data: {body}"))?;
    if data.get("resultType").and_then(Json::str) != Some("matrix") {
        return Err(format!("not a matrix: {body}"));
    }
    let mut out = Matrix::new();
    for series in data.get("result").map(Json::arr).unwrap_or_default() {
        let mut labels: Vec<(String, String)> = match series.get("metric") {
            Some(Json::Obj(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.str().unwrap_or_default().to_string()))
                .collect(),
            _ => return Err(format!("series without metric: {body}")),
        };
        labels.sort();
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut points = Vec::new();
        for p in series.get("values").map(Json::arr).unwrap_or_default() {
            let (Some(Json::Num(t)), Some(Json::Str(v))) = (p.arr().first(), p.arr().get(1)) else {
                return Err(format!("bad point {p:?}"));
            };
            let t: f64 = t.parse().map_err(|_| format!("bad timestamp {t}"))?;
            points.push(((t * 1000.0).round() as i64, v.clone()));
        }
        out.insert(key, points);
    }
    Ok(out)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn prometheus_remote_write_matches_prometheus() {
    prometheus_bin();
    let dir = tempfile::tempdir().unwrap();
    let strata_dir = dir.path().join("strata");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let strata = start_strata(&strata_dir);
    let prom_port = free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: strata
    static_configs:
      - targets: ['{strata}']
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{prom_port}']
remote_write:
  - url: http://{strata}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 50ms
      max_backoff: 1s
"#,
        strata = strata.addr
    );
    // The port is chosen before the config is written: Prometheus scrapes itself there.
    let prom = start_prometheus_on(&prom_dir, &config, prom_port);

    // Wait until Strata has both `up` series, i.e. remote write is flowing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_seen = loop {
        let (status, body) = http_get(
            &strata.addr,
            &format!("/api/v1/series?match[]={}", enc("up")),
        )
        .unwrap_or((0, String::new()));
        if status == 200 && body.contains("\"strata\"") && body.contains("\"prometheus\"") {
            break now_ms();
        }
        assert!(
            Instant::now() < deadline,
            "Strata did not receive `up` from both jobs within 60 s (last answer: HTTP {status} \
             {body}); prometheus log:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Let ~14 s of data accumulate, then compare a 10 s window ending 3 s in the past (so the
    // last remote-write batch has had time to arrive).
    let until = first_seen + 14_000;
    while now_ms() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let end = now_ms() / 1000 - 3;
    let start = end - 10;
    for selector in [
        "up",
        r#"prometheus_http_requests_total{handler="/metrics"}"#,
        "scrape_duration_seconds",
        "scrape_samples_scraped",
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let want = query_range(&prom.addr, selector, start, end, 1).unwrap();
            let got = query_range(&strata.addr, selector, start, end, 1);
            assert!(
                !want.is_empty(),
                "Prometheus has no {selector} over {start}..{end}"
            );
            assert!(
                want.values().all(|p| p.len() >= 5),
                "Prometheus has too few points for {selector}: {want:?}"
            );
            if got.as_ref() == Ok(&want) {
                println!(
                    "{selector}: {} series equal over {start}..{end}",
                    want.len()
                );
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "query_range({selector}, {start}..{end}, 1s) differs.\nPrometheus: \
                     {want:#?}\nStrata: {got:#?}"
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    drop(prom);
    drop(strata);
}

/// Lookback of Prometheus' queries (its default `--query.lookback-delta`).
const LOOKBACK_MS: i64 = 5 * 60 * 1000;
const STEP_MS: i64 = 15_000;
/// Offset of every sample from the 15 s grid, so that no query step is exactly one lookback
/// after a sample (Prometheus 2 and 3 disagree on whether that sample counts).
const OFFSET_MS: i64 = 123;

fn rr_value(series: usize, k: i64) -> f64 {
    match series {
        0 => k as f64 * 0.25 + 0.5,
        1 => 1_000_000.0 + 3.0 * k as f64,
        _ => -(k as f64) / 8.0,
    }
}

/// Writes three series through the engine: scrapes 0..240 (the first hour of a 2 h range) go
/// into a block, scrapes 480..600 (the first half hour of the next range) stay in the WAL.
fn prefill(dir: &Path, base: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let labels = [
        Labels::from_pairs(&[
            ("__name__", "e2e_rr_metric"),
            ("instance", "a"),
            ("job", "rr"),
        ]),
        Labels::from_pairs(&[
            ("__name__", "e2e_rr_metric"),
            ("instance", "b"),
            ("job", "rr"),
        ]),
        Labels::from_pairs(&[("__name__", "e2e_rr_other"), ("job", "rr")]),
    ]
    .map(|l| l.unwrap());
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: dir.to_path_buf(),
        ..EngineOptions::default()
    })
    .unwrap();
    let mut all: Vec<(Labels, Vec<(i64, f64)>)> =
        labels.iter().map(|l| (l.clone(), Vec::new())).collect();
    for (ks, persist) in [(0..240i64, true), (480..600i64, false)] {
        let samples: Vec<Vec<(i64, f64)>> = (0..labels.len())
            .map(|s| {
                ks.clone()
                    .map(|k| (base + k * STEP_MS + OFFSET_MS, rr_value(s, k)))
                    .collect()
            })
            .collect();
        let batch: Vec<AppendSeries> = labels
            .iter()
            .zip(&samples)
            .map(|(l, s)| AppendSeries {
                labels: l,
                samples: s,
            })
            .collect();
        let report = engine.append(DEFAULT_TENANT, &batch).unwrap();
        assert_eq!(report.rejected, 0, "{report:?}");
        for (a, s) in all.iter_mut().zip(samples) {
            a.1.extend(s);
        }
        if persist {
            let metas = engine
                .tenant(DEFAULT_TENANT)
                .unwrap()
                .persist_all()
                .unwrap();
            assert_eq!(metas.len(), 1);
        }
    }
    engine.close().unwrap();
    all
}

/// What `query_range` must answer for `samples` (sorted by time): at each step, the newest
/// sample at most one lookback old.
fn expected_points(samples: &[(i64, f64)], start: i64, end: i64, step: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        if let Some(&(_, v)) = samples
            .iter()
            .rev()
            .find(|&&(ts, _)| ts <= t && ts > t - LOOKBACK_MS)
        {
            out.push((t, format!("{v}")));
        }
        t += step;
    }
    out
}

fn labels_key(l: &Labels) -> String {
    l.iter()
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prometheus 2.x reads remote storage with `SAMPLES` responses only (its client sends no
/// `accepted_response_types`, which means `SAMPLES`); the streamed-chunks response is what
/// Prometheus 3 clients and Thanos ask for. The test therefore exercises the response type the
/// installed Prometheus asks for by default, whichever it is.
#[test]
fn prometheus_remote_read_from_strata() {
    prometheus_bin();
    let dir = tempfile::tempdir().unwrap();
    let strata_dir = dir.path().join("strata");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let range = 7_200_000;
    let now = now_ms();
    let base = (now - 6 * 3_600_000) - (now - 6 * 3_600_000).rem_euclid(range);
    let written = prefill(&strata_dir, base);
    let strata = start_strata(&strata_dir);
    let config = format!(
        r#"global:
  evaluation_interval: 1m
remote_read:
  - url: http://{}/api/v1/read
    read_recent: true
"#,
        strata.addr
    );
    let prom = start_prometheus(&prom_dir, &config);

    let (start_s, end_s, step_s) = (base / 1000, (base + 3 * 3_600_000) / 1000, 60);
    let expect = |filter: &dyn Fn(&Labels) -> bool| -> Matrix {
        written
            .iter()
            .filter(|(l, _)| filter(l))
            .map(|(l, s)| {
                (
                    labels_key(l),
                    expected_points(s, start_s * 1000, end_s * 1000, step_s * 1000),
                )
            })
            .collect()
    };
    let cases: Vec<(&str, Matrix)> = vec![
        (
            "e2e_rr_metric",
            expect(&|l| l.get("__name__") == Some("e2e_rr_metric")),
        ),
        (
            r#"e2e_rr_metric{instance=~"b|c"}"#,
            expect(&|l| l.get("instance") == Some("b")),
        ),
        (r#"{job="rr"}"#, expect(&|_| true)),
        (
            r#"{__name__=~"e2e_rr_.*", instance!="a"}"#,
            expect(&|l| l.get("instance") != Some("a")),
        ),
    ];
    for (query, want) in &cases {
        assert!(
            want.values().all(|p| p.len() > 60),
            "bad expectation for {query}"
        );
        let got = query_range(&prom.addr, query, start_s, end_s, step_s);
        assert_eq!(
            got.as_ref(),
            Ok(want),
            "Prometheus' answer for {query} through remote read from Strata differs; \
             prometheus log:\n{}",
            prom.log()
        );
        println!("{query}: {} series, equal", want.len());
    }
    // An instant query lands on the head part: the newest sample of series b.
    let t = (base + 600 * STEP_MS) / 1000;
    let (status, body) = http_get(
        &prom.addr,
        &format!(
            "/api/v1/query?query={}&time={t}",
            enc(r#"e2e_rr_metric{instance="b"}"#)
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\"{}\"", rr_value(1, 599))),
        "instant query: {body}"
    );
    drop(prom);
    drop(strata);
}

#[test]
fn json_parser_reads_prometheus_answers() {
    let j = JsonParser::parse(
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\"b\u00e9"},"values":[[1700000000,"1"],[1700000000.5,"NaN"]]}]},"x":[true,false,null,-1.5e3]}"#,
    )
    .unwrap();
    let data = j.get("data").unwrap();
    let r = &data.get("result").unwrap().arr()[0];
    assert_eq!(
        r.get("metric").unwrap().get("job").unwrap().str(),
        Some("a\"bé")
    );
    assert_eq!(
        r.get("values").unwrap().arr()[1].arr()[0],
        Json::Num("1700000000.5".into())
    );
    assert!(JsonParser::parse("{").is_err());
    assert!(JsonParser::parse("[1,]").is_err());
    assert_eq!(enc(r#"up{a="b"}"#), "up%7Ba%3D%22b%22%7D");
    let pts = expected_points(&[(1000, 1.5), (400_000, 2.0)], 0, 800_000, 100_000);
    assert_eq!(
        pts,
        vec![
            (100_000, "1.5".to_string()),
            (200_000, "1.5".to_string()),
            (300_000, "1.5".to_string()),
            (400_000, "2".to_string()),
            (500_000, "2".to_string()),
            (600_000, "2".to_string()),
        ]
    );
}
