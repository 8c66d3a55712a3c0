//! `jwe`: a security step that encrypts the body as a compact JWE to the receiver's public key.
//! The host does the encryption; the plugin picks the header and the content type.
//!
//! Config:
//!
//! ```json
//! {"recipient": "-----BEGIN CERTIFICATE-----\n...", "alg": "RSA-OAEP-256", "enc": "A256GCM"}
//! ```
//!
//! - `recipient` (string, required): the receiver's key, as a PEM certificate, a PEM public key
//!   (`PUBLIC KEY` or `RSA PUBLIC KEY`) or a public JWK (a JSON object, as a string). Private
//!   keys are refused. A JWK's `kty` must suit `alg` (RSA for `RSA-OAEP*`, EC or OKP for
//!   `ECDH-ES*`).
//! - `alg` (default `RSA-OAEP-256`): `RSA-OAEP-256`, `RSA-OAEP`, `ECDH-ES`, `ECDH-ES+A128KW` or
//!   `ECDH-ES+A256KW`.
//! - `enc` (default `A256GCM`): `A128GCM`, `A192GCM`, `A256GCM`, `A128CBC-HS256` or
//!   `A256CBC-HS512`.
//!
//! When the request's `content-type` is `application/jwt` (a `jws` step ran before), the JWS is
//! wrapped as a nested JWT: protected header `{"cty":"JWT"}` and `content-type` stays
//! `application/jwt`. Otherwise the header has no extra field and `content-type` becomes
//! `application/jose`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
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
  "title": "jwe",
  "type": "object",
  "properties": {
    "recipient": {"type": "string", "minLength": 1, "description": "Receiver's public key: PEM certificate, PEM public key or public JWK (JSON object as a string)."},
    "alg": {"enum": ["RSA-OAEP-256", "RSA-OAEP", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A256KW"], "default": "RSA-OAEP-256", "description": "JWE key management algorithm."},
    "enc": {"enum": ["A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A256CBC-HS512"], "default": "A256GCM", "description": "JWE content encryption algorithm."}
  },
  "required": ["recipient"],
  "additionalProperties": false
}"#;

const ALGS: &[&str] = &[
    "RSA-OAEP-256",
    "RSA-OAEP",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A256KW",
];
const ENCS: &[&str] = &[
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A256CBC-HS512",
];
const PEM_LABELS: &[&str] = &["CERTIFICATE", "PUBLIC KEY", "RSA PUBLIC KEY"];

struct Config {
    recipient: String,
    alg: String,
    enc: String,
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(config, &["recipient", "alg", "enc"])?;
    let alg = opt_string(&map, "alg")?.unwrap_or_else(|| "RSA-OAEP-256".to_string());
    if !ALGS.contains(&alg.as_str()) {
        return Err(invalid(
            "alg",
            &format!("must be one of {}", ALGS.join(", ")),
        ));
    }
    let enc = opt_string(&map, "enc")?.unwrap_or_else(|| "A256GCM".to_string());
    if !ENCS.contains(&enc.as_str()) {
        return Err(invalid(
            "enc",
            &format!("must be one of {}", ENCS.join(", ")),
        ));
    }
    let recipient =
        opt_string(&map, "recipient")?.ok_or_else(|| invalid("recipient", "is required"))?;
    check_recipient(&recipient, &alg)?;
    Ok(Config {
        recipient,
        alg,
        enc,
    })
}

/// Checks that `recipient` looks like a PEM certificate, a PEM public key or a public JWK that
/// suits `alg`. The host parses it for real when it encrypts.
fn check_recipient(recipient: &str, alg: &str) -> Result<(), Error> {
    let text = recipient.trim();
    if text.is_empty() {
        return Err(invalid("recipient", "must not be empty"));
    }
    if text.starts_with('{') {
        check_jwk(text, alg)
    } else if text.starts_with("-----BEGIN ") {
        check_pem(text)
    } else {
        Err(invalid(
            "recipient",
            "must be a PEM certificate, a PEM public key or a JWK (JSON object)",
        ))
    }
}

fn check_pem(text: &str) -> Result<(), Error> {
    let rest = &text["-----BEGIN ".len()..];
    let (label, rest) = rest
        .split_once("-----")
        .ok_or_else(|| invalid("recipient", "has a malformed PEM BEGIN line"))?;
    if label.contains("PRIVATE") {
        return Err(invalid(
            "recipient",
            "is a private key; give the receiver's certificate or public key",
        ));
    }
    if !PEM_LABELS.contains(&label) {
        return Err(invalid(
            "recipient",
            "PEM must be a CERTIFICATE, PUBLIC KEY or RSA PUBLIC KEY",
        ));
    }
    let end = format!("-----END {label}-----");
    let (body, _) = rest
        .split_once(&end)
        .ok_or_else(|| invalid("recipient", "PEM has no matching END line"))?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    match STANDARD.decode(base64) {
        Ok(der) if !der.is_empty() => Ok(()),
        _ => Err(invalid("recipient", "PEM body is not valid base64")),
    }
}

fn check_jwk(text: &str, alg: &str) -> Result<(), Error> {
    let Ok(Value::Object(jwk)) = serde_json::from_str::<Value>(text) else {
        return Err(invalid("recipient", "is not a valid JWK (JSON object)"));
    };
    if jwk.contains_key("d") {
        return Err(invalid(
            "recipient",
            "is a private JWK; give the receiver's public key",
        ));
    }
    let has = |field: &str| matches!(jwk.get(field), Some(Value::String(s)) if !s.is_empty());
    let kty = match jwk.get("kty") {
        Some(Value::String(kty)) => kty.as_str(),
        _ => return Err(invalid("recipient", "JWK has no 'kty'")),
    };
    let required: &[&str] = match kty {
        "RSA" => &["n", "e"],
        "EC" => &["crv", "x", "y"],
        "OKP" => &["crv", "x"],
        _ => return Err(invalid("recipient", "JWK 'kty' must be RSA, EC or OKP")),
    };
    if let Some(missing) = required.iter().find(|f| !has(f)) {
        return Err(invalid(
            "recipient",
            &format!("JWK of kty {kty} has no '{missing}'"),
        ));
    }
    let suits = if alg.starts_with("RSA-") {
        kty == "RSA"
    } else {
        kty == "EC" || kty == "OKP"
    };
    if !suits {
        return Err(invalid(
            "recipient",
            &format!("a JWK of kty {kty} cannot be used with alg {alg}"),
        ));
    }
    Ok(())
}

/// Whether the request's content type is `application/jwt` (parameters and case ignored).
fn is_jwt(req: &Request) -> bool {
    req.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/jwt"))
    })
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "jwe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Security,
            summary: "Encrypts the body as a compact JWE to the receiver's public key (nested JWT after jws)."
                .to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn apply(_ctx: Context, config: String, mut req: Request) -> Result<Request, Error> {
        let config = parse(&config)?;
        let (header, content_type) = if is_jwt(&req) {
            (r#"{"cty":"JWT"}"#, "application/jwt")
        } else {
            ("{}", "application/jose")
        };
        let jwe = jose::encrypt(
            &config.alg,
            &config.enc,
            &config.recipient,
            header,
            &req.body,
        )
        .map_err(|e| {
            Error::Permanent(format!(
                "encryption with {}/{} failed: {e}",
                config.alg, config.enc
            ))
        })?;
        req.body = jwe.into_bytes();
        set_header(&mut req.headers, "content-type", content_type.to_string());
        Ok(req)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: serde_json::Value) -> Result<(), Error> {
        Plugin::validate(config.to_string())
    }

    #[test]
    fn validates_recipients() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEA3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=\n-----END PUBLIC KEY-----\n";
        let cert = pem.replace("PUBLIC KEY", "CERTIFICATE");
        let rsa = r#"{"kty":"RSA","n":"0vx7","e":"AQAB"}"#;
        let ec = r#"{"kty":"EC","crv":"P-256","x":"f83O","y":"x_FE"}"#;
        assert!(check(serde_json::json!({"recipient": pem})).is_ok());
        assert!(check(serde_json::json!({"recipient": cert, "enc": "A128CBC-HS256"})).is_ok());
        assert!(check(serde_json::json!({"recipient": rsa, "alg": "RSA-OAEP"})).is_ok());
        assert!(check(serde_json::json!({"recipient": ec, "alg": "ECDH-ES+A256KW"})).is_ok());
        for (config, prefix) in [
            (serde_json::json!({}), "recipient:"),
            (serde_json::json!({"recipient": "hello"}), "recipient:"),
            (
                serde_json::json!({"recipient": pem.replace("PUBLIC", "PRIVATE")}),
                "recipient:",
            ),
            (
                serde_json::json!({"recipient": pem.replace("MCow", "M!ow")}),
                "recipient:",
            ),
            (
                serde_json::json!({"recipient": pem.replace("-----END PUBLIC KEY-----", "")}),
                "recipient:",
            ),
            (serde_json::json!({"recipient": ec}), "recipient:"),
            (
                serde_json::json!({"recipient": r#"{"kty":"RSA","n":"a","e":"b","d":"c"}"#}),
                "recipient:",
            ),
            (serde_json::json!({"recipient": rsa, "alg": "dir"}), "alg:"),
            (
                serde_json::json!({"recipient": rsa, "enc": "A512GCM"}),
                "enc:",
            ),
        ] {
            match check(config.clone()) {
                Err(Error::InvalidConfig(m)) => assert!(m.starts_with(prefix), "{config}: {m}"),
                other => panic!("{config}: {other:?}"),
            }
        }
    }

    #[test]
    fn detects_jwt_content_type() {
        let req = |ct: &str| Request {
            method: "POST".into(),
            url: "https://example.com/".into(),
            headers: vec![("Content-Type".into(), ct.into())],
            body: Vec::new(),
        };
        assert!(is_jwt(&req("application/jwt")));
        assert!(is_jwt(&req("Application/JWT; charset=utf-8")));
        assert!(!is_jwt(&req("application/json")));
    }
}
