//! End-to-end tests of wasmhook: real engines, real SQLite files, real Wasm components, real
//! HTTP/TLS receivers on 127.0.0.1.

mod support;

mod api;
mod cluster;
mod console;
mod crash;
mod delivery;
mod event_types;
mod hardening_input;
mod hardening_net;
mod methods;
mod operations;
mod plugin_registry;
mod plugin_runtime;
mod plugins;
mod recovery;
mod rotation;
mod secrets;
mod staged_certificates;
mod store_backends;
mod tls;
mod window;
