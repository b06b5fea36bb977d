//! The engine: tenants, each with a WAL-backed head and a set of blocks.
//!
//! Every tenant lives apart on disk under `<data>/tenants/<tenant>/metrics/`: a `wal/`
//! directory and one directory per block. Isolation, retention and deletion are therefore per
//! tenant by construction, and no code path reads two tenants unless it names both.
//!
//! # Durability
//!
//! An append is acknowledged (returns `Ok`) only after its samples are in the WAL according to
//! the configured sync mode (default: fsynced before returning). Appends of one tenant are
//! serialised by the tenant's append lock: samples are validated and applied to the head, and
//! exactly the accepted samples are written to the WAL, in the same order, before the lock is
//! released. Replay therefore rebuilds the same head. The fsync is waited for after the lock
//! is released, so the syncs of concurrent appends coalesce (group commit); a sample can thus be
//! visible to queries shortly before it is durable, but it is never acknowledged before. Should
//! a WAL write or sync fail, the head already
//! holds samples that the WAL may lack; the tenant then refuses further appends
//! ([`Error::WalFailed`]) until restart, because a retried write would be taken for an
//! idempotent duplicate and acknowledged without reaching the WAL.
//!
//! # Cutting blocks
//!
//! When the head spans more than 1.5 block ranges, its oldest aligned range `[lo, hi)` is
//! written as a block: the head's minimum valid time is raised to `hi` and the WAL rotated
//! (under the append lock, briefly), the block is written from the head without holding the
//! lock, then (under the lock again) the block is published, the head truncated before `hi`, and
//! the WAL checkpointed: segments before the rotation are replaced by a checkpoint holding the
//! series still in the head and the samples at or after `hi`. A crash at any point leaves the
//! data readable: before the rename the block does not exist and the WAL holds everything;
//! after it, replay skips samples older than the newest block (they are in the block).
//!
//! # Deleting
//!
//! [`TenantDb::delete_series`] (in `delete`) tombstones the matching series: intervals in the
//! `tombstones` file of each overlapping block, and a TOMBSTONES WAL record applied to the head.
//! Checkpoints keep the tombstone records of series still in the head that reach past the cut.

mod delete;

pub use delete::DeleteReport;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use strata_wal::{CheckpointAction, SyncMode, Wal, WalOptions};

use crate::block::{self, Block, BlockMeta, BlockWriter};
use crate::chunk;
use crate::error::{Error, Result};
use crate::exemplars::{Exemplar, ExemplarError, ExemplarStore, MetadataStore, MetricMetadata};
use crate::head::{Head, HeadOptions, SampleError, SeriesRef};
use crate::labels::LabelInput;
use crate::labels::{Labels, Matcher};
use crate::querier::{Querier, SelectHints, Series};
use crate::record::{
    self, RECORD_EXEMPLARS, RECORD_METADATA, RECORD_SAMPLES, RECORD_SERIES, RECORD_TOMBSTONES,
};

/// Tenant used when multi-tenancy is off.
pub const DEFAULT_TENANT: &str = "anonymous";

/// Options of the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Root data directory. Default: `./data`.
    pub data_dir: PathBuf,
    /// Head tunables (chunk size, out-of-order window, block range).
    pub head: HeadOptions,
    /// WAL segment size in bytes. Default: 128 MiB.
    pub wal_segment_size: u64,
    /// WAL sync policy. Default: fsync every batch before acknowledging.
    pub wal_sync: SyncMode,
    /// Repair a corrupt WAL instead of refusing to start. Default: false.
    pub wal_repair: bool,
    /// Samples per chunk in blocks (block chunks are decoded whole). Default: 7200.
    pub block_chunk_samples: usize,
    /// Exemplars kept per tenant (circular buffer). Default: 100 000.
    pub max_exemplars: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            data_dir: PathBuf::from("./data"),
            head: HeadOptions::default(),
            wal_segment_size: 128 << 20,
            wal_sync: SyncMode::EveryBatch,
            wal_repair: false,
            block_chunk_samples: 7200,
            max_exemplars: crate::exemplars::DEFAULT_MAX_EXEMPLARS,
        }
    }
}

/// Samples of one series in an append batch.
#[derive(Clone, Copy, Debug)]
pub struct AppendSeries<'a> {
    /// The series.
    pub labels: &'a Labels,
    /// Its samples, `(timestamp_ms, value)`.
    pub samples: &'a [(i64, f64)],
}

/// Samples and exemplars of one series in an ingest batch, with borrowed or owned labels.
#[derive(Debug)]
pub struct IngestSeries<'a, L: ?Sized> {
    /// The series.
    pub labels: &'a L,
    /// Its samples, `(timestamp_ms, value)`.
    pub samples: &'a [(i64, f64)],
    /// Its exemplars.
    pub exemplars: &'a [Exemplar],
}

/// What an append did.
#[derive(Debug, Default, Clone)]
pub struct AppendReport {
    /// Samples stored in order.
    pub appended: u64,
    /// Samples stored out of order.
    pub out_of_order: u64,
    /// Identical duplicates ignored.
    pub duplicates: u64,
    /// Samples rejected.
    pub rejected: u64,
    /// Series created by this append.
    pub series_created: u64,
    /// Rejections by reason (`SampleError::reason`).
    pub rejected_by_reason: HashMap<&'static str, u64>,
    /// The first rejections (at most 10) with their series.
    pub errors: Vec<(Labels, SampleError)>,
    /// Series whose labels were invalid (all their data dropped).
    pub invalid_series: u64,
    /// Why, for the first few.
    pub invalid: Vec<String>,
    /// Exemplars stored.
    pub exemplars_appended: u64,
    /// Exemplars rejected.
    pub exemplars_rejected: u64,
    /// The first exemplar rejections.
    pub exemplar_errors: Vec<ExemplarError>,
    /// Metadata entries received.
    pub metadata_updated: u64,
    /// Series not created because of the tenant's series limit.
    pub series_limited: u64,
    /// Samples dropped with them.
    pub samples_limited: u64,
    /// The series limit in force, when `series_limited > 0`.
    pub series_limit: u64,
}

/// What opening a tenant found.
#[derive(Debug, Default, Clone)]
pub struct TenantOpenReport {
    /// Tenant id.
    pub tenant: String,
    /// Blocks loaded.
    pub blocks: usize,
    /// Incomplete block directories removed (crash during a block write).
    pub incomplete_blocks_removed: usize,
    /// WAL records replayed.
    pub wal_records: u64,
    /// Series in the head after replay.
    pub series: u64,
    /// Samples replayed into the head.
    pub samples: u64,
    /// Samples in the WAL skipped because they are already in blocks.
    pub samples_skipped: u64,
    /// Replay duration.
    pub replay_time: Duration,
    /// What a WAL repair dropped, if one happened.
    pub repair: Option<String>,
}

/// How long blocks of each resolution are kept (ms; 0 keeps them forever).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolutionRetention {
    /// Raw blocks (`resolution_ms == 0`).
    pub raw_ms: i64,
    /// 5-minute blocks.
    pub res_5m_ms: i64,
    /// 1-hour blocks (and any other, coarser, resolution).
    pub res_1h_ms: i64,
}

impl ResolutionRetention {
    /// The same retention for every resolution.
    pub fn uniform(retention_ms: i64) -> Self {
        ResolutionRetention {
            raw_ms: retention_ms,
            res_5m_ms: retention_ms,
            res_1h_ms: retention_ms,
        }
    }

    /// The retention of blocks with resolution `resolution_ms`.
    pub fn retention_ms(&self, resolution_ms: i64) -> i64 {
        match resolution_ms {
            r if r <= 0 => self.raw_ms,
            r if r <= crate::downsample::RES_5M => self.res_5m_ms,
            _ => self.res_1h_ms,
        }
    }

    fn any(&self) -> bool {
        self.raw_ms > 0 || self.res_5m_ms > 0 || self.res_1h_ms > 0
    }
}

/// One tenant's metrics storage.
pub struct TenantDb {
    id: String,
    dir: PathBuf,
    opts: EngineOptions,
    head: Arc<Head>,
    wal: Wal,
    blocks: RwLock<Vec<Arc<Block>>>,
    exemplars: ExemplarStore,
    metadata: MetadataStore,
    /// Serialises appends, block publication and head truncation of this tenant.
    append_lock: Mutex<()>,
    /// Serialises block cuts.
    cut_lock: Mutex<()>,
    /// Serialises operations that replace or rewrite blocks: compaction, downsampling,
    /// deletion (tombstones) and retention.
    maintenance_lock: Mutex<()>,
    wal_failed: AtomicBool,
    max_series: AtomicU64,
}

/// True if `id` is an acceptable tenant id: 1–150 characters of `[A-Za-z0-9_.-]`, not `.` or
/// `..` (it names a directory).
pub fn valid_tenant(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 150
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Orders blocks as every reader and the compactor expect: by `(min_time, max_time, id)`.
/// Where blocks overlap, a sample of an earlier block in this order wins over a sample with the
/// same timestamp in a later one, so the order must not depend on directory listing order.
pub(crate) fn sort_blocks(blocks: &mut [Arc<Block>]) {
    blocks.sort_by(|a, b| {
        let (a, b) = (a.meta(), b.meta());
        (a.min_time, a.max_time, &a.id).cmp(&(b.min_time, b.max_time, &b.id))
    });
}

/// Deletes the blocks that another loaded block names as its parents: a compaction (or
/// rewrite) renamed its output into place but stopped before removing its inputs. The output is
/// complete (its directory was renamed), so the inputs' samples are all in it and keeping both
/// would return them twice.
fn remove_replaced_blocks(tenant: &str, blocks: &mut Vec<Arc<Block>>) -> Result<()> {
    let replaced: std::collections::HashSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta().compaction.parents.iter().cloned())
        .collect();
    if replaced.is_empty() {
        return Ok(());
    }
    let (gone, keep): (Vec<Arc<Block>>, Vec<Arc<Block>>) = blocks
        .drain(..)
        .partition(|b| replaced.contains(&b.meta().id));
    *blocks = keep;
    for b in gone {
        tracing::warn!(tenant, block = %b.meta().id, "removing a block already replaced by a compacted block");
        std::fs::remove_dir_all(b.dir())
            .map_err(|e| Error::io("removing a replaced block", b.dir(), e))?;
    }
    Ok(())
}

fn align_down(t: i64, range: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(range.max(1)))
}

impl TenantDb {
    /// Opens (creating if needed) a tenant's storage: removes incomplete blocks, loads blocks,
    /// replays the WAL into a fresh head.
    pub fn open(id: &str, opts: &EngineOptions) -> Result<(TenantDb, TenantOpenReport)> {
        if !valid_tenant(id) {
            return Err(Error::InvalidTenant(id.to_string()));
        }
        let dir = opts.data_dir.join("tenants").join(id).join("metrics");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create tenant dir", &dir, e))?;
        let mut report = TenantOpenReport {
            tenant: id.to_string(),
            ..TenantOpenReport::default()
        };
        let removed = block::cleanup_incomplete(&dir)?;
        for p in &removed {
            tracing::warn!(tenant = id, path = %p.display(), "removed incomplete block left by a crash");
        }
        report.incomplete_blocks_removed = removed.len();

        let mut blocks = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("list tenant dir", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list tenant dir", &dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() && name != "wal" && path.join("meta.json").exists() {
                blocks.push(Arc::new(Block::open(&path)?));
            }
        }
        remove_replaced_blocks(id, &mut blocks)?;
        sort_blocks(&mut blocks);
        report.blocks = blocks.len();

        let head = Arc::new(Head::new(opts.head.clone()));
        if let Some(max) = blocks.iter().map(|b| b.meta().max_time).max() {
            head.set_min_valid_time(max.saturating_add(1));
        }

        let wal_opts = WalOptions {
            segment_size: opts.wal_segment_size,
            sync: opts.wal_sync,
            recovery: if opts.wal_repair {
                strata_wal::RecoveryMode::Repair
            } else {
                strata_wal::RecoveryMode::TolerateTornTail
            },
        };
        let wal_dir = dir.join("wal");
        let start = Instant::now();
        let (wal, replay, repair) = Wal::open(&wal_dir, wal_opts)?;
        if let Some(r) = repair
            && !r.is_torn_tail_only()
        {
            let summary = format!(
                "{} bytes dropped ({} intact records); files removed: {:?}; details: {:?}",
                r.bytes_dropped(),
                r.intact_records_dropped(),
                r.files_removed()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                r.dropped
            );
            tracing::warn!(tenant = id, %summary, "WAL repaired: data after the corruption was dropped");
            report.repair = Some(summary);
        }
        let exemplars = ExemplarStore::new(opts.max_exemplars);
        let metadata = MetadataStore::default();
        replay_into(&head, &exemplars, &metadata, replay, &mut report)?;
        report.replay_time = start.elapsed();
        report.series = head.num_series();
        head.counters.reset_after_replay();
        head.reset_appended_counts();

        Ok((
            TenantDb {
                id: id.to_string(),
                dir,
                opts: opts.clone(),
                head,
                wal,
                blocks: RwLock::new(blocks),
                exemplars,
                metadata,
                append_lock: Mutex::new(()),
                cut_lock: Mutex::new(()),
                maintenance_lock: Mutex::new(()),
                wal_failed: AtomicBool::new(false),
                max_series: AtomicU64::new(0),
            },
            report,
        ))
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant's metrics directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The head.
    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    /// Metadata of the loaded blocks, oldest first.
    pub fn block_metas(&self) -> Vec<BlockMeta> {
        self.blocks
            .read()
            .iter()
            .map(|b| b.meta().clone())
            .collect()
    }

    /// The loaded blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    /// Publishes the complete block at `new_block_dir` (renamed into place by a
    /// [`BlockWriter`], normally inside [`TenantDb::dir`]) and retires the blocks with the ids
    /// in `retired`: new queriers see the new block and not the retired ones (running queriers
    /// keep their mapped copies), then the retired directories are removed. Every id in
    /// `retired` must name a loaded block, otherwise nothing changes and an error is returned
    /// (the new block is left in place for the caller to remove). The caller should hold
    /// [`TenantDb::lock_maintenance`]; crash safety comes from the new block naming the retired
    /// ones as `compaction.parents` (see [`TenantDb::open`]).
    pub fn replace_blocks(&self, new_block_dir: &Path, retired: &[String]) -> Result<BlockMeta> {
        let block = Arc::new(Block::open(new_block_dir)?);
        let meta = block.meta().clone();
        let gone: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            if let Some(missing) = retired
                .iter()
                .find(|id| !blocks.iter().any(|b| &b.meta().id == *id))
            {
                return Err(Error::BlockNotLoaded(missing.clone()));
            }
            let (gone, mut keep): (Vec<Arc<Block>>, Vec<Arc<Block>>) = blocks
                .drain(..)
                .partition(|b| retired.contains(&b.meta().id));
            keep.push(block);
            sort_blocks(&mut keep);
            *blocks = keep;
            gone
        };
        for b in gone {
            std::fs::remove_dir_all(b.dir())
                .map_err(|e| Error::io("removing a replaced block", b.dir(), e))?;
        }
        Ok(meta)
    }

    /// Unlists the loaded blocks with the ids in `ids` and removes their directories (a
    /// compaction whose inputs held only deleted samples). The caller should hold
    /// [`TenantDb::lock_maintenance`].
    pub fn retire_blocks(&self, ids: &[String]) -> Result<Vec<BlockMeta>> {
        self.delete_blocks(|b| ids.contains(&b.meta().id), "compacted away")
    }

    /// Takes the tenant's maintenance lock. Whoever replaces or rewrites blocks (compaction,
    /// downsampling, deletion, retention) holds it, so that one never works from a block list
    /// that another is changing.
    pub fn lock_maintenance(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.maintenance_lock.lock()
    }

    /// Writes historical samples directly as blocks (backfill), one block per aligned block
    /// range, and publishes them. `series` must hold each series' samples sorted by time
    /// without duplicates. The head and WAL are not touched; blocks may overlap existing ones
    /// (queries merge them). Returns the new blocks.
    pub fn import(
        &self,
        series: &std::collections::BTreeMap<Labels, Vec<(i64, f64)>>,
    ) -> Result<Vec<BlockMeta>> {
        let _cut = self.cut_lock.lock();
        let range = self.opts.head.block_range_ms.max(1);
        let chunk_samples = self.opts.block_chunk_samples.max(1);
        let mut ranges: Vec<i64> = series
            .values()
            .flat_map(|v| v.iter().map(|s| align_down(s.0, range)))
            .collect();
        ranges.sort_unstable();
        ranges.dedup();
        let mut out = Vec::new();
        for lo in ranges {
            let started = Instant::now();
            let hi = lo.saturating_add(range);
            let mut writer =
                BlockWriter::create(&self.dir, lo, hi.saturating_sub(1), 1, Vec::new())?;
            let mut wrote_any = false;
            for (labels, samples) in series {
                let from = samples.partition_point(|s| s.0 < lo);
                let to = samples.partition_point(|s| s.0 < hi);
                let Some(part) = samples.get(from..to).filter(|p| !p.is_empty()) else {
                    continue;
                };
                add_series_samples(&mut writer, labels, part, chunk_samples)?;
                wrote_any = true;
            }
            if !wrote_any {
                continue;
            }
            out.push(self.publish_written(writer, "imported", started)?);
        }
        Ok(out)
    }

    /// Finishes a block written into the tenant directory, opens it and lists it for new
    /// queriers (under the append lock, so a block cut and its head truncation stay ordered).
    fn publish_written(
        &self,
        writer: BlockWriter,
        origin: &'static str,
        started: Instant,
    ) -> Result<BlockMeta> {
        let (meta, path) = writer.finish()?;
        let block = Arc::new(Block::open(&path)?);
        tracing::info!(
            tenant = %self.id,
            block = %meta.id,
            origin,
            min_time = meta.min_time,
            max_time = meta.max_time,
            series = meta.stats.num_series,
            samples = meta.stats.num_samples,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "published block"
        );
        let _g = self.append_lock.lock();
        let mut blocks = self.blocks.write();
        blocks.push(block);
        sort_blocks(&mut blocks);
        Ok(meta)
    }

    /// Writes a snapshot of the tenant into `dest`: every block hard-linked (copied where
    /// linking fails, e.g. across file systems) and, with `with_head`, the head's samples as
    /// one more block. The live tenant is not changed. Returns the number of blocks written.
    pub fn snapshot(&self, dest: &Path, with_head: bool) -> Result<usize> {
        std::fs::create_dir_all(dest)
            .map_err(|e| Error::io("creating the snapshot directory", dest, e))?;
        let mut n = 0;
        for b in self.blocks() {
            link_tree(b.dir(), &dest.join(&b.meta().id))?;
            n += 1;
        }
        if with_head {
            let (lo, hi) = (self.head.min_time(), self.head.max_time());
            if lo <= hi {
                let refs = self.head.all_postings();
                let sorted = self.head.sorted_refs(&refs);
                let mut writer = BlockWriter::create(dest, lo, hi, 1, Vec::new())?;
                let chunk_samples = self.opts.block_chunk_samples.max(1);
                let mut wrote_any = false;
                for (labels, r) in &sorted {
                    let samples = self.head.samples_in_range(*r, lo, hi.saturating_add(1))?;
                    if samples.is_empty() {
                        continue;
                    }
                    add_series_samples(&mut writer, labels, &samples, chunk_samples)?;
                    wrote_any = true;
                }
                if wrote_any {
                    writer.finish()?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Deletes the oldest blocks while the tenant's blocks take more than `max_bytes` on disk
    /// (0: no limit). Returns the deleted blocks.
    pub fn apply_size_limit(&self, max_bytes: u64) -> Result<Vec<BlockMeta>> {
        if max_bytes == 0 {
            return Ok(Vec::new());
        }
        let _maint = self.lock_maintenance();
        let blocks = self.blocks();
        let extents: Vec<crate::retention::BlockExtent> = blocks
            .iter()
            .map(|b| crate::retention::BlockExtent {
                min_time: b.meta().min_time,
                max_time: b.meta().max_time,
                bytes: dir_size(b.dir()),
            })
            .collect();
        let policy = crate::retention::RetentionPolicy {
            max_age: 0,
            max_bytes,
        };
        let expired: Vec<String> = crate::retention::expired(&extents, 0, &policy)
            .into_iter()
            .filter_map(|i| blocks.get(i).map(|b| b.meta().id.clone()))
            .collect();
        self.delete_blocks(|b| expired.contains(&b.meta().id), "size limit")
    }

    /// Unlists the blocks `pred` selects, then removes their directories.
    fn delete_blocks(
        &self,
        pred: impl Fn(&Block) -> bool,
        reason: &'static str,
    ) -> Result<Vec<BlockMeta>> {
        let expired: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            let (old, keep): (Vec<Arc<Block>>, Vec<Arc<Block>>) =
                blocks.drain(..).partition(|b| pred(b));
            *blocks = keep;
            old
        };
        let mut out = Vec::with_capacity(expired.len());
        for b in expired {
            std::fs::remove_dir_all(b.dir())
                .map_err(|e| Error::io("removing an expired block", b.dir(), e))?;
            tracing::info!(
                tenant = %self.id,
                block = %b.meta().id,
                min_time = b.meta().min_time,
                max_time = b.meta().max_time,
                reason,
                "deleted a block"
            );
            out.push(b.meta().clone());
        }
        Ok(out)
    }

    /// Deletes the blocks that lie entirely before `newest - retention_ms`, where `newest` is
    /// the newest sample of the tenant (in the head or a block) — as Prometheus measures
    /// retention, so a tenant that stops receiving data keeps its last `retention_ms`. Only
    /// whole blocks are deleted: a block is kept while any of its samples is inside the
    /// retention. A block is first unlisted (new queries stop seeing it; running ones keep
    /// their mapped copy), then its directory is removed. Returns the deleted blocks. The
    /// same retention applies to every resolution; see
    /// [`TenantDb::apply_retention_policy`] for one per resolution.
    pub fn apply_retention(&self, retention_ms: i64) -> Result<Vec<BlockMeta>> {
        self.apply_retention_policy(&ResolutionRetention::uniform(retention_ms))
    }

    /// Like [`TenantDb::apply_retention`], with the retention of each block chosen by its
    /// resolution (raw, 5 m, 1 h). Age is measured against the tenant's newest sample at any
    /// resolution.
    pub fn apply_retention_policy(&self, policy: &ResolutionRetention) -> Result<Vec<BlockMeta>> {
        if !policy.any() {
            return Ok(Vec::new());
        }
        let _maint = self.lock_maintenance();
        let blocks = self.blocks();
        let newest = blocks
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .unwrap_or(i64::MIN)
            .max(self.head.max_time());
        if newest == i64::MIN {
            return Ok(Vec::new());
        }
        // The shared rule, applied to each resolution with its own age limit.
        let mut expired: Vec<String> = Vec::new();
        let mut resolutions: Vec<i64> = blocks.iter().map(|b| b.meta().resolution_ms).collect();
        resolutions.sort_unstable();
        resolutions.dedup();
        for res in resolutions {
            let of_res: Vec<&Arc<Block>> = blocks
                .iter()
                .filter(|b| b.meta().resolution_ms == res)
                .collect();
            let extents: Vec<crate::retention::BlockExtent> = of_res
                .iter()
                .map(|b| crate::retention::BlockExtent {
                    min_time: b.meta().min_time,
                    max_time: b.meta().max_time,
                    bytes: 0,
                })
                .collect();
            let rule = crate::retention::RetentionPolicy {
                max_age: policy.retention_ms(res).max(0),
                max_bytes: 0,
            };
            expired.extend(
                crate::retention::expired(&extents, newest, &rule)
                    .into_iter()
                    .filter_map(|i| of_res.get(i).map(|b| b.meta().id.clone())),
            );
        }
        self.delete_blocks(|b| expired.contains(&b.meta().id), "retention")
    }

    /// Appends a batch. Returns once the accepted samples are durable per the sync mode.
    /// Rejected samples do not fail the call; they are reported.
    pub fn append(&self, batch: &[AppendSeries<'_>]) -> Result<AppendReport> {
        let series: Vec<IngestSeries<'_, Labels>> = batch
            .iter()
            .map(|a| IngestSeries {
                labels: a.labels,
                samples: a.samples,
                exemplars: &[],
            })
            .collect();
        self.ingest(&series, &[])
    }

    /// Ingests samples and exemplars of many series plus metric metadata as one WAL batch.
    /// Labels may be borrowed ([`LabelInput`]); they are validated and copied only when a
    /// series is created. Returns once everything accepted is durable per the sync mode;
    /// rejected samples and exemplars are reported, not failed.
    pub fn ingest<L: LabelInput + ?Sized>(
        &self,
        batch: &[IngestSeries<'_, L>],
        metadata: &[(&str, MetricMetadata)],
    ) -> Result<AppendReport> {
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(Error::WalFailed(self.id.clone()));
        }
        let mut report = AppendReport::default();
        let mut series_buf = Vec::new();
        let mut samples_buf = Vec::with_capacity(batch.len() * 24);
        let mut exemplars_buf = Vec::new();
        let mut metadata_buf = Vec::new();
        let mut accepted = Vec::new();
        let guard = self.append_lock.lock();
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(Error::WalFailed(self.id.clone()));
        }
        for item in batch {
            if item.samples.is_empty() && item.exemplars.is_empty() {
                continue;
            }
            let max_series = self.max_series.load(Ordering::Relaxed);
            let (r, created) = match self.head.get_or_create_limited(item.labels, max_series) {
                Ok(x) => x,
                Err(Error::SeriesLimit(limit)) => {
                    report.series_limited += 1;
                    report.samples_limited += item.samples.len() as u64;
                    report.series_limit = limit;
                    continue;
                }
                Err(e) => {
                    report.invalid_series += 1;
                    if report.invalid.len() < 10 {
                        report.invalid.push(e.to_string());
                    }
                    continue;
                }
            };
            if let Some(labels) = &created {
                report.series_created += 1;
                record::encode_series(&mut series_buf, [(r, labels)]);
            }
            accepted.clear();
            let out = self.head.append(r, item.samples, &mut accepted)?;
            record::encode_samples(&mut samples_buf, r, &accepted);
            report.appended += u64::from(out.appended);
            report.out_of_order += u64::from(out.out_of_order);
            report.duplicates += u64::from(out.duplicates);
            if out.rejected > 0 {
                report.rejected += u64::from(out.rejected);
                if let Some(e) = out.first_error {
                    *report.rejected_by_reason.entry(e.reason()).or_default() +=
                        u64::from(out.rejected);
                    if report.errors.len() < 10 {
                        let labels = match created {
                            Some(l) => l,
                            None => item.labels.to_labels()?,
                        };
                        report.errors.push((labels, e));
                    }
                    self.head
                        .counters
                        .count_rejected(e, u64::from(out.rejected));
                }
            }
            for e in item.exemplars {
                match self.exemplars.add(r, e.clone()) {
                    Ok(true) => {
                        report.exemplars_appended += 1;
                        record::encode_exemplar(&mut exemplars_buf, r, e);
                    }
                    Ok(false) => {}
                    Err(err) => {
                        report.exemplars_rejected += 1;
                        if report.exemplar_errors.len() < 10 {
                            report.exemplar_errors.push(err);
                        }
                    }
                }
            }
        }
        for (family, m) in metadata {
            if self.metadata.set(family, m.clone()) {
                record::encode_metadata(&mut metadata_buf, family, m);
            }
            report.metadata_updated += 1;
        }
        let mut records: Vec<(u8, &[u8])> = Vec::with_capacity(4);
        for (kind, buf) in [
            (RECORD_SERIES, &series_buf),
            (RECORD_SAMPLES, &samples_buf),
            (RECORD_EXEMPLARS, &exemplars_buf),
            (RECORD_METADATA, &metadata_buf),
        ] {
            if !buf.is_empty() {
                records.push((kind, buf));
            }
        }
        if records.is_empty() {
            return Ok(report);
        }
        let seq = match self.wal.append_unsynced(&records) {
            Ok(seq) => seq,
            Err(e) => return Err(self.fail_wal(e)),
        };
        drop(guard);
        // Wait for durability outside the append lock so concurrent appends share fsyncs.
        if matches!(self.opts.wal_sync, SyncMode::EveryBatch)
            && let Err(e) = self.wal.sync_through(seq)
        {
            return Err(self.fail_wal(e));
        }
        Ok(report)
    }

    /// Sets the tenant's active-series limit (0 = none). Series beyond it are not created;
    /// their samples are reported in [`AppendReport::series_limited`].
    pub fn set_max_series(&self, max: u64) {
        self.max_series.store(max, Ordering::Relaxed);
    }

    /// The tenant's exemplar buffer.
    pub fn exemplars(&self) -> &ExemplarStore {
        &self.exemplars
    }

    /// The tenant's metric metadata.
    pub fn metadata(&self) -> &MetadataStore {
        &self.metadata
    }

    fn fail_wal(&self, e: strata_wal::WalError) -> Error {
        self.wal_failed.store(true, Ordering::Release);
        tracing::error!(tenant = %self.id, error = %e, "WAL write failed; refusing further writes to this tenant until restart");
        e.into()
    }

    /// A read view over the head and the current blocks.
    pub fn querier(&self) -> Querier {
        Querier::new(self.head.clone(), self.blocks.read().clone())
    }

    /// Cuts blocks from the head while it spans more than 1.5 block ranges. Returns the new
    /// blocks.
    pub fn cut_due_blocks(&self) -> Result<Vec<BlockMeta>> {
        self.cut_blocks(false)
    }

    /// Persists everything in the head into blocks (aligned ranges, the last one partial),
    /// leaving the head empty. Used by import, benchmarks and tests.
    pub fn persist_all(&self) -> Result<Vec<BlockMeta>> {
        self.cut_blocks(true)
    }

    /// Cuts the head's oldest aligned range into a block until the head is empty (`all`) or
    /// spans at most 1.5 block ranges.
    fn cut_blocks(&self, all: bool) -> Result<Vec<BlockMeta>> {
        let range = self.opts.head.block_range_ms.max(1);
        let mut out = Vec::new();
        loop {
            let min = self.head.min_time();
            if min == i64::MAX {
                break;
            }
            let lo = align_down(min, range);
            let hi = lo.saturating_add(range);
            if !all && self.head.max_time() < hi.saturating_add(range / 2) {
                break;
            }
            if let Some(meta) = self.persist_range(lo, hi)? {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// Writes the head's samples in `[lo, hi)` as a block, publishes it, truncates the head and
    /// checkpoints the WAL. Returns `None` if the range held no samples.
    pub fn persist_range(&self, lo: i64, hi: i64) -> Result<Option<BlockMeta>> {
        let _cut = self.cut_lock.lock();
        let range = self.opts.head.block_range_ms.max(1);
        let (lo, checkpoint_upto) = {
            let _g = self.append_lock.lock();
            self.head.set_min_valid_time(hi);
            // An out-of-order sample older than `lo` may have arrived since the caller chose
            // the range; widen the block so that truncating the head cannot drop it.
            let lo = lo.min(align_down(self.head.min_time(), range));
            (lo, self.wal.rotate()?.saturating_sub(1))
        };
        let started = Instant::now();
        let refs = self.head.all_postings();
        let sorted = self.head.sorted_refs(&refs);
        let mut writer = BlockWriter::create(&self.dir, lo, hi.saturating_sub(1), 1, Vec::new())?;
        let mut wrote_any = false;
        let chunk_samples = self.opts.block_chunk_samples.max(1);
        for (labels, r) in &sorted {
            let samples = self.head.samples_in_range(*r, lo, hi)?;
            if samples.is_empty() {
                continue;
            }
            add_series_samples(&mut writer, labels, &samples, chunk_samples)?;
            wrote_any = true;
        }
        let meta = if wrote_any {
            Some(self.publish_written(writer, "cut from head", started)?)
        } else {
            drop(writer);
            block::cleanup_incomplete(&self.dir)?;
            None
        };
        {
            let _g = self.append_lock.lock();
            self.head.truncate(hi)?;
        }
        self.checkpoint_wal(checkpoint_upto, hi)?;
        Ok(meta)
    }

    fn checkpoint_wal(&self, upto: u64, hi: i64) -> Result<()> {
        let head = &self.head;
        if upto == 0 || self.wal.last_checkpoint().is_some_and(|c| c >= upto) {
            return Ok(());
        }
        let mut seen_metadata: std::collections::HashSet<(String, MetricMetadata)> =
            std::collections::HashSet::new();
        self.wal.checkpoint(upto, |kind, payload| match kind {
            RECORD_SERIES => {
                let mut buf = Vec::new();
                let res = record::decode_series(payload, |r, l| {
                    if head.contains(r) {
                        record::encode_series(&mut buf, [(r, &l)]);
                    }
                    Ok(())
                });
                // Series records are only filtered: the same length means the same record.
                let changed = buf.len() != payload.len();
                checkpoint_action(kind, res, buf, changed)
            }
            RECORD_SAMPLES => {
                let mut buf = Vec::new();
                let mut kept: Vec<(i64, f64)> = Vec::new();
                let mut dropped_any = false;
                let res = record::decode_samples(payload, |r, s| {
                    kept.clear();
                    kept.extend(s.iter().copied().filter(|&(t, _)| t >= hi));
                    dropped_any |= kept.len() != s.len();
                    record::encode_samples(&mut buf, r, &kept);
                    Ok(())
                });
                checkpoint_action(kind, res, buf, dropped_any)
            }
            RECORD_EXEMPLARS => {
                let mut buf = Vec::new();
                let mut dropped_any = false;
                let res = record::decode_exemplars(payload, |r, e| {
                    if e.timestamp >= hi && head.contains(r) {
                        record::encode_exemplar(&mut buf, r, &e);
                    } else {
                        dropped_any = true;
                    }
                    Ok(())
                });
                checkpoint_action(kind, res, buf, dropped_any)
            }
            RECORD_METADATA => {
                // Keep one copy of each entry: later checkpoints would otherwise carry every
                // repetition forever.
                let mut buf = Vec::new();
                let res = record::decode_metadata(payload, |family, m| {
                    if seen_metadata.insert((family.clone(), m.clone())) {
                        record::encode_metadata(&mut buf, &family, &m);
                    }
                    Ok(())
                });
                checkpoint_action(kind, res, buf, true)
            }
            RECORD_TOMBSTONES => {
                // Keep what still applies to the head: series still there, intervals reaching
                // `hi`, clipped to start there.
                let mut buf = Vec::new();
                let mut changed = false;
                let res = record::decode_tombstones(payload, |r, mint, maxt| {
                    if maxt >= hi && head.contains(r) {
                        changed |= mint < hi;
                        record::encode_tombstone(&mut buf, r, mint.max(hi), maxt);
                    } else {
                        changed = true;
                    }
                    Ok(())
                });
                checkpoint_action(kind, res, buf, changed)
            }
            _ => CheckpointAction::Keep,
        })?;
        Ok(())
    }

    /// The WAL's fsync counters.
    pub fn wal_stats(&self) -> strata_wal::WalStats {
        self.wal.stats()
    }

    /// Flushes the WAL to disk.
    pub fn sync(&self) -> Result<()> {
        self.wal.sync()?;
        Ok(())
    }
}

/// What a checkpoint does with a record that was decoded (`res`) and re-encoded into `kept`:
/// an undecodable record is kept as it is (never drop what cannot be understood), an empty
/// result is dropped, an unchanged one kept, a changed one rewritten.
fn checkpoint_action(kind: u8, res: Result<()>, kept: Vec<u8>, changed: bool) -> CheckpointAction {
    match res {
        Err(_) => CheckpointAction::Keep,
        Ok(()) if kept.is_empty() => CheckpointAction::Drop,
        Ok(()) if !changed => CheckpointAction::Keep,
        Ok(()) => CheckpointAction::Rewrite {
            kind,
            payload: kept,
        },
    }
}

/// Samples of many series bound for one replay worker: `groups` holds `(ref, end)` with `end`
/// the exclusive end of the series' samples in `samples`.
#[derive(Default)]
struct ReplayBatch {
    groups: Vec<(SeriesRef, usize)>,
    samples: Vec<(i64, f64)>,
}

/// Samples per batch handed to a replay worker.
const REPLAY_BATCH_SAMPLES: usize = 32 * 1024;

impl ReplayBatch {
    fn with_capacity() -> Self {
        ReplayBatch {
            groups: Vec::with_capacity(REPLAY_BATCH_SAMPLES),
            samples: Vec::with_capacity(REPLAY_BATCH_SAMPLES + 1024),
        }
    }
}

/// Applies sample batches to the head; returns (samples applied, samples skipped).
fn replay_worker(head: &Head, rx: std::sync::mpsc::Receiver<ReplayBatch>) -> Result<(u64, u64)> {
    let mut scratch = Vec::new();
    let (mut applied, mut skipped) = (0u64, 0u64);
    for batch in rx {
        let mut start = 0;
        for &(r, end) in &batch.groups {
            let samples = batch.samples.get(start..end).unwrap_or(&[]);
            start = end;
            scratch.clear();
            match head.append(r, samples, &mut scratch) {
                Ok(out) => {
                    applied += u64::from(out.appended + out.out_of_order);
                    skipped += u64::from(out.rejected + out.duplicates);
                }
                // Samples of a series whose definition was dropped with a checkpoint: they
                // predate the newest block.
                Err(Error::UnknownSeries(_)) => skipped += samples.len() as u64,
                Err(e) => return Err(e),
            }
        }
    }
    Ok((applied, skipped))
}

/// Replays the WAL into the head.
///
/// Series, exemplar and metadata records are applied on this thread in log order. Samples are
/// routed by series shard to worker threads (one per core, at most 4), so a series' samples are
/// always applied by the same worker in log order, and a series is always created (here)
/// before any worker sees its samples. Replay is bound by memory latency (one random series
/// lookup per sample group), which parallel workers overlap.
fn replay_into(
    head: &Head,
    exemplars: &ExemplarStore,
    metadata: &MetadataStore,
    mut replay: strata_wal::Replay,
    report: &mut TenantOpenReport,
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .clamp(1, 4);
    let mut ref_map: HashMap<SeriesRef, SeriesRef> = HashMap::new();
    std::thread::scope(|scope| -> Result<()> {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<ReplayBatch>(4);
            senders.push(tx);
            handles.push(scope.spawn(move || replay_worker(head, rx)));
        }
        let mut pending: Vec<ReplayBatch> =
            (0..workers).map(|_| ReplayBatch::with_capacity()).collect();
        let mut send_failed = false;
        let mut result = Ok(());
        while let Some(rec) = replay.next_record() {
            let rec = match rec {
                Ok(rec) => rec,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            };
            report.wal_records += 1;
            let step = match rec.kind {
                RECORD_SERIES => record::decode_series(rec.payload, |r, labels| {
                    let actual = head.create_with_ref(r, &labels);
                    if actual != r {
                        ref_map.insert(r, actual);
                    }
                    Ok(())
                }),
                RECORD_SAMPLES => record::decode_samples(rec.payload, |r, samples| {
                    let r = if ref_map.is_empty() {
                        r
                    } else {
                        ref_map.get(&r).copied().unwrap_or(r)
                    };
                    let w = (r as usize % crate::head::SHARDS) % workers;
                    if let Some(b) = pending.get_mut(w) {
                        b.samples.extend_from_slice(samples);
                        b.groups.push((r, b.samples.len()));
                        if b.samples.len() >= REPLAY_BATCH_SAMPLES
                            && let Some(tx) = senders.get(w)
                            && tx
                                .send(std::mem::replace(b, ReplayBatch::with_capacity()))
                                .is_err()
                        {
                            send_failed = true;
                        }
                    }
                    Ok(())
                }),
                RECORD_EXEMPLARS => record::decode_exemplars(rec.payload, |r, e| {
                    let r = ref_map.get(&r).copied().unwrap_or(r);
                    // Rejections here mirror rejections at ingest time; nothing to report.
                    let _ = exemplars.add(r, e);
                    Ok(())
                }),
                RECORD_METADATA => record::decode_metadata(rec.payload, |family, m| {
                    metadata.set(&family, m);
                    Ok(())
                }),
                // Deleted intervals apply to samples whatever their arrival order, so they
                // need not wait for the sample workers; the series exist already (their
                // SERIES records came first). Intervals of series dropped with a checkpoint
                // are skipped like their samples; nothing older than the newest block is
                // in the head.
                RECORD_TOMBSTONES => record::decode_tombstones(rec.payload, |r, mint, maxt| {
                    let r = ref_map.get(&r).copied().unwrap_or(r);
                    head.add_tombstone(r, mint.max(head.min_valid_time()), maxt);
                    Ok(())
                }),
                other => {
                    tracing::warn!(record_type = other, "skipping WAL record of unknown type");
                    Ok(())
                }
            };
            if let Err(e) = step {
                result = Err(e);
                break;
            }
            if send_failed {
                // A worker stopped with an error; it is reported when joined below.
                break;
            }
        }
        for (b, tx) in pending.into_iter().zip(&senders) {
            if !b.groups.is_empty() {
                let _ = tx.send(b);
            }
        }
        drop(senders);
        for h in handles {
            match h.join() {
                Ok(Ok((applied, skipped))) => {
                    report.samples += applied;
                    report.samples_skipped += skipped;
                }
                Ok(Err(e)) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(_) => {
                    if result.is_ok() {
                        result = Err(Error::ReplayWorker);
                    }
                }
            }
        }
        result
    })
}

/// The storage engine: all tenants.
pub struct Engine {
    opts: EngineOptions,
    tenants: RwLock<HashMap<String, Arc<TenantDb>>>,
    create_lock: Mutex<()>,
}

impl Engine {
    /// Opens the engine: every tenant found under `<data>/tenants/` is opened (blocks loaded,
    /// WAL replayed). Returns the per-tenant reports.
    pub fn open(opts: EngineOptions) -> Result<(Engine, Vec<TenantOpenReport>)> {
        let tenants_dir = opts.data_dir.join("tenants");
        std::fs::create_dir_all(&tenants_dir)
            .map_err(|e| Error::io("create data dir", &tenants_dir, e))?;
        let mut tenants = HashMap::new();
        let mut reports = Vec::new();
        let entries = std::fs::read_dir(&tenants_dir)
            .map_err(|e| Error::io("list tenants", &tenants_dir, e))?;
        let mut ids: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list tenants", &tenants_dir, e))?;
            if entry.path().join("metrics").is_dir() {
                ids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        for id in ids {
            let (db, report) = TenantDb::open(&id, &opts)?;
            tenants.insert(id, Arc::new(db));
            reports.push(report);
        }
        Ok((
            Engine {
                opts,
                tenants: RwLock::new(tenants),
                create_lock: Mutex::new(()),
            },
            reports,
        ))
    }

    /// The options the engine runs with.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The tenant's storage, created on first use.
    pub fn tenant(&self, id: &str) -> Result<Arc<TenantDb>> {
        if let Some(t) = self.tenants.read().get(id) {
            return Ok(t.clone());
        }
        let _g = self.create_lock.lock();
        if let Some(t) = self.tenants.read().get(id) {
            return Ok(t.clone());
        }
        let (db, report) = TenantDb::open(id, &self.opts)?;
        tracing::info!(
            tenant = id,
            blocks = report.blocks,
            "created tenant storage"
        );
        let db = Arc::new(db);
        self.tenants.write().insert(id.to_string(), db.clone());
        Ok(db)
    }

    /// The tenant's storage if it exists (reads never create tenants).
    pub fn existing_tenant(&self, id: &str) -> Option<Arc<TenantDb>> {
        self.tenants.read().get(id).cloned()
    }

    /// Ids of all tenants, sorted.
    pub fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.tenants.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Appends a batch to a tenant (creating it on first write).
    pub fn append(&self, tenant: &str, batch: &[AppendSeries<'_>]) -> Result<AppendReport> {
        self.tenant(tenant)?.append(batch)
    }

    /// A read view of a tenant; an unknown tenant reads as empty.
    pub fn querier(&self, tenant: &str) -> Result<Querier> {
        if !valid_tenant(tenant) {
            return Err(Error::InvalidTenant(tenant.to_string()));
        }
        Ok(match self.existing_tenant(tenant) {
            Some(t) => t.querier(),
            None => Querier::new(Arc::new(Head::new(self.opts.head.clone())), Vec::new()),
        })
    }

    /// Selects series of one tenant (see [`Querier::select`]).
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        self.querier(tenant)?.select(matchers, mint, maxt, hints)
    }

    /// Background maintenance: cuts due blocks in every tenant. Errors are logged per tenant
    /// and the first one returned.
    pub fn maintain(&self) -> Result<()> {
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        let mut first_err = None;
        for t in tenants {
            if let Err(e) = t.cut_due_blocks() {
                tracing::error!(tenant = %t.id(), error = %e, "cutting blocks failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Snapshots every tenant into `<data>/snapshots/<name>/tenants/<tenant>/metrics/` (see
    /// [`TenantDb::snapshot`]) and returns the snapshot's name (a new, time-sortable id).
    pub fn snapshot(&self, with_head: bool) -> Result<String> {
        let name = crate::block::new_block_id();
        let root = self.opts.data_dir.join("snapshots").join(&name);
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            let dest = root.join("tenants").join(t.id()).join("metrics");
            t.snapshot(&dest, with_head)?;
        }
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io("creating the snapshot directory", &root, e))?;
        Ok(name)
    }

    /// Applies the retention to every tenant (see [`TenantDb::apply_retention`]). Errors are
    /// logged per tenant and the first one returned; returns the number of deleted blocks.
    pub fn apply_retention(&self, retention_ms: i64) -> Result<usize> {
        self.apply_retention_and_size(retention_ms, 0)
    }

    /// Applies the time retention and then the per-tenant size limit (0: none) to every
    /// tenant. Returns the number of deleted blocks.
    pub fn apply_retention_and_size(&self, retention_ms: i64, max_bytes: u64) -> Result<usize> {
        self.apply_retention_policy_and_size(&ResolutionRetention::uniform(retention_ms), max_bytes)
    }

    /// Applies the retention per resolution and then the per-tenant size limit (0: none) to
    /// every tenant. Returns the number of deleted blocks.
    pub fn apply_retention_policy_and_size(
        &self,
        policy: &ResolutionRetention,
        max_bytes: u64,
    ) -> Result<usize> {
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        let mut first_err = None;
        let mut deleted = 0;
        for t in tenants {
            let r = t.apply_retention_policy(policy).and_then(|mut d| {
                d.extend(t.apply_size_limit(max_bytes)?);
                Ok(d)
            });
            match r {
                Ok(d) => deleted += d.len(),
                Err(e) => {
                    tracing::error!(tenant = %t.id(), error = %e, "applying retention failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(deleted), Err)
    }

    /// Syncs every tenant's WAL (graceful shutdown).
    pub fn close(&self) -> Result<()> {
        let tenants: Vec<Arc<TenantDb>> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            t.sync()?;
        }
        Ok(())
    }
}

/// Encodes a series' samples into block chunks of at most `chunk_samples` (best encoding
/// each) and adds the series to the block being written. Returns the bytes of chunk data.
pub fn add_series_samples(
    writer: &mut BlockWriter,
    labels: &Labels,
    samples: &[(i64, f64)],
    chunk_samples: usize,
) -> Result<u64> {
    let encoded: Vec<(i64, i64, u32, u8, Vec<u8>)> = samples
        .chunks(chunk_samples.max(1))
        .filter_map(|c| {
            let (first, last) = (c.first()?, c.last()?);
            let (enc, bytes) = chunk::encode_best(c);
            Some((first.0, last.0, c.len() as u32, enc.as_u8(), bytes))
        })
        .collect();
    let refs: Vec<(i64, i64, u32, u8, &[u8])> = encoded
        .iter()
        .map(|(a, b, n, e, d)| (*a, *b, *n, *e, d.as_slice()))
        .collect();
    writer.add_series(labels, &refs)?;
    Ok(encoded.iter().map(|e| e.4.len() as u64).sum())
}

/// Bytes of the files under a directory.
fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Recreates the directory tree `from` at `to`, hard-linking every file (copying where a link
/// is not possible, e.g. across file systems).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io("creating a snapshot directory", to, e))?;
    let entries = std::fs::read_dir(from)
        .map_err(|e| Error::io("listing a directory to snapshot", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing a directory to snapshot", from, e))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("reading a file type", &path, e))?
            .is_dir();
        if is_dir {
            link_tree(&path, &target)?;
        } else if std::fs::hard_link(&path, &target).is_err() {
            std::fs::copy(&path, &target)
                .map_err(|e| Error::io("copying a file into a snapshot", &target, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Matcher;

    fn opts(dir: &Path) -> EngineOptions {
        EngineOptions {
            data_dir: dir.to_path_buf(),
            head: HeadOptions {
                block_range_ms: 3_600_000,
                ..HeadOptions::default()
            },
            ..EngineOptions::default()
        }
    }

    fn series(i: usize) -> Labels {
        Labels::from_pairs(&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", &i.to_string()),
            ("job", "node"),
        ])
        .unwrap()
    }

    fn write(engine: &Engine, n_series: usize, from: i64, to: i64, step: i64) {
        let labels: Vec<Labels> = (0..n_series).map(series).collect();
        let mut t = from;
        while t < to {
            let samples: Vec<Vec<(i64, f64)>> = (0..n_series)
                .map(|i| vec![(t, (t / 1000) as f64 + i as f64)])
                .collect();
            let batch: Vec<AppendSeries> = labels
                .iter()
                .zip(&samples)
                .map(|(l, s)| AppendSeries {
                    labels: l,
                    samples: s,
                })
                .collect();
            let rep = engine.append(DEFAULT_TENANT, &batch).unwrap();
            assert_eq!(rep.rejected, 0);
            t += step;
        }
    }

    fn read_all(engine: &Engine, tenant: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let m = [Matcher::equal("job", "node")];
        engine
            .select(tenant, &m, i64::MIN, i64::MAX, &SelectHints::default())
            .unwrap()
            .into_iter()
            .map(|s| {
                let samples = s.samples(i64::MIN, i64::MAX).unwrap();
                (s.labels().clone(), samples)
            })
            .collect()
    }

    #[test]
    fn retention_deletes_whole_expired_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        // 5 hours of data in 1 h blocks, newest sample at 5 h - 15 s.
        write(&engine, 3, 0, 5 * 3_600_000, 15_000);
        let db = engine.tenant(DEFAULT_TENANT).unwrap();
        db.persist_all().unwrap();
        assert_eq!(db.block_metas().len(), 5);
        // Keep 2.5 h: blocks ending before 4:59:45 - 2:30 = 2:29:45 go (the first two); the
        // third (2 h – 3 h) still holds samples inside the retention and stays whole.
        let deleted = engine.apply_retention(9_000_000).unwrap();
        assert_eq!(deleted, 2);
        let metas = db.block_metas();
        assert_eq!(metas.len(), 3);
        assert_eq!(metas[0].min_time, 7_200_000);
        let all = read_all(&engine, DEFAULT_TENANT);
        assert_eq!(all[0].1.first().map(|s| s.0), Some(7_200_000));
        // The directories are gone, and a reopened engine loads only what is left.
        let dirs = std::fs::read_dir(db.dir()).unwrap().count();
        drop(db);
        drop(engine);
        let (engine, reports) = Engine::open(opts(dir.path())).unwrap();
        assert_eq!(reports[0].blocks, 3, "{dirs} entries");
        // No-op when nothing is expired, and a non-positive retention keeps everything.
        assert_eq!(engine.apply_retention(9_000_000).unwrap(), 0);
        assert_eq!(engine.apply_retention(0).unwrap(), 0);
        // A size limit below the total deletes oldest first until the rest fits.
        let db = engine.tenant(DEFAULT_TENANT).unwrap();
        let sizes: Vec<u64> = db.blocks().iter().map(|b| dir_size(b.dir())).collect();
        let limit = sizes[1] + sizes[2];
        assert_eq!(engine.apply_retention_and_size(0, limit).unwrap(), 1);
        let metas = db.block_metas();
        assert_eq!(metas.len(), 2);
        assert_eq!(metas[0].min_time, 3 * 3_600_000);
        assert_eq!(engine.apply_retention_and_size(0, 0).unwrap(), 0);
    }

    /// Writes a block of resolution `res` over `[lo, hi]` with one sample at `hi`, publishes it.
    fn fake_block(db: &TenantDb, lo: i64, hi: i64, res: i64) -> String {
        let mut w = BlockWriter::create_with(
            db.dir(),
            crate::block::BlockWriterOptions {
                resolution_ms: res,
                ..crate::block::BlockWriterOptions::new(lo, hi)
            },
        )
        .unwrap();
        let data = chunk::encode(chunk::Encoding::Gorilla, &[(hi, 1.0)]).unwrap();
        w.add_series(
            &series(0),
            &[(hi, hi, 1, chunk::Encoding::Gorilla.as_u8(), &data)],
        )
        .unwrap();
        let (_, path) = w.finish().unwrap();
        db.replace_blocks(&path, &[]).unwrap().id
    }

    #[test]
    fn retention_per_resolution_and_tenant() {
        use crate::downsample::{RES_1H, RES_5M};
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        const DAY: i64 = 86_400_000;
        // Tenant a: raw, 5 m and 1 h blocks for each of days 0..10 (newest sample: day 10).
        // Tenant b: the same resolutions, but only days 0..4.
        let mut blocks: HashMap<(&str, i64, i64), String> = HashMap::new();
        for (tenant, days) in [("a", 10), ("b", 4)] {
            let db = engine.tenant(tenant).unwrap();
            for d in 0..days {
                for res in [0, RES_5M, RES_1H] {
                    let id = fake_block(&db, d * DAY, (d + 1) * DAY - 1, res);
                    blocks.insert((tenant, d, res), id);
                }
            }
        }
        let policy = ResolutionRetention {
            raw_ms: 2 * DAY,
            res_5m_ms: 5 * DAY,
            res_1h_ms: 0,
        };
        let deleted = engine.apply_retention_policy_and_size(&policy, 0).unwrap();
        // a: newest = 10 d - 1 ms; raw blocks ending before 8 d - 1 ms go (days 0..=6, 7
        // blocks), 5 m ones ending before 5 d - 1 ms (days 0..=3, 4 blocks), 1 h: kept.
        // b: newest = 4 d - 1 ms; raw day 0 goes, no 5 m block is old enough.
        assert_eq!(deleted, 7 + 4 + 1);
        for (tenant, days, raw_kept_from, five_kept_from) in [("a", 10, 7, 4), ("b", 4, 1, 0)] {
            let db = engine.tenant(tenant).unwrap();
            let left: std::collections::HashSet<String> =
                db.block_metas().into_iter().map(|m| m.id).collect();
            for d in 0..days {
                for (res, kept_from) in [(0, raw_kept_from), (RES_5M, five_kept_from), (RES_1H, 0)]
                {
                    let id = &blocks[&(tenant, d, res)];
                    assert_eq!(
                        left.contains(id),
                        d >= kept_from,
                        "{tenant} day {d} res {res}"
                    );
                    assert_eq!(db.dir().join(id).exists(), d >= kept_from);
                }
            }
        }
        // Nothing more is due.
        assert_eq!(
            engine.apply_retention_policy_and_size(&policy, 0).unwrap(),
            0
        );
        assert_eq!(ResolutionRetention::uniform(5).retention_ms(RES_1H), 5);
    }

    #[test]
    fn snapshot_is_a_data_directory_with_every_sample() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        write(&engine, 3, 0, 3 * 3_600_000, 15_000);
        let db = engine.tenant(DEFAULT_TENANT).unwrap();
        db.cut_due_blocks().unwrap();
        assert!(!db.block_metas().is_empty());
        assert!(db.head().max_time() >= 0, "some data still in the head");
        let before = read_all(&engine, DEFAULT_TENANT);
        let name = engine.snapshot(true).unwrap();
        // The live tenant is unchanged.
        assert_eq!(read_all(&engine, DEFAULT_TENANT), before);
        let snap = dir.path().join("snapshots").join(&name);
        let (copy, _) = Engine::open(opts(&snap)).unwrap();
        assert_eq!(read_all(&copy, DEFAULT_TENANT), before);
        // Without the head only the blocks are there.
        let name = engine.snapshot(false).unwrap();
        let (copy, _) = Engine::open(opts(&dir.path().join("snapshots").join(&name))).unwrap();
        let blocks_only = read_all(&copy, DEFAULT_TENANT);
        assert!(blocks_only[0].1.len() < before[0].1.len());
    }

    #[test]
    fn import_writes_aligned_blocks_queries_see() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        let mut series = std::collections::BTreeMap::new();
        for i in 0..3 {
            let samples: Vec<(i64, f64)> = (0..200).map(|k| (k * 60_000, (k + i) as f64)).collect();
            series.insert(self::series(i as usize), samples);
        }
        let db = engine.tenant(DEFAULT_TENANT).unwrap();
        let metas = db.import(&series).unwrap();
        // 200 minutes in 1 h blocks: 0–1 h, 1–2 h, 2–3 h, 3–3:20.
        assert_eq!(metas.len(), 4);
        let all = read_all(&engine, DEFAULT_TENANT);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].1.len(), 200);
        drop(db);
        drop(engine);
        let (engine, reports) = Engine::open(opts(dir.path())).unwrap();
        assert_eq!(reports[0].blocks, 4);
        assert_eq!(read_all(&engine, DEFAULT_TENANT)[2].1.len(), 200);
    }

    #[test]
    fn wal_replay_restores_head() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (engine, _) = Engine::open(opts(dir.path())).unwrap();
            write(&engine, 5, 0, 600_000, 15_000);
            read_all(&engine, DEFAULT_TENANT)
        };
        assert_eq!(before.len(), 5);
        assert_eq!(before[0].1.len(), 40);
        let (engine, reports) = Engine::open(opts(dir.path())).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].samples, 200);
        assert_eq!(read_all(&engine, DEFAULT_TENANT), before);
    }

    #[test]
    fn blocks_cut_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 3_600_000;
        let before = {
            let (engine, _) = Engine::open(opts(dir.path())).unwrap();
            write(&engine, 3, 0, 2 * hour, 60_000);
            let t = engine.tenant(DEFAULT_TENANT).unwrap();
            let cut = t.cut_due_blocks().unwrap();
            assert_eq!(cut.len(), 1, "one full hour cut, the partial second stays");
            assert_eq!(cut[0].min_time, 0);
            assert_eq!(cut[0].max_time, hour - 1);
            assert!(t.head().min_time() >= hour);
            read_all(&engine, DEFAULT_TENANT)
        };
        assert_eq!(before[0].1.len(), 120);
        let (engine, reports) = Engine::open(opts(dir.path())).unwrap();
        assert_eq!(reports[0].blocks, 1);
        assert_eq!(reports[0].samples, 3 * 60, "only the second hour replays");
        assert_eq!(read_all(&engine, DEFAULT_TENANT), before);
        // Samples in the persisted range are now too old.
        let l = series(0);
        let rep = engine
            .append(
                DEFAULT_TENANT,
                &[AppendSeries {
                    labels: &l,
                    samples: &[(1000, 1.0)],
                }],
            )
            .unwrap();
        assert_eq!(rep.rejected, 1);
    }

    #[test]
    fn persist_all_empties_head_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        write(&engine, 4, 0, 5_000_000, 30_000);
        let before = read_all(&engine, DEFAULT_TENANT);
        let t = engine.tenant(DEFAULT_TENANT).unwrap();
        let metas = t.persist_all().unwrap();
        assert_eq!(metas.len(), 2);
        assert_eq!(t.head().num_series(), 0);
        assert_eq!(read_all(&engine, DEFAULT_TENANT), before);
        drop(t);
        drop(engine);
        let (engine, reports) = Engine::open(opts(dir.path())).unwrap();
        assert_eq!(reports[0].samples, 0);
        assert_eq!(read_all(&engine, DEFAULT_TENANT), before);
    }

    #[test]
    fn borrowed_labels_exemplars_and_metadata_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: &[(&str, &str)] = &[("__name__", "http_requests_total"), ("job", "api")];
        let ex = Exemplar {
            labels: Labels::from_pairs(&[("trace_id", "4bf92f3577b34da6")]).unwrap(),
            value: 1.0,
            timestamp: 1000,
        };
        let meta = MetricMetadata {
            metric_type: "counter".into(),
            help: "Requests.".into(),
            unit: String::new(),
        };
        {
            let (engine, _) = Engine::open(opts(dir.path())).unwrap();
            let t = engine.tenant(DEFAULT_TENANT).unwrap();
            let rep = t
                .ingest(
                    &[IngestSeries {
                        labels: pairs,
                        samples: &[(1000, 1.0), (2000, 2.0)],
                        exemplars: std::slice::from_ref(&ex),
                    }],
                    &[("http_requests_total", meta.clone())],
                )
                .unwrap();
            assert_eq!(
                (rep.appended, rep.series_created, rep.exemplars_appended),
                (2, 1, 1)
            );
            // The same labels, owned, find the same series.
            let owned = Labels::from_pairs(pairs).unwrap();
            let rep = t
                .append(&[AppendSeries {
                    labels: &owned,
                    samples: &[(3000, 3.0)],
                }])
                .unwrap();
            assert_eq!(rep.series_created, 0);
            // Invalid borrowed labels are reported, not stored.
            let bad: &[(&str, &str)] = &[("a", "1"), ("a", "2")];
            let rep = t
                .ingest(
                    &[IngestSeries {
                        labels: bad,
                        samples: &[(1, 1.0)],
                        exemplars: &[],
                    }],
                    &[],
                )
                .unwrap();
            assert_eq!(rep.invalid_series, 1);
            assert!(
                rep.invalid[0].contains("duplicate label name"),
                "{:?}",
                rep.invalid
            );
        }
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        let t = engine.tenant(DEFAULT_TENANT).unwrap();
        assert_eq!(t.metadata().get("http_requests_total"), vec![meta]);
        let refs = t.head().select_refs(&[Matcher::equal("job", "api")]);
        let got = t.exemplars().query(&refs, 0, 10_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, vec![ex]);
        assert_eq!(read_all_job(&engine, "api")[0].1.len(), 3);
    }

    fn read_all_job(engine: &Engine, job: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
        engine
            .select(
                DEFAULT_TENANT,
                &[Matcher::equal("job", job)],
                i64::MIN,
                i64::MAX,
                &SelectHints::default(),
            )
            .unwrap()
            .into_iter()
            .map(|s| (s.labels().clone(), s.samples(i64::MIN, i64::MAX).unwrap()))
            .collect()
    }

    #[test]
    fn series_limit_refuses_new_series_only() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        let t = engine.tenant(DEFAULT_TENANT).unwrap();
        t.set_max_series(2);
        let ls: Vec<Labels> = (0..3).map(series).collect();
        let s = [(1000, 1.0)];
        let batch: Vec<AppendSeries> = ls
            .iter()
            .map(|l| AppendSeries {
                labels: l,
                samples: &s,
            })
            .collect();
        let rep = t.append(&batch).unwrap();
        assert_eq!(
            (rep.appended, rep.series_limited, rep.series_limit),
            (2, 1, 2)
        );
        let rep = t
            .append(&[AppendSeries {
                labels: &ls[0],
                samples: &[(2000, 2.0)],
            }])
            .unwrap();
        assert_eq!((rep.appended, rep.series_limited), (1, 0));
    }

    #[test]
    fn tenants_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        let l = series(1);
        engine
            .append(
                "team-a",
                &[AppendSeries {
                    labels: &l,
                    samples: &[(1, 1.0)],
                }],
            )
            .unwrap();
        assert_eq!(read_all(&engine, "team-a").len(), 1);
        assert!(read_all(&engine, "team-b").is_empty());
        assert!(
            engine.existing_tenant("team-b").is_none(),
            "reads never create tenants"
        );
        assert!(matches!(
            engine.append(
                "../x",
                &[AppendSeries {
                    labels: &l,
                    samples: &[(1, 1.0)]
                }]
            ),
            Err(Error::InvalidTenant(_))
        ));
        assert!(dir.path().join("tenants/team-a/metrics/wal").is_dir());
    }

    #[test]
    fn label_names_and_values_with_time_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(opts(dir.path())).unwrap();
        write(&engine, 2, 0, 120_000, 60_000);
        let q = engine.querier(DEFAULT_TENANT).unwrap();
        assert_eq!(
            q.label_names(&[], i64::MIN, i64::MAX).unwrap(),
            vec!["__name__", "cpu", "job"]
        );
        assert_eq!(q.label_values("cpu", &[], 0, 1000).unwrap(), vec!["0", "1"]);
        assert!(
            q.label_values("cpu", &[], 10_000_000, 20_000_000)
                .unwrap()
                .is_empty()
        );
        let m = [Matcher::equal("cpu", "1")];
        assert_eq!(q.label_values("cpu", &m, 0, 1000).unwrap(), vec!["1"]);
    }
}
