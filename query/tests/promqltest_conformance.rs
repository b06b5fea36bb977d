//! Conformance: every `*.test` script of the shared PromQL suite must pass.
//!
//! The scripts live outside the repository, in `../shared/data/promqltest/` next to the
//! checkout; they are read at run time, never copied. Evals that the skip list allows a
//! float-only engine without experimental features to skip are skipped and counted, except the
//! kinds in [`IMPLEMENTED`].

use std::path::PathBuf;

use strata_query::promqltest::{RunOptions, SkipKind, run_files};

/// Skip kinds the engine implements: their evals run and must pass too. A kind moves here
/// when the engine implements the feature.
const IMPLEMENTED: &[SkipKind] = &[SkipKind::FillModifiers];

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
    let opts = RunOptions {
        skip: SkipKind::all()
            .into_iter()
            .filter(|k| !IMPLEMENTED.contains(k))
            .collect(),
        ..RunOptions::default()
    };
    let report = run_files(&files, &opts);
    assert!(report.passed() > 0, "nothing passed:\n{report}");
    assert_eq!(report.failed(), 0, "\n{report}");
}
