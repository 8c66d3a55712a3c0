//! Test plugin for hot swapping: version 2.0.0 adds `x-plugin-version: 2` (swap-v1 adds 1).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "step-plugin",
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::types::{Context, Error, PluginInfo, Kind, Request};

const VERSION: &str = "2";

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "swap".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: adds x-plugin-version: 2.".to_string(),
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
