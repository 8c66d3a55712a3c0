//! Errors of the plugin runtime.
//!
//! [`PluginError`] is what a call (`validate`, `apply`, `fetch_token`, `resolve`) fails with;
//! [`LoadError`] is why a component could not be loaded, stored or watched.
//! Messages never contain plugin configuration (it holds secrets).

use serde::Serialize;

use super::types::PluginKind;

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginError {
    /// The plugin said its configuration is wrong (not retried).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The plugin reported a passing failure (the attempt is retried later).
    #[error("transient failure: {0}")]
    Transient(String),
    /// The plugin reported a failure that retrying will not fix.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The plugin trapped: CPU deadline, memory limit, panic, stack overflow, other trap.
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// What happened, for humans.
        reason: String,
    },
    /// No plugin by that name is visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// The plugin could not be run at all (failed to load, failed to instantiate).
    #[error("plugin `{plugin}` is unavailable: {reason}")]
    Unavailable {
        /// The plugin's name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The operation does not exist for this kind of plugin (`apply` on a token provider).
    #[error(
        "plugin `{plugin}` (kind {actual}) does not support {operation}: it needs a {expected} plugin"
    )]
    WrongKind {
        /// The plugin's name.
        plugin: String,
        /// What was attempted (`apply`, `fetch_token`).
        operation: String,
        /// What kind the operation needs (`step`, `token-provider`).
        expected: String,
        /// What the plugin is.
        actual: PluginKind,
    },
    /// The plugin returned more than the runtime accepts (`max_body_bytes`).
    #[error("plugin `{plugin}` returned {what} of {size} bytes, above the limit of {limit} bytes")]
    OutputTooLarge {
        /// The plugin's name.
        plugin: String,
        /// What was too large (`a request body`, `a token`).
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl PluginError {
    /// Whether a later attempt may succeed (transient failures, plugin temporarily unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PluginError::Transient(_) | PluginError::Unavailable { .. }
        )
    }
}

/// Why a component could not be loaded, persisted or watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (garbage, or a core module).
    #[error("plugin `{plugin}` is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The plugin's name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The component failed validation or compilation.
    #[error("plugin `{plugin}` failed to compile: {reason}")]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// The compiler's message.
        reason: String,
    },
    /// The component targets neither `step-plugin` nor `token-plugin`, or imports something
    /// the host does not provide.
    #[error("plugin `{plugin}` does not fit a wasmhook world: {reason}")]
    WrongWorld {
        /// The plugin's name.
        plugin: String,
        /// What is wrong, for humans (names the unknown imports / missing exports).
        reason: String,
        /// Imports the host does not provide (`evil:escape/sockets`).
        unknown_imports: Vec<String>,
    },
    /// The smoke call of `info()` failed, or its answer does not fit the world.
    #[error("plugin `{plugin}`: info() failed: {reason}")]
    InfoFailed {
        /// The plugin's name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A plugin or tenant name breaks the naming rules.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{context}: {reason}")]
    Io {
        /// What was being done (`writing /var/lib/x.wasm`).
        context: String,
        /// The OS error.
        reason: String,
    },
    /// The directory watcher could not be set up.
    #[error("cannot watch {path}: {reason}")]
    Watch {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// A limit of the registry was hit (component size, plugins per tenant).
    #[error("{0}")]
    Limit(String),
    /// The runtime itself could not be built (engine configuration).
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

impl LoadError {
    pub(crate) fn io(context: impl Into<String>, err: &std::io::Error) -> Self {
        LoadError::Io {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}

/// Formats a wasmtime error with its whole chain of causes on one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in err.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
