//! The full-text filter of a chunk (an n-gram signature) and trace-id extraction.
//!
//! # Why n-grams at chunk granularity
//!
//! LogQL line filters are substring matches (`|= "timeout"` also matches `timeouts`), so a
//! word dictionary cannot answer them without scanning the dictionary, and log lines carry many
//! unique words (trace ids, span ids, numbers) that make a dictionary as large as the data.
//! Strata therefore indexes every **4-gram** of every line, ASCII-lowercased, hashed into a
//! bitset of `m` bits per chunk (`m` a power of two, about one bit per eight raw bytes; a Bloom
//! filter with one hash function). A literal of `n ≥ 4` bytes can only occur in a chunk whose
//! bitset has the bits of all its `n - 3` grams set; since a chunk's bitset is about half full,
//! a 32-character trace id leaves a false-positive chunk with probability around one in a
//! thousand even when the bitset is 80 % full, while the filter costs one bit per eight raw
//! bytes (about 3 bytes per 185-byte line). Literals under four bytes, regexes and negative filters do not use it. Candidate
//! chunks are always verified by scanning.
//!
//! # Trace ids
//!
//! A trace id is 32 hexadecimal characters (16 bytes, the W3C / OTLP form). The exact trace-id
//! index of a block holds the ids of structured metadata named `trace_id` / `traceid` /
//! `traceID` (any case, `_` ignored), as OTLP logs and Loki clients send them. Trace ids inside
//! line text are found through the n-gram signature instead: indexing them exactly cost about 17
//! bytes per line on a workload where every line carries one, against a few milliseconds of
//! signature lookups per needle query. [`line_trace_ids`] finds them in text for callers that
//! want them.

/// Bits of the signature of a chunk whose lines total `raw_bytes`.
pub fn signature_bits(raw_bytes: usize) -> usize {
    (raw_bytes / 8).next_power_of_two().clamp(1024, 1 << 21)
}

#[inline]
fn gram_bit(g: u32, mask: u32) -> u32 {
    // Multiplicative hashing; the high bits are the best mixed.
    (g.wrapping_mul(0x9E37_79B1).rotate_right(11)) & mask
}

#[inline]
fn lower(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

/// A chunk's n-gram signature under construction.
#[derive(Clone, Debug)]
pub struct SignatureBuilder {
    words: Vec<u64>,
    mask: u32,
}

impl SignatureBuilder {
    /// A builder of `bits` bits (a power of two).
    pub fn new(bits: usize) -> Self {
        let bits = bits.next_power_of_two().max(64);
        SignatureBuilder {
            words: vec![0; bits / 64],
            mask: (bits - 1) as u32,
        }
    }

    /// Adds every 4-gram of `line`.
    pub fn add(&mut self, line: &[u8]) {
        if line.len() < 4 {
            return;
        }
        let mut g: u32 = 0;
        for (i, &b) in line.iter().enumerate() {
            g = (g << 8) | u32::from(lower(b));
            if i >= 3 {
                let bit = gram_bit(g, self.mask) as usize;
                if let Some(w) = self.words.get_mut(bit / 64) {
                    *w |= 1 << (bit % 64);
                }
            }
        }
    }

    /// The finished signature as bytes (little-endian words).
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for w in self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// The grams a literal needs, or `None` when it is too short to use the filter.
pub fn literal_grams(literal: &str) -> Option<Vec<u32>> {
    let b = literal.as_bytes();
    if b.len() < 4 {
        return None;
    }
    let mut g: u32 = 0;
    let mut out = Vec::with_capacity(b.len() - 3);
    for (i, &c) in b.iter().enumerate() {
        g = (g << 8) | u32::from(lower(c));
        if i >= 3 {
            out.push(g);
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// True if a signature (bytes from [`SignatureBuilder::finish`]) may contain every gram.
/// A malformed signature (not a power-of-two number of 64-bit words) answers "maybe".
pub fn signature_may_contain(sig: &[u8], grams: &[u32]) -> bool {
    let bits = sig.len() * 8;
    if bits < 64 || !bits.is_power_of_two() {
        return true;
    }
    let mask = (bits - 1) as u32;
    grams.iter().all(|&g| {
        let bit = gram_bit(g, mask) as usize;
        sig.get(bit / 8)
            .is_none_or(|byte| byte & (1 << (bit % 8)) != 0)
    })
}

/// Parses 32 hex digits (either case) into a trace id.
pub fn parse_trace_id(s: &str) -> Option<u128> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// True if a metadata name denotes a trace id.
pub fn is_trace_id_name(name: &str) -> bool {
    let mut it = name.bytes().filter(|&b| b != b'_').map(lower);
    b"traceid".iter().all(|&c| it.next() == Some(c)) && it.next().is_none()
}

/// Calls `f` with every trace id of a line (runs of exactly 32 hex digits between
/// non-alphanumeric characters).
pub fn line_trace_ids(line: &[u8], mut f: impl FnMut(u128)) {
    let mut i = 0;
    let n = line.len();
    while i + 32 <= n {
        // Skip to the start of an alphanumeric run.
        let Some(&b) = line.get(i) else { break };
        if !b.is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        let mut all_hex = true;
        while let Some(&c) = line.get(i) {
            if !c.is_ascii_alphanumeric() {
                break;
            }
            all_hex &= c.is_ascii_hexdigit();
            i += 1;
        }
        if all_hex
            && i - start == 32
            && let Some(id) = line
                .get(start..i)
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(parse_trace_id)
        {
            f(id);
        }
    }
}

/// Formats a trace id as 32 lowercase hex digits.
pub fn format_trace_id(id: u128) -> String {
    format!("{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trace_ids_are_found_in_lines_and_names() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut got = Vec::new();
        line_trace_ids(
            format!("level=info trace_id={id} x=0123456789abcdef0123456789abcdef01 msg=ok")
                .as_bytes(),
            |t| got.push(t),
        );
        assert_eq!(got, vec![parse_trace_id(id).unwrap()]);
        assert_eq!(format_trace_id(got[0]), id);
        assert!(is_trace_id_name("trace_id"));
        assert!(is_trace_id_name("traceID"));
        assert!(!is_trace_id_name("trace"));
        assert!(!is_trace_id_name("span_id"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn a_signature_never_misses_a_substring(
            lines in proptest::collection::vec(".{0,80}", 1..20),
            pick in any::<usize>(), from in any::<usize>(), len in 4usize..20,
        ) {
            let raw: usize = lines.iter().map(String::len).sum();
            let mut b = SignatureBuilder::new(signature_bits(raw));
            for l in &lines { b.add(l.as_bytes()); }
            let sig = b.finish();
            let line = lines[pick % lines.len()].as_bytes();
            if line.len() >= 4 {
                let start = from % (line.len() - 3);
                let end = (start + len).min(line.len());
                if let Some(grams) = std::str::from_utf8(&line[start..end]).ok().and_then(literal_grams) {
                    prop_assert!(signature_may_contain(&sig, &grams));
                }
            }
        }
    }
}
