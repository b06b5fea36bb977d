//! Tests of the public chunk API across all encodings.

use super::*;
use proptest::prelude::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn assert_same(got: &[(i64, f64)], want: &[(i64, f64)]) {
    assert_eq!(got.len(), want.len(), "sample count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.0, w.0, "timestamp of sample {i}");
        assert_eq!(
            g.1.to_bits(),
            w.1.to_bits(),
            "value bits of sample {i}: {} vs {}",
            g.1,
            w.1
        );
    }
}

fn round_trip(enc: Encoding, samples: &[(i64, f64)]) -> Vec<u8> {
    let data = encode(enc, samples).unwrap();
    let got = decode_all(enc, Bytes::from(data.clone())).unwrap();
    assert_same(&got, samples);
    data
}

/// A realistic 1 s scrape with jitter and a missed scrape.
fn scrape_times(n: usize, start: i64) -> Vec<i64> {
    let mut t = start;
    (0..n)
        .map(|i| {
            let jitter = match i % 17 {
                3 => 4,
                9 => -2,
                _ => 0,
            };
            t += if i == 50 { 2000 } else { 1000 };
            t + jitter
        })
        .collect()
}

fn value_sets(n: usize) -> Vec<(&'static str, Vec<f64>)> {
    let stale = f64::from_bits(STALE_NAN);
    vec![
        ("constant", vec![1.0; n]),
        (
            "counter with reset",
            (0..n)
                .map(|i| ((i * 37) % (n / 2 + 1)) as f64 * 3.0)
                .collect(),
        ),
        (
            "decimal gauge",
            (0..n)
                .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
                .collect(),
        ),
        (
            "computed seconds",
            (0..n).map(|i| (10_000 + i * 13) as f64 * 0.001).collect(),
        ),
        (
            "noise",
            (0..n)
                .map(|i| {
                    f64::from_bits(
                        0x3ff0_0000_0000_0000
                            ^ ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 12),
                    )
                })
                .collect(),
        ),
        (
            "specials",
            (0..n)
                .map(|i| match i % 6 {
                    0 => stale,
                    1 => f64::NEG_INFINITY,
                    2 => -0.0,
                    3 => f64::from_bits(0x7ff8_0000_0000_0abc),
                    4 => 1e-300,
                    _ => i as f64,
                })
                .collect(),
        ),
        (
            "stale at end",
            (0..n)
                .map(|i| if i + 1 == n { stale } else { 42.5 })
                .collect(),
        ),
    ]
}

#[test]
fn encoding_tags() {
    for e in Encoding::ALL {
        assert_eq!(Encoding::from_u8(e.as_u8()).unwrap(), e);
    }
    assert!(matches!(
        Encoding::from_u8(0),
        Err(ChunkError::UnknownEncoding(0))
    ));
    assert!(Encoding::from_u8(200).is_err());
}

#[test]
fn all_encodings_round_trip_typical_series() {
    for n in [0usize, 1, 2, 3, 120, 1000] {
        let ts = scrape_times(n, 1_795_239_519_445);
        for (name, vs) in value_sets(n) {
            let samples: Vec<(i64, f64)> = ts.iter().copied().zip(vs).collect();
            for enc in Encoding::ALL {
                let data = encode(enc, &samples).unwrap();
                let got = decode_all(enc, Bytes::from(data))
                    .unwrap_or_else(|e| panic!("{enc} {name} n={n}: {e}"));
                assert_same(&got, &samples);
            }
            let (enc, data) = encode_best(&samples);
            assert_same(&decode_all(enc, Bytes::from(data)).unwrap(), &samples);
        }
    }
}

#[test]
fn stale_marker_bit_pattern_is_preserved() {
    let stale = f64::from_bits(STALE_NAN);
    let samples = vec![(1000, 1.0), (2000, stale), (3000, 2.0), (4000, stale)];
    for enc in Encoding::ALL {
        let got = decode_all(enc, Bytes::from(encode(enc, &samples).unwrap())).unwrap();
        assert_eq!(got[1].1.to_bits(), STALE_NAN, "{enc}");
        assert_eq!(got[3].1.to_bits(), STALE_NAN, "{enc}");
    }
}

#[test]
fn extreme_timestamps_round_trip() {
    let samples = vec![
        (i64::MIN, 1.0),
        (i64::MIN + 1, 2.0),
        (-5, 3.0),
        (0, 4.0),
        (i64::MAX - 1, 5.0),
        (i64::MAX, 6.0),
    ];
    for enc in Encoding::ALL {
        round_trip(enc, &samples);
    }
}

#[test]
fn encode_rejects_unsorted_and_oversized() {
    let samples = vec![(10, 1.0), (10, 2.0)];
    for enc in Encoding::ALL {
        assert!(matches!(
            encode(enc, &samples),
            Err(ChunkError::NotIncreasing { index: 1, .. })
        ));
    }
    let many: Vec<(i64, f64)> = (0..GORILLA_MAX_SAMPLES as i64 + 1)
        .map(|t| (t, 0.0))
        .collect();
    assert!(matches!(
        encode(Encoding::Gorilla, &many),
        Err(ChunkError::TooManySamples { .. })
    ));
    // The block encodings take it, and encode_best picks one of them.
    let (enc, data) = encode_best(&many);
    assert_ne!(enc, Encoding::Gorilla);
    assert_eq!(
        decode_all(enc, Bytes::from(data)).unwrap().len(),
        many.len()
    );
}

#[test]
fn encode_best_is_no_larger_than_its_candidates() {
    let ts = scrape_times(500, 0);
    for (name, vs) in value_sets(500) {
        let samples: Vec<(i64, f64)> = ts.iter().copied().zip(vs).collect();
        let (_, best) = encode_best(&samples);
        for enc in [Encoding::Gorilla, Encoding::RangeCoded] {
            let len = encode(enc, &samples).unwrap().len();
            assert!(
                best.len() <= len,
                "{name}: best {} > {enc} {len}",
                best.len()
            );
        }
    }
}

#[test]
fn block_encodings_beat_gorilla_on_scrapes() {
    let ts = scrape_times(1000, 1_795_239_519_445);
    let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, 1.0)).collect();
    let gorilla = encode(Encoding::Gorilla, &samples).unwrap().len();
    let ranged = encode(Encoding::RangeCoded, &samples).unwrap().len();
    assert!(
        ranged * 4 < gorilla,
        "range-coded {ranged} vs gorilla {gorilla}"
    );
}

#[test]
fn appender_bytes_decode_after_every_append() {
    let ts = scrape_times(130, -10_000);
    let mut app = GorillaAppender::new();
    let mut want = Vec::new();
    for (i, &t) in ts.iter().enumerate() {
        let v = if i % 7 == 0 {
            f64::from_bits(STALE_NAN)
        } else {
            (i / 3) as f64 * 0.1
        };
        app.append(t, v);
        want.push((t, v));
        let got = decode_all(Encoding::Gorilla, Bytes::copy_from_slice(app.bytes())).unwrap();
        assert_same(&got, &want);
    }
    let frozen = app.finish();
    assert_same(
        &decode_all(Encoding::Gorilla, Bytes::from(frozen.into_vec())).unwrap(),
        &want,
    );
}

#[test]
fn seek_semantics() {
    let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 10, i as f64)).collect();
    for enc in Encoding::ALL {
        let data = Bytes::from(encode(enc, &samples).unwrap());
        let mut it = ChunkIter::new(enc, data.clone()).unwrap();
        assert_eq!(it.num_samples(), 300);
        assert_eq!(it.at(), None);
        // Between samples: lands on the next one.
        assert_eq!(it.seek(95), Some((100, 10.0)), "{enc}");
        // Exact hit.
        assert_eq!(it.seek(120), Some((120, 12.0)));
        // Never moves backwards: the current sample satisfies t >= 50.
        assert_eq!(it.seek(50), Some((120, 12.0)));
        assert_eq!(it.at(), Some((120, 12.0)));
        assert_eq!(it.next_sample(), Some((130, 13.0)));
        // Before the first sample of a fresh iterator: the first sample.
        let mut fresh = ChunkIter::new(enc, data.clone()).unwrap();
        assert_eq!(fresh.seek(i64::MIN), Some((0, 0.0)));
        // Past the end.
        assert_eq!(it.seek(10_000), None);
        assert_eq!(it.next_sample(), None);
        assert!(it.err().is_none());
        // Exhausted: no current sample, and seeking cannot revive it.
        assert_eq!(it.at(), None);
        assert_eq!(it.seek(0), None);
        // Seek to the last sample, then the iterator is exhausted.
        let mut last = ChunkIter::new(enc, data).unwrap();
        assert_eq!(last.seek(2990), Some((2990, 299.0)));
        assert_eq!(last.next_sample(), None);
    }
}

#[test]
fn empty_chunks() {
    for enc in Encoding::ALL {
        let data = encode(enc, &[]).unwrap();
        let mut it = ChunkIter::new(enc, Bytes::from(data)).unwrap();
        assert_eq!(it.num_samples(), 0);
        assert_eq!(it.next_sample(), None);
        assert_eq!(it.seek(0), None);
        assert!(it.err().is_none());
    }
}

#[test]
fn zero_copy_slice_of_a_larger_buffer() {
    let samples: Vec<(i64, f64)> = (0..200).map(|i| (i * 1000, (i % 5) as f64)).collect();
    for enc in Encoding::ALL {
        let chunk = encode(enc, &samples).unwrap();
        let mut block = vec![0xEEu8; 37];
        block.extend_from_slice(&chunk);
        block.extend_from_slice(&[0xAB; 19]);
        let block = Bytes::from(block);
        let slice = block.slice(37..37 + chunk.len());
        assert_eq!(
            slice.as_ptr(),
            block[37..].as_ptr(),
            "slice must share memory"
        );
        let mut it = ChunkIter::new(enc, slice).unwrap();
        let mut got = Vec::new();
        while let Some(s) = it.next_sample() {
            got.push(s);
        }
        assert!(it.err().is_none());
        assert_same(&got, &samples);
    }
}

fn corruption_fixture() -> Vec<(i64, f64)> {
    let ts = scrape_times(150, 1_795_239_519_445);
    ts.iter()
        .enumerate()
        .map(|(i, &t)| {
            let v = match i % 5 {
                0 => (i * 3) as f64,
                1 => f64::from_bits(STALE_NAN),
                2 => 0.001 * i as f64,
                _ => 1.5,
            };
            (t, v)
        })
        .collect()
}

#[test]
fn every_truncation_is_an_error() {
    let samples = corruption_fixture();
    for enc in Encoding::ALL {
        let data = encode(enc, &samples).unwrap();
        for cut in 0..data.len() {
            let r = decode_all(enc, Bytes::copy_from_slice(&data[..cut]));
            assert!(
                r.is_err(),
                "{enc}: truncation to {cut} of {} bytes decoded",
                data.len()
            );
        }
    }
}

#[test]
fn iterator_reports_truncation_through_err() {
    let samples = corruption_fixture();
    for enc in Encoding::ALL {
        let data = encode(enc, &samples).unwrap();
        let cut = data.len() - 1;
        let Ok(mut it) = ChunkIter::new(enc, Bytes::copy_from_slice(&data[..cut])) else {
            continue;
        };
        let mut count = 0;
        while it.next_sample().is_some() {
            count += 1;
        }
        assert!(count < samples.len(), "{enc}");
        assert!(
            it.err().is_some(),
            "{enc}: truncated chunk ended without an error"
        );
        // Exhausted for good.
        assert_eq!(it.next_sample(), None);
        assert_eq!(it.seek(i64::MAX), None);
    }
}

#[test]
fn byte_flips_never_panic() {
    let samples = corruption_fixture();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for enc in Encoding::ALL {
        let data = encode(enc, &samples).unwrap();
        let mut detected = 0;
        for _ in 0..2000 {
            let mut bad = data.clone();
            let flips = 1 + next() % 3;
            for _ in 0..flips {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] ^= 1 << (next() % 8);
            }
            match ChunkIter::new(enc, Bytes::from(bad)) {
                Err(_) => detected += 1,
                Ok(mut it) => {
                    let declared = it.num_samples();
                    let mut count = 0usize;
                    while it.next_sample().is_some() {
                        count += 1;
                    }
                    match it.err() {
                        Some(_) => detected += 1,
                        None => assert_eq!(count, declared, "{enc}: clean end before count"),
                    }
                }
            }
        }
        assert!(detected > 0, "{enc}: no corruption detected in 2000 flips");
    }
}

#[test]
fn garbage_headers_are_rejected_without_panics() {
    let cases: [&[u8]; 6] = [
        &[],
        &[0xFF],
        &[
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ],
        &[0x05, 0x00, 0x00, 0x03],
        &[0x05, 0x00, 0x00, 0x80, 99],
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x00],
    ];
    for enc in Encoding::ALL {
        for case in cases {
            let r = decode_all(enc, Bytes::copy_from_slice(case));
            if let Ok(v) = r {
                // Only an empty chunk may decode from a few bytes.
                assert!(v.len() <= 2, "{enc}: {case:?} decoded {v:?}");
            }
        }
    }
}

#[test]
fn gorilla_rejects_window_reuse_before_set() {
    // Two samples; the second has dod 0 (`0`) and a value code `10` with no window yet.
    let mut data = vec![0x00, 0x02, 0x00]; // count 2, t0 = 0
    data.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
    data.push(0b0100_0000);
    let r = decode_all(Encoding::Gorilla, Bytes::from(data));
    assert!(
        matches!(r, Err(ChunkError::Malformed { sample: 1, .. })),
        "{r:?}"
    );
}

#[test]
fn gorilla_rejects_too_wide_window() {
    // Value code `11`, lead 31, m 40: 71 bits > 64.
    let mut w = bits::BitWriter::with_prefix(vec![0x00, 0x02, 0x00]);
    w.write_bits(1.0f64.to_bits(), 64);
    w.write_bits(0, 1); // dod 0
    w.write_bits(0b11, 2);
    w.write_bits(31, 5);
    w.write_bits(40, 6);
    w.write_bits(u64::MAX, 40);
    let r = decode_all(Encoding::Gorilla, Bytes::from(w.into_vec()));
    assert!(
        matches!(r, Err(ChunkError::Malformed { sample: 1, .. })),
        "{r:?}"
    );
}

#[test]
fn columnar_limits_are_checked_before_allocating() {
    // A header claiming more samples than the encoding allows.
    let mut data = Vec::new();
    varint::put_uvarint(&mut data, COLUMNAR_MAX_SAMPLES as u64 + 1);
    data.extend_from_slice(&[0, 0, 0, 0, 1]);
    assert!(matches!(
        ChunkIter::new(Encoding::ColumnarZstd, Bytes::from(data)),
        Err(ChunkError::TooManySamples { .. })
    ));
    // A zstd frame declaring more content than n samples can need.
    let samples: Vec<(i64, f64)> = (0..3).map(|i| (i * 1000 + i % 2, i as f64)).collect();
    let good = encode(Encoding::ColumnarZstd, &samples).unwrap();
    let (_, body) = transform::Header::read(Encoding::ColumnarZstd, &good).unwrap();
    let mut forged = good[..body].to_vec();
    forged.extend_from_slice(&zstd::bulk::compress(&[0u8; 4096], 1).unwrap());
    let r = decode_all(Encoding::ColumnarZstd, Bytes::from(forged));
    assert!(
        matches!(
            r,
            Err(ChunkError::BadHeader {
                what: "zstd content size",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn exact_grid_constant_series_is_just_a_header() {
    let samples: Vec<(i64, f64)> = (0..7200).map(|i| (1_000_000 + i * 15_000, 1.0)).collect();
    for enc in [Encoding::ColumnarZstd, Encoding::RangeCoded] {
        let data = round_trip(enc, &samples);
        assert!(data.len() <= 16, "{enc}: {} bytes", data.len());
    }
    // Constant values on a jittered grid, and varying values on an exact grid.
    let jittered: Vec<(i64, f64)> = (0..500).map(|i| (i * 1000 + (i % 3), 7.0)).collect();
    let varying: Vec<(i64, f64)> = (0..500).map(|i| (i * 1000, (i % 7) as f64)).collect();
    for enc in Encoding::ALL {
        round_trip(enc, &jittered);
        round_trip(enc, &varying);
    }
}

#[test]
fn huge_declared_count_fails_fast() {
    // A range-coded header claiming 2^62 samples of a constant series with jittered timestamps:
    // the coder runs out of bytes long before, so this ends in an error quickly.
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000 + i % 2, 0.0)).collect();
    let data = encode(Encoding::RangeCoded, &samples).unwrap();
    let mut forged = Vec::new();
    varint::put_uvarint(&mut forged, 1 << 62);
    forged.extend_from_slice(&data[1..]);
    let r = decode_all(Encoding::RangeCoded, Bytes::from(forged));
    assert!(matches!(r, Err(ChunkError::Overrun { .. })), "{r:?}");

    // Without any stream nothing bounds the work but the count, which is limited.
    let exact: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, 0.0)).collect();
    let data = encode(Encoding::RangeCoded, &exact).unwrap();
    let mut forged = Vec::new();
    varint::put_uvarint(&mut forged, 1 << 62);
    forged.extend_from_slice(&data[1..]);
    let r = ChunkIter::new(Encoding::RangeCoded, Bytes::from(forged));
    assert!(matches!(r, Err(ChunkError::BadHeader { .. })), "{r:?}");
}

fn sample_strategy() -> impl Strategy<Value = Vec<(i64, f64)>> {
    let gap = prop_oneof![
        8 => Just(1000i64),
        4 => 990i64..1010,
        2 => 1i64..100_000,
        1 => 1i64..=i64::MAX / 4,
    ];
    let value = prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        3 => (-1000i64..1000).prop_map(|i| i as f64),
        3 => (-100_000i64..100_000, 0u32..6).prop_map(|(m, e)| m as f64 / 10f64.powi(e as i32)),
        1 => Just(f64::from_bits(STALE_NAN)),
        1 => Just(-0.0),
        1 => Just(f64::INFINITY),
    ];
    (
        any::<i64>(),
        proptest::collection::vec((gap, value, any::<bool>(), 0u8..4), 0..400),
    )
        .prop_map(|(start, raw)| {
            let start = start / 2;
            let mut t = start;
            let mut prev = 0.0f64;
            let mut counter = 0.0f64;
            let mut out = Vec::with_capacity(raw.len());
            for (gap, v, repeat, kind) in raw {
                let Some(next) = t.checked_add(gap) else {
                    break;
                };
                t = next;
                let v = match kind {
                    0 if repeat => prev,
                    1 => {
                        // A counter that grows and sometimes resets.
                        counter = if repeat {
                            0.0
                        } else {
                            counter + (gap % 50) as f64
                        };
                        counter
                    }
                    _ => v,
                };
                prev = v;
                out.push((t, v));
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gorilla_round_trip(samples in sample_strategy()) {
        round_trip(Encoding::Gorilla, &samples);
    }

    #[test]
    fn range_coded_round_trip(samples in sample_strategy()) {
        round_trip(Encoding::RangeCoded, &samples);
    }

    #[test]
    fn columnar_zstd_round_trip(samples in sample_strategy()) {
        round_trip(Encoding::ColumnarZstd, &samples);
    }

    #[test]
    fn encode_best_round_trip(samples in sample_strategy()) {
        let (enc, data) = encode_best(&samples);
        assert_same(&decode_all(enc, Bytes::from(data)).unwrap(), &samples);
    }

    #[test]
    fn seek_matches_linear_scan(samples in sample_strategy(), probes in proptest::collection::vec(any::<i64>(), 1..8)) {
        let mut probes = probes;
        probes.sort_unstable();
        for enc in Encoding::ALL {
            let data = Bytes::from(encode(enc, &samples).unwrap());
            let mut it = ChunkIter::new(enc, data).unwrap();
            let mut floor = i64::MIN;
            for &p in &probes {
                // Seek never moves backwards, so the answer is the first sample at or after
                // max(p, current).
                let want = samples.iter().copied().find(|s| s.0 >= p.max(floor));
                let got = it.seek(p);
                prop_assert_eq!(got.map(|s| s.0), want.map(|s| s.0));
                prop_assert_eq!(got.map(|s| s.1.to_bits()), want.map(|s| s.1.to_bits()));
                if let Some(g) = got {
                    floor = g.0;
                }
            }
        }
    }

    #[test]
    fn mutated_chunks_never_panic(
        samples in sample_strategy(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        for enc in Encoding::ALL {
            let mut data = encode(enc, &samples).unwrap();
            for &(pos, byte, kind) in &edits {
                if data.is_empty() {
                    break;
                }
                let i = pos % data.len();
                match kind {
                    0 => data[i] ^= byte | 1,
                    1 => data.truncate(i),
                    _ => data.insert(i, byte),
                }
            }
            if let Ok(mut it) = ChunkIter::new(enc, Bytes::from(data)) {
                let declared = it.num_samples();
                let mut count = 0usize;
                while it.next_sample().is_some() {
                    count += 1;
                }
                if it.err().is_none() {
                    prop_assert_eq!(count, declared);
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(tag in 1u8..=3, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let enc = Encoding::from_u8(tag).unwrap();
        if let Ok(mut it) = ChunkIter::new(enc, Bytes::from(bytes)) {
            let mut count = 0usize;
            while it.next_sample().is_some() {
                count += 1;
            }
            prop_assert!(count <= it.num_samples());
        }
    }
}

/// Chunks of format version 1, byte for byte: decoding them must never change (a change is a
/// new encoding byte). The block encoders' choices (modes, exponent) may improve over time, so
/// only Gorilla, whose encoder has no choices, must also keep producing its bytes exactly.
const GOLDEN_GORILLA: &[u8] = &[
    0x00, 0x06, 0xaa, 0x93, 0xe9, 0xc9, 0xbf, 0x68, 0x3f, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xe0, 0xfa, 0x36, 0x03, 0x85, 0xac, 0x3f, 0x71, 0x0b, 0x0f, 0xd0, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xf0, 0x7d, 0x13, 0xfc, 0xd9, 0xca, 0xc0, 0x83, 0x12, 0x6e, 0x80,
];
const GOLDEN_COLUMNAR_ZSTD: &[u8] = &[
    0x06, 0xaa, 0x93, 0xe9, 0xc9, 0xbf, 0x68, 0xe8, 0x07, 0xc4, 0x03, 0xe8, 0x07, 0x02, 0x00, 0x28,
    0xb5, 0x2f, 0xfd, 0x20, 0x1c, 0xe1, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0xd0, 0x0f, 0xfa, 0x01,
    0xf4, 0x03, 0x00, 0x00, 0xca, 0xdd, 0x01, 0x00, 0x00, 0x00, 0x84, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0xfc, 0x7f, 0x02,
];
const GOLDEN_RANGE_CODED: &[u8] = &[
    0x06, 0xaa, 0x93, 0xe9, 0xc9, 0xbf, 0x68, 0xe8, 0x07, 0xc4, 0x03, 0xe8, 0x07, 0x02, 0x00, 0x0d,
    0x43, 0x68, 0x0b, 0x96, 0x90, 0x3d, 0x2f, 0x59, 0x8c, 0x48, 0x40, 0x00, 0x00, 0xdd, 0x7f, 0xc0,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x2d, 0x1d, 0x94,
];

#[test]
fn golden_chunks_decode_unchanged() {
    let samples = golden_samples();
    for (enc, golden) in [
        (Encoding::Gorilla, GOLDEN_GORILLA),
        (Encoding::ColumnarZstd, GOLDEN_COLUMNAR_ZSTD),
        (Encoding::RangeCoded, GOLDEN_RANGE_CODED),
    ] {
        let got = decode_all(enc, Bytes::from_static(golden)).unwrap();
        assert_same(&got, &samples);
        // Encoders are deterministic.
        assert_eq!(
            encode(enc, &samples).unwrap(),
            encode(enc, &samples).unwrap()
        );
    }
    assert_eq!(encode(Encoding::Gorilla, &samples).unwrap(), GOLDEN_GORILLA);
}

/// Jittered timestamps, decimals, a stale marker and a value computed in binary.
fn golden_samples() -> Vec<(i64, f64)> {
    vec![
        (1_795_239_519_445, 0.5),
        (1_795_239_520_445, 0.75),
        (1_795_239_521_447, 1.25),
        (1_795_239_522_445, 1.25),
        (1_795_239_523_445, f64::from_bits(STALE_NAN)),
        (1_795_239_525_445, 29612.0 * 0.001),
    ]
}
