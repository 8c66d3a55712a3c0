//! wasmhook: a webhook delivery engine whose authentication and security methods are sandboxed
//! WebAssembly components.
//!
//! Data flows one way: [`server`] wires [`api`] (thin HTTP) over [`engine`] (the use cases),
//! which drives [`store`] → [`dispatch`] → [`pipeline`] (running [`plugins`]) → [`http`] →
//! [`store`]. See the README's architecture section.

pub mod api;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod dispatch;
pub mod engine;
pub mod event_types;
pub mod http;
pub mod jose;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod mtls;
pub mod pipeline;
pub mod plugins;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tls;
pub mod token_failures;

/// Wasm components built from this repository by the build script.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// Path of the guest component built from crate `name` (tests and the demo use these).
    pub fn path(name: &str) -> Option<&'static str> {
        GUEST_COMPONENTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
    }
}
