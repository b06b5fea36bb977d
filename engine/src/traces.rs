//! The trace store: every tenant's spans, grouped per trace, in a WAL-backed head and
//! immutable time-partitioned blocks.
//!
//! It lives beside the metrics [`Engine`](crate::Engine) and shares nothing with it but the
//! data directory and the WAL crate: a trace is read whole by id, searched by its spans'
//! properties, and never merged sample by sample, so it gets its own layout.
//!
//! ```text
//! append(tenant, spans)
//!   └─► TenantTraces::append        WAL record (kind 1, all spans of the call), head insert,
//!                                   fsync before returning (acknowledged = durable)
//! maintain() (background)
//!   └─► cut when the head's oldest span is older than `block_age` or it holds `max_head_bytes`:
//!       the whole head becomes one block (sorted by trace id), the WAL is rotated and
//!       checkpointed to empty; blocks past `retention` are deleted.
//! trace(id)   head + block being cut + blocks (bloom filter, binary search), merged,
//!             duplicate span ids dropped — spans of one trace arriving minutes apart end up
//!             in different blocks and are joined here.
//! search(..)  blocks pruned by time, then by postings and columns; candidates decoded.
//! ```
//!
//! Layout: `<data>/tenants/<tenant>/traces/{wal/, blocks/<cut-ms>-<seq>.strb}`. Formats:
//! [`span`] (span encoding, also the WAL payload) and [`block`]; both in `docs/FORMAT.md`,
//! section "Trace store".
//!
//! # Durability
//!
//! [`TenantTraces::append`] returns after the WAL holds the spans (fsync in the default sync
//! mode). A cut writes the block (temp file, fsync, rename, fsync dir) *before* the WAL is
//! checkpointed, so a crash between the two only replays spans that are also in a block;
//! reads drop the duplicates by span id.
//!
//! # Locking
//!
//! Lock order: `cut_lock` → `append_lock` → `head` → `cutting` → `blocks`. Appends hold
//! `append_lock` across the WAL write and the head insert, so the WAL order is the head order
//! and a cut (which rotates the WAL under `append_lock`) never splits an append.

pub mod block;
pub mod span;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use strata_wal::{CheckpointAction, SyncMode, Wal, WalOptions};

pub use block::{Bloom, PostingKey, TraceBlock};
pub use span::{Attr, AttrScope, AttrValue, SpanRecord};

/// Traces by id, sorted: the shape of a block being written.
pub type TraceMap = BTreeMap<[u8; 16], Vec<SpanRecord>>;

/// WAL record kind of a batch of spans (payload: `span::encode_spans`).
pub const RECORD_SPANS: u8 = 1;
/// Version byte leading every spans record.
const RECORD_VERSION: u8 = 1;

/// Result alias of the trace store.
pub type TraceResult<T> = std::result::Result<T, TraceError>;

/// Errors of the trace store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] strata_wal::WalError),
    /// A block file is damaged.
    #[error("corrupt trace block {path}: {reason}")]
    CorruptBlock {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A block file has a version this build does not read.
    #[error("trace block {path} has format version {version}; this build reads version 1")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u16,
    },
    /// A WAL record of the trace store did not decode.
    #[error("invalid trace WAL record: {0}")]
    Record(String),
    /// A tenant id is not a valid directory name.
    #[error("invalid tenant id {0:?}: must be 1-150 characters of [A-Za-z0-9_.-], not '.' or '..'")]
    InvalidTenant(String),
    /// An earlier WAL write failed; writes are refused until restart.
    #[error(
        "tenant {0}: an earlier trace WAL write failed; writes are refused until the server restarts"
    )]
    WalFailed(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

impl TraceError {
    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TraceError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Options of the trace store.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Root data directory. Default: `./data`.
    pub data_dir: PathBuf,
    /// WAL segment size. Default: 128 MiB.
    pub wal_segment_size: u64,
    /// WAL sync policy. Default: fsync every batch before acknowledging.
    pub wal_sync: SyncMode,
    /// Repair a corrupt WAL instead of refusing to start. Default: false.
    pub wal_repair: bool,
    /// A block is cut once the head's oldest data is this old. Default: 5 minutes.
    pub block_age: Duration,
    /// A block is cut once the head holds this many bytes. Default: 256 MiB.
    pub max_head_bytes: usize,
    /// Blocks whose newest span ended longer ago than this are deleted. Default: 30 days.
    pub retention: Duration,
    /// Most bytes of trace blocks kept per tenant, oldest deleted first; 0: no limit.
    /// Default: 0.
    pub retention_bytes: u64,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            data_dir: PathBuf::from("./data"),
            wal_segment_size: 128 << 20,
            wal_sync: SyncMode::EveryBatch,
            wal_repair: false,
            block_age: Duration::from_secs(300),
            max_head_bytes: 256 << 20,
            retention: Duration::from_secs(30 * 86_400),
            retention_bytes: 0,
        }
    }
}

/// What opening a tenant's trace store found.
#[derive(Debug, Default, Clone)]
pub struct TraceOpenReport {
    /// The tenant.
    pub tenant: String,
    /// Blocks loaded.
    pub blocks: usize,
    /// Spans replayed from the WAL.
    pub spans_replayed: u64,
    /// Repair summary, if the WAL was repaired.
    pub repair: Option<String>,
}

/// Conditions a trace must meet to be a search candidate. They prune; the caller's predicate
/// decides.
#[derive(Clone, Debug, Default)]
pub struct SearchHints {
    /// The trace must overlap `[start_ns, end_ns]`.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Some span of the trace must satisfy all of these at once.
    pub span: SpanHint,
    /// Every term must occur in the trace (equality on an indexed attribute or `name`).
    pub terms: Vec<(Option<AttrScope>, String, String)>,
}

/// Column conditions one span must meet together.
#[derive(Clone, Debug, Default)]
pub struct SpanHint {
    /// `service.name` equals.
    pub service: Option<String>,
    /// Span name equals.
    pub name: Option<String>,
    /// Duration at least (ns).
    pub min_duration_ns: Option<u64>,
    /// Duration at most (ns).
    pub max_duration_ns: Option<u64>,
    /// Status code equals.
    pub status: Option<u8>,
    /// Kind equals.
    pub kind: Option<u8>,
}

impl SpanHint {
    fn is_empty(&self) -> bool {
        self.service.is_none()
            && self.name.is_none()
            && self.min_duration_ns.is_none()
            && self.max_duration_ns.is_none()
            && self.status.is_none()
            && self.kind.is_none()
    }

    fn matches(&self, s: &SpanRecord) -> bool {
        let d = s.duration_ns();
        self.service.as_ref().is_none_or(|v| *v == s.service)
            && self.name.as_ref().is_none_or(|v| *v == s.name)
            && self.min_duration_ns.is_none_or(|v| d >= v)
            && self.max_duration_ns.is_none_or(|v| d <= v)
            && self.status.is_none_or(|v| v == s.status)
            && self.kind.is_none_or(|v| v == s.kind)
    }
}

#[derive(Default)]
struct HeadTrace {
    spans: Vec<SpanRecord>,
    min_start: u64,
    max_end: u64,
}

#[derive(Default)]
struct TraceHead {
    traces: HashMap<[u8; 16], HeadTrace>,
    bytes: usize,
    spans: u64,
    oldest: Option<Instant>,
}

impl TraceHead {
    fn insert(&mut self, s: SpanRecord) {
        self.bytes += s.approx_size();
        self.spans += 1;
        self.oldest.get_or_insert_with(Instant::now);
        let t = self.traces.entry(s.trace_id).or_insert_with(|| HeadTrace {
            spans: Vec::new(),
            min_start: u64::MAX,
            max_end: 0,
        });
        t.min_start = t.min_start.min(s.start_ns);
        t.max_end = t.max_end.max(s.end_ns);
        t.spans.push(s);
    }
}

/// One tenant's trace store: head, WAL and blocks.
pub struct TenantTraces {
    id: String,
    dir: PathBuf,
    opts: TraceOptions,
    wal: Wal,
    /// Lock order: after `append_lock`.
    head: RwLock<TraceHead>,
    /// Traces taken from the head while their block is being written (readable meanwhile).
    cutting: RwLock<Option<Arc<TraceMap>>>,
    blocks: RwLock<Vec<Arc<TraceBlock>>>,
    append_lock: Mutex<()>,
    cut_lock: Mutex<()>,
    wal_failed: std::sync::atomic::AtomicBool,
    block_seq: AtomicU64,
    spans_appended: AtomicU64,
}

impl std::fmt::Debug for TenantTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTraces")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Encodes a WAL spans record.
pub fn encode_record(out: &mut Vec<u8>, spans: &[SpanRecord]) {
    out.push(RECORD_VERSION);
    span::encode_spans(out, spans.iter());
}

/// Decodes a WAL spans record.
pub fn decode_record(buf: &[u8]) -> TraceResult<Vec<SpanRecord>> {
    match buf.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            span::decode_spans(rest).map_err(|e| TraceError::Record(e.to_string()))
        }
        Some((v, _)) => Err(TraceError::Record(format!(
            "unknown spans record version {v}"
        ))),
        None => Err(TraceError::Record("empty spans record".into())),
    }
}

impl TenantTraces {
    /// Opens (creating if needed) a tenant's trace store: loads blocks, replays the WAL.
    pub fn open(id: &str, opts: &TraceOptions) -> TraceResult<(TenantTraces, TraceOpenReport)> {
        if !crate::db::valid_tenant(id) {
            return Err(TraceError::InvalidTenant(id.to_string()));
        }
        let dir = opts.data_dir.join("tenants").join(id).join("traces");
        let blocks_dir = dir.join("blocks");
        std::fs::create_dir_all(&blocks_dir)
            .map_err(|e| TraceError::io("create trace dir", &blocks_dir, e))?;
        let mut report = TraceOpenReport {
            tenant: id.to_string(),
            ..TraceOpenReport::default()
        };
        let mut blocks = Vec::new();
        let entries = std::fs::read_dir(&blocks_dir)
            .map_err(|e| TraceError::io("list trace blocks", &blocks_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| TraceError::io("list trace blocks", &blocks_dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".strb.tmp") {
                tracing::warn!(tenant = id, path = %path.display(), "removing incomplete trace block left by a crash");
                std::fs::remove_file(&path)
                    .map_err(|e| TraceError::io("remove incomplete trace block", &path, e))?;
            } else if name.ends_with(".strb") {
                blocks.push(Arc::new(TraceBlock::open(&path)?));
            }
        }
        blocks.sort_by(|a, b| a.path().cmp(b.path()));
        report.blocks = blocks.len();
        let wal_opts = WalOptions {
            segment_size: opts.wal_segment_size,
            sync: opts.wal_sync,
            recovery: if opts.wal_repair {
                strata_wal::RecoveryMode::Repair
            } else {
                strata_wal::RecoveryMode::TolerateTornTail
            },
        };
        let (wal, mut replay, repair) = Wal::open(dir.join("wal"), wal_opts)?;
        if let Some(r) = repair
            && !r.is_torn_tail_only()
        {
            let summary = format!(
                "{} bytes dropped ({} intact records)",
                r.bytes_dropped(),
                r.intact_records_dropped()
            );
            tracing::warn!(tenant = id, %summary, "trace WAL repaired: data after the corruption was dropped");
            report.repair = Some(summary);
        }
        let mut head = TraceHead::default();
        while let Some(rec) = replay.next_record() {
            let rec = rec?;
            if rec.kind != RECORD_SPANS {
                return Err(TraceError::Record(format!(
                    "unknown record kind {}",
                    rec.kind
                )));
            }
            for s in decode_record(rec.payload)? {
                report.spans_replayed += 1;
                head.insert(s);
            }
        }
        let seq = blocks.len() as u64;
        Ok((
            TenantTraces {
                id: id.to_string(),
                dir,
                opts: opts.clone(),
                wal,
                head: RwLock::new(head),
                cutting: RwLock::new(None),
                blocks: RwLock::new(blocks),
                append_lock: Mutex::new(()),
                cut_lock: Mutex::new(()),
                wal_failed: std::sync::atomic::AtomicBool::new(false),
                block_seq: AtomicU64::new(seq),
                spans_appended: AtomicU64::new(0),
            },
            report,
        ))
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends spans; returns once they are durable per the sync mode.
    pub fn append(&self, spans: Vec<SpanRecord>) -> TraceResult<()> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(spans.iter().map(SpanRecord::approx_size).sum::<usize>());
        encode_record(&mut buf, &spans);
        let guard = self.append_lock.lock();
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(TraceError::WalFailed(self.id.clone()));
        }
        let seq = match self.wal.append_unsynced(&[(RECORD_SPANS, &buf)]) {
            Ok(seq) => seq,
            Err(e) => {
                self.wal_failed.store(true, Ordering::Release);
                return Err(e.into());
            }
        };
        let n = spans.len() as u64;
        {
            let mut head = self.head.write();
            for s in spans {
                head.insert(s);
            }
        }
        drop(guard);
        self.spans_appended.fetch_add(n, Ordering::Relaxed);
        if matches!(self.opts.wal_sync, SyncMode::EveryBatch)
            && let Err(e) = self.wal.sync_through(seq)
        {
            self.wal_failed.store(true, Ordering::Release);
            return Err(e.into());
        }
        Ok(())
    }

    /// Spans appended since open.
    pub fn spans_appended(&self) -> u64 {
        self.spans_appended.load(Ordering::Relaxed)
    }

    /// Spans and bytes in the head.
    pub fn head_stats(&self) -> (u64, usize, usize) {
        let h = self.head.read();
        (h.spans, h.traces.len(), h.bytes)
    }

    /// The loaded blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<TraceBlock>> {
        self.blocks.read().clone()
    }

    /// Cuts a block if the head is due (or `force` and non-empty). Returns the block's path.
    pub fn cut_if_due(&self, force: bool) -> TraceResult<Option<PathBuf>> {
        let _cut = self.cut_lock.lock();
        let traces = {
            let _g = self.append_lock.lock();
            let mut head = self.head.write();
            let due = head
                .oldest
                .is_some_and(|o| o.elapsed() >= self.opts.block_age)
                || head.bytes >= self.opts.max_head_bytes;
            if head.traces.is_empty() || !(force || due) {
                return Ok(None);
            }
            let taken = std::mem::take(&mut *head);
            let mut sorted = BTreeMap::new();
            for (id, t) in taken.traces {
                sorted.insert(id, t.spans);
            }
            let sorted = Arc::new(sorted);
            *self.cutting.write() = Some(sorted.clone());
            let next = self.wal.rotate()?;
            (sorted, next)
        };
        let (sorted, next_segment) = traces;
        let result = (|| {
            let bytes = block::encode_block(&sorted)?;
            let seq = self.block_seq.fetch_add(1, Ordering::Relaxed);
            let name = format!("{:013}-{:06}.strb", now_ms(), seq);
            let path = block::write_block_file(&self.dir.join("blocks"), &name, &bytes)?;
            let b = Arc::new(TraceBlock::from_bytes(
                path.clone(),
                bytes::Bytes::from(bytes),
            )?);
            Ok::<_, TraceError>((b, path))
        })();
        match result {
            Ok((b, path)) => {
                self.blocks.write().push(b);
                *self.cutting.write() = None;
                // Everything before the rotation is now in a block.
                self.wal
                    .checkpoint(next_segment.saturating_sub(1), |_, _| {
                        CheckpointAction::Drop
                    })?;
                tracing::info!(tenant = %self.id, path = %path.display(), traces = sorted.len(), "cut trace block");
                Ok(Some(path))
            }
            Err(e) => {
                // The spans are still in the WAL; put them back so they stay readable.
                let mut head = self.head.write();
                if let Some(taken) = self.cutting.write().take() {
                    for spans in taken.values() {
                        for s in spans {
                            head.insert(s.clone());
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// Deletes blocks whose newest span ended before `now - retention`, then the oldest ones
    /// while the blocks exceed `retention_bytes` (the rule every block kind shares:
    /// [`crate::retention::expired`]). Returns how many.
    pub fn apply_retention(&self) -> TraceResult<usize> {
        let blocks = self.blocks.read().clone();
        let extents: Vec<crate::retention::BlockExtent> = blocks
            .iter()
            .map(|b| crate::retention::BlockExtent {
                min_time: i64::try_from(b.min_start_ns).unwrap_or(i64::MAX),
                max_time: i64::try_from(b.max_end_ns).unwrap_or(i64::MAX),
                bytes: std::fs::metadata(b.path()).map_or(0, |m| m.len()),
            })
            .collect();
        let policy = crate::retention::RetentionPolicy {
            max_age: i64::try_from(self.opts.retention.as_nanos()).unwrap_or(i64::MAX),
            max_bytes: self.opts.retention_bytes,
        };
        let now = i64::try_from(now_ns()).unwrap_or(i64::MAX);
        let expired: Vec<Arc<TraceBlock>> = crate::retention::expired(&extents, now, &policy)
            .into_iter()
            .filter_map(|i| blocks.get(i).cloned())
            .collect();
        for b in &expired {
            std::fs::remove_file(b.path())
                .map_err(|e| TraceError::io("delete expired trace block", b.path(), e))?;
            tracing::info!(tenant = %self.id, path = %b.path().display(), "deleted trace block past retention");
        }
        if !expired.is_empty() {
            self.blocks
                .write()
                .retain(|b| !expired.iter().any(|e| Arc::ptr_eq(e, b)));
        }
        Ok(expired.len())
    }

    /// Every span of a trace (head, block being cut, blocks), sorted by start; spans received
    /// twice (same span id) appear once.
    pub fn trace(&self, id: &[u8; 16]) -> TraceResult<Vec<SpanRecord>> {
        let mut out = Vec::new();
        if let Some(t) = self.head.read().traces.get(id) {
            out.extend(t.spans.iter().cloned());
        }
        if let Some(c) = self.cutting.read().as_ref()
            && let Some(spans) = c.get(id)
        {
            out.extend(spans.iter().cloned());
        }
        for b in self.blocks() {
            if let Some(ord) = b.find(id) {
                out.extend(b.read_trace(ord)?);
            }
        }
        Ok(dedupe(out))
    }

    /// Calls `f` with every candidate trace overlapping the hints' time range (spans as found in
    /// one place: head or one block; use [`TenantTraces::trace`] for the whole trace), newest
    /// blocks first, until `f` breaks. No lock is held while `f` runs, so it may read the store.
    pub fn search(
        &self,
        hints: &SearchHints,
        mut f: impl FnMut(&[u8; 16], &[SpanRecord]) -> ControlFlow<()>,
    ) -> TraceResult<()> {
        let overlaps = |lo: u64, hi: u64| hi >= hints.start_ns && lo <= hints.end_ns;
        let span_ok = |spans: &[SpanRecord]| {
            hints.span.is_empty() || spans.iter().any(|s| hints.span.matches(s))
        };
        let terms_ok = |spans: &[SpanRecord]| {
            hints.terms.iter().all(|(scope, key, value)| {
                spans.iter().any(|s| match (scope, key.as_str()) {
                    (None, "name") => s.name == *value,
                    (Some(sc), _) => s
                        .attrs
                        .iter()
                        .any(|a| a.scope == *sc && a.key == *key && a.value.to_text() == *value),
                    _ => false,
                })
            })
        };
        // Candidates are collected under the head lock and visited after it is released:
        // `f` may read the store again (a recursive read lock can deadlock behind a writer).
        let head_ids: Vec<[u8; 16]> = {
            let head = self.head.read();
            head.traces
                .iter()
                .filter(|(_, t)| {
                    overlaps(t.min_start, t.max_end) && span_ok(&t.spans) && terms_ok(&t.spans)
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for id in head_ids {
            let spans = match self.head.read().traces.get(&id) {
                Some(t) => t.spans.clone(),
                None => continue, // cut into a block meanwhile; found there below
            };
            if f(&id, &spans).is_break() {
                return Ok(());
            }
        }
        let cutting = self.cutting.read().clone();
        if let Some(c) = cutting {
            for (id, spans) in c.iter() {
                let lo = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
                let hi = spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
                if overlaps(lo, hi) && span_ok(spans) && terms_ok(spans) && f(id, spans).is_break()
                {
                    return Ok(());
                }
            }
        }
        for b in self.blocks().iter().rev() {
            if !overlaps(b.min_start_ns, b.max_end_ns) {
                continue;
            }
            for ord in candidates(b, hints) {
                let e = b.index()[ord as usize];
                if !overlaps(e.min_start_ns, e.max_end_ns) {
                    continue;
                }
                let spans = b.read_trace(ord as usize)?;
                if f(&e.trace_id, &spans).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Attribute keys seen in traces overlapping `[start_ns, end_ns]`: `(scope, key)`.
    pub fn tag_names(&self, start_ns: u64, end_ns: u64) -> BTreeSet<(AttrScope, String)> {
        let mut out = BTreeSet::new();
        for t in self.head.read().traces.values() {
            if t.max_end >= start_ns && t.min_start <= end_ns {
                for s in &t.spans {
                    for a in &s.attrs {
                        if !out.contains(&(a.scope, a.key.clone())) {
                            out.insert((a.scope, a.key.clone()));
                        }
                    }
                }
            }
        }
        for b in self.blocks() {
            if b.max_end_ns >= start_ns && b.min_start_ns <= end_ns {
                for k in b.postings().keys() {
                    let scope = match k.scope {
                        0 => AttrScope::Resource,
                        1 => AttrScope::Span,
                        _ => continue,
                    };
                    out.insert((scope, k.key.clone()));
                }
            }
        }
        out
    }

    /// Values of an attribute (`scope` `None`: either scope) with their type names, at most
    /// `limit`. `key` may be the intrinsic `name`, `status` or `kind` when `scope` is `None`.
    pub fn tag_values(
        &self,
        scope: Option<AttrScope>,
        key: &str,
        start_ns: u64,
        end_ns: u64,
        limit: usize,
    ) -> BTreeSet<(&'static str, String)> {
        let mut out = BTreeSet::new();
        let intrinsic = scope.is_none() && key == "name";
        for t in self.head.read().traces.values() {
            if out.len() >= limit {
                break;
            }
            if t.max_end >= start_ns && t.min_start <= end_ns {
                for s in &t.spans {
                    if intrinsic {
                        out.insert(("string", s.name.clone()));
                        continue;
                    }
                    for a in &s.attrs {
                        if a.key == key && scope.is_none_or(|sc| sc == a.scope) {
                            out.insert((a.value.type_name(), a.value.to_text()));
                        }
                    }
                }
            }
        }
        for b in self.blocks() {
            if out.len() >= limit {
                break;
            }
            if b.max_end_ns >= start_ns && b.min_start_ns <= end_ns {
                for k in b.postings().keys() {
                    let ok_scope = if intrinsic {
                        k.scope == 2
                    } else {
                        k.scope != 2 && scope.is_none_or(|sc| sc as u8 == k.scope)
                    };
                    if ok_scope && k.key == key {
                        let ty = match k.vtype {
                            2 => "int",
                            4 => "bool",
                            _ => "string",
                        };
                        out.insert((ty, k.value.clone()));
                    }
                }
            }
        }
        out.into_iter().take(limit).collect()
    }

    /// Syncs the WAL.
    pub fn sync(&self) -> TraceResult<()> {
        Ok(self.wal.sync()?)
    }

    /// Bytes of all block files.
    pub fn blocks_size(&self) -> u64 {
        self.blocks().iter().map(|b| b.size_bytes()).sum()
    }

    /// The tenant's trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Trace ordinals of a block that can match the hints (postings ∩ columns).
fn candidates(b: &TraceBlock, hints: &SearchHints) -> Vec<u32> {
    let n = b.trace_count() as u32;
    let mut set: Option<roaring::RoaringBitmap> = None;
    for (scope, key, value) in &hints.terms {
        let sc = TraceBlock::scope_byte(*scope);
        // A key with no postings at all in this block (high cardinality, or floats) cannot
        // prune: skip the term.
        let mut any_key = false;
        let mut bm = roaring::RoaringBitmap::new();
        for (k, v) in b.postings().range(
            PostingKey {
                scope: sc,
                key: key.clone(),
                value: String::new(),
                vtype: 0,
            }..,
        ) {
            if k.scope != sc || k.key != *key {
                break;
            }
            any_key = true;
            if k.value == *value {
                bm |= v;
            }
        }
        if !any_key {
            continue;
        }
        set = Some(match set {
            Some(s) => s & bm,
            None => bm,
        });
    }
    if !hints.span.is_empty() {
        let c = b.columns();
        let sym_of = |want: &Option<String>| want.as_ref().map(|w| b.symbol_id(w));
        let service = sym_of(&hints.span.service);
        let name = sym_of(&hints.span.name);
        // A wanted symbol absent from the block: nothing can match.
        if matches!(service, Some(None)) || matches!(name, Some(None)) {
            return Vec::new();
        }
        let mut bm = roaring::RoaringBitmap::new();
        let h = &hints.span;
        for i in 0..c.trace_ord.len() {
            if service.is_some_and(|s| s != Some(c.service[i]))
                || name.is_some_and(|s| s != Some(c.name[i]))
                || h.min_duration_ns.is_some_and(|m| c.duration_ns[i] < m)
                || h.max_duration_ns.is_some_and(|m| c.duration_ns[i] > m)
                || h.status.is_some_and(|s| s != c.status[i])
                || h.kind.is_some_and(|k| k != c.kind[i])
            {
                continue;
            }
            bm.insert(c.trace_ord[i]);
        }
        set = Some(match set {
            Some(s) => s & bm,
            None => bm,
        });
    }
    match set {
        Some(s) => s.iter().rev().collect(),
        None => (0..n).rev().collect(),
    }
}

/// Sorts by start and drops repeated span ids (keeping the first received).
fn dedupe(mut spans: Vec<SpanRecord>) -> Vec<SpanRecord> {
    let mut seen = HashSet::with_capacity(spans.len());
    spans.retain(|s| seen.insert(s.span_id));
    spans.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.span_id.cmp(&b.span_id)));
    spans
}

/// The trace stores of all tenants.
pub struct TraceStore {
    opts: TraceOptions,
    tenants: RwLock<HashMap<String, Arc<TenantTraces>>>,
    create_lock: Mutex<()>,
}

impl std::fmt::Debug for TraceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceStore")
            .field("data_dir", &self.opts.data_dir)
            .finish_non_exhaustive()
    }
}

impl TraceStore {
    /// Opens every tenant found under `<data>/tenants/*/traces`.
    pub fn open(opts: TraceOptions) -> TraceResult<(TraceStore, Vec<TraceOpenReport>)> {
        let tenants_dir = opts.data_dir.join("tenants");
        std::fs::create_dir_all(&tenants_dir)
            .map_err(|e| TraceError::io("create data dir", &tenants_dir, e))?;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&tenants_dir)
            .map_err(|e| TraceError::io("list tenants", &tenants_dir, e))?
        {
            let entry = entry.map_err(|e| TraceError::io("list tenants", &tenants_dir, e))?;
            if entry.path().join("traces").is_dir() {
                ids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        let mut tenants = HashMap::new();
        let mut reports = Vec::new();
        for id in ids {
            let (t, r) = TenantTraces::open(&id, &opts)?;
            tenants.insert(id, Arc::new(t));
            reports.push(r);
        }
        Ok((
            TraceStore {
                opts,
                tenants: RwLock::new(tenants),
                create_lock: Mutex::new(()),
            },
            reports,
        ))
    }

    /// A store with no tenants opened yet; tenants are created under `opts.data_dir` on first
    /// write. Use [`TraceStore::open`] to load what is on disk.
    pub fn empty(opts: TraceOptions) -> TraceStore {
        TraceStore {
            opts,
            tenants: RwLock::new(HashMap::new()),
            create_lock: Mutex::new(()),
        }
    }

    /// The tenant's store, created on first write.
    pub fn tenant(&self, id: &str) -> TraceResult<Arc<TenantTraces>> {
        if let Some(t) = self.tenants.read().get(id) {
            return Ok(t.clone());
        }
        let _g = self.create_lock.lock();
        if let Some(t) = self.tenants.read().get(id) {
            return Ok(t.clone());
        }
        let (t, _) = TenantTraces::open(id, &self.opts)?;
        let t = Arc::new(t);
        self.tenants.write().insert(id.to_string(), t.clone());
        Ok(t)
    }

    /// The tenant's store if it exists (reads never create tenants).
    pub fn existing_tenant(&self, id: &str) -> Option<Arc<TenantTraces>> {
        self.tenants.read().get(id).cloned()
    }

    /// Ids of all tenants with traces, sorted.
    pub fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.tenants.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Background work: cuts due blocks, applies retention. Errors are logged per tenant.
    pub fn maintain(&self) {
        let tenants: Vec<Arc<TenantTraces>> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            if let Err(e) = t.cut_if_due(false) {
                tracing::error!(tenant = %t.id, error = %e, "cutting trace block failed");
            }
            if let Err(e) = t.apply_retention() {
                tracing::error!(tenant = %t.id, error = %e, "trace retention failed");
            }
        }
    }

    /// Syncs every tenant's WAL (shutdown).
    pub fn close(&self) -> TraceResult<()> {
        let tenants: Vec<Arc<TenantTraces>> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            t.sync()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn span(trace: u8, id: u8, parent: u8, start: u64, dur: u64, service: &str) -> SpanRecord {
        SpanRecord {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            start_ns: start,
            end_ns: start + dur,
            kind: span::KIND_SERVER,
            status: 0,
            service: service.into(),
            name: format!("op{id}"),
            attrs: vec![Attr {
                scope: AttrScope::Resource,
                key: "service.name".into(),
                value: AttrValue::Str(service.into()),
            }],
            payload: vec![id],
        }
    }

    fn opts(dir: &Path) -> TraceOptions {
        TraceOptions {
            data_dir: dir.to_path_buf(),
            ..TraceOptions::default()
        }
    }

    #[test]
    fn spans_survive_restart_and_cut_and_merge_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ns();
        {
            let (store, _) = TraceStore::open(opts(dir.path())).unwrap();
            let t = store.tenant("anonymous").unwrap();
            t.append(vec![
                span(1, 1, 0, now, 1000, "gw"),
                span(2, 5, 0, now, 10, "x"),
            ])
            .unwrap();
            t.cut_if_due(true).unwrap().unwrap();
            // The same trace continues after the cut, and one span is received twice.
            t.append(vec![
                span(1, 2, 1, now + 10, 500, "cart"),
                span(1, 1, 0, now, 1000, "gw"),
            ])
            .unwrap();
            assert_eq!(t.trace(&[1; 16]).unwrap().len(), 2);
        }
        let (store, reports) = TraceStore::open(opts(dir.path())).unwrap();
        assert_eq!(reports[0].blocks, 1);
        assert_eq!(reports[0].spans_replayed, 2);
        let t = store.existing_tenant("anonymous").unwrap();
        let spans = t.trace(&[1; 16]).unwrap();
        assert_eq!(
            spans.iter().map(|s| s.span_id[0]).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(t.trace(&[9; 16]).unwrap().is_empty());
        t.cut_if_due(true).unwrap().unwrap();
        assert_eq!(t.trace(&[1; 16]).unwrap().len(), 2);
        // After the second cut the WAL is empty: a reopen replays nothing.
        drop(t);
        drop(store);
        let (_, reports) = TraceStore::open(opts(dir.path())).unwrap();
        assert_eq!(reports[0].spans_replayed, 0);
        assert_eq!(reports[0].blocks, 2);
    }

    #[test]
    fn search_prunes_with_hints_in_head_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = TraceStore::open(opts(dir.path())).unwrap();
        let t = store.tenant("t1").unwrap();
        let now = now_ns();
        t.append(vec![
            span(1, 1, 0, now, 3_000_000_000, "checkout"),
            span(2, 2, 0, now, 10, "checkout"),
            span(3, 3, 0, now, 5_000_000_000, "cart"),
        ])
        .unwrap();
        let hints = SearchHints {
            start_ns: 0,
            end_ns: u64::MAX,
            span: SpanHint {
                service: Some("checkout".into()),
                min_duration_ns: Some(2_000_000_000),
                ..SpanHint::default()
            },
            terms: vec![(
                Some(AttrScope::Resource),
                "service.name".into(),
                "checkout".into(),
            )],
        };
        let run = |t: &TenantTraces| {
            let mut found = Vec::new();
            t.search(&hints, |id, _| {
                found.push(id[0]);
                ControlFlow::Continue(())
            })
            .unwrap();
            found
        };
        assert_eq!(run(&t), vec![1]);
        t.cut_if_due(true).unwrap();
        assert_eq!(run(&t), vec![1]);
        let names = t.tag_names(0, u64::MAX);
        assert!(names.contains(&(AttrScope::Resource, "service.name".to_string())));
        let values = t.tag_values(Some(AttrScope::Resource), "service.name", 0, u64::MAX, 10);
        assert_eq!(values.len(), 2);
        // Out of the time range: nothing.
        let mut none = hints.clone();
        none.end_ns = 5;
        let mut n = 0;
        t.search(&none, |_, _| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, 0);
    }

    /// A search callback reads the store while another thread appends: no lock may be held
    /// across the callback (a recursive read behind a waiting writer deadlocks).
    #[test]
    fn search_callbacks_can_read_while_others_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.wal_sync = SyncMode::Interval(Duration::from_millis(50));
        let (store, _) = TraceStore::open(o).unwrap();
        let t = store.tenant("anonymous").unwrap();
        let now = now_ns();
        for k in 0..50u8 {
            t.append(vec![span(k, 1, 0, now, 10, "s")]).unwrap();
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let mut k = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    t.append(vec![span(k, k.wrapping_add(2), 1, now, 10, "s")])
                        .unwrap();
                    k = k.wrapping_add(1);
                }
            });
            let deadline = Instant::now() + Duration::from_millis(300);
            let mut visited = 0;
            while Instant::now() < deadline {
                t.search(
                    &SearchHints {
                        start_ns: 0,
                        end_ns: u64::MAX,
                        ..SearchHints::default()
                    },
                    |id, _| {
                        visited += usize::from(!t.trace(id).unwrap().is_empty());
                        ControlFlow::Continue(())
                    },
                )
                .unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            assert!(visited > 0);
        });
    }

    #[test]
    fn retention_deletes_old_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.retention = Duration::from_secs(3600);
        let (store, _) = TraceStore::open(o).unwrap();
        let t = store.tenant("anonymous").unwrap();
        t.append(vec![span(1, 1, 0, 1_000, 10, "old")]).unwrap();
        t.cut_if_due(true).unwrap();
        assert_eq!(t.blocks().len(), 1);
        assert_eq!(t.apply_retention().unwrap(), 1);
        assert!(t.blocks().is_empty());
        assert!(t.trace(&[1; 16]).unwrap().is_empty());
    }
}
