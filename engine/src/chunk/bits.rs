//! Bit-level writer and reader shared by the bit-packed chunk encodings.
//!
//! Both work MSB-first: the first bit written is the most significant bit of the first byte, and
//! an unfinished last byte is padded with zero bits.
//!
//! ```text
//! write_bits(0b101, 3); write_bits(0b1, 1); write_bits(0b0110_0111, 8)
//!   byte 0          byte 1
//!   1011 0110       0111 0000   (last 4 bits are zero padding)
//! ```
//!
//! # Why it is built this way
//!
//! * [`BitWriter`] keeps its output in a plain `Vec<u8>` whose contents are a complete, decodable
//!   prefix after every call: the head's Gorilla appender hands out `bytes()` between appends
//!   without a flush step.
//! * [`BitReader`] is the decoder's hot path. It keeps up to 64 buffered bits left-aligned in a
//!   `u64` and refills them with one unaligned 8-byte big-endian load (the branch-free refill of
//!   "reading bits in far too many ways", variant 4), so a typical sample costs one refill and a
//!   couple of shifts instead of a per-bit loop. Only the last 7 bytes of a stream take a slower
//!   byte-wise path. No indexing that can panic: every load goes through `slice::get`.
//! * The reader never fails: past the end it supplies zero bits and counts them, so callers check
//!   [`BitReader::overrun`] once per sample rather than a `Result` per read.
//!
//! # Invariants
//!
//! * Writer: every bit after the last written one in the last byte is zero.
//! * Reader: after [`BitReader::refill`], `avail >= 56`; bits of `buf` below the `avail` valid
//!   bits are either zero or the true following bits of the stream (so refilling may OR them in
//!   again without changing them).

/// Append-only MSB-first bit writer backed by a `Vec<u8>`.
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Unused (zero) low bits of the last byte of `buf`, `0..=7`.
    free: u32,
}

impl BitWriter {
    /// A writer whose output starts after `prefix` (byte-aligned).
    pub(crate) fn with_prefix(prefix: Vec<u8>) -> Self {
        BitWriter {
            buf: prefix,
            free: 0,
        }
    }

    /// The bytes written so far; the last byte is zero-padded.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Mutable access to the underlying bytes (for rewriting a fixed-size header in place).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Consumes the writer, returning its bytes.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// Heap bytes held by the writer.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Grows the allocation in modest steps so that small head chunks waste little memory
    /// (plain `Vec` doubling can leave half of a chunk's allocation unused).
    #[inline]
    fn reserve_for(&mut self, extra_bytes: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len < extra_bytes {
            let step = (len / 4).max(32).max(extra_bytes);
            self.buf.reserve_exact(step);
        }
    }

    /// Writes the low `n` bits of `value`, most significant first. `n` is clamped to `0..=64`;
    /// bits of `value` above `n` are ignored.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, n: u32) {
        let mut n = n.min(64);
        if n == 0 {
            return;
        }
        let value = if n == 64 {
            value
        } else {
            value & ((1u64 << n) - 1)
        };
        if self.free > 0 {
            if let Some(last) = self.buf.last_mut() {
                if n <= self.free {
                    *last |= (value << (self.free - n)) as u8;
                    self.free -= n;
                    return;
                }
                // Top `free` bits of the value complete the last byte.
                *last |= (value >> (n - self.free)) as u8;
                n -= self.free;
                self.free = 0;
            } else {
                self.free = 0;
            }
        }
        // `n` in 1..=64 bits remain, written into fresh bytes.
        let nbytes = n.div_ceil(8);
        self.reserve_for(nbytes as usize);
        // nbytes * 8 = n + pad <= 64: left-align the bits in a u64 and copy its top bytes.
        let pad = nbytes * 8 - n;
        let aligned = if n == 64 { value } else { value << (64 - n) };
        let be = aligned.to_be_bytes();
        self.buf
            .extend_from_slice(be.get(..nbytes as usize).unwrap_or(&be));
        self.free = pad;
    }
}

/// MSB-first bit reader over a byte slice passed to every call (so the owner can keep the bytes
/// in a `bytes::Bytes` next to the reader without self-borrowing).
#[derive(Clone, Debug, Default)]
pub(crate) struct BitReader {
    /// Index of the next byte of the stream not yet in `buf`.
    pos: usize,
    /// Valid bits, left-aligned.
    buf: u64,
    /// Number of valid bits in `buf`.
    avail: u32,
    /// Zero bytes supplied past the end of the stream.
    virt: usize,
}

impl BitReader {
    /// A reader starting at byte `start` of the slice it will be given.
    pub(crate) fn new(start: usize) -> Self {
        BitReader {
            pos: start,
            buf: 0,
            avail: 0,
            virt: 0,
        }
    }

    /// Ensures at least 56 buffered bits (zeros past the end of `data`).
    #[inline(always)]
    pub(crate) fn refill(&mut self, data: &[u8]) {
        if self.avail >= 56 {
            return;
        }
        let word = self
            .pos
            .checked_add(8)
            .and_then(|end| data.get(self.pos..end))
            .and_then(|s| s.first_chunk::<8>());
        match word {
            Some(w) => {
                self.buf |= u64::from_be_bytes(*w) >> self.avail;
                self.pos += ((63 - self.avail) >> 3) as usize;
                self.avail |= 56;
            }
            None => self.refill_slow(data),
        }
    }

    #[cold]
    fn refill_slow(&mut self, data: &[u8]) {
        while self.avail <= 56 {
            let byte = match data.get(self.pos) {
                Some(b) => {
                    self.pos += 1;
                    *b
                }
                None => {
                    self.virt = self.virt.saturating_add(1);
                    0
                }
            };
            self.buf |= u64::from(byte) << (56 - self.avail);
            self.avail += 8;
        }
    }

    /// The buffered bits, left-aligned (only the top `avail` are meaningful).
    #[inline(always)]
    pub(crate) fn peek_word(&self) -> u64 {
        self.buf
    }

    /// Number of valid buffered bits.
    #[inline(always)]
    pub(crate) fn available(&self) -> u32 {
        self.avail
    }

    /// Drops `n` buffered bits; `n` must not exceed [`available`](Self::available) (it is
    /// clamped, so a violation cannot panic).
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        let n = n.min(self.avail);
        self.buf = if n >= 64 { 0 } else { self.buf << n };
        self.avail -= n;
    }

    /// Reads `n` bits (`0..=56`), refilling first. Larger `n` is clamped to 56.
    #[inline(always)]
    pub(crate) fn read_bits(&mut self, data: &[u8], n: u32) -> u64 {
        let n = n.min(56);
        if n == 0 {
            return 0;
        }
        self.refill(data);
        let v = self.buf >> (64 - n);
        self.consume(n);
        v
    }

    /// Reads `n` bits (`0..=64`).
    #[inline]
    pub(crate) fn read_bits_wide(&mut self, data: &[u8], n: u32) -> u64 {
        if n <= 56 {
            self.read_bits(data, n)
        } else {
            let n = n.min(64);
            let hi = self.read_bits(data, n - 32);
            let lo = self.read_bits(data, 32);
            (hi << 32) | lo
        }
    }

    /// True when more bits were consumed than `data` (of length `data_len`) holds.
    #[inline(always)]
    pub(crate) fn overrun(&self, data_len: usize) -> bool {
        self.virt > 0 && self.consumed_bytes_ceil() > data_len
    }

    /// Bytes touched so far (the byte holding the next unread bit counts as touched).
    fn consumed_bytes_ceil(&self) -> usize {
        let bits = (self.pos.saturating_add(self.virt))
            .saturating_mul(8)
            .saturating_sub(self.avail as usize);
        bits.div_ceil(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_msb_first_with_zero_padding() {
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        w.write_bits(0b1, 1);
        w.write_bits(0b0110_0111, 8);
        assert_eq!(w.bytes(), &[0b1011_0110, 0b0111_0000]);
    }

    #[test]
    fn reader_supplies_zeros_and_flags_overrun() {
        let data = [0xFFu8];
        let mut r = BitReader::new(0);
        assert_eq!(r.read_bits(&data, 8), 0xFF);
        assert!(!r.overrun(data.len()));
        assert_eq!(r.read_bits(&data, 3), 0);
        assert!(r.overrun(data.len()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::with_prefix(vec![0xAB]);
            for &(v, n) in &fields {
                w.write_bits(v, n);
            }
            let data = w.into_vec();
            let mut r = BitReader::new(1);
            for &(v, n) in &fields {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read_bits_wide(&data, n), v & mask);
            }
            prop_assert!(!r.overrun(data.len()));
        }
    }
}
