//! Hostile test plugin: `apply` panics (a trap in the component), to check the host survives it.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "step-plugin",
});

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::types::{Context, Error, Kind, PluginInfo, Request};

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "panic-step".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: apply panics.".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(_ctx: Context, _config: String, _req: Request) -> Result<Request, Error> {
        panic!("hostile plugin panicked on purpose");
    }
}

export!(Plugin);
