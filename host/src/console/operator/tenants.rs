//! Tenants: the list, creating one (its token is shown once), minting a portal link for one,
//! deleting one.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::api::AppState;
use crate::api::error::ApiJson;
use crate::api::inproc::{self, CreatePortalLink, CreateTenant};
use crate::console::forms::{self, FieldErrors};
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{
    Done, FormData, PageError, check_post, operator_only, see_other, tenant_scope,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/admin/tenants", get(list).post(create))
        .route(
            "/console/admin/tenants/{tenant}/portal-link",
            post(portal_link),
        )
        .route("/console/admin/tenants/{tenant}/delete", post(delete))
}

fn page(session: &Session, body: Markup, status: StatusCode) -> Response {
    let context = Context::operator(session, Section::Tenants);
    (status, layout::page("Tenants", &context, body)).into_response()
}

fn tenants_table(state: &AppState, session: &Session) -> Markup {
    let tenants = state.engine.store.directory().tenants();
    html! {
        @if tenants.is_empty() { p { "No tenants yet." } } @else {
            div.table-wrap { table {
                caption.skip { "Tenants" }
                thead { tr { th scope="col" { "Id" } th scope="col" { "Name" } th.hide-narrow scope="col" { "Created" } th scope="col" { "Portal link" } th scope="col" { "Delete" } } }
                tbody { @for t in &tenants {
                    tr {
                        td { a href=(format!("/console/t/{}/endpoints", t.id)) { code { (t.id) } } }
                        td { (t.name) }
                        td.hide-narrow { (layout::time(t.created_at)) }
                        td {
                            form.row method="post" action=(format!("/console/admin/tenants/{}/portal-link", t.id)) {
                                (layout::csrf(session))
                                div.field {
                                    label for=(format!("exp-{}", t.id)) { "Valid for" }
                                    select id=(format!("exp-{}", t.id)) name="expires_in" {
                                        option value="900" { "15 minutes" }
                                        option value="3600" { "1 hour" }
                                        option value="86400" { "1 day" }
                                        option value="604800" { "7 days" }
                                    }
                                }
                                label.checkbox { input type="checkbox" name="read_only" value="true"; "Read-only" }
                                button type="submit" class="mint" { "Mint link" }
                            }
                        }
                        td {
                            form method="post" action=(format!("/console/admin/tenants/{}/delete", t.id))
                                data-confirm=(format!("Delete tenant {} with all its endpoints, events and plugins?", t.id)) {
                                (layout::csrf(session))
                                button.danger type="submit" aria-label=(format!("Delete tenant {}", t.id)) { "Delete" }
                            }
                        }
                    }
                } }
            } }
        }
    }
}

fn create_form(session: &Session, errors: &FieldErrors) -> Markup {
    html! {
        h2 { "Create a tenant" }
        (forms::error_summary(errors))
        form.stack method="post" action="/console/admin/tenants" novalidate {
            (layout::csrf(session))
            (forms::text_input("id", "Id", "", "A slug (acme); empty: generated.", errors, false))
            (forms::text_input("name", "Name", "", "Display name.", errors, false))
            div { button type="submit" { "Create tenant" } }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    operator_only(&session)?;
    let body = html! {
        h1 { "Tenants" }
        (layout::notice(done.done.as_deref()))
        (tenants_table(&state, &session))
        (create_form(&session, &FieldErrors::default()))
    };
    Ok(page(&session, body, StatusCode::OK))
}

async fn create(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    operator_only(&session)?;
    check_post(&session, &form)?;
    let body = CreateTenant {
        id: form.text("id"),
        name: form.text("name").unwrap_or_default(),
    };
    match inproc::create_tenant(State(state.clone()), session.caller(), ApiJson(body)).await {
        Ok((_, ApiJson(created))) => {
            let body = html! {
                h1 { "Tenant " code { (created.tenant.id) } " created" }
                div.panel {
                    p { strong { "Its API token, shown this once:" } }
                    div.field {
                        label for="tenant-token" { "Tenant token" }
                        input id="tenant-token" type="text" readonly value=(created.token);
                        button.secondary.copy type="button" data-copy="tenant-token" { "Copy" }
                    }
                }
                p { a href="/console/admin/tenants" { "Back to the tenants" } }
            };
            Ok(page(&session, body, StatusCode::CREATED))
        }
        Err(error) => {
            let (errors, status) = FieldErrors::from_api(error)?;
            let body = html! {
                h1 { "Tenants" }
                (tenants_table(&state, &session))
                (create_form(&session, &errors))
            };
            Ok(page(&session, body, status))
        }
    }
}

async fn portal_link(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, PageError> {
    operator_only(&session)?;
    check_post(&session, &form)?;
    tenant_scope(&state, &session, &tenant)?;
    let body = CreatePortalLink {
        read_only: form.get("read_only") == Some("true"),
        expires_in: form.text("expires_in").and_then(|s| s.parse().ok()),
    };
    let link = inproc::portal_link(&state, &tenant, &body, &headers)?;
    let body = html! {
        h1 { "Portal link for " code { (tenant) } }
        div.panel {
            p { "Give this link to the tenant. It signs in to this tenant's pages only"
                @if link.read_only { ", read-only" } ", until " (link.expires_at) "." }
            div.field {
                label for="portal-link" { "Link" }
                input id="portal-link" type="text" readonly value=(link.url);
                button.secondary.copy type="button" data-copy="portal-link" { "Copy" }
            }
        }
        p { a href="/console/admin/tenants" { "Back to the tenants" } }
    };
    Ok(page(&session, body, StatusCode::OK))
}

async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    operator_only(&session)?;
    check_post(&session, &form)?;
    inproc::delete_tenant(State(state.clone()), session.caller(), Path(tenant)).await?;
    Ok(see_other("/console/admin/tenants?done=deleted"))
}
