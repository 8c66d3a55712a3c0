//! `http-token`: a generic token provider whose token route is described as data: URL, method,
//! headers and body, and where the token sits in the JSON answer. For token routes that are not
//! OAuth2 and need no code.
//!
//! Config:
//!
//! ```json
//! {
//!   "token_url": "https://auth.example.com/api/token",
//!   "method": "POST",
//!   "headers": {"content-type": "application/json", "x-api-key": "..."},
//!   "body": "{\"user\":\"wasmhook\"}",
//!   "token_pointer": "/data/token",
//!   "expires_in_pointer": "/data/ttl",
//!   "allowed_hosts": ["auth.example.com"]
//! }
//! ```
//!
//! - `token_url` (string, required): `http` or `https` URL, without credentials or fragment.
//! - `method` (string, default `POST`): upper-case HTTP method.
//! - `headers` (object of string → string, default `{}`): request headers; names must be valid
//!   header names and may not be `host`, `content-length`, `transfer-encoding` or `connection`.
//!   Values may hold secrets: they are never logged nor echoed in errors.
//! - `body` (string, default empty): the request body, sent as is; must be empty for `GET` and
//!   `HEAD`.
//! - `token_pointer` (JSON pointer, default `/access_token`): where the token (a string) is in
//!   the JSON answer.
//! - `expires_in_pointer` (JSON pointer, optional): where the lifetime in seconds (a number or a
//!   numeric string) is.
//! - `allowed_hosts` (array of host names, optional): read by the host, which only lets the
//!   plugin reach those hosts (default: the host of `token_url`).
//!
//! Errors: 429 and 5xx answers or an unreachable route are transient; other 4xx answers are
//! permanent with the status (and an OAuth-style `error` / `error_description` when the answer
//! has one); a non-JSON answer or no token at `token_pointer` is permanent.

use serde_json::Value;

wit_bindgen::generate!({
    path: "../../wit",
    world: "token-plugin",
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::token_provider::Guest;
use wasmhook::plugin::log::{Level, log};
use wasmhook::plugin::outbound;
use wasmhook_plugin_kit::config::{
    check_allowed_hosts, check_url, invalid, opt_string, parse_object, required_string,
};
use wasmhook_plugin_kit::headers::{check_header_value, is_token};
use wasmhook_plugin_kit::token::{self, At};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request, Token};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "http-token",
  "type": "object",
  "properties": {
    "token_url": {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^#]+$", "description": "Token route (http or https)."},
    "method": {"type": "string", "pattern": "^[A-Z]+$", "default": "POST", "description": "HTTP method."},
    "headers": {
      "type": "object",
      "additionalProperties": {"type": "string", "writeOnly": true},
      "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
      "default": {},
      "description": "Request headers (values may be secrets: sealed at rest, redacted in answers)."
    },
    "body": {"type": "string", "default": "", "writeOnly": true, "description": "Request body, sent as is (may hold credentials: sealed at rest, redacted in answers)."},
    "token_pointer": {"type": "string", "format": "json-pointer", "default": "/access_token", "description": "JSON pointer to the token in the answer."},
    "expires_in_pointer": {"type": "string", "format": "json-pointer", "description": "JSON pointer to the lifetime in seconds in the answer."},
    "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}, "description": "Hosts the plugin may reach (default: the host of token_url)."}
  },
  "required": ["token_url"],
  "additionalProperties": false
}"#;

const FIELDS: &[&str] = &[
    "token_url",
    "method",
    "headers",
    "body",
    "token_pointer",
    "expires_in_pointer",
    "allowed_hosts",
];
/// Headers the host sets itself.
const FORBIDDEN_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

struct Config {
    token_url: String,
    method: String,
    headers: Vec<(String, String)>,
    body: String,
    token_pointer: String,
    expires_in_pointer: Option<String>,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, FIELDS)?;
    let token_url = required_string(&map, "token_url")?;
    check_url("token_url", &token_url)?;
    let method = opt_string(&map, "method")?.unwrap_or_else(|| "POST".to_string());
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            "method",
            "must be an upper-case HTTP method such as POST",
        ));
    }
    let mut headers = Vec::new();
    match map.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (name, value) in entries {
                let field = format!("headers.{name}");
                if !is_token(name) {
                    return Err(invalid("headers", "names must be valid HTTP header names"));
                }
                if FORBIDDEN_HEADERS
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(name))
                {
                    return Err(invalid(
                        &field,
                        "is set by the host and cannot be configured",
                    ));
                }
                let Value::String(value) = value else {
                    return Err(invalid(&field, "must be a string"));
                };
                check_header_value(&field, value)?;
                headers.push((name.clone(), value.clone()));
            }
        }
        Some(_) => return Err(invalid("headers", "must be an object of string values")),
    }
    let body = opt_string(&map, "body")?.unwrap_or_default();
    if !body.is_empty() && (method == "GET" || method == "HEAD") {
        return Err(invalid("body", "must be empty with method GET or HEAD"));
    }
    let token_pointer =
        opt_string(&map, "token_pointer")?.unwrap_or_else(|| "/access_token".to_string());
    check_pointer("token_pointer", &token_pointer)?;
    let expires_in_pointer = opt_string(&map, "expires_in_pointer")?;
    if let Some(pointer) = &expires_in_pointer {
        check_pointer("expires_in_pointer", pointer)?;
    }
    check_allowed_hosts(&map)?;
    Ok(Config {
        token_url,
        method,
        headers,
        body,
        token_pointer,
        expires_in_pointer,
    })
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` is `~0` or `~1`.
fn check_pointer(field: &str, pointer: &str) -> Result<(), Error> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(invalid(field, "must be a JSON pointer starting with '/'"));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(invalid(field, "has a '~' not followed by 0 or 1"));
        }
    }
    Ok(())
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "http-token".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::TokenProvider,
            summary: "Fetches a token from an HTTP route described by URL, method, headers, body and JSON pointers.".to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn fetch_token(_ctx: Context, config: String) -> Result<Token, Error> {
        let config = parse(&config)?;
        let request = Request {
            method: config.method.clone(),
            url: config.token_url.clone(),
            headers: config.headers.clone(),
            body: config.body.clone().into_bytes(),
        };
        let response = outbound::send(&request).map_err(token::route_unreachable)?;
        // Header values and the body may hold secrets: blank them (4 characters or more) out of
        // quoted error text.
        let secrets: Vec<&str> = config
            .headers
            .iter()
            .map(|(_, v)| v.as_str())
            .chain([config.body.as_str()])
            .filter(|s| s.len() >= 4)
            .collect();
        token::check_status(&response, &secrets)?;
        let answer = token::parse_answer(&response.body)?;
        let value = token::token_at(&answer, At::Pointer(&config.token_pointer))?;
        let expires_in_seconds = match &config.expires_in_pointer {
            None => None,
            Some(pointer) => {
                let seconds = At::Pointer(pointer).find(&answer).and_then(token::seconds);
                if seconds.is_none() {
                    log(
                        Level::Warn,
                        &format!(
                            "token route answer has no number of seconds at '{pointer}'; using the default lifetime"
                        ),
                    );
                }
                seconds
            }
        };
        Ok(Token {
            value,
            expires_in_seconds,
        })
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(Plugin::validate(r#"{"token_url":"https://a.example/t"}"#.into()).is_ok());
        assert!(Plugin::validate(r#"{"token_url":"https://a.example/t","method":"GET","headers":{"x-key":"s3cret"},"token_pointer":"/data/a~1b","expires_in_pointer":"/ttl"}"#.into()).is_ok());
        for (config, prefix) in [
            (r#"{}"#, "token_url:"),
            (
                r#"{"token_url":"https://a.example/t","method":"post"}"#,
                "method:",
            ),
            (
                r#"{"token_url":"https://a.example/t","headers":{"Host":"x"}}"#,
                "headers.Host:",
            ),
            (
                r#"{"token_url":"https://a.example/t","headers":{"x-key":"s3cret\n"}}"#,
                "headers.x-key:",
            ),
            (
                r#"{"token_url":"https://a.example/t","headers":{"bad name":"v"}}"#,
                "headers:",
            ),
            (
                r#"{"token_url":"https://a.example/t","headers":[]}"#,
                "headers:",
            ),
            (
                r#"{"token_url":"https://a.example/t","method":"GET","body":"x"}"#,
                "body:",
            ),
            (
                r#"{"token_url":"https://a.example/t","token_pointer":"access_token"}"#,
                "token_pointer:",
            ),
            (
                r#"{"token_url":"https://a.example/t","expires_in_pointer":"/a~2"}"#,
                "expires_in_pointer:",
            ),
        ] {
            match Plugin::validate(config.into()) {
                Err(Error::InvalidConfig(m)) => {
                    assert!(m.starts_with(prefix), "{config}: {m}");
                    assert!(!m.contains("s3cret"), "{m}");
                }
                other => panic!("{config}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_schema_marks_header_values_and_the_body_secret() {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let properties = &schema["properties"];
        assert_eq!(
            properties["headers"]["additionalProperties"]["writeOnly"],
            true
        );
        assert_eq!(properties["body"]["writeOnly"], true);
        assert!(properties["token_url"].get("writeOnly").is_none());
    }
}
