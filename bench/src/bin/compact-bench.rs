//! `compact-bench`: compaction throughput, peak memory and bytes per sample before and after
//! full compaction.
//!
//! Two phases, run as two processes so that the compaction's peak memory (`VmHWM`) is not
//! the data generation's:
//!
//! - `prepare` writes `--hours` of the realistic generator's data for `--series` series at
//!   `--interval` into a tenant the way ingestion does (one append per scrape, 2 h blocks cut as
//!   the head advances, the rest persisted at the end), so the tenant holds 2 h blocks exactly
//!   as a running server leaves them. The generator, seed and start time are those of
//!   `strata-load`, so other systems can be fed the same samples.
//! - `compact` opens the tenant and runs the compactor (one thread, as the server does) until
//!   nothing is left to merge, then prints samples per second of CPU-bound merging, series
//!   copied vs. re-encoded, peak RSS, and bytes per sample on disk before and after.
//!
//! Usage:
//!
//! ```text
//! cargo run --release -p strata-bench --bin compact-bench -- prepare --dir D \
//!     [--series 10000] [--hours 26] [--interval 15s] [--seed 42] [--start-ms MS]
//! cargo run --release -p strata-bench --bin compact-bench -- compact --dir D [--no-rechunk]
//! ```
//!
//! The last line is `RESULT key=value …`.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use strata_bench::fixture::{
    engine_options, flag, relaxed_sync, tenant_block_sizes, write_generated,
};
use strata_bench::{GenConfig, Generator};
use strata_compaction::{CompactionStats, CompactorOptions, MergeOptions, compact_tenant};
use strata_engine::db::{DEFAULT_TENANT, TenantDb};

fn vm_hwm_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn parse_interval_ms(s: &str) -> anyhow::Result<i64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        bail!("--interval: expected e.g. 15s, 1m, 500ms; got {s:?}")
    };
    Ok(num.parse::<i64>().context("--interval")? * mult)
}

fn open(dir: &Path) -> anyhow::Result<TenantDb> {
    let opts = engine_options(dir, relaxed_sync());
    Ok(TenantDb::open(DEFAULT_TENANT, &opts)
        .context("opening the tenant")?
        .0)
}

fn prepare(args: &[String]) -> anyhow::Result<()> {
    let dir: String = flag(args, "--dir", String::new())?;
    if dir.is_empty() {
        bail!("--dir is required");
    }
    let series: usize = flag(args, "--series", 10_000)?;
    let hours: i64 = flag(args, "--hours", 26)?;
    let interval_ms = parse_interval_ms(&flag(args, "--interval", "15s".to_string())?)?;
    let seed: u64 = flag(args, "--seed", 42)?;
    let mut cfg = GenConfig::new(seed, 1);
    cfg.interval_ms = interval_ms;
    cfg.start_ms = flag(args, "--start-ms", cfg.start_ms)?;
    let db = open(Path::new(&dir))?;
    let mut g = Generator::with_min_series(cfg, series);
    let scrapes = usize::try_from(hours * 3_600_000 / interval_ms).unwrap_or(0);
    let started = Instant::now();
    let mut samples = 0u64;
    // Cut blocks every simulated 30 minutes, as the server's maintenance would.
    let per_cut = usize::try_from((1_800_000 / interval_ms).max(1)).unwrap_or(1);
    let mut done = 0;
    while done < scrapes {
        let n = per_cut.min(scrapes - done);
        samples += write_generated(&db, &mut g, n)?;
        done += n;
        db.cut_due_blocks().context("cutting blocks")?;
    }
    db.persist_all().context("persisting the head")?;
    let (_, sizes) = tenant_block_sizes(db.dir())?;
    println!(
        "prepared: series={} scrapes={scrapes} samples={samples} blocks={} bytes={} ({:.3} B/sample) in {:.1}s",
        g.num_series(),
        db.blocks().len(),
        sizes.total(),
        sizes.total() as f64 / samples.max(1) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn compact(args: &[String]) -> anyhow::Result<()> {
    let dir: String = flag(args, "--dir", String::new())?;
    if dir.is_empty() {
        bail!("--dir is required");
    }
    let rechunk = !args.iter().any(|a| a == "--no-rechunk");
    let db = open(Path::new(&dir))?;
    let rss_open = vm_hwm_bytes().unwrap_or(0);
    let blocks_before = db.blocks().len();
    let samples: u64 = db.blocks().iter().map(|b| b.meta().stats.num_samples).sum();
    let series = db
        .blocks()
        .iter()
        .map(|b| b.meta().stats.num_series)
        .max()
        .unwrap_or(0);
    let (_, before) = tenant_block_sizes(db.dir())?;
    let opts = CompactorOptions {
        max_per_run: usize::MAX,
        merge: MergeOptions {
            chunk_samples: 7200,
            max_write_bytes_per_sec: 0,
            rechunk,
        },
        ..CompactorOptions::default()
    };
    let stats = CompactionStats::default();
    let started = Instant::now();
    let reports = compact_tenant(&db, &opts, &stats)?;
    let secs = started.elapsed().as_secs_f64();
    let rss_peak = vm_hwm_bytes().unwrap_or(0);
    let samples_in: u64 = reports.iter().map(|r| r.samples_in).sum();
    let copied: u64 = reports.iter().map(|r| r.series_copied).sum();
    let reencoded: u64 = reports.iter().map(|r| r.series_reencoded).sum();
    let (_, after) = tenant_block_sizes(db.dir())?;
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    for r in &reports {
        let m = r.output.as_ref();
        println!(
            "compaction: {} inputs -> [{}, {}] samples {} copied {} re-encoded {} in {:.2}s",
            r.inputs.len(),
            m.map_or(0, |m| m.min_time),
            m.map_or(0, |m| m.max_time),
            r.samples_in,
            r.series_copied,
            r.series_reencoded,
            r.elapsed.as_secs_f64()
        );
    }
    println!(
        "series {series}, samples {samples}, blocks {blocks_before} -> {}; {} compactions, {samples_in} samples merged in {secs:.2}s = {:.2} M samples/s; \
         series copied {copied}, re-encoded {reencoded}",
        db.blocks().len(),
        reports.len(),
        samples_in as f64 / secs.max(1e-9) / 1e6
    );
    println!(
        "bytes/sample before {:.3} (chunks {:.3}, index {:.3}), after {:.3} (chunks {:.3}, index {:.3}); peak RSS {:.0} MiB (after open {:.0} MiB)",
        before.total() as f64 / samples.max(1) as f64,
        before.chunks as f64 / samples.max(1) as f64,
        before.index as f64 / samples.max(1) as f64,
        after.total() as f64 / samples.max(1) as f64,
        after.chunks as f64 / samples.max(1) as f64,
        after.index as f64 / samples.max(1) as f64,
        mib(rss_peak),
        mib(rss_open)
    );
    println!(
        "RESULT series={series} samples={samples} compactions={} seconds={secs:.3} msamples_per_s={:.3} \
         bytes_before={} bytes_after={} peak_rss_mib={:.0} rechunk={rechunk}",
        reports.len(),
        samples_in as f64 / secs.max(1e-9) / 1e6,
        before.total(),
        after.total(),
        mib(rss_peak)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("prepare") => prepare(&args),
        Some("compact") => compact(&args),
        _ => bail!("usage: compact-bench prepare|compact --dir DIR [options]; see the module docs"),
    }
}
