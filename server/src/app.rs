//! Shared server state, the router, request accounting and the operational endpoints
//! (`/-/healthy`, `/-/ready`, `/metrics`, `/api/v1/status/buildinfo`, `runtimeinfo`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_engine::Engine;
use strata_engine::traces::{TraceOptions, TraceStore};

use crate::api::success;
use crate::limits::Limits;
use crate::selfmetrics::{GaugeSample, SelfMetrics};

/// Version reported by buildinfo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The storage engine.
    pub engine: Arc<Engine>,
    /// Strata's own metrics.
    pub metrics: Arc<SelfMetrics>,
    /// Per-tenant limits.
    pub limits: Arc<Limits>,
    /// True once start-up (WAL replay) finished.
    pub ready: Arc<AtomicBool>,
    /// Server options.
    pub options: Arc<ServerOptions>,
    /// Process start.
    pub started: Instant,
    /// Process start, wall clock.
    pub start_time: SystemTime,
    /// The log stores of all tenants and the Loki API's settings.
    pub loki: Arc<crate::loki::LokiState>,
    /// The trace store (all tenants).
    pub traces: Arc<TraceStore>,
    /// Span metrics and service-graph metrics derived from incoming spans.
    pub spanmetrics: Arc<crate::spanmetrics::SpanMetrics>,
    /// Compactor settings (`None`: background compaction disabled) and counters.
    pub compaction: Arc<Compaction>,
}

/// The compactor's settings and counters, shared by the maintenance loop, the
/// `clean_tombstones` endpoint and `/metrics`.
#[derive(Debug, Default)]
pub struct Compaction {
    /// Settings; `None` when background compaction is disabled (explicit rewrites such as
    /// `clean_tombstones` then use the defaults).
    pub options: Option<strata_compaction::CompactorOptions>,
    /// Work done since start.
    pub stats: strata_compaction::CompactionStats,
}

impl Compaction {
    /// Options for explicit rewrites: the configured ones, or the defaults.
    pub fn options_or_default(&self) -> strata_compaction::CompactorOptions {
        self.options.clone().unwrap_or_default()
    }

    /// Runs due compactions on every tenant (no-op when disabled). Errors are logged and
    /// counted; one tenant's failure does not stop the others.
    pub fn run(&self, engine: &Engine) {
        let Some(opts) = &self.options else {
            return;
        };
        for id in engine.tenant_ids() {
            if let Some(t) = engine.existing_tenant(&id) {
                // Failures are logged and counted inside.
                let _ = strata_compaction::compact_tenant(&t, opts, &self.stats);
            }
        }
    }

    /// Appends the compaction counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        let families: [(&str, &str, &str, f64); 8] = [
            (
                "strata_compactions_total",
                "counter",
                "Compactions completed.",
                s.completed.load(Relaxed) as f64,
            ),
            (
                "strata_compactions_failed_total",
                "counter",
                "Compactions that failed.",
                s.failed.load(Relaxed) as f64,
            ),
            (
                "strata_compactions_running",
                "gauge",
                "Compactions running now.",
                s.running.load(Relaxed) as f64,
            ),
            (
                "strata_compaction_blocks_in_total",
                "counter",
                "Input blocks merged by compactions.",
                s.blocks_in.load(Relaxed) as f64,
            ),
            (
                "strata_compaction_samples_in_total",
                "counter",
                "Samples read by compactions.",
                s.samples_in.load(Relaxed) as f64,
            ),
            (
                "strata_compaction_samples_out_total",
                "counter",
                "Samples written by compactions.",
                s.samples_out.load(Relaxed) as f64,
            ),
            (
                "strata_compaction_duration_seconds_total",
                "counter",
                "Wall time spent in completed compactions.",
                s.duration_us.load(Relaxed) as f64 / 1e6,
            ),
            (
                "strata_compaction_last_duration_seconds",
                "gauge",
                "Wall time of the last completed compaction.",
                s.last_duration_us.load(Relaxed) as f64 / 1e6,
            ),
        ];
        for (name, kind, help, v) in families {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
}

/// Options of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest request body accepted (bytes, compressed). Default: 32 MiB.
    pub max_request_body: usize,
    /// Largest decompressed remote-write/read body (bytes). Default: 64 MiB.
    pub max_decoded_body: usize,
    /// Samples a query may load. Default: 50 000 000.
    pub query_max_samples: usize,
    /// Default lookback delta (ms). Default: 5 minutes.
    pub lookback_ms: i64,
    /// Data directory (reported by runtimeinfo).
    pub data_dir: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_request_body: 32 << 20,
            max_decoded_body: 64 << 20,
            query_max_samples: 50_000_000,
            lookback_ms: strata_query::DEFAULT_LOOKBACK_MS,
            data_dir: "./data".into(),
        }
    }
}

impl AppState {
    /// State over an opened engine.
    pub fn new(engine: Arc<Engine>, limits: Limits, options: ServerOptions) -> Self {
        AppState {
            engine,
            metrics: Arc::new(SelfMetrics::default()),
            limits: Arc::new(limits),
            ready: Arc::new(AtomicBool::new(false)),
            loki: Arc::new(crate::loki::LokiState::lazy(&options.data_dir)),
            started: Instant::now(),
            start_time: SystemTime::now(),
            spanmetrics: Arc::new(crate::spanmetrics::SpanMetrics::default()),
            compaction: Arc::new(Compaction::default()),
            traces: Arc::new(TraceStore::empty(TraceOptions {
                data_dir: options.data_dir.clone().into(),
                ..TraceOptions::default()
            })),
            options: Arc::new(options),
        }
    }

    /// Uses these compactor settings (the default state has background compaction disabled).
    pub fn with_compaction(mut self, options: Option<strata_compaction::CompactorOptions>) -> Self {
        self.compaction = Arc::new(Compaction {
            options,
            stats: strata_compaction::CompactionStats::default(),
        });
        self
    }

    /// Uses an opened trace store (the default one starts empty under the data directory).
    pub fn with_traces(mut self, traces: Arc<TraceStore>) -> Self {
        self.traces = traces;
        self
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.options.max_request_body;
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .merge(crate::prom_api::routes())
        .merge(crate::remote::routes())
        .merge(crate::loki::routes())
        .merge(crate::otlp::http_routes())
        .merge(crate::tempo::routes())
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), account))
        .with_state(state)
}

/// Counts every request by route and status code and observes its latency.
async fn account(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    state.metrics.http_requests.inc(&[&route, &code]);
    state
        .metrics
        .http_duration
        .observe(&[&route], start.elapsed().as_secs_f64());
    resp
}

async fn healthy() -> &'static str {
    "Strata is Healthy.\n"
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Strata is Ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: replaying the WAL\n",
        )
            .into_response()
    }
}

async fn buildinfo() -> Response {
    // An empty `features` map tells Grafana this is a plain Prometheus flavour.
    success(
        serde_json::json!({
            "version": VERSION,
            "revision": option_env!("STRATA_GIT_REVISION").unwrap_or("unknown"),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "features": {},
        }),
        &[],
    )
}

async fn runtimeinfo(State(state): State<AppState>) -> Response {
    let start = state
        .start_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let series: u64 = state
        .engine
        .tenant_ids()
        .iter()
        .filter_map(|t| state.engine.existing_tenant(t))
        .map(|t| t.head().num_series())
        .sum();
    success(
        serde_json::json!({
            "startTime": crate::api::rfc3339(start as i64 * 1000),
            "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
            "reloadConfigSuccess": true,
            "lastConfigTime": crate::api::rfc3339(start as i64 * 1000),
            "corruptionCount": 0,
            "goroutineCount": 0,
            "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "GOMEMLIMIT": 0,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": "30d",
            "dataDir": state.options.data_dir,
            "headSeries": series,
            "uptimeSeconds": state.started.elapsed().as_secs(),
        }),
        &[],
    )
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut gauges = Vec::new();
    for id in state.engine.tenant_ids() {
        let Some(t) = state.engine.existing_tenant(&id) else {
            continue;
        };
        let head = t.head();
        gauges.push(GaugeSample {
            name: "strata_head_series",
            help: "Active series in the head, by tenant.",
            labels: vec![("tenant", id.clone())],
            value: head.num_series() as f64,
        });
        gauges.push(GaugeSample {
            name: "strata_head_chunks",
            help: "Chunks in the head (closed, open and out-of-order), by tenant.",
            labels: vec![("tenant", id.clone())],
            value: head.num_chunks() as f64,
        });
        gauges.push(GaugeSample {
            name: "strata_head_samples_appended",
            help: "Samples appended to the head since start (in order), by tenant.",
            labels: vec![("tenant", id.clone())],
            value: head.samples_appended().0 as f64,
        });
        gauges.push(GaugeSample {
            name: "strata_blocks_loaded",
            help: "Persistent blocks, by tenant.",
            labels: vec![("tenant", id.clone())],
            value: t.blocks().len() as f64,
        });
        let wal = t.wal_stats();
        gauges.push(GaugeSample {
            name: "strata_wal_fsyncs",
            help: "WAL fsyncs since start, by tenant.",
            labels: vec![("tenant", id.clone())],
            value: wal.fsyncs as f64,
        });
        gauges.push(GaugeSample {
            name: "strata_wal_fsync_seconds",
            help: "Total time spent in WAL fsyncs since start, by tenant.",
            labels: vec![("tenant", id.clone())],
            value: wal.fsync_seconds,
        });
    }
    // Same-name gauges must be adjacent in the text format.
    gauges.sort_by(|a, b| a.name.cmp(b.name));
    let mut text = state.metrics.render(&gauges);
    state.compaction.render(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
