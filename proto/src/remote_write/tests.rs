//! Tests of the zero-copy write decoder against prost (the oracle), on
//! random messages, mutated messages, truncations and hand-made edge cases.

use super::*;
use crate::{prompb, write_v2};
use proptest::prelude::*;
use prost::Message;

// ---------------------------------------------------------------------------
// Owned capture of what the visitor saw.

type OwnedLabels = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
struct OwnedSeries {
    index: usize,
    labels: OwnedLabels,
    /// (timestamp, value bits) so NaNs compare.
    samples: Vec<(i64, u64)>,
    exemplars: Vec<(OwnedLabels, u64, i64)>,
    histograms: Vec<Vec<u8>>,
    metadata: Option<(MetricType, String, String)>,
    created: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct OwnedMetadata {
    index: usize,
    family: String,
    metric_type: MetricType,
    help: String,
    unit: String,
}

#[derive(Default)]
struct Collect {
    series: Vec<OwnedSeries>,
    metadata: Vec<OwnedMetadata>,
}

fn own_labels(labels: &[LabelRef<'_>]) -> OwnedLabels {
    labels
        .iter()
        .map(|l| (l.name.to_owned(), l.value.to_owned()))
        .collect()
}

impl<'a> WriteVisitor<'a> for Collect {
    type Error = DecodeError;

    fn series(&mut self, s: &SeriesRef<'a, '_>) -> Result<(), DecodeError> {
        assert_eq!(s.exemplars().len(), s.exemplar_count());
        self.series.push(OwnedSeries {
            index: s.index,
            labels: own_labels(s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| (x.timestamp_ms, x.value.to_bits()))
                .collect(),
            exemplars: s
                .exemplars()
                .map(|e| (own_labels(e.labels), e.value.to_bits(), e.timestamp_ms))
                .collect(),
            histograms: s.histograms.iter().map(|h| h.to_vec()).collect(),
            metadata: s
                .metadata
                .map(|m| (m.metric_type, m.help.to_owned(), m.unit.to_owned())),
            created: s.created_timestamp_ms,
        });
        Ok(())
    }

    fn metadata(&mut self, m: &MetadataRef<'a>) -> Result<(), DecodeError> {
        self.metadata.push(OwnedMetadata {
            index: m.index,
            family: m.metric_family_name.to_owned(),
            metric_type: m.metric_type,
            help: m.help.to_owned(),
            unit: m.unit.to_owned(),
        });
        Ok(())
    }
}

/// A visitor that only counts: the cheapest possible consumer.
struct Nop;

impl<'a> WriteVisitor<'a> for Nop {
    type Error = DecodeError;
    fn series(&mut self, _: &SeriesRef<'a, '_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

fn collect_v1(buf: &[u8]) -> Result<(Collect, WriteStats), DecodeError> {
    let mut c = Collect::default();
    let stats = decode_write_v1(buf, &mut c)?;
    Ok((c, stats))
}

fn collect_v2(buf: &[u8]) -> Result<(Collect, WriteStats), DecodeError> {
    let mut c = Collect::default();
    let stats = decode_write_v2(buf, &mut c)?;
    Ok((c, stats))
}

// ---------------------------------------------------------------------------
// Expected captures computed from the prost structs.

fn expected_v1(req: &prompb::WriteRequest) -> (Vec<OwnedSeries>, Vec<OwnedMetadata>) {
    let labels = |ls: &[prompb::Label]| -> OwnedLabels {
        ls.iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    };
    let series = req
        .timeseries
        .iter()
        .enumerate()
        .map(|(index, ts)| OwnedSeries {
            index,
            labels: labels(&ts.labels),
            samples: ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect(),
            exemplars: ts
                .exemplars
                .iter()
                .map(|e| (labels(&e.labels), e.value.to_bits(), e.timestamp))
                .collect(),
            histograms: ts.histograms.iter().map(Message::encode_to_vec).collect(),
            metadata: None,
            created: 0,
        })
        .collect();
    let metadata = req
        .metadata
        .iter()
        .enumerate()
        .map(|(index, m)| OwnedMetadata {
            index,
            family: m.metric_family_name.clone(),
            metric_type: MetricType::from_wire(m.r#type),
            help: m.help.clone(),
            unit: m.unit.clone(),
        })
        .collect();
    (series, metadata)
}

fn expected_v2(req: &write_v2::Request) -> Vec<OwnedSeries> {
    let sym = |r: u32| req.symbols[r as usize].clone();
    let labels = |refs: &[u32]| -> OwnedLabels {
        refs.chunks_exact(2)
            .map(|p| (sym(p[0]), sym(p[1])))
            .collect()
    };
    req.timeseries
        .iter()
        .enumerate()
        .map(|(index, ts)| OwnedSeries {
            index,
            labels: labels(&ts.labels_refs),
            samples: ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect(),
            exemplars: ts
                .exemplars
                .iter()
                .map(|e| (labels(&e.labels_refs), e.value.to_bits(), e.timestamp))
                .collect(),
            histograms: ts.histograms.iter().map(Message::encode_to_vec).collect(),
            metadata: ts.metadata.map(|m| {
                (
                    MetricType::from_wire(m.r#type),
                    sym(m.help_ref),
                    sym(m.unit_ref),
                )
            }),
            created: ts.created_timestamp,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Strategies.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,12}",
        ".{0,8}",
        Just(String::new()),
        Just("__name__".to_owned()),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::from_bits(STALE_NAN_BITS)),
        Just(0.0),
        Just(f64::NAN),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        1_600_000_000_000i64..1_800_000_000_000,
        Just(0)
    ]
}

fn v1_label() -> impl Strategy<Value = prompb::Label> {
    (text(), text()).prop_map(|(name, value)| prompb::Label { name, value })
}

fn v1_histogram() -> impl Strategy<Value = prompb::Histogram> {
    use prompb::histogram::{Count, ZeroCount};
    let span = (any::<i32>(), any::<u32>())
        .prop_map(|(offset, length)| prompb::BucketSpan { offset, length });
    (
        prop_oneof![
            Just(None),
            any::<u64>().prop_map(|c| Some(Count::CountInt(c))),
            (0.0f64..1e9).prop_map(|c| Some(Count::CountFloat(c))),
        ],
        any::<i32>(),
        prop_oneof![
            Just(None),
            any::<u64>().prop_map(|c| Some(ZeroCount::ZeroCountInt(c))),
            (0.0f64..1e9).prop_map(|c| Some(ZeroCount::ZeroCountFloat(c))),
        ],
        proptest::collection::vec(span, 0..3),
        proptest::collection::vec(any::<i64>(), 0..4),
        proptest::collection::vec(0.0f64..1e6, 0..4),
        (0i32..4, timestamp()),
    )
        .prop_map(
            |(count, schema, zero_count, spans, deltas, counts, (reset_hint, timestamp))| {
                prompb::Histogram {
                    count,
                    sum: 12.5,
                    schema,
                    zero_threshold: 1e-128,
                    zero_count,
                    negative_spans: spans.clone(),
                    negative_deltas: deltas.clone(),
                    negative_counts: counts.clone(),
                    positive_spans: spans,
                    positive_deltas: deltas,
                    positive_counts: counts.clone(),
                    reset_hint,
                    timestamp,
                    custom_values: counts,
                }
            },
        )
}

fn v1_series() -> impl Strategy<Value = prompb::TimeSeries> {
    let sample =
        (value(), timestamp()).prop_map(|(value, timestamp)| prompb::Sample { value, timestamp });
    let exemplar = (
        proptest::collection::vec(v1_label(), 0..3),
        value(),
        timestamp(),
    )
        .prop_map(|(labels, value, timestamp)| prompb::Exemplar {
            labels,
            value,
            timestamp,
        });
    (
        proptest::collection::vec(v1_label(), 0..6),
        proptest::collection::vec(sample, 0..4),
        proptest::collection::vec(exemplar, 0..3),
        proptest::collection::vec(v1_histogram(), 0..2),
    )
        .prop_map(
            |(labels, samples, exemplars, histograms)| prompb::TimeSeries {
                labels,
                samples,
                exemplars,
                histograms,
            },
        )
}

fn v1_request() -> impl Strategy<Value = prompb::WriteRequest> {
    let metadata = (any::<i32>(), text(), text(), text()).prop_map(|(t, family, help, unit)| {
        prompb::MetricMetadata {
            r#type: t,
            metric_family_name: family,
            help,
            unit,
        }
    });
    (
        proptest::collection::vec(v1_series(), 0..6),
        proptest::collection::vec(metadata, 0..3),
    )
        .prop_map(|(timeseries, metadata)| prompb::WriteRequest {
            timeseries,
            metadata,
        })
}

fn v2_request() -> impl Strategy<Value = write_v2::Request> {
    (
        proptest::collection::vec(text(), 0..12),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u32>(), 0..5),
                proptest::collection::vec((value(), timestamp()), 0..4),
                proptest::collection::vec(
                    (
                        proptest::collection::vec(any::<u32>(), 0..2),
                        value(),
                        timestamp(),
                    ),
                    0..3,
                ),
                proptest::option::of((0i32..9, any::<u32>(), any::<u32>())),
                timestamp(),
                proptest::collection::vec(v1_histogram(), 0..2),
            ),
            0..6,
        ),
    )
        .prop_map(|(mut symbols, series)| {
            // Symbols start with "" as the spec requires; refs are taken
            // modulo the table size, labels come in pairs.
            symbols.insert(0, String::new());
            let n = symbols.len() as u32;
            let pairs = |raw: Vec<u32>| -> Vec<u32> {
                raw.into_iter().flat_map(|r| [r % n, (r / 7) % n]).collect()
            };
            let to_v2_hist = |h: prompb::Histogram| {
                write_v2::Histogram::decode(h.encode_to_vec().as_slice()).unwrap()
            };
            let timeseries = series
                .into_iter()
                .map(
                    |(refs, samples, exemplars, metadata, created, hists)| write_v2::TimeSeries {
                        labels_refs: pairs(refs),
                        samples: samples
                            .into_iter()
                            .map(|(value, timestamp)| write_v2::Sample { value, timestamp })
                            .collect(),
                        histograms: hists.into_iter().map(to_v2_hist).collect(),
                        exemplars: exemplars
                            .into_iter()
                            .map(|(refs, value, timestamp)| write_v2::Exemplar {
                                labels_refs: pairs(refs),
                                value,
                                timestamp,
                            })
                            .collect(),
                        metadata: metadata.map(|(t, h, u)| write_v2::Metadata {
                            r#type: t,
                            help_ref: h % n,
                            unit_ref: u % n,
                        }),
                        created_timestamp: created,
                    },
                )
                .collect();
            write_v2::Request {
                symbols,
                timeseries,
            }
        })
}

/// A valid encoding with random edits: flips, insertions, deletions.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    proptest::collection::vec((0..len, any::<u8>(), 0u8..3), 1..4).prop_map(move |edits| {
        let mut b = base.clone();
        for (pos, byte, op) in edits {
            let pos = pos.min(b.len());
            match op {
                0 if pos < b.len() => b[pos] = byte,
                1 => b.insert(pos, byte),
                _ if pos < b.len() => {
                    b.remove(pos);
                }
                _ => b.push(byte),
            }
        }
        b
    })
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// prost encodes, the fast decoder reads back the same content.
    #[test]
    fn v1_matches_prost(req in v1_request()) {
        let bytes = req.encode_to_vec();
        let (got, stats) = collect_v1(&bytes).unwrap();
        // prost's own decoding is the oracle (prost does not encode -0.0,
        // so the original struct is not always what is on the wire).
        let (series, metadata) = expected_v1(&prompb::WriteRequest::decode(bytes.as_slice()).unwrap());
        prop_assert_eq!(&got.series, &series);
        prop_assert_eq!(&got.metadata, &metadata);
        prop_assert_eq!(stats.series, req.timeseries.len());
        prop_assert_eq!(stats.samples, req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>());
        prop_assert_eq!(stats.exemplars, req.timeseries.iter().map(|t| t.exemplars.len()).sum::<usize>());
        prop_assert_eq!(stats.histograms, req.timeseries.iter().map(|t| t.histograms.len()).sum::<usize>());
        prop_assert_eq!(stats.metadata, req.metadata.len());
        prop_assert_eq!(stats.unknown_fields, 0);
        // The raw histogram bytes decode with prost to the original.
        for (ts, s) in req.timeseries.iter().zip(&got.series) {
            for (h, raw) in ts.histograms.iter().zip(&s.histograms) {
                prop_assert_eq!(&prompb::Histogram::decode(raw.as_slice()).unwrap().encode_to_vec(), &h.encode_to_vec());
            }
        }
    }

    #[test]
    fn v2_matches_prost(req in v2_request()) {
        let bytes = req.encode_to_vec();
        let (got, stats) = collect_v2(&bytes).unwrap();
        prop_assert_eq!(&got.series, &expected_v2(&write_v2::Request::decode(bytes.as_slice()).unwrap()));
        prop_assert!(got.metadata.is_empty());
        prop_assert_eq!(stats.series, req.timeseries.len());
        prop_assert_eq!(stats.samples, req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>());
        prop_assert_eq!(stats.metadata, req.timeseries.iter().filter(|t| t.metadata.is_some()).count());
    }

    /// On arbitrary edits of a valid 1.0 body, the fast decoder accepts
    /// exactly when prost does, and then agrees with it.
    #[test]
    fn v1_accepts_what_prost_accepts(bytes in v1_request().prop_flat_map(|r| mutated(r.encode_to_vec()))) {
        let fast = collect_v1(&bytes);
        let oracle = prompb::WriteRequest::decode(bytes.as_slice());
        prop_assert_eq!(fast.is_ok(), oracle.is_ok(), "fast: {:?}, prost: {:?}", fast.as_ref().err(), oracle.as_ref().err());
        if let (Ok((got, _)), Ok(req)) = (fast, oracle) {
            let (series, metadata) = expected_v1(&req);
            prop_assert_eq!(got.series.len(), series.len());
            for (g, e) in got.series.iter().zip(&series) {
                prop_assert_eq!(&g.labels, &e.labels);
                prop_assert_eq!(&g.samples, &e.samples);
                prop_assert_eq!(&g.exemplars, &e.exemplars);
                prop_assert_eq!(g.histograms.len(), e.histograms.len());
            }
            prop_assert_eq!(got.metadata, metadata);
        }
    }

    /// On random bytes: never panics, and agrees with prost.
    #[test]
    fn v1_random_bytes_agree_with_prost(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let fast = decode_write_v1(&bytes, &mut Nop);
        let oracle = prompb::WriteRequest::decode(bytes.as_slice());
        prop_assert_eq!(fast.is_ok(), oracle.is_ok());
    }

    /// On edits of a valid 2.0 body: never panics, and whatever the fast
    /// decoder accepts prost accepts too (prost does not check symbol refs).
    #[test]
    fn v2_mutations_never_panic(bytes in v2_request().prop_flat_map(|r| mutated(r.encode_to_vec()))) {
        if decode_write_v2(&bytes, &mut Nop).is_ok() {
            prop_assert!(write_v2::Request::decode(bytes.as_slice()).is_ok());
        }
    }

    #[test]
    fn v2_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if decode_write_v2(&bytes, &mut Nop).is_ok() {
            prop_assert!(write_v2::Request::decode(bytes.as_slice()).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Every prefix of a valid body: no panic, same verdict as prost (a cut
    /// on a field boundary is a valid, shorter message).
    #[test]
    fn every_truncation_agrees_with_prost(req in v1_request(), req2 in v2_request()) {
        let bytes = req.encode_to_vec();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let fast = decode_write_v1(prefix, &mut Nop);
            let oracle = prompb::WriteRequest::decode(prefix);
            prop_assert_eq!(fast.is_ok(), oracle.is_ok(), "cut at {}", cut);
        }
        let bytes = req2.encode_to_vec();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            if decode_write_v2(prefix, &mut Nop).is_ok() {
                prop_assert!(write_v2::Request::decode(prefix).is_ok(), "cut at {}", cut);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-made wire bytes.

fn varint(v: u64, out: &mut Vec<u8>) {
    prost::encoding::encode_varint(v, out);
}

fn key(field: u32, wire_type: u8, out: &mut Vec<u8>) {
    varint(u64::from(field) << 3 | u64::from(wire_type), out);
}

fn len_field(field: u32, payload: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn label_bytes(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    len_field(1, name, &mut b);
    len_field(2, value, &mut b);
    b
}

fn sample_bytes(value: f64, ts: i64) -> Vec<u8> {
    let mut b = Vec::new();
    key(1, 1, &mut b);
    b.extend_from_slice(&value.to_bits().to_le_bytes());
    key(2, 0, &mut b);
    varint(ts as u64, &mut b);
    b
}

fn series_bytes(labels: &[(&[u8], &[u8])], samples: &[(f64, i64)]) -> Vec<u8> {
    let mut ts = Vec::new();
    for (n, v) in labels {
        len_field(1, &label_bytes(n, v), &mut ts);
    }
    for &(v, t) in samples {
        len_field(2, &sample_bytes(v, t), &mut ts);
    }
    ts
}

fn good_series() -> Vec<u8> {
    series_bytes(&[(b"__name__", b"up"), (b"job", b"node")], &[(1.0, 1000)])
}

fn err_v1(body: &[u8]) -> String {
    decode_write_v1(body, &mut Nop).unwrap_err().to_string()
}

fn err_v2(body: &[u8]) -> String {
    decode_write_v2(body, &mut Nop).unwrap_err().to_string()
}

#[test]
fn invalid_utf8_names_the_series_label_and_field() {
    let mut body = Vec::new();
    len_field(1, &good_series(), &mut body);
    let bad = series_bytes(
        &[(b"__name__", b"up"), (b"job", b"x"), (b"path", b"ok\xff")],
        &[],
    );
    len_field(1, &bad, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[1].labels[2].value: invalid UTF-8 (valid up to byte 2)"
    );
    let bad_name = series_bytes(&[(b"\xc3", b"v")], &[]);
    let mut body = Vec::new();
    len_field(1, &bad_name, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[0].labels[0].name: invalid UTF-8 (valid up to byte 0)"
    );
}

#[test]
fn wire_type_mismatch_is_rejected() {
    // Sample.value sent as a varint.
    let mut sample = Vec::new();
    key(1, 0, &mut sample);
    varint(5, &mut sample);
    let mut ts = Vec::new();
    len_field(2, &sample, &mut ts);
    let mut body = Vec::new();
    len_field(1, &ts, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[0].samples[0].value: wire type VARINT where I64 was expected"
    );
    // timeseries sent as a varint.
    let mut body = Vec::new();
    key(1, 0, &mut body);
    varint(1, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[0]: wire type VARINT where LEN was expected"
    );
    assert!(prompb::WriteRequest::decode(body.as_slice()).is_err());
}

#[test]
fn length_overflow_is_rejected() {
    let mut body = Vec::new();
    len_field(1, &good_series(), &mut body);
    key(1, 2, &mut body);
    varint(u64::MAX, &mut body);
    assert_eq!(
        err_v1(&body),
        format!(
            "WriteRequest: length prefix {} exceeds the 0 bytes left",
            u64::MAX
        )
    );
    // A label length running past its series.
    let mut ts = Vec::new();
    key(1, 2, &mut ts);
    varint(10, &mut ts);
    ts.extend_from_slice(&[0x0a, 0x02, b'a']);
    let mut body = Vec::new();
    len_field(1, &ts, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[0]: length prefix 10 exceeds the 3 bytes left"
    );
}

#[test]
fn truncated_sample_is_rejected() {
    let mut sample = Vec::new();
    key(1, 1, &mut sample);
    sample.extend_from_slice(&[0, 0, 0]);
    let mut ts = Vec::new();
    len_field(2, &sample, &mut ts);
    let mut body = Vec::new();
    len_field(1, &ts, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[0].samples[0]: truncated 64-bit value"
    );
}

#[test]
fn unknown_fields_are_skipped_including_groups() {
    let mut ts = Vec::new();
    // Unknown fields inside a series: varint, fixed32, group, fixed64.
    key(9, 0, &mut ts);
    varint(300, &mut ts);
    key(10, 5, &mut ts);
    ts.extend_from_slice(&[1, 2, 3, 4]);
    key(11, 3, &mut ts);
    key(1, 0, &mut ts);
    varint(1, &mut ts);
    key(11, 4, &mut ts);
    ts.extend_from_slice(&good_series());
    key(12, 1, &mut ts);
    ts.extend_from_slice(&[0; 8]);
    let mut body = Vec::new();
    // Reserved field 2 and an unknown field at the top level.
    len_field(2, b"cortex", &mut body);
    len_field(1, &ts, &mut body);
    key(99, 0, &mut body);
    varint(7, &mut body);
    let (got, stats) = collect_v1(&body).unwrap();
    assert_eq!(stats.unknown_fields, 2);
    assert_eq!(stats.series, 1);
    assert_eq!(
        got.series[0].labels,
        vec![
            ("__name__".to_owned(), "up".to_owned()),
            ("job".to_owned(), "node".to_owned())
        ]
    );
    assert_eq!(got.series[0].samples, vec![(1000, 1.0f64.to_bits())]);
    assert!(prompb::WriteRequest::decode(body.as_slice()).is_ok());
}

#[test]
fn repeated_scalars_keep_the_last_value() {
    let mut sample = sample_bytes(1.0, 1000);
    sample.extend(sample_bytes(2.0, 2000));
    let mut label = label_bytes(b"a", b"1");
    len_field(2, b"2", &mut label);
    let mut ts = Vec::new();
    len_field(1, &label, &mut ts);
    len_field(2, &sample, &mut ts);
    let mut body = Vec::new();
    len_field(1, &ts, &mut body);
    let (got, _) = collect_v1(&body).unwrap();
    assert_eq!(got.series[0].labels, vec![("a".to_owned(), "2".to_owned())]);
    assert_eq!(got.series[0].samples, vec![(2000, 2.0f64.to_bits())]);
    let prost = prompb::WriteRequest::decode(body.as_slice()).unwrap();
    assert_eq!(prost.timeseries[0].samples[0].timestamp, 2000);
}

#[test]
fn stale_nan_is_preserved() {
    let mut body = Vec::new();
    let ts = series_bytes(
        &[(b"__name__", b"up")],
        &[(f64::from_bits(STALE_NAN_BITS), 5)],
    );
    len_field(1, &ts, &mut body);
    let (got, _) = collect_v1(&body).unwrap();
    assert_eq!(got.series[0].samples, vec![(5, STALE_NAN_BITS)]);
}

#[test]
fn malformed_histogram_is_rejected_with_its_field() {
    let mut h = Vec::new();
    key(4, 1, &mut h); // schema must be a varint
    h.extend_from_slice(&[0; 8]);
    let mut ts = good_series();
    len_field(4, &h, &mut ts);
    let mut body = Vec::new();
    len_field(1, &ts, &mut body);
    assert_eq!(
        err_v1(&body),
        "timeseries[0].histograms[0].schema: wire type I64 where VARINT was expected"
    );
    assert!(prompb::WriteRequest::decode(body.as_slice()).is_err());
}

#[test]
fn metadata_is_visited_in_v1() {
    let req = prompb::WriteRequest {
        timeseries: vec![],
        metadata: vec![prompb::MetricMetadata {
            r#type: prompb::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: "".into(),
        }],
    };
    let (got, stats) = collect_v1(&req.encode_to_vec()).unwrap();
    assert_eq!(stats.metadata, 1);
    assert_eq!(
        got.metadata,
        vec![OwnedMetadata {
            index: 0,
            family: "http_requests_total".into(),
            metric_type: MetricType::Counter,
            help: "Requests.".into(),
            unit: "".into(),
        }]
    );
    assert_eq!(MetricType::Counter.as_str(), "counter");
}

struct FailAt(usize, usize);

#[derive(Debug)]
enum VisitError {
    Decode(#[allow(dead_code, reason = "read through Debug only")] DecodeError),
    Full,
}

impl From<DecodeError> for VisitError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl<'a> WriteVisitor<'a> for FailAt {
    type Error = VisitError;
    fn series(&mut self, _: &SeriesRef<'a, '_>) -> Result<(), VisitError> {
        self.1 += 1;
        if self.1 > self.0 {
            return Err(VisitError::Full);
        }
        Ok(())
    }
}

#[test]
fn visitor_errors_stop_decoding() {
    let mut body = Vec::new();
    for _ in 0..5 {
        len_field(1, &good_series(), &mut body);
    }
    let mut v = FailAt(2, 0);
    assert!(matches!(
        decode_write_v1(&body, &mut v),
        Err(VisitError::Full)
    ));
    assert_eq!(v.1, 3);
    let mut v = FailAt(10, 0);
    assert_eq!(decode_write_v1(&body, &mut v).unwrap().series, 5);
    // Decode errors arrive through the visitor's error type.
    body.push(0x0a);
    assert!(matches!(
        decode_write_v1(&body, &mut FailAt(10, 0)),
        Err(VisitError::Decode(_))
    ));
}

#[test]
fn series_metric_name_helper() {
    let mut body = Vec::new();
    len_field(1, &good_series(), &mut body);
    struct Name(Option<String>);
    impl<'a> WriteVisitor<'a> for Name {
        type Error = DecodeError;
        fn series(&mut self, s: &SeriesRef<'a, '_>) -> Result<(), DecodeError> {
            self.0 = s.metric_name().map(str::to_owned);
            Ok(())
        }
    }
    let mut v = Name(None);
    decode_write_v1(&body, &mut v).unwrap();
    assert_eq!(v.0.as_deref(), Some("up"));
}

// ---------------------------------------------------------------------------
// Remote write 2.0 specifics.

fn v2_body(symbols: &[&str], series: &[Vec<u8>], symbols_last: bool) -> Vec<u8> {
    let mut body = Vec::new();
    let mut syms = Vec::new();
    for s in symbols {
        len_field(4, s.as_bytes(), &mut syms);
    }
    if !symbols_last {
        body.extend_from_slice(&syms);
    }
    for s in series {
        len_field(5, s, &mut body);
    }
    if symbols_last {
        body.extend_from_slice(&syms);
    }
    body
}

fn packed_refs(field: u32, refs: &[u64]) -> Vec<u8> {
    let mut p = Vec::new();
    for &r in refs {
        varint(r, &mut p);
    }
    let mut out = Vec::new();
    len_field(field, &p, &mut out);
    out
}

#[test]
fn v2_packed_and_unpacked_refs_and_symbols_after_series() {
    let symbols = ["", "__name__", "up", "job", "node"];
    // Packed in two runs, then one unpacked pair.
    let mut ts = packed_refs(1, &[1]);
    ts.extend(packed_refs(1, &[2, 3]));
    key(1, 0, &mut ts);
    varint(4, &mut ts);
    len_field(2, &sample_bytes(3.5, 42), &mut ts);
    for symbols_last in [false, true] {
        let body = v2_body(&symbols, std::slice::from_ref(&ts), symbols_last);
        let (got, stats) = collect_v2(&body).unwrap();
        assert_eq!(stats.series, 1);
        assert_eq!(
            got.series[0].labels,
            vec![
                ("__name__".to_owned(), "up".to_owned()),
                ("job".to_owned(), "node".to_owned())
            ]
        );
        assert_eq!(got.series[0].samples, vec![(42, 3.5f64.to_bits())]);
        let prost = write_v2::Request::decode(body.as_slice()).unwrap();
        assert_eq!(prost.timeseries[0].labels_refs, vec![1, 2, 3, 4]);
    }
}

#[test]
fn v2_symbol_out_of_range_names_the_ref() {
    let ts = packed_refs(1, &[1, 2, 1, 9]);
    let body = v2_body(&["", "a", "b"], &[Vec::new(), ts], false);
    assert_eq!(
        err_v2(&body),
        "timeseries[1].labels_refs[3]: symbol reference 9 out of range (the request has 3 symbols)"
    );
}

#[test]
fn v2_odd_refs_are_rejected() {
    let ts = packed_refs(1, &[1, 2, 1]);
    let body = v2_body(&["", "a", "b"], &[ts], false);
    assert_eq!(
        err_v2(&body),
        "timeseries[0].labels_refs: odd number of label references (3); they must come in name/value pairs"
    );
}

#[test]
fn v2_exemplar_and_metadata_refs_are_checked() {
    let mut ex = packed_refs(1, &[1, 5]);
    key(2, 1, &mut ex);
    ex.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
    let mut ts = packed_refs(1, &[1, 2]);
    len_field(4, &ex, &mut ts);
    let body = v2_body(&["", "trace_id", "abc"], &[ts], false);
    assert_eq!(
        err_v2(&body),
        "timeseries[0].exemplars[0].labels_refs[1]: symbol reference 5 out of range (the request has 3 symbols)"
    );

    let mut meta = Vec::new();
    key(1, 0, &mut meta);
    varint(1, &mut meta);
    key(3, 0, &mut meta);
    varint(7, &mut meta);
    let mut ts = packed_refs(1, &[1, 2]);
    len_field(5, &meta, &mut ts);
    let body = v2_body(&["", "a", "b"], &[ts], false);
    assert_eq!(
        err_v2(&body),
        "timeseries[0].metadata.help_ref: symbol reference 7 out of range (the request has 3 symbols)"
    );
}

#[test]
fn v2_metadata_occurrences_merge_and_created_timestamp() {
    let symbols = ["", "__name__", "req_total", "Requests.", "seconds"];
    let mut m1 = Vec::new();
    key(1, 0, &mut m1);
    varint(1, &mut m1);
    key(3, 0, &mut m1);
    varint(3, &mut m1);
    let mut m2 = Vec::new();
    key(4, 0, &mut m2);
    varint(4, &mut m2);
    let mut ts = packed_refs(1, &[1, 2]);
    len_field(5, &m1, &mut ts);
    len_field(5, &m2, &mut ts);
    key(6, 0, &mut ts);
    varint(1_700_000_000_000, &mut ts);
    let body = v2_body(&symbols, &[ts], false);
    let (got, stats) = collect_v2(&body).unwrap();
    assert_eq!(stats.metadata, 1);
    assert_eq!(
        got.series[0].metadata,
        Some((MetricType::Counter, "Requests.".into(), "seconds".into()))
    );
    assert_eq!(got.series[0].created, 1_700_000_000_000);
    let prost = write_v2::Request::decode(body.as_slice()).unwrap();
    assert_eq!(
        prost.timeseries[0].metadata,
        Some(write_v2::Metadata {
            r#type: 1,
            help_ref: 3,
            unit_ref: 4
        })
    );
}

#[test]
fn v2_default_metadata_with_empty_symbol_table() {
    let mut ts = Vec::new();
    len_field(5, &[], &mut ts);
    let body = v2_body(&[], &[ts], false);
    let (got, _) = collect_v2(&body).unwrap();
    assert_eq!(
        got.series[0].metadata,
        Some((MetricType::Unknown, String::new(), String::new()))
    );
}

#[test]
fn v2_bad_symbol_utf8() {
    let mut body = Vec::new();
    len_field(4, b"", &mut body);
    len_field(4, b"\xfe", &mut body);
    assert_eq!(
        err_v2(&body),
        "symbols[1]: invalid UTF-8 (valid up to byte 0)"
    );
}

#[test]
fn v1_body_read_as_v2_is_empty_with_unknown_fields() {
    let mut body = Vec::new();
    len_field(1, &good_series(), &mut body);
    len_field(1, &good_series(), &mut body);
    let stats = decode_write_v2(&body, &mut Nop).unwrap();
    assert_eq!(stats.series, 0);
    assert_eq!(stats.unknown_fields, 2);
}

#[test]
fn empty_bodies_are_empty_requests() {
    assert_eq!(
        decode_write_v1(&[], &mut Nop).unwrap(),
        WriteStats::default()
    );
    assert_eq!(
        decode_write_v2(&[], &mut Nop).unwrap(),
        WriteStats::default()
    );
}
