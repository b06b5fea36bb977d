//! Head ingestion: appending scrapes to existing series (the steady state of a Prometheus
//! remote-write stream), on one thread, straight into the head and through the engine (head +
//! WAL record encoding + WAL write, fsync in the background), and the rate of series creation.
//!
//! Run: `cargo bench -p strata-bench --bench head -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use strata_bench::fixture::{append_scrape, engine_options, relaxed_sync};
use strata_bench::{GenConfig, Generator};
use strata_engine::Labels;
use strata_engine::db::Engine;
use strata_engine::head::{Head, HeadOptions, SeriesRef};

const SERIES: usize = 10_000;
const SCRAPES: usize = 40;

fn workload() -> (Vec<Labels>, Vec<Vec<(i64, f64)>>) {
    let mut g = Generator::with_min_series(GenConfig::new(3, 0), SERIES);
    let series = g.series().to_vec();
    let scrapes = (0..SCRAPES)
        .map(|_| {
            let mut buf = Vec::new();
            g.next_scrape(&mut buf);
            buf
        })
        .collect();
    (series, scrapes)
}

fn head_with_series(series: &[Labels]) -> (Head, Vec<SeriesRef>) {
    let head = Head::new(HeadOptions::default());
    let refs = series.iter().map(|l| head.get_or_create(l).0).collect();
    (head, refs)
}

fn append(c: &mut Criterion) {
    let (series, scrapes) = workload();
    let total = (series.len() * scrapes.len()) as u64;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(total));
    g.bench_function(
        format!("head_{}series_x{SCRAPES}scrapes", series.len()),
        |b| {
            b.iter_batched(
                || head_with_series(&series),
                |(head, refs)| {
                    let mut accepted = Vec::new();
                    for scrape in &scrapes {
                        for (r, s) in refs.iter().zip(scrape) {
                            accepted.clear();
                            head.append(*r, std::slice::from_ref(s), &mut accepted)
                                .unwrap();
                        }
                    }
                    head
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.throughput(Throughput::Elements(total - series.len() as u64));
    g.bench_function(
        format!("engine_{}series_x{}scrapes", series.len(), SCRAPES - 1),
        |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let (engine, _) =
                        Engine::open(engine_options(dir.path(), relaxed_sync())).unwrap();
                    let db = engine.tenant("bench").unwrap();
                    // Create the series first: this bench measures appends to existing series.
                    append_scrape(&db, &series, &scrapes[0]).unwrap();
                    (dir, engine, db)
                },
                |(dir, engine, db)| {
                    for scrape in &scrapes[1..] {
                        append_scrape(&db, &series, scrape).unwrap();
                    }
                    (dir, engine, db)
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();

    let mut g = c.benchmark_group("series_create");
    g.throughput(Throughput::Elements(series.len() as u64));
    g.bench_function(format!("head_{}series", series.len()), |b| {
        b.iter_batched(
            || Head::new(HeadOptions::default()),
            |head| {
                for l in &series {
                    black_box(head.get_or_create(l));
                }
                head
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
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
    targets = append
}
criterion_main!(benches);
