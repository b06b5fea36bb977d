//! Conformance: every `*.test` script of the shared PromQL suite must pass.
//!
//! The scripts live outside the repository, in `../shared/data/promqltest/` next to the
//! checkout; they are read at run time, never copied. Evals that the skip list allows a
//! float-only engine without experimental features to skip are skipped and counted.

use std::path::PathBuf;

use strata_query::promqltest::{RunOptions, run_files};

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/promqltest")
}

#[test]
fn every_promqltest_script_passes() {
    let dir = suite_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the PromQL test scripts were not found: looked for the folder {} ({e}); \
             it holds Prometheus's *.test scripts and sits next to the repository checkout",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test files in {}", dir.display());
    let report = run_files(&files, &RunOptions::default());
    assert!(report.passed() > 0, "nothing passed:\n{report}");
    assert_eq!(report.failed(), 0, "\n{report}");
}
