//! The engine's WAL record payloads.
//!
//! The WAL (`strata-wal`) stores typed byte records and knows nothing of series or samples; this
//! module defines what the metrics engine puts in them. Records are written in batches: a batch
//! holding the series records of the series it creates followed by one samples record, so that a
//! replayed samples record always refers to a series defined earlier in the log (or in the
//! checkpoint).
//!
//! # Layout
//!
//! All integers are LEB128 varints unless stated; `zz` marks zigzag-encoded signed varints.
//!
//! ```text
//! SERIES (type 1):   repeated { ref: varint u32 | n_labels: varint |
//!                               n_labels × { name_len: varint | name | value_len: varint | value } }
//! SAMPLES (type 2):  base: zz i64 (first timestamp of the first group) |
//!                    repeated (≥1) { ref: varint u32 | n: varint (≥1) | t0 - base: zz i64 |
//!                               v0: u64 LE (f64 bits) |
//!                               (n-1) × { dt: zz i64 (t_i - t_{i-1}) | v: u64 LE } }
//! EXEMPLARS (type 3): repeated { ref: varint u32 | t: zz i64 | v: u64 LE | n_labels: varint |
//!                               n_labels × { name_len | name | value_len | value } }
//! METADATA (type 4):  repeated { family_len | family | type_len | type | help_len | help |
//!                               unit_len | unit }
//! TOMBSTONES (type 5): repeated { ref: varint u32 | mint: zz i64 | maxt - mint: varint u64 }
//! ```
//!
//! A TOMBSTONES record marks the inclusive interval `[mint, maxt]` of head series `ref` deleted
//! (`maxt >= mint`, so the width is never negative; it is computed in 128 bits so the widest
//! interval `[i64::MIN, i64::MAX]` fits). It always follows the SERIES records of the series
//! it names.
//!
//! Values travel as raw IEEE-754 bits so stale markers and NaN payloads survive bit-exactly.
//! Timestamps within one group may go backwards (out-of-order samples), hence the signed delta.
//! Decoding never panics: every read is length-checked and malformed payloads produce
//! [`Error::Record`].

use crate::error::{Error, Result};
use crate::labels::{Label, Labels};

/// Record type of a series definition record.
pub const RECORD_SERIES: u8 = 1;
/// Record type of a samples record.
pub const RECORD_SAMPLES: u8 = 2;
/// Record type of an exemplars record.
pub const RECORD_EXEMPLARS: u8 = 3;
/// Record type of a metadata record.
pub const RECORD_METADATA: u8 = 4;
/// Record type of a tombstones record (deleted intervals of head series).
pub const RECORD_TOMBSTONES: u8 = 5;

/// Encodes one deleted interval `[mint, maxt]` (inclusive) of series `sref` into a TOMBSTONES
/// payload. An empty interval (`mint > maxt`) is not written.
pub fn encode_tombstone(buf: &mut Vec<u8>, sref: u32, mint: i64, maxt: i64) {
    if mint > maxt {
        return;
    }
    put_uvarint(buf, u64::from(sref));
    put_varint(buf, mint);
    // maxt >= mint, so the difference lies in 0..=u64::MAX.
    put_uvarint(buf, (i128::from(maxt) - i128::from(mint)) as u64);
}

/// Decodes a TOMBSTONES payload, calling `f(ref, mint, maxt)` for each interval.
pub fn decode_tombstones(
    payload: &[u8],
    mut f: impl FnMut(u32, i64, i64) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(RECORD_TOMBSTONES, payload);
    while !r.is_empty() {
        let sref = r.u32_varint()?;
        let mint = r.varint()?;
        let width = r.uvarint()?;
        let maxt = i64::try_from(i128::from(mint) + i128::from(width))
            .map_err(|_| r.err("interval end overflows i64"))?;
        f(sref, mint, maxt)?;
    }
    Ok(())
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Encodes one exemplar of series `sref`.
pub fn encode_exemplar(buf: &mut Vec<u8>, sref: u32, e: &crate::exemplars::Exemplar) {
    put_uvarint(buf, u64::from(sref));
    put_varint(buf, e.timestamp);
    buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
    put_uvarint(buf, e.labels.len() as u64);
    for l in &e.labels {
        put_str(buf, &l.name);
        put_str(buf, &l.value);
    }
}

/// Decodes an EXEMPLARS payload.
pub fn decode_exemplars(
    payload: &[u8],
    mut f: impl FnMut(u32, crate::exemplars::Exemplar) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(RECORD_EXEMPLARS, payload);
    while !r.is_empty() {
        let sref = r.u32_varint()?;
        let timestamp = r.varint()?;
        let value = f64::from_bits(r.u64_le()?);
        let n = r.uvarint()?;
        let mut labels = Vec::new();
        for _ in 0..n {
            let name = r.string()?;
            let value = r.string()?;
            labels.push(Label { name, value });
        }
        let labels = Labels::new(labels).map_err(|e| Error::Record {
            record_type: RECORD_EXEMPLARS,
            reason: e.to_string(),
        })?;
        f(
            sref,
            crate::exemplars::Exemplar {
                labels,
                value,
                timestamp,
            },
        )?;
    }
    Ok(())
}

/// Encodes one metadata entry.
pub fn encode_metadata(buf: &mut Vec<u8>, family: &str, m: &crate::exemplars::MetricMetadata) {
    put_str(buf, family);
    put_str(buf, &m.metric_type);
    put_str(buf, &m.help);
    put_str(buf, &m.unit);
}

/// Decodes a METADATA payload.
pub fn decode_metadata(
    payload: &[u8],
    mut f: impl FnMut(String, crate::exemplars::MetricMetadata) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(RECORD_METADATA, payload);
    while !r.is_empty() {
        let family = r.string()?;
        let metric_type = r.string()?;
        let help = r.string()?;
        let unit = r.string()?;
        f(
            family,
            crate::exemplars::MetricMetadata {
                metric_type,
                help,
                unit,
            },
        )?;
    }
    Ok(())
}

/// Appends a varint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a zigzag varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// A cursor over a record payload with checked reads.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    record_type: u8,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(record_type: u8, buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            record_type,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, what: &str) -> Error {
        Error::Record {
            record_type: self.record_type,
            reason: format!("{what} at payload offset {}", self.pos),
        }
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64> {
        // Fast path: one-byte values (most counts, deltas and small refs).
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if rest.len() < 10 {
            Err(self.err("truncated varint"))
        } else {
            Err(self.err("varint overflows 64 bits"))
        }
    }

    pub(crate) fn varint(&mut self) -> Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub(crate) fn u32_varint(&mut self) -> Result<u32> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| self.err("value exceeds u32"))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64> {
        let end = self
            .pos
            .checked_add(8)
            .ok_or_else(|| self.err("overflow"))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated 8-byte value"))?;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(bytes);
        self.pos = end;
        Ok(u64::from_le_bytes(arr))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.uvarint()?).map_err(|_| self.err("length overflow"))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| self.err("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated string"))?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8 in label"))
    }
}

/// Encodes series definitions `(ref, labels)` into a SERIES payload.
pub fn encode_series<'a>(buf: &mut Vec<u8>, series: impl IntoIterator<Item = (u32, &'a Labels)>) {
    for (r, labels) in series {
        put_uvarint(buf, u64::from(r));
        put_uvarint(buf, labels.len() as u64);
        for l in labels {
            put_uvarint(buf, l.name.len() as u64);
            buf.extend_from_slice(l.name.as_bytes());
            put_uvarint(buf, l.value.len() as u64);
            buf.extend_from_slice(l.value.as_bytes());
        }
    }
}

/// Decodes a SERIES payload, calling `f(ref, labels)` for each definition.
pub fn decode_series(payload: &[u8], mut f: impl FnMut(u32, Labels) -> Result<()>) -> Result<()> {
    let mut r = Reader::new(RECORD_SERIES, payload);
    while !r.is_empty() {
        let sref = r.u32_varint()?;
        let n = r.uvarint()?;
        let mut labels = Vec::with_capacity(usize::try_from(n.min(64)).unwrap_or(64));
        for _ in 0..n {
            let name = r.string()?;
            let value = r.string()?;
            labels.push(Label { name, value });
        }
        let labels = Labels::new(labels).map_err(|e| Error::Record {
            record_type: RECORD_SERIES,
            reason: e.to_string(),
        })?;
        f(sref, labels)?;
    }
    Ok(())
}

/// Encodes one series' samples group into a SAMPLES payload (call repeatedly on the same,
/// initially empty, buffer to build a record). The first group's first timestamp becomes the
/// record's base; every group stores its first timestamp relative to it, so a scrape's worth of
/// one-sample groups costs a one- or two-byte delta per sample instead of a full timestamp.
pub fn encode_samples(buf: &mut Vec<u8>, sref: u32, samples: &[(i64, f64)]) {
    let Some(&(t0, v0)) = samples.first() else {
        return;
    };
    if buf.is_empty() {
        put_varint(buf, t0);
    }
    let base = {
        // The base is the first varint of the buffer; decoding it cannot fail because this
        // function wrote it.
        let mut r = Reader::new(RECORD_SAMPLES, buf);
        r.varint().unwrap_or(t0)
    };
    put_uvarint(buf, u64::from(sref));
    put_uvarint(buf, samples.len() as u64);
    put_varint(buf, t0.wrapping_sub(base));
    buf.extend_from_slice(&v0.to_bits().to_le_bytes());
    let mut prev = t0;
    for &(t, v) in samples.iter().skip(1) {
        put_varint(buf, t.wrapping_sub(prev));
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
        prev = t;
    }
}

/// Decodes a SAMPLES payload, calling `f(ref, samples)` once per series group. The sample
/// buffer is reused between calls.
pub fn decode_samples(
    payload: &[u8],
    mut f: impl FnMut(u32, &[(i64, f64)]) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(RECORD_SAMPLES, payload);
    if r.is_empty() {
        return Ok(());
    }
    let base = r.varint()?;
    if r.is_empty() {
        return Err(r.err("samples record without groups"));
    }
    let mut buf: Vec<(i64, f64)> = Vec::new();
    while !r.is_empty() {
        let sref = r.u32_varint()?;
        let n = r.uvarint()?;
        if n == 0 {
            return Err(r.err("empty samples group"));
        }
        // Each sample takes at least 9 bytes; bound the allocation by what the payload can hold.
        let max_possible = (payload.len() / 9) as u64 + 1;
        if n > max_possible {
            return Err(r.err("sample count exceeds payload size"));
        }
        buf.clear();
        let mut t = base.wrapping_add(r.varint()?);
        buf.push((t, f64::from_bits(r.u64_le()?)));
        for _ in 1..n {
            t = t.wrapping_add(r.varint()?);
            buf.push((t, f64::from_bits(r.u64_le()?)));
        }
        f(sref, &buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn series_round_trip() {
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "node")]).unwrap();
        let b = Labels::from_pairs(&[("__name__", "x"), ("ü", "✓")]).unwrap();
        let mut buf = Vec::new();
        encode_series(&mut buf, [(1, &a), (70000, &b)]);
        let mut got = Vec::new();
        decode_series(&buf, |r, l| {
            got.push((r, l));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(1, a), (70000, b)]);
    }

    #[test]
    fn truncated_payloads_error() {
        let mut buf = Vec::new();
        encode_samples(&mut buf, 3, &[(1000, 1.5), (2000, f64::NAN), (1500, -0.0)]);
        for cut in 0..buf.len() {
            let res = decode_samples(&buf[..cut], |_, _| Ok(()));
            if cut == 0 {
                assert!(res.is_ok());
            } else {
                assert!(
                    matches!(
                        res,
                        Err(Error::Record {
                            record_type: RECORD_SAMPLES,
                            ..
                        })
                    ),
                    "cut {cut}: {res:?}"
                );
            }
        }
        let l = Labels::from_pairs(&[("a", "b")]).unwrap();
        let mut sbuf = Vec::new();
        encode_series(&mut sbuf, [(1, &l)]);
        for cut in 1..sbuf.len() {
            assert!(decode_series(&sbuf[..cut], |_, _| Ok(())).is_err());
        }
    }

    #[test]
    fn exemplars_and_metadata_round_trip() {
        use crate::exemplars::{Exemplar, MetricMetadata};
        let e = Exemplar {
            labels: Labels::from_pairs(&[("trace_id", "abc"), ("span_id", "12")]).unwrap(),
            value: 0.25,
            timestamp: -5,
        };
        let mut buf = Vec::new();
        encode_exemplar(&mut buf, 9, &e);
        encode_exemplar(&mut buf, 10, &e);
        let mut got = Vec::new();
        decode_exemplars(&buf, |r, x| {
            got.push((r, x));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(9, e.clone()), (10, e)]);
        for cut in 1..buf.len() / 2 {
            assert!(decode_exemplars(&buf[..cut], |_, _| Ok(())).is_err());
        }
        let m = MetricMetadata {
            metric_type: "counter".into(),
            help: "Total requests.".into(),
            unit: "".into(),
        };
        let mut buf = Vec::new();
        encode_metadata(&mut buf, "http_requests_total", &m);
        let mut got = Vec::new();
        decode_metadata(&buf, |f, x| {
            got.push((f, x));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![("http_requests_total".to_string(), m)]);
    }

    #[test]
    fn huge_count_is_rejected_without_allocating() {
        let mut buf = Vec::new();
        put_uvarint(&mut buf, 1);
        put_uvarint(&mut buf, u64::MAX >> 1);
        let res = decode_samples(&buf, |_, _| Ok(()));
        assert!(matches!(res, Err(Error::Record { .. })));
    }

    #[test]
    fn tombstones_golden_bytes() {
        let mut buf = Vec::new();
        encode_tombstone(&mut buf, 3, 1000, 2000);
        encode_tombstone(&mut buf, 70000, -5, -5);
        encode_tombstone(&mut buf, 1, 10, 9); // empty: not written
        assert_eq!(
            buf,
            [
                0x03, 0xd0, 0x0f, 0xe8, 0x07, // ref 3, mint zz(1000), width 1000
                0xf0, 0xa2, 0x04, 0x09, 0x00, // ref 70000, mint zz(-5), width 0
            ]
        );
        let mut got = Vec::new();
        decode_tombstones(&buf, |r, a, b| {
            got.push((r, a, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(3, 1000, 2000), (70000, -5, -5)]);
        for cut in 1..buf.len() {
            if cut == 5 {
                continue; // a whole entry
            }
            assert!(
                matches!(
                    decode_tombstones(&buf[..cut], |_, _, _| Ok(())),
                    Err(Error::Record {
                        record_type: RECORD_TOMBSTONES,
                        ..
                    })
                ),
                "cut {cut}"
            );
        }
        // An end beyond i64::MAX is an error, not a wrap-around.
        let mut bad = Vec::new();
        put_uvarint(&mut bad, 1);
        put_varint(&mut bad, i64::MAX);
        put_uvarint(&mut bad, 1);
        assert!(decode_tombstones(&bad, |_, _, _| Ok(())).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn tombstones_round_trip(entries in proptest::collection::vec(
            (any::<u32>(), any::<i64>(), any::<i64>()), 0..20)) {
            let entries: Vec<(u32, i64, i64)> =
                entries.into_iter().map(|(r, a, b)| (r, a.min(b), a.max(b))).collect();
            let mut buf = Vec::new();
            for &(r, a, b) in &entries {
                encode_tombstone(&mut buf, r, a, b);
            }
            let mut got = Vec::new();
            decode_tombstones(&buf, |r, a, b| {
                got.push((r, a, b));
                Ok(())
            }).unwrap();
            prop_assert_eq!(got, entries);
        }

        #[test]
        fn samples_round_trip(groups in proptest::collection::vec(
            (any::<u32>(), proptest::collection::vec((any::<i64>(), any::<u64>()), 1..20)), 0..10)) {
            let mut buf = Vec::new();
            for (r, s) in &groups {
                let s: Vec<(i64, f64)> = s.iter().map(|&(t, v)| (t, f64::from_bits(v))).collect();
                encode_samples(&mut buf, *r, &s);
            }
            let mut got = Vec::new();
            decode_samples(&buf, |r, s| {
                got.push((r, s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>()));
                Ok(())
            }).unwrap();
            prop_assert_eq!(got, groups);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_samples(&bytes, |_, _| Ok(()));
            let _ = decode_series(&bytes, |_, _| Ok(()));
            let _ = decode_exemplars(&bytes, |_, _| Ok(()));
            let _ = decode_metadata(&bytes, |_, _| Ok(()));
            let _ = decode_tombstones(&bytes, |_, _, _| Ok(()));
        }
    }
}
