//! On-disk format of WAL segments and checkpoints: file header, batch frames, records, names.
//!
//! This module is pure: it encodes and decodes byte slices and never touches files, so the
//! decoders can be fuzzed (`fuzz/fuzz_targets/wal_read.rs`) and unit-tested byte by byte. The
//! full specification, including recovery rules, is `docs/FORMAT.md` (section "Write-ahead log"); this comment is the
//! summary next to the code.
//!
//! # Why batch frames
//!
//! One `append` call is one *frame*. A frame carries a count, a body length and two CRC32s: one
//! over the frame header, one over the body. Replay accepts a frame whole or not at all, which
//! makes a multi-record append atomic on replay without a commit record. The separate header
//! checksum lets recovery test any byte offset for "is a valid frame starting here?" in constant
//! time, which is how it tells a torn tail (nothing valid follows the damage) from mid-log
//! corruption (valid frames follow). One body CRC per batch rather than per record keeps replay a
//! sequential scan at memory bandwidth.
//!
//! # Byte layout (all integers little-endian)
//!
//! ```text
//! file      := file_header frame*
//!
//! file_header (20 bytes; this layout is frozen for every format version)
//!   0      4  magic        "SWAL" (0x53 0x57 0x41 0x4C) segment, "SWCP" checkpoint
//!   4      2  version      u16, FormatVersion (1)
//!   6      2  reserved     u16, must be 0
//!   8      8  sequence     u64, segment number, or for a checkpoint the last segment it covers
//!   16     4  header_crc   u32, CRC-32 (IEEE) of bytes 0..16
//!
//! frame (16-byte header + body)
//!   0      4  body_len     u32, bytes of body, 5 * count <= body_len <= MAX_FRAME_BODY
//!   4      4  count        u32, records in the body, >= 1
//!   8      4  body_crc     u32, CRC-32 (IEEE) of the body bytes
//!   12     4  head_crc     u32, CRC-32 (IEEE) of frame bytes 0..12
//!   16     *  body         count records, exactly body_len bytes
//!
//! record
//!   0      1  kind         u8, 1..=239 (0 and 240..=255 are reserved and rejected)
//!   1      4  len          u32, payload length
//!   5    len  payload      opaque bytes owned by the caller (the engine)
//! ```
//!
//! The CRC is crc32fast's CRC-32 (IEEE 802.3 polynomial 0x04C11DB7, reflected, init and xorout
//! 0xFFFFFFFF), not CRC-32C.
//!
//! # File names
//!
//! Segments are named by their number, zero-padded to at least 8 decimal digits (`00000001`);
//! checkpoints `checkpoint.<upto, 8+ digits>`; a checkpoint being written
//! `checkpoint.<upto>.tmp`. Numbers are compared numerically, never as strings.
//!
//! # Invariants
//!
//! * Decoders check length, then magic, then checksum, then version, before looking at any
//!   other field; no decoder panics or allocates proportionally to a length read from disk.
//! * A frame returned by [`decode_frame`] has been fully verified: both checksums match and its
//!   records tile the body exactly, so iterating its records cannot fail.
//!
//! # Durability
//!
//! Nothing here does I/O; the writer (`crate::wal`) writes each encoded frame with a single
//! `write` call and syncs according to `SyncMode`, and recovery (`crate::recovery`) decides
//! what to do with frames that fail verification.

use crate::error::{Corruption, WalError};

/// Magic number opening every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"SWAL";
/// Magic number opening every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 4] = *b"SWCP";
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 20;
/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 16;
/// Length of a record header (kind + payload length).
pub const RECORD_HEADER_LEN: usize = 5;
/// Largest frame body accepted by the encoder and the decoder (1 GiB).
pub const MAX_FRAME_BODY: u32 = 1 << 30;
/// First record kind reserved for the WAL's own use (kinds `RESERVED_HIGH..=255` and 0).
pub const RESERVED_HIGH: u8 = 240;

/// Whether `kind` is reserved by the WAL framing (0 and 240..=255) and so cannot be appended.
pub const fn is_reserved_kind(kind: u8) -> bool {
    kind == 0 || kind >= RESERVED_HIGH
}

/// Versions of the WAL file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum FormatVersion {
    /// The first format: the layout in the module docs.
    V1 = 1,
}

impl FormatVersion {
    /// The version this build writes.
    pub const CURRENT: FormatVersion = FormatVersion::V1;
    /// The oldest version this build reads.
    pub const OLDEST_SUPPORTED: FormatVersion = FormatVersion::V1;

    /// Maps a stored version number to a known version.
    pub const fn from_u16(v: u16) -> Option<FormatVersion> {
        match v {
            1 => Some(FormatVersion::V1),
            _ => None,
        }
    }

    /// The stored version number.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }
}

/// The two kinds of WAL file; they differ only in magic number and in what `sequence` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A log segment; `sequence` is its number.
    Segment,
    /// A checkpoint; `sequence` is the last segment it covers.
    Checkpoint,
}

impl FileKind {
    /// Magic number of this kind of file.
    pub const fn magic(self) -> [u8; 4] {
        match self {
            FileKind::Segment => SEGMENT_MAGIC,
            FileKind::Checkpoint => CHECKPOINT_MAGIC,
        }
    }
}

/// Decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Segment or checkpoint.
    pub kind: FileKind,
    /// Format version of the file.
    pub version: FormatVersion,
    /// Segment number, or the last segment a checkpoint covers.
    pub sequence: u64,
}

/// Why a file header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The header is damaged or incomplete.
    Corrupt(Corruption),
    /// The header is intact but names a version this build does not read.
    UnsupportedVersion(u16),
}

impl FileHeader {
    /// A current-version header.
    pub const fn new(kind: FileKind, sequence: u64) -> FileHeader {
        FileHeader {
            kind,
            version: FormatVersion::CURRENT,
            sequence,
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        let (magic, rest) = out.split_at_mut(4);
        magic.copy_from_slice(&self.kind.magic());
        let (version, rest) = rest.split_at_mut(2);
        version.copy_from_slice(&self.version.as_u16().to_le_bytes());
        let (reserved, rest) = rest.split_at_mut(2);
        reserved.copy_from_slice(&0u16.to_le_bytes());
        let (sequence, _crc) = rest.split_at_mut(8);
        sequence.copy_from_slice(&self.sequence.to_le_bytes());
        let crc = crc32fast::hash(out.get(..16).unwrap_or_default());
        if let Some(slot) = out.get_mut(16..20) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Decodes and verifies the header at the start of `bytes` (which may be a whole file).
    ///
    /// Checks, in order: length, magic, checksum, version, reserved field.
    pub fn decode(bytes: &[u8], kind: FileKind) -> Result<FileHeader, HeaderError> {
        let Some(head) = bytes.get(..FILE_HEADER_LEN) else {
            return Err(HeaderError::Corrupt(Corruption::ShortFileHeader {
                needed: FILE_HEADER_LEN,
                available: bytes.len(),
            }));
        };
        let magic = array4(head, 0);
        if magic != kind.magic() {
            return Err(HeaderError::Corrupt(Corruption::BadMagic {
                expected: kind.magic(),
                got: magic,
            }));
        }
        let stored = u32::from_le_bytes(array4(head, 16));
        let computed = crc32fast::hash(head.get(..16).unwrap_or_default());
        if stored != computed {
            return Err(HeaderError::Corrupt(Corruption::FileHeaderChecksum {
                stored,
                computed,
            }));
        }
        let raw_version = u16::from_le_bytes(array2(head, 4));
        let Some(version) = FormatVersion::from_u16(raw_version) else {
            return Err(HeaderError::UnsupportedVersion(raw_version));
        };
        let reserved = u16::from_le_bytes(array2(head, 6));
        if reserved != 0 {
            return Err(HeaderError::Corrupt(Corruption::ReservedBits(reserved)));
        }
        let sequence = u64::from_le_bytes(array8(head, 8));
        Ok(FileHeader {
            kind,
            version,
            sequence,
        })
    }
}

/// One record: a kind byte and an opaque payload, borrowed from a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Record kind, `1..RESERVED_HIGH`.
    pub kind: u8,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// A verified frame: both checksums matched and the records tile the body.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    body: &'a [u8],
    count: u32,
}

impl<'a> Frame<'a> {
    /// Total encoded length of the frame (header + body).
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body.len()
    }

    /// Number of records.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Iterates the records in append order.
    pub fn records(&self) -> Records<'a> {
        Records {
            body: self.body,
            pos: 0,
            left: self.count,
        }
    }
}

/// Iterator over the records of a verified [`Frame`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    body: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.left == 0 {
            return None;
        }
        // The frame was verified by `decode_frame`, so these lookups succeed; if they did not,
        // ending the iteration is the non-panicking answer.
        let (kind, start, end) = record_at(self.body, self.pos)?;
        self.pos = end;
        self.left -= 1;
        Some(RecordRef {
            kind,
            payload: self.body.get(start..end)?,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Locates the record whose header starts at `pos` in `body`: `(kind, payload_start, end)`.
pub(crate) fn record_at(body: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let kind = *body.get(pos)?;
    let len_start = pos.checked_add(1)?;
    let len = u32::from_le_bytes(body.get(len_start..len_start + 4)?.try_into().ok()?);
    let start = pos.checked_add(RECORD_HEADER_LEN)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > body.len() {
        return None;
    }
    Some((kind, start, end))
}

/// Decodes and fully verifies the frame at the start of `buf`; bytes after the frame are ignored.
///
/// Checks, in order: header length, header checksum, plausibility of `body_len`/`count`, body
/// length, body checksum, record layout (every record fits, kinds are not reserved, the records
/// end exactly at the end of the body).
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, Corruption> {
    let Some(head) = buf.get(..FRAME_HEADER_LEN) else {
        return Err(Corruption::ShortFrameHeader {
            available: buf.len(),
        });
    };
    let stored = u32::from_le_bytes(array4(head, 12));
    let computed = crc32fast::hash(head.get(..12).unwrap_or_default());
    if stored != computed {
        return Err(Corruption::FrameHeaderChecksum { stored, computed });
    }
    let body_len = u32::from_le_bytes(array4(head, 0));
    let count = u32::from_le_bytes(array4(head, 4));
    if !plausible(body_len, count) {
        return Err(Corruption::ImplausibleFrame { body_len, count });
    }
    let body_len_usize =
        usize::try_from(body_len).map_err(|_| Corruption::ImplausibleFrame { body_len, count })?;
    let needed = FRAME_HEADER_LEN + body_len_usize;
    let Some(body) = buf.get(FRAME_HEADER_LEN..needed) else {
        return Err(Corruption::ShortFrame {
            needed: needed as u64,
            available: buf.len() as u64,
        });
    };
    let stored = u32::from_le_bytes(array4(head, 8));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(Corruption::FrameChecksum { stored, computed });
    }
    let mut pos = 0usize;
    for record in 0..count {
        let Some((kind, _, end)) = record_at(body, pos) else {
            return Err(Corruption::RecordLayout {
                record,
                detail: "record runs past the frame body",
            });
        };
        if is_reserved_kind(kind) {
            return Err(Corruption::RecordLayout {
                record,
                detail: "reserved record kind",
            });
        }
        pos = end;
    }
    if pos != body.len() {
        return Err(Corruption::RecordLayout {
            record: count,
            detail: "bytes left in the frame body after the last record",
        });
    }
    Ok(Frame { body, count })
}

/// Whether a frame header's fields describe a frame the encoder could have written.
fn plausible(body_len: u32, count: u32) -> bool {
    count >= 1
        && body_len <= MAX_FRAME_BODY
        && u64::from(count) * RECORD_HEADER_LEN as u64 <= u64::from(body_len)
}

/// Builds one frame from records pushed one at a time, reusing its buffer between frames.
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder::new()
    }
}

impl FrameEncoder {
    /// An empty encoder.
    pub fn new() -> FrameEncoder {
        FrameEncoder {
            buf: vec![0; FRAME_HEADER_LEN],
            count: 0,
        }
    }

    /// Forgets the records pushed so far, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(FRAME_HEADER_LEN, 0);
        self.count = 0;
    }

    /// Records pushed since the last clear.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Body bytes pushed since the last clear.
    pub fn body_len(&self) -> usize {
        self.buf.len() - FRAME_HEADER_LEN
    }

    /// Bytes the allocation can hold.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends one record. On error the encoder is unchanged.
    pub fn push(&mut self, kind: u8, payload: &[u8]) -> Result<(), WalError> {
        let index = usize::try_from(self.count).unwrap_or(usize::MAX);
        if is_reserved_kind(kind) {
            return Err(WalError::InvalidRecord {
                index,
                kind,
                reason: "kinds 0 and 240..=255 are reserved by the WAL",
            });
        }
        let new_body = (self.body_len() as u64)
            .saturating_add(RECORD_HEADER_LEN as u64)
            .saturating_add(payload.len() as u64);
        if new_body > u64::from(MAX_FRAME_BODY) {
            return Err(WalError::BatchTooLarge {
                bytes: new_body,
                max: u64::from(MAX_FRAME_BODY),
            });
        }
        // new_body <= MAX_FRAME_BODY < u32::MAX, so the payload length fits in u32 and the
        // count cannot overflow (each record takes at least 5 body bytes).
        let len = u32::try_from(payload.len()).map_err(|_| WalError::BatchTooLarge {
            bytes: new_body,
            max: u64::from(MAX_FRAME_BODY),
        })?;
        self.buf.push(kind);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
        Ok(())
    }

    /// Completes the frame and returns its bytes, or `None` when no record was pushed.
    ///
    /// Calling `finish` again without pushing returns the same bytes.
    pub fn finish(&mut self) -> Option<&[u8]> {
        if self.count == 0 {
            return None;
        }
        let body_len = u32::try_from(self.body_len()).ok()?;
        let body_crc = crc32fast::hash(self.buf.get(FRAME_HEADER_LEN..)?);
        let mut head = [0u8; FRAME_HEADER_LEN];
        head.get_mut(0..4)?.copy_from_slice(&body_len.to_le_bytes());
        head.get_mut(4..8)?
            .copy_from_slice(&self.count.to_le_bytes());
        head.get_mut(8..12)?
            .copy_from_slice(&body_crc.to_le_bytes());
        let head_crc = crc32fast::hash(head.get(..12)?);
        head.get_mut(12..16)?
            .copy_from_slice(&head_crc.to_le_bytes());
        self.buf.get_mut(..FRAME_HEADER_LEN)?.copy_from_slice(&head);
        Some(&self.buf)
    }
}

/// Result of scanning the frames of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameScan {
    /// Offset just past the last frame that verified (the valid length of the file).
    pub valid_len: usize,
    /// Frames that verified.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// The first frame that failed: its offset and why. `None` when the file ends cleanly.
    pub damage: Option<(usize, Corruption)>,
}

/// Verifies frames from `start` until the end of `bytes` or the first frame that fails.
pub fn scan_frames(bytes: &[u8], start: usize) -> FrameScan {
    let mut pos = start;
    let mut batches = 0u64;
    let mut records = 0u64;
    let mut damage = None;
    while let Some(rest) = bytes.get(pos..) {
        if rest.is_empty() {
            break;
        }
        match decode_frame(rest) {
            Ok(frame) => {
                batches += 1;
                records += u64::from(frame.count());
                pos += frame.encoded_len();
            }
            Err(reason) => {
                damage = Some((pos, reason));
                break;
            }
        }
    }
    FrameScan {
        valid_len: pos.min(bytes.len()),
        batches,
        records,
        damage,
    }
}

/// The first offset `>= from` at which a complete, fully verified frame starts, if any.
///
/// Cheap per offset: the plausibility of the header fields and the header checksum are tested
/// before the body checksum, so scanning garbage costs a few nanoseconds per byte.
pub fn find_valid_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(FRAME_HEADER_LEN)?;
    (from..=last).find(|&off| {
        let Some(head) = bytes.get(off..off + FRAME_HEADER_LEN) else {
            return false;
        };
        let body_len = u32::from_le_bytes(array4(head, 0));
        let count = u32::from_le_bytes(array4(head, 4));
        if !plausible(body_len, count) {
            return false;
        }
        let fits = usize::try_from(body_len)
            .ok()
            .and_then(|b| off.checked_add(FRAME_HEADER_LEN)?.checked_add(b))
            .is_some_and(|end| end <= bytes.len());
        fits && bytes
            .get(off..)
            .is_some_and(|rest| decode_frame(rest).is_ok())
    })
}

/// Counts the frames and records that still verify from `from` on, resynchronising past damage.
///
/// Used to tell the operator how much intact data a repair dropped; it is a lower bound, since
/// the records of damaged frames cannot be counted.
pub fn count_intact(bytes: &[u8], from: usize) -> (u64, u64) {
    let mut pos = from;
    let (mut batches, mut records) = (0u64, 0u64);
    while let Some(rest) = bytes.get(pos..) {
        if rest.is_empty() {
            break;
        }
        match decode_frame(rest) {
            Ok(frame) => {
                batches += 1;
                records += u64::from(frame.count());
                pos += frame.encoded_len();
            }
            Err(_) => match find_valid_frame(bytes, pos + 1) {
                Some(next) => pos = next,
                None => break,
            },
        }
    }
    (batches, records)
}

/// A WAL directory entry recognised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileName {
    /// `NNNNNNNN`: a segment.
    Segment(u64),
    /// `checkpoint.NNNNNNNN`: a checkpoint covering segments up to the number.
    Checkpoint(u64),
    /// `checkpoint.NNNNNNNN.tmp`: a checkpoint that was being written.
    CheckpointTemp(u64),
}

/// Name of segment `n`.
pub fn segment_file_name(n: u64) -> String {
    format!("{n:08}")
}

/// Name of the checkpoint covering segments up to `upto`.
pub fn checkpoint_file_name(upto: u64) -> String {
    format!("checkpoint.{upto:08}")
}

/// Name of the checkpoint covering segments up to `upto` while it is being written.
pub fn checkpoint_temp_file_name(upto: u64) -> String {
    format!("checkpoint.{upto:08}.tmp")
}

/// Recognises WAL file names; anything else (including the `LOCK` file) is `None`.
pub fn parse_file_name(name: &str) -> Option<FileName> {
    if let Some(rest) = name.strip_prefix("checkpoint.") {
        if let Some(num) = rest.strip_suffix(".tmp") {
            return parse_number(num).map(FileName::CheckpointTemp);
        }
        return parse_number(rest).map(FileName::Checkpoint);
    }
    parse_number(name).map(FileName::Segment)
}

/// Parses a number written with at least 8 decimal digits and nothing else.
fn parse_number(s: &str) -> Option<u64> {
    if s.len() < 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn array2(bytes: &[u8], at: usize) -> [u8; 2] {
    bytes
        .get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}

fn array4(bytes: &[u8], at: usize) -> [u8; 4] {
    bytes
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}

fn array8(bytes: &[u8], at: usize) -> [u8; 8] {
    bytes
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_of(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut enc = FrameEncoder::new();
        for (kind, payload) in records {
            enc.push(*kind, payload).unwrap();
        }
        enc.finish().unwrap().to_vec()
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = FileHeader::new(FileKind::Segment, 0x0102_0304_0506_0708);
        let bytes = h.encode();
        assert_eq!(&bytes[0..4], b"SWAL");
        assert_eq!(&bytes[4..6], &[1, 0]);
        assert_eq!(&bytes[6..8], &[0, 0]);
        assert_eq!(&bytes[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(FileHeader::decode(&bytes, FileKind::Segment), Ok(h));
        let c = FileHeader::new(FileKind::Checkpoint, 7);
        assert_eq!(&c.encode()[0..4], b"SWCP");
    }

    #[test]
    fn header_errors_are_typed() {
        let bytes = FileHeader::new(FileKind::Segment, 3).encode();
        assert_eq!(
            FileHeader::decode(&bytes[..19], FileKind::Segment),
            Err(HeaderError::Corrupt(Corruption::ShortFileHeader {
                needed: 20,
                available: 19
            }))
        );
        assert!(matches!(
            FileHeader::decode(&bytes, FileKind::Checkpoint),
            Err(HeaderError::Corrupt(Corruption::BadMagic { expected, got }))
                if expected == CHECKPOINT_MAGIC && got == SEGMENT_MAGIC
        ));
        let mut flipped = bytes;
        flipped[9] ^= 0x40;
        assert!(matches!(
            FileHeader::decode(&flipped, FileKind::Segment),
            Err(HeaderError::Corrupt(Corruption::FileHeaderChecksum { .. }))
        ));
        // A future version with a valid checksum is reported as such, not as corruption.
        let mut future = bytes;
        future[4..6].copy_from_slice(&9u16.to_le_bytes());
        let crc = crc32fast::hash(&future[..16]);
        future[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            FileHeader::decode(&future, FileKind::Segment),
            Err(HeaderError::UnsupportedVersion(9))
        );
        let mut reserved = bytes;
        reserved[6] = 1;
        let crc = crc32fast::hash(&reserved[..16]);
        reserved[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            FileHeader::decode(&reserved, FileKind::Segment),
            Err(HeaderError::Corrupt(Corruption::ReservedBits(1)))
        );
    }

    #[test]
    fn format_version_consts() {
        assert_eq!(FormatVersion::CURRENT.as_u16(), 1);
        assert!(FormatVersion::OLDEST_SUPPORTED <= FormatVersion::CURRENT);
        assert_eq!(FormatVersion::from_u16(1), Some(FormatVersion::V1));
        assert_eq!(FormatVersion::from_u16(0), None);
        assert_eq!(FormatVersion::from_u16(2), None);
    }

    #[test]
    fn frame_layout_is_as_documented() {
        let frame = frame_of(&[(1, b"ab"), (2, b"")]);
        assert_eq!(frame.len(), 16 + 5 + 2 + 5);
        assert_eq!(&frame[0..4], &12u32.to_le_bytes());
        assert_eq!(&frame[4..8], &2u32.to_le_bytes());
        assert_eq!(&frame[8..12], &crc32fast::hash(&frame[16..]).to_le_bytes());
        assert_eq!(&frame[12..16], &crc32fast::hash(&frame[..12]).to_le_bytes());
        assert_eq!(&frame[16..23], &[1, 2, 0, 0, 0, b'a', b'b']);
        assert_eq!(&frame[23..28], &[2, 0, 0, 0, 0]);
    }

    #[test]
    fn encoder_rejects_reserved_kinds_and_stays_usable() {
        let mut enc = FrameEncoder::new();
        enc.push(1, b"x").unwrap();
        for kind in [0u8, 240, 255] {
            assert!(matches!(
                enc.push(kind, b"y"),
                Err(WalError::InvalidRecord { index: 1, kind: k, .. }) if k == kind
            ));
        }
        assert_eq!(enc.count(), 1);
        let frame = enc.finish().unwrap().to_vec();
        let decoded = decode_frame(&frame).unwrap();
        assert_eq!(
            decoded.records().collect::<Vec<_>>(),
            vec![RecordRef {
                kind: 1,
                payload: b"x"
            }]
        );
        assert!(FrameEncoder::new().finish().is_none());
    }

    #[test]
    fn decode_frame_reports_each_failure() {
        let frame = frame_of(&[(3, b"hello")]);
        assert_eq!(
            decode_frame(&frame[..10]).unwrap_err(),
            Corruption::ShortFrameHeader { available: 10 }
        );
        assert_eq!(
            decode_frame(&frame[..frame.len() - 1]).unwrap_err(),
            Corruption::ShortFrame {
                needed: frame.len() as u64,
                available: frame.len() as u64 - 1
            }
        );
        let mut bad_body = frame.clone();
        *bad_body.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode_frame(&bad_body),
            Err(Corruption::FrameChecksum { .. })
        ));
        let mut bad_head = frame.clone();
        bad_head[4] ^= 1;
        assert!(matches!(
            decode_frame(&bad_head),
            Err(Corruption::FrameHeaderChecksum { .. })
        ));
        // A frame whose checksums are right but whose records do not tile the body.
        let mut forged = frame.clone();
        forged[16 + 1..16 + 5].copy_from_slice(&4u32.to_le_bytes());
        let body_crc = crc32fast::hash(&forged[16..]);
        forged[8..12].copy_from_slice(&body_crc.to_le_bytes());
        let head_crc = crc32fast::hash(&forged[..12]);
        forged[12..16].copy_from_slice(&head_crc.to_le_bytes());
        assert!(matches!(
            decode_frame(&forged),
            Err(Corruption::RecordLayout { record: 1, .. })
        ));
        let zeros = [0u8; 32];
        assert!(matches!(
            decode_frame(&zeros),
            Err(Corruption::FrameHeaderChecksum { .. })
        ));
    }

    #[test]
    fn find_valid_frame_skips_garbage() {
        let frame = frame_of(&[(5, b"payload")]);
        let mut bytes = vec![0xAAu8; 37];
        bytes.extend_from_slice(&frame);
        assert_eq!(find_valid_frame(&bytes, 0), Some(37));
        assert_eq!(find_valid_frame(&bytes, 38), None);
        assert_eq!(find_valid_frame(&bytes[..bytes.len() - 1], 0), None);
        assert_eq!(count_intact(&bytes, 0), (1, 1));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(segment_file_name(1), "00000001");
        assert_eq!(parse_file_name("00000001"), Some(FileName::Segment(1)));
        assert_eq!(
            parse_file_name("123456789"),
            Some(FileName::Segment(123_456_789))
        );
        assert_eq!(
            parse_file_name(&checkpoint_file_name(12)),
            Some(FileName::Checkpoint(12))
        );
        assert_eq!(
            parse_file_name(&checkpoint_temp_file_name(12)),
            Some(FileName::CheckpointTemp(12))
        );
        for other in [
            "LOCK",
            "0001",
            "0000000a",
            "checkpoint.1",
            "x00000001",
            "",
            "checkpoint.",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn frame_round_trip(records in proptest::collection::vec(
            (1u8..RESERVED_HIGH, proptest::collection::vec(any::<u8>(), 0..200)), 1..20)
        ) {
            let refs: Vec<(u8, &[u8])> = records.iter().map(|(k, p)| (*k, p.as_slice())).collect();
            let bytes = frame_of(&refs);
            let frame = decode_frame(&bytes).unwrap();
            prop_assert_eq!(frame.encoded_len(), bytes.len());
            let got: Vec<(u8, Vec<u8>)> =
                frame.records().map(|r| (r.kind, r.payload.to_vec())).collect();
            prop_assert_eq!(got, records);
        }

        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = FileHeader::decode(&bytes, FileKind::Segment);
            if let Ok(frame) = decode_frame(&bytes) {
                prop_assert_eq!(frame.records().count() as u32, frame.count());
            }
            let scan = scan_frames(&bytes, 0);
            prop_assert!(scan.valid_len <= bytes.len());
            let _ = count_intact(&bytes, 0);
        }

        #[test]
        fn every_single_bit_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 1..64),
            bit in 0usize..(8 * (16 + 5 + 64)),
        ) {
            let bytes = frame_of(&[(7, &payload)]);
            let bit = bit % (8 * bytes.len());
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_frame(&flipped).is_err());
        }
    }
}
