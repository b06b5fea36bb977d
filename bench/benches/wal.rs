//! The write-ahead log: appending batches of encoded sample records (fsync per batch vs in the
//! background), and replay throughput through the engine's true start-up path
//! (`Engine::open` on a data directory whose WAL the engine wrote).
//!
//! Run: `cargo bench -p strata-bench --bench wal -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_bench::fixture::{engine_options, relaxed_sync, write_generated};
use strata_bench::{GenConfig, Generator};
use strata_engine::db::Engine;
use strata_engine::record::{RECORD_SAMPLES, encode_samples};
use strata_wal::{SyncMode, Wal, WalOptions};

const SERIES: usize = 10_000;

/// One scrape of ~10 000 series encoded as the engine encodes it: one SAMPLES record.
fn scrape_payload() -> (Vec<u8>, u64) {
    let mut g = Generator::with_min_series(GenConfig::new(11, 0), SERIES);
    let mut buf = Vec::new();
    g.next_scrape(&mut buf);
    let mut payload = Vec::new();
    for (i, s) in buf.iter().enumerate() {
        encode_samples(&mut payload, i as u32, std::slice::from_ref(s));
    }
    (payload, buf.len() as u64)
}

fn append(c: &mut Criterion) {
    let (payload, samples) = scrape_payload();
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(samples));
    for (name, sync) in [
        ("interval_1s", relaxed_sync()),
        ("fsync_every_batch", SyncMode::EveryBatch),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            sync,
            ..WalOptions::default()
        };
        let (wal, _replay, _) = Wal::open(dir.path().join("wal"), opts).unwrap();
        g.bench_function(format!("{name}_{}B_batch", payload.len()), |b| {
            b.iter(|| wal.append(&[(RECORD_SAMPLES, payload.as_slice())]).unwrap())
        });
        drop(wal);
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    const SCRAPES: usize = 240;
    let dir = tempfile::tempdir().unwrap();
    let opts = engine_options(dir.path(), relaxed_sync());
    let samples = {
        let (engine, _) = Engine::open(opts.clone()).unwrap();
        let db = engine.tenant("bench").unwrap();
        let mut g = Generator::with_min_series(GenConfig::new(13, 0), SERIES);
        let n = write_generated(&db, &mut g, SCRAPES).unwrap();
        engine.close().unwrap();
        n
    };
    let mut g = c.benchmark_group("wal_replay");
    g.throughput(Throughput::Elements(samples));
    g.bench_function(format!("engine_open_{samples}samples"), |b| {
        b.iter(|| {
            let (engine, reports) = Engine::open(opts.clone()).unwrap();
            assert_eq!(reports.first().map(|r| r.samples), Some(samples));
            black_box(engine)
        })
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
    targets = append, replay
}
criterion_main!(benches);
