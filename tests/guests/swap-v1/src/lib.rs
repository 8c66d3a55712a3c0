//! Test plugin for hot swapping, the source of both `swap-v1` and `swap-v2` (whose `Cargo.toml`
//! points its `[lib] path` here): the crate's version is the plugin's (`1.0.0`, `2.0.0`) and its
//! major number the value of the `x-plugin-version` header the plugin adds (`1`, `2`).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "step-plugin",
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::types::{Context, Error, Kind, PluginInfo, Request};

/// `1` for swap-v1, `2` for swap-v2.
const VERSION: &str = env!("CARGO_PKG_VERSION_MAJOR");

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "swap".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: concat!(
                "Test plugin: adds x-plugin-version: ",
                env!("CARGO_PKG_VERSION_MAJOR"),
                "."
            )
            .to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(_ctx: Context, _config: String, mut req: Request) -> Result<Request, Error> {
        req.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("x-plugin-version"));
        req.headers
            .push(("x-plugin-version".to_string(), VERSION.to_string()));
        Ok(req)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_its_major_version() {
        let info = Plugin::info();
        assert_eq!(info.version.split('.').next(), Some(VERSION));
        assert!(info.summary.ends_with(&format!(": {VERSION}.")));
        let ctx = Context {
            tenant: "t".into(),
            endpoint: "e".into(),
            event_id: "evt".into(),
            event_type: "test".into(),
            attempt: 1,
            timestamp: 0,
        };
        let req = Request {
            method: "POST".into(),
            url: "https://example.com/".into(),
            headers: vec![("X-Plugin-Version".into(), "0".into())],
            body: Vec::new(),
        };
        let out = Plugin::apply(ctx, "{}".into(), req).unwrap();
        assert_eq!(
            out.headers,
            vec![("x-plugin-version".to_string(), VERSION.to_string())]
        );
    }
}
