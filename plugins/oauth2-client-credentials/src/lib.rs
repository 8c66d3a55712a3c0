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
use wasmhook_plugin_kit::form::{form_body, form_encode};
use wasmhook_plugin_kit::token::{self, At};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request, Token};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "oauth2-client-credentials",
  "type": "object",
  "properties": {
    "token_url": {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^#]+$", "description": "Token endpoint (http or https)."},
    "client_id": {"type": "string", "minLength": 1, "description": "OAuth2 client id."},
    "client_secret": {"type": "string", "minLength": 1, "writeOnly": true, "description": "OAuth2 client secret (secret: sealed at rest, redacted in answers)."},
    "auth_method": {"enum": ["client_secret_basic", "client_secret_post"], "default": "client_secret_basic", "description": "How the client authenticates to the token endpoint."},
    "scope": {"type": "string", "description": "Requested scope (space-separated)."},
    "audience": {"type": "string", "description": "Requested audience."},
    "extra_params": {
      "type": "object",
      "additionalProperties": {"type": "string", "writeOnly": true},
      "propertyNames": {"minLength": 1, "not": {"enum": ["grant_type", "client_id", "client_secret", "scope", "audience"]}},
      "description": "More form parameters of the token request (values may be secrets: sealed at rest, redacted in answers)."
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
        let body = form_body(&form);
        let request = Request {
            method: "POST".to_string(),
            url: config.token_url.clone(),
            headers,
            body: body.into_bytes(),
        };
        let response = outbound::send(&request).map_err(token::route_unreachable)?;
        token::check_status(&response, &[&config.client_secret])?;
        let answer = token::parse_answer(&response.body)?;
        let value = token::token_at(&answer, At::Field(&config.token_field))?;
        let expires_in_seconds = match At::Field("expires_in").find(&answer) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let seconds = token::seconds(v);
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
    fn the_schema_marks_the_secret_and_extra_params_secret() {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let properties = &schema["properties"];
        assert_eq!(properties["client_secret"]["writeOnly"], true);
        assert_eq!(
            properties["extra_params"]["additionalProperties"]["writeOnly"],
            true
        );
        for public in ["token_url", "client_id", "scope", "audience"] {
            assert!(properties[public].get("writeOnly").is_none(), "{public}");
        }
    }
}
