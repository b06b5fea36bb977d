//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators and vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`, `fill*`).
//!
//! Matching signatures depend only on a series' labels, so they are computed once per series
//! for the whole grid; the per-step work is a hash lookup per present sample.

// Steps index several parallel per-step arrays at once; index loops read clearer here.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use promql_parser::label::Labels as PLabels;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use strata_engine::labels::METRIC_NAME;
use strata_engine::{Label, Labels};

use super::{Evaluator, Grid, Series, Val, absent, is_absent, labels_from};
use crate::QueryError;

/// An operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op, QueryError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => {
                return Err(QueryError::Unsupported(format!(
                    "binary operator {other:?}"
                )));
            }
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Applies the operator; for comparisons returns `(lhs, keep)`.
    #[inline]
    pub(crate) fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (go_pow(l, r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

/// `x^y` with Go's special cases (which differ from C's in a few corners).
fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if y == 1.0 {
        return x;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    x.powf(y)
}

/// A matching signature: the label pairs that decide which series match.
type Sig = Vec<(String, String)>;

/// How series are matched.
struct Matching<'e> {
    on: bool,
    labels: &'e [String],
}

impl Matching<'_> {
    /// The matching signature: the `on` labels, or all labels but the `ignoring` ones and the
    /// metric name.
    fn signature(&self, l: &Labels) -> Vec<(String, String)> {
        if self.on {
            l.iter()
                .filter(|x| self.labels.iter().any(|n| n == &x.name))
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect()
        } else {
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !self.labels.iter().any(|n| n == &x.name))
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect()
        }
    }
}

fn sig_string(sig: &[(String, String)]) -> String {
    let inner: Vec<String> = sig.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn plabels(l: &PLabels) -> &[String] {
    &l.labels
}

impl Evaluator<'_> {
    pub(crate) fn binary(&mut self, b: &BinaryExpr, g: &Grid) -> Result<Val, QueryError> {
        let op = Op::parse(&b.op.to_string())?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, g)?;
        let rhs = self.eval(&b.rhs, g)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(&a, &c)| {
                        let (v, keep) = op.apply(a, c);
                        if op.is_comparison() {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Val::Vector(mut v), Val::Scalar(s)) => {
                vector_scalar(op, &mut v, &s, false, return_bool);
                Ok(Val::Vector(v))
            }
            (Val::Scalar(s), Val::Vector(mut v)) => {
                vector_scalar(op, &mut v, &s, true, return_bool);
                Ok(Val::Vector(v))
            }
            (Val::Vector(l), Val::Vector(r)) => {
                let modifier = b.modifier.as_ref();
                let (on, names): (bool, &[String]) =
                    match modifier.and_then(|m| m.matching.as_ref()) {
                        Some(LabelModifier::Include(ls)) => (true, plabels(ls)),
                        Some(LabelModifier::Exclude(ls)) => (false, plabels(ls)),
                        None => (false, &[]),
                    };
                let matching = Matching { on, labels: names };
                match op {
                    Op::And | Op::Or | Op::Unless => Ok(Val::Vector(set_op(op, l, r, &matching))),
                    _ => {
                        let card = modifier
                            .map(|m| m.card.clone())
                            .unwrap_or(VectorMatchCardinality::OneToOne);
                        let fill = modifier.map(|m| m.fill_values.clone()).unwrap_or_default();
                        let out = self.vector_vector(
                            op,
                            l,
                            r,
                            &matching,
                            &card,
                            return_bool,
                            (fill.lhs, fill.rhs),
                            g,
                        )?;
                        Ok(Val::Vector(out))
                    }
                }
            }
            (l, r) => Err(QueryError::BadParameters(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.kind(),
                r.kind()
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn vector_vector(
        &mut self,
        op: Op,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
        matching: &Matching<'_>,
        card: &VectorMatchCardinality,
        return_bool: bool,
        fill: (Option<f64>, Option<f64>),
        g: &Grid,
    ) -> Result<Vec<Series>, QueryError> {
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let include: &[String] = match card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
                plabels(l)
            }
            _ => &[],
        };
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        // `many` is iterated, `one` is looked up.
        let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
        // The fill values are not swapped for `group_right` (as Prometheus does).
        let (fill_many, fill_one) = (fill.0, fill.1);
        let one_side = if one_to_many { "left" } else { "right" };
        let many_sigs: Vec<Vec<(String, String)>> =
            many.iter().map(|s| matching.signature(&s.labels)).collect();
        let mut one_by_sig: HashMap<Vec<(String, String)>, Vec<usize>> = HashMap::new();
        for (i, s) in one.iter().enumerate() {
            one_by_sig
                .entry(matching.signature(&s.labels))
                .or_default()
                .push(i);
        }
        // Duplicates on the "one" side at any step are an error.
        for idx in one_by_sig.values() {
            if idx.len() < 2 {
                continue;
            }
            for step in 0..g.n {
                let present: Vec<usize> = idx
                    .iter()
                    .copied()
                    .filter(|&i| one.get(i).is_some_and(|s| !is_absent(s.vals[step])))
                    .collect();
                if present.len() > 1 {
                    let a = &one[present[1]];
                    let b = &one[present[0]];
                    let sig = matching.signature(&a.labels);
                    return Err(QueryError::Execution(format!(
                        "found duplicate series for the match group {} on the {one_side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        sig_string(&sig),
                        a.labels,
                        b.labels
                    )));
                }
            }
        }
        // Output series keyed by their labels.
        let mut out: Vec<Series> = Vec::new();
        let mut out_index: HashMap<Labels, usize> = HashMap::new();
        // Per step and signature: which output labels were produced (for the error checks).
        let mut matched: Vec<HashMap<&Sig, Vec<usize>>> = vec![HashMap::new(); g.n];
        let mut one_matched = vec![vec![false; g.n]; one.len()];
        for (mi, ms) in many.iter().enumerate() {
            let sig = &many_sigs[mi];
            let candidates = one_by_sig.get(sig);
            let mut labels_cache: HashMap<usize, usize> = HashMap::new();
            for step in 0..g.n {
                let lv = ms.vals[step];
                if is_absent(lv) {
                    continue;
                }
                let found = candidates.and_then(|c| {
                    c.iter()
                        .copied()
                        .find(|&i| one.get(i).is_some_and(|s| !is_absent(s.vals[step])))
                });
                let (rv, oi) = match found {
                    Some(i) => {
                        one_matched[i][step] = true;
                        (one[i].vals[step], Some(i))
                    }
                    None => match fill_one {
                        Some(f) => (f, None),
                        None => continue,
                    },
                };
                let (fl, fr) = if one_to_many { (rv, lv) } else { (lv, rv) };
                let (mut v, keep) = op.apply(fl, fr);
                if return_bool {
                    v = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
                let key = oi.unwrap_or(usize::MAX);
                let out_i = match labels_cache.get(&key) {
                    Some(&i) => i,
                    None => {
                        let labels = result_labels(
                            &ms.labels,
                            oi.map(|i| &one[i].labels),
                            op,
                            matching,
                            one_to_one,
                            include,
                        );
                        let i = output_slot(&mut out, &mut out_index, labels, g.n);
                        labels_cache.insert(key, i);
                        i
                    }
                };
                let produced = matched[step].entry(sig).or_default();
                if one_to_one {
                    if !produced.is_empty() {
                        return Err(QueryError::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".to_string(),
                        ));
                    }
                } else if produced.contains(&out_i) {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .to_string(),
                    ));
                }
                produced.push(out_i);
                let dst = &mut out[out_i];
                if !is_absent(dst.vals[step]) {
                    return Err(QueryError::Execution(
                        "vector cannot contain metrics with the same labelset".to_string(),
                    ));
                }
                dst.vals[step] = v;
                dst.drop_name |= return_bool || !op.is_comparison() || ms.drop_name;
            }
        }
        // `fill` for the iterated side: "one" series without a partner.
        if let Some(f) = fill_many {
            for (oi, os) in one.iter().enumerate() {
                let mut labels_idx = None;
                for step in 0..g.n {
                    let rv = os.vals[step];
                    if is_absent(rv) || one_matched[oi][step] {
                        continue;
                    }
                    let (fl, fr) = if one_to_many { (rv, f) } else { (f, rv) };
                    let (mut v, keep) = op.apply(fl, fr);
                    if return_bool {
                        v = if keep { 1.0 } else { 0.0 };
                    } else if !keep {
                        continue;
                    }
                    let i = match labels_idx {
                        Some(i) => i,
                        None => {
                            let labels = result_labels(&os.labels, None, op, matching, true, &[]);
                            let i = output_slot(&mut out, &mut out_index, labels, g.n);
                            labels_idx = Some(i);
                            i
                        }
                    };
                    let dst = &mut out[i];
                    if !is_absent(dst.vals[step]) {
                        return Err(QueryError::Execution(
                            "vector cannot contain metrics with the same labelset".to_string(),
                        ));
                    }
                    dst.vals[step] = v;
                    // A filled result takes the match group's labels, without a name.
                    dst.drop_name = true;
                }
            }
        }
        self.account(out.len() * g.n)?;
        Ok(out)
    }
}

/// The index of the output series with `labels`, created empty (`n` steps) if new.
fn output_slot(
    out: &mut Vec<Series>,
    index: &mut HashMap<Labels, usize>,
    labels: Labels,
    n: usize,
) -> usize {
    match index.entry(labels) {
        Entry::Occupied(e) => *e.get(),
        Entry::Vacant(e) => {
            let labels = e.key().clone();
            e.insert(out.len());
            out.push(Series {
                labels,
                drop_name: false,
                vals: vec![absent(); n],
            });
            out.len() - 1
        }
    }
}

/// Labels of a vector-vector result: the "many" side's labels, reduced for one-to-one
/// matching and extended by `group_*` labels from the "one" side.
fn result_labels(
    many: &Labels,
    one: Option<&Labels>,
    _op: Op,
    matching: &Matching<'_>,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut v: Vec<Label> = many.iter().cloned().collect();
    if one_to_one {
        if matching.on {
            v.retain(|l| matching.labels.iter().any(|n| n == &l.name));
        } else {
            v.retain(|l| !matching.labels.iter().any(|n| n == &l.name));
        }
    }
    for name in include {
        v.retain(|l| &l.name != name);
        if let Some(val) = one.and_then(|o| o.get(name)) {
            v.push(Label::new(name.clone(), val));
        }
    }
    labels_from(v)
}

fn vector_scalar(op: Op, v: &mut Vec<Series>, s: &[f64], swap: bool, return_bool: bool) {
    for series in v.iter_mut() {
        let mut any = false;
        for (x, &sv) in series.vals.iter_mut().zip(s) {
            if is_absent(*x) {
                continue;
            }
            let (l, r) = if swap { (sv, *x) } else { (*x, sv) };
            let (mut val, keep) = op.apply(l, r);
            if op.is_comparison() && swap {
                val = r;
            }
            if return_bool {
                val = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                *x = absent();
                continue;
            }
            *x = val;
            any = true;
        }
        if !op.is_comparison() || return_bool {
            series.drop_name = true;
        }
        if !any {
            series.vals.clear();
        }
    }
    v.retain(|s| !s.vals.is_empty());
}

fn set_op(op: Op, lhs: Vec<Series>, rhs: Vec<Series>, m: &Matching<'_>) -> Vec<Series> {
    let n = lhs
        .first()
        .or(rhs.first())
        .map(|s| s.vals.len())
        .unwrap_or(0);
    // Per signature: at which steps the side has a sample.
    let presence = |side: &[Series]| {
        let mut map: HashMap<Vec<(String, String)>, Vec<bool>> = HashMap::new();
        for s in side {
            let e = map
                .entry(m.signature(&s.labels))
                .or_insert_with(|| vec![false; n]);
            for (p, v) in e.iter_mut().zip(&s.vals) {
                *p |= !is_absent(*v);
            }
        }
        map
    };
    match op {
        Op::And | Op::Unless => {
            let rp = presence(&rhs);
            let mut out = Vec::with_capacity(lhs.len());
            for mut s in lhs {
                let sig = m.signature(&s.labels);
                let p = rp.get(&sig);
                let mut any = false;
                for (i, x) in s.vals.iter_mut().enumerate() {
                    if is_absent(*x) {
                        continue;
                    }
                    let has = p.is_some_and(|p| p[i]);
                    if (op == Op::And) != has {
                        *x = absent();
                    } else {
                        any = true;
                    }
                }
                if any {
                    out.push(s);
                }
            }
            out
        }
        _ => {
            let lp = presence(&lhs);
            let mut out = lhs;
            for mut s in rhs {
                let sig = m.signature(&s.labels);
                let p = lp.get(&sig);
                let mut any = false;
                for (i, x) in s.vals.iter_mut().enumerate() {
                    if is_absent(*x) {
                        continue;
                    }
                    if p.is_some_and(|p| p[i]) {
                        *x = absent();
                    } else {
                        any = true;
                    }
                }
                if any {
                    out.push(s);
                }
            }
            out
        }
    }
}
