//! Shared helpers of Strata's end-to-end tests.
//!
//! The tests in `tests/tests/` start real processes — the `strata` binary, or the
//! `strata-crash-writer` child used by the crash tests — and check what they did from the
//! outside, through the data directory and the engine's public API.

use strata_engine::Labels;

/// Number of series the crash writer writes per batch.
pub const CRASH_SERIES: usize = 20;
/// Timestamp step between batches, in ms.
pub const CRASH_STEP_MS: i64 = 1000;

/// Labels of crash-writer series `i`.
pub fn crash_series(i: usize) -> Labels {
    let name = format!("crash_metric_{}", i % 3);
    let id = i.to_string();
    // Cannot fail: names are distinct and non-empty.
    Labels::from_pairs(&[
        ("__name__", name.as_str()),
        ("job", "crash"),
        ("id", id.as_str()),
    ])
    .unwrap_or_default()
}

/// The sample of series `i` in batch `b`: every batch writes one sample per series.
pub fn crash_sample(b: u64, i: usize) -> (i64, f64) {
    let t = (b as i64) * CRASH_STEP_MS;
    // Mix of integers, decimals and a stale marker now and then.
    let v = if b % 97 == 13 && i == 0 {
        f64::from_bits(0x7ff0_0000_0000_0002)
    } else if i.is_multiple_of(2) {
        (b * (i as u64 + 1)) as f64
    } else {
        b as f64 * 0.25 + i as f64
    };
    (t, v)
}

pub mod harness;
