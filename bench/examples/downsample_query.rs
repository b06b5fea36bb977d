//! A 30-day `sum by (job) (rate(x[1h]))` at a 1 h step, read from raw blocks and from
//! downsampled blocks, timed in one run over the same data.
//!
//! The data is built once: `STRATA_BENCH_SERIES` counters (default 10 000, in 10 jobs) at a
//! 60 s interval, random increments with a reset about once a day per series, imported as
//! 1-day raw blocks (what compaction leaves behind). It spans the queried
//! `STRATA_BENCH_DAYS` (default 30) plus 11 more days, so that the queried month is older than
//! the 10-day threshold of the 1 h copies (a month-long query a few weeks back; the last 40 h
//! before "now" are never downsampled). The downsampling the server's maintenance runs with
//! its defaults (5 m copies of blocks older than 40 h, 1 h copies of those older than 10 d) is
//! applied, then the query is timed `STRATA_BENCH_RUNS` times (default 3) with
//! `max_source_resolution=raw` and with `auto`; the medians of wall and CPU time, their ratios
//! and the largest relative difference of the answers are printed. `STRATA_BENCH_DIR` keeps
//! the data in a directory and reuses it on the next run.
//!
//! Run: `cargo run --release -p strata-bench --example downsample_query`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stdout
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_compaction::downsample::{DownsampleOptions, downsample_due};
use strata_engine::db::{Engine, EngineOptions};
use strata_engine::{HeadOptions, Labels};
use strata_query::{EvalOptions, Value, range_query};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (10 ms ticks);
/// zero where that file does not exist.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A query's answer: series and their points.
type Answer = Vec<(Labels, Vec<(i64, f64)>)>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let series = env("STRATA_BENCH_SERIES", 10_000);
    let days = env("STRATA_BENCH_DAYS", 30) as i64;
    let runs = env("STRATA_BENCH_RUNS", 3).max(1);
    // `STRATA_BENCH_DIR` keeps the data in a directory and reuses it on the next run.
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = std::env::var_os("STRATA_BENCH_DIR")
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let reuse = data_dir.join("tenants/bench/metrics").is_dir();
    let (engine, _) = Engine::open(EngineOptions {
        data_dir: data_dir.clone(),
        head: HeadOptions {
            block_range_ms: DAY,
            ..HeadOptions::default()
        },
        ..EngineOptions::default()
    })
    .unwrap();
    let db = engine.tenant("bench").unwrap();
    let labels: Vec<Labels> = (0..series)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "x"),
                ("instance", &format!("host-{i}")),
                ("job", &format!("job-{}", i % 10)),
            ])
            .unwrap()
        })
        .collect();
    let started = Instant::now();
    let mut rng = Lcg(7);
    let mut values = vec![0.0f64; series];
    for d in 0..if reuse { 0 } else { days + 11 } {
        let mut day: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            let mut pts = Vec::with_capacity(1440);
            for m in 0..1440 {
                let t = d * DAY + m * MIN;
                if rng.next().is_multiple_of(1440) {
                    values[i] = 0.0;
                }
                values[i] += (rng.next() % 100) as f64;
                pts.push((t, values[i]));
            }
            day.insert(l.clone(), pts);
        }
        db.import(&day).unwrap();
    }
    let built = started.elapsed();
    let started = Instant::now();
    let made = downsample_due(&db, &DownsampleOptions::default()).unwrap();
    let downsampled = started.elapsed();
    let blocks = db.block_metas();
    let count = |r: i64| blocks.iter().filter(|m| m.resolution_ms == r).count();
    println!(
        "data: {series} series x {} d at 60 s = {} samples; import {:.1} s; downsampling {} blocks {:.1} s (raw {}, 5m {}, 1h {} blocks)",
        days + 11,
        series as i64 * (days + 11) * 1440,
        built.as_secs_f64(),
        made.len(),
        downsampled.as_secs_f64(),
        count(0),
        count(300_000),
        count(3_600_000),
    );
    let q = "sum by (job) (rate(x[1h]))";
    let (start, end) = (HOUR, days * DAY);
    let run = |res: Option<i64>| -> (Duration, Duration, Answer) {
        let opts = EvalOptions {
            max_samples: usize::MAX,
            max_source_resolution_ms: res,
            ..EvalOptions::default()
        };
        let querier = engine.querier("bench").unwrap();
        let (t, cpu) = (Instant::now(), cpu_time());
        let out = range_query(&querier, q, start, end, HOUR, &opts).unwrap();
        let (took, cpu) = (t.elapsed(), cpu_time().saturating_sub(cpu));
        let Value::Matrix(m) = out.value else {
            panic!("not a matrix")
        };
        (
            took,
            cpu,
            m.into_iter().map(|s| (s.labels, s.points)).collect(),
        )
    };
    let (mut raw_t, mut auto_t) = (Vec::new(), Vec::new());
    let (mut raw_c, mut auto_c) = (Vec::new(), Vec::new());
    let (mut raw_v, mut auto_v) = (Vec::new(), Vec::new());
    // `STRATA_BENCH_PROFILE=auto` repeats only the downsampled query (for a profiler).
    if std::env::var("STRATA_BENCH_PROFILE").is_ok_and(|v| v == "auto") {
        let t = Instant::now();
        for _ in 0..runs {
            let _ = run(None);
        }
        println!(
            "{runs} downsampled runs: {:.3} s",
            t.elapsed().as_secs_f64()
        );
        return;
    }
    for _ in 0..runs {
        let (t, c, v) = run(Some(0));
        raw_t.push(t);
        raw_c.push(c);
        raw_v = v;
        let (t, c, v) = run(None);
        auto_t.push(t);
        auto_c.push(c);
        auto_v = v;
    }
    let mut worst = 0.0f64;
    for ((la, a), (lb, b)) in raw_v.iter().zip(&auto_v) {
        assert_eq!(la, lb);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x.1 - y.1).abs() / x.1.abs().max(1.0));
        }
    }
    let (r, a) = (median(raw_t), median(auto_t));
    let (rc, ac) = (median(raw_c), median(auto_c));
    println!(
        "{q} over {days} d at a 1 h step, median of {runs}: wall raw {:.3} s, downsampled (auto) {:.3} s, ratio {:.1}x; CPU raw {:.2} s, downsampled {:.2} s, ratio {:.1}x; largest relative difference {:.2e}",
        r.as_secs_f64(),
        a.as_secs_f64(),
        r.as_secs_f64() / a.as_secs_f64(),
        rc.as_secs_f64(),
        ac.as_secs_f64(),
        rc.as_secs_f64() / ac.as_secs_f64().max(0.01),
        worst
    );
}
