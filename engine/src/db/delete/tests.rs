//! Tests of series deletion: head, blocks, both, WAL replay, block cuts, checkpoints, and a
//! model-based property test.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::DeleteReport;
use crate::db::{AppendSeries, EngineOptions, TenantDb};
use crate::head::HeadOptions;
use crate::labels::{Labels, MatchOp, Matcher};
use crate::querier::SelectHints;
use crate::record::{self, RECORD_TOMBSTONES};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn opts(dir: &Path, range: i64) -> EngineOptions {
    EngineOptions {
        data_dir: dir.to_path_buf(),
        head: HeadOptions {
            block_range_ms: range,
            ..HeadOptions::default()
        },
        ..EngineOptions::default()
    }
}

fn open(dir: &Path, range: i64) -> TenantDb {
    TenantDb::open("anonymous", &opts(dir, range)).unwrap().0
}

fn series(cpu: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", "node_cpu_seconds_total"),
        ("cpu", &cpu.to_string()),
        ("job", "node"),
    ])
    .unwrap()
}

/// One sample per series every `step` ms in `[from, to)`, value = t / 1000 + cpu.
fn write(db: &TenantDb, n: usize, from: i64, to: i64, step: i64) {
    let labels: Vec<Labels> = (0..n).map(series).collect();
    let samples: Vec<Vec<(i64, f64)>> = (0..n)
        .map(|i| {
            (0..)
                .map(|k| from + k * step)
                .take_while(|&t| t < to)
                .map(|t| (t, (t / 1000) as f64 + i as f64))
                .collect()
        })
        .collect();
    let batch: Vec<AppendSeries> = labels
        .iter()
        .zip(&samples)
        .map(|(l, s)| AppendSeries {
            labels: l,
            samples: s,
        })
        .collect();
    let rep = db.append(&batch).unwrap();
    assert_eq!(rep.rejected, 0);
}

type Data = BTreeMap<Labels, Vec<(i64, f64)>>;

/// Every non-empty series of the tenant with its samples.
fn read(db: &TenantDb) -> Data {
    let m = [Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()];
    db.querier()
        .select(&m, i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap()
        .into_iter()
        .map(|s| (s.labels().clone(), s.samples(i64::MIN, i64::MAX).unwrap()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// `data` with the samples of matching series in `[mint, maxt]` removed.
fn expect_deleted(mut data: Data, m: &[Matcher], mint: i64, maxt: i64) -> Data {
    for (l, v) in data.iter_mut() {
        if m.iter().all(|m| m.matches_labels(l)) {
            v.retain(|s| s.0 < mint || s.0 > maxt);
        }
    }
    data.retain(|_, v| !v.is_empty());
    data
}

fn cpu(i: usize) -> Vec<Matcher> {
    vec![Matcher::equal("cpu", i.to_string())]
}

#[test]
fn delete_in_head_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), HOUR);
    write(&db, 3, 0, 10 * MIN, 15_000);
    let before = read(&db);
    let rep = db.delete_series(&cpu(1), 2 * MIN, 5 * MIN).unwrap();
    assert_eq!(
        rep,
        DeleteReport {
            head_series: 1,
            block_series: 0,
            blocks: 0
        }
    );
    let after = read(&db);
    assert_eq!(
        after,
        expect_deleted(before.clone(), &cpu(1), 2 * MIN, 5 * MIN)
    );
    assert_eq!(after[&series(1)].len(), 40 - 13);
    assert_eq!(after[&series(0)], before[&series(0)]);
    // Matching nothing, or an empty interval, is a success that changes nothing.
    let none = [Matcher::equal("cpu", "9")];
    assert_eq!(
        db.delete_series(&none, 0, i64::MAX).unwrap(),
        DeleteReport::default()
    );
    assert_eq!(
        db.delete_series(&cpu(0), 10, 5).unwrap(),
        DeleteReport::default()
    );
    // An interval outside the series' data deletes nothing either.
    assert_eq!(
        db.delete_series(&cpu(0), HOUR, 2 * HOUR).unwrap(),
        DeleteReport::default()
    );
    assert_eq!(read(&db), after);
    // New samples after the deleted range are not affected, even by an open-ended deletion.
    let rep = db.delete_series(&cpu(2), 0, i64::MAX).unwrap();
    assert_eq!(rep.head_series, 1);
    assert!(
        !read(&db).contains_key(&series(2)),
        "fully deleted series is not selected"
    );
    write(&db, 3, 10 * MIN, 11 * MIN, 15_000);
    assert_eq!(read(&db)[&series(2)].len(), 4);
    // The deleted interval was clamped to the series' data when it was made.
    let r = db.head().get(&series(2)).unwrap();
    assert_eq!(db.head().deleted_intervals(r), vec![(0, 10 * MIN - 15_000)]);
}

#[test]
fn delete_in_blocks_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), HOUR);
    write(&db, 3, 0, 3 * HOUR, MIN);
    db.persist_all().unwrap();
    assert_eq!(db.head().num_series(), 0);
    let blocks_before = db.blocks();
    assert_eq!(blocks_before.len(), 3);
    let before = read(&db);
    // From the middle of the first block to the middle of the second.
    let (mint, maxt) = (30 * MIN, HOUR + 30 * MIN);
    let m = [Matcher::new(MatchOp::Regex, "cpu", "0|2").unwrap()];
    let rep = db.delete_series(&m, mint, maxt).unwrap();
    assert_eq!(
        rep,
        DeleteReport {
            head_series: 0,
            block_series: 4,
            blocks: 2
        }
    );
    let want = expect_deleted(before.clone(), &m, mint, maxt);
    assert_eq!(read(&db), want);
    // The tombstones are clipped to each block and on disk.
    let blocks = db.blocks();
    let t0 = crate::block::read_tombstones(blocks[0].dir()).unwrap();
    assert_eq!(t0.len(), 2);
    assert_eq!(t0.intervals(0), &[(mint, HOUR - 1)]);
    assert_eq!(blocks[1].tombstones().intervals(2), &[(HOUR, maxt)]);
    assert!(blocks[2].tombstones().is_empty());
    // A reader holding the old blocks keeps its view.
    let old = crate::querier::Querier::new(db.head().clone(), blocks_before);
    let m_all = [Matcher::equal("job", "node")];
    let old_view = old
        .select(&m_all, i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(
        old_view[0].samples(i64::MIN, i64::MAX).unwrap(),
        before[&series(0)]
    );
    drop(db);
    let db = open(dir.path(), HOUR);
    assert_eq!(read(&db), want);
}

#[test]
fn delete_across_blocks_and_head_with_overlapping_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), HOUR);
    write(&db, 3, 0, 150 * MIN, MIN);
    let cut = db.cut_due_blocks().unwrap();
    assert_eq!(cut.len(), 1, "[0, 1h) cut, the rest in the head");
    let before = read(&db);
    let m = cpu(1);
    let rep = db.delete_series(&m, 50 * MIN, 80 * MIN).unwrap();
    assert_eq!((rep.head_series, rep.block_series, rep.blocks), (1, 1, 1));
    // Overlapping and adjacent deletions merge.
    let rep = db.delete_series(&m, 70 * MIN, 100 * MIN).unwrap();
    assert_eq!((rep.head_series, rep.block_series), (1, 0));
    db.delete_series(&m, 100 * MIN + 1, 110 * MIN).unwrap();
    let r = db.head().get(&series(1)).unwrap();
    assert_eq!(db.head().deleted_intervals(r), vec![(HOUR, 110 * MIN)]);
    let want = expect_deleted(before, &m, 50 * MIN, 110 * MIN);
    assert_eq!(read(&db), want);
    // Another series and overlapping deletions on the same one.
    let m2 = cpu(0);
    db.delete_series(&m2, 10 * MIN, 20 * MIN).unwrap();
    db.delete_series(&m2, 15 * MIN, 65 * MIN).unwrap();
    let want = expect_deleted(want, &m2, 10 * MIN, 65 * MIN);
    assert_eq!(read(&db), want);
    assert_eq!(
        db.blocks()[0].tombstones().intervals(0),
        &[(10 * MIN, HOUR - 1)]
    );
    drop(db);
    let db = open(dir.path(), HOUR);
    assert_eq!(read(&db), want);
}

#[test]
fn head_deletion_survives_wal_replay() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let db = open(dir.path(), HOUR);
        write(&db, 4, 0, 20 * MIN, 15_000);
        let m = [Matcher::new(MatchOp::NotEqual, "cpu", "3").unwrap()];
        db.delete_series(&m, 5 * MIN, 7 * MIN).unwrap();
        db.delete_series(&cpu(3), 0, MIN).unwrap();
        // Appended after the deletions: replay must not lose these.
        write(&db, 4, 20 * MIN, 21 * MIN, 15_000);
        read(&db)
    };
    assert_eq!(want[&series(0)].len(), 84 - 9);
    assert_eq!(want[&series(3)].len(), 84 - 5);
    let (db, report) = TenantDb::open("anonymous", &opts(dir.path(), HOUR)).unwrap();
    assert_eq!(report.samples, 4 * 84);
    assert_eq!(read(&db), want);
    assert_eq!(db.head().all_tombstones().len(), 4);
}

#[test]
fn persisted_blocks_leave_deleted_samples_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), HOUR);
    write(&db, 2, 0, 90 * MIN, MIN);
    db.delete_series(&cpu(0), 10 * MIN, 70 * MIN).unwrap();
    let want = read(&db);
    let metas = db.persist_all().unwrap();
    assert_eq!(metas.len(), 2);
    // 90 samples per series; series 0 lost 61 of them.
    let samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(samples, 90 + 90 - 61);
    for b in db.blocks() {
        assert!(b.tombstones().is_empty(), "dropped, not tombstoned");
    }
    assert!(db.head().all_tombstones().is_empty());
    assert_eq!(read(&db), want);
    drop(db);
    let db = open(dir.path(), HOUR);
    assert_eq!(read(&db), want);
}

/// The TOMBSTONES entries a reopened WAL replays (checkpoint first, then segments).
fn wal_tombstones(dir: &Path) -> Vec<(u32, i64, i64)> {
    let wal_dir = dir.join("tenants/anonymous/metrics/wal");
    let (_wal, mut replay, _) =
        strata_wal::Wal::open(&wal_dir, strata_wal::WalOptions::default()).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = replay.next_record() {
        let rec = rec.unwrap();
        if rec.kind == RECORD_TOMBSTONES {
            record::decode_tombstones(rec.payload, |r, a, b| {
                out.push((r, a, b));
                Ok(())
            })
            .unwrap();
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn checkpoint_keeps_only_tombstones_still_in_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), HOUR);
    write(&db, 3, 0, 3 * HOUR, MIN);
    // Series 3 lives in the first hour only: cutting it removes the series from the head.
    let s3 = series(3);
    db.append(&[AppendSeries {
        labels: &s3,
        samples: &[(MIN, 1.0), (2 * MIN, 2.0)],
    }])
    .unwrap();
    let r: Vec<u32> = (0..4).map(|i| db.head().get(&series(i)).unwrap()).collect();
    db.delete_series(&cpu(0), 10 * MIN, 20 * MIN).unwrap(); // before the cut: dropped
    db.delete_series(&cpu(1), 50 * MIN, 90 * MIN).unwrap(); // straddles: clipped to 1h
    db.delete_series(&cpu(2), 130 * MIN, 140 * MIN).unwrap(); // after: kept as is
    db.delete_series(&cpu(3), 0, HOUR).unwrap(); // series removed: dropped
    let want = read(&db);
    db.persist_range(0, HOUR).unwrap().unwrap();
    assert!(db.head().get(&s3).is_none());
    assert_eq!(
        db.head().all_tombstones(),
        vec![
            (r[1], vec![(HOUR, 90 * MIN)]),
            (r[2], vec![(130 * MIN, 140 * MIN)])
        ]
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(read(&db), want);
    drop(db);
    let mut expected = vec![(r[1], HOUR, 90 * MIN), (r[2], 130 * MIN, 140 * MIN)];
    expected.sort_unstable();
    assert_eq!(wal_tombstones(dir.path()), expected);
    let db = open(dir.path(), HOUR);
    assert_eq!(read(&db), want);
    // Cutting past every interval leaves no tombstone record behind.
    db.persist_range(HOUR, 3 * HOUR).unwrap().unwrap();
    assert!(db.head().all_tombstones().is_empty());
    assert_eq!(read(&db), want);
    drop(db);
    assert_eq!(wal_tombstones(dir.path()), vec![]);
}

#[test]
fn deletion_applies_to_the_data_that_existed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), HOUR);
    write(&db, 1, 0, 15 * MIN, MIN);
    db.delete_series(&cpu(0), 5 * MIN, 10 * MIN).unwrap();
    // A backfill into the deleted range (its own block) stays visible: the head's deleted
    // interval removes head samples only, as a block's tombstones remove that block's.
    let backfill: BTreeMap<Labels, Vec<(i64, f64)>> = [(series(0), vec![(7 * MIN + 1, 42.0)])]
        .into_iter()
        .collect();
    db.import(&backfill).unwrap();
    let got = read(&db);
    let s = &got[&series(0)];
    assert!(s.contains(&(7 * MIN + 1, 42.0)), "{s:?}");
    assert_eq!(s.len(), 15 - 6 + 1);
    // An out-of-order sample appended later into the deleted interval is deleted too (the
    // interval applies to head samples whatever their arrival time).
    let l = series(0);
    let rep = db
        .append(&[AppendSeries {
            labels: &l,
            samples: &[(8 * MIN + 1, 1.0)],
        }])
        .unwrap();
    assert_eq!(rep.out_of_order, 1);
    assert_eq!(read(&db)[&series(0)].len(), 15 - 6 + 1);
}

#[test]
fn deletion_never_touches_other_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = crate::db::Engine::open(opts(dir.path(), HOUR)).unwrap();
    let l = series(0);
    for t in ["a", "b"] {
        engine
            .append(
                t,
                &[AppendSeries {
                    labels: &l,
                    samples: &[(1000, 1.0), (2000, 2.0)],
                }],
            )
            .unwrap();
    }
    let rep = engine.delete_series("a", &cpu(0), 0, i64::MAX).unwrap();
    assert_eq!(rep.head_series, 1);
    assert!(read(&engine.tenant("a").unwrap()).is_empty());
    assert_eq!(read(&engine.tenant("b").unwrap())[&l].len(), 2);
    // An unknown tenant has nothing to delete and is not created.
    let rep = engine.delete_series("c", &cpu(0), 0, i64::MAX).unwrap();
    assert_eq!(rep, DeleteReport::default());
    assert!(engine.existing_tenant("c").is_none());
    assert!(engine.delete_series("../x", &cpu(0), 0, 1).is_err());
}

/// One step of the model-based test.
#[derive(Clone, Debug)]
enum Op {
    /// Append `n` samples to series `s`, `step` ms apart, after everything so far.
    Append { s: usize, n: usize, step: i64 },
    /// Append one out-of-order sample to series `s`, `back` ms before its newest sample.
    AppendOoo { s: usize, back: i64 },
    /// Delete with matcher set `m` from `clock * from / 1000 - 500`, `len` ms long; all time
    /// if `all`.
    Delete {
        m: usize,
        from: i64,
        len: i64,
        all: bool,
    },
    /// Cut the head up to the last block boundary before the clock into a block.
    Cut,
    /// Close and reopen the tenant (WAL replay).
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, 1usize..20, 1i64..400).prop_map(|(s, n, step)| Op::Append { s, n, step }),
        2 => (0usize..4, 1i64..3000).prop_map(|(s, back)| Op::AppendOoo { s, back }),
        3 => (0usize..6, 0i64..1100, 0i64..4000, prop::bool::weighted(0.1))
            .prop_map(|(m, from, len, all)| Op::Delete { m, from, len, all }),
        1 => Just(Op::Cut),
        1 => Just(Op::Reopen),
    ]
}

fn model_series(i: usize) -> Labels {
    let g = if i.is_multiple_of(2) { "a" } else { "b" };
    Labels::from_pairs(&[
        ("__name__", "m"),
        ("g", g),
        ("i", &i.to_string()),
        ("job", "j"),
    ])
    .unwrap()
}

fn matcher_set(m: usize) -> Vec<Matcher> {
    match m {
        0 => vec![Matcher::equal("i", "0")],
        1 => vec![Matcher::equal("g", "a")],
        2 => vec![Matcher::new(MatchOp::NotEqual, "g", "a").unwrap()],
        3 => vec![Matcher::new(MatchOp::Regex, "i", "[12]").unwrap()],
        4 => vec![Matcher::equal("__name__", "m")],
        _ => vec![Matcher::equal("i", "9")],
    }
}

const MODEL_RANGE: i64 = 1000;

/// What the tenant should hold.
#[derive(Default)]
struct Model {
    /// What queries return.
    visible: Data,
    /// Samples physically in the head per series, deleted ones included (they decide the
    /// clamping of a deletion and which appends are duplicates).
    head: BTreeMap<usize, BTreeMap<i64, f64>>,
    /// The head's deleted intervals per series.
    deleted: BTreeMap<usize, Vec<(i64, i64)>>,
    /// The head's minimum valid time (end of the last cut).
    min_valid: i64,
}

impl Model {
    fn value(t: i64, s: usize) -> f64 {
        t as f64 + s as f64 / 10.0
    }

    /// Records an accepted sample: stored in the head, visible unless a deleted interval of
    /// the series covers it (whatever its arrival time).
    fn store(&mut self, s: usize, t: i64) {
        let v = Model::value(t, s);
        self.head.entry(s).or_default().insert(t, v);
        let deleted = self
            .deleted
            .get(&s)
            .is_some_and(|iv| iv.iter().any(|&(a, b)| a <= t && t <= b));
        if !deleted {
            self.visible
                .entry(model_series(s))
                .or_default()
                .push((t, v));
            if let Some(v) = self.visible.get_mut(&model_series(s)) {
                v.sort_by_key(|x| x.0);
            }
        }
    }

    fn delete(&mut self, ms: &[Matcher], mint: i64, maxt: i64) {
        self.visible = expect_deleted(std::mem::take(&mut self.visible), ms, mint, maxt);
        for (s, samples) in &self.head {
            if !ms.iter().all(|m| m.matches_labels(&model_series(*s))) {
                continue;
            }
            let (Some((&lo, _)), Some((&hi, _))) =
                (samples.first_key_value(), samples.last_key_value())
            else {
                continue;
            };
            crate::head::merge_interval(
                self.deleted.entry(*s).or_default(),
                mint.max(lo),
                maxt.min(hi),
            );
        }
        self.deleted.retain(|_, v| !v.is_empty());
    }

    fn cut(&mut self, hi: i64) {
        self.min_valid = self.min_valid.max(hi);
        for samples in self.head.values_mut() {
            samples.retain(|&t, _| t >= hi);
        }
        self.head.retain(|_, v| !v.is_empty());
        let head = &self.head;
        self.deleted.retain(|s, iv| {
            iv.retain(|&(_, b)| b >= hi);
            for x in iv.iter_mut() {
                x.0 = x.0.max(hi);
            }
            head.contains_key(s) && !iv.is_empty()
        });
    }
}

fn run_model(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path(), MODEL_RANGE);
    let mut model = Model::default();
    let mut clock = 0i64;
    for (step_no, op) in ops.iter().enumerate() {
        match *op {
            Op::Append { s, n, step } => {
                let samples: Vec<(i64, f64)> = (0..n)
                    .map(|_| {
                        clock += step;
                        (clock, Model::value(clock, s))
                    })
                    .collect();
                let l = model_series(s);
                let rep = db
                    .append(&[AppendSeries {
                        labels: &l,
                        samples: &samples,
                    }])
                    .unwrap();
                prop_assert_eq!(rep.rejected, 0);
                for &(t, _) in &samples {
                    model.store(s, t);
                }
            }
            Op::AppendOoo { s, back } => {
                let Some(newest) = model
                    .head
                    .get(&s)
                    .and_then(|m| m.last_key_value())
                    .map(|x| *x.0)
                else {
                    continue;
                };
                let t = newest - back;
                if t < model.min_valid {
                    continue;
                }
                let l = model_series(s);
                let rep = db
                    .append(&[AppendSeries {
                        labels: &l,
                        samples: &[(t, Model::value(t, s))],
                    }])
                    .unwrap();
                prop_assert_eq!(rep.rejected, 0);
                if model.head.get(&s).is_some_and(|m| m.contains_key(&t)) {
                    // Same timestamp and value as a stored sample: an idempotent duplicate (or,
                    // against an in-order sample, kept out of order and shadowed by it).
                    prop_assert_eq!(rep.duplicates + rep.out_of_order, 1);
                } else {
                    prop_assert_eq!(rep.out_of_order, 1);
                    model.store(s, t);
                }
            }
            Op::Delete { m, from, len, all } => {
                let (mint, maxt) = if all {
                    (i64::MIN, i64::MAX)
                } else {
                    let mint = clock * from / 1000 - 500;
                    (mint, mint + len)
                };
                let ms = matcher_set(m);
                db.delete_series(&ms, mint, maxt).unwrap();
                model.delete(&ms, mint, maxt);
            }
            Op::Cut => {
                let min = db.head().min_time();
                let hi = clock - clock.rem_euclid(MODEL_RANGE);
                if min != i64::MAX {
                    let lo = min - min.rem_euclid(MODEL_RANGE);
                    if lo < hi {
                        db.persist_range(lo, hi).unwrap();
                        model.cut(hi);
                    }
                }
            }
            Op::Reopen => {
                drop(db);
                db = open(dir.path(), MODEL_RANGE);
            }
        }
        model.visible.retain(|_, v| !v.is_empty());
        prop_assert_eq!(
            &read(&db),
            &model.visible,
            "after step {}: {:?}",
            step_no,
            op
        );
        let want: BTreeMap<u32, Vec<(i64, i64)>> = model
            .deleted
            .iter()
            .filter_map(|(s, iv)| Some((db.head().get(&model_series(*s))?, iv.clone())))
            .collect();
        let got: BTreeMap<u32, Vec<(i64, i64)>> = db.head().all_tombstones().into_iter().collect();
        prop_assert_eq!(got, want, "head intervals after step {}: {:?}", step_no, op);
    }
    drop(db);
    let db = open(dir.path(), MODEL_RANGE);
    prop_assert_eq!(&read(&db), &model.visible, "after the final reopen");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn deletes_appends_cuts_and_reopens_match_a_model(ops in prop::collection::vec(op(), 1..40)) {
        run_model(&ops)?;
    }
}
