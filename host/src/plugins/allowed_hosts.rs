//! Which hosts a token provider may reach through `outbound.send`, from its configuration.

/// Parses the outbound allow-list from a token provider's config (JSON):
///
/// - `allowed_hosts`: an array of `"host"` or `"host:port"` strings, if present;
/// - else the host (and explicit port, if any) of the `token_url` string;
/// - else nothing: outbound is denied entirely.
///
/// Hosts are lower-cased; entries that are not strings or are empty are ignored. An
/// `allowed_hosts` field that is present but not an array allows nothing (it does not fall back to
/// `token_url`).
pub fn allowed_hosts_from_config(config: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(config)
    else {
        return Vec::new();
    };
    if let Some(list) = map.get("allowed_hosts") {
        let mut hosts: Vec<String> = list
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty() && !s.contains(['/', '@', ' ']))
                    .collect()
            })
            .unwrap_or_default();
        hosts.dedup();
        return hosts;
    }
    map.get("token_url")
        .and_then(|v| v.as_str())
        .and_then(host_of_url)
        .into_iter()
        .collect()
}

/// `host` or `host:port` (when the URL gives a port) of an absolute http(s) URL.
fn host_of_url(url: &str) -> Option<String> {
    let uri: http::Uri = url.trim().parse().ok()?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return None,
    }
    let host = uri.host()?.to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::allowed_hosts_from_config as parse;

    #[test]
    fn explicit_list_wins() {
        assert_eq!(
            parse(
                r#"{"allowed_hosts":["Auth.Example.com","idp:8443"],"token_url":"https://x.test/t"}"#
            ),
            vec!["auth.example.com", "idp:8443"]
        );
    }

    #[test]
    fn falls_back_to_token_url() {
        assert_eq!(
            parse(r#"{"token_url":"https://Auth.example.com/oauth/token"}"#),
            vec!["auth.example.com"]
        );
        assert_eq!(
            parse(r#"{"token_url":"http://idp.test:8080/t"}"#),
            vec!["idp.test:8080"]
        );
    }

    #[test]
    fn nothing_denies() {
        assert!(parse("{}").is_empty());
        assert!(parse("not json").is_empty());
        assert!(parse(r#"{"token_url":"ftp://x/y"}"#).is_empty());
        assert!(parse(r#"{"allowed_hosts":"x.test","token_url":"https://y.test/"}"#).is_empty());
    }
}
