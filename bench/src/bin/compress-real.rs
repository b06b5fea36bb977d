//! `compress-real`: bytes per sample of Strata blocks, on the real capture and on generated
//! data, the headline compression figure.
//!
//! Each data set is written through the engine (`TenantDb::append`), persisted with
//! `persist_all()`, and the block directories are measured: all bytes (chunks + index + meta),
//! chunks only and index only, divided by the number of samples. A per-metric-type breakdown
//! re-encodes each series' block chunks with `encode_best` (chunk payload bytes only, without
//! the chunk file framing or the index) and, for comparison, with Gorilla in 120-sample chunks
//! (the format of Prometheus's chunks); `--by-name` adds the same per metric name. References: Prometheus ~1.30 B/sample including the
//! index, VictoriaMetrics ~0.45; Strata's target is ≤ 0.45.
//!
//! Usage: `cargo run --release -p strata-bench --bin compress-real -- [--hosts 200]
//! [--hours 2] [--skip-real] [--skip-gen] [--by-name]`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use strata_bench::fixture::{
    BlockSizes, engine_options, flag, relaxed_sync, tenant_block_sizes, write_generated,
    write_series,
};
use strata_bench::{GenConfig, Generator, MetricType, load_dump, real_dump_path};
use strata_engine::Labels;
use strata_engine::chunk::{self, Encoding};
use strata_engine::db::{Engine, EngineOptions};

#[derive(Default)]
struct Stats {
    series: u64,
    samples: u64,
    /// `encode_best` payload bytes of the block chunks.
    bytes: u64,
    /// Gorilla bytes of 120-sample chunks (Prometheus's chunk format, for comparison).
    gorilla: u64,
    encodings: BTreeMap<&'static str, u64>,
}

/// Encodes every series as a block cut would (aligned block ranges, then chunks of at most
/// `block_chunk_samples`) and sums the payload bytes per key; also the Gorilla size of the
/// same samples in 120-sample chunks.
fn breakdown<K: Ord>(
    opts: &EngineOptions,
    data: impl Iterator<Item = (K, Vec<(i64, f64)>)>,
) -> BTreeMap<K, Stats> {
    let range = opts.head.block_range_ms.max(1);
    let max = opts.block_chunk_samples.max(1);
    let mut out: BTreeMap<K, Stats> = BTreeMap::new();
    for (key, samples) in data {
        let st = out.entry(key).or_default();
        st.series += 1;
        st.samples += samples.len() as u64;
        let mut rest = samples.as_slice();
        while let Some(first) = rest.first() {
            let hi = first.0 - first.0.rem_euclid(range) + range;
            let n = rest.partition_point(|s| s.0 < hi);
            let (in_block, tail) = rest.split_at(n);
            for c in in_block.chunks(max) {
                let (enc, bytes) = chunk::encode_best(c);
                st.bytes += bytes.len() as u64;
                *st.encodings.entry(enc.name()).or_default() += 1;
            }
            for c in in_block.chunks(chunk::DEFAULT_MAX_SAMPLES) {
                st.gorilla += chunk::encode(Encoding::Gorilla, c).map_or(0, |b| b.len() as u64);
            }
            rest = tail;
        }
    }
    out
}

fn report(title: &str, series: usize, samples: u64, blocks: usize, sizes: BlockSizes) {
    let per = |b: u64| b as f64 / samples.max(1) as f64;
    println!("== {title}");
    println!("series {series}, samples {samples}, blocks {blocks}");
    println!(
        "total   {:>12} B  {:.3} B/sample  (chunks + index + meta/tombstones)",
        sizes.total(),
        per(sizes.total())
    );
    println!(
        "chunks  {:>12} B  {:.3} B/sample",
        sizes.chunks,
        per(sizes.chunks)
    );
    println!(
        "index   {:>12} B  {:.3} B/sample",
        sizes.index,
        per(sizes.index)
    );
    println!(
        "other   {:>12} B  {:.3} B/sample",
        sizes.other,
        per(sizes.other)
    );
}

fn report_breakdown<K: std::fmt::Display>(what: &str, stats: &BTreeMap<K, Stats>, top: usize) {
    println!(
        "per {what} (chunk payload only, no framing/index; gorilla = same samples in 120-sample Gorilla chunks):"
    );
    let mut rows: Vec<(&K, &Stats)> = stats.iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.bytes));
    for (key, st) in rows.iter().take(top) {
        let enc: Vec<String> = st
            .encodings
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        let n = st.samples.max(1) as f64;
        println!(
            "  {:<45} series {:>6}  samples {:>9}  {:.3} B/sample (gorilla {:.3})  chunks [{}]",
            key.to_string(),
            st.series,
            st.samples,
            st.bytes as f64 / n,
            st.gorilla as f64 / n,
            enc.join(" ")
        );
    }
    if rows.len() > top {
        println!("  ... {} more", rows.len() - top);
    }
    let bytes: u64 = stats.values().map(|s| s.bytes).sum();
    let gorilla: u64 = stats.values().map(|s| s.gorilla).sum();
    let samples = stats.values().map(|s| s.samples).sum::<u64>().max(1) as f64;
    println!(
        "  {:<45} {:.3} B/sample (gorilla {:.3})",
        "all",
        bytes as f64 / samples,
        gorilla as f64 / samples
    );
}

fn name_of(l: &Labels) -> String {
    l.get("__name__").unwrap_or("").to_string()
}

fn type_of(l: &Labels) -> &'static str {
    MetricType::guess(l.get("__name__").unwrap_or("")).as_str()
}

fn persist_and_measure(engine: &Engine) -> anyhow::Result<(usize, u64, BlockSizes)> {
    let db = engine.tenant("bench")?;
    let metas = db.persist_all()?;
    let samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    let (dirs, sizes) = tenant_block_sizes(db.dir())?;
    anyhow::ensure!(
        dirs.len() == metas.len(),
        "block directories do not match the metas"
    );
    Ok((metas.len(), samples, sizes))
}

fn real(by_name: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = load_dump(&real_dump_path())?;
    let loaded: u64 = data.iter().map(|s| s.1.len() as u64).sum();
    let dir = tempfile::tempdir()?;
    let opts = engine_options(dir.path(), relaxed_sync());
    let (engine, _) = Engine::open(opts.clone())?;
    let db = engine.tenant("bench")?;
    let appended = write_series(&db, &data, 1)?;
    anyhow::ensure!(
        appended == loaded,
        "appended {appended} of {loaded} samples"
    );
    let (blocks, samples, sizes) = persist_and_measure(&engine)?;
    anyhow::ensure!(
        samples == loaded,
        "blocks hold {samples} of {loaded} samples"
    );
    report(
        "real capture (real-node-1s.dump.zst, 1 s scrapes)",
        data.len(),
        samples,
        blocks,
        sizes,
    );
    let by_type = breakdown(&opts, data.iter().map(|(l, s)| (type_of(l), s.clone())));
    report_breakdown("metric type", &by_type, usize::MAX);
    if by_name {
        let by = breakdown(&opts, data.iter().map(|(l, s)| (name_of(l), s.clone())));
        report_breakdown("metric name (largest first)", &by, 25);
    }
    println!("({:.1} s)\n", started.elapsed().as_secs_f64());
    Ok(())
}

fn generated(hosts: usize, hours: usize, by_name: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cfg = GenConfig::new(42, hosts);
    // One second into an aligned range, one scrape short of the range end: every series has
    // exactly `hours` × 240 - 1 samples in `hours / 2` blocks.
    cfg.start_ms += 1000;
    let scrapes = (hours * 3_600_000 / cfg.interval_ms as usize).saturating_sub(1);
    let dir = tempfile::tempdir()?;
    let opts = engine_options(dir.path(), relaxed_sync());
    let (engine, _) = Engine::open(opts.clone())?;
    let db = engine.tenant("bench")?;
    let mut g = Generator::new(cfg.clone());
    let appended = write_generated(&db, &mut g, scrapes)?;
    let (blocks, samples, sizes) = persist_and_measure(&engine)?;
    anyhow::ensure!(
        samples == appended,
        "blocks hold {samples} of {appended} samples"
    );
    report(
        &format!(
            "generated: {hosts} hosts × {hours} h at {} s (seed {})",
            cfg.interval_ms / 1000,
            cfg.seed
        ),
        g.num_series(),
        samples,
        blocks,
        sizes,
    );
    // The generator is deterministic: regenerate the same samples for the per-type breakdown.
    let mut again = Generator::new(cfg);
    let per_series = again.series_samples(scrapes);
    let by_type = breakdown(
        &opts,
        per_series
            .iter()
            .enumerate()
            .map(|(i, s)| (again.metric_type(i).as_str(), s.clone())),
    );
    report_breakdown("metric type", &by_type, usize::MAX);
    if by_name {
        let by = breakdown(
            &opts,
            per_series
                .iter()
                .zip(again.series())
                .map(|(s, l)| (name_of(l), s.clone())),
        );
        report_breakdown("metric name (largest first)", &by, 25);
    }
    println!("({:.1} s)\n", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let hosts: usize = flag(&args, "--hosts", 200)?;
    let hours: usize = flag(&args, "--hours", 2)?;
    let by_name = args.iter().any(|a| a == "--by-name");
    println!(
        "reference: Prometheus ~1.30 B/sample (incl. index), VictoriaMetrics ~0.45; target <= 0.45\n"
    );
    if !args.iter().any(|a| a == "--skip-real") {
        real(by_name).context("real capture")?;
    }
    if !args.iter().any(|a| a == "--skip-gen") {
        generated(hosts, hours, by_name).context("generated data")?;
    }
    Ok(())
}
