//! The command line is a contract: flags, defaults and help text that scripts depend on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

#[test]
fn help_documents_every_option_with_defaults() {
    let out = strata().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--config",
        "--data-dir",
        "./data",
        "--wal-sync",
        "batch",
        "--repair-wal",
        "serve",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = strata().arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    assert_eq!(v.trim(), format!("strata {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_config_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, "[storage]\nblock_rnage = \"2h\"\n").unwrap();
    let out = strata()
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("block_rnage"), "stderr: {err}");
}
