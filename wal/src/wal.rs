//! The writer: [`Wal`] appends batches to the active segment, rotates segments, syncs, and owns
//! the background sync thread of [`SyncMode::Interval`].
//!
//! # Why it is built this way
//!
//! Each `append` encodes its batch into one frame *outside* any lock (in a per-thread reusable
//! buffer, checksum included), then takes the writer lock only for the `write` system call, so
//! concurrent appenders serialise on a memcpy into the page cache, not on encoding. Durability
//! is a separate step with group commit: a thread that needs its batch synced either finds that
//! a completed `fdatasync` already covered it, waits for the one in progress, or becomes the
//! syncer and covers every batch written so far. Under load one `fdatasync` acknowledges many
//! batches.
//!
//! # Invariants
//!
//! * Batches are numbered in write order (`written_seq`); `synced_seq` is the highest number
//!   known durable. Every batch `<= synced_seq` is durable, because a segment is synced before
//!   the writer leaves it (rotation) and the syncer syncs the segment that was active when it
//!   read `written_seq`.
//! * The segment file is opened `O_APPEND`, and a failed write is rolled back with `set_len` to
//!   the last frame boundary, so the file never contains a partial frame followed by a good one.
//! * Segments on disk are `first_segment..=segment`, contiguous.
//!
//! # Locking
//!
//! Lock order: `checkpoint_lock` → `writer` → `sync`. The syncer never holds `sync` while it
//! takes `writer` or while it calls `fdatasync`. `poison` is a leaf lock.
//!
//! # Durability
//!
//! With [`SyncMode::EveryBatch`], `append` returns after the `fdatasync` that covers its batch.
//! New segments are created with their header synced and the directory synced (see
//! `files::create_segment`). If `fdatasync` fails the WAL is poisoned: the kernel may have
//! discarded the dirty pages, so no later sync may claim success; every later call returns
//! [`WalError::Poisoned`] until the WAL is reopened, which re-verifies what is on disk.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, WalError};
use crate::files;
use crate::format::{FILE_HEADER_LEN, FrameEncoder};
use crate::options::{SyncMode, WalOptions};
use crate::recovery::{self, RepairReport};
use crate::replay::Replay;

/// Thread-local encode buffers above this capacity are released after use.
const MAX_RETAINED_ENCODER: usize = 8 * 1024 * 1024;

thread_local! {
    static ENCODER: RefCell<FrameEncoder> = RefCell::new(FrameEncoder::new());
}

/// A segmented write-ahead log of typed records.
///
/// `Wal` is `Send + Sync`; share it behind an `Arc` and append from any thread.
#[derive(Debug)]
pub struct Wal {
    pub(crate) shared: Arc<Shared>,
    /// Serialises checkpoints. Lock order: before `shared.writer`.
    pub(crate) checkpoint_lock: Mutex<()>,
    flusher: Option<JoinHandle<()>>,
    /// Holds the directory lock for the lifetime of the `Wal`.
    _lock: File,
    closed: bool,
}

/// State shared with the background sync thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    /// Lock order: after `Wal::checkpoint_lock`, before `sync`.
    pub(crate) writer: Mutex<WriterState>,
    /// Lock order: after `writer`; never held across `fdatasync` or while taking `writer`.
    sync: Mutex<SyncState>,
    sync_done: Condvar,
    /// Leaf lock: set once, never cleared.
    poison: Mutex<Option<String>>,
    stop: Mutex<bool>,
    stop_signal: Condvar,
    /// Number of fdatasync calls made.
    fsyncs: std::sync::atomic::AtomicU64,
    /// Total nanoseconds spent in fdatasync.
    fsync_nanos: std::sync::atomic::AtomicU64,
}

/// Counters of a WAL since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WalStats {
    /// fdatasync calls made.
    pub fsyncs: u64,
    /// Seconds spent in fdatasync.
    pub fsync_seconds: f64,
}

#[derive(Debug)]
pub(crate) struct WriterState {
    file: Arc<File>,
    /// Number of the active segment.
    pub(crate) segment: u64,
    /// Bytes in the active segment.
    size: u64,
    /// Batches written since open.
    written_seq: u64,
    /// Oldest segment on disk.
    pub(crate) first_segment: u64,
    /// The checkpoint on disk.
    pub(crate) checkpoint: Option<u64>,
}

#[derive(Debug, Default)]
struct SyncState {
    synced_seq: u64,
    syncing: bool,
}

impl Wal {
    /// Opens (creating if missing) the WAL in `dir`, verifies it per `opts.recovery`, and returns
    /// the WAL ready for appends, a [`Replay`] over everything it already held, and a report of
    /// anything recovery dropped (a torn tail, or what [`RecoveryMode::Repair`] cut off).
    ///
    /// Appends go to a fresh segment, so the replay never races with them. Fails with
    /// [`WalError::Locked`] if another `Wal` has the directory open.
    ///
    /// [`RecoveryMode::Repair`]: crate::RecoveryMode::Repair
    pub fn open(
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> Result<(Wal, Replay, Option<RepairReport>)> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let existed = dir.is_dir();
        std::fs::create_dir_all(&dir).map_err(WalError::io("create WAL directory", &dir))?;
        if !existed && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::sync_dir(parent)?;
        }
        let lock = files::lock_dir(&dir)?;
        let recovered = recovery::recover(&dir, opts.recovery)?;
        let segment = recovered.next_segment;
        let file = files::create_segment(&dir, segment)?;
        let first_segment = recovered.segments.first().copied().unwrap_or(segment);
        tracing::info!(
            dir = %dir.display(),
            checkpoint = ?recovered.checkpoint,
            first_segment,
            active_segment = segment,
            "opened WAL"
        );
        let shared = Arc::new(Shared {
            dir,
            opts,
            writer: Mutex::new(WriterState {
                file: Arc::new(file),
                segment,
                size: FILE_HEADER_LEN as u64,
                written_seq: 0,
                first_segment,
                checkpoint: recovered.checkpoint,
            }),
            sync: Mutex::new(SyncState::default()),
            sync_done: Condvar::new(),
            poison: Mutex::new(None),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
            fsyncs: std::sync::atomic::AtomicU64::new(0),
            fsync_nanos: std::sync::atomic::AtomicU64::new(0),
        });
        let flusher = match shared.opts.sync {
            SyncMode::EveryBatch => None,
            SyncMode::Interval(every) => {
                let thread_shared = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("strata-wal-sync".to_string())
                    .spawn(move || flusher_loop(&thread_shared, every))
                    .map_err(WalError::io("spawn WAL sync thread", &shared.dir))?;
                Some(handle)
            }
        };
        let wal = Wal {
            shared,
            checkpoint_lock: Mutex::new(()),
            flusher,
            _lock: lock,
            closed: false,
        };
        Ok((wal, Replay::new(recovered.sources), recovered.report))
    }

    /// Appends `records` as one atomic batch: after a crash, replay yields all of them or none.
    ///
    /// Returns once the batch is durable per [`SyncMode`]. An empty slice is a no-op. Record
    /// kinds 0 and 240..=255 are reserved ([`WalError::InvalidRecord`]); a batch body is limited
    /// to [`crate::format::MAX_FRAME_BODY`] bytes ([`WalError::BatchTooLarge`]). A batch larger
    /// than the segment size gets a segment of its own.
    pub fn append(&self, records: &[(u8, &[u8])]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let seq = ENCODER
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut encoder) => self.encode_and_write(&mut encoder, records),
                Err(_) => self.encode_and_write(&mut FrameEncoder::new(), records),
            })
            .unwrap_or_else(|_| self.encode_and_write(&mut FrameEncoder::new(), records))?;
        match self.shared.opts.sync {
            SyncMode::EveryBatch => self.shared.sync_through(seq),
            SyncMode::Interval(_) => Ok(()),
        }
    }

    fn encode_and_write(&self, encoder: &mut FrameEncoder, records: &[(u8, &[u8])]) -> Result<u64> {
        encoder.clear();
        let result = records
            .iter()
            .try_for_each(|(kind, payload)| encoder.push(*kind, payload))
            .and_then(|()| match encoder.finish() {
                Some(frame) => self.shared.write_frame(frame),
                None => Err(WalError::InvalidRecord {
                    index: 0,
                    kind: 0,
                    reason: "empty batch",
                }),
            });
        if encoder.capacity() > MAX_RETAINED_ENCODER {
            *encoder = FrameEncoder::new();
        }
        result
    }

    /// Writes `records` as one atomic batch like [`Wal::append`] but returns without waiting
    /// for durability, with the batch's sequence number. Pass it to [`Wal::sync_through`] to
    /// wait until the batch is durable. This lets a caller write under its own lock and wait
    /// for the fsync outside it, so that the syncs of concurrent callers coalesce (group
    /// commit). Nothing is durable until `sync_through` (or the interval flusher) says so.
    pub fn append_unsynced(&self, records: &[(u8, &[u8])]) -> Result<u64> {
        if records.is_empty() {
            return Ok(self.shared.writer.lock().written_seq);
        }
        ENCODER
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut encoder) => self.encode_and_write(&mut encoder, records),
                Err(_) => self.encode_and_write(&mut FrameEncoder::new(), records),
            })
            .unwrap_or_else(|_| self.encode_and_write(&mut FrameEncoder::new(), records))
    }

    /// Returns once every batch up to sequence number `seq` (from
    /// [`Wal::append_unsynced`]) is durable. Concurrent callers share one fsync.
    pub fn sync_through(&self, seq: u64) -> Result<()> {
        self.shared.sync_through(seq)
    }

    /// fsync counters since open.
    pub fn stats(&self) -> WalStats {
        use std::sync::atomic::Ordering::Relaxed;
        WalStats {
            fsyncs: self.shared.fsyncs.load(Relaxed),
            fsync_seconds: self.shared.fsync_nanos.load(Relaxed) as f64 / 1e9,
        }
    }

    /// Makes every batch appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let seq = self.shared.writer.lock().written_seq;
        self.shared.sync_through(seq)
    }

    /// Syncs and closes the active segment and starts a new one; returns the new segment's
    /// number. Every segment below it is then immutable and can be checkpointed.
    pub fn rotate(&self) -> Result<u64> {
        self.shared.check_poison()?;
        let mut writer = self.shared.writer.lock();
        self.shared.rotate_locked(&mut writer)
    }

    /// Number of the segment appends currently go to.
    pub fn current_segment(&self) -> u64 {
        self.shared.writer.lock().segment
    }

    /// Numbers of the segments on disk, ascending (the last is the active one).
    pub fn segments(&self) -> Vec<u64> {
        let writer = self.shared.writer.lock();
        (writer.first_segment..=writer.segment).collect()
    }

    /// The last segment covered by the checkpoint on disk, if there is one.
    pub fn last_checkpoint(&self) -> Option<u64> {
        self.shared.writer.lock().checkpoint
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the WAL was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.shared.opts
    }

    /// Stops the background sync thread, syncs everything appended, and releases the
    /// directory lock. Dropping a `Wal` does the same but can only log a failure.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(handle) = self.flusher.take() {
            *self.shared.stop.lock() = true;
            self.shared.stop_signal.notify_all();
            if handle.join().is_err() {
                tracing::error!(dir = %self.shared.dir.display(), "WAL sync thread panicked");
            }
        }
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.sync()
    }

    /// Whether every batch written so far has been synced (test hook for the interval mode).
    #[cfg(test)]
    pub(crate) fn is_fully_synced(&self) -> bool {
        let written = self.shared.writer.lock().written_seq;
        self.shared.sync.lock().synced_seq >= written
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(
                dir = %self.shared.dir.display(),
                %error,
                "final WAL sync failed while dropping the WAL",
            );
        }
    }
}

impl Shared {
    fn check_poison(&self) -> Result<()> {
        match &*self.poison.lock() {
            Some(reason) => Err(WalError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn set_poison(&self, reason: String) {
        let mut poison = self.poison.lock();
        if poison.is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                %reason,
                "WAL poisoned; it accepts no more writes until reopened",
            );
            *poison = Some(reason);
        }
    }

    /// Writes one encoded frame to the active segment (rotating first if it would overflow)
    /// and returns the batch's sequence number.
    fn write_frame(&self, frame: &[u8]) -> Result<u64> {
        self.check_poison()?;
        let len = frame.len() as u64;
        let mut writer = self.writer.lock();
        if writer.size > FILE_HEADER_LEN as u64
            && writer.size.saturating_add(len) > self.opts.segment_size
        {
            self.rotate_locked(&mut writer)?;
        }
        if let Err(source) = (&*writer.file).write_all(frame) {
            let path = files::segment_path(&self.dir, writer.segment);
            if let Err(rollback) = writer.file.set_len(writer.size) {
                self.set_poison(format!(
                    "could not roll back a failed append to {}: {rollback}",
                    path.display()
                ));
            }
            return Err(WalError::Io {
                op: "append to segment",
                path,
                source,
            });
        }
        writer.size += len;
        writer.written_seq += 1;
        Ok(writer.written_seq)
    }

    /// Syncs the active segment, then creates and switches to the next one.
    fn rotate_locked(&self, writer: &mut WriterState) -> Result<u64> {
        let old = files::segment_path(&self.dir, writer.segment);
        if let Err(source) = writer.file.sync_data() {
            self.set_poison(format!("fdatasync of {} failed: {source}", old.display()));
            return Err(WalError::Io {
                op: "fsync segment",
                path: old,
                source,
            });
        }
        {
            let mut sync = self.sync.lock();
            sync.synced_seq = sync.synced_seq.max(writer.written_seq);
            self.sync_done.notify_all();
        }
        let next = writer
            .segment
            .checked_add(1)
            .ok_or_else(|| WalError::Poisoned {
                reason: "segment numbers exhausted".to_string(),
            })?;
        let file = files::create_segment(&self.dir, next)?;
        writer.file = Arc::new(file);
        writer.segment = next;
        writer.size = FILE_HEADER_LEN as u64;
        tracing::debug!(dir = %self.dir.display(), segment = next, "started new WAL segment");
        Ok(next)
    }

    /// Returns once every batch up to `seq` is durable (group commit).
    fn sync_through(&self, seq: u64) -> Result<()> {
        {
            let mut sync = self.sync.lock();
            loop {
                self.check_poison()?;
                if sync.synced_seq >= seq {
                    return Ok(());
                }
                if !sync.syncing {
                    break;
                }
                self.sync_done.wait(&mut sync);
            }
            sync.syncing = true;
        }
        // This thread is the syncer. Everything written up to `target` is either in `file` or
        // in an older segment that rotation already synced.
        let (file, target, segment) = {
            let writer = self.writer.lock();
            (Arc::clone(&writer.file), writer.written_seq, writer.segment)
        };
        let started = std::time::Instant::now();
        let result = file.sync_data();
        self.fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.fsync_nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut sync = self.sync.lock();
        sync.syncing = false;
        let outcome = match result {
            Ok(()) => {
                sync.synced_seq = sync.synced_seq.max(target);
                Ok(())
            }
            Err(source) => {
                let path = files::segment_path(&self.dir, segment);
                self.set_poison(format!("fdatasync of {} failed: {source}", path.display()));
                Err(WalError::Io {
                    op: "fsync segment",
                    path,
                    source,
                })
            }
        };
        self.sync_done.notify_all();
        outcome
    }

    /// Syncs everything written so far.
    fn sync_all_written(&self) -> Result<()> {
        let seq = self.writer.lock().written_seq;
        self.sync_through(seq)
    }
}

/// Body of the [`SyncMode::Interval`] thread: every `every`, sync if anything was written.
fn flusher_loop(shared: &Shared, every: std::time::Duration) {
    loop {
        {
            let mut stopped = shared.stop.lock();
            if !*stopped {
                shared.stop_signal.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        if let Err(error) = shared.sync_all_written() {
            // The WAL is poisoned now; appends report it. Nothing more to do here.
            tracing::error!(dir = %shared.dir.display(), %error, "background WAL sync failed");
            return;
        }
    }
}
