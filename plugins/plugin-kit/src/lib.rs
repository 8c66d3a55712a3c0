//! `wasmhook-plugin-kit`: the code the wasmhook guests (built-in plugins, the tenant example)
//! share. It is linked into each component, so a plugin stays a single self-contained component.
//!
//! The kit generates the types of `wasmhook:plugin/types` (and only those: no imports, no
//! exports). A guest reuses them through the `with` option of its own bindings, so the kit's
//! functions take and return the guest's `Request`, `Response` and `Error`:
//!
//! ```text
//! wit_bindgen::generate!({
//!     path: "../../wit",
//!     world: "step-plugin",
//!     with: { "wasmhook:plugin/types@0.1.0": wasmhook_plugin_kit::types },
//! });
//! ```
//!
//! - [`config`]: reading the JSON config object, with `invalid-config("<field>: <why>")` errors
//!   that never echo a value (configs hold secrets).
//! - [`headers`]: header name and value checks, case-insensitive header replacement.
//! - [`token`]: a token route's answer: status to transient / permanent error, the token, its
//!   lifetime, remote text with secrets blanked out.
//! - [`form`]: `application/x-www-form-urlencoded` bodies.
//! - [`testing`]: fixtures for the guests' unit tests.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "package wasmhook:plugin-kit;
             world kit { import wasmhook:plugin/types@0.1.0; }",
    // The contract is another package than the inline world's: generate its types here.
    generate_all,
});

/// The types of the plugin contract (`wasmhook:plugin/types`).
pub use wasmhook::plugin::types;

pub mod config;
pub mod form;
pub mod headers;
pub mod testing;
pub mod token;
