//! Compaction in the running `strata` binary: a data directory with thirteen 2 h blocks and
//! overlapping backfill is compacted by the background maintenance into one 24 h block and one
//! 2 h block; the process is killed with SIGKILL at arbitrary moments while it compacts (the
//! write rate is throttled so that compactions take seconds), restarted each time, and at the
//! end every sample is present exactly once and queries return what they did before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_engine::{DEFAULT_TENANT, Labels, Matcher, SelectHints, TenantDb, db::EngineOptions};
use strata_tests::harness::{Strata, http, metric_value};

const H: i64 = 3_600_000;

type Model = BTreeMap<Labels, Vec<(i64, u64)>>;

fn open(dir: &Path) -> TenantDb {
    let opts = EngineOptions {
        data_dir: dir.to_path_buf(),
        ..EngineOptions::default()
    };
    TenantDb::open(DEFAULT_TENANT, &opts).unwrap().0
}

fn read_all(db: &TenantDb) -> Model {
    let m = Matcher::equal("job", "compact");
    db.querier()
        .select(&[m], i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap()
        .into_iter()
        .map(|s| {
            let v = s.samples(i64::MIN, i64::MAX).unwrap();
            (
                s.labels().clone(),
                v.into_iter().map(|(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// 200 series × 26 h at 15 s as thirteen 2 h blocks, plus hours 3–7 imported again (same
/// values) as overlapping blocks. Returns the model of what is stored.
fn prepare(dir: &Path) -> Model {
    let db = open(dir);
    let mut batch = BTreeMap::new();
    for i in 0..200 {
        let l = Labels::from_pairs(&[
            ("__name__", "compact_metric"),
            ("job", "compact"),
            ("i", &i.to_string()),
        ])
        .unwrap();
        let samples: Vec<(i64, f64)> = (0..26 * 240)
            .map(|k| {
                // Hardly compressible values, so that throttled compactions take seconds.
                let v = ((i * 7919 + k * 104_729) % 1_000_003) as f64 / 7.0;
                (k * 15_000, v)
            })
            .collect();
        batch.insert(l, samples);
    }
    db.import(&batch).unwrap();
    let again: BTreeMap<Labels, Vec<(i64, f64)>> = batch
        .iter()
        .map(|(l, s)| {
            let part = s
                .iter()
                .copied()
                .filter(|p| p.0 >= 3 * H && p.0 < 7 * H)
                .collect();
            (l.clone(), part)
        })
        .collect();
    db.import(&again).unwrap();
    assert_eq!(db.blocks().len(), 16);
    read_all(&db)
}

#[test]
fn kill_9_during_compaction_keeps_every_sample_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let expected = prepare(&data);
    let distinct: u64 = expected.values().map(|v| v.len() as u64).sum();
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        "[storage]\nmaintenance_interval = \"1s\"\n[compaction]\nmax_write_rate = \"2MiB\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    // Kill at spread-out moments: right after start, mid-merge, between merges.
    let mut killed_mid_write = 0;
    for delay_ms in [300u64, 1700, 2900, 1100, 4300] {
        let s = Strata::start(&data, &["--config", cfg]).unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        drop(s); // SIGKILL
        let tenant_dir = data.join("tenants").join(DEFAULT_TENANT).join("metrics");
        killed_mid_write += std::fs::read_dir(&tenant_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
    }
    assert!(
        killed_mid_write > 0,
        "no kill landed while a compaction was writing"
    );

    let s = Strata::start(&data, &["--config", cfg]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let series = format!("strata_blocks_loaded{{tenant=\"{DEFAULT_TENANT}\"}}");
    loop {
        let (code, text) = http(&s.addr, "GET", "/metrics", &[], b"").unwrap();
        assert_eq!(code, 200);
        if metric_value(&text, &series) == Some(2.0) {
            assert_eq!(
                metric_value(&text, "strata_compactions_failed_total"),
                Some(0.0)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not finish:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A query through the API sees the merged data.
    let (code, body) = http(
        &s.addr,
        "GET",
        "/api/v1/query?query=count(count_over_time(compact_metric[26h]))&time=93600",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"200\""), "{body}");
    let (code, body) = http(
        &s.addr,
        "POST",
        "/api/v1/admin/tsdb/clean_tombstones",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 204, "{body}");
    assert!(s.stop().unwrap(), "clean shutdown");

    let db = open(&data);
    let metas = db.block_metas();
    assert_eq!(metas.len(), 2, "{metas:?}");
    assert_eq!((metas[0].min_time, metas[0].max_time), (0, 24 * H - 1));
    let stored: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(stored, distinct, "every sample stored exactly once");
    assert_eq!(read_all(&db), expected);
    let leftovers: Vec<_> = std::fs::read_dir(db.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
