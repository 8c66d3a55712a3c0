//! `/v1/tenants/{tenant}/events`: ingest (single and batch), and the deliveries and attempts of
//! an event, with replay.
//!
//! An event is answered `202` only after it and its deliveries are committed. An
//! `Idempotency-Key` header makes a repeat return the first answer instead of a second event.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::event_types::TenantCatalog;
use crate::model::{Attempt, Delivery, EventSummary, new_id, now_unix, rfc3339};
use crate::store::NewEvent;

/// Body of `POST .../events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// Event type, e.g. `invoice.paid` (letters, digits, `.`, `_`, `-`, `:`; at most 200).
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub event_type: String,
    /// The resource the event is about (e.g. `{"type": "invoice", "id": "in_1"}`).
    ///
    /// `resource` and `data` are kept as the producer's JSON text (checked, not re-encoded): the
    /// envelope splices them in verbatim.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub resource: Option<Box<RawValue>>,
    /// The event's data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<Box<RawValue>>,
}

/// `{}`: the `resource` and `data` of an event that gave none.
static EMPTY_OBJECT: std::sync::LazyLock<Box<RawValue>> = std::sync::LazyLock::new(|| {
    RawValue::from_string("{}".to_string()).expect("`{}` is a JSON object")
});

/// What receivers get: the event's id and type, when it was created, and the producer's
/// `resource` and `data` as sent.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    created_at: String,
    resource: &'a RawValue,
    data: &'a RawValue,
}

/// Body of `POST .../events/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvents {
    /// The events, stored all or none (1 to `api.max_batch_events`, 1000 by default).
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<CreateEvent>,
}

/// Answer for one accepted event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventAccepted {
    /// `msg_…`: the event's id and the `webhook-id` of its deliveries.
    pub id: String,
    /// Deliveries created (one per subscribed endpoint).
    pub deliveries: usize,
}

/// Answer of a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsAccepted {
    /// One entry per event, in order.
    pub events: Vec<EventAccepted>,
}

pub use crate::event_types::valid_event_type;

/// The `Idempotency-Key` header, scoped to the route (`event:` or `batch:`): a key used for a
/// single event and for a batch names two requests, each answered with its own first answer.
fn idempotency_key(headers: &HeaderMap, scope: &str) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 256)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        Some("Idempotency-Key".into()),
                        "must be 1-256 visible ASCII characters",
                    )
                })?;
            Ok(Some(format!("{scope}:{key}")))
        }
    }
}

/// Whether the JSON text `json` nests arrays and objects at most `max` levels deep (`{}` and
/// `[]` are one level, a scalar none). A scan of the text, without recursion, that stops at
/// the first level too deep: serde_json keeps `resource` and `data` as raw text without a depth
/// limit, but what is stored must stay readable by parsers that have one (128 for serde_json,
/// including the one that reads the envelope back, and plugins').
fn within_depth(json: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Builds the envelope and the deliveries of one event.
fn prepare(
    state: &AppState,
    tenant: &str,
    catalog: &TenantCatalog,
    event: CreateEvent,
    field: &str,
) -> Result<NewEvent, ApiError> {
    if !valid_event_type(&event.event_type) {
        return Err(ApiError::invalid(
            format!("{field}type"),
            "must be 1-200 characters of letters, digits, '.', '_', '-' and ':'",
        ));
    }
    // Valid JSON by construction; an object is the only JSON text that starts with `{`.
    let resource: &RawValue = match event.resource.as_deref() {
        None => &EMPTY_OBJECT,
        Some(raw) if raw.get().starts_with('{') => raw,
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{field}resource"),
                "must be a JSON object",
            ));
        }
    };
    let data: &RawValue = event.data.as_deref().unwrap_or(&EMPTY_OBJECT);
    let max_depth = state.engine.config.api.max_json_depth;
    for (name, value) in [("resource", resource), ("data", data)] {
        if !within_depth(value.get(), max_depth) {
            return Err(ApiError::invalid(
                format!("{field}{name}"),
                format!(
                    "is nested more than {max_depth} levels deep (arrays and objects); at most {max_depth} are accepted (api.max_json_depth)"
                ),
            ));
        }
    }
    catalog
        .check_data(&event.event_type, data)
        .map_err(|violation| {
            ApiError::invalid(
                format!("{field}data{}", violation.pointer),
                format!(
                    "breaks the schema of event type `{}` at `{}`: {}",
                    event.event_type,
                    if violation.pointer.is_empty() {
                        "/"
                    } else {
                        &violation.pointer
                    },
                    violation.message
                ),
            )
        })?;
    let id = new_id("msg");
    let created_at = now_unix();
    let envelope = Envelope {
        id: &id,
        event_type: &event.event_type,
        created_at: rfc3339(created_at),
        resource,
        data,
    };
    let body: Arc<[u8]> = serde_json::to_vec(&envelope)
        .map_err(|e| ApiError::internal("encoding the envelope", e))?
        .into();
    let subscribers = state
        .engine
        .store
        .directory()
        .subscribers(tenant, &event.event_type);
    Ok(NewEvent {
        id,
        event_type: event.event_type,
        created_at,
        body,
        endpoint_ids: subscribers.attempted,
        held_endpoint_ids: subscribers.held,
    })
}

async fn ingest(
    state: &AppState,
    tenant: &str,
    events: Vec<NewEvent>,
    key: Option<String>,
    response: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    Ok(state.engine.ingest(tenant, events, key, response).await?)
}

/// Accepts an event: answered once the event and its deliveries are durably stored.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/events", tag = "events", params(("tenant" = String, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key returns the first answer")),
    request_body = CreateEvent,
    responses((status = 202, body = EventAccepted), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    ApiJson(event): ApiJson<CreateEvent>,
) -> Result<(StatusCode, ApiJson<serde_json::Value>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let key = idempotency_key(&headers, "event")?;
    let catalog = state.engine.tenant_catalog(&tenant).await?;
    let event = prepare(&state, &tenant, &catalog, event, "")?;
    let response = serde_json::to_value(EventAccepted {
        id: event.id.clone(),
        deliveries: event.deliveries(),
    })
    .map_err(|e| ApiError::internal("encoding the answer", e))?;
    let answer = ingest(&state, &tenant, vec![event], key, response).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(answer)))
}

/// Accepts many events in one transaction (all or none).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/events/batch", tag = "events", params(("tenant" = String, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key returns the first answer")),
    request_body = CreateEvents,
    responses((status = 202, body = EventsAccepted), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_events_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    ApiJson(batch): ApiJson<CreateEvents>,
) -> Result<(StatusCode, ApiJson<serde_json::Value>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let key = idempotency_key(&headers, "batch")?;
    let max = state.engine.config.api.max_batch_events;
    if batch.events.is_empty() || batch.events.len() > max {
        return Err(ApiError::invalid(
            "events",
            format!("must hold 1 to {max} events"),
        ));
    }
    let catalog = state.engine.tenant_catalog(&tenant).await?;
    let mut events = Vec::with_capacity(batch.events.len());
    for (i, event) in batch.events.into_iter().enumerate() {
        let field = format!("events[{i}].");
        events.push(prepare(&state, &tenant, &catalog, event, &field)?);
    }
    let accepted = EventsAccepted {
        events: events
            .iter()
            .map(|e| EventAccepted {
                id: e.id.clone(),
                deliveries: e.deliveries(),
            })
            .collect(),
    };
    let response =
        serde_json::to_value(accepted).map_err(|e| ApiError::internal("encoding the answer", e))?;
    let answer = ingest(&state, &tenant, events, key, response).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(answer)))
}

/// One event with its envelope.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event}", tag = "events",
    params(("tenant" = String, Path), ("event" = String, Path)),
    responses((status = 200, body = EventSummary), (status = 404, body = ErrorBody)))]
pub async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, event)): Path<(String, String)>,
) -> Result<ApiJson<EventSummary>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(state.engine.store.event(&tenant, &event).await?))
}

/// The deliveries of an event (one per endpoint).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event}/deliveries", tag = "events",
    params(("tenant" = String, Path), ("event" = String, Path)),
    responses((status = 200, body = Vec<Delivery>), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, event)): Path<(String, String)>,
) -> Result<ApiJson<Vec<Delivery>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(
        state
            .engine
            .store
            .deliveries_of_event(&tenant, &event)
            .await?,
    ))
}

/// The attempts of a delivery.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event}/deliveries/{delivery}/attempts", tag = "events",
    params(("tenant" = String, Path), ("event" = String, Path), ("delivery" = String, Path)),
    responses((status = 200, body = Vec<Attempt>), (status = 404, body = ErrorBody)))]
pub async fn list_attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, event, delivery)): Path<(String, String, String)>,
) -> Result<ApiJson<Vec<Attempt>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(
        state
            .engine
            .store
            .attempts_of_delivery(&tenant, &event, &delivery)
            .await?,
    ))
}

/// Replays a delivered or dead delivery now, with a fresh retry schedule.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/events/{event}/deliveries/{delivery}/retry", tag = "events",
    params(("tenant" = String, Path), ("event" = String, Path), ("delivery" = String, Path)),
    responses((status = 202, body = Delivery), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, event, delivery)): Path<(String, String, String)>,
) -> Result<(StatusCode, ApiJson<serde_json::Value>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let job = state.engine.replay(&tenant, &event, &delivery).await?;
    let answer =
        serde_json::json!({"id": job.delivery_id, "status": "pending", "attempts": job.attempts});
    Ok((StatusCode::ACCEPTED, ApiJson(answer)))
}

#[cfg(test)]
mod tests {
    use super::within_depth;

    fn nested(depth: usize) -> String {
        let mut s = String::new();
        for i in 0..depth {
            s.push_str(if i % 2 == 0 { "{\"a\":" } else { "[" });
        }
        s.push('1');
        for i in (0..depth).rev() {
            s.push(if i % 2 == 0 { '}' } else { ']' });
        }
        s
    }

    #[test]
    fn depth_counts_arrays_and_objects_outside_strings() {
        assert!(within_depth("1", 0));
        assert!(!within_depth("{}", 0));
        assert!(within_depth("{}", 1));
        assert!(within_depth(r#"{"a":[1,{"b":2}],"c":{}}"#, 3));
        assert!(!within_depth(r#"{"a":[1,{"b":2}],"c":{}}"#, 2));
        assert!(within_depth(&nested(64), 64));
        assert!(!within_depth(&nested(65), 64));
        assert!(!within_depth(&nested(10_000), 64));
        // Brackets in strings, escaped quotes and backslashes do not count.
        assert!(within_depth(r#"{"a":"[[[[{{{{"}"#, 1));
        assert!(within_depth(r#"{"a":"\"[[[[","b":"\\","c":"\\\"{{{"}"#, 1));
        assert!(!within_depth(r#"{"a":"\\",  "b":[[1]]}"#, 2));
        // Siblings do not add up.
        assert!(within_depth(r#"[[1],[2],[[3]]]"#, 3));
    }
}
