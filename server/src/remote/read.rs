//! `POST /api/v1/read`: Prometheus remote read.
//!
//! The body is a snappy-compressed `prometheus.ReadRequest`; each query's matchers and time
//! range select series of the request's tenant (`X-Scope-OrgID`). PromQL is evaluated by the
//! reader, not here. The response type is negotiated from `accepted_response_types`:
//!
//! - `SAMPLES`: one snappy-compressed `ReadResponse` (`Content-Type: application/x-protobuf`,
//!   `Content-Encoding: snappy`), one `QueryResult` per query.
//! - `STREAMED_XOR_CHUNKS`: CRC-32C framed `ChunkedReadResponse` messages
//!   (`Content-Type: application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse`, no
//!   `Content-Encoding`), series sorted by labels, samples in Prometheus XOR chunks of at most
//!   120 samples. As Prometheus does, a frame holds one series and a series spreads over
//!   several frames when its chunks exceed [`MAX_BYTES_IN_FRAME`].
//!
//! Both bodies are built in memory before they are sent (simple, and the sample limit below
//! bounds them); true streaming would only change memory use, not the bytes on the wire.
//! A request may load at most `query_max_samples` samples (all queries together); beyond that
//! it is answered 400 `exceeded sample limit (N)`, as Prometheus answers.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use strata_engine::{MatchOp, Matcher, SelectHints};
use strata_proto::prompb::{
    self, ChunkedReadResponse, QueryResult, ReadResponse, TimeSeries, label_matcher,
    read_request::ResponseType,
};
use strata_proto::remote_read::{
    CONTENT_TYPE_SAMPLES, CONTENT_TYPE_STREAMED_CHUNKS, chunked_series, decode_read_request,
    encode_read_response, negotiate_response_type, write_chunked_frame,
};
use strata_proto::snappy::{compress_snappy, decompress_snappy};
use strata_proto::xor_chunk::PROMETHEUS_SAMPLES_PER_CHUNK;

use super::{body_error, snappy_error, text_error};
use crate::api::{ApiError, tenant};
use crate::app::AppState;

/// Largest chunk payload per streamed frame before a series continues in the next frame
/// (Prometheus's default `remote_read_max_bytes_in_frame`: 1 MiB).
pub const MAX_BYTES_IN_FRAME: usize = 1 << 20;

/// The labels of one series in a response.
type OwnedLabels = Vec<prompb::Label>;

/// One selected series: labels and samples.
type SeriesData = (OwnedLabels, Vec<(i64, f64)>);

/// A built response body and its headers.
struct ReadBody {
    content_type: &'static str,
    snappy: bool,
    body: Vec<u8>,
}

/// The remote read handler.
pub async fn handle_read(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tenant = match tenant(&headers) {
        Ok(t) => t,
        Err(e) => return text_error(&e),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return text_error(&body_error(&e, state.options.max_request_body)),
    };
    let span = tracing::debug_span!("remote_read", tenant = %tenant);
    let task = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        read_request(&state, &tenant, &body)
    });
    match task.await {
        Ok(Ok(r)) => {
            let mut resp = r.body.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(r.content_type),
            );
            if r.snappy {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
            }
            resp
        }
        Ok(Err(e)) => text_error(&e),
        Err(e) => text_error(&ApiError::internal(format!("remote read task failed: {e}"))),
    }
}

fn read_request(state: &AppState, tenant: &str, body: &[u8]) -> Result<ReadBody, ApiError> {
    let raw =
        decompress_snappy(body, state.options.max_decoded_body).map_err(|e| snappy_error(&e))?;
    let req = decode_read_request(&raw).map_err(|e| ApiError::bad_data(e.to_string()))?;
    let response_type =
        negotiate_response_type(&req).map_err(|e| ApiError::bad_data(e.to_string()))?;
    let querier = state.engine.querier(tenant)?;
    let mut budget = state.options.query_max_samples;
    let mut results: Vec<Vec<SeriesData>> = Vec::with_capacity(req.queries.len());
    for (qi, q) in req.queries.iter().enumerate() {
        let matchers = matchers(qi, &q.matchers)?;
        let hints = q
            .hints
            .as_ref()
            .map_or_else(SelectHints::default, |h| SelectHints {
                start_ms: h.start_ms,
                end_ms: h.end_ms,
                step_ms: h.step_ms,
                range_ms: h.range_ms,
                func: (!h.func.is_empty()).then(|| h.func.clone()),
                // Remote read returns samples, never aggregates.
                max_resolution_ms: Some(0),
            });
        let (mint, maxt) = (q.start_timestamp_ms, q.end_timestamp_ms);
        let mut out = Vec::new();
        for s in querier.select(&matchers, mint, maxt, &hints)? {
            let samples = s.samples(mint, maxt)?;
            if samples.is_empty() {
                continue;
            }
            budget = budget.checked_sub(samples.len()).ok_or_else(|| {
                ApiError::bad_data(format!(
                    "exceeded sample limit ({}): narrow the time range or the matchers",
                    state.options.query_max_samples
                ))
            })?;
            let labels = s
                .labels()
                .iter()
                .map(|l| prompb::Label {
                    name: l.name.clone(),
                    value: l.value.clone(),
                })
                .collect();
            out.push((labels, samples));
        }
        results.push(out);
    }
    match response_type {
        ResponseType::Samples => {
            let resp = ReadResponse {
                results: results
                    .into_iter()
                    .map(|series| QueryResult {
                        timeseries: series
                            .into_iter()
                            .map(|(labels, samples)| TimeSeries {
                                labels,
                                samples: samples
                                    .iter()
                                    .map(|&(timestamp, value)| prompb::Sample { value, timestamp })
                                    .collect(),
                                ..TimeSeries::default()
                            })
                            .collect(),
                    })
                    .collect(),
            };
            let body = compress_snappy(&encode_read_response(&resp))
                .map_err(|e| ApiError::internal(format!("compressing read response: {e}")))?;
            Ok(ReadBody {
                content_type: CONTENT_TYPE_SAMPLES,
                snappy: true,
                body,
            })
        }
        ResponseType::StreamedXorChunks => {
            let mut body = Vec::new();
            for (qi, series) in results.into_iter().enumerate() {
                for (labels, samples) in series {
                    stream_series(&mut body, qi as i64, labels, &samples)?;
                }
            }
            Ok(ReadBody {
                content_type: CONTENT_TYPE_STREAMED_CHUNKS,
                snappy: false,
                body,
            })
        }
    }
}

/// Writes one series as one or more frames: chunks are added to a frame until their payload
/// reaches [`MAX_BYTES_IN_FRAME`] (minus the labels), then the series continues in a new frame.
fn stream_series(
    out: &mut Vec<u8>,
    query_index: i64,
    labels: OwnedLabels,
    samples: &[(i64, f64)],
) -> Result<(), ApiError> {
    let series = chunked_series(labels, samples, PROMETHEUS_SAMPLES_PER_CHUNK)
        .map_err(|e| ApiError::internal(format!("encoding XOR chunks: {e}")))?;
    let label_bytes: usize = series
        .labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 4)
        .sum();
    let budget = MAX_BYTES_IN_FRAME.saturating_sub(label_bytes).max(1);
    let mut frame_chunks = Vec::new();
    let mut frame_bytes = 0usize;
    let total = series.chunks.len();
    for (i, chunk) in series.chunks.into_iter().enumerate() {
        frame_bytes += chunk.data.len() + 16;
        frame_chunks.push(chunk);
        if frame_bytes >= budget || i + 1 == total {
            let msg = ChunkedReadResponse {
                chunked_series: vec![prompb::ChunkedSeries {
                    labels: series.labels.clone(),
                    chunks: std::mem::take(&mut frame_chunks),
                }],
                query_index,
            };
            write_chunked_frame(out, &msg);
            frame_bytes = 0;
        }
    }
    Ok(())
}

/// Converts a query's matchers; errors name the query and matcher.
fn matchers(query: usize, ms: &[prompb::LabelMatcher]) -> Result<Vec<Matcher>, ApiError> {
    ms.iter()
        .enumerate()
        .map(|(i, m)| {
            let op = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(label_matcher::Type::Re) => MatchOp::Regex,
                Ok(label_matcher::Type::Nre) => MatchOp::NotRegex,
                Err(_) => {
                    return Err(ApiError::bad_data(format!(
                        "queries[{query}].matchers[{i}]: unknown matcher type {} (0 EQ, 1 NEQ, 2 RE, 3 NRE)",
                        m.r#type
                    )));
                }
            };
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| ApiError::bad_data(format!("queries[{query}].matchers[{i}]: {e}")))
        })
        .collect()
}
