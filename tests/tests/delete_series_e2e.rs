//! Series deletion through the real `strata` binary: `POST /api/v1/admin/tsdb/delete_series`
//! over a range spanning a block and the head answers 204, queries stop returning the samples,
//! a bad request is 400 `bad_data`, the audit log records the client's address, and after a
//! shutdown the data directory still holds the deletion (block tombstones and the head's WAL
//! record).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use strata_engine::{
    AppendSeries, DEFAULT_TENANT, Engine, EngineOptions, HeadOptions, Labels, Matcher, SelectHints,
};
use strata_tests::harness::{self, Strata};

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

fn up(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("h{i}"))]).unwrap()
}

/// 3 series, one sample a minute over [0, 140 min): the first hour in a block, the rest in
/// the WAL.
fn prepare(dir: &Path) {
    let (engine, _) = Engine::open(opts(dir)).unwrap();
    let labels: Vec<Labels> = (0..3).map(up).collect();
    let samples: Vec<(i64, f64)> = (0..140).map(|k| (k * 60_000, k as f64)).collect();
    let batch: Vec<AppendSeries> = labels
        .iter()
        .map(|l| AppendSeries {
            labels: l,
            samples: &samples,
        })
        .collect();
    engine.append(DEFAULT_TENANT, &batch).unwrap();
    let cut = engine
        .tenant(DEFAULT_TENANT)
        .unwrap()
        .cut_due_blocks()
        .unwrap();
    assert_eq!(cut.len(), 1);
    engine.close().unwrap();
}

/// One HTTP/1.1 request, with an optional form body; returns (status, body).
fn http(addr: &str, method: &str, target: &str, form: Option<&str>) -> (u16, String) {
    let headers: &[(&str, &str)] = if form.is_some() {
        &[("Content-Type", "application/x-www-form-urlencoded")]
    } else {
        &[]
    };
    harness::http(addr, method, target, headers, form.unwrap_or("").as_bytes()).unwrap()
}

/// `count_over_time` of every `up` series over the whole range, by instance.
fn counts(addr: &str) -> Vec<(String, String)> {
    let (st, body) = http(
        addr,
        "GET",
        "/api/v1/query?query=count_over_time(up%5B3h%5D)&time=8400",
        None,
    );
    assert_eq!(st, 200, "{body}");
    // The body may be chunked; the JSON object is the part between the outer braces.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn delete_series_through_the_binary_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let strata = Strata::start(dir.path(), &[]).unwrap();
    let addr = strata.addr.clone();
    let all = |n: &str| {
        vec![
            ("h0".into(), "140".into()),
            ("h1".into(), n.into()),
            ("h2".into(), "140".into()),
        ]
    };
    assert_eq!(counts(&addr), all("140"));

    // Minutes 30..=90 of h1: the second half of the block and the first half hour of the head.
    let form = "match%5B%5D=up%7Binstance%3D%22h1%22%7D&start=1800&end=5400";
    let (st, body) = http(
        &addr,
        "POST",
        "/api/v1/admin/tsdb/delete_series",
        Some(form),
    );
    assert_eq!(st, 204, "{body}");
    assert_eq!(counts(&addr), all("79"));

    let (st, body) = http(
        &addr,
        "POST",
        "/api/v1/admin/tsdb/delete_series",
        Some("start=0"),
    );
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains("bad_data") && body.contains("match[]"),
        "{body}"
    );

    assert!(strata.stop().unwrap(), "clean shutdown");

    // The audit log names the client; the bad request never reached the engine.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(lines[0]["matchers"][0], "up{instance=\"h1\"}");
    assert_eq!(
        (
            lines[0]["head_series"].as_u64(),
            lines[0]["block_series"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        lines[0]["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{log}"
    );

    // The deletion is on disk: the block's tombstones and the head's WAL record.
    let (engine, _) = Engine::open(opts(dir.path())).unwrap();
    let s = engine
        .select(
            DEFAULT_TENANT,
            &[Matcher::equal("instance", "h1")],
            i64::MIN,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    let ts: Vec<i64> = s[0]
        .samples(i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(ts.len(), 79);
    assert!(ts.iter().all(|&t| !(1_800_000..=5_400_000).contains(&t)));
}
