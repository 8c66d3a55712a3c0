//! `oauth2-client-credentials`: a token provider for the OAuth 2.0 client credentials grant
//! (RFC 6749 §4.4), used by `bearer` steps.
//!
//! Config:
//!
//! ```json
//! {
//!   "token_url": "https://auth.example.com/oauth2/token",
//!   "client_id": "wasmhook",
//!   "client_secret": "s3cret",
//!   "auth_method": "client_secret_basic",
//!   "scope": "webhooks:write",
//!   "audience": "https://api.example.com",
//!   "extra_params": {"resource": "https://api.example.com"},
//!   "token_field": "access_token",
//!   "allowed_hosts": ["auth.example.com"]
//! }
//! ```
//!
//! - `token_url` (string, required): `http` or `https` URL of the token endpoint, without
//!   credentials or fragment.
//! - `client_id`, `client_secret` (strings, required, non-empty): the client's credentials; the
//!   secret is never logged nor echoed in errors.
//! - `auth_method` (`client_secret_basic` (default) or `client_secret_post`): how the client
//!   authenticates. Basic sends `authorization: Basic base64(urlencode(id):urlencode(secret))`
//!   (RFC 6749 §2.3.1); post sends `client_id` and `client_secret` in the form body.
//! - `scope`, `audience` (strings, optional): sent as form parameters when set.
//! - `extra_params` (object of string → string, optional): more form parameters; may not repeat
//!   `grant_type`, `client_id`, `client_secret`, `scope` or `audience`.
//! - `token_field` (string, default `access_token`): the field of the JSON answer that holds the
//!   token.
//! - `allowed_hosts` (array of host names, optional): read by the host, which only lets the
//!   plugin reach those hosts (default: the host of `token_url`).
//!
//! The token's lifetime comes from `expires_in` (a number or a numeric string) when present.
//! Errors: 429 and 5xx answers or an unreachable route are transient; other 4xx answers are
//! permanent and carry the status and the OAuth `error` / `error_description`; a non-JSON answer
//! or a missing token field is permanent.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
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
  "title": "oauth2-client-credentials",
  "type": "object",
  "properties": {
    "token_url": {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^#]+$", "description": "Token endpoint (http or https)."},
    "client_id": {"type": "string", "minLength": 1, "description": "OAuth2 client id."},
    "client_secret": {"type": "string", "minLength": 1, "description": "OAuth2 client secret (secret)."},
    "auth_method": {"enum": ["client_secret_basic", "client_secret_post"], "default": "client_secret_basic", "description": "How the client authenticates to the token endpoint."},
    "scope": {"type": "string", "description": "Requested scope (space-separated)."},
    "audience": {"type": "string", "description": "Requested audience."},
    "extra_params": {
      "type": "object",
      "additionalProperties": {"type": "string"},
      "propertyNames": {"minLength": 1, "not": {"enum": ["grant_type", "client_id", "client_secret", "scope", "audience"]}},
      "description": "More form parameters of the token request."
    },
    "token_field": {"type": "string", "minLength": 1, "default": "access_token", "description": "Field of the JSON answer that holds the token."},
    "allowed_hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}, "description": "Hosts the plugin may reach (default: the host of token_url)."}
  },
  "required": ["token_url", "client_id", "client_secret"],
  "additionalProperties": false
}"#;

const FIELDS: &[&str] = &[
    "token_url",
    "client_id",
    "client_secret",
    "auth_method",
    "scope",
    "audience",
    "extra_params",
    "token_field",
    "allowed_hosts",
];
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "audience",
];

#[derive(PartialEq)]
enum AuthMethod {
    Basic,
    Post,
}

struct Config {
    token_url: String,
    client_id: String,
    client_secret: String,
    auth_method: AuthMethod,
    scope: Option<String>,
    audience: Option<String>,
    extra_params: Vec<(String, String)>,
    token_field: String,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, FIELDS)?;
    let token_url = required_string(&map, "token_url")?;
    check_url("token_url", &token_url)?;
    let client_id = required_string(&map, "client_id")?;
    let client_secret = required_string(&map, "client_secret")?;
    let auth_method = match opt_string(&map, "auth_method")?.as_deref() {
        None | Some("client_secret_basic") => AuthMethod::Basic,
        Some("client_secret_post") => AuthMethod::Post,
        Some(_) => {
            return Err(invalid(
                "auth_method",
                "must be 'client_secret_basic' or 'client_secret_post'",
            ));
        }
    };
    let scope = opt_string(&map, "scope")?;
    let audience = opt_string(&map, "audience")?;
    let mut extra_params = Vec::new();
    match map.get("extra_params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            for (name, value) in params {
                let field = format!("extra_params.{name}");
                if name.is_empty() {
                    return Err(invalid("extra_params", "parameter names must not be empty"));
                }
                if RESERVED_PARAMS.contains(&name.as_str()) {
                    return Err(invalid(
                        &field,
                        "is set by the plugin itself; use the dedicated field",
                    ));
                }
                let Value::String(value) = value else {
                    return Err(invalid(&field, "must be a string"));
                };
                extra_params.push((name.clone(), value.clone()));
            }
        }
        Some(_) => {
            return Err(invalid(
                "extra_params",
                "must be an object of string values",
            ));
        }
    }
    let token_field = opt_string(&map, "token_field")?.unwrap_or_else(|| "access_token".into());
    if token_field.is_empty() {
        return Err(invalid("token_field", "must not be empty"));
    }
    check_allowed_hosts(&map)?;
    Ok(Config {
        token_url,
        client_id,
        client_secret,
        auth_method,
        scope,
        audience,
        extra_params,
        token_field,
    })
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "oauth2-client-credentials".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::TokenProvider,
            summary: "Fetches an access token with the OAuth2 client_credentials grant."
                .to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn fetch_token(_ctx: Context, config: String) -> Result<Token, Error> {
        let config = parse(&config)?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &config.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &config.audience {
            form.push(("audience", audience));
        }
        for (name, value) in &config.extra_params {
            form.push((name, value));
        }
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
        ];
        match config.auth_method {
            AuthMethod::Basic => {
                let credentials = format!(
                    "{}:{}",
                    form_encode(&config.client_id),
                    form_encode(&config.client_secret)
                );
                headers.push((
                    "authorization".to_string(),
                    format!("Basic {}", STANDARD.encode(credentials)),
                ));
            }
            AuthMethod::Post => {
                form.push(("client_id", &config.client_id));
                form.push(("client_secret", &config.client_secret));
            }
        }
        let body = form
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let request = Request {
            method: "POST".to_string(),
            url: config.token_url.clone(),
            headers,
            body: body.into_bytes(),
        };
        let response = outbound::send(&request)
            .map_err(|e| Error::Transient(format!("token route unreachable: {e}")))?;
        let secrets = [config.client_secret.as_str()];
        check_status(&response, &secrets)?;
        let answer: Value = serde_json::from_slice(&response.body)
            .map_err(|_| Error::Permanent("token route answer is not JSON".to_string()))?;
        let value = match answer.get(&config.token_field) {
            Some(Value::String(token)) if !token.is_empty() => token.clone(),
            _ => {
                return Err(Error::Permanent(format!(
                    "token route answer has no non-empty string field '{}'",
                    config.token_field
                )));
            }
        };
        if value.chars().any(char::is_control) {
            return Err(Error::Permanent(format!(
                "token in field '{}' contains control characters",
                config.token_field
            )));
        }
        let expires_in_seconds = match answer.get("expires_in") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let seconds = seconds(v);
                if seconds.is_none() {
                    log(
                        Level::Warn,
                        "token route answer has an 'expires_in' that is not a number of seconds; using the default lifetime",
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

/// `application/x-www-form-urlencoded`: unreserved characters kept, space as `+`, the rest `%XX`.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
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

/// Text from the remote side: secrets blanked out, control characters dropped, cut at 200 chars.
fn sanitize(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
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

    const OK: &str = r#"{"token_url":"https://auth.example.com/token","client_id":"id","client_secret":"hunter2!"}"#;

    fn invalid_field(config: &str) -> String {
        match Plugin::validate(config.into()) {
            Err(Error::InvalidConfig(message)) => {
                assert!(!message.contains("hunter2"), "{message}");
                message.split(':').next().unwrap_or_default().to_string()
            }
            other => panic!("{config}: {other:?}"),
        }
    }

    #[test]
    fn validates() {
        assert!(Plugin::validate(OK.into()).is_ok());
        let with = |extra: &str| OK.replacen('}', &format!(",{extra}}}"), 1);
        assert!(Plugin::validate(with(r#""auth_method":"client_secret_post","scope":"a b","extra_params":{"resource":"r"},"allowed_hosts":["auth.example.com"]"#)).is_ok());
        assert!(
            Plugin::validate(
                OK.replace("https://auth.example.com/token", "http://[::1]:8080/t?x=1")
            )
            .is_ok()
        );
        assert_eq!(
            invalid_field(r#"{"client_id":"id","client_secret":"hunter2!"}"#),
            "token_url"
        );
        assert_eq!(
            invalid_field(&OK.replace("https://", "ftp://")),
            "token_url"
        );
        assert_eq!(
            invalid_field(&OK.replace("auth.example.com", "u:p@auth.example.com")),
            "token_url"
        );
        assert_eq!(
            invalid_field(&OK.replace("/token", "/token#f")),
            "token_url"
        );
        assert_eq!(
            invalid_field(&OK.replace("auth.example.com", "auth.example.com:99999")),
            "token_url"
        );
        assert_eq!(
            invalid_field(&OK.replace("\"hunter2!\"", "\"\"")),
            "client_secret"
        );
        assert_eq!(
            invalid_field(&OK.replace("\"hunter2!\"", "7")),
            "client_secret"
        );
        assert_eq!(
            invalid_field(&with(r#""auth_method":"jwt""#)),
            "auth_method"
        );
        assert_eq!(
            invalid_field(&with(r#""extra_params":{"grant_type":"x"}"#)),
            "extra_params.grant_type"
        );
        assert_eq!(
            invalid_field(&with(r#""extra_params":{"a":1}"#)),
            "extra_params.a"
        );
        assert_eq!(
            invalid_field(&with(r#""allowed_hosts":[]"#)),
            "allowed_hosts"
        );
        assert_eq!(
            invalid_field(&with(r#""allowed_hosts":["https://x"]"#)),
            "allowed_hosts[0]"
        );
        assert_eq!(invalid_field(&with(r#""token_field":"""#)), "token_field");
        assert_eq!(invalid_field(&with(r#""clientid":"x""#)), "clientid");
    }

    #[test]
    fn form_encodes() {
        assert_eq!(form_encode("a b&c=d/é~-._"), "a+b%26c%3Dd%2F%C3%A9~-._");
        assert_eq!(form_encode("s3:cr+t%"), "s3%3Acr%2Bt%25");
    }

    #[test]
    fn maps_statuses() {
        let response = |status, body: &str| Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        assert!(check_status(&response(200, ""), &[]).is_ok());
        assert!(matches!(
            check_status(&response(503, ""), &[]),
            Err(Error::Transient(_))
        ));
        assert!(matches!(
            check_status(&response(429, ""), &[]),
            Err(Error::Transient(_))
        ));
        let Err(Error::Permanent(message)) = check_status(
            &response(
                401,
                r#"{"error":"invalid_client","error_description":"bad secret hunter2!"}"#,
            ),
            &["hunter2!"],
        ) else {
            panic!("401 must be permanent");
        };
        assert_eq!(
            message,
            "token route answered 401; error: invalid_client; error_description: bad secret [redacted]"
        );
        assert_eq!(seconds(&serde_json::json!(3600)), Some(3600));
        assert_eq!(seconds(&serde_json::json!("3600")), Some(3600));
        assert_eq!(seconds(&serde_json::json!(59.9)), Some(59));
        assert_eq!(seconds(&serde_json::json!(-1)), None);
        assert_eq!(seconds(&serde_json::json!("soon")), None);
    }
}
