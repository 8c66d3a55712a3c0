//! `POST /v1/tenants/{tenant}/portal-links`: the operator mints a link that signs one tenant in
//! to the console (see [`crate::console`]), short-lived and optionally read-only.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::console::session::{DEFAULT_LINK_SECONDS, MAX_LINK_SECONDS, mint_portal_link};
use crate::model::rfc3339;

/// Body of `POST .../portal-links` (every field optional; `{}` is fine).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalLink {
    /// The session it opens sees everything and changes nothing.
    #[serde(default)]
    pub read_only: bool,
    /// Seconds until the link expires: 1 to 604800 (7 days); 900 by default.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

/// A minted portal link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortalLinkCreated {
    /// The link to give to the tenant (absolute, from the request's `Host`).
    pub url: String,
    /// The same, relative to the engine's base URL.
    pub path: String,
    /// When the link stops working (RFC 3339).
    pub expires_at: String,
    /// Whether the session it opens is read-only.
    pub read_only: bool,
}

/// The base URL a request was made to (`http://host:port`), as the client named it.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if crate::console::session::over_tls(headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// Mints a portal link for a tenant (admin only): a short-lived, single-tenant, signed URL that
/// opens a console session for that tenant on any node sharing the master key.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/portal-links", tag = "tenants", params(("tenant" = String, Path)),
    request_body = CreatePortalLink,
    responses((status = 201, body = PortalLinkCreated), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_portal_link(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<PortalLinkCreated>), ApiError> {
    caller.require_admin()?;
    caller.tenant(&state, &tenant)?;
    // No body (or only white space) asks for the defaults.
    let body: CreatePortalLink = if body.iter().all(u8::is_ascii_whitespace) {
        CreatePortalLink::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    Ok((
        StatusCode::CREATED,
        ApiJson(portal_link(&state, &tenant, &body, &headers)?),
    ))
}

/// Mints a link for `tenant` (already checked to exist and be the caller's to give).
pub fn portal_link(
    state: &AppState,
    tenant: &str,
    body: &CreatePortalLink,
    headers: &HeaderMap,
) -> Result<PortalLinkCreated, ApiError> {
    let seconds = body.expires_in.unwrap_or(DEFAULT_LINK_SECONDS);
    if !(1..=MAX_LINK_SECONDS).contains(&seconds) {
        return Err(ApiError::invalid(
            "expires_in",
            format!("must be 1 to {MAX_LINK_SECONDS} seconds"),
        ));
    }
    let link = mint_portal_link(
        &state.engine.store.sealer(),
        tenant,
        body.read_only,
        seconds,
    );
    let path = format!("/console/portal?token={}", link.token);
    Ok(PortalLinkCreated {
        url: format!("{}{path}", base_url(headers)),
        path,
        expires_at: rfc3339(link.expires_at),
        read_only: body.read_only,
    })
}
