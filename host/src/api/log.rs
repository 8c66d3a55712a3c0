//! The message log: `GET /v1/tenants/{tenant}/events` lists a tenant's events newest first,
//! filtered and cursor-paginated in the store; `GET …/events/{event}/history` gives one event
//! with every delivery and each delivery's attempts.

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::model::DeliveryStatus;
use crate::store::{EventHistory, LogCursor, LogPage, LogQuery, MAX_LOG_LIMIT};

/// Events per page when `limit` is not given.
pub const DEFAULT_LOG_LIMIT: u32 = 50;

/// Filters and position of `GET /v1/tenants/{tenant}/events`. Every value is checked, and a
/// wrong one is refused naming its parameter.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Only events of this exact type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events with a delivery in this state: `pending`, `delivered` or `dead`.
    pub status: Option<String>,
    /// Only events with a delivery to this endpoint (`ep_…`).
    pub endpoint: Option<String>,
    /// Only events created before this time (RFC 3339 or Unix seconds).
    pub before: Option<String>,
    /// Only events created at or after this time (RFC 3339 or Unix seconds).
    pub after: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Events per page, 1 to 200 (default 50).
    pub limit: Option<String>,
}

/// A time given as RFC 3339 or Unix seconds; `None` for an empty value.
pub fn parse_time(field: &str, text: &str) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(Some(seconds));
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 time (2026-01-31T12:00:00Z) or Unix seconds",
            )
        })
}

impl LogParams {
    /// The store's query for `tenant`.
    pub fn query(&self, tenant: &str) -> Result<LogQuery, ApiError> {
        let non_empty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let status = match non_empty(&self.status) {
            None => None,
            Some(text) => Some(DeliveryStatus::parse(&text).ok_or_else(|| {
                ApiError::invalid("status", "must be `pending`, `delivered` or `dead`")
            })?),
        };
        let cursor = match non_empty(&self.cursor) {
            None => None,
            Some(text) => Some(LogCursor::decode(&text).ok_or_else(|| {
                ApiError::invalid("cursor", "is not a cursor this API gave (next_cursor)")
            })?),
        };
        let limit = match non_empty(&self.limit) {
            None => DEFAULT_LOG_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LOG_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", format!("must be 1 to {MAX_LOG_LIMIT}"))
                })?,
        };
        Ok(LogQuery {
            tenant: tenant.to_string(),
            event_type: non_empty(&self.event_type),
            status,
            endpoint: non_empty(&self.endpoint),
            after: parse_time("after", self.after.as_deref().unwrap_or(""))?,
            before: parse_time("before", self.before.as_deref().unwrap_or(""))?,
            cursor,
            limit,
        })
    }
}

/// Lists a tenant's events, newest first, with how their deliveries stand; filtered by type,
/// delivery state, endpoint and time, and paginated by cursor (`next_cursor`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/events", tag = "events",
    params(("tenant" = String, Path), LogParams),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<LogPage>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let query = params.query(&tenant)?;
    Ok(ApiJson(state.engine.store.log_events(&query).await?))
}

/// One event with every delivery and each delivery's attempts (status code, latency, error,
/// response snippet).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event}/history", tag = "events",
    params(("tenant" = String, Path), ("event" = String, Path)),
    responses((status = 200, body = EventHistory), (status = 404, body = ErrorBody)))]
pub async fn event_history(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, event)): Path<(String, String)>,
) -> Result<ApiJson<EventHistory>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(
        state.engine.store.event_history(&tenant, &event).await?,
    ))
}
