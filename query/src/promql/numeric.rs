//! Numeric kernels shared by functions and aggregations.
//!
//! PromQL answers must agree with Prometheus to the last few bits, so sums use the same
//! compensated (Kahan–Neumaier) summation, means switch to an incremental form when a plain sum
//! would overflow, and quantiles interpolate the same way. Keeping the kernels here lets the
//! `*_over_time` functions and the aggregation operators share one implementation.

use std::cmp::Ordering;

/// One step of Kahan–Neumaier summation: adds `inc` to `sum` with compensation `c`.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Compensated sum of `vals`.
pub(crate) fn kahan_sum(vals: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for v in vals {
        (s, c) = kahan_inc(v, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}

/// Running mean that sums while it can and switches to an incremental mean once the sum would
/// overflow (so `avg` of huge values stays finite).
#[derive(Clone, Debug, Default)]
pub(crate) struct Mean {
    count: f64,
    sum: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

impl Mean {
    /// Adds one value.
    pub(crate) fn add(&mut self, f: f64) {
        self.count += 1.0;
        if self.count == 1.0 {
            self.sum = f;
            self.c = 0.0;
            return;
        }
        if !self.incremental {
            let (ns, nc) = kahan_inc(f, self.sum, self.c);
            if !ns.is_infinite() {
                self.sum = ns;
                self.c = nc;
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        if self.mean.is_infinite() {
            if f.is_infinite() && (self.mean > 0.0) == (f > 0.0) {
                return;
            }
            if !f.is_infinite() && !f.is_nan() {
                return;
            }
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = kahan_inc(f / self.count, q * self.mean, q * self.c);
    }

    /// The mean of the values added so far (NaN if none).
    pub(crate) fn value(&self) -> f64 {
        if self.count == 0.0 {
            return f64::NAN;
        }
        if self.incremental {
            self.mean + self.c
        } else if self.count == 1.0 {
            self.sum
        } else {
            self.sum / self.count + self.c / self.count
        }
    }
}

/// Population variance of `vals` (compensated Welford), NaN for none.
pub(crate) fn variance(vals: impl IntoIterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for f in vals {
        count += 1.0;
        let delta = f - (mean + cm);
        (mean, cm) = kahan_inc(delta / count, mean, cm);
        (aux, ca) = kahan_inc(delta * (f - (mean + cm)), aux, ca);
    }
    if count == 0.0 {
        return f64::NAN;
    }
    (aux + ca) / count
}

/// Orders floats ascending with NaN first (Go's `sort.Float64s` order).
pub(crate) fn cmp_nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// The φ-quantile of `vals` with linear interpolation between closest ranks (sorts `vals`).
pub(crate) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(cmp_nan_first);
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let lo = vals.get(lower as usize).copied().unwrap_or(f64::NAN);
    let hi = vals.get(upper as usize).copied().unwrap_or(f64::NAN);
    lo * (1.0 - weight) + hi * weight
}

/// Least-squares fit over `(t_ms, v)` points; returns `(slope per second, intercept at
/// intercept_t)`.
pub(crate) fn linear_regression(pts: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let Some(&(_, init_y)) = pts.first() else {
        return (f64::NAN, f64::NAN);
    };
    let mut const_y = true;
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(t, v)) in pts.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// One classic histogram bucket: upper bound and cumulative count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub(crate) upper: f64,
    pub(crate) count: f64,
}

/// Sorts buckets by bound and merges equal bounds.
fn prepare_buckets(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(Ordering::Equal));
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.drain(..) {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(b),
        }
    }
    *buckets = out;
}

/// Result flags of [`bucket_quantile`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QuantileFlags {
    /// Counts had to be made monotonic.
    pub(crate) forced_monotonic: bool,
}

/// The φ-quantile of a classic histogram (cumulative buckets, one with `+Inf`).
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> (f64, QuantileFlags) {
    let mut flags = QuantileFlags::default();
    if q.is_nan() {
        return (f64::NAN, flags);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, flags);
    }
    if q > 1.0 {
        return (f64::INFINITY, flags);
    }
    prepare_buckets(&mut buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return (f64::NAN, flags),
    }
    // Ensure monotonic counts, silently fixing tiny floating-point differences.
    if let Some(first) = buckets.first() {
        let mut prev = first.count;
        for b in buckets.iter_mut().skip(1) {
            let cur = b.count;
            if cur == prev {
                continue;
            }
            if almost_equal(prev, cur, 1e-12) {
                b.count = prev;
                continue;
            }
            if cur < prev {
                b.count = prev;
                flags.forced_monotonic = true;
                continue;
            }
            prev = cur;
        }
    }
    let n = buckets.len();
    if n < 2 {
        return (f64::NAN, flags);
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, flags);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|b| b.count < rank);
    if b == n - 1 {
        return (buckets[n - 2].upper, flags);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, flags);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), flags)
}

/// The estimated fraction of observations between `lower` and `upper` in a classic histogram.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<Bucket>) -> f64 {
    prepare_buckets(&mut buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let count = buckets.last().map(|b| b.count).unwrap_or(0.0);
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, b) in buckets.iter().enumerate() {
        let lb = if i == 0 {
            if b.upper > 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        } else {
            buckets[i - 1].upper
        };
        let ub = b.upper;
        let interp = |v: f64| {
            if lb == f64::NEG_INFINITY {
                // No interpolation into an unbounded bucket: its observations all lie below.
                b.count
            } else if ub == f64::INFINITY {
                rank
            } else {
                rank + (b.count - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || (a.abs() + b.abs()) < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / (a.abs() + b.abs()).min(f64::MAX) < eps
}

/// Formats a float the OpenMetrics way (`1.0`, `0.25`, `+Inf`), as quantile labels are written.
pub(crate) fn format_openmetrics(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format_go_f(v)
    }
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` does (label values of
/// `count_values`).
pub(crate) fn format_go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kahan_keeps_small_terms() {
        let s = kahan_sum([1e100, 1.0, -1e100]);
        assert_eq!(s, 1.0);
    }

    #[test]
    fn mean_survives_overflow() {
        let mut m = Mean::default();
        m.add(f64::MAX);
        m.add(f64::MAX);
        assert_eq!(m.value(), f64::MAX);
        let mut m = Mean::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            m.add(v);
        }
        assert_eq!(m.value(), 2.5);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, &mut [1.0, 3.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(1.5, &mut [1.0]), f64::INFINITY);
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
    }

    #[test]
    fn bucket_quantile_classic() {
        let b = |upper, count| Bucket { upper, count };
        let bs = vec![
            b(0.1, 10.0),
            b(0.5, 50.0),
            b(1.0, 90.0),
            b(f64::INFINITY, 100.0),
        ];
        let (v, _) = bucket_quantile(0.5, bs.clone());
        assert!((v - 0.5).abs() < 1e-12);
        let (v, _) = bucket_quantile(0.99, bs);
        assert_eq!(v, 1.0);
    }

    #[test]
    fn regression_fits_a_line() {
        let pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, 2.0 * i as f64 + 1.0)).collect();
        let (slope, icpt) = linear_regression(&pts, 0);
        assert!((slope - 2.0).abs() < 1e-9 && (icpt - 1.0).abs() < 1e-9);
    }

    proptest! {
        #[test]
        fn mean_matches_naive_for_small_values(vals in proptest::collection::vec(-1e6f64..1e6, 1..50)) {
            let mut m = Mean::default();
            for &v in &vals { m.add(v); }
            let naive = vals.iter().sum::<f64>() / vals.len() as f64;
            prop_assert!((m.value() - naive).abs() <= 1e-6 * (1.0 + naive.abs()));
        }

        #[test]
        fn quantile_within_bounds(mut vals in proptest::collection::vec(-1e6f64..1e6, 1..50), q in 0.0f64..=1.0) {
            let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let v = quantile(q, &mut vals);
            prop_assert!(v >= min - 1e-9 && v <= max + 1e-9);
        }
    }
}
