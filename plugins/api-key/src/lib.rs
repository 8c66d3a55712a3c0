//! `api-key`: an authentication step that adds a static API key header to every delivery.
//!
//! Config:
//!
//! ```json
//! {"key": "sk_live_...", "header": "x-api-key"}
//! ```
//!
//! - `key` (string, required, non-empty): the API key; a secret, never logged nor echoed in
//!   errors. It must be a valid header value (no control characters).
//! - `header` (string, default `x-api-key`): the header name; must be a valid HTTP header name.
//!
//! The header replaces any header of the same name (compared case-insensitively); the rest of the
//! request is kept as it is.

wit_bindgen::generate!({
    path: "../../wit",
    world: "step-plugin",
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook_plugin_kit::config::{invalid, opt_string, parse_object};
use wasmhook_plugin_kit::headers::{check_header_name, check_header_value, set_header};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "api-key",
  "type": "object",
  "properties": {
    "key": {"type": "string", "minLength": 1, "writeOnly": true, "description": "The API key (secret: sealed at rest, redacted in answers)."},
    "header": {"type": "string", "minLength": 1, "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "default": "x-api-key", "description": "Header that carries the key."}
  },
  "required": ["key"],
  "additionalProperties": false
}"#;

struct Config {
    key: String,
    header: String,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, &["key", "header"])?;
    let key = opt_string(&map, "key")?.ok_or_else(|| invalid("key", "is required"))?;
    if key.is_empty() {
        return Err(invalid("key", "must not be empty"));
    }
    check_header_value("key", &key)?;
    let header = opt_string(&map, "header")?.unwrap_or_else(|| "x-api-key".to_string());
    check_header_name("header", &header)?;
    Ok(Config { key, header })
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "api-key".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Authentication,
            summary: "Adds a static API key header (x-api-key by default).".to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn apply(_ctx: Context, config: String, mut req: Request) -> Result<Request, Error> {
        let config = parse(&config)?;
        set_header(&mut req.headers, &config.header, config.key);
        Ok(req)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmhook_plugin_kit::testing::{context, request};

    #[test]
    fn replaces_the_header_case_insensitively() {
        let req = request(
            vec![
                ("X-Api-Key".into(), "old".into()),
                ("content-type".into(), "application/json".into()),
            ],
            b"{}",
        );
        let out = Plugin::apply(context(), r#"{"key":"k1"}"#.into(), req).unwrap();
        assert_eq!(
            out.headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-api-key".to_string(), "k1".to_string()),
            ]
        );
        assert_eq!(out.body, b"{}");
    }

    #[test]
    fn validates() {
        assert!(Plugin::validate(r#"{"key":"k","header":"Authorization"}"#.into()).is_ok());
        for (config, prefix) in [
            ("{}", "key:"),
            (r#"{"key":""}"#, "key:"),
            (r#"{"key":"a\r\nb"}"#, "key:"),
            (r#"{"key":"k","header":"bad header"}"#, "header:"),
            (r#"{"key":"k","header":""}"#, "header:"),
            (r#"{"key":"k","hdr":"x"}"#, "hdr:"),
            ("nope", "config:"),
        ] {
            match Plugin::validate(config.into()) {
                Err(Error::InvalidConfig(m)) => assert!(m.starts_with(prefix), "{m}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_schema_marks_the_key_secret() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(schema["properties"]["key"]["writeOnly"], true);
        assert!(schema["properties"]["header"].get("writeOnly").is_none());
    }
}
