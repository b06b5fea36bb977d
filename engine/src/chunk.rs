//! Chunk encodings: how a run of one series' samples is stored in the head and in blocks.
//!
//! A chunk is an opaque byte string plus an [`Encoding`] byte kept by its owner (the head's
//! chunk list, the block's chunk reference); the byte is the chunk's type tag, so new encodings
//! (native histograms, say) slot in beside the existing ones.
//!
//! | byte | encoding                   | used for                    | module            |
//! |------|----------------------------|-----------------------------|-------------------|
//! | 1    | [`Encoding::Gorilla`]      | head chunks (append-only)   | `gorilla.rs`      |
//! | 2    | [`Encoding::ColumnarZstd`] | block chunks (baseline)     | `columnar_zstd.rs`|
//! | 3    | [`Encoding::RangeCoded`]   | block chunks (densest)      | `range_coded.rs`  |
//!
//! Every module documents its byte layout; `docs/FORMAT.md` (section "Chunks") collects them.
//!
//! # Why two kinds of encodings
//!
//! * The **head** appends one sample at a time to ~120-sample chunks and must be able to hand
//!   out a decodable chunk at any moment: Gorilla (delta-of-delta timestamps, XOR values) is
//!   simple, fast to append (tens of ns) and to decode (hundreds of millions of samples/s).
//! * **Blocks** are written once per series and range and read many times; they can afford a
//!   costly encoder that looks at the whole run first. [`encode_best`] keeps the smaller of
//!   `RangeCoded` and `Gorilla`. Both block encodings share one transform
//!   (`transform.rs`): timestamps as offsets from the scrape grid, values as decimal integers
//!   (with a residual that makes every f64 bit pattern round-trip), a common divisor, and the
//!   cheapest differencing order; they differ in entropy coding (an adaptive range coder vs.
//!   varints + zstd).
//!
//! On a real 1 s capture (`examples/compress_real.rs`, chunk data only): Gorilla in 120-sample
//! head chunks takes 1.10 bytes/sample, `RangeCoded` with one chunk per series 0.25
//! (`docs/FORMAT.md` (section "Chunks") has the table).
//!
//! # Invariants
//!
//! * Values round-trip bit-exactly: NaN payloads (Prometheus's stale marker
//!   `0x7ff0000000000002`), ±Inf and -0.0 included.
//! * Any i64 timestamps round-trip (arithmetic wraps); the engine only writes strictly
//!   increasing ones, which [`encode`] checks.
//! * Decoders never panic and never allocate in proportion to an untrusted count without a
//!   bound: malformed input yields a [`ChunkError`], via `Err` or [`ChunkIter::err`].
//! * [`ChunkIter`] owns a [`Bytes`], so chunks sliced out of an mmapped block iterate without
//!   copies or lifetimes.

mod bits;
mod columnar_zstd;
mod gorilla;
mod range_coded;
mod rangecoder;
mod transform;
mod varint;

use std::fmt;

pub use bytes::Bytes;

pub use columnar_zstd::COLUMNAR_MAX_SAMPLES;
pub use gorilla::{GORILLA_MAX_SAMPLES, GorillaAppender};

/// Samples per head chunk before the head cuts a new one.
pub const DEFAULT_MAX_SAMPLES: usize = 120;

/// Recommended maximum samples per block chunk: 2 h of 1 s scrapes fit in one chunk, and
/// larger chunks compress better (the range coder's models need a few hundred samples to
/// learn); a 7200-sample chunk decodes in well under a millisecond.
pub const DEFAULT_BLOCK_CHUNK_SAMPLES: usize = 7200;

/// Chunk encoding tag, stored next to every chunk.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Gorilla: delta-of-delta timestamps, XOR values, bit-packed; the head's encoding.
    Gorilla = 1,
    /// Grid/decimal transform, varint columns, zstd; a block encoding.
    ColumnarZstd = 2,
    /// Grid/decimal transform, adaptive binary range coding; the densest block encoding.
    RangeCoded = 3,
}

impl Encoding {
    /// All encodings, in tag order.
    pub const ALL: [Encoding; 3] = [
        Encoding::Gorilla,
        Encoding::ColumnarZstd,
        Encoding::RangeCoded,
    ];

    /// Parses a tag byte.
    pub fn from_u8(b: u8) -> Result<Encoding, ChunkError> {
        match b {
            1 => Ok(Encoding::Gorilla),
            2 => Ok(Encoding::ColumnarZstd),
            3 => Ok(Encoding::RangeCoded),
            other => Err(ChunkError::UnknownEncoding(other)),
        }
    }

    /// The tag byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Short name, as used in docs and measurements.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gorilla => "gorilla",
            Encoding::ColumnarZstd => "columnar-zstd",
            Encoding::RangeCoded => "range-coded",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of chunk encoding and decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The chunk bytes are malformed (free-form; kept for callers outside this module).
    #[error("corrupt chunk: {0}")]
    Corrupt(String),
    /// The encoding tag is not one this version knows.
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    /// A header field is cut off.
    #[error("{encoding} chunk truncated: {what} missing at byte {offset}")]
    Truncated {
        /// The chunk's encoding.
        encoding: Encoding,
        /// The missing field.
        what: &'static str,
        /// Byte offset where it should start.
        offset: usize,
    },
    /// A header field has an impossible value.
    #[error("{encoding} chunk has invalid {what}: {value}")]
    BadHeader {
        /// The chunk's encoding.
        encoding: Encoding,
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// The data ended (or the coder ran out of bytes) inside a sample.
    #[error("{encoding} chunk data ends inside sample {sample}")]
    Overrun {
        /// The chunk's encoding.
        encoding: Encoding,
        /// Index of the sample being decoded.
        sample: usize,
    },
    /// A code inside the data is invalid.
    #[error("{encoding} chunk is malformed at sample {sample}: {what}")]
    Malformed {
        /// The chunk's encoding.
        encoding: Encoding,
        /// What is wrong.
        what: &'static str,
        /// Index of the sample being decoded.
        sample: usize,
    },
    /// The run is longer than the encoding can hold.
    #[error("{encoding} chunk cannot hold {got} samples (max {max})")]
    TooManySamples {
        /// The requested encoding.
        encoding: Encoding,
        /// Samples given.
        got: usize,
        /// The encoding's limit.
        max: usize,
    },
    /// [`encode`] was given timestamps that do not strictly increase.
    #[error("timestamps not strictly increasing at sample {index}: {got} after {prev}")]
    NotIncreasing {
        /// Index of the offending sample.
        index: usize,
        /// Timestamp of the sample before it.
        prev: i64,
        /// Its timestamp.
        got: i64,
    },
    /// zstd failed.
    #[error("zstd failed to {op}: {source}")]
    Zstd {
        /// The operation, as a verb phrase.
        op: &'static str,
        /// zstd's error.
        #[source]
        source: std::io::Error,
    },
}

/// Encode a whole, sorted, strictly-increasing-timestamp run of samples with the given encoding.
pub fn encode(encoding: Encoding, samples: &[(i64, f64)]) -> Result<Vec<u8>, ChunkError> {
    for (i, w) in samples.windows(2).enumerate() {
        if let [a, b] = w
            && b.0 <= a.0
        {
            return Err(ChunkError::NotIncreasing {
                index: i + 1,
                prev: a.0,
                got: b.0,
            });
        }
    }
    match encoding {
        Encoding::Gorilla => {
            if samples.len() > GORILLA_MAX_SAMPLES {
                return Err(ChunkError::TooManySamples {
                    encoding,
                    got: samples.len(),
                    max: GORILLA_MAX_SAMPLES,
                });
            }
            Ok(gorilla::encode(samples))
        }
        Encoding::ColumnarZstd => columnar_zstd::encode_plan(&transform::plan(samples)),
        Encoding::RangeCoded => Ok(range_coded::encode_plan(&transform::plan(samples))),
    }
}

/// Pick the densest encoding for a run of samples destined for an immutable block; returns it
/// and the bytes.
///
/// Tries `RangeCoded` and `Gorilla` (the latter only when it could be smaller) and keeps the
/// smaller. `ColumnarZstd` is not tried: on the real capture it is 23 % larger overall, was
/// smaller for under 1 % of whole-series chunks and then by under 1 %, encodes ten times slower
/// and decodes no faster.
///
/// Never fails: `RangeCoded` takes any number of samples and any timestamps (the caller should
/// still pass a sorted, strictly increasing run of at most [`DEFAULT_BLOCK_CHUNK_SAMPLES`]).
pub fn encode_best(samples: &[(i64, f64)]) -> (Encoding, Vec<u8>) {
    let plan = transform::plan(samples);
    let mut best = (Encoding::RangeCoded, range_coded::encode_plan(&plan));
    // A Gorilla chunk takes at least 11 bytes plus 2 bits per sample after the first.
    let gorilla_floor = 11 + samples.len().saturating_sub(1) / 4;
    if samples.len() <= GORILLA_MAX_SAMPLES && gorilla_floor < best.1.len() {
        let b = gorilla::encode(samples);
        if b.len() < best.1.len() {
            best = (Encoding::Gorilla, b);
        }
    }
    best
}

/// A `ColumnarZstd` chunk, decoded in full on first use.
#[derive(Debug)]
struct Materialized {
    data: Bytes,
    samples: Option<Vec<(i64, f64)>>,
    pos: usize,
    err: Option<ChunkError>,
}

impl Materialized {
    fn samples(&mut self) -> &[(i64, f64)] {
        if self.samples.is_none() {
            match columnar_zstd::decode(&self.data) {
                Ok(s) => self.samples = Some(s),
                Err(e) => {
                    self.err = Some(e);
                    self.samples = Some(Vec::new());
                }
            }
        }
        self.samples.as_deref().unwrap_or(&[])
    }

    fn next(&mut self) -> Option<(i64, f64)> {
        let pos = self.pos;
        let s = self.samples().get(pos).copied();
        if s.is_some() {
            self.pos += 1;
        }
        s
    }

    fn current(&self) -> Option<(i64, f64)> {
        let pos = self.pos.checked_sub(1)?;
        self.samples.as_ref()?.get(pos).copied()
    }

    /// Moves to the first sample at or after `t` and returns it.
    fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        let pos = self.pos;
        let skip = self
            .samples()
            .get(pos..)
            .map_or(0, |s| s.partition_point(|x| x.0 < t));
        self.pos = pos + skip;
        self.next()
    }
}

#[derive(Debug)]
enum Inner {
    Gorilla(gorilla::Decoder),
    /// Boxed: its three models make it ~2.5 KB.
    RangeCoded(Box<range_coded::Decoder>),
    ColumnarZstd(Materialized),
    Done,
}

/// Decoder over any encoding.
///
/// Owns its bytes (a [`Bytes`], so it can be a zero-copy slice of a block) and has no lifetime
/// parameter. Iteration stops at the end or at the first corruption; [`err`](Self::err) tells
/// which.
#[derive(Debug)]
pub struct ChunkIter {
    inner: Inner,
    n: usize,
    err: Option<ChunkError>,
}

impl ChunkIter {
    /// Validates the header of `data` and prepares to iterate.
    pub fn new(encoding: Encoding, data: Bytes) -> Result<ChunkIter, ChunkError> {
        let (inner, n) = match encoding {
            Encoding::Gorilla => {
                let d = gorilla::Decoder::new(data)?;
                let n = d.num_samples();
                (Inner::Gorilla(d), n)
            }
            Encoding::RangeCoded => {
                let d = Box::new(range_coded::Decoder::new(data)?);
                let n = d.num_samples();
                (Inner::RangeCoded(d), n)
            }
            Encoding::ColumnarZstd => {
                let (h, _) = transform::Header::read(encoding, &data)?;
                if h.n > COLUMNAR_MAX_SAMPLES {
                    return Err(ChunkError::TooManySamples {
                        encoding,
                        got: h.n,
                        max: COLUMNAR_MAX_SAMPLES,
                    });
                }
                let m = Materialized {
                    data,
                    samples: None,
                    pos: 0,
                    err: None,
                };
                (Inner::ColumnarZstd(m), h.n)
            }
        };
        Ok(ChunkIter {
            inner,
            n,
            err: None,
        })
    }

    /// Number of samples the chunk declares.
    pub fn num_samples(&self) -> usize {
        self.n
    }

    /// Iteration is over: keep the error, if any, and drop the decoder.
    #[cold]
    fn end(&mut self) -> Option<(i64, f64)> {
        let err = match &mut self.inner {
            Inner::Gorilla(d) => d.take_err(),
            Inner::RangeCoded(d) => d.take_err(),
            Inner::ColumnarZstd(m) => m.err.take(),
            Inner::Done => None,
        };
        if err.is_some() {
            self.err = err;
        }
        self.inner = Inner::Done;
        None
    }

    /// Next sample, or None at the end or on corruption (then `err()` tells what).
    #[inline]
    pub fn next_sample(&mut self) -> Option<(i64, f64)> {
        let r = match &mut self.inner {
            Inner::Gorilla(d) => d.next(),
            Inner::RangeCoded(d) => d.next(),
            Inner::ColumnarZstd(m) => m.next(),
            Inner::Done => return None,
        };
        if r.is_none() {
            return self.end();
        }
        r
    }

    /// Advance to the first sample with timestamp >= t and return it (never moves backwards).
    ///
    /// If the current sample (the last one returned) already has a timestamp >= t, it is
    /// returned again and the iterator does not move.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        if let Some(c) = self.at()
            && c.0 >= t
        {
            return Some(c);
        }
        if let Inner::ColumnarZstd(m) = &mut self.inner {
            let r = m.seek(t);
            if r.is_none() {
                return self.end();
            }
            return r;
        }
        while let Some(s) = self.next_sample() {
            if s.0 >= t {
                return Some(s);
            }
        }
        None
    }

    /// The sample last returned by [`next_sample`](Self::next_sample) or [`seek`](Self::seek);
    /// `None` before the first and after the end.
    pub fn at(&self) -> Option<(i64, f64)> {
        match &self.inner {
            Inner::Gorilla(d) => d.current(),
            Inner::RangeCoded(d) => d.current(),
            Inner::ColumnarZstd(m) => m.current(),
            Inner::Done => None,
        }
    }

    /// The corruption that ended iteration, if any.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// Takes the corruption that ended iteration, if any.
    pub fn take_err(&mut self) -> Option<ChunkError> {
        self.err.take()
    }
}

/// Convenience: decode all samples (error on corruption).
pub fn decode_all(encoding: Encoding, data: Bytes) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut it = ChunkIter::new(encoding, data)?;
    let mut out = Vec::with_capacity(it.num_samples().min(1 << 16));
    while let Some(s) = it.next_sample() {
        out.push(s);
    }
    match it.take_err() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests;
