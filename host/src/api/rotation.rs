//! `POST .../endpoints/{endpoint}/steps/{step}/rotate-secret`: a step's signing secret
//! rotated with an overlap (see the engine's rotation use case).

use std::time::Duration;

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::endpoints::{EndpointView, view};
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::engine::DEFAULT_SECRET_OVERLAP;

/// Body of `POST .../rotate-secret`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret, in the form the step's plugin takes (`standard-webhooks`:
    /// `whsec_<base64>`). Never shown in answers.
    #[schema(write_only)]
    pub secret: String,
    /// How long the current secret keeps signing next to the new one, in seconds (default
    /// 86400, at most 30 days; rounded up to a whole second).
    #[serde(default)]
    #[schema(maximum = 2592000)]
    pub overlap_seconds: Option<u64>,
}

impl std::fmt::Debug for RotateSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateSecret")
            .field("secret", &crate::secrets::REDACTED)
            .field("overlap_seconds", &self.overlap_seconds)
            .finish()
    }
}

/// Rotates the secret of step `step` (0-based) of the endpoint: the current secret becomes
/// `previous_secret`, signing next to the new one until `previous_secret_expires` (now +
/// `overlap_seconds`), so that a receiver holding either verifies during the overlap. For steps
/// whose plugin declares `secret`, `previous_secret` and `previous_secret_expires` (the built-in
/// `standard-webhooks`). Answers the endpoint, secrets redacted.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/endpoints/{endpoint}/steps/{step}/rotate-secret", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path), ("step" = usize, Path, description = "Index of the step (0-based)")),
    request_body = RotateSecret,
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, endpoint, step)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let step: usize = step
        .parse()
        .map_err(|_| ApiError::invalid("step", "must be a step's index (0, 1, …)"))?;
    let overlap = body
        .overlap_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_SECRET_OVERLAP);
    let rotated = state
        .engine
        .rotate_step_secret(&tenant, &endpoint, step, &body.secret, overlap)
        .await?;
    Ok(ApiJson(view(&state, &rotated)))
}
