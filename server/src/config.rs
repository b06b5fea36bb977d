//! Server configuration: one TOML file, overridden by flags and environment variables.
//!
//! Every field has a documented default, so an empty file (or none) is a valid configuration.
//! Unknown keys are rejected with the key named, because a misspelt option silently taking its
//! default is worse than a refused start. Durations are written like `2h`, `10m`, `30s`,
//! `100ms`; sizes like `128MiB`, `1GiB` or a plain byte count.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use strata_engine::{EngineOptions, HeadOptions};
use strata_wal::SyncMode;

/// Errors of loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys.
    #[error("parsing config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid config value for {field}: {message}")]
    Invalid {
        /// The option, as `section.key`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory. Default: `./data`.
    pub data_dir: Option<PathBuf>,
    /// Storage options.
    pub storage: StorageConfig,
    /// Write-ahead log options.
    pub wal: WalConfig,
    /// HTTP server options.
    pub server: ServerConfig,
    /// Per-tenant limits.
    pub limits: crate::limits::LimitsConfig,
    /// Log ingestion (`[logs]`).
    pub logs: crate::loki::LogsConfig,
    /// The trace store (`[traces]`).
    pub traces: TracesConfig,
    /// Block compaction (`[compaction]`).
    pub compaction: CompactionConfig,
    /// Downsampling of old metric blocks (`[downsampling]`).
    pub downsampling: DownsamplingConfig,
}

/// `[compaction]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Run compaction in the background maintenance. Default: true.
    pub enabled: bool,
    /// Block ranges of the compaction levels above `storage.block_range`, ascending; each a
    /// multiple of the previous one. Default: `["6h", "24h"]`.
    pub ranges: Vec<String>,
    /// Most bytes of chunk data a compaction writes per second (`0`: unlimited). Default:
    /// `64MiB`.
    pub max_write_rate: String,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            ranges: vec!["6h".into(), "24h".into()],
            max_write_rate: "64MiB".into(),
        }
    }
}

/// `[downsampling]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownsamplingConfig {
    /// Whether the background maintenance writes downsampled copies. Default: `true`.
    pub enabled: bool,
    /// Blocks whose newest sample is older than this (measured back from the tenant's newest
    /// sample) get a 5-minute copy; `0s` disables that resolution. Default: `40h`.
    pub after_5m: String,
    /// ... and a 1-hour copy; `0s` disables it. Default: `10d`.
    pub after_1h: String,
}

impl Default for DownsamplingConfig {
    fn default() -> Self {
        DownsamplingConfig {
            enabled: true,
            after_5m: "40h".into(),
            after_1h: "10d".into(),
        }
    }
}

/// `[traces]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// A block is cut once the trace head's oldest span arrived this long ago. Default: `5m`.
    /// Range 1s..=1d.
    pub block_age: String,
    /// A block is cut once the trace head holds this many bytes. Default: `256MiB`. At least
    /// 1MiB.
    pub max_head_bytes: String,
    /// Trace blocks whose newest span ended longer ago than this are deleted. Default: `30d`.
    /// At least 1h.
    pub retention: String,
    /// Most bytes of trace blocks kept per tenant; the oldest blocks go first. `0`: no limit.
    /// Default: `0`.
    pub retention_size: String,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            block_age: "5m".into(),
            max_head_bytes: "256MiB".into(),
            retention: "30d".into(),
            retention_size: "0".into(),
        }
    }
}

/// Default address of the OTLP gRPC listener.
pub const DEFAULT_OTLP_GRPC_ADDR: &str = "0.0.0.0:4317";
/// Default address of the OTLP HTTP listener.
pub const DEFAULT_OTLP_HTTP_ADDR: &str = "0.0.0.0:4318";

/// `[server]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP API. Default: `0.0.0.0:8080`.
    pub http_addr: String,
    /// Largest request body accepted as sent (compressed). Default: `32MiB`.
    pub max_request_body: String,
    /// Largest decompressed remote-write/read body. Default: `64MiB`.
    pub max_decoded_body: String,
    /// Samples a query may load into memory. Default: 50000000.
    pub query_max_samples: usize,
    /// Default lookback delta of queries. Default: `5m`.
    pub lookback_delta: String,
    /// Address of the OTLP gRPC listener; `none` disables it. Default: `0.0.0.0:4317`.
    pub otlp_grpc_addr: String,
    /// Address of the OTLP HTTP listener; `none` disables it. Default: `0.0.0.0:4318`.
    pub otlp_http_addr: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: "0.0.0.0:8080".into(),
            max_request_body: "32MiB".into(),
            max_decoded_body: "64MiB".into(),
            query_max_samples: 50_000_000,
            lookback_delta: "5m".into(),
            otlp_grpc_addr: DEFAULT_OTLP_GRPC_ADDR.into(),
            otlp_http_addr: DEFAULT_OTLP_HTTP_ADDR.into(),
        }
    }
}

/// `[storage]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Time range of a block cut from the head. Default: `2h`.
    pub block_range: String,
    /// How far behind a series' newest sample an out-of-order sample is still accepted;
    /// `0s` disables out-of-order ingestion. Default: `10m`. Must be below half the block range.
    pub out_of_order_window: String,
    /// Samples per head chunk. Default: 120. Range 8..=1024.
    pub head_chunk_samples: usize,
    /// Samples per chunk in blocks. Default: 7200. Range 120..=65536.
    pub block_chunk_samples: usize,
    /// How often the background maintenance (block cutting) runs. Default: `1m`.
    pub maintenance_interval: String,
    /// Exemplars kept in memory per tenant (circular buffer; 0 disables). Default: 100000.
    pub max_exemplars: usize,
    /// How long metric blocks are kept, measured back from each tenant's newest sample; whole
    /// blocks only; `0s` keeps everything. Default: `30d`.
    pub retention: String,
    /// Most bytes of metric blocks kept per tenant; the oldest blocks go first. `0`: no limit.
    /// Default: `0`.
    pub retention_size: String,
    /// How long 5-minute downsampled blocks are kept (like `retention`). Default: `365d`.
    pub retention_5m: String,
    /// How long 1-hour downsampled blocks are kept (like `retention`). Default: `365d`.
    pub retention_1h: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            block_range: "2h".into(),
            out_of_order_window: "10m".into(),
            head_chunk_samples: 120,
            block_chunk_samples: 7200,
            maintenance_interval: "1m".into(),
            max_exemplars: 100_000,
            retention: "30d".into(),
            retention_size: "0".into(),
            retention_5m: "365d".into(),
            retention_1h: "365d".into(),
        }
    }
}

/// `[wal]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// Segment size. Default: `128MiB`. Range 1MiB..=4GiB.
    pub segment_size: String,
    /// `batch` (default): every write is fsynced before it is acknowledged. A duration such as
    /// `100ms`: writes are fsynced at most that long after they are acknowledged (a crash of
    /// the machine, not only the process, can lose that window).
    pub sync: String,
    /// Repair a corrupt WAL at start-up (dropping everything after the corruption and
    /// reporting it) instead of refusing to start. Default: false.
    pub repair: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size: "128MiB".into(),
            sync: "batch".into(),
            repair: false,
        }
    }
}

/// Parses `2h`, `10m`, `30s`, `100ms`, `1d`, or a combination like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?}: expected a number before {rest:?}"));
        }
        let (num, tail) = rest.split_at(digits);
        let n: u128 = num
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let mult: u128 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => return Err(format!("{s:?}: missing unit (ms, s, m, h, d, w)")),
            u => return Err(format!("{s:?}: unknown unit {u:?} (ms, s, m, h, d, w)")),
        };
        total_ms = total_ms
            .checked_add(n.saturating_mul(mult))
            .ok_or_else(|| format!("{s:?}: too large"))?;
        rest = tail;
    }
    let ms = u64::try_from(total_ms).map_err(|_| format!("{s:?}: too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Parses `128MiB`, `1GiB`, `64KiB`, `10MB` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Validates the configuration and builds the engine options.
    pub fn engine_options(&self, data_dir: PathBuf) -> Result<EngineOptions, ConfigError> {
        let s = &self.storage;
        let block_range = parse_duration(&s.block_range)
            .map_err(|m| invalid("storage.block_range", m))?
            .as_millis();
        if !(60_000..=31 * 86_400_000).contains(&block_range) {
            return Err(invalid("storage.block_range", "must be between 1m and 31d"));
        }
        let ooo = parse_duration(&s.out_of_order_window)
            .map_err(|m| invalid("storage.out_of_order_window", m))?
            .as_millis();
        if ooo >= block_range / 2 {
            return Err(invalid(
                "storage.out_of_order_window",
                "must be below half the block range",
            ));
        }
        if !(8..=1024).contains(&s.head_chunk_samples) {
            return Err(invalid("storage.head_chunk_samples", "must be in 8..=1024"));
        }
        if !(120..=65536).contains(&s.block_chunk_samples) {
            return Err(invalid(
                "storage.block_chunk_samples",
                "must be in 120..=65536",
            ));
        }
        let segment_size =
            parse_size(&self.wal.segment_size).map_err(|m| invalid("wal.segment_size", m))?;
        if !((1 << 20)..=(4 << 30)).contains(&segment_size) {
            return Err(invalid("wal.segment_size", "must be between 1MiB and 4GiB"));
        }
        let sync = match self.wal.sync.trim() {
            "batch" => SyncMode::EveryBatch,
            other => {
                let d = parse_duration(other).map_err(|m| invalid("wal.sync", m))?;
                if d.is_zero() {
                    SyncMode::EveryBatch
                } else {
                    SyncMode::Interval(d)
                }
            }
        };
        Ok(EngineOptions {
            data_dir,
            head: HeadOptions {
                chunk_max_samples: s.head_chunk_samples,
                ooo_window_ms: ooo as i64,
                block_range_ms: block_range as i64,
            },
            wal_segment_size: segment_size,
            wal_sync: sync,
            wal_repair: self.wal.repair,
            block_chunk_samples: s.block_chunk_samples,
            max_exemplars: s.max_exemplars,
        })
    }

    /// Validates the `[server]` section into HTTP options.
    pub fn server_options(
        &self,
        data_dir: &Path,
    ) -> Result<crate::app::ServerOptions, ConfigError> {
        let s = &self.server;
        let body =
            parse_size(&s.max_request_body).map_err(|m| invalid("server.max_request_body", m))?;
        let decoded =
            parse_size(&s.max_decoded_body).map_err(|m| invalid("server.max_decoded_body", m))?;
        if body == 0 || decoded == 0 {
            return Err(invalid("server.max_request_body", "must be positive"));
        }
        let lookback =
            parse_duration(&s.lookback_delta).map_err(|m| invalid("server.lookback_delta", m))?;
        if lookback.is_zero() {
            return Err(invalid("server.lookback_delta", "must be positive"));
        }
        Ok(crate::app::ServerOptions {
            max_request_body: usize::try_from(body).unwrap_or(usize::MAX),
            max_decoded_body: usize::try_from(decoded).unwrap_or(usize::MAX),
            query_max_samples: s.query_max_samples.max(1),
            lookback_ms: lookback.as_millis() as i64,
            data_dir: data_dir.display().to_string(),
        })
    }

    /// Options of the trace store, sharing the WAL settings of `engine`.
    pub fn trace_options(
        &self,
        engine: &EngineOptions,
    ) -> Result<strata_engine::traces::TraceOptions, ConfigError> {
        let block_age =
            parse_duration(&self.traces.block_age).map_err(|m| invalid("traces.block_age", m))?;
        if block_age < Duration::from_secs(1) || block_age > Duration::from_secs(86_400) {
            return Err(invalid("traces.block_age", "must be between 1s and 1d"));
        }
        let max_head_bytes = parse_size(&self.traces.max_head_bytes)
            .map_err(|m| invalid("traces.max_head_bytes", m))?;
        if max_head_bytes < 1 << 20 {
            return Err(invalid("traces.max_head_bytes", "must be at least 1MiB"));
        }
        let retention =
            parse_duration(&self.traces.retention).map_err(|m| invalid("traces.retention", m))?;
        if retention < Duration::from_secs(3600) {
            return Err(invalid("traces.retention", "must be at least 1h"));
        }
        Ok(strata_engine::traces::TraceOptions {
            data_dir: engine.data_dir.clone(),
            wal_segment_size: engine.wal_segment_size,
            wal_sync: engine.wal_sync,
            wal_repair: engine.wal_repair,
            block_age,
            max_head_bytes: usize::try_from(max_head_bytes).unwrap_or(usize::MAX),
            retention,
            retention_bytes: parse_size(&self.traces.retention_size)
                .map_err(|m| invalid("traces.retention_size", m))?,
        })
    }

    /// The metrics retention in ms (0: keep everything).
    pub fn metrics_retention_ms(&self) -> Result<i64, ConfigError> {
        let d =
            parse_duration(&self.storage.retention).map_err(|m| invalid("storage.retention", m))?;
        if !d.is_zero() && d < Duration::from_secs(3600) {
            return Err(invalid(
                "storage.retention",
                "must be 0s (keep everything) or at least 1h",
            ));
        }
        Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// The metrics retention per resolution: `storage.retention` for raw blocks,
    /// `storage.retention_5m` and `storage.retention_1h` for downsampled ones.
    pub fn metrics_retention_policy(
        &self,
    ) -> Result<strata_engine::ResolutionRetention, ConfigError> {
        let one = |field: &'static str, v: &str| -> Result<i64, ConfigError> {
            let d = parse_duration(v).map_err(|m| invalid(field, m))?;
            if !d.is_zero() && d < Duration::from_secs(3600) {
                return Err(invalid(
                    field,
                    "must be 0s (keep everything) or at least 1h",
                ));
            }
            Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        Ok(strata_engine::ResolutionRetention {
            raw_ms: self.metrics_retention_ms()?,
            res_5m_ms: one("storage.retention_5m", &self.storage.retention_5m)?,
            res_1h_ms: one("storage.retention_1h", &self.storage.retention_1h)?,
        })
    }

    /// When blocks get downsampled copies; `None` if downsampling is disabled.
    pub fn downsample_options(
        &self,
    ) -> Result<Option<strata_compaction::downsample::DownsampleOptions>, ConfigError> {
        let d = &self.downsampling;
        if !d.enabled {
            return Ok(None);
        }
        let one = |field: &'static str, v: &str| -> Result<i64, ConfigError> {
            let d = parse_duration(v).map_err(|m| invalid(field, m))?;
            if !d.is_zero() && d < Duration::from_secs(3600) {
                return Err(invalid(field, "must be 0s (disabled) or at least 1h"));
            }
            Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        Ok(Some(strata_compaction::downsample::DownsampleOptions {
            after_5m_ms: one("downsampling.after_5m", &d.after_5m)?,
            after_1h_ms: one("downsampling.after_1h", &d.after_1h)?,
        }))
    }

    /// The per-tenant size limit of metric blocks in bytes (0: none).
    pub fn metrics_retention_size(&self) -> Result<u64, ConfigError> {
        parse_size(&self.storage.retention_size).map_err(|m| invalid("storage.retention_size", m))
    }

    /// The compactor's options (`None` if compaction is disabled). Level ranges start with the
    /// head's block range.
    pub fn compactor_options(
        &self,
        engine: &EngineOptions,
    ) -> Result<Option<strata_compaction::CompactorOptions>, ConfigError> {
        let c = &self.compaction;
        let mut ranges = vec![engine.head.block_range_ms];
        for r in &c.ranges {
            let ms = i64::try_from(
                parse_duration(r)
                    .map_err(|m| invalid("compaction.ranges", m))?
                    .as_millis(),
            )
            .unwrap_or(i64::MAX);
            let prev = ranges.last().copied().unwrap_or(1).max(1);
            if ms <= prev || ms % prev != 0 {
                return Err(invalid(
                    "compaction.ranges",
                    format!(
                        "{r:?} must be larger than and a multiple of the previous range \
                         ({prev} ms; the first is storage.block_range)"
                    ),
                ));
            }
            if ms > 31 * 86_400_000 {
                return Err(invalid("compaction.ranges", format!("{r:?} exceeds 31d")));
            }
            ranges.push(ms);
        }
        let rate =
            parse_size(&c.max_write_rate).map_err(|m| invalid("compaction.max_write_rate", m))?;
        if !c.enabled {
            return Ok(None);
        }
        Ok(Some(strata_compaction::CompactorOptions {
            ranges_ms: ranges,
            merge: strata_compaction::MergeOptions {
                chunk_samples: engine.block_chunk_samples,
                max_write_bytes_per_sec: rate,
                rechunk: true,
            },
            ..strata_compaction::CompactorOptions::default()
        }))
    }

    /// How often the background maintenance runs.
    pub fn maintenance_interval(&self) -> Result<Duration, ConfigError> {
        let d = parse_duration(&self.storage.maintenance_interval)
            .map_err(|m| invalid("storage.maintenance_interval", m))?;
        if d < Duration::from_secs(1) {
            return Err(invalid(
                "storage.maintenance_interval",
                "must be at least 1s",
            ));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_options_are_checked() {
        let c = Config::parse(
            "[traces]\nblock_age = \"30s\"\nretention = \"7d\"\n",
            Path::new("t.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let o = c
            .trace_options(&EngineOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.block_age, Duration::from_secs(30));
        assert_eq!(o.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(o.max_head_bytes, 256 << 20);
        let c = Config::parse("[traces]\nretention = \"10m\"\n", Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = c
            .trace_options(&EngineOptions::default())
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("traces.retention")));
        assert!(Config::parse("[traces]\nnope = 1\n", Path::new("t.toml")).is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1TB").is_err());
    }

    #[test]
    fn empty_config_gives_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        let o = c.engine_options(PathBuf::from("d")).unwrap();
        assert_eq!(o.head.block_range_ms, 7_200_000);
        assert_eq!(o.head.ooo_window_ms, 600_000);
        assert_eq!(o.wal_segment_size, 128 << 20);
        assert!(matches!(o.wal_sync, SyncMode::EveryBatch));
        assert_eq!(c.metrics_retention_ms().unwrap(), 30 * 86_400_000);
        assert_eq!(c.metrics_retention_size().unwrap(), 0);
        let c = Config::parse("[storage]\nretention = \"0s\"\n", Path::new("x.toml")).unwrap();
        assert_eq!(c.metrics_retention_ms().unwrap(), 0);
        let c = Config::parse("[storage]\nretention = \"10m\"\n", Path::new("x.toml")).unwrap();
        let e = c.metrics_retention_ms().unwrap_err().to_string();
        assert!(e.contains("storage.retention"), "{e}");
    }

    #[test]
    fn downsampling_and_retention_per_resolution() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        let p = c.metrics_retention_policy().unwrap();
        assert_eq!(p.raw_ms, 30 * 86_400_000);
        assert_eq!(p.res_5m_ms, 365 * 86_400_000);
        assert_eq!(p.res_1h_ms, 365 * 86_400_000);
        let d = c.downsample_options().unwrap().unwrap();
        assert_eq!(d.after_5m_ms, 40 * 3_600_000);
        assert_eq!(d.after_1h_ms, 10 * 86_400_000);
        let c = Config::parse(
            "[downsampling]\nenabled = false\n[storage]\nretention_1h = \"2y\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert!(c.downsample_options().unwrap().is_none());
        let c = Config::parse("[storage]\nretention_5m = \"5m\"\n", Path::new("x.toml")).unwrap();
        let e = c.metrics_retention_policy().unwrap_err().to_string();
        assert!(e.contains("storage.retention_5m"), "{e}");
        let c = Config::parse("[downsampling]\nafter_1h = \"soon\"\n", Path::new("x")).unwrap();
        let e = c.downsample_options().unwrap_err().to_string();
        assert!(e.contains("downsampling.after_1h"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::parse("[wal]\nsynk = \"batch\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("synk"), "{e}");
        let c = Config::parse("[storage]\nout_of_order_window = \"2h\"\n", Path::new("x")).unwrap();
        let e = c.engine_options(PathBuf::from("d")).unwrap_err();
        assert!(e.to_string().contains("storage.out_of_order_window"), "{e}");
        let c = Config::parse("[wal]\nsync = \"50ms\"\n", Path::new("x")).unwrap();
        let o = c.engine_options(PathBuf::from("d")).unwrap();
        assert!(matches!(o.wal_sync, SyncMode::Interval(d) if d == Duration::from_millis(50)));
    }
}
