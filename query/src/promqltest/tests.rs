//! Tests of the conformance runner: the DSL parser, the comparison rules, skip detection, and
//! whole scripts run against the evaluator (selectors and literals).

use super::compare::{compare_annotations, compare_result, floats_match};
use super::script::{
    AnnotationExpect, Command, Eval, EvalMode, Expected, RangeVectorExpect, SeqValue, TextMatch,
    parse_duration, parse_go_number, parse_script, parse_sequence, parse_series_desc, unquote,
};
use super::*;
use crate::{STALE_NAN_BITS, Sample};

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

fn floats(seq: &[SeqValue]) -> Vec<Option<f64>> {
    seq.iter()
        .map(|v| match v {
            SeqValue::Float(f) => Some(*f),
            SeqValue::Omitted => None,
            SeqValue::Histogram(_) => Some(-12345.0),
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs).unwrap()
}

fn only_eval(text: &str) -> Eval {
    let script = parse_script(text).unwrap();
    let evals: Vec<Eval> = script
        .commands
        .into_iter()
        .filter_map(|c| match c {
            Command::Eval(e) => Some(*e),
            _ => None,
        })
        .collect();
    assert_eq!(evals.len(), 1, "{text}");
    evals.into_iter().next().unwrap()
}

// ---------------------------------------------------------------- durations and numbers

#[test]
fn durations_follow_prometheus_syntax() {
    assert_eq!(parse_duration("0"), Ok(0));
    assert_eq!(parse_duration("10s"), Ok(10_000));
    assert_eq!(parse_duration("1m"), Ok(60_000));
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
    assert_eq!(parse_duration("10s53ms"), Ok(10_053));
    assert_eq!(parse_duration("2d"), Ok(172_800_000));
    assert_eq!(parse_duration("1w"), Ok(604_800_000));
    assert_eq!(parse_duration("1y"), Ok(31_536_000_000));
    assert_eq!(parse_duration("5ms"), Ok(5));
    for bad in ["", "5", "-1m", "1.5m", "1m1h", "1m1m", "1x", "m"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn bare_numbers_use_go_syntax() {
    assert_eq!(parse_go_number("3"), Some(3.0));
    assert_eq!(parse_go_number("-2.5"), Some(-2.5));
    assert_eq!(parse_go_number("0x1f"), Some(31.0));
    assert_eq!(
        parse_go_number("010"),
        Some(8.0),
        "leading 0 is octal in Go"
    );
    assert_eq!(parse_go_number("1e-3"), Some(0.001));
    assert_eq!(parse_go_number("+Inf"), Some(f64::INFINITY));
    assert_eq!(parse_go_number("-Inf"), Some(f64::NEG_INFINITY));
    assert!(parse_go_number("NaN").unwrap().is_nan());
    assert_eq!(parse_go_number("foo 1"), None);
    assert_eq!(parse_go_number("{} 1"), None);
}

#[test]
fn strings_unquote_like_go() {
    assert_eq!(unquote(r#""a\"b\n""#).unwrap(), "a\"b\n");
    assert_eq!(unquote(r#"'it\'s'"#).unwrap(), "it's");
    assert_eq!(unquote(r"`raw\n`").unwrap(), "raw\\n");
    assert_eq!(unquote(r#""\x41\u00e9\101""#).unwrap(), "AéA");
    assert!(unquote(r#""bad\q""#).is_err());
    assert!(unquote("noquotes").is_err());
}

// ---------------------------------------------------------------- value sequences

#[test]
fn sequences_expand_every_item_form() {
    assert_eq!(
        floats(&parse_sequence("1+2x3").unwrap()),
        vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]
    );
    assert_eq!(
        floats(&parse_sequence("5-1x2").unwrap()),
        vec![Some(5.0), Some(4.0), Some(3.0)]
    );
    assert_eq!(
        floats(&parse_sequence("-1-1x2").unwrap()),
        vec![Some(-1.0), Some(-2.0), Some(-3.0)]
    );
    assert_eq!(
        floats(&parse_sequence("2x2").unwrap()),
        vec![Some(2.0), Some(2.0), Some(2.0)]
    );
    assert_eq!(floats(&parse_sequence("7x0").unwrap()), vec![Some(7.0)]);
    assert_eq!(
        floats(&parse_sequence("1 _ 2").unwrap()),
        vec![Some(1.0), None, Some(2.0)]
    );
    // `_xn` is n gaps, not n+1.
    assert_eq!(
        floats(&parse_sequence("_x3 4").unwrap()),
        vec![None, None, None, Some(4.0)]
    );
    assert_eq!(
        floats(&parse_sequence("1e-3+1e-3x1").unwrap()),
        vec![Some(0.001), Some(0.002)]
    );
    let s = parse_sequence("Inf -Inf +Inf NaN stale 5m").unwrap();
    let f = floats(&s);
    assert_eq!(f[0], Some(f64::INFINITY));
    assert_eq!(f[1], Some(f64::NEG_INFINITY));
    assert_eq!(f[2], Some(f64::INFINITY));
    assert!(f[3].unwrap().is_nan() && !crate::is_stale(f[3].unwrap()));
    assert_eq!(f[4].unwrap().to_bits(), STALE_NAN_BITS);
    assert_eq!(f[5], Some(300.0), "a duration value is its seconds");
    assert!(parse_sequence("1+x3").is_err());
    assert!(parse_sequence("abc").is_err());
    assert!(parse_sequence("1x99999999999").is_err());
}

#[test]
fn sequences_use_repeated_addition() {
    let s = floats(&parse_sequence("0+0.1x10").unwrap());
    let mut v = 0.0f64;
    for _ in 0..10 {
        v += 0.1;
    }
    assert_eq!(s[10].unwrap().to_bits(), v.to_bits());
    // Multiplication would give exactly 1.0; repeated addition does not.
    assert_ne!(v, 10.0 * 0.1);
}

#[test]
fn histogram_literals_are_recognised() {
    let s = parse_sequence("1 {{schema:1 sum:2 count:3 buckets:[1 2] offset:-1}} 2").unwrap();
    assert_eq!(s.len(), 3);
    assert!(matches!(&s[1], SeqValue::Histogram(h) if h.starts_with("{{schema:1")));
    assert_eq!(parse_sequence("{{}}x2").unwrap().len(), 3);
    assert_eq!(
        parse_sequence("{{count:1}}+{{count:2 sum:1}}x3 _")
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        parse_sequence("{{count:5}}-{{count:1}}x1").unwrap().len(),
        2
    );
    assert!(parse_sequence("{{count:1").is_err());
    assert!(parse_sequence("{{bogus:1}}").is_err());
    assert!(parse_sequence("{{count:1 count:2}}").is_err());
}

// ---------------------------------------------------------------- series descriptions

#[test]
fn series_descriptions_parse() {
    let (l, rest) = parse_series_desc("foo 1 2").unwrap();
    assert_eq!(l, labels(&[("__name__", "foo")]));
    assert_eq!(rest, "1 2");
    let (l, _) = parse_series_desc(r#"http_requests{job="api", instance='0'}	1"#).unwrap();
    assert_eq!(
        l,
        labels(&[
            ("__name__", "http_requests"),
            ("job", "api"),
            ("instance", "0")
        ])
    );
    let (l, _) = parse_series_desc(r#"{__name__="up", job="x",} 1"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "up"), ("job", "x")]));
    let (l, rest) = parse_series_desc("{} 5").unwrap();
    assert!(l.is_empty());
    assert_eq!(rest, "5");
    let (l, _) = parse_series_desc(r#"{"my.metric", "a.b"="c\"d"} 1"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "my.metric"), ("a.b", "c\"d")]));
    let (l, _) = parse_series_desc("expect{} 1").unwrap();
    assert_eq!(l, labels(&[("__name__", "expect")]));
    let (l, rest) = parse_series_desc(r#"m{a="b"}@st _ 1s"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "m"), ("a", "b")]));
    assert!(rest.starts_with("@st"));
    // An empty value is the absence of the label.
    let (l, _) = parse_series_desc(r#"m{a=""} 1"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "m")]));
    let (_, rest) = parse_series_desc("m {{count:1}}").unwrap();
    assert_eq!(rest, "{{count:1}}");
    for bad in [
        r#"m{a=~"b"} 1"#,
        r#"m{a!="b"} 1"#,
        r#"m{a="b" 1"#,
        r#"m{a="b", a="c"} 1"#,
        "1m 1",
        r#"m{a=b} 1"#,
    ] {
        assert!(parse_series_desc(bad).is_err(), "{bad:?} should not parse");
    }
}

// ---------------------------------------------------------------- commands

#[test]
fn every_command_form_parses() {
    let text = r#"
# comment
load 1m
	http{job="a"} 0+10x2
  http{job="b"}   1 _ stale

load_with_nhcb 5m
  h_bucket{le="1"} 1

clear
EVAL instant at 1m http
  http{job="a"} 10

eval range from 0 to 2m step 1m http
  http{job="a"} 0 10 20

eval_fail instant at 0 foo(
  expected_fail_message some error

eval_ordered instant at 1m sort(http)

eval_warn range from 0 to 1m step 30s http

eval_info instant at 1m http
"#;
    let s = parse_script(text).unwrap();
    assert_eq!(s.commands.len(), 9);
    let Command::Load(l) = &s.commands[0] else {
        panic!("not a load")
    };
    assert_eq!((l.line, l.interval_ms, l.with_nhcb), (3, 60_000, false));
    assert_eq!(l.series.len(), 2);
    assert_eq!(l.series[1].line, 5);
    let Command::Load(l) = &s.commands[1] else {
        panic!("not a load")
    };
    assert!(l.with_nhcb);
    assert!(matches!(s.commands[2], Command::Clear { line: 10 }));
    let Command::Eval(e) = &s.commands[3] else {
        panic!("not an eval")
    };
    assert_eq!(e.mode, EvalMode::Instant { at_ms: 60_000 });
    assert_eq!(e.expr, "http");
    assert_eq!(e.line, 11);
    let Command::Eval(e) = &s.commands[4] else {
        panic!("not an eval")
    };
    assert_eq!(
        e.mode,
        EvalMode::Range {
            start_ms: 0,
            end_ms: 120_000,
            step_ms: 60_000
        }
    );
    let Command::Eval(e) = &s.commands[5] else {
        panic!("not an eval")
    };
    assert_eq!(e.fail, Some(TextMatch::Exact("some error".into())));
    let Command::Eval(e) = &s.commands[6] else {
        panic!("not an eval")
    };
    assert!(e.ordered);
    let Command::Eval(e) = &s.commands[7] else {
        panic!("not an eval")
    };
    assert_eq!(e.warn, AnnotationExpect::Some(vec![TextMatch::Any]));
    let Command::Eval(e) = &s.commands[8] else {
        panic!("not an eval")
    };
    assert_eq!(e.info, AnnotationExpect::Some(vec![TextMatch::Any]));
}

#[test]
fn expectation_lines_parse() {
    let e = only_eval(
        "eval instant at 1m foo\n  expect fail msg:vector cannot contain metrics\n  expect warn regex: a.c\n  expect warn msg: PromQL warning: x (1:2)\n  expect no_info\n  expect ordered\n  foo 1",
    );
    assert_eq!(
        e.fail,
        Some(TextMatch::Exact("vector cannot contain metrics".into()))
    );
    match &e.warn {
        AnnotationExpect::Some(v) => {
            assert_eq!(v.len(), 2);
            assert!(v[0].matches("xxabcxx"));
            assert_eq!(v[1], TextMatch::Exact("PromQL warning: x (1:2)".into()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.info, AnnotationExpect::None);
    assert!(e.ordered);

    let e = only_eval("eval instant at 0 1\n  -0x10");
    assert_eq!(e.expected, Expected::Scalar(-16.0));
    let e = only_eval("eval instant at 0 \"a\"\n  expect string \" Foo \"");
    assert_eq!(e.expected, Expected::String(" Foo ".into()));
    let e = only_eval("eval instant at 0 \"a\"\n  expect string `Foo`");
    assert_eq!(e.expected, Expected::String("Foo".into()));
    let e = only_eval(
        "eval instant at 1m m[1m]\n  expect range vector from 10s to 1m step 10s\n  m 1 2 _ 4",
    );
    assert_eq!(
        e.range_vector,
        Some(RangeVectorExpect {
            start_ms: 10_000,
            end_ms: 60_000,
            step_ms: 10_000
        })
    );
    let Expected::Series(s) = &e.expected else {
        panic!("series expected")
    };
    assert_eq!(s[0].values.len(), 4);
    let e = only_eval("eval instant at 0 foo\n  expect fail regex: bad.*thing");
    assert!(e.fail.as_ref().unwrap().matches("a bad old thing"));
    let e = only_eval("eval instant at 0 foo\n  foo{a=\"{{x}}\"} {{count:1}}");
    assert!(e.expects_histograms);
    let e = only_eval("eval instant at 0 foo\n  {} 1\n  foo 2");
    let Expected::Series(s) = &e.expected else {
        panic!("series expected")
    };
    assert_eq!(s.len(), 2);
}

#[test]
fn script_errors_name_the_line() {
    let cases = [
        ("load 1m\n  foo 1\n\nfrobnicate\n", 4, "unknown command"),
        ("eval instant at 0 foo\n  foo 1 2\n", 2, "exactly one value"),
        (
            "eval instant at 0 foo\n  expect warn\n  expect no_warn\n",
            3,
            "cannot be combined",
        ),
        (
            "eval range from 0 to 1m step 1m foo\n  expect ordered\n",
            2,
            "not allowed",
        ),
        (
            "eval instant at 0 foo\n  expect bogus\n",
            2,
            "unknown expectation",
        ),
        (
            "eval instant at 0 foo\n  expect fail\n  expect fail\n",
            3,
            "more than one",
        ),
        ("load 1x\n", 1, "invalid load interval"),
        ("eval instant at 0\n", 1, "without an expression"),
        ("eval sometimes foo\n", 1, "'instant' or 'range'"),
        (
            "eval range from 2m to 1m step 1m foo\n",
            1,
            "end is before start",
        ),
        ("load 1m\n  foo{a=~\"b\"} 1\n", 2, "only '='"),
        (
            "eval instant at 0 foo\n  expect fail regex: (\n",
            2,
            "invalid regex",
        ),
        ("clear now\n", 1, "invalid clear"),
    ];
    for (text, line, needle) in cases {
        let e = parse_script(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
}

// ---------------------------------------------------------------- comparison rules

#[test]
fn float_tolerance_and_special_values() {
    assert!(floats_match(1.0, 1.0));
    assert!(floats_match(1.0, 1.0 + 1e-9));
    assert!(floats_match(1e10, 1e10 + 1.0));
    assert!(!floats_match(1.0, 1.00001));
    assert!(floats_match(f64::INFINITY, f64::INFINITY));
    assert!(!floats_match(f64::INFINITY, f64::NEG_INFINITY));
    assert!(floats_match(f64::NAN, -f64::NAN));
    assert!(floats_match(stale(), stale()));
    assert!(!floats_match(stale(), f64::NAN));
    assert!(!floats_match(f64::NAN, stale()));
    assert!(!floats_match(stale(), 1.0));
    // Zero is effectively exact.
    assert!(!floats_match(0.0, 1e-300));
    assert!(floats_match(0.0, -0.0));
    assert!(!floats_match(f64::NAN, 1.0));
}

fn sample(l: &[(&str, &str)], v: f64) -> Sample {
    Sample {
        labels: labels(l),
        t: 0,
        v,
    }
}

#[test]
fn vectors_match_as_sets_unless_ordered() {
    let text = "eval instant at 0 x\n  {a=\"1\"} 1\n  {a=\"2\"} 2";
    let ev = only_eval(text);
    let fwd = Value::Vector(vec![sample(&[("a", "1")], 1.0), sample(&[("a", "2")], 2.0)]);
    let rev = Value::Vector(vec![sample(&[("a", "2")], 2.0), sample(&[("a", "1")], 1.0)]);
    assert!(compare_result(&ev, &fwd, true).is_ok());
    assert!(compare_result(&ev, &rev, true).is_ok());
    let ev = only_eval(&format!("{text}\n  expect ordered"));
    assert!(compare_result(&ev, &fwd, true).is_ok());
    let m = compare_result(&ev, &rev, true).unwrap_err();
    assert!(m.message.contains("position"), "{m:?}");
    // The range-mode cross-check ignores the order.
    assert!(compare_result(&ev, &rev, false).is_ok());

    let ev = only_eval(text);
    let missing = Value::Vector(vec![sample(&[("a", "1")], 1.0)]);
    assert!(
        compare_result(&ev, &missing, true)
            .unwrap_err()
            .message
            .contains("not found")
    );
    let extra = Value::Vector(vec![
        sample(&[("a", "1")], 1.0),
        sample(&[("a", "2")], 2.0),
        sample(&[("a", "3")], 3.0),
    ]);
    assert!(
        compare_result(&ev, &extra, true)
            .unwrap_err()
            .message
            .contains("unexpected series")
    );
    let wrong = Value::Vector(vec![sample(&[("a", "1")], 1.0), sample(&[("a", "2")], 2.1)]);
    let m = compare_result(&ev, &wrong, true).unwrap_err();
    assert!(m.message.contains("expected 2"), "{m:?}");
    assert!(m.got.contains("2.1"), "{m:?}");
    // Scalar vs vector never match.
    assert!(compare_result(&ev, &Value::Scalar(0, 1.0), true).is_err());
    let ev = only_eval("eval instant at 0 x\n  1");
    assert!(compare_result(&ev, &fwd, true).is_err());
    assert!(compare_result(&ev, &Value::Scalar(0, 1.0), true).is_ok());
    // No result lines: an empty vector, not a scalar.
    let ev = only_eval("eval instant at 0 x");
    assert!(compare_result(&ev, &Value::Vector(vec![]), true).is_ok());
    assert!(compare_result(&ev, &Value::Matrix(vec![]), true).is_ok());
    assert!(compare_result(&ev, &Value::Scalar(0, 1.0), true).is_err());
}

#[test]
fn matrices_need_sorted_series_and_exact_timestamps() {
    let ev = only_eval("eval range from 0 to 3m step 1m x\n  {a=\"1\"} 1 _ 3\n  {a=\"2\"} 5");
    let sp = |a: &str, points: Vec<(i64, f64)>| crate::SeriesPoints {
        labels: labels(&[("a", a)]),
        points,
    };
    let good = Value::Matrix(vec![
        sp("1", vec![(0, 1.0), (120_000, 3.0)]),
        sp("2", vec![(0, 5.0)]),
    ]);
    assert!(compare_result(&ev, &good, true).is_ok());
    let unsorted = Value::Matrix(vec![
        sp("2", vec![(0, 5.0)]),
        sp("1", vec![(0, 1.0), (120_000, 3.0)]),
    ]);
    assert!(
        compare_result(&ev, &unsorted, true)
            .unwrap_err()
            .message
            .contains("sorted")
    );
    // A point where `_` is expected, or after the end of the sequence.
    let gap_filled = Value::Matrix(vec![
        sp("1", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
        sp("2", vec![(0, 5.0)]),
    ]);
    assert!(compare_result(&ev, &gap_filled, true).is_err());
    let trailing = Value::Matrix(vec![
        sp("1", vec![(0, 1.0), (120_000, 3.0)]),
        sp("2", vec![(0, 5.0), (60_000, 5.0)]),
    ]);
    assert!(compare_result(&ev, &trailing, true).is_err());
    let shifted = Value::Matrix(vec![
        sp("1", vec![(0, 1.0), (180_000, 3.0)]),
        sp("2", vec![(0, 5.0)]),
    ]);
    assert!(
        compare_result(&ev, &shifted, true)
            .unwrap_err()
            .message
            .contains("at 120s")
    );
    // More elements than steps.
    let ev = only_eval("eval range from 0 to 1m step 1m x\n  {a=\"1\"} 1 2 3");
    let m = Value::Matrix(vec![sp("1", vec![(0, 1.0), (60_000, 2.0)])]);
    assert!(
        compare_result(&ev, &m, true)
            .unwrap_err()
            .message
            .contains("cannot return")
    );
}

#[test]
fn annotations_are_checked_per_level() {
    let any = AnnotationExpect::Some(vec![TextMatch::Any]);
    let w = vec!["PromQL warning: boom (1:1)".to_string()];
    assert!(compare_annotations("warn", &AnnotationExpect::Unchecked, &w).is_ok());
    assert!(compare_annotations("warn", &AnnotationExpect::None, &w).is_err());
    assert!(compare_annotations("warn", &AnnotationExpect::None, &[]).is_ok());
    assert!(compare_annotations("warn", &any, &w).is_ok());
    assert!(compare_annotations("warn", &any, &[]).is_err());
    let exact = AnnotationExpect::Some(vec![TextMatch::Exact(w[0].clone())]);
    assert!(compare_annotations("warn", &exact, &w).is_ok());
    let two = vec![w[0].clone(), "PromQL warning: other (1:1)".to_string()];
    // Every actual annotation must be matched by some expectation.
    assert!(compare_annotations("warn", &exact, &two).is_err());
    let other = AnnotationExpect::Some(vec![TextMatch::Exact("nope".into())]);
    assert!(compare_annotations("warn", &other, &w).is_err());
}

// ---------------------------------------------------------------- skip detection

fn kinds(expr: &str) -> Vec<SkipKind> {
    skip::detect(expr, "", false, &LoadedFeatures::default())
}

#[test]
fn skip_list_has_one_row_per_kind() {
    let all = SkipKind::all();
    assert_eq!(all.len(), SKIP_LIST.len());
    for k in all {
        assert_eq!(k.rule().kind, k);
        assert_eq!(k.name().parse::<SkipKind>(), Ok(k));
        assert!(!k.rule().reason.is_empty() && !k.rule().rule.is_empty());
    }
    assert!("bogus".parse::<SkipKind>().is_err());
}

#[test]
fn skip_kinds_are_detected_from_the_text() {
    assert!(kinds("rate(http_requests[5m])").is_empty());
    assert!(kinds("sum by (job) (x) offset -5m").is_empty());
    assert!(kinds("x @ start()").is_empty());
    assert!(kinds("x @ 100").is_empty());
    assert!(kinds("x offset 100 + 2").is_empty());
    assert!(kinds("max_over_time(rate(x[1m])[5m:1m])").is_empty());
    assert!(kinds("max_over_time(x[5m:])").is_empty());
    assert!(kinds(r#"label_replace(x, "dst", "fill(", "src", "info(anchored)")"#).is_empty());
    assert!(kinds("info_metric").is_empty());
    assert!(kinds(r#"x{offset="(1)"}"#).is_empty());
    // An invalid range is a failure to report, not a duration expression.
    assert!(kinds("rate(x[foo])").is_empty());
    assert!(kinds("rate(x[5m:1m])").is_empty());

    // `info()` is evaluated; only calls the parser rejects are skipped.
    assert!(kinds("info(rate(x[5m]))").is_empty());
    assert_eq!(
        kinds(r#"info(x, {data=~".*"})"#),
        vec![SkipKind::InfoFunction]
    );
    assert_eq!(
        kinds("increase(x[5m] anchored)"),
        vec![SkipKind::ExtendedRangeSelectors]
    );
    assert_eq!(
        kinds("rate(x[5m] smoothed)"),
        vec![SkipKind::ExtendedRangeSelectors]
    );
    for e in [
        "changes(x[26m+4m])",
        "changes(x[60*30])",
        "sum_over_time(x[29s+1s:5s+5s])",
        "x offset (100 + 2)",
        "x offset -(2 * 2)",
        "x offset step()",
        "x offset min_of(step(), 1s)",
        "count_over_time(x[step()])",
        "x @ (100)",
    ] {
        assert_eq!(kinds(e), vec![SkipKind::DurationExpressions], "{e}");
    }
    assert_eq!(kinds("a + fill(0) b"), vec![SkipKind::FillModifiers]);
    assert_eq!(
        kinds("a + fill_left(0) fill_right(1) b"),
        vec![SkipKind::FillModifiers]
    );
    assert_eq!(
        kinds(r#"sum({__type__="counter"})"#),
        vec![SkipKind::TypeAndUnitLabels]
    );
    assert_eq!(
        skip::detect("x", "__name__ __unit__", false, &LoadedFeatures::default()),
        vec![SkipKind::TypeAndUnitLabels]
    );
    let hist = LoadedFeatures {
        histogram_series: [labels(&[("__name__", "h"), ("job", "a")])].into(),
        ..LoadedFeatures::default()
    };
    let nh = vec![SkipKind::NativeHistograms];
    for e in [
        "h",
        "rate(h[5m])",
        r#"sum({job="a"})"#,
        r#"{__name__=~"h|x"}"#,
        "x + on() h",
        "max_over_time(h[5m:1m])",
        "not valid (",
    ] {
        assert_eq!(skip::detect(e, "", false, &hist), nh, "{e}");
    }
    for e in ["x", r#"h{job="b"}"#, "h_bucket", r#"{job="b"}"#, "1 + 2"] {
        assert!(skip::detect(e, "", false, &hist).is_empty(), "{e}");
    }
    assert_eq!(skip::detect("x", "", true, &LoadedFeatures::default()), nh);
    let st = LoadedFeatures {
        start_timestamps: true,
        ..LoadedFeatures::default()
    };
    assert_eq!(
        skip::detect("x", "", false, &st),
        vec![SkipKind::StartTimestamps]
    );
}

// ---------------------------------------------------------------- store

#[test]
fn store_replaces_repeated_series_within_a_load_and_adds_across_loads() {
    let s = parse_script("load 1m\n  m 1 2 3\n  m _ 7\n\nload 1m\n  m _ _ _ 9\n").unwrap();
    let mut store = Store::new();
    for c in &s.commands {
        if let Command::Load(l) = c {
            store.load(l).unwrap();
        }
    }
    let m = labels(&[("__name__", "m")]);
    assert_eq!(store.samples(&m), vec![(60_000, 7.0), (180_000, 9.0)]);
    assert!(store.querier().is_ok());
    store.clear();
    assert_eq!(store.num_series(), 0);
}

// ---------------------------------------------------------------- whole scripts

const PASSING: &str = r#"
load 1m
  up{job="a"} 1 2 stale
  up{job="b"} 5x4
  {__name__="temp", room="x"} 0+0.5x10

# Instant selectors, lookback and staleness.
eval instant at 1m up
  up{job="a"} 2
  up{job="b"} 5

eval instant at 2m up
  up{job="b"} 5

eval instant at 30s temp
  temp{room="x"} 0

eval instant at 10m up{job="a"}

# Range queries and range vectors.
eval range from 0 to 3m step 1m up{job="a"}
  up{job="a"} 1 2

eval range from 0 to 2m step 1m up
  up{job="a"} 1 2
  up{job="b"} 5 5 5

eval instant at 2m up{job="b"}[2m]
  expect range vector from 1m to 2m step 1m
  up{job="b"} 5 5

# Literals.
eval instant at 5m 42
  42

eval instant at 5m "hello"
  expect string "hello"

eval range from 0 to 1m step 30s 7
  {} 7 7 7

# A parse error is a failure.
eval instant at 0 up{
  expect fail

clear

eval instant at 1m up
"#;

#[test]
fn passing_script_passes() {
    let r = run_script("inline.test", PASSING, &RunOptions::default());
    let report = Report {
        files: vec![r.clone()],
    };
    assert_eq!(r.failed, 0, "{report}");
    assert_eq!(r.passed, 12, "{report}");
    assert!(r.script_error.is_none());
    assert!(
        report.to_string().ends_with("12 passed, 0 failed"),
        "{report}"
    );
}

const FAILING: &str = r#"
load 1m
  up{job="a"} 1 2 3

eval instant at 1m up
  up{job="a"} 3

eval instant at 1m up
  up{job="b"} 2

eval instant at 1m up
  3

eval range from 0 to 2m step 1m up
  up{job="a"} 1 2

eval instant at 1m up
  expect fail

eval instant at 1m up{job=~"("}
  up{job="a"} 2

eval instant at 1m up{
  expect fail msg: not the parser's words

eval instant at 1m up
  up{job="a"} 2
"#;

#[test]
fn failing_script_reports_each_failure_with_its_line() {
    let r = run_script("bad.test", FAILING, &RunOptions::default());
    let lines: Vec<usize> = r.failures.iter().map(|f| f.line).collect();
    assert_eq!(lines, vec![5, 8, 11, 14, 17, 20], "{r:?}");
    assert_eq!(r.failed, 6);
    // The message mismatch counts as passed and is listed.
    assert_eq!(r.passed, 2);
    assert_eq!(r.message_mismatches.len(), 1);
    assert_eq!(r.message_mismatches[0].line, 23);
    let f = &r.failures[0];
    assert!(f.message.contains("expected 3"), "{f:?}");
    assert!(f.expected.contains(r#"up{job="a"} 3"#), "{f:?}");
    assert!(f.got.contains(r#"up{job="a"} 2"#), "{f:?}");
    assert!(r.failures[5].error.is_some(), "{:?}", r.failures[5]);

    let report = Report { files: vec![r] };
    let text = report.to_string();
    assert!(
        text.contains("bad.test:5: eval instant at 1m up\n"),
        "{text}"
    );
    assert!(text.contains("bad.test:23: message mismatch"), "{text}");
    assert!(
        text.contains("bad.test: 2 passed, 6 failed, 0 skipped"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "\n1 expected failures failed with a different message (counted as passed)\n\
             skipped 0\n2 passed, 6 failed"
        ),
        "{text}"
    );
}

#[test]
fn script_errors_invalidate_the_file() {
    let r = run_script(
        "err.test",
        "load 1m\n  m 1\n\neval instant at 0 m\n  m 1\n\nbogus\n",
        &RunOptions::default(),
    );
    assert_eq!((r.passed, r.failed), (0, 1));
    assert_eq!(r.failures[0].line, 7);
    assert!(r.script_error.is_some());
    let text = Report { files: vec![r] }.to_string();
    assert!(text.starts_with("err.test:7: script error"), "{text}");
}

#[test]
fn missing_file_is_a_failure() {
    let report = run_files(&["/nonexistent/x.test"], &RunOptions::default());
    assert_eq!(report.failed(), 1);
    assert!(report.to_string().ends_with("0 passed, 1 failed"));
}

const SKIPPING: &str = r#"
load 1m
  m 1 2 3
  h {{count:1}} {{count:2}}

eval instant at 1m h

eval instant at 1m m
  m 2

load_with_nhcb 1m
  x_bucket{le="1"} 1 2
  x_bucket{le="+Inf"} 3 4

eval instant at 1m x_bucket
  x_bucket{le="1"} 2
  x_bucket{le="+Inf"} 4

eval instant at 1m x

clear

load 1m
  m 1 2 3

eval instant at 1m m
  m 2

eval instant at 1m info(m)
  m 2

eval instant at 1m m + fill(0) m
  {} 4

eval instant at 1m m offset (0 * 1m)
  m 2
"#;

#[test]
fn skips_are_counted_per_kind_and_individually_switchable() {
    let r = run_script("skip.test", SKIPPING, &RunOptions::default());
    // The float series loaded next to histograms are evaluated; `h` and the NHCB `x` are not.
    assert_eq!((r.passed, r.failed), (4, 0), "{r:?}");
    assert_eq!(r.skipped.get(&SkipKind::NativeHistograms), Some(&2));
    // `info(m)` parses, so it is evaluated (and passes).
    assert_eq!(r.skipped.get(&SkipKind::InfoFunction), None);
    assert_eq!(r.skipped.get(&SkipKind::FillModifiers), Some(&1));
    assert_eq!(r.skipped.get(&SkipKind::DurationExpressions), Some(&1));
    let text = Report {
        files: vec![r.clone()],
    }
    .to_string();
    assert!(
        text.contains("skipped 4: native-histograms 2, duration-expressions 1, fill-modifiers 1"),
        "{text}"
    );

    // Without the native-histogram skip those evals run: histogram samples are not stored,
    // so `h` and `x` select nothing and their empty expectations hold.
    let opts = RunOptions {
        skip: SkipKind::all()
            .into_iter()
            .filter(|k| *k != SkipKind::NativeHistograms)
            .collect(),
        strict: false,
    };
    let r = run_script("skip.test", SKIPPING, &opts);
    assert_eq!(r.skipped_total(), 2);
    assert_eq!((r.passed, r.failed), (6, 0), "{r:?}");
}

#[test]
fn strict_mode_runs_the_implicit_checks() {
    let text = r#"
load 1m
  m{a="x"} 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20

eval instant at 5m m
  m{a="x"} 6
"#;
    let strict = RunOptions {
        strict: true,
        ..RunOptions::default()
    };
    let r = run_script("strict.test", text, &strict);
    assert_eq!((r.passed, r.failed), (1, 0), "{r:?}");
    // A literal is step invariant and consistent in range mode.
    let r = run_script("strict.test", "eval instant at 1m 3\n  3\n", &strict);
    assert_eq!((r.passed, r.failed), (1, 0), "{r:?}");
}

#[test]
fn at_pinning_rewrites_outermost_selectors_only() {
    let pin = |q: &str| {
        let mut e = crate::parse(q).unwrap();
        pin_at(
            &mut e,
            &AtModifier::At(UNIX_EPOCH + Duration::from_millis(300_000)),
        );
        e.to_string()
    };
    assert_eq!(pin("m"), "m @ 300.000");
    assert_eq!(pin("rate(m[5m])"), "rate(m[5m] @ 300.000)");
    assert_eq!(pin("m @ 10"), "m @ 10.000");
    let sub = pin("max_over_time(rate(m[1m])[5m:1m])");
    assert!(sub.contains("[5m:1m] @ 300.000"), "{sub}");
    assert!(
        sub.contains("rate(m[1m])"),
        "inner selector untouched: {sub}"
    );
    assert!(calls_any(
        &crate::parse("sum(timestamp(m))").unwrap(),
        &AT_UNSAFE_FUNCTIONS
    ));
    assert!(!calls_any(
        &crate::parse("sum(rate(m[5m]))").unwrap(),
        &AT_UNSAFE_FUNCTIONS
    ));
}

// ---------------------------------------------------------------- properties

mod properties {
    use proptest::prelude::*;

    use super::super::script::{SeqValue, parse_script, parse_sequence};
    use super::super::{RunOptions, run_script};

    /// Fragments of the DSL, so random scripts reach deep into the parser.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("load 1m".to_string()),
            Just("load_with_nhcb 5m".to_string()),
            Just("clear".to_string()),
            Just("eval instant at 1m ".to_string()),
            Just("eval range from 0 to 2m step 1m ".to_string()),
            Just("eval_fail instant at 0 ".to_string()),
            Just("expect ".to_string()),
            Just("fail msg: ".to_string()),
            Just("warn regex: (".to_string()),
            Just("range vector from 0 to 1m step 10s".to_string()),
            Just("string \"".to_string()),
            Just("m{a=\"b\"} ".to_string()),
            Just("{} ".to_string()),
            Just("@st ".to_string()),
            Just("{{schema:1 buckets:[1 2]}}".to_string()),
            Just("+{{count:1}}x2".to_string()),
            Just("1+2x3 ".to_string()),
            Just("_x2 stale Inf ".to_string()),
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            "[ -~]{0,6}".prop_map(|s| s),
            "\\PC{0,3}".prop_map(|s| s),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn parsing_and_running_any_text_never_panics(parts in prop::collection::vec(fragment(), 0..24)) {
            let text: String = parts.concat();
            let parsed = parse_script(&text);
            let report = run_script("prop.test", &text, &RunOptions::default());
            // A script that does not parse counts exactly one failure and runs nothing.
            if parsed.is_err() {
                prop_assert_eq!((report.passed, report.failed), (0, 1));
                prop_assert!(report.script_error.is_some());
            }
        }

        #[test]
        fn increments_expand_by_repeated_addition(
            a in -1e6f64..1e6,
            b in -1e3f64..1e3,
            n in 0u64..40,
        ) {
            let item = if b < 0.0 {
                format!("{a}-{}x{n}", -b)
            } else {
                format!("{a}+{b}x{n}")
            };
            let seq = parse_sequence(&item).unwrap();
            prop_assert_eq!(seq.len() as u64, n + 1);
            let mut v = a;
            for (k, got) in seq.iter().enumerate() {
                if k > 0 {
                    v += b;
                }
                prop_assert_eq!(got, &SeqValue::Float(v), "element {} of {}", k, item);
            }
        }
    }
}

#[test]
fn a_panic_is_never_an_expected_failure() {
    let ev = only_eval("eval instant at 0 x\n  expect fail");
    let panicked = guarded(|| panic!("boom"));
    let err = panicked.as_ref().unwrap_err();
    assert!(err.hard && err.message.contains("boom"), "{err}");
    assert!(judge(&ev, &panicked, true).is_err());
    let failed = guarded(|| Err(crate::QueryError::Parse("bad".into())));
    assert_eq!(judge(&ev, &failed, true), Ok(None));
}
