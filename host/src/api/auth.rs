//! Who is calling: the operator (admin token) or a tenant (its tenant token).
//!
//! Tokens are compared by their SHA-256 digests; only digests are stored. A tenant token used on
//! another tenant's resources gets 404, as if they did not exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::model::Tenant;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator: every tenant and the engine's settings.
    Admin,
    /// A tenant: only its own resources.
    Tenant(String),
}

/// Hex SHA-256 of a token, as stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random tenant token (`whk_…`, 256 bits).
pub fn new_tenant_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing `authorization: Bearer <token>` header")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the authorization header must be `Bearer <token>`")
            })?;
        let digest = Sha256::digest(token.as_bytes());
        if constant_time_eq(&digest, &state.engine.admin_token_digest) {
            return Ok(Caller::Admin);
        }
        let hex_digest = hex::encode(digest);
        match state
            .engine
            .store
            .directory()
            .tenant_by_token_hash(&hex_digest)
        {
            Some(tenant) => Ok(Caller::Tenant(tenant.id.clone())),
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}

impl Caller {
    /// Only the operator may do this.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this route needs the operator's admin token",
            )),
        }
    }

    /// The tenant `id`, if the caller may act on it (else 404, without saying whether it exists).
    pub fn tenant(&self, state: &AppState, id: &str) -> Result<Tenant, ApiError> {
        let allowed = match self {
            Caller::Admin => true,
            Caller::Tenant(own) => own == id,
        };
        let tenant = state.engine.store.directory().tenant(id).cloned();
        match tenant {
            Some(tenant) if allowed => Ok(tenant),
            _ => Err(ApiError::not_found("tenant", id)),
        }
    }
}
