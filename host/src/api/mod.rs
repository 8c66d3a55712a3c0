//! The admin API (axum): tenants, endpoints, events, deliveries, plugins, keys and client
//! certificates, plus `/healthz`, `/metrics`, `/.well-known/jwks.json` and `/openapi.json`.
//!
//! The OpenAPI document is generated from the handlers' annotations (utoipa), so it cannot drift
//! from the code.

mod auth;
mod certificates;
mod endpoints;
pub mod error;
mod event_types;
mod events;
mod keys;
mod log;
mod openapi;
mod plugins;
mod portal;
mod recovery;
mod rotation;
mod staged_certificates;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{new_tenant_token, token_digest};

use crate::engine::Engine;

/// The handlers the console calls in-process (as the signed-in operator or tenant), so that it
/// validates, refuses and answers exactly as the API does.
pub(crate) mod inproc {
    pub(crate) use super::auth::Caller;
    pub(crate) use super::certificates::{
        CreateCertificate, UploadCertificate, create_certificate, get_certificate,
        list_certificates, upload_certificate,
    };
    pub(crate) use super::endpoints::{
        UpdateEndpoint, create_endpoint, get_endpoint, list_endpoints, update_endpoint,
    };
    pub(crate) use super::events::{CreateEvent, create_event, retry_delivery};
    pub(crate) use super::log::{LogParams, event_history, list_events};
    pub(crate) use super::plugins::put_tenant_plugin;
    pub(crate) use super::portal::{CreatePortalLink, base_url, portal_link};
    pub(crate) use super::recovery::{Recover, recover};
    pub(crate) use super::tenants::{CreateTenant, create_tenant, delete_tenant};
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmhook admin API", description = "Webhook delivery engine whose authentication and security methods are sandboxed WebAssembly components."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Customers that receive webhooks"),
        (name = "endpoints", description = "Where and how a tenant receives webhooks"),
        (name = "events", description = "Events, their deliveries and attempts"),
        (name = "event-types", description = "A tenant's event-type catalog (JSON Schemas of `data`) and its settings"),
        (name = "plugins", description = "Wasm plugins: built-in, operator and tenant-owned"),
        (name = "keys", description = "JWS signing keys and mTLS client certificates"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The operator's admin token or a tenant token"))
                    .build(),
            ),
        );
    }
}

/// The router of the whole API.
pub fn router(engine: Arc<Engine>) -> Router {
    let max_body = engine.config.api.max_body_kib * 1024;
    let state = AppState { engine };
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::delete_tenant))
        .routes(routes!(portal::create_portal_link))
        .routes(routes!(
            endpoints::create_endpoint,
            endpoints::list_endpoints
        ))
        .routes(routes!(
            endpoints::get_endpoint,
            endpoints::update_endpoint,
            endpoints::delete_endpoint
        ))
        .routes(routes!(endpoints::disable_endpoint))
        .routes(routes!(endpoints::enable_endpoint))
        .routes(routes!(events::create_event))
        .routes(routes!(events::create_events_batch))
        .routes(routes!(events::get_event))
        .routes(routes!(events::list_deliveries))
        .routes(routes!(events::list_attempts))
        .routes(routes!(events::retry_delivery))
        .routes(routes!(log::list_events))
        .routes(routes!(log::event_history))
        .routes(routes!(plugins::list_plugins))
        .routes(routes!(plugins::list_tenant_plugins))
        .routes(routes!(
            plugins::get_tenant_plugin,
            plugins::put_tenant_plugin,
            plugins::delete_tenant_plugin
        ))
        .routes(routes!(keys::jwks))
        .routes(routes!(keys::list_keys))
        .routes(routes!(keys::rotate_keys))
        .routes(routes!(keys::rotate_master_key))
        .routes(routes!(
            certificates::create_certificate,
            certificates::list_certificates
        ))
        .routes(routes!(
            certificates::get_certificate,
            certificates::delete_certificate
        ))
        .routes(routes!(certificates::upload_certificate))
        .routes(routes!(
            event_types::create_event_type,
            event_types::list_event_types
        ))
        .routes(routes!(
            event_types::get_event_type,
            event_types::update_event_type,
            event_types::delete_event_type
        ))
        .routes(routes!(
            event_types::get_settings,
            event_types::update_settings
        ))
        .routes(routes!(recovery::recover))
        .routes(routes!(recovery::test))
        .routes(routes!(rotation::rotate_secret))
        .routes(routes!(
            staged_certificates::stage_certificate,
            staged_certificates::unstage_certificate
        ))
        .routes(routes!(staged_certificates::upload_next))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .split_for_parts();
    let mut openapi = openapi;
    // After the routes are in: the shared error answers go on every operation.
    utoipa::Modify::modify(&openapi::CommonResponses, &mut openapi);
    let openapi_json = openapi.to_pretty_json().unwrap_or_else(|_| "{}".into());
    api.route(
        "/openapi.json",
        get(move || {
            let body = openapi_json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
    // Unknown routes and methods answer with the same JSON error shape as every other error.
    .fallback(|| async {
        error::ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: None,
            message: "no such route (see /openapi.json)".into(),
        }
    })
    .method_not_allowed_fallback(|| async {
        error::ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            field: None,
            message: "this route does not answer that method (see /openapi.json)".into(),
        }
    })
    .layer(DefaultBodyLimit::max(max_body))
    .with_state(state)
}

/// Liveness: the engine answers and its store accepts writes.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "Healthy"), (status = 503, description = "The store is not writable")))]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.engine.store.flush().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(
                serde_json::json!({"status": "ok", "store": state.engine.store.kind(), "node": state.engine.dispatcher.node(), "held": state.engine.dispatcher.held(), "queued": state.engine.dispatcher.queued(), "in_flight": state.engine.dispatcher.in_flight()}),
            ),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "reason": e.to_string()})),
        ),
    }
}

/// Prometheus metrics: deliveries by outcome, attempt latency histogram, queue depth.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges are read from their sources when scraped, not kept in step on the hot path.
    let engine = &state.engine;
    engine
        .metrics
        .queue_depth
        .set(engine.dispatcher.queued() as i64);
    engine
        .metrics
        .in_flight
        .set(engine.dispatcher.in_flight() as i64);
    engine.metrics.held.set(engine.dispatcher.held() as i64);
    engine
        .metrics
        .held_body_bytes
        .set(engine.dispatcher.held_body_bytes() as i64);
    state.engine.metrics.token_fetches.inner().store(
        state.engine.pipeline.tokens().fetch_count(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let runtime = state.engine.registry.runtime();
    let (reused, instantiated) = runtime.reuse_counts();
    state
        .engine
        .metrics
        .set_plugin_instances(reused, instantiated, runtime.idle_instances());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics.render(),
    )
}
