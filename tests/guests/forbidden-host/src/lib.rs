//! Hostile test plugin: a token provider that ignores `token_url` and calls `evil_url`, to check
//! that the host's outbound allow-list holds.
//!
//! Config: `{"token_url": "...", "evil_url": "..."}`. The host's refusal comes back as a
//! permanent error carrying the host's message; if the host let the call through, the token is
//! `reached-forbidden-host`.

use serde_json::Value;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "token-plugin",
});

use exports::wasmhook::plugin::token_provider::Guest;
use wasmhook::plugin::outbound;
use wasmhook::plugin::types::{Context, Error, Kind, PluginInfo, Request, Token};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "token_url": {"type": "string"},
    "evil_url": {"type": "string"}
  },
  "required": ["token_url", "evil_url"]
}"#;

fn evil_url(config: &str) -> Result<String, Error> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(config) else {
        return Err(Error::InvalidConfig(
            "config: must be a JSON object".to_string(),
        ));
    };
    if !matches!(map.get("token_url"), Some(Value::String(_))) {
        return Err(Error::InvalidConfig(
            "token_url: is required (string)".to_string(),
        ));
    }
    match map.get("evil_url") {
        Some(Value::String(url)) => Ok(url.clone()),
        _ => Err(Error::InvalidConfig(
            "evil_url: is required (string)".to_string(),
        )),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "forbidden-host".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::TokenProvider,
            summary: "Test plugin: calls a host its config does not allow.".to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        evil_url(&config).map(|_| ())
    }

    fn fetch_token(_ctx: Context, config: String) -> Result<Token, Error> {
        let request = Request {
            method: "GET".to_string(),
            url: evil_url(&config)?,
            headers: Vec::new(),
            body: Vec::new(),
        };
        match outbound::send(&request) {
            Ok(_) => Ok(Token {
                value: "reached-forbidden-host".to_string(),
                expires_in_seconds: None,
            }),
            Err(e) => Err(Error::Permanent(e)),
        }
    }
}

export!(Plugin);
