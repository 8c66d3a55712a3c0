//! `wasmhook plugin check FILE.wasm`: what a component is and whether it behaves, under the same
//! limits as in production.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::LoadError;
use super::runtime::{PluginRuntime, World};
use super::services::NoHostServices;
use super::types::PluginInfo;

/// The printable result of [`check_component`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The world the component targets.
    pub world: World,
    /// What `info()` returned.
    pub info: PluginInfo,
    /// Hex sha256 of the component.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size_bytes: usize,
    /// The component's imports (all provided by the host, or the check would have failed).
    pub imports: Vec<String>,
    /// The component's exports.
    pub exports: Vec<String>,
    /// Compile time.
    pub compile_time: Duration,
    /// Time of a second `info()` call in a fresh instance.
    pub info_call_time: Duration,
    /// Outcome of `validate("{}")`: `Ok` or the plugin's error (an `invalid config` answer is
    /// normal for plugins with required fields).
    pub validate_empty: Result<(), String>,
    /// Time of the `validate("{}")` call.
    pub validate_call_time: Duration,
    /// Whether the smoke calls ran without trapping.
    pub ok: bool,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "world:        {}", self.world)?;
        writeln!(f, "name:         {}", self.info.name)?;
        writeln!(f, "version:      {}", self.info.version)?;
        writeln!(f, "kind:         {}", self.info.kind)?;
        writeln!(f, "summary:      {}", self.info.summary)?;
        writeln!(f, "sha256:       {}", self.sha256)?;
        writeln!(f, "size:         {} bytes", self.size_bytes)?;
        writeln!(f, "compile:      {:?}", self.compile_time)?;
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  - {i}")?;
        }
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  - {e}")?;
        }
        let schema = serde_json::to_string_pretty(&self.info.config_schema)
            .unwrap_or_else(|_| "<unprintable>".into());
        writeln!(f, "config schema:")?;
        for line in schema.lines() {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "smoke calls:")?;
        writeln!(f, "  info()         ok ({:?})", self.info_call_time)?;
        match &self.validate_empty {
            Ok(()) => writeln!(f, "  validate(\"{{}}\") ok ({:?})", self.validate_call_time)?,
            Err(e) => writeln!(
                f,
                "  validate(\"{{}}\") -> {e} ({:?})",
                self.validate_call_time
            )?,
        }
        write!(f, "result:       {}", if self.ok { "OK" } else { "FAILED" })
    }
}

/// Loads `bytes` (no cache), reports its world, info and config schema, and smoke-calls
/// `info()` and `validate("{}")` under the runtime's limits. Load failures (not a component,
/// unknown imports, `info()` failing) are errors; a trapping `validate` makes `ok` false.
pub async fn check_component(
    runtime: &PluginRuntime,
    bytes: &[u8],
) -> Result<CheckReport, LoadError> {
    let plugin = runtime.load("check", bytes, None).await?;
    let started = Instant::now();
    let info_again = plugin.call_info().await;
    let info_call_time = started.elapsed();
    let info_ok = info_again.is_ok();

    let started = Instant::now();
    let validate = plugin
        .validate("{}", std::sync::Arc::new(NoHostServices))
        .await;
    let validate_call_time = started.elapsed();
    let validate_ok = !matches!(
        validate,
        Err(super::PluginError::Trap { .. } | super::PluginError::Unavailable { .. })
    );
    let (imports, exports) = plugin.imports_exports();
    Ok(CheckReport {
        world: plugin.world(),
        info: plugin.info().clone(),
        sha256: plugin.sha256().to_string(),
        size_bytes: bytes.len(),
        imports,
        exports,
        compile_time: plugin.compile_time(),
        info_call_time,
        validate_empty: validate.map_err(|e| e.to_string()),
        validate_call_time,
        ok: info_ok && validate_ok,
    })
}
