//! Compaction against a reference model: whatever blocks exist (overlapping, out of order,
//! duplicated, tombstoned) and whatever compactions run, queries answer exactly what a plain
//! map of the written samples minus the deleted ones says; reopening the tenant changes
//! nothing; a crash between publishing the output and removing the inputs loses and
//! duplicates nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_compaction::{
    CompactionStats, CompactorOptions, MergeOptions, Reason, clean_tombstones, compact_blocks,
    compact_tenant,
};
use strata_engine::block::{Tombstones, write_tombstones};
use strata_engine::db::EngineOptions;
use strata_engine::{Labels, Matcher, SelectHints, TenantDb};

const H: i64 = 3_600_000;

type Model = BTreeMap<Labels, BTreeMap<i64, f64>>;

fn opts(dir: &std::path::Path) -> EngineOptions {
    EngineOptions {
        data_dir: dir.to_path_buf(),
        ..EngineOptions::default()
    }
}

fn open(dir: &std::path::Path) -> TenantDb {
    TenantDb::open("t", &opts(dir)).unwrap().0
}

fn series(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]).unwrap()
}

/// Everything the tenant returns, as a model.
fn read_all(db: &TenantDb) -> Model {
    let q = db.querier();
    let m = Matcher::equal("__name__", "m");
    let mut out = Model::new();
    for s in q
        .select(&[m], i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap()
    {
        let samples = s.samples(i64::MIN, i64::MAX).unwrap();
        if !samples.is_empty() {
            out.insert(s.labels().clone(), samples.into_iter().collect());
        }
    }
    out
}

/// Bit-exact comparison (NaN-safe).
fn same(a: &Model, b: &Model) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((la, sa), (lb, sb))| {
            la == lb
                && sa.len() == sb.len()
                && sa
                    .iter()
                    .zip(sb)
                    .all(|((ta, va), (tb, vb))| ta == tb && va.to_bits() == vb.to_bits())
        })
}

/// Imports a batch (each batch becomes its own aligned 2 h blocks, overlapping earlier ones).
fn import(db: &TenantDb, model: &mut Model, batch: &BTreeMap<Labels, Vec<(i64, f64)>>) {
    db.import(batch).unwrap();
    for (l, samples) in batch {
        let m = model.entry(l.clone()).or_default();
        for &(t, v) in samples {
            // Values are a function of (series, timestamp), so duplicates agree.
            m.insert(t, v);
        }
    }
}

fn value(series: usize, t: i64) -> f64 {
    (series as f64) * 1000.0 + (t / 1000) as f64 * 0.5
}

/// Deletes `[a, b]` of series `s` as the delete API does: a tombstone, clipped to the block,
/// in every block holding the series in that range (only blocks from index `first` on, to also
/// cover partial deletions); reopens and applies the deletion to the model.
fn tombstone(dir: &std::path::Path, first: usize, s: usize, a: i64, b: i64, model: &mut Model) {
    let db = open(dir);
    let blocks = db.blocks();
    let labels = series(s);
    let first = first % blocks.len().max(1);
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for (k, block) in blocks.iter().enumerate() {
        let ids = block.all_postings();
        let Some(id) = ids
            .iter()
            .find(|&id| block.series(id).map(|(l, _)| l == labels).unwrap_or(false))
        else {
            continue;
        };
        let (lo, hi) = (a.max(block.meta().min_time), b.min(block.meta().max_time));
        if lo > hi {
            continue;
        }
        let (_, chunks) = block.series(id).unwrap();
        let mut held = Vec::new();
        for c in chunks {
            let samples = strata_engine::chunk::decode_all(
                strata_engine::chunk::Encoding::from_u8(c.encoding).unwrap(),
                block.chunk(&c).unwrap(),
            )
            .unwrap();
            held.extend(
                samples
                    .into_iter()
                    .map(|p| p.0)
                    .filter(|&t| t >= lo && t <= hi && !block.tombstones().is_deleted(id, t)),
            );
        }
        if k < first {
            // Blocks before `first` are not touched: they keep what they hold.
            kept.extend(held);
            continue;
        }
        let mut t = block.tombstones().clone();
        t.add(id, lo, hi);
        write_tombstones(block.dir(), &t).unwrap();
        deleted.extend(held);
    }
    if let Some(m) = model.get_mut(&labels) {
        m.retain(|t, _| !deleted.contains(t) || kept.contains(t));
        if m.is_empty() {
            model.remove(&labels);
        }
    }
}

fn compact_one_at_a_time(dir: &std::path::Path, model: &Model) -> usize {
    let db = open(dir);
    let opts = CompactorOptions {
        max_per_run: 1,
        merge: MergeOptions {
            chunk_samples: 50,
            ..MergeOptions::default()
        },
        ..CompactorOptions::default()
    };
    let stats = CompactionStats::default();
    let mut n = 0;
    loop {
        let done = compact_tenant(&db, &opts, &stats).unwrap();
        if done.is_empty() {
            break;
        }
        n += done.len();
        assert!(same(&read_all(&db), model), "after compaction {n}");
        assert!(n < 200, "compaction does not converge");
    }
    // Converged: no two raw blocks overlap.
    let metas = db.block_metas();
    for w in metas.windows(2) {
        assert!(w[1].min_time > w[0].max_time, "{metas:?}");
    }
    n
}

#[derive(Debug, Clone)]
enum Op {
    /// Samples of `series` at `start + k*step` for k < n (jittered), as one import.
    Import {
        series: usize,
        start: i64,
        step: i64,
        n: usize,
    },
    Delete {
        block: usize,
        series: usize,
        from: i64,
        len: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..4, 0i64..30 * H, 1_000i64..600_000, 1usize..400).prop_map(
            |(series, start, step, n)| Op::Import { series, start, step, n }
        ),
        1 => (0usize..20, 0usize..4, 0i64..30 * H, 0i64..4 * H).prop_map(
            |(block, series, from, len)| Op::Delete { block, series, from, len }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_preserves_query_results(ops in prop::collection::vec(op(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Import { series: s, start, step, n } => {
                    let db = open(dir.path());
                    let mut samples: Vec<(i64, f64)> = (0..n as i64)
                        .map(|k| start + k * step + (k * 7919) % (step / 3).max(1))
                        .map(|t| (t, value(s, t)))
                        .collect();
                    samples.sort_by_key(|p| p.0);
                    samples.dedup_by_key(|p| p.0);
                    let mut batch = BTreeMap::new();
                    batch.insert(series(s), samples);
                    import(&db, &mut model, &batch);
                }
                Op::Delete { block, series: s, from, len } => {
                    tombstone(dir.path(), block, s, from, from + len, &mut model);
                }
            }
        }
        let db = open(dir.path());
        prop_assert!(same(&read_all(&db), &model), "before compaction");
        drop(db);
        compact_one_at_a_time(dir.path(), &model);
        let db = open(dir.path());
        prop_assert!(same(&read_all(&db), &model), "after reopening");
        // Clean the remaining tombstones: nothing changes for queries, no tombstones remain.
        clean_tombstones(&db, &CompactorOptions::default(), &CompactionStats::default()).unwrap();
        prop_assert!(same(&read_all(&db), &model), "after clean_tombstones");
        prop_assert!(db.blocks().iter().all(|b| b.tombstones().is_empty()));
    }
}

fn two_hour_blocks(db: &TenantDb, model: &mut Model, blocks: i64, series_n: usize, step: i64) {
    let mut batch = BTreeMap::new();
    for s in 0..series_n {
        let samples: Vec<(i64, f64)> = (0..blocks * 2 * H / step)
            .map(|k| (k * step, value(s, k * step)))
            .collect();
        batch.insert(series(s), samples);
    }
    import(db, model, &batch);
}

#[test]
fn levels_merge_to_the_top_and_rechunk() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut model = Model::new();
    // 13 two-hour blocks: 0–24 h complete, 24–26 h not.
    two_hour_blocks(&db, &mut model, 13, 20, 15_000);
    assert_eq!(db.blocks().len(), 13);
    let before: u64 = db.blocks().iter().map(|b| b.meta().stats.num_chunks).sum();
    let stats = CompactionStats::default();
    let done = compact_tenant(
        &db,
        &CompactorOptions {
            max_per_run: 100,
            ..Default::default()
        },
        &stats,
    )
    .unwrap();
    // Four 6 h merges, then one 24 h merge.
    let reasons: Vec<Reason> = done
        .iter()
        .map(|r| {
            let m = r.output.as_ref().unwrap();
            Reason::Level(m.max_time - m.min_time + 1)
        })
        .collect();
    assert_eq!(
        reasons,
        [vec![Reason::Level(6 * H); 4], vec![Reason::Level(24 * H)]].concat()
    );
    let metas = db.block_metas();
    assert_eq!(metas.len(), 2, "{metas:?}");
    assert_eq!((metas[0].min_time, metas[0].max_time), (0, 24 * H - 1));
    assert_eq!(metas[0].compaction.level, 3);
    assert_eq!(metas[0].compaction.sources.len(), 12);
    assert_eq!(metas[0].compaction.parents.len(), 4);
    let after: u64 = db.blocks().iter().map(|b| b.meta().stats.num_chunks).sum();
    assert!(
        after < before,
        "re-chunking joins small chunks: {before} -> {after}"
    );
    assert!(same(&read_all(&db), &model));
    assert_eq!(
        stats.completed.load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    // Only the two live block directories remain on disk.
    let dirs = std::fs::read_dir(db.dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "wal")
        .count();
    assert_eq!(dirs, 2);
}

#[test]
fn conflicting_duplicates_resolve_as_queries_did() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for round in 0..3 {
        let mut batch = BTreeMap::new();
        let samples: Vec<(i64, f64)> = (0..100)
            .map(|k| (k * 60_000, f64::from(round) + k as f64))
            .collect();
        batch.insert(series(0), samples);
        db.import(&batch).unwrap();
    }
    let before = read_all(&db);
    let stats = CompactionStats::default();
    let done = compact_tenant(&db, &CompactorOptions::default(), &stats).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].inputs.len(), 3);
    assert_eq!(done[0].samples_in, 300);
    assert_eq!(done[0].samples_out, 100);
    assert!(same(&read_all(&db), &before));
    drop(db);
    assert!(same(&read_all(&open(dir.path())), &before));
}

#[test]
fn crash_after_publishing_output_keeps_every_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut model = Model::new();
    two_hour_blocks(&db, &mut model, 3, 5, 30_000);
    two_hour_blocks(&db, &mut model, 3, 5, 30_000); // overlapping duplicates
    let inputs: Vec<String> = db.block_metas().iter().map(|m| m.id.clone()).collect();
    // Keep copies of the inputs to put back as if the process died before removing them.
    let saved = tempfile::tempdir().unwrap();
    for id in &inputs {
        copy_dir(&db.dir().join(id), &saved.path().join(id));
    }
    let _g = db.lock_maintenance();
    let r = compact_blocks(&db, &inputs, 0, 6 * H - 1, &MergeOptions::default()).unwrap();
    drop(_g);
    let out = r.output.unwrap();
    assert_eq!(out.compaction.parents.len(), inputs.len());
    let tenant_dir = db.dir().to_path_buf();
    drop(db);
    for id in &inputs {
        copy_dir(&saved.path().join(id), &tenant_dir.join(id));
    }
    let db = open(dir.path());
    let metas = db.block_metas();
    assert_eq!(
        metas.len(),
        1,
        "replaced inputs are removed on open: {metas:?}"
    );
    assert_eq!(metas[0].id, out.id);
    assert_eq!(
        metas[0].stats.num_samples,
        model.values().map(|m| m.len() as u64).sum::<u64>()
    );
    assert!(same(&read_all(&db), &model));
    for id in &inputs {
        assert!(!tenant_dir.join(id).exists());
    }
}

#[test]
fn deleting_everything_retires_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut model = Model::new();
    two_hour_blocks(&db, &mut model, 1, 2, 60_000);
    let b = db.blocks()[0].clone();
    let mut t = Tombstones::new();
    for id in &b.all_postings() {
        t.add(id, i64::MIN, i64::MAX);
    }
    write_tombstones(b.dir(), &t).unwrap();
    drop(b);
    drop(db);
    let db = open(dir.path());
    let r = clean_tombstones(
        &db,
        &CompactorOptions::default(),
        &CompactionStats::default(),
    )
    .unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0].output.is_none());
    assert!(db.blocks().is_empty());
    assert!(read_all(&db).is_empty());
}

#[test]
fn compacting_unknown_or_misfit_blocks_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut model = Model::new();
    two_hour_blocks(&db, &mut model, 2, 1, 60_000);
    let ids: Vec<String> = db.block_metas().iter().map(|m| m.id.clone()).collect();
    let err = compact_blocks(
        &db,
        &["01AAAAAAAAAAAAAAAAAAAAAAAA".to_string()],
        0,
        H,
        &MergeOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not loaded"), "{err}");
    let err = compact_blocks(&db, &ids, 0, 2 * H, &MergeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    assert_eq!(db.blocks().len(), 2);
    assert!(same(&read_all(&db), &model));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn downsampled_copies_follow_compaction() {
    use strata_compaction::downsample::{DownsampleOptions, downsample_due};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut model = Model::new();
    two_hour_blocks(&db, &mut model, 48, 3, 60_000); // 4 days
    let opts = DownsampleOptions {
        after_5m_ms: 24 * H,
        after_1h_ms: 0,
    };
    // Old 2 h blocks get copies first (as if compaction had been off) ...
    let first = downsample_due(&db, &opts).unwrap();
    assert!(!first.is_empty());
    // ... then compaction merges them into 24 h blocks and the copies are made again from
    // the merged blocks, replacing the 2 h copies (their sources are a subset).
    compact_tenant(
        &db,
        &CompactorOptions {
            max_per_run: 100,
            ..Default::default()
        },
        &CompactionStats::default(),
    )
    .unwrap();
    downsample_due(&db, &opts).unwrap();
    let metas = db.block_metas();
    let (raw, ds): (Vec<_>, Vec<_>) = metas.iter().partition(|m| m.resolution_ms == 0);
    let newest = raw.iter().map(|m| m.max_time).max().unwrap();
    let subset = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
    // Every due raw block has a copy made from exactly its sources (the merged 24 h blocks
    // replaced the 2 h copies of their sources) ...
    for r in raw.iter().filter(|m| m.max_time < newest - 24 * H) {
        assert!(
            ds.iter()
                .any(|d| d.compaction.sources == r.compaction.sources),
            "no copy of {r:?}"
        );
    }
    // ... no copy is redundant with another, and every copy's sources are within one live raw
    // block (a 2 h copy inside a merged block that is not yet due stays until that block is).
    for (i, a) in ds.iter().enumerate() {
        for (j, b) in ds.iter().enumerate() {
            assert!(i == j || !subset(&a.compaction.sources, &b.compaction.sources));
        }
        assert!(
            raw.iter()
                .any(|r| subset(&a.compaction.sources, &r.compaction.sources))
        );
    }
    assert!(
        ds.len() < first.len(),
        "the 2 h copies of merged days were replaced"
    );
    // Queries over the mix (24 h copies, 2 h copies inside a merged raw block, raw) count every
    // sample once: count_over_time at 1 h steps matches raw.
    let count = |res: Option<i64>| {
        let opts = strata_query::EvalOptions {
            max_source_resolution_ms: res,
            ..strata_query::EvalOptions::default()
        };
        let q = "sum(count_over_time(m[1h]))";
        match strata_query::range_query(&db.querier(), q, 2 * H, 95 * H, H, &opts)
            .unwrap()
            .value
        {
            strata_query::Value::Matrix(m) => m
                .into_iter()
                .flat_map(|s| s.points)
                .collect::<Vec<(i64, f64)>>(),
            other => panic!("unexpected {other:?}"),
        }
    };
    let raw_answer = count(Some(0));
    assert_eq!(raw_answer.len(), 94);
    let auto = count(None);
    assert_eq!(auto.len(), raw_answer.len());
    // A window's point carries the window's samples at its last sample's time, so a step whose
    // range starts in downsampled data and ends in raw data may count one sample per series
    // more or less (the documented edge tolerance); every other step is exact.
    let mut exact = 0;
    for (a, r) in auto.iter().zip(&raw_answer) {
        assert_eq!(a.0, r.0);
        assert!((a.1 - r.1).abs() <= 3.0, "{a:?} vs {r:?}");
        exact += usize::from(a.1 == r.1);
    }
    assert!(exact >= 92, "{exact} of 94 steps exact");
    assert!(same(&read_all(&db), &model));
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.block_metas().len(), metas.len());
    assert!(same(&read_all(&db), &model));
}

#[test]
fn deletion_reaches_downsampled_copies() {
    use strata_compaction::downsample::{DownsampleOptions, downsample_due};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut model = Model::new();
    two_hour_blocks(&db, &mut model, 36, 2, 60_000); // 3 days, 2 series
    downsample_due(
        &db,
        &DownsampleOptions {
            after_5m_ms: 24 * H,
            after_1h_ms: 0,
        },
    )
    .unwrap();
    assert!(db.blocks().iter().any(|b| b.meta().resolution_ms > 0));
    // Delete series 1 over the first day: raw blocks and their 5 m copies get tombstones.
    let m = [Matcher::equal("i", "1")];
    db.delete_series(&m, 0, 24 * H - 1).unwrap();
    let count = |res: Option<i64>| {
        let opts = strata_query::EvalOptions {
            max_source_resolution_ms: res,
            ..strata_query::EvalOptions::default()
        };
        let q = "sum by (i) (count_over_time(m[6h]))";
        match strata_query::range_query(&db.querier(), q, 6 * H, 48 * H, 6 * H, &opts)
            .unwrap()
            .value
        {
            strata_query::Value::Matrix(m) => m
                .into_iter()
                .map(|s| (s.labels.get("i").unwrap_or("").to_string(), s.points))
                .collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        }
    };
    for res in [Some(0), None] {
        let got = count(res);
        let one = got
            .iter()
            .find(|(i, _)| i == "1")
            .map(|(_, p)| p.clone())
            .unwrap();
        // Nothing before 24 h survives; from 30 h on each step counts 360 samples. At 24 h raw
        // counts the one sample at exactly 24 h; downsampled data stamps that sample's window at
        // its last sample (24 h + 4 min), outside the step (the documented edge rule).
        // (A step spanning the junction of downsampled and raw data may count one sample more
        // or less, by the same rule.)
        let kept: Vec<(i64, f64)> = one.iter().copied().filter(|p| p.0 >= 30 * H).collect();
        assert_eq!(
            kept.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![30 * H, 36 * H, 42 * H, 48 * H]
        );
        let slack = if res == Some(0) { 0.0 } else { 1.0 };
        assert!(
            kept.iter().all(|p| (p.1 - 360.0).abs() <= slack),
            "{res:?}: {kept:?}"
        );
        assert!(one.iter().all(|p| p.0 >= 24 * H), "{res:?}: {one:?}");
        if res == Some(0) {
            assert_eq!(one.first(), Some(&(24 * H, 1.0)));
        }
        let zero = got
            .iter()
            .find(|(i, _)| i == "0")
            .map(|(_, p)| p.len())
            .unwrap();
        assert_eq!(zero, 8, "series 0 untouched ({res:?})");
    }
}
