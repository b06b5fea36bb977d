//! Aggregation operators (`sum`, `avg`, …, `topk`, `quantile`, `count_values`, `limitk`,
//! `limit_ratio`) with `by`/`without`.
//!
//! A series' group depends only on its labels, so grouping is done once per series; values are
//! then folded per step into per-group accumulators.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};
use strata_engine::labels::METRIC_NAME;
use strata_engine::{Label, Labels};

use super::numeric::{Mean, format_go_f, kahan_inc, quantile};
use super::{Evaluator, Grid, Series, Val, absent, is_absent, labels_from};
use crate::QueryError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
    Limitk,
    LimitRatio,
}

fn parse_agg(s: &str) -> Result<Agg, QueryError> {
    Ok(match s {
        "sum" => Agg::Sum,
        "avg" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "count" => Agg::Count,
        "group" => Agg::Group,
        "stddev" => Agg::Stddev,
        "stdvar" => Agg::Stdvar,
        "topk" => Agg::Topk,
        "bottomk" => Agg::Bottomk,
        "quantile" => Agg::Quantile,
        "count_values" => Agg::CountValues,
        "limitk" => Agg::Limitk,
        "limit_ratio" => Agg::LimitRatio,
        other => return Err(QueryError::Unsupported(format!("aggregation {other:?}"))),
    })
}

/// Group labels of a series under the modifier.
fn group_labels(l: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        None => Labels::default(),
        Some(LabelModifier::Include(names)) => Labels::from_sorted(
            l.iter()
                .filter(|x| names.labels.iter().any(|n| n == &x.name))
                .cloned()
                .collect(),
        ),
        Some(LabelModifier::Exclude(names)) => Labels::from_sorted(
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !names.labels.iter().any(|n| n == &x.name))
                .cloned()
                .collect(),
        ),
    }
}

/// Per-step accumulator of a simple aggregation.
#[derive(Clone, Debug, Default)]
struct Acc {
    seen: bool,
    v: f64,
    c: f64,
    count: f64,
    mean: Mean,
    w_mean: f64,
    w_c: f64,
    w_aux: f64,
    w_ca: f64,
}

impl Evaluator<'_> {
    pub(crate) fn aggregate(&mut self, a: &AggregateExpr, g: &Grid) -> Result<Val, QueryError> {
        let op = parse_agg(&a.op.to_string())?;
        // The parameter is evaluated before the input, as Prometheus does.
        let param = match (&a.param, op) {
            (Some(p), Agg::CountValues) => match self.eval(p, g)? {
                Val::Str(s) => Param::Str(s),
                other => {
                    return Err(QueryError::BadParameters(format!(
                        "expected type string in aggregation parameter, got {}",
                        other.kind()
                    )));
                }
            },
            (Some(p), _) => Param::Scalar(self.eval_scalar(p, g)?),
            (None, _) => Param::None,
        };
        let input = self.eval_vector(&a.expr, g)?;
        let m = a.modifier.as_ref();
        match op {
            Agg::Topk | Agg::Bottomk | Agg::Limitk | Agg::LimitRatio => {
                let Param::Scalar(k) = param else {
                    return Err(QueryError::BadParameters(
                        "aggregation needs a numeric parameter".into(),
                    ));
                };
                self.select_k(op, &k, input, m, g, &a.param)
            }
            Agg::CountValues => {
                let Param::Str(label) = param else {
                    return Err(QueryError::BadParameters(
                        "count_values needs a label name".into(),
                    ));
                };
                count_values(&label, input, m, g)
            }
            Agg::Quantile => {
                let Param::Scalar(q) = param else {
                    return Err(QueryError::BadParameters(
                        "quantile needs a numeric parameter".into(),
                    ));
                };
                if q.iter().any(|q| q.is_nan() || *q < 0.0 || *q > 1.0)
                    && let Some(&bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0)
                {
                    self.warn(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            format_go_g(bad)
                        ),
                        &param_text(&a.param),
                    );
                }
                let (groups, keys) = group(&input, m);
                let mut out = Vec::with_capacity(keys.len());
                for (gi, labels) in keys.into_iter().enumerate() {
                    let mut vals = vec![absent(); g.n];
                    let mut drop = false;
                    for (step, slot) in vals.iter_mut().enumerate() {
                        let mut xs: Vec<f64> = groups[gi]
                            .iter()
                            .filter_map(|&si| {
                                let v = input[si].vals[step];
                                (!is_absent(v)).then_some(v)
                            })
                            .collect();
                        if !xs.is_empty() {
                            *slot = quantile(q[step], &mut xs);
                        }
                    }
                    for &si in &groups[gi] {
                        drop |= input[si].drop_name;
                    }
                    if vals.iter().any(|v| !is_absent(*v)) {
                        out.push(Series {
                            labels,
                            drop_name: drop && has_name_in_by(m),
                            vals,
                        });
                    }
                }
                Ok(Val::Vector(out))
            }
            _ => {
                let (groups, keys) = group(&input, m);
                let mut out = Vec::with_capacity(keys.len());
                for (gi, labels) in keys.into_iter().enumerate() {
                    let mut accs = vec![Acc::default(); g.n];
                    let mut drop = false;
                    for &si in &groups[gi] {
                        let s = &input[si];
                        drop |= s.drop_name;
                        for (acc, &v) in accs.iter_mut().zip(&s.vals) {
                            if is_absent(v) {
                                continue;
                            }
                            fold(op, acc, v);
                        }
                    }
                    let vals: Vec<f64> = accs
                        .iter()
                        .map(|acc| if acc.seen { finish(op, acc) } else { absent() })
                        .collect();
                    if vals.iter().any(|v| !is_absent(*v)) {
                        out.push(Series {
                            labels,
                            drop_name: drop && has_name_in_by(m),
                            vals,
                        });
                    }
                }
                self.account(out.len() * g.n)?;
                Ok(Val::Vector(out))
            }
        }
    }

    fn select_k(
        &mut self,
        op: Agg,
        k: &[f64],
        mut input: Vec<Series>,
        m: Option<&LabelModifier>,
        g: &Grid,
        param: &Option<Box<Expr>>,
    ) -> Result<Val, QueryError> {
        if op == Agg::LimitRatio {
            if let Some(&bad) = k.iter().find(|r| !(-1.0..=1.0).contains(*r) || r.is_nan()) {
                self.warn(
                    format!(
                        "ratio value should be between -1 and 1, got {}",
                        format_go_g(bad)
                    ),
                    &param_text(param),
                );
            }
        } else {
            for &kv in k {
                if kv.is_nan() || kv.abs() >= 9.223_372_036_854_776e18 {
                    return Err(QueryError::Execution(format!(
                        "Scalar value {} overflows int64",
                        format_go_g(kv)
                    )));
                }
            }
        }
        let (groups, _) = group(&input, m);
        let mut keep = vec![vec![false; g.n]; input.len()];
        for members in &groups {
            for step in 0..g.n {
                let present: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&si| !is_absent(input[si].vals[step]))
                    .collect();
                if present.is_empty() {
                    continue;
                }
                match op {
                    Agg::LimitRatio => {
                        let r = k[step].clamp(-1.0, 1.0);
                        for &si in &present {
                            if ratio_sampled(&input[si].labels, r) {
                                keep[si][step] = true;
                            }
                        }
                    }
                    Agg::Limitk => {
                        let kk = k[step].trunc();
                        if kk < 1.0 {
                            continue;
                        }
                        for &si in present.iter().take(kk as usize) {
                            keep[si][step] = true;
                        }
                    }
                    _ => {
                        let kk = k[step].trunc();
                        if kk < 1.0 {
                            continue;
                        }
                        let mut sorted = present.clone();
                        sorted
                            .sort_by(|&a, &b| k_cmp(op, input[a].vals[step], input[b].vals[step]));
                        for &si in sorted.iter().take(kk as usize) {
                            keep[si][step] = true;
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (si, s) in input.iter_mut().enumerate() {
            let mut any = false;
            for (step, v) in s.vals.iter_mut().enumerate() {
                if !keep[si][step] {
                    *v = absent();
                } else {
                    any = true;
                }
            }
            if any {
                out.push(std::mem::take(s));
            }
        }
        // An instant query returns topk/bottomk ordered by value.
        if g.n == 1 && matches!(op, Agg::Topk | Agg::Bottomk) {
            let (groups, _) = group(&out, m);
            let mut ordered = Vec::with_capacity(out.len());
            for members in groups {
                let mut ms: Vec<usize> = members;
                ms.sort_by(|&a, &b| k_cmp(op, out[a].vals[0], out[b].vals[0]));
                for i in ms {
                    ordered.push(std::mem::take(&mut out[i]));
                }
            }
            out = ordered;
        }
        Ok(Val::Vector(out))
    }
}

/// Preference order of `topk` (descending) and `bottomk` (ascending); NaN always last.
fn k_cmp(op: Agg, x: f64, y: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if op == Agg::Topk {
        match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        }
    } else {
        cmp_nan_last(&x, &y)
    }
}

/// Ascending with NaN last.
fn cmp_nan_last(a: &f64, b: &f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

enum Param {
    None,
    Scalar(Vec<f64>),
    Str(String),
}

fn param_text(p: &Option<Box<Expr>>) -> String {
    match p.as_deref() {
        Some(Expr::NumberLiteral(_)) | None => String::new(),
        Some(e) => e.to_string(),
    }
}

/// Formats like Go's `%g`-ish `strconv.FormatFloat(v, 'g', -1, 64)` for messages.
pub(crate) fn format_go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{v:e}");
        // Go writes e+XX / e-XX with at least two exponent digits.
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{v}")
}

fn has_name_in_by(m: Option<&LabelModifier>) -> bool {
    matches!(m, Some(LabelModifier::Include(ls)) if ls.labels.iter().any(|n| n == METRIC_NAME))
}

/// Groups series: member indexes per group and the group labels, in first-seen order.
fn group(input: &[Series], m: Option<&LabelModifier>) -> (Vec<Vec<usize>>, Vec<Labels>) {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut keys = Vec::new();
    for (i, s) in input.iter().enumerate() {
        let gl = group_labels(&s.labels, m);
        match index.get(&gl) {
            Some(&gi) => groups[gi].push(i),
            None => {
                index.insert(gl.clone(), groups.len());
                groups.push(vec![i]);
                keys.push(gl);
            }
        }
    }
    (groups, keys)
}

/// Reduces the values of one group at one step with PromQL's aggregation kernels: `sum`
/// compensated, `avg` an overflow-safe mean, `min`/`max` with Prometheus's NaN handling,
/// `count`, `group`, `stddev`/`stdvar` (Welford). `None` for an empty group or another
/// operator. LogQL's vector aggregations and `*_over_time` functions use it too, so both
/// languages aggregate identically.
pub(crate) fn reduce(op_name: &str, xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let op = parse_agg(op_name).ok()?;
    if !matches!(
        op,
        Agg::Sum
            | Agg::Avg
            | Agg::Min
            | Agg::Max
            | Agg::Count
            | Agg::Group
            | Agg::Stddev
            | Agg::Stdvar
    ) {
        return None;
    }
    let mut acc = Acc::default();
    for x in xs {
        fold(op, &mut acc, x);
    }
    acc.seen.then(|| finish(op, &acc))
}

fn fold(op: Agg, acc: &mut Acc, v: f64) {
    let first = !acc.seen;
    acc.seen = true;
    match op {
        Agg::Sum => {
            if first {
                acc.v = v;
                acc.c = 0.0;
            } else {
                (acc.v, acc.c) = kahan_inc(v, acc.v, acc.c);
            }
        }
        Agg::Avg => acc.mean.add(v),
        Agg::Min if first || acc.v > v || acc.v.is_nan() => acc.v = v,
        Agg::Max if first || acc.v < v || acc.v.is_nan() => acc.v = v,
        Agg::Count => acc.count += 1.0,
        Agg::Group => acc.v = 1.0,
        Agg::Stddev | Agg::Stdvar => {
            acc.count += 1.0;
            let delta = v - (acc.w_mean + acc.w_c);
            (acc.w_mean, acc.w_c) = kahan_inc(delta / acc.count, acc.w_mean, acc.w_c);
            (acc.w_aux, acc.w_ca) =
                kahan_inc(delta * (v - (acc.w_mean + acc.w_c)), acc.w_aux, acc.w_ca);
        }
        _ => {}
    }
}

fn finish(op: Agg, acc: &Acc) -> f64 {
    match op {
        Agg::Sum => {
            if acc.v.is_infinite() {
                acc.v
            } else {
                acc.v + acc.c
            }
        }
        Agg::Avg => acc.mean.value(),
        Agg::Count => acc.count,
        Agg::Stdvar => (acc.w_aux + acc.w_ca) / acc.count,
        Agg::Stddev => ((acc.w_aux + acc.w_ca) / acc.count).sqrt(),
        _ => acc.v,
    }
}

fn count_values(
    label: &str,
    input: Vec<Series>,
    m: Option<&LabelModifier>,
    g: &Grid,
) -> Result<Val, QueryError> {
    if !valid_label_name(label) {
        return Err(QueryError::Execution(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    for s in &input {
        let base = group_labels(&s.labels, m);
        for (step, &v) in s.vals.iter().enumerate() {
            if is_absent(v) {
                continue;
            }
            let mut ls: Vec<Label> = base.iter().filter(|l| l.name != label).cloned().collect();
            ls.push(Label::new(label, format_go_f(v)));
            let labels = labels_from(ls);
            let i = match index.get(&labels) {
                Some(&i) => i,
                None => {
                    index.insert(labels.clone(), out.len());
                    out.push(Series {
                        labels,
                        drop_name: false,
                        vals: vec![absent(); g.n],
                    });
                    out.len() - 1
                }
            };
            let slot = &mut out[i].vals[step];
            *slot = if is_absent(*slot) { 1.0 } else { *slot + 1.0 };
        }
    }
    Ok(Val::Vector(out))
}

/// True if `name` is a valid Prometheus label name.
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `limit_ratio(r, …)` keeps a series: the XXH64 hash of its labels (each name and
/// value followed by a 0xff byte, as Prometheus hashes label sets) mapped to [0, 1), so the
/// same series are sampled as by Prometheus and `r` and `r - 1` pick complementary sets.
fn ratio_sampled(labels: &Labels, r: f64) -> bool {
    let mut b = Vec::with_capacity(256);
    for l in labels.iter() {
        b.extend_from_slice(l.name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(l.value.as_bytes());
        b.push(0xff);
    }
    let h = xxhash_rust::xxh64::xxh64(&b, 0) as f64 / u64::MAX as f64;
    if r >= 0.0 { h < r } else { h >= 1.0 + r }
}
