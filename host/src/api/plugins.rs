//! `/v1/plugins` and `/v1/tenants/{tenant}/plugins`: what plugins exist, and tenant-owned
//! components (uploaded as raw bytes, checked and loaded before they are kept).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::plugins::PluginStatus;

/// Built-in and operator plugins: name, kind, version, hash, source, status, last load error.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", responses((status = 200, body = Vec<Object>)))]
pub async fn list_plugins(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiJson<Vec<PluginStatus>> {
    ApiJson(state.engine.registry.list(None))
}

/// The tenant's own plugins (named `tenant:<name>` in endpoint steps).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/plugins", tag = "plugins", params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = ErrorBody)))]
pub async fn list_tenant_plugins(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<PluginStatus>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(state.engine.registry.list(Some(&tenant))))
}

/// Uploads (or replaces) a tenant plugin: the body is the component's bytes. It is compiled,
/// checked against the plugin worlds and smoke-called before it is stored; a refused component
/// leaves the previous version in place.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/plugins/{name}", tag = "plugins",
    params(("tenant" = String, Path), ("name" = String, Path, description = "1-63 of a-z, 0-9, '-'")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_tenant_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
    body: Body,
) -> Result<ApiJson<PluginStatus>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let limit = state.engine.config.api.max_plugin_mib * 1024 * 1024;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            field: None,
            message: format!(
                "a plugin may be at most {} MiB (api.max_plugin_mib)",
                state.engine.config.api.max_plugin_mib
            ),
        })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            None,
            "the body must be the plugin's component bytes (.wasm)",
        ));
    }
    let status = state
        .engine
        .registry
        .put_tenant_plugin(&tenant, &name, &bytes)
        .await
        .map_err(|e| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "plugin_refused",
            field: None,
            message: e.to_string(),
        })?;
    Ok(ApiJson(status))
}

/// Deletes a tenant plugin.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/plugins/{name}", tag = "plugins",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_tenant_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.tenant(&state, &tenant)?;
    match state
        .engine
        .registry
        .delete_tenant_plugin(&tenant, &name)
        .await
    {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found("plugin", &format!("tenant:{name}"))),
        Err(e) => Err(ApiError::internal("deleting the plugin", e)),
    }
}
