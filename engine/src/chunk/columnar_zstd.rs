//! `ColumnarZstd` block chunks (encoding byte `2`): the shared transform, varint columns, zstd.
//!
//! The samples go through the same transform as `RangeCoded` (`transform.rs`); the integer
//! streams are written one after the other as zigzag varints (all timestamps, then all values,
//! then all residuals) and the whole body is one zstd frame.
//!
//! # Byte layout
//!
//! ```text
//! header   the transform header (transform.rs); a chunk with n <= 1, or with no stream
//!          present (exact grid, constant value), is just that
//! rest     one zstd frame (RFC 8878) whose header records its content size, containing:
//!            n-1 zigzag LEB128 varints   timestamp stream (absent for exact-grid timestamps)
//!            n-1 zigzag LEB128 varints   value stream (absent for constant values)
//!            n-1 zigzag LEB128 varints   residual stream (only when residuals are present)
//! ```
//!
//! # Why it is built this way
//!
//! It is the general-purpose-compressor baseline that the range coder is measured against, and
//! the faster of the two to decode (zstd runs at hundreds of MB/s and the varints are
//! byte-aligned). Columnar order puts similar bytes next to each other for zstd's matcher. The
//! decoder materialises the chunk (block chunks are decoded whole anyway) so `seek` can binary
//! search.
//!
//! # Invariants
//!
//! * n <= [`COLUMNAR_MAX_SAMPLES`] and the frame's declared content size is at most
//!   30 bytes per sample, both checked before anything is allocated, so a corrupt chunk cannot
//!   make the decoder allocate more than ~30 MiB.

use bytes::Bytes;

use super::transform::{Header, Plan, Rebuilder};
use super::varint::{get_varint, put_varint};
use super::{ChunkError, Encoding};

/// Most samples a `ColumnarZstd` chunk may hold (bounds the decoder's allocation).
pub const COLUMNAR_MAX_SAMPLES: usize = 1 << 20;

/// zstd level used for block chunks (written once, read many times).
const ZSTD_LEVEL: i32 = 19;

fn zstd_err(op: &'static str) -> impl FnOnce(std::io::Error) -> ChunkError {
    move |source| ChunkError::Zstd { op, source }
}

/// Encodes a planned run.
pub(crate) fn encode_plan(plan: &Plan) -> Result<Vec<u8>, ChunkError> {
    if plan.header.n > COLUMNAR_MAX_SAMPLES {
        return Err(ChunkError::TooManySamples {
            encoding: Encoding::ColumnarZstd,
            got: plan.header.n,
            max: COLUMNAR_MAX_SAMPLES,
        });
    }
    let mut out = Vec::new();
    plan.header.write(&mut out);
    if plan.header.n == 0 {
        return Ok(out);
    }
    let mut body = Vec::with_capacity(plan.ts.len() * 3);
    let none: &[i64] = &[];
    let ts = if plan.header.ts_present {
        &plan.ts[..]
    } else {
        none
    };
    let values = if plan.header.values_present {
        &plan.values[..]
    } else {
        none
    };
    for &y in ts.iter().chain(values).chain(&plan.residuals) {
        put_varint(&mut body, y);
    }
    if body.is_empty() {
        // n = 1, or exact grid and constant values: the header says it all.
        return Ok(out);
    }
    let frame = zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(zstd_err("compress chunk"))?;
    out.extend_from_slice(&frame);
    Ok(out)
}

/// Decodes a whole chunk into samples.
pub(crate) fn decode(data: &Bytes) -> Result<Vec<(i64, f64)>, ChunkError> {
    let enc = Encoding::ColumnarZstd;
    let (header, pos) = Header::read(enc, data)?;
    let n = header.n;
    if n > COLUMNAR_MAX_SAMPLES {
        return Err(ChunkError::TooManySamples {
            encoding: enc,
            got: n,
            max: COLUMNAR_MAX_SAMPLES,
        });
    }
    let mut rebuild = Rebuilder::new(&header);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    out.push(rebuild.first());
    if n == 1 {
        return Ok(out);
    }
    let frame = data.get(pos..).unwrap_or(&[]);
    let present = [
        header.ts_present,
        header.values_present,
        rebuild.has_residuals(),
    ];
    let streams = present.iter().filter(|&&p| p).count();
    if streams == 0 {
        // Exact grid and constant values: nothing but the header.
        for _ in 1..n {
            out.push(rebuild.next(0, 0, 0));
        }
        return Ok(out);
    }
    let max_body = (n - 1) * streams * 10;
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .ok_or(ChunkError::Truncated {
            encoding: enc,
            what: "zstd frame header",
            offset: pos,
        })?;
    if declared > max_body as u64 {
        return Err(ChunkError::BadHeader {
            encoding: enc,
            what: "zstd content size",
            value: declared,
        });
    }
    let body =
        zstd::bulk::decompress(frame, declared as usize).map_err(zstd_err("decompress chunk"))?;
    // Start of each present stream: skip n-1 varints per preceding stream.
    let mut cursors: [Option<usize>; 3] = [None; 3];
    let mut p = 0usize;
    for (c, _) in cursors.iter_mut().zip(present).filter(|(_, here)| *here) {
        *c = Some(p);
        for _ in 1..n {
            get_varint(&body, &mut p).ok_or(ChunkError::Overrun {
                encoding: enc,
                sample: 0,
            })?;
        }
    }
    let next = |cursor: &mut Option<usize>, i: usize| -> Result<i64, ChunkError> {
        match cursor {
            Some(p) => get_varint(&body, p).ok_or(ChunkError::Overrun {
                encoding: enc,
                sample: i,
            }),
            None => Ok(0),
        }
    };
    let [mut ct, mut cv, mut cr] = cursors;
    for i in 1..n {
        let t = next(&mut ct, i)?;
        let v = next(&mut cv, i)?;
        let r = next(&mut cr, i)?;
        out.push(rebuild.next(t, v, r));
    }
    Ok(out)
}
