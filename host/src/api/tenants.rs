//! `/v1/tenants`: create (returns the tenant token, once), list, get, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, new_tenant_token, token_digest};
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::model::{Tenant, new_id, now_unix};

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Slug: 1-64 of `a-z 0-9 - _`, starting with a letter or digit. Generated when absent.
    #[serde(default)]
    #[schema(
        pattern = "^[a-z0-9][a-z0-9_-]{0,63}$",
        min_length = 1,
        max_length = 64
    )]
    pub id: Option<String>,
    /// Display name (1-200 characters, not only spaces).
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
}

/// Answer of `POST /v1/tenants`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// The tenant's API token. Shown once: only its digest is stored.
    pub token: String,
}

/// Checks a slug used as an id or a name.
pub fn check_slug(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "`{value}` must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            ),
        ))
    }
}

/// Creates a tenant and returns its token (admin only).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantCreated), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, ApiJson<TenantCreated>), ApiError> {
    caller.require_admin()?;
    let id = body.id.unwrap_or_else(|| new_id("tn"));
    check_slug("id", &id)?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "must be 1-200 characters"));
    }
    let token = new_tenant_token();
    let tenant = Tenant {
        id,
        name,
        created_at: now_unix(),
    };
    let tenant = state
        .engine
        .store
        .create_tenant(tenant, token_digest(&token))
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(TenantCreated { tenant, token }),
    ))
}

/// Lists tenants (admin only).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, body = Vec<Tenant>)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<Tenant>>, ApiError> {
    caller.require_admin()?;
    Ok(ApiJson(state.engine.store.directory().tenants()))
}

/// One tenant (admin, or the tenant itself).
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Tenant>, ApiError> {
    Ok(ApiJson(caller.tenant(&state, &tenant)?))
}

/// Deletes a tenant with its endpoints, events, deliveries and plugins (admin only).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    caller.tenant(&state, &tenant)?;
    state.engine.delete_tenant(&tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}
