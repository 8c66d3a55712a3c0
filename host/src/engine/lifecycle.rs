//! Endpoint health and the endpoint's enabled state: disabling (by the API, or automatically
//! once it has failed for `delivery.disable_after`) holds its deliveries; enabling resumes them
//! in order of creation, forgets the failure streak and says so in a system event.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::Engine;
use super::system_events::{ENDPOINT_DISABLED, ENDPOINT_ENABLED};
use crate::model::{Endpoint, now_millis, now_unix, rfc3339};
use crate::store::{EndpointHealth, FailingEndpoint, StoreError};

/// Why an endpoint was disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// By the API (`POST …/disable`, or `enabled: false`).
    Manual,
    /// It failed continuously for `delivery.disable_after`.
    Failing,
}

impl DisableReason {
    fn as_str(self) -> &'static str {
        match self {
            DisableReason::Manual => "manual",
            DisableReason::Failing => "failing",
        }
    }
}

impl Engine {
    /// The stored health of the endpoints (those with any attempts on record), by id.
    pub async fn endpoint_health(
        &self,
        endpoint_ids: &[String],
    ) -> Result<HashMap<String, EndpointHealth>, StoreError> {
        Ok(self
            .store
            .health(endpoint_ids, now_millis())
            .await?
            .into_iter()
            .map(|h| (h.endpoint_id.clone(), h.view()))
            .collect())
    }

    /// Disables the tenant's endpoint: its deliveries are held from now on. Returns the endpoint
    /// (unchanged when it was disabled already).
    pub async fn disable_endpoint(
        &self,
        tenant: &str,
        endpoint: &str,
        reason: DisableReason,
    ) -> Result<Arc<Endpoint>, StoreError> {
        let current = self.tenant_endpoint(tenant, endpoint)?;
        self.set_enabled(&current, false, reason, None).await
    }

    /// Enables the tenant's endpoint: its held deliveries are sent in order of creation.
    pub async fn enable_endpoint(
        &self,
        tenant: &str,
        endpoint: &str,
    ) -> Result<Arc<Endpoint>, StoreError> {
        let current = self.tenant_endpoint(tenant, endpoint)?;
        if current.spec.enabled {
            // Held deliveries are resumed even so (it is safe to repeat): whatever was left
            // held, by a crash between the enable and its resume say, goes out.
            self.resume_endpoint(&current).await?;
            return Ok(current);
        }
        self.set_enabled(&current, true, DisableReason::Manual, None)
            .await
    }

    /// Stores `current` with `enabled` and does what follows (see
    /// [`Engine::endpoint_state_changed`]); `current` itself when nothing changes.
    async fn set_enabled(
        &self,
        current: &Arc<Endpoint>,
        enabled: bool,
        reason: DisableReason,
        failing: Option<&FailingEndpoint>,
    ) -> Result<Arc<Endpoint>, StoreError> {
        if current.spec.enabled == enabled {
            return Ok(current.clone());
        }
        let mut changed = (**current).clone();
        changed.spec.enabled = enabled;
        changed.updated_at = now_unix().max(current.updated_at + 1);
        self.change_endpoint(current, changed, reason, failing)
            .await
    }

    /// Stores `changed` in place of `current` and does what follows a change of its enabled
    /// state (see [`Engine::endpoint_state_changed`]), whichever way it was made (the
    /// `…/disable` and `…/enable` routes, an update's `enabled`, the auto-disable job).
    ///
    /// Enabling forgets the failure streak *before* the endpoint is stored enabled: the
    /// auto-disable job reads an endpoint's state before its streak (see
    /// [`Engine::disable_failing_endpoints`]), so it cannot pair the old streak with the new
    /// state and disable the endpoint again at once.
    pub async fn change_endpoint(
        &self,
        current: &Endpoint,
        changed: Endpoint,
        reason: DisableReason,
        failing: Option<&FailingEndpoint>,
    ) -> Result<Arc<Endpoint>, StoreError> {
        if !current.spec.enabled && changed.spec.enabled {
            self.store.reset_failure_streak(&current.id).await?;
        }
        let stored = self.put_endpoint(changed).await?;
        self.endpoint_state_changed(current, &stored, reason, failing)
            .await;
        Ok(stored)
    }

    /// What follows an endpoint's change of enabled state: enabling resumes its held
    /// deliveries; either way the tenant's system endpoints hear of it.
    async fn endpoint_state_changed(
        &self,
        before: &Endpoint,
        after: &Endpoint,
        reason: DisableReason,
        failing: Option<&FailingEndpoint>,
    ) {
        match (before.spec.enabled, after.spec.enabled) {
            (true, false) => {
                let mut data = json!({ "endpoint_id": after.id, "reason": reason.as_str() });
                if let Some(failing) = failing {
                    data["failing_since"] = json!(rfc3339(failing.failing_since_ms / 1000));
                    data["consecutive_failures"] = json!(failing.consecutive_failures);
                }
                tracing::info!(endpoint = %after.id, reason = reason.as_str(), "endpoint disabled");
                self.send_or_log(
                    &after.tenant_id,
                    ENDPOINT_DISABLED,
                    json!({ "type": "endpoint", "id": after.id }),
                    data,
                )
                .await;
            }
            (false, true) => match self.resume_endpoint(after).await {
                Ok(resumed) => self.announce_enabled(after, resumed).await,
                Err(e) => {
                    tracing::error!(error = %e, endpoint = %after.id, "could not resume held deliveries; enable the endpoint again")
                }
            },
            _ => {}
        }
    }

    /// Makes the endpoint's held deliveries pending.
    async fn resume_endpoint(&self, endpoint: &Endpoint) -> Result<u64, StoreError> {
        let resumed = self.store.resume_held(&endpoint.id, now_millis()).await?;
        if resumed > 0 {
            self.dispatcher.note_backlog();
        }
        Ok(resumed)
    }

    async fn announce_enabled(&self, endpoint: &Endpoint, resumed: u64) {
        tracing::info!(endpoint = %endpoint.id, resumed, "endpoint enabled");
        self.send_or_log(
            &endpoint.tenant_id,
            ENDPOINT_ENABLED,
            json!({ "type": "endpoint", "id": endpoint.id }),
            json!({ "endpoint_id": endpoint.id, "resumed_deliveries": resumed }),
        )
        .await;
    }

    /// Disables every enabled endpoint that has failed continuously for
    /// `delivery.disable_after` with at least `delivery.disable_min_attempts` failures in a
    /// row; returns how many. (A periodic job: one node at a time.)
    pub async fn disable_failing_endpoints(&self) -> Result<usize, StoreError> {
        let after = self.config.delivery.disable_after;
        if after.is_zero() {
            return Ok(0);
        }
        let before = now_millis() - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let failing = self
            .store
            .failing_endpoints(before, u64::from(self.config.delivery.disable_min_attempts))
            .await?;
        let mut disabled = 0;
        for candidate in failing {
            let Some(current) = self.store.directory().endpoint(&candidate.endpoint_id) else {
                continue;
            };
            if !current.spec.enabled {
                continue;
            }
            // The streak is read again now that the state is known: an enable that came
            // between the two reads forgot the streak before it stored the endpoint enabled,
            // so a streak still standing here is one the endpoint earned while enabled.
            let still_failing = self
                .store
                .health(std::slice::from_ref(&candidate.endpoint_id), now_millis())
                .await?
                .into_iter()
                .any(|h| {
                    h.failing_since_ms.is_some_and(|since| since <= before)
                        && h.consecutive_failures
                            >= u64::from(self.config.delivery.disable_min_attempts)
                });
            if still_failing {
                self.set_enabled(&current, false, DisableReason::Failing, Some(&candidate))
                    .await?;
                disabled += 1;
            }
        }
        Ok(disabled)
    }
}
