//! Generated bindings for the two worlds of `wit/plugin.wit`, and conversions between their
//! types and the plain host-side types of [`super::types`].

/// Bindings of the `step-plugin` world (authentication, security, transform steps).
pub(crate) mod step {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "step-plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

/// Bindings of the `token-plugin` world. Shares the `types` and `log` interfaces with
/// [`step`] so that one set of conversions and one `log` implementation serve both.
pub(crate) mod token {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "token-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasmhook:plugin/types": super::step::wasmhook::plugin::types,
            "wasmhook:plugin/log": super::step::wasmhook::plugin::log,
        },
    });
}

use step::wasmhook::plugin::{log, types as wit};

use super::error::PluginError;
use super::types::{
    CallContext, HttpRequest, HttpResponse, LogLevel, PluginInfo, PluginKind, Token,
};

impl From<HttpRequest> for wit::Request {
    fn from(r: HttpRequest) -> Self {
        wit::Request {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<wit::Request> for HttpRequest {
    fn from(r: wit::Request) -> Self {
        HttpRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<HttpResponse> for wit::Response {
    fn from(r: HttpResponse) -> Self {
        wit::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<&CallContext> for wit::Context {
    fn from(c: &CallContext) -> Self {
        wit::Context {
            tenant: c.tenant.clone(),
            endpoint: c.endpoint.clone(),
            event_id: c.event_id.clone(),
            event_type: c.event_type.clone(),
            attempt: c.attempt,
            timestamp: c.timestamp,
        }
    }
}

impl From<wit::Kind> for PluginKind {
    fn from(k: wit::Kind) -> Self {
        match k {
            wit::Kind::Authentication => PluginKind::Authentication,
            wit::Kind::Security => PluginKind::Security,
            wit::Kind::Transform => PluginKind::Transform,
            wit::Kind::TokenProvider => PluginKind::TokenProvider,
        }
    }
}

impl From<log::Level> for LogLevel {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        }
    }
}

impl From<wit::Token> for Token {
    fn from(t: wit::Token) -> Self {
        Token {
            value: t.value,
            expires_in_seconds: t.expires_in_seconds,
        }
    }
}

impl From<wit::Error> for PluginError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::InvalidConfig(m) => PluginError::InvalidConfig(m),
            wit::Error::Transient(m) => PluginError::Transient(m),
            wit::Error::Permanent(m) => PluginError::Permanent(m),
        }
    }
}

/// Converts the plugin's `info` record. The config schema must be valid JSON; an empty string
/// stands for "no schema" (`null`).
pub(crate) fn convert_info(info: wit::PluginInfo) -> Result<PluginInfo, String> {
    let config_schema = if info.config_schema.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&info.config_schema)
            .map_err(|e| format!("its config-schema is not valid JSON: {e}"))?
    };
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        kind: info.kind.into(),
        summary: info.summary,
        config_schema,
    })
}
