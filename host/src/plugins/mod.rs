//! The plugin runtime: runs wasmhook's authentication/security/transform steps and token
//! providers as sandboxed WebAssembly components (`wit/plugin.wit`).
//!
//! - [`PluginRuntime`]: ONE Wasmtime engine (pooling allocator sized to
//!   `max_concurrent_instances`, epoch interruption ticked by a background thread), one linker per
//!   world, the [`RuntimeLimits`]. [`PluginRuntime::load`] compiles a component (or loads its
//!   compiled code from a cache directory), works out its world, refuses unknown imports, and
//!   smoke-calls `info()`.
//! - [`LoadedPlugin`]: `validate`, `apply` (step plugins), `fetch_token` (token providers). Every
//!   call runs with a CPU deadline, a memory cap, and a WASI context that grants nothing (stderr
//!   captured for panic messages). `apply` may reuse a warm instance of the SAME endpoint (see
//!   [`InstanceReuse`]); everything else runs in a fresh instance and store.
//! - [`PluginRegistry`]: name → live plugin for built-ins, a watched directory and tenants'
//!   uploaded plugins; swaps replace an `Arc`, so calls in flight keep the old version.
//! - [`check_component`]: the report of `wasmhook plugin check FILE.wasm`.
//!
//! What plugins may ask of the host goes through [`HostServices`], implemented by the host's
//! pipeline. Plugin configuration holds secrets: nothing here logs it or puts it in errors.
//!
//! Submodules, one concern each: `engine` (engine + ticker), `bindings` (bindgen + type
//! conversions), `host_imports` (store state, import implementations, WASI), `cache` (compiled
//! code cache), `runtime` (load + calls), `warm` (idle instances kept for reuse), `traps` (error
//! messages), `registry`, `watcher`,
//! `check`, `allowed_hosts`.

mod allowed_hosts;
mod bindings;
mod cache;
mod check;
mod engine;
mod error;
mod host_imports;
mod registry;
mod runtime;
mod services;
mod traps;
mod types;
mod warm;
mod watcher;

pub use allowed_hosts::allowed_hosts_from_config;
pub use cache::CacheOutcome;
pub use check::{CheckReport, check_component};
pub use engine::{EPOCH_TICK, InstanceReuse, RuntimeLimits};
pub use error::{LoadError, PluginError};
pub use registry::{
    MAX_COMPONENT_NESTING, PluginEvent, PluginRegistry, PluginSource, PluginState, PluginStatus,
    QuotaError, StripError, TenantPluginLimits, TenantUploads, custom_section_bytes, read_stripped,
    strip_custom_sections, validate_plugin_name,
};
pub use runtime::{LoadedPlugin, PluginRuntime, WALL_CLOCK_ALLOWANCE, World};
pub use services::{HostServices, NoHostServices};
pub use types::{CallContext, HttpRequest, HttpResponse, LogLevel, PluginInfo, PluginKind, Token};
pub use watcher::WatchGuard;
