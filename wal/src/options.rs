//! Options of the WAL: segment size, sync policy, recovery policy.
//!
//! The durability contract is expressed as types so that the engine's configuration states it
//! explicitly: [`SyncMode`] says when an acknowledged append is on disk, [`RecoveryMode`] says
//! what opening may drop.
//!
//! # Durability
//!
//! See [`SyncMode`]: with the default, `append` returning `Ok` means the batch survives a crash
//! or power loss; with [`SyncMode::Interval`] the last interval of appends may be lost.

use std::time::Duration;

use crate::error::{Result, WalError};

/// Default segment size: 128 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;
/// Smallest accepted segment size: 1 KiB (small sizes exist for tests).
pub const MIN_SEGMENT_SIZE: u64 = 1024;

/// When appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `append` returns only after the batch was written and `fdatasync`ed, so an acknowledged
    /// batch survives a crash or power loss. Concurrent appends share one `fdatasync` (group
    /// commit): while one thread syncs, others write, and the next sync covers them all.
    #[default]
    EveryBatch,
    /// `append` returns once the batch is written to the operating system (it survives a crash
    /// of the process, not of the machine); a background thread owned by the `Wal`
    /// `fdatasync`s whenever something was written, at most once per interval. A power loss can
    /// lose the appends of up to the last interval plus the duration of one sync. `sync()`,
    /// `rotate()`, `close()` and the roll-over to a new segment still sync immediately (an
    /// append that triggers a roll-over waits for one `fdatasync` of the old segment).
    Interval(Duration),
}

/// What opening the WAL may do about damaged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Cut off a torn tail of the newest segment (an interrupted write: nothing verifiable
    /// follows the damage), with a warning and an entry in the report; refuse to open on any
    /// other corruption with [`WalError::Corrupt`] / [`WalError::CorruptCheckpoint`].
    #[default]
    TolerateTornTail,
    /// As `TolerateTornTail`, but instead of refusing to open on corruption, keep the longest
    /// valid prefix of the log: truncate at the first damaged frame, delete every later
    /// segment, and return a report of exactly what was dropped. Meant for an operator who
    /// chose to lose data rather than stay down.
    Repair,
}

/// Options of [`crate::Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Size at which the writer starts a new segment. A batch never spans segments, so a
    /// segment can exceed this by (at most) one batch. Default: 128 MiB; minimum 1 KiB.
    pub segment_size: u64,
    /// When appends are made durable. Default: [`SyncMode::EveryBatch`].
    pub sync: SyncMode,
    /// What opening may drop. Default: [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync: SyncMode::default(),
            recovery: RecoveryMode::default(),
        }
    }
}

impl WalOptions {
    /// Checks the bounds of every field; `Wal::open` calls it.
    pub fn validate(&self) -> Result<()> {
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(WalError::InvalidOptions(format!(
                "segment_size {} is below the minimum of {MIN_SEGMENT_SIZE} bytes",
                self.segment_size
            )));
        }
        if let SyncMode::Interval(every) = self.sync
            && every.is_zero()
        {
            return Err(WalError::InvalidOptions(
                "sync interval must be greater than zero (use SyncMode::EveryBatch)".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        let opts = WalOptions::default();
        assert_eq!(opts.segment_size, 128 * 1024 * 1024);
        assert_eq!(opts.sync, SyncMode::EveryBatch);
        assert_eq!(opts.recovery, RecoveryMode::TolerateTornTail);
        assert!(opts.validate().is_ok());
    }

    #[test]
    fn out_of_bounds_options_are_rejected() {
        let small = WalOptions {
            segment_size: 10,
            ..WalOptions::default()
        };
        assert!(matches!(small.validate(), Err(WalError::InvalidOptions(_))));
        let zero = WalOptions {
            sync: SyncMode::Interval(Duration::ZERO),
            ..WalOptions::default()
        };
        assert!(matches!(zero.validate(), Err(WalError::InvalidOptions(_))));
    }
}
