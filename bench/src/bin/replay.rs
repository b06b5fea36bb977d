//! `replay`: WAL replay throughput and start-up time, headline figures (targets: ≥ 5 M
//! samples/s; < 30 s for 1 M series × 2 h).
//!
//! Writes N generated series × H hours at 15 s through the engine (WAL synced in the
//! background, one batch per scrape, as remote write delivers them), closes and drops the
//! engine, then times `Engine::open`, which loads blocks (none here) and replays the whole WAL
//! into a fresh head.
//!
//! Usage: `cargo run --release -p strata-bench --bin replay -- [--series 100000] [--hours 2]
//! [--seed 42] [--dir DIR]`
//!
//! With `--dir`, the data directory is kept: a first run writes it, later runs with the same
//! `--dir` find the WAL there and only time the replay (for profiling start-up).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use strata_bench::fixture::{
    dir_size, engine_options, flag, relaxed_sync, vm_rss_bytes, write_generated,
};
use strata_bench::{GenConfig, Generator};
use strata_engine::db::Engine;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = flag(&args, "--series", 100_000)?;
    let hours: f64 = flag(&args, "--hours", 2.0)?;
    let seed: u64 = flag(&args, "--seed", 42)?;

    let kept: Option<PathBuf> = match flag(&args, "--dir", String::new())? {
        d if d.is_empty() => None,
        d => Some(PathBuf::from(d)),
    };
    let temp = tempfile::tempdir()?;
    let root = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let opts = engine_options(&root, relaxed_sync());
    let wal_dir = root.join("tenants/bench/metrics/wal");
    let reuse = kept.is_some() && wal_dir.is_dir();

    let written = if reuse {
        println!("reusing the WAL in {}", wal_dir.display());
        None
    } else {
        let mut g = Generator::with_min_series(GenConfig::new(seed, 0), n);
        let scrapes = (hours * 3_600_000.0 / g.config().interval_ms as f64).round() as usize;
        let series = g.num_series();
        let t = Instant::now();
        let (engine, _) = Engine::open(opts.clone())?;
        let db = engine.tenant("bench")?;
        let written = write_generated(&db, &mut g, scrapes)?;
        engine.close()?;
        drop(engine);
        let write_s = t.elapsed().as_secs_f64();
        println!(
            "wrote {series} series × {scrapes} scrapes = {written} samples in {write_s:.1} s ({:.2} M samples/s incl. generation)",
            written as f64 / write_s / 1e6,
        );
        Some(written)
    };
    let wal_bytes = dir_size(&wal_dir).context("measure WAL")?;

    let t = Instant::now();
    let (engine, reports) = Engine::open(opts)?;
    let open_s = t.elapsed().as_secs_f64();
    let r = reports.first().context("no tenant replayed")?;
    if let Some(written) = written {
        anyhow::ensure!(
            r.samples == written,
            "replayed {} of {written} samples",
            r.samples
        );
    }
    let replay_s = r.replay_time.as_secs_f64();
    println!(
        "WAL {:.0} MiB = {:.1} B/sample",
        wal_bytes as f64 / (1u64 << 20) as f64,
        wal_bytes as f64 / r.samples.max(1) as f64
    );
    println!(
        "Engine::open: {open_s:.2} s (WAL replay {replay_s:.2} s): {} series, {} samples, {} records => {:.2} M samples/s (target >= 5), {:.0} MB/s of WAL",
        r.series,
        r.samples,
        r.wal_records,
        r.samples as f64 / replay_s / 1e6,
        wal_bytes as f64 / replay_s / 1e6
    );
    // Absolute, not a difference: the writing phase's freed head is reused by the allocator.
    if let Some(rss) = vm_rss_bytes() {
        println!(
            "process RSS after replay {:.0} MiB",
            rss as f64 / (1u64 << 20) as f64
        );
    }
    drop(engine);
    Ok(())
}
