//! `flush-head`: persists the head of a stopped Strata's data directory into blocks and reports
//! the on-disk size per sample.
//!
//! Usage: `cargo run --release -p strata-bench --bin flush-head -- --data-dir DIR
//! [--block-range 2h]`
//!
//! Why: a running Strata keeps the newest samples in its head (memory plus WAL), so the size
//! of its data directory right after an ingest test measures the WAL, not the storage format.
//! Prometheus (snapshot with head) and VictoriaMetrics (`force_flush`) can both be asked to
//! write everything in their final format; this tool does the same for Strata, offline, so the
//! three "bytes per sample on disk" figures compare like with like. It opens the directory
//! with [`Engine::open`] (replaying every tenant's WAL), calls `persist_all()` for each tenant,
//! and counts the bytes of all block directories (the WAL excluded) against the samples the
//! blocks' `meta.json` say they hold. `--block-range` must match the server's
//! `storage.block_range` (default 2 h) so the blocks are cut where the server would cut them.
//!
//! The last line is a machine-readable `RESULT key=value …` line for
//! `bench/compare-metrics.sh`.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use strata_bench::fixture::{BlockSizes, flag, relaxed_sync, tenant_block_sizes};
use strata_engine::{Engine, EngineOptions, HeadOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: flush-head --data-dir DIR [--block-range 2h]");
        return Ok(());
    }
    let dir: String = flag(&args, "--data-dir", String::new())?;
    if dir.is_empty() {
        bail!("--data-dir is required");
    }
    let dir = PathBuf::from(dir);
    if !dir.join("tenants").is_dir() {
        bail!(
            "{} is not a Strata data directory (no tenants/)",
            dir.display()
        );
    }
    let block_range_ms = parse_hours_minutes(&flag(&args, "--block-range", "2h".to_string())?)?;
    let sum = flush(&dir, block_range_ms)?;
    let (sizes, samples, series, blocks) = (sum.sizes, sum.samples, sum.series, sum.blocks);
    let per_sample = if samples > 0 {
        sizes.total() as f64 / samples as f64
    } else {
        0.0
    };
    println!(
        "blocks: {blocks}, samples: {samples}, bytes: {} (chunks {}, index {}, other {}) => \
         {per_sample:.3} bytes/sample",
        sizes.total(),
        sizes.chunks,
        sizes.index,
        sizes.other
    );
    println!(
        "RESULT blocks={blocks} samples={samples} series={series} bytes={} chunk_bytes={} \
         index_bytes={} bytes_per_sample={per_sample:.4}",
        sizes.total(),
        sizes.chunks,
        sizes.index
    );
    Ok(())
}

/// What [`flush`] found on disk after persisting.
struct Summary {
    sizes: BlockSizes,
    samples: u64,
    series: u64,
    blocks: usize,
}

/// Opens the data directory, persists every tenant's head into blocks and measures all blocks.
fn flush(dir: &Path, block_range_ms: i64) -> anyhow::Result<Summary> {
    let opts = EngineOptions {
        data_dir: dir.to_path_buf(),
        head: HeadOptions {
            block_range_ms,
            ..HeadOptions::default()
        },
        wal_sync: relaxed_sync(),
        ..EngineOptions::default()
    };
    let started = std::time::Instant::now();
    let (engine, reports) = Engine::open(opts).context("opening the data directory")?;
    let replayed: u64 = reports.iter().map(|r| r.samples).sum();
    println!(
        "opened {} tenant(s), {} samples replayed from the WAL in {:.1}s",
        reports.len(),
        replayed,
        started.elapsed().as_secs_f64()
    );

    let mut sizes = BlockSizes::default();
    let mut samples = 0u64;
    let mut series = 0u64;
    let mut blocks = 0usize;
    for id in engine.tenant_ids() {
        let Some(db) = engine.existing_tenant(&id) else {
            continue;
        };
        let new = db
            .persist_all()
            .with_context(|| format!("persisting the head of tenant {id}"))?;
        let metas = db.block_metas();
        let (dirs, s) = tenant_block_sizes(db.dir())?;
        let t_samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
        let t_series: u64 = metas.iter().map(|m| m.stats.num_series).sum();
        println!(
            "tenant {id}: {} new block(s), {} block(s) in all, {} samples, {} series (summed \
             over blocks), {} bytes (chunks {}, index {}, other {})",
            new.len(),
            dirs.len(),
            t_samples,
            t_series,
            s.total(),
            s.chunks,
            s.index,
            s.other
        );
        sizes.add(s);
        samples += t_samples;
        series += t_series;
        blocks += dirs.len();
    }
    engine.close().context("syncing the WAL")?;
    Ok(Summary {
        sizes,
        samples,
        series,
        blocks,
    })
}

/// Parses a block range such as `2h`, `90m` or `1h30m` into milliseconds.
fn parse_hours_minutes(s: &str) -> anyhow::Result<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .with_context(|| format!("invalid block range {s:?}"))?;
        num.clear();
        total += match c {
            'h' => n * 3_600_000,
            'm' => n * 60_000,
            's' => n * 1_000,
            _ => bail!("invalid block range {s:?}: unknown unit {c:?}"),
        };
    }
    if !num.is_empty() || total <= 0 {
        bail!("invalid block range {s:?} (expected e.g. 2h or 90m)");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn block_ranges_parse() {
        assert_eq!(parse_hours_minutes("2h").unwrap(), 7_200_000);
        assert_eq!(parse_hours_minutes("1h30m").unwrap(), 5_400_000);
        assert!(parse_hours_minutes("2").is_err());
        assert!(parse_hours_minutes("0h").is_err());
        assert!(parse_hours_minutes("2x").is_err());
    }

    /// Data written through the engine (as the server writes it) is all in the WAL; after
    /// `flush` every sample is in blocks, and the bytes counted are exactly the block files.
    #[test]
    fn flush_persists_every_sample_of_every_tenant() {
        use strata_bench::fixture::{dir_size, engine_options, write_generated};
        use strata_bench::{GenConfig, Generator};

        let dir = tempfile::tempdir().unwrap();
        let mut written = 0;
        {
            let (engine, _) = Engine::open(engine_options(dir.path(), relaxed_sync())).unwrap();
            for (tenant, seed) in [("anonymous", 1), ("team-b", 2)] {
                let db = engine.tenant(tenant).unwrap();
                let mut g = Generator::new(GenConfig::new(seed, 1));
                // 600 scrapes at 15 s = 2.5 h: spans two 2 h block ranges.
                written += write_generated(&db, &mut g, 600).unwrap();
            }
            engine.close().unwrap();
        }
        let sum = flush(dir.path(), 7_200_000).unwrap();
        assert_eq!(sum.samples, written);
        assert!(sum.blocks >= 4, "blocks: {}", sum.blocks);
        let mut on_disk = 0;
        for tenant in ["anonymous", "team-b"] {
            let tdir = dir.path().join("tenants").join(tenant).join("metrics");
            for e in std::fs::read_dir(&tdir).unwrap() {
                let p = e.unwrap().path();
                if p.join("meta.json").is_file() {
                    on_disk += dir_size(&p).unwrap();
                }
            }
        }
        assert_eq!(sum.sizes.total(), on_disk);
        assert!(sum.sizes.chunks > 0 && sum.sizes.index > 0);
        // A second run finds nothing left in the head and the same blocks.
        let again = flush(dir.path(), 7_200_000).unwrap();
        assert_eq!((again.samples, again.blocks), (sum.samples, sum.blocks));
    }
}
