//! The plugin pipeline: runs an endpoint's steps in order on the outgoing request, and gives the
//! plugins what they may ask of the host (signing, encryption, tokens, outbound HTTP for token
//! providers, logging).
//!
//! Tokens are cached here per (tenant, provider, config): shared across deliveries, refreshed
//! before expiry, fetched once at a time per key, and dropped when a receiver answers 401/403.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::http::HttpClient;
use crate::keys::KeyManager;
use crate::model::{EndpointSpec, StepSpec};
use crate::plugins::{
    CallContext, HostServices, HttpRequest, HttpResponse, LogLevel, PluginError, PluginKind,
    PluginRegistry,
};

/// Why the pipeline could not produce a request.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A step failed.
    #[error("step {index} (`{plugin}`): {error}")]
    Step {
        /// 1-based position in the endpoint's steps.
        index: usize,
        /// The plugin name.
        plugin: String,
        /// What went wrong.
        error: PluginError,
    },
}

/// Why an endpoint's steps are not acceptable.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct StepValidationError {
    /// The offending field (`steps[1].config.key`).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Key of a cached token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    tenant: String,
    provider: String,
    config_sha256: String,
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// Token cache with one fetch at a time per key.
pub struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Option<CachedToken>>>>>,
    default_lifetime: Duration,
    refresh_margin: Duration,
    fetches: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    /// A cache using `default_lifetime` when a token route gives none, refreshing `refresh_margin`
    /// before expiry.
    pub fn new(default_lifetime: Duration, refresh_margin: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            default_lifetime,
            refresh_margin,
            fetches: Default::default(),
        }
    }

    /// Tokens fetched so far (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<Option<CachedToken>>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Drops cached tokens (the receiver refused them).
    pub fn invalidate(&self, keys: &[TokenKey]) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            slots.remove(key);
        }
    }
}

/// Runs steps and serves the plugins' host calls.
pub struct Pipeline {
    registry: Arc<PluginRegistry>,
    keys: Arc<KeyManager>,
    http: Arc<HttpClient>,
    tokens: TokenCache,
    token_failures: crate::token_failures::TokenFailures,
}

/// What a pipeline run produced.
pub struct Prepared {
    /// The request to send.
    pub request: HttpRequest,
    /// Tokens the steps used (to drop on 401/403).
    pub tokens_used: Vec<TokenKey>,
}

impl Pipeline {
    /// A pipeline over `registry`.
    pub fn new(
        registry: Arc<PluginRegistry>,
        keys: Arc<KeyManager>,
        http: Arc<HttpClient>,
        tokens: TokenCache,
        token_failures: crate::token_failures::TokenFailures,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            keys,
            http,
            tokens,
            token_failures,
        })
    }

    /// Failure streaks of token routes.
    pub fn token_failures(&self) -> &crate::token_failures::TokenFailures {
        &self.token_failures
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// The token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Runs `steps` in order on `request`.
    pub async fn run(
        self: &Arc<Self>,
        ctx: &CallContext,
        steps: &[StepSpec],
        mut request: HttpRequest,
    ) -> Result<Prepared, PipelineError> {
        let host = Arc::new(CallHost {
            pipeline: self.clone(),
            tokens_used: Default::default(),
        });
        for (index, step) in steps.iter().enumerate() {
            let fail = |error| PipelineError::Step {
                index: index + 1,
                plugin: step.plugin.clone(),
                error,
            };
            let plugin = self
                .registry
                .resolve(&ctx.tenant, &step.plugin)
                .map_err(fail)?;
            let config = step.config.to_string();
            request = plugin
                .apply(ctx, &config, request, host.clone() as Arc<dyn HostServices>)
                .await
                .map_err(fail)?;
        }
        let tokens_used =
            std::mem::take(&mut *host.tokens_used.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Prepared {
            request,
            tokens_used,
        })
    }

    /// Checks an endpoint's steps for `tenant`: each plugin exists and is visible to the tenant,
    /// is a step (not a token provider), and accepts its config; with `require_auth_and_security`,
    /// at least one authentication step and one security measure (mTLS or a security step).
    pub async fn validate_endpoint(
        self: &Arc<Self>,
        tenant: &str,
        spec: &EndpointSpec,
        require_auth_and_security: bool,
    ) -> Result<(), StepValidationError> {
        let mut has_auth = false;
        let mut has_security = spec.tls.as_ref().is_some_and(|tls| tls.is_mutual());
        let host = Arc::new(CallHost {
            pipeline: self.clone(),
            tokens_used: Default::default(),
        });
        for (index, step) in spec.steps.iter().enumerate() {
            let field = |suffix: &str| format!("steps[{index}]{suffix}");
            let plugin =
                self.registry
                    .resolve(tenant, &step.plugin)
                    .map_err(|e| StepValidationError {
                        field: field(".plugin"),
                        reason: match e {
                            PluginError::NotFound(_) => {
                                format!("unknown plugin `{}` (see GET /v1/plugins)", step.plugin)
                            }
                            other => other.to_string(),
                        },
                    })?;
            let info = plugin.info();
            match info.kind {
                PluginKind::Authentication => has_auth = true,
                PluginKind::Security => has_security = true,
                PluginKind::Transform => {}
                PluginKind::TokenProvider => {
                    return Err(StepValidationError {
                        field: field(".plugin"),
                        reason: format!(
                            "`{}` is a token provider, not a step; use it through a `bearer` step's `provider`",
                            step.plugin
                        ),
                    });
                }
            }
            if !step.config.is_object() {
                return Err(StepValidationError {
                    field: field(".config"),
                    reason: "must be a JSON object".into(),
                });
            }
            check_against_schema(&info.config_schema, &step.config, &field(".config"))?;
            plugin
                .validate(
                    &step.config.to_string(),
                    host.clone() as Arc<dyn HostServices>,
                )
                .await
                .map_err(|e| StepValidationError {
                    field: field(".config"),
                    reason: e.to_string(),
                })?;
            // A bearer-style step names a token provider: check it too.
            if let Some(provider) = step.config.get("provider").and_then(|p| p.as_str()) {
                let token_plugin =
                    self.registry
                        .resolve(tenant, provider)
                        .map_err(|_| StepValidationError {
                            field: field(".config.provider"),
                            reason: format!("unknown token provider `{provider}`"),
                        })?;
                if token_plugin.info().kind != PluginKind::TokenProvider {
                    return Err(StepValidationError {
                        field: field(".config.provider"),
                        reason: format!("`{provider}` is not a token provider"),
                    });
                }
                let provider_config = step
                    .config
                    .get("provider_config")
                    .cloned()
                    .unwrap_or_default();
                check_against_schema(
                    &token_plugin.info().config_schema,
                    &provider_config,
                    &field(".config.provider_config"),
                )?;
                token_plugin
                    .validate(
                        &provider_config.to_string(),
                        host.clone() as Arc<dyn HostServices>,
                    )
                    .await
                    .map_err(|e| StepValidationError {
                        field: field(".config.provider_config"),
                        reason: e.to_string(),
                    })?;
            }
        }
        if require_auth_and_security {
            if !has_auth {
                return Err(StepValidationError {
                    field: "steps".into(),
                    reason: "the operator's policy requires at least one authentication step (e.g. api-key, basic-auth, bearer, jws)".into(),
                });
            }
            if !has_security {
                return Err(StepValidationError {
                    field: "steps".into(),
                    reason: "the operator's policy requires a security measure: mutual TLS (`tls.client_certificate`) or a security step (e.g. jwe)".into(),
                });
            }
        }
        Ok(())
    }

    async fn token(
        self: &Arc<Self>,
        ctx: &CallContext,
        provider: &str,
        config: &str,
    ) -> Result<(String, TokenKey), String> {
        let key = TokenKey {
            tenant: ctx.tenant.clone(),
            provider: provider.to_string(),
            config_sha256: hex::encode(Sha256::digest(config.as_bytes())),
        };
        let slot = self.tokens.slot(&key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok((token.value.clone(), key));
        }
        let plugin = self
            .registry
            .resolve(&ctx.tenant, provider)
            .map_err(|e| e.to_string())?;
        let host = Arc::new(CallHost {
            pipeline: self.clone(),
            tokens_used: Default::default(),
        });
        let token = match plugin
            .fetch_token(ctx, config, host as Arc<dyn HostServices>)
            .await
        {
            Ok(token) => {
                self.token_failures.succeeded(&ctx.endpoint, provider);
                token
            }
            Err(e) => {
                let error = format!("token provider `{provider}`: {e}");
                self.token_failures
                    .failed(&ctx.tenant, &ctx.endpoint, provider, &error);
                return Err(error);
            }
        };
        self.tokens
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lifetime = token
            .expires_in_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.tokens.default_lifetime);
        let refresh_in = lifetime.saturating_sub(self.tokens.refresh_margin.min(lifetime / 2));
        *cached = Some(CachedToken {
            value: token.value.clone(),
            refresh_at: Instant::now() + refresh_in,
        });
        Ok((token.value, key))
    }
}

/// The host as one pipeline run sees it.
struct CallHost {
    pipeline: Arc<Pipeline>,
    tokens_used: Arc<Mutex<Vec<TokenKey>>>,
}

impl HostServices for CallHost {
    fn jose_sign(
        &self,
        _ctx: &CallContext,
        alg: &str,
        header_json: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<String, String>> {
        let keys = self.pipeline.keys.clone();
        let (alg, header, payload) = (alg.to_string(), header_json.to_string(), payload.to_vec());
        Box::pin(async move {
            keys.sign(&alg, &header, &payload)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn jose_encrypt(
        &self,
        _ctx: &CallContext,
        alg: &str,
        enc: &str,
        recipient: &str,
        header_json: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<String, String>> {
        let (alg, enc, recipient, header, payload) = (
            alg.to_string(),
            enc.to_string(),
            recipient.to_string(),
            header_json.to_string(),
            payload.to_vec(),
        );
        Box::pin(async move {
            crate::jose::encrypt_compact(&alg, &enc, &recipient, &header, &payload)
                .map_err(|e| e.to_string())
        })
    }

    fn get_token(
        &self,
        ctx: &CallContext,
        provider: &str,
        config: &str,
    ) -> BoxFuture<'static, Result<String, String>> {
        let pipeline = self.pipeline.clone();
        let tokens_used = self.tokens_used.clone();
        let (ctx, provider, config) = (ctx.clone(), provider.to_string(), config.to_string());
        Box::pin(async move {
            let (value, key) = pipeline.token(&ctx, &provider, &config).await?;
            tokens_used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(key);
            Ok(value)
        })
    }

    fn send_outbound(
        &self,
        _ctx: &CallContext,
        allowed_hosts: Vec<String>,
        request: HttpRequest,
    ) -> BoxFuture<'static, Result<HttpResponse, String>> {
        let http = self.pipeline.http.clone();
        Box::pin(async move {
            check_allowed_host(&request.url, &allowed_hosts)?;
            http.send(request, None)
                .await
                .map(|r| r.response)
                .map_err(|e| e.to_string())
        })
    }

    fn log(&self, plugin: &str, ctx: Option<&CallContext>, level: LogLevel, message: &str) {
        let tenant = ctx.map(|c| c.tenant.as_str()).unwrap_or("");
        let endpoint = ctx.map(|c| c.endpoint.as_str()).unwrap_or("");
        match level {
            LogLevel::Debug => tracing::debug!(plugin, tenant, endpoint, "{message}"),
            LogLevel::Info => tracing::info!(plugin, tenant, endpoint, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, tenant, endpoint, "{message}"),
            LogLevel::Error => tracing::error!(plugin, tenant, endpoint, "{message}"),
        }
    }
}

/// `Ok` when `url`'s host (and port, when the entry has one) is in `allowed`.
pub fn check_allowed_host(url: &str, allowed: &[String]) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL `{url}`: {e}"))?;
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let ok = allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        match entry.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => {
                h == host && p.parse::<u16>().ok() == Some(port)
            }
            _ => entry == host,
        }
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "outbound request to `{host}:{port}` denied: not among the hosts this provider's configuration allows ({})",
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        ))
    }
}

/// Checks `value` against the subset of JSON Schema plugins use: `type`, `required`,
/// `properties` (recursively), `additionalProperties: false`, `enum`, `minLength`.
pub fn check_against_schema(
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
) -> Result<(), StepValidationError> {
    use serde_json::Value;
    let fail = |field: String, reason: String| Err(StepValidationError { field, reason });
    if let Some(expected) = schema.get("type") {
        let types: Vec<&str> = match expected {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let matches = types.is_empty()
            || types
                .iter()
                .any(|t| *t == actual || (*t == "number" && actual == "integer"));
        if !matches {
            return fail(
                path.to_string(),
                format!("must be of type {}, not {actual}", types.join(" or ")),
            );
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        return fail(
            path.to_string(),
            format!("must be one of {}", list.join(", ")),
        );
    }
    if let (Some(min), Some(text)) = (
        schema.get("minLength").and_then(Value::as_u64),
        value.as_str(),
    ) && (text.chars().count() as u64) < min
    {
        return fail(
            path.to_string(),
            format!("must be at least {min} characters long"),
        );
    }
    if let Value::Object(object) = value {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return fail(format!("{path}.{name}"), "is required".into());
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field_value) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => {
                    check_against_schema(field_schema, field_value, &format!("{path}.{name}"))?
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return fail(
                        format!("{path}.{name}"),
                        "is not a known field of this plugin's config".into(),
                    );
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn allowed_hosts_match_host_and_optional_port() {
        let allowed = vec!["auth.example.com".to_string(), "127.0.0.1:8443".to_string()];
        check_allowed_host("https://auth.example.com/token", &allowed).unwrap();
        check_allowed_host("https://127.0.0.1:8443/t", &allowed).unwrap();
        let err = check_allowed_host("https://127.0.0.1:9999/t", &allowed).unwrap_err();
        assert!(err.contains("denied"), "{err}");
        assert!(check_allowed_host("https://evil.example.com/", &allowed).is_err());
        assert!(check_allowed_host("https://evil.example.com/", &[]).is_err());
    }

    #[test]
    fn schema_subset_names_the_field() {
        let schema = json!({"type": "object", "required": ["key"], "additionalProperties": false,
            "properties": {"key": {"type": "string", "minLength": 1}, "alg": {"enum": ["ES256", "RS256"]}}});
        check_against_schema(&schema, &json!({"key": "k"}), "config").unwrap();
        assert_eq!(
            check_against_schema(&schema, &json!({}), "config")
                .unwrap_err()
                .field,
            "config.key"
        );
        assert_eq!(
            check_against_schema(&schema, &json!({"key": 1}), "config")
                .unwrap_err()
                .field,
            "config.key"
        );
        assert_eq!(
            check_against_schema(&schema, &json!({"key": "k", "x": 1}), "config")
                .unwrap_err()
                .field,
            "config.x"
        );
        assert!(
            check_against_schema(&schema, &json!({"key": "k", "alg": "HS256"}), "config").is_err()
        );
        assert!(check_against_schema(&schema, &json!({"key": ""}), "config").is_err());
    }
}
