//! Rotating a step's signing secret with an overlap: the current secret becomes the previous
//! one, still used until `previous_secret_expires`, and the new one signs from now on.
//!
//! This works for every step whose plugin's config schema declares the three properties of the
//! convention: `secret`, `previous_secret` and `previous_secret_expires` (RFC 3339). The built-in
//! `standard-webhooks` does, and then sends both signatures during the overlap. The same result
//! can be had by a `PATCH` of the endpoint's steps that sets the three fields; this use case saves
//! the caller from sending back the current secret (which answers never show).

use std::sync::Arc;
use std::time::Duration;

use super::{CatalogError, Engine};
use crate::model::{Endpoint, now_millis, now_unix, rfc3339};

/// The overlap when the caller names none.
pub const DEFAULT_SECRET_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap accepted.
pub const MAX_SECRET_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// The fields of the convention.
const CONVENTION: [&str; 3] = ["secret", "previous_secret", "previous_secret_expires"];

fn invalid(field: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Engine {
    /// Rotates the secret of step `step` of the tenant's endpoint to `new_secret`, keeping the
    /// current one as `previous_secret` for `overlap` (rounded up to a whole second): until
    /// then a receiver holding either secret verifies. A previous secret still in its overlap
    /// is dropped. The endpoint is checked (the plugin's `validate`) and stored as by an update;
    /// secrets stay sealed at rest and redacted in answers.
    pub async fn rotate_step_secret(
        &self,
        tenant: &str,
        endpoint: &str,
        step: usize,
        new_secret: &str,
        overlap: Duration,
    ) -> Result<Arc<Endpoint>, CatalogError> {
        if overlap > MAX_SECRET_OVERLAP {
            return Err(invalid(
                "overlap_seconds",
                format!("must be at most {}", MAX_SECRET_OVERLAP.as_secs()),
            ));
        }
        let current = self.tenant_endpoint(tenant, endpoint)?;
        let field = format!("steps[{step}]");
        let spec = current
            .spec
            .steps
            .get(step)
            .ok_or_else(|| invalid(&field, "the endpoint has no step at this index"))?;
        let plugin = self
            .registry
            .resolve(tenant, &spec.plugin)
            .map_err(|e| invalid(format!("{field}.plugin"), e.to_string()))?;
        let properties = plugin.info().config_schema.get("properties").cloned();
        if !CONVENTION.iter().all(|p| {
            properties
                .as_ref()
                .is_some_and(|props| props.get(p).is_some())
        }) {
            return Err(invalid(
                format!("{field}.plugin"),
                format!(
                    "`{}` has no secret to rotate with an overlap (its config declares no \
                     `secret`, `previous_secret` and `previous_secret_expires`)",
                    spec.plugin
                ),
            ));
        }
        let old = spec
            .config
            .get("secret")
            .cloned()
            .ok_or_else(|| invalid(format!("{field}.config.secret"), "no secret is set"))?;
        if old.as_str() == Some(new_secret) {
            return Err(invalid("secret", "is the current secret; send a new one"));
        }
        // Rounded up to the next second: the overlap is never shorter than asked.
        let until_ms = now_millis().saturating_add(overlap.as_millis() as i64);
        let until = until_ms.div_euclid(1000) + i64::from(until_ms.rem_euclid(1000) > 0);
        let mut endpoint = (*current).clone();
        let config = &mut endpoint.spec.steps[step].config;
        if let Some(map) = config.as_object_mut() {
            map.insert("secret".into(), new_secret.into());
            map.insert("previous_secret".into(), old);
            map.insert("previous_secret_expires".into(), rfc3339(until).into());
        }
        endpoint.updated_at = now_unix().max(current.updated_at + 1);
        self.pipeline
            .validate_endpoint(
                tenant,
                &endpoint.spec,
                self.config.plugins.require_auth_and_security,
            )
            .await
            .map_err(|e| {
                // The new secret's own field, when the plugin refused it.
                let detail = e
                    .reason
                    .strip_prefix("invalid config: ")
                    .unwrap_or(&e.reason);
                let field = if detail.starts_with("secret:") {
                    "secret".to_string()
                } else {
                    e.field
                };
                invalid(field, e.reason)
            })?;
        Ok(self.put_endpoint(endpoint).await?)
    }
}
