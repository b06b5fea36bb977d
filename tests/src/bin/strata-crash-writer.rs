//! Child process of the crash tests: appends deterministic batches to an engine and prints
//! `ACK <batch>` on stdout after each append returns (i.e. after the batch is durable). The
//! parent kills it with SIGKILL at a random moment, reopens the data directory and checks that
//! every acknowledged batch is present in full and no batch is present in part.
//!
//! Usage: `strata-crash-writer <data-dir> <start-batch> <block-range-ms>`

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;

use strata_engine::{AppendSeries, DEFAULT_TENANT, Engine, EngineOptions, HeadOptions};
use strata_tests::{CRASH_SERIES, crash_sample, crash_series};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("missing data dir"))?,
    );
    let start: u64 = args.next().unwrap_or_else(|| "0".into()).parse()?;
    let block_range: i64 = args.next().unwrap_or_else(|| "60000".into()).parse()?;
    let opts = EngineOptions {
        data_dir: dir,
        head: HeadOptions {
            block_range_ms: block_range,
            ooo_window_ms: 0,
            ..HeadOptions::default()
        },
        wal_segment_size: 64 << 10,
        ..EngineOptions::default()
    };
    let (engine, _) = Engine::open(opts)?;
    let labels: Vec<_> = (0..CRASH_SERIES).map(crash_series).collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "READY")?;
    out.flush()?;
    let tenant = engine.tenant(DEFAULT_TENANT)?;
    for b in start.. {
        let samples: Vec<[(i64, f64); 1]> =
            (0..CRASH_SERIES).map(|i| [crash_sample(b, i)]).collect();
        let batch: Vec<AppendSeries> = labels
            .iter()
            .zip(&samples)
            .map(|(l, s)| AppendSeries {
                labels: l,
                samples: s,
            })
            .collect();
        let rep = tenant.append(&batch)?;
        anyhow::ensure!(
            rep.rejected == 0,
            "batch {b} rejected samples: {:?}",
            rep.errors
        );
        writeln!(out, "ACK {b}")?;
        out.flush()?;
        if b % 50 == 49 {
            tenant.cut_due_blocks()?;
        }
    }
    Ok(())
}
