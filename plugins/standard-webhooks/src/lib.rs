//! `standard-webhooks`: an authentication step that signs the delivery as the Standard Webhooks
//! specification says (<https://www.standardwebhooks.com>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`.
//!
//! Config:
//!
//! ```json
//! {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
//! ```
//!
//! - `secret` (string, required): the signing secret, `whsec_` followed by standard base64, or
//!   the bare base64. It must decode to at least one byte (the specification recommends 24 to 64
//!   bytes). Never logged nor echoed in errors.
//!
//! Adds `webhook-signature: v1,<base64 signature>` where the id is the event id and the timestamp
//! the attempt's timestamp (the host sends both as `webhook-id` and `webhook-timestamp`). When the
//! request already has a `webhook-signature` (another `standard-webhooks` step, during a secret
//! rotation), the new signature is appended space-separated, as the specification allows.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

wit_bindgen::generate!({
    path: "../../wit",
    world: "step-plugin",
    with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook_plugin_kit::config::{invalid, opt_string, parse_object};
use wasmhook_plugin_kit::types::{Context, Error, Kind, PluginInfo, Request};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "standard-webhooks",
  "type": "object",
  "properties": {
    "secret": {"type": "string", "pattern": "^(whsec_)?[A-Za-z0-9+/]+={0,2}$", "writeOnly": true, "description": "Signing secret: whsec_<base64> or bare base64 (secret: sealed at rest, redacted in answers)."}
  },
  "required": ["secret"],
  "additionalProperties": false
}"#;

const HEADER: &str = "webhook-signature";

fn parse(config: &str) -> Result<Vec<u8>, Error> {
    let map = parse_object(config, &["secret"])?;
    let secret = opt_string(&map, "secret")?.ok_or_else(|| invalid("secret", "is required"))?;
    let encoded = secret.strip_prefix("whsec_").unwrap_or(&secret);
    match STANDARD.decode(encoded.trim()) {
        Ok(key) if !key.is_empty() => Ok(key),
        Ok(_) => Err(invalid("secret", "must not be empty")),
        Err(_) => Err(invalid(
            "secret",
            "must be 'whsec_' followed by standard base64, or standard base64",
        )),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "standard-webhooks".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Authentication,
            summary: "Signs deliveries with a Standard Webhooks HMAC-SHA256 webhook-signature."
                .to_string(),
            config_schema: SCHEMA.to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Error> {
        parse(&config).map(|_| ())
    }

    fn apply(ctx: Context, config: String, mut req: Request) -> Result<Request, Error> {
        let key = parse(&config)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .map_err(|_| invalid("secret", "cannot be used as an HMAC key"))?;
        mac.update(ctx.event_id.as_bytes());
        mac.update(b".");
        mac.update(ctx.timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(&req.body);
        let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        // Keep signatures of earlier steps (secret rotation): `v1,<a> v1,<b>`.
        let earlier: Vec<String> = req
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(HEADER))
            .map(|(_, value)| value.trim().to_string())
            .filter(|value| !value.is_empty())
            .collect();
        req.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case(HEADER));
        let value = if earlier.is_empty() {
            signature
        } else {
            format!("{} {signature}", earlier.join(" "))
        };
        req.headers.push((HEADER.to_string(), value));
        Ok(req)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(event_id: &str, timestamp: u64) -> Context {
        Context {
            event_id: event_id.into(),
            timestamp,
            ..wasmhook_plugin_kit::testing::context()
        }
    }

    fn req(headers: Vec<(String, String)>) -> Request {
        wasmhook_plugin_kit::testing::request(headers, br#"{"test": 2432232314}"#)
    }

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn signs_like_the_reference() {
        let config = r#"{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
        let out = Plugin::apply(
            ctx("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330),
            config.into(),
            req(vec![("Content-Type".into(), "application/json".into())]),
        )
        .unwrap();
        assert_eq!(
            out.headers,
            vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                (
                    "webhook-signature".to_string(),
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
                ),
            ]
        );
        // Without the prefix the secret is the same.
        let bare = r#"{"secret":"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
        let again = Plugin::apply(
            ctx("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330),
            bare.into(),
            req(vec![("Webhook-Signature".into(), "v1,old".into())]),
        )
        .unwrap();
        assert_eq!(
            again.headers,
            vec![(
                "webhook-signature".to_string(),
                "v1,old v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
            )]
        );
    }

    #[test]
    fn validates_without_leaking() {
        for (config, field) in [
            ("{}", "secret:"),
            (r#"{"secret":5}"#, "secret:"),
            (r#"{"secret":"whsec_not base64!"}"#, "secret:"),
            (r#"{"secret":"whsec_"}"#, "secret:"),
            (r#"{"secret":"c2VjcmV0","x":1}"#, "x:"),
            ("[]", "config:"),
        ] {
            let Err(Error::InvalidConfig(message)) = Plugin::validate(config.into()) else {
                panic!("{config} should be invalid");
            };
            assert!(message.starts_with(field), "{message}");
            assert!(!message.contains("base64!"), "{message}");
        }
    }

    #[test]
    fn the_schema_marks_the_secret() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(schema["properties"]["secret"]["writeOnly"], true);
    }
}
