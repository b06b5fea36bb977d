//! Log chunks: a run of one stream's entries, sorted by timestamp, compressed with zstd.
//!
//! A chunk is the unit the log store reads: the full-text filter and the trace-id index point
//! at chunks, and a query decompresses only the chunks they leave. Columns are compressed
//! separately so that metric queries that only need timestamps and line sizes
//! (`count_over_time`, `bytes_over_time`) never decompress the lines.
//!
//! # Layout (version 1, little-endian)
//!
//! ```text
//! off  size  field
//!   0     4  magic "SLCH"
//!   4     1  format version (1)
//!   5     1  flags (0)
//!   6     2  reserved (0)
//!   8     4  entries (u32)
//!  12     8  min_t (i64, ns)
//!  20     8  max_t (i64, ns)
//!  28     8  index column:    raw length u32, compressed length u32
//!  36     8  lines column:    raw length u32, compressed length u32
//!  44     8  metadata column: raw length u32, compressed length u32 (0, 0 when absent)
//!  52     4  crc32 (crc32fast) of bytes 0..52 followed by every column's compressed bytes
//!  56        index column (zstd): per entry zigzag varint ts - previous ts (first: - min_t),
//!            uvarint line length
//!            lines column (zstd): the lines' bytes, concatenated
//!            metadata column (zstd): per entry uvarint pair count, then per pair
//!            uvarint-length-prefixed name and value
//! ```
//!
//! Decoding checks length, magic, version and checksum before it decompresses anything, and
//! refuses raw lengths above [`MAX_COLUMN_BYTES`].

use bytes::Bytes;

use super::LogError;
use super::codec::{Reader, put_bytes, put_uvarint, put_varint};

/// Magic number at the start of every chunk.
pub const CHUNK_MAGIC: [u8; 4] = *b"SLCH";
/// Current chunk format version.
pub const CHUNK_VERSION: u8 = 1;
/// Size of the fixed chunk header.
pub const CHUNK_HEADER_LEN: usize = 56;
/// Largest raw column a chunk may declare (64 MiB).
pub const MAX_COLUMN_BYTES: usize = 64 << 20;
/// zstd level of the index and metadata columns.
const ZSTD_LEVEL: i32 = 3;
/// zstd level of the lines column: level 5 saves about 6 bytes per ~185-byte line against
/// level 3 on the benchmark workload (256 KiB chunks), for about 1.5 µs more CPU per line.
const ZSTD_LINES_LEVEL: i32 = 5;

/// One log entry: timestamp in nanoseconds, the line, and its structured metadata.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogEntry {
    /// Unix nanoseconds.
    pub ts: i64,
    /// The log line (UTF-8).
    pub line: String,
    /// Structured metadata pairs, in the order received.
    pub metadata: Vec<(String, String)>,
}

impl LogEntry {
    /// Bytes this entry accounts for in size limits and rates (line plus metadata).
    pub fn size(&self) -> usize {
        self.line.len()
            + self
                .metadata
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}

/// The fixed header of a chunk, verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Number of entries.
    pub entries: u32,
    /// Smallest timestamp.
    pub min_t: i64,
    /// Largest timestamp.
    pub max_t: i64,
    /// Raw (uncompressed) length of the lines column.
    pub raw_lines: u32,
    columns: [(u32, u32); 3],
}

fn compress(raw: &[u8], level: i32) -> Result<Vec<u8>, LogError> {
    zstd::bulk::compress(raw, level).map_err(|e| LogError::Compression(e.to_string()))
}

/// Encodes entries (sorted by timestamp) into a chunk. The entries must not be empty.
pub fn encode_chunk(entries: &[LogEntry]) -> Result<Vec<u8>, LogError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(LogError::InvalidInput(
            "a chunk needs at least one entry".into(),
        ));
    };
    let min_t = entries.iter().map(|e| e.ts).min().unwrap_or(first.ts);
    let max_t = entries.iter().map(|e| e.ts).max().unwrap_or(last.ts);
    let mut index = Vec::with_capacity(entries.len() * 4);
    let mut lines = Vec::with_capacity(entries.iter().map(|e| e.line.len()).sum());
    let mut meta = Vec::new();
    let any_meta = entries.iter().any(|e| !e.metadata.is_empty());
    let mut prev = min_t;
    for e in entries {
        put_varint(&mut index, e.ts.wrapping_sub(prev));
        prev = e.ts;
        put_uvarint(&mut index, e.line.len() as u64);
        lines.extend_from_slice(e.line.as_bytes());
        if any_meta {
            put_uvarint(&mut meta, e.metadata.len() as u64);
            for (n, v) in &e.metadata {
                put_bytes(&mut meta, n.as_bytes());
                put_bytes(&mut meta, v.as_bytes());
            }
        }
    }
    for (name, col) in [("index", &index), ("lines", &lines), ("metadata", &meta)] {
        if col.len() > MAX_COLUMN_BYTES {
            return Err(LogError::InvalidInput(format!(
                "chunk {name} column of {} bytes exceeds {MAX_COLUMN_BYTES}",
                col.len()
            )));
        }
    }
    let ci = compress(&index, ZSTD_LEVEL)?;
    let cl = compress(&lines, ZSTD_LINES_LEVEL)?;
    let cm = if meta.is_empty() {
        Vec::new()
    } else {
        compress(&meta, ZSTD_LEVEL)?
    };
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + ci.len() + cl.len() + cm.len());
    out.extend_from_slice(&CHUNK_MAGIC);
    out.push(CHUNK_VERSION);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&min_t.to_le_bytes());
    out.extend_from_slice(&max_t.to_le_bytes());
    for (raw, comp) in [(&index, &ci), (&lines, &cl), (&meta, &cm)] {
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&(comp.len() as u32).to_le_bytes());
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&out);
    h.update(&ci);
    h.update(&cl);
    h.update(&cm);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&ci);
    out.extend_from_slice(&cl);
    out.extend_from_slice(&cm);
    Ok(out)
}

/// Verifies length, magic, version and checksum of a chunk and returns its header.
pub fn read_header(buf: &[u8]) -> Result<ChunkHeader, LogError> {
    let corrupt = |offset: usize, reason: String| LogError::Corrupt {
        what: "log chunk",
        offset,
        reason,
    };
    if buf.len() < CHUNK_HEADER_LEN {
        return Err(corrupt(
            0,
            format!(
                "{} bytes, shorter than the {CHUNK_HEADER_LEN}-byte header",
                buf.len()
            ),
        ));
    }
    let mut r = Reader::new(buf, "log chunk");
    let magic = r.take(4, "magic")?;
    if magic != CHUNK_MAGIC {
        return Err(corrupt(
            0,
            format!("bad magic {magic:02x?}, expected \"SLCH\""),
        ));
    }
    let version = r.take(1, "version")?.first().copied().unwrap_or(0);
    if version != CHUNK_VERSION {
        return Err(LogError::UnsupportedVersion {
            what: "log chunk",
            version: u32::from(version),
        });
    }
    r.take(3, "flags")?;
    let entries = r.u32_le("entries")?;
    let min_t = r.i64_le("min_t")?;
    let max_t = r.i64_le("max_t")?;
    let mut columns = [(0u32, 0u32); 3];
    let mut body = 0usize;
    for c in &mut columns {
        *c = (r.u32_le("raw length")?, r.u32_le("compressed length")?);
        if c.0 as usize > MAX_COLUMN_BYTES {
            return Err(corrupt(
                r.pos(),
                format!("column of {} raw bytes exceeds the limit", c.0),
            ));
        }
        body += c.1 as usize;
    }
    let crc = r.u32_le("crc")?;
    if r.remaining() != body {
        return Err(corrupt(
            CHUNK_HEADER_LEN,
            format!("columns declare {body} bytes, {} present", r.remaining()),
        ));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(buf.get(..52).unwrap_or_default());
    h.update(buf.get(CHUNK_HEADER_LEN..).unwrap_or_default());
    let got = h.finalize();
    if got != crc {
        return Err(corrupt(
            52,
            format!("checksum mismatch: stored {crc:08x}, computed {got:08x}"),
        ));
    }
    Ok(ChunkHeader {
        entries,
        min_t,
        max_t,
        raw_lines: columns[1].0,
        columns,
    })
}

fn column(buf: &[u8], h: &ChunkHeader, i: usize) -> Result<Vec<u8>, LogError> {
    let mut start = CHUNK_HEADER_LEN;
    for c in h.columns.iter().take(i) {
        start += c.1 as usize;
    }
    let (raw, comp) = h.columns.get(i).copied().unwrap_or((0, 0));
    if comp == 0 {
        return Ok(Vec::new());
    }
    let src = buf
        .get(start..start + comp as usize)
        .ok_or_else(|| LogError::Corrupt {
            what: "log chunk",
            offset: start,
            reason: "column out of bounds".into(),
        })?;
    let out = zstd::bulk::decompress(src, raw as usize).map_err(|e| LogError::Corrupt {
        what: "log chunk",
        offset: start,
        reason: format!("zstd: {e}"),
    })?;
    if out.len() != raw as usize {
        return Err(LogError::Corrupt {
            what: "log chunk",
            offset: start,
            reason: format!(
                "column decompressed to {} bytes, header says {raw}",
                out.len()
            ),
        });
    }
    Ok(out)
}

/// Timestamps and line lengths of a chunk, without decompressing the lines.
pub fn decode_index(buf: &[u8]) -> Result<Vec<(i64, u32)>, LogError> {
    let h = read_header(buf)?;
    decode_index_with(buf, &h)
}

fn decode_index_with(buf: &[u8], h: &ChunkHeader) -> Result<Vec<(i64, u32)>, LogError> {
    let raw = column(buf, h, 0)?;
    let mut r = Reader::new(&raw, "log chunk index column");
    let n = (h.entries as usize).min(raw.len());
    let mut out = Vec::with_capacity(n);
    let mut prev = h.min_t;
    for _ in 0..h.entries {
        let ts = prev.wrapping_add(r.varint("timestamp delta")?);
        prev = ts;
        let len = r.len("line length", h.raw_lines as usize)?;
        out.push((ts, len as u32));
    }
    Ok(out)
}

/// Decodes every entry of a chunk.
pub fn decode_chunk(buf: &[u8]) -> Result<Vec<LogEntry>, LogError> {
    let h = read_header(buf)?;
    let index = decode_index_with(buf, &h)?;
    let lines = column(buf, &h, 1)?;
    let meta = column(buf, &h, 2)?;
    let mut mr = Reader::new(&meta, "log chunk metadata column");
    let mut out = Vec::with_capacity(index.len());
    let mut pos = 0usize;
    for (i, (ts, len)) in index.into_iter().enumerate() {
        let end = pos + len as usize;
        let line = lines.get(pos..end).ok_or_else(|| LogError::Corrupt {
            what: "log chunk lines column",
            offset: pos,
            reason: format!("entry {i} line runs past the column"),
        })?;
        pos = end;
        let line = std::str::from_utf8(line).map_err(|_| LogError::Corrupt {
            what: "log chunk lines column",
            offset: pos,
            reason: format!("entry {i} line is not UTF-8"),
        })?;
        let mut metadata = Vec::new();
        if !meta.is_empty() {
            let n = mr.len("pair count", mr.remaining())?;
            for _ in 0..n {
                let name = mr.str("metadata name")?;
                let value = mr.str("metadata value")?;
                metadata.push((name.to_string(), value.to_string()));
            }
        }
        out.push(LogEntry {
            ts,
            line: line.to_string(),
            metadata,
        });
    }
    Ok(out)
}

/// A chunk's bytes, in memory or mapped from a block file.
pub type ChunkBytes = Bytes;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry_strategy() -> impl Strategy<Value = LogEntry> {
        (
            any::<i64>(),
            ".{0,60}",
            proptest::collection::vec(("[a-z_]{1,8}", ".{0,10}"), 0..3),
        )
            .prop_map(|(ts, line, metadata)| LogEntry { ts, line, metadata })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunks_round_trip(mut entries in proptest::collection::vec(entry_strategy(), 1..40)) {
            entries.sort_by_key(|e| e.ts);
            let buf = encode_chunk(&entries).unwrap();
            let h = read_header(&buf).unwrap();
            prop_assert_eq!(h.entries as usize, entries.len());
            let back = decode_chunk(&buf).unwrap();
            let no_meta = entries.iter().all(|e| e.metadata.is_empty());
            for (a, b) in back.iter().zip(&entries) {
                prop_assert_eq!(a.ts, b.ts);
                prop_assert_eq!(&a.line, &b.line);
                if !no_meta {
                    prop_assert_eq!(&a.metadata, &b.metadata);
                }
            }
            prop_assert_eq!(back.len(), entries.len());
            let idx = decode_index(&buf).unwrap();
            prop_assert_eq!(idx.len(), entries.len());
        }

        #[test]
        fn corrupt_chunks_are_errors(flip in any::<usize>(), cut in any::<usize>()) {
            let entries = vec![LogEntry { ts: 5, line: "hello world".into(), metadata: vec![] }];
            let mut buf = encode_chunk(&entries).unwrap();
            let i = flip % buf.len();
            buf[i] ^= 0x40;
            prop_assert!(decode_chunk(&buf).is_err());
            buf[i] ^= 0x40;
            let c = cut % buf.len();
            prop_assert!(decode_chunk(&buf[..c]).is_err());
        }
    }

    #[test]
    fn empty_chunk_is_refused() {
        assert!(encode_chunk(&[]).is_err());
    }
}
