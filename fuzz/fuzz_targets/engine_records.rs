//! Fuzzes the metrics engine's WAL record payload decoders (SERIES, SAMPLES, EXEMPLARS,
//! METADATA, TOMBSTONES) with arbitrary bytes, as replay and checkpointing decode them after the
//! WAL frame checksum passed.
//!
//! Beyond "never panics", it checks that every TOMBSTONES payload that decodes holds only
//! non-empty intervals, and that every TOMBSTONES and SAMPLES payload that decodes re-encodes
//! to a payload decoding to the same content (inputs may use over-long varints, so the bytes
//! themselves need not be identical).
//!
//! Run with `cargo fuzz run engine_records` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_engine::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::decode_series(data, |_, _| Ok(()));
    let _ = record::decode_exemplars(data, |_, _| Ok(()));
    let _ = record::decode_metadata(data, |_, _| Ok(()));

    let mut entries = Vec::new();
    if record::decode_tombstones(data, |r, mint, maxt| {
        entries.push((r, mint, maxt));
        Ok(())
    })
    .is_ok()
    {
        let mut buf = Vec::new();
        for &(r, mint, maxt) in &entries {
            assert!(mint <= maxt, "decoded an empty interval");
            record::encode_tombstone(&mut buf, r, mint, maxt);
        }
        let mut again = Vec::new();
        record::decode_tombstones(&buf, |r, mint, maxt| {
            again.push((r, mint, maxt));
            Ok(())
        })
        .expect("re-encoded tombstones decode");
        assert_eq!(again, entries);
    }

    let mut groups: Vec<(u32, Vec<(i64, u64)>)> = Vec::new();
    if record::decode_samples(data, |r, s| {
        groups.push((r, s.iter().map(|&(t, v)| (t, v.to_bits())).collect()));
        Ok(())
    })
    .is_ok()
    {
        let mut buf = Vec::new();
        for (r, s) in &groups {
            let s: Vec<(i64, f64)> = s.iter().map(|&(t, v)| (t, f64::from_bits(v))).collect();
            record::encode_samples(&mut buf, *r, &s);
        }
        let mut again: Vec<(u32, Vec<(i64, u64)>)> = Vec::new();
        record::decode_samples(&buf, |r, s| {
            again.push((r, s.iter().map(|&(t, v)| (t, v.to_bits())).collect()));
            Ok(())
        })
        .expect("re-encoded samples decode");
        assert_eq!(again, groups);
    }
});
