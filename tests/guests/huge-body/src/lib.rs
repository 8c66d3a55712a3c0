//! Hostile test plugin: `apply` returns a 100 MiB body, to check the host's limits on results.

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
            name: "huge-body".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: apply returns a 100 MiB body.".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(_ctx: Context, _config: String, mut req: Request) -> Result<Request, Error> {
        req.body = black_box(vec![b'x'; black_box(100 * 1024 * 1024)]);
        Ok(req)
    }
}

export!(Plugin);
