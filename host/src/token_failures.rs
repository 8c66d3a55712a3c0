//! Failure streaks of token routes: an endpoint whose token provider has failed `threshold`
//! times in a row is reported once (`token_provider.failing`), and again only after a success
//! ended the streak.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Streaks tracked at most (one per endpoint and provider that is failing); beyond, new streaks
/// are not counted.
const MAX_STREAKS: usize = 100_000;

/// A token route that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFailing {
    /// The tenant.
    pub tenant_id: String,
    /// The endpoint whose step asked for the token.
    pub endpoint_id: String,
    /// The token provider plugin.
    pub provider: String,
    /// Failures in a row.
    pub failures: u32,
    /// The last error.
    pub error: String,
}

/// Counts failures in a row per endpoint and provider.
pub struct TokenFailures {
    threshold: u32,
    streaks: Mutex<HashMap<(String, String), u32>>,
    sink: OnceLock<tokio::sync::mpsc::Sender<TokenFailing>>,
}

impl TokenFailures {
    /// Reports a streak when it reaches `threshold` (at least 1).
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            streaks: Mutex::default(),
            sink: OnceLock::new(),
        }
    }

    /// Sends the reports to `sink` from now on.
    pub fn report_to(&self, sink: tokio::sync::mpsc::Sender<TokenFailing>) {
        let _ = self.sink.set(sink);
    }

    /// A token was fetched: the streak is over.
    pub fn succeeded(&self, endpoint: &str, provider: &str) {
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        if !streaks.is_empty() {
            streaks.remove(&(endpoint.to_string(), provider.to_string()));
        }
    }

    /// A fetch failed; reports the streak when it reaches the threshold.
    pub fn failed(&self, tenant: &str, endpoint: &str, provider: &str, error: &str) {
        let failures = {
            let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
            let key = (endpoint.to_string(), provider.to_string());
            if streaks.len() >= MAX_STREAKS && !streaks.contains_key(&key) {
                return;
            }
            let count = streaks.entry(key).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        if failures == self.threshold
            && let Some(sink) = self.sink.get()
            && sink
                .try_send(TokenFailing {
                    tenant_id: tenant.to_string(),
                    endpoint_id: endpoint.to_string(),
                    provider: provider.to_string(),
                    failures,
                    error: error.to_string(),
                })
                .is_err()
        {
            tracing::warn!("too many token failure reports waiting; one dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_streak_is_reported_once_at_the_threshold_and_again_after_a_success() {
        let failures = TokenFailures::new(2);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        failures.report_to(tx);
        for _ in 0..4 {
            failures.failed("t", "ep", "oauth", "refused");
        }
        assert_eq!(rx.try_recv().unwrap().failures, 2);
        assert!(rx.try_recv().is_err(), "once per streak");
        failures.succeeded("ep", "oauth");
        failures.failed("t", "ep", "oauth", "refused");
        assert!(rx.try_recv().is_err());
        failures.failed("t", "ep", "oauth", "refused");
        assert_eq!(rx.try_recv().unwrap().endpoint_id, "ep");
    }
}
