//! Span metrics and service-graph metrics: RED figures derived from the spans as they arrive,
//! written into the metrics engine as ordinary Prometheus series.
//!
//! This is the link from a latency graph to a slow trace: `traces_spanmetrics_latency_bucket`
//! carries exemplars whose `trace_id` opens the trace, and Grafana's node graph can draw the
//! service map from `traces_service_graph_*` with PromQL alone. Names and labels are those of
//! Tempo's metrics generator, so existing dashboards work:
//!
//! | Series | Labels |
//! |---|---|
//! | `traces_spanmetrics_calls_total` | `service`, `span_name`, `span_kind` (`SPAN_KIND_SERVER` …), `status_code` (`STATUS_CODE_ERROR` …) |
//! | `traces_spanmetrics_latency_bucket` / `_sum` / `_count` (seconds) | the same, plus `le` |
//! | `traces_service_graph_request_total` | `client`, `server`, `connection_type` (`""`, `messaging_system`) |
//! | `traces_service_graph_request_failed_total` | the same |
//! | `traces_service_graph_request_server_seconds_bucket` / `_sum` / `_count` | the same, plus `le` |
//! | `traces_service_graph_request_client_seconds_bucket` / `_sum` / `_count` | the same, plus `le` |
//!
//! # How
//!
//! Every stored batch of spans is folded into per-tenant cumulative counters and histograms in
//! memory ([`SpanMetrics::observe`]). Service-graph edges need both halves of a call: a client
//! (producer) span waits for its server (consumer) child by `(trace id, span id)` and vice versa,
//! for up to [`PAIR_TIMEOUT`]; unpaired halves are dropped (counted in
//! `strata_spanmetrics_unpaired`, a field of [`SpanMetrics`]). Every [`FLUSH_INTERVAL`] the
//! current values of all series are appended to the tenant's metrics engine at the flush time,
//! like a scrape, with the newest exemplar of each latency bucket and call counter. Counters
//! restart from zero when the server restarts, which `rate()` handles as a counter reset.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use strata_engine::traces::SpanRecord;
use strata_engine::{Exemplar, IngestSeries, Labels, MetricMetadata};

use crate::app::AppState;

/// How often the series are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(15);
/// How long half of a call waits for the other half.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// Most unpaired halves kept per tenant (oldest dropped beyond).
const MAX_PENDING: usize = 100_000;
/// Histogram bucket bounds, seconds (Tempo's defaults).
pub const BUCKETS: [f64; 12] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
];

#[derive(Clone, Debug, Default)]
struct Hist {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    exemplar: Option<([u8; 16], f64)>,
}

impl Hist {
    fn observe(&mut self, secs: f64, trace: [u8; 16]) {
        for (b, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
        self.exemplar = Some((trace, secs));
    }
}

#[derive(Clone, Debug, Default)]
struct Edge {
    total: u64,
    failed: u64,
    server: Hist,
    client: Hist,
}

struct Half {
    service: String,
    secs: f64,
    failed: bool,
    messaging: bool,
    at: Instant,
}

#[derive(Default)]
struct TenantAgg {
    /// `(service, span_name, kind, status)` → latency histogram (its count is the calls).
    spans: HashMap<(String, String, u8, u8), Hist>,
    /// `(client, server, connection_type)` → edge.
    edges: HashMap<(String, String, &'static str), Edge>,
    /// Client halves by `(trace, client span id)`.
    clients: HashMap<([u8; 16], [u8; 8]), Half>,
    /// Server halves by `(trace, parent span id)`.
    servers: HashMap<([u8; 16], [u8; 8]), Half>,
    dirty: bool,
}

/// The span-metrics aggregator of all tenants.
#[derive(Default)]
pub struct SpanMetrics {
    tenants: Mutex<HashMap<String, TenantAgg>>,
    /// Halves of calls that found no other half in time.
    pub unpaired: std::sync::atomic::AtomicU64,
}

fn kind_label(k: u8) -> &'static str {
    match k {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

fn status_label(s: u8) -> &'static str {
    match s {
        1 => "STATUS_CODE_OK",
        2 => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

impl SpanMetrics {
    /// Folds stored spans into the tenant's figures.
    pub fn observe(&self, tenant: &str, spans: &[SpanRecord]) {
        let mut all = self.tenants.lock();
        let agg = all.entry(tenant.to_string()).or_default();
        agg.dirty = true;
        let now = Instant::now();
        for s in spans {
            let secs = s.duration_ns() as f64 / 1e9;
            agg.spans
                .entry((s.service.clone(), s.name.clone(), s.kind, s.status))
                .or_default()
                .observe(secs, s.trace_id);
            let half = || Half {
                service: s.service.clone(),
                secs,
                failed: s.status == 2,
                messaging: matches!(s.kind, 4 | 5),
                at: now,
            };
            match s.kind {
                3 | 4 => {
                    let key = (s.trace_id, s.span_id);
                    match agg.servers.remove(&key) {
                        Some(server) => pair(agg, &half(), &server, s.trace_id),
                        None => {
                            agg.clients.insert(key, half());
                        }
                    }
                }
                2 | 5 if !s.is_root() => {
                    let key = (s.trace_id, s.parent_span_id);
                    match agg.clients.remove(&key) {
                        Some(client) => pair(agg, &client, &half(), s.trace_id),
                        None => {
                            agg.servers.insert(key, half());
                        }
                    }
                }
                _ => {}
            }
        }
        let expired_before = agg.clients.len() + agg.servers.len();
        agg.clients
            .retain(|_, h| now.duration_since(h.at) < PAIR_TIMEOUT);
        agg.servers
            .retain(|_, h| now.duration_since(h.at) < PAIR_TIMEOUT);
        while agg.clients.len() > MAX_PENDING {
            let Some(k) = agg.clients.keys().next().copied() else {
                break;
            };
            agg.clients.remove(&k);
        }
        while agg.servers.len() > MAX_PENDING {
            let Some(k) = agg.servers.keys().next().copied() else {
                break;
            };
            agg.servers.remove(&k);
        }
        let dropped = expired_before.saturating_sub(agg.clients.len() + agg.servers.len());
        self.unpaired
            .fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the current value of every series of every tenant with new observations.
    pub fn flush(&self, state: &AppState) {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let snapshot: Vec<(String, Vec<Sample>)> = {
            let mut all = self.tenants.lock();
            all.iter_mut()
                .filter(|(_, a)| a.dirty)
                .map(|(t, a)| {
                    a.dirty = false;
                    (t.clone(), series(a, now_ms))
                })
                .collect()
        };
        for (tenant, samples) in snapshot {
            if let Err(e) = write(state, &tenant, &samples, now_ms) {
                tracing::error!(tenant, error = %e, "writing span metrics failed");
            }
        }
    }
}

fn pair(agg: &mut TenantAgg, client: &Half, server: &Half, trace: [u8; 16]) {
    if client.service == server.service {
        return;
    }
    let ct = if client.messaging || server.messaging {
        "messaging_system"
    } else {
        ""
    };
    let e = agg
        .edges
        .entry((client.service.clone(), server.service.clone(), ct))
        .or_default();
    e.total += 1;
    e.failed += u64::from(client.failed || server.failed);
    e.client.observe(client.secs, trace);
    e.server.observe(server.secs, trace);
}

/// One series to write.
struct Sample {
    labels: Labels,
    value: f64,
    exemplar: Option<([u8; 16], f64)>,
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Option<Labels> {
    let mut v: Vec<(&str, &str)> = pairs.to_vec();
    v.push(("__name__", name));
    Labels::from_pairs(&v).ok()
}

fn hist_series(out: &mut Vec<Sample>, name: &str, base: &[(&str, &str)], h: &Hist) {
    for (i, bound) in BUCKETS.iter().enumerate() {
        let le = crate::api::fmt_value(*bound);
        let mut l = base.to_vec();
        l.push(("le", &le));
        let ex = h
            .exemplar
            .filter(|(_, v)| *v <= *bound && (i == 0 || *v > BUCKETS[i - 1]));
        if let Some(labels) = labels(&format!("{name}_bucket"), &l) {
            out.push(Sample {
                labels,
                value: h.buckets[i] as f64,
                exemplar: ex,
            });
        }
    }
    let mut l = base.to_vec();
    l.push(("le", "+Inf"));
    let over = h.exemplar.filter(|(_, v)| *v > BUCKETS[BUCKETS.len() - 1]);
    for (n, v, ex) in [
        (format!("{name}_bucket"), h.count as f64, over),
        (format!("{name}_count"), h.count as f64, None),
        (format!("{name}_sum"), h.sum, None),
    ] {
        let ls = if n.ends_with("_bucket") {
            l.clone()
        } else {
            base.to_vec()
        };
        if let Some(labels) = labels(&n, &ls) {
            out.push(Sample {
                labels,
                value: v,
                exemplar: ex,
            });
        }
    }
}

fn series(a: &TenantAgg, _now_ms: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    for ((service, name, kind, status), h) in &a.spans {
        let base = [
            ("service", service.as_str()),
            ("span_name", name.as_str()),
            ("span_kind", kind_label(*kind)),
            ("status_code", status_label(*status)),
        ];
        if let Some(l) = labels("traces_spanmetrics_calls_total", &base) {
            out.push(Sample {
                labels: l,
                value: h.count as f64,
                exemplar: h.exemplar,
            });
        }
        hist_series(&mut out, "traces_spanmetrics_latency", &base, h);
    }
    for ((client, server, ct), e) in &a.edges {
        let base = [
            ("client", client.as_str()),
            ("server", server.as_str()),
            ("connection_type", *ct),
        ];
        for (n, v) in [
            ("traces_service_graph_request_total", e.total),
            ("traces_service_graph_request_failed_total", e.failed),
        ] {
            if let Some(l) = labels(n, &base) {
                out.push(Sample {
                    labels: l,
                    value: v as f64,
                    exemplar: None,
                });
            }
        }
        hist_series(
            &mut out,
            "traces_service_graph_request_server_seconds",
            &base,
            &e.server,
        );
        hist_series(
            &mut out,
            "traces_service_graph_request_client_seconds",
            &base,
            &e.client,
        );
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write(
    state: &AppState,
    tenant: &str,
    samples: &[Sample],
    now_ms: i64,
) -> Result<(), strata_engine::Error> {
    let values: Vec<[(i64, f64); 1]> = samples.iter().map(|s| [(now_ms, s.value)]).collect();
    let exemplars: Vec<Vec<Exemplar>> = samples
        .iter()
        .map(|s| {
            s.exemplar
                .and_then(|(trace, v)| {
                    let l = Labels::from_pairs(&[("trace_id", hex(&trace))]).ok()?;
                    Some(vec![Exemplar {
                        labels: l,
                        value: v,
                        timestamp: now_ms,
                    }])
                })
                .unwrap_or_default()
        })
        .collect();
    let batch: Vec<IngestSeries<'_, Labels>> = samples
        .iter()
        .zip(&values)
        .zip(&exemplars)
        .map(|((s, v), e)| IngestSeries {
            labels: &s.labels,
            samples: v,
            exemplars: e,
        })
        .collect();
    let meta = [
        (
            "traces_spanmetrics_calls_total",
            "counter",
            "Spans received, by service, span name, kind and status.",
        ),
        (
            "traces_spanmetrics_latency",
            "histogram",
            "Span durations in seconds, by service, span name, kind and status.",
        ),
        (
            "traces_service_graph_request_total",
            "counter",
            "Calls between two services, from client/server span pairs.",
        ),
        (
            "traces_service_graph_request_failed_total",
            "counter",
            "Failed calls between two services.",
        ),
        (
            "traces_service_graph_request_server_seconds",
            "histogram",
            "Server-side duration of calls between two services.",
        ),
        (
            "traces_service_graph_request_client_seconds",
            "histogram",
            "Client-side duration of calls between two services.",
        ),
    ];
    let meta: Vec<(&str, MetricMetadata)> = meta
        .iter()
        .map(|(n, t, h)| {
            (
                *n,
                MetricMetadata {
                    metric_type: (*t).to_string(),
                    help: (*h).to_string(),
                    unit: if t == &"histogram" {
                        "seconds".into()
                    } else {
                        String::new()
                    },
                },
            )
        })
        .collect();
    state.engine.tenant(tenant)?.ingest(&batch, &meta)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use strata_engine::{Engine, EngineOptions, Matcher, SelectHints};

    fn span(id: u8, parent: u8, service: &str, kind: u8, dur_ms: u64, status: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            start_ns: 1_000,
            end_ns: 1_000 + dur_ms * 1_000_000,
            kind,
            status,
            service: service.into(),
            name: format!("op{id}"),
            attrs: vec![],
            payload: vec![],
        }
    }

    #[test]
    fn spans_become_series_with_exemplars() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(EngineOptions {
            data_dir: dir.path().to_path_buf(),
            ..EngineOptions::default()
        })
        .unwrap();
        let state = AppState::new(
            Arc::new(engine),
            crate::limits::Limits::new(crate::limits::LimitsConfig::default()),
            crate::app::ServerOptions {
                data_dir: dir.path().display().to_string(),
                ..crate::app::ServerOptions::default()
            },
        );
        let m = SpanMetrics::default();
        // The server half arrives first, in another batch.
        m.observe("t", &[span(3, 2, "payment", 2, 70, 2)]);
        m.observe(
            "t",
            &[
                span(1, 0, "gateway", 2, 100, 0),
                span(2, 1, "gateway", 3, 80, 0),
            ],
        );
        m.flush(&state);
        let q = state.engine.querier("t").unwrap();
        let get = |name: &str, extra: &[(&str, &str)]| -> f64 {
            let mut ms = vec![Matcher::equal("__name__", name)];
            ms.extend(extra.iter().map(|(k, v)| Matcher::equal(*k, *v)));
            let set = q
                .select(&ms, i64::MIN, i64::MAX, &SelectHints::default())
                .unwrap();
            assert_eq!(set.len(), 1, "{name} {extra:?}");
            set[0]
                .samples(i64::MIN, i64::MAX)
                .unwrap()
                .last()
                .unwrap()
                .1
        };
        assert_eq!(
            get(
                "traces_spanmetrics_calls_total",
                &[("service", "payment"), ("status_code", "STATUS_CODE_ERROR")]
            ),
            1.0
        );
        assert_eq!(
            get(
                "traces_spanmetrics_latency_bucket",
                &[
                    ("service", "gateway"),
                    ("span_name", "op1"),
                    ("le", "0.128")
                ]
            ),
            1.0
        );
        assert_eq!(
            get(
                "traces_spanmetrics_latency_bucket",
                &[
                    ("service", "gateway"),
                    ("span_name", "op1"),
                    ("le", "0.064")
                ]
            ),
            0.0
        );
        assert_eq!(
            get(
                "traces_service_graph_request_total",
                &[("client", "gateway"), ("server", "payment")]
            ),
            1.0
        );
        assert_eq!(
            get(
                "traces_service_graph_request_failed_total",
                &[("client", "gateway"), ("server", "payment")]
            ),
            1.0
        );
        assert_eq!(
            get(
                "traces_service_graph_request_server_seconds_sum",
                &[("client", "gateway")]
            ),
            0.07
        );
        let t = state.engine.existing_tenant("t").unwrap();
        let ex = t
            .exemplars()
            .query(&roaring::RoaringBitmap::full(), i64::MIN, i64::MAX);
        assert!(!ex.is_empty());
        assert!(ex.iter().all(
            |(_, es)| es[0].labels.get("trace_id") == Some("07070707070707070707070707070707")
        ));
    }
}
