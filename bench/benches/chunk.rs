//! Chunk codec throughput: Gorilla encode/decode (the head's encoding), `encode_best` (what a
//! block cut runs), and encode/decode of each block encoding, on generated data per metric type
//! and on the real capture. Throughput is in samples.
//!
//! Head chunks hold up to 120 samples, so the Gorilla benches use 120-sample chunks; block
//! chunks hold up to 7200 samples (2 h at 1 s), so the block benches use whole 2 h series
//! (480 samples at 15 s for generated data, up to 7200 for the 1 s real capture).
//!
//! Run: `cargo bench -p strata-bench --bench chunk -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_bench::{GenConfig, Generator, MetricType, load_dump, real_dump_path};
use strata_engine::chunk::{self, Bytes, ChunkIter, Encoding, GorillaAppender};

const HEAD_CHUNK: usize = 120;
const BLOCK_CHUNK: usize = 7200;

type Chunks = Vec<Vec<(i64, f64)>>;

/// Generated series (2 h at 15 s), grouped by type.
fn generated(scrapes: usize) -> Vec<(MetricType, Chunks)> {
    let mut g = Generator::new(GenConfig::new(7, 20));
    let data = g.series_samples(scrapes);
    MetricType::ALL
        .iter()
        .map(|&ty| {
            let series: Chunks = data
                .iter()
                .enumerate()
                .filter(|(i, _)| g.metric_type(*i) == ty)
                .map(|(_, s)| s.clone())
                .collect();
            (ty, series)
        })
        .collect()
}

fn split(series: &[Vec<(i64, f64)>], size: usize) -> Chunks {
    series
        .iter()
        .flat_map(|s| s.chunks(size).map(<[(i64, f64)]>::to_vec))
        .collect()
}

fn real(size: usize) -> Chunks {
    let data = load_dump(&real_dump_path()).expect("real capture");
    let series: Chunks = data.into_iter().map(|(_, s)| s).collect();
    split(&series, size)
}

fn samples(chunks: &Chunks) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

fn gorilla(c: &mut Criterion) {
    let mut sets: Vec<(String, Chunks)> = generated(HEAD_CHUNK)
        .into_iter()
        .map(|(ty, s)| (format!("gen_{}", ty.as_str()), s))
        .collect();
    sets.push(("real".to_string(), real(HEAD_CHUNK)));

    let mut g = c.benchmark_group("gorilla_encode");
    for (name, chunks) in &sets {
        g.throughput(Throughput::Elements(samples(chunks)));
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for c in chunks {
                    let mut app = GorillaAppender::new();
                    for &(t, v) in c {
                        app.append(t, v);
                    }
                    bytes += app.bytes().len();
                }
                black_box(bytes)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("gorilla_decode");
    for (name, chunks) in &sets {
        let encoded: Vec<Bytes> = chunks
            .iter()
            .map(|c| {
                let mut app = GorillaAppender::new();
                for &(t, v) in c {
                    app.append(t, v);
                }
                Bytes::copy_from_slice(app.bytes())
            })
            .collect();
        g.throughput(Throughput::Elements(samples(chunks)));
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let mut acc = 0.0f64;
                let mut n = 0usize;
                for data in &encoded {
                    let mut it = ChunkIter::new(Encoding::Gorilla, data.clone()).unwrap();
                    while let Some((t, v)) = it.next_sample() {
                        acc += v + t as f64;
                        n += 1;
                    }
                }
                black_box((acc, n))
            })
        });
    }
    g.finish();
}

fn block_encodings(c: &mut Criterion) {
    let mut sets: Vec<(String, Chunks)> = generated(480)
        .into_iter()
        .map(|(ty, s)| (format!("gen_{}", ty.as_str()), s))
        .collect();
    sets.push(("real".to_string(), real(BLOCK_CHUNK)));

    let mut g = c.benchmark_group("encode_best");
    for (name, chunks) in &sets {
        g.throughput(Throughput::Elements(samples(chunks)));
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for c in chunks {
                    bytes += chunk::encode_best(c).1.len();
                }
                black_box(bytes)
            })
        });
    }
    g.finish();

    for enc in [Encoding::ColumnarZstd, Encoding::RangeCoded] {
        let mut g = c.benchmark_group(format!("block_encode/{enc}"));
        for (name, chunks) in &sets {
            g.throughput(Throughput::Elements(samples(chunks)));
            g.bench_function(name.as_str(), |b| {
                b.iter(|| {
                    let mut bytes = 0usize;
                    for c in chunks {
                        bytes += chunk::encode(enc, c).unwrap().len();
                    }
                    black_box(bytes)
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("block_decode/{enc}"));
        for (name, chunks) in &sets {
            let encoded: Vec<Bytes> = chunks
                .iter()
                .map(|c| Bytes::from(chunk::encode(enc, c).unwrap()))
                .collect();
            g.throughput(Throughput::Elements(samples(chunks)));
            g.bench_function(name.as_str(), |b| {
                b.iter(|| {
                    let mut acc = 0.0f64;
                    let mut n = 0usize;
                    for data in &encoded {
                        let mut it = ChunkIter::new(enc, data.clone()).unwrap();
                        while let Some((t, v)) = it.next_sample() {
                            acc += v + t as f64;
                            n += 1;
                        }
                        assert!(it.err().is_none());
                    }
                    black_box((acc, n))
                })
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
    targets = gorilla, block_encodings
}
criterion_main!(benches);
