//! Label-set checks for incoming series, kept apart from decoding so that the
//! server chooses its policy (legacy or UTF-8 names, whether `__name__` is
//! required, whether empty values are tolerated) per tenant or per protocol.
//!
//! The rules come from the remote write specifications: labels sorted by
//! name, no duplicate names, no empty names, metric name present and
//! non-empty. Under the legacy character set, label names must match
//! `[a-zA-Z_][a-zA-Z0-9_]*` and the value of `__name__` (the metric name)
//! must match `[a-zA-Z_:][a-zA-Z0-9_:]*` — colons are allowed in metric
//! names only. Under the UTF-8 rules (remote write 2.0, Prometheus 3) any
//! non-empty UTF-8 name is allowed; UTF-8 validity itself is already
//! guaranteed by the decoder, which hands out `&str`.
//!
//! All checks run in one pass over the labels and allocate only when they
//! fail (the error owns the offending name so it can outlive the request
//! body). Error messages name the series by index and metric name and the
//! label by index and name:
//! `timeseries[3] (http_requests_total): labels[2]: duplicate label name "job"`.

use crate::remote_write::LabelRef;

/// The metric name label.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Which label names are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameCharset {
    /// `[a-zA-Z_][a-zA-Z0-9_]*` for label names, `[a-zA-Z_:][a-zA-Z0-9_:]*`
    /// for metric names (remote write 1.0, Prometheus 2).
    Legacy,
    /// Any non-empty UTF-8 string (remote write 2.0, Prometheus 3).
    #[default]
    Utf8,
}

/// What is wrong with a label set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelErrorKind {
    /// The series has no labels at all.
    #[error("series has no labels")]
    NoLabels,
    /// A label with an empty name.
    #[error("labels[{index}]: empty label name")]
    EmptyName {
        /// Position of the label.
        index: usize,
    },
    /// A label name outside the legacy character set.
    #[error(
        "labels[{index}]: label name {name:?} is not valid (must match [a-zA-Z_][a-zA-Z0-9_]*)"
    )]
    InvalidName {
        /// Position of the label.
        index: usize,
        /// The name.
        name: String,
    },
    /// A metric name outside the legacy character set.
    #[error(
        "labels[{index}]: metric name {name:?} is not valid (must match [a-zA-Z_:][a-zA-Z0-9_:]*)"
    )]
    InvalidMetricName {
        /// Position of the `__name__` label.
        index: usize,
        /// The metric name.
        name: String,
    },
    /// Labels not sorted by name.
    #[error(
        "labels[{index}]: label {name:?} comes after {previous:?}; labels must be sorted by name"
    )]
    Unsorted {
        /// Position of the first out-of-order label.
        index: usize,
        /// Its name.
        name: String,
        /// Name of the label before it.
        previous: String,
    },
    /// The same name twice.
    #[error("labels[{index}]: duplicate label name {name:?}")]
    Duplicate {
        /// Position of the second occurrence.
        index: usize,
        /// The name.
        name: String,
    },
    /// No `__name__` label.
    #[error("missing metric name (label __name__)")]
    MissingMetricName,
    /// A `__name__` label with an empty value.
    #[error("labels[{index}]: empty metric name (label __name__)")]
    EmptyMetricName {
        /// Position of the `__name__` label.
        index: usize,
    },
    /// A label with an empty value, when the policy rejects them.
    #[error("labels[{index}]: label {name:?} has an empty value")]
    EmptyValue {
        /// Position of the label.
        index: usize,
        /// Its name.
        name: String,
    },
}

/// A label-set violation in one series of a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeseries[{series}]{}: {kind}", .metric.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
pub struct LabelError {
    /// Position of the series in the request.
    pub series: usize,
    /// The series' metric name, if it has one.
    pub metric: Option<String>,
    /// What is wrong.
    pub kind: LabelErrorKind,
}

/// A label policy. `Default` is the permissive modern one: UTF-8 names,
/// `__name__` required, empty values tolerated (Prometheus drops them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRules {
    /// Allowed name characters.
    pub charset: NameCharset,
    /// Reject series without a `__name__` label. Default: true.
    pub require_metric_name: bool,
    /// Reject labels with empty values. Default: false.
    pub reject_empty_values: bool,
}

impl Default for LabelRules {
    fn default() -> Self {
        Self {
            charset: NameCharset::Utf8,
            require_metric_name: true,
            reject_empty_values: false,
        }
    }
}

impl LabelRules {
    /// Checks the labels of series number `series` against every rule, in
    /// one pass; the first violation wins.
    ///
    /// # Errors
    ///
    /// A [`LabelError`] naming the series and the label.
    pub fn check(&self, series: usize, labels: &[LabelRef<'_>]) -> Result<(), LabelError> {
        self.check_kind(labels).map_err(|kind| LabelError {
            series,
            metric: labels
                .iter()
                .find(|l| l.name == METRIC_NAME_LABEL && !l.value.is_empty())
                .map(|l| l.value.to_owned()),
            kind,
        })
    }

    fn check_kind(&self, labels: &[LabelRef<'_>]) -> Result<(), LabelErrorKind> {
        if labels.is_empty() {
            return Err(LabelErrorKind::NoLabels);
        }
        let mut seen_metric_name = false;
        let mut previous: Option<&str> = None;
        for (index, label) in labels.iter().enumerate() {
            check_name(index, label, self.charset)?;
            if let Some(prev) = previous {
                check_order(index, prev, label.name)?;
            }
            previous = Some(label.name);
            if label.name == METRIC_NAME_LABEL {
                seen_metric_name = true;
                check_metric_name_value(index, label.value, self.charset)?;
            } else if self.reject_empty_values && label.value.is_empty() {
                return Err(LabelErrorKind::EmptyValue {
                    index,
                    name: label.name.to_owned(),
                });
            }
        }
        if self.require_metric_name && !seen_metric_name {
            return Err(LabelErrorKind::MissingMetricName);
        }
        Ok(())
    }
}

#[inline]
fn check_name(
    index: usize,
    label: &LabelRef<'_>,
    charset: NameCharset,
) -> Result<(), LabelErrorKind> {
    if label.name.is_empty() {
        return Err(LabelErrorKind::EmptyName { index });
    }
    if charset == NameCharset::Legacy && !is_legacy_label_name(label.name) {
        return Err(LabelErrorKind::InvalidName {
            index,
            name: label.name.to_owned(),
        });
    }
    Ok(())
}

#[inline]
fn check_order(index: usize, previous: &str, name: &str) -> Result<(), LabelErrorKind> {
    match previous.cmp(name) {
        std::cmp::Ordering::Less => Ok(()),
        std::cmp::Ordering::Equal => Err(LabelErrorKind::Duplicate {
            index,
            name: name.to_owned(),
        }),
        std::cmp::Ordering::Greater => Err(LabelErrorKind::Unsorted {
            index,
            name: name.to_owned(),
            previous: previous.to_owned(),
        }),
    }
}

fn check_metric_name_value(
    index: usize,
    value: &str,
    charset: NameCharset,
) -> Result<(), LabelErrorKind> {
    if value.is_empty() {
        return Err(LabelErrorKind::EmptyMetricName { index });
    }
    if charset == NameCharset::Legacy && !is_legacy_metric_name(value) {
        return Err(LabelErrorKind::InvalidMetricName {
            index,
            name: value.to_owned(),
        });
    }
    Ok(())
}

/// Checks that labels are sorted by name with no duplicates.
///
/// # Errors
///
/// [`LabelErrorKind::Unsorted`] or [`LabelErrorKind::Duplicate`] for the
/// first offending label.
pub fn check_sorted_unique(labels: &[LabelRef<'_>]) -> Result<(), LabelErrorKind> {
    for (index, pair) in labels.windows(2).enumerate() {
        if let [a, b] = pair {
            check_order(index + 1, a.name, b.name)?;
        }
    }
    Ok(())
}

/// Checks that every label name is non-empty and, for
/// [`NameCharset::Legacy`], matches `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// # Errors
///
/// [`LabelErrorKind::EmptyName`] or [`LabelErrorKind::InvalidName`].
pub fn check_label_names(
    labels: &[LabelRef<'_>],
    charset: NameCharset,
) -> Result<(), LabelErrorKind> {
    labels
        .iter()
        .enumerate()
        .try_for_each(|(index, label)| check_name(index, label, charset))
}

/// Checks the `__name__` label: present when `required`, never empty, and
/// for [`NameCharset::Legacy`] matching `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// # Errors
///
/// [`LabelErrorKind::MissingMetricName`], [`LabelErrorKind::EmptyMetricName`]
/// or [`LabelErrorKind::InvalidMetricName`].
pub fn check_metric_name(
    labels: &[LabelRef<'_>],
    required: bool,
    charset: NameCharset,
) -> Result<(), LabelErrorKind> {
    match labels.iter().position(|l| l.name == METRIC_NAME_LABEL) {
        Some(index) => {
            let value = labels.get(index).map(|l| l.value).unwrap_or_default();
            check_metric_name_value(index, value, charset)
        }
        None if required => Err(LabelErrorKind::MissingMetricName),
        None => Ok(()),
    }
}

/// Checks that no label value is empty.
///
/// # Errors
///
/// [`LabelErrorKind::EmptyValue`] for the first empty value.
pub fn check_no_empty_values(labels: &[LabelRef<'_>]) -> Result<(), LabelErrorKind> {
    match labels.iter().position(|l| l.value.is_empty()) {
        Some(index) => Err(LabelErrorKind::EmptyValue {
            index,
            name: labels
                .get(index)
                .map(|l| l.name)
                .unwrap_or_default()
                .to_owned(),
        }),
        None => Ok(()),
    }
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_legacy_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l<'a>(name: &'a str, value: &'a str) -> LabelRef<'a> {
        LabelRef { name, value }
    }

    fn legacy() -> LabelRules {
        LabelRules {
            charset: NameCharset::Legacy,
            ..LabelRules::default()
        }
    }

    #[test]
    fn valid_series_passes_both_charsets() {
        let labels = [
            l("__name__", "up"),
            l("instance", "a:9100"),
            l("job", "node"),
        ];
        assert_eq!(LabelRules::default().check(0, &labels), Ok(()));
        assert_eq!(legacy().check(0, &labels), Ok(()));
    }

    #[test]
    fn no_labels_message() {
        let e = LabelRules::default().check(7, &[]).unwrap_err();
        assert_eq!(e.to_string(), "timeseries[7]: series has no labels");
    }

    #[test]
    fn unsorted_message_names_series_and_label() {
        let labels = [l("__name__", "up"), l("job", "x"), l("instance", "y")];
        let e = LabelRules::default().check(3, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[3] (up): labels[2]: label \"instance\" comes after \"job\"; labels must be sorted by name"
        );
    }

    #[test]
    fn duplicate_message() {
        let labels = [l("__name__", "up"), l("job", "x"), l("job", "y")];
        let e = LabelRules::default().check(1, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[1] (up): labels[2]: duplicate label name \"job\""
        );
        assert_eq!(
            check_sorted_unique(&labels),
            Err(LabelErrorKind::Duplicate {
                index: 2,
                name: "job".into()
            })
        );
    }

    #[test]
    fn empty_name_message() {
        let labels = [l("", "x"), l("__name__", "up")];
        let e = LabelRules::default().check(0, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[0] (up): labels[0]: empty label name"
        );
    }

    #[test]
    fn empty_metric_name_message() {
        let labels = [l("__name__", ""), l("job", "x")];
        let e = LabelRules::default().check(2, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[2]: labels[0]: empty metric name (label __name__)"
        );
    }

    #[test]
    fn missing_metric_name_is_policy() {
        let labels = [l("job", "x")];
        let e = LabelRules::default().check(4, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[4]: missing metric name (label __name__)"
        );
        let lenient = LabelRules {
            require_metric_name: false,
            ..LabelRules::default()
        };
        assert_eq!(lenient.check(4, &labels), Ok(()));
    }

    #[test]
    fn legacy_charset_rejects_label_names() {
        let labels = [l("__name__", "up"), l("host.name", "x")];
        let e = legacy().check(5, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[5] (up): labels[1]: label name \"host.name\" is not valid (must match [a-zA-Z_][a-zA-Z0-9_]*)"
        );
        assert_eq!(LabelRules::default().check(5, &labels), Ok(()));
        // Colons are for metric names only.
        assert!(
            legacy()
                .check(0, &[l("__name__", "up"), l("a:b", "x")])
                .is_err()
        );
    }

    #[test]
    fn legacy_charset_rejects_metric_names_but_allows_colons() {
        let e = legacy()
            .check(6, &[l("__name__", "http.requests")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[6] (http.requests): labels[0]: metric name \"http.requests\" is not valid (must match [a-zA-Z_:][a-zA-Z0-9_:]*)"
        );
        assert_eq!(
            legacy().check(6, &[l("__name__", "job:rate5m:sum")]),
            Ok(())
        );
    }

    #[test]
    fn empty_values_are_policy() {
        let labels = [l("__name__", "up"), l("job", "")];
        assert_eq!(LabelRules::default().check(0, &labels), Ok(()));
        let strict = LabelRules {
            reject_empty_values: true,
            ..LabelRules::default()
        };
        let e = strict.check(8, &labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeseries[8] (up): labels[1]: label \"job\" has an empty value"
        );
        assert_eq!(
            check_no_empty_values(&labels),
            Err(LabelErrorKind::EmptyValue {
                index: 1,
                name: "job".into()
            })
        );
    }

    #[test]
    fn standalone_checks() {
        let labels = [l("__name__", "up"), l("1bad", "x")];
        assert_eq!(
            check_label_names(&labels, NameCharset::Legacy),
            Err(LabelErrorKind::InvalidName {
                index: 1,
                name: "1bad".into()
            })
        );
        assert_eq!(check_label_names(&labels, NameCharset::Utf8), Ok(()));
        assert_eq!(
            check_metric_name(&labels[1..], true, NameCharset::Utf8),
            Err(LabelErrorKind::MissingMetricName)
        );
        assert_eq!(
            check_metric_name(&labels, true, NameCharset::Legacy),
            Ok(())
        );
        assert_eq!(
            check_sorted_unique(&labels),
            Err(LabelErrorKind::Unsorted {
                index: 1,
                name: "1bad".into(),
                previous: "__name__".into()
            })
        );
    }

    #[test]
    fn legacy_name_predicates() {
        for ok in ["a", "_", "abc_DEF_123", "__name__"] {
            assert!(is_legacy_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "a:b", "é"] {
            assert!(!is_legacy_label_name(bad), "{bad}");
        }
        for ok in ["a", ":a", "a:b_c", "_x1"] {
            assert!(is_legacy_metric_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b"] {
            assert!(!is_legacy_metric_name(bad), "{bad}");
        }
    }
}
