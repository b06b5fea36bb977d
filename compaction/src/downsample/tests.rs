use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use strata_engine::block::{Block, Tombstones, write_tombstones};
use strata_engine::downsample::{AGGR_LABEL, Aggregate, RES_1H, RES_5M};
use strata_engine::{EngineOptions, HeadOptions, Labels, Matcher, SelectHints, TenantDb};

use super::*;

const STALE: u64 = 0x7ff0_0000_0000_0002;
const HOUR: i64 = 3_600_000;

fn open(dir: &Path) -> TenantDb {
    let opts = EngineOptions {
        data_dir: dir.to_path_buf(),
        head: HeadOptions {
            block_range_ms: 2 * HOUR,
            ..HeadOptions::default()
        },
        ..EngineOptions::default()
    };
    TenantDb::open("t1", &opts).unwrap().0
}

fn labels(name: &str, job: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("job", job)]).unwrap()
}

#[test]
fn windows_counter_resets_and_stale_markers() {
    let stale = f64::from_bits(STALE);
    // Window 0 ([0, 300000)): 1, 3, reset to 1, stale marker; window 1: 4, 2 (reset).
    let s = vec![
        (1_000, 1.0),
        (100_000, 3.0),
        (200_000, 1.0),
        (250_000, stale),
        (300_000, 4.0),
        (400_000, 2.0),
    ];
    let a = aggregate_raw(s, RES_5M);
    assert_eq!(a.count, vec![(200_000, 3.0), (400_000, 2.0)]);
    assert_eq!(a.sum, vec![(200_000, 5.0), (400_000, 6.0)]);
    assert_eq!(a.min, vec![(200_000, 1.0), (400_000, 2.0)]);
    assert_eq!(a.max, vec![(200_000, 3.0), (400_000, 4.0)]);
    assert_eq!(a.last, vec![(200_000, 1.0), (400_000, 2.0)]);
    // Counter: first raw sample, then 1 + 3 (reset) = 4 at the end of window 0, and
    // 2 + 3 + 4 = 9 at the end of window 1.
    assert_eq!(
        a.counter,
        vec![(1_000, 1.0), (200_000, 4.0), (400_000, 9.0)]
    );
    // A single-sample first window gets no second counter point.
    let b = aggregate_raw(vec![(0, 5.0), (300_000, 6.0)], RES_5M);
    assert_eq!(b.counter, vec![(0, 5.0), (300_000, 6.0)]);
    // Negative timestamps align to absolute multiples too.
    let c = aggregate_raw(vec![(-1, 1.0), (0, 2.0)], RES_5M);
    assert_eq!(c.count, vec![(-1, 1.0), (0, 1.0)]);
    assert!(aggregate_raw(vec![(0, stale)], RES_5M).is_empty());
}

/// The naive model: group by window, reset-adjust over the whole run.
fn model(samples: &[(i64, f64)], res: i64) -> BTreeMap<i64, (i64, f64, f64, f64, f64, f64)> {
    let mut out: BTreeMap<i64, (i64, f64, f64, f64, f64, f64)> = BTreeMap::new();
    let mut offset = 0.0;
    let mut prev: Option<f64> = None;
    for &(t, v) in samples {
        if v.to_bits() == STALE {
            continue;
        }
        if prev.is_some_and(|p| v < p) {
            offset += prev.unwrap();
        }
        prev = Some(v);
        let e = out.entry(t.div_euclid(res)).or_insert((
            t,
            0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
        ));
        e.0 = t;
        e.1 += 1.0;
        e.2 += v;
        e.3 = e.3.min(v);
        e.4 = e.4.max(v);
        e.5 = v + offset;
    }
    out
}

fn samples_strategy() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec((1i64..120_000, 0u8..20, 0u8..40), 0..400).prop_map(|steps| {
        let mut t = -3 * HOUR;
        let mut v = 0.0;
        let mut out = Vec::new();
        for (dt, kind, inc) in steps {
            t += dt;
            match kind {
                0 => out.push((t, f64::from_bits(STALE))),
                1 => {
                    v = f64::from(inc);
                    out.push((t, v));
                }
                _ => {
                    v += f64::from(inc);
                    out.push((t, v));
                }
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raw_aggregation_matches_the_model(samples in samples_strategy()) {
        let a = aggregate_raw(samples.clone(), RES_5M);
        let m = model(&samples, RES_5M);
        let ts: Vec<i64> = m.values().map(|w| w.0).collect();
        prop_assert_eq!(a.count.iter().map(|p| p.0).collect::<Vec<_>>(), ts.clone());
        for (i, w) in m.values().enumerate() {
            prop_assert_eq!(a.count[i].1, w.1);
            prop_assert_eq!(a.sum[i].1, w.2);
            prop_assert_eq!(a.min[i].1, w.3);
            prop_assert_eq!(a.max[i].1, w.4);
        }
        // The counter ends every window at the model's reset-adjusted value.
        let window_counter: BTreeMap<i64, f64> = a.counter.iter().copied().collect();
        for w in m.values() {
            prop_assert_eq!(window_counter.get(&w.0).copied(), Some(w.5));
        }
        // It is non-decreasing (values are non-negative), so rate sees no reset.
        prop_assert!(a.counter.windows(2).all(|p| p[1].1 >= p[0].1));
    }

    #[test]
    fn aggregates_of_aggregates_equal_aggregates_of_raw(samples in samples_strategy()) {
        let direct = aggregate_raw(samples.clone(), RES_1H);
        let two_step = aggregate_aggregates(&aggregate_raw(samples, RES_5M), RES_1H);
        prop_assert_eq!(direct, two_step);
    }
}

#[test]
fn aggregate_of_aggregates_skips_points_thinned_by_tombstones() {
    let a = aggregate_raw(
        (0..24)
            .map(|i| (i * 60_000 * 5 + 1, i as f64))
            .collect::<Vec<_>>(),
        RES_5M,
    );
    let mut thinned = a.clone();
    thinned.sum.remove(3);
    let b = aggregate_aggregates(&thinned, RES_1H);
    // Window 3 is dropped (its sum is missing); the others are aggregated.
    let expected: f64 = (0..12).map(f64::from).sum::<f64>() - 3.0;
    assert_eq!(b.sum.first().map(|p| p.1), Some(expected));
    assert_eq!(b.count.first().map(|p| p.1), Some(11.0));
}

fn import(db: &TenantDb, series: &[(Labels, Vec<(i64, f64)>)]) -> Vec<BlockMeta> {
    let map: BTreeMap<Labels, Vec<(i64, f64)>> = series.iter().cloned().collect();
    db.import(&map).unwrap()
}

fn series_of(block: &Block) -> Vec<(String, Vec<(i64, f64)>)> {
    (0..block.num_series())
        .map(|id| {
            let (l, s) = decode_series(block, id).unwrap();
            (l.to_string(), s)
        })
        .collect()
}

/// Golden test: the layout of a tiny downsampled block.
#[test]
fn golden_tiny_downsampled_block() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let raw = import(
        &db,
        &[(
            labels("up", "a"),
            vec![(0, 1.0), (60_000, 2.0), (300_000, 0.5), (420_000, 4.0)],
        )],
    );
    let src = db.blocks().into_iter().next().unwrap();
    let meta = downsample_block(&db, &src, RES_5M).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("tenants/t1/metrics")
                .join(&meta.id)
                .join("meta.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Ids are random: check them separately, then blank them.
    assert_eq!(json["compaction"]["sources"][0], raw[0].id.as_str());
    json["id"] = "ID".into();
    json["compaction"]["sources"][0] = "SRC".into();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "ID",
            "min_time": 0,
            "max_time": 2 * HOUR - 1,
            "stats": {"num_series": 6, "num_chunks": 6, "num_samples": 13},
            "compaction": {"level": 1, "sources": ["SRC"]},
            "resolution_ms": 300000,
            "version": 1
        })
    );
    let block = db
        .blocks()
        .into_iter()
        .find(|b| b.meta().resolution_ms == RES_5M)
        .unwrap();
    let got = series_of(&block);
    let expect = vec![
        (
            "{__aggr__=\"count\", __name__=\"up\", job=\"a\"}",
            vec![(60_000, 2.0), (420_000, 2.0)],
        ),
        (
            "{__aggr__=\"counter\", __name__=\"up\", job=\"a\"}",
            vec![(0, 1.0), (60_000, 2.0), (420_000, 6.0)],
        ),
        (
            "{__aggr__=\"last\", __name__=\"up\", job=\"a\"}",
            vec![(60_000, 2.0), (420_000, 4.0)],
        ),
        (
            "{__aggr__=\"max\", __name__=\"up\", job=\"a\"}",
            vec![(60_000, 2.0), (420_000, 4.0)],
        ),
        (
            "{__aggr__=\"min\", __name__=\"up\", job=\"a\"}",
            vec![(60_000, 1.0), (420_000, 0.5)],
        ),
        (
            "{__aggr__=\"sum\", __name__=\"up\", job=\"a\"}",
            vec![(60_000, 3.0), (420_000, 4.5)],
        ),
    ];
    let expect: Vec<(String, Vec<(i64, f64)>)> = expect
        .into_iter()
        .map(|(l, s)| (l.to_string(), s))
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn tombstones_of_the_source_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let samples: Vec<(i64, f64)> = (0..120).map(|i| (i * 60_000, 1.0)).collect();
    import(&db, &[(labels("g", "a"), samples)]);
    let src = db.blocks().into_iter().next().unwrap();
    let mut t = Tombstones::new();
    t.add(0, 0, 30 * 60_000 - 1);
    write_tombstones(src.dir(), &t).unwrap();
    let src = Block::open(src.dir()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (meta, path) = write_downsampled(out.path(), &src, RES_5M, Vec::new()).unwrap();
    assert_eq!(meta.resolution_ms, RES_5M);
    let block = Block::open(&path).unwrap();
    let ids = block.postings(AGGR_LABEL, "count").unwrap();
    let (_, counts) = decode_series(&block, ids.min().unwrap()).unwrap();
    assert_eq!(counts.len(), 18, "the first 30 minutes are deleted");
    assert!(counts.iter().all(|p| p.0 >= 30 * 60_000 && p.1 == 5.0));
    // No spill directory is left behind.
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn due_blocks_get_5m_then_1h_copies_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    // 14 days of one counter and one gauge at 5-minute scrapes: 168 raw 2 h blocks.
    let end = 14 * 24 * HOUR;
    let pts = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..end / 300_000).map(|i| (i * 300_000, f(i))).collect()
    };
    import(
        &db,
        &[
            (labels("c_total", "a"), pts(&|i| (i % 1000) as f64)),
            (labels("g", "a"), pts(&|i| (i % 7) as f64)),
        ],
    );
    let raw = db.block_metas().len();
    let opts = DownsampleOptions::default();
    let made = downsample_due(&db, &opts).unwrap();
    let n5 = made.iter().filter(|m| m.resolution_ms == RES_5M).count();
    let n1 = made.iter().filter(|m| m.resolution_ms == RES_1H).count();
    // Blocks ending more than 40 h / 10 d before the newest sample (336 h - 5 m): those
    // ending at or before 294 h and 94 h.
    assert_eq!(raw, 168);
    assert_eq!(n5, 147);
    assert_eq!(n1, 47);
    // The 1 h copies were made from the 5 m copies: same sources.
    for m in made.iter().filter(|m| m.resolution_ms == RES_1H) {
        assert!(
            made.iter()
                .any(|f| f.resolution_ms == RES_5M && f.compaction.sources == m.compaction.sources)
        );
    }
    assert!(downsample_due(&db, &opts).unwrap().is_empty(), "idempotent");
    // Reopening loads them again.
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.block_metas().len(), raw + n5 + n1);
}

#[test]
fn a_copy_of_merged_sources_replaces_older_copies() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let samples: Vec<(i64, f64)> = (0..240).map(|i| (i * 60_000, i as f64)).collect();
    let raw = import(&db, &[(labels("c_total", "a"), samples.clone())]);
    assert_eq!(raw.len(), 2);
    for b in db.blocks() {
        downsample_block(&db, &b, RES_5M).unwrap();
    }
    let old: Vec<String> = db
        .block_metas()
        .into_iter()
        .filter(|m| m.resolution_ms == RES_5M)
        .map(|m| m.id)
        .collect();
    assert_eq!(old.len(), 2);
    // A compaction merges the two raw blocks into one with both sources.
    let mut w = BlockWriter::create(
        db.dir(),
        0,
        4 * HOUR - 1,
        2,
        raw.iter().map(|m| m.id.clone()).collect(),
    )
    .unwrap();
    let data = chunk::encode(Encoding::Gorilla, &samples).unwrap();
    w.add_series(
        &labels("c_total", "a"),
        &[(0, 239 * 60_000, 240, Encoding::Gorilla.as_u8(), &data)],
    )
    .unwrap();
    let (_, path) = w.finish().unwrap();
    db.replace_blocks(&path, &[raw[0].id.clone(), raw[1].id.clone()])
        .unwrap();
    let merged = db
        .blocks()
        .into_iter()
        .find(|b| b.meta().resolution_ms == 0)
        .unwrap();
    let new = downsample_block(&db, &merged, RES_5M).unwrap();
    let mut parents = new.compaction.parents.clone();
    parents.sort();
    let mut old_sorted = old.clone();
    old_sorted.sort();
    assert_eq!(parents, old_sorted);
    let metas = db.block_metas();
    assert_eq!(metas.len(), 2, "merged raw block and one 5 m copy");
    assert!(old.iter().all(|id| !db.dir().join(id).exists()));
    // The copy reads back like the raw data.
    let q = db.querier();
    let hints = SelectHints {
        step_ms: HOUR,
        range_ms: HOUR,
        func: Some("rate".into()),
        ..SelectHints::default()
    };
    let s = q
        .select(
            &[Matcher::equal("__name__", "c_total")],
            0,
            4 * HOUR,
            &hints,
        )
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].aggregate(), Some(Aggregate::Counter));
    assert_eq!(s[0].resolution_ms(), RES_5M);
    let pts = s[0].clone().into_weighted().unwrap().1;
    assert_eq!(pts.first().map(|p| p.1), Some(0.0));
    assert_eq!(pts.last().map(|p| (p.0, p.1)), Some((239 * 60_000, 239.0)));
}

#[test]
fn invalid_resolution_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    import(&db, &[(labels("g", "a"), vec![(0, 1.0)])]);
    let b = db.blocks().into_iter().next().unwrap();
    let five = downsample_block(&db, &b, RES_5M).unwrap();
    let five = Block::open(&db.dir().join(&five.id)).unwrap();
    assert!(matches!(
        write_downsampled(db.dir(), &five, RES_5M, Vec::new()),
        Err(DownsampleError::InvalidResolution { .. })
    ));
    assert!(matches!(
        write_downsampled(db.dir(), &b, 0, Vec::new()),
        Err(DownsampleError::InvalidResolution { .. })
    ));
}
