//! A deterministic generator of realistic scrape data.
//!
//! Compression ratios, head memory and query speed all depend on what the data looks like, so a
//! benchmark fed with sine waves or random floats measures the wrong thing. This generator
//! imitates what Prometheus scrapes from a fleet of Linux hosts running Kubernetes workloads:
//!
//! - per host a **node exporter** target (`job="node"`, `instance="10.0.x.y:9100"`):
//!   `node_cpu_seconds_total{cpu,mode}` (USER_HZ ticks, so two decimals, the modes of one CPU
//!   adding up to the elapsed time), `node_memory_*_bytes` (page multiples), network and disk
//!   byte/operation counters (integers), `node_disk_io_time_seconds_total` (milliseconds),
//!   `node_filesystem_{avail,size}_bytes`, load averages (two decimals), `node_procs_running`,
//!   context switches, interrupts and the boot time;
//! - per host an **application** target (`job="api"`, `instance="10.0.x.y:8080"`) exposing the
//!   classic histogram `http_request_duration_seconds{handler,method,code}` with the default
//!   `le` ladder 0.005 … 10, +Inf, plus `_sum` and `_count`; bucket counters are cumulative
//!   over `le`, monotone over time and integer;
//! - per cluster of up to 100 hosts a **kube-state-metrics** target with
//!   `kube_deployment_status_replicas{namespace,deployment}` and, for the pods running on each
//!   host, `kube_pod_container_status_restarts_total{namespace,pod,uid,container}`.
//!
//! Counters grow at per-second rates that wander slowly, with per-scrape noise; a target that
//! restarts (a host reboot, an application restart; probability
//! [`GenConfig::restart_prob`] per target and scrape) resets its counters to small values, as
//! a real process restart does. Each target is scraped every [`GenConfig::interval_ms`] at a
//! fixed phase within the interval (Prometheus spreads targets that way). Most scrapes land
//! exactly on that schedule — Prometheus snaps scrape timestamps that are within a few ms of it
//! to the grid, and in the real capture 96 % of consecutive timestamps are exactly one interval
//! apart — and the rest deviate by 1 to [`GenConfig::jitter_ms`] ms (log-uniform, so small
//! deviations are the common ones). The deviation is drawn once per target and scrape and
//! shared by all its series, as a real scrape's timestamp is.
//!
//! Everything derives from [`GenConfig::seed`] through the crate's own PRNG, so a seed always
//! yields the same series and the same samples.

use strata_engine::{Label, Labels};

use crate::rng::Rng;

/// The kind of a series, for per-type reports (compression differs a lot between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    /// A monotone counter (including a histogram's `_sum` and `_count`).
    Counter,
    /// A gauge.
    Gauge,
    /// A classic histogram bucket counter (`_bucket` with an `le` label).
    HistogramBucket,
}

impl MetricType {
    /// All types, in report order.
    pub const ALL: [MetricType; 3] = [
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::HistogramBucket,
    ];

    /// Short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::HistogramBucket => "histogram_bucket",
        }
    }

    /// Guesses the type of a series from its metric name by the Prometheus naming conventions
    /// (`_bucket`, `_total`/`_count`/`_sum`, anything else a gauge). Used for data without
    /// metadata, such as the real capture.
    pub fn guess(metric_name: &str) -> MetricType {
        if metric_name.ends_with("_bucket") {
            MetricType::HistogramBucket
        } else if metric_name.ends_with("_total")
            || metric_name.ends_with("_count")
            || metric_name.ends_with("_sum")
        {
            MetricType::Counter
        } else {
            MetricType::Gauge
        }
    }
}

/// Configuration of a [`Generator`].
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Seed of everything: equal seeds give equal series and samples.
    pub seed: u64,
    /// Number of simulated hosts (about 180 series each on average).
    pub hosts: usize,
    /// Scrape interval in ms. Default: 15 000.
    pub interval_ms: i64,
    /// Probability that a scrape's timestamp lands exactly on the target's schedule.
    /// Default: 0.98 (calibrated on the real capture, where 96 % of deltas are exact: an off-grid scrape spoils two deltas).
    pub on_grid_prob: f64,
    /// Maximum absolute deviation of an off-grid scrape in ms; clamped below half the interval so timestamps of
    /// a series stay strictly increasing. Default: 50.
    pub jitter_ms: i64,
    /// Time of the first scrape round in ms since the epoch. Default: 2024-01-01T00:00:00Z.
    pub start_ms: i64,
    /// Probability per target and scrape that the target restarted since the previous scrape
    /// (its counters start over). Default: 1/5760, about once a day at 15 s.
    pub restart_prob: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            hosts: 10,
            interval_ms: 15_000,
            jitter_ms: 50,
            on_grid_prob: 0.98,
            start_ms: 1_704_067_200_000,
            restart_prob: 1.0 / 5760.0,
        }
    }
}

impl GenConfig {
    /// The default configuration with a given seed and number of hosts.
    pub fn new(seed: u64, hosts: usize) -> Self {
        GenConfig {
            seed,
            hosts,
            ..GenConfig::default()
        }
    }
}

/// Bucket upper bounds of the default Prometheus client histogram, as exposed in `le`.
pub const LE_LADDER: [(f64, &str); 12] = [
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.025, "0.025"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1"),
    (2.5, "2.5"),
    (5.0, "5"),
    (10.0, "10"),
    (f64::INFINITY, "+Inf"),
];
const BUCKETS: usize = LE_LADDER.len();
const FINITE_BUCKETS: usize = BUCKETS - 1;

/// CPU modes in the order node exporter emits them.
const CPU_MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const IDLE: usize = 0;

const PAGE: f64 = 4096.0;
const GIB_PAGES: f64 = (1u64 << 30) as f64 / PAGE;
const HOSTS_PER_CLUSTER: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Node,
    App,
    KubeStateMetrics,
}

#[derive(Clone, Debug)]
struct Target {
    kind: TargetKind,
    /// Offset of this target's scrapes within the interval.
    phase_ms: i64,
    rng: Rng,
    /// Timestamp of the current scrape.
    t: i64,
    /// Time since the previous scrape of this target (the interval for the first one).
    dt_ms: i64,
    /// Whether the target restarted before the current scrape.
    restarted: bool,
}

/// A group of series whose values are produced together.
#[derive(Clone, Debug)]
enum Unit {
    Cpu(Box<CpuUnit>),
    Counter(CounterUnit),
    Gauge(GaugeUnit),
    Histogram(Box<HistUnit>),
}

/// One CPU: eight `node_cpu_seconds_total` series, one per mode.
#[derive(Clone, Debug)]
struct CpuUnit {
    target: u32,
    first: u32,
    ticks: [u64; 8],
    /// Typical share of each mode (the idle entry is unused: idle takes the rest).
    share: [f64; 8],
}

#[derive(Clone, Copy, Debug)]
enum CounterKind {
    /// Grows at `rate` units per second; resets when the target restarts.
    Rate,
    /// Busy time in ms; grows at most by the elapsed time.
    BusyMillis,
    /// Increments by one with probability `p` per scrape; never resets (state from the API
    /// server, not a process counter).
    Event { p: f64 },
}

#[derive(Clone, Debug)]
struct CounterUnit {
    target: u32,
    idx: u32,
    kind: CounterKind,
    units: u64,
    rate: f64,
    base_rate: f64,
    /// Divisor from units to the exposed value (1 for bytes, 1000 for milliseconds).
    scale: f64,
}

#[derive(Clone, Copy, Debug)]
enum GaugeKind {
    /// Never changes.
    Const,
    /// Mean-reverting walk over whole pages, exposed in bytes.
    Pages { mean: f64, sigma: f64, max: f64 },
    /// Mean-reverting walk exposed with two decimals (load averages).
    Centi { mean: f64, sigma: f64, theta: f64 },
    /// A small count redrawn every scrape (Poisson around `mean`, at least 1).
    Count { mean: f64 },
    /// Free blocks of a file system: used space grows, an occasional clean-up frees some.
    FsAvail { size: f64, fill_per_s: f64 },
    /// A replica count that an autoscaler moves by one now and then.
    Replicas,
}

#[derive(Clone, Debug)]
struct GaugeUnit {
    target: u32,
    idx: u32,
    kind: GaugeKind,
    /// Current value in the kind's unit (pages, blocks, or the value itself).
    value: f64,
}

/// One `http_request_duration_seconds` label combination: 12 buckets, `_sum`, `_count`.
#[derive(Clone, Debug)]
struct HistUnit {
    target: u32,
    first: u32,
    /// Cumulative counts per bucket (over `le`), monotone between restarts.
    cum: [u64; BUCKETS],
    sum: f64,
    rate: f64,
    /// P(latency <= le) of each finite bucket.
    cdf: [f64; FINITE_BUCKETS],
    mean_latency: f64,
}

/// The generator: a fixed set of series and their evolving state.
#[derive(Clone, Debug)]
pub struct Generator {
    cfg: GenConfig,
    series: Vec<Labels>,
    types: Vec<MetricType>,
    targets: Vec<Target>,
    units: Vec<Unit>,
    scrape: u64,
}

impl Generator {
    /// Builds the series of `cfg.hosts` hosts.
    pub fn new(cfg: GenConfig) -> Self {
        let hosts = cfg.hosts;
        let mut b = Builder::new(cfg);
        for _ in 0..hosts {
            b.add_host();
        }
        b.finish()
    }

    /// Builds at least `n` series (whole hosts are added until there are `n`; the last host
    /// may overshoot by a few hundred series). `cfg.hosts` is ignored and set to the number of
    /// hosts used.
    pub fn with_min_series(cfg: GenConfig, n: usize) -> Self {
        let mut b = Builder::new(cfg);
        while b.series.len() < n {
            b.add_host();
        }
        b.cfg.hosts = b.hosts;
        b.finish()
    }

    /// The configuration (with the jitter as clamped).
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// All series, in a fixed order: index `i` of every sample buffer is series `i`.
    pub fn series(&self) -> &[Labels] {
        &self.series
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The type of series `i` (gauge for an index out of range).
    pub fn metric_type(&self, i: usize) -> MetricType {
        self.types.get(i).copied().unwrap_or(MetricType::Gauge)
    }

    /// Number of scrapes produced so far.
    pub fn scrapes_done(&self) -> u64 {
        self.scrape
    }

    /// Advances one scrape for every series: fills `out[i]` with the sample of series `i`.
    pub fn next_scrape(&mut self, out: &mut Vec<(i64, f64)>) {
        out.clear();
        out.resize(self.series.len(), (0, 0.0));
        let k = self.scrape;
        let interval = self.cfg.interval_ms;
        let jitter = self.cfg.jitter_ms;
        let on_grid = self.cfg.on_grid_prob;
        let round_start = self
            .cfg
            .start_ms
            .saturating_add(interval.saturating_mul(k as i64));
        for tg in &mut self.targets {
            let t = round_start
                .saturating_add(tg.phase_ms)
                .saturating_add(scrape_jitter(&mut tg.rng, on_grid, jitter));
            if k == 0 {
                tg.dt_ms = interval;
                tg.restarted = false;
            } else {
                tg.dt_ms = t.saturating_sub(tg.t).max(1);
                tg.restarted =
                    tg.kind != TargetKind::KubeStateMetrics && tg.rng.chance(self.cfg.restart_prob);
            }
            tg.t = t;
        }
        for unit in &mut self.units {
            step_unit(unit, &mut self.targets, out);
        }
        self.scrape += 1;
    }

    /// `scrapes` consecutive samples of every series, per series (`result[i]` is series `i`).
    pub fn series_samples(&mut self, scrapes: usize) -> Vec<Vec<(i64, f64)>> {
        let mut per_series: Vec<Vec<(i64, f64)>> = (0..self.series.len())
            .map(|_| Vec::with_capacity(scrapes))
            .collect();
        let mut buf = Vec::new();
        for _ in 0..scrapes {
            self.next_scrape(&mut buf);
            for (dst, &s) in per_series.iter_mut().zip(&buf) {
                dst.push(s);
            }
        }
        per_series
    }

    /// The scheduled (jitter-free) time of scrape `k` of the target of series `i`.
    #[cfg(test)]
    fn scheduled(&self, i: usize, k: u64) -> Option<i64> {
        let ti = self.units.iter().find_map(|u| match u {
            Unit::Cpu(c) if (c.first as usize..c.first as usize + 8).contains(&i) => Some(c.target),
            Unit::Histogram(h)
                if (h.first as usize..h.first as usize + BUCKETS + 2).contains(&i) =>
            {
                Some(h.target)
            }
            Unit::Counter(c) if c.idx as usize == i => Some(c.target),
            Unit::Gauge(g) if g.idx as usize == i => Some(g.target),
            _ => None,
        })?;
        let tg = self.targets.get(ti as usize)?;
        Some(self.cfg.start_ms + self.cfg.interval_ms * k as i64 + tg.phase_ms)
    }
}

/// Deviation of one scrape from its schedule: 0 with probability `on_grid`, otherwise a
/// log-uniform magnitude in `1..=max` with a random sign.
fn scrape_jitter(rng: &mut Rng, on_grid: f64, max: i64) -> i64 {
    if max <= 0 || rng.chance(on_grid) {
        return 0;
    }
    let mag = ((max as f64).ln() * rng.next_f64()).exp().round() as i64;
    let mag = mag.clamp(1, max);
    if rng.chance(0.5) { mag } else { -mag }
}

fn set(out: &mut [(i64, f64)], idx: usize, t: i64, v: f64) {
    if let Some(slot) = out.get_mut(idx) {
        *slot = (t, v);
    }
}

fn step_unit(unit: &mut Unit, targets: &mut [Target], out: &mut [(i64, f64)]) {
    let ti = match unit {
        Unit::Cpu(u) => u.target,
        Unit::Counter(u) => u.target,
        Unit::Gauge(u) => u.target,
        Unit::Histogram(u) => u.target,
    };
    let Some(tg) = targets.get_mut(ti as usize) else {
        return;
    };
    let (t, dt, restarted) = (tg.t, tg.dt_ms, tg.restarted);
    let rng = &mut tg.rng;
    match unit {
        Unit::Cpu(u) => step_cpu(u, rng, t, dt, restarted, out),
        Unit::Counter(u) => step_counter(u, rng, t, dt, restarted, out),
        Unit::Gauge(u) => step_gauge(u, rng, t, dt, out),
        Unit::Histogram(u) => step_hist(u, rng, t, dt, restarted, out),
    }
}

fn step_cpu(
    u: &mut CpuUnit,
    rng: &mut Rng,
    t: i64,
    dt: i64,
    restarted: bool,
    out: &mut [(i64, f64)],
) {
    if restarted {
        // The host rebooted: ticks count from boot again, a few dozen seconds ago.
        let up_ticks = rng.uniform(2_000.0, 6_000.0);
        let busy: f64 = u.share.iter().skip(1).sum();
        for (m, ticks) in u.ticks.iter_mut().enumerate() {
            let share = if m == IDLE { 1.0 - busy } else { u.share[m] };
            *ticks = (up_ticks * share).round() as u64;
        }
    }
    // USER_HZ = 100: the kernel accounts CPU time in 10 ms ticks.
    let elapsed = (dt as f64 / 10.0).round().max(0.0) as u64;
    let load = (0.35 * rng.normal()).exp();
    let mut busy_ticks = 0u64;
    for m in 1..CPU_MODES.len() {
        let share = u.share[m];
        if share <= 0.0 {
            continue;
        }
        let want = elapsed as f64 * share * load * (1.0 + 0.2 * rng.normal());
        let inc = (want.max(0.0).round() as u64).min(elapsed.saturating_sub(busy_ticks));
        busy_ticks += inc;
        u.ticks[m] += inc;
    }
    u.ticks[IDLE] += elapsed.saturating_sub(busy_ticks);
    for (m, ticks) in u.ticks.iter().enumerate() {
        set(out, u.first as usize + m, t, *ticks as f64 / 100.0);
    }
}

fn step_counter(
    u: &mut CounterUnit,
    rng: &mut Rng,
    t: i64,
    dt: i64,
    restarted: bool,
    out: &mut [(i64, f64)],
) {
    match u.kind {
        CounterKind::Event { p } => {
            if rng.chance(p) {
                u.units += 1;
            }
        }
        CounterKind::Rate | CounterKind::BusyMillis => {
            if restarted {
                u.units = (u.rate * rng.uniform(5.0, 60.0)).round() as u64;
            }
            let mean = u.rate * dt as f64 / 1000.0;
            let mut inc = if mean < 30.0 {
                rng.poisson(mean)
            } else {
                (mean * (0.3 * rng.normal() - 0.045).exp()).round() as u64
            };
            if matches!(u.kind, CounterKind::BusyMillis) {
                inc = inc.min(dt.max(0) as u64);
            }
            u.units += inc;
            u.rate =
                (u.rate * (0.03 * rng.normal()).exp()).clamp(u.base_rate / 3.0, u.base_rate * 3.0);
        }
    }
    set(out, u.idx as usize, t, u.units as f64 / u.scale);
}

fn step_gauge(u: &mut GaugeUnit, rng: &mut Rng, t: i64, dt: i64, out: &mut [(i64, f64)]) {
    let v = match u.kind {
        GaugeKind::Const => u.value,
        GaugeKind::Pages { mean, sigma, max } => {
            let next = u.value + sigma * rng.normal() - 0.05 * (u.value - mean);
            u.value = next.round().clamp(0.0, max);
            u.value * PAGE
        }
        GaugeKind::Centi { mean, sigma, theta } => {
            let next = u.value + sigma * rng.normal() - theta * (u.value - mean);
            u.value = next.max(0.0);
            (u.value * 100.0).round() / 100.0
        }
        GaugeKind::Count { mean } => (rng.poisson(mean) + 1) as f64,
        GaugeKind::FsAvail { size, fill_per_s } => {
            let used = rng.poisson(fill_per_s * dt as f64 / 1000.0) as f64;
            u.value = (u.value - used).max(0.0);
            if rng.chance(0.002) || u.value < size * 0.05 {
                // Log rotation or a clean-up job frees a slice of the disk.
                u.value = (u.value + (size * rng.uniform(0.01, 0.2)).round()).min(size);
            }
            u.value * PAGE
        }
        GaugeKind::Replicas => {
            if rng.chance(0.0005) {
                u.value = if rng.chance(0.5) {
                    u.value + 1.0
                } else {
                    (u.value - 1.0).max(1.0)
                };
            }
            u.value
        }
    };
    set(out, u.idx as usize, t, v);
}

fn step_hist(
    u: &mut HistUnit,
    rng: &mut Rng,
    t: i64,
    dt: i64,
    restarted: bool,
    out: &mut [(i64, f64)],
) {
    if restarted {
        u.cum = [0; BUCKETS];
        u.sum = 0.0;
    }
    let burst = (0.2 * rng.normal()).exp();
    let n = rng.poisson(u.rate * dt as f64 / 1000.0 * burst);
    if n > 0 {
        // Split the new requests over the buckets (sequential conditional binomials), then add
        // them cumulatively over `le`.
        let mut remaining = n;
        let mut prev = 0.0;
        let mut running = 0u64;
        for (i, cum) in u.cum.iter_mut().enumerate() {
            let k = match u.cdf.get(i) {
                Some(&p) => {
                    let q = if prev < 1.0 {
                        (p - prev) / (1.0 - prev)
                    } else {
                        0.0
                    };
                    prev = p;
                    rng.binomial(remaining, q)
                }
                None => remaining,
            };
            remaining -= k;
            running += k;
            *cum += running;
        }
        u.sum += n as f64 * u.mean_latency * (0.15 * rng.normal()).exp();
    }
    let first = u.first as usize;
    for (i, &c) in u.cum.iter().enumerate() {
        set(out, first + i, t, c as f64);
    }
    set(out, first + BUCKETS, t, u.sum);
    set(out, first + BUCKETS + 1, t, u.cum[BUCKETS - 1] as f64);
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26 erf, absolute error below 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let s = z.signum();
    let a = z.abs();
    let k = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = k
        * (0.254_829_592
            + k * (-0.284_496_736
                + k * (1.421_413_741 + k * (-1.453_152_027 + k * 1.061_405_429))));
    let erf = s * (1.0 - poly * (-a * a).exp());
    0.5 * (1.0 + erf)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut v: Vec<Label> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(n, value)| Label::new(*n, *value))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.dedup_by(|a, b| a.name == b.name);
    Labels::from_sorted(v)
}

struct Deployment {
    namespace: &'static str,
    name: String,
    rs_hash: String,
}

struct Cluster {
    target: u32,
    instance: String,
    deployments: Vec<Deployment>,
}

struct Builder {
    cfg: GenConfig,
    rng: Rng,
    hosts: usize,
    series: Vec<Labels>,
    types: Vec<MetricType>,
    targets: Vec<Target>,
    units: Vec<Unit>,
    clusters: Vec<Cluster>,
}

const NAMESPACES: [&str; 8] = [
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "checkout",
    "search",
    "ingest",
    "auth",
];
const DEPLOYMENTS: [&str; 12] = [
    "api",
    "web",
    "worker",
    "gateway",
    "cache",
    "scheduler",
    "indexer",
    "billing",
    "frontend",
    "notifier",
    "auth",
    "reporter",
];
const K8S_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `(handler, method, code, requests/s, median latency s, log-sigma, always present)`.
const HANDLERS: [(&str, &str, &str, f64, f64, f64, bool); 6] = [
    ("/api/v1/write", "POST", "204", 40.0, 0.008, 0.6, true),
    ("/api/v1/query", "GET", "200", 3.0, 0.03, 1.0, true),
    ("/api/v1/query_range", "GET", "200", 1.5, 0.12, 1.1, true),
    ("/api/v1/write", "POST", "500", 0.02, 0.05, 1.0, false),
    ("/api/v1/query", "GET", "400", 0.05, 0.002, 0.5, false),
    ("/-/healthy", "GET", "200", 0.1, 0.0005, 0.3, false),
];

impl Builder {
    fn new(mut cfg: GenConfig) -> Self {
        cfg.interval_ms = cfg.interval_ms.max(1);
        cfg.jitter_ms = cfg.jitter_ms.clamp(0, (cfg.interval_ms - 1) / 2);
        Builder {
            rng: Rng::derive(cfg.seed, 0),
            cfg,
            hosts: 0,
            series: Vec::new(),
            types: Vec::new(),
            targets: Vec::new(),
            units: Vec::new(),
            clusters: Vec::new(),
        }
    }

    fn finish(self) -> Generator {
        Generator {
            cfg: self.cfg,
            series: self.series,
            types: self.types,
            targets: self.targets,
            units: self.units,
            scrape: 0,
        }
    }

    fn add_target(&mut self, kind: TargetKind) -> u32 {
        let id = self.targets.len() as u32;
        let phase_ms = self.rng.below(self.cfg.interval_ms as u64) as i64;
        self.targets.push(Target {
            kind,
            phase_ms,
            rng: Rng::derive(self.cfg.seed, u64::from(id) + 1),
            t: 0,
            dt_ms: self.cfg.interval_ms,
            restarted: false,
        });
        id
    }

    fn push_series(&mut self, l: Labels, ty: MetricType) -> u32 {
        let idx = self.series.len() as u32;
        self.series.push(l);
        self.types.push(ty);
        idx
    }

    fn counter(
        &mut self,
        target: u32,
        l: Labels,
        kind: CounterKind,
        units: u64,
        rate: f64,
        scale: f64,
    ) {
        let idx = self.push_series(l, MetricType::Counter);
        self.units.push(Unit::Counter(CounterUnit {
            target,
            idx,
            kind,
            units,
            rate,
            base_rate: rate,
            scale,
        }));
    }

    fn gauge(&mut self, target: u32, l: Labels, kind: GaugeKind, value: f64) {
        let idx = self.push_series(l, MetricType::Gauge);
        self.units.push(Unit::Gauge(GaugeUnit {
            target,
            idx,
            kind,
            value,
        }));
    }

    fn random_name(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                let i = self.rng.below(K8S_ALPHABET.len() as u64) as usize;
                K8S_ALPHABET.get(i).map_or('x', |&b| char::from(b))
            })
            .collect()
    }

    fn uid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn add_host(&mut self) {
        let h = self.hosts;
        self.hosts += 1;
        let ip = format!(
            "10.{}.{}.{}",
            (h / 250) / 256 % 256,
            (h / 250) % 256,
            h % 250 + 1
        );
        let cluster = h / HOSTS_PER_CLUSTER;
        if self.clusters.len() <= cluster {
            let target = self.add_target(TargetKind::KubeStateMetrics);
            let instance = format!("10.96.{}.{}:8080", (cluster / 250) % 256, cluster % 250 + 1);
            self.clusters.push(Cluster {
                target,
                instance,
                deployments: Vec::new(),
            });
        }
        self.add_node_exporter(&format!("{ip}:9100"));
        self.add_app(&format!("{ip}:8080"));
        self.add_kube(cluster);
    }

    fn add_node_exporter(&mut self, instance: &str) {
        let tg = self.add_target(TargetKind::Node);
        let base =
            |name: &'static str| vec![("__name__", name), ("instance", instance), ("job", "node")];
        let uptime_s = self.rng.uniform(3_600.0, 60.0 * 86_400.0);
        let boot_time = ((self.cfg.start_ms / 1000) as f64 - uptime_s).round();

        // CPU.
        let ncpu = *self
            .rng
            .pick(&[2usize, 4, 4, 8, 8, 8, 16, 32])
            .unwrap_or(&4);
        let host_busy = self.rng.uniform(0.03, 0.4);
        for cpu in 0..ncpu {
            let cpu_s = cpu.to_string();
            let mut share = [0.0; 8];
            let user = host_busy * self.rng.uniform(0.6, 1.4);
            share[7] = user; // user
            share[6] = user * self.rng.uniform(0.2, 0.5); // system
            share[1] = self.rng.uniform(0.0, 0.03); // iowait
            share[2] = if self.rng.chance(0.5) {
                0.0
            } else {
                self.rng.uniform(0.0, 0.001)
            };
            share[3] = if self.rng.chance(0.7) {
                0.0
            } else {
                self.rng.uniform(0.0, 0.01)
            };
            share[4] = self.rng.uniform(0.001, 0.01); // softirq
            share[5] = if self.rng.chance(0.8) {
                0.0
            } else {
                self.rng.uniform(0.0, 0.02)
            };
            let busy: f64 = share.iter().skip(1).sum();
            let mut ticks = [0u64; 8];
            for (m, tk) in ticks.iter_mut().enumerate() {
                let s = if m == IDLE { 1.0 - busy } else { share[m] };
                *tk = (uptime_s * 100.0 * s * self.rng.uniform(0.9, 1.1)).round() as u64;
            }
            let first = self.series.len() as u32;
            for mode in CPU_MODES {
                let mut l = base("node_cpu_seconds_total");
                l.push(("cpu", &cpu_s));
                l.push(("mode", mode));
                self.push_series(labels(&l), MetricType::Counter);
            }
            self.units.push(Unit::Cpu(Box::new(CpuUnit {
                target: tg,
                first,
                ticks,
                share,
            })));
        }

        // Memory.
        let total = GIB_PAGES
            * *self
                .rng
                .pick(&[4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
                .unwrap_or(&16.0);
        let swap = if self.rng.chance(0.3) {
            GIB_PAGES * 2.0
        } else {
            0.0
        };
        let used = total * self.rng.uniform(0.2, 0.8);
        let cached = (total - used) * self.rng.uniform(0.3, 0.8);
        let mem: [(&'static str, f64, f64, bool); 12] = [
            ("node_memory_MemTotal_bytes", total, 0.0, false),
            (
                "node_memory_MemFree_bytes",
                total - used - cached,
                200.0,
                true,
            ),
            ("node_memory_MemAvailable_bytes", total - used, 250.0, true),
            ("node_memory_Buffers_bytes", total * 0.01, 5.0, true),
            ("node_memory_Cached_bytes", cached, 150.0, true),
            ("node_memory_Active_bytes", used * 0.7, 120.0, true),
            (
                "node_memory_Inactive_bytes",
                used * 0.3 + cached * 0.5,
                80.0,
                true,
            ),
            ("node_memory_Dirty_bytes", 300.0, 60.0, true),
            ("node_memory_Shmem_bytes", total * 0.005, 2.0, true),
            ("node_memory_Slab_bytes", total * 0.02, 10.0, true),
            ("node_memory_SwapTotal_bytes", swap, 0.0, false),
            ("node_memory_SwapFree_bytes", swap * 0.95, 0.0, false),
        ];
        for (name, mean, sigma, walks) in mem {
            let mean = mean.round();
            let kind = if walks {
                GaugeKind::Pages {
                    mean,
                    sigma,
                    max: total,
                }
            } else {
                GaugeKind::Const
            };
            let value = if walks { mean } else { mean * PAGE };
            self.gauge(tg, labels(&base(name)), kind, value);
        }

        // Network.
        let mut devices = vec!["eth0", "lo"];
        if self.rng.chance(0.5) {
            devices.push("docker0");
        }
        for dev in devices {
            let bytes_rate = match dev {
                "lo" => self.rng.uniform(500.0, 50_000.0),
                _ => 10f64.powf(self.rng.uniform(3.5, 7.0)),
            };
            let pkt_size = self.rng.uniform(200.0, 1200.0);
            for (name, rate) in [
                ("node_network_receive_bytes_total", bytes_rate),
                (
                    "node_network_transmit_bytes_total",
                    bytes_rate * self.rng.uniform(0.3, 2.0),
                ),
                ("node_network_receive_packets_total", bytes_rate / pkt_size),
                (
                    "node_network_transmit_packets_total",
                    bytes_rate / pkt_size * self.rng.uniform(0.5, 1.5),
                ),
            ] {
                let mut l = base(name);
                l.push(("device", dev));
                let units = (uptime_s * rate * self.rng.uniform(0.5, 1.0)).round() as u64;
                self.counter(tg, labels(&l), CounterKind::Rate, units, rate, 1.0);
            }
        }

        // File systems (sizes and free space in 4 KiB blocks).
        let mut mounts = vec![
            (
                "/dev/nvme0n1p1",
                "ext4",
                "/",
                GIB_PAGES * *self.rng.pick(&[30.0, 50.0, 100.0, 200.0]).unwrap_or(&50.0),
            ),
            ("/dev/nvme0n1p15", "vfat", "/boot/efi", 26_624.0),
            ("tmpfs", "tmpfs", "/run", (total / 10.0).round()),
        ];
        if self.rng.chance(0.5) {
            mounts.push(("/dev/nvme1n1", "xfs", "/var/lib/docker", GIB_PAGES * 500.0));
        }
        for (device, fstype, mountpoint, size) in mounts {
            let dynamic = fstype != "vfat";
            let avail = (size * self.rng.uniform(0.2, 0.9)).round();
            let fill = if dynamic {
                self.rng.uniform(0.0, 50.0)
            } else {
                0.0
            };
            let fs = |name| {
                let mut l = base(name);
                l.extend([
                    ("device", device),
                    ("fstype", fstype),
                    ("mountpoint", mountpoint),
                ]);
                labels(&l)
            };
            self.gauge(
                tg,
                fs("node_filesystem_avail_bytes"),
                GaugeKind::FsAvail {
                    size,
                    fill_per_s: fill,
                },
                avail,
            );
            self.gauge(
                tg,
                fs("node_filesystem_size_bytes"),
                GaugeKind::Const,
                size * PAGE,
            );
        }

        // Disks.
        let mut disks = vec!["nvme0n1"];
        if self.rng.chance(0.5) {
            disks.push("nvme1n1");
        }
        for dev in disks {
            let read = 10f64.powf(self.rng.uniform(3.0, 6.5));
            let written = 10f64.powf(self.rng.uniform(4.0, 7.0));
            let io_size = self.rng.uniform(8_192.0, 131_072.0);
            let busy_ms = self.rng.uniform(1.0, 200.0);
            for (name, kind, rate, scale) in [
                ("node_disk_read_bytes_total", CounterKind::Rate, read, 1.0),
                (
                    "node_disk_written_bytes_total",
                    CounterKind::Rate,
                    written,
                    1.0,
                ),
                (
                    "node_disk_reads_completed_total",
                    CounterKind::Rate,
                    read / io_size,
                    1.0,
                ),
                (
                    "node_disk_writes_completed_total",
                    CounterKind::Rate,
                    written / io_size,
                    1.0,
                ),
                (
                    "node_disk_io_time_seconds_total",
                    CounterKind::BusyMillis,
                    busy_ms,
                    1000.0,
                ),
            ] {
                let mut l = base(name);
                l.push(("device", dev));
                let units = (uptime_s * rate * self.rng.uniform(0.5, 1.0)).round() as u64;
                self.counter(tg, labels(&l), kind, units, rate, scale);
            }
        }

        // Load, processes, scheduler counters, boot time.
        let load = host_busy * ncpu as f64;
        for (name, sigma, theta) in [
            ("node_load1", 0.3, 0.2),
            ("node_load5", 0.08, 0.05),
            ("node_load15", 0.03, 0.02),
        ] {
            let kind = GaugeKind::Centi {
                mean: load,
                sigma: sigma * load.sqrt().max(0.1),
                theta,
            };
            self.gauge(tg, labels(&base(name)), kind, load);
        }
        self.gauge(
            tg,
            labels(&base("node_procs_running")),
            GaugeKind::Count {
                mean: load.max(0.1),
            },
            1.0,
        );
        let ctxt = self.rng.uniform(1_000.0, 30_000.0) * ncpu as f64;
        let intr = ctxt * self.rng.uniform(0.5, 1.5);
        for (name, rate) in [
            ("node_context_switches_total", ctxt),
            ("node_intr_total", intr),
        ] {
            let units = (uptime_s * rate).round() as u64;
            self.counter(tg, labels(&base(name)), CounterKind::Rate, units, rate, 1.0);
        }
        self.gauge(
            tg,
            labels(&base("node_boot_time_seconds")),
            GaugeKind::Const,
            boot_time,
        );
    }

    fn add_app(&mut self, instance: &str) {
        let tg = self.add_target(TargetKind::App);
        let traffic = self.rng.uniform(0.3, 3.0);
        let uptime_s = self.rng.uniform(600.0, 7.0 * 86_400.0);
        for (handler, method, code, rate, median, sigma, always) in HANDLERS {
            if !always && self.rng.chance(0.5) {
                continue;
            }
            let rate = rate * traffic;
            let mut cdf = [0.0; FINITE_BUCKETS];
            for (p, (le, _)) in cdf.iter_mut().zip(LE_LADDER.iter()) {
                *p = normal_cdf((le.ln() - median.ln()) / sigma);
            }
            let mean_latency = median * (sigma * sigma / 2.0).exp();
            // Start from the counts an uptime's worth of traffic would have produced.
            let n0 = (rate * uptime_s).round() as u64;
            let mut cum = [0u64; BUCKETS];
            for (c, p) in cum.iter_mut().zip(cdf.iter().chain([1.0].iter())) {
                *c = (n0 as f64 * p).round() as u64;
            }
            let first = self.series.len() as u32;
            let base = [
                ("instance", instance),
                ("job", "api"),
                ("handler", handler),
                ("method", method),
                ("code", code),
            ];
            for (_, le) in LE_LADDER {
                let mut l = base.to_vec();
                l.push(("__name__", "http_request_duration_seconds_bucket"));
                l.push(("le", le));
                self.push_series(labels(&l), MetricType::HistogramBucket);
            }
            for name in [
                "http_request_duration_seconds_sum",
                "http_request_duration_seconds_count",
            ] {
                let mut l = base.to_vec();
                l.push(("__name__", name));
                self.push_series(labels(&l), MetricType::Counter);
            }
            self.units.push(Unit::Histogram(Box::new(HistUnit {
                target: tg,
                first,
                cum,
                sum: n0 as f64 * mean_latency,
                rate,
                cdf,
                mean_latency,
            })));
        }
    }

    fn add_kube(&mut self, cluster: usize) {
        let Some(c) = self.clusters.get(cluster) else {
            return;
        };
        let tg = c.target;
        let instance = c.instance.clone();
        let base = |name: &'static str| {
            vec![
                ("__name__", name),
                ("instance", instance.as_str()),
                ("job", "kube-state-metrics"),
            ]
        };
        // A new deployment every few hosts, so deployments scale with the cluster.
        let have = c.deployments.len();
        if have == 0 || self.hosts.is_multiple_of(5) {
            let namespace = *self.rng.pick(&NAMESPACES).unwrap_or(&"default");
            let stem = DEPLOYMENTS
                .get(have % DEPLOYMENTS.len())
                .copied()
                .unwrap_or("app");
            let name = if have < DEPLOYMENTS.len() {
                stem.to_string()
            } else {
                format!("{stem}-{}", have / DEPLOYMENTS.len() + 1)
            };
            let rs_hash = self.random_name(10);
            let replicas = self.rng.range_i64(1, 6) as f64;
            let mut l = base("kube_deployment_status_replicas");
            l.extend([("namespace", namespace), ("deployment", name.as_str())]);
            self.gauge(tg, labels(&l), GaugeKind::Replicas, replicas);
            if let Some(c) = self.clusters.get_mut(cluster) {
                c.deployments.push(Deployment {
                    namespace,
                    name,
                    rs_hash,
                });
            }
        }
        let pods = self.rng.range_i64(3, 8);
        for _ in 0..pods {
            let Some(c) = self.clusters.get(cluster) else {
                return;
            };
            let d = self.rng.below(c.deployments.len() as u64) as usize;
            let Some(dep) = c.deployments.get(d) else {
                continue;
            };
            let (namespace, dep_name, rs_hash) =
                (dep.namespace, dep.name.clone(), dep.rs_hash.clone());
            let suffix = self.random_name(5);
            let pod = format!("{dep_name}-{rs_hash}-{suffix}");
            let uid = self.uid();
            let crashy = self.rng.chance(0.05);
            let mut containers = vec![dep_name.as_str()];
            if self.rng.chance(0.3) {
                containers.push("istio-proxy");
            }
            for container in containers {
                let p = if crashy { 0.01 } else { 0.000_02 };
                let restarts = if crashy {
                    self.rng.below(50)
                } else {
                    self.rng.below(2)
                };
                let mut l = base("kube_pod_container_status_restarts_total");
                l.extend([
                    ("namespace", namespace),
                    ("pod", pod.as_str()),
                    ("uid", uid.as_str()),
                    ("container", container),
                ]);
                self.counter(tg, labels(&l), CounterKind::Event { p }, restarts, 0.0, 1.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen_data(seed: u64, hosts: usize, scrapes: usize) -> (Generator, Vec<Vec<(i64, f64)>>) {
        let mut g = Generator::new(GenConfig::new(seed, hosts));
        let data = g.series_samples(scrapes);
        (g, data)
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let (a, da) = gen_data(1, 3, 20);
        let (b, db) = gen_data(1, 3, 20);
        let (c, dc) = gen_data(2, 3, 20);
        assert_eq!(a.series(), b.series());
        assert_eq!(da, db);
        assert_ne!(da, dc);
        assert_ne!(a.series(), c.series());
    }

    #[test]
    fn series_are_unique_and_well_formed() {
        let g = Generator::new(GenConfig::new(5, 120));
        let mut seen = std::collections::HashSet::new();
        for l in g.series() {
            assert!(l.get("__name__").is_some(), "{l}");
            assert!(l.get("job").is_some() && l.get("instance").is_some(), "{l}");
            assert!(seen.insert(l.clone()), "duplicate series {l}");
        }
        let per_host = g.num_series() as f64 / 120.0;
        assert!(
            (80.0..400.0).contains(&per_host),
            "{per_host} series per host"
        );
        let names: std::collections::HashSet<&str> = g
            .series()
            .iter()
            .filter_map(|l| l.get("__name__"))
            .collect();
        for want in [
            "node_cpu_seconds_total",
            "node_memory_MemAvailable_bytes",
            "node_network_receive_bytes_total",
            "node_filesystem_avail_bytes",
            "node_disk_io_time_seconds_total",
            "kube_pod_container_status_restarts_total",
            "kube_deployment_status_replicas",
            "http_request_duration_seconds_bucket",
            "http_request_duration_seconds_sum",
            "http_request_duration_seconds_count",
        ] {
            assert!(names.contains(want), "missing {want}");
        }
    }

    #[test]
    fn with_min_series_reaches_the_count() {
        let g = Generator::with_min_series(GenConfig::new(9, 0), 5_000);
        assert!(g.num_series() >= 5_000);
        assert!(g.num_series() < 5_000 + 2_000);
        assert_eq!(
            g.config().hosts,
            Generator::new(GenConfig::new(9, g.config().hosts))
                .config()
                .hosts
        );
    }

    #[test]
    fn counters_are_monotone_except_on_restart() {
        let mut cfg = GenConfig::new(11, 20);
        cfg.restart_prob = 0.01;
        let mut g = Generator::new(cfg);
        let data = g.series_samples(300);
        let mut resets = 0;
        for (i, s) in data.iter().enumerate() {
            if g.metric_type(i) == MetricType::Gauge {
                continue;
            }
            let mut max_so_far = f64::MIN;
            for w in s.windows(2) {
                if let [a, b] = w {
                    max_so_far = max_so_far.max(a.1);
                    if b.1 < a.1 {
                        resets += 1;
                        // A reset goes back near zero (a fresh process), not just a little
                        // down; the value before may itself be shortly after a reset.
                        assert!(
                            b.1 < max_so_far / 2.0 + 1.0,
                            "series {}: max {max_so_far}, {} -> {}",
                            g.series()[i],
                            a.1,
                            b.1
                        );
                    }
                }
            }
        }
        assert!(
            resets > 0,
            "with restart_prob 0.01 some counters must reset"
        );

        let mut g = Generator::new(GenConfig {
            restart_prob: 0.0,
            ..GenConfig::new(11, 20)
        });
        let data = g.series_samples(300);
        for (i, s) in data.iter().enumerate() {
            if g.metric_type(i) != MetricType::Gauge {
                assert!(s.windows(2).all(|w| w[1].1 >= w[0].1), "{}", g.series()[i]);
            }
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches_inf() {
        let mut cfg = GenConfig::new(13, 10);
        cfg.restart_prob = 0.005;
        let mut g = Generator::new(cfg);
        let mut buf = Vec::new();
        let mut checked = 0;
        for _ in 0..200 {
            g.next_scrape(&mut buf);
            let mut i = 0;
            while i < g.num_series() {
                if g.metric_type(i) != MetricType::HistogramBucket {
                    i += 1;
                    continue;
                }
                let group = &buf[i..i + BUCKETS];
                let les: Vec<&str> = (i..i + BUCKETS)
                    .map(|j| g.series()[j].get("le").unwrap())
                    .collect();
                assert_eq!(les, LE_LADDER.map(|(_, s)| s));
                assert!(group.windows(2).all(|w| w[0].1 <= w[1].1), "{group:?}");
                assert!(
                    group
                        .iter()
                        .all(|s| s.1.fract() == 0.0 && s.0 == group[0].0)
                );
                let count = buf[i + BUCKETS + 1];
                assert_eq!(
                    g.series()[i + BUCKETS + 1].get("__name__"),
                    Some("http_request_duration_seconds_count")
                );
                assert_eq!(count.1, group[BUCKETS - 1].1);
                checked += 1;
                i += BUCKETS + 2;
            }
        }
        assert!(checked > 0);
    }

    #[test]
    fn values_look_like_exporter_output() {
        let (g, data) = gen_data(17, 10, 40);
        for (i, s) in data.iter().enumerate() {
            let l = &g.series()[i];
            let name = l.get("__name__").unwrap();
            for &(_, v) in s {
                assert!(v.is_finite() && v >= 0.0, "{l}: {v}");
                if name == "node_cpu_seconds_total" {
                    let ticks = v * 100.0;
                    assert!((ticks - ticks.round()).abs() < 1e-6, "{l}: {v}");
                } else if name.starts_with("node_memory_") {
                    assert_eq!(v % 4096.0, 0.0, "{l}: {v}");
                } else if name.ends_with("_bytes_total")
                    || name.ends_with("_bucket")
                    || name.ends_with("_count")
                    || name.starts_with("kube_")
                {
                    assert_eq!(v.fract(), 0.0, "{l}: {v}");
                } else if name.starts_with("node_load") {
                    assert!(((v * 100.0) - (v * 100.0).round()).abs() < 1e-6, "{l}: {v}");
                }
            }
        }
    }

    #[test]
    fn cpu_modes_add_up_to_elapsed_time() {
        let (g, data) = gen_data(19, 2, 30);
        let idx: Vec<usize> = (0..g.num_series())
            .filter(|&i| g.series()[i].get("cpu") == Some("0"))
            .collect();
        assert_eq!(idx.len(), 2 * 8, "two hosts, eight modes of cpu 0");
        for host in idx.chunks(8) {
            for k in 1..30 {
                let dt = (data[host[0]][k].0 - data[host[0]][k - 1].0) as f64 / 1000.0;
                let spent: f64 = host.iter().map(|&i| data[i][k].1 - data[i][k - 1].1).sum();
                assert!((spent - dt).abs() < 0.011, "{spent} vs {dt}");
            }
        }
    }

    #[test]
    fn jitter_is_bounded_and_shared_by_a_target() {
        let mut cfg = GenConfig::new(23, 5);
        cfg.jitter_ms = 40;
        cfg.on_grid_prob = 0.0;
        let mut g = Generator::new(cfg.clone());
        let data = g.series_samples(50);
        let mut jitters = std::collections::HashSet::new();
        for (i, s) in data.iter().enumerate() {
            for (k, &(t, _)) in s.iter().enumerate() {
                let sched = g.scheduled(i, k as u64).unwrap();
                let j = t - sched;
                assert!(j.abs() <= 40, "jitter {j}");
                jitters.insert(j);
            }
            assert!(s.windows(2).all(|w| w[1].0 > w[0].0));
        }
        assert!(jitters.len() > 10, "jitter should vary: {jitters:?}");
        assert!(
            !jitters.contains(&0),
            "on_grid_prob 0 never lands on the schedule"
        );
        // All series of one node exporter scrape share its timestamp.
        let inst = g.series()[0].get("instance").unwrap().to_string();
        let same: Vec<usize> = (0..g.num_series())
            .filter(|&i| g.series()[i].get("instance") == Some(inst.as_str()))
            .collect();
        assert!(same.len() > 20);
        let times = |i: usize| data[i].iter().map(|s| s.0).collect::<Vec<_>>();
        for &i in &same {
            assert_eq!(times(i), times(same[0]));
        }

        // By default most scrapes are exactly on the schedule, as in the real capture.
        let mut g = Generator::new(GenConfig::new(23, 5));
        let data = g.series_samples(200);
        let (mut exact, mut all) = (0, 0);
        for s in &data {
            for w in s.windows(2) {
                all += 1;
                exact += usize::from(w[1].0 - w[0].0 == 15_000);
            }
        }
        let share = exact as f64 / all as f64;
        assert!((0.9..0.99).contains(&share), "{share}");

        // A jitter too large for the interval is clamped.
        let mut cfg = GenConfig::new(23, 1);
        cfg.interval_ms = 100;
        cfg.jitter_ms = 1000;
        let mut g = Generator::new(cfg);
        assert_eq!(g.config().jitter_ms, 49);
        let data = g.series_samples(100);
        assert!(data.iter().all(|s| s.windows(2).all(|w| w[1].0 > w[0].0)));
    }

    #[test]
    fn metric_types_follow_names() {
        let g = Generator::new(GenConfig::new(29, 3));
        for (i, l) in g.series().iter().enumerate() {
            let name = l.get("__name__").unwrap();
            assert_eq!(g.metric_type(i), MetricType::guess(name), "{l}");
        }
        assert_eq!(g.metric_type(usize::MAX), MetricType::Gauge);
    }

    #[test]
    fn normal_cdf_is_accurate() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-2.0) - 0.022_750_132).abs() < 1e-6);
    }
}
