//! Helpers shared by the benches and measurement binaries: feeding generated or captured data
//! into an engine, and measuring what it left on disk and in memory.
//!
//! They live in the library (not in each bench) so that every figure is produced by the same
//! code path: one scrape of a generator becomes one [`TenantDb::append`] batch with one sample
//! per series, as a remote-write request from a Prometheus server carries it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use strata_engine::Labels;
use strata_engine::db::{AppendReport, AppendSeries, EngineOptions, TenantDb};
use strata_wal::SyncMode;

use crate::generator::Generator;

/// Engine options for benchmarks: data under `dir`, WAL synced per `sync`, defaults otherwise.
pub fn engine_options(dir: &Path, sync: SyncMode) -> EngineOptions {
    EngineOptions {
        data_dir: dir.to_path_buf(),
        wal_sync: sync,
        ..EngineOptions::default()
    }
}

/// The WAL mode the benches use when durability is not what is measured: written per batch,
/// synced in the background once a second.
pub fn relaxed_sync() -> SyncMode {
    SyncMode::Interval(Duration::from_secs(1))
}

/// Appends one scrape (`scrape[i]` is the sample of `series[i]`) as one batch.
pub fn append_scrape(
    db: &TenantDb,
    series: &[Labels],
    scrape: &[(i64, f64)],
) -> anyhow::Result<AppendReport> {
    let batch: Vec<AppendSeries<'_>> = series
        .iter()
        .zip(scrape)
        .map(|(labels, s)| AppendSeries {
            labels,
            samples: std::slice::from_ref(s),
        })
        .collect();
    let report = db.append(&batch).context("append scrape")?;
    if report.rejected > 0 {
        anyhow::bail!(
            "{} samples rejected: {:?}",
            report.rejected,
            report.errors.first()
        );
    }
    Ok(report)
}

/// Writes `scrapes` scrapes of `generator` into `db`, one batch per scrape. Returns the number
/// of samples appended.
pub fn write_generated(
    db: &TenantDb,
    generator: &mut Generator,
    scrapes: usize,
) -> anyhow::Result<u64> {
    let series: Vec<Labels> = generator.series().to_vec();
    let mut buf = Vec::new();
    let mut total = 0u64;
    for _ in 0..scrapes {
        generator.next_scrape(&mut buf);
        total += append_scrape(db, &series, &buf)?.appended;
    }
    Ok(total)
}

/// Appends whole series (e.g. from a dump), `per_batch` series per batch. Returns the number of
/// samples appended.
pub fn write_series(
    db: &TenantDb,
    data: &[(Labels, Vec<(i64, f64)>)],
    per_batch: usize,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for group in data.chunks(per_batch.max(1)) {
        let batch: Vec<AppendSeries<'_>> = group
            .iter()
            .map(|(labels, samples)| AppendSeries { labels, samples })
            .collect();
        let report = db.append(&batch).context("append series")?;
        if report.rejected > 0 {
            anyhow::bail!(
                "{} samples rejected: {:?}",
                report.rejected,
                report.errors.first()
            );
        }
        total += report.appended + report.out_of_order;
    }
    Ok(total)
}

/// Sizes of the files of one or more block directories, by role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockSizes {
    /// Bytes under `chunks/`.
    pub chunks: u64,
    /// Bytes of the `index` file.
    pub index: u64,
    /// Every other file (`meta.json`, `tombstones`).
    pub other: u64,
}

impl BlockSizes {
    /// All bytes.
    pub fn total(&self) -> u64 {
        self.chunks + self.index + self.other
    }

    /// Measures one block directory.
    pub fn of_block(dir: &Path) -> anyhow::Result<BlockSizes> {
        let mut s = BlockSizes::default();
        for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name == strata_engine::block::CHUNKS_DIR {
                    s.chunks += dir_size(&path)?;
                } else {
                    s.other += dir_size(&path)?;
                }
            } else {
                let len = entry.metadata()?.len();
                if name == strata_engine::block::INDEX_FILE {
                    s.index += len;
                } else {
                    s.other += len;
                }
            }
        }
        Ok(s)
    }

    /// Adds another measurement.
    pub fn add(&mut self, o: BlockSizes) {
        self.chunks += o.chunks;
        self.index += o.index;
        self.other += o.other;
    }
}

/// Measures every block directory of a tenant (directories holding a `meta.json`).
pub fn tenant_block_sizes(tenant_dir: &Path) -> anyhow::Result<(Vec<PathBuf>, BlockSizes)> {
    let mut dirs = Vec::new();
    let mut total = BlockSizes::default();
    for entry in
        std::fs::read_dir(tenant_dir).with_context(|| format!("list {}", tenant_dir.display()))?
    {
        let path = entry?.path();
        if path.join(strata_engine::block::META_FILE).is_file() {
            total.add(BlockSizes::of_block(&path)?);
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok((dirs, total))
}

/// Total size of the regular files under `dir`, recursively.
pub fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Resident set size of this process in bytes (`VmRSS` of `/proc/self/status`), if the
/// platform has it.
pub fn vm_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A tiny `--name value` flag reader for the measurement binaries (no extra dependency).
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse::<T>()
                .map_err(|_| anyhow::anyhow!("{name}: cannot parse {v:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::GenConfig;
    use strata_engine::db::Engine;

    #[test]
    fn vm_rss_parses_proc_status() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        if cfg!(target_os = "linux") {
            assert!(vm_rss_bytes().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn flags_parse_with_defaults() {
        let args: Vec<String> = ["bin", "--series", "1000", "--hours", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag(&args, "--series", 5usize).unwrap(), 1000);
        assert_eq!(flag(&args, "--scrapes", 7usize).unwrap(), 7);
        assert!(flag(&args, "--hours", 2usize).is_err());
    }

    #[test]
    fn generated_data_goes_in_and_blocks_are_measured() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(engine_options(dir.path(), relaxed_sync())).unwrap();
        let db = engine.tenant("bench").unwrap();
        let mut g = Generator::new(GenConfig::new(1, 2));
        let n = write_generated(&db, &mut g, 20).unwrap();
        assert_eq!(n, 20 * g.num_series() as u64);
        let metas = db.persist_all().unwrap();
        assert!(!metas.is_empty());
        let (dirs, sizes) = tenant_block_sizes(db.dir()).unwrap();
        assert_eq!(dirs.len(), metas.len());
        assert!(sizes.chunks > 0 && sizes.index > 0 && sizes.other > 0);
        let on_disk: u64 = dirs.iter().map(|d| dir_size(d).unwrap()).sum();
        assert_eq!(sizes.total(), on_disk);

        let rows: Vec<(Labels, Vec<(i64, f64)>)> = vec![(
            Labels::from_pairs(&[("__name__", "x"), ("job", "j")]).unwrap(),
            vec![(g.config().start_ms + 7_200_000, 1.0)],
        )];
        assert_eq!(write_series(&db, &rows, 10).unwrap(), 1);
    }
}
