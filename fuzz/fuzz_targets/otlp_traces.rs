//! Fuzzes every decoder of the trace path with arbitrary bytes.
//!
//! Input layout: byte 0 selects the decoder, the rest is the payload.
//! * `0`: OTLP `ExportTraceServiceRequest` protobuf through the server's decoder and span
//!   conversion; every accepted span's stored payload must decode again, and the spans must
//!   round-trip through the store's span encoding.
//! * `1`: the same from OTLP JSON.
//! * `2`: the store's span encoding (`count | span*`); what decodes re-encodes to the input.
//! * `3`: the trace WAL record decoder.
//! * `4`: a trace block file (`.strb`); every trace of a block that opens is read.
//! * `5`: OTLP `ExportMetricsServiceRequest` protobuf through the metrics conversion.
//!
//! Run: `cargo fuzz run otlp_traces` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_engine::traces::{TraceBlock, decode_record, span};
use strata_server::otlp::body::Encoding;
use strata_server::otlp::{metrics, traces};

fn check_converted(conv: traces::Converted) {
    let n = conv.spans.len();
    let batches = strata_server::tempo::batches(&conv.spans);
    let back: usize = batches
        .iter()
        .flat_map(|b| &b.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(back, n, "a stored payload does not decode");
    let mut buf = Vec::new();
    span::encode_spans(&mut buf, conv.spans.iter());
    let again = span::decode_spans(&buf).expect("encoded spans decode");
    assert_eq!(again.len(), n);
    let mut buf2 = Vec::new();
    span::encode_spans(&mut buf2, again.iter());
    assert_eq!(buf, buf2);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    match sel % 6 {
        0 => {
            if let Ok(req) = traces::decode_request(payload, Encoding::Protobuf) {
                check_converted(traces::convert(req));
            }
        }
        1 => {
            if let Ok(req) = traces::decode_request(payload, Encoding::Json) {
                check_converted(traces::convert(req));
            }
        }
        2 => {
            if let Ok(spans) = span::decode_spans(payload) {
                let mut buf = Vec::new();
                span::encode_spans(&mut buf, spans.iter());
                assert_eq!(buf, payload);
            }
        }
        3 => {
            let _ = decode_record(payload);
        }
        4 => {
            let bytes = bytes::Bytes::copy_from_slice(payload);
            if let Ok(b) = TraceBlock::from_bytes("fuzz".into(), bytes) {
                for ord in 0..b.trace_count() {
                    let _ = b.read_trace(ord);
                }
            }
        }
        _ => {
            if let Ok(req) = metrics::decode_request(payload, Encoding::Protobuf) {
                let _ = metrics::convert(&req);
            }
        }
    }
});
