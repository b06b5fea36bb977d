//! The select path: resolving matchers to series and iterating their samples, with the data in
//! the head and with the same data persisted as a block.
//!
//! Fixture: about 10 000 generated series (node exporter, histograms, kube-state-metrics) × 2 h
//! at 15 s (480 samples each), written through the engine.
//!
//! Run: `cargo bench -p strata-bench --bench select -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_bench::fixture::{engine_options, relaxed_sync, write_generated};
use strata_bench::{GenConfig, Generator};
use strata_engine::db::Engine;
use strata_engine::querier::{SelectHints, Series};
use strata_engine::{MatchOp, Matcher};

const SERIES: usize = 10_000;
const SCRAPES: usize = 479;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    mint: i64,
    maxt: i64,
}

fn fixture(persist: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(engine_options(dir.path(), relaxed_sync())).unwrap();
    let db = engine.tenant("bench").unwrap();
    // Start one second into an aligned 2 h range so that all 479 scrapes fall into one block.
    let mut cfg = GenConfig::new(5, 0);
    cfg.start_ms += 1000;
    let mut g = Generator::with_min_series(cfg, SERIES);
    write_generated(&db, &mut g, SCRAPES).unwrap();
    let (mint, maxt) = (db.head().min_time(), db.head().max_time());
    if persist {
        db.persist_all().unwrap();
        assert_eq!(db.head().num_series(), 0);
    }
    Fixture {
        _dir: dir,
        engine,
        mint,
        maxt,
    }
}

fn select(f: &Fixture, m: &[Matcher]) -> Vec<Series> {
    f.engine
        .select("bench", m, f.mint, f.maxt, &SelectHints::default())
        .unwrap()
}

fn iterate(f: &Fixture, series: &[Series]) -> u64 {
    let mut n = 0u64;
    let mut acc = 0.0f64;
    for s in series {
        let mut it = s.iter().unwrap();
        let mut cur = it.seek(f.mint);
        while let Some((t, v)) = cur {
            if t > f.maxt {
                break;
            }
            n += 1;
            acc += v;
            cur = it.next_sample();
        }
        assert!(it.take_err().is_none());
    }
    black_box(acc);
    n
}

fn bench(c: &mut Criterion) {
    let cases: Vec<(&str, Vec<Matcher>)> = vec![
        (
            "name_eq_cpu",
            vec![Matcher::equal("__name__", "node_cpu_seconds_total")],
        ),
        (
            "name_eq_load1",
            vec![Matcher::equal("__name__", "node_load1")],
        ),
        (
            "name_regex_net_bytes",
            vec![Matcher::new(MatchOp::Regex, "__name__", "node_network_.+_bytes_total").unwrap()],
        ),
        (
            "cpu_not_idle_one_instance_regex",
            vec![
                Matcher::equal("__name__", "node_cpu_seconds_total"),
                Matcher::new(MatchOp::NotEqual, "mode", "idle").unwrap(),
                Matcher::new(MatchOp::Regex, "instance", "10\\.0\\.0\\.[1-5]:9100").unwrap(),
            ],
        ),
        (
            "histogram_buckets",
            vec![Matcher::equal(
                "__name__",
                "http_request_duration_seconds_bucket",
            )],
        ),
    ];
    for (where_, persist) in [("head", false), ("block", true)] {
        let f = fixture(persist);
        let mut g = c.benchmark_group(format!("select_{where_}"));
        for (name, m) in &cases {
            let n = select(&f, m).len() as u64;
            g.throughput(Throughput::Elements(n));
            g.bench_function(format!("{name}_{n}series"), |b| {
                b.iter(|| black_box(select(&f, m).len()))
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("select_iterate_{where_}"));
        for (name, m) in cases.iter().chain([&(
            "all_job_regex",
            vec![Matcher::new(MatchOp::Regex, "job", ".+").unwrap()],
        )]) {
            let series = select(&f, m);
            let n = iterate(&f, &series);
            g.throughput(Throughput::Elements(n));
            g.bench_function(format!("{name}_{n}samples"), |b| {
                b.iter(|| iterate(&f, &select(&f, m)))
            });
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
