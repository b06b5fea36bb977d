//! `head-memory`: resident memory of the head per active series, a headline figure (target
//! ≤ 1 KiB per series).
//!
//! Builds the generator's label sets for N series first (their memory is part of the baseline,
//! not of the head), then creates the series in a fresh `Head` and appends `--scrapes` scrapes
//! to each, reading `VmRSS` from `/proc/self/status` at each step. The difference divided by
//! N is the cost per series: first of the series alone (registry, interned labels, postings),
//! then with its samples. The encoded chunk bytes are summed through the head's read API for
//! the breakdown. RSS includes allocator slack, which is what an operator pays.
//!
//! Usage: `cargo run --release -p strata-bench --bin head-memory -- [--series 1000000]
//! [--scrapes 240] [--seed 42]`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use anyhow::Context;
use strata_bench::fixture::{flag, vm_rss_bytes};
use strata_bench::{GenConfig, Generator};
use strata_engine::head::{Head, HeadOptions, SeriesRef};

fn rss() -> anyhow::Result<u64> {
    vm_rss_bytes().context("VmRSS not available (needs /proc/self/status)")
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = flag(&args, "--series", 1_000_000)?;
    let scrapes: usize = flag(&args, "--scrapes", 240)?;
    let seed: u64 = flag(&args, "--seed", 42)?;

    let started = Instant::now();
    let mut g = Generator::with_min_series(GenConfig::new(seed, 0), n);
    let series = g
        .series()
        .get(..n)
        .context("generator made too few series")?
        .to_vec();
    let mut buf = Vec::with_capacity(g.num_series());
    g.next_scrape(&mut buf); // warm the scrape buffer so it is in the baseline
    let base = rss()?;
    println!(
        "generator: {} hosts, {} series built in {:.1} s; baseline RSS {:.0} MiB",
        g.config().hosts,
        g.num_series(),
        started.elapsed().as_secs_f64(),
        mib(base)
    );

    let head = Head::new(HeadOptions::default());
    let t = Instant::now();
    let refs: Vec<SeriesRef> = series.iter().map(|l| head.get_or_create(l).0).collect();
    let create_s = t.elapsed().as_secs_f64();
    let after_series = rss()?;
    let refs_bytes = (refs.capacity() * std::mem::size_of::<SeriesRef>()) as u64;
    let series_cost = after_series.saturating_sub(base).saturating_sub(refs_bytes);
    println!(
        "created {n} series in {create_s:.2} s ({:.0} series/s); {} symbols",
        n as f64 / create_s,
        head.num_symbols()
    );
    println!(
        "  RSS +{:.0} MiB => {:.0} B/series for series alone (registry, labels, postings)",
        mib(series_cost),
        series_cost as f64 / n as f64
    );

    let mut accepted = Vec::new();
    let mut append_s = 0.0;
    let mut gen_s = 0.0;
    for k in 0..scrapes {
        let t = Instant::now();
        if k > 0 {
            g.next_scrape(&mut buf);
        }
        gen_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for (r, s) in refs.iter().zip(&buf) {
            accepted.clear();
            head.append(*r, std::slice::from_ref(s), &mut accepted)?;
        }
        append_s += t.elapsed().as_secs_f64();
    }
    let after_samples = rss()?;
    let total_cost = after_samples
        .saturating_sub(base)
        .saturating_sub(refs_bytes);
    let samples = (n * scrapes) as u64;
    println!(
        "appended {scrapes} scrapes = {samples} samples in {append_s:.1} s ({:.2} M samples/s on one thread; generating took {gen_s:.1} s)",
        samples as f64 / append_s / 1e6
    );
    println!(
        "  RSS +{:.0} MiB => {:.0} B per active series with {scrapes} samples each ({:.2} KiB; target <= 1 KiB)",
        mib(total_cost),
        total_cost as f64 / n as f64,
        total_cost as f64 / n as f64 / 1024.0
    );

    let mut chunk_bytes = 0u64;
    for &r in &refs {
        if let Some(d) = head.series_data(r, i64::MIN, i64::MAX) {
            chunk_bytes += d
                .chunks
                .iter()
                .map(|(c, _)| c.data.len() as u64)
                .sum::<u64>();
        }
    }
    println!(
        "breakdown: {} chunks; encoded chunk bytes {:.0} MiB = {:.0} B/series ({:.2} B/sample); series overhead ~{:.0} B/series; rest (chunk structs, buffers, allocator slack) ~{:.0} B/series",
        head.num_chunks(),
        mib(chunk_bytes),
        chunk_bytes as f64 / n as f64,
        chunk_bytes as f64 / samples.max(1) as f64,
        series_cost as f64 / n as f64,
        (total_cost
            .saturating_sub(series_cost)
            .saturating_sub(chunk_bytes)) as f64
            / n as f64
    );
    println!("total run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
