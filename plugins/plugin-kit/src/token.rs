//! A token route's answer, as token providers read it: the status mapped to a transient or
//! permanent error, the token found in the JSON answer, its lifetime.
//!
//! Errors never carry a secret: the answer is quoted only through [`check_status`], which keeps
//! the OAuth `error` / `error_description` fields and blanks out the secrets the caller names.

use serde_json::Value;

use crate::types::{Error, Response};

/// The route could not be reached (the host's `outbound.send` failed): transient.
pub fn route_unreachable(why: String) -> Error {
    Error::Transient(format!("token route unreachable: {why}"))
}

/// 429 and 5xx are transient (retried later), the other failures permanent.
fn status_error(status: u16, message: String) -> Error {
    if status == 429 || (500..600).contains(&status) {
        Error::Transient(message)
    } else {
        Error::Permanent(message)
    }
}

/// Maps a non-2xx answer to an error naming only the status (`token route answered 503`), for
/// routes whose answer could echo what was sent.
pub fn check_bare_status(status: u16) -> Result<(), Error> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(status_error(
        status,
        format!("token route answered {status}"),
    ))
}

/// Maps a non-2xx answer to an error: 429 and 5xx are transient, the rest permanent. The OAuth
/// `error` / `error_description` fields are quoted, cut short, with every one of `secrets`
/// blanked out (the caller decides what counts: an empty string never does).
pub fn check_status(response: &Response, secrets: &[&str]) -> Result<(), Error> {
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
    Err(status_error(status, message))
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

/// The body of a successful answer as JSON; anything else is a permanent error.
pub fn parse_answer(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|_| Error::Permanent("token route answer is not JSON".to_string()))
}

/// Where a value sits in the JSON answer.
#[derive(Clone, Copy, Debug)]
pub enum At<'a> {
    /// A top-level field (`access_token`).
    Field(&'a str),
    /// A JSON pointer (RFC 6901: `/data/token`).
    Pointer(&'a str),
}

impl At<'_> {
    /// The value there, if any.
    pub fn find<'v>(&self, answer: &'v Value) -> Option<&'v Value> {
        match *self {
            At::Field(field) => answer.get(field),
            At::Pointer(pointer) => answer.pointer(pointer),
        }
    }
}

/// The token at `at`: a non-empty string without control characters, or a permanent error.
pub fn token_at(answer: &Value, at: At<'_>) -> Result<String, Error> {
    let (place, token_place) = match at {
        At::Field(field) => (format!("field '{field}'"), format!("in field '{field}'")),
        At::Pointer(pointer) => (format!("at '{pointer}'"), format!("at '{pointer}'")),
    };
    let value = match at.find(answer) {
        Some(Value::String(token)) if !token.is_empty() => token.clone(),
        _ => {
            return Err(Error::Permanent(format!(
                "token route answer has no non-empty string {place}"
            )));
        }
    };
    if value.chars().any(char::is_control) {
        return Err(Error::Permanent(format!(
            "token {token_place} contains control characters"
        )));
    }
    Ok(value)
}

/// A lifetime in seconds: a non-negative number (fractions cut) or a numeric string.
pub fn seconds(value: &Value) -> Option<u64> {
    // The range also refuses NaN and the infinities.
    let from_f64 = |f: f64| (0.0..1e18).contains(&f).then_some(f as u64);
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(from_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn maps_statuses() {
        assert!(check_status(&response(200, ""), &[]).is_ok());
        assert!(check_status(&response(204, "not json"), &[]).is_ok());
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
            &["hunter2!", ""],
        ) else {
            panic!("401 must be permanent");
        };
        assert_eq!(
            message,
            "token route answered 401; error: invalid_client; error_description: bad secret [redacted]"
        );
        let Err(Error::Permanent(message)) = check_status(&response(302, "<html>"), &[]) else {
            panic!("302 must be permanent");
        };
        assert_eq!(
            message,
            "token route answered 302 (redirects are not followed)"
        );
    }

    #[test]
    fn maps_bare_statuses() {
        assert!(check_bare_status(299).is_ok());
        for (status, transient) in [
            (429, true),
            (500, true),
            (599, true),
            (302, false),
            (401, false),
        ] {
            match check_bare_status(status) {
                Err(Error::Transient(m)) if transient => {
                    assert_eq!(m, format!("token route answered {status}"));
                }
                Err(Error::Permanent(m)) if !transient => {
                    assert_eq!(m, format!("token route answered {status}"));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn sanitizes_remote_text() {
        assert_eq!(sanitize("a\nb", &[]), "ab");
        let long = "x".repeat(250);
        let cut = sanitize(&long, &[]);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
        assert_eq!(
            sanitize("key k-123 k-123", &["k-123"]),
            "key [redacted] [redacted]"
        );
    }

    #[test]
    fn finds_tokens() {
        assert!(matches!(parse_answer(b"<html>"), Err(Error::Permanent(_))));
        let answer = parse_answer(
            br#"{"access_token":"t1","data":{"a/b":"t2","ttl":"60"},"bad":"t\u0001","empty":""}"#,
        )
        .unwrap();
        assert_eq!(token_at(&answer, At::Field("access_token")).unwrap(), "t1");
        assert_eq!(token_at(&answer, At::Pointer("/data/a~1b")).unwrap(), "t2");
        for (at, expected) in [
            (
                At::Field("empty"),
                "token route answer has no non-empty string field 'empty'",
            ),
            (
                At::Pointer("/data"),
                "token route answer has no non-empty string at '/data'",
            ),
            (
                At::Field("bad"),
                "token in field 'bad' contains control characters",
            ),
            (
                At::Pointer("/bad"),
                "token at '/bad' contains control characters",
            ),
        ] {
            match token_at(&answer, at) {
                Err(Error::Permanent(m)) => assert_eq!(m, expected),
                other => panic!("{at:?}: {other:?}"),
            }
        }
        assert_eq!(
            At::Pointer("/data/ttl").find(&answer).and_then(seconds),
            Some(60)
        );
    }

    #[test]
    fn reads_lifetimes() {
        assert_eq!(seconds(&json!(3600)), Some(3600));
        assert_eq!(seconds(&json!("3600")), Some(3600));
        assert_eq!(seconds(&json!(" 60 ")), Some(60));
        assert_eq!(seconds(&json!(59.9)), Some(59));
        assert_eq!(seconds(&json!("59.9")), Some(59));
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!(1e20)), None);
        assert_eq!(seconds(&json!("soon")), None);
        assert_eq!(seconds(&json!(null)), None);
    }
}
