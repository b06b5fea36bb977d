//! Block ids: ULID-like, sortable by creation time.
//!
//! A block id is 128 bits: the creation time in Unix milliseconds (48 bits) followed by 80
//! random bits, written as 26 characters of Crockford base32 (`0-9A-Z` without `I L O U`),
//! most significant first. Ids therefore sort lexicographically by creation millisecond, which
//! the compactor and retention use to order blocks without opening them; within one millisecond
//! the order is random.
//!
//! The random bits come from the standard library's per-process randomly keyed SipHash
//! (`RandomState`, seeded from the OS) over the time in nanoseconds, the process id and a
//! process-wide counter, then stirred with splitmix64, so no random-number dependency is needed
//! and two ids made in the same process never share their input.
//!
//! # Durability
//!
//! Pure computation; no I/O.
//!
//! ```text
//! bit 127                 80 79                                  0
//!     [ unix ms, 48 bits   ][ random, 80 bits                     ]
//! text: 26 chars × 5 bits = 130 bits; the first char holds the top 3 bits (so it is 0-7)
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a block id in characters.
pub const BLOCK_ID_LEN: usize = 26;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_MASK: u64 = (1 << 48) - 1;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// splitmix64 step: advances `state` and returns a well-mixed 64-bit value.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Creates a new block id for the current time.
pub fn new_block_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX) & TIME_MASK;
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.write_u64(counter);
    let mut state = hasher.finish();
    let hi = splitmix64(&mut state);
    let lo = splitmix64(&mut state);
    let random = (u128::from(hi & 0xffff) << 64) | u128::from(lo);
    encode(u128::from(ms) << 80 | random)
}

/// Writes a 128-bit value as 26 Crockford base32 characters.
fn encode(v: u128) -> String {
    (0..BLOCK_ID_LEN)
        .map(|i| {
            let shift = 5 * (BLOCK_ID_LEN - 1 - i);
            let digit = ((v >> shift) & 0x1f) as usize;
            ALPHABET.get(digit).map_or('0', |&c| char::from(c))
        })
        .collect()
}

/// Parses a block id in its canonical form (26 upper-case Crockford characters) into its
/// 128-bit value. Returns `None` for anything else.
pub fn parse_block_id(s: &str) -> Option<u128> {
    if s.len() != BLOCK_ID_LEN {
        return None;
    }
    let mut v: u128 = 0;
    for (i, c) in s.bytes().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c)?;
        if i == 0 && digit > 7 {
            return None;
        }
        v = (v << 5) | digit as u128;
    }
    Some(v)
}

/// True if `s` is a canonical block id.
pub fn is_block_id(s: &str) -> bool {
    parse_block_id(s).is_some()
}

/// Creation time (Unix milliseconds) encoded in a block id.
pub fn block_id_time_ms(s: &str) -> Option<u64> {
    parse_block_id(s).map(|v| (v >> 80) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_canonical_unique_and_carry_time() {
        let before = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let ids: Vec<String> = (0..2000).map(|_| new_block_id()).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert_eq!(id.len(), BLOCK_ID_LEN);
            assert!(is_block_id(id), "{id}");
            let t = block_id_time_ms(id).unwrap();
            assert!(t >= before, "{t} < {before}");
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let a = encode(1u128 << 80 | u128::from(u64::MAX));
        let b = encode(2u128 << 80);
        assert!(a < b);
        assert_eq!(block_id_time_ms(&a), Some(1));
        assert_eq!(block_id_time_ms(&b), Some(2));
    }

    #[test]
    fn parse_roundtrip_and_rejects() {
        let v = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        assert_eq!(parse_block_id(&encode(v)), Some(v));
        assert_eq!(parse_block_id(&encode(u128::MAX)), Some(u128::MAX));
        assert!(encode(u128::MAX).starts_with('7'));
        assert_eq!(parse_block_id("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
        assert_eq!(parse_block_id("01ARZ3NDEKTSV4RRFFQ69G5FAU"), None); // U is not Crockford
        assert_eq!(parse_block_id("01arz3ndektsv4rrffq69g5fav"), None); // lower case
        assert_eq!(parse_block_id("01ARZ3NDEKTSV4RRFFQ69G5FA"), None);
        assert_eq!(parse_block_id("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp"), None);
        assert!(parse_block_id("01ARZ3NDEKTSV4RRFFQ69G5FAV").is_some());
    }
}
