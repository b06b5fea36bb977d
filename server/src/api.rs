//! Shared pieces of the HTTP APIs: the Prometheus response envelope and error mapping, request
//! parameters (query string and form body merged, as Prometheus accepts both), timestamps and
//! durations in Prometheus's formats, and the tenant of a request.
//!
//! Errors are translated to HTTP status codes here and only here: `bad_data` → 400,
//! `execution` → 422, `timeout` → 503, `unavailable` → 503, `internal` → 500, and the
//! remote-write specific 413/415/429.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Header carrying the tenant id (as Mimir, Loki and Tempo).
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Kinds of API errors, named as Prometheus names them in `errorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad request parameters or body (400).
    BadData,
    /// The query could not be executed (422).
    Execution,
    /// Timed out (503).
    Timeout,
    /// Temporarily unavailable (503).
    Unavailable,
    /// The client went away before the answer was ready (499, as Prometheus).
    Canceled,
    /// Internal failure (500).
    Internal,
    /// Body too large (413).
    TooLarge,
    /// Unsupported content type or encoding (415).
    UnsupportedMediaType,
    /// A per-tenant limit was hit (429).
    TooManyRequests,
    /// Not found (404).
    NotFound,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadData => StatusCode::BAD_REQUEST,
            ErrorKind::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Timeout | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Canceled => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
        }
    }

    fn error_type(self) -> &'static str {
        match self {
            ErrorKind::BadData
            | ErrorKind::TooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::TooManyRequests => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::NotFound => "not_found",
        }
    }
}

/// An error answered in Prometheus's JSON envelope.
#[derive(Debug)]
pub struct ApiError {
    /// What kind.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// 400 bad_data.
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::BadData, message)
    }

    /// 500 internal.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Internal, message)
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl From<strata_engine::Error> for ApiError {
    fn from(e: strata_engine::Error) -> Self {
        match e {
            strata_engine::Error::InvalidTenant(_)
            | strata_engine::Error::InvalidLabels(_)
            | strata_engine::Error::InvalidMatcher(_) => ApiError::bad_data(e.to_string()),
            strata_engine::Error::WalFailed(_) => {
                ApiError::new(ErrorKind::Unavailable, e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind == ErrorKind::Internal {
            tracing::error!(error = %self.message, "request failed");
        }
        let body = ErrorBody {
            status: "error",
            error_type: self.kind.error_type(),
            error: &self.message,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response()
    }
}

/// A successful Prometheus API response: `{"status":"success","data":…}`.
pub fn success<T: Serialize>(data: T, warnings: &[String]) -> Response {
    success_annotated(data, warnings, &[])
}

/// A successful response carrying PromQL annotations (`warnings` and `infos`, omitted when
/// empty, as Prometheus does).
pub fn success_annotated<T: Serialize>(data: T, warnings: &[String], infos: &[String]) -> Response {
    #[derive(Serialize)]
    struct Ok<'a, T> {
        status: &'static str,
        data: T,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        infos: &'a [String],
    }
    match serde_json::to_vec(&Ok {
        status: "success",
        data,
        warnings,
        infos,
    }) {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("encoding response: {e}")).into_response(),
    }
}

/// Request parameters from the query string and, for form POSTs, the body.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=2` pairs.
    pub fn parse(raw: &[u8]) -> Self {
        Params(form_urlencoded::parse(raw).into_owned().collect())
    }

    /// The value of `key` (the first one given), if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key, such as `match[]`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut params = Params::parse(req.uri().query().unwrap_or("").as_bytes());
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if (req.method() == Method::POST || req.method() == Method::PUT) && is_form {
            let body = Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_data(format!("reading form body: {e}")))?;
            params.0.extend(Params::parse(&body).0);
        }
        Ok(params)
    }
}

/// Parses a Prometheus API timestamp: RFC 3339 or Unix seconds with optional decimals.
/// Returns milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (f * 1000.0).round();
        if ms.abs() > 9.2e18 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok(ms as i64);
    }
    parse_rfc3339(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || *b.get(4)? != b'-'
        || *b.get(7)? != b'-'
        || !matches!(*b.get(10)?, b'T' | b't' | b' ')
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = padded.parse().ok()?;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        &c @ (b'+' | b'-') if i + 6 == b.len() => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if c == b'+' { 1 } else { -1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs * 1000 + frac_ms)
}

/// Formats Unix milliseconds as RFC 3339 (UTC, millisecond precision when needed).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01.
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
    }
}

/// Parses a duration parameter (`step`, `lookback_delta`): float seconds or a Prometheus
/// duration such as `15s`. Returns milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    strata_query::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| e.to_string())
}

/// Prometheus's "min time" and "max time" for absent start/end parameters.
pub const MIN_TIME_MS: i64 = -62_135_596_800_000;
/// See [`MIN_TIME_MS`].
pub const MAX_TIME_MS: i64 = 253_402_300_799_000;

/// Reads an optional time parameter, with a default.
pub fn time_param(p: &Params, key: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(default),
        Some(v) => {
            parse_time(v).map_err(|e| ApiError::bad_data(format!("invalid parameter {key:?}: {e}")))
        }
    }
}

/// The tenant of a request: the `X-Scope-OrgID` header, or `anonymous`.
pub fn tenant(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(TENANT_HEADER) {
        None => Ok(strata_engine::DEFAULT_TENANT.to_string()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad_data("X-Scope-OrgID: tenant ID is not valid ASCII"))?
                .trim();
            let ok = strata_engine::db::valid_tenant(s);
            if ok {
                Ok(s.to_string())
            } else {
                Err(ApiError::bad_data(format!(
                    "X-Scope-OrgID: invalid tenant ID {s:?}: must be 1-150 characters of [A-Za-z0-9_.-], not '.' or '..'"
                )))
            }
        }
    }
}

/// A sample value as Prometheus prints it (`NaN`, `+Inf`, `-Inf`, otherwise the shortest
/// decimal that round-trips, never an exponent), written without allocating.
pub struct FmtValue(pub f64);

impl std::fmt::Display for FmtValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            write!(f, "{v}")
        }
    }
}

/// Formats a sample value as Prometheus does in JSON (a string; `NaN`, `+Inf`, `-Inf`).
pub fn fmt_value(v: f64) -> String {
    FmtValue(v).to_string()
}

/// A Unix-seconds timestamp as Prometheus prints it (a JSON number with up to 3 decimals).
pub fn ts_secs(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        serde_json::Value::from(ms / 1000)
    } else {
        serde_json::Number::from_f64(ms as f64 / 1000.0)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .contains("cannot parse")
        );
        assert!(parse_time("NaN").is_err());
        assert_eq!(rfc3339(1_435_781_451_781), "2015-07-01T20:10:51.781Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        for ms in [-86_400_000_i64 * 400, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_duration_ms("15s"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert!(parse_duration_ms("x").is_err());
    }

    #[test]
    fn params_merge_and_repeat() {
        let p = Params::parse(b"match%5B%5D=up&match%5B%5D=%7Bjob%3D%22a%22%7D&start=1");
        assert_eq!(p.all("match[]"), vec!["up", "{job=\"a\"}"]);
        assert_eq!(p.get("start"), Some("1"));
        assert_eq!(p.get("end"), None);
    }

    #[test]
    fn tenant_header() {
        let mut h = HeaderMap::new();
        assert_eq!(tenant(&h).unwrap(), "anonymous");
        h.insert(TENANT_HEADER, HeaderValue::from_static("team-a"));
        assert_eq!(tenant(&h).unwrap(), "team-a");
        h.insert(TENANT_HEADER, HeaderValue::from_static("../etc"));
        let e = tenant(&h).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message.contains("invalid tenant ID"));
    }

    #[test]
    fn timestamps_print_like_prometheus() {
        assert_eq!(ts_secs(1_435_781_451_781).to_string(), "1435781451.781");
        assert_eq!(ts_secs(1_435_781_451_000).to_string(), "1435781451");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(1e21), "1000000000000000000000");
        assert_eq!(fmt_value(0.1), "0.1");
    }
}
