//! Execution of a LogQL pipeline over one entry: line filters, parsers, label filters,
//! formatting and label manipulation, and `unwrap` for metric queries.
//!
//! An entry's labels are its stream labels plus its structured metadata (stream labels win
//! on a name clash); parsers add extracted labels, renaming a name that already exists to
//! `<name>_extracted`, as Loki does. A parser that cannot read the line sets `__error__`
//! (`JSONParserErr`, `LogfmtParserErr`) and leaves the line in the result so that
//! `| __error__=""` can drop it. A numeric label filter whose label is missing or does not
//! convert rejects the entry.

use std::collections::BTreeMap;

use strata_engine::Labels;

use super::ast::*;
use super::parser::{parse_bytes, parse_duration_ns};

/// A label set under construction.
pub type LabelMap = BTreeMap<String, String>;

/// Label name set by a parser that failed.
pub const ERROR_LABEL: &str = "__error__";

/// A compiled pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    stages: Vec<Stage>,
    unwrap: Option<(String, UnwrapConv)>,
    post_unwrap: Vec<Stage>,
}

/// An entry after the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Processed {
    /// The (possibly reformatted) line.
    pub line: String,
    /// The final labels.
    pub labels: LabelMap,
    /// The unwrapped value, for metric queries with `unwrap`.
    pub value: Option<f64>,
}

impl Pipeline {
    /// Compiles stages; everything after an `unwrap` is applied after the value is taken.
    pub fn new(stages: &[Stage]) -> Pipeline {
        let mut pre = Vec::new();
        let mut unwrap = None;
        let mut post = Vec::new();
        for s in stages {
            match s {
                Stage::Unwrap(n, c) if unwrap.is_none() => unwrap = Some((n.clone(), *c)),
                other if unwrap.is_some() => post.push(other.clone()),
                other => pre.push(other.clone()),
            }
        }
        Pipeline {
            stages: pre,
            unwrap,
            post_unwrap: post,
        }
    }

    /// True if the pipeline does nothing (labels are the stream's, lines unchanged).
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty() && self.unwrap.is_none() && self.post_unwrap.is_empty()
    }

    /// Literals every surviving line contains (positive single-value `|=` filters before any
    /// stage that rewrites the line): safe to use for chunk skipping.
    pub fn required_literals(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            match s {
                Stage::LineFilter {
                    op: FilterOp::Contains,
                    values,
                    ..
                } if values.len() == 1 => out.extend(values.iter().cloned()),
                Stage::LineFormat(_) | Stage::Decolorize | Stage::Unpack => break,
                _ => {}
            }
        }
        out
    }

    /// A trace id every surviving entry carries as structured metadata (or a stream label), if
    /// the pipeline requires one with a `trace_id="<32 hex>"` label filter before any parser or
    /// formatting stage (after one, the label could come from the line, which the trace-id
    /// index does not cover).
    pub fn required_trace_id(&self) -> Option<u128> {
        for s in &self.stages {
            match s {
                Stage::LabelFilter(LabelPred::Str(m))
                    if m.op == strata_engine::MatchOp::Equal
                        && strata_engine::logs::filter::is_trace_id_name(&m.name) =>
                {
                    return strata_engine::logs::filter::parse_trace_id(&m.value);
                }
                Stage::LineFilter { .. } | Stage::LabelFilter(_) | Stage::Decolorize => {}
                _ => return None,
            }
        }
        None
    }

    /// Runs the pipeline over one entry; `None` if it is filtered out.
    pub fn process(
        &self,
        ts: i64,
        line: &str,
        stream: &Labels,
        metadata: &[(String, String)],
    ) -> Option<Processed> {
        let mut labels: LabelMap = stream
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        for (n, v) in metadata {
            labels.entry(n.clone()).or_insert_with(|| v.clone());
        }
        let mut line = std::borrow::Cow::Borrowed(line);
        for s in &self.stages {
            if !apply(s, ts, &mut line, &mut labels) {
                return None;
            }
        }
        let mut value = None;
        if let Some((name, conv)) = &self.unwrap {
            let raw = labels.remove(name)?;
            let v = match conv {
                UnwrapConv::Number => raw.trim().parse::<f64>().ok(),
                UnwrapConv::Duration => parse_duration_ns(raw.trim())
                    .map(|ns| ns as f64 / 1e9)
                    .or_else(|| raw.trim().parse::<f64>().ok()),
                UnwrapConv::Bytes => parse_bytes(raw.trim()),
            };
            match v {
                Some(v) => value = Some(v),
                None => {
                    labels.insert(ERROR_LABEL.into(), "SampleExtractionErr".into());
                }
            }
            for s in &self.post_unwrap {
                if !apply(s, ts, &mut line, &mut labels) {
                    return None;
                }
            }
            value?;
        }
        Some(Processed {
            line: line.into_owned(),
            labels,
            value,
        })
    }
}

fn line_matches(op: FilterOp, values: &[String], regexes: &[regex::Regex], line: &str) -> bool {
    match op {
        FilterOp::Contains => values.iter().any(|v| line.contains(v.as_str())),
        FilterOp::NotContains => !values.iter().any(|v| line.contains(v.as_str())),
        FilterOp::Match => regexes.iter().any(|r| r.is_match(line)),
        FilterOp::NotMatch => !regexes.iter().any(|r| r.is_match(line)),
    }
}

/// Makes a parsed key a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn sanitize(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn add_extracted(labels: &mut LabelMap, key: &str, value: String, original: &LabelMap) {
    let mut name = sanitize(key);
    if original.contains_key(&name) {
        name.push_str("_extracted");
    }
    labels.insert(name, value);
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        serde_json::Value::Array(_) => {}
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        serde_json::Value::Null => out.push((prefix.to_string(), String::new())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn json_at<'v>(v: &'v serde_json::Value, path: &[JsonPathPart]) -> Option<&'v serde_json::Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            JsonPathPart::Key(k) => cur.get(k.as_str())?,
            JsonPathPart::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}

fn json_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A line that is not logfmt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotLogfmt;

/// Parses logfmt `key=value key2="quoted value"` pairs.
pub fn parse_logfmt(line: &str) -> Result<Vec<(String, String)>, NotLogfmt> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while b
            .get(i)
            .is_some_and(|c| *c != b'=' && *c != b' ' && *c != b'\t')
        {
            i += 1;
        }
        let key = line.get(ks..i).ok_or(NotLogfmt)?;
        if key.is_empty() || key.contains('"') {
            return Err(NotLogfmt);
        }
        if b.get(i) != Some(&b'=') {
            out.push((key.to_string(), String::new()));
            continue;
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            let (v, next) = strata_proto::loki::parse_quoted(line, i).map_err(|_| NotLogfmt)?;
            i = next;
            out.push((key.to_string(), v));
        } else {
            let vs = i;
            while b.get(i).is_some_and(|c| *c != b' ' && *c != b'\t') {
                i += 1;
            }
            out.push((
                key.to_string(),
                line.get(vs..i).ok_or(NotLogfmt)?.to_string(),
            ));
        }
    }
    Ok(out)
}

fn match_pattern(parts: &[PatternPart], line: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut pending: Option<&Option<String>> = None;
    for p in parts {
        match p {
            PatternPart::Capture(name) => pending = Some(name),
            PatternPart::Literal(lit) => {
                let rest = line.get(pos..)?;
                match pending.take() {
                    Some(name) => {
                        let idx = rest.find(lit.as_str())?;
                        if let Some(n) = name {
                            out.push((n.clone(), rest.get(..idx)?.to_string()));
                        }
                        pos += idx + lit.len();
                    }
                    None => {
                        if !rest.starts_with(lit.as_str()) {
                            return None;
                        }
                        pos += lit.len();
                    }
                }
            }
        }
    }
    if let Some(Some(n)) = pending {
        out.push((n.clone(), line.get(pos..)?.to_string()));
    }
    Some(out)
}

fn apply_funcs(mut s: String, funcs: &[String]) -> String {
    for f in funcs {
        s = match f.as_str() {
            "ToUpper" | "upper" => s.to_uppercase(),
            "ToLower" | "lower" => s.to_lowercase(),
            _ => s.trim().to_string(),
        };
    }
    s
}

/// Renders a template.
pub fn render(parts: &[TemplatePart], ts: i64, line: &str, labels: &LabelMap) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Label(n, f) => {
                out.push_str(&apply_funcs(labels.get(n).cloned().unwrap_or_default(), f))
            }
            TemplatePart::Line(f) => out.push_str(&apply_funcs(line.to_string(), f)),
            TemplatePart::Timestamp => out.push_str(&ts.to_string()),
        }
    }
    out
}

fn label_number(v: &str, kind: NumKind) -> Option<f64> {
    let v = v.trim();
    match kind {
        NumKind::Number => v.parse().ok(),
        NumKind::Duration => parse_duration_ns(v)
            .map(|ns| ns as f64 / 1e9)
            .or_else(|| v.parse().ok()),
        NumKind::Bytes => parse_bytes(v),
    }
}

/// Evaluates a label predicate.
pub fn eval_pred(p: &LabelPred, labels: &LabelMap) -> bool {
    match p {
        LabelPred::And(a, b) => eval_pred(a, labels) && eval_pred(b, labels),
        LabelPred::Or(a, b) => eval_pred(a, labels) || eval_pred(b, labels),
        LabelPred::Str(m) => m.matches(labels.get(&m.name).map_or("", String::as_str)),
        LabelPred::Num {
            name,
            op,
            value,
            kind,
        } => labels
            .get(name)
            .and_then(|v| label_number(v, *kind))
            .is_some_and(|x| op.apply(x, *value)),
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn apply(s: &Stage, ts: i64, line: &mut std::borrow::Cow<'_, str>, labels: &mut LabelMap) -> bool {
    match s {
        Stage::LineFilter {
            op,
            values,
            regexes,
        } => line_matches(*op, values, regexes, line),
        Stage::Json(params) => {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v @ serde_json::Value::Object(_)) => {
                    let original = labels.clone();
                    if params.is_empty() {
                        let mut flat = Vec::new();
                        flatten_json("", &v, &mut flat);
                        for (k, val) in flat {
                            add_extracted(labels, &k, val, &original);
                        }
                    } else {
                        for (name, path) in params {
                            if let Some(x) = json_at(&v, path) {
                                labels.insert(name.clone(), json_scalar(x));
                            }
                        }
                    }
                }
                _ => {
                    labels.insert(ERROR_LABEL.into(), "JSONParserErr".into());
                }
            }
            true
        }
        Stage::Unpack => {
            if let Ok(serde_json::Value::Object(m)) =
                serde_json::from_str::<serde_json::Value>(line)
            {
                let original = labels.clone();
                let mut new_line = None;
                for (k, v) in m {
                    if let serde_json::Value::String(sv) = v {
                        if k == "_entry" {
                            new_line = Some(sv);
                        } else {
                            add_extracted(labels, &k, sv, &original);
                        }
                    }
                }
                if let Some(l) = new_line {
                    *line = std::borrow::Cow::Owned(l);
                }
            } else {
                labels.insert(ERROR_LABEL.into(), "JSONParserErr".into());
            }
            true
        }
        Stage::Logfmt(params) => {
            match parse_logfmt(line) {
                Ok(pairs) => {
                    let original = labels.clone();
                    if params.is_empty() {
                        for (k, v) in pairs {
                            add_extracted(labels, &k, v, &original);
                        }
                    } else {
                        for (name, key) in params {
                            if let Some((_, v)) = pairs.iter().rev().find(|(k, _)| k == key) {
                                labels.insert(name.clone(), v.clone());
                            }
                        }
                    }
                }
                Err(NotLogfmt) => {
                    labels.insert(ERROR_LABEL.into(), "LogfmtParserErr".into());
                }
            }
            true
        }
        Stage::Regexp(re) => {
            if let Some(c) = re.captures(line) {
                let original = labels.clone();
                for name in re.capture_names().flatten() {
                    if let Some(m) = c.name(name) {
                        add_extracted(labels, name, m.as_str().to_string(), &original);
                    }
                }
            }
            true
        }
        Stage::Pattern(parts) => {
            if let Some(pairs) = match_pattern(parts, line) {
                let original = labels.clone();
                for (k, v) in pairs {
                    add_extracted(labels, &k, v, &original);
                }
            }
            true
        }
        Stage::LabelFilter(p) => eval_pred(p, labels),
        Stage::LineFormat(t) => {
            let new = render(t, ts, line, labels);
            *line = std::borrow::Cow::Owned(new);
            true
        }
        Stage::LabelFormat(assign) => {
            let snapshot = labels.clone();
            for (dst, f) in assign {
                match f {
                    LabelFmt::Rename(src) => {
                        if let Some(v) = snapshot.get(src) {
                            labels.remove(src);
                            labels.insert(dst.clone(), v.clone());
                        }
                    }
                    LabelFmt::Template(t) => {
                        let v = render(t, ts, line, &snapshot);
                        labels.insert(dst.clone(), v);
                    }
                }
            }
            true
        }
        Stage::Drop(items) => {
            for (name, m) in items {
                let hit = match m {
                    None => true,
                    Some(m) => labels.get(name).is_some_and(|v| m.matches(v)),
                };
                if hit {
                    labels.remove(name);
                }
            }
            true
        }
        Stage::Keep(items) => {
            labels.retain(|k, v| {
                items
                    .iter()
                    .any(|(name, m)| name == k && m.as_ref().is_none_or(|m| m.matches(v)))
            });
            true
        }
        Stage::Decolorize => {
            let new = strip_ansi(line);
            *line = std::borrow::Cow::Owned(new);
            true
        }
        Stage::Unwrap(..) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ast::Expr;
    use super::super::parser::parse;
    use super::*;

    fn run(q: &str, line: &str) -> Option<Processed> {
        let Expr::Log(l) = parse(q).unwrap() else {
            panic!("not a log query")
        };
        let stream = Labels::from_pairs(&[("job", "app")]).unwrap();
        Pipeline::new(&l.stages).process(1, line, &stream, &[("trace_id".into(), "abc".into())])
    }

    #[test]
    fn parsers_extract_labels() {
        let p = run(
            r#"{job="a"} | json"#,
            r#"{"level":"error","req":{"ms":12},"job":"x"}"#,
        )
        .unwrap();
        assert_eq!(p.labels.get("level").unwrap(), "error");
        assert_eq!(p.labels.get("req_ms").unwrap(), "12");
        assert_eq!(p.labels.get("job_extracted").unwrap(), "x");
        assert_eq!(p.labels.get("trace_id").unwrap(), "abc");
        let p = run(
            r#"{job="a"} | logfmt | status >= 500"#,
            r#"msg="a b" status=503"#,
        )
        .unwrap();
        assert_eq!(p.labels.get("msg").unwrap(), "a b");
        assert!(run(r#"{job="a"} | logfmt | status >= 500"#, r#"status=200"#).is_none());
        let p = run(
            r#"{job="a"} | pattern "<ip> - - [<_>] \"<method> <path> <_>\" <status>""#,
            r#"1.2.3.4 - - [x] "GET /a HTTP/1.1" 200"#,
        )
        .unwrap();
        assert_eq!(p.labels.get("method").unwrap(), "GET");
        assert_eq!(p.labels.get("status").unwrap(), "200");
        let p = run(
            r#"{job="a"} | regexp "took (?P<d>\\S+)" | d > 1s"#,
            "took 1.5s",
        )
        .unwrap();
        assert_eq!(p.labels.get("d").unwrap(), "1.5s");
        let p = run(r#"{job="a"} | json | __error__="" "#, "not json");
        assert!(p.is_none());
    }

    #[test]
    fn formatting_stages() {
        let p = run(
            r#"{job="a"} | logfmt | line_format "{{.level | ToUpper}}: {{.msg}}" | label_format lvl=level, x="{{.msg}}!" | drop msg | keep lvl, x"#,
            "level=warn msg=hi",
        )
        .unwrap();
        assert_eq!(p.line, "WARN: hi");
        assert_eq!(p.labels.len(), 2);
        assert_eq!(p.labels.get("lvl").unwrap(), "warn");
        assert_eq!(p.labels.get("x").unwrap(), "hi!");
    }

    #[test]
    fn line_filters_and_literals() {
        let Expr::Log(l) = parse(
            r#"{job="a"} |= "abcd" != "zz" |~ "x+" |= "q" or "r" | line_format "x" |= "late""#,
        )
        .unwrap() else {
            panic!()
        };
        let p = Pipeline::new(&l.stages);
        assert_eq!(p.required_literals(), vec!["abcd".to_string()]);
    }
}
