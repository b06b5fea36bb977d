//! Strata's storage engine.
//!
//! The engine stores the metrics of every tenant: an in-memory **head** (series registry,
//! postings, open Gorilla chunks) backed by a write-ahead log, and immutable **blocks** on disk
//! cut from the head's oldest time range. Queries go through the [`querier`] module, which
//! merges head, out-of-order chunks and blocks into one sorted series set.
//!
//! The engine knows nothing of HTTP or PromQL; the server and query crates sit on top of it.
//!
//! Layout on disk: `<data>/tenants/<tenant>/metrics/{wal/, <block-id>/}`.

pub mod block;
pub mod chunk;
pub mod db;
pub mod downsample;
pub mod error;
pub mod exemplars;
pub mod head;
pub mod labels;
pub mod logs;
pub mod querier;
pub mod record;
pub mod retention;
pub mod traces;

pub use db::{
    AppendReport, AppendSeries, DEFAULT_TENANT, DeleteReport, Engine, EngineOptions, IngestSeries,
    ResolutionRetention, TenantDb, TenantOpenReport,
};
pub use error::{Error, Result};
pub use exemplars::{Exemplar, MetricMetadata};
pub use head::{Cardinality, Head, HeadOptions, SampleError, SeriesRef};
pub use labels::{Label, LabelInput, Labels, MatchOp, Matcher};
pub use querier::{Querier, SelectHints, Series, SeriesIter};
