//! Exemplars and metric metadata of one tenant, kept in memory and logged in the WAL.
//!
//! **Exemplars** link a sample to a trace (`trace_id` label). Like Prometheus, Strata keeps the
//! most recent exemplars of a tenant in a fixed-size circular buffer (default 100 000): old
//! exemplars fall out as new ones arrive, and exemplars are not written to blocks. Per series,
//! exemplars must arrive in time order; an exemplar equal to the series' last one (timestamp,
//! value and labels) is an idempotent duplicate. Exemplar label sets are limited to 128
//! characters in total (names and values), as OpenMetrics specifies.
//!
//! **Metadata** (type, help, unit per metric family) is what `/api/v1/metadata` serves. A family
//! keeps up to [`MAX_METADATA_PER_FAMILY`] distinct entries, newest first.
//!
//! Both are WAL-logged (record types in `crate::record`) so a restart keeps them; a WAL
//! checkpoint keeps the exemplars newer than the cut and one copy of each metadata entry.
//!
//! # Locking
//!
//! Each store has one mutex; it is never held while another engine lock is taken.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use crate::head::SeriesRef;
use crate::labels::Labels;

/// Default capacity of a tenant's exemplar buffer.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;
/// Maximum total characters of an exemplar's label names and values.
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;
/// Distinct metadata entries kept per metric family.
pub const MAX_METADATA_PER_FAMILY: usize = 10;

/// An exemplar: a sample of a series with labels that identify, e.g., a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Exemplar labels, usually `trace_id` (and `span_id`).
    pub labels: Labels,
    /// The exemplar's value.
    pub value: f64,
    /// Timestamp in ms.
    pub timestamp: i64,
}

/// Why an exemplar was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExemplarError {
    /// Older than the series' newest exemplar.
    #[error(
        "out of order exemplar: timestamp {t} is older than the series' newest exemplar {newest}"
    )]
    OutOfOrder {
        /// The exemplar's timestamp.
        t: i64,
        /// The series' newest exemplar timestamp.
        newest: i64,
    },
    /// Labels longer than the OpenMetrics limit.
    #[error("exemplar labels have {chars} characters, more than the limit of {limit}")]
    LabelsTooLong {
        /// Characters in names and values.
        chars: usize,
        /// The limit.
        limit: usize,
    },
}

struct ExemplarInner {
    capacity: usize,
    buf: VecDeque<(SeriesRef, Exemplar)>,
    newest: HashMap<SeriesRef, (i64, f64, u64)>,
}

/// The exemplar buffer of one tenant.
pub struct ExemplarStore {
    inner: Mutex<ExemplarInner>,
}

impl ExemplarStore {
    /// A store holding at most `capacity` exemplars (0 disables storage).
    pub fn new(capacity: usize) -> Self {
        ExemplarStore {
            inner: Mutex::new(ExemplarInner {
                capacity,
                buf: VecDeque::new(),
                newest: HashMap::new(),
            }),
        }
    }

    /// Validates an exemplar without storing it.
    pub fn check_labels(e: &Exemplar) -> Result<(), ExemplarError> {
        let chars: usize = e
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if chars > MAX_EXEMPLAR_LABEL_CHARS {
            return Err(ExemplarError::LabelsTooLong {
                chars,
                limit: MAX_EXEMPLAR_LABEL_CHARS,
            });
        }
        Ok(())
    }

    /// Adds an exemplar of series `r`. Returns `Ok(false)` for an idempotent duplicate.
    pub fn add(&self, r: SeriesRef, e: Exemplar) -> Result<bool, ExemplarError> {
        Self::check_labels(&e)?;
        let mut inner = self.inner.lock();
        if inner.capacity == 0 {
            return Ok(false);
        }
        let lh = e.labels.stable_hash();
        if let Some(&(t, v, h)) = inner.newest.get(&r) {
            if e.timestamp < t {
                return Err(ExemplarError::OutOfOrder {
                    t: e.timestamp,
                    newest: t,
                });
            }
            if e.timestamp == t && v.to_bits() == e.value.to_bits() && h == lh {
                return Ok(false);
            }
        }
        inner.newest.insert(r, (e.timestamp, e.value, lh));
        inner.buf.push_back((r, e));
        while inner.buf.len() > inner.capacity {
            if let Some((old_ref, old)) = inner.buf.pop_front() {
                // Forget the series' newest marker only if it was this exemplar.
                if inner
                    .newest
                    .get(&old_ref)
                    .is_some_and(|&(t, _, _)| t == old.timestamp)
                    && !inner.buf.iter().any(|(r2, _)| *r2 == old_ref)
                {
                    inner.newest.remove(&old_ref);
                }
            }
        }
        Ok(true)
    }

    /// Exemplars of the series in `refs` with timestamps in `[mint, maxt]`, grouped by series
    /// in ascending ref order, each group in time order.
    pub fn query(
        &self,
        refs: &RoaringBitmap,
        mint: i64,
        maxt: i64,
    ) -> Vec<(SeriesRef, Vec<Exemplar>)> {
        let inner = self.inner.lock();
        let mut by_ref: std::collections::BTreeMap<SeriesRef, Vec<Exemplar>> =
            std::collections::BTreeMap::new();
        for (r, e) in &inner.buf {
            if e.timestamp >= mint && e.timestamp <= maxt && refs.contains(*r) {
                by_ref.entry(*r).or_default().push(e.clone());
            }
        }
        by_ref.into_iter().collect()
    }

    /// Number of exemplars held.
    pub fn len(&self) -> usize {
        self.inner.lock().buf.len()
    }

    /// True if no exemplar is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Metadata of one metric family.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MetricMetadata {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or
    /// `unknown`.
    #[serde(rename = "type")]
    pub metric_type: String,
    /// Help text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

/// The metadata of one tenant, by metric family name.
#[derive(Default)]
pub struct MetadataStore {
    inner: Mutex<HashMap<String, Vec<MetricMetadata>>>,
}

impl MetadataStore {
    /// Records metadata for a family. Returns true if it was new.
    pub fn set(&self, family: &str, m: MetricMetadata) -> bool {
        let mut inner = self.inner.lock();
        let entries = inner.entry(family.to_string()).or_default();
        if entries.first() == Some(&m) {
            return false;
        }
        let was_known = entries.iter().any(|x| x == &m);
        entries.retain(|x| x != &m);
        entries.insert(0, m);
        entries.truncate(MAX_METADATA_PER_FAMILY);
        !was_known
    }

    /// All families, sorted, each with its entries (newest first).
    pub fn all(&self) -> Vec<(String, Vec<MetricMetadata>)> {
        let inner = self.inner.lock();
        let mut v: Vec<(String, Vec<MetricMetadata>)> =
            inner.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Entries of one family.
    pub fn get(&self, family: &str) -> Vec<MetricMetadata> {
        self.inner.lock().get(family).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: i64, v: f64, trace: &str) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs(&[("trace_id", trace)]).unwrap(),
            value: v,
            timestamp: t,
        }
    }

    #[test]
    fn exemplars_in_order_dedup_and_capacity() {
        let s = ExemplarStore::new(3);
        assert_eq!(s.add(1, ex(10, 1.0, "a")), Ok(true));
        assert_eq!(s.add(1, ex(10, 1.0, "a")), Ok(false));
        assert_eq!(
            s.add(1, ex(5, 1.0, "b")),
            Err(ExemplarError::OutOfOrder { t: 5, newest: 10 })
        );
        s.add(2, ex(11, 2.0, "c")).unwrap();
        s.add(1, ex(12, 3.0, "d")).unwrap();
        s.add(2, ex(13, 4.0, "e")).unwrap();
        assert_eq!(s.len(), 3);
        let refs: RoaringBitmap = [1u32, 2].into_iter().collect();
        let got = s.query(&refs, 0, 100);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, vec![ex(12, 3.0, "d")]);
        assert_eq!(got[1].1, vec![ex(11, 2.0, "c"), ex(13, 4.0, "e")]);
        assert!(s.query(&refs, 0, 11).iter().all(|(r, _)| *r == 2));
    }

    #[test]
    fn long_exemplar_labels_rejected() {
        let s = ExemplarStore::new(10);
        let long = "x".repeat(200);
        assert!(matches!(
            s.add(1, ex(1, 1.0, &long)),
            Err(ExemplarError::LabelsTooLong { .. })
        ));
    }

    #[test]
    fn metadata_keeps_distinct_entries_newest_first() {
        let s = MetadataStore::default();
        let c = MetricMetadata {
            metric_type: "counter".into(),
            help: "h".into(),
            unit: String::new(),
        };
        let g = MetricMetadata {
            metric_type: "gauge".into(),
            ..c.clone()
        };
        assert!(s.set("x", c.clone()));
        assert!(!s.set("x", c.clone()));
        assert!(s.set("x", g.clone()));
        assert!(!s.set("x", c.clone()));
        assert_eq!(s.get("x"), vec![c, g]);
        assert_eq!(s.all().len(), 1);
    }
}
