//! `RangeCoded` block chunks (encoding byte `3`): the densest encoding, for immutable blocks.
//!
//! The samples go through the shared transform (`transform.rs`: grid timestamps, decimal
//! values with residuals, gcd, differencing), and the resulting integer streams are coded with
//! an adaptive binary range coder (`rangecoder.rs`): each stream has its own model, so the
//! coder learns per chunk that, say, timestamps are almost always on the grid and a counter
//! grows by 3 to 5 bits' worth per scrape.
//!
//! # Byte layout
//!
//! ```text
//! header     the transform header (transform.rs); a chunk with n <= 1, or with no stream
//!            present (exact grid, constant value), is just that
//! uvarint    rc_len     length of the range-coded stream
//! rc_len     bytes      range-coded decisions
//! rest       bytes      raw bit stream (MSB-first, zero-padded): the low mantissa bits
//! ```
//!
//! For each sample i = 1 .. n-1 in order, the coded streams interleave as: the timestamp
//! integer, the value integer, then the residual integer, each only when its stream is present
//! (the header says: exact-grid timestamps and constant values have no stream); each
//! integer is binarised by `IntModel` (zero flag, sign, bit length, two modelled mantissa
//! bits) and its remaining mantissa bits go to the raw stream in the same order.
//!
//! # Why it is built this way
//!
//! Block chunks are written once and read many times, by a decoder that streams sample by
//! sample, so size wins over encode speed. Interleaving the streams per sample (rather than
//! columnar) lets the decoder run without buffering a whole column; the models are separate,
//! so interleaving costs nothing in size. Decode speed is bounded by ~2 coded decisions per
//! sample for constant series and ~25 for noisy ones.
//!
//! # Invariants
//!
//! * The decoder reads exactly `rc_len` range-coder bytes for a valid chunk; needing more
//!   means truncation or corruption, reported as [`ChunkError::Overrun`]. Likewise for the raw
//!   stream. Since each coded decision consumes range, a corrupt header claiming a huge `n`
//!   runs out of bytes quickly: decoding time is bounded by the chunk length.

use bytes::Bytes;

use super::bits::{BitReader, BitWriter};
use super::rangecoder::{Coded, IntModel, RcDecoder, RcEncoder};
use super::transform::{Header, Plan, Rebuilder};
use super::varint::{get_uvarint, put_uvarint};
use super::{ChunkError, Encoding};

/// Encodes a planned run.
pub(crate) fn encode_plan(plan: &Plan) -> Vec<u8> {
    let mut out = Vec::new();
    plan.header.write(&mut out);
    if !plan.header.has_streams() {
        return out;
    }
    let mut enc = RcEncoder::new();
    let mut raw = BitWriter::default();
    let mut m_ts = IntModel::new();
    let mut m_val = IntModel::new();
    let mut m_res = IntModel::new();
    let with_ts = plan.header.ts_present;
    let with_values = plan.header.values_present;
    let with_res = plan.header.residual.is_some();
    let mut sink = Coded {
        enc: &mut enc,
        raw: &mut raw,
    };
    for (i, (&t, &v)) in plan.ts.iter().zip(&plan.values).enumerate() {
        if with_ts {
            m_ts.encode(&mut sink, t);
        }
        if with_values {
            m_val.encode(&mut sink, v);
        }
        if with_res {
            let r = plan.residuals.get(i).copied().unwrap_or(0);
            m_res.encode(&mut sink, r);
        }
    }
    let rc = enc.finish();
    put_uvarint(&mut out, rc.len() as u64);
    out.extend_from_slice(&rc);
    out.extend_from_slice(raw.bytes());
    out
}

/// Streaming `RangeCoded` decoder.
#[derive(Debug)]
pub(crate) struct Decoder {
    rc: Bytes,
    raw: Bytes,
    dec: RcDecoder,
    rr: BitReader,
    m_ts: IntModel,
    m_val: IntModel,
    m_res: IntModel,
    rebuild: Rebuilder,
    ts_present: bool,
    values_present: bool,
    n: usize,
    i: usize,
    last: (i64, f64),
    err: Option<ChunkError>,
}

impl Decoder {
    /// Parses the header and splits the two streams.
    pub(crate) fn new(data: Bytes) -> Result<Self, ChunkError> {
        let (header, mut pos) = Header::read(Encoding::RangeCoded, &data)?;
        let (rc, raw) = if !header.has_streams() {
            (Bytes::new(), Bytes::new())
        } else {
            let at = pos;
            let len = get_uvarint(&data, &mut pos).ok_or(ChunkError::Truncated {
                encoding: Encoding::RangeCoded,
                what: "range-coded stream length",
                offset: at,
            })?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| pos.checked_add(l))
                .filter(|&e| e <= data.len())
                .ok_or(ChunkError::Truncated {
                    encoding: Encoding::RangeCoded,
                    what: "range-coded stream",
                    offset: pos,
                })?;
            (data.slice(pos..end), data.slice(end..))
        };
        Ok(Decoder {
            // Without streams there is nothing to read (and no byte may be demanded).
            dec: if header.has_streams() {
                RcDecoder::new(&rc)
            } else {
                RcDecoder::empty()
            },
            rc,
            raw,
            rr: BitReader::new(0),
            m_ts: IntModel::new(),
            m_val: IntModel::new(),
            m_res: IntModel::new(),
            rebuild: Rebuilder::new(&header),
            ts_present: header.ts_present,
            values_present: header.values_present,
            n: header.n,
            i: 0,
            last: (0, 0.0),
            err: None,
        })
    }

    pub(crate) fn num_samples(&self) -> usize {
        self.n
    }

    /// The sample last returned.
    pub(crate) fn current(&self) -> Option<(i64, f64)> {
        (self.i > 0 && self.err.is_none()).then_some(self.last)
    }

    /// The error that ended iteration, if any.
    pub(crate) fn take_err(&mut self) -> Option<ChunkError> {
        self.err.take()
    }

    /// The next sample; `None` at the end or on corruption (see [`take_err`](Self::take_err)).
    #[inline]
    pub(crate) fn next(&mut self) -> Option<(i64, f64)> {
        if self.i >= self.n {
            return None;
        }
        if self.i == 0 {
            self.i = 1;
            self.last = self.rebuild.first();
            return Some(self.last);
        }
        let rc: &[u8] = &self.rc;
        let raw: &[u8] = &self.raw;
        let t = if self.ts_present {
            self.m_ts.decode(&mut self.dec, rc, &mut self.rr, raw)
        } else {
            0
        };
        let v = if self.values_present {
            self.m_val.decode(&mut self.dec, rc, &mut self.rr, raw)
        } else {
            0
        };
        let r = if self.rebuild.has_residuals() {
            self.m_res.decode(&mut self.dec, rc, &mut self.rr, raw)
        } else {
            0
        };
        if self.dec.overrun() || self.rr.overrun(raw.len()) {
            return self.fail_overrun();
        }
        self.i += 1;
        self.last = self.rebuild.next(t, v, r);
        Some(self.last)
    }

    #[cold]
    fn fail_overrun(&mut self) -> Option<(i64, f64)> {
        self.err = Some(ChunkError::Overrun {
            encoding: Encoding::RangeCoded,
            sample: self.i,
        });
        self.i = self.n;
        None
    }
}
