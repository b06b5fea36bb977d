//! `strata`: the Strata server.
//!
//! Opens the data directory (removing blocks left incomplete by a crash, loading blocks,
//! replaying each tenant's WAL into its head), runs background maintenance (cutting blocks from
//! the head, compacting blocks, deleting blocks past the retention) and shuts down cleanly on SIGINT/SIGTERM: maintenance stops, every WAL is synced,
//! then the process exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use strata_engine::Engine;
use strata_engine::traces::TraceStore;
use strata_query::promqltest::{RunOptions, SkipKind, run_files};

use strata_server::app::{AppState, router};
use strata_server::config::Config;
use strata_server::limits::Limits;

/// Strata: one server for metrics, logs and traces.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Run PromQL test scripts (Prometheus's `*.test` format) against Strata's storage and
    /// PromQL engine; prints each failing eval and ends with `N passed, M failed`.
    Promqltest(PromqltestArgs),
    /// Backfill historical data as blocks (the server must not be running on the same data
    /// directory).
    #[command(subcommand)]
    Import(ImportCommand),
}

/// What `strata import` reads.
#[derive(Subcommand, Debug)]
enum ImportCommand {
    /// OpenMetrics text with a timestamp (seconds) on every sample, e.g.
    /// `http_requests_total{code="200"} 1027 1700000000`.
    Openmetrics(ImportArgs),
}

/// Arguments of `strata import openmetrics`.
#[derive(Args, Debug)]
struct ImportArgs {
    /// The OpenMetrics file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Tenant to import into.
    #[arg(long, default_value = strata_engine::db::DEFAULT_TENANT)]
    tenant: String,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Arguments of `strata promqltest`.
#[derive(Args, Debug, Clone)]
struct PromqltestArgs {
    /// Test scripts to run.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Also run Prometheus's implicit checks on every instant eval: the result must not change
    /// when every selector is pinned with `@`, and must match a range query's point.
    #[arg(long)]
    strict: bool,
    /// Do not skip evals of this kind (repeatable; `all` for every kind). Kinds:
    /// native-histograms, start-timestamps, type-and-unit-labels, info-function,
    /// extended-range-selectors, duration-expressions, fill-modifiers.
    #[arg(long = "no-skip", value_name = "KIND", value_parser = parse_no_skip)]
    no_skip: Vec<NoSkip>,
}

/// A `--no-skip` value.
#[derive(Debug, Clone, Copy)]
enum NoSkip {
    All,
    Kind(SkipKind),
}

fn parse_no_skip(s: &str) -> Result<NoSkip, String> {
    if s == "all" {
        Ok(NoSkip::All)
    } else {
        s.parse().map(NoSkip::Kind)
    }
}

/// Runs `strata promqltest`: exit code 0 when nothing failed, 1 otherwise.
// The report is this command's output, so it goes to stdout (library code only returns it).
#[allow(clippy::print_stdout)]
fn promqltest(args: &PromqltestArgs) -> ExitCode {
    let skip = SkipKind::all()
        .into_iter()
        .filter(|k| {
            !args.no_skip.iter().any(|n| match n {
                NoSkip::All => true,
                NoSkip::Kind(x) => x == k,
            })
        })
        .collect();
    let opts = RunOptions {
        skip,
        strict: args.strict,
    };
    let report = run_files(&args.files, &opts);
    println!("{report}");
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Args, Debug, Clone, Default)]
struct ServeArgs {
    /// Configuration file (TOML). Every option has a default; see docs/CONFIG.md.
    #[arg(long, value_name = "FILE", env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./data; overrides `data_dir` in the config file].
    #[arg(long, value_name = "DIR", env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Repair a corrupt WAL at start-up instead of refusing to start: everything after the
    /// corruption is dropped and reported.
    #[arg(long)]
    repair_wal: bool,
    /// WAL sync policy: `batch` (fsync before acknowledging each write) or a duration such as
    /// `100ms` [default: batch; overrides `wal.sync`].
    #[arg(long, value_name = "POLICY", env = "STRATA_WAL_SYNC")]
    wal_sync: Option<String>,
    /// Address of the HTTP API [default: 0.0.0.0:8080; overrides `server.http_addr`].
    #[arg(long, value_name = "ADDR", env = "STRATA_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Address of the OTLP gRPC listener (`TraceService`), `none` to disable
    /// [default: 0.0.0.0:4317; overrides `server.otlp_grpc_addr`].
    #[arg(long, value_name = "ADDR", env = "STRATA_OTLP_GRPC_ADDR")]
    otlp_grpc_addr: Option<String>,
    /// Address of the OTLP HTTP listener (`/v1/traces`), `none` to disable
    /// [default: 0.0.0.0:4318; overrides `server.otlp_http_addr`].
    #[arg(long, value_name = "ADDR", env = "STRATA_OTLP_HTTP_ADDR")]
    otlp_http_addr: Option<String>,
    /// Log filter, e.g. `info` or `strata_engine=debug` [default: info].
    #[arg(long, value_name = "FILTER", env = "STRATA_LOG")]
    log: Option<String>,
}

fn init_logging(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Promqltest(a)) => return promqltest(&a),
        Some(Command::Import(ImportCommand::Openmetrics(a))) => {
            init_logging(a.serve.log.as_deref());
            return match import_openmetrics(&a) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        None => cli.serve,
    };
    init_logging(args.log.as_deref());
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `strata import openmetrics FILE`: parses the whole file, then writes its samples as blocks
/// of the tenant (opening the data directory takes the WAL lock, so a running server on the
/// same directory makes this fail rather than write behind its back).
fn import_openmetrics(a: &ImportArgs) -> anyhow::Result<()> {
    let cfg = match &a.serve.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let data_dir = a
        .serve
        .data_dir
        .clone()
        .or_else(|| cfg.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./data"));
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", a.file.display()))?;
    let series = strata_server::import::parse_openmetrics(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let samples: usize = series.values().map(Vec::len).sum();
    let (engine, _) = Engine::open(cfg.engine_options(data_dir.clone())?)
        .map_err(|e| anyhow::anyhow!("opening data directory {}: {e}", data_dir.display()))?;
    let db = engine.tenant(&a.tenant)?;
    let blocks = db.import(&series)?;
    engine.close()?;
    tracing::info!(
        file = %a.file.display(),
        tenant = %a.tenant,
        series = series.len(),
        samples,
        blocks = blocks.len(),
        "import finished"
    );
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = &args.wal_sync {
        cfg.wal.sync = s.clone();
    }
    if args.repair_wal {
        cfg.wal.repair = true;
    }
    if let Some(a) = &args.http_addr {
        cfg.server.http_addr = a.clone();
    }
    if let Some(a) = &args.otlp_grpc_addr {
        cfg.server.otlp_grpc_addr = a.clone();
    }
    if let Some(a) = &args.otlp_http_addr {
        cfg.server.otlp_http_addr = a.clone();
    }
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| cfg.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./data"));
    let opts = cfg.engine_options(data_dir.clone())?;
    let compactor = cfg.compactor_options(&opts)?;
    let interval = cfg.maintenance_interval()?;
    let retention = cfg.metrics_retention_policy()?;
    let downsample = cfg.downsample_options()?;
    let retention_bytes = cfg.metrics_retention_size()?;
    let server_opts = cfg.server_options(&data_dir)?;
    let http_addr: std::net::SocketAddr = cfg
        .server
        .http_addr
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid HTTP address {:?}: {e}", cfg.server.http_addr))?;

    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %data_dir.display(), "starting strata");
    let started = std::time::Instant::now();
    let (engine, reports) = Engine::open(opts)
        .map_err(|e| anyhow::anyhow!("opening data directory {}: {e}", data_dir.display()))?;
    for r in &reports {
        tracing::info!(
            tenant = %r.tenant,
            blocks = r.blocks,
            incomplete_blocks_removed = r.incomplete_blocks_removed,
            wal_records = r.wal_records,
            series = r.series,
            samples = r.samples,
            samples_skipped = r.samples_skipped,
            replay_ms = r.replay_time.as_millis() as u64,
            "opened tenant"
        );
        if let Some(repair) = &r.repair {
            tracing::warn!(tenant = %r.tenant, %repair, "WAL was repaired");
        }
    }
    let engine = Arc::new(engine);
    let trace_opts = cfg.trace_options(engine.options())?;
    let (traces, trace_reports) = TraceStore::open(trace_opts)
        .map_err(|e| anyhow::anyhow!("opening trace store in {}: {e}", data_dir.display()))?;
    for r in &trace_reports {
        tracing::info!(tenant = %r.tenant, blocks = r.blocks, spans = r.spans_replayed, "opened tenant traces");
        if let Some(repair) = &r.repair {
            tracing::warn!(tenant = %r.tenant, %repair, "trace WAL was repaired");
        }
    }
    let traces = Arc::new(traces);
    let tenants = reports.len();
    let limits = Limits::new(cfg.limits.clone());
    for id in engine.tenant_ids() {
        if let Some(t) = engine.existing_tenant(&id) {
            t.set_max_series(limits.for_tenant(&id).max_series);
        }
    }
    let state = AppState::new(engine.clone(), limits, server_opts)
        .with_traces(traces.clone())
        .with_compaction(compactor);
    let state = strata_server::loki::install(state, &cfg, engine.options())?;
    let logs = state.loki.clone();
    let otlp_grpc = otlp_listener_addr(
        &cfg.server.otlp_grpc_addr,
        "gRPC",
        args.otlp_grpc_addr.is_some(),
    )?;
    let otlp_http = otlp_listener_addr(
        &cfg.server.otlp_http_addr,
        "HTTP",
        args.otlp_http_addr.is_some(),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata")
        .build()?;
    runtime.block_on(async {
        // Signal handlers are installed before announcing readiness, so a SIGTERM sent after
        // "storage ready" always gets a clean shutdown.
        let shutdown = ShutdownSignal::install()?;
        let listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding HTTP address {http_addr}: {e}"))?;
        let otlp = OtlpListeners {
            grpc: bind_otlp(otlp_grpc, "gRPC").await?,
            http: bind_otlp(otlp_http, "HTTP").await?,
        };
        state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(
            tenants,
            http_addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storage ready"
        );
        let maintenance = Maintenance {
            interval,
            retention,
            retention_bytes,
            downsample,
        };
        run(engine.clone(), state, listener, otlp, maintenance, shutdown).await
    })?;
    runtime.shutdown_timeout(Duration::from_secs(10));
    engine.close()?;
    strata_server::loki::shutdown(&logs);
    traces.close()?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Writes the downsampled copies that are due in every tenant; errors are logged per tenant.
fn downsample_tenants(engine: &Engine, opts: &strata_compaction::downsample::DownsampleOptions) {
    for id in engine.tenant_ids() {
        let Some(db) = engine.existing_tenant(&id) else {
            continue;
        };
        if let Err(e) = strata_compaction::downsample::downsample_due(&db, opts) {
            tracing::error!(tenant = %id, error = %e, "downsampling failed");
        }
    }
}

/// What the background maintenance does and how often.
struct Maintenance {
    /// How often it runs.
    interval: Duration,
    /// Metrics retention per resolution.
    retention: strata_engine::ResolutionRetention,
    /// Per-tenant size limit of metric blocks (bytes); 0: none.
    retention_bytes: u64,
    /// When old blocks get downsampled copies; `None`: never.
    downsample: Option<strata_compaction::downsample::DownsampleOptions>,
}

async fn run(
    engine: Arc<Engine>,
    state: AppState,
    listener: tokio::net::TcpListener,
    otlp: OtlpListeners,
    maintenance: Maintenance,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    let Maintenance {
        interval,
        retention,
        retention_bytes,
        downsample,
    } = maintenance;
    // One signal, broadcast to every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = Vec::new();
    if let Some(l) = otlp.grpc {
        let routes = strata_server::otlp::grpc_routes(&state);
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(l), stop)
                .await
                .map_err(|e| anyhow::anyhow!("OTLP gRPC server: {e}"))
        }));
    }
    if let Some(l) = otlp.http {
        let app = strata_server::otlp::http_router(state.clone());
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| anyhow::anyhow!("OTLP HTTP server: {e}"))
        }));
    }
    let maint_traces = state.traces.clone();
    let flush_state = state.clone();
    let trace_maintenance = tokio::spawn(async move {
        let mut last_flush = std::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let t = maint_traces.clone();
            // Errors are logged inside `maintain` and `flush`.
            let _ = tokio::task::spawn_blocking(move || t.maintain()).await;
            if last_flush.elapsed() >= strata_server::spanmetrics::FLUSH_INTERVAL {
                last_flush = std::time::Instant::now();
                let st = flush_state.clone();
                let _ = tokio::task::spawn_blocking(move || st.spanmetrics.flush(&st)).await;
            }
        }
    });
    let maint_engine = engine.clone();
    let maint_compaction = state.compaction.clone();
    let maint_logs = state.loki.clone();
    let maintenance = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let e = maint_engine.clone();
            let c = maint_compaction.clone();
            let l = maint_logs.clone();
            // Errors are logged inside `maintain`, the compactor, the downsampler and
            // `apply_retention`; the loop keeps running. Compaction runs after the cut so a new
            // block is merged in the same round, downsampling after compaction so it copies
            // merged blocks, retention last so it sees whole merged blocks.
            let _ = tokio::task::spawn_blocking(move || {
                let _ = e.maintain();
                c.run(&e);
                if let Some(opts) = &downsample {
                    downsample_tenants(&e, opts);
                }
                l.engine.apply_retention(&l.settings.retention);
                e.apply_retention_policy_and_size(&retention, retention_bytes)
            })
            .await;
        }
    });
    let app = router(state.clone());
    // Stop accepting on a signal; in-flight requests (writes included) finish first.
    // With the peer address, which the audit log of admin operations records.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            if let Err(e) = shutdown.wait().await {
                tracing::error!(error = %e, "waiting for shutdown signal failed");
            }
            tracing::info!("shutdown signal received; finishing in-flight requests");
            let _ = stop_tx.send(true);
        })
        .await?;
    for s in servers {
        match s.await {
            Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
            Err(e) => tracing::error!(error = %e, "listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    trace_maintenance.abort();
    let _ = trace_maintenance.await;
    // The last span metrics reach the engine before it is closed.
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || st.spanmetrics.flush(&st)).await;
    state
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    maintenance.abort();
    let _ = maintenance.await;
    tracing::info!("HTTP server stopped; syncing");
    Ok(())
}

/// The OTLP listeners that are enabled and bound.
struct OtlpListeners {
    grpc: Option<tokio::net::TcpListener>,
    http: Option<tokio::net::TcpListener>,
}

/// Parses an OTLP listener address (`none` disables it). The flag says whether the operator
/// chose it: a chosen address that cannot be bound stops start-up; the default one only warns.
fn otlp_listener_addr(
    addr: &str,
    what: &'static str,
    explicit: bool,
) -> anyhow::Result<Option<(std::net::SocketAddr, bool)>> {
    if addr.eq_ignore_ascii_case("none") {
        tracing::info!("OTLP {what} listener disabled");
        return Ok(None);
    }
    let default = if what == "gRPC" {
        strata_server::config::DEFAULT_OTLP_GRPC_ADDR
    } else {
        strata_server::config::DEFAULT_OTLP_HTTP_ADDR
    };
    let parsed = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid OTLP {what} address {addr:?}: {e}"))?;
    Ok(Some((parsed, explicit || addr != default)))
}

async fn bind_otlp(
    addr: Option<(std::net::SocketAddr, bool)>,
    what: &'static str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some((addr, explicit)) = addr else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "OTLP {what} listener");
            Ok(Some(l))
        }
        Err(e) if !explicit => {
            tracing::warn!(%addr, error = %e, "cannot bind the default OTLP {what} address; the listener is off (set --otlp-{}-addr)", what.to_ascii_lowercase());
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("binding OTLP {what} address {addr}: {e}")),
    }
}

/// SIGINT or SIGTERM, registered up front.
struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        Ok(())
    }
}
