//! Per-tenant limits on the write path, answered the way Mimir answers them.
//!
//! - **Ingestion rate** (samples + exemplars per second, token bucket with a burst): a request
//!   that does not fit is refused whole with 429, so the client retries it later.
//! - **Active series** per tenant: series beyond the limit are not created (their samples are
//!   dropped and reported with 400 "per-tenant series limit of N exceeded"); existing series
//!   keep ingesting.
//! - **Labels per series**, **label name length**, **label value length**: a series violating
//!   one is dropped and reported with 400, naming the limit and the series.
//!
//! Limits come from the `[limits]` config section, with optional per-tenant overrides in
//! `[limits.tenants.<id>]`. A value of 0 disables a limit.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;
use serde::Deserialize;

/// Limits of one tenant. Zero disables a limit.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Samples (and exemplars) per second. Default: 0 (unlimited).
    pub ingestion_rate: f64,
    /// Burst size of the rate limit, in samples. Default: 0 (= 10 × the rate).
    pub ingestion_burst: f64,
    /// Active series in the head. Default: 10 000 000.
    pub max_series: u64,
    /// Labels per series (including `__name__`). Default: 30 (as Mimir).
    pub max_label_names_per_series: usize,
    /// Bytes per label name. Default: 1024 (as Mimir).
    pub max_label_name_length: usize,
    /// Bytes per label value. Default: 2048 (as Mimir).
    pub max_label_value_length: usize,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            ingestion_rate: 0.0,
            ingestion_burst: 0.0,
            max_series: 10_000_000,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
        }
    }
}

/// The `[limits]` config section. (Unknown keys cannot be refused here because the defaults
/// are flattened into the section; a misspelt limit shows in `/api/v1/status/config`.)
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Defaults for every tenant.
    #[serde(flatten)]
    pub defaults: TenantLimits,
    /// Overrides by tenant id (a whole limits table per tenant; omitted fields take the
    /// built-in defaults).
    pub tenants: HashMap<String, TenantLimits>,
}

/// Why a series was refused by a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeriesLimitError {
    /// Too many labels.
    #[error(
        "series has {got} labels, more than the per-tenant limit max_label_names_per_series={limit}"
    )]
    TooManyLabels {
        /// Labels in the series.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// A label name is too long.
    #[error(
        "label name of {got} bytes is longer than the per-tenant limit max_label_name_length={limit}"
    )]
    NameTooLong {
        /// Bytes.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// A label value is too long.
    #[error(
        "value of label {name:?} has {got} bytes, more than the per-tenant limit max_label_value_length={limit}"
    )]
    ValueTooLong {
        /// The label.
        name: String,
        /// Bytes.
        got: usize,
        /// The limit.
        limit: usize,
    },
}

impl SeriesLimitError {
    /// The limit's config name, for counters.
    pub fn limit_name(&self) -> &'static str {
        match self {
            SeriesLimitError::TooManyLabels { .. } => "max_label_names_per_series",
            SeriesLimitError::NameTooLong { .. } => "max_label_name_length",
            SeriesLimitError::ValueTooLong { .. } => "max_label_value_length",
        }
    }
}

impl TenantLimits {
    /// Checks one series' labels against the label limits.
    pub fn check_labels<'a>(
        &self,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), SeriesLimitError> {
        let n = labels.len();
        if self.max_label_names_per_series > 0 && n > self.max_label_names_per_series {
            return Err(SeriesLimitError::TooManyLabels {
                got: n,
                limit: self.max_label_names_per_series,
            });
        }
        for (name, value) in labels {
            if self.max_label_name_length > 0 && name.len() > self.max_label_name_length {
                return Err(SeriesLimitError::NameTooLong {
                    got: name.len(),
                    limit: self.max_label_name_length,
                });
            }
            if self.max_label_value_length > 0 && value.len() > self.max_label_value_length {
                return Err(SeriesLimitError::ValueTooLong {
                    name: name.to_string(),
                    got: value.len(),
                    limit: self.max_label_value_length,
                });
            }
        }
        Ok(())
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// All tenants' limits and rate-limiter state.
pub struct Limits {
    config: LimitsConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limits {
    /// Limits from configuration.
    pub fn new(config: LimitsConfig) -> Self {
        Limits {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limits of a tenant.
    pub fn for_tenant(&self, tenant: &str) -> &TenantLimits {
        self.config
            .tenants
            .get(tenant)
            .unwrap_or(&self.config.defaults)
    }

    /// Takes `n` samples from the tenant's rate budget. `Err(rate)` if they do not fit.
    pub fn take(&self, tenant: &str, n: u64) -> Result<(), f64> {
        let l = self.for_tenant(tenant);
        if l.ingestion_rate <= 0.0 || n == 0 {
            return Ok(());
        }
        let burst = if l.ingestion_burst > 0.0 {
            l.ingestion_burst
        } else {
            l.ingestion_rate * 10.0
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * l.ingestion_rate).min(burst);
        b.last = now;
        let need = n as f64;
        if need <= b.tokens {
            b.tokens -= need;
            Ok(())
        } else {
            Err(l.ingestion_rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_has_a_burst_and_refills() {
        let mut cfg = LimitsConfig::default();
        cfg.tenants.insert(
            "small".into(),
            TenantLimits {
                ingestion_rate: 1000.0,
                ingestion_burst: 2000.0,
                ..TenantLimits::default()
            },
        );
        let l = Limits::new(cfg);
        assert!(l.take("small", 1500).is_ok());
        assert_eq!(l.take("small", 1000), Err(1000.0));
        assert!(
            l.take("other", 1_000_000_000).is_ok(),
            "default is unlimited"
        );
    }

    #[test]
    fn label_limits_name_the_limit() {
        let l = TenantLimits {
            max_label_names_per_series: 2,
            max_label_value_length: 3,
            ..TenantLimits::default()
        };
        let e = l
            .check_labels([("a", "1"), ("b", "2"), ("c", "3")].into_iter())
            .unwrap_err();
        assert!(
            e.to_string().contains("max_label_names_per_series=2"),
            "{e}"
        );
        let e = l.check_labels([("a", "long")].into_iter()).unwrap_err();
        assert!(e.to_string().contains("max_label_value_length=3"), "{e}");
        assert_eq!(e.limit_name(), "max_label_value_length");
        assert!(l.check_labels([("a", "ok")].into_iter()).is_ok());
    }

    #[test]
    fn config_parses_overrides() {
        let cfg: LimitsConfig =
            toml::from_str("max_series = 5\n[tenants.team-a]\ningestion_rate = 100.0\n").unwrap();
        assert_eq!(cfg.defaults.max_series, 5);
        assert_eq!(cfg.tenants["team-a"].ingestion_rate, 100.0);
        assert_eq!(cfg.tenants["team-a"].max_series, 10_000_000);
    }
}
