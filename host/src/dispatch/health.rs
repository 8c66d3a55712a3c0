//! Endpoint health as this node sees it: each attempt's outcome is added to an in-memory delta
//! per endpoint (a map update, no store write on the hot path), and the deltas go to the store
//! once a second ([`HEALTH_FLUSH`]), where every node's reports add up. A crash loses at most
//! the last second of counts: health is statistics, deliveries never depend on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Dispatcher;
use crate::store::{HealthDelta, add_to_bucket};

/// How often the deltas go to the store.
pub const HEALTH_FLUSH: Duration = Duration::from_secs(1);

/// Endpoints tracked between two flushes at most; attempts of further endpoints wait for the
/// next flush (counted, never stored in memory).
const MAX_TRACKED: usize = 100_000;

/// What this node saw since its last report, by endpoint.
#[derive(Default)]
pub struct HealthTracker {
    deltas: Mutex<HashMap<String, HealthDelta>>,
}

impl HealthTracker {
    /// Adds one attempt's outcome.
    pub fn record(&self, tenant: &str, endpoint: &str, at_ms: i64, success: bool) {
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        // No allocation for an endpoint already tracked (the common case on the hot path).
        if !deltas.contains_key(endpoint) {
            if deltas.len() >= MAX_TRACKED {
                return;
            }
            deltas.insert(
                endpoint.to_string(),
                HealthDelta {
                    endpoint_id: endpoint.to_string(),
                    tenant_id: tenant.to_string(),
                    ..HealthDelta::default()
                },
            );
        }
        let Some(delta) = deltas.get_mut(endpoint) else {
            return;
        };
        if success {
            delta.last_success_ms = delta.last_success_ms.max(Some(at_ms));
            delta.trailing_failures = 0;
            delta.first_trailing_failure_ms = None;
        } else {
            delta.last_failure_ms = delta.last_failure_ms.max(Some(at_ms));
            delta.trailing_failures += 1;
            delta.first_trailing_failure_ms.get_or_insert(at_ms);
        }
        add_to_bucket(&mut delta.buckets, at_ms, success);
    }

    /// Takes what was seen since the last call.
    pub fn take(&self) -> Vec<HealthDelta> {
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *deltas).into_values().collect()
    }
}

/// Sends the deltas to the store every [`HEALTH_FLUSH`] until aborted.
pub(super) async fn reporter(dispatcher: Arc<Dispatcher>) {
    let mut tick = tokio::time::interval(HEALTH_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        dispatcher.report_health().await;
    }
}

impl Dispatcher {
    /// Sends what this node saw of endpoint health to the store now.
    pub async fn report_health(&self) {
        let deltas = self.health.take();
        if deltas.is_empty() {
            return;
        }
        if let Err(e) = self.store.add_health(&deltas).await {
            tracing::warn!(error = %e, endpoints = deltas.len(), "could not store endpoint health; those counts are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_ends_the_failure_streak_and_later_failures_start_a_new_one() {
        let tracker = HealthTracker::default();
        tracker.record("t", "ep", 1_000, false);
        tracker.record("t", "ep", 2_000, false);
        tracker.record("t", "ep", 3_000, true);
        tracker.record("t", "ep", 4_000, false);
        let deltas = tracker.take();
        assert_eq!(deltas.len(), 1);
        let d = &deltas[0];
        assert_eq!(d.last_success_ms, Some(3_000));
        assert_eq!(d.last_failure_ms, Some(4_000));
        assert_eq!(d.trailing_failures, 1);
        assert_eq!(d.first_trailing_failure_ms, Some(4_000));
        assert_eq!(d.buckets, vec![(0, 1, 3)]);
        assert!(tracker.take().is_empty(), "taken once");
    }

    #[test]
    fn failures_only_keep_the_first_failure_time() {
        let tracker = HealthTracker::default();
        for at in [5_000, 6_000, 400_000] {
            tracker.record("t", "ep", at, false);
        }
        let d = &tracker.take()[0];
        assert_eq!(d.last_success_ms, None);
        assert_eq!(d.trailing_failures, 3);
        assert_eq!(d.first_trailing_failure_ms, Some(5_000));
        assert_eq!(d.buckets, vec![(0, 0, 2), (300_000, 0, 1)]);
    }
}
