//! Immutable trace blocks: one file holding the traces cut from a tenant's trace head.
//!
//! A block is written once (to `<name>.tmp`, fsynced, renamed into place, directory fsynced)
//! and never modified; retention deletes whole files. It is built for two reads:
//!
//! - **trace by id**: a bloom filter answers "not here" for most blocks without touching the
//!   index; otherwise a binary search over the sorted trace-id index gives one zstd frame holding
//!   every span of that trace in the block.
//! - **search**: per-span columns (start, duration, service, name, kind, status) and roaring
//!   postings of low-cardinality attribute values (trace ordinals) select candidate traces
//!   without decompressing any trace frame; only candidates are decoded for the exact check.
//!
//! # Layout (format version 1)
//!
//! Integers are little-endian; CRC is CRC-32/ISO-HDLC (`crc32fast`). Every byte is specified
//! in `docs/FORMAT.md`, section "Trace store".
//!
//! ```text
//! header    "STRB" | version u16 = 1 | reserved u16 = 0                       8 bytes
//! frames    zstd(spans of trace 0) | zstd(spans of trace 1) | …  (span encoding: `span`)
//! index     count u32 | entry* ; entry = trace_id [16] | frame_offset u64 | frame_len u32
//!           | frame_crc u32 | min_start_ns u64 | max_end_ns u64 | span_count u32     52 bytes
//! columns   zstd( n u32 | trace_ord u32×n | start_ns u64×n | duration_ns u64×n
//!           | service_sym u32×n | name_sym u32×n | kind u8×n | status u8×n )
//! symbols   zstd( count uvarint | str* )
//! postings  zstd( count uvarint | (scope u8 | vtype u8 | key str | value str
//!           | bitmap_len uvarint | roaring bitmap of trace ordinals)* )
//! bloom     k u8 | m_bits u32 | bits [ceil(m_bits/8)]
//! footer    (offset u64 | len u64 | crc u32) × 5 for index, columns, symbols, postings, bloom
//!           | min_start_ns u64 | max_end_ns u64 | traces u32 | spans u32
//!           | footer_crc u32 (of the footer's preceding 124 bytes) | "STRB"           132 bytes
//! ```
//!
//! Postings scope byte: 0 resource attribute, 1 span attribute, 2 intrinsic (`name`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::span::{self, AttrScope, AttrValue, Reader, SpanRecord, put_uvarint};
use super::{TraceError, TraceResult};

/// Magic number at the start and end of a trace block.
pub const MAGIC: &[u8; 4] = b"STRB";
/// Format versions of trace blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockVersion {
    /// The first version.
    V1 = 1,
}
/// The version written today.
pub const CURRENT: BlockVersion = BlockVersion::V1;
/// The oldest version this code reads.
pub const OLDEST_SUPPORTED: BlockVersion = BlockVersion::V1;

const HEADER_LEN: usize = 8;
const FOOTER_LEN: usize = 132;
const INDEX_ENTRY_LEN: usize = 52;
/// Postings scope byte of intrinsics (`name`).
const SCOPE_INTRINSIC: u8 = 2;
/// String attribute values longer than this are not put in postings.
const MAX_POSTING_VALUE_LEN: usize = 128;
/// Keys with more distinct values than this in one block get no postings (high cardinality).
const MAX_POSTING_VALUES_PER_KEY: usize = 1000;
/// zstd level of frames and sections.
const ZSTD_LEVEL: i32 = 3;

/// One trace of a block's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The trace id.
    pub trace_id: [u8; 16],
    frame_offset: u64,
    frame_len: u32,
    frame_crc: u32,
    /// Earliest span start in this block.
    pub min_start_ns: u64,
    /// Latest span end in this block.
    pub max_end_ns: u64,
    /// Spans of the trace in this block.
    pub span_count: u32,
}

/// Per-span columns of a block (decoded at open).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns {
    /// Trace ordinal (index position) of each span.
    pub trace_ord: Vec<u32>,
    /// Start, Unix ns.
    pub start_ns: Vec<u64>,
    /// Duration, ns.
    pub duration_ns: Vec<u64>,
    /// Symbol of `service.name`.
    pub service: Vec<u32>,
    /// Symbol of the span name.
    pub name: Vec<u32>,
    /// OTLP kind.
    pub kind: Vec<u8>,
    /// OTLP status code.
    pub status: Vec<u8>,
}

/// Key of a postings list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PostingKey {
    /// 0 resource, 1 span, 2 intrinsic.
    pub scope: u8,
    /// Attribute key (`service.name`) or intrinsic name (`name`).
    pub key: String,
    /// The value, as text.
    pub value: String,
    /// Type of the value: 1 string, 2 int, 4 bool (as in the span encoding).
    pub vtype: u8,
}

/// Bloom filter over trace ids (double hashing of the id's own random bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    k: u8,
    m_bits: u32,
    bits: Vec<u8>,
}

impl Bloom {
    /// A filter for `n` ids at about 1% false positives (10 bits and 7 probes per id).
    pub fn with_capacity(n: usize) -> Self {
        let m_bits = u32::try_from((n.max(1) * 10).max(64)).unwrap_or(u32::MAX);
        Bloom {
            k: 7,
            m_bits,
            bits: vec![0; m_bits.div_ceil(8) as usize],
        }
    }

    fn probes(&self, id: &[u8; 16]) -> impl Iterator<Item = usize> + use<> {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&id[..8]);
        b.copy_from_slice(&id[8..]);
        // Trace ids are random; mix anyway so structured ids spread too.
        let h1 = mix(u64::from_le_bytes(a) ^ 0x9e37_79b9_7f4a_7c15);
        let h2 = mix(u64::from_le_bytes(b).wrapping_add(h1)) | 1;
        let m = u64::from(self.m_bits.max(1));
        (0..u64::from(self.k)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    /// Adds an id.
    pub fn insert(&mut self, id: &[u8; 16]) {
        for p in self.probes(id) {
            if let Some(byte) = self.bits.get_mut(p / 8) {
                *byte |= 1 << (p % 8);
            }
        }
    }

    /// False means the id is certainly absent.
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        self.probes(id).all(|p| {
            self.bits
                .get(p / 8)
                .is_some_and(|b| b & (1 << (p % 8)) != 0)
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.k);
        out.extend_from_slice(&self.m_bits.to_le_bytes());
        out.extend_from_slice(&self.bits);
    }

    fn decode(buf: &[u8]) -> Result<Bloom, &'static str> {
        let mut r = Reader::new(buf);
        let k = r.u8().map_err(|_| "bloom header truncated")?;
        let m_bits = r.u32().map_err(|_| "bloom header truncated")?;
        if k == 0 || k > 32 || m_bits == 0 {
            return Err("bloom parameters out of range");
        }
        let n = m_bits.div_ceil(8) as usize;
        if r.remaining() != n {
            return Err("bloom bit array has the wrong length");
        }
        let bits = r.bytes(n).map_err(|_| "bloom truncated")?.to_vec();
        Ok(Bloom { k, m_bits, bits })
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Encodes a block from traces (any order; spans of one trace together). Returns the bytes.
pub fn encode_block(traces: &BTreeMap<[u8; 16], Vec<SpanRecord>>) -> TraceResult<Vec<u8>> {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(CURRENT as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());

    let mut symbols: Vec<String> = Vec::new();
    let mut sym_ids: HashMap<String, u32> = HashMap::new();
    let mut sym = |s: &str| -> u32 {
        if let Some(&id) = sym_ids.get(s) {
            return id;
        }
        let id = symbols.len() as u32;
        symbols.push(s.to_string());
        sym_ids.insert(s.to_string(), id);
        id
    };
    let mut cols = Columns::default();
    let mut postings: BTreeMap<PostingKey, RoaringBitmap> = BTreeMap::new();
    let mut index = Vec::with_capacity(traces.len());
    let mut bloom = Bloom::with_capacity(traces.len());
    let (mut min_all, mut max_all, mut spans_all) = (u64::MAX, 0u64, 0u64);
    let mut raw = Vec::new();
    for (ord, (id, spans)) in traces.iter().enumerate() {
        let ord = ord as u32;
        raw.clear();
        span::encode_spans(&mut raw, spans.iter());
        let frame = zstd::bulk::compress(&raw, ZSTD_LEVEL)
            .map_err(|e| TraceError::io("compress trace frame", PathBuf::new(), e))?;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for s in spans {
            lo = lo.min(s.start_ns);
            hi = hi.max(s.end_ns);
            cols.trace_ord.push(ord);
            cols.start_ns.push(s.start_ns);
            cols.duration_ns.push(s.duration_ns());
            cols.service.push(sym(&s.service));
            cols.name.push(sym(&s.name));
            cols.kind.push(s.kind);
            cols.status.push(s.status);
            postings
                .entry(PostingKey {
                    scope: SCOPE_INTRINSIC,
                    key: "name".into(),
                    value: s.name.clone(),
                    vtype: 1,
                })
                .or_default()
                .insert(ord);
            for a in &s.attrs {
                let (value, vtype) = match &a.value {
                    AttrValue::Str(v) if v.len() <= MAX_POSTING_VALUE_LEN => (v.clone(), 1),
                    AttrValue::Int(i) => (i.to_string(), 2),
                    AttrValue::Bool(b) => (b.to_string(), 4),
                    _ => continue,
                };
                postings
                    .entry(PostingKey {
                        scope: a.scope as u8,
                        key: a.key.clone(),
                        value,
                        vtype,
                    })
                    .or_default()
                    .insert(ord);
            }
        }
        spans_all += spans.len() as u64;
        min_all = min_all.min(lo);
        max_all = max_all.max(hi);
        bloom.insert(id);
        index.push(IndexEntry {
            trace_id: *id,
            frame_offset: out.len() as u64,
            frame_len: u32::try_from(frame.len())
                .map_err(|_| TraceError::Invalid("trace frame larger than 4 GiB".into()))?,
            frame_crc: crc32fast::hash(&frame),
            min_start_ns: lo,
            max_end_ns: hi,
            span_count: spans.len() as u32,
        });
        out.extend_from_slice(&frame);
    }
    // Drop postings of high-cardinality keys: they would cost more than a scan saves.
    let mut per_key: HashMap<(u8, &str), usize> = HashMap::new();
    for k in postings.keys() {
        *per_key.entry((k.scope, k.key.as_str())).or_default() += 1;
    }
    let dropped: Vec<(u8, String)> = per_key
        .iter()
        .filter(|(_, n)| **n > MAX_POSTING_VALUES_PER_KEY)
        .map(|((s, k), _)| (*s, (*k).to_string()))
        .collect();
    if !dropped.is_empty() {
        postings.retain(|k, _| {
            !dropped
                .iter()
                .any(|(s, key)| *s == k.scope && *key == k.key)
        });
    }

    let mut sections: Vec<(u64, u64, u32)> = Vec::with_capacity(5);
    let mut push_section = |out: &mut Vec<u8>, bytes: &[u8]| {
        sections.push((out.len() as u64, bytes.len() as u64, crc32fast::hash(bytes)));
        out.extend_from_slice(bytes);
    };
    // index
    let mut sec = Vec::with_capacity(4 + index.len() * INDEX_ENTRY_LEN);
    sec.extend_from_slice(&(index.len() as u32).to_le_bytes());
    for e in &index {
        sec.extend_from_slice(&e.trace_id);
        sec.extend_from_slice(&e.frame_offset.to_le_bytes());
        sec.extend_from_slice(&e.frame_len.to_le_bytes());
        sec.extend_from_slice(&e.frame_crc.to_le_bytes());
        sec.extend_from_slice(&e.min_start_ns.to_le_bytes());
        sec.extend_from_slice(&e.max_end_ns.to_le_bytes());
        sec.extend_from_slice(&e.span_count.to_le_bytes());
    }
    push_section(&mut out, &sec);
    // columns
    sec.clear();
    sec.extend_from_slice(&(cols.trace_ord.len() as u32).to_le_bytes());
    cols.trace_ord
        .iter()
        .for_each(|v| sec.extend_from_slice(&v.to_le_bytes()));
    cols.start_ns
        .iter()
        .for_each(|v| sec.extend_from_slice(&v.to_le_bytes()));
    cols.duration_ns
        .iter()
        .for_each(|v| sec.extend_from_slice(&v.to_le_bytes()));
    cols.service
        .iter()
        .for_each(|v| sec.extend_from_slice(&v.to_le_bytes()));
    cols.name
        .iter()
        .for_each(|v| sec.extend_from_slice(&v.to_le_bytes()));
    sec.extend_from_slice(&cols.kind);
    sec.extend_from_slice(&cols.status);
    let z = compress(&sec)?;
    push_section(&mut out, &z);
    // symbols
    sec.clear();
    put_uvarint(&mut sec, symbols.len() as u64);
    for s in &symbols {
        put_uvarint(&mut sec, s.len() as u64);
        sec.extend_from_slice(s.as_bytes());
    }
    let z = compress(&sec)?;
    push_section(&mut out, &z);
    // postings: keys and values inline (zstd removes the repetition)
    sec.clear();
    put_uvarint(&mut sec, postings.len() as u64);
    let mut bm = Vec::new();
    for (k, bitmap) in &postings {
        sec.push(k.scope);
        sec.push(k.vtype);
        put_uvarint(&mut sec, k.key.len() as u64);
        sec.extend_from_slice(k.key.as_bytes());
        put_uvarint(&mut sec, k.value.len() as u64);
        sec.extend_from_slice(k.value.as_bytes());
        bm.clear();
        bitmap
            .serialize_into(&mut bm)
            .map_err(|e| TraceError::io("serialize postings", PathBuf::new(), e))?;
        put_uvarint(&mut sec, bm.len() as u64);
        sec.extend_from_slice(&bm);
    }
    let z = compress(&sec)?;
    push_section(&mut out, &z);
    // bloom
    sec.clear();
    bloom.encode(&mut sec);
    push_section(&mut out, &sec);
    // footer
    let foot_start = out.len();
    for (off, len, crc) in &sections {
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    if traces.is_empty() {
        min_all = 0;
    }
    out.extend_from_slice(&min_all.to_le_bytes());
    out.extend_from_slice(&max_all.to_le_bytes());
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
    out.extend_from_slice(&u32::try_from(spans_all).unwrap_or(u32::MAX).to_le_bytes());
    let crc = crc32fast::hash(out.get(foot_start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

fn compress(b: &[u8]) -> TraceResult<Vec<u8>> {
    zstd::bulk::compress(b, ZSTD_LEVEL)
        .map_err(|e| TraceError::io("compress section", PathBuf::new(), e))
}

/// Decompresses at most `limit` bytes.
fn decompress(b: &[u8], limit: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    let mut d = zstd::stream::read::Decoder::new(b).map_err(|_| "zstd stream is invalid")?;
    use std::io::Read;
    (&mut d)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| "zstd stream is invalid")?;
    if out.len() > limit {
        return Err("decompressed section is larger than the limit");
    }
    Ok(out)
}

/// Largest decompressed section or frame accepted (1 GiB).
const MAX_DECOMPRESSED: usize = 1 << 30;

/// An open trace block: index, columns, symbols, postings and bloom in memory; trace frames
/// decoded on demand.
#[derive(Debug)]
pub struct TraceBlock {
    path: PathBuf,
    data: Bytes,
    index: Vec<IndexEntry>,
    columns: Columns,
    symbols: Vec<String>,
    postings: BTreeMap<PostingKey, RoaringBitmap>,
    bloom: Bloom,
    /// Earliest span start, Unix ns.
    pub min_start_ns: u64,
    /// Latest span end, Unix ns.
    pub max_end_ns: u64,
    /// Spans in the block.
    pub span_count: u64,
}

impl TraceBlock {
    /// Opens a block file, checking length, magic, version and every checksum before decoding.
    pub fn open(path: &Path) -> TraceResult<TraceBlock> {
        let data = fs::read(path).map_err(|e| TraceError::io("read trace block", path, e))?;
        TraceBlock::from_bytes(path.to_path_buf(), Bytes::from(data))
    }

    /// Decodes a block held in memory (`path` names it in errors).
    pub fn from_bytes(path: PathBuf, data: Bytes) -> TraceResult<TraceBlock> {
        let corrupt = |reason: String| TraceError::CorruptBlock {
            path: path.clone(),
            reason,
        };
        if data.len() < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(format!(
                "file has {} bytes, fewer than header and footer",
                data.len()
            )));
        }
        if data.get(..4) != Some(MAGIC.as_slice())
            || data.get(data.len() - 4..) != Some(MAGIC.as_slice())
        {
            return Err(corrupt("bad magic (not a trace block)".into()));
        }
        let version = u16::from_le_bytes([data[4], data[5]]);
        if version != BlockVersion::V1 as u16 {
            return Err(TraceError::UnsupportedVersion {
                path: path.clone(),
                version,
            });
        }
        if data.get(6..8) != Some([0u8, 0].as_slice()) {
            return Err(corrupt("reserved header bytes are not zero".into()));
        }
        let foot = data
            .get(data.len() - FOOTER_LEN..data.len() - 4)
            .ok_or_else(|| corrupt("footer out of range".into()))?;
        let (body, crc_bytes) = foot.split_at(FOOTER_LEN - 8);
        let want = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32fast::hash(body) != want {
            return Err(corrupt("footer checksum mismatch".into()));
        }
        let mut r = Reader::new(body);
        let mut sections = Vec::with_capacity(5);
        let body_end = (data.len() - FOOTER_LEN) as u64;
        for name in ["index", "columns", "symbols", "postings", "bloom"] {
            let off = r.u64().map_err(|e| corrupt(e.to_string()))?;
            let len = r.u64().map_err(|e| corrupt(e.to_string()))?;
            let crc = r.u32().map_err(|e| corrupt(e.to_string()))?;
            let end = off
                .checked_add(len)
                .filter(|&e| e <= body_end && off >= HEADER_LEN as u64);
            let Some(end) = end else {
                return Err(corrupt(format!("{name} section out of range")));
            };
            let bytes = data.slice(off as usize..end as usize);
            if crc32fast::hash(&bytes) != crc {
                return Err(corrupt(format!("{name} section checksum mismatch")));
            }
            sections.push(bytes);
        }
        let min_start_ns = r.u64().map_err(|e| corrupt(e.to_string()))?;
        let max_end_ns = r.u64().map_err(|e| corrupt(e.to_string()))?;
        let n_traces = r.u32().map_err(|e| corrupt(e.to_string()))? as usize;
        let n_spans = r.u32().map_err(|e| corrupt(e.to_string()))?;
        let [index_b, cols_b, sym_b, post_b, bloom_b] =
            <[Bytes; 5]>::try_from(sections).map_err(|_| corrupt("sections missing".into()))?;

        // index
        let mut r = Reader::new(&index_b);
        let n = r.u32().map_err(|e| corrupt(e.to_string()))? as usize;
        if n != n_traces || r.remaining() != n * INDEX_ENTRY_LEN {
            return Err(corrupt(
                "index length does not match its trace count".into(),
            ));
        }
        let mut index = Vec::with_capacity(n);
        for _ in 0..n {
            let b = r
                .bytes(INDEX_ENTRY_LEN)
                .map_err(|e| corrupt(e.to_string()))?;
            let mut rr = Reader::new(b);
            let mut trace_id = [0u8; 16];
            trace_id.copy_from_slice(rr.bytes(16).map_err(|e| corrupt(e.to_string()))?);
            let e = IndexEntry {
                trace_id,
                frame_offset: rr.u64().map_err(|e| corrupt(e.to_string()))?,
                frame_len: rr.u32().map_err(|e| corrupt(e.to_string()))?,
                frame_crc: rr.u32().map_err(|e| corrupt(e.to_string()))?,
                min_start_ns: rr.u64().map_err(|e| corrupt(e.to_string()))?,
                max_end_ns: rr.u64().map_err(|e| corrupt(e.to_string()))?,
                span_count: rr.u32().map_err(|e| corrupt(e.to_string()))?,
            };
            let end = e.frame_offset.checked_add(u64::from(e.frame_len));
            if e.frame_offset < HEADER_LEN as u64 || end.is_none_or(|end| end > body_end) {
                return Err(corrupt("trace frame out of range".into()));
            }
            if index
                .last()
                .is_some_and(|p: &IndexEntry| p.trace_id >= e.trace_id)
            {
                return Err(corrupt("trace index is not sorted".into()));
            }
            index.push(e);
        }

        // columns
        let raw =
            decompress(&cols_b, MAX_DECOMPRESSED).map_err(|e| corrupt(format!("columns: {e}")))?;
        let mut r = Reader::new(&raw);
        let n = r.u32().map_err(|e| corrupt(e.to_string()))? as usize;
        if n != n_spans as usize || r.remaining() != n * 30 {
            return Err(corrupt(
                "columns length does not match the span count".into(),
            ));
        }
        let mut cols = Columns::default();
        let err = |e: span::SpanDecodeError| corrupt(format!("columns: {e}"));
        for _ in 0..n {
            cols.trace_ord.push(r.u32().map_err(err)?);
        }
        for _ in 0..n {
            cols.start_ns.push(r.u64().map_err(err)?);
        }
        for _ in 0..n {
            cols.duration_ns.push(r.u64().map_err(err)?);
        }
        for _ in 0..n {
            cols.service.push(r.u32().map_err(err)?);
        }
        for _ in 0..n {
            cols.name.push(r.u32().map_err(err)?);
        }
        cols.kind = r.bytes(n).map_err(err)?.to_vec();
        cols.status = r.bytes(n).map_err(err)?.to_vec();

        // symbols
        let raw =
            decompress(&sym_b, MAX_DECOMPRESSED).map_err(|e| corrupt(format!("symbols: {e}")))?;
        let mut r = Reader::new(&raw);
        let n = r.uvarint().map_err(|e| corrupt(e.to_string()))?;
        if n > r.remaining() as u64 {
            return Err(corrupt("symbol count exceeds the section".into()));
        }
        let mut symbols = Vec::with_capacity(n as usize);
        for _ in 0..n {
            symbols.push(r.str().map_err(|e| corrupt(format!("symbols: {e}")))?);
        }
        let nsym = symbols.len() as u32;
        if cols.service.iter().chain(&cols.name).any(|&s| s >= nsym)
            || cols.trace_ord.iter().any(|&o| o as usize >= index.len())
        {
            return Err(corrupt("column value out of range".into()));
        }

        // postings
        let raw =
            decompress(&post_b, MAX_DECOMPRESSED).map_err(|e| corrupt(format!("postings: {e}")))?;
        let mut r = Reader::new(&raw);
        let n = r.uvarint().map_err(|e| corrupt(e.to_string()))?;
        if n > r.remaining() as u64 {
            return Err(corrupt("postings count exceeds the section".into()));
        }
        let mut postings = BTreeMap::new();
        for _ in 0..n {
            let perr = |e: span::SpanDecodeError| corrupt(format!("postings: {e}"));
            let scope = r.u8().map_err(perr)?;
            let vtype = r.u8().map_err(perr)?;
            let key = r.str().map_err(perr)?;
            let value = r.str().map_err(perr)?;
            let len = r.len().map_err(perr)?;
            let b = r.bytes(len).map_err(perr)?;
            let bm = RoaringBitmap::deserialize_from(b)
                .map_err(|e| corrupt(format!("postings bitmap: {e}")))?;
            if bm.max().is_some_and(|m| m as usize >= index.len()) {
                return Err(corrupt("postings refer to a trace past the index".into()));
            }
            postings.insert(
                PostingKey {
                    scope,
                    key,
                    value,
                    vtype,
                },
                bm,
            );
        }
        let bloom = Bloom::decode(&bloom_b).map_err(|e| corrupt(e.into()))?;
        Ok(TraceBlock {
            path,
            data,
            index,
            columns: cols,
            symbols,
            postings,
            bloom,
            min_start_ns,
            max_end_ns,
            span_count: u64::from(n_spans),
        })
    }

    /// The block file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the block file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// Number of traces.
    pub fn trace_count(&self) -> usize {
        self.index.len()
    }

    /// The sorted trace index.
    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// Per-span columns.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// A symbol by id.
    pub fn symbol(&self, id: u32) -> &str {
        self.symbols
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The id of a symbol, if the block has it (linear: the table holds services and names).
    pub fn symbol_id(&self, s: &str) -> Option<u32> {
        self.symbols.iter().position(|x| x == s).map(|i| i as u32)
    }

    /// Postings (trace ordinals) of `scope`/`key`/`value` (scope 2 = intrinsic `name`).
    pub fn postings(&self) -> &BTreeMap<PostingKey, RoaringBitmap> {
        &self.postings
    }

    /// Ordinal of a trace id, if present.
    pub fn find(&self, id: &[u8; 16]) -> Option<usize> {
        if !self.bloom.may_contain(id) {
            return None;
        }
        self.index.binary_search_by(|e| e.trace_id.cmp(id)).ok()
    }

    /// Decodes the spans of the trace at `ord`, checking the frame's checksum first.
    pub fn read_trace(&self, ord: usize) -> TraceResult<Vec<SpanRecord>> {
        let corrupt = |reason: String| TraceError::CorruptBlock {
            path: self.path.clone(),
            reason,
        };
        let e = self
            .index
            .get(ord)
            .ok_or_else(|| corrupt(format!("no trace ordinal {ord}")))?;
        let start = e.frame_offset as usize;
        let frame = self
            .data
            .get(start..start + e.frame_len as usize)
            .ok_or_else(|| corrupt("trace frame out of range".into()))?;
        if crc32fast::hash(frame) != e.frame_crc {
            return Err(corrupt(format!("trace frame {ord} checksum mismatch")));
        }
        let raw = decompress(frame, MAX_DECOMPRESSED)
            .map_err(|r| corrupt(format!("trace frame {ord}: {r}")))?;
        span::decode_spans(&raw).map_err(|err| corrupt(format!("trace frame {ord}: {err}")))
    }

    /// Scope byte of an attribute scope in postings.
    pub fn scope_byte(scope: Option<AttrScope>) -> u8 {
        match scope {
            Some(s) => s as u8,
            None => SCOPE_INTRINSIC,
        }
    }
}

/// Writes a block file atomically: `<dir>/<name>.tmp`, fsync, rename to `<dir>/<name>`, fsync
/// the directory.
pub fn write_block_file(dir: &Path, name: &str, bytes: &[u8]) -> TraceResult<PathBuf> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| TraceError::io("create trace block", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| TraceError::io("write trace block", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| TraceError::io("rename trace block", &path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TraceError::io("fsync dir", dir, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::traces::span::tests::arb_span;
    use crate::traces::span::{Attr, KIND_SERVER};
    use proptest::prelude::*;

    pub(crate) fn sample_traces() -> BTreeMap<[u8; 16], Vec<SpanRecord>> {
        let mut m = BTreeMap::new();
        for t in 0u8..3 {
            let mut id = [0u8; 16];
            id[0] = 0xa0 + t;
            id[15] = t;
            let spans = (0u8..3)
                .map(|s| SpanRecord {
                    trace_id: id,
                    span_id: [t, s, 1, 1, 1, 1, 1, 1],
                    parent_span_id: if s == 0 {
                        [0; 8]
                    } else {
                        [t, 0, 1, 1, 1, 1, 1, 1]
                    },
                    start_ns: 1_700_000_000_000_000_000 + u64::from(s) * 1000,
                    end_ns: 1_700_000_000_000_000_000 + u64::from(s) * 1000 + 500,
                    kind: KIND_SERVER,
                    status: s % 3,
                    service: format!("svc-{s}"),
                    name: format!("op-{t}"),
                    attrs: vec![Attr {
                        scope: AttrScope::Span,
                        key: "http.status_code".into(),
                        value: AttrValue::Int(200 + i64::from(s)),
                    }],
                    payload: vec![t, s],
                })
                .collect();
            m.insert(id, spans);
        }
        m
    }

    #[test]
    fn block_round_trips_and_finds_traces() {
        let traces = sample_traces();
        let bytes = encode_block(&traces).unwrap();
        let b = TraceBlock::from_bytes("mem".into(), Bytes::from(bytes)).unwrap();
        assert_eq!(b.trace_count(), 3);
        assert_eq!(b.span_count, 9);
        for (ord, (id, spans)) in traces.iter().enumerate() {
            assert_eq!(b.find(id), Some(ord));
            assert_eq!(&b.read_trace(ord).unwrap(), spans);
        }
        assert_eq!(b.find(&[7; 16]), None);
        let k = PostingKey {
            scope: 1,
            key: "http.status_code".into(),
            value: "201".into(),
            vtype: 2,
        };
        assert_eq!(b.postings().get(&k).unwrap().len(), 3);
        assert_eq!(b.symbol(b.columns().service[1]), "svc-1");
    }

    /// The committed v1 fixture still opens, and today's writer still produces it byte for byte.
    #[test]
    fn v1_fixture_opens_and_matches_the_current_writer() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trace_block_v1/block.strb");
        let bytes = encode_block(&sample_traces()).unwrap();
        if !path.exists() {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
        }
        let b = TraceBlock::open(&path).unwrap();
        assert_eq!(
            b.read_trace(2).unwrap(),
            sample_traces().into_values().nth(2).unwrap()
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "writer output changed: bump the version"
        );
    }

    #[test]
    fn corruption_is_detected_everywhere() {
        let bytes = encode_block(&sample_traces()).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x55;
            let res = TraceBlock::from_bytes("mem".into(), Bytes::from(b));
            // Either open fails or the damaged frame's checksum does.
            if let Ok(block) = res {
                assert!(
                    (0..block.trace_count()).any(|o| block.read_trace(o).is_err()),
                    "flip at {i} undetected"
                );
            }
        }
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                TraceBlock::from_bytes("mem".into(), Bytes::from(bytes[..cut].to_vec())).is_err()
            );
        }
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert!(matches!(
            TraceBlock::from_bytes("mem".into(), Bytes::from(v2)),
            Err(TraceError::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut b = Bloom::with_capacity(1000);
        let ids: Vec<[u8; 16]> = (0..1000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id[8..12].copy_from_slice(&(i * 7919).to_le_bytes());
                id
            })
            .collect();
        ids.iter().for_each(|id| b.insert(id));
        assert!(ids.iter().all(|id| b.may_contain(id)));
        let fp = (5000..15000u32)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id[8..12].copy_from_slice(&(i * 7919).to_le_bytes());
                b.may_contain(&id)
            })
            .count();
        assert!(fp < 500, "false-positive rate too high: {fp}/10000");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        #[test]
        fn any_traces_round_trip(spans in proptest::collection::vec(arb_span(), 1..12)) {
            let mut traces: BTreeMap<[u8; 16], Vec<SpanRecord>> = BTreeMap::new();
            for s in spans {
                traces.entry(s.trace_id).or_default().push(s);
            }
            let bytes = encode_block(&traces).unwrap();
            let b = TraceBlock::from_bytes("mem".into(), Bytes::from(bytes)).unwrap();
            for (ord, (id, spans)) in traces.iter().enumerate() {
                prop_assert_eq!(b.find(id), Some(ord));
                let mut x = Vec::new();
                span::encode_spans(&mut x, spans.iter());
                let mut y = Vec::new();
                span::encode_spans(&mut y, b.read_trace(ord).unwrap().iter());
                prop_assert_eq!(x, y);
            }
        }

        #[test]
        fn garbage_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = TraceBlock::from_bytes("mem".into(), Bytes::from(bytes));
        }
    }
}
