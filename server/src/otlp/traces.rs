//! OTLP traces: validation, conversion into the trace store's [`SpanRecord`], and the HTTP and
//! gRPC export handlers.
//!
//! # What is stored, and what is refused
//!
//! Each span is stored with the fields the store indexes (ids, times, service, name, kind,
//! status, scalar attributes) and, as its payload, the OTLP protobuf of a one-span
//! `ResourceSpans` (resource, scope, span) — so a trace read back is what the SDK sent.
//!
//! A span is refused (counted in `partialSuccess.rejectedSpans`, named in `errorMessage`) when:
//! its `traceId` is not 16 bytes or is all zero; its `spanId` is not 8 bytes or is all zero; its
//! `parentSpanId` is neither empty nor 8 bytes; `startTimeUnixNano` is 0; `endTimeUnixNano` is
//! before `startTimeUnixNano`; or its encoded size exceeds [`MAX_SPAN_BYTES`]. A resource
//! without `service.name` is stored as `unknown_service` (what the OpenTelemetry spec tells SDKs
//! to use), and that attribute is added to the stored resource. String attribute values longer
//! than [`MAX_INDEXED_VALUE`] bytes stay in the payload but are not searchable.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use strata_engine::traces::{Attr, AttrScope, AttrValue, SpanRecord};

use super::body::{self, Encoding};
use crate::api::{ApiError, ErrorKind};
use crate::app::AppState;

/// Largest accepted span, encoded (1 MiB).
pub const MAX_SPAN_BYTES: usize = 1 << 20;
/// Longest string attribute value that is searchable (bytes).
pub const MAX_INDEXED_VALUE: usize = 1024;
/// Service name of resources without `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Spans of a request, converted, with what was refused.
#[derive(Debug, Default)]
pub struct Converted {
    /// Valid spans.
    pub spans: Vec<SpanRecord>,
    /// Spans refused.
    pub rejected: i64,
    /// The first few reasons.
    pub errors: Vec<String>,
}

impl Converted {
    fn reject(&mut self, msg: String) {
        self.rejected += 1;
        if self.errors.len() < 5 {
            self.errors.push(msg);
        }
    }

    /// The OTLP response: `partialSuccess` only when something was refused.
    pub fn response(&self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: self.rejected,
                error_message: format!(
                    "{} span(s) rejected: {}",
                    self.rejected,
                    self.errors.join("; ")
                ),
            }),
        }
    }
}

fn scalar(v: &AnyValue) -> Option<AttrValue> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) if s.len() <= MAX_INDEXED_VALUE => {
            Some(AttrValue::Str(s.clone()))
        }
        any_value::Value::BoolValue(b) => Some(AttrValue::Bool(*b)),
        any_value::Value::IntValue(i) => Some(AttrValue::Int(*i)),
        any_value::Value::DoubleValue(d) => Some(AttrValue::Float(*d)),
        _ => None,
    }
}

fn push_attrs(out: &mut Vec<Attr>, scope: AttrScope, kvs: &[KeyValue]) {
    for kv in kvs {
        if let Some(value) = kv.value.as_ref().and_then(scalar) {
            out.push(Attr {
                scope,
                key: kv.key.clone(),
                value,
            });
        }
    }
}

fn id<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    let a: [u8; N] = b.try_into().ok()?;
    (a != [0; N]).then_some(a)
}

/// Appends a length-delimited field.
fn put_field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The protobuf of `ResourceSpans { resource, scope_spans: [ScopeSpans { scope, spans: [span],
/// schema_url }], schema_url }`, built from the resource and scope encoded once per request —
/// byte for byte what prost would encode for that message, without cloning the resource for
/// every span.
pub fn one_span_payload(
    resource: &[u8],
    scope: Option<&[u8]>,
    scope_schema: &str,
    span: &opentelemetry_proto::tonic::trace::v1::Span,
    schema: &str,
) -> Vec<u8> {
    let span_len = span.encoded_len();
    let mut ss =
        Vec::with_capacity(span_len + scope.map_or(0, <[u8]>::len) + scope_schema.len() + 16);
    if let Some(sc) = scope {
        put_field(&mut ss, 1, sc);
    }
    prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut ss);
    prost::encoding::encode_varint(span_len as u64, &mut ss);
    span.encode_raw(&mut ss);
    if !scope_schema.is_empty() {
        put_field(&mut ss, 3, scope_schema.as_bytes());
    }
    let mut out = Vec::with_capacity(resource.len() + ss.len() + schema.len() + 16);
    put_field(&mut out, 1, resource);
    put_field(&mut out, 2, &ss);
    if !schema.is_empty() {
        put_field(&mut out, 3, schema.as_bytes());
    }
    out
}

/// Validates and converts an export request.
pub fn convert(req: ExportTraceServiceRequest) -> Converted {
    let mut out = Converted::default();
    for (ri, rs) in req.resource_spans.into_iter().enumerate() {
        let mut resource = rs.resource.unwrap_or_default();
        let service = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            });
        let service = match service {
            Some(s) => s,
            None => {
                resource.attributes.retain(|kv| kv.key != "service.name");
                resource.attributes.push(KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(UNKNOWN_SERVICE.into())),
                    }),
                    ..KeyValue::default()
                });
                UNKNOWN_SERVICE.to_string()
            }
        };
        // Encoded once per resource and scope; each span's payload reuses the bytes.
        let resource_bytes = resource.encode_to_vec();
        let mut resource_attrs = Vec::new();
        push_attrs(
            &mut resource_attrs,
            AttrScope::Resource,
            &resource.attributes,
        );
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let scope_bytes = ss.scope.as_ref().map(Message::encode_to_vec);
            for (pi, span) in ss.spans.into_iter().enumerate() {
                let at = format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                let Some(trace_id) = id::<16>(&span.trace_id) else {
                    out.reject(format!(
                        "{at}: traceId must be 16 bytes and not all zero (got {} bytes)",
                        span.trace_id.len()
                    ));
                    continue;
                };
                let Some(span_id) = id::<8>(&span.span_id) else {
                    out.reject(format!(
                        "{at}: spanId must be 8 bytes and not all zero (got {} bytes)",
                        span.span_id.len()
                    ));
                    continue;
                };
                let parent_span_id = match span.parent_span_id.len() {
                    0 => [0; 8],
                    8 => id::<8>(&span.parent_span_id).unwrap_or([0; 8]),
                    n => {
                        out.reject(format!(
                            "{at}: parentSpanId must be empty or 8 bytes (got {n} bytes)"
                        ));
                        continue;
                    }
                };
                if span.start_time_unix_nano == 0 {
                    out.reject(format!("{at}: startTimeUnixNano is missing"));
                    continue;
                }
                if span.end_time_unix_nano < span.start_time_unix_nano {
                    out.reject(format!(
                        "{at}: endTimeUnixNano {} is before startTimeUnixNano {}",
                        span.end_time_unix_nano, span.start_time_unix_nano
                    ));
                    continue;
                }
                let mut attrs = resource_attrs.clone();
                push_attrs(&mut attrs, AttrScope::Span, &span.attributes);
                let rec_name = span.name.clone();
                let kind = u8::try_from(span.kind)
                    .ok()
                    .filter(|k| *k <= 5)
                    .unwrap_or(0);
                let status = span
                    .status
                    .as_ref()
                    .and_then(|s| u8::try_from(s.code).ok())
                    .filter(|c| *c <= 2)
                    .unwrap_or(0);
                let (start_ns, end_ns) = (span.start_time_unix_nano, span.end_time_unix_nano);
                let payload = one_span_payload(
                    &resource_bytes,
                    scope_bytes.as_deref(),
                    &ss.schema_url,
                    &span,
                    &rs.schema_url,
                );
                if payload.len() > MAX_SPAN_BYTES {
                    out.reject(format!(
                        "{at}: span is {} bytes encoded, more than the limit of {MAX_SPAN_BYTES}",
                        payload.len()
                    ));
                    continue;
                }
                out.spans.push(SpanRecord {
                    trace_id,
                    span_id,
                    parent_span_id,
                    start_ns,
                    end_ns,
                    kind,
                    status,
                    service: service.clone(),
                    name: rec_name,
                    attrs,
                    payload,
                });
            }
        }
    }
    out
}

/// Decodes a request body in the given encoding.
pub fn decode_request(bytes: &[u8], enc: Encoding) -> Result<ExportTraceServiceRequest, ApiError> {
    match enc {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(bytes).map_err(|e| {
            ApiError::bad_data(format!("decoding ExportTraceServiceRequest protobuf: {e}"))
        }),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_data(format!("decoding ExportTraceServiceRequest JSON: {e}"))
        }),
    }
}

/// Stores converted spans for a tenant (blocking: waits for the WAL fsync).
pub fn store(state: &AppState, tenant: &str, conv: &mut Converted) -> Result<(), ApiError> {
    let spans = std::mem::take(&mut conv.spans);
    let n = spans.len();
    let t = state.traces.tenant(tenant).map_err(|e| match e {
        strata_engine::traces::TraceError::InvalidTenant(_) => ApiError::bad_data(e.to_string()),
        other => ApiError::new(ErrorKind::Unavailable, format!("storing spans: {other}")),
    })?;
    // Derived metrics count what is about to be stored. If the WAL write fails, the tenant
    // refuses every write until a restart, which also resets these in-memory counters.
    state.spanmetrics.observe(tenant, &spans);
    t.append(spans).map_err(|e| match e {
        strata_engine::traces::TraceError::InvalidTenant(_) => ApiError::bad_data(e.to_string()),
        other => ApiError::new(ErrorKind::Unavailable, format!("storing spans: {other}")),
    })?;
    tracing::debug!(
        tenant,
        spans = n,
        rejected = conv.rejected,
        "stored OTLP spans"
    );
    Ok(())
}

/// `POST /v1/traces`.
pub async fn handle_http(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limit = state.options.max_decoded_body;
    body::handle_export(headers, body, limit, move |tenant, raw, enc| {
        let req = decode_request(raw, enc)?;
        let mut conv = convert(req);
        store(&state, tenant, &mut conv)?;
        Ok(conv.response())
    })
    .await
}

/// The gRPC `TraceService`.
#[derive(Clone)]
pub struct GrpcTraces {
    /// Server state.
    pub state: AppState,
}

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let tenant = super::grpc_tenant(request.metadata())?;
        let req = request.into_inner();
        let st = self.state.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut conv = convert(req);
            store(&st, &tenant, &mut conv)?;
            Ok::<_, ApiError>(conv.response())
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("ingest task failed: {e}")))?;
        res.map(tonic::Response::new)
            .map_err(|e| body::grpc_status(&e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn span(trace: Vec<u8>, id: Vec<u8>, start: u64, end: u64) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![KeyValue {
                key: "http.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(500)),
                }),
                ..KeyValue::default()
            }],
            ..Span::default()
        }
    }

    fn request(spans: Vec<Span>, service: Option<&str>) -> ExportTraceServiceRequest {
        let attributes = service
            .map(|s| {
                vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(s.into())),
                    }),
                    ..KeyValue::default()
                }]
            })
            .unwrap_or_default();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn valid_spans_convert_with_attributes_and_payload() {
        let c = convert(request(
            vec![span(vec![1; 16], vec![2; 8], 10, 20)],
            Some("cart"),
        ));
        assert_eq!(c.rejected, 0);
        assert!(c.response().partial_success.is_none());
        let s = &c.spans[0];
        assert_eq!(s.service, "cart");
        assert_eq!(s.duration_ns(), 10);
        assert_eq!(
            s.attr(Some(AttrScope::Span), "http.status_code"),
            Some(&AttrValue::Int(500))
        );
        let back = ResourceSpans::decode(s.payload.as_slice()).unwrap();
        assert_eq!(back.scope_spans[0].spans[0].name, "GET /");
    }

    #[test]
    fn bad_spans_are_rejected_by_name_and_the_rest_kept() {
        let c = convert(request(
            vec![
                span(vec![1; 8], vec![2; 8], 10, 20),
                span(vec![1; 16], vec![0; 8], 10, 20),
                span(vec![1; 16], vec![2; 8], 30, 20),
                span(vec![1; 16], vec![2; 8], 0, 20),
                span(vec![1; 16], vec![3; 8], 10, 20),
            ],
            Some("x"),
        ));
        assert_eq!(c.spans.len(), 1);
        assert_eq!(c.rejected, 4);
        let msg = c.response().partial_success.unwrap().error_message;
        assert!(msg.contains("traceId must be 16 bytes"), "{msg}");
        assert!(msg.contains("spanId must be 8 bytes"), "{msg}");
        assert!(msg.contains("before startTimeUnixNano"), "{msg}");
        assert!(msg.contains("startTimeUnixNano is missing"), "{msg}");
    }

    #[test]
    fn payload_is_what_prost_encodes() {
        let sp = span(vec![1; 16], vec![2; 8], 10, 20);
        let resource = Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("a".into())),
                }),
                ..KeyValue::default()
            }],
            ..Resource::default()
        };
        for (scope, scope_schema, schema) in [
            (None, "", ""),
            (
                Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope::default()),
                "s1",
                "s2",
            ),
        ] {
            let want = ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: scope.clone(),
                    spans: vec![sp.clone()],
                    schema_url: scope_schema.into(),
                }],
                schema_url: schema.into(),
            }
            .encode_to_vec();
            let got = one_span_payload(
                &resource.encode_to_vec(),
                scope.as_ref().map(Message::encode_to_vec).as_deref(),
                scope_schema,
                &sp,
                schema,
            );
            assert_eq!(got, want);
        }
    }

    #[test]
    fn missing_service_name_becomes_unknown_service() {
        let c = convert(request(vec![span(vec![1; 16], vec![2; 8], 10, 20)], None));
        assert_eq!(c.spans[0].service, UNKNOWN_SERVICE);
        let back = ResourceSpans::decode(c.spans[0].payload.as_slice()).unwrap();
        assert!(
            back.resource
                .unwrap()
                .attributes
                .iter()
                .any(|kv| kv.key == "service.name")
        );
    }

    #[test]
    fn huge_spans_and_long_values() {
        let mut s = span(vec![1; 16], vec![2; 8], 10, 20);
        s.attributes.push(KeyValue {
            key: "big".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "x".repeat(MAX_SPAN_BYTES + 1),
                )),
            }),
            ..KeyValue::default()
        });
        let c = convert(request(vec![s], Some("x")));
        assert_eq!(c.rejected, 1);
        assert!(c.errors[0].contains("more than the limit"));
        let mut s = span(vec![1; 16], vec![2; 8], 10, 20);
        s.attributes.push(KeyValue {
            key: "long".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "y".repeat(MAX_INDEXED_VALUE + 1),
                )),
            }),
            ..KeyValue::default()
        });
        let c = convert(request(vec![s], Some("x")));
        assert_eq!(c.spans.len(), 1);
        assert!(c.spans[0].attr(None, "long").is_none());
    }

    #[test]
    fn json_and_protobuf_decode_the_same() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "name":"GET /x","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"http.status_code","value":{"intValue":"503"}}],"status":{"code":2}}]}]}]}"#;
        let req = decode_request(json.as_bytes(), Encoding::Json).unwrap();
        let pb = req.encode_to_vec();
        let again = decode_request(&pb, Encoding::Protobuf).unwrap();
        assert_eq!(req, again);
        let c = convert(again);
        assert_eq!(c.spans[0].service, "api");
        assert_eq!(c.spans[0].status, 2);
        assert_eq!(
            c.spans[0].attr(None, "http.status_code"),
            Some(&AttrValue::Int(503))
        );
        assert_eq!(c.spans[0].trace_id[0], 0x5b);
        assert!(
            decode_request(b"{not json", Encoding::Json)
                .unwrap_err()
                .message
                .contains("JSON")
        );
        assert!(decode_request(&[0xff, 0xff, 0xff], Encoding::Protobuf).is_err());
        assert!(
            decode_request(
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
                Encoding::Json
            )
            .is_err()
        );
    }
}
