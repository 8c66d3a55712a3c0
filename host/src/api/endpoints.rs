//! `/v1/tenants/{tenant}/endpoints`: where and how a tenant receives webhooks.
//!
//! Every create and update is validated before anything is stored: the URL, the event type
//! patterns, each step (the plugin exists and is visible to the tenant, its config passes the
//! plugin's schema and `validate`), the TLS settings, and the operator's policy. A URL (the
//! endpoint's, a step's token URL) whose host is an IP literal the outbound address policy refuses
//! is refused here, at once; host names are checked when they are resolved.
//!
//! **Secrets.** Answers never show one: the fields a step's plugin marks secret in its config
//! schema (`writeOnly` / `x-secret`, a bearer step's provider's too) read `wh:redacted`
//! ([`REDACTED`]), and a URL's password (the endpoint's, or any URL in a step config) reads
//! `wh%3Aredacted` ([`REDACTED_URL_PASSWORD`]: `https://user:wh%3Aredacted@host/`, still a valid
//! URL that URL libraries pass through unchanged). An answer can be sent back as is: a marker at
//! a secret field of the step at the same index with the same plugin, or as the password of a
//! URL at the same place with the same scheme, user, host and port, keeps the stored value (a
//! password never follows its URL elsewhere); a new value replaces it; the marker anywhere else
//! is refused (422 naming the field). Errors name fields, never their values.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::http::AddressPolicy;
use crate::model::{Endpoint, EndpointSpec, StepSpec, TlsSettings, new_id, now_unix};
use crate::secrets::{REDACTED, REDACTED_URL_PASSWORD, SecretPath};
use crate::store::url_has_password;

/// Body of `PATCH .../endpoints/{endpoint}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    pub url: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New steps (replace all steps; send full configs). A secret field may be sent back as
    /// the redaction marker `wh:redacted` (and a URL password as `wh%3Aredacted`) to keep the
    /// value stored for the step at the same index with the same plugin.
    pub steps: Option<Vec<StepSpec>>,
    /// New TLS settings (`null` keeps them; send `{}` to remove).
    pub tls: Option<TlsSettings>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New per-endpoint concurrency.
    pub max_concurrency: Option<u32>,
    /// New description.
    pub description: Option<String>,
    /// Receive the tenant's system events, or stop.
    pub system_events: Option<bool>,
}

/// An endpoint as the API shows it: the secret fields of its steps (those their plugins' config
/// schemas mark `writeOnly` / `x-secret`) read [`REDACTED`], and the password of a URL (the
/// endpoint's, or any URL string of a step config) reads [`REDACTED_URL_PASSWORD`].
///
/// The fields are spelled out (not `Endpoint` flattened) so the published schema is exactly what
/// an answer holds: `EndpointSpec` refuses unknown fields, and an `allOf` with it would too.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// `ep_…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Absolute `http` or `https` URL of the receiver (its password, if any, redacted).
    pub url: String,
    /// Event types delivered here: exact names or `prefix.*` patterns; empty means every event.
    pub event_types: Vec<String>,
    /// Plugin steps run in order on each outgoing request (secret fields redacted).
    pub steps: Vec<StepSpec>,
    /// Mutual TLS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// A disabled endpoint is not attempted: its deliveries are held until it is enabled.
    pub enabled: bool,
    /// Attempts in flight to this endpoint at most, across the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Free text for the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Also receives the tenant's system events.
    pub system_events: bool,
    /// How its attempts went (absent when the engine has no record of any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::store::EndpointHealth>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<Endpoint> for EndpointView {
    fn from(endpoint: Endpoint) -> Self {
        let Endpoint {
            id,
            tenant_id,
            spec,
            created_at,
            updated_at,
        } = endpoint;
        let EndpointSpec {
            url,
            event_types,
            steps,
            tls,
            enabled,
            max_concurrency,
            description,
            system_events,
        } = spec;
        EndpointView {
            id,
            tenant_id,
            url,
            event_types,
            steps,
            tls,
            enabled,
            max_concurrency,
            description,
            system_events,
            health: None,
            created_at,
            updated_at,
        }
    }
}

/// The endpoint as answers show it (secrets redacted).
pub(super) fn view(state: &AppState, endpoint: &Endpoint) -> EndpointView {
    let paths = state.engine.secret_paths(endpoint);
    let loaded: Vec<bool> = endpoint
        .spec
        .steps
        .iter()
        .map(|step| {
            state
                .engine
                .registry
                .resolve(&endpoint.tenant_id, &step.plugin)
                .is_ok()
        })
        .collect();
    redacted(endpoint, &paths, &loaded).into()
}

// ---- secrets in answers and updates -------------------------------------------------------------

/// One step of a concrete place in a JSON tree.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The API's name of a place: `steps[0].config` + `[provider_config, headers, x-key]` →
/// `steps[0].config.provider_config.headers.x-key`; array items as `[i]`.
fn field_name(prefix: &str, at: &[Seg]) -> String {
    let mut out = prefix.to_string();
    for seg in at {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn get<'a>(tree: &'a serde_json::Value, at: &[Seg]) -> Option<&'a serde_json::Value> {
    at.iter().try_fold(tree, |node, seg| match seg {
        Seg::Key(key) => node.as_object()?.get(key),
        Seg::Index(i) => node.as_array()?.get(*i),
    })
}

fn get_mut<'a>(tree: &'a mut serde_json::Value, at: &[Seg]) -> Option<&'a mut serde_json::Value> {
    at.iter().try_fold(tree, |node, seg| match seg {
        Seg::Key(key) => node.as_object_mut()?.get_mut(key),
        Seg::Index(i) => node.as_array_mut()?.get_mut(*i),
    })
}

/// The concrete places of `tree` that a secret path names (`*`: every key or item).
fn places(tree: &serde_json::Value, path: &[String], at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(at.clone());
        return;
    };
    match tree {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if first == "*" || first == key {
                    at.push(Seg::Key(key.clone()));
                    places(value, rest, at, out);
                    at.pop();
                }
            }
        }
        serde_json::Value::Array(items) if first == "*" => {
            for (i, item) in items.iter().enumerate() {
                at.push(Seg::Index(i));
                places(item, rest, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Every string of `tree` with its place.
fn strings<'a>(tree: &'a serde_json::Value, at: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, &'a str)>) {
    match tree {
        serde_json::Value::String(s) => out.push((at.clone(), s)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Seg::Index(i));
                strings(item, at, out);
                at.pop();
            }
        }
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                at.push(Seg::Key(key.clone()));
                strings(value, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host…` split around the password: (`scheme://user:`, `password`,
/// `@host…`). `None` for a URL without a password (as [`url_has_password`] decides).
fn split_password(url: &str) -> Option<(&str, &str, &str)> {
    if !url_has_password(url) {
        return None;
    }
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    let (password_start, password_end) = (start + colon + 1, start + at);
    Some((
        &url[..password_start],
        &url[password_start..password_end],
        &url[password_end..],
    ))
}

/// The URL with its password shown as [`REDACTED_URL_PASSWORD`]; `None` when it has none.
fn mask_url_password(url: &str) -> Option<String> {
    let (before, _, after) = split_password(url)?;
    Some(format!("{before}{REDACTED_URL_PASSWORD}{after}"))
}

/// True when a URL's password is the redaction marker (as shown, or decoded).
fn is_marker_password(password: &str) -> bool {
    password == REDACTED || password.eq_ignore_ascii_case(REDACTED_URL_PASSWORD)
}

/// `sent` (a URL whose password is the marker) with the password of `stored`, when `stored` has
/// one for the same scheme, user, host and port (the path and query may change). A stored
/// password never follows a URL to another origin or user.
fn restore_url_password(sent: &str, stored: &str) -> Option<String> {
    let (before, password, after) = split_password(sent)?;
    let (stored_before, stored_password, stored_after) = split_password(stored)?;
    let host = |after: &str| {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        after[..end].to_ascii_lowercase()
    };
    (is_marker_password(password) && before == stored_before && host(after) == host(stored_after))
        .then(|| format!("{before}{stored_password}{after}"))
}

/// True when `text` carries the redaction marker.
fn has_marker(text: &str) -> bool {
    text.contains(REDACTED)
        || text
            .to_ascii_lowercase()
            .contains(&REDACTED_URL_PASSWORD.to_ascii_lowercase())
}

/// Shows every URL password of `tree` as the marker.
fn mask_url_passwords(tree: &mut serde_json::Value) {
    match tree {
        serde_json::Value::String(s) => {
            if let Some(masked) = mask_url_password(s) {
                *s = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_url_passwords),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_url_passwords),
        _ => {}
    }
}

/// Fallback for a step whose plugin is not loaded (its schema is unknown): values of
/// secret-looking keys (`key`, `secret`, `password`, `token`, …) read as the marker.
fn redact_by_name(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                let lower = name.to_ascii_lowercase();
                let secret = [
                    "secret",
                    "password",
                    "token",
                    "credential",
                    "private",
                    "header",
                ]
                .iter()
                .any(|w| lower.contains(w))
                    || lower == "key"
                    || lower == "body"
                    || lower.ends_with("_key")
                    || lower.ends_with("apikey")
                    || lower.ends_with("params");
                if secret && !field.is_null() && !field.is_boolean() {
                    *field = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_by_name(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_by_name),
        _ => {}
    }
}

/// `endpoint` as answers show it. `paths[i]` are step `i`'s secret fields; `loaded[i]` says
/// whether its plugin is loaded (if not, secret-looking keys are redacted instead).
fn redacted(endpoint: &Endpoint, paths: &[Vec<SecretPath>], loaded: &[bool]) -> Endpoint {
    let mut endpoint = endpoint.clone();
    if let Some(masked) = mask_url_password(&endpoint.spec.url) {
        endpoint.spec.url = masked;
    }
    for (i, step) in endpoint.spec.steps.iter_mut().enumerate() {
        for path in paths.get(i).into_iter().flatten() {
            crate::secrets::visit_path(&mut step.config, path, &mut |value| {
                *value = serde_json::Value::String(REDACTED.into());
            });
        }
        if !loaded.get(i).copied().unwrap_or(false) {
            redact_by_name(&mut step.config);
        }
        mask_url_passwords(&mut step.config);
    }
    endpoint
}

/// Puts the stored secrets back where `endpoint` (created, or `current` changed) carries the
/// redaction marker, so an answer sent back as is keeps them:
///
/// - a secret field of step `i` ([`REDACTED`] at a place `paths[i]` names) takes the stored
///   value at the same place of stored step `i`, if that step has the same plugin;
/// - a URL whose password is the marker (the endpoint's, or a string of a step config) takes
///   the password of the stored URL at the same place, if that one has the same scheme, user,
///   host and port.
///
/// The marker anywhere else, or where nothing is stored, is a 422 naming the field.
fn restore_secrets(
    current: Option<&Endpoint>,
    endpoint: &mut Endpoint,
    paths: &[Vec<SecretPath>],
) -> Result<(), ApiError> {
    let no_stored_password = |field: String| {
        ApiError::invalid(
            field,
            format!(
                "has the redaction marker `{REDACTED_URL_PASSWORD}` as its password, but no \
                 password is stored for this URL's scheme, user, host and port; send the password"
            ),
        )
    };
    if split_password(&endpoint.spec.url)
        .is_some_and(|(_, password, _)| is_marker_password(password))
    {
        endpoint.spec.url = current
            .and_then(|c| restore_url_password(&endpoint.spec.url, &c.spec.url))
            .ok_or_else(|| no_stored_password("url".into()))?;
    }
    for (i, step) in endpoint.spec.steps.iter_mut().enumerate() {
        let prefix = format!("steps[{i}].config");
        let stored = current
            .and_then(|c| c.spec.steps.get(i))
            .filter(|s| s.plugin == step.plugin);
        let mut secret_places = Vec::new();
        for path in paths.get(i).into_iter().flatten() {
            places(&step.config, path, &mut Vec::new(), &mut secret_places);
        }
        for at in secret_places {
            if get(&step.config, &at).and_then(|v| v.as_str()) != Some(REDACTED) {
                continue;
            }
            let kept = stored
                .and_then(|s| get(&s.config, &at))
                .cloned()
                .ok_or_else(|| {
                    ApiError::invalid(
                        field_name(&prefix, &at),
                        format!(
                            "is the redaction marker `{REDACTED}`, but no value is stored here (a \
                         secret is kept for the step at the same index with the same plugin); \
                         send the value"
                        ),
                    )
                })?;
            if let Some(slot) = get_mut(&mut step.config, &at) {
                *slot = kept;
            }
        }
        let mut found = Vec::new();
        strings(&step.config, &mut Vec::new(), &mut found);
        let urls: Vec<(Vec<Seg>, String)> = found
            .into_iter()
            .filter(|(_, s)| split_password(s).is_some_and(|(_, p, _)| is_marker_password(p)))
            .map(|(at, s)| (at, s.to_string()))
            .collect();
        for (at, sent) in urls {
            let restored = stored
                .and_then(|s| get(&s.config, &at))
                .and_then(|v| v.as_str())
                .and_then(|old| restore_url_password(&sent, old))
                .ok_or_else(|| no_stored_password(field_name(&prefix, &at)))?;
            if let Some(slot) = get_mut(&mut step.config, &at) {
                *slot = serde_json::Value::String(restored);
            }
        }
    }
    // The marker anywhere else cannot be resolved: refuse rather than store it.
    let tree = serde_json::to_value(&endpoint.spec).unwrap_or_default();
    let mut found = Vec::new();
    strings(&tree, &mut Vec::new(), &mut found);
    if let Some((at, _)) = found.into_iter().find(|(_, s)| has_marker(s)) {
        return Err(ApiError::invalid(
            field_name("", &at),
            format!(
                "holds the redaction marker `{REDACTED}`, which only stands for a stored secret \
                 at a secret field of the same step (same index, same plugin) or as the password \
                 of the same URL; send the value"
            ),
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ApiError::invalid("url", format!("not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ApiError::invalid(
                "url",
                "must start with http:// or https://",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "has no host"));
    }
    if url.len() > 2048 {
        return Err(ApiError::invalid("url", "is longer than 2048 characters"));
    }
    Ok(())
}

/// 422 naming `field` when `url`'s host is an IP literal the outbound address policy refuses
/// (`http.allow_cidrs` applies). Host names pass: they are checked when resolved, before every
/// connection.
fn check_destination(policy: &AddressPolicy, field: &str, url: &str) -> Result<(), ApiError> {
    let Ok(uri) = url.trim().parse::<http::Uri>() else {
        return Ok(()); // Malformed URLs are reported by the URL checks.
    };
    match uri.host().and_then(|host| policy.refuses_literal(host)) {
        Some(why) => Err(ApiError::invalid(field, why)),
        None => Ok(()),
    }
}

/// [`check_destination`] for the URL of the endpoint and the token URLs of its steps: a
/// `bearer` step's `provider_config.token_url` (the built-in `oauth2-client-credentials` and
/// `http-token` providers, and tenant providers following the same convention) and a
/// `token_url` at the top of a step's config.
fn check_destinations(policy: &AddressPolicy, spec: &EndpointSpec) -> Result<(), ApiError> {
    check_destination(policy, "url", &spec.url)?;
    for (i, step) in spec.steps.iter().enumerate() {
        let candidates = [
            (".config.token_url", step.config.get("token_url")),
            (
                ".config.provider_config.token_url",
                step.config
                    .get("provider_config")
                    .and_then(|c| c.get("token_url")),
            ),
        ];
        for (suffix, value) in candidates {
            if let Some(url) = value.and_then(|v| v.as_str()) {
                check_destination(policy, &format!("steps[{i}]{suffix}"), url)?;
            }
        }
    }
    Ok(())
}

fn check_event_types(patterns: &[String]) -> Result<(), ApiError> {
    for (i, pattern) in patterns.iter().enumerate() {
        let name = pattern.strip_suffix(".*").unwrap_or(pattern);
        if pattern != "*" && !super::events::valid_event_type(name) {
            return Err(ApiError::invalid(
                format!("event_types[{i}]"),
                format!("`{pattern}` is not an event type or a `prefix.*` pattern"),
            ));
        }
    }
    Ok(())
}

async fn validate(state: &AppState, tenant: &str, spec: &EndpointSpec) -> Result<(), ApiError> {
    check_url(&spec.url)?;
    check_destinations(state.engine.http.policy(), spec)?;
    check_event_types(&spec.event_types)?;
    state
        .engine
        .check_subscriptions(tenant, &spec.event_types)
        .await?;
    if spec.max_concurrency == Some(0) {
        return Err(ApiError::invalid("max_concurrency", "must be at least 1"));
    }
    if let Some(tls) = &spec.tls {
        if let Some(pem) = &tls.trusted_issuers {
            crate::tls::parse_certificates(pem)
                .map_err(|e| ApiError::invalid("tls.trusted_issuers", e.to_string()))?;
        }
        if let Some(id) = &tls.client_certificate {
            let record = state
                .engine
                .store
                .client_certificate(tenant, id)
                .await
                .map_err(|_| {
                    ApiError::invalid(
                        "tls.client_certificate",
                        format!("no client certificate `{id}` for this tenant"),
                    )
                })?;
            if record.certificate_pem.is_none() {
                return Err(ApiError::invalid(
                    "tls.client_certificate",
                    format!(
                        "client certificate `{id}` is awaiting its signed certificate (upload it first)"
                    ),
                ));
            }
        }
        if tls.client_certificate.is_some() && !spec.url.starts_with("https://") {
            return Err(ApiError::invalid("url", "mutual TLS needs an https:// URL"));
        }
    }
    state
        .engine
        .pipeline
        .validate_endpoint(
            tenant,
            spec,
            state.engine.config.plugins.require_auth_and_security,
        )
        .await
        .map_err(|e| ApiError::invalid(e.field, e.reason))
}

/// Creates an endpoint.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/endpoints", tag = "endpoints", params(("tenant" = String, Path)),
    request_body = EndpointSpec,
    responses((status = 201, body = EndpointView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(spec): ApiJson<EndpointSpec>,
) -> Result<(StatusCode, ApiJson<EndpointView>), ApiError> {
    caller.tenant(&state, &tenant)?;
    let now = now_unix();
    let mut endpoint = Endpoint {
        id: new_id("ep"),
        tenant_id: tenant,
        spec,
        created_at: now,
        updated_at: now,
    };
    // Nothing is stored yet: a redaction marker has nothing to stand for.
    let paths = state.engine.secret_paths(&endpoint);
    restore_secrets(None, &mut endpoint, &paths)?;
    validate(&state, &endpoint.tenant_id, &endpoint.spec).await?;
    let stored = state.engine.put_endpoint(endpoint).await?;
    Ok((StatusCode::CREATED, ApiJson(view(&state, &stored))))
}

/// Lists the tenant's endpoints.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/endpoints", tag = "endpoints", params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<EndpointView>), (status = 404, body = ErrorBody)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<EndpointView>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let endpoints = state.engine.store.directory().endpoints_of(&tenant);
    let mut views: Vec<EndpointView> = endpoints.iter().map(|e| view(&state, e)).collect();
    add_health(&state, &mut views).await;
    Ok(ApiJson(views))
}

/// Fills in the views' health (left out, with a warning, when the store cannot read it: the
/// endpoints still show).
async fn add_health(state: &AppState, views: &mut [EndpointView]) {
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    match state.engine.endpoint_health(&ids).await {
        Ok(mut health) => {
            for view in views {
                view.health = health.remove(&view.id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read endpoint health"),
    }
}

/// The endpoint as answers show it, with its health.
async fn view_with_health(state: &AppState, endpoint: &Endpoint) -> EndpointView {
    let mut views = [view(state, endpoint)];
    add_health(state, &mut views).await;
    let [view] = views;
    view
}

fn find(state: &AppState, tenant: &str, id: &str) -> Result<std::sync::Arc<Endpoint>, ApiError> {
    state
        .engine
        .store
        .directory()
        .endpoint(id)
        .filter(|e| e.tenant_id == tenant)
        .ok_or_else(|| ApiError::not_found("endpoint", id))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/endpoints/{endpoint}", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let endpoint = find(&state, &tenant, &id)?;
    Ok(ApiJson(view_with_health(&state, &endpoint).await))
}

/// Disables an endpoint: nothing is attempted; its deliveries are held (not lost) until it is
/// enabled again. The tenant's system endpoints get `endpoint.disabled`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/endpoints/{endpoint}/disable", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
pub async fn disable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let endpoint = state
        .engine
        .disable_endpoint(&tenant, &id, crate::engine::DisableReason::Manual)
        .await?;
    Ok(ApiJson(view_with_health(&state, &endpoint).await))
}

/// Enables an endpoint: its held deliveries are sent in order of creation, its failure streak
/// is forgotten, and the tenant's system endpoints get `endpoint.enabled`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/endpoints/{endpoint}/enable", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
pub async fn enable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let endpoint = state.engine.enable_endpoint(&tenant, &id).await?;
    Ok(ApiJson(view_with_health(&state, &endpoint).await))
}

/// Changes an endpoint; the result is validated like a new one.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/endpoints/{endpoint}", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)), request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<UpdateEndpoint>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let current = find(&state, &tenant, &id)?;
    let mut spec = current.spec.clone();
    if let Some(url) = patch.url {
        spec.url = url;
    }
    if let Some(types) = patch.event_types {
        spec.event_types = types;
    }
    if let Some(steps) = patch.steps {
        spec.steps = steps;
    }
    if let Some(tls) = patch.tls {
        spec.tls =
            (tls.client_certificate.is_some() || tls.trusted_issuers.is_some()).then_some(tls);
    }
    if let Some(enabled) = patch.enabled {
        spec.enabled = enabled;
    }
    if let Some(n) = patch.max_concurrency {
        spec.max_concurrency = Some(n);
    }
    if let Some(description) = patch.description {
        spec.description = Some(description);
    }
    if let Some(system_events) = patch.system_events {
        spec.system_events = system_events;
    }
    let mut endpoint = Endpoint {
        spec,
        updated_at: now_unix().max(current.updated_at + 1),
        ..(*current).clone()
    };
    // Markers sent back from an answer keep the stored secrets; validation sees the real values.
    let paths = state.engine.secret_paths(&endpoint);
    restore_secrets(Some(&current), &mut endpoint, &paths)?;
    validate(&state, &tenant, &endpoint.spec).await?;
    let stored = state
        .engine
        .change_endpoint(
            &current,
            endpoint,
            crate::engine::DisableReason::Manual,
            None,
        )
        .await?;
    Ok(ApiJson(view_with_health(&state, &stored).await))
}

/// Deletes an endpoint; its pending and held deliveries become dead.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/endpoints/{endpoint}", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.tenant(&state, &tenant)?;
    find(&state, &tenant, &id)?;
    state.engine.store.delete_endpoint(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_literals_name_their_field() {
        let policy = AddressPolicy::default();
        let spec = |url: &str, steps: serde_json::Value| -> EndpointSpec {
            serde_json::from_value(serde_json::json!({"url": url, "steps": steps})).unwrap()
        };
        let field = |spec: &EndpointSpec| check_destinations(&policy, spec).unwrap_err().field;
        for url in [
            "http://[::7f00:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.1:8443/hook",
        ] {
            assert_eq!(
                field(&spec(url, serde_json::json!([]))).as_deref(),
                Some("url"),
                "{url}"
            );
        }
        let bearer = serde_json::json!([{"plugin": "api-key", "config": {}}, {"plugin": "bearer", "config": {
            "provider": "oauth2-client-credentials",
            "provider_config": {"token_url": "http://10.0.0.1/token", "client_id": "i", "client_secret": "s"}}}]);
        assert_eq!(
            field(&spec("https://hooks.example.com/", bearer)).as_deref(),
            Some("steps[1].config.provider_config.token_url")
        );
        let ok = serde_json::json!([{"plugin": "bearer", "config": {
            "provider": "http-token", "provider_config": {"token_url": "https://auth.example.com/t"}}}]);
        check_destinations(&policy, &spec("https://93.184.216.34/hook", ok)).unwrap();
        check_destinations(&policy, &spec("http://localhost/", serde_json::json!([]))).unwrap();
        let allowing = AddressPolicy {
            allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        };
        check_destinations(
            &allowing,
            &spec("http://127.0.0.1:9/", serde_json::json!([])),
        )
        .unwrap();
    }

    fn endpoint(spec: serde_json::Value) -> Endpoint {
        Endpoint {
            id: "ep_1".into(),
            tenant_id: "t".into(),
            spec: serde_json::from_value(spec).unwrap(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn path(p: &[&str]) -> SecretPath {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn url_passwords_are_masked_in_a_form_that_round_trips() {
        let url = "https://hook:s3cr:et@receiver.example.com:8443/in?x=a@b#f";
        let masked = mask_url_password(url).unwrap();
        assert_eq!(
            masked,
            "https://hook:wh%3Aredacted@receiver.example.com:8443/in?x=a@b#f"
        );
        assert!(masked.parse::<http::Uri>().is_ok(), "still a valid URL");
        assert_eq!(mask_url_password("https://user@h/"), None);
        assert_eq!(mask_url_password("https://h/p?u=a:b@c"), None);
        // Both forms of the marker come back to the stored password, on the same origin only.
        for sent in [
            masked.as_str(),
            "https://hook:wh:redacted@receiver.example.com:8443/in?x=a@b#f",
            "https://hook:WH%3aREDACTED@RECEIVER.example.com:8443/other",
        ] {
            let restored = restore_url_password(sent, url).unwrap();
            assert!(restored.contains(":s3cr:et@"), "{restored}");
        }
        assert_eq!(
            restore_url_password(
                "https://hook:wh%3Aredacted@receiver.example.com:8443/in/more",
                url
            )
            .as_deref(),
            Some("https://hook:s3cr:et@receiver.example.com:8443/in/more")
        );
        for elsewhere in [
            "https://hook:wh%3Aredacted@evil.example.com:8443/in",
            "https://other:wh%3Aredacted@receiver.example.com:8443/in",
            "http://hook:wh%3Aredacted@receiver.example.com:8443/in",
            "https://hook:wh%3Aredacted@receiver.example.com/in",
        ] {
            assert_eq!(restore_url_password(elsewhere, url), None, "{elsewhere}");
        }
        assert_eq!(
            restore_url_password(&masked, "https://receiver.example.com:8443/in"),
            None
        );
    }

    #[test]
    fn answers_show_markers_at_secret_fields_and_url_passwords() {
        let stored = endpoint(serde_json::json!({
            "url": "https://u:pw1@hooks.example.com/in",
            "steps": [
                {"plugin": "api-key", "config": {"key": "k-1", "header": "x-api-key"}},
                {"plugin": "bearer", "config": {"provider": "http-token", "provider_config": {
                    "token_url": "https://auth.example.com/t", "headers": {"a": "h-1", "b": "h-2"},
                    "body": "b-1"}}},
                {"plugin": "jws", "config": {"iss": "https://i:pw2@issuer.example.com/"}},
                {"plugin": "gone", "config": {"password": "p-1", "client_id": "c"}}
            ]
        }));
        let paths = vec![
            vec![path(&["key"])],
            vec![
                path(&["provider_config", "body"]),
                path(&["provider_config", "headers", "*"]),
            ],
            vec![],
            vec![],
        ];
        let shown = redacted(&stored, &paths, &[true, true, true, false]);
        let text = serde_json::to_string(&shown).unwrap();
        for secret in ["k-1", "h-1", "h-2", "b-1", "pw1", "pw2", "p-1"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let steps = &shown.spec.steps;
        assert_eq!(
            shown.spec.url,
            "https://u:wh%3Aredacted@hooks.example.com/in"
        );
        assert_eq!(steps[0].config["key"], REDACTED);
        assert_eq!(steps[0].config["header"], "x-api-key");
        assert_eq!(steps[1].config["provider_config"]["headers"]["b"], REDACTED);
        assert_eq!(steps[1].config["provider_config"]["body"], REDACTED);
        assert_eq!(
            steps[1].config["provider_config"]["token_url"],
            "https://auth.example.com/t"
        );
        assert_eq!(
            steps[2].config["iss"],
            "https://i:wh%3Aredacted@issuer.example.com/"
        );
        assert_eq!(steps[3].config["password"], REDACTED);
        assert_eq!(steps[3].config["client_id"], "c");

        // The answer sent back as is restores every secret.
        let mut sent = shown.clone();
        sent.spec.steps.pop();
        let mut expected = stored.clone();
        expected.spec.steps.pop();
        restore_secrets(Some(&stored), &mut sent, &paths).unwrap();
        assert_eq!(sent.spec, expected.spec);

        // A new value replaces, the marker keeps: per field.
        let mut sent = shown.clone();
        sent.spec.steps.truncate(2);
        sent.spec.steps[1].config["provider_config"]["headers"]["a"] = "h-new".into();
        restore_secrets(Some(&stored), &mut sent, &paths).unwrap();
        let headers = &sent.spec.steps[1].config["provider_config"]["headers"];
        assert_eq!(
            (headers["a"].as_str(), headers["b"].as_str()),
            (Some("h-new"), Some("h-2"))
        );
    }

    #[test]
    fn a_marker_that_cannot_be_resolved_names_its_field() {
        let stored = endpoint(serde_json::json!({
            "url": "https://hooks.example.com/in",
            "steps": [
                {"plugin": "api-key", "config": {"key": "k-1"}},
                {"plugin": "jws", "config": {"iss": "https://issuer.example.com/"}}
            ]
        }));
        let paths = vec![vec![path(&["key"])], vec![]];
        let field = |current: Option<&Endpoint>, spec: serde_json::Value| {
            let mut sent = endpoint(spec);
            let err = restore_secrets(current, &mut sent, &paths).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(!err.message.contains("k-1"), "{}", err.message);
            err.field.unwrap()
        };
        let api_key = serde_json::json!([{"plugin": "api-key", "config": {"key": REDACTED}}]);
        // Creating: nothing stored.
        assert_eq!(
            field(
                None,
                serde_json::json!({"url": "https://h.example/", "steps": api_key})
            ),
            "steps[0].config.key"
        );
        // Another plugin at that index.
        assert_eq!(
            field(
                Some(&stored),
                serde_json::json!({"url": "https://h.example/", "steps": [
                    {"plugin": "basic-auth", "config": {"client_id": "c", "client_secret": REDACTED}}]})
            ),
            "steps[0].config.client_secret"
        );
        // Not a secret field.
        assert_eq!(
            field(
                Some(&stored),
                serde_json::json!({"url": "https://h.example/", "steps": [
                    {"plugin": "api-key", "config": {"key": REDACTED, "header": REDACTED}}]})
            ),
            "steps[0].config.header"
        );
        // A URL password where the stored URL has none.
        assert_eq!(
            field(
                Some(&stored),
                serde_json::json!({"url": "https://u:wh%3Aredacted@hooks.example.com/in"})
            ),
            "url"
        );
        assert_eq!(
            field(
                Some(&stored),
                serde_json::json!({"url": "https://h.example/", "steps": [{"plugin": "api-key", "config": {"key": "k"}},
                    {"plugin": "jws", "config": {"iss": "https://u:wh:redacted@issuer.example.com/"}}]})
            ),
            "steps[1].config.iss"
        );
        // Anywhere else.
        assert_eq!(
            field(
                Some(&stored),
                serde_json::json!({"url": "https://h.example/", "description": "was wh:redacted"})
            ),
            "description"
        );
        assert_eq!(
            field(
                Some(&stored),
                serde_json::json!({"url": "https://h.example/", "event_types": ["a.b", REDACTED]})
            ),
            "event_types[1]"
        );
    }
}
