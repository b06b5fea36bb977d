//! Snappy block-format compression for remote write and remote read bodies.
//!
//! Remote write bodies and `SAMPLES` remote read responses use the snappy
//! *block* format (a uvarint of the decoded length, then the compressed
//! stream); the *framed* (streaming) format is not allowed by the spec and is
//! rejected here as corrupt input.
//!
//! # Bounded allocation
//!
//! The block format states the decoded length up front. A hostile 20-byte
//! body can claim 4 GiB, so [`decompress_snappy`] reads that length and
//! compares it with the caller's limit *before* allocating. The server maps
//! [`SnappyError::TooLarge`] to 413 and [`SnappyError::Corrupt`] to 400.

/// A snappy compression or decompression failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnappyError {
    /// The body decodes to more bytes than the caller allows.
    #[error("snappy body decodes to {decoded_len} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Decoded length announced by the body's header.
        decoded_len: usize,
        /// The caller's limit.
        limit: usize,
    },
    /// The body is not valid snappy block-format data.
    #[error("invalid snappy block data: {0}")]
    Corrupt(#[source] snap::Error),
    /// The input is too large for the snappy block format (over ~4 GiB).
    #[error("cannot snappy-compress {len} bytes: input too large for the block format")]
    InputTooLarge {
        /// Input length.
        len: usize,
    },
}

impl SnappyError {
    /// Whether this is [`SnappyError::TooLarge`] (HTTP 413) rather than a
    /// malformed body (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::TooLarge { .. })
    }
}

/// Decompresses a snappy block-format `body` into a new vector, refusing
/// bodies that would decode to more than `max_decoded` bytes.
///
/// # Errors
///
/// [`SnappyError::TooLarge`] before any allocation if the announced length
/// exceeds `max_decoded`; [`SnappyError::Corrupt`] for malformed data
/// (including an empty body and framed-format data).
pub fn decompress_snappy(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, SnappyError> {
    let mut out = Vec::new();
    decompress_snappy_into(body, max_decoded, &mut out)?;
    Ok(out)
}

/// Like [`decompress_snappy`], but decodes into `out` (cleared first) so
/// that a request loop can reuse one buffer.
///
/// # Errors
///
/// As [`decompress_snappy`]; `out` is left empty on error.
pub fn decompress_snappy_into(
    body: &[u8],
    max_decoded: usize,
    out: &mut Vec<u8>,
) -> Result<(), SnappyError> {
    out.clear();
    let decoded_len = snap::raw::decompress_len(body).map_err(SnappyError::Corrupt)?;
    if decoded_len > max_decoded {
        return Err(SnappyError::TooLarge {
            decoded_len,
            limit: max_decoded,
        });
    }
    out.resize(decoded_len, 0);
    match snap::raw::Decoder::new().decompress(body, out) {
        Ok(n) => {
            out.truncate(n);
            Ok(())
        }
        Err(e) => {
            out.clear();
            Err(SnappyError::Corrupt(e))
        }
    }
}

/// Compresses `data` in the snappy block format.
///
/// # Errors
///
/// [`SnappyError::InputTooLarge`] for inputs the block format cannot hold.
pub fn compress_snappy(data: &[u8]) -> Result<Vec<u8>, SnappyError> {
    let mut out = Vec::new();
    compress_snappy_into(data, &mut out)?;
    Ok(out)
}

/// Like [`compress_snappy`], but writes into `out` (cleared first).
///
/// # Errors
///
/// As [`compress_snappy`].
pub fn compress_snappy_into(data: &[u8], out: &mut Vec<u8>) -> Result<(), SnappyError> {
    out.clear();
    let max = snap::raw::max_compress_len(data.len());
    if max == 0 {
        return Err(SnappyError::InputTooLarge { len: data.len() });
    }
    out.resize(max, 0);
    match snap::raw::Encoder::new().compress(data, out) {
        Ok(n) => {
            out.truncate(n);
            Ok(())
        }
        Err(_) => {
            out.clear();
            Err(SnappyError::InputTooLarge { len: data.len() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limit_is_checked_before_allocating() {
        // A header alone claiming 1 GiB: uvarint(2^30).
        let body = [0x80, 0x80, 0x80, 0x80, 0x04];
        let err = decompress_snappy(&body, 1 << 20).unwrap_err();
        assert_eq!(
            err,
            SnappyError::TooLarge {
                decoded_len: 1 << 30,
                limit: 1 << 20
            }
        );
        assert!(err.is_too_large());
        assert_eq!(
            err.to_string(),
            "snappy body decodes to 1073741824 bytes, more than the limit of 1048576 bytes"
        );
    }

    #[test]
    fn limit_is_inclusive() {
        let data = vec![7u8; 1000];
        let body = compress_snappy(&data).unwrap();
        assert_eq!(decompress_snappy(&body, 1000).unwrap(), data);
        assert!(decompress_snappy(&body, 999).unwrap_err().is_too_large());
    }

    #[test]
    fn corrupt_and_empty_bodies_are_rejected() {
        let err = decompress_snappy(&[], 100).unwrap_err();
        assert!(matches!(err, SnappyError::Corrupt(_)));
        assert!(!err.is_too_large());
        // Header says 10 bytes, stream ends immediately.
        assert!(matches!(
            decompress_snappy(&[10], 100),
            Err(SnappyError::Corrupt(_))
        ));
        // The framed format's stream identifier is not a block.
        let framed = b"\xff\x06\x00\x00sNaPpY";
        assert!(decompress_snappy(framed, 1 << 20).is_err());
    }

    #[test]
    fn buffer_is_reused_and_cleared_on_error() {
        let mut out = vec![1, 2, 3];
        let body = compress_snappy(b"hello hello hello").unwrap();
        decompress_snappy_into(&body, 100, &mut out).unwrap();
        assert_eq!(out, b"hello hello hello");
        assert!(decompress_snappy_into(&[10], 100, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn empty_input_round_trips() {
        let body = compress_snappy(&[]).unwrap();
        assert_eq!(body, [0]);
        // A zero-length block is a valid encoding of nothing.
        assert_eq!(decompress_snappy(&body, 0).unwrap(), Vec::<u8>::new());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let body = compress_snappy(&data).unwrap();
            prop_assert_eq!(decompress_snappy(&body, data.len()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            // Either decodes within the limit or returns an error.
            if let Ok(out) = decompress_snappy(&body, 1 << 16) {
                prop_assert!(out.len() <= 1 << 16);
            }
        }
    }
}
