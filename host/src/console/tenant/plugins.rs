//! A tenant's own plugins: what is loaded (version, hash, status, last load error), and an
//! upload form. The component's bytes are sent by the page's script as the body of a `PUT`
//! (with the session's CSRF token in `x-csrf-token`) to the API's own upload handler, which
//! checks, compiles and stores it.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use maud::html;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::inproc;
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{PageError, tenant_scope};
use crate::plugins::PluginState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/t/{tenant}/plugins", get(list))
        .route("/console/t/{tenant}/plugins/{name}", put(upload))
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let plugins = state.engine.registry.list(Some(&tenant));
    let context = Context::tenant(&session, &tenant, Section::TenantPlugins);
    let body = html! {
        h1 { "Plugins" }
        p { "Your own Wasm components, usable as steps of your endpoints as " code { "tenant:<name>" } ". Their configuration forms are generated from the schema they declare." }
        @if plugins.is_empty() { p { "None uploaded." } } @else {
            div.table-wrap { table {
                caption.skip { "Your plugins" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Version" } th scope="col" { "Status" } th scope="col" { "Last error" } th.hide-narrow scope="col" { "SHA-256" } } }
                tbody { @for p in &plugins {
                    tr {
                        td { code { (p.name) } }
                        td { (p.info.as_ref().map(|i| i.kind.as_str()).unwrap_or("—")) }
                        td { (p.info.as_ref().map(|i| i.version.as_str()).unwrap_or("—")) }
                        td { @match p.status { PluginState::Ready => { span.badge.ok { "ready" } }, PluginState::Failed => { span.badge.bad { "failed" } } } }
                        td { (p.last_error.as_deref().unwrap_or("")) }
                        td.hide-narrow.mono { (p.sha256.as_deref().map(|h| &h[..h.len().min(16)]).unwrap_or("")) }
                    }
                } }
            } }
        }
        @if !session.read_only {
            h2 { "Upload" }
            form.stack data-upload=(format!("/console/t/{tenant}/plugins/")) {
                (layout::csrf(&session))
                div.field {
                    label for="f-plugin-name" { "Name" }
                    input id="f-plugin-name" type="text" name="name" aria-describedby="f-plugin-name-hint";
                    p.hint id="f-plugin-name-hint" { "Lowercase letters, digits and dashes." }
                }
                div.field {
                    label for="f-plugin-file" { "Component (.wasm)" }
                    input id="f-plugin-file" type="file" accept=".wasm,application/wasm";
                }
                div { button type="submit" { "Upload" } }
                p role="status" {}
            }
        }
    };
    Ok(layout::page("Plugins", &context, body).into_response())
}

async fn upload(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if tenant_scope(&state, &session, &tenant).is_err() {
        return ApiError::not_found("tenant", &tenant).into_response();
    }
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !session.csrf_ok(csrf) {
        return ApiError::forbidden("missing or stale CSRF token; reload the page").into_response();
    }
    if session.read_only {
        return ApiError::forbidden("this session is read-only").into_response();
    }
    match inproc::put_tenant_plugin(
        State(state.clone()),
        Ok(session.caller()),
        Path((tenant, name)),
        headers,
        body,
    )
    .await
    {
        Ok(answer) => answer.into_response(),
        Err(response) => response,
    }
}
