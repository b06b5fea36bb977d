//! Label sets and label matchers.
//!
//! A series is identified by its label set: name/value pairs sorted by name with unique names,
//! the metric name carried as `__name__`. [`Labels`] enforces that invariant on construction so
//! every layer below (head registry, block index, WAL records) can rely on it: two equal label
//! sets are byte-for-byte equal, and their hash is stable across restarts (it is computed with a
//! fixed function, not `std`'s randomly seeded hasher).
//!
//! [`Matcher`] is the selection predicate of the select path (`=`, `!=`, `=~`, `!~`). Regex
//! matchers are fully anchored, as in Prometheus: `job=~"api"` does not match `api-gateway`.

use std::fmt;

use crate::error::{Error, Result};

/// Label name that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label: a name and a value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// Label name, e.g. `job`.
    pub name: String,
    /// Label value, e.g. `node`.
    pub value: String,
}

impl Label {
    /// Creates a label.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A sorted set of labels with unique, non-empty names and non-empty values.
///
/// Labels with an empty value are dropped on construction, as Prometheus treats `a=""` as the
/// absence of `a`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from unsorted pairs. Fails on an empty or duplicate name.
    pub fn new(mut labels: Vec<Label>) -> Result<Self> {
        labels.retain(|l| !l.value.is_empty());
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for pair in labels.windows(2) {
            if let [a, b] = pair
                && a.name == b.name
            {
                return Err(Error::InvalidLabels(format!(
                    "duplicate label name {:?}",
                    a.name
                )));
            }
        }
        if labels.iter().any(|l| l.name.is_empty()) {
            return Err(Error::InvalidLabels("empty label name".to_string()));
        }
        Ok(Labels(labels))
    }

    /// Builds a label set from `(name, value)` string pairs; see [`Labels::new`].
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Result<Self> {
        Labels::new(
            pairs
                .iter()
                .map(|(n, v)| Label::new(n.as_ref(), v.as_ref()))
                .collect(),
        )
    }

    /// Wraps labels that are already sorted by name, unique and non-empty (e.g. decoded from
    /// storage that was written from a valid [`Labels`]). The invariant is checked in debug
    /// builds only.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| match w {
            [a, b] => a.name < b.name,
            _ => true,
        }));
        Labels(labels)
    }

    /// The labels, sorted by name.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Consumes the set and returns its labels, sorted by name.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value of the label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|l| l.value.as_str())
    }

    /// Iterates over the labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// A stable 64-bit hash of the label set (a word-at-a-time multiply-xorshift mix over names
    /// and values with separators).
    /// Equal sets hash equal on every platform and across restarts.
    pub fn stable_hash(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for l in &self.0 {
            h = fnv_pair(h, &l.name, &l.value);
        }
        h
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A label set given by reference, so appends can find an existing series without building a
/// [`Labels`] (remote-write requests carry label strings that are only copied when a series is
/// created).
///
/// Implementations yield the pairs sorted by name with unique names; pairs with an empty value
/// are skipped, as [`Labels::new`] drops them, so that both forms hash and compare equal.
pub trait LabelInput {
    /// The pairs, sorted by name, empty values skipped.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)>;

    /// Same value as [`Labels::stable_hash`] of the equivalent label set.
    fn stable_hash(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for (n, v) in self.pairs() {
            h = fnv_pair(h, n, v);
        }
        h
    }

    /// An owned, validated label set.
    fn to_labels(&self) -> Result<Labels> {
        Labels::new(self.pairs().map(|(n, v)| Label::new(n, v)).collect())
    }
}

impl LabelInput for Labels {
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|l| (l.name.as_str(), l.value.as_str()))
    }

    fn stable_hash(&self) -> u64 {
        Labels::stable_hash(self)
    }

    fn to_labels(&self) -> Result<Labels> {
        Ok(self.clone())
    }
}

impl LabelInput for [(&str, &str)] {
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().copied().filter(|(_, v)| !v.is_empty())
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const MIX_K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Folds `bytes` into `h` eight bytes at a time (a multiply-xorshift mix), then a terminator
/// so that `("ab","c")` and `("a","bc")` hash differently. Deterministic on every platform.
fn mix_bytes(mut h: u64, bytes: &[u8], terminator: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(MIX_K);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    if let Some(dst) = w.get_mut(..rest.len()) {
        dst.copy_from_slice(rest);
    }
    h = (h ^ u64::from_le_bytes(w) ^ (terminator << 56) ^ ((rest.len() as u64) << 48))
        .wrapping_mul(MIX_K);
    h ^ (h >> 32)
}

fn fnv_pair(h: u64, name: &str, value: &str) -> u64 {
    let h = mix_bytes(h, name.as_bytes(), 0xff);
    mix_bytes(h, value.as_bytes(), 0xfe)
}

/// The comparison a [`Matcher`] applies to a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: value equals.
    Equal,
    /// `!=`: value differs (a missing label has the empty value).
    NotEqual,
    /// `=~`: value matches the fully anchored regex.
    Regex,
    /// `!~`: value does not match the fully anchored regex.
    NotRegex,
}

/// A label matcher: `name op value`. A missing label is treated as the empty string, so
/// `foo=""` matches series without `foo` and `foo!=""` requires it.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name the matcher applies to.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Literal value or regex source.
    pub value: String,
    regex: Option<regex::Regex>,
}

impl Matcher {
    /// Builds a matcher; regex sources are compiled (anchored) here.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| Error::InvalidMatcher(format!("{name}: {e}")))?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// True if `value` (the empty string for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// True if the matcher accepts the empty value, i.e. it also selects series lacking the
    /// label. Such matchers cannot be answered from postings of existing values alone.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Checks a whole label set (missing label = empty value).
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_empty_values_dropped() {
        let l = Labels::from_pairs(&[("job", "node"), ("__name__", "up"), ("x", "")]).unwrap();
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(l.get("job"), Some("node"));
        assert_eq!(l.get("x"), None);
    }

    #[test]
    fn duplicate_names_rejected() {
        let err = Labels::from_pairs(&[("a", "1"), ("a", "2")]).unwrap_err();
        assert!(err.to_string().contains("duplicate label name"), "{err}");
    }

    #[test]
    fn stable_hash_distinguishes_boundaries() {
        let a = Labels::from_pairs(&[("ab", "c")]).unwrap();
        let b = Labels::from_pairs(&[("a", "bc")]).unwrap();
        assert_ne!(a.stable_hash(), b.stable_hash());
        assert_eq!(a.stable_hash(), a.clone().stable_hash());
    }

    #[test]
    fn borrowed_pairs_hash_like_owned_labels() {
        let owned = Labels::from_pairs(&[("__name__", "up"), ("job", "node"), ("x", "")]).unwrap();
        let pairs: &[(&str, &str)] = &[("__name__", "up"), ("job", "node"), ("x", "")];
        assert_eq!(LabelInput::stable_hash(pairs), owned.stable_hash());
        assert_eq!(pairs.to_labels().unwrap(), owned);
        assert!(pairs.pairs().eq(owned.pairs()));
    }

    #[test]
    fn regex_is_anchored_and_missing_label_is_empty() {
        let m = Matcher::new(MatchOp::Regex, "job", "api").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("api-gateway"));
        let l = Labels::from_pairs(&[("__name__", "up")]).unwrap();
        assert!(Matcher::equal("job", "").matches_labels(&l));
        assert!(
            !Matcher::new(MatchOp::NotEqual, "job", "")
                .unwrap()
                .matches_labels(&l)
        );
        assert!(Matcher::new(MatchOp::Regex, "job", "a(").is_err());
    }
}
