//! A tenant's message log: its events newest first, filtered by type, delivery state,
//! endpoint and time, paginated by the store's cursor; an event with its deliveries and every
//! attempt (status code, latency, error, response snippet); replaying a delivery; sending a
//! test event.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::Value;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiJson};
use crate::api::inproc::{self, LogParams};
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{Done, FormData, PageError, check_post, see_other, tenant_scope};
use crate::store::{DeliveryHistory, LogPage};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/t/{tenant}/events", get(log))
        .route("/console/t/{tenant}/events/{event}", get(event))
        .route(
            "/console/t/{tenant}/events/{event}/deliveries/{delivery}/replay",
            post(replay),
        )
}

/// A `datetime-local` control's value (`2026-01-31T12:00`, taken as UTC) as RFC 3339; other
/// forms pass through for the API to judge.
fn local_time(value: &Option<String>) -> Option<String> {
    let v = value.as_deref()?.trim();
    Some(match v.len() {
        16 if v.as_bytes().get(10) == Some(&b'T') => format!("{v}:00Z"),
        19 if v.as_bytes().get(10) == Some(&b'T') => format!("{v}Z"),
        _ => v.to_string(),
    })
}

fn status_badge(pending: u32, delivered: u32, dead: u32, held: u32) -> Markup {
    html! {
        @if delivered > 0 { span.badge.ok { (delivered) " delivered" } " " }
        @if pending > 0 { span.badge.warn { (pending) " pending" } " " }
        @if dead > 0 { span.badge.bad { (dead) " dead" } " " }
        @if held > 0 { span.badge.muted { (held) " held" } " " }
        @if pending + delivered + dead + held == 0 { span.badge.muted { "no deliveries" } }
    }
}

/// The query string of the filters (without the cursor).
fn filter_query(params: &LogParams) -> String {
    let pairs = [
        ("type", &params.event_type),
        ("status", &params.status),
        ("endpoint", &params.endpoint),
        ("after", &params.after),
        ("before", &params.before),
    ];
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn log(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(mut params): Query<LogParams>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let shown = params.clone();
    params.after = local_time(&params.after);
    params.before = local_time(&params.before);
    let answer = inproc::list_events(
        State(state.clone()),
        session.caller(),
        Path(tenant.clone()),
        Ok(Query(params.clone())),
    )
    .await;
    let (page, error): (LogPage, Option<ApiError>) = match answer {
        Ok(ApiJson(page)) => (page, None),
        Err(e) if e.field.is_some() => (
            LogPage {
                events: vec![],
                next_cursor: None,
            },
            Some(e),
        ),
        Err(e) => return Err(e.into()),
    };
    let endpoints = state.engine.store.directory().endpoints_of(&tenant);
    let filters = filter_query(&shown);
    let base = format!("/console/t/{tenant}/events");
    let status = shown.status.as_deref().unwrap_or("");
    let body = html! {
        h1 { "Messages" }
        (layout::notice(done.done.as_deref()))
        form.panel method="get" action=(base) aria-label="Filter messages" {
            div.row {
                div.field {
                    label for="f-type" { "Event type" }
                    input id="f-type" type="text" name="type" value=(shown.event_type.as_deref().unwrap_or(""));
                }
                div.field {
                    label for="f-status" { "Status" }
                    select id="f-status" name="status" {
                        option value="" selected[status.is_empty()] { "any" }
                        @for s in ["pending", "delivered", "dead", "held"] {
                            option value=(s) selected[status == s] { (s) }
                        }
                    }
                }
                div.field {
                    label for="f-endpoint" { "Endpoint" }
                    select id="f-endpoint" name="endpoint" {
                        option value="" { "any" }
                        @for e in &endpoints {
                            option value=(e.id) selected[shown.endpoint.as_deref() == Some(e.id.as_str())] { (e.spec.url) " (" (e.id) ")" }
                        }
                    }
                }
                div.field {
                    label for="f-after" { "From (UTC)" }
                    input id="f-after" type="datetime-local" name="after" value=(shown.after.as_deref().unwrap_or(""));
                }
                div.field {
                    label for="f-before" { "Until (UTC)" }
                    input id="f-before" type="datetime-local" name="before" value=(shown.before.as_deref().unwrap_or(""));
                }
                button type="submit" { "Filter" }
            }
        }
        @if let Some(error) = &error {
            p.errors role="alert" { code { (error.field.as_deref().unwrap_or("")) } " " (error.message) }
        }
        @if page.events.is_empty() {
            p { "No messages match." }
        } @else {
            div.table-wrap {
                table {
                    caption.skip { "Messages, newest first" }
                    thead { tr { th scope="col" { "Created" } th scope="col" { "Type" } th scope="col" { "Deliveries" } th.hide-narrow scope="col" { "Id" } } }
                    tbody {
                        @for e in &page.events {
                            tr {
                                td { (layout::time(e.created_at)) }
                                td { a href=(format!("{base}/{}", e.id)) { code { (e.event_type) } } }
                                td { (status_badge(e.pending, e.delivered, e.dead, e.held)) }
                                td.hide-narrow.mono { (e.id) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if shown.cursor.is_some() {
                a href=(format!("{base}?{filters}")) { "Newest" }
            }
            @if let Some(next) = &page.next_cursor {
                a href=(format!("{base}?{filters}&cursor={}", encode(next))) rel="next" { "Older" }
            }
        }
    };
    Ok(layout::page(
        "Messages",
        &Context::tenant(&session, &tenant, Section::Messages),
        body,
    )
    .into_response())
}

fn attempts_table(delivery: &DeliveryHistory) -> Markup {
    html! {
        @if delivery.attempt_log.is_empty() {
            p { "No attempt yet." }
        } @else {
            div.table-wrap {
                table {
                    caption.skip { "Attempts" }
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Started" } th scope="col" { "Status" }
                        th scope="col" { "Latency" } th scope="col" { "Outcome" } th scope="col" { "Error" } th scope="col" { "Response" }
                    } }
                    tbody {
                        @for a in &delivery.attempt_log {
                            tr.attempt {
                                td { (a.attempt) }
                                td { (layout::time_ms(a.started_at)) }
                                td { @match a.status_code { Some(code) => { (code) }, None => { "—" } } }
                                td { (a.latency_ms) " ms" }
                                td { (a.outcome) }
                                td.error-text { (a.error.as_deref().unwrap_or("")) }
                                td { @if let Some(snippet) = &a.response_snippet { pre.snippet { (snippet) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn event(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, event)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let ApiJson(history) = inproc::event_history(
        State(state.clone()),
        session.caller(),
        Path((tenant.clone(), event.clone())),
    )
    .await?;
    let directory = state.engine.store.directory().endpoints_of(&tenant);
    let url_of = |id: &str| {
        directory
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.spec.url.clone())
            .unwrap_or_else(|| "(deleted endpoint)".into())
    };
    let envelope = serde_json::to_string_pretty(&history.event.envelope).unwrap_or_default();
    let body = html! {
        h1 { "Message " code { (history.event.event_type) } }
        (layout::notice(done.done.as_deref()))
        dl.kv {
            dt { "Id" } dd.mono { (history.event.id) }
            dt { "Type" } dd { code.event-type { (history.event.event_type) } }
            dt { "Created" } dd { (layout::time(history.event.created_at)) }
        }
        details {
            summary { "Payload" }
            pre { (envelope) }
        }
        h2 { "Deliveries" }
        @if history.deliveries.is_empty() { p { "No endpoint was subscribed to this event." } }
        @for d in &history.deliveries {
            section.panel.delivery aria-label=(format!("Delivery {}", d.delivery.id)) {
                h3 {
                    (url_of(&d.delivery.endpoint_id)) " "
                    @match d.delivery.status.as_str() {
                        "delivered" => { span.badge.ok.status { "delivered" } },
                        "dead" => { span.badge.bad.status { "dead" } },
                        other => { span.badge.warn.status { (other) } },
                    }
                }
                p.mono { (d.delivery.id) " · " (d.delivery.attempts) " attempt(s)"
                    @if let Some(next) = d.delivery.next_attempt_at { " · next at " (layout::time_ms(next)) } }
                (attempts_table(d))
                @if matches!(d.delivery.status.as_str(), "delivered" | "dead") && !session.read_only {
                    form method="post" action=(format!("/console/t/{tenant}/events/{}/deliveries/{}/replay", history.event.id, d.delivery.id)) {
                        (layout::csrf(&session))
                        button type="submit" class="replay" { "Replay" }
                    }
                }
            }
        }
        p { a href=(format!("/console/t/{tenant}/events")) { "All messages" } }
    };
    Ok(layout::page(
        "Message",
        &Context::tenant(&session, &tenant, Section::Messages),
        body,
    )
    .into_response())
}

async fn replay(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, event, delivery)): Path<(String, String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    check_post(&session, &form)?;
    inproc::retry_delivery(
        State(state.clone()),
        session.caller(),
        Path((tenant.clone(), event.clone(), delivery)),
    )
    .await?;
    Ok(see_other(&format!(
        "/console/t/{tenant}/events/{event}?done=replayed"
    )))
}

/// `POST /console/t/{tenant}/endpoints/{endpoint}/recover`: re-sends, once, every failed or dead
/// delivery of the endpoint since the time given (`since`, from a `datetime-local` field, read
/// as UTC), then shows the endpoint's messages.
pub async fn recover_endpoint(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, endpoint)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    check_post(&session, &form)?;
    // `datetime-local` gives `2026-12-01T10:00` (no seconds, no offset): UTC, as the log shows.
    let since = local_time(&form.text("since")).unwrap_or_default();
    let body: inproc::Recover = serde_json::from_value(serde_json::json!({ "since": since }))
        .map_err(|e| PageError::Api(ApiError::invalid("since", e.to_string())))?;
    inproc::recover(
        State(state.clone()),
        session.caller(),
        Path((tenant.clone(), endpoint.clone())),
        ApiJson(body),
    )
    .await?;
    Ok(see_other(&format!(
        "/console/t/{tenant}/events?endpoint={endpoint}&done=recovered"
    )))
}

/// `POST /console/t/{tenant}/endpoints/{endpoint}/test`: sends an event of the chosen type
/// (every endpoint of the tenant subscribed to that type gets it), then shows it.
pub async fn send_test_event(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, endpoint)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    check_post(&session, &form)?;
    let event_type = form.text("type").unwrap_or_else(|| "wasmhook.test".into());
    let body = serde_json::json!({
        "type": event_type,
        "resource": {"type": "endpoint", "id": endpoint},
        "data": {"test": true, "sent_from": "console"},
    });
    let event: inproc::CreateEvent = serde_json::from_str(&body.to_string())
        .map_err(|e| PageError::Api(ApiError::invalid("type", e.to_string())))?;
    let (_, ApiJson(answer)) = inproc::create_event(
        State(state.clone()),
        session.caller(),
        Path(tenant.clone()),
        HeaderMap::new(),
        ApiJson(event),
    )
    .await?;
    let id = answer.get("id").and_then(Value::as_str).unwrap_or_default();
    Ok(see_other(&format!(
        "/console/t/{tenant}/events/{id}?done=sent"
    )))
}
