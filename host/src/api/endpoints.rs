//! `/v1/tenants/{tenant}/endpoints`: where and how a tenant receives webhooks.
//!
//! Every create and update is validated before anything is stored: the URL, the event type
//! patterns, each step (the plugin exists and is visible to the tenant, its config passes the
//! plugin's schema and `validate`), the TLS settings, and the operator's policy. A URL (the
//! endpoint's, a step's token URL) whose host is an IP literal the outbound address policy refuses
//! is refused here, at once; host names are checked when they are resolved. Step configs hold
//! secrets, so answers show them redacted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::http::AddressPolicy;
use crate::model::{Endpoint, EndpointSpec, StepSpec, TlsSettings, new_id, now_unix};

/// Body of `PATCH .../endpoints/{endpoint}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    pub url: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New steps (replace all steps; send full configs).
    pub steps: Option<Vec<StepSpec>>,
    /// New TLS settings (`null` keeps them; send `{}` to remove).
    pub tls: Option<TlsSettings>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New per-endpoint concurrency.
    pub max_concurrency: Option<u32>,
    /// New description.
    pub description: Option<String>,
}

/// An endpoint as the API shows it (secrets in step configs redacted).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    #[serde(flatten)]
    endpoint: Endpoint,
}

const REDACTED: &str = "**redacted**";

/// Replaces values of secret-looking keys (`key`, `secret`, `password`, `token`, …) with a marker.
pub fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                let lower = name.to_ascii_lowercase();
                let secret = ["secret", "password", "token", "credential", "private"]
                    .iter()
                    .any(|w| lower.contains(w))
                    || lower == "key"
                    || lower.ends_with("_key")
                    || lower.ends_with("apikey");
                if secret && (field.is_string() || field.is_number()) {
                    *field = serde_json::Value::String(REDACTED.into());
                } else {
                    redact(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn view(endpoint: &Endpoint) -> EndpointView {
    let mut endpoint = endpoint.clone();
    for step in &mut endpoint.spec.steps {
        redact(&mut step.config);
    }
    EndpointView { endpoint }
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
    responses((status = 201, body = Endpoint), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(spec): ApiJson<EndpointSpec>,
) -> Result<(StatusCode, ApiJson<EndpointView>), ApiError> {
    caller.tenant(&state, &tenant)?;
    validate(&state, &tenant, &spec).await?;
    let now = now_unix();
    let endpoint = Endpoint {
        id: new_id("ep"),
        tenant_id: tenant,
        spec,
        created_at: now,
        updated_at: now,
    };
    let stored = state.engine.put_endpoint(endpoint).await?;
    Ok((StatusCode::CREATED, ApiJson(view(&stored))))
}

/// Lists the tenant's endpoints.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/endpoints", tag = "endpoints", params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<Endpoint>), (status = 404, body = ErrorBody)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<EndpointView>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    let endpoints = state.engine.store.directory().endpoints_of(&tenant);
    Ok(ApiJson(endpoints.iter().map(|e| view(e)).collect()))
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
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(view(find(&state, &tenant, &id)?.as_ref())))
}

/// Changes an endpoint; the result is validated like a new one.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/endpoints/{endpoint}", tag = "endpoints",
    params(("tenant" = String, Path), ("endpoint" = String, Path)), request_body = UpdateEndpoint,
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
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
    validate(&state, &tenant, &spec).await?;
    let endpoint = Endpoint {
        spec,
        updated_at: now_unix().max(current.updated_at + 1),
        ..(*current).clone()
    };
    let stored = state.engine.put_endpoint(endpoint).await?;
    Ok(ApiJson(view(&stored)))
}

/// Deletes an endpoint; its pending deliveries become dead.
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
        };
        check_destinations(
            &allowing,
            &spec("http://127.0.0.1:9/", serde_json::json!([])),
        )
        .unwrap();
    }

    #[test]
    fn secrets_are_redacted() {
        let mut config = serde_json::json!({"key": "k", "header": "x-api-key", "client_secret": "s",
            "provider_config": {"client_id": "id", "client_secret": "s2"}, "api_key": "a", "recipient": "PEM"});
        redact(&mut config);
        assert_eq!(config["key"], REDACTED);
        assert_eq!(config["client_secret"], REDACTED);
        assert_eq!(config["provider_config"]["client_secret"], REDACTED);
        assert_eq!(config["provider_config"]["client_id"], "id");
        assert_eq!(config["api_key"], REDACTED);
        assert_eq!(config["header"], "x-api-key");
        assert_eq!(config["recipient"], "PEM");
    }
}
