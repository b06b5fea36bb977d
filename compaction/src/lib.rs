//! Block compaction: merging a tenant's small and overlapping blocks into larger ones.
//!
//! The head cuts a 2 h block at a time. Left alone, a month of data would be 360 blocks per
//! tenant, every long-range query would open all of them, out-of-order and backfilled blocks
//! would overlap their neighbours and make every query merge them, and tombstoned samples would
//! stay on disk forever. Compaction fixes all four: the [`planner`] picks blocks to merge
//! (overlaps first, then levels of ranges 2 h → 6 h → 24 h, then tombstone-heavy blocks) and
//! [`compact`] streams them into one new block that replaces its inputs atomically.
//!
//! Downsampling ([`downsample`]) writes 5 m and 1 h aggregate copies of old raw blocks, which
//! queries with large steps read instead of raw data.
//!
//! One compaction runs at a time per tenant: every entry point here takes the tenant's
//! maintenance lock ([`TenantDb::lock_maintenance`]), which deletion, downsampling and
//! retention take too. Progress and durations are counted in [`CompactionStats`], which the
//! server exposes on `/metrics`.

pub mod compact;
pub mod downsample;
pub mod planner;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_engine::TenantDb;

pub use compact::{CompactionReport, MergeOptions, compact_blocks};
pub use planner::{Plan, Reason, plan};

/// Errors of compaction.
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    /// The storage engine failed (reading inputs, writing or publishing the output).
    #[error(transparent)]
    Engine(#[from] strata_engine::Error),
    /// A block file could not be read or written.
    #[error(transparent)]
    Block(#[from] strata_engine::block::BlockError),
    /// A planned input is not among the tenant's blocks.
    #[error("block {0} is not loaded")]
    UnknownBlock(String),
    /// An input block lies outside the output range.
    #[error("block {block} does not fit in the output range [{min_time}, {max_time}]")]
    RangeTooSmall {
        /// The input.
        block: String,
        /// Output start.
        min_time: i64,
        /// Output end.
        max_time: i64,
    },
    /// Downsampled blocks are not merged by the compactor.
    #[error("block {0} is downsampled; only raw blocks are compacted")]
    Downsampled(String),
    /// A broken internal invariant (a bug), reported instead of panicking.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Result of compaction operations.
pub type Result<T> = std::result::Result<T, CompactionError>;

/// Compaction settings.
#[derive(Clone, Debug)]
pub struct CompactorOptions {
    /// Block ranges of the levels in ms, ascending; the first is the head's block range.
    /// Default: 2 h, 6 h, 24 h.
    pub ranges_ms: Vec<i64>,
    /// Merge tunables (output chunk size, write rate limit).
    pub merge: MergeOptions,
    /// At most this many compactions per tenant per call of [`compact_tenant`], so that one
    /// tenant with a large backlog does not starve the others. Default: 8.
    pub max_per_run: usize,
}

/// Default level ranges: 2 h, 6 h, 24 h.
pub const DEFAULT_RANGES_MS: [i64; 3] = [2 * 3_600_000, 6 * 3_600_000, 24 * 3_600_000];

impl Default for CompactorOptions {
    fn default() -> Self {
        CompactorOptions {
            ranges_ms: DEFAULT_RANGES_MS.to_vec(),
            merge: MergeOptions::default(),
            max_per_run: 8,
        }
    }
}

/// Counters of compaction work, for `/metrics`.
#[derive(Debug, Default)]
pub struct CompactionStats {
    /// Compactions that completed.
    pub completed: AtomicU64,
    /// Compactions that failed.
    pub failed: AtomicU64,
    /// Compactions running now.
    pub running: AtomicU64,
    /// Input blocks merged.
    pub blocks_in: AtomicU64,
    /// Samples read.
    pub samples_in: AtomicU64,
    /// Samples written.
    pub samples_out: AtomicU64,
    /// Chunk bytes written.
    pub bytes_out: AtomicU64,
    /// Total wall time of completed compactions, in microseconds.
    pub duration_us: AtomicU64,
    /// Wall time of the last completed compaction, in microseconds.
    pub last_duration_us: AtomicU64,
}

impl CompactionStats {
    fn record(&self, r: &CompactionReport) {
        let us = u64::try_from(r.elapsed.as_micros()).unwrap_or(u64::MAX);
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.blocks_in
            .fetch_add(r.inputs.len() as u64, Ordering::Relaxed);
        self.samples_in.fetch_add(r.samples_in, Ordering::Relaxed);
        self.samples_out.fetch_add(r.samples_out, Ordering::Relaxed);
        self.bytes_out.fetch_add(r.chunk_bytes, Ordering::Relaxed);
        self.duration_us.fetch_add(us, Ordering::Relaxed);
        self.last_duration_us.store(us, Ordering::Relaxed);
    }
}

/// Runs planned compactions on one tenant until nothing is left to do (or
/// `opts.max_per_run` ran). Returns what each compaction did.
pub fn compact_tenant(
    db: &TenantDb,
    opts: &CompactorOptions,
    stats: &CompactionStats,
) -> Result<Vec<CompactionReport>> {
    let _maint = db.lock_maintenance();
    let mut out = Vec::new();
    while out.len() < opts.max_per_run.max(1) {
        let blocks = db.blocks();
        let metas: Vec<_> = blocks.iter().map(|b| b.meta().clone()).collect();
        let Some(p) = planner::plan(&metas, &opts.ranges_ms, |id| {
            blocks
                .iter()
                .find(|b| b.meta().id == id)
                .map_or(0, |b| b.tombstones().len() as u64)
        }) else {
            break;
        };
        out.push(run_plan(db, &p, opts, stats)?);
    }
    Ok(out)
}

/// Rewrites every raw block that has tombstones, dropping the deleted samples for good
/// (`/api/v1/admin/tsdb/clean_tombstones`). Returns what each rewrite did.
pub fn clean_tombstones(
    db: &TenantDb,
    opts: &CompactorOptions,
    stats: &CompactionStats,
) -> Result<Vec<CompactionReport>> {
    let _maint = db.lock_maintenance();
    let mut out = Vec::new();
    for b in db.blocks() {
        if b.tombstones().is_empty() || b.meta().resolution_ms != 0 {
            continue;
        }
        let m = b.meta();
        let p = Plan {
            inputs: vec![m.id.clone()],
            min_time: m.min_time,
            max_time: m.max_time,
            reason: Reason::Tombstones,
        };
        out.push(run_plan(db, &p, opts, stats)?);
    }
    Ok(out)
}

fn run_plan(
    db: &TenantDb,
    p: &Plan,
    opts: &CompactorOptions,
    stats: &CompactionStats,
) -> Result<CompactionReport> {
    stats.running.fetch_add(1, Ordering::Relaxed);
    // Re-chunk once, when the output reaches the top level (or for rewrites, which re-encode
    // anyway); intermediate levels copy chunks.
    let top = opts.ranges_ms.iter().copied().max().unwrap_or(0);
    let span = p.max_time.saturating_sub(p.min_time).saturating_add(1);
    let merge = MergeOptions {
        rechunk: opts.merge.rechunk && (span >= top || !matches!(p.reason, Reason::Level(_))),
        ..opts.merge.clone()
    };
    let res = compact_blocks(db, &p.inputs, p.min_time, p.max_time, &merge);
    stats.running.fetch_sub(1, Ordering::Relaxed);
    match &res {
        Ok(r) => {
            stats.record(r);
            tracing::info!(
                tenant = db.id(),
                reason = p.reason.as_str(),
                inputs = p.inputs.len(),
                output = r
                    .output
                    .as_ref()
                    .map_or("(none: all deleted)", |m| m.id.as_str()),
                min_time = p.min_time,
                max_time = p.max_time,
                samples_in = r.samples_in,
                samples_out = r.samples_out,
                series_copied = r.series_copied,
                series_reencoded = r.series_reencoded,
                elapsed_ms = r.elapsed.as_millis() as u64,
                "compacted blocks"
            );
        }
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(tenant = db.id(), reason = p.reason.as_str(), inputs = ?p.inputs, error = %e, "compaction failed");
            // A failed write may leave a temp directory; it holds nothing anyone reads.
            if let Err(e) = strata_engine::block::cleanup_incomplete(db.dir()) {
                tracing::warn!(tenant = db.id(), error = %e, "removing a failed compaction's temp directory");
            }
        }
    }
    res
}

/// Limits the rate of bytes written by sleeping once the budget of the current second is
/// spent: compaction must not starve ingestion and queries of disk bandwidth.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    window_start: Instant,
    in_window: u64,
}

impl Throttle {
    /// A throttle allowing `bytes_per_sec` (0: unlimited).
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle {
            bytes_per_sec,
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    /// Accounts `n` bytes written; sleeps until the next window if the budget is spent.
    pub fn wrote(&mut self, n: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        self.in_window = self.in_window.saturating_add(n);
        if self.in_window < self.bytes_per_sec {
            return;
        }
        let elapsed = self.window_start.elapsed();
        if let Some(rest) = Duration::from_secs(1).checked_sub(elapsed) {
            std::thread::sleep(rest);
        }
        self.window_start = Instant::now();
        self.in_window = 0;
    }
}
