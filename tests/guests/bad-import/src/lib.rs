//! Hostile test plugin: imports `evil:escape/sockets`, an interface the host does not provide, to
//! check the host refuses to load (instantiate) it.

wit_bindgen::generate!({
    // The contract first: the local world (wit/world.wit) includes its `step-plugin` world.
    path: ["../../../wit", "wit"],
    world: "evil:escape/bad-import",
    // The contract is a dependency package here: generate its bindings too.
    generate_all,
});

use evil::escape::sockets;
use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::types::{Context, Error, Kind, PluginInfo, Request};

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "bad-import".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: imports an interface the host does not provide.".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(_ctx: Context, _config: String, mut req: Request) -> Result<Request, Error> {
        let socket = sockets::open("evil.example.com");
        req.headers
            .push(("x-evil-socket".to_string(), socket.to_string()));
        Ok(req)
    }
}

export!(Plugin);
