//! Fuzzes the LogQL parser, and the pipeline over a fixed line for whatever parses.
//!
//! The parser must never panic and must report every error with a line and column; a query
//! that parses must run its pipeline over a JSON, a logfmt and a plain line without panicking.
//!
//! Run: `cargo fuzz run logql_parse` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_engine::Labels;
use strata_query::logql::pipeline::Pipeline;
use strata_query::logql::{Expr, LogqlError, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    match parse(q) {
        Ok(Expr::Log(l)) => {
            let p = Pipeline::new(&l.stages);
            let stream = Labels::from_pairs(&[("job", "fuzz")]).unwrap_or_default();
            for line in [
                r#"{"level":"error","n":1.5,"a":{"b":"c"}}"#,
                r#"level=info msg="a b" took=12ms"#,
                "plain text line with 4bf92f3577b34da6a3ce929d0e0e4736",
            ] {
                let _ = p.process(1, line, &stream, &[("trace_id".into(), "x".into())]);
            }
        }
        Ok(Expr::Metric(_)) => {}
        Err(LogqlError::Parse { line, col, .. }) => {
            assert!(line >= 1 && col >= 1);
        }
        Err(other) => panic!("parse returned a non-parse error: {other}"),
    }
});
