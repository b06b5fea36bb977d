//! The service dependency graph of a set of traces: which service calls which, how often, how
//! often it fails, and how long it takes.
//!
//! - **Nodes**: one per service. Its requests are its entry spans — server and consumer spans,
//!   or, for a service that has none (a batch job), its root spans. Errors are entry spans with
//!   status error; latency is their duration.
//! - **Edges** `caller → callee`: a client (producer) span of one service whose child is a
//!   server (consumer) span of another service. The latency is the client span's duration (what
//!   the caller waited), an error is either side in error. A client span with no such child
//!   but a `peer.service`, `db.system` or `messaging.system` attribute is an edge to that name,
//!   so uninstrumented databases and brokers appear as nodes too.
//!
//! Rates are per second over the window asked for. p95 is the nearest-rank percentile of the
//! durations seen.

use std::collections::{BTreeMap, HashMap};

use strata_engine::traces::{AttrScope, AttrValue, SpanRecord};

/// Figures of a node or an edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Requests seen.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Durations in ns (for mean and p95).
    durations: Vec<u64>,
}

impl Stats {
    fn add(&mut self, dur_ns: u64, failed: bool) {
        self.requests += 1;
        self.errors += u64::from(failed);
        self.durations.push(dur_ns);
    }

    /// Mean latency in ms.
    pub fn avg_ms(&self) -> f64 {
        if self.durations.is_empty() {
            return 0.0;
        }
        self.durations.iter().map(|d| *d as f64).sum::<f64>() / self.durations.len() as f64 / 1e6
    }

    /// 95th percentile latency in ms (nearest rank).
    pub fn p95_ms(&self) -> f64 {
        if self.durations.is_empty() {
            return 0.0;
        }
        let mut d = self.durations.clone();
        d.sort_unstable();
        let rank = ((d.len() as f64) * 0.95).ceil() as usize;
        d[rank.clamp(1, d.len()) - 1] as f64 / 1e6
    }

    /// Errors / requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The graph.
#[derive(Clone, Debug, Default)]
pub struct ServiceMap {
    /// Per service.
    pub nodes: BTreeMap<String, Stats>,
    /// Per `(caller, callee)`.
    pub edges: BTreeMap<(String, String), Stats>,
}

fn is_entry(s: &SpanRecord) -> bool {
    matches!(s.kind, 2 | 5)
}

fn peer(s: &SpanRecord) -> Option<String> {
    for key in ["peer.service", "db.system", "messaging.system"] {
        if let Some(AttrValue::Str(v)) = s.attr(Some(AttrScope::Span), key)
            && !v.is_empty()
        {
            return Some(v.clone());
        }
    }
    None
}

impl ServiceMap {
    /// Adds the spans of one trace.
    pub fn add_trace(&mut self, spans: &[SpanRecord]) {
        let by_parent: HashMap<[u8; 8], Vec<&SpanRecord>> =
            spans.iter().fold(HashMap::new(), |mut m, s| {
                if !s.is_root() {
                    m.entry(s.parent_span_id).or_default().push(s);
                }
                m
            });
        let has_entry: std::collections::HashSet<&str> = spans
            .iter()
            .filter(|s| is_entry(s))
            .map(|s| s.service.as_str())
            .collect();
        for s in spans {
            let failed = s.status == 2;
            if is_entry(s) || (s.is_root() && !has_entry.contains(s.service.as_str())) {
                self.nodes
                    .entry(s.service.clone())
                    .or_default()
                    .add(s.duration_ns(), failed);
            } else {
                self.nodes.entry(s.service.clone()).or_default();
            }
            if !matches!(s.kind, 3 | 4) {
                continue;
            }
            let callee = by_parent
                .get(&s.span_id)
                .and_then(|kids| kids.iter().find(|c| is_entry(c) && c.service != s.service));
            match callee {
                Some(c) => {
                    self.edges
                        .entry((s.service.clone(), c.service.clone()))
                        .or_default()
                        .add(s.duration_ns(), failed || c.status == 2);
                }
                None => {
                    if let Some(p) = peer(s).filter(|p| *p != s.service) {
                        self.nodes
                            .entry(p.clone())
                            .or_default()
                            .add(s.duration_ns(), failed);
                        self.edges
                            .entry((s.service.clone(), p))
                            .or_default()
                            .add(s.duration_ns(), failed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use strata_engine::traces::Attr;

    fn span(id: u8, parent: u8, service: &str, kind: u8, dur_ms: u64, status: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            start_ns: 1000,
            end_ns: 1000 + dur_ms * 1_000_000,
            kind,
            status,
            service: service.into(),
            name: "op".into(),
            attrs: vec![],
            payload: vec![],
        }
    }

    #[test]
    fn nodes_and_edges() {
        let mut db = span(5, 4, "payment", 3, 20, 0);
        db.attrs.push(Attr {
            scope: AttrScope::Span,
            key: "db.system".into(),
            value: AttrValue::Str("postgresql".into()),
        });
        let mut m = ServiceMap::default();
        m.add_trace(&[
            span(1, 0, "gateway", 2, 100, 0),
            span(2, 1, "gateway", 3, 80, 0),
            span(3, 2, "payment", 2, 70, 2),
            span(4, 3, "payment", 1, 30, 0),
            db,
        ]);
        assert_eq!(m.nodes["gateway"].requests, 1);
        assert_eq!(m.nodes["payment"].errors, 1);
        assert_eq!(m.nodes["postgresql"].requests, 1);
        let e = &m.edges[&("gateway".to_string(), "payment".to_string())];
        assert_eq!((e.requests, e.errors), (1, 1));
        assert_eq!(e.avg_ms(), 80.0);
        assert!(
            m.edges
                .contains_key(&("payment".to_string(), "postgresql".to_string()))
        );
        assert_eq!(m.edges.len(), 2);
    }

    #[test]
    fn percentiles() {
        let mut s = Stats::default();
        for d in 1..=100u64 {
            s.add(d * 1_000_000, d % 10 == 0);
        }
        assert_eq!(s.p95_ms(), 95.0);
        assert_eq!(s.avg_ms(), 50.5);
        assert_eq!(s.error_rate(), 0.1);
        assert_eq!(Stats::default().p95_ms(), 0.0);
    }
}
