//! Prometheus remote write (1.0 and 2.0) and remote read.
//!
//! Remote write is Strata's main ingest path, so it is built for two things at once: speed and
//! errors an operator can act on.
//!
//! - **Speed.** The snappy body is decompressed once and walked by `strata-proto`'s zero-copy
//!   decoder; every label of the request lands as a borrowed `(&str, &str)` pair in one flat
//!   vector ([`decode`]), and the engine copies labels only when it creates a series. The
//!   CPU-heavy part (decompress, decode, validate, ingest and the WAL fsync wait) runs on the
//!   blocking pool so that it never stalls the async runtime.
//! - **Errors.** A remote-write client does not retry a 4xx (except 429) and logs the response
//!   body, so the body is plain text that names each problem and the series it came from, and the
//!   status follows the spec: 204 stored; 400 bad data (after storing the good part); 413 too
//!   large; 415 unsupported `Content-Type`/`Content-Encoding`; 429 over the ingestion rate
//!   (nothing stored, retry later); 503 when the WAL failed (retryable). Error bodies are
//!   `text/plain`, as Prometheus and Mimir answer remote write and read, rather than the JSON
//!   envelope of the query API; the status comes from [`crate::api::ApiError`], where all
//!   status mapping lives.
//!
//! # Atomicity
//!
//! A body that does not decode (bad snappy, malformed protobuf, invalid UTF-8, bad symbol
//! reference) is refused whole: it is decoded completely into the flat buffers before anything
//! is ingested. Series that decode but are invalid (unsorted or duplicate label names, missing
//! or empty metric name, label limits) and samples that are refused (too far in the future, out
//! of order, too old, series limit, native histograms) are dropped and reported with 400, and
//! the rest of the request is stored: a partial write, as the 1.0 spec allows and Prometheus and
//! Mimir do. Because a retried request is answered the same way (identical duplicates are
//! idempotent), a client that retries anyway does no harm.
//!
//! Submodules: [`decode`] (request → validated flat batch), [`write`] (the write handler and its
//! response), [`read`] (remote read).

pub mod decode;
pub mod read;
pub mod write;

use axum::Router;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use strata_proto::snappy::SnappyError;

use crate::api::{ApiError, ErrorKind};
use crate::app::AppState;

/// Routes of remote write and read. `/api/v1/push` is accepted as an alias of
/// `/api/v1/write`, as Mimir and Cortex serve it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(write::handle_write))
        .route("/api/v1/push", post(write::handle_write))
        .route("/api/v1/read", post(read::handle_read))
}

/// Renders an error as remote write/read clients expect it: the status from
/// [`ApiError::status`] and the message as a `text/plain` body.
pub(crate) fn text_error(e: &ApiError) -> Response {
    let status = e.status();
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %e.message, "remote request failed");
    } else {
        tracing::debug!(status = status.as_u16(), error = %e.message, "remote request refused");
    }
    let mut body = e.message.clone();
    body.push('\n');
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Maps a body-extraction failure: over `max_request_body` → 413, anything else → 400.
pub(crate) fn body_error(e: &BytesRejection, limit: usize) -> ApiError {
    match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "request body is larger than the limit of {limit} bytes (server option \
                     max_request_body); send smaller batches (Prometheus: lower \
                     queue_config.max_samples_per_send)"
                ),
            )
        }
        other => ApiError::bad_data(format!("reading request body: {other}")),
    }
}

/// Maps a snappy failure: decoded size over `max_decoded_body` → 413, corrupt → 400.
pub(crate) fn snappy_error(e: &SnappyError) -> ApiError {
    match e {
        SnappyError::TooLarge { decoded_len, limit } => ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "decompressed body would be {decoded_len} bytes, more than the limit of {limit} \
                 bytes (server option max_decoded_body); send smaller batches"
            ),
        ),
        other => ApiError::bad_data(format!(
            "decompressing body: {other} (the body must be snappy block format, not framed)"
        )),
    }
}
