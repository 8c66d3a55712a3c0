//! Reading a plugin's config: a JSON object whose fields are checked one by one.
//!
//! Errors are `invalid-config("<field>: <why>")`. They name the field and say why, and never
//! quote a value: configs hold secrets (API keys, client secrets).

use serde_json::{Map, Value};

use crate::types::Error;

/// `invalid-config("<field>: <why>")`.
pub fn invalid(field: &str, why: &str) -> Error {
    Error::InvalidConfig(format!("{field}: {why}"))
}

/// Parses the config as a JSON object and rejects fields not in `known`.
pub fn parse_object(config: &str, known: &[&str]) -> Result<Map<String, Value>, Error> {
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
pub fn opt_string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// A required, non-empty string without control characters.
pub fn required_string(map: &Map<String, Value>, field: &str) -> Result<String, Error> {
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
pub fn check_url(field: &str, url: &str) -> Result<(), Error> {
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

/// The `allowed_hosts` field of a token provider. The host reads it (it lets the plugin reach
/// only those hosts); here it is only checked to be absent or a non-empty list of host names.
pub fn check_allowed_hosts(map: &Map<String, Value>) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `<field>` of an `invalid-config("<field>: <why>")`.
    fn field<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::InvalidConfig(m)) => m.split(": ").next().unwrap_or_default().to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_objects_without_echoing_values() {
        let map = parse_object(r#"{"a":"x","b":null}"#, &["a", "b", "c"]).unwrap();
        assert_eq!(opt_string(&map, "a").unwrap().as_deref(), Some("x"));
        assert_eq!(opt_string(&map, "b").unwrap(), None);
        assert_eq!(opt_string(&map, "c").unwrap(), None);
        match parse_object(r#"{"key": "s3cret"#, &["key"]) {
            Err(Error::InvalidConfig(m)) => {
                assert!(m.starts_with("config: is not valid JSON (line 1"), "{m}");
                assert!(!m.contains("s3cret"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(field(parse_object("[]", &[])), "config");
        assert_eq!(field(parse_object(r#"{"a":1,"z":2}"#, &["a"])), "z");
        let map = parse_object(
            r#"{"n":5,"e":"","c":"a\u0007b","t":"a\tb"}"#,
            &["n", "e", "c", "t"],
        )
        .unwrap();
        assert_eq!(field(opt_string(&map, "n")), "n");
        assert_eq!(field(required_string(&map, "missing")), "missing");
        assert_eq!(field(required_string(&map, "e")), "e");
        assert_eq!(field(required_string(&map, "c")), "c");
        assert_eq!(field(required_string(&map, "t")), "t");
    }

    #[test]
    fn checks_urls() {
        for ok in [
            "https://auth.example.com/token",
            "HTTP://a.example:8080/t?x=1",
            "http://[::1]:8080/t",
            "https://a.example?x",
        ] {
            assert!(check_url("u", ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://a.example/",
            "https://a.example/t#f",
            "https://u:p@a.example/",
            "https://a.example:99999/",
            "https://a.example:0/",
            "https://a.example:x/",
            "https://[::1/",
            "https://[::1]x/",
            "https:///t",
            "https://a.example/ t",
        ] {
            assert_eq!(field(check_url("token_url", bad)), "token_url", "{bad}");
        }
    }

    #[test]
    fn checks_allowed_hosts() {
        let check = |json: &str| check_allowed_hosts(&parse_object(json, &["allowed_hosts"])?);
        assert!(check("{}").is_ok());
        assert!(check(r#"{"allowed_hosts":["a.example","b.example:8443"]}"#).is_ok());
        assert_eq!(field(check(r#"{"allowed_hosts":[]}"#)), "allowed_hosts");
        assert_eq!(field(check(r#"{"allowed_hosts":"a"}"#)), "allowed_hosts");
        assert_eq!(
            field(check(r#"{"allowed_hosts":["a",1]}"#)),
            "allowed_hosts[1]"
        );
        assert_eq!(
            field(check(r#"{"allowed_hosts":["https://a"]}"#)),
            "allowed_hosts[0]"
        );
    }
}
