//! Scratch crate: compiles host/src/plugins/ on its own while the host is being written.
#[path = "../../host/src/plugins/mod.rs"]
pub mod plugins;
