//! Trace queries: the span tree of a trace, search (TraceQL subset and Tempo's tag search),
//! and the service dependency graph.
//!
//! The engine returns spans; this module gives them shape. It knows nothing of HTTP: the
//! server turns the structures here into Tempo's and Strata's JSON.

pub mod search;
pub mod servicemap;
pub mod traceql;
pub mod tree;

pub use search::{SearchRequest, SearchResult, TraceSummary, search};
pub use servicemap::{ServiceMap, Stats};
pub use traceql::{ParseError, Query, parse};
pub use tree::{SpanNode, TraceTree, build_tree};
