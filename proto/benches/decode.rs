//! Remote write decode throughput: snappy alone, snappy + prost, snappy +
//! the zero-copy decoder (1.0 and 2.0), and the label validation cost.
//!
//! Workload: one request of 2000 series × 1 sample, each series with 10
//! node-exporter-like labels (~100 bytes of label text), as a Prometheus
//! scraping a fleet of node exporters would send. Throughput is reported in
//! samples per second.
//!
//! Run: `cargo bench -p strata-proto --bench decode -- --warm-up-time 1 --measurement-time 3`

#![expect(clippy::expect_used, reason = "benchmark setup on known-good data")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use strata_proto::prompb::{Label, Sample, TimeSeries, WriteRequest};
use strata_proto::remote_write::{SeriesRef, WriteVisitor, decode_write_v1, decode_write_v2};
use strata_proto::snappy::{compress_snappy, decompress_snappy};
use strata_proto::validate::LabelRules;
use strata_proto::{DecodeError, write_v2};

const SERIES: usize = 2000;
const MAX_DECODED: usize = 64 << 20;

const METRICS: [&str; 8] = [
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_filesystem_avail_bytes",
    "node_network_receive_bytes_total",
    "node_disk_io_time_seconds_total",
    "node_load1",
    "node_context_switches_total",
    "node_netstat_Tcp_CurrEstab",
];
const MODES: [&str; 8] = [
    "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
];

/// Labels of series `i`, sorted by name.
fn labels(i: usize) -> Vec<(String, String)> {
    let host = i / 40;
    vec![
        ("__name__".into(), METRICS[i % METRICS.len()].into()),
        ("cluster".into(), format!("prod-eu-{}", host % 3)),
        ("cpu".into(), format!("{}", i % 32)),
        ("env".into(), "production".into()),
        (
            "instance".into(),
            format!("10.20.{}.{}:9100", host / 250, host % 250),
        ),
        ("job".into(), "node-exporter".into()),
        ("mode".into(), MODES[i % MODES.len()].into()),
        ("namespace".into(), "monitoring".into()),
        ("region".into(), "eu-west-1".into()),
        ("team".into(), "infra".into()),
    ]
}

fn sample(i: usize) -> (i64, f64) {
    (1_700_000_000_000 + (i as i64 % 7), 1234.5 + i as f64 * 0.25)
}

fn request_v1() -> WriteRequest {
    WriteRequest {
        timeseries: (0..SERIES)
            .map(|i| {
                let (timestamp, value) = sample(i);
                TimeSeries {
                    labels: labels(i)
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    samples: vec![Sample { value, timestamp }],
                    ..TimeSeries::default()
                }
            })
            .collect(),
        metadata: vec![],
    }
}

fn request_v2() -> write_v2::Request {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut index = std::collections::HashMap::new();
    let mut intern = |s: String| -> u32 {
        *index.entry(s.clone()).or_insert_with(|| {
            symbols.push(s);
            (symbols.len() - 1) as u32
        })
    };
    let timeseries = (0..SERIES)
        .map(|i| {
            let (timestamp, value) = sample(i);
            write_v2::TimeSeries {
                labels_refs: labels(i)
                    .into_iter()
                    .flat_map(|(n, v)| [intern(n), intern(v)])
                    .collect(),
                samples: vec![write_v2::Sample { value, timestamp }],
                ..write_v2::TimeSeries::default()
            }
        })
        .collect();
    write_v2::Request {
        symbols,
        timeseries,
    }
}

/// Touches every label and sample so the work cannot be optimised away,
/// as an ingest path that hashes label sets would.
#[derive(Default)]
struct Touch {
    bytes: usize,
    sum: f64,
}

impl<'a> WriteVisitor<'a> for Touch {
    type Error = DecodeError;
    fn series(&mut self, s: &SeriesRef<'a, '_>) -> Result<(), DecodeError> {
        for l in s.labels {
            self.bytes += l.name.len() + l.value.len();
        }
        for x in s.samples {
            self.sum += x.value;
        }
        Ok(())
    }
}

/// Touch plus the default label rules.
struct Validate(LabelRules, usize);

#[derive(Debug)]
struct Invalid;

impl From<DecodeError> for Invalid {
    fn from(_: DecodeError) -> Self {
        Invalid
    }
}

impl<'a> WriteVisitor<'a> for Validate {
    type Error = Invalid;
    fn series(&mut self, s: &SeriesRef<'a, '_>) -> Result<(), Invalid> {
        self.0.check(s.index, s.labels).map_err(|_| Invalid)?;
        self.1 += s.labels.len();
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let raw_v1 = request_v1().encode_to_vec();
    let body_v1 = compress_snappy(&raw_v1).expect("compress");
    let raw_v2 = request_v2().encode_to_vec();
    let body_v2 = compress_snappy(&raw_v2).expect("compress");
    eprintln!(
        "request: {SERIES} series x 1 sample; v1 {} B raw / {} B snappy; v2 {} B raw / {} B snappy",
        raw_v1.len(),
        body_v1.len(),
        raw_v2.len(),
        body_v2.len()
    );

    let mut g = c.benchmark_group("remote_write_decode");
    g.throughput(Throughput::Elements(SERIES as u64));

    g.bench_function("snappy_only", |b| {
        b.iter(|| decompress_snappy(black_box(&body_v1), MAX_DECODED).expect("snappy"))
    });
    g.bench_function("snappy+prost_v1", |b| {
        b.iter(|| {
            let raw = decompress_snappy(black_box(&body_v1), MAX_DECODED).expect("snappy");
            WriteRequest::decode(raw.as_slice()).expect("prost")
        })
    });
    g.bench_function("snappy+zero_copy_v1", |b| {
        b.iter(|| {
            let raw = decompress_snappy(black_box(&body_v1), MAX_DECODED).expect("snappy");
            let mut v = Touch::default();
            decode_write_v1(&raw, &mut v).expect("decode");
            black_box((v.bytes, v.sum))
        })
    });
    g.bench_function("snappy+zero_copy_v1+validate", |b| {
        b.iter(|| {
            let raw = decompress_snappy(black_box(&body_v1), MAX_DECODED).expect("snappy");
            let mut v = Validate(LabelRules::default(), 0);
            decode_write_v1(&raw, &mut v).expect("decode");
            black_box(v.1)
        })
    });
    g.bench_function("snappy+prost_v2", |b| {
        b.iter(|| {
            let raw = decompress_snappy(black_box(&body_v2), MAX_DECODED).expect("snappy");
            write_v2::Request::decode(raw.as_slice()).expect("prost")
        })
    });
    g.bench_function("snappy+zero_copy_v2", |b| {
        b.iter(|| {
            let raw = decompress_snappy(black_box(&body_v2), MAX_DECODED).expect("snappy");
            let mut v = Touch::default();
            decode_write_v2(&raw, &mut v).expect("decode");
            black_box((v.bytes, v.sum))
        })
    });
    g.bench_function("zero_copy_v1_only", |b| {
        b.iter(|| {
            let mut v = Touch::default();
            decode_write_v1(black_box(&raw_v1), &mut v).expect("decode");
            black_box((v.bytes, v.sum))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
