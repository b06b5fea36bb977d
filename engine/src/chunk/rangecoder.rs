//! Adaptive binary range coder and the integer model of the `RangeCoded` block encoding.
//!
//! # The coder
//!
//! A carry-propagating binary arithmetic coder over a 32-bit range (the scheme of Subbotin /
//! Martin's range coding as popularised by LZMA), written for Strata:
//!
//! * every binary decision has an adaptive probability `p` (12 bits, probability of a `0`);
//!   `bound = (range >> 12) * p`; a `0` keeps `[low, low + bound)`, a `1` keeps the rest;
//! * after a decision `p` moves towards the observed bit by 1/4, then 1/8, then 1/16 of the
//!   distance for every later decision of that context (a fast start from the uninformed 1/2,
//!   then shift 4: it keeps adapting within a few dozen samples). `p` cannot leave
//!   `[15, 4081]`, so no decision costs more than 8 bits or less than 0.005 bits. Measured on
//!   the real capture: shift 4 beats 5 by 1.4 %, the fast start gains another 0.5 %, and
//!   mixing a fast and a slow estimate gained nothing;
//! * while `range < 2^24` the top byte of `low` is shifted out; a carry out of `low` is
//!   propagated into the pending `0xFF` bytes (`cache`/`pending`).
//!
//! Output: the byte stream minus its first byte, which is always 0 (the initial interval lies
//! below 2^32, so nothing ever carries into it). The decoder starts with the next 4 bytes as
//! its code value and reads one byte per 8 bits of renormalisation — exactly as many bytes as
//! the encoder wrote, so reading past the end means the chunk is truncated or corrupt.
//!
//! # The integer model
//!
//! Each transformed integer `y` (see `transform.rs`) is binarised as
//!
//! ```text
//! zero?       1 decision, context = were the previous two values of this stream zero (4 ctx)
//! sign        1 decision, context = sign of the previous non-zero value (3 ctx)
//! nb - 1      6 decisions down a binary tree (63 nodes), nb = bit length of |y| (1..=64)
//! mantissa    the 2 bits below the leading 1: 1 decision each, context = (nb, position)
//! low bits    the remaining nb - 3 bits, written verbatim to a separate raw bit stream
//! ```
//!
//! Why: on the real capture nearly all the information of noisy gauges sits in low bits that no
//! model predicts; sending them raw costs nothing in size (measured within 1 % of modelling
//! every bit) and keeps the number of coded decisions per value at ~10, which is what bounds
//! decode speed. A context on the previous bit length measured worse (too few samples per
//! chunk to learn 64 contexts).
//!
//! # Panics
//!
//! None: probabilities stay inside `[15, 4081]`, so `bound` is strictly between 0 and `range`
//! and `range` never reaches 0; all arithmetic that could overflow on corrupt input wraps.

use super::bits::{BitReader, BitWriter};

const PROB_BITS: u32 = 12;
const PROB_INIT: u16 = 1 << (PROB_BITS - 1);
const PROB_ONE: u32 = 1 << PROB_BITS;
const ADAPT_SHIFT: u32 = 4;
const TOP: u32 = 1 << 24;
/// Mantissa bits below the leading one that are modelled; the rest are raw.
const MODELED_MANTISSA: u32 = 2;

/// Probability of a 0 (12 bits) and its current adaptation shift: 2 for the first update,
/// 3 for the second, then `ADAPT_SHIFT` for good.
///
/// With these shifts `p` can never leave `[15, 4081]`: at 15, `15 >> 4 = 0`, and at 4081,
/// `(4096 - 4081) >> 4 = 0`, while the early, larger steps start from 2048.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prob {
    p: u16,
    shift: u16,
}

const P_INIT: Prob = Prob {
    p: PROB_INIT,
    shift: 2,
};

impl Prob {
    #[inline(always)]
    fn get(&self) -> u32 {
        u32::from(self.p)
    }
}

#[inline(always)]
fn update(p: &mut Prob, bit: bool) {
    let shift = u32::from(p.shift);
    p.shift += u16::from(p.shift < ADAPT_SHIFT as u16);
    let v = u32::from(p.p);
    let v = if bit {
        v - (v >> shift)
    } else {
        v + ((PROB_ONE - v) >> shift)
    };
    p.p = v as u16;
}

/// Range encoder writing into a `Vec<u8>`.
#[derive(Debug)]
pub(crate) struct RcEncoder {
    low: u64,
    range: u32,
    cache: u8,
    /// Bytes held back: the cache byte plus this many - 1 bytes of 0xFF.
    pending: u64,
    out: Vec<u8>,
    /// The first emitted byte is always 0 and is not stored.
    first: bool,
}

impl RcEncoder {
    pub(crate) fn new() -> Self {
        RcEncoder {
            low: 0,
            range: u32::MAX,
            cache: 0,
            pending: 1,
            out: Vec::new(),
            first: true,
        }
    }

    #[inline(always)]
    pub(crate) fn encode(&mut self, p: &mut Prob, bit: bool) {
        let bound = (self.range >> PROB_BITS) * p.get();
        if bit {
            self.low += u64::from(bound);
            self.range -= bound;
        } else {
            self.range = bound;
        }
        update(p, bit);
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    fn emit(&mut self, b: u8) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(b);
        }
    }

    fn shift_low(&mut self) {
        let carry = (self.low >> 32) as u8;
        if self.low < 0xFF00_0000 || carry != 0 {
            let mut byte = self.cache;
            while self.pending > 0 {
                self.emit(byte.wrapping_add(carry));
                byte = 0xFF;
                self.pending -= 1;
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.pending += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    /// Flushes the coder and returns its bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        self.out
    }
}

/// Range decoder over a byte slice passed to every call.
#[derive(Clone, Debug)]
pub(crate) struct RcDecoder {
    range: u32,
    code: u32,
    pos: usize,
    /// Set when a byte past the end of the stream was needed.
    overrun: bool,
}

impl RcDecoder {
    pub(crate) fn new(data: &[u8]) -> Self {
        let mut d = RcDecoder {
            range: u32::MAX,
            code: 0,
            pos: 0,
            overrun: false,
        };
        for _ in 0..4 {
            d.code = (d.code << 8) | u32::from(d.next_byte(data));
        }
        d
    }

    #[inline(always)]
    fn next_byte(&mut self, data: &[u8]) -> u8 {
        match data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => {
                self.overrun = true;
                0
            }
        }
    }

    /// A decoder for a stream no decision will be read from.
    pub(crate) fn empty() -> Self {
        RcDecoder {
            range: u32::MAX,
            code: 0,
            pos: 0,
            overrun: false,
        }
    }

    /// True when the decoder needed more bytes than the stream has.
    pub(crate) fn overrun(&self) -> bool {
        self.overrun
    }

    #[inline(always)]
    pub(crate) fn decode(&mut self, data: &[u8], p: &mut Prob) -> bool {
        let bound = (self.range >> PROB_BITS) * p.get();
        let bit = self.code >= bound;
        if bit {
            self.code = self.code.wrapping_sub(bound);
            self.range = self.range.wrapping_sub(bound);
        } else {
            self.range = bound;
        }
        update(p, bit);
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(self.next_byte(data));
            if self.range == 0 {
                // Unreachable with valid probabilities; keeps a corrupt state from looping.
                self.range = u32::MAX;
                self.overrun = true;
            }
        }
        bit
    }
}

/// Where [`IntModel::encode`] puts its output.
pub(crate) trait Sink {
    /// Codes one binary decision with (and then updates) `p`.
    fn decide(&mut self, p: &mut Prob, bit: bool);
    /// Stores the low `n` bits of `v` verbatim.
    fn raw(&mut self, v: u64, n: u32);
}

/// The real output: the range coder and the raw bit stream.
pub(crate) struct Coded<'a> {
    pub(crate) enc: &'a mut RcEncoder,
    pub(crate) raw: &'a mut BitWriter,
}

impl Sink for Coded<'_> {
    #[inline(always)]
    fn decide(&mut self, p: &mut Prob, bit: bool) {
        self.enc.encode(p, bit);
    }

    #[inline(always)]
    fn raw(&mut self, v: u64, n: u32) {
        self.raw.write_bits(v, n);
    }
}

/// Price units per bit.
pub(crate) const PRICE_ONE_BIT: u64 = 64;

/// `-log2(p / 4096) * PRICE_ONE_BIT` for p in 0..=4096 (p = 0 is never used).
fn price_table() -> &'static [u16; 4097] {
    static TABLE: std::sync::OnceLock<Box<[u16; 4097]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0u16; 4097]);
        for (p, slot) in t.iter_mut().enumerate().skip(1) {
            let bits = -(p as f64 / f64::from(PROB_ONE)).log2();
            *slot = (bits * PRICE_ONE_BIT as f64)
                .round()
                .min(f64::from(u16::MAX)) as u16;
        }
        t
    })
}

/// A sink that only adds up what the output would cost, in 1/64 bits.
pub(crate) struct Pricer {
    table: &'static [u16; 4097],
    total: u64,
}

impl Pricer {
    pub(crate) fn new() -> Self {
        Pricer {
            table: price_table(),
            total: 0,
        }
    }
}

impl Sink for Pricer {
    #[inline(always)]
    fn decide(&mut self, p: &mut Prob, bit: bool) {
        let p0 = p.get() as usize;
        let q = if bit { PROB_ONE as usize - p0 } else { p0 };
        self.total += u64::from(self.table.get(q).copied().unwrap_or(0));
        update(p, bit);
    }

    #[inline(always)]
    fn raw(&mut self, _v: u64, n: u32) {
        self.total += u64::from(n) * PRICE_ONE_BIT;
    }
}

/// Longest prefix [`price_estimate`] prices exactly.
pub(crate) const PRICE_PREFIX: usize = 1024;

/// What coding `ys` costs, estimated from its first [`PRICE_PREFIX`] values scaled to the
/// whole length: the encoders use it to choose between candidate transforms of long chunks
/// (compaction writes chunks of thousands of samples), where pricing everything exactly cost
/// more than the encoding itself. Short streams are priced exactly.
pub(crate) fn price_estimate(ys: &[i64]) -> u64 {
    let Some(prefix) = ys.get(..PRICE_PREFIX) else {
        return price(ys);
    };
    let p = u128::from(price(prefix)) * ys.len() as u128 / PRICE_PREFIX as u128;
    u64::try_from(p).unwrap_or(u64::MAX)
}

/// What coding `ys` with a fresh [`IntModel`] costs, in 1/64 bits.
pub(crate) fn price(ys: &[i64]) -> u64 {
    let mut m = IntModel::new();
    let mut pricer = Pricer::new();
    for &y in ys {
        m.encode(&mut pricer, y);
    }
    pricer.total
}

/// Adaptive model for one stream of signed integers.
#[derive(Clone, Debug)]
pub(crate) struct IntModel {
    zero: [Prob; 4],
    sign: [Prob; 3],
    /// Binary tree over `nb - 1`, nodes 1..64.
    nb: [Prob; 64],
    mant: [[Prob; MODELED_MANTISSA as usize]; 64],
    hist: usize,
    prev_sign: usize,
}

impl IntModel {
    pub(crate) fn new() -> Self {
        IntModel {
            zero: [P_INIT; 4],
            sign: [P_INIT; 3],
            nb: [P_INIT; 64],
            mant: [[P_INIT; MODELED_MANTISSA as usize]; 64],
            hist: 0,
            prev_sign: 0,
        }
    }

    /// Codes `y` into `sink`: binary decisions with this model's probabilities, then raw bits.
    pub(crate) fn encode<S: Sink>(&mut self, sink: &mut S, y: i64) {
        let is_zero = y == 0;
        sink.decide(&mut self.zero[self.hist & 3], !is_zero);
        self.hist = (self.hist << 1) | usize::from(is_zero);
        if is_zero {
            return;
        }
        let neg = y < 0;
        sink.decide(&mut self.sign[self.prev_sign % 3], neg);
        self.prev_sign = if neg { 1 } else { 2 };
        let mag = y.unsigned_abs();
        let nb1 = 63 - mag.leading_zeros(); // nb - 1, 0..=63
        let mut node = 1usize;
        for i in (0..6).rev() {
            let bit = (nb1 >> i) & 1 == 1;
            sink.decide(&mut self.nb[node & 63], bit);
            node = (node << 1) | usize::from(bit);
        }
        let modeled = nb1.min(MODELED_MANTISSA);
        let ctx = &mut self.mant[(nb1 & 63) as usize];
        for j in 0..modeled {
            let bit = (mag >> (nb1 - 1 - j)) & 1 == 1;
            sink.decide(&mut ctx[j as usize], bit);
        }
        let rest = nb1 - modeled;
        if rest > 0 {
            sink.raw(mag, rest);
        }
    }

    /// Decodes one integer.
    #[inline(always)]
    pub(crate) fn decode(
        &mut self,
        dec: &mut RcDecoder,
        rc: &[u8],
        raw: &mut BitReader,
        raw_data: &[u8],
    ) -> i64 {
        let nonzero = dec.decode(rc, &mut self.zero[self.hist & 3]);
        self.hist = (self.hist << 1) | usize::from(!nonzero);
        if !nonzero {
            return 0;
        }
        let neg = dec.decode(rc, &mut self.sign[self.prev_sign % 3]);
        self.prev_sign = if neg { 1 } else { 2 };
        let mut node = 1usize;
        for _ in 0..6 {
            let bit = dec.decode(rc, &mut self.nb[node & 63]);
            node = (node << 1) | usize::from(bit);
        }
        let nb1 = (node & 63) as u32;
        let modeled = nb1.min(MODELED_MANTISSA);
        let mut mag = 1u64;
        let ctx = &mut self.mant[nb1 as usize & 63];
        for j in 0..modeled {
            let bit = dec.decode(rc, &mut ctx[j as usize]);
            mag = (mag << 1) | u64::from(bit);
        }
        let rest = nb1 - modeled;
        if rest > 0 {
            mag = (mag << rest) | raw.read_bits_wide(raw_data, rest);
        }
        if neg {
            mag.wrapping_neg() as i64
        } else {
            mag as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(ys: &[i64]) -> (usize, Vec<i64>) {
        let mut enc = RcEncoder::new();
        let mut raw = BitWriter::default();
        let mut m = IntModel::new();
        let mut sink = Coded {
            enc: &mut enc,
            raw: &mut raw,
        };
        for &y in ys {
            m.encode(&mut sink, y);
        }
        let rc = enc.finish();
        let raw = raw.into_vec();
        let size = rc.len() + raw.len();
        let mut dec = RcDecoder::new(&rc);
        let mut rr = BitReader::new(0);
        let mut m = IntModel::new();
        let out = ys
            .iter()
            .map(|_| m.decode(&mut dec, &rc, &mut rr, &raw))
            .collect();
        assert!(!dec.overrun(), "decoder read past the coded bytes");
        assert!(!rr.overrun(raw.len()));
        (size, out)
    }

    #[test]
    fn extremes_round_trip() {
        let ys = [
            0,
            1,
            -1,
            i64::MIN,
            i64::MAX,
            0,
            0,
            3,
            -4,
            1 << 40,
            i64::MIN + 1,
        ];
        assert_eq!(round_trip(&ys).1, ys);
    }

    #[test]
    fn price_predicts_the_coded_size() {
        let ys: Vec<i64> = (0..5000)
            .map(|i| if i % 7 == 0 { (i * 31) % 1000 - 500 } else { 0 })
            .collect();
        let (size, _) = round_trip(&ys);
        let priced = price(&ys) / PRICE_ONE_BIT / 8;
        assert!(
            priced.abs_diff(size as u64) <= size as u64 / 50 + 8,
            "priced {priced} vs {size}"
        );
    }

    #[test]
    fn zero_run_compresses_to_a_few_bytes() {
        let ys = vec![0i64; 10_000];
        let (size, out) = round_trip(&ys);
        assert_eq!(out, ys);
        assert!(size < 16, "10k zeros took {size} bytes");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_round_trip(ys in proptest::collection::vec(
            prop_oneof![any::<i64>(), -100i64..100, Just(0i64)], 0..300)) {
            prop_assert_eq!(round_trip(&ys).1, ys);
        }
    }
}
