//! Prometheus' XOR chunk encoding, for `STREAMED_XOR_CHUNKS` remote read
//! responses.
//!
//! A Prometheus server reading from Strata over remote read with streamed
//! chunks decodes every `Chunk` whose type is `XOR` with its own chunk
//! iterator, so the bytes must be exactly Prometheus' format. Strata's
//! internal Gorilla chunks (in `strata-engine`) are free to differ; this
//! module is the translation at the edge. It is written from the public
//! format description (`tsdb/docs/format/chunks.md` in the Prometheus
//! repository) and the Gorilla paper (Pelkonen et al., VLDB 2015).
//!
//! # Format
//!
//! ```text
//! ┌──────────────────────┬───────────────┬─────────────┬────────────────────┬──────────────┬─────────────┬──────────────┬─────┬─────────┐
//! │ num_samples <u16 BE> │ t0 <varint>   │ v0 <f64 BE> │ t1-t0 <uvarint>    │ v1 <xor>     │ t2 <dod>    │ v2 <xor>     │ ... │ padding │
//! └──────────────────────┴───────────────┴─────────────┴────────────────────┴──────────────┴─────────────┴──────────────┴─────┴─────────┘
//! ```
//!
//! After the 2-byte header everything is one bit stream, most significant
//! bit first, zero-padded to a whole byte at the end.
//!
//! - `t0` is a zigzag varint (Go's `binary.PutVarint`), `v0` the raw 64 bits
//!   of the float. Both are byte-aligned because they start at bit 16.
//! - `t1 - t0` is a uvarint of the wrapping difference as `u64`.
//! - From the third sample on, the timestamp is the delta of deltas
//!   `dod = (tn - tn-1) - (tn-1 - tn-2)` (wrapping, as `i64`), written as:
//!   `0` if dod = 0; `10` + 14 bits; `110` + 17 bits; `1110` + 20 bits;
//!   `1111` + 64 bits. An `n`-bit bucket holds `-(2^(n-1) - 1) ..= 2^(n-1)`
//!   in two's complement (note the asymmetric range: `2^(n-1)` itself is
//!   stored as its bit pattern and read back as positive).
//! - Each value after the first is `x = bits(vn) XOR bits(vn-1)`, written
//!   as: `0` if x = 0; else `1` then either `0` + the significant bits of x
//!   inside the previous window (allowed when x has at least as many leading
//!   and trailing zeros as the window), or `1` + 5 bits leading-zero count
//!   (capped at 31) + 6 bits significant-bit count (64 written as 0) + the
//!   significant bits, which opens a new window.
//!
//! Values are carried as bits, so NaNs — including the staleness marker
//! `0x7ff0000000000002` — round-trip exactly.

use crate::prompb;

/// Samples per chunk that Prometheus itself cuts at.
pub const PROMETHEUS_SAMPLES_PER_CHUNK: usize = 120;

/// Errors of the XOR chunk encoder and decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XorChunkError {
    /// More samples than the 16-bit header can count.
    #[error("{count} samples do not fit one XOR chunk (at most 65535)")]
    TooManySamples {
        /// Samples given.
        count: usize,
    },
    /// The chunk is shorter than its 2-byte header.
    #[error("XOR chunk of {len} bytes has no 2-byte header")]
    MissingHeader {
        /// Chunk length.
        len: usize,
    },
    /// The bit stream ends before the announced number of samples.
    #[error("XOR chunk ends inside sample {sample} of {total}")]
    Truncated {
        /// Index of the incomplete sample.
        sample: usize,
        /// Samples announced by the header.
        total: usize,
    },
    /// A varint timestamp longer than 64 bits.
    #[error("XOR chunk sample {sample}: timestamp varint overflows 64 bits")]
    VarintOverflow {
        /// Sample index.
        sample: usize,
    },
    /// A value window with more than 64 bits.
    #[error(
        "XOR chunk sample {sample}: value window of {leading} leading + {significant} significant bits exceeds 64"
    )]
    InvalidWindow {
        /// Sample index.
        sample: usize,
        /// Leading zero count read.
        leading: u32,
        /// Significant bit count read.
        significant: u32,
    },
    /// `max_samples_per_chunk` of zero.
    #[error("max_samples_per_chunk must be at least 1")]
    ZeroChunkSize,
}

/// Appends bits, most significant first.
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 means a new byte is needed).
    used: u32,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            used: 0,
        }
    }

    /// Writes the low `n` bits of `value` (`n <= 64`).
    fn write_bits(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(n);
            n -= take;
            let chunk = ((value >> n) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (free - take);
            }
            self.used = (self.used + take) % 8;
        }
    }

    fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    fn write_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.write_bits((v & 0x7f) | 0x80, 8);
            v >>= 7;
        }
        self.write_bits(v, 8);
    }
}

/// Reads bits, most significant first; `None` at the end of the data.
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn read_bits(&mut self, mut n: u32) -> Option<u64> {
        let mut value = 0u64;
        while n > 0 {
            let byte = *self.data.get(self.pos / 8)?;
            let offset = (self.pos % 8) as u32;
            let avail = 8 - offset;
            let take = avail.min(n);
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            value = (value << take) | u64::from(chunk);
            n -= take;
            self.pos += take as usize;
        }
        Some(value)
    }

    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    /// `Err(true)` on overflow, `Err(false)` at the end of the data.
    fn read_uvarint(&mut self) -> Result<u64, bool> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.read_bits(8).ok_or(false)?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(true);
                }
                return Ok(value | (b << (7 * i)));
            }
            value |= (b & 0x7f) << (7 * i);
        }
        Err(true)
    }
}

fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn zigzag_decode(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Whether `x` fits an `n`-bit delta-of-delta bucket.
fn fits(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// The XOR value state shared by encoder and decoder: the previous value's
/// bits and the current leading/trailing-zero window.
struct XorState {
    bits: u64,
    /// 0xff until a window has been opened (encoder side).
    leading: u8,
    trailing: u8,
}

impl XorState {
    fn write(&mut self, w: &mut BitWriter, value: f64) {
        let new_bits = value.to_bits();
        let x = new_bits ^ self.bits;
        self.bits = new_bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        // Both counts are < 64 because x != 0; the 5-bit field caps leading at 31.
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            let significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.write_bits(x >> self.trailing, significant);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        w.write_bit(true);
        w.write_bits(u64::from(leading), 5);
        let significant = 64 - u32::from(leading) - u32::from(trailing);
        // 64 does not fit 6 bits and is written as 0.
        w.write_bits(u64::from(significant), 6);
        w.write_bits(x >> trailing, significant);
    }

    fn read(
        &mut self,
        r: &mut BitReader<'_>,
        sample: usize,
        total: usize,
    ) -> Result<f64, XorChunkError> {
        let truncated = XorChunkError::Truncated { sample, total };
        if !r.read_bit().ok_or(truncated.clone())? {
            return Ok(f64::from_bits(self.bits));
        }
        if r.read_bit().ok_or(truncated.clone())? {
            let leading = r.read_bits(5).ok_or(truncated.clone())? as u32;
            let mut significant = r.read_bits(6).ok_or(truncated.clone())? as u32;
            if significant == 0 {
                significant = 64;
            }
            if leading + significant > 64 {
                return Err(XorChunkError::InvalidWindow {
                    sample,
                    leading,
                    significant,
                });
            }
            // Both fit u8: leading <= 31, trailing <= 63.
            self.leading = leading as u8;
            self.trailing = (64 - leading - significant) as u8;
        }
        let significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let x = r.read_bits(significant).ok_or(truncated)?;
        self.bits ^= x << self.trailing;
        Ok(f64::from_bits(self.bits))
    }
}

/// Encodes `(timestamp_ms, value)` samples as one Prometheus XOR chunk.
/// Timestamps should ascend (as Prometheus requires); any order round-trips.
///
/// # Errors
///
/// [`XorChunkError::TooManySamples`] above 65535 samples.
pub fn encode_prometheus_xor_chunk(samples: &[(i64, f64)]) -> Result<Vec<u8>, XorChunkError> {
    let count = u16::try_from(samples.len()).map_err(|_| XorChunkError::TooManySamples {
        count: samples.len(),
    })?;
    let mut w = BitWriter::with_capacity(16 + samples.len() * 2);
    w.write_bits(u64::from(count), 16);
    let mut value = XorState {
        bits: 0,
        leading: 0xff,
        trailing: 0,
    };
    let mut prev_t = 0i64;
    let mut prev_delta = 0u64;
    for (i, &(t, v)) in samples.iter().enumerate() {
        let mut delta = 0u64;
        match i {
            0 => {
                w.write_uvarint(zigzag_encode(t));
                w.write_bits(v.to_bits(), 64);
                value.bits = v.to_bits();
            }
            1 => {
                delta = t.wrapping_sub(prev_t) as u64;
                w.write_uvarint(delta);
                value.write(&mut w, v);
            }
            _ => {
                delta = t.wrapping_sub(prev_t) as u64;
                let dod = delta.wrapping_sub(prev_delta) as i64;
                let dod_bits = dod as u64;
                if dod == 0 {
                    w.write_bit(false);
                } else if fits(dod, 14) {
                    w.write_bits(0b10, 2);
                    w.write_bits(dod_bits, 14);
                } else if fits(dod, 17) {
                    w.write_bits(0b110, 3);
                    w.write_bits(dod_bits, 17);
                } else if fits(dod, 20) {
                    w.write_bits(0b1110, 4);
                    w.write_bits(dod_bits, 20);
                } else {
                    w.write_bits(0b1111, 4);
                    w.write_bits(dod_bits, 64);
                }
                value.write(&mut w, v);
            }
        }
        prev_t = t;
        prev_delta = delta;
    }
    Ok(w.bytes)
}

/// Decodes a Prometheus XOR chunk into `(timestamp_ms, value)` samples.
/// Never panics on malformed input; trailing bytes after the announced
/// samples are ignored (they are padding in a valid chunk).
///
/// # Errors
///
/// [`XorChunkError`] naming the sample where the data stops making sense.
pub fn decode_prometheus_xor_chunk(data: &[u8]) -> Result<Vec<(i64, f64)>, XorChunkError> {
    let Some((header, stream)) = data.split_first_chunk::<2>() else {
        return Err(XorChunkError::MissingHeader { len: data.len() });
    };
    let total = usize::from(u16::from_be_bytes(*header));
    // Every sample after the first takes at least 2 bits: bound the
    // allocation by what the data can hold.
    let mut out = Vec::with_capacity(total.min(stream.len() * 4 + 1));
    let mut r = BitReader {
        data: stream,
        pos: 0,
    };
    let mut value = XorState {
        bits: 0,
        leading: 0,
        trailing: 0,
    };
    let mut prev_t = 0i64;
    let mut prev_delta = 0u64;
    for sample in 0..total {
        let truncated = XorChunkError::Truncated { sample, total };
        let varint_err = |overflow: bool| {
            if overflow {
                XorChunkError::VarintOverflow { sample }
            } else {
                XorChunkError::Truncated { sample, total }
            }
        };
        let (t, delta, v) = match sample {
            0 => {
                let t = zigzag_decode(r.read_uvarint().map_err(varint_err)?);
                let bits = r.read_bits(64).ok_or(truncated)?;
                value.bits = bits;
                (t, 0, f64::from_bits(bits))
            }
            1 => {
                let delta = r.read_uvarint().map_err(varint_err)?;
                let v = value.read(&mut r, sample, total)?;
                (prev_t.wrapping_add(delta as i64), delta, v)
            }
            _ => {
                let mut prefix = 0u32;
                while prefix < 4 && r.read_bit().ok_or(truncated.clone())? {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0i64,
                    4 => r.read_bits(64).ok_or(truncated)? as i64,
                    _ => {
                        let width = [14u32, 17, 20]
                            .get(prefix as usize - 1)
                            .copied()
                            .unwrap_or(20);
                        let mut bits = r.read_bits(width).ok_or(truncated)?;
                        if bits > 1 << (width - 1) {
                            bits = bits.wrapping_sub(1 << width);
                        }
                        bits as i64
                    }
                };
                let delta = prev_delta.wrapping_add(dod as u64);
                let v = value.read(&mut r, sample, total)?;
                (prev_t.wrapping_add(delta as i64), delta, v)
            }
        };
        out.push((t, v));
        prev_t = t;
        prev_delta = delta;
    }
    Ok(out)
}

/// Splits a series' samples into remote-read [`prompb::Chunk`]s of type
/// `XOR` with at most `max_samples_per_chunk` samples each (Prometheus uses
/// [`PROMETHEUS_SAMPLES_PER_CHUNK`]). `min_time_ms`/`max_time_ms` are the
/// smallest and largest timestamp in each chunk.
///
/// # Errors
///
/// [`XorChunkError::ZeroChunkSize`] if `max_samples_per_chunk` is 0.
pub fn encode_xor_chunks(
    samples: &[(i64, f64)],
    max_samples_per_chunk: usize,
) -> Result<Vec<prompb::Chunk>, XorChunkError> {
    if max_samples_per_chunk == 0 {
        return Err(XorChunkError::ZeroChunkSize);
    }
    let per_chunk = max_samples_per_chunk.min(usize::from(u16::MAX));
    samples
        .chunks(per_chunk)
        .map(|part| {
            let min_time_ms = part.iter().map(|s| s.0).min().unwrap_or_default();
            let max_time_ms = part.iter().map(|s| s.0).max().unwrap_or_default();
            Ok(prompb::Chunk {
                min_time_ms,
                max_time_ms,
                r#type: prompb::chunk::Encoding::Xor as i32,
                data: encode_prometheus_xor_chunk(part)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn bits_of(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    fn assert_round_trip(samples: &[(i64, f64)]) {
        let chunk = encode_prometheus_xor_chunk(samples).unwrap();
        let back = decode_prometheus_xor_chunk(&chunk).unwrap();
        assert_eq!(bits_of(&back), bits_of(samples));
    }

    #[test]
    fn empty_chunk_is_just_the_header() {
        assert_eq!(encode_prometheus_xor_chunk(&[]).unwrap(), [0, 0]);
        assert_eq!(decode_prometheus_xor_chunk(&[0, 0]).unwrap(), vec![]);
    }

    #[test]
    fn single_sample_layout() {
        // t0 = 1 → zigzag 2; v0 = 1.0 = 0x3ff0000000000000.
        let chunk = encode_prometheus_xor_chunk(&[(1, 1.0)]).unwrap();
        assert_eq!(chunk, [0, 1, 2, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn three_sample_layout_matches_the_format_description() {
        // Worked by hand from tsdb/docs/format/chunks.md:
        //   00 03                      num_samples = 3
        //   d0 0f                      varint t0 = 1000 (zigzag 2000)
        //   3f f0 00 00 00 00 00 00    v0 = 1.0
        //   e8 07                      uvarint t1 - t0 = 1000
        //   then bits: 0 (v1 xor = 0) | 10 + 00000111110100 (dod = 500)
        //   | 1 1 00001 001011 11111111111 (v2 = 2.0: xor 0x7ff0.., 1 leading
        //   zero, 11 significant bits, new window) | 0000000 padding
        let chunk = encode_prometheus_xor_chunk(&[(1000, 1.0), (2000, 1.0), (3500, 2.0)]).unwrap();
        assert_eq!(
            chunk,
            [
                0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x40, 0xfa, 0x61,
                0x2f, 0xff, 0x80
            ]
        );
    }

    #[test]
    fn regular_scrape_layout_is_compact() {
        // Constant 15 s interval, constant value: after the first two samples
        // each sample costs 2 bits (dod 0, xor 0).
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, 42.0))
            .collect();
        let chunk = encode_prometheus_xor_chunk(&samples).unwrap();
        // header 2 + varint(zigzag t0) 6 + 8 + uvarint(15000) 2 + 1 bit, then 118 * 2 bits.
        let bits: usize = 8 * (2 + 6 + 8 + 2) + 1 + 118 * 2;
        assert_eq!(chunk.len(), bits.div_ceil(8));
        assert_round_trip(&samples);
    }

    #[test]
    fn dod_bucket_boundaries_round_trip() {
        for dod in [
            1i64,
            -1,
            8191,
            -8191,
            8192,
            -8192,
            8193,
            65535,
            -65535,
            65536,
            -65536,
            65537,
            524_287,
            -524_287,
            524_288,
            -524_288,
            524_289,
            i64::MAX,
            i64::MIN,
        ] {
            let t1 = 1000i64;
            let t2 = t1.wrapping_add(1000).wrapping_add(dod);
            assert_round_trip(&[(0, 1.0), (t1, 2.0), (t2, 3.0), (t2.wrapping_add(5), 4.0)]);
        }
    }

    #[test]
    fn stale_nan_and_special_values_are_bit_exact() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert_round_trip(&[
            (1000, 1.5),
            (2000, stale),
            (3000, 2.5),
            (4000, f64::NAN),
            (5000, -0.0),
            (6000, f64::INFINITY),
            (7000, f64::MIN_POSITIVE),
            (8000, stale),
        ]);
        let chunk = encode_prometheus_xor_chunk(&[(0, stale)]).unwrap();
        let back = decode_prometheus_xor_chunk(&chunk).unwrap();
        assert_eq!(back.first().map(|s| s.1.to_bits()), Some(STALE_NAN_BITS));
    }

    #[test]
    fn too_many_samples_is_an_error() {
        let samples = vec![(0i64, 0.0f64); 65536];
        assert_eq!(
            encode_prometheus_xor_chunk(&samples),
            Err(XorChunkError::TooManySamples { count: 65536 })
        );
        assert!(encode_prometheus_xor_chunk(&samples[..65535]).is_ok());
    }

    #[test]
    fn malformed_chunks_are_errors() {
        assert_eq!(
            decode_prometheus_xor_chunk(&[1]),
            Err(XorChunkError::MissingHeader { len: 1 })
        );
        assert_eq!(
            decode_prometheus_xor_chunk(&[0, 2, 2]),
            Err(XorChunkError::Truncated {
                sample: 0,
                total: 2
            })
        );
        // Sample 1 opens a window of 31 leading + 60 significant bits.
        let mut chunk = encode_prometheus_xor_chunk(&[(0, 1.0)]).unwrap();
        chunk[1] = 2;
        chunk.push(0x01); // uvarint delta 1
        chunk.push(0b1111_1111); // 1,1, leading=11111, sig=0b1…
        chunk.push(0b1110_0000);
        assert!(matches!(
            decode_prometheus_xor_chunk(&chunk),
            Err(XorChunkError::InvalidWindow {
                sample: 1,
                leading: 31,
                ..
            })
        ));
    }

    #[test]
    fn chunks_are_cut_and_typed() {
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (i * 1000, i as f64)).collect();
        let chunks = encode_xor_chunks(&samples, PROMETHEUS_SAMPLES_PER_CHUNK).unwrap();
        assert_eq!(chunks.len(), 3);
        let mut all = Vec::new();
        for c in &chunks {
            assert_eq!(c.r#type, prompb::chunk::Encoding::Xor as i32);
            let part = decode_prometheus_xor_chunk(&c.data).unwrap();
            assert_eq!(c.min_time_ms, part.first().unwrap().0);
            assert_eq!(c.max_time_ms, part.last().unwrap().0);
            all.extend(part);
        }
        assert_eq!(bits_of(&all), bits_of(&samples));
        assert_eq!(
            encode_xor_chunks(&samples, 0),
            Err(XorChunkError::ZeroChunkSize)
        );
    }

    fn value_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::from_bits(STALE_NAN_BITS)),
            (0u32..1000).prop_map(f64::from),
            (-5i32..5).prop_map(|e| 10f64.powi(e)),
        ]
    }

    fn timestamp_strategy() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            // Realistic: ascending with jitter.
            (
                any::<i32>(),
                proptest::collection::vec(0i64..100_000, 0..200)
            )
                .prop_map(|(start, steps)| {
                    let mut t = i64::from(start);
                    steps
                        .into_iter()
                        .map(|s| {
                            t += s;
                            t
                        })
                        .collect()
                }),
            // Anything at all.
            proptest::collection::vec(any::<i64>(), 0..50),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trip_is_bit_exact(
            ts in timestamp_strategy(),
            vs in proptest::collection::vec(value_strategy(), 200),
        ) {
            let samples: Vec<(i64, f64)> = ts.iter().copied().zip(vs).collect();
            let chunk = encode_prometheus_xor_chunk(&samples).unwrap();
            let back = decode_prometheus_xor_chunk(&chunk).unwrap();
            prop_assert_eq!(bits_of(&back), bits_of(&samples));
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(samples) = decode_prometheus_xor_chunk(&data) {
                let header = u16::from_be_bytes([data[0], data[1]]);
                prop_assert_eq!(samples.len(), usize::from(header));
            }
        }
    }
}
