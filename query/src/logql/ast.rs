//! The LogQL syntax tree produced by the parser.

use regex::Regex;
use strata_engine::Matcher;

/// A parsed LogQL query.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A log query: stream selector plus pipeline.
    Log(LogExpr),
    /// A metric query.
    Metric(MetricExpr),
}

/// Stream selector and pipeline.
#[derive(Clone, Debug)]
pub struct LogExpr {
    /// Stream matchers.
    pub matchers: Vec<Matcher>,
    /// Pipeline stages, in order.
    pub stages: Vec<Stage>,
}

/// Line filter operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    /// `|=`: contains.
    Contains,
    /// `!=`: does not contain.
    NotContains,
    /// `|~`: matches the regex.
    Match,
    /// `!~`: does not match the regex.
    NotMatch,
}

/// Numeric comparison operators of label filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==` or `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
}

impl CmpOp {
    /// Applies the comparison.
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// How a label value is read as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumKind {
    /// A plain number.
    Number,
    /// A duration (`250ms`, `1.5s`) compared in seconds.
    Duration,
    /// A byte size (`20MB`, `1KiB`) compared in bytes.
    Bytes,
}

/// A label filter predicate.
#[derive(Clone, Debug)]
pub enum LabelPred {
    /// Both hold.
    And(Box<LabelPred>, Box<LabelPred>),
    /// Either holds.
    Or(Box<LabelPred>, Box<LabelPred>),
    /// A string matcher (`=`, `!=`, `=~`, `!~`).
    Str(Matcher),
    /// A numeric comparison.
    Num {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side, in the unit of `kind` (seconds for durations).
        value: f64,
        /// How the label is read.
        kind: NumKind,
    },
}

/// One piece of a `line_format` / `label_format` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// `{{.name}}` (optionally piped through functions).
    Label(String, Vec<String>),
    /// `{{__line__}}`.
    Line(Vec<String>),
    /// `{{__timestamp__}}`.
    Timestamp,
}

/// A pattern parser expression element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternPart {
    /// Literal text to find.
    Literal(String),
    /// A named capture (`<name>`); `None` for `<_>`.
    Capture(Option<String>),
}

/// How `unwrap` converts the label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwrapConv {
    /// A number.
    Number,
    /// `duration(...)` / `duration_seconds(...)`: seconds.
    Duration,
    /// `bytes(...)`: bytes.
    Bytes,
}

/// A pipeline stage.
#[derive(Clone, Debug)]
pub enum Stage {
    /// A line filter; several values are or-ed (`|= "a" or "b"`).
    LineFilter {
        /// Operator.
        op: FilterOp,
        /// Literals (or regex sources).
        values: Vec<String>,
        /// Compiled regexes for `|~` / `!~`.
        regexes: Vec<Regex>,
    },
    /// `| json` with optional extractions `name="path"`.
    Json(Vec<(String, Vec<JsonPathPart>)>),
    /// `| logfmt` with optional extractions `name="key"`.
    Logfmt(Vec<(String, String)>),
    /// `| regexp "<re with named groups>"`.
    Regexp(Regex),
    /// `| pattern "<pattern>"`.
    Pattern(Vec<PatternPart>),
    /// `| unpack`.
    Unpack,
    /// `| <label filter>`.
    LabelFilter(LabelPred),
    /// `| line_format "<template>"`.
    LineFormat(Vec<TemplatePart>),
    /// `| label_format dst=src, dst="<template>"`.
    LabelFormat(Vec<(String, LabelFmt)>),
    /// `| drop name, name="value"`.
    Drop(Vec<(String, Option<Matcher>)>),
    /// `| keep name, name="value"`.
    Keep(Vec<(String, Option<Matcher>)>),
    /// `| decolorize`.
    Decolorize,
    /// `| unwrap [conv(]name[)]` (metric queries only).
    Unwrap(String, UnwrapConv),
}

/// One step of a JSON extraction path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonPathPart {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// The right-hand side of a `label_format` assignment.
#[derive(Clone, Debug)]
pub enum LabelFmt {
    /// Rename: `dst=src`.
    Rename(String),
    /// Template: `dst="{{.a}}-{{.b}}"`.
    Template(Vec<TemplatePart>),
}

/// Range aggregation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    /// `count_over_time`.
    Count,
    /// `rate`.
    Rate,
    /// `bytes_over_time`.
    Bytes,
    /// `bytes_rate`.
    BytesRate,
    /// `sum_over_time` (unwrap).
    Sum,
    /// `avg_over_time` (unwrap).
    Avg,
    /// `min_over_time` (unwrap).
    Min,
    /// `max_over_time` (unwrap).
    Max,
    /// `stdvar_over_time` (unwrap).
    Stdvar,
    /// `stddev_over_time` (unwrap).
    Stddev,
    /// `quantile_over_time` (unwrap).
    Quantile,
    /// `first_over_time` (unwrap).
    First,
    /// `last_over_time` (unwrap).
    Last,
    /// `absent_over_time`.
    Absent,
}

impl RangeFn {
    /// By name.
    pub fn from_name(s: &str) -> Option<RangeFn> {
        Some(match s {
            "count_over_time" => RangeFn::Count,
            "rate" => RangeFn::Rate,
            "bytes_over_time" => RangeFn::Bytes,
            "bytes_rate" => RangeFn::BytesRate,
            "sum_over_time" => RangeFn::Sum,
            "avg_over_time" => RangeFn::Avg,
            "min_over_time" => RangeFn::Min,
            "max_over_time" => RangeFn::Max,
            "stdvar_over_time" => RangeFn::Stdvar,
            "stddev_over_time" => RangeFn::Stddev,
            "quantile_over_time" => RangeFn::Quantile,
            "first_over_time" => RangeFn::First,
            "last_over_time" => RangeFn::Last,
            "absent_over_time" => RangeFn::Absent,
            _ => return None,
        })
    }

    /// True if the function needs an `unwrap` stage.
    pub fn needs_unwrap(self) -> bool {
        !matches!(
            self,
            RangeFn::Count | RangeFn::Rate | RangeFn::Bytes | RangeFn::BytesRate | RangeFn::Absent
        )
    }
}

/// Vector aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `topk`.
    Topk,
    /// `bottomk`.
    Bottomk,
}

impl AggOp {
    /// By name.
    pub fn from_name(s: &str) -> Option<AggOp> {
        Some(match s {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            _ => return None,
        })
    }
}

/// `by (...)` / `without (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    /// True for `without`.
    pub without: bool,
    /// Label names.
    pub labels: Vec<String>,
}

/// Binary operators between metric expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^`.
    Pow,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
}

/// A metric expression.
#[derive(Clone, Debug)]
pub enum MetricExpr {
    /// A range aggregation over log lines.
    Range {
        /// The function.
        func: RangeFn,
        /// Its parameter (quantile).
        param: Option<f64>,
        /// Selector and pipeline (an `Unwrap` stage included when present).
        log: LogExpr,
        /// Range (ns).
        range_ns: i64,
        /// `offset` (ns).
        offset_ns: i64,
        /// Grouping of unwrapped range aggregations.
        grouping: Option<Grouping>,
    },
    /// A vector aggregation.
    Agg {
        /// Operator.
        op: AggOp,
        /// `k` of topk/bottomk.
        param: Option<f64>,
        /// Grouping.
        grouping: Option<Grouping>,
        /// Operand.
        inner: Box<MetricExpr>,
    },
    /// Arithmetic or comparison.
    Binary {
        /// Operator.
        op: BinOp,
        /// `bool` modifier of comparisons.
        return_bool: bool,
        /// Left operand.
        lhs: Box<MetricExpr>,
        /// Right operand.
        rhs: Box<MetricExpr>,
    },
    /// A number literal.
    Number(f64),
    /// `vector(n)`.
    Vector(f64),
}
