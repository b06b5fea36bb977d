//! The span tree of one trace, with its critical path.
//!
//! Spans arrive from many services, in any order, sometimes minutes apart, with clocks that
//! disagree. The tree is built from parent ids alone: a span whose parent was not received (or
//! whose parent chain loops, which only bad data can do) becomes a root beside the real root, so
//! nothing received is hidden. Children are ordered by start time.
//!
//! # Critical path
//!
//! The critical path is the chain of spans that determined the trace's end-to-end latency:
//! starting at the longest root, walk its children from the one that finished last backwards;
//! a child that ends before the point reached so far is on the path, its own children are
//! walked the same way, and the point moves to the child's start. Child times are clamped into
//! the parent's interval first, so a child whose clock runs ahead of its parent's (clock skew
//! between services) still counts, and the path never leaves its parent.

use std::collections::{HashMap, HashSet};

use strata_engine::traces::SpanRecord;

/// One span in the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanNode {
    /// Index of the span in [`TraceTree::spans`].
    pub index: usize,
    /// On the critical path.
    pub critical: bool,
    /// Time not covered by children (ns), clamped at 0.
    pub self_time_ns: u64,
    /// Children, by start time.
    pub children: Vec<SpanNode>,
}

/// A trace as a tree.
#[derive(Clone, Debug)]
pub struct TraceTree {
    /// The spans, by start time.
    pub spans: Vec<SpanRecord>,
    /// Root spans (real roots first, then orphans), each with its subtree.
    pub roots: Vec<SpanNode>,
    /// Span indexes on the critical path, from the root down.
    pub critical_path: Vec<usize>,
    /// Spans whose parent was not received.
    pub orphans: usize,
}

/// Builds the tree of a trace's spans (any order; duplicates by span id must be removed
/// before).
pub fn build_tree(mut spans: Vec<SpanRecord>) -> TraceTree {
    spans.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.span_id.cmp(&b.span_id)));
    let by_id: HashMap<[u8; 8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    let mut orphans = 0;
    for (i, s) in spans.iter().enumerate() {
        match by_id.get(&s.parent_span_id) {
            Some(&p) if !s.is_root() && p != i => children[p].push(i),
            _ => {
                if !s.is_root() {
                    orphans += 1;
                }
                roots.push(i);
            }
        }
    }
    // Spans on a parent cycle are reachable from no root: make the earliest of each a root.
    let mut reached = HashSet::new();
    let mut stack: Vec<usize> = roots.clone();
    while let Some(i) = stack.pop() {
        if reached.insert(i) {
            stack.extend(children[i].iter().copied());
        }
    }
    for i in 0..spans.len() {
        if !reached.contains(&i) {
            // Detach from its parent and promote.
            for c in children.iter_mut() {
                c.retain(|&x| x != i);
            }
            roots.push(i);
            orphans += 1;
            let mut stack = vec![i];
            while let Some(j) = stack.pop() {
                if reached.insert(j) {
                    stack.extend(children[j].iter().copied());
                }
            }
        }
    }
    // Real roots first (by start), then orphans.
    roots.sort_by_key(|&i| (!spans[i].is_root(), spans[i].start_ns));
    let main_root = roots
        .iter()
        .copied()
        .filter(|&i| spans[i].is_root())
        .max_by_key(|&i| spans[i].duration_ns())
        .or_else(|| roots.first().copied());
    let mut critical = HashSet::new();
    let mut path = Vec::new();
    if let Some(r) = main_root {
        critical_walk(
            &spans,
            &children,
            r,
            spans[r].start_ns,
            spans[r].end_ns,
            &mut critical,
            &mut path,
            0,
        );
    }
    let roots = roots
        .iter()
        .map(|&i| node(&spans, &children, &critical, i, 0))
        .collect();
    TraceTree {
        spans,
        roots,
        critical_path: path,
        orphans,
    }
}

/// Deeper trees than this are cut (their spans still listed as roots' descendants up to here).
const MAX_DEPTH: usize = 4096;

#[allow(clippy::too_many_arguments)]
fn critical_walk(
    spans: &[SpanRecord],
    children: &[Vec<usize>],
    i: usize,
    lo: u64,
    hi: u64,
    critical: &mut HashSet<usize>,
    path: &mut Vec<usize>,
    depth: usize,
) {
    if depth > MAX_DEPTH || !critical.insert(i) {
        return;
    }
    path.push(i);
    let clamp = |c: usize| {
        let s = spans[c].start_ns.clamp(lo, hi);
        let e = spans[c].end_ns.clamp(s, hi);
        (s, e)
    };
    let mut kids: Vec<usize> = children[i].clone();
    kids.sort_by_key(|&c| std::cmp::Reverse(clamp(c).1));
    let mut cursor = hi;
    for c in kids {
        let (s, e) = clamp(c);
        if e <= cursor && e > s {
            critical_walk(spans, children, c, s, e, critical, path, depth + 1);
            cursor = s;
        }
    }
}

fn node(
    spans: &[SpanRecord],
    children: &[Vec<usize>],
    critical: &HashSet<usize>,
    i: usize,
    depth: usize,
) -> SpanNode {
    let kids: Vec<SpanNode> = if depth < MAX_DEPTH {
        children[i]
            .iter()
            .map(|&c| node(spans, children, critical, c, depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    // Self time: the span's interval minus the union of its children's (clamped) intervals.
    let (lo, hi) = (spans[i].start_ns, spans[i].end_ns.max(spans[i].start_ns));
    let mut iv: Vec<(u64, u64)> = children[i]
        .iter()
        .map(|&c| {
            let s = spans[c].start_ns.clamp(lo, hi);
            (s, spans[c].end_ns.clamp(s, hi))
        })
        .collect();
    iv.sort_unstable();
    let mut covered = 0u64;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in iv {
        match cur {
            Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                covered += ce - cs;
                cur = Some((s, e));
            }
            None => cur = Some((s, e)),
        }
    }
    if let Some((cs, ce)) = cur {
        covered += ce - cs;
    }
    SpanNode {
        index: i,
        critical: critical.contains(&i),
        self_time_ns: (hi - lo).saturating_sub(covered),
        children: kids,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn span(id: u8, parent: u8, start: u64, end: u64) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            start_ns: start,
            end_ns: end,
            kind: 0,
            status: 0,
            service: format!("s{id}"),
            name: format!("op{id}"),
            attrs: vec![],
            payload: vec![],
        }
    }

    fn ids(t: &TraceTree, v: &[usize]) -> Vec<u8> {
        v.iter().map(|&i| t.spans[i].span_id[0]).collect()
    }

    #[test]
    fn tree_and_critical_path() {
        // root 1 [0,100]: 2 [0,30] (child 5 [5,25]), 3 [10,90] (child 4 [20,80]), 6 [95,97]
        let t = build_tree(vec![
            span(4, 3, 20, 80),
            span(1, 0, 0, 100),
            span(3, 1, 10, 90),
            span(2, 1, 0, 30),
            span(5, 2, 5, 25),
            span(6, 1, 95, 97),
        ]);
        assert_eq!(t.roots.len(), 1);
        assert_eq!(t.orphans, 0);
        let root = &t.roots[0];
        assert_eq!(
            ids(
                &t,
                &root.children.iter().map(|c| c.index).collect::<Vec<_>>()
            ),
            vec![2, 3, 6]
        );
        assert_eq!(ids(&t, &t.critical_path), vec![1, 6, 3, 4]);
        // 1 is covered by children over [0,90] ∪ [95,97].
        assert_eq!(root.self_time_ns, 8);
    }

    #[test]
    fn orphans_cycles_and_skew_are_tolerated() {
        let t = build_tree(vec![
            span(1, 0, 100, 200),
            // Child clock ahead of the parent: starts before and ends after.
            span(2, 1, 90, 210),
            // Parent never received.
            span(3, 9, 150, 160),
            // A two-span cycle.
            span(7, 8, 10, 20),
            span(8, 7, 11, 19),
        ]);
        assert_eq!(t.spans.len(), 5);
        assert_eq!(
            ids(&t, &t.roots.iter().map(|r| r.index).collect::<Vec<_>>())[0],
            1
        );
        assert_eq!(t.roots.len(), 3);
        assert_eq!(ids(&t, &t.critical_path), vec![1, 2]);
        let count = |n: &SpanNode| -> usize {
            fn c(n: &SpanNode) -> usize {
                1 + n.children.iter().map(c).sum::<usize>()
            }
            c(n)
        };
        assert_eq!(
            t.roots.iter().map(count).sum::<usize>(),
            5,
            "every span appears exactly once"
        );
    }

    #[test]
    fn self_parent_and_empty() {
        let t = build_tree(vec![span(1, 1, 0, 10)]);
        assert_eq!(t.roots.len(), 1);
        let t = build_tree(vec![]);
        assert!(t.roots.is_empty() && t.critical_path.is_empty());
    }
}
