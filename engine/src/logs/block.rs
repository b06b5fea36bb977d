//! Log blocks: immutable files holding the sealed chunks of one time partition of one tenant,
//! with the stream index, the chunks' full-text signatures and the trace-id index.
//!
//! A block is written once (to `<name>.tmp`, fsynced, renamed, directory fsynced) and read
//! through `mmap`; it is never modified, so compaction and retention can replace or delete
//! whole files.
//!
//! # Layout (version 1, little-endian)
//!
//! ```text
//! 0      4  magic "SLBK"
//! 4      1  format version (1)
//! 5      3  reserved (0)
//! 8         chunks: the encoded chunks back to back (each self-checking, see `chunk`)
//! sig_off   signatures: each chunk's n-gram bitset back to back
//! meta_off  meta section:
//!             uvarint stream count; per stream: uvarint label count, then
//!               uvarint-prefixed name and value per label (sorted by name)
//!             uvarint chunk count; per chunk: uvarint stream ordinal, zigzag varint min_t,
//!               uvarint max_t - min_t, uvarint entries, uvarint raw line bytes,
//!               uvarint chunk offset, uvarint chunk length,
//!               uvarint signature offset, uvarint signature length
//! trace_off trace section: u32 count, then count records of 20 bytes:
//!             trace id (u128 LE), chunk ordinal (u32 LE); sorted by (id, ordinal)
//! end-72    footer: sig_off, sig_len, meta_off, meta_len, trace_off, trace_len (u64 each),
//!             min_t, max_t (i64), crc32 (u32) of signatures ‖ meta ‖ traces ‖ footer[0..64],
//!             magic "SLBK"
//! ```
//!
//! Opening checks length, both magics, version and the checksum before decoding the meta
//! section; every offset is bounds-checked against the file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::labels::{Label, Labels};

use super::LogError;
use super::codec::{Reader, put_bytes, put_uvarint, put_varint};

/// Magic number at both ends of a block file.
pub const BLOCK_MAGIC: [u8; 4] = *b"SLBK";
/// Current block format version.
pub const BLOCK_VERSION: u8 = 1;
/// Size of the fixed footer.
pub const FOOTER_LEN: usize = 72;
/// File-name suffix of log blocks.
pub const BLOCK_SUFFIX: &str = ".slb";

/// One chunk to be written into a block.
#[derive(Clone, Debug)]
pub struct ChunkToWrite<'a> {
    /// Ordinal of its stream in the block's stream list.
    pub stream: u32,
    /// Smallest timestamp.
    pub min_t: i64,
    /// Largest timestamp.
    pub max_t: i64,
    /// Entries.
    pub entries: u32,
    /// Raw line bytes.
    pub raw_bytes: u32,
    /// The encoded chunk.
    pub data: &'a [u8],
    /// Its n-gram signature.
    pub signature: &'a [u8],
    /// Trace ids of its entries.
    pub trace_ids: &'a [u128],
}

/// A chunk as listed by a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockChunk {
    /// Stream ordinal in the block.
    pub stream: u32,
    /// Smallest timestamp.
    pub min_t: i64,
    /// Largest timestamp.
    pub max_t: i64,
    /// Entries.
    pub entries: u32,
    /// Raw line bytes.
    pub raw_bytes: u32,
    /// The encoded chunk (a slice of the mapped file).
    pub data: Bytes,
    /// Its signature (a slice of the mapped file).
    pub signature: Bytes,
}

/// Encodes a whole block into bytes.
pub fn encode_block(streams: &[Labels], chunks: &[ChunkToWrite<'_>]) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    out.extend_from_slice(&BLOCK_MAGIC);
    out.push(BLOCK_VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    let mut chunk_pos = Vec::with_capacity(chunks.len());
    for c in chunks {
        if c.stream as usize >= streams.len() {
            return Err(LogError::InvalidInput(format!(
                "chunk names stream {} of {}",
                c.stream,
                streams.len()
            )));
        }
        chunk_pos.push((out.len(), c.data.len()));
        out.extend_from_slice(c.data);
    }
    let sig_off = out.len();
    let mut sig_pos = Vec::with_capacity(chunks.len());
    for c in chunks {
        sig_pos.push((out.len(), c.signature.len()));
        out.extend_from_slice(c.signature);
    }
    let meta_off = out.len();
    put_uvarint(&mut out, streams.len() as u64);
    for s in streams {
        put_uvarint(&mut out, s.len() as u64);
        for l in s.iter() {
            put_bytes(&mut out, l.name.as_bytes());
            put_bytes(&mut out, l.value.as_bytes());
        }
    }
    put_uvarint(&mut out, chunks.len() as u64);
    for ((c, (co, cl)), (so, sl)) in chunks.iter().zip(&chunk_pos).zip(&sig_pos) {
        put_uvarint(&mut out, u64::from(c.stream));
        put_varint(&mut out, c.min_t);
        put_uvarint(&mut out, c.max_t.wrapping_sub(c.min_t) as u64);
        put_uvarint(&mut out, u64::from(c.entries));
        put_uvarint(&mut out, u64::from(c.raw_bytes));
        put_uvarint(&mut out, *co as u64);
        put_uvarint(&mut out, *cl as u64);
        put_uvarint(&mut out, *so as u64);
        put_uvarint(&mut out, *sl as u64);
    }
    let trace_off = out.len();
    let mut traces: Vec<(u128, u32)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.trace_ids.iter().map(move |&t| (t, i as u32)))
        .collect();
    traces.sort_unstable();
    traces.dedup();
    out.extend_from_slice(&(traces.len() as u32).to_le_bytes());
    for (t, c) in &traces {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
    }
    let end = out.len();
    let min_t = chunks.iter().map(|c| c.min_t).min().unwrap_or(0);
    let max_t = chunks.iter().map(|c| c.max_t).max().unwrap_or(0);
    let footer_start = out.len();
    for v in [
        sig_off,
        meta_off - sig_off,
        meta_off,
        trace_off - meta_off,
        trace_off,
        end - trace_off,
    ] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    out.extend_from_slice(&min_t.to_le_bytes());
    out.extend_from_slice(&max_t.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(out.get(sig_off..).unwrap_or_default());
    let crc = h.finalize();
    debug_assert_eq!(out.len(), footer_start + 64);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&BLOCK_MAGIC);
    Ok(out)
}

/// An opened block.
#[derive(Debug)]
pub struct LogBlock {
    path: PathBuf,
    data: Bytes,
    /// Stream label sets, by ordinal.
    pub streams: Vec<Labels>,
    /// Chunks, by ordinal.
    pub chunks: Vec<BlockChunk>,
    trace_off: usize,
    trace_count: usize,
    /// Smallest timestamp.
    pub min_t: i64,
    /// Largest timestamp.
    pub max_t: i64,
}

impl LogBlock {
    /// Decodes a block held in `data` (`path` is only used in messages).
    pub fn from_bytes(path: &Path, data: Bytes) -> Result<LogBlock, LogError> {
        let corrupt = |offset: usize, reason: String| LogError::Corrupt {
            what: "log block",
            offset,
            reason,
        };
        let n = data.len();
        if n < 8 + FOOTER_LEN {
            return Err(corrupt(0, format!("{n} bytes is too short for a block")));
        }
        if data.get(..4) != Some(&BLOCK_MAGIC[..]) || data.get(n - 4..) != Some(&BLOCK_MAGIC[..]) {
            return Err(corrupt(
                0,
                "bad magic, expected \"SLBK\" at both ends".into(),
            ));
        }
        let version = data.get(4).copied().unwrap_or(0);
        if version != BLOCK_VERSION {
            return Err(LogError::UnsupportedVersion {
                what: "log block",
                version: u32::from(version),
            });
        }
        let footer_start = n - FOOTER_LEN;
        let mut f = Reader::new(
            data.get(footer_start..).unwrap_or_default(),
            "log block footer",
        );
        let mut v = [0usize; 6];
        for x in &mut v {
            *x = usize::try_from(f.u64_le("section offset")?)
                .map_err(|_| corrupt(footer_start, "offset overflows".into()))?;
        }
        let [sig_off, sig_len, meta_off, meta_len, trace_off, trace_len] = v;
        let min_t = f.i64_le("min_t")?;
        let max_t = f.i64_le("max_t")?;
        let crc = f.u32_le("crc")?;
        if sig_off < 8
            || sig_off.checked_add(sig_len) != Some(meta_off)
            || meta_off.checked_add(meta_len) != Some(trace_off)
            || trace_off.checked_add(trace_len) != Some(footer_start)
        {
            return Err(corrupt(
                footer_start,
                "section offsets are inconsistent".into(),
            ));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(data.get(sig_off..footer_start + 64).unwrap_or_default());
        let got = h.finalize();
        if got != crc {
            return Err(corrupt(
                footer_start + 64,
                format!("checksum mismatch: stored {crc:08x}, computed {got:08x}"),
            ));
        }
        let meta = data.get(meta_off..trace_off).unwrap_or_default();
        let mut r = Reader::new(meta, "log block meta section");
        let ns = r.len("stream count", r.remaining())?;
        let mut streams = Vec::with_capacity(ns);
        for _ in 0..ns {
            let nl = r.len("label count", r.remaining())?;
            let mut labels = Vec::with_capacity(nl);
            for _ in 0..nl {
                let name = r.str("label name")?;
                let value = r.str("label value")?;
                labels.push(Label::new(name, value));
            }
            streams
                .push(Labels::new(labels).map_err(|e| corrupt(meta_off + r.pos(), e.to_string()))?);
        }
        let nc = r.len("chunk count", r.remaining())?;
        let mut chunks = Vec::with_capacity(nc);
        for i in 0..nc {
            let stream = r.len("chunk stream", ns.saturating_sub(1))? as u32;
            if ns == 0 {
                return Err(corrupt(meta_off, "chunks without streams".into()));
            }
            let min_t = r.varint("chunk min_t")?;
            let span = r.uvarint("chunk span")?;
            let entries = r.len("chunk entries", u32::MAX as usize)? as u32;
            let raw_bytes = r.len("chunk raw bytes", u32::MAX as usize)? as u32;
            let co = r.len("chunk offset", sig_off)?;
            let cl = r.len("chunk length", sig_off)?;
            let so = r.len("signature offset", meta_off)?;
            let sl = r.len("signature length", meta_len.max(sig_len))?;
            if co < 8 || co + cl > sig_off || so < sig_off || so + sl > meta_off {
                return Err(corrupt(
                    meta_off + r.pos(),
                    format!("chunk {i} is out of bounds"),
                ));
            }
            chunks.push(BlockChunk {
                stream,
                min_t,
                max_t: min_t.wrapping_add(span as i64),
                entries,
                raw_bytes,
                data: data.slice(co..co + cl),
                signature: data.slice(so..so + sl),
            });
        }
        if trace_len < 4 {
            return Err(corrupt(trace_off, "trace section too short".into()));
        }
        let mut tr = Reader::new(
            data.get(trace_off..footer_start).unwrap_or_default(),
            "log block trace section",
        );
        let trace_count = tr.u32_le("trace count")? as usize;
        if trace_count.checked_mul(20) != Some(trace_len - 4) {
            return Err(corrupt(
                trace_off,
                format!("{trace_count} trace records do not fill {trace_len} bytes"),
            ));
        }
        Ok(LogBlock {
            path: path.to_path_buf(),
            data,
            streams,
            chunks,
            trace_off: trace_off + 4,
            trace_count,
            min_t,
            max_t,
        })
    }

    /// Opens (maps) a block file.
    pub fn open(path: &Path) -> Result<LogBlock, LogError> {
        let data = map_file(path)?;
        LogBlock::from_bytes(path, data)
    }

    /// The file this block was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the block file.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    fn trace_at(&self, i: usize) -> Option<(u128, u32)> {
        let off = self.trace_off + i * 20;
        let rec = self.data.get(off..off + 20)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(rec.get(..16)?);
        let mut c = [0u8; 4];
        c.copy_from_slice(rec.get(16..)?);
        Some((u128::from_le_bytes(id), u32::from_le_bytes(c)))
    }

    /// Ordinals of the chunks holding a trace id.
    pub fn trace_chunks(&self, id: u128) -> Vec<u32> {
        // Lower bound by binary search over fixed-size records.
        let (mut lo, mut hi) = (0usize, self.trace_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.trace_at(mid) {
                Some((t, _)) if t < id => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let mut out = Vec::new();
        while let Some((t, c)) = self.trace_at(lo) {
            if t != id {
                break;
            }
            out.push(c);
            lo += 1;
        }
        out
    }

    /// Number of trace-id records.
    pub fn trace_count(&self) -> usize {
        self.trace_count
    }
}

/// Maps a whole file read-only into [`Bytes`].
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Bytes, LogError> {
    let file = File::open(path).map_err(|e| LogError::io("open log block", path, e))?;
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes change (or reads fault) if the file
    // is modified or truncated while mapped. Log block files are immutable once renamed into
    // place: Strata never writes, truncates or reuses them (retention only unlinks, which keeps
    // the mapped pages alive until the mapping is dropped). The mapping is read-only.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| LogError::io("mmap log block", path, e))?;
    Ok(Bytes::from_owner(map))
}

/// Writes a block file atomically: `<name>.tmp`, fsync, rename, fsync of the directory.
pub fn write_block_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| LogError::io("create log block", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| LogError::io("write log block", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io("rename log block", &path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync log block dir", dir, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::chunk::{LogEntry, encode_chunk};
    use super::*;
    use proptest::prelude::*;

    fn sample_block() -> Vec<u8> {
        let streams = vec![
            Labels::from_pairs(&[("job", "a")]).unwrap(),
            Labels::from_pairs(&[("job", "b")]).unwrap(),
        ];
        let c1 = encode_chunk(&[LogEntry {
            ts: 10,
            line: "hello".into(),
            metadata: vec![],
        }])
        .unwrap();
        let c2 = encode_chunk(&[LogEntry {
            ts: 20,
            line: "world".into(),
            metadata: vec![],
        }])
        .unwrap();
        let chunks = vec![
            ChunkToWrite {
                stream: 0,
                min_t: 10,
                max_t: 10,
                entries: 1,
                raw_bytes: 5,
                data: &c1,
                signature: &[0xff; 128],
                trace_ids: &[7, 3],
            },
            ChunkToWrite {
                stream: 1,
                min_t: 20,
                max_t: 20,
                entries: 1,
                raw_bytes: 5,
                data: &c2,
                signature: &[0x0f; 128],
                trace_ids: &[7],
            },
        ];
        encode_block(&streams, &chunks).unwrap()
    }

    #[test]
    fn blocks_round_trip() {
        let bytes = sample_block();
        let b = LogBlock::from_bytes(Path::new("x"), Bytes::from(bytes)).unwrap();
        assert_eq!(b.streams.len(), 2);
        assert_eq!(b.chunks.len(), 2);
        assert_eq!((b.min_t, b.max_t), (10, 20));
        assert_eq!(b.trace_chunks(7), vec![0, 1]);
        assert_eq!(b.trace_chunks(3), vec![0]);
        assert!(b.trace_chunks(5).is_empty());
        let e = super::super::chunk::decode_chunk(&b.chunks[1].data).unwrap();
        assert_eq!(e[0].line, "world");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn damaged_blocks_never_panic(flip in any::<usize>(), cut in any::<usize>()) {
            let bytes = sample_block();
            let mut d = bytes.clone();
            let i = flip % d.len();
            d[i] ^= 0x01;
            // Chunk bytes are checked when decoded; everything else when opened.
            if let Ok(b) = LogBlock::from_bytes(Path::new("x"), Bytes::from(d)) {
                for c in &b.chunks { let _ = super::super::chunk::decode_chunk(&c.data); }
            }
            let c = cut % bytes.len();
            prop_assert!(LogBlock::from_bytes(Path::new("x"), Bytes::copy_from_slice(&bytes[..c])).is_err());
        }
    }
}
