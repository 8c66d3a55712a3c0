//! `/v1/tenants/{tenant}/event-types`: the tenant's event-type catalog (name, description,
//! optional JSON Schema of `data`, deprecated flag), and `/v1/tenants/{tenant}/settings` with
//! its `strict_event_types`. Thin over the engine's catalog use cases.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::engine::{CatalogError, EventTypeChange};
use crate::event_types::{CatalogSettings, EventType};

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Store(e) => e.into(),
            CatalogError::Invalid { field, message } => ApiError::invalid(field, message),
        }
    }
}

/// A present field, `null` included (`Some(None)`), as opposed to an absent one (`None`).
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<serde_json::Value>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

/// Body of `POST .../event-types`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEventType {
    /// The name events carry as `type` (letters, digits, `.`, `_`, `-`, `:`; at most 200).
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub name: String,
    /// Free text (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// JSON Schema (draft 2020-12) of the events' `data`: at most 64 KiB, 32 levels deep, no
    /// reference outside itself; patterns in the linear-time `regex` dialect (no look-around
    /// or back-references). Ingest answers 422 naming the JSON pointer of the first violation.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<serde_json::Value>,
    /// Kept for existing producers and subscribers; new integrations should not use it.
    #[serde(default)]
    pub deprecated: bool,
}

/// Body of `PATCH .../event-types/{name}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEventType {
    /// New description.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// New schema; `null` removes it (any data is then accepted).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<Option<serde_json::Value>>,
    /// New deprecated flag.
    #[serde(default)]
    pub deprecated: Option<bool>,
}

/// Body of `PATCH /v1/tenants/{tenant}/settings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// When on, endpoints may only subscribe to types of the catalog (a `prefix.*` pattern must
    /// match at least one; `*` and an empty list stay allowed). Existing endpoints are checked
    /// at their next change.
    #[serde(default)]
    pub strict_event_types: Option<bool>,
}

/// Adds an event type to the tenant's catalog.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/event-types", tag = "event-types",
    params(("tenant" = String, Path)), request_body = CreateEventType,
    responses((status = 201, body = EventType), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateEventType>,
) -> Result<(StatusCode, ApiJson<EventType>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let change = EventTypeChange {
        description: body.description,
        schema: Some(body.schema),
        deprecated: Some(body.deprecated),
    };
    let created = state
        .engine
        .create_event_type(&tenant, &body.name, change)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

/// The tenant's event types, by name.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/event-types", tag = "event-types",
    params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<EventType>), (status = 404, body = ErrorBody)))]
pub async fn list_event_types(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<EventType>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(state.engine.list_event_types(&tenant).await?))
}

/// One event type.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/event-types/{name}", tag = "event-types",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EventType), (status = 404, body = ErrorBody)))]
pub async fn get_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<ApiJson<EventType>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(state.engine.event_type(&tenant, &name).await?))
}

/// Changes an event type (description, schema, deprecated flag).
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/event-types/{name}", tag = "event-types",
    params(("tenant" = String, Path), ("name" = String, Path)), request_body = UpdateEventType,
    responses((status = 200, body = EventType), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateEventType>,
) -> Result<ApiJson<EventType>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let change = EventTypeChange {
        description: body.description,
        schema: body.schema,
        deprecated: body.deprecated,
    };
    Ok(ApiJson(
        state
            .engine
            .update_event_type(&tenant, &name, change)
            .await?,
    ))
}

/// Deletes an event type (endpoints subscribed to it keep their subscription).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/event-types/{name}", tag = "event-types",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.tenant(&state, &tenant)?;
    if state.engine.delete_event_type(&tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("event type", &name))
    }
}

/// The tenant's settings.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/settings", tag = "event-types",
    params(("tenant" = String, Path)),
    responses((status = 200, body = CatalogSettings), (status = 404, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<CatalogSettings>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(state.engine.catalog_settings(&tenant).await?))
}

/// Changes the tenant's settings.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/settings", tag = "event-types",
    params(("tenant" = String, Path)), request_body = UpdateSettings,
    responses((status = 200, body = CatalogSettings), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<UpdateSettings>,
) -> Result<ApiJson<CatalogSettings>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let mut settings = state.engine.catalog_settings(&tenant).await?;
    if let Some(strict) = body.strict_event_types {
        settings.strict_event_types = strict;
    }
    Ok(ApiJson(
        state.engine.set_catalog_settings(&tenant, settings).await?,
    ))
}
