//! `POST /api/v1/write` (and `/api/v1/push`): Prometheus remote write 1.0 and 2.0.
//!
//! The request goes through these steps; the first failing one answers:
//!
//! 1. `Content-Type` selects the protocol (absent → 1.0, as Prometheus assumes); anything but
//!    `application/x-protobuf` with no `proto` parameter, `proto=prometheus.WriteRequest` or
//!    `proto=io.prometheus.write.v2.Request` → 415. `Content-Encoding` must be `snappy` or
//!    absent (taken as snappy, as Prometheus does) → else 415.
//! 2. Tenant from `X-Scope-OrgID` (invalid → 400); body over `max_request_body` → 413.
//! 3. On the blocking pool: snappy (decoded size over `max_decoded_body` → 413, corrupt → 400),
//!    protobuf decode and validation into a [`Batch`] (malformed → 400, nothing stored).
//! 4. Ingestion rate limit over samples + exemplars → 429, nothing stored.
//! 5. Ingest (waits for the WAL per its sync mode); a WAL failure → 503 (retryable).
//! 6. 204 if everything was stored, else 400 with a text body: counts per reason, then the
//!    first problems, each naming its series. The good part is stored either way.
//!
//! 2.0 responses always carry `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`
//! (histograms: always 0, Strata does not store them yet). Identical duplicate samples (a
//! retried request) count as written.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_engine::AppendReport;
use strata_proto::remote_write::{
    EXEMPLARS_WRITTEN_HEADER, HISTOGRAMS_WRITTEN_HEADER, SAMPLES_WRITTEN_HEADER,
};
use strata_proto::snappy::decompress_snappy;

use super::decode::{Batch, MAX_REPORTED_ERRORS, Policy, Protocol, fmt_labels, reason};
use super::{body_error, snappy_error, text_error};
use crate::api::{ApiError, ErrorKind, tenant};
use crate::app::AppState;

/// What a write did, for the response.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Float samples stored (including identical duplicates).
    pub samples_written: u64,
    /// Exemplars stored.
    pub exemplars_written: u64,
    /// Why some data was not stored (the 400 body), if any was refused.
    pub problems: Option<String>,
}

/// The remote write handler.
pub async fn handle_write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let protocol = match protocol_of(&headers) {
        Ok(p) => p,
        Err(e) => return text_error(&e),
    };
    let fail = |e: ApiError| written_headers(text_error(&e), protocol, 0, 0);
    if let Err(e) = check_encoding(&headers) {
        return fail(e);
    }
    let tenant = match tenant(&headers) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return fail(body_error(&e, state.options.max_request_body)),
    };
    let span = tracing::debug_span!("remote_write", tenant = %tenant, protocol = protocol.name());
    let task = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        write_request(&state, &tenant, protocol, &body)
    });
    match task.await {
        Ok(Ok(outcome)) => respond(outcome, protocol),
        Ok(Err(e)) => fail(e),
        Err(e) => fail(ApiError::internal(format!("remote write task failed: {e}"))),
    }
}

/// Picks the protocol from `Content-Type`.
///
/// # Errors
///
/// 415 naming the type for anything that is not a remote write protobuf.
pub fn protocol_of(headers: &HeaderMap) -> Result<Protocol, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Protocol::V1);
    };
    let raw = String::from_utf8_lossy(value.as_bytes());
    let unsupported = || {
        ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "unsupported Content-Type {raw:?}: remote write accepts application/x-protobuf \
                 (1.0, prometheus.WriteRequest) or \
                 application/x-protobuf;proto=io.prometheus.write.v2.Request (2.0)"
            ),
        )
    };
    let mut parts = raw.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(unsupported());
    }
    for param in parts {
        let Some((key, val)) = param.split_once('=') else {
            if param.trim().is_empty() {
                continue;
            }
            return Err(unsupported());
        };
        if key.trim().eq_ignore_ascii_case("proto") {
            return match val.trim().trim_matches('"') {
                "prometheus.WriteRequest" => Ok(Protocol::V1),
                "io.prometheus.write.v2.Request" => Ok(Protocol::V2),
                _ => Err(unsupported()),
            };
        }
    }
    Ok(Protocol::V1)
}

/// Checks `Content-Encoding`: `snappy`, or absent (taken as snappy).
///
/// # Errors
///
/// 415 naming the encoding.
pub fn check_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(()),
        Some(v) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"snappy") => Ok(()),
        Some(v) => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "unsupported Content-Encoding {:?}: remote write bodies must be snappy-compressed \
                 (block format)",
                String::from_utf8_lossy(v.as_bytes())
            ),
        )),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Decompresses, decodes, validates and ingests one request. Runs on the blocking pool.
fn write_request(
    state: &AppState,
    tenant: &str,
    protocol: Protocol,
    body: &[u8],
) -> Result<WriteOutcome, ApiError> {
    let raw =
        decompress_snappy(body, state.options.max_decoded_body).map_err(|e| snappy_error(&e))?;
    let limits = state.limits.for_tenant(tenant);
    let policy = Policy::new(limits, now_ms());
    let batch = Batch::decode(protocol, &raw, &policy).map_err(|e| {
        ApiError::bad_data(format!("decoding {} body: {e}", protocol.message_name()))
    })?;
    if batch.stats.series == 0 && batch.stats.metadata == 0 && batch.stats.unknown_fields > 0 {
        return Err(ApiError::bad_data(wrong_protocol_hint(protocol)));
    }

    let cost = batch.cost();
    if let Err(rate) = state.limits.take(tenant, cost) {
        state
            .metrics
            .limits_exceeded
            .inc(&[tenant, "ingestion_rate"]);
        state
            .metrics
            .samples_rejected
            .add(&[tenant, reason::RATE_LIMITED], cost as f64);
        let burst = if limits.ingestion_burst > 0.0 {
            limits.ingestion_burst
        } else {
            rate * 10.0
        };
        let advice = if cost as f64 > burst {
            format!(
                "this request alone ({cost} samples and exemplars) is larger than the burst of {burst}; send smaller batches"
            )
        } else {
            format!(
                "the request has {cost} samples and exemplars and the burst of {burst} is spent; retry later"
            )
        };
        return Err(ApiError::new(
            ErrorKind::TooManyRequests,
            format!(
                "ingestion rate limit ({rate} samples/s) exceeded for tenant {tenant:?}: {advice} \
                 (limits ingestion_rate / ingestion_burst)"
            ),
        ));
    }

    let report = if batch.is_empty() {
        AppendReport::default()
    } else {
        let db = state.engine.tenant(tenant)?;
        db.set_max_series(limits.max_series);
        let series = batch.ingest_series();
        db.ingest(&series, &batch.metadata)?
    };
    account(state, tenant, &batch, &report);
    let problems = problems(&batch, &report);
    if let Some(p) = &problems {
        tracing::debug!(problems = %p, "remote write partially rejected");
    }
    Ok(WriteOutcome {
        samples_written: report.appended + report.out_of_order + report.duplicates,
        exemplars_written: report.exemplars_appended,
        problems,
    })
}

fn wrong_protocol_hint(protocol: Protocol) -> String {
    let other = match protocol {
        Protocol::V1 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        Protocol::V2 => "application/x-protobuf",
    };
    format!(
        "body has no fields of {}: it looks like the other remote write version; check the \
         sender's protocol setting (did you mean Content-Type {other}?)",
        protocol.message_name()
    )
}

/// Updates the ingest counters of `/metrics`.
fn account(state: &AppState, tenant: &str, batch: &Batch<'_>, report: &AppendReport) {
    let m = &state.metrics;
    let ingested = report.appended + report.out_of_order;
    if ingested > 0 {
        m.samples_ingested.add(&[tenant], ingested as f64);
    }
    if report.exemplars_appended > 0 {
        m.exemplars_ingested
            .add(&[tenant], report.exemplars_appended as f64);
    }
    for (r, n) in &batch.rejected.samples {
        m.samples_rejected.add(&[tenant, r], *n as f64);
    }
    for (r, n) in &report.rejected_by_reason {
        m.samples_rejected.add(&[tenant, r], *n as f64);
    }
    for (limit, n) in &batch.rejected.limits {
        m.limits_exceeded.add(&[tenant, limit], *n as f64);
    }
    if report.series_limited > 0 {
        m.limits_exceeded
            .add(&[tenant, "max_series"], report.series_limited as f64);
        m.samples_rejected.add(
            &[tenant, reason::SERIES_LIMIT],
            report.samples_limited as f64,
        );
    }
    if report.invalid_series > 0 {
        m.samples_rejected.add(
            &[tenant, reason::INVALID_LABELS],
            report.invalid_series as f64,
        );
    }
}

/// The 400 body, or `None` when everything was stored. First line: counts per reason; then
/// one line per problem (at most [`MAX_REPORTED_ERRORS`]), each naming its series.
fn problems(batch: &Batch<'_>, report: &AppendReport) -> Option<String> {
    let mut by_reason = batch.rejected.samples.clone();
    for (r, n) in &report.rejected_by_reason {
        *by_reason.entry(r).or_default() += n;
    }
    if report.series_limited > 0 {
        *by_reason.entry(reason::SERIES_LIMIT).or_default() += report.samples_limited;
    }
    let dropped_series = batch.rejected.series + report.invalid_series + report.series_limited;
    if by_reason.is_empty() && dropped_series == 0 {
        return None;
    }
    let rejected: u64 = by_reason.values().sum();
    let total = (batch.stats.samples + batch.stats.histograms) as u64;
    let stored = report.appended + report.out_of_order + report.duplicates;
    let reasons: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r}={n}")).collect();
    let mut out = format!(
        "{rejected} of {total} samples rejected ({}); {stored} samples stored",
        reasons.join(", ")
    );
    if dropped_series > 0 {
        out.push_str(&format!("; {dropped_series} series dropped"));
    }
    out.push('\n');

    let mut lines: Vec<String> = Vec::new();
    if report.series_limited > 0 {
        lines.push(format!(
            "per-tenant series limit of {} exceeded: {} new series ({} samples) not created; \
             existing series keep ingesting (limit max_series)",
            report.series_limit, report.series_limited, report.samples_limited
        ));
    }
    lines.extend(batch.rejected.errors.iter().cloned());
    lines.extend(report.errors.iter().map(|(labels, e)| {
        format!(
            "{e} (series {})",
            fmt_labels(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
        )
    }));
    lines.extend(report.invalid.iter().cloned());
    for line in lines.iter().take(MAX_REPORTED_ERRORS) {
        out.push_str(line);
        out.push('\n');
    }
    if lines.len() > MAX_REPORTED_ERRORS {
        out.push_str("(more errors not shown)\n");
    }
    let exemplars_rejected = batch.rejected.exemplars + report.exemplars_rejected;
    if exemplars_rejected > 0 {
        let first = batch
            .rejected
            .exemplar_errors
            .first()
            .cloned()
            .or_else(|| report.exemplar_errors.first().map(ToString::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "{exemplars_rejected} exemplars not stored, first: {first}\n"
        ));
    }
    Some(out)
}

fn respond(outcome: WriteOutcome, protocol: Protocol) -> Response {
    let resp = match outcome.problems {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(body) => (
            StatusCode::BAD_REQUEST,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
    };
    written_headers(
        resp,
        protocol,
        outcome.samples_written,
        outcome.exemplars_written,
    )
}

/// Adds the 2.0 `-Written` headers (1.0 responses are returned unchanged).
fn written_headers(
    mut resp: Response,
    protocol: Protocol,
    samples: u64,
    exemplars: u64,
) -> Response {
    if protocol == Protocol::V2 {
        let h = resp.headers_mut();
        h.insert(SAMPLES_WRITTEN_HEADER, HeaderValue::from(samples));
        h.insert(HISTOGRAMS_WRITTEN_HEADER, HeaderValue::from(0u64));
        h.insert(EXEMPLARS_WRITTEN_HEADER, HeaderValue::from(exemplars));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn content_type_selects_the_protocol() {
        assert_eq!(protocol_of(&HeaderMap::new()).unwrap(), Protocol::V1);
        assert_eq!(
            protocol_of(&ct("application/x-protobuf")).unwrap(),
            Protocol::V1
        );
        assert_eq!(
            protocol_of(&ct("application/x-protobuf;proto=prometheus.WriteRequest")).unwrap(),
            Protocol::V1
        );
        assert_eq!(
            protocol_of(&ct(
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            ))
            .unwrap(),
            Protocol::V2
        );
        for bad in [
            "application/json",
            "application/x-protobuf;proto=foo.Bar",
            "text/plain",
        ] {
            let e = protocol_of(&ct(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert!(e.message.contains(bad), "{}", e.message);
        }
    }

    #[test]
    fn only_snappy_encoding_is_accepted() {
        assert!(check_encoding(&HeaderMap::new()).is_ok());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        assert!(check_encoding(&h).is_ok());
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let e = check_encoding(&h).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.message.contains("\"gzip\""), "{}", e.message);
    }
}
