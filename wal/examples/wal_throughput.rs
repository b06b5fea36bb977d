//! Measures WAL append and replay throughput without criterion.
//!
//! ```text
//! cargo run --release -p strata-wal --example wal_throughput -- \
//!     [--records 1000000] [--payload 1024] [--batch 64] [--threads 4] [--concurrent 50000] \
//!     [--dir PATH]
//! ```
//!
//! Runs, each in a fresh directory (a temporary one under `--dir`, default the system temp
//! dir):
//! 1. one thread appending `--records` records of `--payload` bytes in batches of `--batch`
//!    records with `SyncMode::Interval(100ms)`, then open + replay of everything;
//! 2. the same with `SyncMode::EveryBatch` (one fdatasync per batch);
//! 3. `--threads` threads appending `--concurrent` single-record batches in total with
//!    `SyncMode::EveryBatch`, which exercises group commit.
//!
//! Replay reads from the page cache (the data was just written), so it measures the WAL's CPU
//! cost, not the disk.

#![expect(clippy::print_stdout, reason = "a measurement tool reports on stdout")]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_wal::{SyncMode, Wal, WalOptions};

struct Args {
    records: usize,
    payload: usize,
    batch: usize,
    threads: usize,
    concurrent: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        records: 1_000_000,
        payload: 1024,
        batch: 64,
        threads: 4,
        concurrent: 50_000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--records" => args.records = value.parse()?,
            "--payload" => args.payload = value.parse()?,
            "--batch" => args.batch = value.parse()?,
            "--threads" => args.threads = value.parse()?,
            "--concurrent" => args.concurrent = value.parse()?,
            "--dir" => args.dir = PathBuf::from(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if args.batch == 0 || args.threads == 0 {
        return Err("--batch and --threads must be positive".into());
    }
    Ok(args)
}

fn rate(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

fn report(label: &str, records: u64, bytes: u64, elapsed: Duration) {
    println!(
        "{label:<44} {records:>9} records {:>9.1} MiB in {:>8.3} s: \
         {:>10.0} records/s {:>8.1} MiB/s",
        bytes as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        rate(records as f64, elapsed),
        rate(bytes as f64 / 1048576.0, elapsed),
    );
}

fn append_single_thread(dir: &Path, args: &Args, sync: SyncMode) -> Result<(), Box<dyn Error>> {
    let options = WalOptions {
        sync,
        ..WalOptions::default()
    };
    let (wal, _, _) = Wal::open(dir, options.clone())?;
    let payload = vec![0x5Au8; args.payload];
    let batch: Vec<(u8, &[u8])> = (0..args.batch).map(|_| (1u8, payload.as_slice())).collect();
    let batches = args.records / args.batch;
    let started = Instant::now();
    for _ in 0..batches {
        wal.append(&batch)?;
    }
    wal.close()?;
    let elapsed = started.elapsed();
    let records = (batches * args.batch) as u64;
    let bytes = records * args.payload as u64;
    report(
        &format!("append {sync:?}, batch {}", args.batch),
        records,
        bytes,
        elapsed,
    );

    let started = Instant::now();
    let (wal, mut replay, _) = Wal::open(dir, options)?;
    let opened = started.elapsed();
    let mut seen = 0u64;
    let mut payload_bytes = 0u64;
    while let Some(record) = replay.next_record() {
        let record = record?;
        seen += 1;
        payload_bytes += record.payload.len() as u64;
    }
    let total = started.elapsed();
    if seen != records {
        return Err(format!("replayed {seen} records, wrote {records}").into());
    }
    report("  open (verify every frame)", seen, payload_bytes, opened);
    report(
        "  replay iteration only",
        seen,
        payload_bytes,
        total - opened,
    );
    report("  open + replay", seen, payload_bytes, total);
    drop(wal);
    Ok(())
}

fn append_concurrent(dir: &Path, args: &Args) -> Result<(), Box<dyn Error>> {
    let (wal, _, _) = Wal::open(dir, WalOptions::default())?;
    let wal = Arc::new(wal);
    let per_thread = (args.concurrent / args.threads).max(1);
    let payload_len = args.payload;
    let started = Instant::now();
    let handles: Vec<_> = (0..args.threads)
        .map(|_| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || -> Result<(), strata_wal::WalError> {
                let payload = vec![0xA5u8; payload_len];
                for _ in 0..per_thread {
                    wal.append(&[(1, payload.as_slice())])?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.join().map_err(|_| "append thread panicked")??;
    }
    let elapsed = started.elapsed();
    let records = (per_thread * args.threads) as u64;
    report(
        &format!("append EveryBatch, {} threads x 1 record", args.threads),
        records,
        records * payload_len as u64,
        elapsed,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    println!(
        "strata-wal throughput: {} records of {} B, batches of {}",
        args.records, args.payload, args.batch
    );
    for sync in [
        SyncMode::Interval(Duration::from_millis(100)),
        SyncMode::EveryBatch,
    ] {
        let dir = tempfile::tempdir_in(&args.dir)?;
        append_single_thread(dir.path(), &args, sync)?;
    }
    let dir = tempfile::tempdir_in(&args.dir)?;
    append_concurrent(dir.path(), &args)?;
    Ok(())
}
