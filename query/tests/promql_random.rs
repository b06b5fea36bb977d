//! Random PromQL against a small store: whatever the expression, evaluation returns a value
//! or an error — it never panics, and range results are sorted and inside the grid.
//!
//! Expressions are generated from a grammar covering selectors, every operator and modifier,
//! aggregations, functions (with arguments of the right and of the wrong type) and subqueries,
//! so the evaluator meets combinations no hand-written test thinks of.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use proptest::prelude::*;
use strata_engine::{Head, HeadOptions, Labels, Querier};
use strata_query::{EvalOptions, Value, instant_query, range_query};

fn store() -> Querier {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let mut acc = Vec::new();
    let series = [
        ("http_requests_total", "api", "0"),
        ("http_requests_total", "api", "1"),
        ("http_requests_total", "web", "0"),
        ("node_load1", "node", "0"),
        ("req_bucket", "api", "0.1"),
        ("req_bucket", "api", "1"),
        ("req_bucket", "api", "+Inf"),
    ];
    for (i, (name, job, x)) in series.iter().enumerate() {
        let label = if name.ends_with("_bucket") {
            "le"
        } else {
            "instance"
        };
        let l = Labels::from_pairs(&[("__name__", *name), ("job", *job), (label, *x)]).unwrap();
        let (r, _) = head.get_or_create(&l);
        let samples: Vec<(i64, f64)> = (0..60)
            .map(|k| {
                let v = match (i + k) % 17 {
                    0 => f64::NAN,
                    5 => -3.5,
                    _ => (k * (i + 1)) as f64,
                };
                (k as i64 * 15_000, v)
            })
            .collect();
        head.append(r, &samples, &mut acc).unwrap();
    }
    Querier::new(head, Vec::new())
}

fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("http_requests_total".to_string()),
        Just(r#"http_requests_total{job="api"}"#.to_string()),
        Just(r#"{__name__=~"http.*|node.*"}"#.to_string()),
        Just(r#"node_load1{job!="x"}"#.to_string()),
        Just("req_bucket".to_string()),
        Just("nonexistent".to_string()),
        Just("http_requests_total offset 1m".to_string()),
        Just("http_requests_total @ 300".to_string()),
        Just("node_load1 @ end()".to_string()),
    ]
}

fn range() -> impl Strategy<Value = String> {
    prop_oneof![Just("1m"), Just("5m"), Just("30s"), Just("10m")].prop_map(str::to_string)
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        selector(),
        (-5i32..5).prop_map(|n| n.to_string()),
        Just("NaN".to_string()),
        Just("Inf".to_string()),
        Just("time()".to_string()),
        Just(r#""str""#.to_string()),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        let unary_fns = prop_oneof![
            Just("abs"),
            Just("ceil"),
            Just("sgn"),
            Just("exp"),
            Just("ln"),
            Just("timestamp"),
            Just("sort_desc"),
            Just("absent"),
            Just("scalar"),
            Just("vector"),
            Just("hour"),
            Just("round"),
        ];
        let range_fns = prop_oneof![
            Just("rate"),
            Just("irate"),
            Just("increase"),
            Just("delta"),
            Just("deriv"),
            Just("changes"),
            Just("resets"),
            Just("avg_over_time"),
            Just("max_over_time"),
            Just("stddev_over_time"),
            Just("last_over_time"),
            Just("absent_over_time"),
            Just("mad_over_time"),
        ];
        let aggs = prop_oneof![
            Just("sum"),
            Just("avg"),
            Just("min"),
            Just("max"),
            Just("count"),
            Just("group"),
            Just("stddev"),
            Just("stdvar"),
        ];
        let ops = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("^"),
            Just("atan2"),
            Just("=="),
            Just("!="),
            Just(">"),
            Just("<="),
            Just(">= bool"),
            Just("and"),
            Just("or"),
            Just("unless"),
            Just("+ on(job)"),
            Just("* ignoring(instance)"),
            Just("- on(job) group_left"),
            Just("/ on(job) group_right(instance)"),
        ];
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(a, o, b)| format!("({a}) {o} ({b})")),
            (unary_fns, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (range_fns.clone(), selector(), range()).prop_map(|(f, s, r)| format!("{f}({s}[{r}])")),
            (range_fns, inner.clone(), range()).prop_map(|(f, a, r)| format!("{f}(({a})[{r}:1m])")),
            (aggs, inner.clone()).prop_map(|(g, a)| format!("{g} by (job) ({a})")),
            inner.clone().prop_map(|a| format!("topk(2, {a})")),
            inner
                .clone()
                .prop_map(|a| format!("quantile without (instance) (0.9, {a})")),
            inner
                .clone()
                .prop_map(|a| format!(r#"count_values("v", {a})"#)),
            inner
                .clone()
                .prop_map(|a| format!("histogram_quantile(0.5, {a})")),
            inner
                .clone()
                .prop_map(|a| format!(r#"label_replace({a}, "dst", "$1", "job", "(.*)")"#)),
            inner.clone().prop_map(|a| format!("clamp({a}, -1, 10)")),
            inner.prop_map(|a| format!("-({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_expressions_never_panic(e in expr(), t in 0i64..1_200, step in 1i64..120) {
        let q = store();
        let opts = EvalOptions { max_samples: 200_000, ..EvalOptions::default() };
        let _ = instant_query(&q, &e, t * 1000, &opts);
        let start = t * 1000;
        let end = start + 600_000;
        if let Ok(out) = range_query(&q, &e, start, end, step * 1000, &opts) {
            match out.value {
                Value::Matrix(m) => {
                    for w in m.windows(2) {
                        prop_assert!(w[0].labels < w[1].labels, "unsorted or duplicate series in {e}");
                    }
                    for s in &m {
                        for p in &s.points {
                            prop_assert!(p.0 >= start && p.0 <= end && (p.0 - start) % (step * 1000) == 0);
                        }
                    }
                }
                other => prop_assert!(false, "range query returned {other:?} for {e}"),
            }
        }
    }
}
