//! `basic-auth`: an authentication step that adds HTTP Basic credentials (RFC 7617).
//!
//! Config:
//!
//! ```json
//! {"client_id": "acme", "client_secret": "s3cret", "header": "authorization"}
//! ```
//!
//! - `client_id` (string, required, non-empty): the user id; must not contain `:`.
//! - `client_secret` (string, required, non-empty): the password; a secret, never logged nor
//!   echoed in errors.
//! - `header` (string, default `authorization`): the header name; must be a valid HTTP header name.
//!
//! Adds `<header>: Basic base64(client_id:client_secret)` (standard base64 with padding),
//! replacing any header of the same name (case-insensitive). The rest of the request is kept.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

wit_bindgen::generate!({
    path: "../../wit",
    world: "step-plugin",
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::types::{Context, Error, PluginInfo, Kind, Request};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "basic-auth",
  "type": "object",
  "properties": {
    "client_id": {"type": "string", "minLength": 1, "pattern": "^[^:]*$", "description": "User id (must not contain ':')."},
    "client_secret": {"type": "string", "minLength": 1, "description": "Password (secret)."},
    "header": {"type": "string", "minLength": 1, "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "default": "authorization", "description": "Header that carries the credentials."}
  },
  "required": ["client_id", "client_secret"],
  "additionalProperties": false
}"#;

struct Config {
    client_id: String,
    client_secret: String,
    header: String,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, &["client_id", "client_secret", "header"])?;
    let client_id = required_string(&map, "client_id")?;
    if client_id.contains(':') {
        return Err(invalid("client_id", "must not contain ':'"));
    }
    let client_secret = required_string(&map, "client_secret")?;
    let header = opt_string(&map, "header")?.unwrap_or_else(|| "authorization".to_string());
    check_header_name("header", &header)?;
    Ok(Config {
        client_id,
        client_secret,
        header,
    })
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "basic-auth".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Authentication,
            summary: "Adds HTTP Basic credentials (authorization: Basic ...).".to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn apply(_ctx: Context, config: String, mut req: Request) -> Result<Request, Error> {
        let config = parse(&config)?;
        let credentials = STANDARD.encode(format!("{}:{}", config.client_id, config.client_secret));
        set_header(
            &mut req.headers,
            &config.header,
            format!("Basic {credentials}"),
        );
        Ok(req)
    }
}

export!(Plugin);

// ---- helpers (each plugin carries its own: a plugin is a single self-contained component) ----

fn invalid(field: &str, why: &str) -> Error {
    Error::InvalidConfig(format!("{field}: {why}"))
}

/// Parses the config as a JSON object and rejects fields not in `known`.
fn parse_object(config: &str, known: &[&str]) -> Result<Map<String, Value>, Error> {
    // serde_json's syntax errors name a position, never the input, so no secret leaks through.
    let value: Value = serde_json::from_str(config).map_err(|e| {
        invalid(
            "config",
            &format!(
                "is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(invalid("config", "must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid(unknown, "unknown field"));
    }
    Ok(map)
}

/// A string field; absent or `null` is `None`.
fn opt_string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// A required, non-empty string without control characters.
fn required_string(map: &Map<String, Value>, field: &str) -> Result<String, Error> {
    let value = opt_string(map, field)?.ok_or_else(|| invalid(field, "is required"))?;
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value)
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_header_name(field: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(invalid(field, "must be a valid HTTP header name"));
    }
    Ok(())
}

/// Replaces the header `name` (case-insensitively) with `value`, keeping the others in order.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_basic_credentials() {
        let ctx = Context {
            tenant: "t".into(),
            endpoint: "e".into(),
            event_id: "evt".into(),
            event_type: "test".into(),
            attempt: 1,
            timestamp: 0,
        };
        let req = Request {
            method: "POST".into(),
            url: "https://example.com/".into(),
            headers: vec![("Authorization".into(), "old".into())],
            body: Vec::new(),
        };
        let config = r#"{"client_id":"Aladdin","client_secret":"open sesame"}"#;
        let out = Plugin::apply(ctx, config.into(), req).unwrap();
        assert_eq!(
            out.headers,
            vec![(
                "authorization".to_string(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_string()
            )]
        );
        match Plugin::validate(r#"{"client_id":"a:b","client_secret":"s"}"#.into()) {
            Err(Error::InvalidConfig(m)) => assert!(m.starts_with("client_id:"), "{m}"),
            other => panic!("{other:?}"),
        }
        match Plugin::validate(r#"{"client_id":"a"}"#.into()) {
            Err(Error::InvalidConfig(m)) => assert!(m.starts_with("client_secret:"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
