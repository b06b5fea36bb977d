//! Chunk segment files: the encoded chunks of a block, back to back.
//!
//! Chunks are opaque bytes here (their encodings live in `crate::chunk`); this module frames
//! them so each can be found from a 64-bit reference and verified on its own: a query that reads
//! one chunk checks one CRC, not a whole file. Segments rotate at a size limit (512 MiB by
//! default) so files stay manageable for copying and object storage, and so a chunk offset fits
//! in 32 bits.
//!
//! # Invariants
//!
//! - A chunk reference is `segment << 32 | offset`: `segment` is the 1-based number in the file
//!   name (`chunks/000001` is segment 1), `offset` the position of the chunk's length varint.
//!   Reference 0 is never valid.
//! - The chunks of one series are written consecutively in time order, so their references
//!   increase; the index delta-codes them on that basis.
//! - The encoding byte is stored in the frame and in the index; they must agree.
//!
//! # Durability
//!
//! Segments are written through a buffer, fsynced when rotated and at
//! [`SegmentWriter::finish`], together with the `chunks/` directory, before the block's temp
//! directory is renamed into place.
//!
//! ```text
//! segment file:
//!   offset 0  magic "STCK" (53 54 43 4B)
//!          4  version u8 = 1
//!          5  chunk, chunk, …   (no padding, no trailer)
//! chunk:
//!   len       uvarint      number of data bytes
//!   encoding  u8           chunk encoding tag (crate::chunk::Encoding)
//!   data      len bytes    encoded samples
//!   crc       u32 LE       crc32 of encoding byte ‖ data
//! ```

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::varint::{Reader, put_uvarint, uvarint_len};
use super::{BlockError, HEADER_LEN, Result, check_header, fsutil, put_header};

/// Default size at which a chunk segment is closed and the next one started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 << 20;

const MAGIC: [u8; 4] = *b"STCK";

/// Builds a chunk reference from a segment number and an offset in it.
pub fn chunk_ref(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// Splits a chunk reference into segment number and offset.
pub fn chunk_ref_parts(r: u64) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// File name of segment `n` (`000001` …).
pub(crate) fn segment_file_name(n: u32) -> String {
    format!("{n:06}")
}

/// Bytes a chunk of `data_len` bytes takes in a segment.
pub(crate) fn framed_len(data_len: usize) -> u64 {
    (uvarint_len(data_len as u64) + 1 + data_len + 4) as u64
}

struct OpenSegment {
    number: u32,
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
}

/// Appends chunks to the segment files of a block being written.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    max_size: u64,
    current: Option<OpenSegment>,
    segments: u32,
    bytes: u64,
}

impl SegmentWriter {
    /// Writes segments into `dir` (which must exist), rotating at `max_size` bytes.
    pub(crate) fn new(dir: PathBuf, max_size: u64) -> Self {
        SegmentWriter {
            dir,
            max_size: max_size.clamp(HEADER_LEN as u64 + 1, u64::from(u32::MAX)),
            current: None,
            segments: 0,
            bytes: 0,
        }
    }

    /// Total bytes written to all segments so far.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Appends one chunk and returns its reference.
    pub(crate) fn write_chunk(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        if data.len() as u64 > u64::from(u32::MAX) - 16 {
            return Err(BlockError::TooLarge {
                what: "chunk data length",
                limit: u64::from(u32::MAX) - 16,
            });
        }
        let framed = framed_len(data.len());
        let rotate = match &self.current {
            None => true,
            Some(s) => {
                s.offset > HEADER_LEN as u64
                    && (s.offset + framed > self.max_size || s.offset > u64::from(u32::MAX))
            }
        };
        if rotate {
            self.rotate()?;
        }
        let seg = self.current.as_mut().ok_or(BlockError::Poisoned)?;
        let offset = u32::try_from(seg.offset).map_err(|_| BlockError::TooLarge {
            what: "chunk segment offset",
            limit: u64::from(u32::MAX),
        })?;
        let mut head = Vec::with_capacity(11);
        put_uvarint(&mut head, data.len() as u64);
        head.push(encoding);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[encoding]);
        crc.update(data);
        let crc = crc.finalize().to_le_bytes();
        seg.out
            .write_all(&head)
            .and_then(|()| seg.out.write_all(data))
            .and_then(|()| seg.out.write_all(&crc))
            .map_err(|e| BlockError::io("write chunk segment", &seg.path, e))?;
        seg.offset += framed;
        self.bytes += framed;
        Ok(chunk_ref(seg.number, offset))
    }

    /// Closes the current segment (flush + fsync) and opens the next.
    fn rotate(&mut self) -> Result<()> {
        self.close_current()?;
        let number = self.segments.checked_add(1).ok_or(BlockError::TooLarge {
            what: "number of chunk segments",
            limit: u64::from(u32::MAX),
        })?;
        let path = self.dir.join(segment_file_name(number));
        let file = File::create_new(&path)
            .map_err(|e| BlockError::io("create chunk segment", &path, e))?;
        let mut out = BufWriter::with_capacity(1 << 18, file);
        let mut header = Vec::with_capacity(HEADER_LEN);
        put_header(&mut header, MAGIC);
        out.write_all(&header)
            .map_err(|e| BlockError::io("write chunk segment", &path, e))?;
        self.segments = number;
        self.bytes += HEADER_LEN as u64;
        self.current = Some(OpenSegment {
            number,
            path,
            out,
            offset: HEADER_LEN as u64,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(seg) = self.current.take() {
            let OpenSegment { path, out, .. } = seg;
            let file = out
                .into_inner()
                .map_err(|e| BlockError::io("flush chunk segment", &path, e.into_error()))?;
            file.sync_all()
                .map_err(|e| BlockError::io("fsync chunk segment", &path, e))?;
        }
        Ok(())
    }

    /// Flushes and fsyncs the last segment and the segment directory.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.close_current()?;
        fsutil::sync_dir(&self.dir)
    }
}

struct Segment {
    path: PathBuf,
    bytes: Bytes,
}

/// The memory-mapped chunk segments of an open block.
pub(crate) struct Segments {
    dir: PathBuf,
    files: Vec<Segment>,
}

impl Segments {
    /// Maps every segment in `dir` and checks its header. Segment numbers must run from 1
    /// without gaps; files whose names are not all digits are ignored with a warning.
    pub(crate) fn open(dir: &Path) -> Result<Segments> {
        let entries =
            fs::read_dir(dir).map_err(|e| BlockError::io("list chunk segments", dir, e))?;
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| BlockError::io("list chunk segments", dir, e))?;
            let name = entry.file_name();
            let parsed = name
                .to_str()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok());
            match parsed {
                Some(n) => numbers.push(n),
                None => {
                    tracing::warn!(path = %entry.path().display(), "ignoring unexpected file in chunks directory")
                }
            }
        }
        numbers.sort_unstable();
        let mut files = Vec::with_capacity(numbers.len());
        for (i, &n) in numbers.iter().enumerate() {
            if u32::try_from(i + 1).ok() != Some(n) {
                return Err(BlockError::Corrupt {
                    file: dir.to_path_buf(),
                    section: "chunk segment list",
                    offset: 0,
                    reason: format!(
                        "expected segment {}, found {n} (segments must be numbered 1, 2, … without gaps)",
                        i + 1
                    ),
                });
            }
            let path = dir.join(segment_file_name(n));
            let bytes = fsutil::map_file(&path)?;
            check_header(&path, &bytes, MAGIC)?;
            files.push(Segment { path, bytes });
        }
        Ok(Segments {
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// Number of segments.
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// Returns the data of the chunk at `chunk_ref` after checking its frame, CRC and that its
    /// encoding byte is `encoding`. The bytes are a view into the mapping (no copy).
    pub(crate) fn chunk(&self, chunk_ref: u64, encoding: u8) -> Result<Bytes> {
        let (number, offset) = chunk_ref_parts(chunk_ref);
        let seg = number
            .checked_sub(1)
            .and_then(|i| self.files.get(i as usize))
            .ok_or_else(|| BlockError::ChunkCorrupt {
                file: self.dir.clone(),
                chunk_ref,
                reason: format!(
                    "segment {number} does not exist (block has {} segments)",
                    self.files.len()
                ),
            })?;
        let corrupt = |reason: String| BlockError::ChunkCorrupt {
            file: seg.path.clone(),
            chunk_ref,
            reason,
        };
        let seg_len = seg.bytes.len() as u64;
        let start = offset as usize;
        if start < HEADER_LEN {
            return Err(corrupt(format!(
                "offset {offset} is inside the segment header"
            )));
        }
        let truncated = |need: u64| BlockError::ChunkTruncated {
            file: seg.path.clone(),
            chunk_ref,
            need,
            segment_len: seg_len,
        };
        let rest = seg
            .bytes
            .get(start..)
            .ok_or_else(|| truncated(u64::from(offset) + 1))?;
        let mut r = Reader::new(rest);
        let len = r.uvarint().map_err(|e| match e {
            super::varint::DecodeError::Eof { pos, .. } => {
                truncated(u64::from(offset) + pos as u64 + 1)
            }
            super::varint::DecodeError::Overflow { .. } => {
                corrupt("length varint overflows".to_string())
            }
        })?;
        let head = r.pos();
        // Frame end relative to `start`: varint, encoding byte, data, crc.
        let frame_end = (head as u64)
            .checked_add(1)
            .and_then(|v| v.checked_add(len))
            .and_then(|v| v.checked_add(4))
            .ok_or_else(|| corrupt(format!("length {len} overflows")))?;
        if frame_end > rest.len() as u64 {
            return Err(truncated(u64::from(offset).saturating_add(frame_end)));
        }
        let enc = r
            .u8()
            .map_err(|_| truncated(u64::from(offset) + frame_end))?;
        let data_start = r.pos();
        let data = r
            .bytes(len as usize)
            .map_err(|_| truncated(u64::from(offset) + frame_end))?;
        let stored = r
            .u32_le()
            .map_err(|_| truncated(u64::from(offset) + frame_end))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[enc]);
        crc.update(data);
        let computed = crc.finalize();
        if stored != computed {
            return Err(BlockError::ChunkChecksum {
                file: seg.path.clone(),
                chunk_ref,
                expected: stored,
                got: computed,
            });
        }
        if enc != encoding {
            return Err(corrupt(format!(
                "encoding byte {enc} does not match the index's {encoding}"
            )));
        }
        let abs = start + data_start;
        Ok(seg.bytes.slice(abs..abs + data.len()))
    }

    /// Total bytes of all segments.
    pub(crate) fn total_len(&self) -> u64 {
        self.files.iter().map(|s| s.bytes.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, max: u64, chunks: &[(u8, Vec<u8>)]) -> Vec<u64> {
        let mut w = SegmentWriter::new(dir.to_path_buf(), max);
        let refs = chunks
            .iter()
            .map(|(e, d)| w.write_chunk(*e, d).unwrap())
            .collect();
        w.finish().unwrap();
        refs
    }

    #[test]
    fn frame_bytes_are_as_specified() {
        let dir = tempfile::tempdir().unwrap();
        let refs = write(dir.path(), DEFAULT_SEGMENT_SIZE, &[(7, vec![0xaa, 0xbb])]);
        assert_eq!(refs, [chunk_ref(1, 5)]);
        let bytes = fs::read(dir.path().join("000001")).unwrap();
        let crc = crc32fast::hash(&[7, 0xaa, 0xbb]).to_le_bytes();
        let mut want = b"STCK\x01\x02\x07\xaa\xbb".to_vec();
        want.extend_from_slice(&crc);
        assert_eq!(bytes, want);
        assert_eq!(framed_len(2), 8);
    }

    #[test]
    fn rotation_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<(u8, Vec<u8>)> = (0..50u8)
            .map(|i| (i % 3, vec![i; 40 + usize::from(i)]))
            .collect();
        let refs = write(dir.path(), 300, &chunks);
        let segs = Segments::open(dir.path()).unwrap();
        assert!(segs.len() > 5, "{} segments", segs.len());
        for ((enc, data), r) in chunks.iter().zip(&refs) {
            assert_eq!(&segs.chunk(*r, *enc).unwrap()[..], &data[..]);
        }
        // A chunk bigger than the limit gets a segment of its own.
        let dir2 = tempfile::tempdir().unwrap();
        let refs = write(
            dir2.path(),
            64,
            &[(1, vec![1; 10]), (1, vec![2; 200]), (1, vec![3; 10])],
        );
        let parts: Vec<u32> = refs.iter().map(|&r| chunk_ref_parts(r).0).collect();
        assert_eq!(parts, [1, 2, 3]);
    }

    #[test]
    fn bad_refs_and_encoding_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let refs = write(dir.path(), DEFAULT_SEGMENT_SIZE, &[(1, vec![9; 30])]);
        let segs = Segments::open(dir.path()).unwrap();
        let err = segs.chunk(refs[0], 2).unwrap_err();
        assert!(matches!(err, BlockError::ChunkCorrupt { .. }), "{err}");
        let err = segs.chunk(chunk_ref(2, 5), 1).unwrap_err();
        assert!(matches!(err, BlockError::ChunkCorrupt { .. }), "{err}");
        let err = segs.chunk(0, 1).unwrap_err();
        assert!(matches!(err, BlockError::ChunkCorrupt { .. }), "{err}");
        let err = segs.chunk(chunk_ref(1, 2), 1).unwrap_err();
        assert!(matches!(err, BlockError::ChunkCorrupt { .. }), "{err}");
        let err = segs.chunk(chunk_ref(1, 1000), 1).unwrap_err();
        assert!(matches!(err, BlockError::ChunkTruncated { .. }), "{err}");
    }

    #[test]
    fn truncation_and_flips() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![5u8; 200];
        let refs = write(dir.path(), DEFAULT_SEGMENT_SIZE, &[(1, data.clone())]);
        let path = dir.path().join("000001");
        let good = fs::read(&path).unwrap();
        for cut in HEADER_LEN..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            let segs = Segments::open(dir.path()).unwrap();
            let err = segs.chunk(refs[0], 1).unwrap_err();
            assert!(
                matches!(err, BlockError::ChunkTruncated { chunk_ref, .. } if chunk_ref == refs[0]),
                "cut {cut}: {err}"
            );
            assert!(err.to_string().contains("000001"), "{err}");
        }
        for i in [7usize, 100, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 1;
            fs::write(&path, &bad).unwrap();
            let segs = Segments::open(dir.path()).unwrap();
            let err = segs.chunk(refs[0], 1).unwrap_err();
            assert!(
                matches!(err, BlockError::ChunkChecksum { .. }),
                "byte {i}: {err}"
            );
        }
        let mut bad = good.clone();
        bad[1] = b'X';
        fs::write(&path, &bad).unwrap();
        assert!(matches!(
            Segments::open(dir.path()).err().unwrap(),
            BlockError::BadMagic { .. }
        ));
        fs::write(&path, &good[..3]).unwrap();
        assert!(matches!(
            Segments::open(dir.path()).err().unwrap(),
            BlockError::Truncated {
                section: "header",
                ..
            }
        ));
    }

    #[test]
    fn gaps_in_segment_numbers_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 64, &[(1, vec![1; 60]), (1, vec![2; 60])]);
        fs::remove_file(dir.path().join("000001")).unwrap();
        let err = Segments::open(dir.path()).err().unwrap();
        assert!(
            matches!(
                err,
                BlockError::Corrupt {
                    section: "chunk segment list",
                    ..
                }
            ),
            "{err}"
        );
    }
}
