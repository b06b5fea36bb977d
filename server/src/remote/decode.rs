//! A remote write request, decoded and validated into one flat [`Batch`] that the engine
//! ingests without copying labels.
//!
//! # Why flat buffers
//!
//! `strata-proto`'s visitor hands out each series as slices borrowed from the decompressed
//! body, valid only during the visit. Instead of copying labels into owned `String`s, the
//! visitor appends every label of the request as a `(&str, &str)` pair (pointing into the body)
//! to one vector, every sample to another, and remembers per series the ranges it occupies. One
//! request therefore costs a constant number of allocations for labels and samples, however
//! many series it carries, and the engine validates and copies a label set only when it creates
//! a new series (`LabelInput` for `[(&str, &str)]`).
//!
//! # Validation
//!
//! Validation happens here, during the single decode pass, so that the request is decoded
//! completely (all-or-nothing for malformed bytes) before anything is stored:
//!
//! - label rules ([`LABEL_RULES`]: labels sorted, no duplicate or empty names, a non-empty
//!   `__name__`; names may be any UTF-8, as remote write 2.0 and Prometheus 3 allow) and the
//!   tenant's label limits: a violating series is dropped whole;
//! - samples more than [`CREATION_GRACE_PERIOD_MS`] ahead of the server's clock are dropped
//!   (Mimir's "creation grace period"): a sender with a broken clock must not create data that
//!   later real samples would collide with;
//! - native histograms are counted and reported as not stored (Strata does not store them yet);
//! - exemplars whose labels are invalid or whose timestamps are in the future are dropped and
//!   counted (they never fail a request, as in Prometheus).
//!
//! NaN and ±Inf are valid sample values; the stale-NaN bit pattern passes through untouched.
//! The 2.0 `created_timestamp` field is accepted and ignored.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::ops::Range;

use strata_engine::{Exemplar, IngestSeries, Label, Labels, MetricMetadata};
use strata_proto::remote_write::{MetadataRef, MetricType, SeriesRef};
use strata_proto::validate::{LabelErrorKind, LabelRules, NameCharset};
use strata_proto::{DecodeError, WriteStats, WriteVisitor, decode_write_v1, decode_write_v2};

use crate::limits::TenantLimits;

/// How far ahead of the server's clock a sample may be (ms): 10 minutes, as Mimir's default
/// creation grace period. Later samples are rejected as bad data.
pub const CREATION_GRACE_PERIOD_MS: i64 = 10 * 60 * 1000;

/// Error messages kept per request (the counts cover all of them).
pub const MAX_REPORTED_ERRORS: usize = 10;

/// The label policy of remote write: UTF-8 names (Prometheus 3, remote write 2.0), `__name__`
/// required and non-empty, empty values tolerated (they mean "label absent" and are dropped).
pub const LABEL_RULES: LabelRules = LabelRules {
    charset: NameCharset::Utf8,
    require_metric_name: true,
    reject_empty_values: false,
};

/// Longest label value shown in an error message before it is cut (bytes).
const MAX_SHOWN_VALUE: usize = 120;

/// Rejection reasons, as they appear in the `reason` label of
/// `strata_rejected_samples_total` and in error bodies. Engine reasons (`out_of_order`,
/// `duplicate_different_value`, `too_old`) come from `SampleError::reason`.
pub mod reason {
    /// Series without a `__name__` label (or without labels).
    pub const MISSING_METRIC_NAME: &str = "missing_metric_name";
    /// Empty or invalid metric name.
    pub const METRIC_NAME_INVALID: &str = "metric_name_invalid";
    /// Empty or invalid label name.
    pub const LABEL_INVALID: &str = "label_invalid";
    /// Labels not sorted by name.
    pub const LABELS_NOT_SORTED: &str = "labels_not_sorted";
    /// The same label name twice.
    pub const DUPLICATE_LABEL_NAMES: &str = "duplicate_label_names";
    /// Sample timestamp beyond the creation grace period.
    pub const TOO_FAR_IN_FUTURE: &str = "too_far_in_future";
    /// Native histogram samples (not stored yet).
    pub const NATIVE_HISTOGRAM: &str = "native_histogram_unsupported";
    /// New series refused by the tenant's series limit.
    pub const SERIES_LIMIT: &str = "series_limit";
    /// Labels the engine refused.
    pub const INVALID_LABELS: &str = "invalid_labels";
    /// Request refused by the ingestion rate limit.
    pub const RATE_LIMITED: &str = "rate_limited";
}

/// The protocol of a write request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Remote write 1.0, `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0, `io.prometheus.write.v2.Request`.
    V2,
}

impl Protocol {
    /// The protobuf message name.
    pub fn message_name(self) -> &'static str {
        match self {
            Protocol::V1 => "prometheus.WriteRequest",
            Protocol::V2 => "io.prometheus.write.v2.Request",
        }
    }

    /// The protocol name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "remote write 1.0",
            Protocol::V2 => "remote write 2.0",
        }
    }
}

/// Where one accepted series lives in the flat buffers of a [`Batch`].
#[derive(Clone, Debug)]
pub struct SeriesSpan {
    /// Range in [`Batch::pairs`].
    pub labels: Range<usize>,
    /// Range in [`Batch::samples`].
    pub samples: Range<usize>,
    /// Range in [`Batch::exemplars`].
    pub exemplars: Range<usize>,
}

/// What validation dropped, with the first few reasons spelt out.
#[derive(Debug, Default)]
pub struct Rejections {
    /// Samples (float and histogram) not stored, by reason.
    pub samples: BTreeMap<&'static str, u64>,
    /// Series dropped whole.
    pub series: u64,
    /// Series refused by a per-tenant label limit, by limit name.
    pub limits: BTreeMap<&'static str, u64>,
    /// The first [`MAX_REPORTED_ERRORS`] problems, each naming its series.
    pub errors: Vec<String>,
    /// Exemplars not stored.
    pub exemplars: u64,
    /// The first exemplar problems.
    pub exemplar_errors: Vec<String>,
}

impl Rejections {
    fn add(&mut self, reason: &'static str, samples: u64, message: impl FnOnce() -> String) {
        *self.samples.entry(reason).or_default() += samples;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(message());
        }
    }

    fn exemplar(&mut self, n: u64, message: impl FnOnce() -> String) {
        self.exemplars += n;
        if self.exemplar_errors.len() < MAX_REPORTED_ERRORS {
            self.exemplar_errors.push(message());
        }
    }
}

/// What the decoder checks series against.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'l> {
    /// Label rules.
    pub rules: LabelRules,
    /// The tenant's label limits.
    pub limits: &'l TenantLimits,
    /// The server's clock (ms), for messages.
    pub now_ms: i64,
    /// Samples and exemplars after this timestamp (ms) are rejected.
    pub max_timestamp_ms: i64,
}

impl<'l> Policy<'l> {
    /// The remote write policy at time `now_ms`.
    pub fn new(limits: &'l TenantLimits, now_ms: i64) -> Self {
        Policy {
            rules: LABEL_RULES,
            limits,
            now_ms,
            max_timestamp_ms: now_ms.saturating_add(CREATION_GRACE_PERIOD_MS),
        }
    }
}

/// A decoded, validated request: only accepted series are in it; everything dropped is in
/// [`Batch::rejected`].
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Every accepted series' labels, back to back, borrowed from the body.
    pub pairs: Vec<(&'a str, &'a str)>,
    /// Every accepted sample, `(timestamp_ms, value)`.
    pub samples: Vec<(i64, f64)>,
    /// Every accepted exemplar.
    pub exemplars: Vec<Exemplar>,
    /// The accepted series.
    pub series: Vec<SeriesSpan>,
    /// Metric metadata by family (1.0 `metadata`, 2.0 per-series metadata).
    pub metadata: Vec<(&'a str, MetricMetadata)>,
    /// What was dropped.
    pub rejected: Rejections,
    /// What the request contained, as the decoder counted it.
    pub stats: WriteStats,
    /// Index in `metadata` by family.
    metadata_slots: HashMap<&'a str, usize>,
}

impl<'a> Batch<'a> {
    /// Decodes and validates a decompressed body. A malformed body fails whole.
    ///
    /// # Errors
    ///
    /// The decoder's [`DecodeError`], naming the field path of the first malformed field.
    pub fn decode(
        protocol: Protocol,
        body: &'a [u8],
        policy: &Policy<'_>,
    ) -> Result<Self, DecodeError> {
        let mut c = Collector {
            batch: Batch::default(),
            policy,
        };
        let stats = match protocol {
            Protocol::V1 => decode_write_v1(body, &mut c)?,
            Protocol::V2 => decode_write_v2(body, &mut c)?,
        };
        c.batch.stats = stats;
        Ok(c.batch)
    }

    /// The accepted series in the form the engine ingests.
    pub fn ingest_series(&self) -> Vec<IngestSeries<'_, [(&'a str, &'a str)]>> {
        self.series
            .iter()
            .map(|s| IngestSeries {
                labels: self.pairs.get(s.labels.clone()).unwrap_or_default(),
                samples: self.samples.get(s.samples.clone()).unwrap_or_default(),
                exemplars: self.exemplars.get(s.exemplars.clone()).unwrap_or_default(),
            })
            .collect()
    }

    /// True when there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.metadata.is_empty()
    }

    /// Samples plus exemplars to be ingested (what the rate limit counts).
    pub fn cost(&self) -> u64 {
        (self.samples.len() + self.exemplars.len()) as u64
    }

    fn add_series(&mut self, s: &SeriesRef<'a, '_>, policy: &Policy<'_>) {
        let n_samples = s.samples.len() as u64;
        let n_histograms = s.histograms.len() as u64;
        let n_exemplars = s.exemplar_count() as u64;
        if let Err(e) = policy.rules.check(s.index, s.labels) {
            self.rejected.series += 1;
            self.rejected
                .add(label_reason(&e.kind), n_samples + n_histograms, || {
                    format!(
                        "{e} (series {})",
                        fmt_labels(s.labels.iter().map(|l| (l.name, l.value)))
                    )
                });
            if n_exemplars > 0 {
                self.rejected.exemplar(n_exemplars, || {
                    format!(
                        "timeseries[{}]: exemplars dropped with their invalid series",
                        s.index
                    )
                });
            }
            return;
        }
        if let Err(e) = policy
            .limits
            .check_labels(s.labels.iter().map(|l| (l.name, l.value)))
        {
            let limit = e.limit_name();
            self.rejected.series += 1;
            *self.rejected.limits.entry(limit).or_default() += 1;
            self.rejected.add(limit, n_samples + n_histograms, || {
                format!(
                    "timeseries[{}]: {e} (series {})",
                    s.index,
                    fmt_labels(s.labels.iter().map(|l| (l.name, l.value)))
                )
            });
            if n_exemplars > 0 {
                self.rejected.exemplar(n_exemplars, || {
                    format!(
                        "timeseries[{}]: exemplars dropped with their series ({limit})",
                        s.index
                    )
                });
            }
            return;
        }

        let samples_start = self.samples.len();
        let mut future = 0u64;
        let mut first_future = 0i64;
        for x in s.samples {
            if x.timestamp_ms > policy.max_timestamp_ms {
                if future == 0 {
                    first_future = x.timestamp_ms;
                }
                future += 1;
            } else {
                self.samples.push((x.timestamp_ms, x.value));
            }
        }
        if future > 0 {
            self.rejected.add(reason::TOO_FAR_IN_FUTURE, future, || {
                format!(
                    "timeseries[{}]: {future} sample(s) too far in the future: timestamp {first_future} ({}) \
                     is more than {} minutes after the server's clock ({}) (series {})",
                    s.index,
                    crate::api::rfc3339(first_future),
                    CREATION_GRACE_PERIOD_MS / 60_000,
                    crate::api::rfc3339(policy.now_ms),
                    fmt_labels(s.labels.iter().map(|l| (l.name, l.value)))
                )
            });
        }
        if n_histograms > 0 {
            self.rejected.add(reason::NATIVE_HISTOGRAM, n_histograms, || {
                format!(
                    "timeseries[{}]: {n_histograms} native histogram sample(s) not stored: Strata does \
                     not store native histograms yet (series {})",
                    s.index,
                    fmt_labels(s.labels.iter().map(|l| (l.name, l.value)))
                )
            });
        }

        let exemplars_start = self.exemplars.len();
        for (j, e) in s.exemplars().enumerate() {
            if e.timestamp_ms > policy.max_timestamp_ms {
                self.rejected.exemplar(1, || {
                    format!(
                        "timeseries[{}].exemplars[{j}]: timestamp {} is too far in the future",
                        s.index, e.timestamp_ms
                    )
                });
                continue;
            }
            match Labels::new(
                e.labels
                    .iter()
                    .map(|l| Label::new(l.name, l.value))
                    .collect(),
            ) {
                Ok(labels) => self.exemplars.push(Exemplar {
                    labels,
                    value: e.value,
                    timestamp: e.timestamp_ms,
                }),
                Err(err) => self.rejected.exemplar(1, || {
                    format!("timeseries[{}].exemplars[{j}]: {err}", s.index)
                }),
            }
        }

        if let (Some(md), Some(name)) = (s.metadata, s.metric_name()) {
            let informative =
                md.metric_type != MetricType::Unknown || !md.help.is_empty() || !md.unit.is_empty();
            if informative {
                self.set_metadata(
                    family_name(name, md.metric_type),
                    md.metric_type,
                    md.help,
                    md.unit,
                );
            }
        }

        if self.samples.len() > samples_start || self.exemplars.len() > exemplars_start {
            let labels_start = self.pairs.len();
            self.pairs
                .extend(s.labels.iter().map(|l| (l.name, l.value)));
            self.series.push(SeriesSpan {
                labels: labels_start..self.pairs.len(),
                samples: samples_start..self.samples.len(),
                exemplars: exemplars_start..self.exemplars.len(),
            });
        }
    }

    /// Records metadata for a family; within one request the last entry of a family wins.
    /// Allocates only when the entry differs from the one already recorded.
    fn set_metadata(&mut self, family: &'a str, t: MetricType, help: &str, unit: &str) {
        if let Some(&i) = self.metadata_slots.get(family)
            && let Some((_, m)) = self.metadata.get_mut(i)
        {
            if m.metric_type != t.as_str() || m.help != help || m.unit != unit {
                *m = metadata(t, help, unit);
            }
            return;
        }
        self.metadata_slots.insert(family, self.metadata.len());
        self.metadata.push((family, metadata(t, help, unit)));
    }
}

fn metadata(t: MetricType, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        metric_type: t.as_str().to_string(),
        help: help.to_string(),
        unit: unit.to_string(),
    }
}

/// The metric family a series belongs to, for metadata: the metric name without the
/// `_bucket`/`_sum`/`_count`/`_created` suffix of a histogram or summary series (the family
/// name Prometheus's scrape metadata and remote write 1.0 use), else the metric name.
pub fn family_name(metric: &str, t: MetricType) -> &str {
    let suffixes: &[&str] = match t {
        MetricType::Histogram | MetricType::GaugeHistogram => {
            &["_bucket", "_sum", "_count", "_created"]
        }
        MetricType::Summary => &["_sum", "_count", "_created"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| metric.strip_suffix(s).filter(|f| !f.is_empty()))
        .unwrap_or(metric)
}

fn label_reason(kind: &LabelErrorKind) -> &'static str {
    match kind {
        LabelErrorKind::NoLabels | LabelErrorKind::MissingMetricName => reason::MISSING_METRIC_NAME,
        LabelErrorKind::EmptyMetricName { .. } | LabelErrorKind::InvalidMetricName { .. } => {
            reason::METRIC_NAME_INVALID
        }
        LabelErrorKind::Unsorted { .. } => reason::LABELS_NOT_SORTED,
        LabelErrorKind::Duplicate { .. } => reason::DUPLICATE_LABEL_NAMES,
        _ => reason::LABEL_INVALID,
    }
}

/// Formats a label set as Prometheus prints one (`{__name__="up", job="node"}`), cutting long
/// values so that an error message stays readable in a sender's log.
pub fn fmt_labels<'x>(pairs: impl Iterator<Item = (&'x str, &'x str)>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if value.len() > MAX_SHOWN_VALUE {
            let mut cut = MAX_SHOWN_VALUE;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            let shown = value.get(..cut).unwrap_or_default();
            let _ = write!(out, "{name}={shown:?}…({} bytes)", value.len());
        } else {
            let _ = write!(out, "{name}={value:?}");
        }
    }
    out.push('}');
    out
}

/// The decoder's visitor: validates each series and appends it to the batch.
struct Collector<'a, 'p, 'l> {
    batch: Batch<'a>,
    policy: &'p Policy<'l>,
}

impl<'a> WriteVisitor<'a> for Collector<'a, '_, '_> {
    type Error = DecodeError;

    fn series(&mut self, series: &SeriesRef<'a, '_>) -> Result<(), DecodeError> {
        self.batch.add_series(series, self.policy);
        Ok(())
    }

    fn metadata(&mut self, m: &MetadataRef<'a>) -> Result<(), DecodeError> {
        if !m.metric_family_name.is_empty() {
            self.batch
                .set_metadata(m.metric_family_name, m.metric_type, m.help, m.unit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_drop_histogram_and_summary_suffixes() {
        assert_eq!(
            family_name("http_duration_seconds_bucket", MetricType::Histogram),
            "http_duration_seconds"
        );
        assert_eq!(
            family_name("rpc_seconds_count", MetricType::Summary),
            "rpc_seconds"
        );
        assert_eq!(
            family_name("rpc_seconds", MetricType::Summary),
            "rpc_seconds"
        );
        assert_eq!(
            family_name("requests_total", MetricType::Counter),
            "requests_total"
        );
        assert_eq!(family_name("_bucket", MetricType::Histogram), "_bucket");
    }

    #[test]
    fn series_land_in_flat_buffers_and_metadata_is_deduplicated() {
        use strata_proto::prost::Message;
        use strata_proto::write_v2::{Exemplar as Ex, Metadata, Request, Sample, TimeSeries};
        let symbols = [
            "", "__name__", "up", "job", "a", "b", "help one", "help two", "trace_id", "t1",
        ];
        let sample = |t: i64| Sample {
            value: 1.0,
            timestamp: t,
        };
        let md = |help_ref| {
            Some(Metadata {
                r#type: 2,
                help_ref,
                unit_ref: 0,
            })
        };
        let req = Request {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            timeseries: vec![
                TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![sample(1), sample(2)],
                    metadata: md(6),
                    ..Default::default()
                },
                // In the future: its sample and exemplar are dropped, the series is not kept.
                TimeSeries {
                    labels_refs: vec![1, 2, 3, 5],
                    samples: vec![sample(10_000_000)],
                    exemplars: vec![Ex {
                        labels_refs: vec![8, 9],
                        value: 1.0,
                        timestamp: 10_000_000,
                    }],
                    metadata: md(7),
                    ..Default::default()
                },
                TimeSeries {
                    labels_refs: vec![1, 2, 3, 5],
                    samples: vec![sample(3)],
                    exemplars: vec![Ex {
                        labels_refs: vec![8, 9],
                        value: 1.0,
                        timestamp: 3,
                    }],
                    ..Default::default()
                },
            ],
        };
        let body = req.encode_to_vec();
        let limits = TenantLimits::default();
        let policy = Policy::new(&limits, 0);
        let batch = Batch::decode(Protocol::V2, &body, &policy).unwrap();
        let series = batch.ingest_series();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, [("__name__", "up"), ("job", "a")]);
        assert_eq!(series[0].samples, [(1, 1.0), (2, 1.0)]);
        assert_eq!(series[1].labels, [("__name__", "up"), ("job", "b")]);
        assert_eq!(series[1].samples, [(3, 1.0)]);
        assert_eq!(series[1].exemplars.len(), 1);
        assert_eq!(batch.cost(), 4);
        assert_eq!(
            batch.rejected.samples.get(reason::TOO_FAR_IN_FUTURE),
            Some(&1)
        );
        assert_eq!(batch.rejected.exemplars, 1);
        // One entry for the family; the last one seen wins.
        assert_eq!(batch.metadata.len(), 1);
        assert_eq!(batch.metadata[0].0, "up");
        assert_eq!(batch.metadata[0].1.help, "help two");
        assert_eq!(batch.metadata[0].1.metric_type, "gauge");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "é".repeat(100);
        let s = fmt_labels([("__name__", "up"), ("v", long.as_str())].into_iter());
        assert!(s.starts_with("{__name__=\"up\", v=\""), "{s}");
        assert!(s.ends_with("…(200 bytes)}"), "{s}");
        assert!(s.len() < 200, "{s}");
    }
}
