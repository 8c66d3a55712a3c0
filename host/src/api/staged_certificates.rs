//! `/v1/tenants/{tenant}/client-certificates/{id}/next`: a client certificate record's staged
//! next certificate, for a rotation without a failed delivery.
//!
//! 1. `POST …/next` generates the next key and its CSR; the current certificate stays live.
//! 2. The tenant's CA signs the CSR; `PUT …/next/certificate` uploads it, with an optional
//!    `activate_at` (RFC 3339). Without one (or with one already past) the next certificate
//!    takes over at once; otherwise every node switches to it at that time.
//! 3. Once due, new connections present the next certificate and the record's current one is
//!    replaced by it (`next` disappears). `DELETE …/next` drops a staged certificate not yet
//!    active.
//!
//! The receiver must trust the next certificate's issuer before the switch (both issuers
//! during it). Answers never contain a private key.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::certificates::{CertificateView, summary, view};
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::model::{now_unix, rfc3339};
use crate::store::StoredStagedCertificate;

/// A staged next certificate as the API shows it (no private key).
#[derive(Debug, Serialize, ToSchema)]
pub struct StagedView {
    /// `awaiting_certificate` (CSR issued), `scheduled` (uploaded, `activate_at` ahead) or
    /// `activating` (due: taking over).
    pub status: String,
    /// The CSR of the next key, for the tenant's CA to sign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// The uploaded next certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// Subject, issuer, validity and fingerprint of the next certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub certificate: Option<serde_json::Value>,
    /// RFC 3339 time of the switch, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activate_at: Option<String>,
}

fn staged_view(staged: &StoredStagedCertificate) -> StagedView {
    let status = if staged.certificate_pem.is_none() {
        "awaiting_certificate"
    } else if staged.is_due(now_unix()) {
        "activating"
    } else {
        "scheduled"
    };
    StagedView {
        status: status.into(),
        csr_pem: staged.csr_pem.clone(),
        certificate_pem: staged.certificate_pem.clone(),
        certificate: staged
            .certificate_pem
            .as_deref()
            .and_then(|pem| summary(pem, &staged.private_key_pem)),
        activate_at: staged.activate_at.map(rfc3339),
    }
}

/// `shown` (a record of `tenant`) with its staged next certificate, if any.
pub(super) async fn with_next(
    state: &AppState,
    tenant: &str,
    mut shown: CertificateView,
) -> Result<ApiJson<CertificateView>, ApiError> {
    shown.next = state
        .engine
        .store
        .staged_certificate(tenant, &shown.id)
        .await?
        .as_ref()
        .map(staged_view);
    Ok(ApiJson(shown))
}

/// Body of `POST …/next`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageCertificate {
    /// Subject common name of the CSR (default: the record's name).
    #[serde(default)]
    pub common_name: Option<String>,
    /// DNS names for the CSR's subject alternative names.
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// Body of `PUT …/next/certificate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadNext {
    /// The next certificate chain signed by the tenant's CA, PEM, for the staged key.
    pub certificate_pem: String,
    /// RFC 3339 time of the switch; absent (or past): at once.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub activate_at: Option<String>,
}

/// Stages a next certificate: generates its key and CSR (replacing any staged one). The
/// current certificate stays in use.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/client-certificates/{id}/next", tag = "keys",
    params(("tenant" = String, Path), ("id" = String, Path)), request_body = StageCertificate,
    responses((status = 200, body = CertificateView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stage_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<StageCertificate>,
) -> Result<ApiJson<CertificateView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let record = state.engine.store.client_certificate(&tenant, &id).await?;
    let common_name = body.common_name.unwrap_or_else(|| record.name.clone());
    let (key, csr) = crate::tls::generate_csr(&common_name, &body.dns_names)
        .map_err(|e| ApiError::invalid("common_name", e.to_string()))?;
    let now = now_unix();
    let staged = StoredStagedCertificate {
        id: id.clone(),
        tenant_id: tenant.clone(),
        private_key_pem: key,
        csr_pem: Some(csr),
        certificate_pem: None,
        activate_at: None,
        created_at: now,
        updated_at: now,
    };
    state.engine.store.put_staged_certificate(&staged).await?;
    state.engine.tls.client_certificates_changed();
    with_next(&state, &tenant, view(&record)).await
}

/// Uploads the signed next certificate; it takes over at `activate_at`, or at once.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/client-certificates/{id}/next/certificate", tag = "keys",
    params(("tenant" = String, Path), ("id" = String, Path)), request_body = UploadNext,
    responses((status = 200, body = CertificateView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_next(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UploadNext>,
) -> Result<ApiJson<CertificateView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let store = &state.engine.store;
    let mut staged = store
        .staged_certificate(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("staged certificate of client certificate", &id))?;
    crate::tls::check_certificate(&body.certificate_pem, &staged.private_key_pem)
        .map_err(|e| ApiError::invalid("certificate_pem", e.to_string()))?;
    let activate_at = body
        .activate_at
        .as_deref()
        .map(|text| {
            time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| {
                    ApiError::invalid("activate_at", format!("must be an RFC 3339 time: {e}"))
                })
        })
        .transpose()?;
    let now = now_unix();
    staged.certificate_pem = Some(body.certificate_pem);
    staged.activate_at = activate_at;
    staged.updated_at = now;
    store.put_staged_certificate(&staged).await?;
    store.promote_staged_certificate(&tenant, &id, now).await?;
    state.engine.tls.client_certificates_changed();
    let record = store.client_certificate(&tenant, &id).await?;
    with_next(&state, &tenant, view(&record)).await
}

/// Drops the staged next certificate (the current one stays).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/client-certificates/{id}/next", tag = "keys",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = CertificateView), (status = 404, body = ErrorBody)))]
pub async fn unstage_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<ApiJson<CertificateView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let store = &state.engine.store;
    if !store.delete_staged_certificate(&tenant, &id).await? {
        return Err(ApiError::not_found(
            "staged certificate of client certificate",
            &id,
        ));
    }
    state.engine.tls.client_certificates_changed();
    let record = store.client_certificate(&tenant, &id).await?;
    Ok(ApiJson(view(&record)))
}
