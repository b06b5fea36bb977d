//! Trace search: a TraceQL query or Tempo's tag search over a tenant's trace store.
//!
//! The engine prunes with the hints the query implies (time range, postings, columns); every
//! candidate is then read whole (all its parts, in the head and in every block) and checked
//! exactly, so a result never depends on how a trace was split across blocks. Results are the
//! most recent traces first, at most `limit`.

use std::collections::HashSet;
use std::ops::ControlFlow;

use strata_engine::traces::{SearchHints, SpanRecord, TenantTraces, TraceError};

use super::traceql::{Query, TraceCtx};

/// What to look for.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    /// The query (TraceQL; tags are turned into an equivalent query by the caller).
    pub query: Query,
    /// Trace overlaps `[start_ns, end_ns]`.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Trace duration at least (ns).
    pub min_duration_ns: Option<u64>,
    /// Trace duration at most (ns).
    pub max_duration_ns: Option<u64>,
    /// Most traces returned.
    pub limit: usize,
    /// Most matching spans listed per trace.
    pub spans_per_spanset: usize,
    /// Candidate traces inspected before giving up (bounds the cost of one search).
    pub max_inspected: usize,
}

/// One trace found.
#[derive(Clone, Debug)]
pub struct TraceSummary {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// Service of the root span (`None`: root not received).
    pub root_service: Option<String>,
    /// Name of the root span.
    pub root_name: Option<String>,
    /// Earliest span start, ns.
    pub start_ns: u64,
    /// Trace duration, ns.
    pub duration_ns: u64,
    /// The matching spans (at most `spans_per_spanset`).
    pub matched: Vec<SpanRecord>,
    /// How many spans matched.
    pub matched_count: usize,
}

/// Result of a search.
#[derive(Clone, Debug, Default)]
pub struct SearchResult {
    /// Traces found, most recent first.
    pub traces: Vec<TraceSummary>,
    /// Candidate traces inspected.
    pub inspected: usize,
}

/// Runs a search over one tenant.
pub fn search(store: &TenantTraces, req: &SearchRequest) -> Result<SearchResult, TraceError> {
    let hints: SearchHints = req.query.hints(req.start_ns, req.end_ns);
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut out = SearchResult::default();
    let mut err = None;
    // Gather more than `limit` so that "most recent first" holds across head and blocks.
    let want = req.limit.saturating_mul(4).max(req.limit);
    let mut found = Vec::new();
    store.search(&hints, |id, _part| {
        if !seen.insert(*id) {
            return ControlFlow::Continue(());
        }
        out.inspected += 1;
        if out.inspected > req.max_inspected {
            return ControlFlow::Break(());
        }
        let spans = match store.trace(id) {
            Ok(s) => s,
            Err(e) => {
                err = Some(e);
                return ControlFlow::Break(());
            }
        };
        if let Some(t) = summarize(req, id, spans) {
            found.push(t);
            if found.len() >= want {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    found.sort_by(|a, b| {
        b.start_ns
            .cmp(&a.start_ns)
            .then(a.trace_id.cmp(&b.trace_id))
    });
    found.truncate(req.limit);
    out.traces = found;
    Ok(out)
}

fn summarize(req: &SearchRequest, id: &[u8; 16], spans: Vec<SpanRecord>) -> Option<TraceSummary> {
    let ctx = TraceCtx::new(&spans);
    let d = ctx.duration_ns();
    if req.min_duration_ns.is_some_and(|m| d < m) || req.max_duration_ns.is_some_and(|m| d > m) {
        return None;
    }
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
    if end < req.start_ns || start > req.end_ns {
        return None;
    }
    let set = req.query.matches(&spans)?;
    let (root_service, root_name) = match ctx.root() {
        Some(r) => (Some(r.service.clone()), Some(r.name.clone())),
        None => (None, None),
    };
    let matched_count = set.len();
    let matched = set
        .iter()
        .take(req.spans_per_spanset)
        .filter_map(|&i| spans.get(i).cloned())
        .collect();
    Some(TraceSummary {
        trace_id: *id,
        root_service,
        root_name,
        start_ns: start,
        duration_ns: d,
        matched,
        matched_count,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::traces::parse;
    use strata_engine::traces::{Attr, AttrScope, AttrValue, TraceOptions, TraceStore};

    fn span(
        trace: u8,
        id: u8,
        parent: u8,
        service: &str,
        start: u64,
        dur: u64,
        status: u8,
    ) -> SpanRecord {
        SpanRecord {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            start_ns: start,
            end_ns: start + dur,
            kind: 2,
            status,
            service: service.into(),
            name: format!("op-{service}"),
            attrs: vec![Attr {
                scope: AttrScope::Resource,
                key: "service.name".into(),
                value: AttrValue::Str(service.into()),
            }],
            payload: vec![],
        }
    }

    #[test]
    fn search_finds_traces_split_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = TraceStore::open(TraceOptions {
            data_dir: dir.path().to_path_buf(),
            ..TraceOptions::default()
        })
        .unwrap();
        let t = store.tenant("anonymous").unwrap();
        let s = 1_700_000_000_000_000_000u64;
        t.append(vec![span(1, 1, 0, "gateway", s, 3_000_000_000, 0)])
            .unwrap();
        t.append(vec![span(2, 1, 0, "gateway", s + 10, 1_000, 0)])
            .unwrap();
        t.cut_if_due(true).unwrap();
        // The rest of trace 1 arrives after the cut.
        t.append(vec![span(1, 2, 1, "checkout", s + 100, 2_500_000_000, 2)])
            .unwrap();
        let req = |q: &str| SearchRequest {
            query: parse(q).unwrap(),
            start_ns: 0,
            end_ns: u64::MAX,
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 20,
            spans_per_spanset: 3,
            max_inspected: 1000,
        };
        // Both sides must match, in different parts of the trace: the head holds the error,
        // the block the gateway span.
        let r = search(
            &t,
            &req(r#"{ status = error } && { .service.name = "gateway" }"#),
        )
        .unwrap();
        assert_eq!(r.traces.len(), 1);
        // Needs spans from both parts.
        let r = search(
            &t,
            &req(r#"{ .service.name = "gateway" } > { status = error }"#),
        )
        .unwrap();
        assert_eq!(r.traces.len(), 1);
        let tr = &r.traces[0];
        assert_eq!(tr.trace_id, [1; 16]);
        assert_eq!(tr.root_service.as_deref(), Some("gateway"));
        assert_eq!(tr.matched_count, 1);
        assert_eq!(tr.duration_ns, 3_000_000_000);
        let r = search(&t, &req("{}")).unwrap();
        assert_eq!(r.traces.len(), 2);
        assert_eq!(r.traces[0].trace_id, [2; 16], "most recent first");
        let mut q = req("{}");
        q.min_duration_ns = Some(2_000_000_000);
        assert_eq!(search(&t, &q).unwrap().traces.len(), 1);
        q.limit = 0;
        assert!(search(&t, &q).unwrap().traces.is_empty());
    }
}
