//! The head: one tenant's recent metrics in memory.
//!
//! The head holds every active series of a tenant with its samples since the last block cut:
//! closed Gorilla chunks, one open chunk being appended to, and out-of-order (OOO) samples kept
//! apart. It is the write target of every append and one of the sources of every select.
//!
//! # Structure
//!
//! - **Symbols**: every label name and value is interned once ([`Symbols`]); a series stores its
//!   label set as `(name_id, value_id)` pairs, 8 bytes per label instead of two strings.
//! - **Shards**: series live in [`SHARDS`] shards chosen by the stable hash of their label set.
//!   A series ref is `local_index << SHARD_BITS | shard`, so both a ref and a label set lead to
//!   the shard without a global lock. Each shard maps label hash → ref (collisions kept in a
//!   side table and resolved by comparing the label sets) and ref → series.
//! - **Postings**: `name → value → RoaringBitmap of refs`, plus the bitmap of all refs, used by
//!   the select path to resolve matchers without touching series.
//!
//! # Appending
//!
//! Per series, samples must be newer than the series' last sample to go to the open chunk. A
//! sample with the same timestamp and the same value bits is an idempotent duplicate; with a
//! different value it is rejected ([`SampleError::DuplicateDifferentValue`]). An older sample is
//! accepted into the OOO buffer when it lies within the configured window behind the series'
//! newest sample, otherwise rejected ([`SampleError::OutOfOrder`]). Samples older than the
//! head's minimum valid time (the end of the last block cut from it) are rejected as
//! [`SampleError::TooOld`]: their range is already persisted.
//!
//! The open chunk is closed when it holds `chunk_max_samples` samples or when a sample crosses
//! the block-range boundary, so a head chunk never spans two blocks.
//!
//! # Deleted intervals
//!
//! Deletion does not rewrite head chunks: it records inclusive `[mint, maxt]` intervals per
//! series (sorted, merged), and every reader — the select path and the block cut — skips the
//! samples inside them. The engine clamps a deletion to the series' data range when it is
//! made, so it removes what exists (as Prometheus does); an interval then applies to every
//! sample of the series with a timestamp inside it, including out-of-order samples that arrive
//! later. Truncation clips the intervals to what remains of the head.
//!
//! # Locking
//!
//! Lock order: shard → symbols → postings → tombstones. The select path takes the postings read lock and
//! releases it before taking shard locks one at a time. Appends take one shard lock per series
//! group. The engine serialises appends of one tenant above this type so that the WAL order
//! equals the order in which samples were applied (see `crate::db`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::chunk::{self, Encoding, GorillaAppender};
use crate::error::{Error, Result};
use crate::labels::{Label, LabelInput, Labels, Matcher};

/// Reference to a series in the head of one tenant.
pub type SeriesRef = u32;

/// Number of bits of a series ref that select its shard.
pub const SHARD_BITS: u32 = 4;
/// Number of head shards.
pub const SHARDS: usize = 1 << SHARD_BITS;
/// Capacity of the OOO buffer before it is encoded into an OOO chunk.
const OOO_BUFFER_SAMPLES: usize = 32;

/// Tunables of the head.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Samples per head chunk before it is closed. Default: 120.
    pub chunk_max_samples: usize,
    /// How far behind a series' newest sample an out-of-order sample may be and still be
    /// accepted, in ms. 0 disables out-of-order ingestion. Default: 10 minutes.
    pub ooo_window_ms: i64,
    /// Block range in ms; head chunks are cut at multiples of it. Default: 2 h.
    pub block_range_ms: i64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_max_samples: chunk::DEFAULT_MAX_SAMPLES,
            ooo_window_ms: 10 * 60 * 1000,
            block_range_ms: 2 * 3600 * 1000,
        }
    }
}

/// Why a sample was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// Older than the series' newest sample by more than the out-of-order window.
    #[error(
        "out of order sample: timestamp {t} is older than the series' newest sample {newest} by more than the out-of-order window"
    )]
    OutOfOrder {
        /// The sample's timestamp.
        t: i64,
        /// The series' newest timestamp.
        newest: i64,
    },
    /// Same timestamp as a stored sample, different value.
    #[error("duplicate sample for timestamp {t} with a different value")]
    DuplicateDifferentValue {
        /// The sample's timestamp.
        t: i64,
    },
    /// Older than the head's minimum valid time: that range is already in a block.
    #[error(
        "sample timestamp {t} is too old: data before {min_valid} is already persisted in blocks"
    )]
    TooOld {
        /// The sample's timestamp.
        t: i64,
        /// The head's minimum valid time.
        min_valid: i64,
    },
}

impl SampleError {
    /// Short reason label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            SampleError::OutOfOrder { .. } => "out_of_order",
            SampleError::DuplicateDifferentValue { .. } => "duplicate_different_value",
            SampleError::TooOld { .. } => "too_old",
        }
    }
}

/// Outcome of appending one series' samples.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeriesAppendOutcome {
    /// Samples stored in order.
    pub appended: u32,
    /// Samples stored out of order.
    pub out_of_order: u32,
    /// Identical duplicates ignored (idempotent).
    pub duplicates: u32,
    /// Rejected samples (at most the first few errors are kept; `rejected` counts all).
    pub rejected: u32,
    /// The first rejection, for the error message.
    pub first_error: Option<SampleError>,
}

/// Counters of the head, readable without locks. (Appended-sample counts live in the shards;
/// see [`Head::samples_appended`].)
#[derive(Debug, Default)]
pub struct HeadCounters {
    /// Rejected: out of order beyond the window.
    pub rejected_out_of_order: AtomicU64,
    /// Rejected: duplicate timestamp with different value.
    pub rejected_duplicate: AtomicU64,
    /// Rejected: older than the head.
    pub rejected_too_old: AtomicU64,
    /// Series created.
    pub series_created: AtomicU64,
    /// Series removed by head truncation.
    pub series_removed: AtomicU64,
}

impl HeadCounters {
    /// Counts `n` rejected samples of the kind of `e`.
    pub fn count_rejected(&self, e: SampleError, n: u64) {
        let c = match e {
            SampleError::OutOfOrder { .. } => &self.rejected_out_of_order,
            SampleError::DuplicateDifferentValue { .. } => &self.rejected_duplicate,
            SampleError::TooOld { .. } => &self.rejected_too_old,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Zeroes the rejection counters after WAL replay, so they count live traffic only.
    pub fn reset_after_replay(&self) {
        for c in [
            &self.rejected_out_of_order,
            &self.rejected_duplicate,
            &self.rejected_too_old,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Hasher for the head's integer keys (series refs, symbol ids, label-set hashes): one
/// multiply by a 64-bit odd constant (Fibonacci hashing) instead of SipHash. Keys are not
/// attacker-chosen in a way that matters here (refs and symbol ids are assigned by the head;
/// label-set hashes are already mixed), and the map lookup is the hottest operation of appends
/// and WAL replay.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        // Multiply, then fold the high half down: hashbrown takes the bucket from the low bits
        // and the tag from the top 7 bits, and both must vary.
        let x = (self.0 ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 32);
    }
}

/// A hash map keyed by integers, hashed with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IntHasher>>;

/// Interned strings of one head.
#[derive(Default)]
pub struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strs: Vec<Arc<str>>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strs.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    fn get(&self, id: u32) -> &str {
        self.strs.get(id as usize).map_or("", |s| s)
    }

    fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.strs.len()
    }

    /// True if nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.strs.is_empty()
    }
}

/// A closed, immutable head chunk.
#[derive(Clone, Debug)]
pub struct HeadChunk {
    /// First timestamp.
    pub min_time: i64,
    /// Last timestamp.
    pub max_time: i64,
    /// Number of samples.
    pub num_samples: u32,
    /// Gorilla bytes (cheap to clone for queries).
    pub data: Bytes,
}

struct OooData {
    /// Sorted by timestamp, unique timestamps.
    buf: Vec<(i64, f64)>,
    /// Encoded OOO chunks, each sorted internally; they may overlap each other.
    chunks: Vec<HeadChunk>,
}

struct MemSeries {
    labels: Box<[(u32, u32)]>,
    hash: u64,
    chunks: Vec<HeadChunk>,
    open: Option<GorillaAppender>,
    /// End (exclusive) of the block range the open chunk belongs to.
    open_end: i64,
    last_t: i64,
    last_v: u64,
    ooo: Option<Box<OooData>>,
}

impl MemSeries {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.is_none() && self.ooo.is_none()
    }
}

#[derive(Default)]
struct Shard {
    by_hash: IntMap<u64, u32>,
    collisions: IntMap<u64, Vec<u32>>,
    series: IntMap<u32, MemSeries>,
    next_local: u32,
    /// Samples appended in order to this shard's series.
    samples_appended: u64,
    /// Samples appended out of order to this shard's series.
    samples_ooo: u64,
}

#[derive(Default)]
struct MemPostings {
    by_name: IntMap<u32, IntMap<u32, RoaringBitmap>>,
    all: RoaringBitmap,
}

/// Cardinality figures of a head.
#[derive(Debug, Clone, Default)]
pub struct Cardinality {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct name=value pairs.
    pub num_label_pairs: u64,
    /// Series per metric name.
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Distinct values per label name.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of label values per label name (value length × series).
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Series per name=value pair.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// What a select needs from one head series.
#[derive(Debug, Clone)]
pub struct HeadSeriesData {
    /// The series' labels.
    pub labels: Labels,
    /// Chunks overlapping the requested range: `(chunk, is_ooo)`.
    pub chunks: Vec<(HeadChunk, bool)>,
    /// Deleted intervals of the series (inclusive, sorted, merged); their samples are skipped.
    pub deleted: Vec<(i64, i64)>,
}

/// Merges `[mint, maxt]` into sorted, non-overlapping, non-adjacent intervals.
pub(crate) fn merge_interval(v: &mut Vec<(i64, i64)>, mint: i64, maxt: i64) {
    if mint > maxt {
        return;
    }
    v.push((mint, maxt));
    v.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for &(a, b) in v.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *v = merged;
}

/// The head of one tenant.
pub struct Head {
    opts: HeadOptions,
    symbols: RwLock<Symbols>,
    shards: Box<[Mutex<Shard>]>,
    postings: RwLock<MemPostings>,
    min_valid_time: AtomicI64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    num_series: AtomicU64,
    /// Deleted intervals per series (see the module docs). Kept apart from the series so that
    /// a head without deletions pays nothing per series.
    tombstones: RwLock<IntMap<SeriesRef, Vec<(i64, i64)>>>,
    /// True while `tombstones` is not empty (lets readers skip the lock).
    has_tombstones: AtomicBool,
    /// Counters of appends and rejections.
    pub counters: HeadCounters,
}

fn shard_of_ref(r: SeriesRef) -> usize {
    (r as usize) & (SHARDS - 1)
}

fn shard_of_hash(h: u64) -> usize {
    // Use high bits: the low bits of FNV are used by the hash map.
    ((h >> 58) as usize) & (SHARDS - 1)
}

impl Head {
    /// Creates an empty head.
    pub fn new(opts: HeadOptions) -> Self {
        Head {
            opts,
            symbols: RwLock::new(Symbols::default()),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            postings: RwLock::new(MemPostings::default()),
            min_valid_time: AtomicI64::new(i64::MIN),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            num_series: AtomicU64::new(0),
            tombstones: RwLock::new(IntMap::default()),
            has_tombstones: AtomicBool::new(false),
            counters: HeadCounters::default(),
        }
    }

    /// The options the head was created with.
    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    /// Number of series in the head.
    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    /// Oldest sample time in the head (`i64::MAX` if empty).
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Relaxed)
    }

    /// Newest sample time in the head (`i64::MIN` if empty).
    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::Relaxed)
    }

    /// Samples older than this are rejected (their range is persisted).
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Relaxed)
    }

    /// Raises the minimum valid time (never lowers it).
    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::Relaxed);
    }

    fn labels_equal<L: LabelInput + ?Sized>(
        symbols: &Symbols,
        stored: &[(u32, u32)],
        labels: &L,
    ) -> bool {
        let mut pairs = labels.pairs();
        for &(n, v) in stored {
            match pairs.next() {
                Some((ln, lv)) if symbols.get(n) == ln && symbols.get(v) == lv => {}
                _ => return false,
            }
        }
        pairs.next().is_none()
    }

    fn find_in_shard<L: LabelInput + ?Sized>(
        &self,
        shard: &Shard,
        hash: u64,
        labels: &L,
    ) -> Option<SeriesRef> {
        let symbols = self.symbols.read();
        let candidates = shard
            .by_hash
            .get(&hash)
            .into_iter()
            .chain(shard.collisions.get(&hash).into_iter().flatten());
        for &r in candidates {
            if let Some(s) = shard.series.get(&r)
                && Self::labels_equal(&symbols, &s.labels, labels)
            {
                return Some(r);
            }
        }
        None
    }

    /// Looks up a series by labels without creating it.
    pub fn get(&self, labels: &Labels) -> Option<SeriesRef> {
        let hash = labels.stable_hash();
        let shard = self.shards.get(shard_of_hash(hash))?.lock();
        self.find_in_shard(&shard, hash, labels)
    }

    /// Returns the ref of the series with these labels, creating it if needed. The flag is true
    /// if the series was created by this call.
    pub fn get_or_create(&self, labels: &Labels) -> (SeriesRef, bool) {
        match self.get_or_create_input(labels) {
            Ok((r, created)) => (r, created.is_some()),
            // Cannot happen: a `Labels` is always valid.
            Err(_) => (0, false),
        }
    }

    /// Like [`Head::get_or_create`] for borrowed labels. A new series' labels are validated
    /// (and only then copied); they are returned so the caller can log the definition.
    pub fn get_or_create_input<L: LabelInput + ?Sized>(
        &self,
        labels: &L,
    ) -> Result<(SeriesRef, Option<Labels>)> {
        self.get_or_create_limited(labels, 0)
    }

    /// Like [`Head::get_or_create_input`], refusing to create a series when the head already
    /// holds `max_series` series (0 = no limit) with [`Error::SeriesLimit`].
    pub fn get_or_create_limited<L: LabelInput + ?Sized>(
        &self,
        labels: &L,
        max_series: u64,
    ) -> Result<(SeriesRef, Option<Labels>)> {
        let hash = labels.stable_hash();
        let si = shard_of_hash(hash);
        let Some(shard_lock) = self.shards.get(si) else {
            return Err(Error::UnknownSeries(0));
        };
        let mut shard = shard_lock.lock();
        if let Some(r) = self.find_in_shard(&shard, hash, labels) {
            return Ok((r, None));
        }
        if max_series > 0 && self.num_series() >= max_series {
            return Err(Error::SeriesLimit(max_series));
        }
        let owned = labels.to_labels()?;
        let r = (shard.next_local << SHARD_BITS) | si as u32;
        shard.next_local += 1;
        self.insert_series(&mut shard, r, hash, &owned);
        Ok((r, Some(owned)))
    }

    /// Creates a series under a given ref (WAL replay). If a series with the same labels exists
    /// already, returns its ref instead (the caller maps the replayed ref onto it).
    pub fn create_with_ref(&self, r: SeriesRef, labels: &Labels) -> SeriesRef {
        let hash = labels.stable_hash();
        let si = shard_of_hash(hash);
        let Some(shard_lock) = self.shards.get(si) else {
            return r;
        };
        let mut shard = shard_lock.lock();
        if let Some(existing) = self.find_in_shard(&shard, hash, labels) {
            return existing;
        }
        // A replayed ref encodes the shard it was created in; the hash function is stable so
        // it is the same shard. If not (a foreign WAL), allocate a fresh ref.
        let r = if shard_of_ref(r) == si && !shard.series.contains_key(&r) {
            shard.next_local = shard.next_local.max((r >> SHARD_BITS) + 1);
            r
        } else {
            let n = (shard.next_local << SHARD_BITS) | si as u32;
            shard.next_local += 1;
            n
        };
        self.insert_series(&mut shard, r, hash, labels);
        r
    }

    fn insert_series(&self, shard: &mut Shard, r: SeriesRef, hash: u64, labels: &Labels) {
        let ids: Box<[(u32, u32)]> = {
            let mut symbols = self.symbols.write();
            labels
                .iter()
                .map(|l| (symbols.intern(&l.name), symbols.intern(&l.value)))
                .collect()
        };
        {
            let mut postings = self.postings.write();
            for &(n, v) in ids.iter() {
                postings
                    .by_name
                    .entry(n)
                    .or_default()
                    .entry(v)
                    .or_default()
                    .insert(r);
            }
            postings.all.insert(r);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = shard.by_hash.entry(hash) {
            e.insert(r);
        } else {
            shard.collisions.entry(hash).or_default().push(r);
        }
        shard.series.insert(
            r,
            MemSeries {
                labels: ids,
                hash,
                chunks: Vec::new(),
                open: None,
                open_end: i64::MIN,
                last_t: i64::MIN,
                last_v: 0,
                ooo: None,
            },
        );
        self.num_series.fetch_add(1, Ordering::Relaxed);
        self.counters.series_created.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends samples to one series. Samples accepted (in order or out of order) are pushed to
    /// `accepted` in application order, for the WAL. Idempotent duplicates are not.
    pub fn append(
        &self,
        r: SeriesRef,
        samples: &[(i64, f64)],
        accepted: &mut Vec<(i64, f64)>,
    ) -> Result<SeriesAppendOutcome> {
        let mut out = SeriesAppendOutcome::default();
        let Some(shard_lock) = self.shards.get(shard_of_ref(r)) else {
            return Err(Error::UnknownSeries(r));
        };
        let mut shard = shard_lock.lock();
        let Some(s) = shard.series.get_mut(&r) else {
            return Err(Error::UnknownSeries(r));
        };
        let min_valid = self.min_valid_time.load(Ordering::Relaxed);
        let mut batch_min = i64::MAX;
        let mut batch_max = i64::MIN;
        for &(t, v) in samples {
            if t < min_valid {
                out.reject(SampleError::TooOld { t, min_valid });
                continue;
            }
            if s.last_t == i64::MIN || t > s.last_t {
                self.append_in_order(s, t, v);
                out.appended += 1;
            } else if t == s.last_t {
                if v.to_bits() == s.last_v {
                    out.duplicates += 1;
                    continue;
                }
                out.reject(SampleError::DuplicateDifferentValue { t });
                continue;
            } else if self.opts.ooo_window_ms > 0
                && t >= s.last_t.saturating_sub(self.opts.ooo_window_ms)
            {
                match Self::append_ooo(s, t, v) {
                    Ok(true) => out.out_of_order += 1,
                    Ok(false) => {
                        out.duplicates += 1;
                        continue;
                    }
                    Err(e) => {
                        out.reject(e);
                        continue;
                    }
                }
            } else {
                out.reject(SampleError::OutOfOrder {
                    t,
                    newest: s.last_t,
                });
                continue;
            }
            accepted.push((t, v));
            batch_min = batch_min.min(t);
            batch_max = batch_max.max(t);
        }
        // Counted under the shard lock already held: shared atomics here would bounce one
        // cache line between every core appending (measured: replay on two threads ran at
        // one thread's speed).
        shard.samples_appended += u64::from(out.appended);
        shard.samples_ooo += u64::from(out.out_of_order);
        drop(shard);
        if batch_min <= batch_max {
            // Read first: the bounds rarely move, and a plain load keeps the line shared.
            if batch_min < self.min_time.load(Ordering::Relaxed) {
                self.min_time.fetch_min(batch_min, Ordering::Relaxed);
            }
            if batch_max > self.max_time.load(Ordering::Relaxed) {
                self.max_time.fetch_max(batch_max, Ordering::Relaxed);
            }
        }
        Ok(out)
    }

    fn append_in_order(&self, s: &mut MemSeries, t: i64, v: f64) {
        let needs_cut = match &s.open {
            Some(app) => app.num_samples() >= self.opts.chunk_max_samples || t >= s.open_end,
            None => true,
        };
        if needs_cut {
            if let Some(app) = s.open.take() {
                s.chunks.push(close_chunk(app));
            }
            let range = self.opts.block_range_ms.max(1);
            let start = t.saturating_sub(t.rem_euclid(range));
            s.open_end = start.saturating_add(range);
            s.open = Some(GorillaAppender::new());
        }
        if let Some(app) = s.open.as_mut() {
            app.append(t, v);
        }
        s.last_t = t;
        s.last_v = v.to_bits();
    }

    /// Inserts an out-of-order sample. Ok(false) for an identical duplicate.
    fn append_ooo(s: &mut MemSeries, t: i64, v: f64) -> Result<bool, SampleError> {
        let ooo = s.ooo.get_or_insert_with(|| {
            Box::new(OooData {
                buf: Vec::new(),
                chunks: Vec::new(),
            })
        });
        match ooo.buf.binary_search_by(|&(bt, _)| bt.cmp(&t)) {
            Ok(i) => {
                let same = ooo
                    .buf
                    .get(i)
                    .is_some_and(|&(_, bv)| bv.to_bits() == v.to_bits());
                if same {
                    Ok(false)
                } else {
                    Err(SampleError::DuplicateDifferentValue { t })
                }
            }
            Err(i) => {
                ooo.buf.insert(i, (t, v));
                if ooo.buf.len() >= OOO_BUFFER_SAMPLES {
                    let buf = std::mem::take(&mut ooo.buf);
                    if let Some(c) = encode_head_chunk(&buf) {
                        ooo.chunks.push(c);
                    }
                }
                Ok(true)
            }
        }
    }

    /// Resolves a ref to its labels.
    pub fn labels(&self, r: SeriesRef) -> Option<Labels> {
        let shard = self.shards.get(shard_of_ref(r))?.lock();
        let s = shard.series.get(&r)?;
        let symbols = self.symbols.read();
        Some(resolve_labels(&symbols, &s.labels))
    }

    /// Collects the labels and the chunks overlapping `[mint, maxt]` of a series. Returns
    /// `None` if the series does not exist or has no chunk in range.
    pub fn series_data(&self, r: SeriesRef, mint: i64, maxt: i64) -> Option<HeadSeriesData> {
        let shard = self.shards.get(shard_of_ref(r))?.lock();
        let s = shard.series.get(&r)?;
        let mut chunks = Vec::new();
        for c in &s.chunks {
            if c.max_time >= mint && c.min_time <= maxt {
                chunks.push((c.clone(), false));
            }
        }
        if let Some(app) = &s.open
            && app.num_samples() > 0
            && app.max_time() >= mint
            && app.min_time() <= maxt
        {
            chunks.push((
                HeadChunk {
                    min_time: app.min_time(),
                    max_time: app.max_time(),
                    num_samples: app.num_samples() as u32,
                    data: Bytes::copy_from_slice(app.bytes()),
                },
                false,
            ));
        }
        if let Some(ooo) = &s.ooo {
            for c in &ooo.chunks {
                if c.max_time >= mint && c.min_time <= maxt {
                    chunks.push((c.clone(), true));
                }
            }
            let in_range: Vec<(i64, f64)> = ooo
                .buf
                .iter()
                .copied()
                .filter(|&(t, _)| t >= mint && t <= maxt)
                .collect();
            if let Some(c) = encode_head_chunk(&in_range) {
                chunks.push((c, true));
            }
        }
        if chunks.is_empty() {
            return None;
        }
        let symbols = self.symbols.read();
        let labels = resolve_labels(&symbols, &s.labels);
        drop(symbols);
        Some(HeadSeriesData {
            labels,
            chunks,
            deleted: self.deleted_intervals(r),
        })
    }

    /// The deleted intervals of a series (inclusive, sorted, merged); empty if none.
    pub fn deleted_intervals(&self, r: SeriesRef) -> Vec<(i64, i64)> {
        if !self.has_tombstones.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.tombstones.read().get(&r).cloned().unwrap_or_default()
    }

    /// Marks `[mint, maxt]` (inclusive) of series `r` deleted, merging it with the series'
    /// other intervals. Returns false (and records nothing) if the series does not exist or
    /// the interval is empty. The caller logs the deletion to the WAL first.
    pub fn add_tombstone(&self, r: SeriesRef, mint: i64, maxt: i64) -> bool {
        if mint > maxt || !self.contains(r) {
            return false;
        }
        let mut t = self.tombstones.write();
        merge_interval(t.entry(r).or_default(), mint, maxt);
        self.has_tombstones.store(true, Ordering::Release);
        true
    }

    /// Every series' deleted intervals, for tests and checkpoints.
    pub fn all_tombstones(&self) -> Vec<(SeriesRef, Vec<(i64, i64)>)> {
        let mut out: Vec<(SeriesRef, Vec<(i64, i64)>)> = self
            .tombstones
            .read()
            .iter()
            .map(|(&r, v)| (r, v.clone()))
            .collect();
        out.sort_unstable();
        out
    }

    /// The time range `(oldest, newest)` of a series' samples (deleted ones included), or
    /// `None` if the series does not exist or holds no sample.
    pub fn series_time_range(&self, r: SeriesRef) -> Option<(i64, i64)> {
        let shard = self.shards.get(shard_of_ref(r))?.lock();
        let s = shard.series.get(&r)?;
        let min = series_min_time(s);
        // Out-of-order samples are older than the newest in-order sample, so `last_t` is the
        // newest sample of the series.
        if min == i64::MAX || s.last_t == i64::MIN {
            return None;
        }
        Some((min, s.last_t))
    }

    /// Drops deleted intervals of series that no longer exist and clips the others to start
    /// at `t` or later (the head holds nothing older).
    fn truncate_tombstones(&self, t: i64) {
        if !self.has_tombstones.load(Ordering::Acquire) {
            return;
        }
        // Shard locks come before the tombstones lock: look the series up first.
        let refs: Vec<SeriesRef> = self.tombstones.read().keys().copied().collect();
        let exists: Vec<(SeriesRef, bool)> =
            refs.into_iter().map(|r| (r, self.contains(r))).collect();
        let mut tomb = self.tombstones.write();
        for (r, exists) in exists {
            let keep = match tomb.get_mut(&r) {
                Some(v) if exists => {
                    v.retain(|&(_, b)| b >= t);
                    for iv in v.iter_mut() {
                        iv.0 = iv.0.max(t);
                    }
                    !v.is_empty()
                }
                _ => false,
            };
            if !keep {
                tomb.remove(&r);
            }
        }
        self.has_tombstones
            .store(!tomb.is_empty(), Ordering::Release);
    }

    /// Bitmap of all series refs.
    pub fn all_postings(&self) -> RoaringBitmap {
        self.postings.read().all.clone()
    }

    /// Postings of `name=value` (empty if absent).
    pub fn postings(&self, name: &str, value: &str) -> RoaringBitmap {
        let symbols = self.symbols.read();
        let (Some(n), Some(v)) = (symbols.lookup(name), symbols.lookup(value)) else {
            return RoaringBitmap::new();
        };
        drop(symbols);
        self.postings
            .read()
            .by_name
            .get(&n)
            .and_then(|vals| vals.get(&v))
            .cloned()
            .unwrap_or_default()
    }

    /// Union of the postings of every value of `name` for which `pred(value)` holds.
    pub fn postings_matching(&self, name: &str, pred: impl Fn(&str) -> bool) -> RoaringBitmap {
        let symbols = self.symbols.read();
        let Some(n) = symbols.lookup(name) else {
            return RoaringBitmap::new();
        };
        let postings = self.postings.read();
        let mut out = RoaringBitmap::new();
        if let Some(vals) = postings.by_name.get(&n) {
            for (&v, bm) in vals {
                if pred(symbols.get(v)) {
                    out |= bm;
                }
            }
        }
        out
    }

    /// Sorted label names present in the head.
    pub fn label_names(&self) -> Vec<String> {
        let symbols = self.symbols.read();
        let postings = self.postings.read();
        let mut names: Vec<String> = postings
            .by_name
            .iter()
            .filter(|(_, vals)| !vals.is_empty())
            .map(|(&n, _)| symbols.get(n).to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// Sorted values of label `name` in the head.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let symbols = self.symbols.read();
        let Some(n) = symbols.lookup(name) else {
            return Vec::new();
        };
        let postings = self.postings.read();
        let mut vals: Vec<String> = postings
            .by_name
            .get(&n)
            .map(|vals| vals.keys().map(|&v| symbols.get(v).to_string()).collect())
            .unwrap_or_default();
        vals.sort_unstable();
        vals
    }

    /// Resolves matchers to the refs of matching series (time is not considered here).
    pub fn select_refs(&self, matchers: &[Matcher]) -> RoaringBitmap {
        crate::querier::resolve_postings(
            matchers,
            || self.all_postings(),
            |m, pred| self.postings_matching(&m.name, pred),
        )
    }

    /// Merged, deduplicated samples of a series in `[mint, maxt)` (in-order data wins over
    /// out-of-order data on equal timestamps), without deleted samples. Used to cut blocks.
    pub fn samples_in_range(
        &self,
        r: SeriesRef,
        mint: i64,
        maxt_excl: i64,
    ) -> Result<Vec<(i64, f64)>> {
        let Some(data) = self.series_data(r, mint, maxt_excl.saturating_sub(1)) else {
            return Ok(Vec::new());
        };
        let mut it = crate::querier::SeriesIter::from_head(&data.chunks, data.deleted)?;
        let mut out = Vec::new();
        if let Some(first) = it.seek(mint)
            && first.0 < maxt_excl
        {
            out.push(first);
            while let Some(s) = it.next_sample() {
                if s.0 >= maxt_excl {
                    break;
                }
                out.push(s);
            }
        }
        if let Some(e) = it.take_err() {
            return Err(e);
        }
        Ok(out)
    }

    /// All refs sorted by their label sets (for writing blocks in index order).
    pub fn sorted_refs(&self, refs: &RoaringBitmap) -> Vec<(Labels, SeriesRef)> {
        let mut out: Vec<(Labels, SeriesRef)> = refs
            .iter()
            .filter_map(|r| self.labels(r).map(|l| (l, r)))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Drops all data before `t` (exclusive bound: samples `< t` go), raises the minimum valid
    /// time to `t`, and removes series left without data. Returns the number of series removed.
    pub fn truncate(&self, t: i64) -> Result<usize> {
        self.set_min_valid_time(t);
        let mut removed_refs = Vec::new();
        let mut new_min = i64::MAX;
        for shard_lock in self.shards.iter() {
            let mut shard = shard_lock.lock();
            let mut empty = Vec::new();
            for (&r, s) in shard.series.iter_mut() {
                truncate_series(s, t)?;
                if s.is_empty() {
                    empty.push((r, s.hash));
                } else {
                    new_min = new_min.min(series_min_time(s));
                }
            }
            for (r, hash) in empty {
                if let Some(s) = shard.series.remove(&r) {
                    removed_refs.push((r, s.labels));
                }
                if shard.by_hash.get(&hash) == Some(&r) {
                    shard.by_hash.remove(&hash);
                    // Promote a colliding series into the primary slot.
                    if let Some(list) = shard.collisions.get_mut(&hash)
                        && let Some(next) = list.pop()
                    {
                        shard.by_hash.insert(hash, next);
                    }
                } else if let Some(list) = shard.collisions.get_mut(&hash) {
                    list.retain(|&x| x != r);
                }
                if shard.collisions.get(&hash).is_some_and(|l| l.is_empty()) {
                    shard.collisions.remove(&hash);
                }
            }
        }
        if !removed_refs.is_empty() {
            let mut postings = self.postings.write();
            for (r, labels) in &removed_refs {
                for &(n, v) in labels.iter() {
                    let mut drop_name = false;
                    if let Some(vals) = postings.by_name.get_mut(&n) {
                        let mut drop_value = false;
                        if let Some(bm) = vals.get_mut(&v) {
                            bm.remove(*r);
                            drop_value = bm.is_empty();
                        }
                        if drop_value {
                            vals.remove(&v);
                        }
                        drop_name = vals.is_empty();
                    }
                    if drop_name {
                        postings.by_name.remove(&n);
                    }
                }
                postings.all.remove(*r);
            }
        }
        let n = removed_refs.len();
        self.num_series.fetch_sub(n as u64, Ordering::Relaxed);
        self.counters
            .series_removed
            .fetch_add(n as u64, Ordering::Relaxed);
        self.min_time.store(new_min, Ordering::Relaxed);
        if new_min == i64::MAX {
            self.max_time.store(i64::MIN, Ordering::Relaxed);
        }
        self.truncate_tombstones(t);
        Ok(n)
    }

    /// Number of chunks (closed + open + OOO) in the head.
    pub fn num_chunks(&self) -> u64 {
        let mut n = 0u64;
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for s in shard.series.values() {
                n += s.chunks.len() as u64 + u64::from(s.open.is_some());
                if let Some(o) = &s.ooo {
                    n += o.chunks.len() as u64 + u64::from(!o.buf.is_empty());
                }
            }
        }
        n
    }

    /// Cardinality statistics (the `/api/v1/status/tsdb` figures): the `limit` largest entries
    /// of each list, sorted by count descending then name.
    pub fn cardinality(&self, limit: usize) -> Cardinality {
        let symbols = self.symbols.read();
        let postings = self.postings.read();
        let mut by_metric = Vec::new();
        let mut value_counts = Vec::new();
        let mut memory = Vec::new();
        let mut pairs = Vec::new();
        let mut num_label_pairs = 0u64;
        for (&n, vals) in &postings.by_name {
            let name = symbols.get(n);
            num_label_pairs += vals.len() as u64;
            value_counts.push((name.to_string(), vals.len() as u64));
            let mut bytes = 0u64;
            for (&v, bm) in vals {
                let value = symbols.get(v);
                bytes += value.len() as u64 * bm.len();
                if name == crate::labels::METRIC_NAME {
                    by_metric.push((value.to_string(), bm.len()));
                }
                pairs.push((format!("{name}={value}"), bm.len()));
            }
            memory.push((name.to_string(), bytes));
        }
        let top = |mut v: Vec<(String, u64)>| {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        };
        Cardinality {
            num_series: postings.all.len(),
            num_label_pairs,
            series_count_by_metric_name: top(by_metric),
            label_value_count_by_label_name: top(value_counts),
            memory_in_bytes_by_label_name: top(memory),
            series_count_by_label_value_pair: top(pairs),
        }
    }

    /// Samples appended since start (in order, out of order).
    pub fn samples_appended(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(a, o), sh| {
            let sh = sh.lock();
            (a + sh.samples_appended, o + sh.samples_ooo)
        })
    }

    /// Zeroes the appended-sample counters (after WAL replay, so they count live traffic).
    pub fn reset_appended_counts(&self) {
        for sh in self.shards.iter() {
            let mut sh = sh.lock();
            sh.samples_appended = 0;
            sh.samples_ooo = 0;
        }
    }

    /// Number of interned symbols.
    pub fn num_symbols(&self) -> usize {
        self.symbols.read().len()
    }

    /// Every series ref with its labels, for checkpoints.
    pub fn all_series(&self) -> Vec<(SeriesRef, Labels)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            let symbols = self.symbols.read();
            for (&r, s) in &shard.series {
                out.push((r, resolve_labels(&symbols, &s.labels)));
            }
        }
        out
    }

    /// True if the series exists.
    pub fn contains(&self, r: SeriesRef) -> bool {
        self.shards
            .get(shard_of_ref(r))
            .is_some_and(|s| s.lock().series.contains_key(&r))
    }
}

impl SeriesAppendOutcome {
    fn reject(&mut self, e: SampleError) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

fn resolve_labels(symbols: &Symbols, ids: &[(u32, u32)]) -> Labels {
    Labels::from_sorted(
        ids.iter()
            .map(|&(n, v)| Label::new(symbols.get(n), symbols.get(v)))
            .collect(),
    )
}

fn close_chunk(app: GorillaAppender) -> HeadChunk {
    let min_time = app.min_time();
    let max_time = app.max_time();
    let num_samples = app.num_samples() as u32;
    HeadChunk {
        min_time,
        max_time,
        num_samples,
        data: Bytes::from(app.finish()),
    }
}

fn encode_head_chunk(samples: &[(i64, f64)]) -> Option<HeadChunk> {
    let (&(min_time, _), &(max_time, _)) = (samples.first()?, samples.last()?);
    let mut app = GorillaAppender::new();
    for &(t, v) in samples {
        app.append(t, v);
    }
    Some(HeadChunk {
        min_time,
        max_time,
        num_samples: samples.len() as u32,
        data: Bytes::from(app.finish()),
    })
}

fn series_min_time(s: &MemSeries) -> i64 {
    let mut m = i64::MAX;
    if let Some(c) = s.chunks.first() {
        m = m.min(c.min_time);
    }
    if let Some(app) = &s.open
        && app.num_samples() > 0
    {
        m = m.min(app.min_time());
    }
    if let Some(o) = &s.ooo {
        for c in &o.chunks {
            m = m.min(c.min_time);
        }
        if let Some(&(t, _)) = o.buf.first() {
            m = m.min(t);
        }
    }
    m
}

/// The samples of a Gorilla chunk at or after `t`.
fn samples_from(data: Bytes, t: i64) -> Result<Vec<(i64, f64)>> {
    let mut samples = chunk::decode_all(Encoding::Gorilla, data)?;
    samples.retain(|&(st, _)| st >= t);
    Ok(samples)
}

/// Drops the chunks (or the parts of chunks) before `t`. Chunks straddling `t` are
/// re-encoded; head chunks are cut at block boundaries, so that only happens when `t` is not
/// one, or for out-of-order chunks.
fn trim_chunks(chunks: &mut Vec<HeadChunk>, t: i64) -> Result<()> {
    let mut kept = Vec::with_capacity(chunks.len());
    for c in chunks.drain(..) {
        if c.min_time >= t {
            kept.push(c);
        } else if c.max_time >= t
            && let Some(nc) = encode_head_chunk(&samples_from(c.data, t)?)
        {
            kept.push(nc);
        }
    }
    *chunks = kept;
    Ok(())
}

fn truncate_series(s: &mut MemSeries, t: i64) -> Result<()> {
    trim_chunks(&mut s.chunks, t)?;
    if let Some(app) = &s.open
        && app.num_samples() > 0
        && app.min_time() < t
    {
        let kept = if app.max_time() < t {
            None
        } else {
            let mut fresh = GorillaAppender::new();
            for (st, sv) in samples_from(Bytes::copy_from_slice(app.bytes()), t)? {
                fresh.append(st, sv);
            }
            Some(fresh)
        };
        s.open = kept;
    }
    let mut drop_ooo = false;
    if let Some(ooo) = s.ooo.as_mut() {
        ooo.buf.retain(|&(st, _)| st >= t);
        trim_chunks(&mut ooo.chunks, t)?;
        drop_ooo = ooo.buf.is_empty() && ooo.chunks.is_empty();
    }
    if drop_ooo {
        s.ooo = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lbl(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs).unwrap()
    }

    fn all_samples(h: &Head, r: SeriesRef) -> Vec<(i64, f64)> {
        h.samples_in_range(r, i64::MIN, i64::MAX).unwrap()
    }

    #[test]
    fn append_and_read_back_across_chunks() {
        let h = Head::new(HeadOptions::default());
        let (r, created) = h.get_or_create(&lbl(&[("__name__", "up"), ("job", "a")]));
        assert!(created);
        let samples: Vec<(i64, f64)> = (0..1000).map(|i| (i * 15_000, i as f64)).collect();
        let mut acc = Vec::new();
        let out = h.append(r, &samples, &mut acc).unwrap();
        assert_eq!(out.appended, 1000);
        assert_eq!(acc.len(), 1000);
        assert_eq!(all_samples(&h, r), samples);
        assert!(h.num_chunks() >= 1000 / 120);
        assert_eq!(
            h.get_or_create(&lbl(&[("job", "a"), ("__name__", "up")])),
            (r, false)
        );
    }

    #[test]
    fn duplicates_and_out_of_order() {
        let h = Head::new(HeadOptions {
            ooo_window_ms: 10_000,
            ..HeadOptions::default()
        });
        let (r, _) = h.get_or_create(&lbl(&[("__name__", "x")]));
        let mut acc = Vec::new();
        h.append(r, &[(100_000, 1.0)], &mut acc).unwrap();
        let out = h.append(r, &[(100_000, 1.0)], &mut acc).unwrap();
        assert_eq!(out.duplicates, 1);
        let out = h.append(r, &[(100_000, 2.0)], &mut acc).unwrap();
        assert_eq!(
            out.first_error,
            Some(SampleError::DuplicateDifferentValue { t: 100_000 })
        );
        let out = h.append(r, &[(95_000, 3.0)], &mut acc).unwrap();
        assert_eq!(out.out_of_order, 1);
        let out = h.append(r, &[(80_000, 3.0)], &mut acc).unwrap();
        assert_eq!(
            out.first_error,
            Some(SampleError::OutOfOrder {
                t: 80_000,
                newest: 100_000
            })
        );
        assert_eq!(all_samples(&h, r), vec![(95_000, 3.0), (100_000, 1.0)]);
    }

    #[test]
    fn ooo_duplicate_of_in_order_sample_prefers_in_order() {
        let h = Head::new(HeadOptions::default());
        let (r, _) = h.get_or_create(&lbl(&[("__name__", "x")]));
        let mut acc = Vec::new();
        h.append(r, &[(1000, 1.0), (2000, 2.0), (3000, 3.0)], &mut acc)
            .unwrap();
        h.append(r, &[(2000, 9.0), (2500, 2.5)], &mut acc).unwrap();
        assert_eq!(
            all_samples(&h, r),
            vec![(1000, 1.0), (2000, 2.0), (2500, 2.5), (3000, 3.0)]
        );
    }

    #[test]
    fn chunks_are_cut_at_block_boundaries() {
        let h = Head::new(HeadOptions {
            block_range_ms: 10_000,
            ..HeadOptions::default()
        });
        let (r, _) = h.get_or_create(&lbl(&[("__name__", "x")]));
        let mut acc = Vec::new();
        h.append(
            r,
            &[(1000, 1.0), (9000, 1.0), (10_000, 2.0), (12_000, 3.0)],
            &mut acc,
        )
        .unwrap();
        let d = h.series_data(r, i64::MIN, i64::MAX).unwrap();
        assert_eq!(d.chunks.len(), 2);
        assert_eq!(d.chunks[0].0.max_time, 9000);
        assert_eq!(d.chunks[1].0.min_time, 10_000);
    }

    #[test]
    fn truncate_drops_old_data_and_empty_series() {
        let h = Head::new(HeadOptions {
            block_range_ms: 10_000,
            ..HeadOptions::default()
        });
        let (a, _) = h.get_or_create(&lbl(&[("__name__", "a")]));
        let (b, _) = h.get_or_create(&lbl(&[("__name__", "b")]));
        let mut acc = Vec::new();
        h.append(a, &[(1000, 1.0), (11_000, 2.0)], &mut acc)
            .unwrap();
        h.append(b, &[(2000, 1.0)], &mut acc).unwrap();
        assert_eq!(h.truncate(10_000).unwrap(), 1);
        assert_eq!(h.num_series(), 1);
        assert!(h.labels(b).is_none());
        assert_eq!(all_samples(&h, a), vec![(11_000, 2.0)]);
        assert_eq!(h.label_values("__name__"), vec!["a".to_string()]);
        assert_eq!(h.min_time(), 11_000);
        let out = h.append(a, &[(9_000, 1.0)], &mut acc).unwrap();
        assert!(matches!(out.first_error, Some(SampleError::TooOld { .. })));
    }

    #[test]
    fn stale_nan_is_bit_exact() {
        let h = Head::new(HeadOptions::default());
        let (r, _) = h.get_or_create(&lbl(&[("__name__", "x")]));
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut acc = Vec::new();
        h.append(r, &[(1, 1.0), (2, stale)], &mut acc).unwrap();
        let got = all_samples(&h, r);
        assert_eq!(got[1].1.to_bits(), 0x7ff0_0000_0000_0002);
        // The same stale marker again is an idempotent duplicate.
        let out = h.append(r, &[(2, stale)], &mut acc).unwrap();
        assert_eq!(out.duplicates, 1);
    }

    #[test]
    fn cardinality_counts_series_per_metric_and_pair() {
        let h = Head::new(HeadOptions::default());
        for i in 0..5 {
            h.get_or_create(&lbl(&[("__name__", "a"), ("i", &i.to_string())]));
        }
        h.get_or_create(&lbl(&[("__name__", "b"), ("i", "0")]));
        let c = h.cardinality(2);
        assert_eq!(c.num_series, 6);
        assert_eq!(c.num_label_pairs, 2 + 5);
        assert_eq!(
            c.series_count_by_metric_name,
            vec![("a".to_string(), 5), ("b".to_string(), 1)]
        );
        assert_eq!(c.label_value_count_by_label_name[0], ("i".to_string(), 5));
        assert_eq!(
            c.series_count_by_label_value_pair[0],
            ("__name__=a".to_string(), 5)
        );
        assert_eq!(c.series_count_by_label_value_pair.len(), 2);
    }

    #[test]
    fn create_with_ref_keeps_replayed_refs() {
        let h = Head::new(HeadOptions::default());
        let l = lbl(&[("__name__", "x"), ("i", "1")]);
        let si = shard_of_hash(l.stable_hash()) as u32;
        let r = (7 << SHARD_BITS) | si;
        assert_eq!(h.create_with_ref(r, &l), r);
        assert_eq!(h.create_with_ref(r, &l), r);
        let (r2, created) = h.get_or_create(&lbl(&[("__name__", "y")]));
        assert!(created);
        assert_ne!(r2, r);
        assert_eq!(h.labels(r), Some(l));
    }
}

#[cfg(test)]
mod shard_spread {
    use super::*;

    #[test]
    fn label_hashes_spread_over_shards() {
        let mut counts = [0usize; SHARDS];
        for i in 0..20_000 {
            let l = Labels::from_pairs(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", &(i % 16).to_string()),
                ("instance", &format!("10.0.{}.{}:9100", i / 256, i % 256)),
                ("job", "node"),
                ("mode", "idle"),
            ])
            .unwrap();
            counts[shard_of_hash(l.stable_hash())] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min * 2 > *max, "uneven shards: {counts:?}");
    }
}
