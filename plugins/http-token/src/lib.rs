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

use serde_json::{Map, Value};

wit_bindgen::generate!({
    path: "../../wit",
    world: "token-plugin",
});

use exports::wasmhook::plugin::token_provider::Guest;
use wasmhook::plugin::log::{Level, log};
use wasmhook::plugin::outbound;
use wasmhook::plugin::types::{Context, Error, PluginInfo, Kind, Request, Response, Token};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "http-token",
  "type": "object",
  "properties": {
    "token_url": {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^#]+$", "description": "Token route (http or https)."},
    "method": {"type": "string", "pattern": "^[A-Z]+$", "default": "POST", "description": "HTTP method."},
    "headers": {
      "type": "object",
      "additionalProperties": {"type": "string"},
      "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
      "default": {},
      "description": "Request headers (values may be secrets)."
    },
    "body": {"type": "string", "default": "", "description": "Request body, sent as is."},
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
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(invalid(&field, "must not contain control characters"));
                }
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

/// An RFC 9110 token (header names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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
        let response = outbound::send(&request)
            .map_err(|e| Error::Transient(format!("token route unreachable: {e}")))?;
        // Header values and the body may hold secrets: blank them out of quoted error text.
        let mut secrets: Vec<&str> = config.headers.iter().map(|(_, v)| v.as_str()).collect();
        secrets.push(&config.body);
        check_status(&response, &secrets)?;
        let answer: Value = serde_json::from_slice(&response.body)
            .map_err(|_| Error::Permanent("token route answer is not JSON".to_string()))?;
        let value = match answer.pointer(&config.token_pointer) {
            Some(Value::String(token)) if !token.is_empty() => token.clone(),
            _ => {
                return Err(Error::Permanent(format!(
                    "token route answer has no non-empty string at '{}'",
                    config.token_pointer
                )));
            }
        };
        if value.chars().any(char::is_control) {
            return Err(Error::Permanent(format!(
                "token at '{}' contains control characters",
                config.token_pointer
            )));
        }
        let expires_in_seconds = match &config.expires_in_pointer {
            None => None,
            Some(pointer) => {
                let seconds = answer.pointer(pointer).and_then(seconds);
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

/// Checks an absolute `http`/`https` URL with a host, without credentials, spaces or fragment.
fn check_url(field: &str, url: &str) -> Result<(), Error> {
    let rest = strip_prefix_ignore_case(url, "https://")
        .or_else(|| strip_prefix_ignore_case(url, "http://"))
        .ok_or_else(|| invalid(field, "must be an absolute http:// or https:// URL"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            "must not contain spaces or control characters",
        ));
    }
    if url.contains('#') {
        return Err(invalid(field, "must not contain a fragment"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid(field, "must not contain credentials"));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid(field, "has an unclosed IPv6 address"))?;
        if !after.is_empty() && after.strip_prefix(':').is_none_or(|p| !is_port(p)) {
            return Err(invalid(field, "has an invalid port"));
        }
        host
    } else {
        match authority.split_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return Err(invalid(field, "has an invalid port")),
            None => authority,
        }
    };
    if host.is_empty() {
        return Err(invalid(field, "has no host"));
    }
    Ok(())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// `allowed_hosts` is read by the host; here it is only checked to be a list of host names.
fn check_allowed_hosts(map: &Map<String, Value>) -> Result<(), Error> {
    match map.get("allowed_hosts") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(hosts)) => {
            if hosts.is_empty() {
                return Err(invalid("allowed_hosts", "must not be empty when given"));
            }
            for (i, host) in hosts.iter().enumerate() {
                let field = format!("allowed_hosts[{i}]");
                let Value::String(host) = host else {
                    return Err(invalid(&field, "must be a string"));
                };
                if host.is_empty()
                    || host
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c))
                {
                    return Err(invalid(
                        &field,
                        "must be a host name (no scheme, path or spaces)",
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err(invalid("allowed_hosts", "must be an array of host names")),
    }
}

/// Maps a non-2xx answer to an error: 429 and 5xx are transient, the rest permanent. The OAuth
/// `error` / `error_description` fields are quoted, cut short, with any secret blanked out.
fn check_status(response: &Response, secrets: &[&str]) -> Result<(), Error> {
    let status = response.status;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let mut message = format!("token route answered {status}");
    if (300..400).contains(&status) {
        message.push_str(" (redirects are not followed)");
    }
    if let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(&response.body) {
        for field in ["error", "error_description"] {
            if let Some(Value::String(text)) = answer.get(field) {
                message.push_str(&format!("; {field}: {}", sanitize(text, secrets)));
            }
        }
    }
    if status == 429 || (500..600).contains(&status) {
        Err(Error::Transient(message))
    } else {
        Err(Error::Permanent(message))
    }
}

/// Text from the remote side: secrets (of 4 characters or more) blanked out, control characters dropped, cut at 200 chars.
fn sanitize(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// A lifetime in seconds: a non-negative number or a numeric string.
fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e18)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e18)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

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
}
