//! Golden files for the on-disk formats of format version 1: chunk encodings and a block.
//!
//! The fixtures under `tests/fixtures/` were written by the engine and are committed. Each test
//! checks that today's reader still decodes them to the expected samples, and that today's
//! writer still produces them byte for byte (a change that breaks this must bump the format
//! version and add a new fixture directory, keeping the old one readable). A missing fixture is
//! written by the test, which then fails asking for it to be committed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_engine::Labels;
use strata_engine::block::{Block, BlockWriter};
use strata_engine::chunk::{self, Encoding};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Deterministic samples mixing what real exporters send: an integer counter with a reset,
/// decimal gauges, a stale marker, NaN, ±Inf, -0.0 and irregular jitter.
fn samples(kind: u32) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut t = 1_795_239_519_445i64;
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ u64::from(kind);
    let mut counter = 1000.0;
    for i in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += 15_000 + (x % 41) as i64 - 20;
        let v = match kind {
            0 => {
                counter += (x % 7) as f64;
                if i == 300 {
                    counter = 3.0;
                }
                counter
            }
            1 => ((x % 100_000) as f64) / 100.0,
            _ => match i {
                10 => f64::from_bits(0x7ff0_0000_0000_0002),
                11 => f64::NAN,
                12 => f64::INFINITY,
                13 => f64::NEG_INFINITY,
                14 => -0.0,
                _ => f64::from_bits(x),
            },
        };
        out.push((t, v));
    }
    out
}

fn check_or_write(path: &Path, bytes: &[u8]) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(_) => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
            None
        }
    }
}

#[test]
fn chunk_v1_fixtures_decode_and_reencode_identically() {
    let mut missing = Vec::new();
    for enc in Encoding::ALL {
        for kind in 0..3u32 {
            let s = samples(kind);
            let encoded = chunk::encode(enc, &s).unwrap();
            let path = fixtures().join(format!("chunk_v1/{}_{kind}.bin", enc.name()));
            let Some(golden) = check_or_write(&path, &encoded) else {
                missing.push(path);
                continue;
            };
            let decoded = chunk::decode_all(enc, Bytes::from(golden.clone())).unwrap();
            let bits =
                |v: &[(i64, f64)]| v.iter().map(|&(t, x)| (t, x.to_bits())).collect::<Vec<_>>();
            assert_eq!(
                bits(&decoded),
                bits(&s),
                "{} fixture {kind} decodes differently",
                enc.name()
            );
            assert_eq!(
                encoded,
                golden,
                "{} encoder output changed for fixture {kind}: bump the format version",
                enc.name()
            );
        }
    }
    assert!(
        missing.is_empty(),
        "wrote missing fixtures, commit them: {missing:?}"
    );
}

fn block_series() -> Vec<(Labels, Vec<(i64, f64)>)> {
    (0..3u32)
        .map(|k| {
            let l = Labels::from_pairs(&[
                ("__name__", "fixture_metric"),
                ("kind", &k.to_string()),
                ("job", "golden"),
            ])
            .unwrap();
            (l, samples(k))
        })
        .collect()
}

#[test]
fn block_v1_fixture_opens_with_expected_content() {
    let dir = fixtures().join("block_v1");
    let existing: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.join("meta.json").exists())
                .collect()
        })
        .unwrap_or_default();
    let series = block_series();
    let min = series.iter().map(|s| s.1[0].0).min().unwrap();
    let max = series.iter().map(|s| s.1.last().unwrap().0).max().unwrap();
    // Write a fresh block the way the engine does, to compare byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::create(tmp.path(), min, max, 1, Vec::new()).unwrap();
    for (labels, s) in &series {
        let encoded: Vec<(i64, i64, u32, u8, Vec<u8>)> = s
            .chunks(200)
            .map(|c| {
                (
                    c[0].0,
                    c[c.len() - 1].0,
                    c.len() as u32,
                    Encoding::Gorilla.as_u8(),
                    chunk::encode(Encoding::Gorilla, c).unwrap(),
                )
            })
            .collect();
        let refs: Vec<(i64, i64, u32, u8, &[u8])> = encoded
            .iter()
            .map(|(a, b, n, e, d)| (*a, *b, *n, *e, d.as_slice()))
            .collect();
        w.add_series(labels, &refs).unwrap();
    }
    let (_, fresh) = w.finish().unwrap();
    let Some(golden) = existing.first() else {
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join(fresh.file_name().unwrap());
        std::fs::create_dir_all(dest.join("chunks")).unwrap();
        for f in ["meta.json", "index", "tombstones", "chunks/000001"] {
            std::fs::copy(fresh.join(f), dest.join(f)).unwrap();
        }
        panic!("wrote missing block fixture {}, commit it", dest.display());
    };
    let block = Block::open(golden).unwrap();
    assert_eq!(block.num_series(), 3);
    assert_eq!(block.label_values("kind").unwrap(), vec!["0", "1", "2"]);
    for (id, (labels, s)) in series.iter().enumerate() {
        let (got_labels, metas) = block.series(id as u32).unwrap();
        assert_eq!(&got_labels, labels);
        let mut got = Vec::new();
        for m in &metas {
            let enc = Encoding::from_u8(m.encoding).unwrap();
            got.extend(chunk::decode_all(enc, block.chunk(m).unwrap()).unwrap());
        }
        let bits = |v: &[(i64, f64)]| v.iter().map(|&(t, x)| (t, x.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(s));
    }
    // Index, chunk and tombstone files are byte-identical to what today's writer produces.
    for f in ["index", "tombstones", "chunks/000001"] {
        let a = std::fs::read(golden.join(f)).unwrap();
        let b = std::fs::read(fresh.join(f)).unwrap();
        assert_eq!(
            a, b,
            "{f} differs from today's writer: bump the block format version"
        );
    }
}
