//! LogQL: Loki's query language over Strata's log store.
//!
//! - [`parser`] turns a query string into the [`ast`], with errors that give line and column.
//! - [`pipeline`] runs the stages of a log pipeline over one entry (line filters, `json`,
//!   `logfmt`, `regexp`, `pattern`, `unpack`, label filters with number/duration/byte
//!   comparisons, `line_format`, `label_format`, `drop`, `keep`, `decolorize`, `unwrap`).
//! - [`eval`] evaluates log queries (streams, `direction`, `limit`) and metric queries (range
//!   aggregations, vector aggregations `by`/`without`, `topk`/`bottomk`, binary operators,
//!   `vector()`) over a tenant's [`strata_engine::logs::LogStore`].
//!
//! The query layer knows nothing of HTTP; the server renders results in Loki's JSON shapes.

pub mod ast;
pub mod eval;
pub mod parser;
pub mod pipeline;

pub use ast::{Expr, LogExpr, MetricExpr};
pub use eval::{
    Direction, EvalLimits, EvalStats, Grid, SeriesResult, StreamResult, eval_logs, eval_metric,
    is_scalar,
};
pub use parser::parse;
pub use pipeline::LabelMap;

/// Errors of LogQL parsing and evaluation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LogqlError {
    /// The query does not parse.
    #[error("parse error at line {line}, col {col}: {msg}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column (bytes).
        col: usize,
        /// What was expected.
        msg: String,
    },
    /// Parameters are inconsistent.
    #[error("{0}")]
    BadParameters(String),
    /// The query cannot be executed (limits, type errors).
    #[error("{0}")]
    Execution(String),
    /// Reading the store failed.
    #[error("storage: {0}")]
    Storage(String),
}
