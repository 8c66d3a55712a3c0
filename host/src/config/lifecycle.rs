//! The settings of running for months: retention, the periodic jobs that enforce it, and the
//! operational webhooks (system events).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// What is kept, and for how long. Events are purged with their deliveries and attempts once
/// every delivery of the event is over (delivered or dead) and the event is older than the
/// window of its outcome; pending and held deliveries are never purged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Purge at all (by the periodic job; `wasmhook prune` works either way).
    pub enabled: bool,
    /// Events whose deliveries were all delivered are kept this long.
    #[serde(with = "humantime_serde")]
    pub delivered: Duration,
    /// Events with a dead delivery (and none pending or held) are kept this long.
    #[serde(with = "humantime_serde")]
    pub dead: Duration,
    /// Idempotency keys are remembered this long (a repeat after that is a new request).
    #[serde(with = "humantime_serde")]
    pub idempotency_keys: Duration,
    /// Events deleted in one transaction at most, so the writer is never held for long. Unset:
    /// [`DEFAULT_BATCH_SQLITE`] on SQLite (where the batch is found at once and deleted 20 per
    /// write), [`DEFAULT_BATCH_POSTGRES`] on PostgreSQL (whose deletes hold no writer).
    pub batch_size: Option<usize>,
    /// Pause between two batches.
    #[serde(with = "humantime_serde")]
    pub batch_pause: Duration,
    /// Per-tenant overrides of `delivered` and `dead`, by tenant id.
    pub tenants: BTreeMap<String, TenantRetention>,
}

/// Retention's batch on SQLite when `retention.batch_size` is unset.
pub const DEFAULT_BATCH_SQLITE: usize = 200;

/// Retention's batch on PostgreSQL when `retention.batch_size` is unset. Measured in the soak
/// (5,000 events/s ingested and pruned on 2 cores): with batches of 200 the pruner fell behind
/// in 4 of 6 rounds (the database at 1.8× its middle), with 1,000 it kept up in all 6.
pub const DEFAULT_BATCH_POSTGRES: usize = 1000;

impl RetentionConfig {
    /// The batch size retention uses on a store that is `shared` (PostgreSQL) or not (SQLite).
    pub fn batch_size_on(&self, shared: bool) -> usize {
        self.batch_size.unwrap_or(if shared {
            DEFAULT_BATCH_POSTGRES
        } else {
            DEFAULT_BATCH_SQLITE
        })
    }
}

/// A tenant's own retention windows (unset: the engine's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantRetention {
    /// Overrides `retention.delivered`.
    #[serde(with = "humantime_serde")]
    pub delivered: Option<Duration>,
    /// Overrides `retention.dead`.
    #[serde(with = "humantime_serde")]
    pub dead: Option<Duration>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            delivered: 30 * DAY,
            dead: 90 * DAY,
            idempotency_keys: 7 * DAY,
            batch_size: None,
            batch_pause: Duration::from_millis(1),
            tenants: BTreeMap::new(),
        }
    }
}

/// The periodic jobs (retention, auto-disable, certificate expiry warnings). In a cluster one
/// node runs them at a time: the one holding the jobs' lease in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// How often the jobs run.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long the lease of the node running the jobs lasts without being renewed (each run
    /// renews it): when that node dies, another takes the jobs over after this.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(180),
        }
    }
}

/// Operational webhooks: system events sent to the tenant's endpoints that set
/// `system_events`, and the operator's (plugin events) to the endpoints of `operator_tenant`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationsConfig {
    /// The tenant whose system endpoints receive the operator's events (`plugin.load_failed`,
    /// `plugin.swapped`). Unset: those events are only logged.
    pub operator_tenant: Option<String>,
    /// Dead deliveries are reported as one `delivery.dead` per endpoint per this interval.
    #[serde(with = "humantime_serde")]
    pub dead_summary_interval: Duration,
    /// `token_provider.failing` is sent when an endpoint's token route failed this many times
    /// in a row.
    pub token_failures: u32,
    /// `client_certificate.expiring` is sent once at each of these times before `notAfter`.
    #[serde(with = "super::humantime_serde_vec")]
    pub certificate_warnings: Vec<Duration>,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        Self {
            operator_tenant: None,
            dead_summary_interval: Duration::from_secs(60),
            token_failures: 3,
            certificate_warnings: vec![30 * DAY, 7 * DAY, DAY],
        }
    }
}
