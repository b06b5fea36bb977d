//! Backfill: `strata import openmetrics FILE` writes historical samples as blocks.
//!
//! Operators move history from another system (or a `promtool tsdb dump`-style export) by
//! writing it as OpenMetrics text with timestamps. Going through remote write would be refused
//! as too old once the head has moved on; writing blocks directly is how Prometheus backfills
//! too. The parser is strict about what it accepts and names the line of any error, because a
//! half-imported history is worse than none: nothing is written unless the whole file parses.

use std::collections::BTreeMap;

use strata_engine::{Label, Labels};

/// Why an import file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A line does not parse.
    #[error("line {line}: {msg}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

fn syntax(line: usize, msg: impl Into<String>) -> ImportError {
    ImportError::Syntax {
        line,
        msg: msg.into(),
    }
}

/// Parsed samples per series, each sorted by time without duplicate timestamps (the last value
/// written for a timestamp wins).
pub type ImportSeries = BTreeMap<Labels, Vec<(i64, f64)>>;

/// Parses OpenMetrics text exposition with timestamps: `name{l="v",...} value timestamp`
/// lines (timestamps in seconds, fractions allowed), `#` lines (`TYPE`, `HELP`, `UNIT`,
/// `EOF`) and blank lines; exemplars after ` # ` are ignored. Every sample needs a timestamp.
pub fn parse_openmetrics(text: &str) -> Result<ImportSeries, ImportError> {
    let mut series: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            if line.trim() == "# EOF" {
                break;
            }
            continue;
        }
        let (labels, rest) = parse_series(line, n)?;
        // Drop an exemplar (` # {...} value [ts]`).
        let rest = rest.split(" # ").next().unwrap_or("");
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| syntax(n, "missing value"))
            .and_then(|v| {
                parse_value(v).ok_or_else(|| syntax(n, format!("invalid value {v:?}")))
            })?;
        let ts = fields
            .next()
            .ok_or_else(|| syntax(n, "missing timestamp (every imported sample needs one)"))?;
        let secs: f64 = ts
            .parse()
            .map_err(|_| syntax(n, format!("invalid timestamp {ts:?}")))?;
        if !secs.is_finite() || secs.abs() > 9.0e15 {
            return Err(syntax(n, format!("timestamp {ts:?} out of range")));
        }
        if let Some(extra) = fields.next() {
            return Err(syntax(
                n,
                format!("unexpected {extra:?} after the timestamp"),
            ));
        }
        let ms = (secs * 1000.0).round() as i64;
        series.entry(labels).or_default().insert(ms, value);
    }
    Ok(series
        .into_iter()
        .map(|(l, s)| (l, s.into_iter().collect()))
        .collect())
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok().filter(|x: &f64| x.is_finite()),
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// Parses `name{labels}` at the start of a line; returns the labels and the rest.
fn parse_series(line: &str, n: usize) -> Result<(Labels, &str), ImportError> {
    let name_len = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_len == 0 {
        return Err(syntax(n, "expected a metric name"));
    }
    let name = &line[..name_len];
    let mut pairs = vec![Label::new("__name__", name)];
    let mut rest = &line[name_len..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut s = body;
        loop {
            s = s.trim_start();
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let ln_len = s
                .char_indices()
                .find(|&(i, c)| !(is_name_char(c, i == 0) && c != ':'))
                .map_or(s.len(), |(i, _)| i);
            if ln_len == 0 {
                return Err(syntax(n, "expected a label name"));
            }
            let lname = &s[..ln_len];
            s = s[ln_len..].trim_start();
            s = s
                .strip_prefix('=')
                .ok_or_else(|| syntax(n, format!("expected '=' after label {lname:?}")))?
                .trim_start();
            s = s
                .strip_prefix('"')
                .ok_or_else(|| syntax(n, format!("expected a quoted value for label {lname:?}")))?;
            let mut value = String::new();
            let mut chars = s.char_indices();
            let end = loop {
                match chars.next() {
                    None => {
                        return Err(syntax(n, format!("unterminated value of label {lname:?}")));
                    }
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        _ => return Err(syntax(n, format!("invalid escape in label {lname:?}"))),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            pairs.push(Label::new(lname, value));
            s = s[end + 1..].trim_start();
            if let Some(after) = s.strip_prefix(',') {
                s = after;
            } else if !s.starts_with('}') {
                return Err(syntax(n, "expected ',' or '}' in the label set"));
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(syntax(n, "expected a space before the value"));
    }
    let labels = Labels::new(pairs).map_err(|e| syntax(n, e.to_string()))?;
    Ok((labels, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_samples_with_labels_escapes_and_exemplars() {
        let text = "# TYPE http_requests counter\n\
                    http_requests_total{code=\"200\",path=\"/a\\\"b\"} 10 1700000000\n\
                    http_requests_total{code=\"200\",path=\"/a\\\"b\"} 12 1700000015.5 # {trace_id=\"x\"} 1\n\
                    up 1 1700000000\n\
                    up NaN 1700000015\n\
                    # EOF\n\
                    ignored 1 1\n";
        let s = parse_openmetrics(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.len(), 2);
        let (l, v) = s.iter().next().unwrap();
        assert_eq!(l.get("path"), Some("/a\"b"));
        assert_eq!(
            v,
            &vec![(1_700_000_000_000, 10.0), (1_700_000_015_500, 12.0)]
        );
        let up = s.iter().nth(1).unwrap().1;
        assert!(up[1].1.is_nan());
    }

    #[test]
    fn errors_name_the_line() {
        for (text, want) in [
            ("up 1\n", "line 1: missing timestamp"),
            ("up{a=1} 1 2\n", "line 1: expected a quoted value"),
            ("\nup{a=\"x} 1 2\n", "line 2: unterminated value"),
            ("up abc 1\n", "line 1: invalid value"),
            ("up 1 2 3\n", "unexpected"),
            ("{a=\"b\"} 1 2\n", "expected a metric name"),
            ("up{a=\"1\",a=\"2\"} 1 2\n", "duplicate label"),
        ] {
            let e = parse_openmetrics(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errors(text in "\\PC{0,200}") {
            let _ = parse_openmetrics(&text);
        }

        #[test]
        fn rendered_samples_round_trip(vals in proptest::collection::vec((0i64..1_000_000, -1e9f64..1e9), 1..20)) {
            let mut text = String::new();
            for (t, v) in &vals {
                text.push_str(&format!("m{{job=\"j\"}} {v} {t}\n"));
            }
            let s = parse_openmetrics(&text).unwrap();
            let mut want: BTreeMap<i64, f64> = BTreeMap::new();
            for (t, v) in &vals {
                want.insert(t * 1000, *v);
            }
            let got = s.values().next().unwrap();
            prop_assert_eq!(got.len(), want.len());
            for ((gt, gv), (wt, wv)) in got.iter().zip(want.iter()) {
                prop_assert_eq!(gt, wt);
                prop_assert!((gv - wv).abs() <= 1e-9 * (1.0 + wv.abs()));
            }
        }
    }
}
