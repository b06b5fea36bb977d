//! Byte-level helpers shared by the log store's encoders: LEB128 varints, zigzag, and a
//! bounds-checked reader.
//!
//! Every log-store format (chunks, blocks, WAL records) is decoded from untrusted bytes, so the
//! reader never indexes without a check and never allocates more than the bytes it still has.
//! Errors name the field that was being read.

use super::LogError;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zigzag-mapped as a varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the structure in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Current offset.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn err(&self, field: &str, reason: &str) -> LogError {
        LogError::Corrupt {
            what: self.what,
            offset: self.pos,
            reason: format!("{field}: {reason}"),
        }
    }

    /// Reads an unsigned varint.
    pub(crate) fn uvarint(&mut self, field: &str) -> Result<u64, LogError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err(field, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err(field, "varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err(field, "varint longer than 10 bytes"))
    }

    /// Reads a zigzag varint.
    pub(crate) fn varint(&mut self, field: &str) -> Result<i64, LogError> {
        let u = self.uvarint(field)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Reads a varint that must fit `usize` and be at most `max`.
    pub(crate) fn len(&mut self, field: &str, max: usize) -> Result<usize, LogError> {
        let v = self.uvarint(field)?;
        if v > max as u64 {
            return Err(self.err(field, &format!("{v} exceeds the limit of {max}")));
        }
        Ok(v as usize)
    }

    /// Takes `n` bytes.
    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], LogError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(
                field,
                &format!("needs {n} bytes, {} left", self.remaining()),
            )),
        }
    }

    /// Reads a length-prefixed byte string.
    pub(crate) fn bytes(&mut self, field: &str) -> Result<&'a [u8], LogError> {
        let n = self.len(field, self.remaining())?;
        self.take(n, field)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub(crate) fn str(&mut self, field: &str) -> Result<&'a str, LogError> {
        let b = self.bytes(field)?;
        std::str::from_utf8(b).map_err(|_| self.err(field, "invalid UTF-8"))
    }

    /// Reads a little-endian u32.
    pub(crate) fn u32_le(&mut self, field: &str) -> Result<u32, LogError> {
        let b = self.take(4, field)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    /// Reads a little-endian u64.
    pub(crate) fn u64_le(&mut self, field: &str) -> Result<u64, LogError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads a little-endian i64.
    pub(crate) fn i64_le(&mut self, field: &str) -> Result<i64, LogError> {
        Ok(self.u64_le(field)? as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>(), s in ".{0,40}") {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, u);
            put_varint(&mut buf, i);
            put_bytes(&mut buf, s.as_bytes());
            let mut r = Reader::new(&buf, "test");
            prop_assert_eq!(r.uvarint("u").unwrap(), u);
            prop_assert_eq!(r.varint("i").unwrap(), i);
            prop_assert_eq!(r.str("s").unwrap(), s.as_str());
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes, "test");
            let _ = r.uvarint("a");
            let _ = r.bytes("b");
            let _ = r.u64_le("c");
        }
    }
}
