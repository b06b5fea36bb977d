//! Fuzzes the Loki push decoders with arbitrary bytes.
//!
//! Input layout: byte 0 selects the decoder, the rest is the payload.
//! * `0`: protobuf `logproto.PushRequest` through the server's decoder (labels parsed, UTF-8
//!   checked); whatever it accepts, prost accepts too.
//! * `1`: snappy block decompression with a 1 MiB limit, then the protobuf decoder.
//! * `2`: the JSON push body decoder.
//! * `3`: the stream-label string parser; what it accepts re-renders and parses back equal.
//! * `4`: the log store's WAL record decoder.
//!
//! Run: `cargo fuzz run loki_push` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_proto::loki::{decode_push_request, parse_labels};
use strata_proto::snappy;
use strata_server::loki::push::{decode_json, decode_protobuf};

/// Quotes a value the way the label parser reads it back.
fn escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok(d) = decode_protobuf(payload) {
                assert!(decode_push_request(payload).is_ok());
                for s in &d.streams {
                    assert!(!s.labels.is_empty());
                }
            }
        }
        1 => {
            if let Ok(raw) = snappy::decompress_snappy(payload, 1 << 20) {
                assert!(raw.len() <= 1 << 20);
                let _ = decode_protobuf(&raw);
            }
        }
        2 => {
            if let Ok(d) = decode_json(payload) {
                let n: usize = d.streams.iter().map(|s| s.entries.len()).sum();
                assert!(n <= payload.len());
            }
        }
        3 => {
            if let Ok(s) = std::str::from_utf8(payload)
                && let Ok(pairs) = parse_labels(s)
            {
                let rendered: Vec<String> = pairs
                    .iter()
                    .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
                    .collect();
                let again = format!("{{{}}}", rendered.join(","));
                assert_eq!(
                    parse_labels(&again).expect("re-rendered labels parse"),
                    pairs
                );
            }
        }
        _ => {
            let _ = strata_engine::logs::record::decode_push(payload);
        }
    }
});
