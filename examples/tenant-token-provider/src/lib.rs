//! `tenant-token-provider`: an example of a tenant's own token provider, for a token route that
//! is not OAuth2. Build it, upload it as `acme-token`, and name it `tenant:acme-token` in a
//! `bearer` step (see README.md).
//!
//! The route wants `POST <token_url>` with `content-type: application/json`, the header
//! `x-tenant-key: <api_key>` and the body `{"clientId": "...", "clientSecret": "..."}`, and
//! answers `{"result": {"auth": {"token": "...", "ttlSeconds": 300}}}`.
//!
//! Config (all strings, required, non-empty):
//!
//! ```json
//! {
//!   "token_url": "https://auth.acme.example/v2/session",
//!   "client_id": "wasmhook",
//!   "client_secret": "s3cret",
//!   "api_key": "k-123"
//! }
//! ```
//!
//! `client_secret` and `api_key` are secrets: never logged nor put in an error. The host only
//! lets the plugin reach the host of `token_url`. A 429 or 5xx answer, or an unreachable route,
//! is transient (retried later); any other failure is permanent.

use serde_json::json;

wit_bindgen::generate!({
    path: "../../wit",
    world: "token-plugin",
    // The contract's types come from the kit shared by wasmhook's own plugins.
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::token_provider::Guest;
use wasmhook::plugin::outbound;
use wasmhook_plugin_kit::config::{invalid, parse_object, required_string};
use wasmhook_plugin_kit::token::{self, At};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request, Token};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "tenant-token-provider",
  "type": "object",
  "properties": {
    "token_url": {"type": "string", "format": "uri", "pattern": "^https?://", "description": "The tenant's token route."},
    "client_id": {"type": "string", "minLength": 1, "description": "Client id."},
    "client_secret": {"type": "string", "minLength": 1, "description": "Client secret (secret)."},
    "api_key": {"type": "string", "minLength": 1, "description": "Tenant API key, sent as x-tenant-key (secret)."}
  },
  "required": ["token_url", "client_id", "client_secret", "api_key"],
  "additionalProperties": false
}"#;

struct Config {
    token_url: String,
    client_id: String,
    client_secret: String,
    api_key: String,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(
        config,
        &["token_url", "client_id", "client_secret", "api_key"],
    )?;
    let token_url = required_string(&map, "token_url")?;
    if !(token_url.starts_with("https://") || token_url.starts_with("http://"))
        || token_url.contains(char::is_whitespace)
    {
        return Err(invalid("token_url", "must be an http:// or https:// URL"));
    }
    Ok(Config {
        token_url,
        client_id: required_string(&map, "client_id")?,
        client_secret: required_string(&map, "client_secret")?,
        api_key: required_string(&map, "api_key")?,
    })
}

struct Provider;

impl Guest for Provider {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "tenant-token-provider".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::TokenProvider,
            summary: "Example: fetches a token from ACME's JSON token route.".to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn fetch_token(_ctx: Context, config: String) -> Result<Token, Error> {
        let config = parse(&config)?;
        let body = json!({"clientId": config.client_id, "clientSecret": config.client_secret});
        let request = Request {
            method: "POST".to_string(),
            url: config.token_url,
            headers: vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("accept".to_string(), "application/json".to_string()),
                ("x-tenant-key".to_string(), config.api_key),
            ],
            body: body.to_string().into_bytes(),
        };
        let response = outbound::send(&request).map_err(token::route_unreachable)?;
        // 429 and 5xx are transient, other statuses permanent. Only the status goes into errors:
        // the answer could echo what we sent.
        token::check_bare_status(response.status)?;
        let answer = token::parse_answer(&response.body)?;
        Ok(Token {
            value: token::token_at(&answer, At::Pointer("/result/auth/token"))?,
            expires_in_seconds: At::Pointer("/result/auth/ttlSeconds")
                .find(&answer)
                .and_then(token::seconds),
        })
    }
}

export!(Provider);
