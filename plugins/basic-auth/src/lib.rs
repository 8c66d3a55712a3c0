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

wit_bindgen::generate!({
    path: "../../wit",
    world: "step-plugin",
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook_plugin_kit::config::{invalid, opt_string, parse_object, required_string};
use wasmhook_plugin_kit::headers::{check_header_name, set_header};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "basic-auth",
  "type": "object",
  "properties": {
    "client_id": {"type": "string", "minLength": 1, "pattern": "^[^:]*$", "description": "User id (must not contain ':')."},
    "client_secret": {"type": "string", "minLength": 1, "writeOnly": true, "description": "Password (secret: sealed at rest, redacted in answers)."},
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmhook_plugin_kit::testing::{context, request};

    #[test]
    fn adds_basic_credentials() {
        let req = request(vec![("Authorization".into(), "old".into())], b"");
        let config = r#"{"client_id":"Aladdin","client_secret":"open sesame"}"#;
        let out = Plugin::apply(context(), config.into(), req).unwrap();
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

    #[test]
    fn the_schema_marks_the_password_secret() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(schema["properties"]["client_secret"]["writeOnly"], true);
        assert!(schema["properties"]["client_id"].get("writeOnly").is_none());
    }
}
