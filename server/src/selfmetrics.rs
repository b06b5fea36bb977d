//! Strata's own metrics, exposed on `/metrics` in the Prometheus text format.
//!
//! A deliberately small registry: counter and histogram families keyed by label values, plus
//! gauges computed at scrape time from the engine. Metric names start with `strata_`; label
//! names are constants below so that dashboards and tests agree on them.
//!
//! # Locking
//!
//! Each family has one mutex over its children; updates take it briefly. Hot paths (ingest)
//! update a handful of children per request, not per sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

/// Label name of the HTTP route (the matched path pattern).
pub const LABEL_ROUTE: &str = "route";
/// Label name of the HTTP status code.
pub const LABEL_CODE: &str = "code";
/// Label name of the tenant.
pub const LABEL_TENANT: &str = "tenant";
/// Label name of a rejection reason.
pub const LABEL_REASON: &str = "reason";

/// Default latency buckets (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A family of counters.
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    children: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl CounterVec {
    /// A new family.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        CounterVec {
            name,
            help,
            labels,
            children: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `v` to the child with these label values.
    pub fn add(&self, values: &[&str], v: f64) {
        let mut c = self.children.lock();
        if let Some(x) = c.get_mut(
            values
                .iter()
                .copied()
                .map(str::to_owned)
                .collect::<Vec<_>>()
                .as_slice(),
        ) {
            *x += v;
        } else {
            c.insert(values.iter().map(|s| s.to_string()).collect(), v);
        }
    }

    /// Adds one.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0);
    }

    /// Current value of a child (0 if absent).
    pub fn get(&self, values: &[&str]) -> f64 {
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.children.lock().get(&key).copied().unwrap_or(0.0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (values, v) in self.children.lock().iter() {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                label_str(self.labels, values, None),
                fmt_f64(*v)
            );
        }
    }
}

struct HistogramChild {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A family of histograms with fixed buckets.
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    children: Mutex<BTreeMap<Vec<String>, HistogramChild>>,
}

impl HistogramVec {
    /// A new family.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        HistogramVec {
            name,
            help,
            labels,
            buckets,
            children: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records an observation.
    pub fn observe(&self, values: &[&str], v: f64) {
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        let mut c = self.children.lock();
        let child = c.entry(key).or_insert_with(|| HistogramChild {
            counts: vec![0; self.buckets.len()],
            sum: 0.0,
            count: 0,
        });
        for (i, b) in self.buckets.iter().enumerate() {
            if v <= *b
                && let Some(x) = child.counts.get_mut(i)
            {
                *x += 1;
            }
        }
        child.sum += v;
        child.count += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (values, h) in self.children.lock().iter() {
            for (b, c) in self.buckets.iter().zip(&h.counts) {
                let le = fmt_f64(*b);
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    self.name,
                    label_str(self.labels, values, Some(&le)),
                    c
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                label_str(self.labels, values, Some("+Inf")),
                h.count
            );
            let _ = writeln!(
                out,
                "{}_sum{} {}",
                self.name,
                label_str(self.labels, values, None),
                fmt_f64(h.sum)
            );
            let _ = writeln!(
                out,
                "{}_count{} {}",
                self.name,
                label_str(self.labels, values, None),
                h.count
            );
        }
    }
}

/// Formats a float as the text format expects.
pub fn fmt_f64(v: f64) -> String {
    crate::api::fmt_value(v)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_str(names: &[&str], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    let mut first = true;
    for (n, v) in names.iter().zip(values) {
        if !first {
            s.push(',');
        }
        first = false;
        let _ = write!(s, "{n}=\"{}\"", escape(v));
    }
    if let Some(le) = le {
        if !first {
            s.push(',');
        }
        let _ = write!(s, "le=\"{le}\"");
    }
    s.push('}');
    s
}

/// A gauge sample computed at scrape time.
pub struct GaugeSample {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

/// All of Strata's own metrics.
pub struct SelfMetrics {
    /// HTTP requests by route and status code.
    pub http_requests: CounterVec,
    /// HTTP request latency by route.
    pub http_duration: HistogramVec,
    /// Samples ingested by tenant.
    pub samples_ingested: CounterVec,
    /// Samples rejected by tenant and reason.
    pub samples_rejected: CounterVec,
    /// Exemplars ingested by tenant.
    pub exemplars_ingested: CounterVec,
    /// Requests or series refused by a tenant limit, by tenant and limit name.
    pub limits_exceeded: CounterVec,
    /// Query latency by endpoint.
    pub query_duration: HistogramVec,
    /// Series deletion requests by tenant and result (`success`, `error`).
    pub deletions: CounterVec,
    /// Series given deleted intervals by deletions, by tenant and where (`head`, `block`).
    pub deleted_series: CounterVec,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics {
            http_requests: CounterVec::new(
                "strata_http_requests_total",
                "HTTP requests by route and status code.",
                &[LABEL_ROUTE, LABEL_CODE],
            ),
            http_duration: HistogramVec::new(
                "strata_http_request_duration_seconds",
                "HTTP request latency by route.",
                &[LABEL_ROUTE],
                LATENCY_BUCKETS,
            ),
            samples_ingested: CounterVec::new(
                "strata_ingested_samples_total",
                "Samples stored, by tenant.",
                &[LABEL_TENANT],
            ),
            samples_rejected: CounterVec::new(
                "strata_rejected_samples_total",
                "Samples not stored, by tenant and reason.",
                &[LABEL_TENANT, LABEL_REASON],
            ),
            exemplars_ingested: CounterVec::new(
                "strata_ingested_exemplars_total",
                "Exemplars stored, by tenant.",
                &[LABEL_TENANT],
            ),
            limits_exceeded: CounterVec::new(
                "strata_limits_exceeded_total",
                "Writes refused by a per-tenant limit, by tenant and limit.",
                &[LABEL_TENANT, "limit"],
            ),
            query_duration: HistogramVec::new(
                "strata_query_duration_seconds",
                "Query evaluation latency by endpoint.",
                &["endpoint"],
                LATENCY_BUCKETS,
            ),
            deletions: CounterVec::new(
                "strata_series_deletions_total",
                "Series deletion requests (admin delete_series), by tenant and result.",
                &[LABEL_TENANT, "result"],
            ),
            deleted_series: CounterVec::new(
                "strata_deleted_series_total",
                "Series given a deleted interval by deletions, by tenant and where (head, block; block series count once per block).",
                &[LABEL_TENANT, "where"],
            ),
        }
    }
}

impl SelfMetrics {
    /// Renders every family plus the given scrape-time gauges.
    pub fn render(&self, gauges: &[GaugeSample]) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.http_requests.render(&mut out);
        self.http_duration.render(&mut out);
        self.samples_ingested.render(&mut out);
        self.samples_rejected.render(&mut out);
        self.exemplars_ingested.render(&mut out);
        self.limits_exceeded.render(&mut out);
        self.query_duration.render(&mut out);
        self.deletions.render(&mut out);
        self.deleted_series.render(&mut out);
        let mut last_name = "";
        for g in gauges {
            if g.name != last_name {
                let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
                let _ = writeln!(out, "# TYPE {} gauge", g.name);
                last_name = g.name;
            }
            let names: Vec<&str> = g.labels.iter().map(|(n, _)| *n).collect();
            let values: Vec<String> = g.labels.iter().map(|(_, v)| v.clone()).collect();
            let _ = writeln!(
                out,
                "{}{} {}",
                g.name,
                label_str(&names, &values, None),
                fmt_f64(g.value)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = SelfMetrics::default();
        m.http_requests.inc(&["/api/v1/write", "204"]);
        m.http_requests.add(&["/api/v1/write", "204"], 2.0);
        m.http_duration.observe(&["/api/v1/write"], 0.003);
        let text = m.render(&[GaugeSample {
            name: "strata_head_series",
            help: "Active series.",
            labels: vec![("tenant", "a\"b".into())],
            value: 5.0,
        }]);
        assert!(
            text.contains("strata_http_requests_total{route=\"/api/v1/write\",code=\"204\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("strata_http_request_duration_seconds_bucket{route=\"/api/v1/write\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("strata_http_request_duration_seconds_bucket{route=\"/api/v1/write\",le=\"0.001\"} 0\n"), "{text}");
        assert!(
            text.contains("strata_head_series{tenant=\"a\\\"b\"} 5\n"),
            "{text}"
        );
        assert_eq!(m.http_requests.get(&["/api/v1/write", "204"]), 3.0);
    }
}
