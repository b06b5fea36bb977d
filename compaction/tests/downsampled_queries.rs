//! Queries over downsampled blocks answer like queries over raw samples, within the tolerances
//! stated in `docs/ARCHITECTURE.md` ("Downsampling"); forcing raw and small steps read raw; the
//! reserved aggregate label never shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::Path;

use strata_compaction::downsample::{DownsampleOptions, downsample_due};
use strata_engine::downsample::{AGGR_LABEL, RES_1H, RES_5M};
use strata_engine::{
    EngineOptions, HeadOptions, Labels, Matcher, ResolutionRetention, SelectHints, TenantDb,
};
use strata_query::{EvalOptions, Value, range_query};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const DAYS: i64 = 30;

fn open(dir: &Path) -> TenantDb {
    let opts = EngineOptions {
        data_dir: dir.to_path_buf(),
        head: HeadOptions {
            block_range_ms: DAY,
            ..HeadOptions::default()
        },
        ..EngineOptions::default()
    };
    TenantDb::open("t", &opts).unwrap().0
}

/// Deterministic pseudo-random numbers in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 30 days at a 60 s interval, timestamps 30 s past the minute (so no sample falls on a window
/// boundary): two counters with random increments and resets (about one a day, at random
/// times), two gauges (daily sine plus noise).
fn data() -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut rng = Lcg(42);
    let mut out = BTreeMap::new();
    let n = DAYS * DAY / MIN;
    for inst in ["a", "b"] {
        let mut v = 0.0;
        let mut c = Vec::with_capacity(n as usize);
        let mut g = Vec::with_capacity(n as usize);
        for i in 0..n {
            let t = i * MIN + 30_000;
            if rng.next() < 1.0 / 1440.0 {
                v = 0.0;
            }
            v += (rng.next() * 20.0).floor();
            c.push((t, v));
            let day = (t as f64 / DAY as f64) * std::f64::consts::TAU;
            g.push((t, 50.0 + 30.0 * day.sin() + rng.next() * 10.0));
        }
        out.insert(
            Labels::from_pairs(&[("__name__", "req_total"), ("instance", inst)]).unwrap(),
            c,
        );
        out.insert(
            Labels::from_pairs(&[("__name__", "temp"), ("instance", inst)]).unwrap(),
            g,
        );
    }
    out
}

fn setup(dir: &Path) -> TenantDb {
    let db = open(dir);
    db.import(&data()).unwrap();
    let made = downsample_due(&db, &DownsampleOptions::default()).unwrap();
    assert!(made.iter().any(|m| m.resolution_ms == RES_5M));
    assert!(made.iter().any(|m| m.resolution_ms == RES_1H));
    db
}

fn query(db: &TenantDb, q: &str, step: i64, res: Option<i64>) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let opts = EvalOptions {
        max_source_resolution_ms: res,
        ..EvalOptions::default()
    };
    let start = DAY;
    let end = DAYS * DAY;
    match range_query(&db.querier(), q, start, end, step, &opts)
        .unwrap()
        .value
    {
        Value::Matrix(m) => m.into_iter().map(|s| (s.labels, s.points)).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Compares two answers step by step: the same series and steps; returns the largest
/// relative error and the mean relative error.
fn compare(
    raw: &[(Labels, Vec<(i64, f64)>)],
    down: &[(Labels, Vec<(i64, f64)>)],
    scale: f64,
) -> (f64, f64) {
    assert_eq!(raw.len(), down.len());
    let (mut worst, mut sum, mut n) = (0.0f64, 0.0, 0.0);
    for ((la, pa), (lb, pb)) in raw.iter().zip(down) {
        assert_eq!(la, lb);
        let a: BTreeMap<i64, f64> = pa.iter().copied().collect();
        let b: BTreeMap<i64, f64> = pb.iter().copied().collect();
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{la}"
        );
        for (t, x) in &a {
            let y = b[t];
            let err = (x - y).abs() / x.abs().max(scale);
            worst = worst.max(err);
            sum += err;
            n += 1.0;
        }
    }
    assert!(n > 200.0, "compared {n} points");
    (worst, sum / n)
}

#[test]
fn downsampled_answers_match_raw_within_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path());
    let cases: [(&str, i64, f64, f64); 9] = [
        // query, step, max relative error, max mean relative error
        ("max_over_time(temp[1h])", HOUR, 0.0, 0.0),
        ("min_over_time(temp[1h])", HOUR, 0.0, 0.0),
        ("count_over_time(temp[1h])", HOUR, 0.0, 0.0),
        ("sum_over_time(temp[1h])", HOUR, 1e-12, 1e-12),
        ("avg_over_time(temp[1h])", HOUR, 1e-12, 1e-12),
        ("avg_over_time(temp[6h])", 6 * HOUR, 1e-12, 1e-12),
        ("rate(req_total[1h])", HOUR, 0.01, 0.003),
        ("rate(req_total[5h])", 5 * HOUR, 0.01, 0.003),
        ("increase(req_total[6h])", 6 * HOUR, 0.01, 0.003),
    ];
    for (q, step, max_err, mean_err) in cases {
        let raw = query(&db, q, step, Some(0));
        let auto = query(&db, q, step, None);
        let (worst, mean) = compare(&raw, &auto, 1.0);
        println!("{q}: worst {worst:.2e}, mean {mean:.2e}");
        assert!(
            worst <= max_err && mean <= mean_err,
            "{q}: worst {worst}, mean {mean}"
        );
    }
}

#[test]
fn graphs_small_steps_and_forced_raw() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path());
    // A step below the finest resolution reads raw: identical to forcing raw.
    let small = "rate(req_total[5m])";
    assert!(query(&db, small, 4 * MIN, None) == query(&db, small, 4 * MIN, Some(0)));
    // So does a function downsampled data cannot serve.
    let other = "deriv(temp[6h])";
    assert!(query(&db, other, 6 * HOUR, None) == query(&db, other, 6 * HOUR, Some(0)));
    // A large step reads downsampled data (the answer differs in the last digits) ...
    let q = "rate(req_total[1h])";
    assert!(query(&db, q, HOUR, None) != query(&db, q, HOUR, Some(0)));
    // ... the 1 h copies where they exist (rate needs one point per window), or the 5 m
    // ones when capped at `5m`: at windows aligned to the hour both measure the counter at the
    // same raw samples (the last one of each hour), so the answers are the same.
    assert!(query(&db, q, HOUR, Some(RES_5M)) == query(&db, q, HOUR, None));
    // `max_over_time` needs a range of 5 windows, so at [1h] it reads 5 m data.
    let m = "max_over_time(temp[1h])";
    assert!(query(&db, m, HOUR, Some(RES_5M)) == query(&db, m, HOUR, None));
    // A plain selection graphed at a 1 h step reads `last`: the raw value of the last sample
    // before each step, which is exactly what raw data answers at an aligned step.
    let raw = query(&db, "temp", HOUR, Some(0));
    let auto = query(&db, "temp", HOUR, None);
    let (worst, _) = compare(&raw, &auto, 1.0);
    assert_eq!(worst, 0.0);
    // The engine says what it read.
    let hints = SelectHints {
        step_ms: HOUR,
        range_ms: 6 * HOUR,
        func: Some("rate".into()),
        ..SelectHints::default()
    };
    let m = [Matcher::equal("__name__", "req_total")];
    let s = db.querier().select(&m, 0, DAYS * DAY, &hints).unwrap();
    assert_eq!(s[0].resolution_ms(), RES_1H);
    let one_hour = SelectHints {
        range_ms: HOUR,
        ..hints.clone()
    };
    let s = db.querier().select(&m, 0, DAYS * DAY, &one_hour).unwrap();
    assert_eq!(s[0].resolution_ms(), RES_1H);
    let capped = SelectHints {
        max_resolution_ms: Some(RES_5M),
        ..one_hour
    };
    let s = db.querier().select(&m, 0, DAYS * DAY, &capped).unwrap();
    assert_eq!(s[0].resolution_ms(), RES_5M);
    let raw_hints = SelectHints {
        max_resolution_ms: Some(0),
        ..hints
    };
    let s = db.querier().select(&m, 0, DAYS * DAY, &raw_hints).unwrap();
    assert_eq!(s[0].aggregate(), None);
}

#[test]
fn reserved_label_never_visible() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path());
    let q = db.querier();
    let names = q.label_names(&[], 0, i64::MAX).unwrap();
    assert!(!names.iter().any(|n| n == AGGR_LABEL), "{names:?}");
    assert!(
        q.label_values(AGGR_LABEL, &[], 0, i64::MAX)
            .unwrap()
            .is_empty()
    );
    for res in [None, Some(0)] {
        for expr in [
            "rate(req_total[6h])",
            "temp",
            "max_over_time(temp[6h])",
            "avg_over_time(temp[6h])",
        ] {
            for (labels, _) in query(&db, expr, 6 * HOUR, res) {
                assert!(labels.get(AGGR_LABEL).is_none(), "{expr}: {labels}");
            }
        }
        // Selecting by the reserved label finds nothing; excluding it changes nothing.
        assert!(query(&db, "temp{__aggr__=\"max\"}", 6 * HOUR, res).is_empty());
        assert_eq!(
            query(&db, "temp{__aggr__!=\"max\"}", 6 * HOUR, res),
            query(&db, "temp", 6 * HOUR, res)
        );
    }
    let m = [Matcher::equal("__name__", "temp")];
    let hints = SelectHints {
        step_ms: HOUR,
        ..SelectHints::default()
    };
    for s in db.querier().select(&m, 0, i64::MAX, &hints).unwrap() {
        assert!(s.labels().get(AGGR_LABEL).is_none());
    }
}

#[test]
fn old_data_stays_queryable_after_raw_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path());
    let deleted = db
        .apply_retention_policy(&ResolutionRetention {
            raw_ms: 15 * DAY,
            res_5m_ms: 365 * DAY,
            res_1h_ms: 365 * DAY,
        })
        .unwrap();
    assert!(!deleted.is_empty());
    assert!(deleted.iter().all(|m| m.resolution_ms == 0));
    let q = "max_over_time(temp[6h])";
    let auto = query(&db, q, 6 * HOUR, None);
    let raw = query(&db, q, 6 * HOUR, Some(0));
    let first = |v: &[(Labels, Vec<(i64, f64)>)]| v[0].1.first().map(|p| p.0);
    assert!(first(&auto) < Some(5 * DAY), "auto reads the 1 h copies");
    assert!(first(&raw) > Some(14 * DAY), "raw data is gone");
}
