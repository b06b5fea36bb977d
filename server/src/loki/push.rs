//! `POST /loki/api/v1/push`: JSON or snappy-compressed protobuf, validated, rate-limited and
//! stored through the tenant's log WAL.
//!
//! # Encodings
//!
//! - `Content-Type: application/json`: `{"streams":[{"stream":{…},"values":[["<ns>","<line>"
//!   (, {structured metadata})]]}]}`.
//! - `Content-Type: application/x-protobuf` (or none): snappy block compression around a
//!   `logproto.PushRequest`.
//!
//! Lines must be UTF-8: an entry whose line is not is refused with 400 naming the stream and
//! the entry (the rest of the request is stored).
//!
//! # Responses
//!
//! 204 when everything was stored. 400 when the body does not decode (nothing stored) or when
//! some entries were refused (the rest stored; the body lists up to ten reasons and the
//! count). 429 when the tenant's ingestion rate is exceeded (nothing stored) or new streams
//! were refused by the stream limit (the rest stored). 413 for bodies over the size limits,
//! 415 for other content types or encodings, 503 when the WAL failed.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use strata_engine::Labels;
use strata_engine::labels::Label;
use strata_engine::logs::{LogEntry, PushReport, StreamEntries};
use strata_proto::loki::{decode_push_request, parse_labels};

use super::LokiError;
use crate::app::AppState;

#[derive(Deserialize)]
struct JsonPush<'a> {
    #[serde(borrow, default)]
    streams: Vec<JsonStream<'a>>,
}

#[derive(Deserialize)]
struct JsonStream<'a> {
    #[serde(borrow, default)]
    stream: BTreeMap<std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    values: Vec<JsonEntry<'a>>,
}

struct JsonEntry<'a> {
    ts: std::borrow::Cow<'a, str>,
    line: std::borrow::Cow<'a, str>,
    metadata: Vec<(String, String)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonEntry<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array [\"<unix ns>\", \"<line>\"] or [\"<unix ns>\", \"<line>\", {metadata}]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let ts: std::borrow::Cow<'a, str> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("entry is missing its timestamp"))?;
                let line: std::borrow::Cow<'a, str> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("entry is missing its line"))?;
                let meta: Option<BTreeMap<String, String>> = seq.next_element()?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("entry has more than three elements"));
                }
                Ok(JsonEntry {
                    ts,
                    line,
                    metadata: meta.unwrap_or_default().into_iter().collect(),
                })
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Builds a stream label set, checking names; errors name the stream.
fn stream_labels(pairs: Vec<(String, String)>, shown: &str) -> Result<Labels, String> {
    if pairs.is_empty() {
        return Err(format!(
            "stream {shown}: at least one label pair is required per stream"
        ));
    }
    for (n, _) in &pairs {
        if !valid_label_name(n) {
            return Err(format!(
                "stream {shown}: invalid label name {n:?} (must match [a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
    }
    let labels: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
    let labels = Labels::new(labels).map_err(|e| format!("stream {shown}: {e}"))?;
    if labels.is_empty() {
        return Err(format!("stream {shown}: every label value is empty"));
    }
    Ok(labels)
}

/// A decoded request: streams to store and per-entry decode problems.
#[derive(Debug)]
pub struct Decoded {
    /// Streams with their valid entries.
    pub streams: Vec<StreamEntries>,
    /// Entries dropped while decoding (non-UTF-8 lines), with reasons.
    pub problems: Vec<String>,
    /// Number of entries dropped.
    pub dropped: usize,
    /// Bytes of the stored entries (for the rate limit).
    pub bytes: usize,
}

/// Decodes a JSON push body.
pub fn decode_json(body: &[u8]) -> Result<Decoded, String> {
    let req: JsonPush<'_> =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON push body: {e}"))?;
    let mut out = Decoded {
        streams: Vec::with_capacity(req.streams.len()),
        problems: Vec::new(),
        dropped: 0,
        bytes: 0,
    };
    for (i, s) in req.streams.into_iter().enumerate() {
        let shown = format!("streams[{i}]");
        let pairs: Vec<(String, String)> = s
            .stream
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let labels = stream_labels(pairs, &shown)?;
        let mut entries = Vec::with_capacity(s.values.len());
        for (j, e) in s.values.into_iter().enumerate() {
            let ts: i64 = e.ts.parse().map_err(|_| {
                format!(
                    "streams[{i}].values[{j}]: timestamp {:?} is not an integer of Unix nanoseconds",
                    e.ts
                )
            })?;
            let entry = LogEntry {
                ts,
                line: e.line.into_owned(),
                metadata: e.metadata,
            };
            out.bytes += entry.size();
            entries.push(entry);
        }
        out.streams.push(StreamEntries { labels, entries });
    }
    Ok(out)
}

/// Decodes an uncompressed protobuf push body.
pub fn decode_protobuf(body: &[u8]) -> Result<Decoded, String> {
    let req = decode_push_request(body).map_err(|e| format!("invalid protobuf push body: {e}"))?;
    let mut out = Decoded {
        streams: Vec::with_capacity(req.streams.len()),
        problems: Vec::new(),
        dropped: 0,
        bytes: 0,
    };
    for (i, s) in req.streams.into_iter().enumerate() {
        let pairs = parse_labels(&s.labels)
            .map_err(|e| format!("streams[{i}]: invalid labels {:?}: {e}", s.labels))?;
        let labels = stream_labels(pairs, &s.labels)?;
        let mut entries = Vec::with_capacity(s.entries.len());
        for (j, e) in s.entries.into_iter().enumerate() {
            let ts = e
                .timestamp
                .unwrap_or_default()
                .to_nanos()
                .ok_or_else(|| format!("streams[{i}].entries[{j}]: timestamp out of range"))?;
            let line = match String::from_utf8(e.line) {
                Ok(l) => l,
                Err(_) => {
                    out.dropped += 1;
                    if out.problems.len() < 10 {
                        out.problems.push(format!(
                            "stream {}: entries[{j}]: line is not valid UTF-8 (Strata stores UTF-8 lines only)",
                            s.labels
                        ));
                    }
                    continue;
                }
            };
            let entry = LogEntry {
                ts,
                line,
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect(),
            };
            out.bytes += entry.size();
            entries.push(entry);
        }
        out.streams.push(StreamEntries { labels, entries });
    }
    Ok(out)
}

fn report_response(decoded_problems: &[String], dropped: usize, r: &PushReport) -> Response {
    let refused = r.rejected + dropped;
    if refused == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut msg = String::new();
    for p in decoded_problems {
        msg.push_str(p);
        msg.push('\n');
    }
    for rej in &r.rejections {
        msg.push_str(&rej.to_string());
        msg.push('\n');
    }
    msg.push_str(&format!(
        "{refused} of {} entries refused; the others were stored\n",
        refused + r.accepted
    ));
    let status = if r.stream_limit {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// Decodes a body by content type and encoding.
pub fn decode_body(
    headers: &HeaderMap,
    body: &[u8],
    max_decoded: usize,
) -> Result<Decoded, LokiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .to_ascii_lowercase();
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ctype.starts_with("application/json") {
        if !matches!(encoding.as_str(), "" | "identity") {
            return Err(LokiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Encoding {encoding:?} for JSON push (send it uncompressed)"
                ),
            ));
        }
        return decode_json(body).map_err(LokiError::bad);
    }
    if ctype.starts_with("application/x-protobuf") || ctype.starts_with("application/octet-stream")
    {
        if !matches!(encoding.as_str(), "" | "snappy") {
            return Err(LokiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Encoding {encoding:?} for protobuf push (snappy block format expected)"
                ),
            ));
        }
        let raw = strata_proto::snappy::decompress_snappy(body, max_decoded)
            .map_err(|e| LokiError::from(crate::remote::snappy_error(&e)))?;
        return decode_protobuf(&raw).map_err(LokiError::bad);
    }
    Err(LokiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "unsupported Content-Type {ctype:?}: use application/json or application/x-protobuf (snappy)"
        ),
    ))
}

/// The push handler.
pub async fn handle_push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match push(state, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn push(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, LokiError> {
    let tenant = crate::api::tenant(&headers)?;
    let body = body.map_err(|e| {
        LokiError::from(crate::remote::body_error(
            &e,
            state.options.max_request_body,
        ))
    })?;
    let task = tokio::task::spawn_blocking(move || -> Result<Response, LokiError> {
        let decoded = decode_body(&headers, &body, state.options.max_decoded_body)?;
        let loki = &state.loki;
        if let Err(rate) = loki.take(&tenant, decoded.bytes) {
            let lines: usize = decoded.streams.iter().map(|s| s.entries.len()).sum();
            return Err(LokiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant {tenant}: ingestion rate limit of {rate} bytes/s exceeded while pushing {lines} lines of {} bytes in total; retry later, reduce the volume or raise logs.ingestion_rate",
                    decoded.bytes
                ),
            ));
        }
        let store = loki.engine.tenant(&tenant)?;
        let report = store.push(decoded.streams, &loki.settings.limits)?;
        Ok(report_response(&decoded.problems, decoded.dropped, &report))
    });
    task.await.map_err(|e| {
        LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("push task failed: {e}"),
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_decode_with_metadata() {
        let d = decode_json(
            br#"{"streams":[{"stream":{"job":"a"},"values":[["1700000000000000000","hi"],["2","x",{"trace_id":"t"}]]}]}"#,
        )
        .unwrap();
        assert_eq!(d.streams.len(), 1);
        assert_eq!(
            d.streams[0].entries[1].metadata,
            vec![("trace_id".into(), "t".into())]
        );
        for (body, want) in [
            (
                &br#"{"streams":[{"stream":{"job":"a"},"values":[["x","hi"]]}]}"#[..],
                "values[0]",
            ),
            (
                br#"{"streams":[{"stream":{"1job":"a"},"values":[]}]}"#,
                "invalid label name",
            ),
            (
                br#"{"streams":[{"stream":{},"values":[]}]}"#,
                "at least one label",
            ),
            (
                br#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#,
                "missing its line",
            ),
            (br#"{"streams": nope"#, "invalid JSON"),
        ] {
            let e = decode_json(body).err().unwrap();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn protobuf_bodies_decode_and_refuse_bad_utf8() {
        use strata_proto::loki::*;
        use strata_proto::prost::Message;
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="a", env="p"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: 1,
                            nanos: 5,
                        }),
                        line: b"ok".to_vec(),
                        structured_metadata: vec![LabelPairAdapter {
                            name: "trace_id".into(),
                            value: "abc".into(),
                        }],
                    },
                    EntryAdapter {
                        timestamp: None,
                        line: vec![0xff, 0xfe],
                        structured_metadata: vec![],
                    },
                ],
                hash: 0,
            }],
        };
        let d = decode_protobuf(&req.encode_to_vec()).unwrap();
        assert_eq!(d.streams[0].entries.len(), 1);
        assert_eq!(d.streams[0].entries[0].ts, 1_000_000_005);
        assert_eq!(d.dropped, 1);
        assert!(d.problems[0].contains("not valid UTF-8"));
        assert!(decode_protobuf(&[0x0a, 0xff]).is_err());
        let bad = PushRequest {
            streams: vec![StreamAdapter {
                labels: "job=a".into(),
                entries: vec![],
                hash: 0,
            }],
        };
        assert!(
            decode_protobuf(&bad.encode_to_vec())
                .unwrap_err()
                .contains("invalid labels")
        );
    }
}
