//! Owned message types of protobuf package `prometheus`: remote write 1.0 and
//! remote read.
//!
//! The schema of record is `proto/prometheus/types.proto` and
//! `proto/prometheus/remote.proto` in this crate. These structs mirror those
//! files field by field, written by hand with `#[derive(prost::Message)]`, so
//! the build needs neither `protoc` nor a build script. Field tags here must
//! equal the field numbers there; the tests in
//! [`remote_write`](crate::remote_write) encode these types with prost and
//! decode the bytes with the zero-copy parser, which keeps the two in step.
//!
//! Use these types where allocation does not matter (remote read, tests,
//! clients). The write path should use
//! [`decode_write_v1`](crate::remote_write::decode_write_v1), which is an
//! order of magnitude faster than `WriteRequest::decode`.

/// Body of a remote write 1.0 request (`prometheus.WriteRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Series with their samples, exemplars and histograms.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric family metadata (type, help, unit). Field 2 is reserved.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// Metadata of one metric family (`prometheus.MetricMetadata`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// A [`metric_metadata::MetricType`] value.
    #[prost(enumeration = "metric_metadata::MetricType", tag = "1")]
    pub r#type: i32,
    /// Family name, e.g. `http_requests_total`.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// HELP text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// UNIT text.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Nested types of [`MetricMetadata`].
pub mod metric_metadata {
    /// Kind of a metric family.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// Type not known.
        Unknown = 0,
        /// Monotonic counter.
        Counter = 1,
        /// Gauge.
        Gauge = 2,
        /// Histogram (classic or native).
        Histogram = 3,
        /// Gauge histogram.
        Gaugehistogram = 4,
        /// Summary.
        Summary = 5,
        /// Info metric.
        Info = 6,
        /// State set.
        Stateset = 7,
    }
}

/// One float sample (`prometheus.Sample`).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value; the stale marker is the NaN with bits `0x7ff0000000000002`.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// An exemplar (`prometheus.Exemplar`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Exemplar labels, typically `trace_id`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Observed value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch; 0 means unset.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// A native histogram sample (`prometheus.Histogram`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observation count (integer or float flavour).
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket schema: -4..=8 exponential, -53 custom.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Count in the zero bucket (integer or float flavour).
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    /// Spans of negative buckets.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket counts as deltas (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts, absolute (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Spans of positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket counts as deltas (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts, absolute (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// A [`histogram::ResetHint`] value.
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket upper bounds (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// Nested types of [`Histogram`].
pub mod histogram {
    /// Counter-reset hint.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        /// Reset must be detected by the receiver.
        Unknown = 0,
        /// A counter reset happened.
        Yes = 1,
        /// No counter reset happened.
        No = 2,
        /// Gauge histogram.
        Gauge = 3,
    }

    /// Total observation count.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        /// Integer histogram count.
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        /// Float histogram count.
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    /// Zero-bucket count.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        /// Integer histogram zero count.
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        /// Float histogram zero count.
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }
}

/// A run of consecutive histogram buckets (`prometheus.BucketSpan`).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span (or the start index for the first span).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Number of consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// A series and its data (`prometheus.TimeSeries`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name, including `__name__`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histogram samples.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// One label pair (`prometheus.Label`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A label set (`prometheus.Labels`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Labels {
    /// The labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
}

/// A label matcher of a remote read query (`prometheus.LabelMatcher`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// A [`label_matcher::Type`] value.
    #[prost(enumeration = "label_matcher::Type", tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// Nested types of [`LabelMatcher`].
pub mod label_matcher {
    /// Matcher operator.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        /// `=`
        Eq = 0,
        /// `!=`
        Neq = 1,
        /// `=~`
        Re = 2,
        /// `!~`
        Nre = 3,
    }
}

/// Query hints from the reader's PromQL engine (`prometheus.ReadHints`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    /// Query step in milliseconds.
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// Surrounding function or aggregation, e.g. `rate`.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start of the data needed, in milliseconds.
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End of the data needed, in milliseconds.
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Label names of the surrounding aggregation.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` (true) or `without` (false) list.
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of the range-vector selector in milliseconds.
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// An encoded chunk of one series (`prometheus.Chunk`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// First sample timestamp (inclusive), milliseconds.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample timestamp (inclusive), milliseconds.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// A [`chunk::Encoding`] value.
    #[prost(enumeration = "chunk::Encoding", tag = "3")]
    pub r#type: i32,
    /// Chunk bytes in Prometheus' chunk format for `type`.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// Nested types of [`Chunk`].
pub mod chunk {
    /// Chunk encodings, numbered as Prometheus' `chunkenc.Encoding`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Encoding {
        /// Not a valid encoding.
        Unknown = 0,
        /// Gorilla-style float chunk; see [`crate::xor_chunk`].
        Xor = 1,
        /// Integer native histogram chunk.
        Histogram = 2,
        /// Float native histogram chunk.
        FloatHistogram = 3,
    }
}

/// One series with its chunks (`prometheus.ChunkedSeries`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    /// Labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Chunks in start-time order; they may overlap.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// Body of a remote read request (`prometheus.ReadRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries; answered in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// [`read_request::ResponseType`] values, most preferred first; empty
    /// means `SAMPLES`.
    #[prost(enumeration = "read_request::ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// Nested types of [`ReadRequest`].
pub mod read_request {
    /// Framing of a remote read response.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResponseType {
        /// One snappy-compressed [`ReadResponse`](super::ReadResponse).
        Samples = 0,
        /// A stream of CRC-framed
        /// [`ChunkedReadResponse`](super::ChunkedReadResponse) messages.
        StreamedXorChunks = 1,
    }
}

/// The `SAMPLES` remote read response (`prometheus.ReadResponse`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// One result per query, in request order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// One remote read query (`prometheus.Query`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Start of the range, milliseconds (inclusive).
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End of the range, milliseconds (inclusive).
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Label matchers; all must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// Optional hints.
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// Series answering one query (`prometheus.QueryResult`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// Matching series; samples in timestamp order.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One frame of a `STREAMED_XOR_CHUNKS` response
/// (`prometheus.ChunkedReadResponse`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    /// Series (or parts of one series) with their chunks.
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Index of the query in [`ReadRequest::queries`].
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}
