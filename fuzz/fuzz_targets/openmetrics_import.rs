//! Backfill files are operator-supplied text: the OpenMetrics import parser must return series
//! or a line-numbered error for any input, never panic, and what it returns must be sorted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(series) = strata_server::import::parse_openmetrics(text) {
        for samples in series.values() {
            assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
});
