//! Fuzzes the chunk decoders with arbitrary bytes, and the encoders with arbitrary samples.
//!
//! Input layout: byte 0 selects the mode and encoding, the rest is the payload.
//! * `mode & 0x80 == 0`: the payload is a chunk of encoding `mode % 3 + 1`; it is decoded with
//!   `ChunkIter` (next, seek, at) and `decode_all`, which must agree and never panic.
//! * otherwise: the payload is read as 16-byte samples (i64 LE timestamp, f64 LE bits), sorted
//!   and de-duplicated by timestamp, encoded with every encoding and `encode_best`, decoded,
//!   and compared bit-exactly.
//!
//! Run: `cargo fuzz run chunk_decode` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_engine::chunk::{self, ChunkIter, Encoding};

fn decode_arbitrary(encoding: Encoding, payload: &[u8]) {
    let all = chunk::decode_all(encoding, payload.to_vec().into());
    let Ok(mut it) = ChunkIter::new(encoding, payload.to_vec().into()) else {
        assert!(
            all.is_err(),
            "decode_all succeeded where ChunkIter::new failed"
        );
        return;
    };
    let declared = it.num_samples();
    let mut got = Vec::new();
    while let Some(s) = it.next_sample() {
        got.push(s);
        assert!(got.len() <= declared, "more samples than declared");
    }
    match (all, it.err()) {
        (Ok(v), None) => {
            assert_eq!(v.len(), got.len());
            assert_eq!(got.len(), declared);
            for (a, b) in v.iter().zip(&got) {
                assert_eq!(a.0, b.0);
                assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
        (Err(_), Some(_)) => {}
        (a, b) => panic!("decode_all and ChunkIter disagree: {a:?} vs {b:?}"),
    }
    // Seeking through a fresh iterator must never panic or move backwards.
    if let Ok(mut it) = ChunkIter::new(encoding, payload.to_vec().into()) {
        let mut last = i64::MIN;
        for probe in [i64::MIN, -1, 0, 1_000, i64::MAX] {
            if let Some((t, _)) = it.seek(probe) {
                assert!(t >= last);
                last = t;
            }
        }
    }
}

fn round_trip(payload: &[u8]) {
    let mut samples: Vec<(i64, f64)> = payload
        .chunks_exact(16)
        .filter_map(|c| {
            let (t, v) = c.split_first_chunk::<8>()?;
            let v: [u8; 8] = v.try_into().ok()?;
            Some((
                i64::from_le_bytes(*t),
                f64::from_bits(u64::from_le_bytes(v)),
            ))
        })
        .collect();
    samples.sort_by_key(|s| s.0);
    samples.dedup_by_key(|s| s.0);
    let check = |encoding: Encoding, data: Vec<u8>| {
        let got = chunk::decode_all(encoding, data.into()).expect("decode what we encoded");
        assert_eq!(got.len(), samples.len());
        for (a, b) in got.iter().zip(&samples) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits());
        }
    };
    for encoding in Encoding::ALL {
        check(
            encoding,
            chunk::encode(encoding, &samples).expect("encode sorted samples"),
        );
    }
    let (encoding, data) = chunk::encode_best(&samples);
    check(encoding, data);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    if mode & 0x80 == 0 {
        let Ok(encoding) = Encoding::from_u8(mode % 3 + 1) else {
            return;
        };
        decode_arbitrary(encoding, payload);
    } else {
        round_trip(payload);
    }
});
