//! Recovery and testing of one endpoint: re-send what failed since a time, and send a sample
//! event through the endpoint's steps to see what its receiver answers.

use super::{CatalogError, Engine};
use crate::dispatch::ProbeResult;
use crate::model::{new_id, now_millis, now_unix, rfc3339};
use crate::plugins::CallContext;
use crate::store::{RecoverRequest, StoreError};

/// Deliveries one recovery batch puts back in the queue at most (one write each; what a call
/// holds in memory is one batch of ids).
pub const RECOVER_BATCH: usize = 500;

/// What a test attempt sent and what came back.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EndpointTest {
    /// The sample event's id (its `webhook-id`; the event is not stored).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The attempt.
    pub attempt: ProbeResult,
}

impl Engine {
    /// The tenant's endpoint `endpoint` (`NotFound` otherwise, also for another tenant's).
    pub(super) fn tenant_endpoint(
        &self,
        tenant: &str,
        endpoint: &str,
    ) -> Result<std::sync::Arc<crate::model::Endpoint>, StoreError> {
        self.store
            .directory()
            .endpoint(endpoint)
            .filter(|e| e.tenant_id == tenant)
            .ok_or_else(|| StoreError::NotFound {
                what: "endpoint",
                id: endpoint.to_string(),
            })
    }

    /// Re-sends, once, every failed or dead delivery of the tenant's endpoint whose event was
    /// created at or after `since` (unix seconds): a dead one starts a new retry round, a pending
    /// one waiting for its next retry is due now. They go back to the queue unleased, in
    /// batches of [`RECOVER_BATCH`], and are sent as any other work: within the nodes'
    /// windows and the endpoint's concurrency. Returns how many. Safe to repeat: what a
    /// recovery moved is pending, and a pending delivery is moved once.
    pub async fn recover_endpoint(
        &self,
        tenant: &str,
        endpoint: &str,
        since: i64,
    ) -> Result<u64, StoreError> {
        self.tenant_endpoint(tenant, endpoint)?;
        let mut request = RecoverRequest {
            tenant: tenant.to_string(),
            endpoint: endpoint.to_string(),
            since,
            after: None,
            limit: RECOVER_BATCH,
            now_ms: now_millis(),
        };
        let mut total = 0;
        loop {
            request.now_ms = now_millis();
            let batch = self.store.recover_deliveries(&request).await?;
            total += batch.requeued;
            if batch.requeued > 0 {
                self.dispatcher.note_backlog();
            }
            match batch.last {
                Some(last) if batch.requeued >= RECOVER_BATCH as u64 => request.after = Some(last),
                _ => break,
            }
        }
        tracing::info!(%tenant, %endpoint, since, requeued = total, "recovered deliveries");
        Ok(total)
    }

    /// Sends a sample event of `event_type` to the tenant's endpoint through its TLS settings
    /// and steps, once, and returns the attempt. Its `data` is `data` if given, else the first
    /// of the type's schema `examples`, else `{}`; when the type has a schema, `data` must
    /// satisfy it. Nothing is stored and nothing is retried.
    pub async fn test_endpoint(
        &self,
        tenant: &str,
        endpoint: &str,
        event_type: &str,
        data: Option<serde_json::Value>,
    ) -> Result<EndpointTest, CatalogError> {
        let endpoint = self.tenant_endpoint(tenant, endpoint)?;
        if !crate::event_types::valid_event_type(event_type) {
            return Err(CatalogError::Invalid {
                field: "event_type".into(),
                message: "must be 1-200 characters of letters, digits, '.', '_', '-' and ':'"
                    .into(),
            });
        }
        let data = match data {
            Some(data) => data,
            None => self
                .event_type(tenant, event_type)
                .await
                .ok()
                .and_then(|t| t.schema?.get("examples")?.get(0).cloned())
                .unwrap_or_else(|| serde_json::json!({})),
        };
        let raw = serde_json::value::to_raw_value(&data).map_err(|e| CatalogError::Invalid {
            field: "data".into(),
            message: e.to_string(),
        })?;
        let catalog = self.tenant_catalog(tenant).await?;
        catalog
            .check_data(event_type, &raw)
            .map_err(|violation| CatalogError::Invalid {
                field: format!("data{}", violation.pointer),
                message: format!(
                    "breaks the schema of event type `{event_type}`: {}",
                    violation.message
                ),
            })?;
        let event_id = new_id("msg");
        let now = now_unix();
        let envelope = serde_json::json!({
            "id": event_id,
            "type": event_type,
            "created_at": rfc3339(now),
            "resource": {},
            "data": data,
        });
        let body = serde_json::to_vec(&envelope).map_err(StoreError::database)?;
        let ctx = CallContext {
            tenant: tenant.to_string(),
            endpoint: endpoint.id.clone(),
            event_id: event_id.clone(),
            event_type: event_type.to_string(),
            attempt: 1,
            timestamp: now.max(0) as u64,
        };
        let attempt = self.dispatcher.probe(&endpoint, &ctx, &body).await;
        Ok(EndpointTest {
            event_id,
            event_type: event_type.to_string(),
            attempt,
        })
    }
}
