//! `strata-load`: a Prometheus remote-write 1.0 load generator, to compare ingest throughput of
//! Strata, Prometheus and VictoriaMetrics on the same realistic data.
//!
//! Usage:
//!
//! ```text
//! cargo run --release -p strata-bench --bin strata-load -- \
//!     --url http://127.0.0.1:PORT/api/v1/write --series 10000 --duration 1h \
//!     [--batch 2000] [--concurrency 8] [--interval 15s] [--tenant X] [--max-seconds 600] \
//!     [--seed 42] [--start-ms MS] [--server-pid PID]
//! ```
//!
//! Why it is built this way:
//!
//! - **Everything is encoded before the clock starts.** Samples come from the crate's
//!   [`Generator`] (node exporter, application histograms, kube-state-metrics), and every
//!   request is protobuf-encoded and snappy-compressed up front, so the measured phase spends
//!   the client's CPU on nothing but sockets. On a small machine the client shares cores with
//!   the server under test; encoding during the run would slow the server down.
//! - **It sends what a Prometheus server sends.** Series are sharded over `--concurrency`
//!   connections by label hash, as Prometheus' queue manager shards them; each connection sends
//!   its series scrape by scrape, in time order, one sample per `TimeSeries` entry with the full
//!   label set. A request holds `--batch` samples, but never two samples of one series: when a
//!   connection owns fewer series than `--batch`, its requests hold one sample of each of its
//!   series (a Prometheus shard flushing on its batch deadline does the same). Per series, the
//!   samples therefore arrive strictly in time order and no request is ever reordered.
//! - **Timestamps are recent** (the span ends now unless `--start-ms` is given), because
//!   VictoriaMetrics drops samples outside its retention period and Prometheus rejects samples
//!   far behind its head.
//! - **The HTTP client is a small hand-written HTTP/1.1 client** over `std::net::TcpStream`
//!   with keep-alive: no async runtime or connection pool whose own overhead would be measured.
//!
//! With `--server-pid` (a process on the same machine), the server's own CPU time (utime +
//! stime from `/proc/PID/stat`) is read right before the first and right after the last
//! request, so the CPU per sample excludes the client's encoding phase and the server's
//! start-up.
//!
//! The last line of the output is a machine-readable `RESULT key=value …` line, parsed by
//! `bench/compare-metrics.sh`.
#![allow(clippy::print_stdout)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use strata_bench::fixture::flag;
use strata_bench::{GenConfig, Generator};
use strata_engine::Labels;

/// How many rejected responses keep their body for the report.
const KEPT_ERRORS: usize = 5;
/// Largest response body kept in memory (the rest is read and discarded).
const MAX_KEPT_BODY: usize = 4096;
/// Attempts per request when the connection fails (closed keep-alive, reset).
const IO_ATTEMPTS: usize = 3;
/// Socket read/write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("traces") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return strata_bench::traceload::main(&args);
    }
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("logs") {
        return strata_bench::logload::main(args.get(2..).unwrap_or_default());
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: strata-load --url http://HOST:PORT/PATH [--series 10000] [--duration 1h] \
             [--batch 2000] [--concurrency 8] [--interval 15s] [--tenant ID] [--max-seconds 600] \
             [--seed 42] [--start-ms MS] [--server-pid PID]"
        );
        return Ok(());
    }
    let url: String = flag(&args, "--url", String::new())?;
    if url.is_empty() {
        bail!("--url is required (e.g. http://127.0.0.1:9090/api/v1/write)");
    }
    let target = Url::parse(&url)?;
    let series: usize = flag(&args, "--series", 10_000)?;
    let duration_ms = parse_duration_ms(&flag(&args, "--duration", "1h".to_string())?)?;
    let interval_ms = parse_duration_ms(&flag(&args, "--interval", "15s".to_string())?)?;
    let batch: usize = flag(&args, "--batch", 2000)?;
    let concurrency: usize = flag(&args, "--concurrency", 8)?;
    let tenant: String = flag(&args, "--tenant", String::new())?;
    let max_seconds: f64 = flag(&args, "--max-seconds", 600.0)?;
    let seed: u64 = flag(&args, "--seed", 42)?;
    let server_pid: u32 = flag(&args, "--server-pid", 0)?;
    if series == 0 || batch == 0 || concurrency == 0 || interval_ms <= 0 {
        bail!("--series, --batch, --concurrency and --interval must be positive");
    }
    let scrapes = usize::try_from(duration_ms / interval_ms)
        .unwrap_or(0)
        .max(1);
    let default_start = now_ms().saturating_sub(duration_ms);
    let start_ms: i64 = flag(
        &args,
        "--start-ms",
        default_start - default_start % interval_ms,
    )?;

    let cpu_at_start = process_cpu_seconds();
    let encode_started = Instant::now();
    let mut cfg = GenConfig::new(seed, 1);
    cfg.interval_ms = interval_ms;
    cfg.start_ms = start_ms;
    let mut generator = Generator::with_min_series(cfg, series);
    let plan = encode_all(&mut generator, scrapes, batch, concurrency)?;
    let encode_secs = encode_started.elapsed().as_secs_f64();
    let cpu_after_encode = process_cpu_seconds();
    let end_ms = plan.max_t;
    println!(
        "encoded: series={} scrapes={} samples={} requests={} samples_per_request<={} \
         raw_bytes={} snappy_bytes={} in {:.1}s (span {}..{} ms)",
        generator.num_series(),
        scrapes,
        plan.samples(),
        plan.requests(),
        plan.max_request_samples(),
        plan.raw_bytes,
        plan.compressed_bytes(),
        encode_secs,
        start_ms,
        end_ms
    );

    let head = request_head(&target, &tenant);
    let stats = Stats::default();
    let deadline = Instant::now() + Duration::from_secs_f64(max_seconds.max(0.0));
    let server_cpu_before = cpu_seconds_of(server_pid);
    let send_started = Instant::now();
    std::thread::scope(|s| {
        for shard in &plan.shards {
            let (stats, head, target) = (&stats, &head, &target);
            s.spawn(move || send_shard(target, head, shard, deadline, stats));
        }
    });
    let elapsed = send_started.elapsed().as_secs_f64();
    let cpu_at_end = process_cpu_seconds();
    let server_cpu = match (server_cpu_before, cpu_seconds_of(server_pid)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };

    let requests = stats.requests.load(Ordering::Relaxed);
    let sent = stats.samples_sent.load(Ordering::Relaxed);
    let accepted = stats.samples_accepted.load(Ordering::Relaxed);
    let rejected = stats.samples_rejected.load(Ordering::Relaxed);
    let failed = stats.requests_failed.load(Ordering::Relaxed);
    let rejected_requests = stats.requests_rejected.load(Ordering::Relaxed);
    let complete = requests == plan.requests() as u64;
    let rate = if elapsed > 0.0 {
        accepted as f64 / elapsed
    } else {
        0.0
    };
    let send_cpu = match (cpu_after_encode, cpu_at_end) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let encode_cpu = match (cpu_at_start, cpu_after_encode) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    println!(
        "sent: requests={requests}/{} samples={sent} accepted={accepted} rejected={rejected} \
         (requests rejected={rejected_requests}, failed={failed}) elapsed={elapsed:.2}s \
         => {rate:.0} samples/s{}",
        plan.requests(),
        if complete {
            ""
        } else {
            " (stopped early: --max-seconds reached or connection failures)"
        }
    );
    println!(
        "client cpu: encode={encode_cpu:.2}s send={send_cpu:.2}s ({:.3} us/sample while sending)",
        if sent > 0 {
            send_cpu * 1e6 / sent as f64
        } else {
            0.0
        }
    );
    if server_pid != 0 {
        println!(
            "server cpu (pid {server_pid}): {server_cpu:.2}s while sending ({:.3} us/sample \
             accepted)",
            if accepted > 0 {
                server_cpu * 1e6 / accepted as f64
            } else {
                f64::NAN
            }
        );
    }
    if let Ok(errors) = stats.errors.lock() {
        for e in errors.iter() {
            println!("error: {e}");
        }
    }
    println!(
        "RESULT series={} scrapes={scrapes} requests={requests} planned_requests={} \
         samples={sent} accepted={accepted} rejected={rejected} failed_requests={failed} \
         elapsed_s={elapsed:.3} samples_per_s={rate:.0} client_send_cpu_s={send_cpu:.3} \
         encode_s={encode_secs:.3} server_cpu_s={server_cpu:.3} start_ms={start_ms} \
         end_ms={end_ms} complete={complete}",
        generator.num_series(),
        plan.requests()
    );
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses `1h`, `90m`, `15s`, `500ms`, `1d` or a combination like `1h30m` into milliseconds.
fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if s.is_empty() {
        bail!("empty duration");
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            bail!("invalid duration {s:?}: expected a number");
        }
        let (num, tail) = rest.split_at(digits);
        let n: i64 = num
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let mult = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .with_context(|| format!("duration {s:?} overflows"))?;
        rest = tail;
    }
    Ok(total)
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`, assuming the
/// usual 100 clock ticks per second. `None` off Linux.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / 100.0)
}

/// CPU time of another process (`None` for pid 0 or when it cannot be read).
fn cpu_seconds_of(pid: u32) -> Option<f64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / 100.0)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace();
    // `after` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

// ---------------------------------------------------------------------------------------------
// Request building
// ---------------------------------------------------------------------------------------------

/// One pre-encoded request: the snappy-compressed body and how many samples it carries.
struct EncodedRequest {
    body: Vec<u8>,
    samples: u32,
}

/// All requests of one connection, in sending order.
#[derive(Default)]
struct Shard {
    requests: Vec<EncodedRequest>,
}

/// Every request of a run, sharded by connection.
struct Plan {
    shards: Vec<Shard>,
    raw_bytes: u64,
    max_t: i64,
}

impl Plan {
    fn requests(&self) -> usize {
        self.shards.iter().map(|s| s.requests.len()).sum()
    }

    fn samples(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| &s.requests)
            .map(|r| u64::from(r.samples))
            .sum()
    }

    fn max_request_samples(&self) -> u32 {
        self.shards
            .iter()
            .flat_map(|s| &s.requests)
            .map(|r| r.samples)
            .max()
            .unwrap_or(0)
    }

    fn compressed_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| &s.requests)
            .map(|r| r.body.len() as u64)
            .sum()
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends a length-delimited field (`tag` already includes wire type 2).
fn put_bytes_field(buf: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    buf.push(tag);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// The `labels` fields (field 1, repeated `prometheus.Label`) of a `TimeSeries`, encoded once
/// per series and copied into every sample's entry.
fn encode_labels(labels: &Labels) -> Vec<u8> {
    let mut out = Vec::new();
    let mut label = Vec::new();
    for l in labels {
        label.clear();
        put_bytes_field(&mut label, 0x0a, l.name.as_bytes());
        put_bytes_field(&mut label, 0x12, l.value.as_bytes());
        put_bytes_field(&mut out, 0x0a, &label);
    }
    out
}

/// Appends one `WriteRequest.timeseries` entry (field 1) holding `labels` and one sample.
fn put_series_sample(buf: &mut Vec<u8>, labels: &[u8], t: i64, v: f64) {
    // Sample: value (field 1, fixed64) and timestamp (field 2, varint int64).
    let sample_len = 1 + 8 + 1 + varint_len(t as u64);
    let series_len = labels.len() + 1 + varint_len(sample_len as u64) + sample_len;
    buf.push(0x0a);
    put_varint(buf, series_len as u64);
    buf.extend_from_slice(labels);
    buf.push(0x12);
    put_varint(buf, sample_len as u64);
    buf.push(0x09);
    buf.extend_from_slice(&v.to_le_bytes());
    buf.push(0x10);
    put_varint(buf, t as u64);
}

/// Builds the requests of one connection from its stream of `(series, t, v)` samples: chunks
/// of `chunk` samples, where `chunk` never exceeds the number of series the connection owns,
/// so a request never holds two samples of one series.
struct ShardEncoder {
    chunk: usize,
    raw: Vec<u8>,
    in_raw: usize,
    shard: Shard,
    raw_bytes: u64,
}

impl ShardEncoder {
    fn new(batch: usize, owned_series: usize) -> Self {
        ShardEncoder {
            chunk: batch.min(owned_series).max(1),
            raw: Vec::new(),
            in_raw: 0,
            shard: Shard::default(),
            raw_bytes: 0,
        }
    }

    fn push(&mut self, labels: &[u8], t: i64, v: f64) -> anyhow::Result<()> {
        put_series_sample(&mut self.raw, labels, t, v);
        self.in_raw += 1;
        if self.in_raw >= self.chunk {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.in_raw == 0 {
            return Ok(());
        }
        let body = strata_proto::snappy::compress_snappy(&self.raw)
            .map_err(|e| anyhow::anyhow!("snappy: {e}"))?;
        self.raw_bytes += self.raw.len() as u64;
        self.shard.requests.push(EncodedRequest {
            body,
            samples: u32::try_from(self.in_raw).context("request too large")?,
        });
        self.raw.clear();
        self.in_raw = 0;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<(Shard, u64)> {
        self.flush()?;
        Ok((self.shard, self.raw_bytes))
    }
}

/// Assigns series to `shards` connections by label hash (as Prometheus shards by fingerprint).
/// Returns each shard's series indices in ascending order.
fn shard_series(series: &[Labels], shards: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); shards.max(1)];
    let n = out.len() as u64;
    for (i, l) in series.iter().enumerate() {
        if let Some(s) = out.get_mut((l.stable_hash() % n) as usize) {
            s.push(i);
        }
    }
    out
}

/// Generates `scrapes` scrapes and encodes every request. The generator runs on this thread;
/// the shards are encoded and compressed on up to `available_parallelism` threads fed with
/// one scrape at a time.
fn encode_all(
    generator: &mut Generator,
    scrapes: usize,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<Plan> {
    let labels: Vec<Vec<u8>> = generator.series().iter().map(encode_labels).collect();
    let owners = shard_series(generator.series(), concurrency);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, owners.len());
    let mut max_t = i64::MIN;
    let results: Vec<anyhow::Result<Vec<(Shard, u64)>>> = std::thread::scope(|s| {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for th in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<(i64, f64)>>>(4);
            senders.push(tx);
            let mine: Vec<&Vec<usize>> = owners.iter().skip(th).step_by(threads).collect();
            let labels = &labels;
            handles.push(s.spawn(move || -> anyhow::Result<Vec<(Shard, u64)>> {
                let mut encoders: Vec<ShardEncoder> = mine
                    .iter()
                    .map(|o| ShardEncoder::new(batch, o.len()))
                    .collect();
                while let Ok(scrape) = rx.recv() {
                    for (enc, owned) in encoders.iter_mut().zip(&mine) {
                        for &i in owned.iter() {
                            if let (Some(l), Some(&(t, v))) = (labels.get(i), scrape.get(i)) {
                                enc.push(l, t, v)?;
                            }
                        }
                    }
                }
                encoders.into_iter().map(ShardEncoder::finish).collect()
            }));
        }
        let mut buf = Vec::new();
        for _ in 0..scrapes {
            generator.next_scrape(&mut buf);
            if let Some(t) = buf.iter().map(|s| s.0).max() {
                max_t = max_t.max(t);
            }
            let scrape = std::sync::Arc::new(std::mem::take(&mut buf));
            for tx in &senders {
                // A send fails only if the encoder thread ended early with an error, which
                // its join below reports.
                let _ = tx.send(scrape.clone());
            }
        }
        drop(senders);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("encoder thread panicked")))
            })
            .collect()
    });
    // Put the shards back in connection order: thread `th` encoded shards th, th+threads, ...
    let mut per_thread = Vec::new();
    for r in results {
        per_thread.push(r?.into_iter());
    }
    let mut shards = Vec::new();
    let mut raw_bytes = 0;
    for k in 0..owners.len() {
        if let Some((shard, raw)) = per_thread.get_mut(k % threads).and_then(Iterator::next) {
            raw_bytes += raw;
            shards.push(shard);
        }
    }
    Ok(Plan {
        shards,
        raw_bytes,
        max_t,
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An `http://host:port/path` URL (no TLS, no userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    /// `host:port` to connect to.
    addr: String,
    /// Value of the `Host` header.
    host: String,
    /// Path and query.
    path: String,
}

impl Url {
    fn parse(url: &str) -> anyhow::Result<Url> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("only http:// URLs are supported: {url:?}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("URL without host: {url:?}");
        }
        let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Url {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// The request line and headers up to (not including) `Content-Length`.
fn request_head(url: &Url, tenant: &str) -> String {
    let mut h = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strata-load/{}\r\n\
         Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\
         X-Prometheus-Remote-Write-Version: 0.1.0\r\n",
        url.path,
        url.host,
        env!("CARGO_PKG_VERSION")
    );
    if !tenant.is_empty() {
        h.push_str("X-Scope-OrgID: ");
        h.push_str(tenant);
        h.push_str("\r\n");
    }
    h
}

/// A parsed HTTP response.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    /// The body, truncated to [`MAX_KEPT_BODY`] bytes.
    body: Vec<u8>,
    /// Whether the server closes the connection after this response.
    close: bool,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line ending in `\n` (CR stripped); EOF before any byte is an error.
fn read_line(r: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    line.clear();
    let n = r.take(16 * 1024).read_line(line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before the response",
        ));
    }
    if !line.ends_with('\n') {
        return Err(bad("header line too long or truncated"));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(())
}

/// Reads exactly `n` body bytes, keeping the first [`MAX_KEPT_BODY`] in `body`.
fn read_body_bytes(r: &mut impl BufRead, mut n: u64, body: &mut Vec<u8>) -> io::Result<()> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the body",
            ));
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let keep = take.min(MAX_KEPT_BODY.saturating_sub(body.len()));
        body.extend_from_slice(buf.get(..keep).unwrap_or_default());
        r.consume(take);
        n -= take as u64;
    }
    Ok(())
}

/// Parses one HTTP/1.x response: status line, headers, and a body delimited by
/// `Content-Length`, chunked transfer coding, or the end of the connection. Interim `1xx`
/// responses are skipped.
fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    loop {
        read_line(r, &mut line)?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("not an HTTP/1.x status line: {line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line: {line:?}")))?;
        let mut close = version == "HTTP/1.0";
        let mut length: Option<u64> = None;
        let mut chunked = false;
        loop {
            read_line(r, &mut line)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad(format!("bad header line: {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("bad Content-Length: {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        close = false;
                    }
                }
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut body = Vec::new();
        if status == 204 || status == 304 {
            // No body, whatever the headers say.
        } else if chunked {
            loop {
                read_line(r, &mut line)?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| bad(format!("bad chunk size: {line:?}")))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        read_line(r, &mut line)?;
                        if line.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                read_body_bytes(r, size, &mut body)?;
                read_line(r, &mut line)?;
                if !line.is_empty() {
                    return Err(bad("chunk not followed by CRLF"));
                }
            }
        } else if let Some(n) = length {
            read_body_bytes(r, n, &mut body)?;
        } else {
            // Delimited by the end of the connection.
            let mut rest = Vec::new();
            r.read_to_end(&mut rest)?;
            rest.truncate(MAX_KEPT_BODY);
            body = rest;
            close = true;
        }
        return Ok(Response {
            status,
            body,
            close,
        });
    }
}

/// One keep-alive connection that reconnects when the server closes it.
struct Conn<'a> {
    url: &'a Url,
    stream: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl<'a> Conn<'a> {
    fn new(url: &'a Url) -> Self {
        Conn { url, stream: None }
    }

    fn connect(&mut self) -> io::Result<&mut (TcpStream, BufReader<TcpStream>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.url.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            let reader = BufReader::with_capacity(16 * 1024, s.try_clone()?);
            self.stream = Some((s, reader));
        }
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("not connected"))
    }

    /// Sends one request and reads its response.
    fn post(&mut self, head: &[u8], body: &[u8]) -> io::Result<Response> {
        let result = (|| {
            let (w, r) = self.connect()?;
            w.write_all(head)?;
            w.write_all(body)?;
            read_response(r)
        })();
        match result {
            Ok(resp) => {
                if resp.close {
                    self.stream = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// Counters shared by the connections.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    requests_rejected: AtomicU64,
    requests_failed: AtomicU64,
    samples_sent: AtomicU64,
    samples_accepted: AtomicU64,
    samples_rejected: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Stats {
    fn keep_error(&self, msg: String) {
        if let Ok(mut e) = self.errors.lock()
            && e.len() < KEPT_ERRORS
        {
            e.push(msg);
        }
    }
}

/// Sends one shard's requests in order over one connection until done or `deadline`.
fn send_shard(url: &Url, head: &str, shard: &Shard, deadline: Instant, stats: &Stats) {
    let mut conn = Conn::new(url);
    let mut full_head = Vec::with_capacity(head.len() + 32);
    for req in &shard.requests {
        if Instant::now() >= deadline {
            break;
        }
        full_head.clear();
        full_head.extend_from_slice(head.as_bytes());
        full_head
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", req.body.len()).as_bytes());
        let mut outcome = None;
        let mut last_err = None;
        for _ in 0..IO_ATTEMPTS {
            match conn.post(&full_head, &req.body) {
                Ok(resp) => {
                    outcome = Some(resp);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let samples = u64::from(req.samples);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.samples_sent.fetch_add(samples, Ordering::Relaxed);
        match outcome {
            Some(resp) if (200..300).contains(&resp.status) => {
                stats.samples_accepted.fetch_add(samples, Ordering::Relaxed);
            }
            Some(resp) => {
                stats.requests_rejected.fetch_add(1, Ordering::Relaxed);
                stats.samples_rejected.fetch_add(samples, Ordering::Relaxed);
                stats.keep_error(format!(
                    "HTTP {}: {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body).trim()
                ));
            }
            None => {
                stats.requests_failed.fetch_add(1, Ordering::Relaxed);
                stats.samples_rejected.fetch_add(samples, Ordering::Relaxed);
                stats.keep_error(format!(
                    "connection to {} failed: {}",
                    url.addr,
                    last_err.map(|e| e.to_string()).unwrap_or_default()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Cursor;

    use prost::Message;
    use strata_proto::prompb::WriteRequest;

    use super::*;

    fn parse(raw: &[u8]) -> io::Result<Response> {
        read_response(&mut BufReader::new(Cursor::new(raw.to_vec())))
    }

    #[test]
    fn response_with_content_length_and_keep_alive() {
        let r = parse(b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n").unwrap();
        assert_eq!((r.status, r.close, r.body.len()), (204, false, 0));
        let r = parse(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\nout o").unwrap();
        assert_eq!((r.status, r.close), (400, false));
        assert_eq!(r.body, b"out o");
    }

    #[test]
    fn two_responses_on_one_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Internal\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad";
        let mut r = BufReader::new(Cursor::new(raw.to_vec()));
        let a = read_response(&mut r).unwrap();
        assert_eq!(
            (a.status, a.body.as_slice(), a.close),
            (200, &b"ok"[..], false)
        );
        let b = read_response(&mut r).unwrap();
        assert_eq!(
            (b.status, b.body.as_slice(), b.close),
            (500, &b"bad"[..], true)
        );
        assert_eq!(
            read_response(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        let mut r = BufReader::new(Cursor::new(raw.to_vec()));
        let resp = read_response(&mut r).unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(resp.body, b"hello, world");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn body_until_close_and_http10() {
        let r = parse(b"HTTP/1.0 200 OK\r\n\r\nall of it").unwrap();
        assert_eq!((r.status, r.close), (200, true));
        assert_eq!(r.body, b"all of it");
        let r = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(!r.close);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(r.status, 200);
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(parse(b"").is_err());
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n").is_err());
    }

    #[test]
    fn long_bodies_are_truncated_but_consumed() {
        let body = vec![b'x'; MAX_KEPT_BODY * 3];
        let mut raw =
            format!("HTTP/1.1 500 E\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        raw.extend_from_slice(&body);
        raw.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let mut r = BufReader::new(Cursor::new(raw));
        assert_eq!(read_response(&mut r).unwrap().body.len(), MAX_KEPT_BODY);
        assert_eq!(read_response(&mut r).unwrap().status, 200);
    }

    #[test]
    fn urls_parse() {
        let u = Url::parse("http://127.0.0.1:9090/api/v1/write").unwrap();
        assert_eq!(u.addr, "127.0.0.1:9090");
        assert_eq!(u.host, "127.0.0.1:9090");
        assert_eq!(u.path, "/api/v1/write");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!((u.addr.as_str(), u.path.as_str()), ("localhost:80", "/"));
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("15s").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("h").is_err());
    }

    #[test]
    fn proc_stat_cpu_fields() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(cpu_seconds_of(0), None);
        if cfg!(target_os = "linux") {
            assert!(cpu_seconds_of(std::process::id()).is_some());
        }
    }

    #[test]
    fn request_head_has_remote_write_headers() {
        let u = Url::parse("http://127.0.0.1:1/api/v1/write").unwrap();
        let h = request_head(&u, "team-a");
        assert!(h.starts_with("POST /api/v1/write HTTP/1.1\r\n"));
        for needle in [
            "Host: 127.0.0.1:1\r\n",
            "Content-Type: application/x-protobuf\r\n",
            "Content-Encoding: snappy\r\n",
            "X-Prometheus-Remote-Write-Version: 0.1.0\r\n",
            "User-Agent: strata-load/",
            "X-Scope-OrgID: team-a\r\n",
        ] {
            assert!(h.contains(needle), "{needle:?} missing in {h:?}");
        }
        assert!(!request_head(&u, "").contains("X-Scope-OrgID"));
    }

    fn decode(req: &EncodedRequest) -> WriteRequest {
        let raw = strata_proto::snappy::decompress_snappy(&req.body, 64 << 20).unwrap();
        WriteRequest::decode(raw.as_slice()).unwrap()
    }

    #[test]
    fn one_encoded_sample_decodes_with_prost() {
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "node")]).unwrap();
        let mut raw = Vec::new();
        for (t, v) in [(1_704_067_200_000, 0.0), (-5, f64::INFINITY), (0, -1.5)] {
            raw.clear();
            put_series_sample(&mut raw, &encode_labels(&labels), t, v);
            let wr = WriteRequest::decode(raw.as_slice()).unwrap();
            assert_eq!(wr.timeseries.len(), 1);
            let ts = &wr.timeseries[0];
            let got: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(got, [("__name__", "up"), ("job", "node")]);
            assert_eq!(ts.samples.len(), 1);
            assert_eq!(ts.samples[0].timestamp, t);
            assert_eq!(ts.samples[0].value.to_bits(), v.to_bits());
        }
    }

    /// Builds a small plan and decodes every request back: each series appears at most once
    /// per request, every sample of the generator is there exactly once, and per series the
    /// samples come in time order across the shard's requests.
    #[test]
    fn requests_decode_back_in_order() {
        let cfg = GenConfig::new(7, 1);
        let g = Generator::with_min_series(cfg.clone(), 300);
        let scrapes = 6;
        let n = g.num_series();
        let expected = Generator::with_min_series(cfg, 300).series_samples(scrapes);
        for (batch, conc) in [(100, 3), (5000, 2), (64, 1)] {
            let mut g2 = g.clone();
            let plan = encode_all(&mut g2, scrapes, batch, conc).unwrap();
            assert_eq!(plan.shards.len(), conc);
            assert_eq!(plan.samples(), (n * scrapes) as u64);
            let owners = shard_series(g.series(), conc);
            let index: std::collections::HashMap<String, usize> = g
                .series()
                .iter()
                .enumerate()
                .map(|(i, l)| (l.to_string(), i))
                .collect();
            let mut seen: Vec<Vec<(i64, f64)>> = vec![Vec::new(); n];
            for (shard, owned) in plan.shards.iter().zip(&owners) {
                let chunk = batch.min(owned.len());
                for (k, req) in shard.requests.iter().enumerate() {
                    let wr = decode(req);
                    assert_eq!(wr.timeseries.len(), req.samples as usize);
                    if k + 1 < shard.requests.len() {
                        assert_eq!(wr.timeseries.len(), chunk);
                    }
                    let mut in_req = std::collections::HashSet::new();
                    for ts in &wr.timeseries {
                        let pairs: Vec<(&str, &str)> = ts
                            .labels
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str()))
                            .collect();
                        let labels = Labels::from_pairs(&pairs).unwrap();
                        let i = index[&labels.to_string()];
                        assert!(owned.contains(&i), "series {i} in the wrong shard");
                        assert!(in_req.insert(i), "series {i} twice in one request");
                        assert_eq!(ts.samples.len(), 1);
                        seen[i].push((ts.samples[0].timestamp, ts.samples[0].value));
                    }
                }
            }
            for (i, (got, want)) in seen.iter().zip(&expected).enumerate() {
                assert_eq!(got.len(), scrapes, "series {i}");
                for (g, w) in got.iter().zip(want) {
                    assert_eq!(g.0, w.0, "series {i}: timestamps out of order");
                    assert_eq!(g.1.to_bits(), w.1.to_bits());
                }
                assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
            }
            let max_t = expected.iter().flatten().map(|s| s.0).max().unwrap();
            assert_eq!(plan.max_t, max_t);
        }
    }

    /// End to end over a real socket: a tiny one-shot server answers 204, then 400, then
    /// closes; the connection reconnects and the counters add up.
    #[test]
    fn sends_over_keep_alive_and_reconnects() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            // First connection: two requests, the second answered with close.
            // Second connection: one request.
            for answers in [
                &[
                    "HTTP/1.1 204 No Content\r\n\r\n",
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad",
                ][..],
                &["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"][..],
            ] {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                for a in answers {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("Content-Length: ") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    bodies.push(body);
                    w.write_all(a.as_bytes()).unwrap();
                }
            }
            bodies
        });
        let url = Url::parse(&format!("http://{addr}/api/v1/write")).unwrap();
        let shard = Shard {
            requests: (0..3u8)
                .map(|i| EncodedRequest {
                    body: vec![i; 10 + i as usize],
                    samples: 10,
                })
                .collect(),
        };
        let stats = Stats::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        send_shard(&url, &request_head(&url, ""), &shard, deadline, &stats);
        let bodies = server.join().unwrap();
        assert_eq!(bodies.len(), 3);
        for (i, b) in bodies.iter().enumerate() {
            assert_eq!(b, &vec![i as u8; 10 + i]);
        }
        assert_eq!(stats.requests.load(Ordering::Relaxed), 3);
        assert_eq!(stats.samples_accepted.load(Ordering::Relaxed), 20);
        assert_eq!(stats.samples_rejected.load(Ordering::Relaxed), 10);
        assert_eq!(stats.errors.lock().unwrap().as_slice(), ["HTTP 400: bad"]);
    }
}
