//! Tombstones: deleted time intervals per series of a block.
//!
//! Blocks are immutable, so deleting samples does not rewrite chunks: the delete API records
//! `[mint, maxt]` intervals per series id in the block's `tombstones` file, queries skip the
//! samples inside them, and compaction drops them for good. The writer creates an empty file so
//! that every block has one and a missing file means damage, not "nothing deleted".
//!
//! # Invariants
//!
//! Per series, intervals are sorted, non-overlapping and non-adjacent (adding an interval merges
//! it with any it overlaps or touches); bounds are inclusive milliseconds. Series ids are those
//! of the block's index and are checked against it when the block is opened.
//!
//! # Durability
//!
//! [`write_tombstones`] replaces the file atomically (temp file, fsync, rename, fsync dir), so
//! readers see the old or the new set, never a mix. The file is small and read fully at open.
//!
//! ```text
//! offset 0  magic "STTB" (53 54 54 42)
//!        4  version u8 = 1
//!        5  body:
//!             num_series uvarint
//!             per series, ascending id:
//!               id_gap uvarint          first: id; then id - prev_id - 1
//!               num_intervals uvarint   >= 1
//!               first interval: mint varint (zigzag), maxt - mint uvarint
//!               next intervals: mint - prev_maxt - 1 uvarint, maxt - mint uvarint
//!   len - 4 crc32(body) u32 LE
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::varint::{DecodeError, Reader, put_uvarint, put_varint};
use super::{BlockError, HEADER_LEN, Result, check_header, fsutil, put_header};

/// Name of the tombstones file inside a block directory.
pub const TOMBSTONES_FILE: &str = "tombstones";

const MAGIC: [u8; 4] = *b"STTB";

/// Deleted intervals per series id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tombstones {
    series: BTreeMap<u32, Vec<(i64, i64)>>,
}

impl Tombstones {
    /// An empty set.
    pub fn new() -> Self {
        Tombstones::default()
    }

    /// Marks `[mint, maxt]` (inclusive) of `series` deleted, merging with overlapping or
    /// adjacent intervals. An empty interval (`mint > maxt`) is ignored.
    pub fn add(&mut self, series: u32, mint: i64, maxt: i64) {
        if mint > maxt {
            return;
        }
        let v = self.series.entry(series).or_default();
        v.push((mint, maxt));
        v.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(v.len());
        for &(a, b) in v.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *v = merged;
    }

    /// The deleted intervals of `series`, sorted; empty if none.
    pub fn intervals(&self, series: u32) -> &[(i64, i64)] {
        self.series.get(&series).map_or(&[], Vec::as_slice)
    }

    /// True if sample time `t` of `series` is deleted.
    pub fn is_deleted(&self, series: u32, t: i64) -> bool {
        let iv = self.intervals(series);
        let i = iv.partition_point(|&(_, maxt)| maxt < t);
        iv.get(i).is_some_and(|&(mint, _)| mint <= t)
    }

    /// True if nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of series with deleted intervals.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Iterates over `(series id, intervals)` in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[(i64, i64)])> + '_ {
        self.series.iter().map(|(&id, v)| (id, v.as_slice()))
    }

    /// Highest series id with tombstones.
    pub(crate) fn max_series(&self) -> Option<u32> {
        self.series.keys().next_back().copied()
    }

    /// Encodes the whole file (header, body, CRC).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, MAGIC);
        let mut prev_id: Option<u32> = None;
        put_uvarint(&mut out, self.series.len() as u64);
        for (&id, intervals) in &self.series {
            let gap = match prev_id {
                None => u64::from(id),
                Some(p) => u64::from(id - p - 1),
            };
            prev_id = Some(id);
            put_uvarint(&mut out, gap);
            put_uvarint(&mut out, intervals.len() as u64);
            let mut prev_maxt: Option<i64> = None;
            for &(mint, maxt) in intervals {
                match prev_maxt {
                    None => put_varint(&mut out, mint),
                    Some(p) => put_uvarint(&mut out, (i128::from(mint) - i128::from(p) - 1) as u64),
                }
                put_uvarint(&mut out, (i128::from(maxt) - i128::from(mint)) as u64);
                prev_maxt = Some(maxt);
            }
        }
        let crc = crc32fast::hash(out.get(HEADER_LEN..).unwrap_or_default());
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a whole tombstones file; `file` names it in errors.
    pub(crate) fn decode(bytes: &[u8], file: &Path) -> Result<Tombstones> {
        check_header(file, bytes, MAGIC)?;
        let min_len = HEADER_LEN + 4;
        let body_end = bytes
            .len()
            .checked_sub(4)
            .filter(|&e| e >= HEADER_LEN)
            .ok_or_else(|| BlockError::Truncated {
                file: file.to_path_buf(),
                section: "tombstones body",
                expected: min_len as u64,
                got: bytes.len() as u64,
            })?;
        let body = bytes.get(HEADER_LEN..body_end).unwrap_or_default();
        let stored = bytes
            .get(body_end..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .unwrap_or_default();
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(BlockError::Checksum {
                file: file.to_path_buf(),
                section: "tombstones body",
                offset: HEADER_LEN as u64,
                expected: stored,
                got: computed,
            });
        }
        decode_body(body).map_err(|(pos, reason)| BlockError::Corrupt {
            file: file.to_path_buf(),
            section: "tombstones body",
            offset: (HEADER_LEN + pos) as u64,
            reason,
        })
    }
}

/// Decodes the checksummed body; errors carry the body-relative position.
fn decode_body(body: &[u8]) -> std::result::Result<Tombstones, (usize, String)> {
    let de = |e: DecodeError| (e.pos(), e.to_string());
    let mut r = Reader::new(body);
    let n = r.uvarint().map_err(de)?;
    let mut series = BTreeMap::new();
    let mut prev_id: Option<u32> = None;
    for _ in 0..n {
        let at = r.pos();
        let gap = r.uvarint().map_err(de)?;
        let id = match prev_id {
            None => Some(gap),
            Some(p) => u64::from(p).checked_add(gap).and_then(|v| v.checked_add(1)),
        }
        .and_then(|v| u32::try_from(v).ok())
        .ok_or((at, "series id overflows u32".to_string()))?;
        prev_id = Some(id);
        let at = r.pos();
        let count = r.uvarint().map_err(de)?;
        if count == 0 {
            return Err((at, format!("series {id} has no intervals")));
        }
        // Each interval takes at least two bytes: bound the allocation by what is left.
        let cap = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(r.remaining() / 2);
        let mut intervals = Vec::with_capacity(cap);
        let mut prev_maxt: Option<i64> = None;
        for _ in 0..count {
            let at = r.pos();
            let mint = match prev_maxt {
                None => i128::from(r.varint().map_err(de)?),
                Some(p) => i128::from(p) + 1 + i128::from(r.uvarint().map_err(de)?),
            };
            let maxt = mint + i128::from(r.uvarint().map_err(de)?);
            let (Ok(mint), Ok(maxt)) = (i64::try_from(mint), i64::try_from(maxt)) else {
                return Err((at, format!("interval of series {id} overflows i64")));
            };
            intervals.push((mint, maxt));
            prev_maxt = Some(maxt);
        }
        series.insert(id, intervals);
    }
    if !r.is_empty() {
        return Err((r.pos(), format!("{} trailing bytes", r.remaining())));
    }
    Ok(Tombstones { series })
}

/// Atomically writes `dir/tombstones` (temp file, fsync, rename, fsync dir).
pub fn write_tombstones(dir: &Path, t: &Tombstones) -> Result<()> {
    fsutil::write_atomic(dir, TOMBSTONES_FILE, &t.encode())
}

/// Reads and verifies `dir/tombstones`.
pub fn read_tombstones(dir: &Path) -> Result<Tombstones> {
    let path = dir.join(TOMBSTONES_FILE);
    let bytes = fsutil::read_file(&path)?;
    Tombstones::decode(&bytes, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn add_merges_overlapping_and_adjacent() {
        let mut t = Tombstones::new();
        t.add(3, 10, 20);
        t.add(3, 30, 40);
        t.add(3, 21, 25); // adjacent to [10, 20]
        t.add(3, 35, 50); // overlaps [30, 40]
        t.add(3, 60, 50); // empty, ignored
        assert_eq!(t.intervals(3), &[(10, 25), (30, 50)]);
        assert!(t.intervals(4).is_empty());
        assert!(t.is_deleted(3, 10) && t.is_deleted(3, 25) && t.is_deleted(3, 50));
        assert!(!t.is_deleted(3, 26) && !t.is_deleted(3, 9) && !t.is_deleted(4, 10));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn empty_file_bytes() {
        let bytes = Tombstones::new().encode();
        // header, one zero byte (no series), CRC of that byte
        assert_eq!(bytes.len(), 5 + 1 + 4);
        assert_eq!(&bytes[..5], b"STTB\x01");
        let t = Tombstones::decode(&bytes, Path::new("t")).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn extremes_roundtrip() {
        let mut t = Tombstones::new();
        t.add(0, i64::MIN, -5);
        t.add(0, 7, i64::MAX);
        t.add(u32::MAX, i64::MIN, i64::MAX);
        let back = Tombstones::decode(&t.encode(), Path::new("t")).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn corruption_is_detected() {
        let mut t = Tombstones::new();
        t.add(1, 100, 200);
        t.add(9, -50, 50);
        let good = t.encode();
        let p = Path::new("blk/tombstones");
        for cut in 0..good.len() {
            let err = Tombstones::decode(&good[..cut], p).unwrap_err();
            assert!(
                matches!(
                    err,
                    BlockError::Truncated { .. } | BlockError::Checksum { .. }
                ),
                "cut {cut}: {err}"
            );
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            Tombstones::decode(&bad, p).unwrap_err(),
            BlockError::BadMagic { .. }
        ));
        let mut bad = good.clone();
        bad[4] = 2;
        assert!(matches!(
            Tombstones::decode(&bad, p).unwrap_err(),
            BlockError::UnsupportedVersion { got: 2, .. }
        ));
        for i in HEADER_LEN..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            let err = Tombstones::decode(&bad, p).unwrap_err();
            assert!(
                matches!(
                    err,
                    BlockError::Checksum {
                        section: "tombstones body",
                        ..
                    }
                ),
                "byte {i}: {err}"
            );
            assert!(err.to_string().contains("blk/tombstones"), "{err}");
        }
    }

    #[test]
    fn write_and_read_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tombstones::new();
        t.add(2, 5, 6);
        write_tombstones(dir.path(), &t).unwrap();
        assert_eq!(read_tombstones(dir.path()).unwrap(), t);
        write_tombstones(dir.path(), &Tombstones::new()).unwrap();
        assert!(read_tombstones(dir.path()).unwrap().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn roundtrip(ops in proptest::collection::vec((0u32..50, any::<i64>(), any::<i64>()), 0..40)) {
            let mut t = Tombstones::new();
            for (s, a, b) in ops {
                t.add(s, a.min(b), a.max(b));
            }
            let back = Tombstones::decode(&t.encode(), Path::new("t")).unwrap();
            prop_assert_eq!(back, t);
        }

        #[test]
        fn checksummed_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = b"STTB\x01".to_vec();
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            match Tombstones::decode(&bytes, Path::new("t")) {
                Ok(t) => prop_assert!(t.iter().all(|(_, iv)| !iv.is_empty())),
                Err(e) => prop_assert!(matches!(e, BlockError::Corrupt { .. }), "{}", e),
            }
        }
    }
}
