//! OTLP logs: conversion of `ExportLogsServiceRequest` into log streams, and the HTTP
//! (`/v1/logs`) and gRPC (`LogsService/Export`) handlers.
//!
//! # Mapping (as Loki's OTLP ingestion maps it)
//!
//! - **Stream labels**: the resource attributes that identify where a log comes from —
//!   `service.name`, `service.namespace`, `service.instance.id`, `deployment.environment`
//!   (and `deployment.environment.name`), `cloud.region`, `cloud.availability_zone`,
//!   `k8s.cluster.name`, `k8s.namespace.name`, `k8s.pod.name`, `k8s.container.name`,
//!   `container.name`, `k8s.replicaset.name`, `k8s.deployment.name`, `k8s.statefulset.name`,
//!   `k8s.daemonset.name`, `k8s.cronjob.name`, `k8s.job.name` — with `.` and other characters
//!   outside `[a-zA-Z0-9_]` replaced by `_` (`service.name` → `service_name`). A resource
//!   without `service.name` gets `service_name="unknown_service"`.
//! - **Structured metadata**: every other resource attribute, every log attribute, the scope
//!   (`scope_name`, `scope_version`), `trace_id` and `span_id` (lowercase hex),
//!   `severity_text`, `severity_number` and `flags` (when set), names sanitized the same way.
//! - **Line**: the body; a string body as is, any other body as JSON.
//! - **Timestamp**: `timeUnixNano`, else `observedTimeUnixNano`, else the time of arrival.
//!
//! Records the store refuses (line size, window, stream limit) are counted in
//! `partialSuccess.rejectedLogRecords` with the first reasons in `errorMessage`; the client
//! must not retry them. The tenant's ingestion rate limit answers 429 (gRPC
//! `RESOURCE_EXHAUSTED`), which clients retry.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use strata_engine::Labels;
use strata_engine::labels::Label;
use strata_engine::logs::{LogEntry, StreamEntries};

use super::body::{self, Encoding};
use crate::api::{ApiError, ErrorKind};
use crate::app::AppState;

/// Resource attributes that become stream labels.
pub const STREAM_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Makes an attribute name a label name (`service.name` → `service_name`).
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn json_value(v: &AnyValue) -> serde_json::Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => serde_json::Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(any_value::Value::BytesValue(b)) => {
            serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
        }
        Some(any_value::Value::ArrayValue(a)) => {
            serde_json::Value::Array(a.values.iter().map(json_value).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|k| {
                    (
                        k.key.clone(),
                        k.value.as_ref().map_or(serde_json::Value::Null, json_value),
                    )
                })
                .collect(),
        ),
        // A string-table reference (profiles only); logs carry no string table.
        Some(any_value::Value::StringValueStrindex(i)) => serde_json::Value::from(*i),
        None => serde_json::Value::Null,
    }
}

/// An attribute value as a string (strings as is, everything else as JSON).
pub fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        None => String::new(),
        Some(_) => v.map(json_value).map(|j| j.to_string()).unwrap_or_default(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Log records of a request, converted, with what was refused.
#[derive(Debug, Default)]
pub struct ConvertedLogs {
    /// Streams to store.
    pub streams: Vec<StreamEntries>,
    /// Records refused while converting or storing.
    pub rejected: i64,
    /// The first reasons.
    pub errors: Vec<String>,
    /// Bytes of the converted entries (rate limit).
    pub bytes: usize,
}

impl ConvertedLogs {
    fn reject(&mut self, n: i64, msg: String) {
        self.rejected += n;
        if self.errors.len() < 5 {
            self.errors.push(msg);
        }
    }

    /// The OTLP response: `partialSuccess` only when something was refused.
    pub fn response(&self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: (self.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: self.rejected,
                error_message: format!(
                    "{} log record(s) rejected: {}",
                    self.rejected,
                    self.errors.join("; ")
                ),
            }),
        }
    }
}

fn push_meta(meta: &mut Vec<(String, String)>, kvs: &[KeyValue]) {
    for kv in kvs {
        let v = value_string(kv.value.as_ref());
        if !v.is_empty() {
            meta.push((sanitize(&kv.key), v));
        }
    }
}

/// Converts a request into streams (labels from resource attributes, the rest as metadata).
pub fn convert(req: ExportLogsServiceRequest, now_ns: i64) -> ConvertedLogs {
    let mut out = ConvertedLogs::default();
    let mut by_labels: BTreeMap<Labels, Vec<LogEntry>> = BTreeMap::new();
    for rl in req.resource_logs {
        let attrs = rl.resource.map(|r| r.attributes).unwrap_or_default();
        let mut labels: Vec<Label> = Vec::new();
        let mut resource_meta: Vec<(String, String)> = Vec::new();
        for kv in &attrs {
            let v = value_string(kv.value.as_ref());
            if v.is_empty() {
                continue;
            }
            if STREAM_ATTRIBUTES.contains(&kv.key.as_str()) {
                let name = sanitize(&kv.key);
                if !labels.iter().any(|l| l.name == name) {
                    labels.push(Label::new(name, v));
                }
            } else {
                resource_meta.push((sanitize(&kv.key), v));
            }
        }
        if !labels.iter().any(|l| l.name == "service_name") {
            labels.push(Label::new("service_name", "unknown_service"));
        }
        let n_records: usize = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
        let labels = match Labels::new(labels) {
            Ok(l) => l,
            Err(e) => {
                out.reject(n_records as i64, format!("resource labels: {e}"));
                continue;
            }
        };
        let entries = by_labels.entry(labels).or_default();
        for sl in rl.scope_logs {
            let mut scope_meta = Vec::new();
            if let Some(scope) = &sl.scope {
                if !scope.name.is_empty() {
                    scope_meta.push(("scope_name".to_string(), scope.name.clone()));
                }
                if !scope.version.is_empty() {
                    scope_meta.push(("scope_version".to_string(), scope.version.clone()));
                }
            }
            for r in sl.log_records {
                let ts = [r.time_unix_nano, r.observed_time_unix_nano]
                    .into_iter()
                    .find(|&t| t != 0)
                    .map_or(now_ns, |t| i64::try_from(t).unwrap_or(i64::MAX));
                let line = value_string(r.body.as_ref());
                let mut metadata = resource_meta.clone();
                metadata.extend(scope_meta.iter().cloned());
                push_meta(&mut metadata, &r.attributes);
                if !r.trace_id.is_empty() {
                    metadata.push(("trace_id".into(), hex(&r.trace_id)));
                }
                if !r.span_id.is_empty() {
                    metadata.push(("span_id".into(), hex(&r.span_id)));
                }
                if !r.severity_text.is_empty() {
                    metadata.push(("severity_text".into(), r.severity_text.clone()));
                }
                if r.severity_number != 0 {
                    metadata.push(("severity_number".into(), r.severity_number.to_string()));
                }
                if r.flags != 0 {
                    metadata.push(("flags".into(), r.flags.to_string()));
                }
                let e = LogEntry { ts, line, metadata };
                out.bytes += e.size();
                entries.push(e);
            }
        }
    }
    out.streams = by_labels
        .into_iter()
        .filter(|(_, e)| !e.is_empty())
        .map(|(labels, entries)| StreamEntries { labels, entries })
        .collect();
    out
}

/// Decodes a request body in the given encoding.
pub fn decode_request(bytes: &[u8], enc: Encoding) -> Result<ExportLogsServiceRequest, ApiError> {
    match enc {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(bytes).map_err(|e| {
            ApiError::bad_data(format!("decoding ExportLogsServiceRequest protobuf: {e}"))
        }),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_data(format!("decoding ExportLogsServiceRequest JSON: {e}"))
        }),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Stores converted logs for a tenant (blocking: waits for the WAL fsync).
pub fn store(state: &AppState, tenant: &str, conv: &mut ConvertedLogs) -> Result<(), ApiError> {
    let loki = &state.loki;
    if let Err(rate) = loki.take(tenant, conv.bytes) {
        return Err(ApiError::new(
            ErrorKind::TooManyRequests,
            format!(
                "tenant {tenant}: ingestion rate limit of {rate} bytes/s exceeded; retry later"
            ),
        ));
    }
    let streams = std::mem::take(&mut conv.streams);
    let store = loki
        .engine
        .tenant(tenant)
        .map_err(|e| ApiError::bad_data(e.to_string()))?;
    let report = store
        .push(streams, &loki.settings.limits)
        .map_err(|e| ApiError::new(ErrorKind::Unavailable, format!("storing logs: {e}")))?;
    if report.rejected > 0 {
        let reasons: Vec<String> = report.rejections.iter().map(ToString::to_string).collect();
        conv.reject(report.rejected as i64, reasons.join("; "));
    }
    Ok(())
}

/// `POST /v1/logs`.
pub async fn handle_http(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limit = state.options.max_decoded_body;
    body::handle_export(headers, body, limit, move |tenant, raw, enc| {
        let req = decode_request(raw, enc)?;
        let mut conv = convert(req, now_ns());
        store(&state, tenant, &mut conv)?;
        Ok(conv.response())
    })
    .await
}

/// The gRPC `LogsService`.
#[derive(Clone)]
pub struct GrpcLogs {
    /// Server state.
    pub state: AppState,
}

#[tonic::async_trait]
impl LogsService for GrpcLogs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let tenant = super::grpc_tenant(request.metadata())?;
        let req = request.into_inner();
        let st = self.state.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut conv = convert(req, now_ns());
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
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..KeyValue::default()
        }
    }

    fn request() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("k8s.pod.name", "p-1"),
                        kv("host.name", "h1"),
                    ],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.logger".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: vec![LogRecord {
                        time_unix_nano: 5,
                        severity_text: "ERROR".into(),
                        severity_number: 17,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("payment failed".into())),
                        }),
                        attributes: vec![kv("http.method", "POST")],
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    #[test]
    fn resource_attributes_become_labels_and_metadata() {
        let c = convert(request(), 99);
        assert_eq!(c.streams.len(), 1);
        let s = &c.streams[0];
        assert_eq!(s.labels.get("service_name"), Some("checkout"));
        assert_eq!(s.labels.get("k8s_pod_name"), Some("p-1"));
        assert_eq!(s.labels.get("host_name"), None);
        let e = &s.entries[0];
        assert_eq!(e.ts, 5);
        assert_eq!(e.line, "payment failed");
        let m: BTreeMap<&str, &str> = e
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(m["host_name"], "h1");
        assert_eq!(m["http_method"], "POST");
        assert_eq!(m["scope_name"], "app.logger");
        assert_eq!(m["trace_id"], "abababababababababababababababab");
        assert_eq!(m["span_id"], "cdcdcdcdcdcdcdcd");
        assert_eq!(m["severity_text"], "ERROR");
        assert_eq!(m["severity_number"], "17");
    }

    #[test]
    fn missing_service_and_structured_bodies() {
        let mut req = request();
        req.resource_logs[0].resource = None;
        let r = &mut req.resource_logs[0].scope_logs[0].log_records[0];
        r.time_unix_nano = 0;
        r.observed_time_unix_nano = 0;
        r.body = Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![kv("a", "b")],
                },
            )),
        });
        let c = convert(req, 42);
        assert_eq!(
            c.streams[0].labels.get("service_name"),
            Some("unknown_service")
        );
        assert_eq!(c.streams[0].entries[0].ts, 42);
        assert_eq!(c.streams[0].entries[0].line, r#"{"a":"b"}"#);
    }

    #[test]
    fn json_and_protobuf_decode_the_same() {
        let req = request();
        let pb = decode_request(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
        let json = serde_json::to_vec(&req).unwrap();
        let js = decode_request(&json, Encoding::Json).unwrap();
        assert_eq!(pb, js);
        assert!(decode_request(b"{", Encoding::Json).is_err());
    }
}
