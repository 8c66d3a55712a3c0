//! Compiling components, with an on-disk cache of compiled code.
//!
//! Cache files are named `<sha256 of the component>-<hex of the engine's
//! precompile_compatibility_hash>.cwasm`, so a file is only ever looked up for the exact bytes it
//! was compiled from and by an engine with a compatible configuration (a Wasmtime upgrade or an
//! engine setting change yields a different name; stale files are simply not used).
//!
//! Files are written to a temporary name and renamed into place, so a reader never sees a
//! partial file.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::{LoadError, chain};

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Compiled code was read from the cache directory.
    Hit,
    /// Compiled now and written to the cache directory.
    Compiled,
    /// Compiled now; no cache directory (or it could not be written).
    CompiledUncached,
}

/// A compiled component and how long it took to get it.
pub(crate) struct Compiled {
    pub(crate) component: Component,
    pub(crate) outcome: CacheOutcome,
    pub(crate) elapsed: Duration,
}

/// Hex string of the engine's compatibility hash (part of the cache file name).
pub(crate) fn engine_hash_hex(engine: &Engine) -> String {
    // DefaultHasher::new() uses fixed keys: stable for a given build of the host, which is all
    // the cache needs (a different build has a different Wasmtime version check anyway).
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Path of the cache file for a component with this sha256.
pub(crate) fn cache_path(cache_dir: &Path, sha256: &str, engine_hash: &str) -> PathBuf {
    cache_dir.join(format!("{sha256}-{engine_hash}.cwasm"))
}

/// Checks the 8-byte header: `\0asm` then the component layer/version (not a core module).
pub(crate) fn check_header(plugin: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let not = |reason: String| LoadError::NotAComponent {
        plugin: plugin.to_string(),
        reason,
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not(format!(
            "the {} bytes do not start with the WebAssembly magic number `\\0asm`",
            bytes.len()
        )));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(not(
            "it is a core WebAssembly module; plugins must be components (build for \
             wasm32-wasip2, or run `wasm-tools component new`)"
                .to_string(),
        )),
        [_, _, 1, 0] => Ok(()),
        _ => Err(not(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        ))),
    }
}

/// Compiles `bytes` or loads the compiled code from `cache_dir`. Blocking: call it on
/// `spawn_blocking`.
pub(crate) fn load_or_compile(
    engine: &Engine,
    plugin: &str,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<Compiled, LoadError> {
    let started = Instant::now();
    check_header(plugin, bytes)?;
    let Some(dir) = cache_dir else {
        let component = Component::new(engine, bytes).map_err(|e| compile_error(plugin, &e))?;
        return Ok(Compiled {
            component,
            outcome: CacheOutcome::CompiledUncached,
            elapsed: started.elapsed(),
        });
    };

    let path = cache_path(dir, sha256, &engine_hash_hex(engine));
    if path.is_file() {
        // SAFETY: `deserialize_file` trusts the file to be compiled code produced by a
        // compatible Wasmtime: it maps it and runs it. The file is in our own cache directory
        // (which the operator must not let others write), under a name derived from the sha256
        // of the component and the engine's compatibility hash, and we only ever create such
        // files from `Engine::precompile_component` output, atomically (temporary file +
        // rename), so it is complete and was produced by us for these exact bytes. Wasmtime
        // also checks its header (version, engine configuration) before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::debug!(plugin, path = %path.display(), "compiled code cache hit");
                return Ok(Compiled {
                    component,
                    outcome: CacheOutcome::Hit,
                    elapsed: started.elapsed(),
                });
            }
            Err(e) => {
                tracing::warn!(plugin, path = %path.display(), error = %chain(&e),
                    "unusable compiled code cache file; recompiling");
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    let serialized = engine
        .precompile_component(bytes)
        .map_err(|e| compile_error(plugin, &e))?;
    // SAFETY: these bytes were produced just now by `precompile_component` of this engine.
    let component = unsafe { Component::deserialize(engine, &serialized) }
        .map_err(|e| compile_error(plugin, &e))?;
    let outcome = match write_atomically(dir, &path, &serialized) {
        Ok(()) => CacheOutcome::Compiled,
        Err(e) => {
            tracing::warn!(plugin, dir = %dir.display(), error = %e,
                "cannot write the compiled code cache; continuing without it");
            CacheOutcome::CompiledUncached
        }
    };
    Ok(Compiled {
        component,
        outcome,
        elapsed: started.elapsed(),
    })
}

fn compile_error(plugin: &str, e: &wasmtime::Error) -> LoadError {
    LoadError::Compile {
        plugin: plugin.to_string(),
        reason: chain(e),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        unique()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
