//! The records of running for months: endpoint health, retention, the periodic jobs' lease and
//! one-time notices. Plain data, the same for every backend.

use serde::Serialize;
use utoipa::ToSchema;

/// Width of one health bucket: success rates are summed over the buckets of the last hour and
/// the last day.
pub const HEALTH_BUCKET_MS: i64 = 5 * 60 * 1000;

/// Health buckets are kept this long (the day's rate needs a day of them).
pub const HEALTH_KEPT_MS: i64 = 25 * 3600 * 1000;

/// The ids of the endpoints that have held deliveries, as the common table `held(id)` (the last
/// row is NULL): a skip scan of the `deliveries_held` index, one probe per such endpoint however
/// many deliveries it holds. The same SQL on every backend.
pub(crate) const HELD_ENDPOINTS: &str = "WITH RECURSIVE held(id) AS (
       SELECT (SELECT min(endpoint_id) FROM deliveries WHERE status = 'held')
       UNION ALL
       SELECT (SELECT min(endpoint_id) FROM deliveries
               WHERE status = 'held' AND endpoint_id > held.id)
       FROM held WHERE held.id IS NOT NULL)";

/// How an endpoint's attempts went, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct EndpointHealth {
    /// Unix milliseconds of the last attempt answered 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at_ms: Option<i64>,
    /// Unix milliseconds of the last failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_at_ms: Option<i64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    /// Unix milliseconds of the first failure since the last success (unset while it succeeds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<i64>,
    /// Attempts in the last hour.
    pub attempts_last_hour: u64,
    /// Share of the last hour's attempts that succeeded (unset without attempts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate_last_hour: Option<f64>,
    /// Attempts in the last day.
    pub attempts_last_day: u64,
    /// Share of the last day's attempts that succeeded (unset without attempts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate_last_day: Option<f64>,
}

/// What one node saw of an endpoint's attempts since its last report (added to the stored
/// health; several nodes report for the same endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthDelta {
    /// The endpoint.
    pub endpoint_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Unix ms of the last success seen, if any.
    pub last_success_ms: Option<i64>,
    /// Unix ms of the last failure seen, if any.
    pub last_failure_ms: Option<i64>,
    /// Failures seen after the last success seen (all failures seen when there was none).
    pub trailing_failures: u64,
    /// Unix ms of the first of those trailing failures.
    pub first_trailing_failure_ms: Option<i64>,
    /// Successes and failures per bucket start (unix ms, a multiple of [`HEALTH_BUCKET_MS`]).
    pub buckets: Vec<(i64, u64, u64)>,
}

/// Stored health counters of one endpoint (before the rates are computed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredHealth {
    /// The endpoint.
    pub endpoint_id: String,
    /// See [`EndpointHealth`].
    pub last_success_ms: Option<i64>,
    /// See [`EndpointHealth`].
    pub last_failure_ms: Option<i64>,
    /// See [`EndpointHealth`].
    pub consecutive_failures: u64,
    /// See [`EndpointHealth`].
    pub failing_since_ms: Option<i64>,
    /// Successes and failures since one hour ago.
    pub hour: (u64, u64),
    /// Successes and failures since one day ago.
    pub day: (u64, u64),
}

impl StoredHealth {
    /// As the API shows it.
    pub fn view(&self) -> EndpointHealth {
        let rate = |(ok, failed): (u64, u64)| {
            let total = ok + failed;
            (total > 0).then(|| ok as f64 / total as f64)
        };
        EndpointHealth {
            last_success_at_ms: self.last_success_ms,
            last_failure_at_ms: self.last_failure_ms,
            consecutive_failures: self.consecutive_failures,
            failing_since_ms: self.failing_since_ms,
            attempts_last_hour: self.hour.0 + self.hour.1,
            success_rate_last_hour: rate(self.hour),
            attempts_last_day: self.day.0 + self.day.1,
            success_rate_last_day: rate(self.day),
        }
    }
}

/// An endpoint failing long enough to be disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingEndpoint {
    /// The endpoint.
    pub endpoint_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    /// Unix ms of the first of them.
    pub failing_since_ms: i64,
}

/// One batch of retention: which events may go.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Only this tenant's events (`None`: every tenant but those in `except`).
    pub tenant: Option<String>,
    /// Tenants left out when `tenant` is `None` (those with their own windows).
    pub except: Vec<String>,
    /// Events created before this (unix seconds) whose deliveries were all delivered go.
    pub delivered_before: i64,
    /// Events created before this (unix seconds) with a dead delivery go (if none is pending
    /// or held).
    pub dead_before: i64,
    /// Only events after this one (by id: ids grow with time), to go on from a previous batch.
    pub after: Option<String>,
    /// At most this many events.
    pub limit: usize,
    /// Count only; delete nothing.
    pub dry_run: bool,
}

impl PruneRequest {
    /// Events at or after this id are younger than both windows: an upper bound of the ids to
    /// look at (event ids are `msg_` and a ULID, which sorts by creation time), so that a batch
    /// reads the events table's primary key in order instead of a time index.
    pub fn id_bound(&self) -> String {
        let newest = self.delivered_before.max(self.dead_before);
        let ms = u64::try_from(newest.saturating_mul(1000)).unwrap_or(0);
        format!(
            "msg_{}",
            ulid::Ulid::from_parts(ms, 0).to_string().to_lowercase()
        )
    }
}

/// One batch of a prune.
#[derive(Debug, Clone, Default)]
pub struct PruneBatch {
    /// What went (or would go).
    pub counts: PruneCounts,
    /// The last event the batch looked at: where the next batch starts (`None` when it found
    /// none: nothing is left). It may have deleted fewer than it looked at (one replayed
    /// meanwhile is kept).
    pub last: Option<String>,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PruneCounts {
    /// Events.
    pub events: u64,
    /// Their deliveries.
    pub deliveries: u64,
    /// Their deliveries' attempts.
    pub attempts: u64,
    /// Idempotency keys.
    pub idempotency_keys: u64,
    /// Health buckets older than a day.
    pub health_buckets: u64,
}

impl std::ops::AddAssign for PruneCounts {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.idempotency_keys += other.idempotency_keys;
        self.health_buckets += other.health_buckets;
    }
}

/// Adds `delta` to a health bucket list, merging buckets with the same start.
pub fn add_to_bucket(buckets: &mut Vec<(i64, u64, u64)>, at_ms: i64, success: bool) {
    let start = at_ms - at_ms.rem_euclid(HEALTH_BUCKET_MS);
    let (ok, failed) = (u64::from(success), u64::from(!success));
    match buckets.iter_mut().find(|(s, _, _)| *s == start) {
        Some(bucket) => {
            bucket.1 += ok;
            bucket.2 += failed;
        }
        None => buckets.push((start, ok, failed)),
    }
}
