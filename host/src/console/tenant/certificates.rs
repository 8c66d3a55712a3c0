//! A tenant's client certificates (mutual TLS): create one (a key and a CSR, kept by the
//! engine), see and download the CSR, upload the certificate the tenant's CA signed, see when
//! it expires. Private keys never leave the engine.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use serde_json::Value;

use crate::api::AppState;
use crate::api::error::ApiJson;
use crate::api::inproc::{self, CreateCertificate, UploadCertificate};
use crate::console::forms::{self, FieldErrors};
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{Done, FormData, PageError, check_post, see_other, tenant_scope};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/t/{tenant}/certificates", get(list).post(create))
        .route(
            "/console/t/{tenant}/certificates/{id}",
            get(show).post(upload),
        )
        .route("/console/t/{tenant}/certificates/{id}/csr.pem", get(csr))
}

fn expiry(cert: &Value) -> String {
    cert["certificate"]["not_after"]
        .as_str()
        .map(str::to_string)
        .or_else(|| cert["certificate"]["not_after"].as_i64().map(layout::time))
        .unwrap_or_else(|| "—".into())
}

async fn certificates(
    state: &AppState,
    session: &Session,
    tenant: &str,
) -> Result<Vec<Value>, PageError> {
    let ApiJson(list) = inproc::list_certificates(
        State(state.clone()),
        session.caller(),
        Path(tenant.to_string()),
    )
    .await?;
    Ok(list
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect())
}

async fn render_list(
    state: &AppState,
    session: &Session,
    tenant: &str,
    errors: &FieldErrors,
    done: Option<&str>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let list = certificates(state, session, tenant).await?;
    let body = html! {
        h1 { "Client certificates" }
        (layout::notice(done))
        p { "For endpoints whose receiver asks for mutual TLS. The engine makes the key and a certificate signing request (CSR); your CA signs the CSR; you upload the certificate." }
        @if list.is_empty() { p { "None yet." } } @else {
            div.table-wrap { table {
                caption.skip { "Client certificates" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Expires" } th.hide-narrow scope="col" { "Id" } } }
                tbody { @for c in &list {
                    @let id = c["id"].as_str().unwrap_or("");
                    tr {
                        td { a href=(format!("/console/t/{tenant}/certificates/{id}")) { (c["name"].as_str().unwrap_or("")) } }
                        td { @if c["status"] == "active" { span.badge.ok { "active" } } @else { span.badge.warn { "awaiting certificate" } } }
                        td { (expiry(c)) }
                        td.hide-narrow.mono { (id) }
                    }
                } }
            } }
        }
        @if !session.read_only {
            h2 { "Create" }
            (forms::error_summary(errors))
            form.stack method="post" action=(format!("/console/t/{tenant}/certificates")) novalidate {
                (layout::csrf(session))
                (forms::text_input("name", "Name", "", "For your own use.", errors, false))
                (forms::text_input("common_name", "Common name", "", "Subject CN of the CSR (default: the name).", errors, false))
                (forms::text_input("dns_names", "DNS names", "", "Subject alternative names, comma-separated (optional).", errors, false))
                div { button type="submit" { "Create key and CSR" } }
            }
        }
    };
    Ok((
        status,
        layout::page(
            "Client certificates",
            &Context::tenant(session, tenant, Section::Certificates),
            body,
        ),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    render_list(
        &state,
        &session,
        &tenant,
        &FieldErrors::default(),
        done.done.as_deref(),
        StatusCode::OK,
    )
    .await
}

async fn create(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    check_post(&session, &form)?;
    let body = CreateCertificate {
        name: form.text("name").unwrap_or_default(),
        common_name: form.text("common_name"),
        dns_names: form
            .get("dns_names")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        certificate_pem: None,
        private_key_pem: None,
    };
    match inproc::create_certificate(
        State(state.clone()),
        session.caller(),
        Path(tenant.clone()),
        ApiJson(body),
    )
    .await
    {
        Ok((_, ApiJson(view))) => Ok(see_other(&format!(
            "/console/t/{tenant}/certificates/{}?done=created",
            view.id
        ))),
        Err(error) => {
            let (errors, status) = FieldErrors::from_api(error)?;
            render_list(&state, &session, &tenant, &errors, None, status).await
        }
    }
}

async fn render_one(
    state: &AppState,
    session: &Session,
    tenant: &str,
    id: &str,
    errors: &FieldErrors,
    done: Option<&str>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let ApiJson(view) = inproc::get_certificate(
        State(state.clone()),
        session.caller(),
        Path((tenant.to_string(), id.to_string())),
    )
    .await?;
    let c = serde_json::to_value(view).unwrap_or_default();
    let body = html! {
        h1 { "Client certificate " (c["name"].as_str().unwrap_or("")) }
        (layout::notice(done))
        dl.kv {
            dt { "Id" } dd.mono { (id) }
            dt { "Status" } dd { (c["status"].as_str().unwrap_or("")) }
            dt { "Expires" } dd { (expiry(&c)) }
            @if let Some(subject) = c["certificate"]["subject"].as_str() { dt { "Subject" } dd { (subject) } }
            @if let Some(issuer) = c["certificate"]["issuer"].as_str() { dt { "Issuer" } dd { (issuer) } }
        }
        @if let Some(csr) = c["csr_pem"].as_str() {
            h2 { "Certificate signing request" }
            div.field {
                label for="csr" { "CSR (PEM)" }
                textarea id="csr" readonly rows="10" { (csr) }
                div.row.copy {
                    button.secondary type="button" data-copy="csr" { "Copy" }
                    a.button.secondary href=(format!("/console/t/{tenant}/certificates/{id}/csr.pem")) download { "Download CSR" }
                }
            }
        }
        @if !session.read_only {
            h2 { "Upload the signed certificate" }
            (forms::error_summary(errors))
            form.stack method="post" action=(format!("/console/t/{tenant}/certificates/{id}")) novalidate {
                (layout::csrf(session))
                (forms::text_input("certificate_pem", "Certificate chain (PEM)", "", "The certificate your CA issued for this CSR, then any intermediates.", errors, true))
                div { button type="submit" { "Upload" } }
            }
        }
        p { a href=(format!("/console/t/{tenant}/certificates")) { "All client certificates" } }
    };
    Ok((
        status,
        layout::page(
            "Client certificate",
            &Context::tenant(session, tenant, Section::Certificates),
            body,
        ),
    )
        .into_response())
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    render_one(
        &state,
        &session,
        &tenant,
        &id,
        &FieldErrors::default(),
        done.done.as_deref(),
        StatusCode::OK,
    )
    .await
}

async fn upload(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    check_post(&session, &form)?;
    let body = UploadCertificate {
        certificate_pem: form.text("certificate_pem").unwrap_or_default(),
    };
    match inproc::upload_certificate(
        State(state.clone()),
        session.caller(),
        Path((tenant.clone(), id.clone())),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/t/{tenant}/certificates/{id}?done=uploaded"
        ))),
        Err(error) => {
            let (errors, status) = FieldErrors::from_api(error)?;
            render_one(&state, &session, &tenant, &id, &errors, None, status).await
        }
    }
}

async fn csr(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let ApiJson(view) = inproc::get_certificate(
        State(state.clone()),
        session.caller(),
        Path((tenant, id.clone())),
    )
    .await?;
    let csr = view.csr_pem.ok_or(PageError::NotFound)?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{id}.csr.pem\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pkcs10"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csr,
    )
        .into_response())
}
