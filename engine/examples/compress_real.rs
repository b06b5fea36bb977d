//! Measures the chunk encodings on a real Prometheus capture: bytes per sample (overall and per
//! metric type), encode and decode throughput, and a bit-exact round-trip check of every chunk.
//!
//! ```text
//! cargo run --release -p strata-engine --example compress_real [path-to-dump.zst] [chunk-size] [filter]
//! ```
//!
//! `filter`, if given, runs only the variants whose label contains it (e.g. `gorilla`).
//!
//! The dump is `promtool tsdb dump` output compressed with zstd: one sample per line,
//! `{labels} value timestamp_ms`, each series' lines contiguous and in time order. Default path:
//! `shared/data/metrics/real-node-1s.dump.zst` next to the repository; default chunk size:
//! `chunk::DEFAULT_BLOCK_CHUNK_SAMPLES`.
//!
//! Metric types are guessed from names: `_bucket` is a histogram bucket; `_total`, `_count`,
//! `_sum` and a few known node-exporter counter families are counters; the rest are gauges.
//! The figures are chunk data only (no block index).

#![expect(clippy::print_stdout, reason = "a measurement tool prints its table")]

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use strata_engine::chunk::{
    self, Bytes, ChunkIter, Encoding, GORILLA_MAX_SAMPLES, GorillaAppender,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Histogram,
    Gauge,
}

fn kind_of(name: &str) -> Kind {
    if name.ends_with("_bucket") {
        return Kind::Histogram;
    }
    let known_counter = (name.starts_with("node_netstat_")
        && !name.ends_with("_CurrEstab")
        && !name.ends_with("_Forwarding"))
        || name.starts_with("node_vmstat_")
        || name.starts_with("node_nf_conntrack_stat_");
    if known_counter
        || name.ends_with("_total")
        || name.ends_with("_count")
        || name.ends_with("_sum")
    {
        Kind::Counter
    } else {
        Kind::Gauge
    }
}

struct Series {
    kind: Kind,
    samples: Vec<(i64, f64)>,
}

fn parse_value(s: &str) -> Result<f64, Box<dyn Error>> {
    Ok(match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse()?,
    })
}

fn parse(text: &str) -> Result<Vec<Series>, Box<dyn Error>> {
    let mut out: Vec<Series> = Vec::new();
    let mut last_labels = "";
    for (no, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let close = line
            .rfind('}')
            .ok_or_else(|| format!("line {no}: no labels"))?;
        let (labels, rest) = line.split_at(close + 1);
        let mut fields = rest.split_whitespace();
        let value = parse_value(
            fields
                .next()
                .ok_or_else(|| format!("line {no}: no value"))?,
        )?;
        let ts: i64 = fields
            .next()
            .ok_or_else(|| format!("line {no}: no timestamp"))?
            .parse()?;
        if labels != last_labels || out.is_empty() {
            let name = labels
                .split("__name__=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("");
            out.push(Series {
                kind: kind_of(name),
                samples: Vec::new(),
            });
            last_labels = labels;
        }
        if let Some(s) = out.last_mut() {
            s.samples.push((ts, value));
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// One encoding at a chunk size.
    Fixed(Encoding, usize),
    /// Gorilla chunks passed through zstd (size only; not a decodable encoding).
    GorillaZstd(usize),
    /// `encode_best` at a chunk size.
    Best(usize),
}

impl Variant {
    fn label(self) -> String {
        match self {
            Variant::Fixed(e, n) => format!("{e} @{n}"),
            Variant::GorillaZstd(n) => format!("gorilla+zstd19 @{n} (size only)"),
            Variant::Best(n) => format!("encode_best @{n}"),
        }
    }
}

struct Outcome {
    bytes: [u64; 3],
    samples: [u64; 3],
    encode: Duration,
    decode: Option<Duration>,
    picks: [u64; 4],
}

fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Counter => 0,
        Kind::Histogram => 1,
        Kind::Gauge => 2,
    }
}

fn check_same(got: &[(i64, f64)], want: &[(i64, f64)]) -> Result<(), Box<dyn Error>> {
    if got.len() != want.len() {
        return Err(format!("decoded {} samples, want {}", got.len(), want.len()).into());
    }
    for (g, w) in got.iter().zip(want) {
        if g.0 != w.0 || g.1.to_bits() != w.1.to_bits() {
            return Err(format!("decoded {g:?}, want {w:?}").into());
        }
    }
    Ok(())
}

fn run(series: &[Series], variant: Variant) -> Result<Outcome, Box<dyn Error>> {
    let mut out = Outcome {
        bytes: [0; 3],
        samples: [0; 3],
        encode: Duration::ZERO,
        decode: None,
        picks: [0; 4],
    };
    let size = match variant {
        Variant::Fixed(_, n) | Variant::GorillaZstd(n) | Variant::Best(n) => n.max(1),
    };
    let mut chunks: Vec<(Encoding, Bytes, usize)> = Vec::new();
    let start = Instant::now();
    for s in series {
        for run in s.samples.chunks(size) {
            let k = kind_index(s.kind);
            out.samples[k] += run.len() as u64;
            let (enc, data) = match variant {
                Variant::Fixed(e, _) => (e, chunk::encode(e, run)?),
                Variant::Best(_) => chunk::encode_best(run),
                Variant::GorillaZstd(_) => {
                    let g = chunk::encode(Encoding::Gorilla, run)?;
                    let z = zstd::bulk::compress(&g, 19)?;
                    out.bytes[k] += z.len() as u64;
                    continue;
                }
            };
            out.bytes[k] += data.len() as u64;
            if let Some(p) = out.picks.get_mut(usize::from(enc.as_u8())) {
                *p += 1;
            }
            chunks.push((enc, Bytes::from(data), run.len()));
        }
    }
    out.encode = start.elapsed();
    // More timing passes (while under 2 s), keeping the best: the machine may be shared.
    let started = Instant::now();
    let mut passes = 1;
    while passes < 3 && started.elapsed() < Duration::from_secs(2) {
        passes += 1;
        let start = Instant::now();
        for s in series {
            for run in s.samples.chunks(size) {
                let len = match variant {
                    Variant::Fixed(e, _) => chunk::encode(e, run)?.len(),
                    Variant::Best(_) => chunk::encode_best(run).1.len(),
                    Variant::GorillaZstd(_) => {
                        let g = chunk::encode(Encoding::Gorilla, run)?;
                        zstd::bulk::compress(&g, 19)?.len()
                    }
                };
                black_box(len);
            }
        }
        out.encode = out.encode.min(start.elapsed());
    }
    if chunks.is_empty() {
        return Ok(out);
    }
    // Bit-exact verification of every chunk.
    let mut i = 0;
    for s in series {
        for run in s.samples.chunks(size) {
            let (enc, data, _) = chunks.get(i).ok_or("chunk count mismatch")?;
            let got = chunk::decode_all(*enc, data.clone())?;
            check_same(&got, run).map_err(|e| format!("{}: chunk {i}: {e}", variant.label()))?;
            i += 1;
        }
    }
    // Decode throughput: the best pass of at least 3 and at least 1 s of passes.
    let mut best = Duration::MAX;
    let started = Instant::now();
    let mut passes = 0;
    while passes < 3 || started.elapsed() < Duration::from_secs(1) {
        passes += 1;
        let start = Instant::now();
        let mut acc = 0u64;
        for (enc, data, _) in &chunks {
            let mut it = ChunkIter::new(*enc, data.clone())?;
            while let Some((t, v)) = it.next_sample() {
                acc = acc.wrapping_add(t as u64 ^ v.to_bits());
            }
        }
        black_box(acc);
        best = best.min(start.elapsed());
    }
    out.decode = Some(best);
    Ok(out)
}

fn msps(samples: u64, d: Duration) -> f64 {
    samples as f64 / d.as_secs_f64().max(1e-12) / 1e6
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/metrics/real-node-1s.dump.zst"
        )
        .to_string()
    });
    let chunk_size: usize = match args.next() {
        Some(s) => s.parse()?,
        None => chunk::DEFAULT_BLOCK_CHUNK_SAMPLES,
    };
    let filter = args.next().unwrap_or_default();

    let raw = std::fs::read(&path).map_err(|e| format!("read {path}: {e}"))?;
    let text = String::from_utf8(zstd::stream::decode_all(raw.as_slice())?)?;
    let series = parse(&text)?;
    drop(text);
    let total: u64 = series.iter().map(|s| s.samples.len() as u64).sum();
    let mut per_kind = [0u64; 3];
    for s in &series {
        per_kind[kind_index(s.kind)] += s.samples.len() as u64;
    }
    println!(
        "{path}: {} series, {total} samples (counter {}, histogram bucket {}, gauge {}); \
         block chunk size {chunk_size}",
        series.len(),
        per_kind[0],
        per_kind[1],
        per_kind[2]
    );

    // Head append rate: every series through 120-sample Gorilla appenders (best pass of at
    // least 3 and at least 1 s, as the machine may be shared).
    let mut append = Duration::MAX;
    let mut held = 0usize;
    let started = Instant::now();
    let mut passes = 0;
    while passes < 3 || started.elapsed() < Duration::from_secs(1) {
        passes += 1;
        held = 0;
        let start = Instant::now();
        for s in &series {
            for run in s.samples.chunks(chunk::DEFAULT_MAX_SAMPLES) {
                let mut app = GorillaAppender::new();
                for &(t, v) in run {
                    app.append(t, v);
                }
                held += app.heap_size();
                black_box(app.finish());
            }
        }
        append = append.min(start.elapsed());
    }
    println!(
        "head append: {:.1} M samples/s; {:.3} heap bytes/sample while open",
        msps(total, append),
        held as f64 / total as f64
    );

    let gorilla_size = chunk_size.min(GORILLA_MAX_SAMPLES);
    let variants = [
        Variant::Fixed(Encoding::Gorilla, chunk::DEFAULT_MAX_SAMPLES),
        Variant::Fixed(Encoding::Gorilla, gorilla_size),
        Variant::GorillaZstd(gorilla_size),
        Variant::Fixed(Encoding::ColumnarZstd, chunk_size),
        Variant::Fixed(Encoding::RangeCoded, chunk_size),
        Variant::Best(chunk_size),
    ];
    println!();
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "bytes/sample", "counter", "hist", "gauge", "all", "enc Msps", "dec Msps"
    );
    for v in variants.into_iter().filter(|v| v.label().contains(&filter)) {
        let o = run(&series, v)?;
        let per = |k: usize| o.bytes[k] as f64 / o.samples[k].max(1) as f64;
        let all = o.bytes.iter().sum::<u64>() as f64 / total as f64;
        let dec = o
            .decode
            .map_or("-".to_string(), |d| format!("{:.1}", msps(total, d)));
        println!(
            "{:<36} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>10.1} {:>10}",
            v.label(),
            per(0),
            per(1),
            per(2),
            all,
            msps(total, o.encode),
            dec
        );
        if let Variant::Best(_) = v {
            let picks: Vec<String> = Encoding::ALL
                .iter()
                .map(|e| {
                    let n = o.picks.get(usize::from(e.as_u8())).copied().unwrap_or(0);
                    format!("{e} {n}")
                })
                .collect();
            println!("    encode_best picked: {}", picks.join(", "));
        }
    }
    Ok(())
}
