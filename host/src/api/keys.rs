//! `/.well-known/jwks.json` (public) and `/v1/keys` (operator): the JWS signing keys.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::engine::MasterKeyRotation;
use crate::jose::SigningAlg;
use crate::keys::KeySummary;

/// The public signing keys (current and recently retired), each with its certificate in `x5c`.
/// Tenants verify JWS deliveries against this document.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys", security(()), responses((status = 200, body = Object, content_type = "application/jwk-set+json")))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        axum::Json(state.engine.keys.jwks()),
    )
}

/// The signing keys with their certificates (operator only).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses((status = 200, body = Vec<KeySummary>)))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<KeySummary>>, ApiError> {
    caller.require_admin()?;
    Ok(ApiJson(state.engine.keys.summaries()))
}

/// Body of `POST /v1/keys/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    /// Rotate only this algorithm (`RS256`, `PS256`, `ES256`, `EdDSA`); default: every one in use.
    #[serde(default)]
    pub alg: Option<String>,
}

/// Rotates the signing keys: new keys sign from now on; old ones stay in the JWKS until
/// `keys.retired_key_lifetime` has passed (operator only).
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", request_body = RotateKeys,
    responses((status = 200, body = Vec<KeySummary>), (status = 422, body = ErrorBody)))]
pub async fn rotate_keys(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<ApiJson<Vec<KeySummary>>, ApiError> {
    caller.require_admin()?;
    let body: RotateKeys = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeys::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(None, format!("invalid JSON body: {e}")))?
    };
    let alg = match body.alg {
        None => None,
        Some(name) => Some(name.parse::<SigningAlg>().map_err(|_| {
            ApiError::invalid(
                "alg",
                format!("`{name}` is not one of RS256, PS256, ES256, EdDSA"),
            )
        })?),
    };
    let keys = state
        .engine
        .keys
        .rotate(alg)
        .await
        .map_err(|e| ApiError::internal("rotating keys", e))?;
    Ok(ApiJson(keys))
}

/// Rotates the master key that seals secrets at rest (step secrets, signing and client private
/// keys) and seals every stored secret again under the new key, without downtime (operator
/// only). With a generated key a new one is generated; with a configured key
/// (`WASMHOOK_MASTER_KEY`, the same on every node) configure the new key as current and the old
/// one in `secrets.previous_master_keys` on every node first, then call this once.
#[utoipa::path(post, path = "/v1/secrets/rotate-master", tag = "keys",
    responses((status = 200, body = MasterKeyRotation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rotate_master_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<MasterKeyRotation>, ApiError> {
    caller.require_admin()?;
    let rotation = state
        .engine
        .rotate_master_key()
        .await
        .map_err(|e| ApiError::internal("rotating the master key", e))?;
    Ok(ApiJson(rotation))
}
