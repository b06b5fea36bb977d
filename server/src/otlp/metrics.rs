//! OTLP metrics → Prometheus series, the way Prometheus's own OTLP receiver translates them,
//! written into the metrics engine; the `/v1/metrics` handler and the gRPC `MetricsService`.
//!
//! # Translation (as Prometheus 3 with its default settings)
//!
//! - **Names**: characters outside `[a-zA-Z0-9_:]` become `_`, runs of `_` collapse, a leading
//!   digit gets a `_` prefix; the unit is appended as a word (`ms` → `_milliseconds`, `By` →
//!   `_bytes`, `By/s` → `_bytes_per_second`, `{requests}` → nothing) unless the name already ends
//!   with it; monotonic sums get `_total`; gauges with unit `1` get `_ratio`.
//! - **Labels**: data point attributes, names sanitized the same way (a leading digit gets
//!   `key_`); `job` from `service.namespace/service.name`, `instance` from
//!   `service.instance.id`; the other resource attributes go to one `target_info` series
//!   (value 1) per resource, as Prometheus does.
//! - **Types**: gauge → one series; cumulative sum → one series (`_total` when monotonic);
//!   cumulative histogram → `_bucket{le}` (cumulative counts, `+Inf` last), `_sum`, `_count`;
//!   summary → `{quantile}`, `_sum`, `_count`. A data point flagged "no recorded value" is
//!   written as Prometheus's stale marker. Metadata (type, help, unit) is recorded.
//! - **Refused** (counted in `partialSuccess.rejectedDataPoints`, named in `errorMessage`): delta
//!   temporality (Prometheus also refuses it unless asked to convert), exponential histograms
//!   (native histograms are not stored yet), points without a timestamp, and whatever the engine
//!   refuses (out of order, too old, limits).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Metric, NumberDataPoint, metric, number_data_point,
};
use prost::Message;
use strata_engine::{IngestSeries, Labels, MetricMetadata};

use super::body::{self, Encoding};
use crate::api::{ApiError, ErrorKind};
use crate::app::AppState;

/// Prometheus's staleness marker.
const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// Samples by sorted label pairs (`__name__` included).
pub type SeriesMap = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// Series of a request, converted, with what was refused.
#[derive(Debug, Default)]
pub struct ConvertedMetrics {
    /// Samples per label set.
    pub series: SeriesMap,
    /// Metadata per family.
    pub metadata: BTreeMap<String, MetricMetadata>,
    /// Data points refused during conversion.
    pub rejected: i64,
    /// The first few reasons.
    pub errors: Vec<String>,
}

impl ConvertedMetrics {
    fn reject(&mut self, n: usize, msg: String) {
        self.rejected += n as i64;
        if self.errors.len() < 5 {
            self.errors.push(msg);
        }
    }

    fn push(&mut self, labels: Vec<(String, String)>, t_ns: u64, v: f64) {
        let mut labels = labels;
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        self.series
            .entry(labels)
            .or_default()
            .push(((t_ns / 1_000_000) as i64, v));
    }
}

/// Sanitizes a metric or label name to `[a-zA-Z0-9_:]`, collapsing `_` runs.
pub fn sanitize(name: &str, label: bool) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':');
        let c = if ok { c } else { '_' };
        if c == '_' && out.ends_with('_') && !out.is_empty() {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, if label { "key_" } else { "_" });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The unit as suffix words (`By/s` → `bytes_per_second`; `{x}` and `1` → none).
fn unit_suffix(unit: &str) -> String {
    // Annotations in braces carry no unit.
    let mut u = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => u.push(c),
            _ => {}
        }
    }
    let u = u.trim();
    let (main, per) = match u.split_once('/') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (u, None),
    };
    let mut parts = Vec::new();
    if !main.is_empty() && main != "1" {
        parts.push(
            unit_word(main)
                .map(str::to_string)
                .unwrap_or_else(|| sanitize(main, true)),
        );
    }
    if let Some(p) = per.filter(|p| !p.is_empty()) {
        parts.push(format!(
            "per_{}",
            per_word(p)
                .map(str::to_string)
                .unwrap_or_else(|| sanitize(p, true))
        ));
    }
    parts.join("_").trim_matches('_').to_string()
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(m: &Metric) -> String {
    let mut name = sanitize(&m.name, false).trim_end_matches('_').to_string();
    if name.is_empty() {
        name.push('_');
    }
    let suffix = unit_suffix(&m.unit);
    if !suffix.is_empty() && !name.ends_with(&format!("_{suffix}")) && name != suffix {
        name = format!("{name}_{suffix}");
    }
    match &m.data {
        Some(metric::Data::Sum(s)) if s.is_monotonic && !name.ends_with("_total") => {
            name.push_str("_total");
        }
        Some(metric::Data::Gauge(_)) if m.unit.trim() == "1" && !name.ends_with("_ratio") => {
            name.push_str("_ratio");
        }
        _ => {}
    }
    name
}

fn value_text(v: &AnyValue) -> String {
    match v.value.as_ref() {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => serde_json::to_string(other).unwrap_or_default(),
        None => String::new(),
    }
}

fn attrs_to_labels(kvs: &[KeyValue], out: &mut Vec<(String, String)>) {
    for kv in kvs {
        let v = kv.value.as_ref().map(value_text).unwrap_or_default();
        if !v.is_empty() {
            out.push((sanitize(&kv.key, true), v));
        }
    }
}

fn number(p: &NumberDataPoint) -> f64 {
    if p.flags & (DataPointFlags::NoRecordedValueMask as u32) != 0 {
        return STALE_NAN;
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn stale(flags: u32) -> bool {
    flags & (DataPointFlags::NoRecordedValueMask as u32) != 0
}

/// Formats a bucket bound as Prometheus prints `le` values.
fn le(b: f64) -> String {
    if b == f64::INFINITY {
        "+Inf".into()
    } else {
        crate::api::fmt_value(b)
    }
}

/// Converts an export request.
pub fn convert(req: &ExportMetricsServiceRequest) -> ConvertedMetrics {
    let mut out = ConvertedMetrics::default();
    for rm in &req.resource_metrics {
        let rattrs = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let get = |k: &str| {
            rattrs
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.as_ref())
                .map(value_text)
                .filter(|v| !v.is_empty())
        };
        let mut base = Vec::new();
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
            (None, Some(n)) => Some(n),
            _ => None,
        };
        if let Some(j) = &job {
            base.push(("job".to_string(), j.clone()));
        }
        if let Some(i) = get("service.instance.id") {
            base.push(("instance".to_string(), i));
        }
        // target_info: the other resource attributes, once per resource, at the newest point.
        let mut newest = 0u64;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let name = metric_name(m);
                let (mtype, points) = convert_metric(m, &name, &base, &mut out);
                if let Some(t) = points {
                    newest = newest.max(t);
                }
                out.metadata
                    .entry(name_family(&name, mtype))
                    .or_insert(MetricMetadata {
                        metric_type: mtype.to_string(),
                        help: m.description.clone(),
                        unit: m.unit.clone(),
                    });
            }
        }
        let mut info = base.clone();
        for kv in rattrs {
            if matches!(
                kv.key.as_str(),
                "service.name" | "service.namespace" | "service.instance.id"
            ) {
                continue;
            }
            if let Some(v) = kv.value.as_ref().map(value_text).filter(|v| !v.is_empty()) {
                info.push((sanitize(&kv.key, true), v));
            }
        }
        if newest > 0 && info.len() > base.len() {
            info.push(("__name__".into(), "target_info".into()));
            out.push(info, newest, 1.0);
        }
    }
    out
}

/// The family a series name belongs to (histogram and summary suffixes dropped).
fn name_family(name: &str, mtype: &str) -> String {
    let _ = mtype;
    name.to_string()
}

/// Converts one metric; returns its Prometheus type and the newest point time.
fn convert_metric(
    m: &Metric,
    name: &str,
    base: &[(String, String)],
    out: &mut ConvertedMetrics,
) -> (&'static str, Option<u64>) {
    let labels = |attrs: &[KeyValue], extra: &[(&str, String)], n: &str| {
        let mut l = base.to_vec();
        attrs_to_labels(attrs, &mut l);
        for (k, v) in extra {
            l.push(((*k).to_string(), v.clone()));
        }
        l.push(("__name__".into(), n.to_string()));
        l
    };
    let mut newest = None;
    let mut seen = |t: u64| newest = Some(newest.unwrap_or(0).max(t));
    match &m.data {
        Some(metric::Data::Gauge(g)) => {
            for p in &g.data_points {
                if p.time_unix_nano == 0 {
                    out.reject(
                        1,
                        format!("metric {:?}: data point without timeUnixNano", m.name),
                    );
                    continue;
                }
                seen(p.time_unix_nano);
                out.push(
                    labels(&p.attributes, &[], name),
                    p.time_unix_nano,
                    number(p),
                );
            }
            ("gauge", newest)
        }
        Some(metric::Data::Sum(s)) => {
            if s.aggregation_temporality == AggregationTemporality::Delta as i32 {
                out.reject(
                    s.data_points.len(),
                    format!(
                        "metric {:?}: delta temporality is not supported (send cumulative)",
                        m.name
                    ),
                );
                return ("counter", None);
            }
            for p in &s.data_points {
                if p.time_unix_nano == 0 {
                    out.reject(
                        1,
                        format!("metric {:?}: data point without timeUnixNano", m.name),
                    );
                    continue;
                }
                seen(p.time_unix_nano);
                out.push(
                    labels(&p.attributes, &[], name),
                    p.time_unix_nano,
                    number(p),
                );
            }
            (if s.is_monotonic { "counter" } else { "gauge" }, newest)
        }
        Some(metric::Data::Histogram(h)) => {
            if h.aggregation_temporality == AggregationTemporality::Delta as i32 {
                out.reject(
                    h.data_points.len(),
                    format!(
                        "metric {:?}: delta temporality is not supported (send cumulative)",
                        m.name
                    ),
                );
                return ("histogram", None);
            }
            for p in &h.data_points {
                if p.time_unix_nano == 0 {
                    out.reject(
                        1,
                        format!("metric {:?}: data point without timeUnixNano", m.name),
                    );
                    continue;
                }
                if !p.bucket_counts.is_empty()
                    && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                {
                    out.reject(
                        1,
                        format!(
                            "metric {:?}: {} bucket counts for {} bounds (want bounds + 1)",
                            m.name,
                            p.bucket_counts.len(),
                            p.explicit_bounds.len()
                        ),
                    );
                    continue;
                }
                seen(p.time_unix_nano);
                let t = p.time_unix_nano;
                let st = stale(p.flags);
                let val = |v: f64| if st { STALE_NAN } else { v };
                if let Some(sum) = p.sum {
                    out.push(
                        labels(&p.attributes, &[], &format!("{name}_sum")),
                        t,
                        val(sum),
                    );
                }
                out.push(
                    labels(&p.attributes, &[], &format!("{name}_count")),
                    t,
                    val(p.count as f64),
                );
                let mut cum = 0u64;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    cum = cum.saturating_add(*c);
                    let bound = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    out.push(
                        labels(
                            &p.attributes,
                            &[("le", le(bound))],
                            &format!("{name}_bucket"),
                        ),
                        t,
                        val(cum as f64),
                    );
                }
                if p.bucket_counts.is_empty() {
                    out.push(
                        labels(
                            &p.attributes,
                            &[("le", "+Inf".into())],
                            &format!("{name}_bucket"),
                        ),
                        t,
                        val(p.count as f64),
                    );
                }
            }
            ("histogram", newest)
        }
        Some(metric::Data::Summary(s)) => {
            for p in &s.data_points {
                if p.time_unix_nano == 0 {
                    out.reject(
                        1,
                        format!("metric {:?}: data point without timeUnixNano", m.name),
                    );
                    continue;
                }
                seen(p.time_unix_nano);
                let t = p.time_unix_nano;
                let st = stale(p.flags);
                let val = |v: f64| if st { STALE_NAN } else { v };
                out.push(
                    labels(&p.attributes, &[], &format!("{name}_sum")),
                    t,
                    val(p.sum),
                );
                out.push(
                    labels(&p.attributes, &[], &format!("{name}_count")),
                    t,
                    val(p.count as f64),
                );
                for q in &p.quantile_values {
                    out.push(
                        labels(
                            &p.attributes,
                            &[("quantile", crate::api::fmt_value(q.quantile))],
                            name,
                        ),
                        t,
                        val(q.value),
                    );
                }
            }
            ("summary", newest)
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            out.reject(
                h.data_points.len(),
                format!(
                    "metric {:?}: exponential histograms are not supported yet",
                    m.name
                ),
            );
            ("histogram", None)
        }
        None => ("unknown", None),
    }
}

/// Writes converted metrics into the tenant's metrics engine (blocking: waits for the WAL).
pub fn store(state: &AppState, tenant: &str, conv: &mut ConvertedMetrics) -> Result<(), ApiError> {
    let mut labels = Vec::with_capacity(conv.series.len());
    for pairs in conv.series.keys() {
        match Labels::from_pairs(pairs) {
            Ok(l) => labels.push(Some(l)),
            Err(e) => {
                labels.push(None);
                if conv.errors.len() < 5 {
                    conv.errors.push(format!("invalid labels: {e}"));
                }
            }
        }
    }
    let mut batch = Vec::with_capacity(conv.series.len());
    let mut invalid = 0;
    for ((_, samples), l) in conv.series.iter_mut().zip(&labels) {
        samples.sort_by_key(|s| s.0);
        match l {
            Some(l) => batch.push(IngestSeries {
                labels: l,
                samples: samples.as_slice(),
                exemplars: &[],
            }),
            None => invalid += samples.len(),
        }
    }
    conv.rejected += invalid as i64;
    let meta: Vec<(&str, MetricMetadata)> = conv
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let report = state
        .engine
        .tenant(tenant)
        .and_then(|t| t.ingest(&batch, &meta))
        .map_err(|e| match e {
            strata_engine::Error::InvalidTenant(_) => ApiError::bad_data(e.to_string()),
            other => ApiError::new(ErrorKind::Unavailable, format!("storing metrics: {other}")),
        })?;
    let refused = report.rejected + report.samples_limited;
    if refused > 0 {
        conv.rejected += refused as i64;
        for (l, e) in report.errors.iter().take(3) {
            if conv.errors.len() < 5 {
                conv.errors.push(format!("{l:?}: {e}"));
            }
        }
        if report.samples_limited > 0 && conv.errors.len() < 5 {
            conv.errors
                .push(format!("series limit of {} reached", report.series_limit));
        }
    }
    Ok(())
}

fn response(conv: &ConvertedMetrics) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (conv.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: conv.rejected,
            error_message: format!(
                "{} data point(s) rejected: {}",
                conv.rejected,
                conv.errors.join("; ")
            ),
        }),
    }
}

/// Decodes a request body in the given encoding.
pub fn decode_request(
    bytes: &[u8],
    enc: Encoding,
) -> Result<ExportMetricsServiceRequest, ApiError> {
    match enc {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(bytes).map_err(|e| {
            ApiError::bad_data(format!(
                "decoding ExportMetricsServiceRequest protobuf: {e}"
            ))
        }),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_data(format!("decoding ExportMetricsServiceRequest JSON: {e}"))
        }),
    }
}

/// `POST /v1/metrics`.
pub async fn handle_http(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limit = state.options.max_decoded_body;
    body::handle_export(headers, body, limit, move |tenant, raw, enc| {
        let req = decode_request(raw, enc)?;
        let mut conv = convert(&req);
        store(&state, tenant, &mut conv)?;
        Ok(response(&conv))
    })
    .await
}

/// The gRPC `MetricsService`.
#[derive(Clone)]
pub struct GrpcMetrics {
    /// Server state.
    pub state: AppState,
}

#[tonic::async_trait]
impl MetricsService for GrpcMetrics {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let tenant = super::grpc_tenant(request.metadata())?;
        let req = request.into_inner();
        let st = self.state.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut conv = convert(&req);
            store(&st, &tenant, &mut conv)?;
            Ok::<_, ApiError>(response(&conv))
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
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
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

    fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: "help".into(),
            data: Some(data),
            ..Metric::default()
        }
    }

    fn point(t: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(v)),
            attributes: attrs,
            ..NumberDataPoint::default()
        }
    }

    #[test]
    fn names_follow_prometheus() {
        let sum = |mono| {
            metric::Data::Sum(Sum {
                is_monotonic: mono,
                aggregation_temporality: 2,
                data_points: vec![],
            })
        };
        let gauge = metric::Data::Gauge(Gauge {
            data_points: vec![],
        });
        assert_eq!(
            metric_name(&metric("http.server.duration", "ms", gauge.clone())),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name(&metric("http.server.requests", "{request}", sum(true))),
            "http_server_requests_total"
        );
        assert_eq!(
            metric_name(&metric("system.network.io", "By/s", sum(true))),
            "system_network_io_bytes_per_second_total"
        );
        assert_eq!(
            metric_name(&metric("cpu.utilization", "1", gauge.clone())),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name(&metric("queue_size_bytes", "By", gauge.clone())),
            "queue_size_bytes"
        );
        assert_eq!(
            metric_name(&metric("requests_total", "", sum(true))),
            "requests_total"
        );
        assert_eq!(metric_name(&metric("temp", "", sum(false))), "temp");
        assert_eq!(sanitize("2xx.count", false), "_2xx_count");
        assert_eq!(sanitize("2xx", true), "key_2xx");
        assert_eq!(sanitize("a..b--c", true), "a_b_c");
    }

    #[test]
    fn resource_becomes_job_instance_and_target_info() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "cart"),
                        kv("service.namespace", "shop"),
                        kv("service.instance.id", "i-1"),
                        kv("host.name", "h1"),
                    ],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(
                            "queue.depth",
                            "",
                            metric::Data::Gauge(Gauge {
                                data_points: vec![point(
                                    2_000_000_000,
                                    7.0,
                                    vec![kv("queue", "q1")],
                                )],
                            }),
                        ),
                        metric(
                            "req.latency",
                            "s",
                            metric::Data::Histogram(Histogram {
                                aggregation_temporality: 2,
                                data_points: vec![HistogramDataPoint {
                                    time_unix_nano: 2_000_000_000,
                                    count: 6,
                                    sum: Some(3.5),
                                    bucket_counts: vec![1, 2, 3],
                                    explicit_bounds: vec![0.1, 1.0],
                                    ..HistogramDataPoint::default()
                                }],
                            }),
                        ),
                        metric(
                            "delta.count",
                            "",
                            metric::Data::Sum(Sum {
                                is_monotonic: true,
                                aggregation_temporality: 1,
                                data_points: vec![point(1, 1.0, vec![])],
                            }),
                        ),
                    ],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let c = convert(&req);
        let find = |name: &str, extra: Option<(&str, &str)>| -> f64 {
            c.series
                .iter()
                .find(|(l, _)| {
                    l.iter().any(|(k, v)| k == "__name__" && v == name)
                        && extra.is_none_or(|(ek, ev)| l.iter().any(|(k, v)| k == ek && v == ev))
                })
                .map(|(_, s)| s[0].1)
                .unwrap_or_else(|| {
                    panic!(
                        "no {name} {extra:?} in {:?}",
                        c.series.keys().collect::<Vec<_>>()
                    )
                })
        };
        assert_eq!(find("queue_depth", Some(("job", "shop/cart"))), 7.0);
        assert_eq!(find("queue_depth", Some(("instance", "i-1"))), 7.0);
        assert_eq!(find("req_latency_seconds_bucket", Some(("le", "0.1"))), 1.0);
        assert_eq!(find("req_latency_seconds_bucket", Some(("le", "1"))), 3.0);
        assert_eq!(
            find("req_latency_seconds_bucket", Some(("le", "+Inf"))),
            6.0
        );
        assert_eq!(find("req_latency_seconds_count", None), 6.0);
        assert_eq!(find("req_latency_seconds_sum", None), 3.5);
        assert_eq!(find("target_info", Some(("host_name", "h1"))), 1.0);
        assert_eq!(c.rejected, 1);
        assert!(c.errors[0].contains("delta temporality"));
        let (_, s) = c.series.iter().next().unwrap();
        assert_eq!(s[0].0, 2000, "timestamps in ms");
    }

    #[test]
    fn stale_points_and_bad_histograms() {
        let mut p = point(5_000_000, 1.0, vec![]);
        p.flags = DataPointFlags::NoRecordedValueMask as u32;
        assert_eq!(number(&p).to_bits(), STALE_NAN.to_bits());
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![metric(
                        "h",
                        "",
                        metric::Data::Histogram(Histogram {
                            aggregation_temporality: 2,
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 1,
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![0.1, 1.0],
                                ..HistogramDataPoint::default()
                            }],
                        }),
                    )],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let c = convert(&req);
        assert_eq!(c.rejected, 1);
        assert!(c.errors[0].contains("bucket counts"));
    }
}
