//! Request and response bodies of OTLP/HTTP: content types, gzip, error bodies.
//!
//! The OTLP spec asks servers to accept binary protobuf and JSON on the same path, to accept
//! `gzip` request bodies, to answer in the request's encoding, and to explain a 400 with a
//! `google.rpc.Status` message. Decompression is bounded so that a small gzip body cannot
//! expand without limit.

use std::io::Read;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, ErrorKind};

/// Encoding of an OTLP/HTTP body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The request's encoding from `Content-Type` (415 for anything else).
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "unsupported Content-Type {other:?}: OTLP/HTTP accepts application/x-protobuf or application/json"
            ),
        )),
    }
}

/// The body, gunzipped if `Content-Encoding: gzip`, at most `limit` bytes once decoded.
pub fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let ce = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let too_large = || {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "decoded body is larger than the limit of {limit} bytes (server option max_decoded_body)"
            ),
        )
    };
    match ce.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(too_large());
            }
            Ok(body)
        }
        "gzip" => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            flate2::read::GzDecoder::new(body.as_ref())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_data(format!("decompressing gzip body: {e}")))?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(Bytes::from(out))
        }
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("unsupported Content-Encoding {other:?}: OTLP/HTTP accepts gzip or none"),
        )),
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// gRPC status code (3 `INVALID_ARGUMENT`, 14 `UNAVAILABLE`, …).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Human-readable message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error response in the request's encoding: `google.rpc.Status` as protobuf or JSON.
pub fn error_response(e: &ApiError, enc: Encoding) -> Response {
    let status = e.status();
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 13,
    };
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %e.message, "OTLP request failed");
    } else {
        tracing::debug!(status = status.as_u16(), error = %e.message, "OTLP request refused");
    }
    let body = match enc {
        Encoding::Protobuf => prost::Message::encode_to_vec(&RpcStatus {
            code,
            message: e.message.clone(),
        }),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": e.message}))
                .unwrap_or_default()
        }
    };
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(enc.content_type()),
        )],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// A success response in the request's encoding.
/// The flow every OTLP/HTTP export shares: the content type picks the encoding, then on the
/// blocking pool the tenant is read, the body decompressed within `limit`, and `ingest`
/// decodes and stores it; its answer (or error) goes back in the request's encoding.
pub async fn handle_export<M>(
    headers: HeaderMap,
    body: Bytes,
    limit: usize,
    ingest: impl FnOnce(&str, &[u8], Encoding) -> Result<M, ApiError> + Send + 'static,
) -> Response
where
    M: prost::Message + serde::Serialize + Send + 'static,
{
    let enc = match encoding(&headers) {
        Ok(e) => e,
        Err(e) => return error_response(&e, Encoding::Protobuf),
    };
    let res = tokio::task::spawn_blocking(move || {
        let tenant = crate::api::tenant(&headers)?;
        let raw = decode_body(&headers, body, limit)?;
        ingest(&tenant, &raw, enc)
    })
    .await;
    match res {
        Ok(Ok(resp)) => ok_response(&resp, enc),
        Ok(Err(e)) => error_response(&e, enc),
        Err(e) => error_response(&ApiError::internal(format!("ingest task failed: {e}")), enc),
    }
}

/// A successful OTLP answer in the request's encoding.
pub fn ok_response<M: prost::Message + serde::Serialize>(msg: &M, enc: Encoding) -> Response {
    let body = match enc {
        Encoding::Protobuf => msg.encode_to_vec(),
        // Unset message fields are left out rather than written as `null` (`{}` for full
        // success, as the OTLP JSON examples show).
        Encoding::Json => match serde_json::to_value(msg).and_then(|mut v| {
            if let serde_json::Value::Object(m) = &mut v {
                m.retain(|_, x| !x.is_null());
            }
            serde_json::to_vec(&v)
        }) {
            Ok(b) => b,
            Err(e) => {
                return error_response(&ApiError::internal(format!("encoding response: {e}")), enc);
            }
        },
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(enc.content_type()),
        )],
        body,
    )
        .into_response()
}

/// Maps an API error to a gRPC status.
pub fn grpc_status(e: &ApiError) -> tonic::Status {
    match e.status() {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            tonic::Status::invalid_argument(e.message.clone())
        }
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
            tonic::Status::resource_exhausted(e.message.clone())
        }
        StatusCode::SERVICE_UNAVAILABLE => tonic::Status::unavailable(e.message.clone()),
        _ => tonic::Status::internal(e.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bodies_decode_within_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[7u8; 10_000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decode_body(&h, gz.clone(), 20_000).unwrap().len(), 10_000);
        let e = decode_body(&h, gz, 5_000).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = decode_body(&h, Bytes::from_static(b"not gzip"), 5_000).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let e = decode_body(&h, Bytes::from_static(b"x"), 5_000).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(encoding(&h).unwrap(), Encoding::Json);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        assert_eq!(encoding(&h).unwrap(), Encoding::Protobuf);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            encoding(&h).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
