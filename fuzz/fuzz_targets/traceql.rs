//! Fuzzes the TraceQL parser, and evaluation over a fixed trace for whatever parses.
//!
//! The parser must never panic and must report errors at a position inside the query; a query
//! that parses must evaluate over a small trace (with an orphan span and a parent cycle) and
//! produce storage hints without panicking.
//!
//! Run: `cargo fuzz run traceql` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_engine::traces::{Attr, AttrScope, AttrValue, SpanRecord};
use strata_query::traces::{build_tree, parse};

fn span(id: u8, parent: u8, service: &str, status: u8) -> SpanRecord {
    SpanRecord {
        trace_id: [9; 16],
        span_id: [id; 8],
        parent_span_id: [parent; 8],
        start_ns: 1_000 * u64::from(id),
        end_ns: 1_000 * u64::from(id) + 5_000_000,
        kind: id % 6,
        status,
        service: service.into(),
        name: format!("op{id}"),
        attrs: vec![
            Attr {
                scope: AttrScope::Resource,
                key: "service.name".into(),
                value: AttrValue::Str(service.into()),
            },
            Attr {
                scope: AttrScope::Span,
                key: "http.status_code".into(),
                value: AttrValue::Int(500),
            },
            Attr {
                scope: AttrScope::Span,
                key: "ratio".into(),
                value: AttrValue::Float(0.5),
            },
        ],
        payload: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    match parse(q) {
        Ok(query) => {
            let spans = vec![
                span(1, 0, "gateway", 0),
                span(2, 1, "checkout", 2),
                span(3, 2, "payment", 2),
                span(4, 9, "orphan", 0),
                span(5, 6, "cycle", 0),
                span(6, 5, "cycle", 1),
            ];
            let _ = query.matches(&spans);
            let _ = query.hints(0, u64::MAX);
            let _ = build_tree(spans);
        }
        Err(e) => assert!(e.pos <= q.len()),
    }
});
