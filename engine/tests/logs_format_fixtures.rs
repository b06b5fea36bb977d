//! Golden file for the log block format, version 1 (chunks, signatures, stream index and
//! trace-id index in one file).
//!
//! `tests/fixtures/log_block_v1/block.slb` was written by the engine and is committed. The test
//! checks that today's reader decodes it to the expected entries and that today's writer still
//! produces it byte for byte; a change that breaks this must bump the format version and add a
//! new fixture, keeping the old one readable. A missing fixture is written by the test, which
//! then fails asking for it to be committed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_engine::Labels;
use strata_engine::logs::LogEntry;
use strata_engine::logs::block::{ChunkToWrite, LogBlock, encode_block};
use strata_engine::logs::chunk::{decode_chunk, encode_chunk};
use strata_engine::logs::filter::{
    SignatureBuilder, literal_grams, parse_trace_id, signature_bits, signature_may_contain,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log_block_v1/block.slb")
}

fn entries(stream: u32) -> Vec<LogEntry> {
    (0..40)
        .map(|i| LogEntry {
            ts: 1_763_700_000_000_000_000 + i64::from(i) * 1_000_000_007,
            line: match (stream, i % 3) {
                (0, 0) => format!("{{\"level\":\"info\",\"msg\":\"served\",\"n\":{i}}}"),
                (0, 1) => format!("level=warn msg=\"slow request\" duration={i}ms"),
                (0, _) => format!("plain text line number {i} trace_id={TRACE}"),
                _ => format!("GET /api/v1/items/{i} 200 {}µs", i * 17),
            },
            metadata: if i % 5 == 0 {
                vec![("trace_id".to_string(), TRACE.to_string())]
            } else {
                vec![]
            },
        })
        .collect()
}

fn build() -> Vec<u8> {
    let streams = vec![
        Labels::from_pairs(&[("job", "app"), ("service", "checkout")]).unwrap(),
        Labels::from_pairs(&[("job", "nginx")]).unwrap(),
    ];
    let chunks: Vec<(Vec<u8>, Vec<u8>, Vec<LogEntry>)> = (0..2)
        .map(|s| {
            let e = entries(s);
            let raw: usize = e.iter().map(|x| x.line.len()).sum();
            let mut sig = SignatureBuilder::new(signature_bits(raw));
            for x in &e {
                sig.add(x.line.as_bytes());
            }
            (encode_chunk(&e).unwrap(), sig.finish(), e)
        })
        .collect();
    let trace = [parse_trace_id(TRACE).unwrap()];
    let to_write: Vec<ChunkToWrite<'_>> = chunks
        .iter()
        .enumerate()
        .map(|(i, (data, sig, e))| ChunkToWrite {
            stream: i as u32,
            min_t: e[0].ts,
            max_t: e[e.len() - 1].ts,
            entries: e.len() as u32,
            raw_bytes: e.iter().map(|x| x.line.len() as u32).sum(),
            data,
            signature: sig,
            trace_ids: if i == 0 { &trace } else { &[] },
        })
        .collect();
    encode_block(&streams, &to_write).unwrap()
}

#[test]
fn log_block_v1_golden() {
    let path = fixture();
    let built = build();
    let Ok(stored) = std::fs::read(&path) else {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &built).unwrap();
        panic!("wrote missing fixture {}; commit it", path.display());
    };
    assert_eq!(
        stored, built,
        "the log block writer no longer reproduces the v1 fixture"
    );
    let block = LogBlock::from_bytes(&path, Bytes::from(stored)).unwrap();
    assert_eq!(block.streams.len(), 2);
    assert_eq!(block.chunks.len(), 2);
    for (i, c) in block.chunks.iter().enumerate() {
        assert_eq!(decode_chunk(&c.data).unwrap(), entries(i as u32));
    }
    assert_eq!(block.trace_chunks(parse_trace_id(TRACE).unwrap()), vec![0]);
    let grams = literal_grams("slow request").unwrap();
    assert!(signature_may_contain(&block.chunks[0].signature, &grams));
    // A corrupted copy is refused.
    let mut bad = build();
    let n = bad.len();
    bad[n - 30] ^= 0xff;
    assert!(LogBlock::from_bytes(&path, Bytes::from(bad)).is_err());
}
