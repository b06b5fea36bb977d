//! PromQL evaluation: the dashboard queries of the comparison script, and a selective instant
//! selector, over generated series × 2 h at 15 s in the head.
//!
//! The end-to-end comparison with VictoriaMetrics and Prometheus is `bench/compare-metrics.sh`;
//! this bench isolates the evaluator (no HTTP, no JSON) so changes to it can be compared.
//!
//! Run: `cargo bench -p strata-bench --bench promql -- --warm-up-time 1 --measurement-time 5`
//! (`STRATA_BENCH_SERIES` sets the series count, default 10 000; `STRATA_BENCH_SCRAPES` the
//! scrapes per series, default 479 = 2 h; `STRATA_BENCH_ONLY=instant` runs only the selective
//! instant query, e.g. over a 1 M-series head with a few scrapes).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use strata_bench::fixture::{engine_options, relaxed_sync, write_generated};
use strata_bench::{GenConfig, Generator};
use strata_engine::db::Engine;
use strata_query::{EvalOptions, instant_query, range_query};

fn bench(c: &mut Criterion) {
    let series: usize = std::env::var("STRATA_BENCH_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let scrapes: usize = std::env::var("STRATA_BENCH_SCRAPES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(479);
    let only_instant = std::env::var("STRATA_BENCH_ONLY").is_ok_and(|v| v == "instant");
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(engine_options(dir.path(), relaxed_sync())).unwrap();
    let db = engine.tenant("bench").unwrap();
    let mut cfg = GenConfig::new(5, 0);
    cfg.start_ms += 1000;
    let mut g = Generator::with_min_series(cfg, series);
    write_generated(&db, &mut g, scrapes).unwrap();
    let (mint, maxt) = (db.head().min_time(), db.head().max_time());
    let q = engine.querier("bench").unwrap();
    let opts = EvalOptions::default();
    let mut group = c.benchmark_group(format!("promql_{series}_series"));
    group.sample_size(10);
    for (name, query) in [
        (
            "sum_rate_cpu",
            "sum by (job) (rate(node_cpu_seconds_total[5m]))",
        ),
        (
            "p99_histogram",
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        ),
        ("count_node", r#"count({__name__=~"node_.+"})"#),
    ] {
        if only_instant {
            break;
        }
        group.bench_function(name, |b| {
            b.iter(|| black_box(range_query(&q, query, mint, maxt, 60_000, &opts).unwrap()))
        });
    }
    group.bench_function("instant_rare_selector", |b| {
        b.iter(|| {
            black_box(
                instant_query(&q, r#"node_load1{instance="10.0.0.1:9100"}"#, maxt, &opts).unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
