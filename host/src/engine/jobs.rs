//! The periodic jobs: retention, auto-disable of failing endpoints, resuming deliveries left
//! held on enabled endpoints, client certificate expiry warnings. Every `jobs.interval` each
//! node asks the store for the jobs' lease; the one that holds it (renewed by each run, lapsing
//! after `jobs.lease_ttl` when its node dies) runs them, so in a cluster one node does them at
//! a time.

use std::sync::Weak;
use std::time::Duration;

use serde_json::json;

use super::Engine;
use super::system_events::CLIENT_CERTIFICATE_EXPIRING;
use crate::config::RetentionConfig;
use crate::model::{now_millis, now_unix, rfc3339};
use crate::store::{Lease, PruneCounts, PruneRequest, Store, StoreError};

/// The name of the jobs' lease in the store.
pub const JOBS_LEASE: &str = "maintenance";

impl Engine {
    /// Takes (or renews) the jobs' lease for this node; `false` when another node holds it.
    pub async fn take_jobs_lease(&self) -> Result<bool, StoreError> {
        let now = now_millis();
        let lease = Lease {
            owner: self.dispatcher.node().to_string(),
            expires_at_ms: now
                + i64::try_from(self.config.jobs.lease_ttl.as_millis()).unwrap_or(i64::MAX),
        };
        self.store.take_job_lease(JOBS_LEASE, &lease, now).await
    }

    /// Runs every periodic job once (this node must hold the jobs' lease).
    pub async fn run_jobs(&self) {
        self.metrics.jobs_run.inc();
        match self.disable_failing_endpoints().await {
            Ok(0) => {}
            Ok(disabled) => tracing::info!(disabled, "disabled failing endpoints"),
            Err(e) => tracing::warn!(error = %e, "auto-disable job failed"),
        }
        match self.store.resume_stranded(now_millis()).await {
            Ok(0) => {}
            Ok(resumed) => {
                tracing::info!(resumed, "resumed held deliveries of enabled endpoints");
                self.dispatcher.note_backlog();
            }
            Err(e) => tracing::warn!(error = %e, "resuming held deliveries failed"),
        }
        if let Err(e) = self.warn_expiring_certificates().await {
            tracing::warn!(error = %e, "certificate expiry job failed");
        }
        if self.config.retention.enabled {
            match self.prune(false).await {
                Ok(counts) if counts.events + counts.idempotency_keys > 0 => {
                    tracing::info!(?counts, "retention pruned")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention job failed"),
            }
        }
    }

    /// Deletes (or, with `dry_run`, counts) everything past its retention window (see
    /// [`prune`]).
    pub async fn prune(&self, dry_run: bool) -> Result<PruneCounts, StoreError> {
        prune(&self.store, &self.config.retention, dry_run).await
    }

    /// Sends `client_certificate.expiring` once per certificate at each of
    /// `operations.certificate_warnings` before its `notAfter` (the nearest one passed; the
    /// store remembers what was sent, so a restart or another node does not send it again).
    async fn warn_expiring_certificates(&self) -> Result<(), StoreError> {
        let mut warnings = self.config.operations.certificate_warnings.clone();
        warnings.sort();
        let now = now_unix();
        let tenants = self.store.directory().tenants();
        for tenant in tenants {
            if self
                .store
                .directory()
                .system_subscribers(&tenant.id)
                .is_empty()
            {
                continue;
            }
            for record in self.store.client_certificates(&tenant.id).await? {
                let Some(pem) = &record.certificate_pem else {
                    continue;
                };
                let Ok(summary) = crate::tls::leaf_summary(pem) else {
                    continue;
                };
                let left = summary.not_after - now;
                // The nearest warning already passed (warnings sorted, shortest first).
                let Some(warning) = warnings
                    .iter()
                    .find(|w| left <= i64::try_from(w.as_secs()).unwrap_or(i64::MAX))
                else {
                    continue;
                };
                let key = format!(
                    "certificate-expiring:{}:{}:{}",
                    record.id,
                    summary.not_after,
                    warning.as_secs()
                );
                if !self.store.note_once(&key, now).await? {
                    continue;
                }
                self.send_system_event(
                    &tenant.id,
                    CLIENT_CERTIFICATE_EXPIRING,
                    json!({ "type": "client_certificate", "id": record.id }),
                    json!({
                        "certificate_id": record.id,
                        "name": record.name,
                        "subject": summary.subject,
                        "not_after": rfc3339(summary.not_after),
                        "warning": humantime::format_duration(*warning).to_string(),
                        "expired": left <= 0,
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Deletes (or, with `dry_run`, counts) everything of `store` past its retention window, in
/// batches of `retention.batch_size` (by default per backend, see
/// [`RetentionConfig::batch_size_on`]) with `retention.batch_pause` between them; tenants with
/// their own windows (`retention.tenants`) are done with those.
pub async fn prune(
    store: &Store,
    retention: &RetentionConfig,
    dry_run: bool,
) -> Result<PruneCounts, StoreError> {
    let now = now_unix();
    let batch_size = retention.batch_size_on(store.shared());
    let before = |window: Duration| now - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let mut total = PruneCounts::default();
    let overrides: Vec<String> = retention.tenants.keys().cloned().collect();
    let mut scopes: Vec<(Option<String>, i64, i64)> = retention
        .tenants
        .iter()
        .map(|(tenant, own)| {
            (
                Some(tenant.clone()),
                before(own.delivered.unwrap_or(retention.delivered)),
                before(own.dead.unwrap_or(retention.dead)),
            )
        })
        .collect();
    scopes.push((None, before(retention.delivered), before(retention.dead)));
    for (tenant, delivered_before, dead_before) in scopes {
        let mut request = PruneRequest {
            tenant,
            except: overrides.clone(),
            delivered_before,
            dead_before,
            after: None,
            limit: batch_size,
            dry_run,
        };
        loop {
            let batch = store.prune_events(&request).await?;
            total += batch.counts;
            // A batch may delete fewer than it looked at (an event replayed meanwhile stays):
            // only an empty one says there is nothing left.
            let Some(last) = batch.last else {
                break;
            };
            request.after = Some(last);
            if !dry_run {
                tokio::time::sleep(retention.batch_pause).await;
            }
        }
    }
    if !dry_run
        && total.events > 0
        && let Err(e) = store.reclaim_space().await
    {
        // The deletes stand; the space waits for the database's own vacuum.
        tracing::warn!(error = %e, "retention could not reclaim the space it freed");
    }
    let keys_before = before(retention.idempotency_keys);
    loop {
        let counts = store
            .prune_keys(keys_before, now_millis(), batch_size, dry_run)
            .await?;
        total.idempotency_keys += counts.idempotency_keys;
        total.health_buckets += counts.health_buckets;
        let full = counts.idempotency_keys.max(counts.health_buckets) >= batch_size as u64;
        if dry_run || !full {
            break;
        }
        tokio::time::sleep(retention.batch_pause).await;
    }
    Ok(total)
}

/// Runs the jobs every `interval` while this node holds their lease, until the engine is gone.
pub(super) async fn run(engine: Weak<Engine>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        match engine.take_jobs_lease().await {
            Ok(true) => engine.run_jobs().await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the jobs' lease; trying again"),
        }
    }
}
