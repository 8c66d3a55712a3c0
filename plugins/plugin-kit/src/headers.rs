//! HTTP headers: name and value checks for configs, and changes to a request's headers.

use crate::config::invalid;
use crate::types::Error;

/// An RFC 9110 token: header names, auth schemes. Never empty.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The config field `field` holds a header name.
pub fn check_header_name(field: &str, name: &str) -> Result<(), Error> {
    if !is_token(name) {
        return Err(invalid(field, "must be a valid HTTP header name"));
    }
    Ok(())
}

/// The config field `field` holds a header value: no control characters but tabs.
pub fn check_header_value(field: &str, value: &str) -> Result<(), Error> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Replaces the header `name` (case-insensitively) with `value`, keeping the others in order.
pub fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_names_and_values() {
        for ok in ["x-api-key", "Authorization", "a!#$%&'*+-.^_`|~9"] {
            assert!(is_token(ok), "{ok}");
            assert!(check_header_name("header", ok).is_ok(), "{ok}");
        }
        for bad in ["", "bad header", "a:b", "é", "a\n"] {
            assert!(!is_token(bad), "{bad}");
            match check_header_name("header", bad) {
                Err(Error::InvalidConfig(m)) => {
                    assert_eq!(m, "header: must be a valid HTTP header name");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(check_header_value("key", "a\tb c").is_ok());
        match check_header_value("key", "s3cret\r\n") {
            Err(Error::InvalidConfig(m)) => {
                assert_eq!(m, "key: must not contain control characters");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replaces_the_header_case_insensitively() {
        let mut headers = vec![
            ("X-Api-Key".to_string(), "old".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
            ("x-api-key".to_string(), "older".to_string()),
        ];
        set_header(&mut headers, "x-api-key", "k1".to_string());
        assert_eq!(
            headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-api-key".to_string(), "k1".to_string()),
            ]
        );
    }
}
