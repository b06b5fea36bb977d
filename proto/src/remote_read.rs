//! Prometheus remote read: request decoding, response-type negotiation, the
//! `SAMPLES` response and the `STREAMED_XOR_CHUNKS` frame format.
//!
//! Remote read requests are small (a few queries and matchers), so they are
//! decoded with prost into [`prompb::ReadRequest`]; responses are built as
//! prost messages too. The performance-sensitive part of remote read is the
//! chunk encoding ([`crate::xor_chunk`]), not the protobuf framing.
//!
//! # Streamed frame format
//!
//! A `STREAMED_XOR_CHUNKS` response body (no `Content-Encoding`) is a
//! sequence of frames:
//!
//! ```text
//! ┌─────────────────────────┬────────────────────────────────┬──────────────────────────────┐
//! │ len <uvarint>           │ crc <u32, big-endian>          │ ChunkedReadResponse <len B>  │
//! └─────────────────────────┴────────────────────────────────┴──────────────────────────────┘
//! ```
//!
//! `crc` is CRC-32C (Castagnoli) of the message bytes only. Endianness and
//! polynomial are those of Prometheus' `storage/remote/chunked.go`, which
//! writes the checksum with `binary.BigEndian` and a Castagnoli table.

use crate::prompb::{
    self, ChunkedReadResponse, ReadRequest, ReadResponse, read_request::ResponseType,
};
use prost::Message;

/// `Content-Type` of a `SAMPLES` response (body snappy-compressed).
pub const CONTENT_TYPE_SAMPLES: &str = "application/x-protobuf";
/// `Content-Type` of a `STREAMED_XOR_CHUNKS` response.
pub const CONTENT_TYPE_STREAMED_CHUNKS: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";
/// Header carrying the remote read protocol version.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Read-Version";
/// The remote read protocol version Strata speaks.
pub const VERSION: &str = "0.1.0";

/// A remote read request that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The body is not a valid `ReadRequest`.
    #[error("invalid ReadRequest: {0}")]
    Decode(#[from] prost::DecodeError),
    /// None of `accepted_response_types` is known.
    #[error(
        "none of the accepted response types {accepted:?} is supported (supported: 0 = SAMPLES, 1 = STREAMED_XOR_CHUNKS)"
    )]
    NoSupportedResponseType {
        /// The raw values the client sent.
        accepted: Vec<i32>,
    },
}

/// A malformed `STREAMED_XOR_CHUNKS` frame, with its byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is cut off or longer than 64 bits.
    #[error("frame at byte {offset}: invalid or truncated length prefix")]
    BadLength {
        /// Offset of the frame.
        offset: usize,
    },
    /// A frame larger than the reader's limit.
    #[error("frame at byte {offset}: length {len} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Offset of the frame.
        offset: usize,
        /// Announced length.
        len: u64,
        /// The reader's limit.
        limit: usize,
    },
    /// The checksum or message is cut off.
    #[error("frame at byte {offset}: needs {needed} bytes after the length, {remaining} left")]
    Truncated {
        /// Offset of the frame.
        offset: usize,
        /// Bytes the checksum and message need.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// The message does not match its checksum.
    #[error(
        "frame at byte {offset}: CRC-32C mismatch (frame says {expected:#010x}, data has {actual:#010x})"
    )]
    ChecksumMismatch {
        /// Offset of the frame.
        offset: usize,
        /// Checksum stored in the frame.
        expected: u32,
        /// Checksum of the message bytes.
        actual: u32,
    },
    /// The message is not a valid `ChunkedReadResponse`.
    #[error("frame at byte {offset}: invalid ChunkedReadResponse: {source}")]
    Decode {
        /// Offset of the frame.
        offset: usize,
        /// The prost error.
        source: prost::DecodeError,
    },
}

/// Decodes a (decompressed) `ReadRequest`.
///
/// # Errors
///
/// [`ReadError::Decode`] for malformed protobuf.
pub fn decode_read_request(buf: &[u8]) -> Result<ReadRequest, ReadError> {
    Ok(ReadRequest::decode(buf)?)
}

/// Picks the response type: the first of `accepted_response_types` that is
/// known (both are supported), `SAMPLES` when the list is empty.
///
/// # Errors
///
/// [`ReadError::NoSupportedResponseType`] when every entry is unknown.
pub fn negotiate_response_type(req: &ReadRequest) -> Result<ResponseType, ReadError> {
    if req.accepted_response_types.is_empty() {
        return Ok(ResponseType::Samples);
    }
    req.accepted_response_types
        .iter()
        .find_map(|&t| ResponseType::try_from(t).ok())
        .ok_or_else(|| ReadError::NoSupportedResponseType {
            accepted: req.accepted_response_types.clone(),
        })
}

/// Encodes a `SAMPLES` response as protobuf (compress it with
/// [`crate::snappy::compress_snappy`] before sending).
pub fn encode_read_response(resp: &ReadResponse) -> Vec<u8> {
    resp.encode_to_vec()
}

/// Appends one `STREAMED_XOR_CHUNKS` frame holding `msg` to `out`: uvarint
/// length, big-endian CRC-32C of the message, message. Like Prometheus'
/// writer, an empty message (no series, query index 0) produces no frame.
pub fn write_chunked_frame(out: &mut Vec<u8>, msg: &ChunkedReadResponse) {
    let len = msg.encoded_len();
    if len == 0 {
        return;
    }
    let start = out.len();
    // usize always fits u64 on supported targets.
    prost::encoding::encode_varint(len as u64, out);
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let msg_at = out.len();
    out.reserve(len);
    if msg.encode(out).is_err() {
        // Unreachable: a Vec grows on demand, so prost never runs out of
        // room. Leave no partial frame behind all the same.
        out.truncate(start);
        return;
    }
    let crc = crc32c::crc32c(out.get(msg_at..).unwrap_or_default());
    if let Some(slot) = out.get_mut(crc_at..msg_at) {
        slot.copy_from_slice(&crc.to_be_bytes());
    }
}

/// Iterates over the message bytes of the frames in a streamed body,
/// checking lengths and checksums. Stops after the first error.
#[derive(Debug, Clone)]
pub struct ChunkedFrameReader<'a> {
    buf: &'a [u8],
    offset: usize,
    max_frame_len: usize,
    failed: bool,
}

impl<'a> ChunkedFrameReader<'a> {
    /// A reader over `buf` rejecting frames longer than `max_frame_len`.
    pub fn new(buf: &'a [u8], max_frame_len: usize) -> Self {
        Self {
            buf,
            offset: 0,
            max_frame_len,
            failed: false,
        }
    }

    fn next_frame(&mut self) -> Result<&'a [u8], FrameError> {
        let offset = self.offset;
        let mut rest = self.buf;
        let len = prost::encoding::decode_varint(&mut rest)
            .map_err(|_| FrameError::BadLength { offset })?;
        let too_large = FrameError::TooLarge {
            offset,
            len,
            limit: self.max_frame_len,
        };
        let msg_len = usize::try_from(len).map_err(|_| too_large.clone())?;
        if msg_len > self.max_frame_len {
            return Err(too_large);
        }
        let needed = msg_len.saturating_add(4);
        let truncated = FrameError::Truncated {
            offset,
            needed,
            remaining: rest.len(),
        };
        let (crc_bytes, rest) = rest.split_first_chunk::<4>().ok_or(truncated.clone())?;
        let (msg, rest) = rest.split_at_checked(msg_len).ok_or(truncated)?;
        let expected = u32::from_be_bytes(*crc_bytes);
        let actual = crc32c::crc32c(msg);
        if expected != actual {
            return Err(FrameError::ChecksumMismatch {
                offset,
                expected,
                actual,
            });
        }
        self.offset += self.buf.len() - rest.len();
        self.buf = rest;
        Ok(msg)
    }

    /// Reads and decodes the next frame; `None` at the end of the body.
    pub fn next_response(&mut self) -> Option<Result<ChunkedReadResponse, FrameError>> {
        let offset = self.offset;
        self.next().map(|frame| {
            frame.and_then(|bytes| {
                ChunkedReadResponse::decode(bytes)
                    .map_err(|source| FrameError::Decode { offset, source })
            })
        })
    }
}

impl<'a> Iterator for ChunkedFrameReader<'a> {
    type Item = Result<&'a [u8], FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let frame = self.next_frame();
        if frame.is_err() {
            self.failed = true;
        }
        Some(frame)
    }
}

/// Decodes every frame of a streamed body.
///
/// # Errors
///
/// The first [`FrameError`].
pub fn read_chunked_frames(
    buf: &[u8],
    max_frame_len: usize,
) -> Result<Vec<ChunkedReadResponse>, FrameError> {
    let mut reader = ChunkedFrameReader::new(buf, max_frame_len);
    std::iter::from_fn(|| reader.next_response()).collect()
}

/// Builds the `ChunkedSeries` of one series from sorted labels and samples,
/// cutting XOR chunks at `max_samples_per_chunk` samples.
///
/// # Errors
///
/// As [`crate::xor_chunk::encode_xor_chunks`].
pub fn chunked_series(
    labels: Vec<prompb::Label>,
    samples: &[(i64, f64)],
    max_samples_per_chunk: usize,
) -> Result<prompb::ChunkedSeries, crate::xor_chunk::XorChunkError> {
    Ok(prompb::ChunkedSeries {
        labels,
        chunks: crate::xor_chunk::encode_xor_chunks(samples, max_samples_per_chunk)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::{Label, LabelMatcher, Query, QueryResult, Sample, TimeSeries};
    use crate::xor_chunk::decode_prometheus_xor_chunk;
    use proptest::prelude::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn response(query_index: i64, n: usize) -> ChunkedReadResponse {
        let samples: Vec<(i64, f64)> = (0..n)
            .map(|i| (i as i64 * 15_000, i as f64 * 0.5))
            .collect();
        ChunkedReadResponse {
            chunked_series: vec![
                chunked_series(
                    vec![label("__name__", "up"), label("job", "node")],
                    &samples,
                    120,
                )
                .unwrap(),
            ],
            query_index,
        }
    }

    #[test]
    fn read_request_decodes_and_negotiates() {
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![LabelMatcher {
                    r#type: prompb::label_matcher::Type::Re as i32,
                    name: "job".into(),
                    value: "no.*".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![7, ResponseType::StreamedXorChunks as i32, 0],
        };
        let decoded = decode_read_request(&req.encode_to_vec()).unwrap();
        assert_eq!(decoded, req);
        assert_eq!(
            negotiate_response_type(&decoded).unwrap(),
            ResponseType::StreamedXorChunks
        );

        let empty = ReadRequest::default();
        assert_eq!(
            negotiate_response_type(&empty).unwrap(),
            ResponseType::Samples
        );

        let unknown = ReadRequest {
            accepted_response_types: vec![5, 9],
            ..ReadRequest::default()
        };
        let err = negotiate_response_type(&unknown).unwrap_err();
        assert_eq!(
            err,
            ReadError::NoSupportedResponseType {
                accepted: vec![5, 9]
            }
        );
        assert!(err.to_string().contains("[5, 9]"));

        assert!(matches!(
            decode_read_request(&[0x0a, 0x05]),
            Err(ReadError::Decode(_))
        ));
    }

    #[test]
    fn samples_response_round_trips() {
        let resp = ReadResponse {
            results: vec![QueryResult {
                timeseries: vec![TimeSeries {
                    labels: vec![label("__name__", "up")],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
                    ..TimeSeries::default()
                }],
            }],
        };
        let bytes = encode_read_response(&resp);
        assert_eq!(ReadResponse::decode(bytes.as_slice()).unwrap(), resp);
    }

    #[test]
    fn frame_layout_is_uvarint_then_big_endian_crc32c() {
        let msg = response(3, 5);
        let mut out = Vec::new();
        write_chunked_frame(&mut out, &msg);
        let body = msg.encode_to_vec();
        let mut expected = Vec::new();
        prost::encoding::encode_varint(body.len() as u64, &mut expected);
        expected.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(out, expected);
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The standard CRC-32C check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn frames_round_trip_and_xor_chunks_decode() {
        let msgs = [response(0, 300), response(1, 1), response(2, 0)];
        let mut out = Vec::new();
        for m in &msgs {
            write_chunked_frame(&mut out, m);
        }
        let back = read_chunked_frames(&out, 1 << 20).unwrap();
        assert_eq!(back, msgs);
        let first = &back[0].chunked_series[0];
        let decoded: Vec<(i64, f64)> = first
            .chunks
            .iter()
            .flat_map(|c| decode_prometheus_xor_chunk(&c.data).unwrap())
            .collect();
        assert_eq!(decoded.len(), 300);
        assert_eq!(decoded[299], (299 * 15_000, 149.5));
    }

    #[test]
    fn empty_message_writes_no_frame() {
        let mut out = Vec::new();
        write_chunked_frame(&mut out, &ChunkedReadResponse::default());
        assert!(out.is_empty());
    }

    #[test]
    fn crc_mismatch_is_detected() {
        let mut out = Vec::new();
        write_chunked_frame(&mut out, &response(0, 10));
        let first_len = out.len();
        write_chunked_frame(&mut out, &response(1, 10));
        // Flip one bit in the second frame's message.
        let last = out.len() - 1;
        out[last] ^= 0x01;
        let mut reader = ChunkedFrameReader::new(&out, 1 << 20);
        assert!(reader.next().unwrap().is_ok());
        match reader.next() {
            Some(Err(FrameError::ChecksumMismatch { offset, .. })) => assert_eq!(offset, first_len),
            other => panic!("expected checksum mismatch, got {other:?}"),
        }
        assert!(reader.next().is_none(), "reader stops after an error");
    }

    #[test]
    fn frame_limits_and_truncation() {
        let mut out = Vec::new();
        write_chunked_frame(&mut out, &response(0, 50));
        let err = read_chunked_frames(&out, 10).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                offset: 0,
                limit: 10,
                ..
            }
        ));
        for cut in 1..out.len() {
            assert!(
                read_chunked_frames(&out[..cut], 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(read_chunked_frames(&[], 1 << 20).unwrap(), vec![]);
        // Length prefix of 2^63.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(matches!(
            read_chunked_frames(&huge, usize::MAX),
            Err(FrameError::TooLarge { .. } | FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_message_with_good_crc_is_a_decode_error() {
        let garbage = [0x0a, 0x05];
        let mut out = vec![garbage.len() as u8];
        out.extend_from_slice(&crc32c::crc32c(&garbage).to_be_bytes());
        out.extend_from_slice(&garbage);
        assert!(matches!(
            read_chunked_frames(&out, 1 << 20),
            Err(FrameError::Decode { offset: 0, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn frame_stream_round_trips(sizes in proptest::collection::vec(0usize..200, 0..6)) {
            let msgs: Vec<ChunkedReadResponse> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| response(i as i64 + 1, n))
                .collect();
            let mut out = Vec::new();
            for m in &msgs {
                write_chunked_frame(&mut out, m);
            }
            prop_assert_eq!(read_chunked_frames(&out, 1 << 20).unwrap(), msgs);
        }

        #[test]
        fn garbage_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut reader = ChunkedFrameReader::new(&data, 1 << 16);
            let mut n = 0;
            while let Some(r) = reader.next_response() {
                n += 1;
                prop_assert!(n <= data.len(), "each frame consumes at least 5 bytes");
                if r.is_err() { break; }
            }
        }
    }
}
