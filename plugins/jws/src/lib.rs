//! `jws`: an authentication step that replaces the JSON body by a signed JWT (compact JWS),
//! signed by the host with its own key (the private key never enters the plugin).
//!
//! Config:
//!
//! ```json
//! {"alg": "ES256", "iss": "https://webhooks.example.com", "aud": "https://receiver.example.com"}
//! ```
//!
//! - `alg` (`RS256`, `PS256`, `ES256` (default), `EdDSA` or `Ed25519`): the signature algorithm.
//!   `Ed25519` is RFC 9864's fully specified name of EdDSA with Ed25519, the only EdDSA the host
//!   signs with: both names sign with the host's Ed25519 key, and the JWS header says
//!   `"alg":"EdDSA"` either way (the host sets `alg` itself, and that is the name JOSE libraries
//!   verify today; the published JWK, `"crv":"Ed25519"`, leaves no ambiguity).
//! - `iss`, `aud` (strings, optional): added as the `iss` and `aud` claims.
//!
//! The claims are the JSON envelope object of the body plus `iat` (the attempt's timestamp),
//! `jti` (the event id) and `iss` / `aud` when configured. The protected header is
//! `{"typ":"JWT"}` plus the `alg` and `kid` the host sets. The body becomes the compact JWS and
//! `content-type` becomes `application/jwt`. A body that is not a JSON object is a permanent error.
//! The receiver verifies with the host's `/.well-known/jwks.json`.

use serde_json::Value;

wit_bindgen::generate!({
    path: "../../wit",
    world: "step-plugin",
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::jose;
use wasmhook_plugin_kit::config::{invalid, opt_string, parse_object};
use wasmhook_plugin_kit::headers::set_header;
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "jws",
  "type": "object",
  "properties": {
    "alg": {"enum": ["RS256", "PS256", "ES256", "EdDSA", "Ed25519"], "default": "ES256", "description": "JWS signature algorithm; Ed25519 (RFC 9864) is EdDSA with Ed25519, and the JWS header says EdDSA."},
    "iss": {"type": "string", "minLength": 1, "description": "Issuer claim."},
    "aud": {"type": "string", "minLength": 1, "description": "Audience claim."}
  },
  "additionalProperties": false
}"#;

const ALGS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

#[derive(Debug)]
struct Config {
    /// What the host is asked to sign with (`Ed25519` is asked as `EdDSA`).
    alg: String,
    iss: Option<String>,
    aud: Option<String>,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, &["alg", "iss", "aud"])?;
    let mut alg = opt_string(&map, "alg")?.unwrap_or_else(|| "ES256".to_string());
    if alg == "Ed25519" {
        alg = "EdDSA".to_string();
    }
    if !ALGS.contains(&alg.as_str()) {
        return Err(invalid(
            "alg",
            "must be one of RS256, PS256, ES256, EdDSA, Ed25519",
        ));
    }
    let iss = opt_string(&map, "iss")?;
    if iss.as_deref() == Some("") {
        return Err(invalid("iss", "must not be empty when given"));
    }
    let aud = opt_string(&map, "aud")?;
    if aud.as_deref() == Some("") {
        return Err(invalid("aud", "must not be empty when given"));
    }
    Ok(Config { alg, iss, aud })
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "jws".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Authentication,
            summary:
                "Replaces the JSON body by a JWT signed with the host's key (application/jwt)."
                    .to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn apply(ctx: Context, config: String, mut req: Request) -> Result<Request, Error> {
        let config = parse(&config)?;
        let Ok(Value::Object(mut claims)) = serde_json::from_slice::<Value>(&req.body) else {
            return Err(Error::Permanent(
                "request body is not a JSON object; jws signs the JSON envelope and must run before steps that change the body".to_string(),
            ));
        };
        claims.insert("iat".to_string(), Value::from(ctx.timestamp));
        claims.insert("jti".to_string(), Value::from(ctx.event_id));
        if let Some(iss) = config.iss {
            claims.insert("iss".to_string(), Value::from(iss));
        }
        if let Some(aud) = config.aud {
            claims.insert("aud".to_string(), Value::from(aud));
        }
        let payload = Value::Object(claims).to_string().into_bytes();
        let jws = jose::sign(&config.alg, r#"{"typ":"JWT"}"#, &payload)
            .map_err(|e| Error::Permanent(format!("signing with {} failed: {e}", config.alg)))?;
        req.body = jws.into_bytes();
        set_header(
            &mut req.headers,
            "content-type",
            "application/jwt".to_string(),
        );
        Ok(req)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(Plugin::validate("{}".into()).is_ok());
        assert!(Plugin::validate(r#"{"alg":"EdDSA","iss":"me","aud":"you"}"#.into()).is_ok());
        assert!(Plugin::validate(r#"{"alg":"Ed25519"}"#.into()).is_ok());
        for (config, prefix) in [
            (r#"{"alg":"HS256"}"#, "alg:"),
            (r#"{"alg":"ed25519"}"#, "alg:"),
            (r#"{"alg":"Ed448"}"#, "alg:"),
            (r#"{"iss":""}"#, "iss:"),
            (r#"{"aud":["a"]}"#, "aud:"),
            (r#"{"kid":"x"}"#, "kid:"),
        ] {
            match Plugin::validate(config.into()) {
                Err(Error::InvalidConfig(m)) => assert!(m.starts_with(prefix), "{config}: {m}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }

    #[test]
    fn ed25519_signs_as_eddsa() {
        for (config, alg) in [
            ("{}", "ES256"),
            (r#"{"alg":"EdDSA"}"#, "EdDSA"),
            (r#"{"alg":"Ed25519"}"#, "EdDSA"),
            (r#"{"alg":"PS256"}"#, "PS256"),
        ] {
            assert_eq!(parse(config).unwrap().alg, alg, "{config}");
        }
        // The schema offers what validation accepts.
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let offered: Vec<&str> = schema["properties"]["alg"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(offered, ["RS256", "PS256", "ES256", "EdDSA", "Ed25519"]);
        for alg in offered {
            assert!(parse(&format!(r#"{{"alg":"{alg}"}}"#)).is_ok(), "{alg}");
        }
    }
}
