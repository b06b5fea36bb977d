//! OTLP ingest: the OpenTelemetry protocol over HTTP (`/v1/traces`, `/v1/metrics`) and gRPC
//! (`TraceService/Export`, `MetricsService/Export`).
//!
//! Every OpenTelemetry SDK and Collector exports with OTLP, so this is how spans reach Strata.
//! The HTTP routes are served on the main port and on the OTLP HTTP listener (default
//! `0.0.0.0:4318`, [`http_router`]); the gRPC services on the OTLP gRPC listener (default
//! `0.0.0.0:4317`, [`grpc_routes`]). Both listeners are built so that another signal is one
//! line: a route in [`http_routes`] and a service in [`grpc_routes`].
//!
//! # Protocol (OTLP specification 1.x)
//!
//! - Bodies are `application/x-protobuf` or `application/json` (OTLP JSON: hex ids, enums as
//!   integers, 64-bit integers as strings); the response uses the request's encoding.
//!   `Content-Encoding: gzip` is accepted on HTTP and gRPC.
//! - 200 with an empty response: everything stored. 200 with `partialSuccess`
//!   (`rejectedSpans`, `errorMessage`): the rest is stored; the client must not retry.
//! - 400 (undecodable body; not retried, body is a `google.rpc.Status`), 413 (too large), 415
//!   (unsupported content type or encoding); 503 when the WAL failed (retryable).
//! - gRPC: `INVALID_ARGUMENT` (not retryable), `UNAVAILABLE` (retryable),
//!   `RESOURCE_EXHAUSTED` past the 4 MiB message limit.
//! - Tenant: `X-Scope-OrgID` header or gRPC metadata, default `anonymous`.
//!
//! # Durability
//!
//! A response is sent only after the accepted spans are in the tenant's trace WAL (fsynced in
//! the default sync mode): acknowledged means durable.
//!
//! Submodules: [`body`] (content type, gzip, error bodies), [`traces`] (span conversion and
//! validation, handlers), [`logs`] (log records → log streams, `/v1/logs` and `LogsService`).
//!
//! [`metrics`] turns OTLP metrics into Prometheus series in the metrics engine.

pub mod body;
pub mod logs;
pub mod metrics;
pub mod traces;

use axum::Router;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use tonic::codec::CompressionEncoding;

use crate::app::AppState;

/// Largest decoded gRPC message (the OTLP default of 4 MiB, as the spec recommends).
pub const GRPC_MAX_MESSAGE: usize = 4 << 20;

/// The OTLP HTTP routes (served on the main port and on the OTLP HTTP listener).
pub fn http_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(traces::handle_http))
        .route("/v1/metrics", post(metrics::handle_http))
        .route("/v1/logs", post(logs::handle_http))
}

/// The router of the dedicated OTLP HTTP listener (default `0.0.0.0:4318`).
pub fn http_router(state: AppState) -> Router {
    let limit = state.options.max_request_body;
    http_routes()
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The gRPC services of the OTLP gRPC listener (default `0.0.0.0:4317`).
pub fn grpc_routes(state: &AppState) -> tonic::service::Routes {
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(
        TraceServiceServer::new(traces::GrpcTraces {
            state: state.clone(),
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(GRPC_MAX_MESSAGE),
    );
    routes.add_service(
        LogsServiceServer::new(logs::GrpcLogs {
            state: state.clone(),
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(GRPC_MAX_MESSAGE),
    );
    routes.add_service(
        MetricsServiceServer::new(metrics::GrpcMetrics {
            state: state.clone(),
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(GRPC_MAX_MESSAGE),
    );
    routes.routes()
}

/// The tenant of a gRPC request: `x-scope-orgid` metadata or `anonymous`.
pub fn grpc_tenant(meta: &tonic::metadata::MetadataMap) -> Result<String, tonic::Status> {
    let mut headers = axum::http::HeaderMap::new();
    if let Some(v) = meta.get("x-scope-orgid") {
        let v = axum::http::HeaderValue::from_bytes(v.as_bytes()).map_err(|_| {
            tonic::Status::invalid_argument("x-scope-orgid: tenant ID is not valid ASCII")
        })?;
        headers.insert(crate::api::TENANT_HEADER, v);
    }
    crate::api::tenant(&headers).map_err(|e| tonic::Status::invalid_argument(e.message))
}
