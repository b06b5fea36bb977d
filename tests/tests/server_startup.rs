//! The real `strata` binary against a prepared data directory: it loads blocks, replays the
//! WAL, reports what it found, refuses to start on WAL corruption (naming segment and offset)
//! unless told to repair, refuses a damaged block, and shuts down cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_engine::{AppendSeries, DEFAULT_TENANT, Engine, EngineOptions, HeadOptions, Labels};

/// Path of the `strata` binary built by `cargo test --workspace` (the server crate's own
/// integration tests make cargo build it before any test runs).
fn strata_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/strata
    let bin = exe.parent().unwrap().parent().unwrap().join("strata");
    assert!(
        bin.exists(),
        "{} not found: run `cargo test --workspace` (or `cargo build -p strata-server`) first",
        bin.display()
    );
    bin
}

fn opts(dir: &Path) -> EngineOptions {
    EngineOptions {
        data_dir: dir.to_path_buf(),
        head: HeadOptions {
            block_range_ms: 3_600_000,
            ..HeadOptions::default()
        },
        ..EngineOptions::default()
    }
}

/// Writes 2.5 h of data for 10 series: one block is cut, the rest stays in the WAL.
fn prepare(dir: &Path) -> (u64, u64) {
    let (engine, _) = Engine::open(opts(dir)).unwrap();
    let labels: Vec<Labels> = (0..10)
        .map(|i| Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("h{i}"))]).unwrap())
        .collect();
    let mut t = 0;
    while t < 9_000_000 {
        let samples: Vec<[(i64, f64); 1]> = (0..10).map(|i| [(t, i as f64)]).collect();
        let batch: Vec<AppendSeries> = labels
            .iter()
            .zip(&samples)
            .map(|(l, s)| AppendSeries {
                labels: l,
                samples: s,
            })
            .collect();
        engine.append(DEFAULT_TENANT, &batch).unwrap();
        t += 60_000;
    }
    let tenant = engine.tenant(DEFAULT_TENANT).unwrap();
    let cut = tenant.cut_due_blocks().unwrap();
    assert_eq!(cut.len(), 1);
    // More writes after the cut land in a fresh WAL segment.
    while t < 9_600_000 {
        let samples: Vec<[(i64, f64); 1]> = (0..10).map(|i| [(t, i as f64)]).collect();
        let batch: Vec<AppendSeries> = labels
            .iter()
            .zip(&samples)
            .map(|(l, s)| AppendSeries {
                labels: l,
                samples: s,
            })
            .collect();
        engine.append(DEFAULT_TENANT, &batch).unwrap();
        t += 60_000;
    }
    let in_head = 10 * (9_600_000 - 3_600_000) / 60_000;
    (cut[0].stats.num_samples, in_head as u64)
}

fn start(data: &Path, extra: &[&str]) -> Child {
    Command::new(strata_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .env("STRATA_OTLP_GRPC_ADDR", "none")
        .env("STRATA_OTLP_HTTP_ADDR", "none")
        .args(extra)
        .env("STRATA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until stderr contains `needle` (returns everything read so far) or the process exits.
fn wait_for(child: &mut Child, needle: &str) -> String {
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !log.contains(needle) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => log.push_str(&s),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Drain the rest in the background so the child never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    log
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn starts_replays_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (in_block, in_head) = prepare(dir.path());
    let mut child = start(dir.path(), &[]);
    let log = wait_for(&mut child, "storage ready");
    assert!(log.contains("storage ready"), "log: {log}");
    assert!(log.contains("blocks=1"), "log: {log}");
    assert!(log.contains(&format!("samples={in_head}")), "log: {log}");
    assert!(in_block > 0);
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn corrupt_wal_refuses_to_start_unless_repaired() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let wal = dir.path().join("tenants/anonymous/metrics/wal");
    // Damage the middle of the newest segment, which holds many frames: valid frames follow
    // the damage, so this is corruption, not a torn tail.
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .collect();
    segs.sort();
    let seg = segs.last().unwrap().clone();
    let seg_no: u64 = seg.file_name().unwrap().to_string_lossy().parse().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    assert!(bytes.len() > 1000, "segment too small: {}", bytes.len());
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    let mut child = start(dir.path(), &[]);
    let log = wait_for(&mut child, "opening data directory");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "strata started on a corrupt WAL; log: {log}"
    );
    assert!(log.contains("corrupt WAL segment"), "log: {log}");
    assert!(log.contains(&format!("segment {seg_no}")), "log: {log}");
    assert!(log.contains("offset"), "log: {log}");

    let mut child = start(dir.path(), &["--repair-wal"]);
    let log = wait_for(&mut child, "storage ready");
    assert!(log.contains("WAL repaired"), "log: {log}");
    assert!(log.contains("storage ready"), "log: {log}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn truncated_block_index_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let metrics = dir.path().join("tenants/anonymous/metrics");
    let block = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("meta.json").exists())
        .unwrap();
    let index = block.join("index");
    let len = std::fs::metadata(&index).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let mut child = start(dir.path(), &[]);
    let log = wait_for(&mut child, "opening data directory");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "strata started with a truncated block; log: {log}"
    );
    assert!(
        log.contains("index"),
        "error must name the file; log: {log}"
    );
}
