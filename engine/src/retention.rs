//! Retention: which whole blocks to delete, the same rule for every kind of block.
//!
//! Metric blocks, log blocks and trace blocks differ in format and time unit, but the question
//! retention asks of them is the same: given each block's time range and size, which blocks
//! are past the age limit, and which of the rest must go (oldest first) to get under a size
//! limit? [`expired`] answers it on plain numbers, so every store applies one tested rule and
//! only does the deleting itself.
//!
//! Only whole blocks are deleted: a block is kept while any of its data is within the age limit,
//! so up to one block's range more than the limit stays on disk. The reference time from which
//! age is measured is the caller's: the tenant's newest metric sample (as Prometheus measures
//! metrics retention, so a tenant that stops sending keeps its last days), or the wall clock
//! for logs and traces (as Loki and Tempo do).

/// Limits of a retention policy; units are the caller's (ms or ns, bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Blocks whose newest data is older than `reference - max_age` are deleted; 0 keeps
    /// everything.
    pub max_age: i64,
    /// Most bytes kept; the oldest blocks beyond it are deleted; 0 means no limit.
    pub max_bytes: u64,
}

/// What retention needs to know of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockExtent {
    /// Oldest data in the block (inclusive).
    pub min_time: i64,
    /// Newest data in the block (inclusive).
    pub max_time: i64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// Indices (into `blocks`, ascending) of the blocks `policy` deletes, with age measured back
/// from `reference`. Age goes first; then, while the remaining blocks exceed `max_bytes`, the
/// oldest remaining block (by `min_time`, then `max_time`, then index) is deleted.
pub fn expired(blocks: &[BlockExtent], reference: i64, policy: &RetentionPolicy) -> Vec<usize> {
    let mut gone = vec![false; blocks.len()];
    if policy.max_age > 0 {
        let cutoff = reference.saturating_sub(policy.max_age);
        for (g, b) in gone.iter_mut().zip(blocks) {
            *g = b.max_time < cutoff;
        }
    }
    if policy.max_bytes > 0 {
        let mut order: Vec<usize> = (0..blocks.len()).filter(|&i| !gone[i]).collect();
        order.sort_by_key(|&i| (blocks[i].min_time, blocks[i].max_time, i));
        let mut total: u64 = order.iter().map(|&i| blocks[i].bytes).sum();
        for i in order {
            if total <= policy.max_bytes {
                break;
            }
            total = total.saturating_sub(blocks[i].bytes);
            gone[i] = true;
        }
    }
    gone.iter()
        .enumerate()
        .filter_map(|(i, &g)| g.then_some(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(min_time: i64, max_time: i64, bytes: u64) -> BlockExtent {
        BlockExtent {
            min_time,
            max_time,
            bytes,
        }
    }

    #[test]
    fn age_keeps_blocks_that_reach_into_the_window() {
        let blocks = [b(0, 9, 1), b(10, 19, 1), b(20, 29, 1)];
        let p = RetentionPolicy {
            max_age: 15,
            max_bytes: 0,
        };
        // cutoff 30 - 15 = 15: [0, 9] goes, [10, 19] reaches 15 and stays.
        assert_eq!(expired(&blocks, 30, &p), vec![0]);
        assert!(expired(&blocks, 30, &RetentionPolicy::default()).is_empty());
    }

    #[test]
    fn size_deletes_oldest_first_after_age() {
        let blocks = [b(20, 29, 5), b(0, 9, 5), b(10, 19, 5)];
        let p = RetentionPolicy {
            max_age: 0,
            max_bytes: 10,
        };
        assert_eq!(expired(&blocks, 30, &p), vec![1]);
        let p = RetentionPolicy {
            max_age: 15,
            max_bytes: 5,
        };
        assert_eq!(expired(&blocks, 30, &p), vec![1, 2]);
    }

    proptest! {
        #[test]
        fn kept_blocks_obey_both_limits(
            spans in prop::collection::vec((0i64..1000, 0i64..100, 0u64..50), 0..30),
            reference in 0i64..1200,
            max_age in 0i64..500,
            max_bytes in 0u64..400,
        ) {
            let blocks: Vec<BlockExtent> = spans.iter().map(|&(a, l, s)| b(a, a + l, s)).collect();
            let p = RetentionPolicy { max_age, max_bytes };
            let gone = expired(&blocks, reference, &p);
            let kept: Vec<&BlockExtent> = blocks.iter().enumerate()
                .filter(|(i, _)| !gone.contains(i)).map(|(_, x)| x).collect();
            if max_age > 0 {
                prop_assert!(kept.iter().all(|x| x.max_time >= reference - max_age));
                // Nothing within the age limit is deleted for age.
            }
            if max_bytes > 0 {
                prop_assert!(kept.iter().map(|x| x.bytes).sum::<u64>() <= max_bytes);
            } else if max_age == 0 {
                prop_assert!(gone.is_empty());
            }
            // Size deletions never skip an older kept block for a newer one.
            if let Some(newest_gone_for_size) = gone.iter()
                .filter(|&&i| max_age == 0 || blocks[i].max_time >= reference - max_age)
                .map(|&i| (blocks[i].min_time, blocks[i].max_time))
                .max()
            {
                prop_assert!(kept.iter().all(|x| (x.min_time, x.max_time) >= newest_gone_for_size));
            }
        }
    }
}
