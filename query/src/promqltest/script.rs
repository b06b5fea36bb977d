//! Parser of the PromQL test-script DSL (`*.test` files).
//!
//! The scripts are the acceptance suite of PromQL engines: `load` blocks of series with value
//! sequences, `clear`, and `eval` commands followed by their expectations. This module turns a
//! script's text into [`Command`]s and nothing else — it neither stores data nor evaluates, so
//! every rule of the format (line grouping, sequence expansion, series descriptions, the many
//! expectation spellings) is tested here in isolation.
//!
//! Invariants of the output:
//! - every series label set is a valid [`Labels`] (sorted, unique names, empty values dropped);
//! - staleness markers are the exact NaN bit pattern [`crate::STALE_NAN_BITS`];
//! - a parse failure is a [`ScriptError`] naming the 1-based line, and invalidates the script.

use std::fmt;

use regex::Regex;
use strata_engine::{Label, Labels};

use crate::STALE_NAN_BITS;

/// An error in the script itself (not in the engine under test).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ScriptError> {
    Err(ScriptError {
        line,
        message: message.into(),
    })
}

/// A parsed script.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The commands, in file order.
    pub commands: Vec<Command>,
}

/// One command of a script.
#[derive(Debug, Clone)]
pub enum Command {
    /// `load <interval>` / `load_with_nhcb <interval>`.
    Load(Load),
    /// `clear`: drop all data.
    Clear {
        /// 1-based line of the command.
        line: usize,
    },
    /// `eval ...` with its expectations.
    Eval(Box<Eval>),
}

/// A `load` block.
#[derive(Debug, Clone)]
pub struct Load {
    /// 1-based line of the `load` line.
    pub line: usize,
    /// Interval between consecutive elements (ms).
    pub interval_ms: i64,
    /// `load_with_nhcb`: classic histograms are also to be stored as native histograms.
    pub with_nhcb: bool,
    /// The series lines in order (`@st` lines are not included).
    pub series: Vec<SeriesLine>,
    /// True if the block contains a native-histogram literal `{{...}}`.
    pub has_histograms: bool,
    /// True if the block contains start-timestamp (`@st`) lines.
    pub has_start_timestamps: bool,
}

/// `<series> <value sequence>`, in a `load` block or as an expected result.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLine {
    /// 1-based line number.
    pub line: usize,
    /// The label set as written.
    pub labels: Labels,
    /// The expanded sequence.
    pub values: Vec<SeqValue>,
}

/// One element of an expanded value sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample in this slot.
    Omitted,
    /// A float sample (staleness markers are the stale NaN).
    Float(f64),
    /// A native-histogram sample. Its literal text is kept; for `{{A}}+{{B}}xn` every element
    /// keeps the text of `A` (the float-only engine stores no histograms, only their slots).
    Histogram(String),
}

/// The kind of evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    /// `eval instant at <t>`.
    Instant {
        /// Evaluation time (ms).
        at_ms: i64,
    },
    /// `eval range from <start> to <end> step <step>`.
    Range {
        /// First step (ms).
        start_ms: i64,
        /// Last possible step (ms, inclusive).
        end_ms: i64,
        /// Step (ms).
        step_ms: i64,
    },
}

/// A text pattern of `expect fail` / `expect warn` / `expect info`.
#[derive(Debug, Clone)]
pub enum TextMatch {
    /// Anything matches.
    Any,
    /// `msg:` — the whole text must be equal.
    Exact(String),
    /// `regex:` — an unanchored search.
    Regex(Regex),
}

impl TextMatch {
    /// True if `text` satisfies the pattern.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            TextMatch::Any => true,
            TextMatch::Exact(m) => m == text,
            TextMatch::Regex(r) => r.is_match(text),
        }
    }
}

impl fmt::Display for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextMatch::Any => f.write_str("(any)"),
            TextMatch::Exact(m) => write!(f, "msg: {m}"),
            TextMatch::Regex(r) => write!(f, "regex: {}", r.as_str()),
        }
    }
}

impl PartialEq for TextMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TextMatch::Any, TextMatch::Any) => true,
            (TextMatch::Exact(a), TextMatch::Exact(b)) => a == b,
            (TextMatch::Regex(a), TextMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// What an eval expects about annotations of one level (warn or info).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum AnnotationExpect {
    /// Not checked.
    #[default]
    Unchecked,
    /// `expect no_<level>`: there must be none.
    None,
    /// One or more `expect <level>` lines.
    Some(Vec<TextMatch>),
}

/// The expected result of an eval.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Series lines (possibly none: an empty vector or matrix).
    Series(Vec<SeriesLine>),
    /// A bare number: a scalar result.
    Scalar(f64),
    /// `expect string "..."`.
    String(String),
}

/// `expect range vector from <a> to <b> step <s>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeVectorExpect {
    /// Timestamp of element 0 (ms).
    pub start_ms: i64,
    /// Evaluation time of the instant query (ms).
    pub end_ms: i64,
    /// Distance between elements (ms).
    pub step_ms: i64,
}

/// An `eval` command and its expectations.
#[derive(Debug, Clone)]
pub struct Eval {
    /// 1-based line of the `eval` line.
    pub line: usize,
    /// The `eval` line as written (trimmed).
    pub text: String,
    /// The PromQL expression.
    pub expr: String,
    /// Instant or range.
    pub mode: EvalMode,
    /// `expect fail` (or `eval_fail`) with its message pattern.
    pub fail: Option<TextMatch>,
    /// `expect ordered` (or `eval_ordered`).
    pub ordered: bool,
    /// `expect range vector ...`.
    pub range_vector: Option<RangeVectorExpect>,
    /// Warning expectations.
    pub warn: AnnotationExpect,
    /// Info expectations.
    pub info: AnnotationExpect,
    /// The expected result.
    pub expected: Expected,
    /// True if an expectation line contains a histogram literal `{{`.
    pub expects_histograms: bool,
}

/// Parses a whole script.
pub fn parse_script(text: &str) -> Result<Script, ScriptError> {
    let lines: Vec<&str> = text.split('\n').map(trim).collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while let Some(&l) = lines.get(i) {
        if is_blank(l) {
            i += 1;
            continue;
        }
        let lineno = i + 1;
        let first = l.split_whitespace().next().unwrap_or("").to_lowercase();
        if first == "clear" {
            if l.split_whitespace().count() != 1 {
                return err(lineno, format!("invalid clear command {l:?}"));
            }
            commands.push(Command::Clear { line: lineno });
            i += 1;
        } else if first.starts_with("load") {
            let (load, next) = parse_load(&lines, i)?;
            commands.push(Command::Load(load));
            i = next;
        } else if first.starts_with("eval") {
            let (eval, next) = parse_eval(&lines, i)?;
            commands.push(Command::Eval(Box::new(eval)));
            i = next;
        } else {
            return err(lineno, format!("unknown command {l:?}"));
        }
    }
    Ok(Script { commands })
}

fn trim(l: &str) -> &str {
    l.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r')
}

fn is_blank(l: &str) -> bool {
    l.is_empty() || l.starts_with('#')
}

/// Splits off the first whitespace-separated word.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(p) => (&s[..p], s[p..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn parse_load(lines: &[&str], start: usize) -> Result<(Load, usize), ScriptError> {
    let lineno = start + 1;
    let l = lines.get(start).copied().unwrap_or("");
    let (cmd, rest) = split_word(l);
    let with_nhcb = match cmd.to_lowercase().as_str() {
        "load" => false,
        "load_with_nhcb" => true,
        _ => return err(lineno, format!("unknown command {cmd:?}")),
    };
    let (iv, extra) = split_word(rest);
    if iv.is_empty() || !extra.is_empty() {
        return err(
            lineno,
            format!("invalid load command {l:?}: want 'load <interval>'"),
        );
    }
    let interval_ms = parse_duration(iv).map_err(|m| ScriptError {
        line: lineno,
        message: format!("invalid load interval: {m}"),
    })?;
    let mut load = Load {
        line: lineno,
        interval_ms,
        with_nhcb,
        series: Vec::new(),
        has_histograms: false,
        has_start_timestamps: false,
    };
    let mut i = start + 1;
    while let Some(&l) = lines.get(i) {
        if is_blank(l) {
            break;
        }
        let lineno = i + 1;
        if l.contains("{{") {
            load.has_histograms = true;
        }
        let (labels, rest) = parse_series_desc(l).map_err(|m| ScriptError {
            line: lineno,
            message: m,
        })?;
        if let Some(seq) = rest.strip_prefix("@st") {
            load.has_start_timestamps = true;
            check_st_sequence(seq).map_err(|m| ScriptError {
                line: lineno,
                message: m,
            })?;
        } else {
            let values = parse_sequence(rest).map_err(|m| ScriptError {
                line: lineno,
                message: m,
            })?;
            load.series.push(SeriesLine {
                line: lineno,
                labels,
                values,
            });
        }
        i += 1;
    }
    Ok((load, i))
}

/// Validates an `@st` offset sequence (start timestamps are not stored by this runner).
fn check_st_sequence(seq: &str) -> Result<(), String> {
    for item in seq.split_whitespace() {
        let (head, _) = split_repeat(item)?;
        if head == "_" {
            continue;
        }
        let (a, b) = split_increment(head);
        parse_signed_duration(a)?;
        if let Some(b) = b {
            parse_signed_duration(b)?;
        }
    }
    Ok(())
}

fn parse_signed_duration(s: &str) -> Result<i64, String> {
    if let Some(d) = s.strip_prefix('-') {
        Ok(-parse_duration(d)?)
    } else {
        parse_duration(s.strip_prefix('+').unwrap_or(s))
    }
}

struct EvalHeader {
    mode: EvalMode,
    expr: String,
    fail: bool,
    warn: bool,
    info: bool,
    ordered: bool,
}

fn parse_eval_header(l: &str, lineno: usize) -> Result<EvalHeader, ScriptError> {
    let (cmd, rest) = split_word(l);
    let (mut fail, mut warn, mut info, mut ordered) = (false, false, false, false);
    match cmd.to_lowercase().as_str() {
        "eval" => {}
        "eval_fail" => fail = true,
        "eval_warn" => warn = true,
        "eval_info" => info = true,
        "eval_ordered" => ordered = true,
        other => return err(lineno, format!("unknown command {other:?}")),
    }
    let (kind, rest) = split_word(rest);
    let (mode, expr) = match kind {
        "instant" => {
            let (w, after) = split_word(rest);
            let (at_ms, expr) = if w == "at" {
                let (t, expr) = split_word(after);
                let at = parse_duration(t).map_err(|m| ScriptError {
                    line: lineno,
                    message: format!("invalid evaluation time: {m}"),
                })?;
                (at, expr)
            } else {
                (0, rest)
            };
            (EvalMode::Instant { at_ms }, expr)
        }
        "range" => {
            let mut words = [""; 6];
            let mut r = rest;
            for w in &mut words {
                let (a, b) = split_word(r);
                *w = a;
                r = b;
            }
            let [from, s, to, e, step, st] = words;
            if from != "from" || to != "to" || step != "step" {
                return err(
                    lineno,
                    format!(
                        "invalid range eval {l:?}: want 'range from <t> to <t> step <d> <expr>'"
                    ),
                );
            }
            let dur = |what: &str, s: &str| {
                parse_duration(s).map_err(|m| ScriptError {
                    line: lineno,
                    message: format!("invalid {what}: {m}"),
                })
            };
            let (start_ms, end_ms, step_ms) = (dur("start", s)?, dur("end", e)?, dur("step", st)?);
            if end_ms < start_ms {
                return err(lineno, "invalid range eval: end is before start");
            }
            if step_ms <= 0 {
                return err(lineno, "invalid range eval: step must be positive");
            }
            if ordered {
                return err(lineno, "eval_ordered is not allowed with range queries");
            }
            (
                EvalMode::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                },
                r,
            )
        }
        _ => {
            return err(
                lineno,
                format!("invalid eval command {l:?}: want 'instant' or 'range'"),
            );
        }
    };
    if expr.is_empty() {
        return err(lineno, "eval without an expression");
    }
    Ok(EvalHeader {
        mode,
        expr: expr.to_string(),
        fail,
        warn,
        info,
        ordered,
    })
}

fn parse_eval(lines: &[&str], start: usize) -> Result<(Eval, usize), ScriptError> {
    let lineno = start + 1;
    let l = lines.get(start).copied().unwrap_or("");
    let h = parse_eval_header(l, lineno)?;
    let is_range = matches!(h.mode, EvalMode::Range { .. });
    let mut ev = Eval {
        line: lineno,
        text: l.to_string(),
        expr: h.expr,
        mode: h.mode,
        fail: h.fail.then_some(TextMatch::Any),
        ordered: h.ordered,
        range_vector: None,
        warn: if h.warn {
            AnnotationExpect::Some(vec![TextMatch::Any])
        } else {
            AnnotationExpect::Unchecked
        },
        info: if h.info {
            AnnotationExpect::Some(vec![TextMatch::Any])
        } else {
            AnnotationExpect::Unchecked
        },
        expected: Expected::Series(Vec::new()),
        expects_histograms: false,
    };
    let mut series: Vec<SeriesLine> = Vec::new();
    let mut result_set: Option<Expected> = None;
    let mut i = start + 1;
    while let Some(&l) = lines.get(i) {
        if is_blank(l) {
            break;
        }
        let lineno = i + 1;
        i += 1;
        if l.contains("{{") {
            ev.expects_histograms = true;
        }
        let (first, rest) = split_word(l);
        if first == "expect" {
            parse_expect_line(&mut ev, rest, lineno, is_range, &mut result_set)?;
            continue;
        }
        if first == "expected_fail_message" || first == "expected_fail_regexp" {
            let pat = if first == "expected_fail_message" {
                TextMatch::Exact(rest.trim().to_string())
            } else {
                TextMatch::Regex(compile_regex(rest.trim(), lineno)?)
            };
            ev.fail = Some(pat);
            break;
        }
        if let Some(v) = parse_go_number(l) {
            if !series.is_empty() {
                return err(lineno, "a scalar expectation cannot follow series lines");
            }
            set_result(&mut result_set, Expected::Scalar(v), lineno)?;
            break;
        }
        let (labels, rest) = parse_series_desc(l).map_err(|m| ScriptError {
            line: lineno,
            message: m,
        })?;
        let values = parse_sequence(rest).map_err(|m| ScriptError {
            line: lineno,
            message: m,
        })?;
        if series.iter().any(|s| s.labels == labels) {
            return err(lineno, format!("duplicate expected series {labels}"));
        }
        series.push(SeriesLine {
            line: lineno,
            labels,
            values,
        });
    }
    if !series.is_empty() && result_set.is_some() {
        return err(
            lineno,
            "series lines cannot be combined with a scalar or string expectation",
        );
    }
    if !is_range && ev.range_vector.is_none() {
        for s in &series {
            if s.values.len() > 1 {
                return err(
                    s.line,
                    "an instant evaluation expects exactly one value per series (use 'expect range vector' for a range vector result)",
                );
            }
        }
    }
    ev.expected = result_set.unwrap_or(Expected::Series(series));
    Ok((ev, i))
}

fn set_result(slot: &mut Option<Expected>, e: Expected, line: usize) -> Result<(), ScriptError> {
    if slot.is_some() {
        return err(line, "more than one scalar or string expectation");
    }
    *slot = Some(e);
    Ok(())
}

fn compile_regex(p: &str, line: usize) -> Result<Regex, ScriptError> {
    Regex::new(p).map_err(|e| ScriptError {
        line,
        message: format!("invalid regex {p:?}: {e}"),
    })
}

/// Parses `[msg: text | regex: pattern]` after `expect fail|warn|info`.
fn parse_text_match(rest: &str, line: usize) -> Result<TextMatch, ScriptError> {
    let rest = rest.trim();
    if rest.is_empty() {
        Ok(TextMatch::Any)
    } else if let Some(m) = rest.strip_prefix("msg:") {
        Ok(TextMatch::Exact(m.trim().to_string()))
    } else if let Some(p) = rest.strip_prefix("regex:") {
        Ok(TextMatch::Regex(compile_regex(p.trim(), line)?))
    } else {
        err(
            line,
            format!("invalid expectation qualifier {rest:?}: want 'msg:' or 'regex:'"),
        )
    }
}

fn add_annotation(
    slot: &mut AnnotationExpect,
    m: TextMatch,
    level: &str,
    line: usize,
) -> Result<(), ScriptError> {
    match slot {
        AnnotationExpect::None => err(
            line,
            format!("'expect {level}' cannot be combined with 'expect no_{level}'"),
        ),
        AnnotationExpect::Unchecked => {
            *slot = AnnotationExpect::Some(vec![m]);
            Ok(())
        }
        AnnotationExpect::Some(v) => {
            v.push(m);
            Ok(())
        }
    }
}

fn forbid_annotation(
    slot: &mut AnnotationExpect,
    level: &str,
    line: usize,
) -> Result<(), ScriptError> {
    if let AnnotationExpect::Some(_) = slot {
        return err(
            line,
            format!("'expect no_{level}' cannot be combined with 'expect {level}'"),
        );
    }
    *slot = AnnotationExpect::None;
    Ok(())
}

fn parse_expect_line(
    ev: &mut Eval,
    rest: &str,
    line: usize,
    is_range: bool,
    result_set: &mut Option<Expected>,
) -> Result<(), ScriptError> {
    let (kind, rest) = split_word(rest);
    // `msg:` may follow the keyword without a space (`expect fail msg:text`).
    match kind {
        "fail" => {
            if ev.fail.is_some() {
                return err(line, "more than one 'expect fail' line");
            }
            ev.fail = Some(parse_text_match(rest, line)?);
        }
        "warn" => add_annotation(&mut ev.warn, parse_text_match(rest, line)?, "warn", line)?,
        "info" => add_annotation(&mut ev.info, parse_text_match(rest, line)?, "info", line)?,
        "no_warn" | "no_info" => {
            if !rest.is_empty() {
                return err(line, format!("unexpected text after 'expect {kind}'"));
            }
            if kind == "no_warn" {
                forbid_annotation(&mut ev.warn, "warn", line)?;
            } else {
                forbid_annotation(&mut ev.info, "info", line)?;
            }
        }
        "ordered" => {
            if is_range {
                return err(line, "'expect ordered' is not allowed with range queries");
            }
            ev.ordered = true;
        }
        "string" => {
            if is_range {
                return err(line, "'expect string' is not allowed with range queries");
            }
            let s = unquote(rest.trim()).map_err(|m| ScriptError {
                line,
                message: format!("invalid string expectation: {m}"),
            })?;
            set_result(result_set, Expected::String(s), line)?;
        }
        "range" => {
            if is_range {
                return err(
                    line,
                    "'expect range vector' is not allowed with range queries",
                );
            }
            let w: Vec<&str> = rest.split_whitespace().collect();
            let [vector, from, a, to, b, step, s] = w.as_slice() else {
                return err(
                    line,
                    "invalid 'expect range vector': want 'expect range vector from <t> to <t> step <d>'",
                );
            };
            if *vector != "vector" || *from != "from" || *to != "to" || *step != "step" {
                return err(
                    line,
                    "invalid 'expect range vector': want 'expect range vector from <t> to <t> step <d>'",
                );
            }
            let d = |s: &str| {
                parse_duration(s).map_err(|m| ScriptError {
                    line,
                    message: format!("invalid 'expect range vector': {m}"),
                })
            };
            let rv = RangeVectorExpect {
                start_ms: d(a)?,
                end_ms: d(b)?,
                step_ms: d(s)?,
            };
            if rv.step_ms <= 0 || rv.end_ms < rv.start_ms {
                return err(line, "invalid 'expect range vector': empty range or step");
            }
            ev.range_vector = Some(rv);
        }
        other => return err(line, format!("unknown expectation 'expect {other}'")),
    }
    Ok(())
}

/// Parses a Prometheus duration (`0`, `10s`, `1h30m`, `10s53ms`) into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut total: i64 = 0;
    let mut last_unit = usize::MAX;
    while pos < bytes.len() {
        let digits = bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(format!("not a valid duration: {s:?}"));
        }
        let n: i64 = s[pos..pos + digits]
            .parse()
            .map_err(|_| format!("duration out of range: {s:?}"))?;
        pos += digits;
        let unit_len = bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let unit = &s[pos..pos + unit_len];
        pos += unit_len;
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "not a valid duration: {s:?} (unknown unit {unit:?})"
            ));
        };
        // Units must appear largest first, each at most once.
        if last_unit != usize::MAX && idx <= last_unit {
            return Err(format!("not a valid duration: {s:?} (units out of order)"));
        }
        last_unit = idx;
        let (_, mult) = UNITS[idx];
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Parses a number as Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat` would: integers
/// with `0x`/`0o`/`0b`/leading-`0` prefixes, decimals, exponents, `Inf`/`NaN` in any case.
pub fn parse_go_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let int = |digits: &str, radix: u32| -> Option<f64> {
        if digits.is_empty() {
            return None;
        }
        let v = i64::from_str_radix(digits, radix).ok()? as f64;
        Some(if neg { -v } else { v })
    };
    let lower = body.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        return int(h, 16);
    }
    if let Some(o) = lower.strip_prefix("0o") {
        return int(o, 8);
    }
    if let Some(b) = lower.strip_prefix("0b") {
        return int(b, 2);
    }
    if body.len() > 1
        && body.starts_with('0')
        && body.bytes().all(|b| b.is_ascii_digit())
        && let Some(v) = int(&body[1..], 8)
    {
        return Some(v);
    }
    parse_float(s)
}

/// Parses a float literal: decimal, exponent, `Inf`/`NaN` with optional sign (any case).
fn parse_float(s: &str) -> Option<f64> {
    // Rust also accepts "infinity"; the extra spelling is harmless.
    let first = s.bytes().next()?;
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.' | b'i' | b'I' | b'n' | b'N'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Parses one value of a sequence: a float, `stale`, or a duration read as seconds.
fn parse_seq_number(s: &str) -> Result<f64, String> {
    if s == "stale" {
        return Ok(f64::from_bits(STALE_NAN_BITS));
    }
    if let Some(v) = parse_float(s) {
        return Ok(v);
    }
    if let Ok(ms) = parse_signed_duration(s) {
        return Ok(ms as f64 / 1000.0);
    }
    Err(format!("invalid value {s:?}"))
}

/// Splits `<head>x<n>` into head and n (None when there is no repeat marker).
fn split_repeat(item: &str) -> Result<(&str, Option<u64>), String> {
    if let Some(p) = item.rfind('x') {
        let n = &item[p + 1..];
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && p > 0 {
            let n: u64 = n
                .parse()
                .map_err(|_| format!("repeat count out of range in {item:?}"))?;
            return Ok((&item[..p], Some(n)));
        }
    }
    Ok((item, None))
}

/// Splits `a+b` / `a-b` (the sign belongs to b); a sign right after an exponent `e` does not
/// split.
fn split_increment(head: &str) -> (&str, Option<&str>) {
    let bytes = head.as_bytes();
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if (b == b'+' || b == b'-') && !matches!(bytes.get(i - 1), Some(b'e' | b'E')) {
            return (&head[..i], Some(&head[i..]));
        }
    }
    (head, None)
}

/// Most elements one sequence item may expand to (guards against `1x99999999999`).
const MAX_SEQUENCE_ELEMENTS: u64 = 1_000_000;

/// Expands a value sequence (`1 2+3x4 _ _x2 stale {{...}}`).
pub fn parse_sequence(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for item in tokenize_sequence(s)? {
        expand_item(&item, &mut out)?;
    }
    Ok(out)
}

/// Splits a sequence into items on whitespace outside `{{ ... }}`.
fn tokenize_sequence(s: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' && chars.peek() == Some(&'{') {
            chars.next();
            depth += 1;
            cur.push_str("{{");
        } else if c == '}' && depth > 0 && chars.peek() == Some(&'}') {
            chars.next();
            depth -= 1;
            cur.push_str("}}");
        } else if (c == ' ' || c == '\t') && depth == 0 {
            if !cur.is_empty() {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if depth != 0 {
        return Err("unterminated histogram literal '{{'".to_string());
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    Ok(items)
}

fn check_count(n: u64, item: &str) -> Result<(), String> {
    if n >= MAX_SEQUENCE_ELEMENTS {
        return Err(format!("repeat count too large in {item:?}"));
    }
    Ok(())
}

fn expand_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    if item.starts_with("{{") {
        return expand_histogram_item(item, out);
    }
    if item == "_" {
        out.push(SeqValue::Omitted);
        return Ok(());
    }
    let (head, n) = split_repeat(item)?;
    if head == "_" {
        // `_xn` is n omitted samples, not n+1.
        let n = n.unwrap_or(1);
        check_count(n, item)?;
        out.extend((0..n).map(|_| SeqValue::Omitted));
        return Ok(());
    }
    let Some(n) = n else {
        out.push(SeqValue::Float(parse_seq_number(item)?));
        return Ok(());
    };
    check_count(n, item)?;
    let (a, b) = split_increment(head);
    let mut v = parse_seq_number(a)?;
    let step = match b {
        Some(b) => parse_seq_number(b)?,
        None => 0.0,
    };
    out.push(SeqValue::Float(v));
    for _ in 0..n {
        // Repeated addition, as the format requires (not a + k*b).
        if b.is_some() {
            v += step;
        }
        out.push(SeqValue::Float(v));
    }
    Ok(())
}

/// `{{A}}`, `{{A}}xn`, `{{A}}+{{B}}xn`, `{{A}}-{{B}}xn`.
fn expand_histogram_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    let Some(end) = item.find("}}") else {
        return Err(format!("unterminated histogram literal in {item:?}"));
    };
    let first = &item[..end + 2];
    check_histogram_literal(first)?;
    let rest = &item[end + 2..];
    let n = if rest.is_empty() {
        0
    } else if let Some(n) = rest.strip_prefix('x') {
        n.parse::<u64>()
            .map_err(|_| format!("invalid repeat count in {item:?}"))?
    } else if let Some(inc) = rest.strip_prefix('+').or_else(|| rest.strip_prefix('-')) {
        let Some(p) = inc.rfind("}}x") else {
            return Err(format!("histogram increment without 'x<n>' in {item:?}"));
        };
        if !inc.starts_with("{{") {
            return Err(format!("invalid histogram increment in {item:?}"));
        }
        check_histogram_literal(&inc[..p + 2])?;
        inc[p + 3..]
            .parse::<u64>()
            .map_err(|_| format!("invalid repeat count in {item:?}"))?
    } else {
        return Err(format!(
            "unexpected text after histogram literal in {item:?}"
        ));
    };
    check_count(n, item)?;
    out.extend((0..=n).map(|_| SeqValue::Histogram(first.to_string())));
    Ok(())
}

/// Checks the shape of a `{{key:value ...}}` literal: known keys, each at most once.
fn check_histogram_literal(lit: &str) -> Result<(), String> {
    let inner = lit
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .ok_or_else(|| format!("invalid histogram literal {lit:?}"))?;
    const KEYS: [&str; 11] = [
        "schema",
        "sum",
        "count",
        "z_bucket",
        "z_bucket_w",
        "buckets",
        "offset",
        "n_buckets",
        "n_offset",
        "custom_values",
        "counter_reset_hint",
    ];
    let mut seen = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let Some(colon) = rest.find(':') else {
            return Err(format!(
                "invalid histogram literal {lit:?}: expected key:value"
            ));
        };
        let key = rest[..colon].trim();
        if !KEYS.contains(&key) {
            return Err(format!("unknown histogram key {key:?} in {lit:?}"));
        }
        if seen.contains(&key) {
            return Err(format!("duplicate histogram key {key:?} in {lit:?}"));
        }
        seen.push(key);
        rest = rest[colon + 1..].trim_start();
        if rest.starts_with('[') {
            let Some(close) = rest.find(']') else {
                return Err(format!("unterminated bucket list in {lit:?}"));
            };
            rest = rest[close + 1..].trim_start();
        } else {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            rest = rest[end..].trim_start();
        }
    }
    Ok(())
}

/// Parses a series description at the start of `s` (`name`, `name{l="v"}`, `{l="v"}`,
/// `{"name", l="v"}`) and returns the labels and the remaining text (the value sequence, or
/// `@st ...`).
pub fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
    let mut labels: Vec<Label> = Vec::new();
    let bytes = s.as_bytes();
    let name_len = bytes
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        .count();
    let mut pos = name_len;
    if name_len > 0 {
        if bytes[0].is_ascii_digit() {
            return Err(format!("invalid metric name in {s:?}"));
        }
        labels.push(Label::new("__name__", &s[..name_len]));
        // Optional whitespace before `{` (a `{{` would be a histogram value).
        let after = s[pos..].trim_start_matches([' ', '\t']);
        if after.starts_with('{') && !after.starts_with("{{") {
            pos = s.len() - after.len();
        }
    }
    if s[pos..].starts_with('{') && !s[pos..].starts_with("{{") {
        pos = parse_label_block(s, pos + 1, &mut labels)?;
    } else if name_len == 0 {
        return Err(format!("expected a series description, found {s:?}"));
    }
    let rest = &s[pos..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t']) || rest.starts_with("@st")) {
        return Err(format!(
            "unexpected text after series description: {rest:?}"
        ));
    }
    let labels = Labels::new(labels).map_err(|e| format!("invalid series {s:?}: {e}"))?;
    Ok((labels, rest.trim_start_matches([' ', '\t'])))
}

/// Parses label pairs after `{` up to and including `}`; returns the position after `}`.
fn parse_label_block(s: &str, mut pos: usize, labels: &mut Vec<Label>) -> Result<usize, String> {
    let skip_ws = |p: usize| -> usize {
        p + s[p..]
            .bytes()
            .take_while(|b| *b == b' ' || *b == b'\t')
            .count()
    };
    loop {
        pos = skip_ws(pos);
        let rest = &s[pos..];
        if rest.starts_with('}') {
            return Ok(pos + 1);
        }
        if rest.is_empty() {
            return Err(format!("unterminated label set in {s:?}"));
        }
        // Label name: identifier or quoted string.
        let (name, after) = if rest.starts_with(['"', '\'', '`']) {
            let (v, used) = read_string(rest)?;
            (v, pos + used)
        } else {
            let n = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if n == 0 || rest.as_bytes()[0].is_ascii_digit() {
                return Err(format!("invalid label name in {s:?} at {rest:?}"));
            }
            (rest[..n].to_string(), pos + n)
        };
        pos = skip_ws(after);
        let rest = &s[pos..];
        if rest.starts_with(',') || rest.starts_with('}') {
            // A lone quoted string is the metric name.
            if labels.iter().any(|l| l.name == "__name__") {
                return Err(format!("metric name given twice in {s:?}"));
            }
            labels.push(Label::new("__name__", name));
        } else if rest.starts_with('=') && !rest.starts_with("=~") {
            pos = skip_ws(pos + 1);
            let (value, used) = read_string(&s[pos..])?;
            pos += used;
            labels.push(Label::new(name, value));
        } else {
            return Err(format!(
                "series descriptions allow only '=' matchers: {s:?} at {rest:?}"
            ));
        }
        pos = skip_ws(pos);
        let rest = &s[pos..];
        if rest.starts_with(',') {
            pos += 1;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' in {s:?} at {rest:?}"));
        }
    }
}

/// Reads a PromQL string literal at the start of `s`; returns its value and the bytes used.
fn read_string(s: &str) -> Result<(String, usize), String> {
    let mut chars = s.char_indices();
    let Some((_, q)) = chars.next() else {
        return Err("expected a string".to_string());
    };
    if !matches!(q, '"' | '\'' | '`') {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            escaped = false;
        } else if c == '\\' && q != '`' {
            escaped = true;
        } else if c == q {
            let lit = &s[..i + 1];
            return Ok((unquote(lit)?, i + 1));
        }
    }
    Err(format!("unterminated string {s:?}"))
}

/// Unquotes a Go string literal: `"..."` / `'...'` with Go escapes, or raw `` `...` ``.
pub fn unquote(s: &str) -> Result<String, String> {
    let q = s.chars().next().ok_or("empty string literal")?;
    if !matches!(q, '"' | '\'' | '`') || s.len() < 2 || !s.ends_with(q) {
        return Err(format!("not a quoted string: {s:?}"));
    }
    let inner = &s[1..s.len() - 1];
    if q == '`' {
        if inner.contains('`') {
            return Err(format!("invalid raw string {s:?}"));
        }
        return Ok(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut it = inner.chars().peekable();
    while let Some(c) = it.next() {
        if c == q {
            return Err(format!("unescaped quote in {s:?}"));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it
            .next()
            .ok_or_else(|| format!("trailing backslash in {s:?}"))?;
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '\'' | '"' if e == q => out.push(e),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = (0..n).filter_map(|_| it.next()).collect();
                let v = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == n)
                    .ok_or_else(|| format!("invalid \\{e} escape in {s:?}"))?;
                if e == 'x' {
                    // A byte; only ASCII bytes form valid UTF-8 on their own.
                    let ch = char::from_u32(v)
                        .filter(|c| c.is_ascii())
                        .ok_or_else(|| format!("non-ASCII \\x escape in {s:?}"))?;
                    out.push(ch);
                } else {
                    out.push(
                        char::from_u32(v)
                            .ok_or_else(|| format!("invalid code point escape in {s:?}"))?,
                    );
                }
            }
            '0'..='7' => {
                let mut oct = String::from(e);
                for _ in 0..2 {
                    if let Some(d) = it.next() {
                        oct.push(d);
                    }
                }
                let v = u32::from_str_radix(&oct, 8)
                    .ok()
                    .filter(|v| oct.len() == 3 && *v < 128)
                    .ok_or_else(|| format!("invalid octal escape in {s:?}"))?;
                out.push(char::from_u32(v).ok_or_else(|| format!("invalid escape in {s:?}"))?);
            }
            other => return Err(format!("unknown escape \\{other} in {s:?}")),
        }
    }
    Ok(out)
}
