//! Operational webhooks: system events, delivered by the same engine through the same steps to
//! the endpoints that set `system_events` (the tenant's own; the operator's are those of
//! `operations.operator_tenant`). They are ordinary events of the tenant (in its message log,
//! retried, held while their endpoint is disabled), with the types below and the usual
//! envelope (`id`, `type`, `created_at`, `resource`, `data`); see the README for each `data`.
//!
//! Reports come from the parts that see them through bounded channels (a full channel drops a
//! report with a warning, never blocks an attempt): dead deliveries from the dispatcher
//! (aggregated: one `delivery.dead` per endpoint per `operations.dead_summary_interval`), token
//! failure streaks from the pipeline, load failures and swaps from the plugins directory.

use std::collections::HashMap;
use std::sync::Weak;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Engine;
use crate::dispatch::DeadDelivery;
use crate::model::{new_id, now_unix, rfc3339};
use crate::plugins::PluginEvent;
use crate::store::{NewEvent, StoreError};
use crate::token_failures::TokenFailing;

/// An endpoint was disabled (automatically after failing for `delivery.disable_after`, or by
/// the API).
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
/// An endpoint was enabled again; its held deliveries resume.
pub const ENDPOINT_ENABLED: &str = "endpoint.enabled";
/// Deliveries to an endpoint died (one event per endpoint per interval, with a count).
pub const DELIVERY_DEAD: &str = "delivery.dead";
/// A client certificate's `notAfter` is near.
pub const CLIENT_CERTIFICATE_EXPIRING: &str = "client_certificate.expiring";
/// An endpoint's token route has failed `operations.token_failures` times in a row.
pub const TOKEN_PROVIDER_FAILING: &str = "token_provider.failing";
/// A file of the plugins directory failed to load (to the operator).
pub const PLUGIN_LOAD_FAILED: &str = "plugin.load_failed";
/// A directory plugin was replaced by a new version (to the operator).
pub const PLUGIN_SWAPPED: &str = "plugin.swapped";

/// Every system event type.
pub const SYSTEM_EVENT_TYPES: &[&str] = &[
    ENDPOINT_DISABLED,
    ENDPOINT_ENABLED,
    DELIVERY_DEAD,
    CLIENT_CERTIFICATE_EXPIRING,
    TOKEN_PROVIDER_FAILING,
    PLUGIN_LOAD_FAILED,
    PLUGIN_SWAPPED,
];

/// Reports waiting in each channel at most.
pub(super) const REPORT_QUEUE: usize = 4096;

/// Endpoints with dead deliveries tracked per interval at most (further ones are counted in the
/// log line only).
const MAX_DEAD_ENDPOINTS: usize = 10_000;

/// Deliveries listed by id in one `delivery.dead` at most (the count has them all).
const LISTED_DEAD: usize = 10;

/// The receiving ends of the report channels, until the engine's task takes them.
pub(super) struct Reports {
    pub(super) dead: mpsc::Receiver<DeadDelivery>,
    pub(super) tokens: mpsc::Receiver<TokenFailing>,
    pub(super) plugins: mpsc::Receiver<PluginEvent>,
}

impl Engine {
    /// Sends a system event of `event_type` to the tenant's system endpoints; returns how many
    /// deliveries it got (0 when the tenant has none: nothing is stored).
    pub async fn send_system_event(
        &self,
        tenant: &str,
        event_type: &str,
        resource: Value,
        data: Value,
    ) -> Result<usize, StoreError> {
        let subscribers = self.store.directory().system_subscribers(tenant);
        let deliveries = subscribers.len();
        if deliveries == 0 {
            return Ok(0);
        }
        let id = new_id("msg");
        let created_at = now_unix();
        let envelope = json!({
            "id": id,
            "type": event_type,
            "created_at": rfc3339(created_at),
            "resource": resource,
            "data": data,
        });
        let body = serde_json::to_vec(&envelope).map_err(StoreError::database)?;
        let event = NewEvent {
            id: id.clone(),
            event_type: event_type.to_string(),
            created_at,
            body: body.into(),
            endpoint_ids: subscribers.attempted,
            held_endpoint_ids: subscribers.held,
        };
        self.ingest(tenant, vec![event], None, json!({ "id": id }))
            .await?;
        tracing::info!(%tenant, event_type, deliveries, "system event sent");
        Ok(deliveries)
    }

    /// Sends an operator's system event to `operations.operator_tenant`'s system endpoints (only
    /// logged when none is set).
    pub async fn send_operator_event(&self, event_type: &str, resource: Value, data: Value) {
        let Some(tenant) = self.config.operations.operator_tenant.clone() else {
            return;
        };
        if let Err(e) = self
            .send_system_event(&tenant, event_type, resource, data)
            .await
        {
            tracing::warn!(error = %e, event_type, "could not send an operator system event");
        }
    }

    /// [`Engine::send_system_event`], its failure only logged (a system event never fails what
    /// caused it).
    pub(super) async fn send_or_log(
        &self,
        tenant: &str,
        event_type: &str,
        resource: Value,
        data: Value,
    ) {
        if let Err(e) = self
            .send_system_event(tenant, event_type, resource, data)
            .await
        {
            tracing::warn!(error = %e, %tenant, event_type, "could not send a system event");
        }
    }
}

/// One endpoint's dead deliveries of the current interval.
struct DeadSummary {
    tenant_id: String,
    count: u64,
    deliveries: Vec<Value>,
    last_error: Option<String>,
    since: i64,
}

/// Turns the reports into system events until the engine is gone.
pub(super) async fn run(engine: Weak<Engine>, mut reports: Reports, interval: std::time::Duration) {
    let mut dead: HashMap<String, DeadSummary> = HashMap::new();
    let mut overflow = 0u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            Some(report) = reports.dead.recv() => {
                // A system event's own death is not reported again (no loop).
                if SYSTEM_EVENT_TYPES.contains(&report.event_type.as_str()) {
                    continue;
                }
                if dead.len() >= MAX_DEAD_ENDPOINTS && !dead.contains_key(&report.endpoint_id) {
                    overflow += 1;
                    continue;
                }
                let summary = dead.entry(report.endpoint_id.clone()).or_insert_with(|| DeadSummary {
                    tenant_id: report.tenant_id.clone(),
                    count: 0,
                    deliveries: Vec::new(),
                    last_error: None,
                    since: now_unix(),
                });
                summary.count += 1;
                if summary.deliveries.len() < LISTED_DEAD {
                    summary.deliveries.push(json!({
                        "delivery_id": report.delivery_id,
                        "event_id": report.event_id,
                        "event_type": report.event_type,
                    }));
                }
                if report.error.is_some() {
                    summary.last_error = report.error;
                }
            }
            Some(report) = reports.tokens.recv() => {
                let Some(engine) = engine.upgrade() else { return };
                engine.send_or_log(
                    &report.tenant_id,
                    TOKEN_PROVIDER_FAILING,
                    json!({ "type": "endpoint", "id": report.endpoint_id }),
                    json!({
                        "endpoint_id": report.endpoint_id,
                        "provider": report.provider,
                        "consecutive_failures": report.failures,
                        "last_error": report.error,
                    }),
                ).await;
            }
            Some(report) = reports.plugins.recv() => {
                let Some(engine) = engine.upgrade() else { return };
                let (event_type, plugin, data) = match report {
                    PluginEvent::LoadFailed { plugin, error, sha256 } => (
                        PLUGIN_LOAD_FAILED,
                        plugin.clone(),
                        json!({ "plugin": plugin, "source": "directory", "error": error, "sha256": sha256 }),
                    ),
                    PluginEvent::Swapped { plugin, sha256, previous_sha256 } => (
                        PLUGIN_SWAPPED,
                        plugin.clone(),
                        json!({ "plugin": plugin, "source": "directory", "sha256": sha256,
                                "previous_sha256": previous_sha256 }),
                    ),
                };
                engine.send_operator_event(event_type, json!({ "type": "plugin", "id": plugin }), data).await;
            }
            _ = tick.tick() => {
                let Some(engine) = engine.upgrade() else { return };
                if dead.is_empty() {
                    continue;
                }
                if overflow > 0 {
                    tracing::warn!(overflow, "dead deliveries of more endpoints than tracked in one interval were not summarised");
                    overflow = 0;
                }
                let until = now_unix();
                for (endpoint_id, summary) in dead.drain() {
                    engine.send_or_log(
                        &summary.tenant_id,
                        DELIVERY_DEAD,
                        json!({ "type": "endpoint", "id": endpoint_id }),
                        json!({
                            "endpoint_id": endpoint_id,
                            "count": summary.count,
                            "deliveries": summary.deliveries,
                            "last_error": summary.last_error,
                            "since": rfc3339(summary.since),
                            "until": rfc3339(until),
                        }),
                    ).await;
                }
            }
            else => return,
        }
    }
}
