//! LogQL over a real log store: every result is checked against a reference computed
//! directly from the pushed lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_engine::Labels;
use strata_engine::logs::{LogEntry, LogStore, LogStoreOptions, PushLimits, StreamEntries};
use strata_query::logql::*;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S;

fn lines() -> Vec<(&'static str, &'static str, i64, String)> {
    let mut out = Vec::new();
    for i in 0..600i64 {
        let svc = ["checkout", "cart", "auth"][(i % 3) as usize];
        let level = if i % 10 == 0 { "error" } else { "info" };
        let line = match i % 3 {
            0 => format!(
                r#"{{"level":"{level}","msg":"order {i}","latency_ms":{}}}"#,
                i % 50
            ),
            1 => format!("level={level} msg=\"cart op {i}\" duration={}ms", i % 40),
            _ => format!("{level} auth request {i} timeout={}", i % 7 == 0),
        };
        out.push((svc, level, T0 + i * S, line));
    }
    out
}

fn store() -> (tempfile::TempDir, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = LogStore::open(
        "t",
        &LogStoreOptions {
            data_dir: dir.path().to_path_buf(),
            chunk_target_bytes: 2000,
            ..LogStoreOptions::default()
        },
    )
    .unwrap();
    let mut streams: Vec<StreamEntries> = Vec::new();
    for (svc, _, ts, line) in lines() {
        let labels = Labels::from_pairs(&[("job", "app"), ("service", svc)]).unwrap();
        match streams.iter_mut().find(|s| s.labels == labels) {
            Some(s) => s.entries.push(LogEntry {
                ts,
                line,
                metadata: vec![],
            }),
            None => streams.push(StreamEntries {
                labels,
                entries: vec![LogEntry {
                    ts,
                    line,
                    metadata: vec![],
                }],
            }),
        }
    }
    let limits = PushLimits {
        reject_older_than_ns: 0,
        creation_grace_ns: 0,
        ..PushLimits::default()
    };
    let r = store.push(streams, &limits).unwrap();
    assert_eq!(r.accepted, 600);
    store.flush().unwrap();
    (dir, store)
}

fn logs(store: &LogStore, q: &str, limit: usize, dir: Direction) -> Vec<StreamResult> {
    let Expr::Log(l) = parse(q).unwrap() else {
        panic!("{q} is not a log query")
    };
    let mut st = EvalStats::default();
    eval_logs(store, &l, T0, T0 + 1000 * S, limit, dir, &mut st).unwrap()
}

fn metric(store: &LogStore, q: &str, grid: &Grid) -> Vec<SeriesResult> {
    let Expr::Metric(m) = parse(q).unwrap() else {
        panic!("{q} is not a metric query")
    };
    let mut st = EvalStats::default();
    eval_metric(Some(store), &m, grid, &EvalLimits::default(), &mut st).unwrap()
}

#[test]
fn line_filters_match_the_reference() {
    let (_d, store) = store();
    let got: usize = logs(
        &store,
        r#"{job="app"} |= "timeout=true""#,
        1000,
        Direction::Forward,
    )
    .iter()
    .map(|s| s.entries.len())
    .sum();
    let want = lines()
        .iter()
        .filter(|l| l.3.contains("timeout=true"))
        .count();
    assert_eq!(got, want);
    assert!(want > 0);
    let got = logs(
        &store,
        r#"{service="cart"} != "info" |~ "op [0-9]+0 ""#,
        1000,
        Direction::Forward,
    );
    let want: Vec<i64> = lines()
        .iter()
        .filter(|l| l.0 == "cart" && !l.3.contains("info"))
        .filter(|l| regex::Regex::new("op [0-9]+0 ").unwrap().is_match(&l.3))
        .map(|l| l.2)
        .collect();
    let got: Vec<i64> = got
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.0))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn limit_and_direction() {
    let (_d, store) = store();
    let r = logs(&store, r#"{job="app"}"#, 5, Direction::Backward);
    let mut ts: Vec<i64> = r
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.0))
        .collect();
    ts.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ts, (595..600).rev().map(|i| T0 + i * S).collect::<Vec<_>>());
    let r = logs(&store, r#"{job="app"}"#, 3, Direction::Forward);
    let mut ts: Vec<i64> = r
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.0))
        .collect();
    ts.sort_unstable();
    assert_eq!(ts, vec![T0, T0 + S, T0 + 2 * S]);
}

#[test]
fn json_and_logfmt_label_filters() {
    let (_d, store) = store();
    let r = logs(
        &store,
        r#"{service="checkout"} | json | level="error""#,
        1000,
        Direction::Forward,
    );
    let n: usize = r.iter().map(|s| s.entries.len()).sum();
    let want = lines()
        .iter()
        .filter(|l| l.0 == "checkout" && l.1 == "error")
        .count();
    assert_eq!(n, want);
    assert!(
        r.iter()
            .all(|s| s.labels.get("level").map(String::as_str) == Some("error"))
    );
    let r = logs(
        &store,
        r#"{service="cart"} | logfmt | duration >= 30ms | line_format "{{.msg}}""#,
        1000,
        Direction::Forward,
    );
    let n: usize = r.iter().map(|s| s.entries.len()).sum();
    let want = (0..600).filter(|i| i % 3 == 1 && i % 40 >= 30).count();
    assert_eq!(n, want);
    assert!(
        r.iter()
            .all(|s| s.entries.iter().all(|e| e.1.starts_with("cart op")))
    );
}

#[test]
fn count_rate_and_sum_by_match_the_reference() {
    let (_d, store) = store();
    let grid = Grid {
        start: T0 + 60 * S,
        end: T0 + 600 * S,
        step: 60 * S,
    };
    let r = metric(
        &store,
        r#"sum by (service) (count_over_time({job="app"}[1m]))"#,
        &grid,
    );
    assert_eq!(r.len(), 3);
    for s in &r {
        let svc = s.labels.get("service").unwrap();
        for &(t, v) in &s.points {
            let want = lines()
                .iter()
                .filter(|l| l.0 == svc && l.2 > t - 60 * S && l.2 <= t)
                .count();
            assert_eq!(v, want as f64, "{svc} at {t}");
        }
    }
    let r = metric(&store, r#"sum(rate({job="app"} |= "error" [2m]))"#, &grid);
    for &(t, v) in &r[0].points {
        let want = lines()
            .iter()
            .filter(|l| l.3.contains("error") && l.2 > t - 120 * S && l.2 <= t)
            .count() as f64
            / 120.0;
        assert!((v - want).abs() < 1e-9);
    }
    let r = metric(&store, r#"bytes_over_time({service="auth"}[1m])"#, &grid);
    let &(t, v) = r[0].points.last().unwrap();
    let want: usize = lines()
        .iter()
        .filter(|l| l.0 == "auth" && l.2 > t - 60 * S && l.2 <= t)
        .map(|l| l.3.len())
        .sum();
    assert_eq!(v, want as f64);
}

#[test]
fn unwrap_and_quantiles() {
    let (_d, store) = store();
    let grid = Grid {
        start: T0 + 600 * S,
        end: T0 + 600 * S,
        step: S,
    };
    let r = metric(
        &store,
        r#"max_over_time({service="checkout"} | json | unwrap latency_ms [10m]) by (service)"#,
        &grid,
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].points[0].1, 49.0);
    let r = metric(
        &store,
        r#"quantile_over_time(0.5, {service="cart"} | logfmt | unwrap duration(duration) [10m]) by (job)"#,
        &grid,
    );
    let mut vals: Vec<f64> = (0..600)
        .filter(|i| i % 3 == 1)
        .map(|i| f64::from(i % 40) / 1000.0)
        .collect();
    vals.sort_by(f64::total_cmp);
    let mid = (vals[(vals.len() - 1) / 2] + vals[vals.len() / 2]) / 2.0;
    assert!(
        (r[0].points[0].1 - mid).abs() < 1e-9,
        "{} vs {mid}",
        r[0].points[0].1
    );
    let r = metric(&store, "vector(1)+vector(1)", &grid);
    assert_eq!(r[0].points[0].1, 2.0);
    let r = metric(
        &store,
        r#"topk(1, sum by (service) (count_over_time({job="app"} |= "error" [10m])))"#,
        &grid,
    );
    assert_eq!(r.len(), 1);
}
