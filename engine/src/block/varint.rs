//! Varint encoding and a bounds-checked byte reader for block files.
//!
//! Every variable-length integer in a block file is an unsigned LEB128 varint ("uvarint": seven
//! bits per byte, least significant group first, high bit set on every byte but the last), or a
//! zigzag-mapped signed value stored as a uvarint (`0 → 0, -1 → 1, 1 → 2, -2 → 3 …`), so small
//! magnitudes of either sign take one byte. Fixed-width integers are little-endian.
//!
//! [`Reader`] never panics: every read checks the remaining length first and returns a
//! [`DecodeError`] carrying the position, which callers turn into a [`super::BlockError`] with the
//! file, section and absolute offset.
//!
//! # Durability
//!
//! Pure encoding; no I/O.
//!
//! ```text
//! uvarint 300 = 0b1_0010_1100 → [0xAC, 0x02]   (0x2C | 0x80, 300 >> 7)
//! zigzag(v)   = (v << 1) ^ (v >> 63)
//! ```

use std::fmt;

/// Longest uvarint of a `u64` (ten groups of seven bits).
pub(crate) const MAX_UVARINT_LEN: usize = 10;

/// Appends `v` as a uvarint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zigzag-mapped as a uvarint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag(v));
}

/// Number of bytes [`put_uvarint`] writes for `v`.
pub(crate) fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Maps a signed value to an unsigned one with small magnitudes staying small.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Why a [`Reader`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer than `need` bytes were left at `pos`.
    Eof {
        /// Position of the read, relative to the reader's buffer.
        pos: usize,
        /// Bytes the read needed.
        need: usize,
    },
    /// A uvarint at `pos` is longer than ten bytes or overflows `u64`.
    Overflow {
        /// Position of the varint's first byte.
        pos: usize,
    },
}

impl DecodeError {
    /// Position of the failed read, relative to the reader's buffer.
    pub(crate) fn pos(self) -> usize {
        match self {
            DecodeError::Eof { pos, .. } | DecodeError::Overflow { pos } => pos,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Eof { need, .. } => {
                write!(f, "unexpected end of data (need {need} more bytes)")
            }
            DecodeError::Overflow { .. } => f.write_str("varint overflows 64 bits"),
        }
    }
}

/// A cursor over a byte slice whose reads are all bounds-checked.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` at position 0.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current position.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True if every byte was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Reads `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let eof = DecodeError::Eof {
            pos: self.pos,
            need: n,
        };
        let end = self.pos.checked_add(n).ok_or(eof)?;
        let out = self.buf.get(self.pos..end).ok_or(eof)?;
        self.pos = end;
        Ok(out)
    }

    /// Reads `N` bytes into an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let pos = self.pos;
        let b = self.bytes(N)?;
        <[u8; N]>::try_from(b).map_err(|_| DecodeError::Eof { pos, need: N })
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    /// Reads a little-endian `u32`.
    pub(crate) fn u32_le(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u64`.
    pub(crate) fn u64_le(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `i64`.
    pub(crate) fn i64_le(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads a uvarint.
    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..MAX_UVARINT_LEN {
            let b = self.buf.get(self.pos).copied().ok_or(DecodeError::Eof {
                pos: self.pos,
                need: 1,
            })?;
            self.pos += 1;
            let group = u64::from(b & 0x7f);
            // The tenth byte may only carry the 64th bit.
            if i == MAX_UVARINT_LEN - 1 && b > 1 {
                return Err(DecodeError::Overflow { pos: start });
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Overflow { pos: start })
    }

    /// Reads a zigzag varint.
    pub(crate) fn varint(&mut self) -> Result<i64, DecodeError> {
        Ok(unzigzag(self.uvarint()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uvarint_known_bytes() {
        let mut b = Vec::new();
        put_uvarint(&mut b, 300);
        assert_eq!(b, [0xAC, 0x02]);
        b.clear();
        put_uvarint(&mut b, u64::MAX);
        assert_eq!(b.len(), MAX_UVARINT_LEN);
        assert_eq!(uvarint_len(u64::MAX), MAX_UVARINT_LEN);
        assert_eq!(uvarint_len(0), 1);
        assert_eq!(uvarint_len(127), 1);
        assert_eq!(uvarint_len(128), 2);
    }

    #[test]
    fn overlong_varint_is_overflow() {
        let bytes = [0xffu8; 11];
        assert_eq!(
            Reader::new(&bytes).uvarint(),
            Err(DecodeError::Overflow { pos: 0 })
        );
        let mut ten = [0x80u8; 10];
        ten[9] = 0x02;
        assert_eq!(
            Reader::new(&ten).uvarint(),
            Err(DecodeError::Overflow { pos: 0 })
        );
    }

    #[test]
    fn truncated_reads_report_position() {
        let mut r = Reader::new(&[1, 0x80]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.uvarint(), Err(DecodeError::Eof { pos: 2, need: 1 }));
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32_le(), Err(DecodeError::Eof { pos: 0, need: 4 }));
        assert_eq!(
            r.bytes(usize::MAX),
            Err(DecodeError::Eof {
                pos: 0,
                need: usize::MAX
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn roundtrip(u in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            prop_assert_eq!(b.len(), uvarint_len(u));
            put_varint(&mut b, i);
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.uvarint(), Ok(u));
            prop_assert_eq!(r.varint(), Ok(i));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut r = Reader::new(&bytes);
            while !r.is_empty() {
                let before = r.pos();
                match r.uvarint() {
                    Ok(_) => prop_assert!(r.pos() > before),
                    Err(e) => { prop_assert!(e.pos() <= bytes.len()); break; }
                }
            }
            prop_assert!(r.pos() <= bytes.len());
        }
    }
}
