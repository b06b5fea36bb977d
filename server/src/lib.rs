//! The Strata server: configuration, HTTP APIs and the glue between them and the engine.
//!
//! The binary (`src/main.rs`) parses the command line, opens the engine and runs [`app`]'s
//! router. Modules:
//!
//! - [`config`]: the TOML configuration and its validation.
//! - [`app`]: shared state, the router, request accounting, operational endpoints.
//! - [`api`]: the Prometheus response envelope, errors → status codes, parameters, times.
//! - [`prom_api`]: the Prometheus HTTP query API (`/api/v1/query`, `series`, `labels`, …).
//! - [`remote`]: Prometheus remote write (1.0 and 2.0) and remote read.
//! - [`otlp`]: OTLP ingest over HTTP and gRPC.
//! - [`loki`]: the Loki push and query API over the log store.
//! - [`limits`]: per-tenant ingestion limits.
//! - [`tempo`]: the Tempo trace API and Strata's trace tree view.
//! - [`spanmetrics`]: span metrics and service-graph metrics written as Prometheus series.
//! - [`selfmetrics`]: Strata's own metrics on `/metrics`.
//! - [`audit`]: the audit log of series deletions.

pub mod api;
pub mod app;
pub mod audit;
pub mod config;
pub mod import;
pub mod limits;
pub mod loki;
pub mod otlp;
pub mod prom_api;
pub mod remote;
pub mod selfmetrics;
pub mod spanmetrics;
pub mod tempo;
