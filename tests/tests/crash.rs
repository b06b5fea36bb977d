//! Crash test: a child process appends with acknowledgements and is killed with SIGKILL at a
//! random moment (including while it cuts blocks and checkpoints the WAL); the store is then
//! reopened and must contain every acknowledged batch in full, and no batch in part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_engine::{DEFAULT_TENANT, Engine, EngineOptions, HeadOptions, Matcher, SelectHints};
use strata_tests::{CRASH_SERIES, CRASH_STEP_MS, crash_sample, crash_series};

fn opts(dir: &Path, block_range: i64) -> EngineOptions {
    EngineOptions {
        data_dir: dir.to_path_buf(),
        head: HeadOptions {
            block_range_ms: block_range,
            ooo_window_ms: 0,
            ..HeadOptions::default()
        },
        wal_segment_size: 64 << 10,
        ..EngineOptions::default()
    }
}

/// Runs the writer from batch `start` and kills it after `kill_after` acknowledgements or a
/// deadline; returns the highest acknowledged batch seen.
fn run_and_kill(
    dir: &Path,
    start: u64,
    block_range: i64,
    kill_after: u64,
    extra_delay_us: u64,
) -> Option<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-crash-writer"))
        .arg(dir)
        .arg(start.to_string())
        .arg(block_range.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut last_ack = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acks = 0;
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("ACK ") {
            last_ack = Some(n.parse::<u64>().unwrap());
            acks += 1;
            if acks >= kill_after || Instant::now() > deadline {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_micros(extra_delay_us));
    // `Child::kill` sends SIGKILL on Unix: no chance to flush or clean up.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "child must have been killed");
    last_ack
}

/// Reads back every batch; returns the number of complete batches (a prefix) and asserts that
/// nothing after it is present.
fn verify(dir: &Path, block_range: i64, acked: Option<u64>) -> u64 {
    let (engine, _) = Engine::open(opts(dir, block_range)).unwrap();
    let q = engine.querier(DEFAULT_TENANT).unwrap();
    let series = q
        .select(
            &[Matcher::equal("job", "crash")],
            i64::MIN,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    let mut per_series = vec![Vec::new(); CRASH_SERIES];
    for s in &series {
        let id: usize = s.labels().get("id").unwrap().parse().unwrap();
        assert_eq!(s.labels(), &crash_series(id));
        per_series[id] = s.samples(i64::MIN, i64::MAX).unwrap();
    }
    // Batches present for each series must be the prefix 0..k with exact values.
    let counts: Vec<usize> = per_series.iter().map(Vec::len).collect();
    let k = counts[0];
    assert!(
        counts.iter().all(|&c| c == k),
        "a batch is present in part: per-series counts {counts:?}"
    );
    for (i, samples) in per_series.iter().enumerate() {
        for (b, &(t, v)) in samples.iter().enumerate() {
            let (et, ev) = crash_sample(b as u64, i);
            assert_eq!(t, et, "series {i} batch {b}: timestamp");
            assert_eq!(v.to_bits(), ev.to_bits(), "series {i} batch {b}: value");
        }
    }
    if let Some(a) = acked {
        assert!(
            k as u64 > a,
            "acknowledged batch {a} missing: only {k} batches survived"
        );
    }
    assert_eq!(samples_at(&per_series, k as i64 * CRASH_STEP_MS), 0);
    k as u64
}

fn samples_at(per_series: &[Vec<(i64, f64)>], t: i64) -> usize {
    per_series.iter().flatten().filter(|s| s.0 >= t).count()
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Small blocks (20 s of data) so that block cuts and WAL checkpoints happen often, and
    // the kill can land in the middle of one.
    let block_range = 20 * CRASH_STEP_MS;
    let mut next = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 20 + seed % 150;
        let delay = (seed >> 20) % 3000;
        let acked = run_and_kill(dir.path(), next, block_range, kill_after, delay);
        assert!(
            acked.is_some(),
            "round {round}: writer acknowledged nothing"
        );
        next = verify(dir.path(), block_range, acked);
        eprintln!("round {round}: killed after ack {acked:?} (+{delay}us), {next} batches durable");
    }
    // The store is usable after all that: blocks were cut along the way.
    let blocks = std::fs::read_dir(dir.path().join("tenants/anonymous/metrics"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert!(
        blocks > 0,
        "expected blocks to have been cut during the run"
    );
}
