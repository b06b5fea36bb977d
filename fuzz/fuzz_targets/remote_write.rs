//! Fuzzes the remote write / remote read decoders of `strata-proto` with
//! arbitrary bytes.
//!
//! Input layout: byte 0 selects the decoder, the rest is the payload.
//! * `0`: remote write 1.0 — the zero-copy decoder must accept exactly what
//!   prost accepts, agree on the series count, and the label rules must
//!   never panic on what it yields.
//! * `1`: remote write 2.0 — whatever the zero-copy decoder accepts, prost
//!   accepts too (prost does not check symbol references).
//! * `2`: snappy block decompression with a 1 MiB limit, then 1.0 decoding.
//! * `3`: Prometheus XOR chunk decoding; what decodes re-encodes and
//!   decodes to the same samples, bit for bit.
//! * `4`: `STREAMED_XOR_CHUNKS` frame reading.
//!
//! Run: `cargo fuzz run remote_write` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_proto::prost::Message;
use strata_proto::remote_read::ChunkedFrameReader;
use strata_proto::remote_write::{SeriesRef, WriteVisitor, decode_write_v1, decode_write_v2};
use strata_proto::validate::{LabelRules, NameCharset};
use strata_proto::{DecodeError, prompb, snappy, write_v2, xor_chunk};

/// Runs both label policies on every series and counts them.
#[derive(Default)]
struct Check {
    series: usize,
}

impl<'a> WriteVisitor<'a> for Check {
    type Error = DecodeError;
    fn series(&mut self, s: &SeriesRef<'a, '_>) -> Result<(), DecodeError> {
        self.series += 1;
        for charset in [NameCharset::Legacy, NameCharset::Utf8] {
            let rules = LabelRules {
                charset,
                ..LabelRules::default()
            };
            let _ = rules.check(s.index, s.labels).map_err(|e| e.to_string());
        }
        let _ = s.exemplars().map(|e| e.labels.len()).sum::<usize>();
        Ok(())
    }
}

fn v1(payload: &[u8]) {
    let mut check = Check::default();
    let fast = decode_write_v1(payload, &mut check);
    let oracle = prompb::WriteRequest::decode(payload);
    match (&fast, &oracle) {
        (Ok(stats), Ok(req)) => {
            assert_eq!(stats.series, req.timeseries.len());
            assert_eq!(check.series, req.timeseries.len());
        }
        (Err(e), Err(_)) => {
            let _ = e.to_string();
        }
        _ => panic!("fast decoder and prost disagree: {fast:?} vs {oracle:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => v1(payload),
        1 => {
            let mut check = Check::default();
            if decode_write_v2(payload, &mut check).is_ok() {
                assert!(write_v2::Request::decode(payload).is_ok());
            }
        }
        2 => {
            if let Ok(raw) = snappy::decompress_snappy(payload, 1 << 20) {
                assert!(raw.len() <= 1 << 20);
                v1(&raw);
            }
        }
        3 => {
            if let Ok(samples) = xor_chunk::decode_prometheus_xor_chunk(payload) {
                let again = xor_chunk::encode_prometheus_xor_chunk(&samples)
                    .expect("decoded samples fit a chunk");
                let back =
                    xor_chunk::decode_prometheus_xor_chunk(&again).expect("decode what we encoded");
                assert_eq!(back.len(), samples.len());
                for (a, b) in back.iter().zip(&samples) {
                    assert_eq!(a.0, b.0);
                    assert_eq!(a.1.to_bits(), b.1.to_bits());
                }
            }
        }
        _ => {
            let mut reader = ChunkedFrameReader::new(payload, 1 << 20);
            while let Some(frame) = reader.next_response() {
                if frame.is_err() {
                    break;
                }
            }
        }
    }
});
