//! Which blocks to merge next.
//!
//! The planner looks only at block metadata (`meta.json`), never at data, so planning a tenant
//! with thousands of blocks costs microseconds. It proposes one compaction at a time; the
//! caller runs it and asks again, because every compaction changes the block list.
//!
//! Rules, in order (the first that applies wins):
//!
//! 1. **Overlap.** Raw blocks whose time ranges overlap (out-of-order data cut into its own
//!    block, backfill, imports) are merged, all transitively overlapping blocks together, so
//!    that afterwards no two raw blocks overlap and a query never has to merge them.
//! 2. **Levels.** With ranges `r0 < r1 < …` (default 2 h, 6 h, 24 h), blocks smaller than `ri`
//!    that lie inside the same `ri`-aligned window (`[k·ri, (k+1)·ri)`) are merged into one
//!    block of that window once the window is complete, i.e. some raw block already reaches
//!    its last millisecond, so no further in-order block can land in it. Smaller ranges go
//!    first, so 2 h blocks become 6 h blocks before 6 h blocks become 24 h ones.
//! 3. **Tombstones.** A block whose tombstones name more than 5 % of its series is rewritten
//!    alone, which drops the deleted samples for good.
//!
//! Downsampled blocks (`resolution_ms > 0`) are never planned: they are written whole by the
//! downsampler and replaced by it.

use strata_engine::block::BlockMeta;

/// Why a plan was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The blocks overlap in time.
    Overlap,
    /// The blocks fill one window of this range (ms).
    Level(i64),
    /// The block carries many tombstones.
    Tombstones,
}

impl Reason {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Overlap => "overlap",
            Reason::Level(_) => "level",
            Reason::Tombstones => "tombstones",
        }
    }
}

/// One proposed compaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Ids of the input blocks, in the order readers merge them.
    pub inputs: Vec<String>,
    /// First millisecond of the output block (inclusive).
    pub min_time: i64,
    /// Last millisecond of the output block (inclusive).
    pub max_time: i64,
    /// Why.
    pub reason: Reason,
}

/// Fraction of a block's series with tombstones above which the block is rewritten.
pub const TOMBSTONE_REWRITE_RATIO: f64 = 0.05;

fn align_down(t: i64, range: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(range.max(1)))
}

/// Proposes the next compaction among `blocks` (any order) with level ranges `ranges_ms`
/// (ascending; the first is the head's block range). `tombstoned_series(id)` returns how many
/// series of a block have tombstones.
pub fn plan(
    blocks: &[BlockMeta],
    ranges_ms: &[i64],
    tombstoned_series: impl Fn(&str) -> u64,
) -> Option<Plan> {
    let mut raw: Vec<&BlockMeta> = blocks.iter().filter(|b| b.resolution_ms == 0).collect();
    raw.sort_by(|a, b| (a.min_time, a.max_time, &a.id).cmp(&(b.min_time, b.max_time, &b.id)));
    if let Some(p) = plan_overlap(&raw) {
        return Some(p);
    }
    if let Some(p) = plan_levels(&raw, ranges_ms) {
        return Some(p);
    }
    plan_tombstones(&raw, tombstoned_series)
}

fn plan_overlap(sorted: &[&BlockMeta]) -> Option<Plan> {
    let mut group: Vec<&BlockMeta> = Vec::new();
    let mut group_max = i64::MIN;
    for b in sorted {
        if !group.is_empty() && b.min_time > group_max {
            if group.len() > 1 {
                break;
            }
            group.clear();
        }
        group_max = if group.is_empty() {
            b.max_time
        } else {
            group_max.max(b.max_time)
        };
        group.push(b);
    }
    (group.len() > 1).then(|| plan_of(&group, Reason::Overlap))
}

fn plan_levels(sorted: &[&BlockMeta], ranges_ms: &[i64]) -> Option<Plan> {
    let newest = sorted.iter().map(|b| b.max_time).max()?;
    for &range in ranges_ms.iter().skip(1) {
        if range <= 0 {
            continue;
        }
        // Blocks are sorted by start, so the blocks of one window are consecutive.
        let mut window: Option<i64> = None;
        let mut group: Vec<&BlockMeta> = Vec::new();
        for b in sorted {
            let span = b.max_time.saturating_sub(b.min_time).saturating_add(1);
            let start = align_down(b.min_time, range);
            let fits = span < range && b.max_time < start.saturating_add(range);
            if window != Some(start) || !fits {
                if let Some(p) = complete_group(&group, window, range, newest) {
                    return Some(p);
                }
                group.clear();
                window = fits.then_some(start);
            }
            if fits {
                group.push(b);
            }
        }
        if let Some(p) = complete_group(&group, window, range, newest) {
            return Some(p);
        }
    }
    None
}

fn complete_group(
    group: &[&BlockMeta],
    window: Option<i64>,
    range: i64,
    newest: i64,
) -> Option<Plan> {
    let start = window?;
    let last = start.saturating_add(range).saturating_sub(1);
    if group.len() < 2 || newest < last {
        return None;
    }
    let mut p = plan_of(group, Reason::Level(range));
    p.min_time = start;
    p.max_time = last;
    Some(p)
}

fn plan_tombstones(sorted: &[&BlockMeta], tombstoned: impl Fn(&str) -> u64) -> Option<Plan> {
    sorted
        .iter()
        .find(|b| {
            let n = tombstoned(&b.id);
            n > 0 && n as f64 > b.stats.num_series as f64 * TOMBSTONE_REWRITE_RATIO
        })
        .map(|b| plan_of(&[*b], Reason::Tombstones))
}

fn plan_of(group: &[&BlockMeta], reason: Reason) -> Plan {
    Plan {
        inputs: group.iter().map(|b| b.id.clone()).collect(),
        min_time: group.iter().map(|b| b.min_time).min().unwrap_or(0),
        max_time: group.iter().map(|b| b.max_time).max().unwrap_or(0),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strata_engine::block::{BlockStats, CompactionMeta, new_block_id};

    const H: i64 = 3_600_000;
    const RANGES: [i64; 3] = [2 * H, 6 * H, 24 * H];

    fn meta(min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            id: new_block_id(),
            min_time: min,
            max_time: max,
            stats: BlockStats {
                num_series: 100,
                num_chunks: 100,
                num_samples: 1000,
            },
            compaction: CompactionMeta::default(),
            resolution_ms: 0,
            version: 1,
        }
    }

    fn two_hour(k: i64) -> BlockMeta {
        meta(k * 2 * H, (k + 1) * 2 * H - 1)
    }

    fn none(_: &str) -> u64 {
        0
    }

    #[test]
    fn merges_a_complete_window_and_waits_for_an_incomplete_one() {
        let blocks: Vec<BlockMeta> = (0..5).map(two_hour).collect();
        let p = plan(&blocks, &RANGES, none).unwrap();
        assert_eq!(p.reason, Reason::Level(6 * H));
        assert_eq!(
            p.inputs,
            blocks[..3].iter().map(|b| b.id.clone()).collect::<Vec<_>>()
        );
        assert_eq!((p.min_time, p.max_time), (0, 6 * H - 1));
        // Window [6h, 12h) holds 2 blocks but nothing reaches 12h yet.
        let rest = &blocks[3..];
        assert_eq!(plan(rest, &RANGES, none), None);
    }

    #[test]
    fn smaller_levels_first_then_larger() {
        // Four complete 6 h blocks and one 2 h block after them: the 24 h window is complete
        // once a block reaches its end.
        let mut blocks: Vec<BlockMeta> = (0..4)
            .map(|k| meta(k * 6 * H, (k + 1) * 6 * H - 1))
            .collect();
        assert_eq!(
            plan(&blocks, &RANGES, none),
            Some(Plan {
                inputs: blocks.iter().map(|b| b.id.clone()).collect(),
                min_time: 0,
                max_time: 24 * H - 1,
                reason: Reason::Level(24 * H),
            })
        );
        blocks.push(two_hour(12));
        blocks.push(two_hour(13));
        blocks.push(two_hour(14));
        let p = plan(&blocks, &RANGES, none).unwrap();
        assert_eq!(p.reason, Reason::Level(6 * H));
        assert_eq!(p.min_time, 24 * H);
    }

    #[test]
    fn overlap_beats_levels_and_groups_transitively() {
        let a = meta(0, 100);
        let b = meta(50, 200);
        let c = meta(150, 300);
        let d = meta(400, 500);
        let p = plan(&[d.clone(), c.clone(), a.clone(), b.clone()], &RANGES, none).unwrap();
        assert_eq!(p.reason, Reason::Overlap);
        assert_eq!(p.inputs, vec![a.id, b.id, c.id]);
        assert_eq!((p.min_time, p.max_time), (0, 300));
    }

    #[test]
    fn blocks_as_large_as_the_top_level_stay() {
        let blocks: Vec<BlockMeta> = (0..3)
            .map(|k| meta(k * 24 * H, (k + 1) * 24 * H - 1))
            .collect();
        assert_eq!(plan(&blocks, &RANGES, none), None);
        // Downsampled blocks are never planned, even if they overlap.
        let mut d = meta(0, 100);
        d.resolution_ms = 300_000;
        let mut e = meta(0, 100);
        e.resolution_ms = 300_000;
        assert_eq!(plan(&[d, e], &RANGES, none), None);
    }

    #[test]
    fn a_block_crossing_a_window_is_left_alone() {
        // An imported block spanning two 6 h windows cannot join either.
        let odd = meta(5 * H, 7 * H - 1);
        let blocks = vec![two_hour(0), two_hour(1), odd.clone(), two_hour(4)];
        let p = plan(&blocks, &RANGES, none).unwrap();
        assert!(!p.inputs.contains(&odd.id), "{p:?}");
    }

    #[test]
    fn tombstone_heavy_block_is_rewritten_alone() {
        let blocks = vec![meta(0, 24 * H - 1)];
        let id = blocks[0].id.clone();
        assert_eq!(plan(&blocks, &RANGES, |_| 5), None);
        let p = plan(&blocks, &RANGES, |b| if b == id { 6 } else { 0 }).unwrap();
        assert_eq!(p.reason, Reason::Tombstones);
        assert_eq!(p.inputs, vec![id]);
    }
}
