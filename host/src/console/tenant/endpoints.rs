//! A tenant's endpoints: the list (enabled state, health), and the create/edit form: URL,
//! event types, ordered steps each with a form generated from its plugin's config schema, TLS.
//!
//! The form is server-driven: adding, removing and moving a step submit the form, which comes
//! back with the change (and whatever was typed, secrets excepted: they are never written into
//! a page). Saving sends the endpoint to the API's own create/update handler; a field error it
//! answers is shown at that field.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiJson};
use crate::api::inproc::{self, UpdateEndpoint};
use crate::console::forms::{self, FieldErrors};
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{Done, FormData, PageError, check_post, see_other, tenant_scope};
use crate::model::EndpointSpec;
use crate::plugins::PluginStatus;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/t/{tenant}/endpoints", get(list))
        .route(
            "/console/t/{tenant}/endpoints/new",
            get(new_form).post(submit_new),
        )
        .route(
            "/console/t/{tenant}/endpoints/{endpoint}",
            get(edit_form).post(submit_edit),
        )
        .route(
            "/console/t/{tenant}/endpoints/{endpoint}/test",
            axum::routing::post(super::messages::send_test_event),
        )
        .route(
            "/console/t/{tenant}/endpoints/{endpoint}/recover",
            axum::routing::post(super::messages::recover_endpoint),
        )
}

/// The health cells of an endpoint answer (its `health` object, where the engine gives one).
fn health_cells(endpoint: &Value) -> Markup {
    let Some(health) = endpoint.get("health").and_then(Value::as_object) else {
        return html! { span.badge.muted { "no data" } };
    };
    html! {
        dl.kv {
            @for (key, value) in health {
                @if !value.is_object() && !value.is_array() {
                    dt { (key.replace('_', " ")) }
                    dd { (match value { Value::String(s) => s.clone(), Value::Null => "—".into(), v => v.to_string() }) }
                }
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let ApiJson(endpoints) =
        inproc::list_endpoints(State(state.clone()), session.caller(), Path(tenant.clone()))
            .await?;
    let endpoints: Vec<Value> = endpoints
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    let body = html! {
        h1 { "Endpoints" }
        (layout::notice(done.done.as_deref()))
        @if !session.read_only {
            p { a.button href=(format!("/console/t/{tenant}/endpoints/new")) { "New endpoint" } }
        }
        @if endpoints.is_empty() {
            p { "No endpoints yet." }
        } @else {
            div.table-wrap {
                table {
                    caption.skip { "Endpoints" }
                    thead { tr { th scope="col" { "URL" } th scope="col" { "Event types" } th scope="col" { "Steps" } th scope="col" { "State" } th scope="col" { "Health" } } }
                    tbody {
                        @for endpoint in &endpoints {
                            @let id = endpoint["id"].as_str().unwrap_or("");
                            tr {
                                td {
                                    a href=(format!("/console/t/{tenant}/endpoints/{id}")) { (endpoint["url"].as_str().unwrap_or("")) }
                                    br; small.mono { (id) }
                                }
                                td {
                                    @match endpoint["event_types"].as_array().filter(|t| !t.is_empty()) {
                                        Some(types) => { @for t in types { code { (t.as_str().unwrap_or("")) } " " } },
                                        None => { "all" },
                                    }
                                }
                                td { @for step in endpoint["steps"].as_array().into_iter().flatten() { code { (step["plugin"].as_str().unwrap_or("")) } " " } }
                                td {
                                    @if endpoint["enabled"].as_bool().unwrap_or(false) { span.badge.ok { "enabled" } }
                                    @else { span.badge.bad { "disabled" } }
                                }
                                td { (health_cells(endpoint)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Endpoints",
        &Context::tenant(&session, &tenant, Section::Endpoints),
        body,
    )
    .into_response())
}

/// The plugins a step may use: shared ones and the tenant's own, live, of a step kind.
fn step_plugins(state: &AppState, tenant: &str) -> Vec<PluginStatus> {
    let registry = &state.engine.registry;
    let mut plugins = registry.list(None);
    plugins.extend(registry.list(Some(tenant)));
    plugins.retain(|p| p.live && p.info.as_ref().is_some_and(|i| i.kind.is_step()));
    plugins
}

fn schema_of(state: &AppState, tenant: &str, plugin: &str) -> Value {
    state
        .engine
        .registry
        .resolve(tenant, plugin)
        .map(|p| p.info().config_schema.clone())
        .unwrap_or(Value::Null)
}

/// What the form holds: the endpoint as JSON (API shape), read from the submitted fields.
fn read_form(state: &AppState, tenant: &str, form: &FormData, errors: &mut FieldErrors) -> Value {
    // The catalog's types ticked, then what was typed (patterns, types outside the catalog).
    let mut event_types: Vec<String> = form.all("catalog_types").map(str::to_string).collect();
    for typed in form
        .get("event_types")
        .unwrap_or("")
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if !event_types.iter().any(|t| t == typed) {
            event_types.push(typed.to_string());
        }
    }
    let mut steps = Vec::new();
    for i in 0.. {
        let Some(plugin) = form.text(&format!("steps[{i}].plugin")) else {
            break;
        };
        let schema = schema_of(state, tenant, &plugin);
        let config = forms::read_object(&format!("steps[{i}].config"), &schema, form, errors);
        steps.push(json!({"plugin": plugin, "config": config}));
    }
    let mut tls = serde_json::Map::new();
    if let Some(cert) = form.text("tls.client_certificate") {
        tls.insert("client_certificate".into(), Value::String(cert));
    }
    if let Some(pem) = form.text("tls.trusted_issuers") {
        tls.insert("trusted_issuers".into(), Value::String(pem));
    }
    let mut endpoint = json!({
        "url": form.text("url").unwrap_or_default(),
        "event_types": event_types,
        "steps": steps,
        "enabled": form.get("enabled") == Some("true"),
    });
    if !tls.is_empty() {
        endpoint["tls"] = Value::Object(tls);
    }
    if let Some(description) = form.text("description") {
        endpoint["description"] = Value::String(description);
    }
    if let Some(n) = form.text("max_concurrency") {
        match n.parse::<u32>() {
            Ok(n) => endpoint["max_concurrency"] = json!(n),
            Err(_) => errors.add("max_concurrency", "must be a whole number"),
        }
    }
    endpoint
}

/// Applies a step operation (`add`, `remove:i`, `up:i`, `down:i`) to the form's endpoint.
fn apply_op(op: &str, add_plugin: Option<&str>, endpoint: &mut Value) {
    let Some(steps) = endpoint.get_mut("steps").and_then(Value::as_array_mut) else {
        return;
    };
    let (verb, index) = op.split_once(':').unwrap_or((op, ""));
    let index: Option<usize> = index.parse().ok();
    match (verb, index) {
        ("add", _) => {
            if let Some(plugin) = add_plugin.filter(|p| !p.is_empty()) {
                steps.push(json!({"plugin": plugin, "config": {}}));
            }
        }
        ("remove", Some(i)) if i < steps.len() => {
            steps.remove(i);
        }
        ("up", Some(i)) if i > 0 && i < steps.len() => steps.swap(i - 1, i),
        ("down", Some(i)) if i + 1 < steps.len() => steps.swap(i, i + 1),
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn render_form(
    state: &AppState,
    session: &Session,
    tenant: &str,
    endpoint_id: Option<&str>,
    endpoint: &Value,
    errors: &FieldErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let action = match endpoint_id {
        Some(id) => format!("/console/t/{tenant}/endpoints/{id}"),
        None => format!("/console/t/{tenant}/endpoints/new"),
    };
    let plugins = step_plugins(state, tenant);
    let certificates = inproc::list_certificates(
        State(state.clone()),
        session.caller(),
        Path(tenant.to_string()),
    )
    .await
    .map(|ApiJson(list)| list)
    .unwrap_or_default();
    let certificates: Vec<Value> = certificates
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    // The tenant's catalog (when it has one) is offered as checkboxes; the text field holds
    // the rest (patterns, types outside the catalog).
    let catalog: Vec<(String, bool)> = state
        .engine
        .store
        .catalog(tenant)
        .await
        .map(|c| {
            c.event_types
                .into_iter()
                .map(|t| (t.name, t.deprecated))
                .collect()
        })
        .unwrap_or_default();
    let subscribed: Vec<&str> = endpoint["event_types"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let event_types = subscribed
        .iter()
        .filter(|t| !catalog.iter().any(|(name, _)| name == *t))
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let steps = endpoint["steps"].as_array().cloned().unwrap_or_default();
    let tls = &endpoint["tls"];
    let title = if endpoint_id.is_some() {
        "Edit endpoint"
    } else {
        "New endpoint"
    };
    let body = html! {
        h1 { (title) }
        @if let Some(id) = endpoint_id { p.mono { (id) } }
        (forms::error_summary(errors))
        form.stack method="post" action=(action) novalidate {
            (layout::csrf(session))
            // The first submit button is what Enter in a text field presses: saving.
            button.skip type="submit" name="op" value="save" tabindex="-1" aria-hidden="true" { "Save" }
            (forms::text_input("url", "URL", endpoint["url"].as_str().unwrap_or(""), "Where deliveries are sent (http:// or https://).", errors, false))
            @if !catalog.is_empty() {
                fieldset.field id="f-catalog-types" {
                    legend { "Event types from the catalog" }
                    @for (i, (name, deprecated)) in catalog.iter().enumerate() {
                        label.checkbox for=(format!("f-catalog-{i}")) {
                            input id=(format!("f-catalog-{i}")) type="checkbox" name="catalog_types" value=(name)
                                checked[subscribed.contains(&name.as_str())];
                            " " code { (name) }
                            @if *deprecated { " " span.badge.muted { "deprecated" } }
                        }
                    }
                }
            }
            (forms::text_input("event_types", if catalog.is_empty() { "Event types" } else { "Other event types" }, &event_types, "One per line: exact names (invoice.paid) or prefixes (invoice.*). Empty (and nothing ticked): every event.", errors, true))
            (forms::text_input("description", "Description", endpoint["description"].as_str().unwrap_or(""), "For your own use.", errors, false))
            div.field {
                label.checkbox for="f-enabled" {
                    input id="f-enabled" type="checkbox" name="enabled" value="true" checked[endpoint["enabled"].as_bool().unwrap_or(true)];
                    "Enabled"
                }
            }
            h2 { "Steps" }
            p.hint { "Run in order on every request: authentication (api-key, bearer, …) and security (jws, jwe, …). Secrets you type are not written back into this page: after adding, removing or moving a step, type them again." }
            @if let Some(error) = errors.of("steps") { p.error role="alert" { (error) } }
            @for (i, step) in steps.iter().enumerate() {
                @let plugin = step["plugin"].as_str().unwrap_or("");
                @let info = state.engine.registry.resolve(tenant, plugin).ok();
                fieldset.step id=(forms::id_of(&format!("steps[{i}]"))) {
                    legend { "Step " (i + 1) ": " code { (plugin) } }
                    input type="hidden" name=(format!("steps[{i}].plugin")) value=(plugin);
                    @if let Some(info) = &info {
                        p.hint { (info.info().kind.as_str()) " · " (info.info().summary) }
                    } @else {
                        p.error { "This plugin is not loaded: its settings cannot be shown." }
                    }
                    @if let Some(error) = forms::error_at(errors, &format!("steps[{i}].plugin")).or(errors.of(&format!("steps[{i}]"))) {
                        p.error role="alert" { (error) }
                    }
                    (forms::render_object(&format!("steps[{i}].config"), &schema_of(state, tenant, plugin), &step["config"], errors))
                    div.step-actions {
                        @if i > 0 { button.secondary type="submit" name="op" value=(format!("up:{i}")) { "Move up" } }
                        @if i + 1 < steps.len() { button.secondary type="submit" name="op" value=(format!("down:{i}")) { "Move down" } }
                        button.secondary type="submit" name="op" value=(format!("remove:{i}")) { "Remove step" }
                    }
                }
            }
            div.row {
                div.field {
                    label for="f-add-plugin" { "Add a step" }
                    select id="f-add-plugin" name="add_plugin" {
                        @for plugin in &plugins {
                            @let kind = plugin.info.as_ref().map(|i| i.kind.as_str()).unwrap_or("");
                            option value=(plugin.name) { (plugin.name) " (" (kind) ")" }
                        }
                    }
                }
                button.secondary type="submit" name="op" value="add" { "Add step" }
            }
            h2 { "TLS" }
            div.field.invalid[errors.of("tls.client_certificate").is_some()] {
                label for="f-tls-client-certificate" { "Client certificate (mutual TLS)" }
                select id="f-tls-client-certificate" name="tls.client_certificate" {
                    option value="" { "(none)" }
                    @for cert in &certificates {
                        @let id = cert["id"].as_str().unwrap_or("");
                        option value=(id) selected[tls["client_certificate"].as_str() == Some(id)] {
                            (cert["name"].as_str().unwrap_or("")) " (" (id) ", " (cert["status"].as_str().unwrap_or("")) ")"
                        }
                    }
                }
                @if let Some(error) = errors.of("tls.client_certificate") { p.error id="f-tls-client-certificate-error" role="alert" { (error) } }
            }
            div.field.invalid[errors.of("tls.trusted_issuers").is_some()] {
                label for="f-tls-trusted-issuers" { "Trusted issuers (PEM)" }
                textarea id="f-tls-trusted-issuers" name="tls.trusted_issuers" aria-describedby="f-tls-trusted-issuers-hint" {
                    (tls["trusted_issuers"].as_str().unwrap_or(""))
                }
                p.hint id="f-tls-trusted-issuers-hint" { "The receiver's certificate must be issued by one of these (instead of the public roots)." }
                @if let Some(error) = errors.of("tls.trusted_issuers") { p.error id="f-tls-trusted-issuers-error" role="alert" { (error) } }
            }
            (forms::text_input("max_concurrency", "Concurrency", &endpoint["max_concurrency"].as_u64().map(|n| n.to_string()).unwrap_or_default(), "Attempts in flight to this endpoint at most (empty: the engine's default).", errors, false))
            div.row {
                button type="submit" name="op" value="save" id="save" { "Save endpoint" }
                a.button.secondary href=(format!("/console/t/{tenant}/endpoints")) { "Cancel" }
            }
        }
        @if let Some(id) = endpoint_id {
            @if !session.read_only {
                h2 { "Send a test event" }
                form.row method="post" action=(format!("/console/t/{tenant}/endpoints/{id}/test")) {
                    (layout::csrf(session))
                    div.field {
                        label for="f-test-type" { "Event type" }
                        input id="f-test-type" type="text" name="type"
                            value=(endpoint["event_types"].as_array().and_then(|t| t.iter().filter_map(Value::as_str).find(|t| !t.contains('*'))).unwrap_or("wasmhook.test"));
                    }
                    button type="submit" id="send-test" { "Send test event" }
                }
                h2 { "Recover" }
                form.row method="post" action=(format!("/console/t/{tenant}/endpoints/{id}/recover")) {
                    (layout::csrf(session))
                    div.field {
                        label for="f-recover-since" { "Re-send failed and dead deliveries since (UTC)" }
                        input id="f-recover-since" type="datetime-local" name="since" required;
                        @if let Some(error) = errors.of("since") { p.error id="f-recover-since-error" role="alert" { (error) } }
                    }
                    button type="submit" id="recover" { "Recover" }
                }
            }
            p { a href=(format!("/console/t/{tenant}/events?endpoint={id}")) { "Messages sent to this endpoint" } }
        }
    };
    Ok((
        status,
        layout::page(
            title,
            &Context::tenant(session, tenant, Section::Endpoints),
            body,
        ),
    )
        .into_response())
}

async fn new_form(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let empty = json!({"url": "", "event_types": [], "steps": [], "enabled": true});
    render_form(
        &state,
        &session,
        &tenant,
        None,
        &empty,
        &FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn edit_form(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let ApiJson(view) = inproc::get_endpoint(
        State(state.clone()),
        session.caller(),
        Path((tenant.clone(), id.clone())),
    )
    .await?;
    let endpoint = serde_json::to_value(view).unwrap_or_default();
    render_form(
        &state,
        &session,
        &tenant,
        Some(&id),
        &endpoint,
        &FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// An API error as form errors (at its field, or for the whole form).
fn api_errors(error: ApiError, errors: &mut FieldErrors) -> StatusCode {
    errors.add(
        error.field.unwrap_or_else(|| "endpoint".into()),
        error.message,
    );
    error.status
}

async fn submit(
    state: AppState,
    session: Session,
    tenant: String,
    id: Option<String>,
    form: FormData,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    check_post(&session, &form)?;
    let mut errors = FieldErrors::default();
    let mut endpoint = read_form(&state, &tenant, &form, &mut errors);
    let op = form.get("op").unwrap_or("save");
    if op != "save" {
        apply_op(op, form.get("add_plugin"), &mut endpoint);
        return render_form(
            &state,
            &session,
            &tenant,
            id.as_deref(),
            &endpoint,
            &FieldErrors::default(),
            StatusCode::OK,
        )
        .await;
    }
    if !errors.is_empty() {
        return render_form(
            &state,
            &session,
            &tenant,
            id.as_deref(),
            &endpoint,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let result = match &id {
        None => match serde_json::from_value::<EndpointSpec>(endpoint.clone()) {
            Ok(spec) => inproc::create_endpoint(
                State(state.clone()),
                session.caller(),
                Path(tenant.clone()),
                ApiJson(spec),
            )
            .await
            .map(|(_, ApiJson(view))| serde_json::to_value(view).unwrap_or_default()),
            Err(e) => Err(ApiError::invalid("endpoint", e.to_string())),
        },
        Some(id) => {
            let mut patch = endpoint.clone();
            if patch.get("tls").is_none() {
                patch["tls"] = json!({});
            }
            match serde_json::from_value::<UpdateEndpoint>(patch) {
                Ok(patch) => inproc::update_endpoint(
                    State(state.clone()),
                    session.caller(),
                    Path((tenant.clone(), id.clone())),
                    ApiJson(patch),
                )
                .await
                .map(|ApiJson(view)| serde_json::to_value(view).unwrap_or_default()),
                Err(e) => Err(ApiError::invalid("endpoint", e.to_string())),
            }
        }
    };
    match result {
        Ok(_) => Ok(see_other(&format!(
            "/console/t/{tenant}/endpoints?done=saved"
        ))),
        Err(error) if error.status == StatusCode::UNPROCESSABLE_ENTITY || error.field.is_some() => {
            let status = api_errors(error, &mut errors);
            render_form(
                &state,
                &session,
                &tenant,
                id.as_deref(),
                &endpoint,
                &errors,
                status,
            )
            .await
        }
        Err(error) => Err(error.into()),
    }
}

async fn submit_new(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    submit(state, session, tenant, None, form).await
}

async fn submit_edit(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    submit(state, session, tenant, Some(id), form).await
}
