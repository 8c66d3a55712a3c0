//! Hostile test plugin: `apply` loops forever, to check the host's CPU deadline (epoch/fuel).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "step-plugin",
});

use exports::wasmhook::plugin::step::Guest;
use std::hint::black_box;
use wasmhook::plugin::types::{Context, Error, Kind, PluginInfo, Request};

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "spin-forever".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: apply never returns.".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(_ctx: Context, _config: String, req: Request) -> Result<Request, Error> {
        let mut counter = 0u64;
        loop {
            counter = black_box(counter.wrapping_add(1));
            if black_box(false) {
                break;
            }
        }
        black_box(counter);
        Ok(req)
    }
}

export!(Plugin);
