//! `POST .../endpoints/{endpoint}/recover` (re-send what failed since a time) and
//! `POST .../endpoints/{endpoint}/test` (one sample event through the endpoint's steps). Thin
//! over the engine's use cases.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::engine::EndpointTest;

/// Body of `POST .../recover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// RFC 3339 time (`2026-12-01T00:00:00Z`): deliveries of events created at or after it.
    #[schema(format = DateTime)]
    pub since: String,
}

/// Answer of `POST .../recover`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recovered {
    /// Deliveries put back in the queue.
    pub requeued: u64,
}

/// Body of `POST .../test`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestEndpoint {
    /// The sample event's type.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub event_type: String,
    /// The sample event's `data`; by default the first of the type's schema `examples`, else
    /// `{}`. Must satisfy the type's schema when it has one.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// Re-sends, once, every failed (waiting for a retry) or dead delivery of the endpoint whose
/// event was created since `since`, paced like any other work by the engine's window and the
/// endpoint's concurrency. Safe to repeat: a delivery already re-sent and still pending is not
/// counted again.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/endpoints/{endpoint}/recover", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)), request_body = Recover,
    responses((status = 202, body = Recovered), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, endpoint)): Path<(String, String)>,
    ApiJson(body): ApiJson<Recover>,
) -> Result<(StatusCode, ApiJson<Recovered>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let since = time::OffsetDateTime::parse(
        body.since.trim(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| ApiError::invalid("since", format!("must be an RFC 3339 time: {e}")))?
    .unix_timestamp();
    let requeued = state
        .engine
        .recover_endpoint(&tenant, &endpoint, since)
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(Recovered { requeued })))
}

/// Sends a sample event of a chosen type to the endpoint through its TLS settings and steps,
/// once, and answers with the attempt (status, latency, error, response snippet). Nothing is
/// stored or retried; a failed attempt is still a 200 answer (see `attempt.success`).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/endpoints/{endpoint}/test", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)), request_body = TestEndpoint,
    responses((status = 200, body = EndpointTest), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, endpoint)): Path<(String, String)>,
    ApiJson(body): ApiJson<TestEndpoint>,
) -> Result<ApiJson<EndpointTest>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(
        state
            .engine
            .test_endpoint(&tenant, &endpoint, &body.event_type, body.data)
            .await?,
    ))
}
