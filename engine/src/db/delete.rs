//! Series deletion: tombstones in blocks and in the head.
//!
//! Deleting never rewrites samples. For the blocks it adds the deleted interval, clipped to each
//! overlapping block's range, to that block's `tombstones` file (replaced atomically) and swaps
//! the tenant's `Arc<Block>` for a copy carrying the new set; queriers holding the old `Arc`
//! keep the view they started with. For the head it writes a TOMBSTONES WAL record and then
//! records the intervals in the head, so that a restart replays the deletion. Readers skip
//! tombstoned samples; a block cut from the head leaves them out, and compaction drops block
//! tombstones when it rewrites a block.
//!
//! # Which samples a deletion removes
//!
//! As in Prometheus, a deletion removes what exists when it is made: in the head the interval is
//! clamped to each series' data range `[oldest, newest]` at that moment, in blocks to the block
//! range. A clamped head interval then applies to every head sample of the series with a
//! timestamp inside it, whatever its arrival time — an out-of-order sample appended later into a
//! deleted interval is deleted too. Samples newer than the series' newest sample at deletion
//! time (the normal case of continued ingestion) are never affected, even when the requested
//! range was open-ended. Intervals apply to their own source only (a block's tombstones to that
//! block, the head's to the head), so a later backfill into a deleted range stays visible.
//!
//! # Locking
//!
//! Lock order: maintenance → cut → append. The whole call holds the maintenance lock (a
//! deletion never races a compaction rewriting the same blocks) and the cut lock (no block is
//! cut from the head between the head and the block steps, which could carry not yet
//! tombstoned samples into a block this call does not see). The append lock is held only while
//! the head intervals are computed, logged and applied, so that they are in the WAL in the same
//! order relative to samples as they were applied.
//!
//! # Durability
//!
//! Block tombstones are durable when [`write_tombstones`] returns (temp file, fsync, rename,
//! fsync of the directory). The head record is durable per the WAL sync mode before the call
//! returns, as an append is. The head is handled first, then the blocks one by one: a crash or
//! an I/O error part-way leaves a deletion that covers some sources and not others, and the
//! error is returned; deleting is idempotent, so the caller repeats the request.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_wal::SyncMode;

use super::{Engine, TenantDb, valid_tenant};
use crate::block::write_tombstones;
use crate::error::{Error, Result};
use crate::labels::Matcher;
use crate::querier::block_postings;
use crate::record::{self, RECORD_TOMBSTONES};

/// Intervals per TOMBSTONES WAL record (a deletion of many series writes several records in
/// one WAL batch, so no record grows without bound).
const ENTRIES_PER_RECORD: usize = 10_000;

/// What a deletion did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeleteReport {
    /// Head series that had samples in the interval and got a deleted interval.
    pub head_series: u64,
    /// Block series that had chunks in the interval and got a tombstone, summed over blocks (a
    /// series present in three overlapping blocks counts three times).
    pub block_series: u64,
    /// Blocks whose tombstones file was rewritten.
    pub blocks: u64,
}

impl TenantDb {
    /// Deletes the samples in `[mint, maxt]` (inclusive milliseconds) of every series matching
    /// all `matchers`, in the head and in the blocks (see the module docs of `delete` for
    /// the exact rule). A deletion that matches nothing succeeds with zero counts; an empty
    /// interval (`mint > maxt`) deletes nothing.
    pub fn delete_series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<DeleteReport> {
        let mut report = DeleteReport::default();
        if mint > maxt {
            return Ok(report);
        }
        let _maint = self.lock_maintenance();
        let _cut = self.cut_lock.lock();
        report.head_series = self.delete_in_head(matchers, mint, maxt)?;
        let (blocks, series) = self.delete_in_blocks(matchers, mint, maxt)?;
        report.blocks = blocks;
        report.block_series = series;
        tracing::info!(
            tenant = %self.id,
            mint,
            maxt,
            head_series = report.head_series,
            block_series = report.block_series,
            blocks = report.blocks,
            "deleted series data"
        );
        Ok(report)
    }

    /// Logs and applies the head part. Returns the number of head series affected.
    fn delete_in_head(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<u64> {
        if self.head.min_time() > maxt || self.head.max_time() < mint {
            return Ok(0);
        }
        let refs = self.head.select_refs(matchers);
        if refs.is_empty() {
            return Ok(0);
        }
        let guard = self.append_lock.lock();
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(Error::WalFailed(self.id.clone()));
        }
        let mut entries: Vec<(u32, i64, i64)> = Vec::new();
        for r in &refs {
            let Some((oldest, newest)) = self.head.series_time_range(r) else {
                continue;
            };
            let (a, b) = (mint.max(oldest), maxt.min(newest));
            if a <= b {
                entries.push((r, a, b));
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let payloads: Vec<Vec<u8>> = entries
            .chunks(ENTRIES_PER_RECORD)
            .map(|part| {
                let mut buf = Vec::with_capacity(part.len() * 8);
                for &(r, a, b) in part {
                    record::encode_tombstone(&mut buf, r, a, b);
                }
                buf
            })
            .collect();
        let records: Vec<(u8, &[u8])> = payloads
            .iter()
            .map(|p| (RECORD_TOMBSTONES, p.as_slice()))
            .collect();
        let seq = match self.wal.append_unsynced(&records) {
            Ok(seq) => seq,
            Err(e) => return Err(self.fail_wal(e)),
        };
        let mut affected = 0u64;
        for &(r, a, b) in &entries {
            affected += u64::from(self.head.add_tombstone(r, a, b));
        }
        drop(guard);
        if matches!(self.opts.wal_sync, SyncMode::EveryBatch)
            && let Err(e) = self.wal.sync_through(seq)
        {
            return Err(self.fail_wal(e));
        }
        Ok(affected)
    }

    /// Tombstones the matching series of every overlapping block. Returns `(blocks rewritten,
    /// block series tombstoned)`.
    fn delete_in_blocks(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<(u64, u64)> {
        let (mut blocks_changed, mut series_changed) = (0u64, 0u64);
        for block in self.blocks() {
            let meta = block.meta();
            let (lo, hi) = (mint.max(meta.min_time), maxt.min(meta.max_time));
            if lo > hi {
                continue;
            }
            let mut tombstones = block.tombstones().clone();
            let mut n = 0u64;
            for id in &block_postings(&block, matchers)? {
                let (_, chunks) = block.series(id)?;
                if chunks.iter().any(|c| c.max_time >= lo && c.min_time <= hi) {
                    tombstones.add(id, lo, hi);
                    n += 1;
                }
            }
            if n == 0 || tombstones == *block.tombstones() {
                series_changed += n;
                continue;
            }
            write_tombstones(block.dir(), &tombstones)?;
            let fresh = Arc::new(block.reload_tombstones()?);
            {
                let mut blocks = self.blocks.write();
                if let Some(slot) = blocks.iter_mut().find(|b| Arc::ptr_eq(b, &block)) {
                    *slot = fresh;
                }
            }
            tracing::debug!(tenant = %self.id, block = %meta.id, series = n, "tombstoned block series");
            blocks_changed += 1;
            series_changed += n;
        }
        Ok((blocks_changed, series_changed))
    }
}

impl Engine {
    /// Deletes series data of one tenant (see [`TenantDb::delete_series`]). An unknown tenant
    /// has nothing to delete: zero counts, and the tenant is not created.
    pub fn delete_series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<DeleteReport> {
        if !valid_tenant(tenant) {
            return Err(Error::InvalidTenant(tenant.to_string()));
        }
        match self.existing_tenant(tenant) {
            Some(t) => t.delete_series(matchers, mint, maxt),
            None => Ok(DeleteReport::default()),
        }
    }
}

#[cfg(test)]
mod tests;
