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
//! - `previous_secret` (string, optional, same form): the secret `secret` replaced, still used
//!   until `previous_secret_expires` so that receivers can switch at their pace.
//! - `previous_secret_expires` (RFC 3339 time, required with `previous_secret`): until then
//!   (the attempt's timestamp before it) the request carries both signatures.
//!
//! Adds `webhook-signature: v1,<base64 signature>` where the id is the event id and the timestamp
//! the attempt's timestamp (the host sends both as `webhook-id` and `webhook-timestamp`). During a
//! rotation's overlap it is `v1,<with secret> v1,<with previous_secret>`: several signatures,
//! space-separated, as the specification allows; a receiver holding either secret verifies. When
//! the request already has a `webhook-signature` (another `standard-webhooks` step), the new
//! signatures are appended to it.

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
    "secret": {"type": "string", "pattern": "^(whsec_)?[A-Za-z0-9+/]+={0,2}$", "writeOnly": true, "description": "Signing secret: whsec_<base64> or bare base64 (secret: sealed at rest, redacted in answers)."},
    "previous_secret": {"type": "string", "pattern": "^(whsec_)?[A-Za-z0-9+/]+={0,2}$", "writeOnly": true, "description": "The secret before the last rotation, also signed with until previous_secret_expires (secret: sealed at rest, redacted in answers)."},
    "previous_secret_expires": {"type": "string", "format": "date-time", "description": "RFC 3339 time until which previous_secret also signs (required with previous_secret)."}
  },
  "dependentRequired": {"previous_secret": ["previous_secret_expires"]},
  "required": ["secret"],
  "additionalProperties": false
}"#;

const HEADER: &str = "webhook-signature";

/// A step's configuration, parsed.
struct Config {
    key: Vec<u8>,
    /// The previous key and until when (unix seconds, exclusive) it also signs.
    previous: Option<(Vec<u8>, i64)>,
}

fn decode_secret(field: &str, secret: &str) -> Result<Vec<u8>, Error> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match STANDARD.decode(encoded.trim()) {
        Ok(key) if !key.is_empty() => Ok(key),
        Ok(_) => Err(invalid(field, "must not be empty")),
        Err(_) => Err(invalid(
            field,
            "must be 'whsec_' followed by standard base64, or standard base64",
        )),
    }
}

fn parse(config: &str) -> Result<Config, Error> {
    let map = parse_object(
        config,
        &["secret", "previous_secret", "previous_secret_expires"],
    )?;
    let secret = opt_string(&map, "secret")?.ok_or_else(|| invalid("secret", "is required"))?;
    let key = decode_secret("secret", &secret)?;
    let previous = opt_string(&map, "previous_secret")?;
    let expires = opt_string(&map, "previous_secret_expires")?;
    let previous = match (previous, expires) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "previous_secret_expires",
                "is required with previous_secret (an RFC 3339 time)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "previous_secret",
                "is required with previous_secret_expires",
            ));
        }
        (Some(previous), Some(expires)) => {
            let until = parse_rfc3339(&expires).ok_or_else(|| {
                invalid(
                    "previous_secret_expires",
                    "must be an RFC 3339 time such as 2026-12-02T10:00:00Z",
                )
            })?;
            Some((decode_secret("previous_secret", &previous)?, until))
        }
    };
    Ok(Config { key, previous })
}

/// Unix seconds of an RFC 3339 time (`2026-12-02T10:00:00Z`, `…T10:00:00.5+01:00`); a fraction
/// of a second is dropped.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let minutes = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
fn sign(key: &[u8], ctx: &Context, body: &[u8]) -> Result<String, Error> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| invalid("secret", "cannot be used as an HMAC key"))?;
    mac.update(ctx.event_id.as_bytes());
    mac.update(b".");
    mac.update(ctx.timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
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
        let config = parse(&config)?;
        let mut signature = sign(&config.key, &ctx, &req.body)?;
        if let Some((previous, until)) = &config.previous
            && i64::try_from(ctx.timestamp).is_ok_and(|now| now < *until)
        {
            signature.push(' ');
            signature.push_str(&sign(previous, &ctx, &req.body)?);
        }
        // Keep signatures of earlier steps: `v1,<a> v1,<b>`.
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
    fn the_schema_marks_both_secrets() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(schema["properties"]["secret"]["writeOnly"], true);
        assert_eq!(schema["properties"]["previous_secret"]["writeOnly"], true);
        assert!(schema["properties"]["previous_secret_expires"]["writeOnly"].is_null());
    }

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_c2VjcmV0LW5ldy0wMTIzNDU2Nzg5";
    // The reference vector's signature with OLD.
    const OLD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn signature(config: serde_json::Value) -> String {
        let out = Plugin::apply(
            ctx("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330),
            config.to_string(),
            req(vec![]),
        )
        .unwrap();
        out.headers
            .into_iter()
            .find(|(name, _)| name == HEADER)
            .unwrap()
            .1
    }

    #[test]
    fn during_the_overlap_both_secrets_sign_then_only_the_new_one() {
        let new_only = signature(serde_json::json!({"secret": NEW}));
        assert!(new_only.starts_with("v1,") && !new_only.contains(' '));
        assert_ne!(new_only, OLD_SIGNATURE);
        // 1614265330 is 2021-02-25T15:02:10Z.
        let overlap = signature(serde_json::json!({
            "secret": NEW, "previous_secret": OLD, "previous_secret_expires": "2021-02-25T15:02:11Z"}));
        assert_eq!(overlap, format!("{new_only} {OLD_SIGNATURE}"));
        let after = signature(serde_json::json!({
            "secret": NEW, "previous_secret": OLD, "previous_secret_expires": "2021-02-25T15:02:10Z"}));
        assert_eq!(after, new_only);
        // An offset is honoured: 16:02:11+01:00 is 15:02:11Z.
        let offset = signature(serde_json::json!({
            "secret": NEW, "previous_secret": OLD, "previous_secret_expires": "2021-02-25T16:02:11.9+01:00"}));
        assert_eq!(offset, format!("{new_only} {OLD_SIGNATURE}"));
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2021-02-25T15:02:10Z"), Some(1614265330));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00-00:30"),
            Some(951_870_600)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59z"), Some(-1));
        for bad in [
            "",
            "2021-02-25",
            "2021-02-25T15:02:10",
            "2021-13-25T15:02:10Z",
            "2021-02-25T15:02:10.Z",
            "2021-02-25T15:02:10+0100",
            "2021-02-25T15:02:10Zjunk",
            "２０２１-02-25T15:02:10Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_previous_secret_comes_with_its_expiry() {
        for (config, field) in [
            (
                serde_json::json!({"secret": NEW, "previous_secret": OLD}),
                "previous_secret_expires:",
            ),
            (
                serde_json::json!({"secret": NEW, "previous_secret_expires": "2021-02-25T15:02:11Z"}),
                "previous_secret:",
            ),
            (
                serde_json::json!({"secret": NEW, "previous_secret": OLD, "previous_secret_expires": "tomorrow"}),
                "previous_secret_expires:",
            ),
            (
                serde_json::json!({"secret": NEW, "previous_secret": "whsec_not base64!", "previous_secret_expires": "2021-02-25T15:02:11Z"}),
                "previous_secret:",
            ),
        ] {
            let Err(Error::InvalidConfig(message)) = Plugin::validate(config.to_string()) else {
                panic!("{config} should be invalid");
            };
            assert!(message.starts_with(field), "{message}");
            assert!(
                !message.contains("base64!") && !message.contains(OLD),
                "{message}"
            );
        }
    }
}
