//! The per-tenant log store ([`LogStore`]) and the registry of all tenants ([`LogEngine`]).
//!
//! See the parent module for the data flow, durability and lock order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use strata_wal::{CheckpointAction, SyncMode, Wal, WalFile, WalOptions};

use crate::db::valid_tenant;
use crate::labels::{Labels, Matcher};

use super::LogError;
use super::block::{BLOCK_SUFFIX, ChunkToWrite, LogBlock, encode_block, write_block_file};
use super::chunk::{LogEntry, decode_chunk, decode_index, encode_chunk};
use super::filter::{
    SignatureBuilder, is_trace_id_name, parse_trace_id, signature_bits, signature_may_contain,
};
use super::record::{RECORD_LOG_PUSH, StreamEntries, decode_push, encode_push};

type Result<T, E = LogError> = std::result::Result<T, E>;

/// Options of the log store.
#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    /// Root data directory. Default: `./data`.
    pub data_dir: PathBuf,
    /// Raw line bytes at which a stream's head is cut into a chunk. Default: 256 KiB.
    pub chunk_target_bytes: usize,
    /// Sealed chunk bytes kept in memory before they are flushed into a block. Default: 64 MiB.
    pub flush_bytes: usize,
    /// Width of a block's time partition (ns). Default: 2 h.
    pub partition_ns: i64,
    /// WAL segment size. Default: 128 MiB.
    pub wal_segment_size: u64,
    /// WAL sync policy. Default: fsync before acknowledging.
    pub wal_sync: SyncMode,
    /// Repair a corrupt WAL instead of refusing to open. Default: false.
    pub wal_repair: bool,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            data_dir: PathBuf::from("./data"),
            chunk_target_bytes: 256 << 10,
            flush_bytes: 64 << 20,
            partition_ns: 2 * 3600 * 1_000_000_000,
            wal_segment_size: 128 << 20,
            wal_sync: SyncMode::EveryBatch,
            wal_repair: false,
        }
    }
}

/// Per-tenant limits a push is checked against (0 disables a limit).
#[derive(Clone, Debug)]
pub struct PushLimits {
    /// Largest line (bytes, metadata included). Default: 256 KiB.
    pub max_line_size: usize,
    /// Most streams a tenant may have. Default: 10 000.
    pub max_streams: usize,
    /// Most labels per stream. Default: 15.
    pub max_labels_per_stream: usize,
    /// How far behind a stream's newest entry an entry may be (ns). Default: 1 h.
    pub out_of_order_window_ns: i64,
    /// Oldest accepted timestamp relative to now (ns). Default: 7 days.
    pub reject_older_than_ns: i64,
    /// Newest accepted timestamp relative to now (ns). Default: 10 minutes.
    pub creation_grace_ns: i64,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            max_line_size: 256 << 10,
            max_streams: 10_000,
            max_labels_per_stream: 15,
            out_of_order_window_ns: 3600 * 1_000_000_000,
            reject_older_than_ns: 7 * 24 * 3600 * 1_000_000_000,
            creation_grace_ns: 600 * 1_000_000_000,
        }
    }
}

/// Why entries were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A line over `max_line_size`.
    LineTooLong {
        /// Stream labels.
        stream: String,
        /// Size of the line.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A stream with more labels than allowed.
    TooManyLabels {
        /// Stream labels.
        stream: String,
        /// Labels it has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A new stream over the tenant's stream limit.
    StreamLimit {
        /// Stream labels.
        stream: String,
        /// The limit.
        limit: usize,
    },
    /// An entry older than the stream's newest minus the out-of-order window.
    TooFarBehind {
        /// Stream labels.
        stream: String,
        /// Entry timestamp.
        ts: i64,
        /// Oldest acceptable timestamp.
        oldest: i64,
    },
    /// An entry older than `reject_older_than`.
    TooOld {
        /// Stream labels.
        stream: String,
        /// Entry timestamp.
        ts: i64,
    },
    /// An entry newer than now plus the grace period.
    TooNew {
        /// Stream labels.
        stream: String,
        /// Entry timestamp.
        ts: i64,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::LineTooLong {
                stream,
                size,
                limit,
            } => write!(
                f,
                "stream {stream}: entry of {size} bytes exceeds the max line size of {limit} bytes (limit max_line_size)"
            ),
            Rejection::TooManyLabels {
                stream,
                count,
                limit,
            } => write!(
                f,
                "stream {stream}: {count} label names exceed the limit of {limit} (limit max_labels_per_stream)"
            ),
            Rejection::StreamLimit { stream, limit } => write!(
                f,
                "stream {stream}: the tenant already has the maximum of {limit} active streams (limit max_streams); reduce label cardinality or raise the limit"
            ),
            Rejection::TooFarBehind { stream, ts, oldest } => write!(
                f,
                "stream {stream}: entry with timestamp {ts} is too far behind: the oldest accepted timestamp for this stream is {oldest} (out-of-order window)"
            ),
            Rejection::TooOld { stream, ts } => write!(
                f,
                "stream {stream}: entry with timestamp {ts} is older than the tenant accepts (limit reject_older_than)"
            ),
            Rejection::TooNew { stream, ts } => write!(
                f,
                "stream {stream}: entry with timestamp {ts} is too far in the future (limit creation_grace_period)"
            ),
        }
    }
}

/// What a push did.
#[derive(Clone, Debug, Default)]
pub struct PushReport {
    /// Entries stored.
    pub accepted: usize,
    /// Bytes stored (lines + metadata).
    pub accepted_bytes: usize,
    /// Entries refused.
    pub rejected: usize,
    /// The first refusals (at most 10), for the response.
    pub rejections: Vec<Rejection>,
    /// True if any refusal was the stream limit (answered 429).
    pub stream_limit: bool,
}

/// One stream as listed by queries.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// Stream id in this store.
    pub id: u32,
    /// Its labels.
    pub labels: Arc<Labels>,
}

/// Totals for `index/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Streams.
    pub streams: u64,
    /// Chunks (head buffers count as one each).
    pub chunks: u64,
    /// Raw line bytes.
    pub bytes: u64,
    /// Entries.
    pub entries: u64,
}

/// What to select: streams, time range `[start, end)` in ns, and literals every returned
/// chunk may contain (used to skip chunks; callers still filter lines).
#[derive(Clone, Debug, Default)]
pub struct ChunkSelect<'a> {
    /// Stream matchers.
    pub matchers: &'a [Matcher],
    /// Inclusive start (ns).
    pub start: i64,
    /// Exclusive end (ns).
    pub end: i64,
    /// Literals every matching line contains as exact (case-sensitive) substrings: the values
    /// of `|=` filters. Chunks are skipped by signature, head lines by a substring check.
    pub literals: &'a [String],
    /// A trace id every matching line carries as structured metadata (exact trace-id index).
    pub trace_id: Option<u128>,
}

#[derive(Clone, Debug)]
enum Source {
    Sealed(Bytes),
    Head(Arc<Vec<LogEntry>>),
}

/// A chunk (or a snapshot of a head buffer) selected by a query.
#[derive(Clone, Debug)]
pub struct ChunkRef {
    /// Stream id.
    pub stream_id: u32,
    /// Stream labels.
    pub labels: Arc<Labels>,
    /// Smallest timestamp.
    pub min_t: i64,
    /// Largest timestamp.
    pub max_t: i64,
    /// Entries.
    pub entries: u32,
    /// Raw line bytes.
    pub raw_bytes: u64,
    source: Source,
}

impl ChunkRef {
    /// Decodes every entry (sorted by timestamp).
    pub fn entries(&self) -> Result<Vec<LogEntry>> {
        match &self.source {
            Source::Sealed(b) => decode_chunk(b),
            Source::Head(v) => Ok(v.as_ref().clone()),
        }
    }

    /// Visits every entry without copying head buffers.
    pub fn for_each(&self, mut f: impl FnMut(&LogEntry)) -> Result<()> {
        match &self.source {
            Source::Sealed(b) => {
                for e in decode_chunk(b)? {
                    f(&e);
                }
            }
            Source::Head(v) => v.iter().for_each(f),
        }
        Ok(())
    }

    /// Timestamps and line lengths only (does not decompress lines of sealed chunks).
    pub fn index(&self) -> Result<Vec<(i64, u32)>> {
        match &self.source {
            Source::Sealed(b) => decode_index(b),
            Source::Head(v) => Ok(v.iter().map(|e| (e.ts, e.line.len() as u32)).collect()),
        }
    }
}

struct SealedChunk {
    stream: u32,
    min_t: i64,
    max_t: i64,
    entries: u32,
    raw_bytes: u32,
    data: Bytes,
    signature: Bytes,
    /// Trace ids while the chunk is only in memory; `None` once it is in a block.
    traces: Option<Vec<u128>>,
    /// Block index once flushed.
    block: Option<usize>,
}

struct Stream {
    labels: Arc<Labels>,
    head: Vec<LogEntry>,
    /// Head buffers taken for sealing whose chunk is being compressed outside the lock;
    /// queries read them like the head.
    sealing: Vec<Arc<Vec<LogEntry>>>,
    head_bytes: usize,
    head_sorted: bool,
    newest: i64,
    min_t: i64,
    max_t: i64,
    chunks: Vec<u32>,
}

#[derive(Default)]
struct Inner {
    streams: Vec<Stream>,
    by_hash: HashMap<u64, Vec<u32>>,
    postings: BTreeMap<String, BTreeMap<String, RoaringBitmap>>,
    chunks: Vec<SealedChunk>,
    /// Blocks by index; `None` once retention deleted one (indices stay stable).
    blocks: Vec<Option<Arc<LogBlock>>>,
    /// Block chunk ordinal → global chunk id, per block.
    block_chunk_ids: Vec<Vec<u32>>,
    /// Trace id → chunk ids, for chunks not yet in a block.
    mem_traces: HashMap<u128, Vec<u32>>,
    unflushed_bytes: usize,
    block_seq: u64,
}

impl Inner {
    fn stream_id(&self, labels: &Labels, hash: u64) -> Option<u32> {
        self.by_hash.get(&hash)?.iter().copied().find(|&id| {
            self.streams
                .get(id as usize)
                .is_some_and(|s| *s.labels == *labels)
        })
    }

    fn create_stream(&mut self, labels: Labels, hash: u64) -> u32 {
        let id = self.streams.len() as u32;
        for l in labels.iter() {
            self.postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(id);
        }
        self.by_hash.entry(hash).or_default().push(id);
        self.streams.push(Stream {
            labels: Arc::new(labels),
            head: Vec::new(),
            sealing: Vec::new(),
            head_bytes: 0,
            head_sorted: true,
            newest: i64::MIN,
            min_t: i64::MAX,
            max_t: i64::MIN,
            chunks: Vec::new(),
        });
        id
    }

    fn get_or_create(&mut self, labels: &Labels) -> u32 {
        let hash = labels.stable_hash();
        match self.stream_id(labels, hash) {
            Some(id) => id,
            None => self.create_stream(labels.clone(), hash),
        }
    }

    /// Appends entries to a stream's head (no checks: they were validated before the WAL)
    /// and seals the head in place when it reached `target`.
    fn apply(&mut self, id: u32, entries: Vec<LogEntry>, target: usize) -> Result<()> {
        if self.append_head(id, entries, target) {
            self.seal(id)?;
        }
        Ok(())
    }

    /// Appends entries to a stream's head; true if the head reached `target`.
    fn append_head(&mut self, id: u32, entries: Vec<LogEntry>, target: usize) -> bool {
        let Some(s) = self.streams.get_mut(id as usize) else {
            return false;
        };
        for e in entries {
            if s.head.last().is_some_and(|l| l.ts > e.ts) {
                s.head_sorted = false;
            }
            s.newest = s.newest.max(e.ts);
            s.min_t = s.min_t.min(e.ts);
            s.max_t = s.max_t.max(e.ts);
            s.head_bytes += e.line.len();
            s.head.push(e);
        }
        s.head_bytes >= target
    }

    /// Takes a stream's head for sealing outside the lock; it stays readable in `sealing`.
    fn take_head(&mut self, id: u32) -> Option<(Arc<Vec<LogEntry>>, usize, bool)> {
        let s = self.streams.get_mut(id as usize)?;
        if s.head.is_empty() {
            return None;
        }
        let head = Arc::new(std::mem::take(&mut s.head));
        let raw = std::mem::take(&mut s.head_bytes);
        let sorted = std::mem::replace(&mut s.head_sorted, true);
        s.sealing.push(head.clone());
        Some((head, raw, sorted))
    }

    /// Publishes a chunk prepared outside the lock and retires its `sealing` buffer.
    fn insert_prepared(&mut self, id: u32, taken: &Arc<Vec<LogEntry>>, p: PreparedChunk) {
        if let Some(s) = self.streams.get_mut(id as usize) {
            s.sealing.retain(|b| !Arc::ptr_eq(b, taken));
        }
        self.insert_sealed(id, p);
    }

    fn insert_sealed(&mut self, id: u32, p: PreparedChunk) {
        let cid = self.chunks.len() as u32;
        for &t in &p.traces {
            self.mem_traces.entry(t).or_default().push(cid);
        }
        if let Some(s) = self.streams.get_mut(id as usize) {
            s.chunks.push(cid);
        }
        self.unflushed_bytes += p.data.len();
        self.chunks.push(SealedChunk {
            stream: id,
            min_t: p.min_t,
            max_t: p.max_t,
            entries: p.entries,
            raw_bytes: p.raw_bytes,
            data: p.data,
            signature: p.signature,
            traces: Some(p.traces),
            block: None,
        });
    }

    /// Cuts a stream's head into a sealed chunk, under the lock.
    fn seal(&mut self, id: u32) -> Result<()> {
        let Some(s) = self.streams.get_mut(id as usize) else {
            return Ok(());
        };
        if s.head.is_empty() {
            return Ok(());
        }
        let mut head = std::mem::take(&mut s.head);
        let raw = std::mem::take(&mut s.head_bytes);
        if !std::mem::replace(&mut s.head_sorted, true) {
            head.sort_by_key(|e| e.ts);
        }
        let p = prepare_chunk(&head, raw)?;
        self.insert_sealed(id, p);
        Ok(())
    }

    fn select_streams(&self, matchers: &[Matcher]) -> RoaringBitmap {
        let mut result: Option<RoaringBitmap> = None;
        let all = || (0..self.streams.len() as u32).collect::<RoaringBitmap>();
        // Positive, non-empty-matching matchers through postings first.
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let mut set = RoaringBitmap::new();
            if let Some(values) = self.postings.get(&m.name) {
                if m.op == crate::labels::MatchOp::Equal {
                    if let Some(p) = values.get(&m.value) {
                        set |= p;
                    }
                } else {
                    for (v, p) in values {
                        if m.matches(v) {
                            set |= p;
                        }
                    }
                }
            }
            result = Some(match result {
                Some(r) => r & set,
                None => set,
            });
        }
        let mut result = result.unwrap_or_else(all);
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            result = result
                .iter()
                .filter(|&id| {
                    self.streams
                        .get(id as usize)
                        .is_some_and(|s| m.matches_labels(&s.labels))
                })
                .collect();
        }
        result
    }
}

/// What opening a tenant's log store found.
#[derive(Clone, Debug, Default)]
pub struct LogOpenReport {
    /// Tenant id.
    pub tenant: String,
    /// Blocks loaded.
    pub blocks: usize,
    /// Entries replayed from the WAL.
    pub replayed_entries: u64,
    /// What WAL recovery dropped, if anything beyond a torn tail.
    pub repair: Option<String>,
    /// Replay time.
    pub replay_time: Duration,
}

/// One tenant's logs.
pub struct LogStore {
    id: String,
    dir: PathBuf,
    opts: LogStoreOptions,
    wal: Wal,
    gate: RwLock<()>,
    inner: RwLock<Inner>,
    flush_lock: Mutex<()>,
    wal_failed: AtomicBool,
    entries_total: AtomicU64,
    bytes_total: AtomicU64,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("tenant", &self.id)
            .finish()
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl LogStore {
    /// Opens (creating if needed) a tenant's log store: loads blocks, replays the WAL.
    pub fn open(id: &str, opts: &LogStoreOptions) -> Result<(LogStore, LogOpenReport)> {
        if !valid_tenant(id) {
            return Err(LogError::InvalidTenant(id.to_string()));
        }
        let dir = opts.data_dir.join("tenants").join(id).join("logs");
        let blocks_dir = dir.join("blocks");
        std::fs::create_dir_all(&blocks_dir)
            .map_err(|e| LogError::io("create log dir", &blocks_dir, e))?;
        let mut report = LogOpenReport {
            tenant: id.to_string(),
            ..LogOpenReport::default()
        };
        let start = Instant::now();
        let mut inner = Inner::default();
        let mut paths = Vec::new();
        let entries = std::fs::read_dir(&blocks_dir)
            .map_err(|e| LogError::io("list log blocks", &blocks_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io("list log blocks", &blocks_dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                tracing::warn!(tenant = id, path = %path.display(), "removing incomplete log block left by a crash");
                std::fs::remove_file(&path)
                    .map_err(|e| LogError::io("remove incomplete log block", &path, e))?;
            } else if name.ends_with(BLOCK_SUFFIX) {
                paths.push((name, path));
            }
        }
        paths.sort();
        for (name, path) in paths {
            let block = LogBlock::open(&path)?;
            if let Some(seq) = name
                .trim_end_matches(BLOCK_SUFFIX)
                .rsplit('-')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
            {
                inner.block_seq = inner.block_seq.max(seq + 1);
            }
            load_block(&mut inner, Arc::new(block));
        }
        report.blocks = inner.blocks.iter().flatten().count();

        let wal_opts = WalOptions {
            segment_size: opts.wal_segment_size,
            sync: opts.wal_sync,
            recovery: if opts.wal_repair {
                strata_wal::RecoveryMode::Repair
            } else {
                strata_wal::RecoveryMode::TolerateTornTail
            },
        };
        let flushed_upto = read_flush_marker(&dir)?;
        let (wal, mut replay, repair) = Wal::open(dir.join("wal"), wal_opts)?;
        if let Some(r) = repair
            && !r.is_torn_tail_only()
        {
            let summary = format!(
                "{} bytes dropped ({} intact records)",
                r.bytes_dropped(),
                r.intact_records_dropped()
            );
            tracing::warn!(tenant = id, %summary, "log WAL repaired: data after the corruption was dropped");
            report.repair = Some(summary);
        }
        while let Some(rec) = replay.next_record() {
            let rec = rec?;
            if rec.kind != RECORD_LOG_PUSH {
                return Err(LogError::Corrupt {
                    what: "log WAL",
                    offset: 0,
                    reason: format!("unknown record kind {}", rec.kind),
                });
            }
            let streams = decode_push(rec.payload)?;
            // Segments a flush already put into blocks (a crash came between the block write
            // and the WAL checkpoint) are skipped, so no entry is loaded twice.
            if let (Some(upto), Some(WalFile::Segment(n))) = (flushed_upto, replay.current_file())
                && n <= upto
            {
                continue;
            }
            for s in streams {
                let sid = inner.get_or_create(&s.labels);
                report.replayed_entries += s.entries.len() as u64;
                inner.apply(sid, s.entries, opts.chunk_target_bytes)?;
            }
        }
        drop(replay);
        report.replay_time = start.elapsed();
        Ok((
            LogStore {
                id: id.to_string(),
                dir,
                opts: opts.clone(),
                wal,
                gate: RwLock::new(()),
                inner: RwLock::new(inner),
                flush_lock: Mutex::new(()),
                wal_failed: AtomicBool::new(false),
                entries_total: AtomicU64::new(0),
                bytes_total: AtomicU64::new(0),
            },
            report,
        ))
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant's log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries and bytes accepted since start.
    pub fn ingested(&self) -> (u64, u64) {
        (
            self.entries_total.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        )
    }

    /// Validates, logs and applies a push. Entries that break a limit are left out and
    /// reported; the rest is stored. Returns once the stored part is durable.
    pub fn push(&self, streams: Vec<StreamEntries>, limits: &PushLimits) -> Result<PushReport> {
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(LogError::WalFailed(self.id.clone()));
        }
        let _gate = self.gate.read();
        let mut report = PushReport::default();
        let now = now_ns();
        let reject = |report: &mut PushReport, r: Rejection, n: usize| {
            report.rejected += n;
            if matches!(r, Rejection::StreamLimit { .. }) {
                report.stream_limit = true;
            }
            if report.rejections.len() < 10 {
                report.rejections.push(r);
            }
        };
        // Validate against the current state; new streams are counted against the limit.
        let mut accepted: Vec<StreamEntries> = Vec::with_capacity(streams.len());
        {
            let inner = self.inner.read();
            let mut new_streams = 0usize;
            let mut newest_in_batch: HashMap<u64, i64> = HashMap::new();
            for s in streams {
                let name = s.labels.to_string();
                if limits.max_labels_per_stream > 0 && s.labels.len() > limits.max_labels_per_stream
                {
                    let n = s.entries.len();
                    reject(
                        &mut report,
                        Rejection::TooManyLabels {
                            stream: name,
                            count: s.labels.len(),
                            limit: limits.max_labels_per_stream,
                        },
                        n,
                    );
                    continue;
                }
                let hash = s.labels.stable_hash();
                let existing = inner.stream_id(&s.labels, hash);
                if existing.is_none() && !newest_in_batch.contains_key(&hash) {
                    if limits.max_streams > 0
                        && inner.streams.len() + new_streams >= limits.max_streams
                    {
                        let n = s.entries.len();
                        reject(
                            &mut report,
                            Rejection::StreamLimit {
                                stream: name,
                                limit: limits.max_streams,
                            },
                            n,
                        );
                        continue;
                    }
                    new_streams += 1;
                }
                let stream_newest = existing
                    .and_then(|id| inner.streams.get(id as usize))
                    .map_or(i64::MIN, |st| st.newest);
                let newest = newest_in_batch.entry(hash).or_insert(stream_newest);
                let mut keep = Vec::with_capacity(s.entries.len());
                for e in s.entries {
                    let size = e.size();
                    if limits.max_line_size > 0 && size > limits.max_line_size {
                        reject(
                            &mut report,
                            Rejection::LineTooLong {
                                stream: name.clone(),
                                size,
                                limit: limits.max_line_size,
                            },
                            1,
                        );
                        continue;
                    }
                    if limits.creation_grace_ns > 0
                        && e.ts > now.saturating_add(limits.creation_grace_ns)
                    {
                        reject(
                            &mut report,
                            Rejection::TooNew {
                                stream: name.clone(),
                                ts: e.ts,
                            },
                            1,
                        );
                        continue;
                    }
                    if limits.reject_older_than_ns > 0
                        && e.ts < now.saturating_sub(limits.reject_older_than_ns)
                    {
                        reject(
                            &mut report,
                            Rejection::TooOld {
                                stream: name.clone(),
                                ts: e.ts,
                            },
                            1,
                        );
                        continue;
                    }
                    let oldest = newest.saturating_sub(limits.out_of_order_window_ns);
                    if *newest != i64::MIN && e.ts < oldest {
                        reject(
                            &mut report,
                            Rejection::TooFarBehind {
                                stream: name.clone(),
                                ts: e.ts,
                                oldest,
                            },
                            1,
                        );
                        continue;
                    }
                    *newest = (*newest).max(e.ts);
                    report.accepted += 1;
                    report.accepted_bytes += size;
                    keep.push(e);
                }
                if !keep.is_empty() {
                    accepted.push(StreamEntries {
                        labels: s.labels,
                        entries: keep,
                    });
                }
            }
        }
        if accepted.is_empty() {
            return Ok(report);
        }
        let mut payload = Vec::with_capacity(report.accepted_bytes + 64 * report.accepted);
        encode_push(&accepted, &mut payload);
        if let Err(e) = self.wal.append(&[(RECORD_LOG_PUSH, &payload)]) {
            self.wal_failed.store(true, Ordering::Release);
            tracing::error!(tenant = %self.id, error = %e, "log WAL append failed; refusing writes until restart");
            return Err(e.into());
        }
        let mut inner = self.inner.write();
        let mut full = Vec::new();
        for s in accepted {
            let id = inner.get_or_create(&s.labels);
            if inner.append_head(id, s.entries, self.opts.chunk_target_bytes) {
                full.push(id);
            }
        }
        let taken: Vec<_> = full
            .into_iter()
            .filter_map(|id| inner.take_head(id).map(|t| (id, t)))
            .collect();
        drop(inner);
        // Compression and indexing run outside the lock; the taken heads stay readable.
        for (id, (head, raw, sorted)) in taken {
            let prepared = if sorted {
                prepare_chunk(&head, raw)
            } else {
                let mut v = head.as_ref().clone();
                v.sort_by_key(|e| e.ts);
                prepare_chunk(&v, raw)
            };
            let mut inner = self.inner.write();
            match prepared {
                Ok(p) => inner.insert_prepared(id, &head, p),
                Err(e) => {
                    // Keep the entries in the head so nothing acknowledged is lost from reads.
                    if let Some(s) = inner.streams.get_mut(id as usize) {
                        s.sealing.retain(|b| !Arc::ptr_eq(b, &head));
                        s.head.extend(head.iter().cloned());
                        s.head_sorted = false;
                        s.head_bytes += raw;
                    }
                    return Err(e);
                }
            }
        }
        let due = self.inner.read().unflushed_bytes >= self.opts.flush_bytes;
        self.entries_total
            .fetch_add(report.accepted as u64, Ordering::Relaxed);
        self.bytes_total
            .fetch_add(report.accepted_bytes as u64, Ordering::Relaxed);
        drop(_gate);
        if due {
            self.flush()?;
        }
        Ok(report)
    }

    /// Seals every head and writes all sealed, unflushed chunks into time-partitioned block
    /// files, then drops the WAL segments they covered. Returns the number of blocks written.
    pub fn flush(&self) -> Result<usize> {
        let _one = self.flush_lock.lock();
        let _gate = self.gate.write();
        let mut inner = self.inner.write();
        for id in 0..inner.streams.len() as u32 {
            inner.seal(id)?;
        }
        // Group unflushed chunks by partition.
        let mut parts: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (cid, c) in inner.chunks.iter().enumerate() {
            if c.block.is_none() {
                parts
                    .entry(c.min_t.div_euclid(self.opts.partition_ns))
                    .or_default()
                    .push(cid as u32);
            }
        }
        let blocks_dir = self.dir.join("blocks");
        let mut written = 0;
        for (part, cids) in parts {
            let mut stream_ord: HashMap<u32, u32> = HashMap::new();
            let mut streams = Vec::new();
            for &cid in &cids {
                if let Some(c) = inner.chunks.get(cid as usize) {
                    stream_ord.entry(c.stream).or_insert_with(|| {
                        streams.push(
                            inner
                                .streams
                                .get(c.stream as usize)
                                .map(|s| (*s.labels).clone())
                                .unwrap_or_default(),
                        );
                        (streams.len() - 1) as u32
                    });
                }
            }
            let empty: Vec<u128> = Vec::new();
            let to_write: Vec<ChunkToWrite<'_>> = cids
                .iter()
                .filter_map(|&cid| inner.chunks.get(cid as usize))
                .map(|c| ChunkToWrite {
                    stream: stream_ord.get(&c.stream).copied().unwrap_or(0),
                    min_t: c.min_t,
                    max_t: c.max_t,
                    entries: c.entries,
                    raw_bytes: c.raw_bytes,
                    data: &c.data,
                    signature: &c.signature,
                    trace_ids: c.traces.as_deref().unwrap_or(&empty),
                })
                .collect();
            let bytes = encode_block(&streams, &to_write)?;
            drop(to_write);
            let name = format!(
                "{:020}-{:08}{BLOCK_SUFFIX}",
                part.saturating_mul(self.opts.partition_ns).max(0),
                inner.block_seq
            );
            inner.block_seq += 1;
            let path = write_block_file(&blocks_dir, &name, &bytes)?;
            drop(bytes);
            let block = Arc::new(LogBlock::open(&path)?);
            // Point the chunks at the mapped file and release their memory.
            let bidx = inner.blocks.len();
            for (ord, &cid) in cids.iter().enumerate() {
                let Some(bc) = block.chunks.get(ord).cloned() else {
                    continue;
                };
                if let Some(c) = inner.chunks.get_mut(cid as usize) {
                    c.data = bc.data;
                    c.signature = bc.signature;
                    c.traces = None;
                    c.block = Some(bidx);
                }
            }
            inner.block_chunk_ids.push(cids);
            inner.blocks.push(Some(block));
            written += 1;
        }
        inner.mem_traces.clear();
        inner.unflushed_bytes = 0;
        drop(inner);
        // Everything the WAL holds is now in blocks: record that, then drop it.
        let next = self.wal.rotate()?;
        if next > 0 {
            let covered = next - 1;
            write_flush_marker(&self.dir, covered)?;
            if self.wal.last_checkpoint().is_none_or(|c| c < covered)
                && self.wal.segments().first().is_some_and(|&f| f <= covered)
            {
                self.wal
                    .checkpoint(covered, |_, _| CheckpointAction::Drop)?;
            }
        }
        Ok(written)
    }

    /// Syncs the WAL.
    pub fn sync(&self) -> Result<()> {
        self.wal.sync()?;
        Ok(())
    }

    /// Streams matching every matcher that have data in `[start, end)`.
    pub fn streams(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<StreamInfo> {
        let inner = self.inner.read();
        inner
            .select_streams(matchers)
            .iter()
            .filter_map(|id| {
                let s = inner.streams.get(id as usize)?;
                (s.max_t >= start && s.min_t < end).then(|| StreamInfo {
                    id,
                    labels: s.labels.clone(),
                })
            })
            .collect()
    }

    /// Label names of the streams matching `matchers` with data in `[start, end)`, sorted.
    pub fn label_names(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for s in self.streams(matchers, start, end) {
            for l in s.labels.iter() {
                names.insert(l.name.clone());
            }
        }
        names.into_iter().collect()
    }

    /// Values of label `name` over the matching streams, sorted.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<String> {
        let mut values = std::collections::BTreeSet::new();
        for s in self.streams(matchers, start, end) {
            if let Some(v) = s.labels.get(name) {
                values.insert(v.to_string());
            }
        }
        values.into_iter().collect()
    }

    /// Chunks (and head snapshots) that may hold matching entries, in no particular order.
    pub fn select(&self, q: &ChunkSelect<'_>) -> Vec<ChunkRef> {
        let grams: Vec<Vec<u32>> = q
            .literals
            .iter()
            .filter_map(|l| super::filter::literal_grams(l))
            .collect();
        let inner = self.inner.read();
        let streams = inner.select_streams(q.matchers);
        // Chunks holding the trace id, when one is required.
        let trace_set: Option<std::collections::HashSet<u32>> = q.trace_id.map(|t| {
            let mut set: std::collections::HashSet<u32> = inner
                .mem_traces
                .get(&t)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            for (b, ids) in inner.blocks.iter().zip(&inner.block_chunk_ids) {
                let Some(b) = b else { continue };
                if b.trace_count() == 0 {
                    continue;
                }
                for ord in b.trace_chunks(t) {
                    if let Some(&cid) = ids.get(ord as usize) {
                        set.insert(cid);
                    }
                }
            }
            set
        });
        let mut out = Vec::new();
        for sid in &streams {
            let Some(s) = inner.streams.get(sid as usize) else {
                continue;
            };
            if s.max_t < q.start || s.min_t >= q.end {
                continue;
            }
            for &cid in &s.chunks {
                let Some(c) = inner.chunks.get(cid as usize) else {
                    continue;
                };
                if c.max_t < q.start || c.min_t >= q.end {
                    continue;
                }
                if let Some(set) = &trace_set
                    && !set.contains(&cid)
                {
                    continue;
                }
                if !grams.iter().all(|g| signature_may_contain(&c.signature, g)) {
                    continue;
                }
                out.push(ChunkRef {
                    stream_id: sid,
                    labels: s.labels.clone(),
                    min_t: c.min_t,
                    max_t: c.max_t,
                    entries: c.entries,
                    raw_bytes: u64::from(c.raw_bytes),
                    source: Source::Sealed(c.data.clone()),
                });
            }
            let head: Vec<LogEntry> = s
                .sealing
                .iter()
                .flat_map(|b| b.iter())
                .chain(s.head.iter())
                .filter(|e| e.ts >= q.start && e.ts < q.end)
                // Literals are exact `|=` filters: a head line without them cannot match.
                .filter(|e| q.literals.iter().all(|l| e.line.contains(l.as_str())))
                .cloned()
                .collect();
            if let (Some(min_t), Some(max_t)) = (
                head.iter().map(|e| e.ts).min(),
                head.iter().map(|e| e.ts).max(),
            ) {
                let mut head = head;
                head.sort_by_key(|e| e.ts);
                out.push(ChunkRef {
                    stream_id: sid,
                    labels: s.labels.clone(),
                    min_t,
                    max_t,
                    entries: head.len() as u32,
                    raw_bytes: head.iter().map(|e| e.line.len() as u64).sum(),
                    source: Source::Head(Arc::new(head)),
                });
            }
        }
        out
    }

    /// Totals over the streams matching `matchers` in `[start, end)` (chunk granularity).
    pub fn stats(&self, matchers: &[Matcher], start: i64, end: i64) -> StoreStats {
        let refs = self.select(&ChunkSelect {
            matchers,
            start,
            end,
            ..ChunkSelect::default()
        });
        let mut streams = std::collections::HashSet::new();
        let mut st = StoreStats::default();
        for c in &refs {
            streams.insert(c.stream_id);
            st.chunks += 1;
            st.bytes += c.raw_bytes;
            st.entries += u64::from(c.entries);
        }
        st.streams = streams.len() as u64;
        st
    }

    /// Bytes on disk in block files.
    pub fn block_bytes(&self) -> u64 {
        self.inner
            .read()
            .blocks
            .iter()
            .flatten()
            .map(|b| b.size() as u64)
            .sum()
    }

    /// Number of block files.
    pub fn num_blocks(&self) -> usize {
        self.inner.read().blocks.iter().flatten().count()
    }

    /// The block files with their time ranges: what compaction and retention plan with.
    pub fn block_infos(&self) -> Vec<LogBlockInfo> {
        self.inner
            .read()
            .blocks
            .iter()
            .flatten()
            .map(|b| LogBlockInfo {
                path: b.path().to_path_buf(),
                min_t: b.min_t,
                max_t: b.max_t,
                bytes: b.size() as u64,
                chunks: b.chunks.len(),
            })
            .collect()
    }

    /// Retention: deletes every block whose newest entry is older than `cutoff` (ns) and
    /// forgets its chunks. Returns the number of blocks deleted. Head data is never dropped.
    pub fn drop_blocks_before(&self, cutoff: i64) -> Result<usize> {
        self.drop_blocks(|b, _| b.max_t < cutoff)
    }

    /// Applies a retention policy (ages in ns, measured back from `now_ns`; sizes of block
    /// files) with the rule every block kind shares ([`crate::retention::expired`]). Returns
    /// the number of blocks deleted. Head data is never dropped.
    pub fn apply_retention(
        &self,
        policy: &crate::retention::RetentionPolicy,
        now_ns: i64,
    ) -> Result<usize> {
        let extents: Vec<(usize, crate::retention::BlockExtent)> = self
            .inner
            .read()
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                b.as_ref().map(|b| {
                    (
                        i,
                        crate::retention::BlockExtent {
                            min_time: b.min_t,
                            max_time: b.max_t,
                            bytes: b.size() as u64,
                        },
                    )
                })
            })
            .collect();
        let list: Vec<crate::retention::BlockExtent> = extents.iter().map(|e| e.1).collect();
        let doomed: std::collections::HashSet<usize> =
            crate::retention::expired(&list, now_ns, policy)
                .into_iter()
                .filter_map(|k| extents.get(k).map(|e| e.0))
                .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        self.drop_blocks(|_, i| doomed.contains(&i))
    }

    /// Deletes the blocks `pred(block, index)` selects and forgets their chunks.
    fn drop_blocks(&self, pred: impl Fn(&LogBlock, usize) -> bool) -> Result<usize> {
        let _one = self.flush_lock.lock();
        let _gate = self.gate.write();
        let mut inner = self.inner.write();
        let mut dropped = 0;
        for b in 0..inner.blocks.len() {
            let Some(block) = inner.blocks.get(b).cloned().flatten() else {
                continue;
            };
            if !pred(&block, b) {
                continue;
            }
            std::fs::remove_file(block.path())
                .map_err(|e| LogError::io("delete log block", block.path(), e))?;
            let ids = inner.block_chunk_ids.get(b).cloned().unwrap_or_default();
            for cid in &ids {
                let stream = match inner.chunks.get_mut(*cid as usize) {
                    Some(c) => {
                        c.data = Bytes::new();
                        c.signature = Bytes::new();
                        c.entries = 0;
                        c.raw_bytes = 0;
                        // An empty range: selects never match it.
                        c.min_t = i64::MAX;
                        c.max_t = i64::MIN;
                        c.stream
                    }
                    None => continue,
                };
                if let Some(s) = inner.streams.get_mut(stream as usize) {
                    s.chunks.retain(|x| x != cid);
                }
            }
            if let Some(slot) = inner.blocks.get_mut(b) {
                *slot = None;
            }
            dropped += 1;
            tracing::info!(tenant = %self.id, path = %block.path().display(), "retention deleted log block");
        }
        Ok(dropped)
    }

    /// Number of streams.
    pub fn num_streams(&self) -> usize {
        self.inner.read().streams.len()
    }
}

/// Name of the file recording the last WAL segment whose entries are all in blocks.
const FLUSH_MARKER: &str = "flushed";

fn flush_marker_text(segment: u64) -> String {
    let body = format!("SLFM v1 {segment}");
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

/// Atomically records that WAL segments up to `segment` are in blocks.
fn write_flush_marker(dir: &Path, segment: u64) -> Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{FLUSH_MARKER}.tmp"));
    let path = dir.join(FLUSH_MARKER);
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| LogError::io("create flush marker", &tmp, e))?;
    f.write_all(flush_marker_text(segment).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| LogError::io("write flush marker", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io("rename flush marker", &path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync log dir", dir, e))
}

/// Reads the flush marker: `None` if there is none; an error if it is damaged.
fn read_flush_marker(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(FLUSH_MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("read flush marker", &path, e)),
    };
    let bad = |reason: &str| LogError::Corrupt {
        what: "log flush marker",
        offset: 0,
        reason: format!("{}: {reason}", path.display()),
    };
    let mut parts = text.trim_end().rsplitn(2, ' ');
    let (Some(crc), Some(body)) = (parts.next(), parts.next()) else {
        return Err(bad("expected \"SLFM v1 <segment> <crc32>\""));
    };
    if format!("{:08x}", crc32fast::hash(body.as_bytes())) != crc {
        return Err(bad("checksum mismatch"));
    }
    match body.strip_prefix("SLFM v1 ").map(str::parse::<u64>) {
        Some(Ok(n)) => Ok(Some(n)),
        _ => Err(bad("unsupported version or bad segment number")),
    }
}

/// A block as listed for compaction and retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBlockInfo {
    /// The block file.
    pub path: PathBuf,
    /// Oldest entry (ns).
    pub min_t: i64,
    /// Newest entry (ns).
    pub max_t: i64,
    /// File size.
    pub bytes: u64,
    /// Chunks in it.
    pub chunks: usize,
}

/// A chunk compressed and indexed, ready to be published.
struct PreparedChunk {
    min_t: i64,
    max_t: i64,
    entries: u32,
    raw_bytes: u32,
    data: Bytes,
    signature: Bytes,
    traces: Vec<u128>,
}

/// Encodes entries (sorted by timestamp) into a chunk with its signature and trace ids.
fn prepare_chunk(head: &[LogEntry], raw: usize) -> Result<PreparedChunk> {
    let data = encode_chunk(head)?;
    let mut sig = SignatureBuilder::new(signature_bits(raw));
    let mut traces = Vec::new();
    for e in head {
        sig.add(e.line.as_bytes());
        for (n, v) in &e.metadata {
            if is_trace_id_name(n)
                && let Some(t) = parse_trace_id(v)
            {
                traces.push(t);
            }
        }
    }
    traces.sort_unstable();
    traces.dedup();
    Ok(PreparedChunk {
        min_t: head.first().map_or(0, |e| e.ts),
        max_t: head.last().map_or(0, |e| e.ts),
        entries: head.len() as u32,
        raw_bytes: raw as u32,
        data: Bytes::from(data),
        signature: Bytes::from(sig.finish()),
        traces,
    })
}

fn load_block(inner: &mut Inner, block: Arc<LogBlock>) {
    let mut ids = Vec::with_capacity(block.chunks.len());
    let stream_ids: Vec<u32> = block
        .streams
        .iter()
        .map(|l| inner.get_or_create(l))
        .collect();
    let bidx = inner.blocks.len();
    for c in &block.chunks {
        let sid = stream_ids.get(c.stream as usize).copied().unwrap_or(0);
        let cid = inner.chunks.len() as u32;
        if let Some(s) = inner.streams.get_mut(sid as usize) {
            s.chunks.push(cid);
            s.min_t = s.min_t.min(c.min_t);
            s.max_t = s.max_t.max(c.max_t);
            s.newest = s.newest.max(c.max_t);
        }
        inner.chunks.push(SealedChunk {
            stream: sid,
            min_t: c.min_t,
            max_t: c.max_t,
            entries: c.entries,
            raw_bytes: c.raw_bytes,
            data: c.data.clone(),
            signature: c.signature.clone(),
            traces: None,
            block: Some(bidx),
        });
        ids.push(cid);
    }
    inner.block_chunk_ids.push(ids);
    inner.blocks.push(Some(block));
}

/// The log stores of all tenants.
pub struct LogEngine {
    opts: LogStoreOptions,
    tenants: RwLock<HashMap<String, Arc<LogStore>>>,
    create_lock: Mutex<()>,
}

impl std::fmt::Debug for LogEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEngine")
            .field("data_dir", &self.opts.data_dir)
            .finish()
    }
}

impl LogEngine {
    /// An engine that opens tenants on first use only.
    pub fn lazy(opts: LogStoreOptions) -> LogEngine {
        LogEngine {
            opts,
            tenants: RwLock::new(HashMap::new()),
            create_lock: Mutex::new(()),
        }
    }

    /// Opens every tenant found with a `logs/` directory (blocks loaded, WAL replayed).
    pub fn open(opts: LogStoreOptions) -> Result<(LogEngine, Vec<LogOpenReport>)> {
        let engine = LogEngine::lazy(opts);
        let tenants_dir = engine.opts.data_dir.join("tenants");
        let mut reports = Vec::new();
        if tenants_dir.is_dir() {
            let entries = std::fs::read_dir(&tenants_dir)
                .map_err(|e| LogError::io("list tenants", &tenants_dir, e))?;
            let mut ids = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| LogError::io("list tenants", &tenants_dir, e))?;
                if entry.path().join("logs").is_dir() {
                    ids.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            ids.sort();
            for id in ids {
                let (store, report) = LogStore::open(&id, &engine.opts)?;
                engine.tenants.write().insert(id, Arc::new(store));
                reports.push(report);
            }
        }
        Ok((engine, reports))
    }

    /// The tenant's store, created on first use.
    pub fn tenant(&self, id: &str) -> Result<Arc<LogStore>> {
        if let Some(t) = self.tenants.read().get(id) {
            return Ok(t.clone());
        }
        let _g = self.create_lock.lock();
        if let Some(t) = self.tenants.read().get(id) {
            return Ok(t.clone());
        }
        let (store, report) = LogStore::open(id, &self.opts)?;
        tracing::info!(
            tenant = id,
            blocks = report.blocks,
            replayed = report.replayed_entries,
            "opened log store"
        );
        let store = Arc::new(store);
        self.tenants.write().insert(id.to_string(), store.clone());
        Ok(store)
    }

    /// The tenant's store if it exists (reads never create tenants).
    pub fn existing(&self, id: &str) -> Option<Arc<LogStore>> {
        if let Some(t) = self.tenants.read().get(id) {
            return Some(t.clone());
        }
        // A tenant with data on disk that was not opened yet (lazy engines).
        if valid_tenant(id)
            && self
                .opts
                .data_dir
                .join("tenants")
                .join(id)
                .join("logs")
                .is_dir()
        {
            return self.tenant(id).ok();
        }
        None
    }

    /// Applies a retention policy to every open tenant (ages in ns back from now). Errors are
    /// logged per tenant; returns the number of blocks deleted.
    pub fn apply_retention(&self, policy: &crate::retention::RetentionPolicy) -> usize {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let tenants: Vec<Arc<LogStore>> = self.tenants.read().values().cloned().collect();
        let mut n = 0;
        for t in tenants {
            match t.apply_retention(policy, now) {
                Ok(k) => n += k,
                Err(e) => tracing::error!(tenant = %t.id(), error = %e, "log retention failed"),
            }
        }
        n
    }

    /// Ids of the open tenants, sorted.
    pub fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.tenants.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Flushes every tenant whose sealed chunks are due (or all, with `force`).
    pub fn flush_all(&self) -> Result<()> {
        let tenants: Vec<Arc<LogStore>> = self.tenants.read().values().cloned().collect();
        let mut first = None;
        for t in tenants {
            if let Err(e) = t.flush() {
                tracing::error!(tenant = %t.id(), error = %e, "flushing logs failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Syncs every tenant's WAL.
    pub fn close(&self) -> Result<()> {
        let tenants: Vec<Arc<LogStore>> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            t.sync()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> LogStoreOptions {
        LogStoreOptions {
            data_dir: dir.to_path_buf(),
            chunk_target_bytes: 200,
            ..LogStoreOptions::default()
        }
    }

    fn push(store: &LogStore, job: &str, lines: &[(i64, &str)]) -> PushReport {
        store
            .push(
                vec![StreamEntries {
                    labels: Labels::from_pairs(&[("job", job)]).unwrap(),
                    entries: lines
                        .iter()
                        .map(|&(ts, l)| LogEntry {
                            ts,
                            line: l.to_string(),
                            metadata: vec![],
                        })
                        .collect(),
                }],
                &PushLimits {
                    reject_older_than_ns: 0,
                    creation_grace_ns: 0,
                    ..PushLimits::default()
                },
            )
            .unwrap()
    }

    fn all_lines(store: &LogStore, literals: &[String]) -> Vec<(i64, String)> {
        let m = [Matcher::new(crate::labels::MatchOp::Regex, "job", ".+").unwrap()];
        let mut out = Vec::new();
        for c in store.select(&ChunkSelect {
            matchers: &m,
            start: i64::MIN,
            end: i64::MAX,
            literals,
            trace_id: None,
        }) {
            c.for_each(|e| out.push((e.ts, e.line.clone()))).unwrap();
        }
        out.sort();
        out
    }

    #[test]
    fn push_select_flush_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        {
            let (store, _) = LogStore::open("t1", &opts(dir.path())).unwrap();
            let lines: Vec<String> = (0..50)
                .map(|i| format!("line {i} level=info msg=\"request served\" padding-padding"))
                .collect();
            let batch: Vec<(i64, &str)> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| (i as i64 * 10, l.as_str()))
                .collect();
            let r = push(&store, "a", &batch);
            assert_eq!(r.accepted, 50);
            let needle = format!("trace_id={trace} error timeout");
            store
                .push(
                    vec![StreamEntries {
                        labels: Labels::from_pairs(&[("job", "b")]).unwrap(),
                        entries: vec![LogEntry {
                            ts: 5,
                            line: needle.clone(),
                            metadata: vec![("trace_id".into(), trace.into())],
                        }],
                    }],
                    &PushLimits {
                        reject_older_than_ns: 0,
                        creation_grace_ns: 0,
                        ..PushLimits::default()
                    },
                )
                .unwrap();
            assert_eq!(all_lines(&store, &[]).len(), 51);
            let hits = all_lines(&store, &[trace.to_string()]);
            assert!(hits.iter().any(|(_, l)| l.contains(trace)));
            assert!(
                hits.len() < 51,
                "the filter skipped nothing: {}",
                hits.len()
            );
            // The trace index finds the chunk (after the head is sealed).
            store.flush().unwrap();
            let m = [Matcher::new(crate::labels::MatchOp::Regex, "job", ".+").unwrap()];
            let refs = store.select(&ChunkSelect {
                matchers: &m,
                start: 0,
                end: 1000,
                literals: &[],
                trace_id: parse_trace_id(trace),
            });
            assert_eq!(refs.len(), 1);
            assert_eq!(
                &*refs[0].labels,
                &Labels::from_pairs(&[("job", "b")]).unwrap()
            );
            assert!(store.num_blocks() >= 1);
            // Out-of-order within the window is accepted; this one goes to the head.
            push(&store, "a", &[(3, "late line")]);
            // Retention hooks: nothing is older than 0, everything is older than 10^6.
            assert_eq!(store.drop_blocks_before(0).unwrap(), 0);
            let infos = store.block_infos();
            assert!(!infos.is_empty() && infos.iter().all(|b| b.max_t <= 490));
        }
        let (store, report) = LogStore::open("t1", &opts(dir.path())).unwrap();
        assert_eq!(
            report.replayed_entries, 1,
            "only the post-flush push is replayed"
        );
        let lines = all_lines(&store, &[]);
        assert_eq!(lines.len(), 52);
        assert_eq!(
            lines[0],
            (
                0,
                "line 0 level=info msg=\"request served\" padding-padding".into()
            )
        );
        assert_eq!(
            store.label_values("job", &[], i64::MIN, i64::MAX),
            vec!["a", "b"]
        );
        let st = store.stats(&[Matcher::equal("job", "b")], i64::MIN, i64::MAX);
        assert_eq!((st.streams, st.entries), (1, 1));
        let n = store.num_blocks();
        // A size limit of one byte deletes every block but never the head; an age limit
        // measured from a reference before the blocks deletes nothing.
        let keep_all = crate::retention::RetentionPolicy {
            max_age: 1,
            max_bytes: 0,
        };
        assert_eq!(store.apply_retention(&keep_all, 0).unwrap(), 0);
        assert_eq!(store.num_blocks(), n);
        let tiny = crate::retention::RetentionPolicy {
            max_age: 0,
            max_bytes: 1,
        };
        assert_eq!(store.apply_retention(&tiny, 0).unwrap(), n);
        assert_eq!(store.num_blocks(), 0);
        // Only the head entry (the late line) is left.
        assert_eq!(all_lines(&store, &[]), vec![(3, "late line".to_string())]);
    }

    #[test]
    fn flush_marker_round_trips_and_skips_flushed_segments() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_flush_marker(dir.path()).unwrap(), None);
        write_flush_marker(dir.path(), 41).unwrap();
        assert_eq!(read_flush_marker(dir.path()).unwrap(), Some(41));
        std::fs::write(dir.path().join(FLUSH_MARKER), "SLFM v1 42 00000000\n").unwrap();
        assert!(read_flush_marker(dir.path()).is_err());
        // A crash after the block write but before the WAL checkpoint leaves segments the
        // marker covers: replay skips them.
        let data = tempfile::tempdir().unwrap();
        {
            let (store, _) = LogStore::open("t", &opts(data.path())).unwrap();
            push(&store, "a", &[(1, "one"), (2, "two")]);
        }
        let logs = data.path().join("tenants/t/logs");
        write_flush_marker(&logs, 1 << 40).unwrap();
        let (_store, report) = LogStore::open("t", &opts(data.path())).unwrap();
        assert_eq!(report.replayed_entries, 0);
        std::fs::remove_file(logs.join(FLUSH_MARKER)).unwrap();
        drop(_store);
        let (_store, report) = LogStore::open("t", &opts(data.path())).unwrap();
        assert_eq!(report.replayed_entries, 2);
    }

    #[test]
    fn limits_refuse_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = LogStore::open("t1", &opts(dir.path())).unwrap();
        let limits = PushLimits {
            max_line_size: 10,
            max_streams: 1,
            reject_older_than_ns: 0,
            creation_grace_ns: 0,
            out_of_order_window_ns: 100,
            ..PushLimits::default()
        };
        let mk = |job: &str, es: &[(i64, &str)]| StreamEntries {
            labels: Labels::from_pairs(&[("job", job)]).unwrap(),
            entries: es
                .iter()
                .map(|&(ts, l)| LogEntry {
                    ts,
                    line: l.into(),
                    metadata: vec![],
                })
                .collect(),
        };
        let r = store
            .push(
                vec![
                    mk(
                        "a",
                        &[(1000, "ok"), (1001, "this line is too long"), (10, "old")],
                    ),
                    mk("b", &[(1000, "x")]),
                ],
                &limits,
            )
            .unwrap();
        assert_eq!(r.accepted, 1);
        assert_eq!(r.rejected, 3);
        assert!(r.stream_limit);
        let text: Vec<String> = r.rejections.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("max line size")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("too far behind")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("max_streams")), "{text:?}");
    }

    #[test]
    fn engine_reopens_tenants() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = LogEngine::lazy(opts(dir.path()));
            push(&e.tenant("x").unwrap(), "a", &[(1, "hello")]);
            e.close().unwrap();
        }
        let (e, reports) = LogEngine::open(opts(dir.path())).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(all_lines(&e.existing("x").unwrap(), &[]).len(), 1);
        assert!(e.existing("y").is_none());
    }
}
