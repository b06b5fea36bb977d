//! The skip list: what a float-only engine without experimental PromQL features may skip.
//!
//! The conformance scripts exercise native histograms and experimental features alongside
//! stable PromQL. Strata's bar is "every eval of stable PromQL passes", so the runner needs a
//! precise, reviewable statement of what it does not hold the engine to. That statement is
//! [`SKIP_LIST`]: one row per [`SkipKind`] with the reason and the detection rule. Each kind is
//! switched on or off individually through [`crate::promqltest::RunOptions::skip`], so a kind
//! leaves the list the day the engine implements it.
//!
//! Detection works on the script text, never on the engine's behaviour, so a skip can never
//! hide a regression of a stable feature. Expression rules look at the expression with string
//! literals blanked out (a label value such as `"fill"` never triggers a skip).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use promql_parser::label::Matchers;
use promql_parser::parser::{Expr, VectorSelector};
use strata_engine::Labels;

/// A kind of eval the runner may skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SkipKind {
    /// Native-histogram data or expectations.
    NativeHistograms,
    /// Start ("created") timestamps loaded with `@st` lines.
    StartTimestamps,
    /// `__type__` / `__unit__` labels with their experimental semantics.
    TypeAndUnitLabels,
    /// `info()` calls the parser cannot read (a data-label selector whose matchers all accept
    /// the empty value).
    InfoFunction,
    /// Extended range selectors: the `anchored` and `smoothed` modifiers.
    ExtendedRangeSelectors,
    /// Duration expressions: arithmetic or `step()`/`range()` as a range, subquery step,
    /// `offset` or `@` operand.
    DurationExpressions,
    /// The `fill`, `fill_left` and `fill_right` binary-operator modifiers.
    FillModifiers,
}

/// One row of the skip list.
#[derive(Debug, Clone, Copy)]
pub struct SkipRule {
    /// The kind.
    pub kind: SkipKind,
    /// Its name on the command line (`--no-skip <name>`) and in reports.
    pub name: &'static str,
    /// Why an engine may skip it.
    pub reason: &'static str,
    /// How the runner recognises it.
    pub rule: &'static str,
}

/// The skip list: every kind with its reason and detection rule.
pub const SKIP_LIST: &[SkipRule] = &[
    SkipRule {
        kind: SkipKind::NativeHistograms,
        name: "native-histograms",
        reason: "native histograms are a later step; the engine stores and evaluates floats only",
        rule: "the eval's expectations contain `{{`, or its expression may select a loaded \
               series that holds native-histogram samples: a series with a `{{` sample in a \
               `load`, or a histogram `X{...}` that `load_with_nhcb` builds from an \
               `X_bucket{le=...}` family (until `clear`). \"May select\": a vector selector's \
               matchers match the series' labels, or the expression does not parse. Float \
               series loaded next to histograms are still evaluated",
    },
    SkipRule {
        kind: SkipKind::StartTimestamps,
        name: "start-timestamps",
        reason: "start (created) timestamps are an experimental feature the engine does not store",
        rule: "the eval runs while data from a `load` containing an `@st` line is present \
               (until `clear`)",
    },
    SkipRule {
        kind: SkipKind::TypeAndUnitLabels,
        name: "type-and-unit-labels",
        reason: "`__type__`/`__unit__` label semantics are an experimental feature",
        rule: "the eval runs while loaded data carries a `__type__` or `__unit__` label \
               (until `clear`), or its expression or expectations mention one",
    },
    SkipRule {
        kind: SkipKind::InfoFunction,
        name: "info-function",
        reason: "`info()` is implemented, but promql-parser rejects a data-label selector whose \
                 matchers all accept the empty value (e.g. `{data=~\".*\"}`) as an empty vector \
                 selector, so such calls cannot be evaluated",
        rule: "the expression calls `info(` and promql-parser fails to parse it",
    },
    SkipRule {
        kind: SkipKind::ExtendedRangeSelectors,
        name: "extended-range-selectors",
        reason: "the `anchored`/`smoothed` range-selector modifiers are experimental",
        rule: "the expression contains the word `anchored` or `smoothed`",
    },
    SkipRule {
        kind: SkipKind::DurationExpressions,
        name: "duration-expressions",
        reason: "duration expressions are experimental",
        rule: "the expression calls `step()`, `range()`, `min_of(` or `max_of(`; or a `[...]` \
               range/subquery holds an operator (`+ - * / % ^`) or a parenthesis; or an \
               `offset`/`@` operand starts with `(`, a function call, or a sign before one of \
               them (`@ start()`/`@ end()` are stable)",
    },
    SkipRule {
        kind: SkipKind::FillModifiers,
        name: "fill-modifiers",
        reason: "the `fill`/`fill_left`/`fill_right` binary-operator modifiers are experimental",
        rule: "the expression contains `fill(`, `fill_left(` or `fill_right(`",
    },
];

impl SkipKind {
    /// Every kind, in skip-list order.
    pub fn all() -> Vec<SkipKind> {
        SKIP_LIST.iter().map(|r| r.kind).collect()
    }

    /// The skip-list row of this kind.
    pub fn rule(self) -> &'static SkipRule {
        // Every kind has a row (tested); the first row is a harmless fallback.
        SKIP_LIST
            .iter()
            .find(|r| r.kind == self)
            .unwrap_or(&SKIP_LIST[0])
    }

    /// The kind's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        self.rule().name
    }
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SkipKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SKIP_LIST
            .iter()
            .find(|r| r.name == s)
            .map(|r| r.kind)
            .ok_or_else(|| {
                let names: Vec<&str> = SKIP_LIST.iter().map(|r| r.name).collect();
                format!("unknown skip kind {s:?}; known kinds: {}", names.join(", "))
            })
    }
}

/// What the data loaded since the last `clear` contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedFeatures {
    /// Series holding native-histogram samples: those with a `{{` sample, and the histograms
    /// `load_with_nhcb` builds.
    pub histogram_series: BTreeSet<Labels>,
    /// A `load` with `@st` lines.
    pub start_timestamps: bool,
    /// A loaded series with a `__type__` or `__unit__` label.
    pub type_and_unit: bool,
}

/// The skip kinds that apply to an eval, in skip-list order.
pub fn detect(
    expr: &str,
    expectation_text: &str,
    expects_histograms: bool,
    loaded: &LoadedFeatures,
) -> Vec<SkipKind> {
    let code = blank_strings(expr);
    let mut out = Vec::new();
    if expects_histograms || may_select_any(expr, &loaded.histogram_series) {
        out.push(SkipKind::NativeHistograms);
    }
    if loaded.start_timestamps {
        out.push(SkipKind::StartTimestamps);
    }
    if loaded.type_and_unit
        || mentions_type_or_unit(expr)
        || mentions_type_or_unit(expectation_text)
    {
        out.push(SkipKind::TypeAndUnitLabels);
    }
    if calls(&code, "info") && promql_parser::parser::parse(expr).is_err() {
        out.push(SkipKind::InfoFunction);
    }
    if has_word(&code, "anchored") || has_word(&code, "smoothed") {
        out.push(SkipKind::ExtendedRangeSelectors);
    }
    if uses_duration_expression(&code) {
        out.push(SkipKind::DurationExpressions);
    }
    if ["fill", "fill_left", "fill_right"]
        .iter()
        .any(|f| calls(&code, f))
    {
        out.push(SkipKind::FillModifiers);
    }
    out
}

fn mentions_type_or_unit(s: &str) -> bool {
    s.contains("__type__") || s.contains("__unit__")
}

/// Replaces the contents of string literals (and the quotes) with spaces, keeping byte
/// positions.
pub fn blank_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                    out.push(' ');
                } else {
                    out.push(c);
                }
            }
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                out.extend(std::iter::repeat_n(' ', c.len_utf8()));
            }
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Byte offsets where `word` occurs as a whole identifier (case-insensitive).
fn word_positions<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let lower = code.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(p) = lower[from..].find(word) {
        let at = from + p;
        let before = lower[..at].chars().next_back();
        let after = lower[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char) {
            found.push(at);
        }
        from = at + word.len();
    }
    found.into_iter()
}

fn has_word(code: &str, word: &str) -> bool {
    word_positions(code, word).next().is_some()
}

/// True if `name` appears as an identifier followed (after optional spaces) by `(`.
fn calls(code: &str, name: &str) -> bool {
    word_positions(code, name).any(|p| code[p + name.len()..].trim_start().starts_with('('))
}

fn uses_duration_expression(code: &str) -> bool {
    if ["step", "range", "min_of", "max_of"]
        .iter()
        .any(|f| calls(code, f))
    {
        return true;
    }
    brackets_hold_expression(code) || modifier_operand_is_expression(code)
}

/// Does a `[...]` range or step hold arithmetic or a call (rather than a literal)? Invalid
/// literals such as `[x]` are not duration expressions: they must fail, not be skipped.
fn is_expression(s: &str) -> bool {
    s.contains(['+', '-', '*', '/', '%', '^', '('])
}

/// A `[...]` (outside label matchers) whose range or step is an arithmetic expression or call.
fn brackets_hold_expression(code: &str) -> bool {
    let mut depth_brace = 0usize;
    let mut start: Option<usize> = None;
    let mut nested = 0usize;
    for (i, c) in code.char_indices() {
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace = depth_brace.saturating_sub(1),
            '[' if depth_brace == 0 => {
                if start.is_none() {
                    start = Some(i + 1);
                } else {
                    nested += 1;
                }
            }
            ']' if depth_brace == 0 => {
                if nested > 0 {
                    nested -= 1;
                    continue;
                }
                if let Some(s) = start.take() {
                    let inner = &code[s..i];
                    if is_expression(inner) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// An `offset` or `@` operand that is an expression rather than a literal.
fn modifier_operand_is_expression(code: &str) -> bool {
    let mut operands: Vec<&str> = word_positions(code, "offset")
        .map(|p| &code[p + "offset".len()..])
        .collect();
    operands.extend(code.match_indices('@').map(|(p, _)| &code[p + 1..]));
    operands.into_iter().any(|rest| {
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix(['-', '+'])
            .map(str::trim_start)
            .unwrap_or(rest);
        if rest.starts_with('(') {
            return true;
        }
        let ident: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
        let is_call = !ident.is_empty()
            && !ident.starts_with(|c: char| c.is_ascii_digit())
            && rest[ident.len()..].trim_start().starts_with('(');
        // `@ start()` and `@ end()` are stable PromQL.
        is_call && !matches!(ident.to_ascii_lowercase().as_str(), "start" | "end")
    })
}

/// True if a vector selector of `expr` may select one of `series` (or `expr` does not parse).
pub fn may_select_any(expr: &str, series: &BTreeSet<Labels>) -> bool {
    if series.is_empty() {
        return false;
    }
    let Ok(parsed) = promql_parser::parser::parse(expr) else {
        return true;
    };
    let mut selectors = Vec::new();
    collect_selectors(&parsed, &mut selectors);
    selectors
        .iter()
        .any(|vs| series.iter().any(|l| selector_matches(vs, l)))
}

fn collect_selectors<'a>(e: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match e {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector_matches(vs: &VectorSelector, l: &Labels) -> bool {
    if let Some(name) = &vs.name
        && l.get("__name__") != Some(name.as_str())
    {
        return false;
    }
    matchers_match(&vs.matchers, l)
}

fn matchers_match(ms: &Matchers, l: &Labels) -> bool {
    let all = |group: &[promql_parser::label::Matcher]| {
        group
            .iter()
            .all(|m| m.is_match(l.get(&m.name).unwrap_or("")))
    };
    if ms.or_matchers.is_empty() {
        all(&ms.matchers)
    } else {
        ms.or_matchers.iter().any(|g| all(g))
    }
}
