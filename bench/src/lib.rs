//! Strata's benchmark support: realistic data and the tools that measure the headline figures.
//!
//! Every performance figure Strata publishes (bytes per sample, head memory per series, WAL
//! replay speed, select latency) depends on the data it was measured on. This crate owns that
//! data so that the criterion benches (`benches/`), the measurement binaries (`src/bin/`) and
//! the `strata-load` load generator all see the same workload:
//!
//! - [`generator`]: a deterministic generator of node-exporter, kube-state-metrics and histogram
//!   series with exporter-like values and scrape timestamps;
//! - [`dump`]: a reader of `promtool tsdb dump` text, the format of the real capture in
//!   `shared/data/metrics/` (see [`dump::real_dump_path`]);
//! - [`fixture`]: feeding that data into an engine and measuring blocks and memory;
//! - [`logload`]: `strata-load logs`, the Loki push load generator (generated or Loghub lines);
//! - [`rng`]: the small PRNG behind the generator, so the data never changes with a dependency.

pub mod dump;
pub mod fixture;
pub mod generator;
pub mod logload;
pub mod rng;
pub mod traceload;

pub use dump::{DumpSeries, load_dump, parse_dump, real_dump_path};
pub use generator::{GenConfig, Generator, MetricType};
