//! `bearer`: an authentication step that sends a token from a token provider plugin.
//!
//! Config:
//!
//! ```json
//! {
//!   "provider": "oauth2-client-credentials",
//!   "provider_config": {"token_url": "https://auth.example.com/token", "client_id": "...", "client_secret": "..."},
//!   "header": "authorization",
//!   "scheme": "Bearer"
//! }
//! ```
//!
//! - `provider` (string, default `oauth2-client-credentials`): the token provider plugin, a name
//!   as endpoints use it (`http-token`, or `tenant:<name>` for a tenant's own provider).
//! - `provider_config` (object, required): the provider's config, handed to it as JSON. The host
//!   validates it with the provider's own `validate`.
//! - `header` (string, default `authorization`): the header name.
//! - `scheme` (string, default `Bearer`): the auth scheme before the token; empty sends the token
//!   alone.
//!
//! Calls the host's `tokens.get-token` (the host caches tokens and refreshes them) and adds
//! `<header>: <scheme> <token>`, replacing any header of the same name (case-insensitive). A
//! failure to get a token is transient: the attempt is retried later.

use serde_json::Value;

wit_bindgen::generate!({
    path: "../../wit",
    world: "step-plugin",
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::tokens;
use wasmhook_plugin_kit::config::{invalid, opt_string, parse_object};
use wasmhook_plugin_kit::headers::{check_header_name, is_token, set_header};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "bearer",
  "type": "object",
  "properties": {
    "provider": {"type": "string", "pattern": "^(tenant:)?[A-Za-z0-9][A-Za-z0-9._-]*$", "default": "oauth2-client-credentials", "description": "Token provider plugin: a built-in name or tenant:<name>."},
    "provider_config": {"type": "object", "description": "Config of the token provider (its own schema)."},
    "header": {"type": "string", "minLength": 1, "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "default": "authorization", "description": "Header that carries the token."},
    "scheme": {"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]*$", "default": "Bearer", "description": "Scheme before the token; empty for the token alone."}
  },
  "required": ["provider_config"],
  "additionalProperties": false
}"#;

struct Config {
    provider: String,
    provider_config: String,
    header: String,
    scheme: String,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, &["provider", "provider_config", "header", "scheme"])?;
    let provider =
        opt_string(&map, "provider")?.unwrap_or_else(|| "oauth2-client-credentials".to_string());
    if !is_plugin_name(&provider) {
        return Err(invalid(
            "provider",
            "must be a plugin name (letters, digits, '.', '_', '-'), optionally prefixed by 'tenant:'",
        ));
    }
    let provider_config = match map.get("provider_config") {
        None | Some(Value::Null) => return Err(invalid("provider_config", "is required")),
        Some(value @ Value::Object(_)) => value.to_string(),
        Some(_) => return Err(invalid("provider_config", "must be a JSON object")),
    };
    let header = opt_string(&map, "header")?.unwrap_or_else(|| "authorization".to_string());
    check_header_name("header", &header)?;
    let scheme = opt_string(&map, "scheme")?.unwrap_or_else(|| "Bearer".to_string());
    if !scheme.is_empty() && !is_token(&scheme) {
        return Err(invalid(
            "scheme",
            "must be an HTTP auth scheme (a token, no spaces)",
        ));
    }
    Ok(Config {
        provider,
        provider_config,
        header,
        scheme,
    })
}

fn is_plugin_name(name: &str) -> bool {
    let name = name.strip_prefix("tenant:").unwrap_or(name);
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "bearer".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Authentication,
            summary: "Adds a Bearer token fetched by a token provider plugin.".to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn apply(_ctx: Context, config: String, mut req: Request) -> Result<Request, Error> {
        let config = parse(&config)?;
        let token = tokens::get_token(&config.provider, &config.provider_config).map_err(|e| {
            Error::Transient(format!(
                "token provider '{}' gave no token: {e}",
                config.provider
            ))
        })?;
        if token.is_empty() {
            return Err(Error::Permanent(format!(
                "token provider '{}' returned an empty token",
                config.provider
            )));
        }
        if token.chars().any(char::is_control) {
            return Err(Error::Permanent(format!(
                "token provider '{}' returned a token with characters not allowed in a header",
                config.provider
            )));
        }
        let value = if config.scheme.is_empty() {
            token
        } else {
            format!("{} {token}", config.scheme)
        };
        set_header(&mut req.headers, &config.header, value);
        Ok(req)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        let ok = parse(r#"{"provider_config":{"b":1,"a":"x"}}"#).unwrap();
        assert_eq!(ok.provider, "oauth2-client-credentials");
        assert_eq!(ok.provider_config, r#"{"a":"x","b":1}"#);
        assert!(
            Plugin::validate(
                r#"{"provider":"tenant:acme-token","provider_config":{},"scheme":"Token"}"#.into()
            )
            .is_ok()
        );
        for (config, prefix) in [
            (r#"{}"#, "provider_config:"),
            (r#"{"provider_config":"{}"}"#, "provider_config:"),
            (r#"{"provider":"../x","provider_config":{}}"#, "provider:"),
            (
                r#"{"provider":"tenant:","provider_config":{}}"#,
                "provider:",
            ),
            (r#"{"provider_config":{},"scheme":"Bear er"}"#, "scheme:"),
            (r#"{"provider_config":{},"header":"a:b"}"#, "header:"),
        ] {
            match Plugin::validate(config.into()) {
                Err(Error::InvalidConfig(m)) => assert!(m.starts_with(prefix), "{config}: {m}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }
}
