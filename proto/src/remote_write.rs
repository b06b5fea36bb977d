//! Zero-copy decoding of Prometheus remote write 1.0 (`prometheus.WriteRequest`)
//! and 2.0 (`io.prometheus.write.v2.Request`) bodies.
//!
//! # Why not prost
//!
//! Decoding a write request into owned prost structs allocates a `String`
//! per label name and value and a `Vec` per repeated field: about 2 µs per
//! sample, which makes protobuf decoding, not storage, the ingest
//! bottleneck. [`decode_write_v1`] and [`decode_write_v2`] instead walk the
//! wire format over the (already snappy-decompressed) request body and hand
//! one series at a time to a [`WriteVisitor`]. Label names and values are
//! `&str` slices of the body, validated as UTF-8; samples, labels and
//! exemplars are collected in scratch vectors that are cleared and reused
//! for every series of a request, so the number of allocations per request
//! is constant, not proportional to its labels or samples.
//!
//! # Invariants
//!
//! - Decoding follows the protobuf rules that prost follows: fields may come
//!   in any order, unknown fields are skipped (counted in
//!   [`WriteStats::unknown_fields`] at the top level), a scalar field seen
//!   twice keeps its last value, packed and unpacked encodings of repeated
//!   scalars are both accepted, a known field with the wrong wire type is an
//!   error. The tests check that the decoder accepts exactly what
//!   `prost::Message::decode` accepts for remote write 1.0.
//! - Native histograms are structurally validated (every known field has the
//!   right wire type) and handed to the visitor as the raw bytes of each
//!   `Histogram` message; decode them with `prost::Message::decode` into
//!   [`crate::prompb::Histogram`] or [`crate::write_v2::Histogram`] when
//!   they are needed.
//! - In 2.0 every symbol reference is checked against the symbol table, and
//!   the symbol table is read first even if it follows the series on the
//!   wire, as protobuf allows.
//! - Nothing here checks label *semantics* (sorting, duplicates, charset):
//!   that is [`crate::validate`], so the server chooses its policy.
//!
//! # Partial visits
//!
//! The visitor sees series in wire order as they are decoded. If the body is
//! malformed after series `n`, series `0..n` have already been visited when
//! the error is returned. A receiver that wants all-or-nothing semantics can
//! decode twice (first with a visitor that does nothing — decoding is cheap)
//! or buffer what it visits before committing.

use crate::wire::{self, DecodeError, DecodeErrorKind, Reader, Value};

/// `Content-Type` of a remote write 1.0 body.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";
/// `Content-Type` of a remote write 2.0 body.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// Header carrying the sender's protocol version (`0.1.0` or `2.0.0`).
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// 2.0 response header: float samples written.
pub const SAMPLES_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Samples-Written";
/// 2.0 response header: histogram samples written.
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Histograms-Written";
/// 2.0 response header: exemplars written.
pub const EXEMPLARS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Exemplars-Written";
/// Bit pattern of the Prometheus staleness marker (a NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One label of a series or exemplar, borrowed from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LabelRef<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value.
    pub value: &'a str,
}

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FloatSample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; compare bits with [`STALE_NAN_BITS`] to detect staleness.
    pub value: f64,
}

/// One exemplar of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExemplarRef<'a, 's> {
    /// Exemplar labels (typically `trace_id`).
    pub labels: &'s [LabelRef<'a>],
    /// Observed value.
    pub value: f64,
    /// Milliseconds since the Unix epoch; 0 means unset.
    pub timestamp_ms: i64,
}

/// Kind of a metric family, as numbered by both protocol versions.
/// Values the decoder does not know map to [`MetricType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MetricType {
    /// Unknown or unspecified.
    #[default]
    Unknown,
    /// Counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram.
    Histogram,
    /// Gauge histogram.
    GaugeHistogram,
    /// Summary.
    Summary,
    /// Info.
    Info,
    /// State set.
    StateSet,
}

impl MetricType {
    /// Maps the wire number (1.0 `MetricMetadata.type`, 2.0 `Metadata.type`).
    pub fn from_wire(v: i32) -> Self {
        match v {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::StateSet,
            _ => Self::Unknown,
        }
    }

    /// The name used by the Prometheus metadata API (`counter`, `gauge`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
        }
    }
}

/// Metadata attached to a 2.0 series (`TimeSeries.metadata`), with symbol
/// references resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesMetadata<'a> {
    /// Metric type.
    pub metric_type: MetricType,
    /// HELP text ("" when absent).
    pub help: &'a str,
    /// Unit ("" when absent).
    pub unit: &'a str,
}

/// One 1.0 `WriteRequest.metadata` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataRef<'a> {
    /// Position in `WriteRequest.metadata`.
    pub index: usize,
    /// Metric family name.
    pub metric_family_name: &'a str,
    /// Metric type.
    pub metric_type: MetricType,
    /// HELP text.
    pub help: &'a str,
    /// Unit.
    pub unit: &'a str,
}

/// Internal exemplar record: labels are a range of the shared label scratch.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RawExemplar {
    labels_start: usize,
    labels_end: usize,
    value: f64,
    timestamp_ms: i64,
}

/// A decoded series, borrowed from the request body (`'a`) and from the
/// decoder's scratch buffers (`'s`, valid during one visitor call).
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a, 's> {
    /// Position of the series in the request's `timeseries` field.
    pub index: usize,
    /// Labels in wire order (not validated; see [`crate::validate`]).
    pub labels: &'s [LabelRef<'a>],
    /// Float samples in wire order.
    pub samples: &'s [FloatSample],
    /// Encoded native histogram messages, structurally validated; decode
    /// with [`crate::prompb::Histogram`] / [`crate::write_v2::Histogram`].
    pub histograms: &'s [&'a [u8]],
    /// 2.0 only: the series' metadata, if the field was present.
    pub metadata: Option<SeriesMetadata<'a>>,
    /// 2.0 only: created (start) timestamp in ms; 0 means unset.
    pub created_timestamp_ms: i64,
    exemplars: &'s [RawExemplar],
    exemplar_labels: &'s [LabelRef<'a>],
}

impl<'a, 's> SeriesRef<'a, 's> {
    /// The series' exemplars in wire order.
    pub fn exemplars(&self) -> impl ExactSizeIterator<Item = ExemplarRef<'a, 's>> + use<'a, 's> {
        let labels = self.exemplar_labels;
        self.exemplars.iter().map(move |e| ExemplarRef {
            labels: labels.get(e.labels_start..e.labels_end).unwrap_or_default(),
            value: e.value,
            timestamp_ms: e.timestamp_ms,
        })
    }

    /// Number of exemplars.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.len()
    }

    /// The value of the `__name__` label, if present.
    pub fn metric_name(&self) -> Option<&'a str> {
        self.labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value)
    }
}

/// Receives the content of a write request as it is decoded.
///
/// `Error` must be constructible from [`DecodeError`] so that decoding and
/// visiting errors travel through one `Result`; a visitor that cannot fail
/// can use `type Error = DecodeError`.
pub trait WriteVisitor<'a> {
    /// Error type returned by the visitor and by the decode function.
    type Error: From<DecodeError>;

    /// Called once per `TimeSeries`, in wire order.
    fn series(&mut self, series: &SeriesRef<'a, '_>) -> Result<(), Self::Error>;

    /// Called once per 1.0 `WriteRequest.metadata` entry (never for 2.0,
    /// where metadata is part of [`SeriesRef::metadata`]).
    fn metadata(&mut self, metadata: &MetadataRef<'a>) -> Result<(), Self::Error> {
        let _ = metadata;
        Ok(())
    }
}

/// Counts of what a request contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// `TimeSeries` messages.
    pub series: usize,
    /// Float samples.
    pub samples: usize,
    /// Exemplars.
    pub exemplars: usize,
    /// Native histogram samples.
    pub histograms: usize,
    /// 1.0: metadata entries; 2.0: series carrying a metadata field.
    pub metadata: usize,
    /// Top-level fields not in the schema (e.g. a 1.0 body decoded as 2.0
    /// shows up here as unknown fields 1 and 3 and no series).
    pub unknown_fields: usize,
}

impl WriteStats {
    fn add_series(&mut self, s: &SeriesRef<'_, '_>) {
        self.series += 1;
        self.samples += s.samples.len();
        self.exemplars += s.exemplars.len();
        self.histograms += s.histograms.len();
        if s.metadata.is_some() {
            self.metadata += 1;
        }
    }
}

/// Buffers reused for every series of one request.
#[derive(Default)]
struct Scratch<'a> {
    labels: Vec<LabelRef<'a>>,
    samples: Vec<FloatSample>,
    exemplars: Vec<RawExemplar>,
    exemplar_labels: Vec<LabelRef<'a>>,
    histograms: Vec<&'a [u8]>,
    /// 2.0: label references of the current series.
    refs: Vec<u64>,
    /// 2.0: label references of the current exemplar.
    exemplar_refs: Vec<u64>,
    /// 1.0 fast path: name/value byte ranges of the leading label run.
    label_spans: Vec<[usize; 4]>,
}

impl<'a> Scratch<'a> {
    fn clear(&mut self) {
        self.labels.clear();
        self.samples.clear();
        self.exemplars.clear();
        self.exemplar_labels.clear();
        self.histograms.clear();
        self.refs.clear();
        self.exemplar_refs.clear();
    }

    fn series(
        &self,
        index: usize,
        metadata: Option<SeriesMetadata<'a>>,
        created_timestamp_ms: i64,
    ) -> SeriesRef<'a, '_> {
        SeriesRef {
            index,
            labels: &self.labels,
            samples: &self.samples,
            histograms: &self.histograms,
            metadata,
            created_timestamp_ms,
            exemplars: &self.exemplars,
            exemplar_labels: &self.exemplar_labels,
        }
    }
}

/// Decodes a remote write 1.0 `WriteRequest` (already decompressed) and
/// calls `visitor` for each series and metadata entry.
///
/// # Errors
///
/// A [`DecodeError`] (converted into `V::Error`) naming the field path of
/// the first malformed field, or the first error the visitor returns.
pub fn decode_write_v1<'a, V>(buf: &'a [u8], visitor: &mut V) -> Result<WriteStats, V::Error>
where
    V: WriteVisitor<'a> + ?Sized,
{
    const ROOT: &str = "WriteRequest";
    let mut scratch = Scratch::default();
    let mut stats = WriteStats::default();
    let mut reader = Reader::new(buf);
    let mut metadata_index = 0usize;
    while let Some((number, value)) = reader.next_field().map_err(|e| e.in_message(ROOT))? {
        match number {
            1 => {
                let index = stats.series;
                scratch.clear();
                value
                    .len()
                    .and_then(|b| parse_series_v1(b, &mut scratch))
                    .map_err(|e| e.at("timeseries", Some(index)).in_message(ROOT))?;
                let series = scratch.series(index, None, 0);
                stats.add_series(&series);
                visitor.series(&series)?;
            }
            3 => {
                let index = metadata_index;
                metadata_index += 1;
                let metadata = value
                    .len()
                    .and_then(|b| parse_metadata_v1(b, index))
                    .map_err(|e| e.at("metadata", Some(index)).in_message(ROOT))?;
                stats.metadata += 1;
                visitor.metadata(&metadata)?;
            }
            _ => stats.unknown_fields += 1,
        }
    }
    Ok(stats)
}

/// Decodes a remote write 2.0 `Request` (already decompressed) and calls
/// `visitor` for each series, with symbol references resolved to `&str`.
///
/// # Errors
///
/// A [`DecodeError`] (converted into `V::Error`) naming the field path of
/// the first malformed field or out-of-range symbol reference, or the first
/// error the visitor returns.
pub fn decode_write_v2<'a, V>(buf: &'a [u8], visitor: &mut V) -> Result<WriteStats, V::Error>
where
    V: WriteVisitor<'a> + ?Sized,
{
    const ROOT: &str = "Request";
    let mut stats = WriteStats::default();

    // Pass 1: the symbol table, wherever it is on the wire.
    let mut symbols: Vec<&'a str> = Vec::new();
    let mut reader = Reader::new(buf);
    let mut series_count = 0usize;
    while let Some((number, value)) = reader.next_field().map_err(|e| e.in_message(ROOT))? {
        match number {
            4 => {
                let index = symbols.len();
                let symbol = value
                    .str()
                    .map_err(|e| e.at("symbols", Some(index)).in_message(ROOT))?;
                symbols.push(symbol);
            }
            5 => {
                value
                    .len()
                    .map_err(|e| e.at("timeseries", Some(series_count)).in_message(ROOT))?;
                series_count += 1;
            }
            _ => stats.unknown_fields += 1,
        }
    }

    // Pass 2: the series. Keys and lengths were validated by pass 1.
    let mut scratch = Scratch::default();
    let mut reader = Reader::new(buf);
    while let Some((number, value)) = reader.next_field().map_err(|e| e.in_message(ROOT))? {
        if number != 5 {
            continue;
        }
        let index = stats.series;
        scratch.clear();
        let (metadata, created) = value
            .len()
            .and_then(|b| parse_series_v2(b, &symbols, &mut scratch))
            .map_err(|e| e.at("timeseries", Some(index)).in_message(ROOT))?;
        let series = scratch.series(index, metadata, created);
        stats.add_series(&series);
        visitor.series(&series)?;
    }
    Ok(stats)
}

/// Decodes a `Label` message.
#[inline]
fn parse_label(b: &[u8]) -> Result<LabelRef<'_>, DecodeError> {
    let mut label = LabelRef::default();
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => label.name = value.str().map_err(|e| e.at("name", None))?,
            2 => label.value = value.str().map_err(|e| e.at("value", None))?,
            _ => {}
        }
    }
    Ok(label)
}

/// Decodes a `Sample` message (same layout in 1.0 and 2.0).
#[inline]
fn parse_sample(b: &[u8]) -> Result<FloatSample, DecodeError> {
    if let Some(sample) = parse_simple_sample(b) {
        return Ok(sample);
    }
    let mut sample = FloatSample::default();
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => sample.value = value.double().map_err(|e| e.at("value", None))?,
            2 => sample.timestamp_ms = value.int64().map_err(|e| e.at("timestamp", None))?,
            _ => {}
        }
    }
    Ok(sample)
}

/// Fast path for the layout every known sender produces for a `Label`
/// whose name and value are shorter than 128 bytes:
/// `[0x0a n name..]? [0x12 m value..]?` (proto3 omits empty strings).
/// Returns `(name range, value range)` relative to `msg`, or `None` for
/// any other layout, which the generic parser then handles.
#[inline]
fn simple_label_layout(msg: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let mut pos = 0;
    let mut name = (0, 0);
    let mut value = (0, 0);
    if let [0x0a, n, ..] = *msg
        && n < 0x80
    {
        name = (2, 2 + usize::from(n));
        pos = name.1;
    }
    if let Some(&[0x12, m, ..]) = msg.get(pos..)
        && m < 0x80
    {
        value = (pos + 2, pos + 2 + usize::from(m));
        pos = value.1;
    }
    (pos == msg.len()).then_some((name.0, name.1, value.0, value.1))
}

/// Decodes the run of `labels` fields at the start of a 1.0 `TimeSeries`
/// when it has the simple layout (one-byte lengths, see
/// [`simple_label_layout`]). All framing bytes of such a run are ASCII, so
/// the whole run is valid UTF-8 exactly when every name and value is, and
/// one `from_utf8` call replaces two per label. Returns the bytes consumed;
/// 0 (and nothing pushed) when the fast path does not apply.
fn parse_simple_label_run<'a>(
    b: &'a [u8],
    spans: &mut Vec<[usize; 4]>,
    labels: &mut Vec<LabelRef<'a>>,
) -> usize {
    // Pass 1: find the run and the name/value spans, checking structure only.
    spans.clear();
    let mut end = 0;
    while let Some(&[0x0a, len, ..]) = b.get(end..)
        && len < 0x80
    {
        let msg_start = end + 2;
        let msg_end = msg_start + usize::from(len);
        match b.get(msg_start..msg_end).and_then(simple_label_layout) {
            Some((ns, ne, vs, ve)) => {
                spans.push([
                    msg_start + ns,
                    msg_start + ne,
                    msg_start + vs,
                    msg_start + ve,
                ]);
                end = msg_end;
            }
            None => break,
        }
    }
    if end == 0 {
        return 0;
    }
    // One UTF-8 check for the whole run.
    let Some(run) = b.get(..end).and_then(|r| std::str::from_utf8(r).ok()) else {
        return 0;
    };
    // Pass 2: slice names and values out of the validated run. Every span
    // starts and ends next to an ASCII framing byte or the run's end, so
    // these lookups succeed; a failure falls back to the generic parser.
    let first = labels.len();
    for &[ns, ne, vs, ve] in spans.iter() {
        match (run.get(ns..ne), run.get(vs..ve)) {
            (Some(name), Some(value)) => labels.push(LabelRef { name, value }),
            _ => {
                labels.truncate(first);
                return 0;
            }
        }
    }
    end
}

/// Fast path for `Sample` as senders write it: the value as field 1
/// (fixed64) then the timestamp as field 2 (varint), either omitted when
/// zero. Returns `None` for any other layout.
#[inline]
fn parse_simple_sample(b: &[u8]) -> Option<FloatSample> {
    let mut sample = FloatSample::default();
    let mut rest = b;
    if let Some((&0x09, tail)) = rest.split_first() {
        let (bits, tail) = tail.split_first_chunk::<8>()?;
        sample.value = f64::from_bits(u64::from_le_bytes(*bits));
        rest = tail;
    }
    if let Some((&0x10, mut tail)) = rest.split_first() {
        sample.timestamp_ms = wire::read_varint(&mut tail).ok()? as i64;
        rest = tail;
    }
    rest.is_empty().then_some(sample)
}

/// Decodes a 1.0 `TimeSeries` into the scratch buffers.
fn parse_series_v1<'a>(b: &'a [u8], sc: &mut Scratch<'a>) -> Result<(), DecodeError> {
    let consumed = parse_simple_label_run(b, &mut sc.label_spans, &mut sc.labels);
    let mut reader = Reader::new(b.get(consumed..).unwrap_or_default());
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => {
                let i = sc.labels.len();
                let label = value
                    .len()
                    .and_then(parse_label)
                    .map_err(|e| e.at("labels", Some(i)))?;
                sc.labels.push(label);
            }
            2 => {
                let i = sc.samples.len();
                let sample = value
                    .len()
                    .and_then(parse_sample)
                    .map_err(|e| e.at("samples", Some(i)))?;
                sc.samples.push(sample);
            }
            3 => {
                let i = sc.exemplars.len();
                value
                    .len()
                    .and_then(|b| parse_exemplar_v1(b, sc))
                    .map_err(|e| e.at("exemplars", Some(i)))?;
            }
            4 => {
                let i = sc.histograms.len();
                let h = value
                    .len()
                    .and_then(|b| check_histogram(b).map(|()| b))
                    .map_err(|e| e.at("histograms", Some(i)))?;
                sc.histograms.push(h);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Decodes a 1.0 `Exemplar`, appending its labels to the scratch.
fn parse_exemplar_v1<'a>(b: &'a [u8], sc: &mut Scratch<'a>) -> Result<(), DecodeError> {
    let labels_start = sc.exemplar_labels.len();
    let mut exemplar = RawExemplar {
        labels_start,
        labels_end: labels_start,
        value: 0.0,
        timestamp_ms: 0,
    };
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => {
                let i = sc.exemplar_labels.len() - labels_start;
                let label = value
                    .len()
                    .and_then(parse_label)
                    .map_err(|e| e.at("labels", Some(i)))?;
                sc.exemplar_labels.push(label);
            }
            2 => exemplar.value = value.double().map_err(|e| e.at("value", None))?,
            3 => exemplar.timestamp_ms = value.int64().map_err(|e| e.at("timestamp", None))?,
            _ => {}
        }
    }
    exemplar.labels_end = sc.exemplar_labels.len();
    sc.exemplars.push(exemplar);
    Ok(())
}

/// Decodes a 1.0 `MetricMetadata`.
fn parse_metadata_v1(b: &[u8], index: usize) -> Result<MetadataRef<'_>, DecodeError> {
    let mut m = MetadataRef {
        index,
        metric_family_name: "",
        metric_type: MetricType::Unknown,
        help: "",
        unit: "",
    };
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => {
                m.metric_type =
                    MetricType::from_wire(value.int32().map_err(|e| e.at("type", None))?);
            }
            2 => {
                m.metric_family_name = value.str().map_err(|e| e.at("metric_family_name", None))?;
            }
            4 => m.help = value.str().map_err(|e| e.at("help", None))?,
            5 => m.unit = value.str().map_err(|e| e.at("unit", None))?,
            _ => {}
        }
    }
    Ok(m)
}

/// Field names of `Histogram`, for error paths.
fn histogram_field_name(number: u32) -> &'static str {
    match number {
        1 => "count_int",
        2 => "count_float",
        3 => "sum",
        4 => "schema",
        5 => "zero_threshold",
        6 => "zero_count_int",
        7 => "zero_count_float",
        8 => "negative_spans",
        9 => "negative_deltas",
        10 => "negative_counts",
        11 => "positive_spans",
        12 => "positive_deltas",
        13 => "positive_counts",
        14 => "reset_hint",
        15 => "timestamp",
        16 => "custom_values",
        _ => "unknown",
    }
}

/// Checks that every known field of a `Histogram` (1.0 and 2.0 share the
/// layout) has a wire type its schema allows, without building it.
fn check_histogram(b: &[u8]) -> Result<(), DecodeError> {
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        let checked = match number {
            1 | 4 | 6 | 14 | 15 => value.varint().map(drop),
            2 | 3 | 5 | 7 => value.fixed64().map(drop),
            8 | 11 => value.len().and_then(check_bucket_span),
            9 | 12 => wire::for_each_packed_varint(value, |_| Ok(())),
            10 | 13 | 16 => wire::check_packed_fixed64(value),
            _ => Ok(()),
        };
        checked.map_err(|e| e.at(histogram_field_name(number), None))?;
    }
    Ok(())
}

/// Checks a `BucketSpan` message.
fn check_bucket_span(b: &[u8]) -> Result<(), DecodeError> {
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => value.varint().map(drop).map_err(|e| e.at("offset", None))?,
            2 => value.varint().map(drop).map_err(|e| e.at("length", None))?,
            _ => {}
        }
    }
    Ok(())
}

/// Looks up a 2.0 symbol reference.
#[inline]
fn symbol<'a>(symbols: &[&'a str], reference: u64) -> Result<&'a str, DecodeError> {
    usize::try_from(reference)
        .ok()
        .and_then(|i| symbols.get(i))
        .copied()
        .ok_or_else(|| {
            DecodeError::new(DecodeErrorKind::SymbolOutOfRange {
                reference,
                symbols: symbols.len(),
            })
        })
}

/// Looks up an optional 2.0 reference (`help_ref`, `unit_ref`): 0 is the
/// protobuf default and reads as "" even when the sender left the symbol
/// table empty.
#[inline]
fn optional_symbol<'a>(symbols: &[&'a str], reference: u64) -> Result<&'a str, DecodeError> {
    if reference == 0 && symbols.is_empty() {
        return Ok("");
    }
    symbol(symbols, reference)
}

/// Resolves name/value reference pairs into labels. Errors are relative to
/// the `labels_refs` field.
fn resolve_label_refs<'a>(
    refs: &[u64],
    symbols: &[&'a str],
    out: &mut Vec<LabelRef<'a>>,
) -> Result<(), DecodeError> {
    if !refs.len().is_multiple_of(2) {
        return Err(
            DecodeError::new(DecodeErrorKind::OddLabelRefs { count: refs.len() })
                .at("labels_refs", None),
        );
    }
    for (pair, chunk) in refs.chunks_exact(2).enumerate() {
        if let &[name_ref, value_ref] = chunk {
            let name =
                symbol(symbols, name_ref).map_err(|e| e.at("labels_refs", Some(2 * pair)))?;
            let value =
                symbol(symbols, value_ref).map_err(|e| e.at("labels_refs", Some(2 * pair + 1)))?;
            out.push(LabelRef { name, value });
        }
    }
    Ok(())
}

/// Collects a (packed or unpacked) `labels_refs` occurrence.
#[inline]
fn collect_refs(value: Value<'_>, out: &mut Vec<u64>) -> Result<(), DecodeError> {
    wire::for_each_packed_varint(value, |r| {
        out.push(r);
        Ok(())
    })
    .map_err(|e| e.at("labels_refs", None))
}

/// Raw 2.0 `Metadata`; occurrences of the field merge, as protobuf requires
/// for a singular message field.
#[derive(Default, Clone, Copy)]
struct RawMetadata {
    metric_type: i32,
    help_ref: u64,
    unit_ref: u64,
}

fn merge_metadata_v2(b: &[u8], m: &mut RawMetadata) -> Result<(), DecodeError> {
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => m.metric_type = value.int32().map_err(|e| e.at("type", None))?,
            3 => m.help_ref = value.varint().map_err(|e| e.at("help_ref", None))?,
            4 => m.unit_ref = value.varint().map_err(|e| e.at("unit_ref", None))?,
            _ => {}
        }
    }
    Ok(())
}

/// Decodes a 2.0 `Exemplar`, resolving its labels into the scratch.
fn parse_exemplar_v2<'a>(
    b: &'a [u8],
    symbols: &[&'a str],
    sc: &mut Scratch<'a>,
) -> Result<(), DecodeError> {
    let labels_start = sc.exemplar_labels.len();
    let mut exemplar = RawExemplar {
        labels_start,
        labels_end: labels_start,
        value: 0.0,
        timestamp_ms: 0,
    };
    sc.exemplar_refs.clear();
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => collect_refs(value, &mut sc.exemplar_refs)?,
            2 => exemplar.value = value.double().map_err(|e| e.at("value", None))?,
            3 => exemplar.timestamp_ms = value.int64().map_err(|e| e.at("timestamp", None))?,
            _ => {}
        }
    }
    resolve_label_refs(&sc.exemplar_refs, symbols, &mut sc.exemplar_labels)?;
    exemplar.labels_end = sc.exemplar_labels.len();
    sc.exemplars.push(exemplar);
    Ok(())
}

/// Decodes a 2.0 `TimeSeries` into the scratch buffers; returns its
/// metadata and created timestamp.
fn parse_series_v2<'a>(
    b: &'a [u8],
    symbols: &[&'a str],
    sc: &mut Scratch<'a>,
) -> Result<(Option<SeriesMetadata<'a>>, i64), DecodeError> {
    let mut raw_metadata: Option<RawMetadata> = None;
    let mut created = 0i64;
    let mut reader = Reader::new(b);
    while let Some((number, value)) = reader.next_field()? {
        match number {
            1 => collect_refs(value, &mut sc.refs)?,
            2 => {
                let i = sc.samples.len();
                let sample = value
                    .len()
                    .and_then(parse_sample)
                    .map_err(|e| e.at("samples", Some(i)))?;
                sc.samples.push(sample);
            }
            3 => {
                let i = sc.histograms.len();
                let h = value
                    .len()
                    .and_then(|b| check_histogram(b).map(|()| b))
                    .map_err(|e| e.at("histograms", Some(i)))?;
                sc.histograms.push(h);
            }
            4 => {
                let i = sc.exemplars.len();
                value
                    .len()
                    .and_then(|b| parse_exemplar_v2(b, symbols, sc))
                    .map_err(|e| e.at("exemplars", Some(i)))?;
            }
            5 => {
                let m = raw_metadata.get_or_insert_default();
                value
                    .len()
                    .and_then(|b| merge_metadata_v2(b, m))
                    .map_err(|e| e.at("metadata", None))?;
            }
            6 => created = value.int64().map_err(|e| e.at("created_timestamp", None))?,
            _ => {}
        }
    }
    resolve_label_refs(&sc.refs, symbols, &mut sc.labels)?;
    let metadata = match raw_metadata {
        None => None,
        Some(m) => Some(SeriesMetadata {
            metric_type: MetricType::from_wire(m.metric_type),
            help: optional_symbol(symbols, m.help_ref)
                .map_err(|e| e.at("help_ref", None).at("metadata", None))?,
            unit: optional_symbol(symbols, m.unit_ref)
                .map_err(|e| e.at("unit_ref", None).at("metadata", None))?,
        }),
    };
    Ok((metadata, created))
}

#[cfg(test)]
mod tests;
