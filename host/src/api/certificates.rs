//! `/v1/tenants/{tenant}/client-certificates`: the client certificates the host presents for
//! mutual TLS.
//!
//! The usual flow (as Fireblocks does it): the host generates a key and a CSR — the private key
//! never leaves the host — the tenant's CA signs the CSR, the signed certificate is uploaded, and
//! any number of the tenant's endpoints name the record. Uploading a new certificate to the same
//! record rotates it for all of them at once. Importing an existing certificate and key is also
//! possible. Answers never contain a private key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::model::{new_id, now_unix};
use crate::store::StoredClientCertificate;

/// Body of `POST .../client-certificates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCertificate {
    /// A name for the tenant's own use.
    pub name: String,
    /// Subject common name of the CSR (default: the name).
    #[serde(default)]
    pub common_name: Option<String>,
    /// DNS names for the CSR's subject alternative names.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Import instead: an existing certificate chain (PEM)…
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// …and its private key (PEM).
    #[serde(default)]
    pub private_key_pem: Option<String>,
}

/// Body of `PUT .../client-certificates/{id}/certificate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadCertificate {
    /// The certificate chain signed by the tenant's CA, PEM.
    pub certificate_pem: String,
}

/// A client certificate record as the API shows it (no private key).
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// `cc_…`: name it in an endpoint's `tls.client_certificate`.
    pub id: String,
    /// The tenant's name for it.
    pub name: String,
    /// `awaiting_certificate` (CSR issued, nothing uploaded yet) or `active`.
    pub status: String,
    /// The CSR for the tenant's CA to sign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// The certificate chain in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// Subject, issuer, validity and fingerprint of the certificate in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub certificate: Option<serde_json::Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The staged next certificate, if one is staged (shown by `GET` of the record and the
    /// `…/next` routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<super::staged_certificates::StagedView>,
}

/// Subject, issuer, validity and fingerprint of a certificate for `key_pem`.
pub(super) fn summary(certificate_pem: &str, key_pem: &str) -> Option<serde_json::Value> {
    crate::tls::check_certificate(certificate_pem, key_pem)
        .ok()
        .map(|s| {
            serde_json::json!({"subject": s.subject, "issuer": s.issuer, "not_before": s.not_before,
                "not_after": s.not_after, "sha256_fingerprint": s.sha256_fingerprint})
        })
}

/// The record as answers show it (no private key, no staged certificate).
pub(super) fn view(record: &StoredClientCertificate) -> CertificateView {
    let certificate = record
        .certificate_pem
        .as_deref()
        .and_then(|pem| summary(pem, &record.private_key_pem));
    CertificateView {
        id: record.id.clone(),
        name: record.name.clone(),
        status: if record.certificate_pem.is_some() {
            "active"
        } else {
            "awaiting_certificate"
        }
        .into(),
        csr_pem: record.csr_pem.clone(),
        certificate_pem: record.certificate_pem.clone(),
        certificate,
        created_at: record.created_at,
        updated_at: record.updated_at,
        next: None,
    }
}

/// Generates a key and a CSR (or imports a certificate and key).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/client-certificates", tag = "keys", params(("tenant" = String, Path)),
    request_body = CreateCertificate,
    responses((status = 201, body = CertificateView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateCertificate>,
) -> Result<(StatusCode, ApiJson<CertificateView>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "must be 1-200 characters"));
    }
    let now = now_unix();
    let record = match (body.certificate_pem, body.private_key_pem) {
        (Some(cert), Some(key)) => {
            crate::tls::check_certificate(&cert, &key)
                .map_err(|e| ApiError::invalid("certificate_pem", e.to_string()))?;
            StoredClientCertificate {
                id: new_id("cc"),
                tenant_id: tenant.clone(),
                name,
                private_key_pem: key,
                csr_pem: None,
                certificate_pem: Some(cert),
                created_at: now,
                updated_at: now,
            }
        }
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "private_key_pem",
                "is required to import a certificate",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "certificate_pem",
                "is required to import a key",
            ));
        }
        (None, None) => {
            let common_name = body.common_name.unwrap_or_else(|| name.clone());
            let (key, csr) = crate::tls::generate_csr(&common_name, &body.dns_names)
                .map_err(|e| ApiError::invalid("common_name", e.to_string()))?;
            StoredClientCertificate {
                id: new_id("cc"),
                tenant_id: tenant.clone(),
                name,
                private_key_pem: key,
                csr_pem: Some(csr),
                certificate_pem: None,
                created_at: now,
                updated_at: now,
            }
        }
    };
    state.engine.store.put_client_certificate(&record).await?;
    Ok((StatusCode::CREATED, ApiJson(view(&record))))
}

/// Lists the tenant's client certificates.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/client-certificates", tag = "keys", params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<CertificateView>), (status = 404, body = ErrorBody)))]
pub async fn list_certificates(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<CertificateView>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let records = state.engine.store.client_certificates(&tenant).await?;
    Ok(ApiJson(records.iter().map(view).collect()))
}

/// One client certificate.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/client-certificates/{id}", tag = "keys",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = CertificateView), (status = 404, body = ErrorBody)))]
pub async fn get_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<ApiJson<CertificateView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let record = state.engine.store.client_certificate(&tenant, &id).await?;
    super::staged_certificates::with_next(&state, &tenant, view(&record)).await
}

/// Uploads the signed certificate for the record's key (also: rotates it for every endpoint).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/client-certificates/{id}/certificate", tag = "keys",
    params(("tenant" = String, Path), ("id" = String, Path)), request_body = UploadCertificate,
    responses((status = 200, body = CertificateView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UploadCertificate>,
) -> Result<ApiJson<CertificateView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let mut record = state.engine.store.client_certificate(&tenant, &id).await?;
    crate::tls::check_certificate(&body.certificate_pem, &record.private_key_pem)
        .map_err(|e| ApiError::invalid("certificate_pem", e.to_string()))?;
    record.certificate_pem = Some(body.certificate_pem);
    record.updated_at = now_unix();
    state.engine.store.put_client_certificate(&record).await?;
    state.engine.tls.client_certificates_changed();
    Ok(ApiJson(view(&record)))
}

/// Deletes a client certificate record (endpoints naming it then fail their attempts).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/client-certificates/{id}", tag = "keys",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.tenant(&state, &tenant)?;
    if !state
        .engine
        .store
        .delete_client_certificate(&tenant, &id)
        .await?
    {
        return Err(ApiError::not_found("client certificate", &id));
    }
    state.engine.tls.client_certificates_changed();
    Ok(StatusCode::NO_CONTENT)
}
