//! `application/x-www-form-urlencoded` (token requests of OAuth2).

/// Encodes one name or value: unreserved characters kept, space as `+`, the rest `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

/// A form body: `name=value` pairs, encoded, joined by `&`, in order.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encodes() {
        assert_eq!(form_encode("a b&c=d/é~-._"), "a+b%26c%3Dd%2F%C3%A9~-._");
        assert_eq!(form_encode("s3:cr+t%"), "s3%3Acr%2Bt%25");
        assert_eq!(
            form_body(&[("grant_type", "client_credentials"), ("scope", "a b")]),
            "grant_type=client_credentials&scope=a+b"
        );
        assert_eq!(form_body(&[]), "");
    }
}
