//! The PromQL conformance runner: runs scripts in Prometheus's PromQL test-script format
//! against Strata's storage head and evaluator.
//!
//! Strata promises to answer PromQL exactly as Prometheus does. The proof is Prometheus's own
//! acceptance scripts (`load` data, `eval` queries, compare with the expected values), run
//! in-process: loaded samples are kept in a [`Store`] and appended to a fresh in-memory
//! [`Head`] whenever the data changed, and every eval goes through the crate's public entry
//! points [`crate::instant_query`] and [`crate::range_query`] — the same calls the HTTP API
//! makes — so a passing script means a passing server.
//!
//! The pieces: [`script`] parses the DSL, [`compare`] judges a result, [`skip`] holds the one
//! skip list of features a float-only engine without experimental features may skip, and
//! this module runs commands in order and builds a [`Report`] (printed by `strata promqltest`).
//!
//! Outcome of one eval:
//! - **passed** — the expectations hold (an expected failure whose error text differs from
//!   Prometheus's wording also passes, and is listed as a *message mismatch*);
//! - **failed** — anything else, printed with expected vs got and the error;
//! - **skipped** — a kind on the skip list applies (counted per kind).
//!
//! A script error (unparsable command) invalidates its file and counts as one failure.

pub mod compare;
pub mod script;
pub mod skip;

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use strata_engine::{Head, HeadOptions, Labels, Querier};

use crate::{EvalOptions, QueryOutput, Value};
use compare::{Mismatch, compare_annotations, compare_result, render_expected, render_value};
use script::{Command, Eval, EvalMode, Expected, Load, SeqValue, TextMatch};
pub use skip::{LoadedFeatures, SKIP_LIST, SkipKind, SkipRule};

/// Lookback delta the scripts assume (5 minutes).
pub const LOOKBACK_MS: i64 = 300_000;
/// Sample limit per query the scripts assume (Prometheus's test default).
pub const MAX_SAMPLES: usize = 10_000;

/// How to run scripts.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Skip kinds in force. Default: every kind of [`SKIP_LIST`].
    pub skip: Vec<SkipKind>,
    /// Also run Prometheus's implicit checks (FORMAT.md §5.7) on every instant eval: the
    /// `@`-pinned step-invariance check and the range-mode consistency check.
    pub strict: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            skip: SkipKind::all(),
            strict: false,
        }
    }
}

/// Time limit of one query, so an evaluator that loops fails its eval instead of hanging the
/// run. Generous: the slowest script query takes milliseconds.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The evaluation options of the scripts (FORMAT.md §6).
pub fn eval_options() -> EvalOptions {
    // Struct-update syntax on purpose: `EvalOptions` grows fields, and the scripts want the
    // defaults for all others (e.g. the 1m step of subqueries without one).
    #[allow(clippy::needless_update)]
    EvalOptions {
        lookback_ms: LOOKBACK_MS,
        max_samples: MAX_SAMPLES,
        timeout: Some(EVAL_TIMEOUT),
        ..EvalOptions::default()
    }
}

/// A failing eval (or a script error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalFailure {
    /// 1-based line of the eval (or of the script error).
    pub line: usize,
    /// The eval line as written (or `script error`).
    pub eval: String,
    /// What went wrong, in one sentence.
    pub message: String,
    /// The expectation, rendered.
    pub expected: String,
    /// The result, rendered (empty when the query failed).
    pub got: String,
    /// The query's error, if it failed.
    pub error: Option<String>,
}

/// An eval that expected a failure, failed, but with another error text than Prometheus's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMismatch {
    /// 1-based line of the eval.
    pub line: usize,
    /// The eval line as written.
    pub eval: String,
    /// The expected message or pattern.
    pub expected: String,
    /// The engine's error text.
    pub got: String,
}

/// Results of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// The file's name as given.
    pub file: String,
    /// Evals that passed (message mismatches included).
    pub passed: usize,
    /// Evals that failed, plus one for a script error.
    pub failed: usize,
    /// Skipped evals per kind (each eval counted once, under its first kind in skip-list
    /// order).
    pub skipped: BTreeMap<SkipKind, usize>,
    /// The failures, in file order.
    pub failures: Vec<EvalFailure>,
    /// Expected failures with a different error text, in file order.
    pub message_mismatches: Vec<MessageMismatch>,
    /// The script error that stopped the file, if any.
    pub script_error: Option<String>,
}

impl FileReport {
    /// Number of skipped evals.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Results of a run over one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per-file results, in run order.
    pub files: Vec<FileReport>,
}

impl Report {
    /// Evals passed in all files.
    pub fn passed(&self) -> usize {
        self.files.iter().map(|f| f.passed).sum()
    }

    /// Evals failed (and script errors) in all files.
    pub fn failed(&self) -> usize {
        self.files.iter().map(|f| f.failed).sum()
    }

    /// Skipped evals per kind over all files.
    pub fn skipped(&self) -> BTreeMap<SkipKind, usize> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            for (k, n) in &f.skipped {
                *out.entry(*k).or_insert(0) += n;
            }
        }
        out
    }

    /// Number of message mismatches over all files.
    pub fn message_mismatches(&self) -> usize {
        self.files.iter().map(|f| f.message_mismatches.len()).sum()
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for Report {
    /// The report as `strata promqltest` prints it: failures, message mismatches, per-file
    /// counts, skips by kind, and last the line `N passed, M failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            for x in &file.failures {
                writeln!(f, "{}:{}: {}", file.file, x.line, x.eval)?;
                writeln!(f, "  {}", x.message)?;
                if !x.expected.is_empty() {
                    writeln!(f, "  expected:")?;
                    writeln!(f, "{}", indent(&x.expected, "    "))?;
                }
                if let Some(e) = &x.error {
                    writeln!(f, "  error: {e}")?;
                } else if !x.got.is_empty() {
                    writeln!(f, "  got:")?;
                    writeln!(f, "{}", indent(&x.got, "    "))?;
                }
            }
        }
        for file in &self.files {
            for m in &file.message_mismatches {
                writeln!(
                    f,
                    "{}:{}: message mismatch (counted as passed): {}",
                    file.file, m.line, m.eval
                )?;
                writeln!(f, "  expected error {}", m.expected)?;
                writeln!(f, "  got error: {}", m.got)?;
            }
        }
        for file in &self.files {
            write!(
                f,
                "{}: {} passed, {} failed, {} skipped",
                file.file,
                file.passed,
                file.failed,
                file.skipped_total()
            )?;
            if !file.message_mismatches.is_empty() {
                write!(f, ", {} message mismatches", file.message_mismatches.len())?;
            }
            if let Some(e) = &file.script_error {
                write!(f, " (script error: {e})")?;
            }
            writeln!(f)?;
        }
        let mm = self.message_mismatches();
        if mm > 0 {
            writeln!(
                f,
                "{mm} expected failures failed with a different message (counted as passed)"
            )?;
        }
        let skipped = self.skipped();
        let total: usize = skipped.values().sum();
        let kinds: Vec<String> = skipped.iter().map(|(k, n)| format!("{k} {n}")).collect();
        if kinds.is_empty() {
            writeln!(f, "skipped 0")?;
        } else {
            writeln!(f, "skipped {total}: {}", kinds.join(", "))?;
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Loaded samples, and the engine head built from them.
///
/// The store is the source of truth (`clear` empties it, `load` adds to it); the head is
/// rebuilt from it only when an eval needs it after the data changed.
#[derive(Default)]
pub struct Store {
    series: BTreeMap<Labels, BTreeMap<i64, f64>>,
    features: LoadedFeatures,
    querier: Option<Querier>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// Drops all data.
    pub fn clear(&mut self) {
        self.series.clear();
        self.features = LoadedFeatures::default();
        self.querier = None;
    }

    /// What the loaded data contains (for skip detection).
    pub fn features(&self) -> &LoadedFeatures {
        &self.features
    }

    /// Number of stored series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The stored float samples of a series, ascending by time.
    pub fn samples(&self, labels: &Labels) -> Vec<(i64, f64)> {
        self.series
            .get(labels)
            .map(|m| m.iter().map(|(&t, &v)| (t, v)).collect())
            .unwrap_or_default()
    }

    /// Adds a `load` block. A later line for the same series in the same block replaces the
    /// earlier one. Histogram samples only occupy their slots (the engine stores floats).
    pub fn load(&mut self, load: &Load) -> Result<(), String> {
        let mut block: BTreeMap<&Labels, BTreeMap<i64, f64>> = BTreeMap::new();
        for s in &load.series {
            let mut samples = BTreeMap::new();
            for (i, v) in s.values.iter().enumerate() {
                let t = i64::try_from(i)
                    .ok()
                    .and_then(|i| i.checked_mul(load.interval_ms))
                    .ok_or_else(|| format!("line {}: timestamp out of range", s.line))?;
                if let SeqValue::Float(f) = v {
                    samples.insert(t, *f);
                }
            }
            if s.labels.get("__type__").is_some() || s.labels.get("__unit__").is_some() {
                self.features.type_and_unit = true;
            }
            if s.values.iter().any(|v| matches!(v, SeqValue::Histogram(_))) {
                self.features.histogram_series.insert(s.labels.clone());
            }
            if load.with_nhcb
                && let Some(h) = nhcb_labels(&s.labels)
            {
                self.features.histogram_series.insert(h);
            }
            block.insert(&s.labels, samples);
        }
        for (labels, samples) in block {
            self.series
                .entry(labels.clone())
                .or_default()
                .extend(samples);
        }
        if load.has_start_timestamps {
            self.features.start_timestamps = true;
        }
        self.querier = None;
        Ok(())
    }

    /// A querier over the loaded data, building a fresh head if the data changed.
    pub fn querier(&mut self) -> Result<&Querier, String> {
        if self.querier.is_none() {
            self.querier = Some(self.build()?);
        }
        self.querier
            .as_ref()
            .ok_or_else(|| "no querier".to_string())
    }

    fn build(&self) -> Result<Querier, String> {
        // Samples arrive in time order per series; nothing may be rejected.
        let head = Arc::new(Head::new(HeadOptions {
            ooo_window_ms: i64::MAX / 4,
            ..HeadOptions::default()
        }));
        let mut accepted = Vec::new();
        for (labels, samples) in &self.series {
            if samples.is_empty() {
                continue;
            }
            let (r, _) = head.get_or_create(labels);
            let batch: Vec<(i64, f64)> = samples.iter().map(|(&t, &v)| (t, v)).collect();
            accepted.clear();
            let out = head
                .append(r, &batch, &mut accepted)
                .map_err(|e| format!("storing {labels}: {e}"))?;
            if let Some(e) = out.first_error {
                return Err(format!("storing {labels}: {e}"));
            }
        }
        Ok(Querier::new(head, Vec::new()))
    }
}

/// The labels of the native histogram `load_with_nhcb` builds from a classic bucket series
/// (`X_bucket{le=...}` → `X{...}` without `le`), or `None` for other series.
fn nhcb_labels(l: &Labels) -> Option<Labels> {
    let base = l.get("__name__")?.strip_suffix("_bucket")?;
    l.get("le")?;
    let kept: Vec<strata_engine::Label> = l
        .iter()
        .filter(|x| x.name != "le")
        .map(|x| {
            if x.name == "__name__" {
                strata_engine::Label::new("__name__", base)
            } else {
                x.clone()
            }
        })
        .collect();
    Labels::new(kept).ok()
}

/// Runs one file.
pub fn run_file(path: &Path, opts: &RunOptions) -> FileReport {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&name, &text, opts),
        Err(e) => FileReport {
            file: name,
            failed: 1,
            failures: vec![EvalFailure {
                line: 0,
                eval: "reading the file".to_string(),
                message: e.to_string(),
                expected: String::new(),
                got: String::new(),
                error: None,
            }],
            script_error: Some(format!("cannot read: {e}")),
            ..FileReport::default()
        },
    }
}

/// Runs several files.
pub fn run_files<P: AsRef<Path>>(paths: &[P], opts: &RunOptions) -> Report {
    Report {
        files: paths.iter().map(|p| run_file(p.as_ref(), opts)).collect(),
    }
}

/// Runs a script given as text; `name` is used in the report.
pub fn run_script(name: &str, text: &str, opts: &RunOptions) -> FileReport {
    let mut report = FileReport {
        file: name.to_string(),
        ..FileReport::default()
    };
    let script = match script::parse_script(text) {
        Ok(s) => s,
        Err(e) => {
            report.failed = 1;
            report.failures.push(EvalFailure {
                line: e.line,
                eval: "script error".to_string(),
                message: e.message.clone(),
                expected: String::new(),
                got: String::new(),
                error: None,
            });
            report.script_error = Some(e.to_string());
            return report;
        }
    };
    let mut store = Store::new();
    for cmd in &script.commands {
        match cmd {
            Command::Clear { .. } => store.clear(),
            Command::Load(load) => {
                if let Err(e) = store.load(load) {
                    report.failed += 1;
                    report.failures.push(EvalFailure {
                        line: load.line,
                        eval: format!("load {}ms", load.interval_ms),
                        message: e,
                        expected: String::new(),
                        got: String::new(),
                        error: None,
                    });
                }
            }
            Command::Eval(ev) => match run_eval(&mut store, ev, opts) {
                Outcome::Passed => report.passed += 1,
                Outcome::MessageMismatch(m) => {
                    report.passed += 1;
                    report.message_mismatches.push(m);
                }
                Outcome::Failed(f) => {
                    report.failed += 1;
                    report.failures.push(*f);
                }
                Outcome::Skipped(k) => *report.skipped.entry(k).or_insert(0) += 1,
            },
        }
    }
    report
}

/// Outcome of one eval.
enum Outcome {
    Passed,
    MessageMismatch(MessageMismatch),
    Failed(Box<EvalFailure>),
    Skipped(SkipKind),
}

/// The skip kind (first in skip-list order, among those in force) that applies to an eval.
pub fn skip_kind(ev: &Eval, loaded: &LoadedFeatures, opts: &RunOptions) -> Option<SkipKind> {
    let expectation_labels = match &ev.expected {
        Expected::Series(s) => s
            .iter()
            .flat_map(|l| l.labels.iter().map(|x| x.name.clone()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    skip::detect(&ev.expr, &expectation_labels, ev.expects_histograms, loaded)
        .into_iter()
        .find(|k| opts.skip.contains(k))
}

fn run_eval(store: &mut Store, ev: &Eval, opts: &RunOptions) -> Outcome {
    if let Some(k) = skip_kind(ev, store.features(), opts) {
        return Outcome::Skipped(k);
    }
    let failure = |message: String, expected: String, got: String, error: Option<String>| {
        Outcome::Failed(Box::new(EvalFailure {
            line: ev.line,
            eval: ev.text.clone(),
            message,
            expected,
            got,
            error,
        }))
    };
    let q = match store.querier() {
        Ok(q) => q,
        Err(e) => {
            return failure(
                "the loaded data could not be stored".to_string(),
                String::new(),
                String::new(),
                Some(e),
            );
        }
    };
    let eo = eval_options();
    let result = match ev.mode {
        EvalMode::Instant { at_ms } => {
            let t = ev.range_vector.map_or(at_ms, |r| r.end_ms);
            guarded(|| crate::instant_query(q, &ev.expr, t, &eo))
        }
        EvalMode::Range {
            start_ms,
            end_ms,
            step_ms,
        } => guarded(|| crate::range_query(q, &ev.expr, start_ms, end_ms, step_ms, &eo)),
    };
    let outcome = judge(ev, &result, true);
    let outcome = match outcome {
        Ok(None) => Outcome::Passed,
        Ok(Some(m)) => Outcome::MessageMismatch(m),
        Err(m) => {
            return failure(
                m.message,
                m.expected,
                m.got,
                result.err().map(|e| e.message),
            );
        }
    };
    if opts.strict
        && let EvalMode::Instant { at_ms } = ev.mode
        && let Err((m, error)) = strict_checks(q, ev, at_ms, &result)
    {
        return failure(m.message, m.expected, m.got, error);
    }
    outcome
}

/// Why a query produced no value.
#[derive(Debug, Clone)]
struct EvalError {
    /// The error text (the query's error, or what went wrong around it).
    message: String,
    /// A panic or a timeout: never an acceptable outcome, even for an expected failure.
    hard: bool,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs the evaluator, turning a panic into an error so one bad eval cannot stop a run.
fn guarded(
    f: impl FnOnce() -> Result<QueryOutput, crate::QueryError>,
) -> Result<QueryOutput, EvalError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| EvalError {
            hard: matches!(e, crate::QueryError::Timeout),
            message: e.to_string(),
        }),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(EvalError {
                message: format!("the evaluator panicked: {msg}"),
                hard: true,
            })
        }
    }
}

/// Judges a query outcome: `Ok(None)` passed, `Ok(Some(_))` passed with a different failure
/// message, `Err(_)` failed.
fn judge(
    ev: &Eval,
    result: &Result<QueryOutput, EvalError>,
    check_order: bool,
) -> Result<Option<MessageMismatch>, Mismatch> {
    if let Some(pattern) = &ev.fail {
        return match result {
            Ok(out) => Err(Mismatch {
                message: "expected the query to fail, but it succeeded".to_string(),
                expected: format!("an error ({pattern})"),
                got: render_value(&out.value),
            }),
            Err(e) if e.hard => Err(Mismatch {
                message: "expected the query to fail, but the evaluation broke off".to_string(),
                expected: format!("an error ({pattern})"),
                got: String::new(),
            }),
            Err(e) if pattern.matches(e.message.trim()) => Ok(None),
            Err(e) => Ok(Some(MessageMismatch {
                line: ev.line,
                eval: ev.text.clone(),
                expected: match pattern {
                    TextMatch::Exact(m) => format!("{m:?}"),
                    other => other.to_string(),
                },
                got: e.message.clone(),
            })),
        };
    }
    let out = match result {
        Ok(out) => out,
        Err(_) => {
            return Err(Mismatch {
                message: "the query failed".to_string(),
                expected: render_expected(&ev.expected),
                got: String::new(),
            });
        }
    };
    compare_result(ev, &out.value, check_order)?;
    compare_annotations("warn", &ev.warn, &out.warnings)?;
    compare_annotations("info", &ev.info, &out.infos)?;
    Ok(None)
}

/// Functions whose value depends on the evaluation time even with `@` pinned selectors.
const AT_UNSAFE_FUNCTIONS: [&str; 15] = [
    "time",
    "timestamp",
    "predict_linear",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
    "start",
    "end",
    "range",
    "step",
];

fn calls_any(expr: &Expr, names: &[&str]) -> bool {
    match expr {
        Expr::Call(c) => {
            names.contains(&c.func.name) || c.args.args.iter().any(|a| calls_any(a, names))
        }
        Expr::Aggregate(a) => {
            calls_any(&a.expr, names) || a.param.as_deref().is_some_and(|p| calls_any(p, names))
        }
        Expr::Unary(u) => calls_any(&u.expr, names),
        Expr::Binary(b) => calls_any(&b.lhs, names) || calls_any(&b.rhs, names),
        Expr::Paren(p) => calls_any(&p.expr, names),
        Expr::Subquery(s) => calls_any(&s.expr, names),
        Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => false,
    }
}

/// Pins every selector and subquery without `@` (outside subqueries that have one) to `t`.
fn pin_at(expr: &mut Expr, at: &AtModifier) {
    match expr {
        Expr::VectorSelector(vs) => {
            if vs.at.is_none() {
                vs.at = Some(at.clone());
            }
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_none() {
                ms.vs.at = Some(at.clone());
            }
        }
        Expr::Subquery(s) => {
            if s.at.is_none() {
                s.at = Some(at.clone());
            }
        }
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| pin_at(a, at)),
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, at);
            if let Some(p) = a.param.as_deref_mut() {
                pin_at(p, at);
            }
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at);
            pin_at(&mut b.rhs, at);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

type StrictFailure = (Mismatch, Option<String>);

/// FORMAT.md §5.7: the `@`-pinned step-invariance check and the range-mode consistency check.
fn strict_checks(
    q: &Querier,
    ev: &Eval,
    at_ms: i64,
    original: &Result<QueryOutput, EvalError>,
) -> Result<(), StrictFailure> {
    let Ok(parsed) = crate::parse(&ev.expr) else {
        // The query does not parse: the main check already judged that.
        return Ok(());
    };
    let eo = eval_options();
    let fail_with = |what: String, m: Mismatch, error: Option<String>| {
        Err((
            Mismatch {
                message: format!("{what}: {}", m.message),
                ..m
            },
            error,
        ))
    };
    if ev.range_vector.is_none() && !calls_any(&parsed, &AT_UNSAFE_FUNCTIONS) && at_ms >= 0 {
        let mut pinned = parsed.clone();
        pin_at(
            &mut pinned,
            &AtModifier::At(UNIX_EPOCH + Duration::from_millis(at_ms.unsigned_abs())),
        );
        let text = pinned.to_string();
        let times = if at_ms == 0 {
            vec![-1000, 0, 1000]
        } else {
            vec![-10 * at_ms, 0, at_ms / 5, at_ms, 10 * at_ms]
        };
        for t in times {
            let r = guarded(|| crate::instant_query(q, &text, t, &eo));
            if let Err(m) = judge(ev, &r, true) {
                return fail_with(
                    format!("step invariance: `{text}` evaluated at {}ms", t),
                    m,
                    r.err().map(|e| e.message),
                );
            }
        }
    }
    let string_result = matches!(ev.expected, Expected::String(_))
        || matches!(original, Ok(o) if matches!(o.value, Value::String(..)));
    let uses_range_fns = calls_any(&parsed, &["start", "end", "range", "step"]);
    if ev.fail.is_some()
        || ev.ordered
        || ev.range_vector.is_some()
        || string_result
        || uses_range_fns
    {
        return Ok(());
    }
    let r =
        guarded(|| crate::range_query(q, &ev.expr, at_ms - 60_000, at_ms + 60_000, 60_000, &eo));
    let out = match r {
        Ok(o) => o,
        Err(e) => {
            return Err((
                Mismatch {
                    message: "range-mode consistency: the range query failed".to_string(),
                    expected: render_expected(&ev.expected),
                    got: String::new(),
                },
                Some(e.message),
            ));
        }
    };
    let Value::Matrix(m) = &out.value else {
        return fail_with(
            "range-mode consistency".to_string(),
            Mismatch {
                message: "the range query did not return a matrix".to_string(),
                expected: render_expected(&ev.expected),
                got: render_value(&out.value),
            },
            None,
        );
    };
    let samples: Vec<crate::Sample> = m
        .iter()
        .filter_map(|s| {
            s.points
                .iter()
                .find(|p| p.0 == at_ms)
                .map(|&(t, v)| crate::Sample {
                    labels: s.labels.clone(),
                    t,
                    v,
                })
        })
        .collect();
    let value = match (&ev.expected, samples.first()) {
        (Expected::Scalar(_), Some(s)) => Value::Scalar(s.t, s.v),
        _ => Value::Vector(samples),
    };
    if let Err(m) = compare_result(ev, &value, false) {
        return fail_with(
            format!(
                "range-mode consistency (range query from {}ms to {}ms step 1m, point at {}ms)",
                at_ms - 60_000,
                at_ms + 60_000,
                at_ms
            ),
            m,
            None,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
