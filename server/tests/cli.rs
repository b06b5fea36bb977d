//! The command line is a contract: flags, defaults and help text that scripts depend on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env("STRATA_OTLP_GRPC_ADDR", "none")
        .env("STRATA_OTLP_HTTP_ADDR", "none");
    c
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

#[test]
fn promqltest_reports_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass.test");
    std::fs::write(
        &pass,
        "load 1m\n  up{job=\"a\"} 1 2\n\neval instant at 1m up\n  up{job=\"a\"} 2\n\n\
         eval instant at 0 42\n  42\n\neval instant at 1m info(up)\n  up{job=\"a\"} 2\n\n\
         eval instant at 1m info(up, {x=~\".*\"})\n  up{job=\"a\"} 2\n",
    )
    .unwrap();
    let out = strata().arg("promqltest").arg(&pass).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.trim_end().lines().last(), Some("3 passed, 0 failed"));
    assert!(stdout.contains("skipped 1: info-function 1"), "{stdout}");

    let fail = dir.path().join("fail.test");
    std::fs::write(
        &fail,
        "load 1m\n  up{job=\"a\"} 1 2\n\neval instant at 1m up\n  up{job=\"a\"} 3\n",
    )
    .unwrap();
    let out = strata()
        .arg("promqltest")
        .arg("--strict")
        .arg("--no-skip")
        .arg("native-histograms")
        .arg(&pass)
        .arg(&fail)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("fail.test:4: eval instant at 1m up\n"),
        "{stdout}"
    );
    assert_eq!(stdout.trim_end().lines().last(), Some("3 passed, 1 failed"));

    // An unknown skip kind is a usage error naming the known kinds.
    let out = strata()
        .args(["promqltest", "--no-skip", "bogus"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("native-histograms"), "stderr: {err}");
}

#[test]
fn import_openmetrics_backfills_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.om");
    let mut text = String::from("# TYPE old_metric gauge\n");
    for k in 0..500 {
        // Every minute over 500 minutes, ten days ago.
        text.push_str(&format!(
            "old_metric{{job=\"import\"}} {k} {}\n",
            1_700_000_000 + k * 60
        ));
    }
    text.push_str("# EOF\n");
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let out = strata()
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (engine, reports) = strata_engine::Engine::open(strata_engine::EngineOptions {
        data_dir: data.clone(),
        ..strata_engine::EngineOptions::default()
    })
    .unwrap();
    assert!(reports[0].blocks >= 4, "{reports:?}");
    let m = [strata_engine::Matcher::equal("job", "import")];
    let s = engine
        .select(
            "anonymous",
            &m,
            0,
            i64::MAX,
            &strata_engine::SelectHints::default(),
        )
        .unwrap();
    let samples = s[0].samples(0, i64::MAX).unwrap();
    assert_eq!(samples.len(), 500);
    assert_eq!(samples[0], (1_700_000_000_000, 0.0));
    drop(engine);

    // A bad line refuses the whole file and names the line.
    let bad = dir.path().join("bad.om");
    std::fs::write(&bad, "up 1 1700000000\nup 2\n").unwrap();
    let out = strata()
        .args(["import", "openmetrics"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: missing timestamp"), "{err}");
}
