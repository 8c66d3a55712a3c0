//! Hostile test plugin: `apply` allocates and touches 1 GiB, to check the host's memory cap.

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
            name: "grow-memory".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: apply allocates 1 GiB.".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(_ctx: Context, _config: String, mut req: Request) -> Result<Request, Error> {
        // 1 GiB of ones: the allocation grows linear memory and the fill touches every page.
        let size = black_box(1usize << 30);
        let mut big = vec![1u8; size];
        // Touch one byte per 64 KiB page as well, in case the fill were elided.
        for i in (0..big.len()).step_by(65536) {
            big[i] = black_box(2);
        }
        let big = black_box(big);
        req.headers
            .push(("x-grow-memory".to_string(), big[size - 1].to_string()));
        Ok(req)
    }
}

export!(Plugin);
