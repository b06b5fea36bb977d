//! `gen-dump`: prints generated data in the `promtool tsdb dump` text format, the format of
//! the real capture, so generated and real data can be inspected, diffed and imported with the
//! same tools.
//!
//! Usage: `cargo run --release -p strata-bench --bin gen-dump -- [--hosts 1] [--scrapes 4]
//! [--seed 42] > gen.dump`
#![allow(clippy::print_stdout)]

use std::io::Write;

use strata_bench::dump::write_dump_series;
use strata_bench::fixture::flag;
use strata_bench::{GenConfig, Generator};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let hosts: usize = flag(&args, "--hosts", 1)?;
    let scrapes: usize = flag(&args, "--scrapes", 4)?;
    let seed: u64 = flag(&args, "--seed", 42)?;
    let mut g = Generator::new(GenConfig::new(seed, hosts));
    let data = g.series_samples(scrapes);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (labels, samples) in g.series().iter().zip(&data) {
        write_dump_series(&mut out, labels, samples)?;
    }
    out.flush()?;
    Ok(())
}
