//! The block index: symbols, label table, postings, series and their chunk metadata.
//!
//! The index answers the select path's questions — which label names and values exist, which
//! series carry `name=value` (a roaring bitmap of series ids), and what a series' labels and
//! chunks are — from one memory-mapped file.
//!
//! Why it looks like this:
//!
//! - **Size.** Every distinct string is stored once, sorted and front-coded (each string stores
//!   only the suffix it does not share with its predecessor). Series do not reference strings
//!   directly: a label is `(name index, value index within that name)`, both small numbers, and
//!   name indexes are gap-coded because labels are sorted. Chunk metadata is delta-coded against
//!   the previous chunk of the series: a flags byte says which of gap, duration, sample count,
//!   encoding and segment changed, and only changed fields follow, so a chunk of a regularly
//!   scraped series costs two bytes (flags and the change in chunk size). Nothing is aligned or
//!   padded.
//! - **Open time.** Opening checks every checksum and decodes only the label table (names, their
//!   value references and postings lengths). Symbols are decoded on demand, a group of 16 at a
//!   time (a fixed-width table points at every 16th symbol), and each decoded group is cached,
//!   so memory grows only with the strings queries touch. Series are decoded on demand: a
//!   fixed-width table holds the offset of every series, so [`IndexReader::series`] is O(1).
//! - **Integrity.** Length, magic, version, TOC checksum and every section checksum are verified
//!   before anything is decoded; decoding is bounds-checked and validates references, so even
//!   checksummed garbage yields an error, never a panic or an unbounded allocation.
//!
//! # Invariants
//!
//! Symbols are sorted byte-wise and unique. Names in the label table are in ascending symbol
//! order (which is string order), and so are the values of each name; the postings section holds
//! one bitmap per (name, value) in that order. Series ids are `0..num_series` in ascending
//! label-set order. A series record decodes to exactly its byte range.
//!
//! # Durability
//!
//! Written once by the block writer into the temp directory and fsynced before the rename;
//! never modified afterwards (read through `mmap`).
//!
//! ```text
//! offset 0   magic "STIX" (53 54 49 58)
//!        4   version u8 = 1
//!        5   symbols section
//!            labels section
//!            postings section
//!            series section
//!            series offsets section
//! len - 124  TOC
//!
//! TOC (124 bytes, little-endian):
//!   min_time i64 | max_time i64 | num_series u32
//!   5 × { offset u64 | len u64 | crc32 u32 }   symbols, labels, postings, series, series offsets
//!   crc32 u32 of the 120 TOC bytes before it
//!
//! symbols:   num_symbols u32 | group_offset u32 × ceil(num_symbols / 16) | entries
//!            entry = shared uvarint | suffix_len uvarint | suffix bytes
//!            (shared = bytes in common with the previous symbol; 0 for the first of each group
//!             of 16; group offsets are relative to the first entry)
//! labels:    num_names uvarint, then per name:
//!              name_gap uvarint        symbol ref; first absolute, then ref - prev_ref - 1
//!              num_values uvarint      >= 1
//!              per value: value_gap uvarint (same coding), postings_len uvarint
//! postings:  per (name, value) in label-table order: a roaring bitmap in the portable
//!            RoaringFormatSpec serialization, postings_len bytes
//! series:    per series id: record (see below), back to back
//! series offsets: u32 × num_series, offset of each record in the series section
//!
//! series record:
//!   num_labels uvarint (>= 1)
//!   per label: name_gap uvarint (label-table index; first absolute, then idx - prev - 1),
//!              value_idx uvarint (index into that name's values; omitted, and 0, when the
//!              name has a single value)
//!   num_chunks uvarint
//!   chunk 0:   min_time - block_min_time uvarint | max_time - min_time uvarint |
//!              num_samples uvarint | encoding u8 | segment uvarint | offset uvarint
//!   chunk i>0: flags u8, bit set = field differs from the previous chunk:
//!                bit 0 gap, bit 1 dur, bit 2 num_samples, bit 3 segment, bit 4 encoding,
//!                bits 5-7 reserved (0)
//!              [gap_i - gap_(i-1) varint]   if bit 0; gap_i = min_time_i - max_time_(i-1) - 1,
//!                                           gap_0 = 0
//!              [dur_i - dur_(i-1) varint]   if bit 1; dur = max_time - min_time
//!              [num_samples_i - num_samples_(i-1) varint]  if bit 2
//!              [encoding u8]                if bit 4
//!              if bit 3: segment - prev_segment uvarint (>= 1) | offset uvarint
//!              else:     step_i - step_(i-1) varint, step_i = offset_i - offset_(i-1) > 0,
//!                        step = 0 before chunk 1 and after a segment change
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::chunks::{chunk_ref, chunk_ref_parts};
use super::reader::ChunkMeta;
use super::varint::{DecodeError, Reader, put_uvarint, put_varint};
use super::{BlockError, HEADER_LEN, Result, check_header, put_header};
use crate::labels::{Label, Labels};

const MAGIC: [u8; 4] = *b"STIX";
/// Symbols per front-coding group (one table entry each).
const GROUP: u32 = 16;
/// Number of sections, in file order.
const NUM_SECTIONS: usize = 5;
/// Fixed length of the TOC at the end of the file.
pub(crate) const TOC_LEN: usize = 8 + 8 + 4 + NUM_SECTIONS * (8 + 8 + 4) + 4;

const SECTION_NAMES: [&str; NUM_SECTIONS] =
    ["symbols", "labels", "postings", "series", "series offsets"];
const SYMBOLS: usize = 0;
const LABELS: usize = 1;
const POSTINGS: usize = 2;
const SERIES: usize = 3;
const OFFSETS: usize = 4;

// ---------------------------------------------------------------------------------------------
// Chunk metadata coding (shared by writer and reader).

/// Flag bits of a chunk after the first: which fields differ from the previous chunk.
const F_GAP: u8 = 1;
const F_DUR: u8 = 1 << 1;
const F_SAMPLES: u8 = 1 << 2;
const F_SEGMENT: u8 = 1 << 3;
const F_ENCODING: u8 = 1 << 4;
const F_RESERVED: u8 = !(F_GAP | F_DUR | F_SAMPLES | F_SEGMENT | F_ENCODING);

/// Appends the chunk part of a series record (`num_chunks`, chunk metas).
///
/// The caller guarantees what [`super::BlockWriter::add_series`] validates: chunks sorted and
/// non-overlapping, inside `[block_min, block_max]` with `block_max - block_min <= i64::MAX`,
/// at least one sample each, and references increasing. Violations return an error.
pub(crate) fn encode_chunk_metas(
    out: &mut Vec<u8>,
    block_min: i64,
    metas: &[ChunkMeta],
) -> Result<()> {
    put_uvarint(out, metas.len() as u64);
    let bad = |reason: &str| BlockError::InvalidArgument(format!("chunk metadata: {reason}"));
    let d = |v: i128| i64::try_from(v).map_err(|_| bad("time delta exceeds 63 bits"));
    // State carried from the previous chunk.
    let (mut p_max, mut p_gap, mut p_dur, mut p_samples) = (0i128, 0i128, 0i128, 0u32);
    let (mut p_seg, mut p_off, mut p_step, mut p_enc) = (0u32, 0u32, 0i64, 0u8);
    for (i, m) in metas.iter().enumerate() {
        let dur = i128::from(m.max_time) - i128::from(m.min_time);
        let (seg, off) = chunk_ref_parts(m.chunk_ref);
        if dur < 0 {
            return Err(bad("max_time < min_time"));
        }
        if i == 0 {
            let from_start = i128::from(m.min_time) - i128::from(block_min);
            put_uvarint(
                out,
                u64::try_from(from_start).map_err(|_| bad("chunk before block"))?,
            );
            put_uvarint(
                out,
                u64::try_from(dur).map_err(|_| bad("duration exceeds 64 bits"))?,
            );
            put_uvarint(out, u64::from(m.num_samples));
            out.push(m.encoding);
            put_uvarint(out, u64::from(seg));
            put_uvarint(out, u64::from(off));
            p_gap = 0;
            p_step = 0;
        } else {
            let gap = i128::from(m.min_time) - p_max - 1;
            if gap < 0 {
                return Err(bad("chunks overlap or are unsorted"));
            }
            if seg < p_seg || (seg == p_seg && off <= p_off) {
                return Err(bad("chunk references do not increase"));
            }
            let mut flags = 0u8;
            if gap != p_gap {
                flags |= F_GAP;
            }
            if dur != p_dur {
                flags |= F_DUR;
            }
            if m.num_samples != p_samples {
                flags |= F_SAMPLES;
            }
            if seg != p_seg {
                flags |= F_SEGMENT;
            }
            if m.encoding != p_enc {
                flags |= F_ENCODING;
            }
            out.push(flags);
            if flags & F_GAP != 0 {
                put_varint(out, d(gap - p_gap)?);
            }
            if flags & F_DUR != 0 {
                put_varint(out, d(dur - p_dur)?);
            }
            if flags & F_SAMPLES != 0 {
                put_varint(out, i64::from(m.num_samples) - i64::from(p_samples));
            }
            if flags & F_ENCODING != 0 {
                out.push(m.encoding);
            }
            if flags & F_SEGMENT != 0 {
                put_uvarint(out, u64::from(seg - p_seg));
                put_uvarint(out, u64::from(off));
                p_step = 0;
            } else {
                // The step between chunks is the previous chunk's framed size; store its change.
                let step = i64::from(off - p_off);
                put_varint(out, step - p_step);
                p_step = step;
            }
            p_gap = gap;
        }
        (p_max, p_dur, p_samples) = (i128::from(m.max_time), dur, m.num_samples);
        (p_seg, p_off, p_enc) = (seg, off, m.encoding);
    }
    Ok(())
}

/// Decodes the chunk part of a series record. Errors carry the reader position and a reason.
fn decode_chunk_metas(
    r: &mut Reader<'_>,
    block_min: i64,
    block_max: i64,
) -> std::result::Result<Vec<ChunkMeta>, (usize, String)> {
    let de = |e: DecodeError| (e.pos(), e.to_string());
    let n = r.uvarint().map_err(de)?;
    // The first chunk takes at least six bytes, every other at least two: bound the
    // allocation by what is left.
    let mut metas = Vec::with_capacity(
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(r.remaining() / 2 + 1),
    );
    let (mut p_max, mut p_gap, mut p_dur, mut p_samples) = (0i128, 0i128, 0i128, 0i128);
    let (mut p_seg, mut p_off, mut p_step, mut p_enc) = (0i128, 0i128, 0i128, 0u8);
    for i in 0..n {
        let at = r.pos();
        let (min, dur, samples, enc, seg, off);
        if i == 0 {
            min = i128::from(block_min) + i128::from(r.uvarint().map_err(de)?);
            dur = i128::from(r.uvarint().map_err(de)?);
            samples = i128::from(r.uvarint().map_err(de)?);
            enc = r.u8().map_err(de)?;
            seg = i128::from(r.uvarint().map_err(de)?);
            off = i128::from(r.uvarint().map_err(de)?);
            p_gap = 0;
            p_step = 0;
        } else {
            let flags = r.u8().map_err(de)?;
            if flags & F_RESERVED != 0 {
                return Err((
                    at,
                    format!("chunk {i}: reserved flag bits set in {flags:#04x}"),
                ));
            }
            let mut field = |bit: u8, prev: i128| -> std::result::Result<i128, (usize, String)> {
                Ok(if flags & bit != 0 {
                    prev + i128::from(r.varint().map_err(de)?)
                } else {
                    prev
                })
            };
            let gap = field(F_GAP, p_gap)?;
            dur = field(F_DUR, p_dur)?;
            samples = field(F_SAMPLES, p_samples)?;
            if gap < 0 {
                return Err((at, format!("chunk {i} overlaps its predecessor")));
            }
            min = p_max + 1 + gap;
            enc = if flags & F_ENCODING != 0 {
                r.u8().map_err(de)?
            } else {
                p_enc
            };
            if flags & F_SEGMENT != 0 {
                let seg_delta = r.uvarint().map_err(de)?;
                if seg_delta == 0 {
                    return Err((at, format!("chunk {i}: segment change of zero")));
                }
                seg = p_seg + i128::from(seg_delta);
                off = i128::from(r.uvarint().map_err(de)?);
                p_step = 0;
            } else {
                let step = p_step + i128::from(r.varint().map_err(de)?);
                if step <= 0 {
                    return Err((at, format!("chunk {i}: reference does not increase")));
                }
                seg = p_seg;
                off = p_off + step;
                p_step = step;
            }
            p_gap = gap;
        }
        if dur < 0 {
            return Err((at, format!("chunk {i} has a negative duration")));
        }
        let max = min + dur;
        if min < i128::from(block_min) || max > i128::from(block_max) {
            return Err((
                at,
                format!("chunk {i} [{min}, {max}] outside block [{block_min}, {block_max}]"),
            ));
        }
        let (Ok(min_time), Ok(max_time)) = (i64::try_from(min), i64::try_from(max)) else {
            return Err((at, format!("chunk {i} time overflows")));
        };
        let num_samples = u32::try_from(samples)
            .ok()
            .filter(|&s| s > 0)
            .ok_or((at, format!("chunk {i} has invalid sample count {samples}")))?;
        let (Ok(seg32), Ok(off32)) = (u32::try_from(seg), u32::try_from(off)) else {
            return Err((at, format!("chunk {i} reference {seg}:{off} overflows")));
        };
        metas.push(ChunkMeta {
            min_time,
            max_time,
            num_samples,
            encoding: enc,
            chunk_ref: chunk_ref(seg32, off32),
        });
        (p_max, p_dur, p_samples) = (max, dur, samples);
        (p_seg, p_off, p_enc) = (seg, off, enc);
    }
    Ok(metas)
}

// ---------------------------------------------------------------------------------------------
// Writer.

/// Accumulates series for one index and writes the file at the end.
///
/// Series arrive in label order; their final string references are only known when every
/// string has been seen, so labels are kept as temporary string ids and the chunk part of each
/// record (which does not depend on strings) is encoded immediately.
pub(crate) struct IndexBuilder {
    min_time: i64,
    max_time: i64,
    interner: HashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
    labels: Vec<(u32, u32)>,
    label_ends: Vec<usize>,
    chunk_bytes: Vec<u8>,
    chunk_ends: Vec<usize>,
    postings: HashMap<(u32, u32), RoaringBitmap>,
}

impl IndexBuilder {
    pub(crate) fn new(min_time: i64, max_time: i64) -> Self {
        IndexBuilder {
            min_time,
            max_time,
            interner: HashMap::new(),
            strings: Vec::new(),
            labels: Vec::new(),
            label_ends: Vec::new(),
            chunk_bytes: Vec::new(),
            chunk_ends: Vec::new(),
            postings: HashMap::new(),
        }
    }

    /// Series added so far.
    pub(crate) fn num_series(&self) -> usize {
        self.label_ends.len()
    }

    fn intern(&mut self, s: &str) -> Result<u32> {
        if let Some(&id) = self.interner.get(s) {
            return Ok(id);
        }
        let id = u32::try_from(self.strings.len()).map_err(|_| BlockError::TooLarge {
            what: "number of distinct strings",
            limit: u64::from(u32::MAX),
        })?;
        self.strings.push(s.into());
        self.interner.insert(s.into(), id);
        Ok(id)
    }

    /// Adds the next series (labels greater than all before; chunks validated by the caller).
    pub(crate) fn add_series(&mut self, labels: &Labels, metas: &[ChunkMeta]) -> Result<()> {
        let ordinal = u32::try_from(self.num_series()).map_err(|_| BlockError::TooLarge {
            what: "number of series",
            limit: u64::from(u32::MAX),
        })?;
        let chunk_start = self.chunk_bytes.len();
        if let Err(e) = encode_chunk_metas(&mut self.chunk_bytes, self.min_time, metas) {
            self.chunk_bytes.truncate(chunk_start);
            return Err(e);
        }
        for l in labels {
            let n = self.intern(&l.name)?;
            let v = self.intern(&l.value)?;
            self.labels.push((n, v));
            self.postings.entry((n, v)).or_default().insert(ordinal);
        }
        self.label_ends.push(self.labels.len());
        self.chunk_ends.push(self.chunk_bytes.len());
        Ok(())
    }

    /// Writes the index file to `path` (created new) and fsyncs it. Returns its size.
    pub(crate) fn write(mut self, path: &Path) -> Result<u64> {
        let too_large = |what| BlockError::TooLarge {
            what,
            limit: u64::from(u32::MAX),
        };
        // Final symbol references: strings sorted byte-wise.
        let mut order: Vec<u32> = (0..self.strings.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.str_of(a).cmp(self.str_of(b)));
        let mut sym_of = vec![0u32; self.strings.len()];
        for (sym, &tmp) in order.iter().enumerate() {
            if let Some(slot) = sym_of.get_mut(tmp as usize) {
                *slot = sym as u32;
            }
        }
        let sym = |tmp: u32| sym_of.get(tmp as usize).copied().unwrap_or(0);

        // Label table: names and their values in symbol order, with postings.
        let mut pairs: Vec<(u32, u32, u32, u32)> = self
            .postings
            .keys()
            .map(|&(n, v)| (sym(n), sym(v), n, v))
            .collect();
        pairs.sort_unstable();
        let mut postings = std::mem::take(&mut self.postings);
        let mut name_idx: HashMap<u32, u32> = HashMap::new();
        let mut value_idx: HashMap<(u32, u32), u32> = HashMap::new();
        let mut labels_sec = Vec::new();
        // (name sym, [(value sym, tmp name id, tmp value id)])
        type NameValues = (u32, Vec<(u32, u32, u32)>);
        let mut names: Vec<NameValues> = Vec::new();
        for &(ns, vs, n, v) in &pairs {
            match names.last_mut() {
                Some((last, vals)) if *last == ns => vals.push((vs, n, v)),
                _ => names.push((ns, vec![(vs, n, v)])),
            }
        }
        let name_values: Vec<usize> = names.iter().map(|(_, vals)| vals.len()).collect();
        put_uvarint(&mut labels_sec, names.len() as u64);
        let mut prev_name: Option<u32> = None;
        let mut postings_order = Vec::with_capacity(pairs.len());
        for (i, (ns, vals)) in names.iter().enumerate() {
            put_uvarint(&mut labels_sec, u64::from(gap(prev_name, *ns)));
            prev_name = Some(*ns);
            put_uvarint(&mut labels_sec, vals.len() as u64);
            let mut prev_value: Option<u32> = None;
            for (j, &(vs, n, v)) in vals.iter().enumerate() {
                put_uvarint(&mut labels_sec, u64::from(gap(prev_value, vs)));
                prev_value = Some(vs);
                let size = match postings.get_mut(&(n, v)) {
                    Some(bm) => {
                        bm.optimize();
                        bm.serialized_size()
                    }
                    None => 0,
                };
                put_uvarint(&mut labels_sec, size as u64);
                name_idx.insert(n, i as u32);
                value_idx.insert((n, v), j as u32);
                postings_order.push(((n, v), size));
            }
        }

        // Symbols section.
        let mut symbols_sec = Vec::new();
        let num_symbols = u32::try_from(order.len()).map_err(|_| too_large("number of symbols"))?;
        symbols_sec.extend_from_slice(&num_symbols.to_le_bytes());
        let mut entries = Vec::new();
        let mut table = Vec::with_capacity(order.len().div_ceil(GROUP as usize) * 4);
        let mut prev: &[u8] = &[];
        for (i, &tmp) in order.iter().enumerate() {
            let s = self.str_of(tmp).as_bytes();
            if i % GROUP as usize == 0 {
                let off =
                    u32::try_from(entries.len()).map_err(|_| too_large("symbol data size"))?;
                table.extend_from_slice(&off.to_le_bytes());
                prev = &[];
            }
            let shared = prev.iter().zip(s).take_while(|(a, b)| a == b).count();
            let suffix = s.get(shared..).unwrap_or_default();
            put_uvarint(&mut entries, shared as u64);
            put_uvarint(&mut entries, suffix.len() as u64);
            entries.extend_from_slice(suffix);
            prev = s;
        }
        symbols_sec.extend_from_slice(&table);
        symbols_sec.extend_from_slice(&entries);

        // Write the file.
        let file = File::create_new(path).map_err(|e| BlockError::io("create index", path, e))?;
        let mut w = SectionWriter::new(BufWriter::with_capacity(1 << 18, file), path);
        let mut header = Vec::new();
        put_header(&mut header, MAGIC);
        w.write(&header)?;
        let mut toc = [TocEntry::default(); NUM_SECTIONS];

        w.begin();
        w.write(&symbols_sec)?;
        toc[SYMBOLS] = w.end();

        w.begin();
        w.write(&labels_sec)?;
        toc[LABELS] = w.end();

        w.begin();
        let mut buf = Vec::new();
        for (key, size) in &postings_order {
            buf.clear();
            if let Some(bm) = postings.get(key) {
                bm.serialize_into(&mut buf)
                    .map_err(|e| BlockError::io("serialize postings", path, e))?;
            }
            if buf.len() != *size {
                return Err(BlockError::InvalidArgument(format!(
                    "postings serialized to {} bytes, expected {size}",
                    buf.len()
                )));
            }
            w.write(&buf)?;
        }
        toc[POSTINGS] = w.end();

        w.begin();
        let mut offsets = Vec::with_capacity(self.label_ends.len() * 4);
        let (mut label_start, mut chunk_start) = (0usize, 0usize);
        let mut record = Vec::new();
        for (&label_end, &chunk_end) in self.label_ends.iter().zip(&self.chunk_ends) {
            let off =
                u32::try_from(w.section_len()).map_err(|_| too_large("series section size"))?;
            offsets.extend_from_slice(&off.to_le_bytes());
            record.clear();
            let labels = self.labels.get(label_start..label_end).unwrap_or_default();
            put_uvarint(&mut record, labels.len() as u64);
            let mut prev_idx: Option<u32> = None;
            for &(n, v) in labels {
                let ni = name_idx.get(&n).copied().unwrap_or(0);
                put_uvarint(&mut record, u64::from(gap(prev_idx, ni)));
                prev_idx = Some(ni);
                // A name with a single value needs no value index.
                if name_values.get(ni as usize).copied().unwrap_or(0) > 1 {
                    put_uvarint(
                        &mut record,
                        u64::from(value_idx.get(&(n, v)).copied().unwrap_or(0)),
                    );
                }
            }
            record.extend_from_slice(
                self.chunk_bytes
                    .get(chunk_start..chunk_end)
                    .unwrap_or_default(),
            );
            w.write(&record)?;
            (label_start, chunk_start) = (label_end, chunk_end);
        }
        toc[SERIES] = w.end();

        w.begin();
        w.write(&offsets)?;
        toc[OFFSETS] = w.end();

        let num_series =
            u32::try_from(self.label_ends.len()).map_err(|_| too_large("number of series"))?;
        let toc_bytes = encode_toc(self.min_time, self.max_time, num_series, &toc);
        w.write(&toc_bytes)?;
        w.finish()
    }

    fn str_of(&self, tmp: u32) -> &str {
        self.strings.get(tmp as usize).map_or("", |s| s)
    }
}

/// Gap coding of a strictly increasing sequence: first value absolute, then `cur - prev - 1`.
fn gap(prev: Option<u32>, cur: u32) -> u32 {
    match prev {
        None => cur,
        Some(p) => cur.saturating_sub(p).saturating_sub(1),
    }
}

/// Inverse of [`gap`]; `None` on overflow.
fn ungap(prev: Option<u32>, g: u64) -> Option<u32> {
    let v = match prev {
        None => g,
        Some(p) => u64::from(p).checked_add(g)?.checked_add(1)?,
    };
    u32::try_from(v).ok()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TocEntry {
    offset: u64,
    len: u64,
    crc: u32,
}

fn encode_toc(
    min_time: i64,
    max_time: i64,
    num_series: u32,
    toc: &[TocEntry; NUM_SECTIONS],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(TOC_LEN);
    out.extend_from_slice(&min_time.to_le_bytes());
    out.extend_from_slice(&max_time.to_le_bytes());
    out.extend_from_slice(&num_series.to_le_bytes());
    for e in toc {
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Assembles a complete index file from raw section bodies, computing offsets and checksums.
///
/// For tools and fuzzing: it lets a fuzzer reach the section decoders with arbitrary section
/// contents that pass the checksums. Blocks are written with [`super::BlockWriter`].
pub fn index_file_from_sections(
    min_time: i64,
    max_time: i64,
    num_series: u32,
    sections: [&[u8]; 5],
) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, MAGIC);
    let mut toc = [TocEntry::default(); NUM_SECTIONS];
    for (entry, body) in toc.iter_mut().zip(sections) {
        *entry = TocEntry {
            offset: out.len() as u64,
            len: body.len() as u64,
            crc: crc32fast::hash(body),
        };
        out.extend_from_slice(body);
    }
    out.extend_from_slice(&encode_toc(min_time, max_time, num_series, &toc));
    out
}

/// Writes sections to a file while tracking positions and per-section CRCs.
struct SectionWriter<'p> {
    out: BufWriter<File>,
    path: &'p Path,
    pos: u64,
    start: u64,
    crc: crc32fast::Hasher,
}

impl<'p> SectionWriter<'p> {
    fn new(out: BufWriter<File>, path: &'p Path) -> Self {
        SectionWriter {
            out,
            path,
            pos: 0,
            start: 0,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .map_err(|e| BlockError::io("write index", self.path, e))?;
        self.crc.update(b);
        self.pos += b.len() as u64;
        Ok(())
    }

    fn begin(&mut self) {
        self.start = self.pos;
        self.crc = crc32fast::Hasher::new();
    }

    fn section_len(&self) -> u64 {
        self.pos - self.start
    }

    fn end(&mut self) -> TocEntry {
        let crc = std::mem::take(&mut self.crc).finalize();
        TocEntry {
            offset: self.start,
            len: self.section_len(),
            crc,
        }
    }

    fn finish(self) -> Result<u64> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| BlockError::io("flush index", self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| BlockError::io("fsync index", self.path, e))?;
        Ok(self.pos)
    }
}

// ---------------------------------------------------------------------------------------------
// Reader.

struct NameEntry {
    name: String,
    /// Symbol refs of the values, ascending.
    values: Vec<u32>,
    /// Index of this name's first (name, value) pair in `postings_ends`.
    first_pair: usize,
}

/// A verified, memory-mapped index file.
pub(crate) struct IndexReader {
    path: PathBuf,
    data: Bytes,
    min_time: i64,
    max_time: i64,
    num_series: u32,
    sections: [Range<usize>; NUM_SECTIONS],
    num_symbols: u32,
    /// Range of the symbol entries (after the group table), absolute.
    symbol_entries: Range<usize>,
    /// Decoded symbol groups, filled on first use.
    symbol_groups: Vec<OnceLock<Box<[Box<str>]>>>,
    names: Vec<NameEntry>,
    /// End offset (relative to the postings section) of every (name, value) pair's bitmap.
    postings_ends: Vec<usize>,
}

impl IndexReader {
    /// Verifies and loads an index held in `data`; `path` names it in errors.
    pub(crate) fn open(path: &Path, data: Bytes) -> Result<IndexReader> {
        check_header(path, &data, MAGIC)?;
        let file_len = data.len();
        let toc_start = file_len
            .checked_sub(TOC_LEN)
            .filter(|&s| s >= HEADER_LEN)
            .ok_or_else(|| BlockError::Truncated {
                file: path.to_path_buf(),
                section: "toc",
                expected: (HEADER_LEN + TOC_LEN) as u64,
                got: file_len as u64,
            })?;
        let toc_bytes = data.get(toc_start..).unwrap_or_default();
        let (body, stored) = toc_bytes.split_at_checked(TOC_LEN - 4).unwrap_or_default();
        let stored = u32::from_le_bytes(<[u8; 4]>::try_from(stored).unwrap_or_default());
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(BlockError::Checksum {
                file: path.to_path_buf(),
                section: "toc",
                offset: toc_start as u64,
                expected: stored,
                got: computed,
            });
        }
        let toc_corrupt = |reason: String| BlockError::Corrupt {
            file: path.to_path_buf(),
            section: "toc",
            offset: toc_start as u64,
            reason,
        };
        let mut r = Reader::new(body);
        let de = |e: DecodeError| toc_corrupt(e.to_string());
        let min_time = r.i64_le().map_err(de)?;
        let max_time = r.i64_le().map_err(de)?;
        let num_series = r.u32_le().map_err(de)?;
        if min_time > max_time || i128::from(max_time) - i128::from(min_time) > i128::from(i64::MAX)
        {
            return Err(toc_corrupt(format!(
                "invalid time range [{min_time}, {max_time}]"
            )));
        }
        let mut sections: [Range<usize>; NUM_SECTIONS] = Default::default();
        let mut expected_start = HEADER_LEN;
        for (i, slot) in sections.iter_mut().enumerate() {
            let offset = r.u64_le().map_err(de)?;
            let len = r.u64_le().map_err(de)?;
            let crc = r.u32_le().map_err(de)?;
            let name = SECTION_NAMES.get(i).copied().unwrap_or("section");
            let range = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(o, l)| Some(o..o.checked_add(l)?))
                .filter(|rg| rg.start == expected_start && rg.end <= toc_start)
                .ok_or_else(|| {
                    toc_corrupt(format!(
                        "{name} section at {offset}+{len} is not contiguous with its predecessor (expected start {expected_start}, TOC at {toc_start})"
                    ))
                })?;
            let bytes = data.get(range.clone()).unwrap_or_default();
            let got = crc32fast::hash(bytes);
            if got != crc {
                return Err(BlockError::Checksum {
                    file: path.to_path_buf(),
                    section: name,
                    offset,
                    expected: crc,
                    got,
                });
            }
            expected_start = range.end;
            *slot = range;
        }
        if expected_start != toc_start {
            return Err(toc_corrupt(format!(
                "{} unaccounted bytes between the last section and the TOC",
                toc_start - expected_start
            )));
        }

        let [
            sym_range,
            labels_range,
            postings_range,
            _series_range,
            offsets_range,
        ] = sections.clone();
        if offsets_range.len() != (num_series as usize).saturating_mul(4) {
            return Err(BlockError::Corrupt {
                file: path.to_path_buf(),
                section: "series offsets",
                offset: offsets_range.start as u64,
                reason: format!("{} bytes for {num_series} series", offsets_range.len()),
            });
        }

        // Symbols header.
        let sym_bytes = data.get(sym_range.clone()).unwrap_or_default();
        let sym_corrupt = |reason: String| BlockError::Corrupt {
            file: path.to_path_buf(),
            section: "symbols",
            offset: sym_range.start as u64,
            reason,
        };
        let num_symbols = Reader::new(sym_bytes)
            .u32_le()
            .map_err(|e| sym_corrupt(e.to_string()))?;
        let table_len = (num_symbols.div_ceil(GROUP) as usize).saturating_mul(4);
        let entries_start = 4usize
            .checked_add(table_len)
            .filter(|&e| e <= sym_bytes.len())
            .ok_or_else(|| {
                sym_corrupt(format!(
                    "group table of {num_symbols} symbols exceeds the section"
                ))
            })?;
        let symbol_entries = sym_range.start + entries_start..sym_range.end;

        let mut index = IndexReader {
            path: path.to_path_buf(),
            data,
            min_time,
            max_time,
            num_series,
            sections,
            num_symbols,
            symbol_entries,
            symbol_groups: (0..num_symbols.div_ceil(GROUP))
                .map(|_| OnceLock::new())
                .collect(),
            names: Vec::new(),
            postings_ends: Vec::new(),
        };
        index.load_label_table(labels_range, postings_range.len())?;
        Ok(index)
    }

    fn load_label_table(&mut self, range: Range<usize>, postings_len: usize) -> Result<()> {
        let bytes = self.data.get(range.clone()).unwrap_or_default();
        let corrupt = |pos: usize, reason: String| BlockError::Corrupt {
            file: self.path.clone(),
            section: "labels",
            offset: (range.start + pos) as u64,
            reason,
        };
        let de = |e: DecodeError| corrupt(e.pos(), e.to_string());
        let mut r = Reader::new(bytes);
        let num_names = r.uvarint().map_err(de)?;
        let cap = |n: u64, r: &Reader<'_>, min_size: usize| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(r.remaining() / min_size)
        };
        let mut name_refs = Vec::with_capacity(cap(num_names, &r, 3));
        let mut entries = Vec::with_capacity(name_refs.capacity());
        let mut postings_ends = Vec::new();
        let mut end = 0usize;
        let mut prev_name = None;
        for _ in 0..num_names {
            let at = r.pos();
            let name_ref = ungap(prev_name, r.uvarint().map_err(de)?)
                .filter(|&n| n < self.num_symbols)
                .ok_or_else(|| corrupt(at, "name reference out of range".into()))?;
            prev_name = Some(name_ref);
            let at = r.pos();
            let num_values = r.uvarint().map_err(de)?;
            if num_values == 0 {
                return Err(corrupt(at, "label name without values".into()));
            }
            let mut values = Vec::with_capacity(cap(num_values, &r, 2));
            let first_pair = postings_ends.len();
            let mut prev_value = None;
            for _ in 0..num_values {
                let at = r.pos();
                let v = ungap(prev_value, r.uvarint().map_err(de)?)
                    .filter(|&v| v < self.num_symbols)
                    .ok_or_else(|| corrupt(at, "value reference out of range".into()))?;
                prev_value = Some(v);
                values.push(v);
                let at = r.pos();
                let len = r.uvarint().map_err(de)?;
                end = usize::try_from(len)
                    .ok()
                    .and_then(|l| end.checked_add(l))
                    .filter(|&e| e <= postings_len)
                    .ok_or_else(|| corrupt(at, format!("postings lengths exceed the postings section ({postings_len} bytes)")))?;
                postings_ends.push(end);
            }
            name_refs.push(name_ref);
            entries.push((values, first_pair));
        }
        if !r.is_empty() {
            return Err(corrupt(
                r.pos(),
                format!("{} trailing bytes", r.remaining()),
            ));
        }
        if end != postings_len {
            return Err(corrupt(
                r.pos(),
                format!("postings lengths sum to {end}, section has {postings_len} bytes"),
            ));
        }
        let names = self.symbols(&name_refs)?;
        if names.first().is_some_and(String::is_empty) {
            return Err(corrupt(0, "empty label name".into()));
        }
        // Series records rely on name order for sorted label sets.
        if names.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(corrupt(0, "label names are not strictly ascending".into()));
        }
        self.names = names
            .into_iter()
            .zip(entries)
            .map(|(name, (values, first_pair))| NameEntry {
                name,
                values,
                first_pair,
            })
            .collect();
        self.postings_ends = postings_ends;
        Ok(())
    }

    fn symbols_corrupt(&self, pos: usize, reason: String) -> BlockError {
        BlockError::Corrupt {
            file: self.path.clone(),
            section: "symbols",
            offset: pos as u64,
            reason,
        }
    }

    /// Byte range (absolute) of symbol group `g`'s entries.
    fn group_range(&self, g: u32) -> Result<Range<usize>> {
        let sym = &self.sections[SYMBOLS];
        let entries = &self.symbol_entries;
        let read = |i: u32| -> Option<usize> {
            let at = sym
                .start
                .checked_add(4)?
                .checked_add((i as usize).checked_mul(4)?)?;
            let b = self.data.get(at..at.checked_add(4)?)?;
            let off = u32::from_le_bytes(b.try_into().ok()?) as usize;
            entries.start.checked_add(off)
        };
        let start =
            read(g).ok_or_else(|| self.symbols_corrupt(sym.start, format!("missing group {g}")))?;
        let end = if g + 1 < self.num_symbols.div_ceil(GROUP) {
            read(g + 1).ok_or_else(|| {
                self.symbols_corrupt(sym.start, format!("missing group {}", g + 1))
            })?
        } else {
            entries.end
        };
        if start > end || end > entries.end {
            return Err(
                self.symbols_corrupt(sym.start, format!("group {g} range {start}..{end} invalid"))
            );
        }
        Ok(start..end)
    }

    /// Decodes every symbol of group `g`.
    fn decode_group(&self, g: u32) -> Result<Box<[Box<str>]>> {
        let range = self.group_range(g)?;
        let count = self
            .num_symbols
            .saturating_sub(g.saturating_mul(GROUP))
            .min(GROUP);
        let bytes = self.data.get(range.clone()).unwrap_or_default();
        let mut r = Reader::new(bytes);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::with_capacity(count as usize);
        for k in 0..count {
            let at = range.start + r.pos();
            let de = |e: DecodeError| self.symbols_corrupt(at, e.to_string());
            let shared = r.uvarint().map_err(de)?;
            let len = r.uvarint().map_err(de)?;
            let shared = usize::try_from(shared)
                .ok()
                .filter(|&s| s <= buf.len() && (k > 0 || s == 0))
                .ok_or_else(|| {
                    self.symbols_corrupt(
                        at,
                        format!("shared prefix {shared} longer than the previous symbol"),
                    )
                })?;
            let len = usize::try_from(len)
                .map_err(|_| self.symbols_corrupt(at, "length overflows".into()))?;
            let suffix = r.bytes(len).map_err(de)?;
            buf.truncate(shared);
            buf.extend_from_slice(suffix);
            let s = std::str::from_utf8(&buf)
                .map_err(|e| self.symbols_corrupt(at, format!("symbol is not UTF-8: {e}")))?;
            out.push(Box::from(s));
        }
        Ok(out.into_boxed_slice())
    }

    /// Symbol `sym`, decoding (and caching) its group on first use.
    fn symbol_str(&self, sym: u32) -> Result<&str> {
        let g = sym / GROUP;
        let cell = self
            .symbol_groups
            .get(g as usize)
            .filter(|_| sym < self.num_symbols)
            .ok_or_else(|| {
                self.symbols_corrupt(
                    self.sections[SYMBOLS].start,
                    format!("symbol {sym} out of range ({} symbols)", self.num_symbols),
                )
            })?;
        let group = match cell.get() {
            Some(group) => group,
            // Two threads may decode the same group concurrently; one result is kept.
            None => {
                let decoded = self.decode_group(g)?;
                cell.get_or_init(|| decoded)
            }
        };
        group
            .get((sym % GROUP) as usize)
            .map(|s| &**s)
            .ok_or_else(|| {
                self.symbols_corrupt(
                    self.sections[SYMBOLS].start,
                    format!("symbol {sym} missing from its group"),
                )
            })
    }

    /// Decodes one symbol into an owned string.
    fn symbol(&self, sym: u32) -> Result<String> {
        self.symbol_str(sym).map(str::to_owned)
    }

    /// Decodes a list of symbol refs.
    fn symbols(&self, refs: &[u32]) -> Result<Vec<String>> {
        refs.iter().map(|&r| self.symbol(r)).collect()
    }

    /// Number of series.
    pub(crate) fn num_series(&self) -> u32 {
        self.num_series
    }

    /// Time range recorded in the TOC.
    pub(crate) fn time_range(&self) -> (i64, i64) {
        (self.min_time, self.max_time)
    }

    /// Sizes of the sections, by name, plus header and TOC.
    pub(crate) fn section_sizes(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![("header", HEADER_LEN as u64)];
        v.extend(
            SECTION_NAMES
                .iter()
                .zip(&self.sections)
                .map(|(n, r)| (*n, r.len() as u64)),
        );
        v.push(("toc", TOC_LEN as u64));
        v
    }

    /// Sorted label names.
    pub(crate) fn label_names(&self) -> Vec<String> {
        self.names.iter().map(|n| n.name.clone()).collect()
    }

    fn name(&self, name: &str) -> Option<&NameEntry> {
        self.names
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.names.get(i))
    }

    /// Sorted values of label `name` (empty if absent).
    pub(crate) fn label_values(&self, name: &str) -> Result<Vec<String>> {
        match self.name(name) {
            Some(n) => self.symbols(&n.values),
            None => Ok(Vec::new()),
        }
    }

    /// Series ids carrying `name=value` (empty if absent).
    pub(crate) fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        let Some(entry) = self.name(name) else {
            return Ok(RoaringBitmap::new());
        };
        // Binary search with a fallible comparison (symbols are decoded from the mapping).
        let (mut lo, mut hi) = (0usize, entry.values.len());
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let sym = entry.values.get(mid).copied().unwrap_or(0);
            match self.symbol_str(sym)?.cmp(value) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => {
                    found = Some(mid);
                    break;
                }
            }
        }
        let Some(i) = found else {
            return Ok(RoaringBitmap::new());
        };
        let pair = entry.first_pair + i;
        let start = match pair.checked_sub(1) {
            Some(p) => self.postings_ends.get(p).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.postings_ends.get(pair).copied().unwrap_or(start);
        let sec = &self.sections[POSTINGS];
        let abs = sec.start + start;
        let corrupt = |reason: String| BlockError::Corrupt {
            file: self.path.clone(),
            section: "postings",
            offset: abs as u64,
            reason,
        };
        let mut bytes = self
            .data
            .get(abs..sec.start + end)
            .ok_or_else(|| corrupt(format!("postings {start}..{end} outside the section")))?;
        let bm = RoaringBitmap::deserialize_from(&mut bytes)
            .map_err(|e| corrupt(format!("{name}={value:?}: {e}")))?;
        if !bytes.is_empty() {
            return Err(corrupt(format!(
                "{name}={value:?}: {} trailing bytes",
                bytes.len()
            )));
        }
        if bm.max().is_some_and(|m| m >= self.num_series) {
            return Err(corrupt(format!(
                "{name}={value:?}: series id beyond {}",
                self.num_series
            )));
        }
        Ok(bm)
    }

    /// Labels and chunk metadata of series `id`.
    pub(crate) fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        self.series_record(id, true)
    }

    /// Like [`IndexReader::series`] without building the label set (the record is still fully
    /// validated): for readers that know which series an id is.
    pub(crate) fn series_chunks(&self, id: u32) -> Result<Vec<ChunkMeta>> {
        self.series_record(id, false).map(|r| r.1)
    }

    fn series_record(&self, id: u32, want_labels: bool) -> Result<(Labels, Vec<ChunkMeta>)> {
        if id >= self.num_series {
            return Err(BlockError::SeriesOutOfRange {
                id,
                num_series: self.num_series,
            });
        }
        let offsets = &self.sections[OFFSETS];
        let series = &self.sections[SERIES];
        let read_off = |i: u32| -> Option<usize> {
            let at = offsets.start.checked_add((i as usize).checked_mul(4)?)?;
            let b = self.data.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
        };
        let start = read_off(id);
        let end = if id + 1 < self.num_series {
            read_off(id + 1)
        } else {
            Some(series.len())
        };
        let range = start
            .zip(end)
            .filter(|(s, e)| s <= e && *e <= series.len())
            .map(|(s, e)| series.start + s..series.start + e)
            .ok_or_else(|| BlockError::Corrupt {
                file: self.path.clone(),
                section: "series offsets",
                offset: (offsets.start + id as usize * 4) as u64,
                reason: format!("series {id} has an invalid byte range {start:?}..{end:?}"),
            })?;
        let record = self.data.get(range.clone()).unwrap_or_default();
        let corrupt = |pos: usize, reason: String| BlockError::Corrupt {
            file: self.path.clone(),
            section: "series",
            offset: (range.start + pos) as u64,
            reason: format!("series {id}: {reason}"),
        };
        let de = |e: DecodeError| corrupt(e.pos(), e.to_string());
        let mut r = Reader::new(record);
        let n = r.uvarint().map_err(de)?;
        if n == 0 {
            return Err(corrupt(0, "no labels".into()));
        }
        let mut labels = Vec::with_capacity(
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(r.remaining() / 2),
        );
        let mut prev = None;
        for _ in 0..n {
            let at = r.pos();
            let entry = ungap(prev, r.uvarint().map_err(de)?)
                .and_then(|i| {
                    prev = Some(i);
                    self.names.get(i as usize)
                })
                .ok_or_else(|| corrupt(at, "label name index out of range".into()))?;
            let at = r.pos();
            let vi = if entry.values.len() > 1 {
                r.uvarint().map_err(de)?
            } else {
                0
            };
            let sym = usize::try_from(vi)
                .ok()
                .and_then(|vi| entry.values.get(vi))
                .copied()
                .ok_or_else(|| {
                    corrupt(
                        at,
                        format!("value index {vi} out of range for {}", entry.name),
                    )
                })?;
            if !want_labels {
                continue;
            }
            let value = self.symbol(sym)?;
            if value.is_empty() {
                return Err(corrupt(at, format!("empty value for {}", entry.name)));
            }
            labels.push(Label {
                name: entry.name.clone(),
                value,
            });
        }
        let chunks = decode_chunk_metas(&mut r, self.min_time, self.max_time)
            .map_err(|(p, m)| corrupt(p, m))?;
        if !r.is_empty() {
            return Err(corrupt(
                r.pos(),
                format!("{} trailing bytes", r.remaining()),
            ));
        }
        Ok((Labels::from_sorted(labels), chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(min: i64, max: i64, n: u32, enc: u8, seg: u32, off: u32) -> ChunkMeta {
        ChunkMeta {
            min_time: min,
            max_time: max,
            num_samples: n,
            encoding: enc,
            chunk_ref: chunk_ref(seg, off),
        }
    }

    fn roundtrip(block_min: i64, block_max: i64, metas: &[ChunkMeta]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_chunk_metas(&mut buf, block_min, metas).unwrap();
        let mut r = Reader::new(&buf);
        let back = decode_chunk_metas(&mut r, block_min, block_max).unwrap();
        assert!(r.is_empty());
        assert_eq!(back, metas);
        buf
    }

    #[test]
    fn regular_chunks_cost_few_bytes() {
        // 15 s scrapes, 120 samples per chunk, chunks back to back in one segment.
        let step = 15_000;
        let dur = 119 * step;
        let metas: Vec<ChunkMeta> = (0..30)
            .map(|i| {
                let min = i * (dur + step);
                meta(min, min + dur, 120, 1, 1, 5 + 180 * i as u32)
            })
            .collect();
        let buf = roundtrip(0, 7_200_000 * 10, &metas);
        // Count, first chunk (~11 bytes), chunk 1 (gap and size change once: ~6 bytes), then
        // a flags byte and a zero size change per chunk.
        assert!(buf.len() <= 1 + 11 + 6 + 28 * 2, "{} bytes", buf.len());
    }

    #[test]
    fn mixed_encodings_and_segments() {
        let metas = [
            meta(10, 20, 5, 1, 1, 5),
            meta(21, 21, 1, 2, 1, 90),
            meta(500, 900, 7, 0xFF, 2, 5),
            meta(901, 1000, 3, 1, 2, 4000),
        ];
        roundtrip(0, 1000, &metas);
        roundtrip(10, 1000, &metas[..1]);
        roundtrip(0, 1000, &[]);
        let mut buf = Vec::new();
        encode_chunk_metas(&mut buf, 0, &[]).unwrap();
        assert_eq!(buf, [0]);
    }

    #[test]
    fn extreme_ranges() {
        let metas = [meta(i64::MIN, -1, u32::MAX, 3, u32::MAX, u32::MAX)];
        roundtrip(i64::MIN, -1, &metas);
        let metas = [
            meta(0, 0, 1, 3, 1, 5),
            meta(i64::MAX - 1, i64::MAX, 1, 3, 1, 6),
        ];
        roundtrip(0, i64::MAX, &metas);
    }

    #[test]
    fn decode_rejects_out_of_range() {
        let mut buf = Vec::new();
        encode_chunk_metas(&mut buf, 0, &[meta(10, 20, 5, 1, 1, 5)]).unwrap();
        let err = decode_chunk_metas(&mut Reader::new(&buf), 0, 15).unwrap_err();
        assert!(err.1.contains("outside block"), "{err:?}");
    }

    prop_compose! {
        fn arb_metas()(parts in proptest::collection::vec(
            (0i64..100_000, 0i64..100_000, 1u32..1000, prop_oneof![Just(1u8), Just(2u8), Just(0xFFu8)], 0u32..2, 1u32..10_000),
            0..40,
        ), uniform in any::<bool>()) -> Vec<ChunkMeta> {
            let mut t = -50_000_000i64;
            let (mut seg, mut off) = (1u32, 5u32);
            parts.into_iter().map(|(gap, dur, n, enc, new_seg, step)| {
                let min = t + gap;
                t = min + dur + 1;
                if new_seg == 1 { seg += 1; off = 5 } else { off += step }
                meta(min, min + dur, n, if uniform { 1 } else { enc }, seg, off)
            }).collect()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunk_metas_roundtrip(metas in arb_metas()) {
            roundtrip(-50_000_000, 50_000_000, &metas);
        }

        #[test]
        fn chunk_meta_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            if let Ok(metas) = decode_chunk_metas(&mut r, -1000, 1000) {
                prop_assert!(metas.iter().all(|m| m.min_time >= -1000 && m.max_time <= 1000 && m.num_samples > 0));
            }
        }
    }
}
