//! The Loki HTTP API: push (`/loki/api/v1/push`, JSON and snappy protobuf) and the query API
//! Grafana's Loki datasource calls (`query`, `query_range`, `labels`, `label/<name>/values`,
//! `series`, `index/stats`, `index/volume`, `index/volume_range`, and the `tail` WebSocket).
//!
//! Shapes follow Loki's: successful query responses use the `{"status":"success","data":…}`
//! envelope with `resultType` `streams`, `matrix`, `vector` or `scalar`; `index/stats` answers a
//! bare object; errors are answered as `text/plain` with the status Loki uses (400 bad input,
//! 429 over a limit, 413 too large, 415 unsupported encoding, 500/503 server side).
//!
//! Submodules: [`push`] (ingest and limits), [`query`] (the read API) and [`tail`] (live tail).
//!
//! # Timestamps
//!
//! Query parameters accept what Loki accepts: Unix nanoseconds (an integer of more than ten
//! digits), Unix seconds (ten digits or fewer, or with a decimal point), or RFC 3339.

pub mod push;
pub mod query;
pub mod tail;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::Deserialize;
use strata_engine::logs::{LogEngine, LogStoreOptions, PushLimits};
use strata_query::logql::parser::{parse_bytes, parse_duration_ns};

use crate::app::AppState;

/// `[logs]` section of the configuration: limits of log ingestion, applied to every tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Per-tenant ingestion rate in bytes per second (lines plus structured metadata);
    /// `0` disables the limit. Default: `0`.
    pub ingestion_rate: String,
    /// Burst allowance in bytes. Default: `0` (ten seconds at the rate).
    pub ingestion_burst: String,
    /// Largest accepted line. Default: `256KB`.
    pub max_line_size: String,
    /// Most streams per tenant. Default: 10000.
    pub max_streams: usize,
    /// Most labels per stream. Default: 15.
    pub max_labels_per_stream: usize,
    /// How far behind a stream's newest entry an entry may arrive. Default: `1h`.
    pub out_of_order_window: String,
    /// Entries older than this (relative to now) are refused; `0s` disables. Default: `7d`.
    pub reject_older_than: String,
    /// Entries further in the future than this are refused. Default: `10m`.
    pub creation_grace_period: String,
    /// Raw bytes at which a stream's head is cut into a chunk. Default: `256KiB`.
    pub chunk_target_size: String,
    /// Compressed chunk bytes held in memory before a flush to a block. Default: `64MiB`.
    pub flush_size: String,
    /// Log blocks whose newest entry is older than this (relative to now) are deleted; whole
    /// blocks only; `0s` keeps everything. Default: `30d`.
    pub retention: String,
    /// Most bytes of log blocks kept per tenant; the oldest blocks go first. `0`: no limit.
    /// Default: `0`.
    pub retention_size: String,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            ingestion_rate: "0".into(),
            ingestion_burst: "0".into(),
            max_line_size: "256KB".into(),
            max_streams: 10_000,
            max_labels_per_stream: 15,
            out_of_order_window: "1h".into(),
            reject_older_than: "7d".into(),
            creation_grace_period: "10m".into(),
            chunk_target_size: "256KiB".into(),
            flush_size: "64MiB".into(),
            retention: "30d".into(),
            retention_size: "0".into(),
        }
    }
}

/// Validated log settings.
#[derive(Clone, Debug)]
pub struct LogsSettings {
    /// Limits applied to every push.
    pub limits: PushLimits,
    /// Bytes per second (0 = unlimited).
    pub rate: f64,
    /// Burst bytes.
    pub burst: f64,
    /// Head cut size.
    pub chunk_target_bytes: usize,
    /// Flush threshold.
    pub flush_bytes: usize,
    /// Retention of log blocks (ages in ns).
    pub retention: strata_engine::retention::RetentionPolicy,
}

impl LogsConfig {
    /// Validates every field; errors name the field.
    pub fn settings(&self) -> Result<LogsSettings, String> {
        let size = |field: &str, v: &str| -> Result<f64, String> {
            parse_bytes(v.trim())
                .filter(|x| *x >= 0.0)
                .ok_or_else(|| format!("logs.{field}: invalid size {v:?}"))
        };
        let dur = |field: &str, v: &str| -> Result<i64, String> {
            parse_duration_ns(v.trim())
                .filter(|x| *x >= 0)
                .ok_or_else(|| format!("logs.{field}: invalid duration {v:?}"))
        };
        let rate = size("ingestion_rate", &self.ingestion_rate)?;
        let burst = size("ingestion_burst", &self.ingestion_burst)?;
        let chunk = size("chunk_target_size", &self.chunk_target_size)? as usize;
        if !(1024..=(64 << 20)).contains(&chunk) {
            return Err("logs.chunk_target_size: must be between 1KiB and 64MiB".into());
        }
        let max_age = dur("retention", &self.retention)?;
        if max_age != 0 && max_age < 3_600_000_000_000 {
            return Err("logs.retention: must be 0s (keep everything) or at least 1h".into());
        }
        Ok(LogsSettings {
            limits: PushLimits {
                max_line_size: size("max_line_size", &self.max_line_size)? as usize,
                max_streams: self.max_streams,
                max_labels_per_stream: self.max_labels_per_stream,
                out_of_order_window_ns: dur("out_of_order_window", &self.out_of_order_window)?,
                reject_older_than_ns: dur("reject_older_than", &self.reject_older_than)?,
                creation_grace_ns: dur("creation_grace_period", &self.creation_grace_period)?,
            },
            rate,
            burst: if burst > 0.0 { burst } else { rate * 10.0 },
            chunk_target_bytes: chunk,
            flush_bytes: size("flush_size", &self.flush_size)? as usize,
            retention: strata_engine::retention::RetentionPolicy {
                max_age,
                max_bytes: size("retention_size", &self.retention_size)? as u64,
            },
        })
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The log side of the server: the log engine, its settings and the rate limiter.
pub struct LokiState {
    /// All tenants' log stores.
    pub engine: Arc<LogEngine>,
    /// Validated settings.
    pub settings: LogsSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for LokiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiState").finish_non_exhaustive()
    }
}

impl LokiState {
    /// State over an engine.
    pub fn new(engine: Arc<LogEngine>, settings: LogsSettings) -> Self {
        LokiState {
            engine,
            settings,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// State whose tenants are opened lazily under `data_dir` (tests and embedding).
    pub fn lazy(data_dir: &str) -> Self {
        let settings = LogsConfig::default().settings().unwrap_or(LogsSettings {
            limits: PushLimits::default(),
            rate: 0.0,
            burst: 0.0,
            chunk_target_bytes: 256 << 10,
            flush_bytes: 64 << 20,
            retention: strata_engine::retention::RetentionPolicy::default(),
        });
        let opts = LogStoreOptions {
            data_dir: data_dir.into(),
            chunk_target_bytes: settings.chunk_target_bytes,
            flush_bytes: settings.flush_bytes,
            ..LogStoreOptions::default()
        };
        LokiState::new(Arc::new(LogEngine::lazy(opts)), settings)
    }

    /// Takes `bytes` from the tenant's bucket; `Err(limit)` if there are not enough.
    pub fn take(&self, tenant: &str, bytes: usize) -> Result<(), f64> {
        let rate = self.settings.rate;
        if rate <= 0.0 || bytes == 0 {
            return Ok(());
        }
        let burst = self.settings.burst.max(rate);
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= bytes as f64 {
            b.tokens -= bytes as f64;
            Ok(())
        } else {
            Err(rate)
        }
    }
}

/// Opens the log stores of every tenant found under the data directory (blocks loaded, WAL
/// replayed) with the configured `[logs]` settings and WAL policy, and puts them in `state`.
pub fn install(
    mut state: AppState,
    cfg: &crate::config::Config,
    engine_opts: &strata_engine::EngineOptions,
) -> anyhow::Result<AppState> {
    let settings = cfg
        .logs
        .settings()
        .map_err(|e| anyhow::anyhow!("invalid config value for {e}"))?;
    let opts = LogStoreOptions {
        data_dir: engine_opts.data_dir.clone(),
        chunk_target_bytes: settings.chunk_target_bytes,
        flush_bytes: settings.flush_bytes,
        wal_segment_size: engine_opts.wal_segment_size,
        wal_sync: engine_opts.wal_sync,
        wal_repair: engine_opts.wal_repair,
        ..LogStoreOptions::default()
    };
    let (engine, reports) = LogEngine::open(opts).map_err(|e| {
        anyhow::anyhow!(
            "opening log stores in {}: {e}",
            engine_opts.data_dir.display()
        )
    })?;
    for r in &reports {
        tracing::info!(
            tenant = %r.tenant,
            blocks = r.blocks,
            replayed_entries = r.replayed_entries,
            replay_ms = r.replay_time.as_millis() as u64,
            "opened tenant logs"
        );
        if let Some(repair) = &r.repair {
            tracing::warn!(tenant = %r.tenant, %repair, "log WAL was repaired");
        }
    }
    state.loki = Arc::new(LokiState::new(Arc::new(engine), settings));
    Ok(state)
}

/// Graceful shutdown of the log side: every tenant's heads are flushed into blocks (so the
/// next start has nothing to replay) and WALs synced. Errors are logged; the WAL still holds
/// everything that was acknowledged.
pub fn shutdown(state: &LokiState) {
    if let Err(e) = state.engine.flush_all() {
        tracing::error!(error = %e, "flushing logs at shutdown failed; the WAL will be replayed");
    }
    if let Err(e) = state.engine.close() {
        tracing::error!(error = %e, "syncing the log WALs at shutdown failed");
    }
}

/// Routes of the Loki API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/loki/api/v1/push", post(push::handle_push))
        .route(
            "/loki/api/v1/query",
            get(query::instant).post(query::instant),
        )
        .route(
            "/loki/api/v1/query_range",
            get(query::range).post(query::range),
        )
        .route(
            "/loki/api/v1/labels",
            get(query::labels).post(query::labels),
        )
        .route(
            "/loki/api/v1/label/{name}/values",
            get(query::label_values).post(query::label_values),
        )
        .route(
            "/loki/api/v1/series",
            get(query::series).post(query::series),
        )
        .route(
            "/loki/api/v1/index/stats",
            get(query::stats).post(query::stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(query::volume).post(query::volume),
        )
        .route("/loki/api/v1/tail", get(tail::tail))
        .route(
            "/loki/api/v1/index/volume_range",
            get(query::volume_range).post(query::volume_range),
        )
}

/// A Loki API error: a status and a plain-text message.
#[derive(Debug)]
pub struct LokiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message.
    pub message: String,
}

impl LokiError {
    /// 400.
    pub fn bad(message: impl Into<String>) -> Self {
        LokiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        LokiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "Loki API request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "Loki API request refused");
        }
        let mut body = self.message;
        body.push('\n');
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body,
        )
            .into_response()
    }
}

impl From<crate::api::ApiError> for LokiError {
    fn from(e: crate::api::ApiError) -> Self {
        LokiError {
            status: e.status(),
            message: e.message,
        }
    }
}

impl From<strata_engine::logs::LogError> for LokiError {
    fn from(e: strata_engine::logs::LogError) -> Self {
        use strata_engine::logs::LogError;
        match e {
            LogError::InvalidTenant(_) | LogError::InvalidInput(_) => LokiError::bad(e.to_string()),
            LogError::WalFailed(_) | LogError::Wal(_) => {
                LokiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => LokiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// Parses a Loki timestamp parameter into Unix nanoseconds.
pub fn parse_loki_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.contains('.')
        && let Ok(f) = s.parse::<f64>()
    {
        if !f.is_finite() || f.abs() > 9.2e9 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok((f * 1e9).round() as i64);
    }
    if let Ok(n) = s.parse::<i64>() {
        let digits = s.trim_start_matches('-').len();
        return Ok(if digits <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    crate::api::parse_rfc3339(s)
        .map(|ms| ms.saturating_mul(1_000_000))
        .ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_times() {
        assert_eq!(parse_loki_time("1700000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(
            parse_loki_time("1700000000123456789"),
            Ok(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse_loki_time("1700000000.5"),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_loki_time("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000_000)
        );
        assert!(parse_loki_time("soon").is_err());
    }

    #[test]
    fn settings_validate_fields() {
        assert!(LogsConfig::default().settings().is_ok());
        let bad = LogsConfig {
            out_of_order_window: "forever".into(),
            ..LogsConfig::default()
        };
        assert!(
            bad.settings()
                .unwrap_err()
                .contains("logs.out_of_order_window")
        );
    }

    #[test]
    fn rate_limit_refuses_over_burst() {
        let mut s = LokiState::lazy("unused");
        s.settings.rate = 100.0;
        s.settings.burst = 100.0;
        assert!(s.take("a", 80).is_ok());
        assert!(s.take("a", 80).is_err());
        assert!(s.take("b", 80).is_ok());
    }
}
