//! Test plugin: counts the calls its instance has served and says so in `x-instance-calls`, so a
//! test can see whether the host reused an instance. An event of type `panic` makes it panic after
//! counting; one of type `stderr` makes it write a line to stderr and carry on.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "step-plugin",
});

use std::sync::atomic::{AtomicU32, Ordering};

use exports::wasmhook::plugin::step::Guest;
use wasmhook::plugin::types::{Context, Error, Kind, PluginInfo, Request};

/// Calls served by this instance (module state survives only while the instance does).
static CALLS: AtomicU32 = AtomicU32::new(0);

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "call-counter".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: Kind::Transform,
            summary: "Test plugin: reports how many calls its instance has served.".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
        }
    }

    fn validate(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn apply(ctx: Context, _config: String, mut req: Request) -> Result<Request, Error> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match ctx.event_type.as_str() {
            "panic" => panic!("call-counter panicked on request"),
            "stderr" => eprintln!("call-counter wrote to stderr"),
            _ => {}
        }
        req.headers.retain(|(name, _)| name != "x-instance-calls");
        req.headers
            .push(("x-instance-calls".to_string(), calls.to_string()));
        Ok(req)
    }
}

export!(Plugin);
