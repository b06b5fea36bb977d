//! PromQL functions.
//!
//! Range-vector functions slide each series' window along the steps
//! ([`RangeVal::windows`]) and compute one value per step from the window's samples, so the
//! raw samples are read once per query, not once per step.

use std::collections::HashMap;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};
use strata_engine::downsample::{Aggregate, coarsest_allowed};
use strata_engine::labels::METRIC_NAME;
use strata_engine::{Label, Labels};

use super::aggregate::{format_go_g, valid_label_name};
use super::numeric::{
    Bucket, Mean, bucket_fraction, bucket_quantile, kahan_sum, linear_regression, quantile,
    variance,
};
use super::{
    Evaluator, Grid, RangeSeries, RangeVal, RangeWindows, Series, Val, absent, is_absent,
    labels_from, merge_into, strip,
};
use crate::QueryError;

/// Functions over a range vector, computed per window.
const RANGE_FUNCS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
    "mad_over_time",
    "ts_of_min_over_time",
    "ts_of_max_over_time",
    "ts_of_last_over_time",
    "ts_of_first_over_time",
    "double_exponential_smoothing",
];

fn err(msg: impl Into<String>) -> QueryError {
    QueryError::Execution(msg.into())
}

/// `max` with Go's NaN propagation.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `min` with Go's NaN propagation.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

impl Evaluator<'_> {
    pub(crate) fn call(&mut self, c: &Call, g: &Grid) -> Result<Val, QueryError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
        if RANGE_FUNCS.contains(&name) {
            return self.range_function(name, &args, g);
        }
        match name {
            "time" => Ok(Val::Scalar(
                (0..g.n).map(|i| g.t(i) as f64 / 1000.0).collect(),
            )),
            "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; g.n])),
            "start" => Ok(Val::Scalar(vec![self.query_start as f64 / 1000.0; g.n])),
            "end" => Ok(Val::Scalar(vec![self.query_end as f64 / 1000.0; g.n])),
            "range" => Ok(Val::Scalar(vec![
                (self.query_end - self.query_start) as f64
                    / 1000.0;
                g.n
            ])),
            "step" => Ok(Val::Scalar(vec![
                if g.n > 1 {
                    g.step as f64 / 1000.0
                } else {
                    0.0
                };
                g.n
            ])),
            "vector" => {
                let s = self.eval_scalar(arg(&args, 0)?, g)?;
                Ok(Val::Vector(vec![Series {
                    labels: Labels::default(),
                    drop_name: false,
                    vals: s,
                }]))
            }
            "scalar" => {
                let v = self.eval_vector(arg(&args, 0)?, g)?;
                let out = (0..g.n)
                    .map(|i| {
                        let mut it = v.iter().map(|s| s.vals[i]).filter(|x| !is_absent(*x));
                        match (it.next(), it.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect();
                Ok(Val::Scalar(out))
            }
            "timestamp" => {
                let a = arg(&args, 0)?;
                let mut v = match strip(a) {
                    Expr::VectorSelector(vs) => self.vector_selector(vs, g, true)?,
                    _ => {
                        let mut v = self.eval_vector(a, g)?;
                        for s in &mut v {
                            for (i, x) in s.vals.iter_mut().enumerate() {
                                if !is_absent(*x) {
                                    *x = g.t(i) as f64 / 1000.0;
                                }
                            }
                        }
                        v
                    }
                };
                for s in &mut v {
                    s.drop_name = true;
                }
                Ok(Val::Vector(v))
            }
            "absent" => {
                let a = arg(&args, 0)?;
                let v = self.eval_vector(a, g)?;
                let vals: Vec<f64> = (0..g.n)
                    .map(|i| {
                        if v.iter().any(|s| !is_absent(s.vals[i])) {
                            absent()
                        } else {
                            1.0
                        }
                    })
                    .collect();
                Ok(Val::Vector(absent_result(a, vals)))
            }
            "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn"
            | "acos" | "acosh" | "asin" | "asinh" | "atan" | "atanh" | "cos" | "cosh" | "sin"
            | "sinh" | "tan" | "tanh" | "deg" | "rad" => {
                let f: fn(f64) -> f64 = match name {
                    "abs" => f64::abs,
                    "ceil" => f64::ceil,
                    "floor" => f64::floor,
                    "exp" => f64::exp,
                    "sqrt" => f64::sqrt,
                    "ln" => f64::ln,
                    "log2" => f64::log2,
                    "log10" => f64::log10,
                    "sgn" => |v: f64| {
                        if v < 0.0 {
                            -1.0
                        } else if v > 0.0 {
                            1.0
                        } else {
                            v
                        }
                    },
                    "acos" => f64::acos,
                    "acosh" => f64::acosh,
                    "asin" => f64::asin,
                    "asinh" => f64::asinh,
                    "atan" => f64::atan,
                    "atanh" => f64::atanh,
                    "cos" => f64::cos,
                    "cosh" => f64::cosh,
                    "sin" => f64::sin,
                    "sinh" => f64::sinh,
                    "tan" => f64::tan,
                    "tanh" => f64::tanh,
                    "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
                    _ => |v: f64| v * std::f64::consts::PI / 180.0,
                };
                let v = self.eval_vector(arg(&args, 0)?, g)?;
                Ok(Val::Vector(map_values(v, |_, x| Some(f(x)))))
            }
            "round" => {
                let v = self.eval_vector(arg(&args, 0)?, g)?;
                let to = match args.get(1) {
                    Some(e) => self.eval_scalar(e, g)?,
                    None => vec![1.0; g.n],
                };
                Ok(Val::Vector(map_values(v, |i, x| {
                    let inv = 1.0 / to[i];
                    Some((x * inv + 0.5).floor() / inv)
                })))
            }
            "clamp" => {
                let v = self.eval_vector(arg(&args, 0)?, g)?;
                let lo = self.eval_scalar(arg(&args, 1)?, g)?;
                let hi = self.eval_scalar(arg(&args, 2)?, g)?;
                Ok(Val::Vector(map_values(v, |i, x| {
                    if hi[i] < lo[i] {
                        None
                    } else {
                        Some(go_max(lo[i], go_min(hi[i], x)))
                    }
                })))
            }
            "clamp_min" | "clamp_max" => {
                let v = self.eval_vector(arg(&args, 0)?, g)?;
                let b = self.eval_scalar(arg(&args, 1)?, g)?;
                let is_min = name == "clamp_min";
                Ok(Val::Vector(map_values(v, |i, x| {
                    Some(if is_min {
                        go_max(b[i], x)
                    } else {
                        go_min(b[i], x)
                    })
                })))
            }
            "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour"
            | "minute" | "month" | "year" => {
                let v = match args.first() {
                    Some(e) => self.eval_vector(e, g)?,
                    None => vec![Series {
                        labels: Labels::default(),
                        drop_name: false,
                        vals: (0..g.n).map(|i| g.t(i) as f64 / 1000.0).collect(),
                    }],
                };
                Ok(Val::Vector(map_values(v, |_, x| Some(date_part(name, x)))))
            }
            "absent_over_time" => self.absent_over_time(&args, g),
            "info" => self.info_fn(&args, g),
            "label_replace" => self.label_replace(&args, g),
            "label_join" => self.label_join(&args, g),
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
                let mut v = self.eval_vector(arg(&args, 0)?, g)?;
                if g.n > 1 {
                    self.warn(
                        "sort is ineffective for range queries since results are always ordered by labels".into(),
                        &format!("{name}("),
                    );
                    return Ok(Val::Vector(v));
                }
                let labels: Vec<String> = args
                    .iter()
                    .skip(1)
                    .filter_map(|a| match strip(a) {
                        Expr::StringLiteral(s) => Some(s.val.clone()),
                        _ => None,
                    })
                    .collect();
                sort_vector(name, &mut v, &labels);
                Ok(Val::Vector(v))
            }
            "histogram_quantile" => {
                let q = self.eval_scalar(arg(&args, 0)?, g)?;
                if let Some(&bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                    self.warn_at(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            format_go_g(bad)
                        ),
                        arg(&args, 0)?,
                    );
                }
                let va = arg(&args, 1)?;
                let v = self.eval_vector(va, g)?;
                self.classic_histogram(
                    v,
                    g,
                    |i, b| bucket_quantile(q[i], b),
                    "histogram_quantile",
                    va,
                )
            }
            "histogram_fraction" => {
                let lo = self.eval_scalar(arg(&args, 0)?, g)?;
                let hi = self.eval_scalar(arg(&args, 1)?, g)?;
                let va = arg(&args, 2)?;
                let v = self.eval_vector(va, g)?;
                self.classic_histogram(
                    v,
                    g,
                    |i, b| (bucket_fraction(lo[i], hi[i], b), Default::default()),
                    "histogram_fraction",
                    va,
                )
            }
            "histogram_quantiles" => {
                let va = arg(&args, 0)?;
                let v = self.eval_vector(va, g)?;
                let label = string_arg(&args, 1)?;
                let mut out = Vec::new();
                for qa in args.iter().skip(2) {
                    let q = self.eval_scalar(qa, g)?;
                    if let Some(&bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                        self.warn_at(
                            format!(
                                "quantile value should be between 0 and 1, got {}",
                                format_go_g(bad)
                            ),
                            qa,
                        );
                    }
                    let Val::Vector(part) = self.classic_histogram(
                        v.clone(),
                        g,
                        |i, b| bucket_quantile(q[i], b),
                        "histogram_quantile",
                        va,
                    )?
                    else {
                        continue;
                    };
                    let qv = q.first().copied().unwrap_or(f64::NAN);
                    for mut s in part {
                        s.labels =
                            set_label(&s.labels, &label, &super::numeric::format_openmetrics(qv));
                        out.push(s);
                    }
                }
                Ok(Val::Vector(out))
            }
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" => {
                // Float samples carry no native histograms: the result is empty.
                let _ = self.eval_vector(arg(&args, 0)?, g)?;
                Ok(Val::Vector(Vec::new()))
            }
            other => Err(QueryError::Unsupported(format!("function {other:?}"))),
        }
    }

    fn classic_histogram(
        &mut self,
        v: Vec<Series>,
        g: &Grid,
        f: impl Fn(usize, Vec<Bucket>) -> (f64, super::numeric::QuantileFlags),
        fname: &str,
        arg_expr: &Expr,
    ) -> Result<Val, QueryError> {
        // Group by all labels but `le`.
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
        for (si, s) in v.iter().enumerate() {
            let le = s.labels.get("le").unwrap_or("");
            let Some(upper) = parse_go_float(le) else {
                let name = s.labels.get(METRIC_NAME).unwrap_or("").to_string();
                self.warn_at(
                    format!("bucket label \"le\" is missing or has a malformed value of {le:?} for metric name \"{name}\""),
                    arg_expr,
                );
                continue;
            };
            let key = Labels::from_sorted(
                s.labels
                    .iter()
                    .filter(|l| l.name != "le")
                    .cloned()
                    .collect(),
            );
            let gi = match index.get(&key) {
                Some(&gi) => gi,
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[gi].1.push((upper, si));
        }
        let mut out = Vec::with_capacity(groups.len());
        for (labels, members) in groups {
            let mut vals = vec![absent(); g.n];
            let mut any = false;
            for (step, slot) in vals.iter_mut().enumerate() {
                let buckets: Vec<Bucket> = members
                    .iter()
                    .filter_map(|&(upper, si)| {
                        let c = v[si].vals[step];
                        (!is_absent(c)).then_some(Bucket { upper, count: c })
                    })
                    .collect();
                if buckets.is_empty() {
                    continue;
                }
                let (x, flags) = f(step, buckets);
                if flags.forced_monotonic {
                    let name = labels.get(METRIC_NAME).unwrap_or("").to_string();
                    self.info_at(
                        format!("input to {fname} needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{name}\""),
                        arg_expr,
                    );
                }
                *slot = x;
                any = true;
            }
            if any {
                out.push(Series {
                    labels,
                    drop_name: true,
                    vals,
                });
            }
        }
        Ok(Val::Vector(out))
    }

    fn label_replace(&mut self, args: &[&Expr], g: &Grid) -> Result<Val, QueryError> {
        let v = self.eval_vector(arg(args, 0)?, g)?;
        let dst = string_arg(args, 1)?;
        let repl = string_arg(args, 2)?;
        let src = string_arg(args, 3)?;
        let re_s = string_arg(args, 4)?;
        let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|e| {
            QueryError::BadParameters(format!(
                "invalid regular expression in label_replace(): {re_s}: {e}"
            ))
        })?;
        if !valid_label_name(&dst) {
            return Err(QueryError::BadParameters(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        let mut out = Vec::with_capacity(v.len());
        let mut index = HashMap::new();
        for mut s in v {
            let sv = s.labels.get(&src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&sv) {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                s.labels = set_label(&s.labels, &dst, &res);
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
            merge_into(&mut out, &mut index, s)?;
        }
        Ok(Val::Vector(out))
    }

    fn label_join(&mut self, args: &[&Expr], g: &Grid) -> Result<Val, QueryError> {
        let v = self.eval_vector(arg(args, 0)?, g)?;
        let dst = string_arg(args, 1)?;
        let sep = string_arg(args, 2)?;
        let mut srcs = Vec::new();
        for i in 3..args.len() {
            srcs.push(string_arg(args, i)?);
        }
        if !valid_label_name(&dst) {
            return Err(QueryError::BadParameters(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        let mut out = Vec::with_capacity(v.len());
        let mut index = HashMap::new();
        for mut s in v {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
            let joined = joined.join(&sep);
            s.labels = set_label(&s.labels, &dst, &joined);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
            merge_into(&mut out, &mut index, s)?;
        }
        Ok(Val::Vector(out))
    }

    fn range_function(&mut self, name: &str, args: &[&Expr], g: &Grid) -> Result<Val, QueryError> {
        let range_idx = if name == "quantile_over_time" { 1 } else { 0 };
        let range_expr = arg(args, range_idx)?;
        // Scalar parameters.
        let mut params: Vec<Vec<f64>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i != range_idx {
                params.push(self.eval_scalar(a, g)?);
            }
        }
        let p0 = params.first().cloned().unwrap_or_default();
        let p1 = params.get(1).cloned().unwrap_or_default();
        if name == "quantile_over_time"
            && let Some(&bad) = p0.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0)
        {
            self.warn(
                format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_go_g(bad)
                ),
                &super::expr_needle(arg(args, 0)?),
            );
        }
        if name == "double_exponential_smoothing" {
            if let Some(&sf) = p0.iter().find(|v| **v <= 0.0 || **v >= 1.0 || v.is_nan()) {
                return Err(err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if let Some(&tf) = p1.iter().find(|v| **v <= 0.0 || **v >= 1.0 || v.is_nan()) {
                return Err(err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
        }
        let keeps_name = matches!(name, "last_over_time" | "first_over_time");
        let counter_name = matches!(name, "rate" | "increase");
        let (p0, p1) = (&p0, &p1);
        // One series' values over the grid, and its name if `rate`/`increase` should say it
        // might not be a counter.
        let compute = |s: RangeSeries, ends: &[i64], range: i64| {
            let non_counter = if counter_name {
                s.labels
                    .get(METRIC_NAME)
                    .filter(|n| {
                        !["_total", "_sum", "_count", "_bucket"]
                            .iter()
                            .any(|suf| n.ends_with(suf))
                    })
                    .map(str::to_string)
            } else {
                None
            };
            let mut vals = vec![absent(); g.n];
            let mut any = false;
            // Counter resets are rare: when a series has none, windows need not look for them.
            let resets = s.pts.windows(2).any(|w| w[1].1 < w[0].1);
            let aggregate = s.aggregate;
            let weights = &s.weights;
            let pts = &s.pts;
            RangeWindows { range, ends }.windows(&s.pts, |i, w| {
                if w.is_empty() {
                    return;
                }
                let end = ends[i];
                let v = match (aggregate, name) {
                    // Downsampled counts: the window's count is the sum of the counts.
                    (Some(Aggregate::Count), "count_over_time") => {
                        Some(kahan_sum(w.iter().map(|p| p.1)))
                    }
                    // Downsampled counters are continuous: the increase runs from the last
                    // point before the window (the end of the previous resolution window) to
                    // the last point in it, as a slope over that span scaled to the range.
                    (Some(Aggregate::Counter), "rate" | "increase") => {
                        let from = pts.partition_point(|p| p.0 < w[0].0);
                        let last = w[w.len() - 1];
                        match from.checked_sub(1).and_then(|b| pts.get(b)) {
                            Some(&(bt, bv)) if last.0 > bt => {
                                let per_ms = (last.1 - bv) / (last.0 - bt) as f64;
                                Some(if name == "rate" {
                                    per_ms * 1000.0
                                } else {
                                    per_ms * range as f64
                                })
                            }
                            _ => window_value(
                                name,
                                w,
                                end - range,
                                end,
                                range,
                                g.t(i),
                                p0,
                                p1,
                                i,
                                resets,
                            ),
                        }
                    }
                    // Downsampled averages: sum of the sums over sum of the counts.
                    (Some(Aggregate::Avg), "avg_over_time") => {
                        let from = pts.partition_point(|p| p.0 < w[0].0);
                        let n = weights
                            .get(from..from + w.len())
                            .map(|ws| kahan_sum(ws.iter().copied()));
                        n.map(|n| kahan_sum(w.iter().map(|p| p.1)) / n)
                    }
                    _ => window_value(name, w, end - range, end, range, g.t(i), p0, p1, i, resets),
                };
                if let Some(v) = v {
                    vals[i] = v;
                    any = true;
                }
            });
            let series = any.then_some(Series {
                labels: s.labels,
                drop_name: s.drop_name || !keeps_name,
                vals,
            });
            (series, non_counter)
        };
        let computed: Vec<(Option<Series>, Option<String>)> = match strip(range_expr) {
            // A plain range selector: decode and compute each series in one pass.
            Expr::MatrixSelector(ms) => {
                let range = ms.range.as_millis() as i64;
                let (ends, bounds) = self.range_bounds(&ms.vs, range, g);
                let Some((lo, hi)) = bounds else {
                    return Ok(Val::Vector(Vec::new()));
                };
                let hints = self.range_hints(g, range, name);
                // A downsampled counter's windows are measured from the point before them:
                // fetch one resolution window more where one may be read.
                let margin = match Aggregate::for_function(Some(name), range) {
                    Some(a @ Aggregate::Counter) => coarsest_allowed(&hints, a),
                    _ => 0,
                };
                let ends = &ends;
                self.select_map(&ms.vs, lo.saturating_sub(margin), hi, &hints, true, |s| {
                    Some(compute(s, ends, range))
                })?
            }
            other => match self.eval(other, g)? {
                Val::Range(rv) => {
                    let RangeVal {
                        series,
                        range,
                        ends,
                    } = rv;
                    let ends = &ends;
                    super::par_map(series, self.opts.parallelism, |s| compute(s, ends, range))
                }
                v => {
                    return Err(QueryError::BadParameters(format!(
                        "expected type range vector in call to function {name:?}, got {}",
                        v.kind()
                    )));
                }
            },
        };
        self.check_cancel()?;
        let mut non_counter = None;
        let mut out = Vec::with_capacity(computed.len());
        for (s, nc) in computed {
            if non_counter.is_none() {
                non_counter = nc;
            }
            if let Some(s) = s {
                out.push(s);
            }
        }
        if let Some(n) = non_counter {
            self.info(
                format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"{n}\""
                ),
                &n,
            );
        }
        self.account(out.len() * g.n)?;
        Ok(Val::Vector(out))
    }

    /// `info(v, {selector})`: adds the data labels of matching info series (by `instance` and
    /// `job`) to each series of `v`.
    ///
    /// Info series are those the selector matches (default `target_info`; with only negative
    /// name matchers, among the `*_info` metrics). Only the labels named by the selector's non-name matchers are added (all data
    /// labels without them), never over a label the series already has. A series without a
    /// matching info series is kept unchanged if every data matcher accepts the empty value,
    /// else dropped at that step. Series that are themselves selected info metrics (their name
    /// satisfies every name matcher, at least one of them positive) pass unchanged.
    fn info_fn(&mut self, args: &[&Expr], g: &Grid) -> Result<Val, QueryError> {
        use strata_engine::{MatchOp, Matcher};
        let base = self.eval_vector(arg(args, 0)?, g)?;
        let selector = match args.get(1).map(|a| strip(a)) {
            None => Vec::new(),
            Some(Expr::VectorSelector(vs)) => {
                crate::to_engine_matchers(&vs.matchers, vs.name.as_deref())?
            }
            Some(other) => {
                return Err(QueryError::BadParameters(format!(
                    "expected a label selector as the second argument of info(), got {other}"
                )));
            }
        };
        let (mut name_ms, data_ms): (Vec<Matcher>, Vec<Matcher>) =
            selector.into_iter().partition(|m| m.name == METRIC_NAME);
        if name_ms.is_empty() {
            name_ms.push(Matcher::equal(METRIC_NAME, "target_info"));
        }
        let positive = name_ms
            .iter()
            .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex));
        let mut cand = name_ms.clone();
        cand.extend(data_ms.iter().cloned());
        if !positive {
            // Only negative name matchers: info metrics are still the `*_info` ones.
            cand.push(
                Matcher::new(MatchOp::Regex, METRIC_NAME, ".+_info")
                    .map_err(|e| QueryError::BadParameters(e.to_string()))?,
            );
        }
        // Info series are read at the times the base series were read (`@`, `offset`).
        let (at, off) = time_shift(arg(args, 0)?);
        let at = self.at_ms(&at);
        let refs: Vec<i64> = (0..g.n)
            .map(|i| at.unwrap_or_else(|| g.t(i)).saturating_sub(off))
            .collect();
        // Values are the sample times: when info series churn, the newest sample wins.
        let infos = self.select_steps(&cand, &refs, g, true)?;
        let ident = |l: &Labels| {
            (
                l.get("instance").unwrap_or("").to_string(),
                l.get("job").unwrap_or("").to_string(),
            )
        };
        let mut by_ident: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, s) in infos.iter().enumerate() {
            by_ident.entry(ident(&s.labels)).or_default().push(i);
        }
        let empty_ok = data_ms.iter().all(|m| m.matches(""));
        let wanted: Vec<&str> = data_ms.iter().map(|m| m.name.as_str()).collect();
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for s in base {
            let name = s.labels.get(METRIC_NAME).unwrap_or("");
            if positive && name_ms.iter().all(|m| m.matches(name)) {
                merge_into(&mut out, &mut index, s)?;
                continue;
            }
            let matches = by_ident.get(&ident(&s.labels));
            for step in 0..g.n {
                let v = s.vals[step];
                if is_absent(v) {
                    continue;
                }
                let mut present: Vec<usize> = matches
                    .map(|m| {
                        m.iter()
                            .copied()
                            .filter(|&i| !is_absent(infos[i].vals[step]))
                            .collect()
                    })
                    .unwrap_or_default();
                // Per info metric name, only the series with the newest sample counts.
                let newest: HashMap<&str, f64> =
                    present.iter().fold(HashMap::new(), |mut acc, &i| {
                        let n = infos[i].labels.get(METRIC_NAME).unwrap_or("");
                        let t = infos[i].vals[step];
                        let e = acc.entry(n).or_insert(t);
                        if t > *e {
                            *e = t;
                        }
                        acc
                    });
                present.retain(|&i| {
                    let n = infos[i].labels.get(METRIC_NAME).unwrap_or("");
                    newest.get(n).is_some_and(|&t| infos[i].vals[step] >= t)
                });
                if present.is_empty() && !empty_ok {
                    continue;
                }
                let mut added: Vec<Label> = Vec::new();
                for &i in &present {
                    for l in infos[i].labels.iter() {
                        if l.name == METRIC_NAME
                            || l.name == "instance"
                            || l.name == "job"
                            || s.labels.get(&l.name).is_some()
                            || (!wanted.is_empty() && !wanted.contains(&l.name.as_str()))
                        {
                            continue;
                        }
                        match added.iter().find(|a| a.name == l.name) {
                            Some(a) if a.value != l.value => {
                                return Err(err(format!(
                                    "conflicting label: {} has values {:?} and {:?} in info series for {}",
                                    l.name, a.value, l.value, s.labels
                                )));
                            }
                            Some(_) => {}
                            None => added.push(l.clone()),
                        }
                    }
                }
                let mut ls: Vec<Label> = s.labels.iter().cloned().collect();
                ls.extend(added);
                let mut vals = vec![absent(); g.n];
                vals[step] = v;
                merge_into(
                    &mut out,
                    &mut index,
                    Series {
                        labels: labels_from(ls),
                        drop_name: s.drop_name,
                        vals,
                    },
                )?;
            }
        }
        Ok(Val::Vector(out))
    }

    /// `absent_over_time`: 1 at the steps where no series has a sample in its window.
    fn absent_over_time(&mut self, args: &[&Expr], g: &Grid) -> Result<Val, QueryError> {
        let a = arg(args, 0)?;
        let rv = match strip(a) {
            Expr::MatrixSelector(ms) => {
                self.matrix_selector(&ms.vs, ms.range.as_millis() as i64, g, None)?
            }
            other => match self.eval(other, g)? {
                Val::Range(r) => r,
                v => {
                    return Err(QueryError::BadParameters(format!(
                        "expected type range vector in call to function \"absent_over_time\", got {}",
                        v.kind()
                    )));
                }
            },
        };
        let mut present = vec![false; g.n];
        for s in &rv.series {
            rv.windows(&s.pts, |i, w| {
                if !w.is_empty() {
                    present[i] = true;
                }
            });
        }
        let vals = present
            .iter()
            .map(|&p| if p { absent() } else { 1.0 })
            .collect();
        Ok(Val::Vector(absent_result(a, vals)))
    }
}

/// The `@` and total `offset` under which the first selector of `e` reads its data.
fn time_shift(e: &Expr) -> (Option<promql_parser::parser::AtModifier>, i64) {
    let off = |o: &Option<promql_parser::parser::Offset>| super::offset_ms(o);
    match e {
        Expr::VectorSelector(vs) => (vs.at.clone(), off(&vs.offset)),
        Expr::MatrixSelector(ms) => (ms.vs.at.clone(), off(&ms.vs.offset)),
        Expr::Subquery(sq) => {
            let (inner_at, inner_off) = time_shift(&sq.expr);
            if inner_at.is_some() {
                (inner_at, inner_off)
            } else {
                (sq.at.clone(), off(&sq.offset) + inner_off)
            }
        }
        Expr::Paren(p) => time_shift(&p.expr),
        Expr::Unary(u) => time_shift(&u.expr),
        Expr::Aggregate(a) => time_shift(&a.expr),
        Expr::Binary(b) => time_shift(&b.lhs),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| time_shift(a))
            .find(|(at, o)| at.is_some() || *o != 0)
            .unwrap_or((None, 0)),
        _ => (None, 0),
    }
}

/// The value of a range function over one window `(start, end]`; `t` is the step time.
#[allow(clippy::too_many_arguments)]
fn window_value(
    name: &str,
    w: &[(i64, f64)],
    start: i64,
    end: i64,
    range: i64,
    t: i64,
    p0: &[f64],
    p1: &[f64],
    step: usize,
    resets: bool,
) -> Option<f64> {
    let vals = || w.iter().map(|p| p.1);
    let (first, last) = (w.first()?, w.last()?);
    Some(match name {
        "rate" => extrapolated_rate(w, start, end, range, Counter::new(resets), true)?,
        "increase" => extrapolated_rate(w, start, end, range, Counter::new(resets), false)?,
        "delta" => extrapolated_rate(w, start, end, range, Counter::No, false)?,
        "irate" | "idelta" => {
            if w.len() < 2 {
                return None;
            }
            let (a, b) = (w[w.len() - 2], w[w.len() - 1]);
            let dt = b.0 - a.0;
            if dt == 0 {
                return None;
            }
            let is_rate = name == "irate";
            let mut v = if is_rate && b.1 < a.1 { b.1 } else { b.1 - a.1 };
            if is_rate {
                v /= dt as f64 / 1000.0;
            }
            v
        }
        "deriv" => {
            if w.len() < 2 {
                return None;
            }
            linear_regression(w, first.0).0
        }
        "predict_linear" => {
            if w.len() < 2 {
                return None;
            }
            let (slope, icpt) = linear_regression(w, t);
            icpt + slope * p0.get(step).copied().unwrap_or(f64::NAN)
        }
        "changes" | "resets" => {
            let mut n = 0.0;
            let mut prev = first.1;
            for &(_, v) in &w[1..] {
                let hit = if name == "changes" {
                    !(v == prev || (v.is_nan() && prev.is_nan()))
                } else {
                    v < prev
                };
                if hit {
                    n += 1.0;
                }
                prev = v;
            }
            n
        }
        "avg_over_time" => {
            let mut m = Mean::default();
            for v in vals() {
                m.add(v);
            }
            m.value()
        }
        "min_over_time" | "max_over_time" => {
            let is_max = name == "max_over_time";
            let mut acc = first.1;
            for v in vals() {
                if (is_max && v > acc) || (!is_max && v < acc) || acc.is_nan() {
                    acc = v;
                }
            }
            acc
        }
        "sum_over_time" => kahan_sum(vals()),
        "count_over_time" => w.len() as f64,
        "last_over_time" => last.1,
        "first_over_time" => first.1,
        "present_over_time" => 1.0,
        "stddev_over_time" => variance(vals()).sqrt(),
        "stdvar_over_time" => variance(vals()),
        "quantile_over_time" => {
            let mut xs: Vec<f64> = vals().collect();
            quantile(p0.get(step).copied().unwrap_or(f64::NAN), &mut xs)
        }
        "mad_over_time" => {
            if vals().any(f64::is_nan) {
                return Some(f64::NAN);
            }
            let mut xs: Vec<f64> = vals().collect();
            let median = quantile(0.5, &mut xs);
            let mut dev: Vec<f64> = vals().map(|v| (v - median).abs()).collect();
            quantile(0.5, &mut dev)
        }
        "ts_of_last_over_time" => last.0 as f64 / 1000.0,
        "ts_of_first_over_time" => first.0 as f64 / 1000.0,
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            let is_max = name == "ts_of_max_over_time";
            let (mut acc, mut at) = (first.1, first.0);
            for &(ts, v) in w {
                if (is_max && v >= acc) || (!is_max && v <= acc) || acc.is_nan() {
                    acc = v;
                    at = ts;
                }
            }
            at as f64 / 1000.0
        }
        "double_exponential_smoothing" => {
            if w.len() < 2 {
                return None;
            }
            let sf = p0.get(step).copied().unwrap_or(f64::NAN);
            let tf = p1.get(step).copied().unwrap_or(f64::NAN);
            let mut s0 = 0.0;
            let mut s1 = w[0].1;
            let mut b = w[1].1 - w[0].1;
            for (i, &(_, v)) in w.iter().enumerate().skip(1) {
                let x = sf * v;
                if i > 1 {
                    b = tf * (s1 - s0) + (1.0 - tf) * b;
                }
                let y = (1.0 - sf) * (s1 + b);
                s0 = s1;
                s1 = x + y;
            }
            s1
        }
        _ => return None,
    })
}

/// Whether `extrapolated_rate` treats the samples as a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    /// A gauge (`delta`).
    No,
    /// A counter whose series has no reset anywhere (the reset scan is skipped).
    NoResets,
    /// A counter that may reset inside the window.
    MayReset,
}

impl Counter {
    fn new(resets: bool) -> Counter {
        if resets {
            Counter::MayReset
        } else {
            Counter::NoResets
        }
    }
}

/// `rate`/`increase`/`delta` with Prometheus's extrapolation towards the window edges.
fn extrapolated_rate(
    w: &[(i64, f64)],
    start: i64,
    end: i64,
    range: i64,
    counter: Counter,
    is_rate: bool,
) -> Option<f64> {
    let is_counter = counter != Counter::No;
    if w.len() < 2 {
        return None;
    }
    let (first_t, first_v) = w[0];
    let (last_t, last_v) = w[w.len() - 1];
    let mut result = last_v - first_v;
    if counter == Counter::MayReset {
        let mut prev = first_v;
        for &(_, v) in &w[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first_t - start) as f64 / 1000.0;
    let mut to_end = (end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (w.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    interval += to_start;
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    interval += to_end;
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

fn arg<'e>(args: &[&'e Expr], i: usize) -> Result<&'e Expr, QueryError> {
    args.get(i)
        .copied()
        .ok_or_else(|| QueryError::BadParameters(format!("missing argument {}", i + 1)))
}

fn string_arg(args: &[&Expr], i: usize) -> Result<String, QueryError> {
    match strip(arg(args, i)?) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        other => Err(QueryError::BadParameters(format!(
            "expected string literal as argument {}, got {other}",
            i + 1
        ))),
    }
}

fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = l.iter().filter(|x| x.name != name).cloned().collect();
    if !value.is_empty() {
        v.push(Label::new(name, value));
    }
    labels_from(v)
}

/// Applies `f(step, value)` to every present value; `None` removes it. Drops the metric name.
fn map_values(mut v: Vec<Series>, f: impl Fn(usize, f64) -> Option<f64>) -> Vec<Series> {
    for s in &mut v {
        let mut any = false;
        for (i, x) in s.vals.iter_mut().enumerate() {
            if is_absent(*x) {
                continue;
            }
            match f(i, *x) {
                Some(y) => {
                    *x = y;
                    any = true;
                }
                None => *x = absent(),
            }
        }
        s.drop_name = true;
        if !any {
            s.vals.clear();
        }
    }
    v.retain(|s| !s.vals.is_empty());
    v
}

/// Labels of `absent(...)`: the equality matchers of a plain selector argument.
fn absent_result(a: &Expr, vals: Vec<f64>) -> Vec<Series> {
    if vals.iter().all(|v| is_absent(*v)) {
        return Vec::new();
    }
    let vs = match strip(a) {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels: Vec<Label> = Vec::new();
    if let Some(vs) = vs {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for m in &vs.matchers.matchers {
            *seen.entry(m.name.as_str()).or_default() += 1;
        }
        for m in &vs.matchers.matchers {
            if matches!(m.op, PMatchOp::Equal)
                && m.name != METRIC_NAME
                && seen.get(m.name.as_str()) == Some(&1)
            {
                labels.push(Label::new(m.name.clone(), m.value.clone()));
            }
        }
    }
    vec![Series {
        labels: labels_from(labels),
        drop_name: false,
        vals,
    }]
}

/// Parses a float as Go's `strconv.ParseFloat` would for bucket bounds.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().ok()
}

fn sort_vector(name: &str, v: &mut [Series], labels: &[String]) {
    use std::cmp::Ordering;
    let val = |s: &Series| s.vals.first().copied().unwrap_or(f64::NAN);
    match name {
        "sort" => v.sort_by(|a, b| {
            let (x, y) = (val(a), val(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            }
        }),
        "sort_desc" => v.sort_by(|a, b| {
            let (x, y) = (val(a), val(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
            }
        }),
        _ => {
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for l in labels {
                    let (x, y) = (a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                    if x == y {
                        continue;
                    }
                    let o = natural_cmp(x, y);
                    return if desc { o.reverse() } else { o };
                }
                let o = a.labels.cmp(&b.labels);
                if desc { o.reverse() } else { o }
            });
        }
    }
}

/// Natural order: digit runs compare by number, the rest byte-wise.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// Civil date from days since the epoch (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, v: f64) -> f64 {
    if !v.is_finite() {
        return f64::NAN;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    match name {
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let mut doy = CUM[(m - 1) as usize] + d;
            if m > 2 && is_leap(y) {
                doy += 1;
            }
            doy as f64
        }
        "days_in_month" => match m {
            2 => {
                if is_leap(y) {
                    29.0
                } else {
                    28.0
                }
            }
            4 | 6 | 9 | 11 => 30.0,
            _ => 31.0,
        },
        "hour" => (sod / 3600) as f64,
        "minute" => ((sod % 3600) / 60) as f64,
        "month" => m as f64,
        _ => y as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-02-29T13:45:00Z
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("hour", t), 13.0);
        assert_eq!(date_part("minute", t), 45.0);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
    }

    #[test]
    fn natural_order() {
        use std::cmp::Ordering;
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("x", "x1"), Ordering::Less);
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // 0, 10, ..., 50 every 60 s; window (0, 300] at t = 300 s.
        let w: Vec<(i64, f64)> = (1..=5).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
        let r = extrapolated_rate(&w, 0, 300_000, 300_000, Counter::MayReset, false);
        assert_eq!(r, Some(50.0));
    }
}
