//! LEB128 varints and zigzag mapping for chunk headers and the zstd columnar body.
//!
//! ```text
//! uvarint: 7 value bits per byte, least significant group first; the high bit of a byte is 1
//!          when another byte follows. A u64 takes 1..=10 bytes.
//!          300 = 0b1_0010_1100  ->  [0xAC, 0x02]
//! zigzag:  signed -> unsigned so that small magnitudes get small codes:
//!          0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ... , i64::MIN -> u64::MAX
//! ```
//!
//! Decoding is checked: a missing byte, an 11th byte or a 10th byte carrying more than the one
//! remaining bit of a u64 is an error, never a panic or a silent wrap.

/// Maps a signed integer to an unsigned one, small magnitudes first.
#[inline(always)]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline(always)]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as a LEB128 varint.
#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-mapped as a LEB128 varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Reads a LEB128 varint at `*pos`, advancing it. `None` when truncated or overlong.
#[inline]
pub(crate) fn get_uvarint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10u32 {
        let b = *data.get(*pos)?;
        *pos += 1;
        let bits = u64::from(b & 0x7F);
        if i == 9 && b > 1 {
            return None; // more than 64 bits
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Reads a zigzag LEB128 varint at `*pos`, advancing it.
#[inline]
pub(crate) fn get_varint(data: &[u8], pos: &mut usize) -> Option<i64> {
    get_uvarint(data, pos).map(unzigzag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        let mut out = Vec::new();
        put_uvarint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(get_uvarint(&out, &mut 0), Some(u64::MAX));
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(get_uvarint(&[0x80], &mut 0), None);
        assert_eq!(get_uvarint(&[], &mut 0), None);
        let overlong = [0xFF; 11];
        assert_eq!(get_uvarint(&overlong, &mut 0), None);
        let too_big = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
        assert_eq!(get_uvarint(&too_big, &mut 0), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(vs in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut out = Vec::new();
            for &v in &vs {
                put_varint(&mut out, v);
            }
            let mut pos = 0;
            for &v in &vs {
                prop_assert_eq!(get_varint(&out, &mut pos), Some(v));
            }
            prop_assert_eq!(pos, out.len());
        }
    }
}
