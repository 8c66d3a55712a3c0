//! [`PluginRegistry`]: name → live plugin, for built-ins, directory plugins and tenant plugins.
//!
//! Names, as endpoints write them:
//! - `api-key`: a global plugin. Built-ins are added by the host ([`PluginRegistry::add_builtin`]);
//!   directory plugins come from `*.wasm` files of a watched directory, named after the file
//!   (`x.wasm` → `x`; underscores become hyphens, so `api_key.wasm` is `api-key`). **A directory
//!   plugin with a built-in's name replaces the built-in** (operators can upgrade a built-in
//!   without a new host release); when its file is removed, the built-in is used again.
//! - `tenant:x`: tenant plugin `x` of the calling tenant. Only the tenant's own plugins are
//!   visible: another tenant's is "not loaded", exactly as if it did not exist.
//!
//! A swap replaces an `Arc<LoadedPlugin>`: calls in flight keep the version they resolved.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::{LoadError, PluginError};
use super::runtime::{LoadedPlugin, PluginRuntime};
use super::types::PluginInfo;

/// Limits on tenants' plugins (the `api.*` settings of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPluginLimits {
    /// Largest component, in bytes (`api.max_plugin_mib`).
    pub max_component_bytes: usize,
    /// Plugins one tenant may have (`api.max_plugins_per_tenant`).
    pub max_plugins: usize,
    /// Bytes of all the plugins of one tenant together (`api.max_plugin_bytes_per_tenant_mib`).
    pub max_total_bytes: usize,
    /// Uploads received and compiled at once (`api.max_concurrent_uploads`).
    pub max_concurrent_uploads: usize,
}

impl Default for TenantPluginLimits {
    /// The defaults of the `api.*` settings.
    fn default() -> Self {
        Self::from_config(&crate::config::ApiConfig::default())
    }
}

impl TenantPluginLimits {
    /// The limits `api` sets.
    pub fn from_config(api: &crate::config::ApiConfig) -> Self {
        Self {
            max_component_bytes: api.max_plugin_mib.saturating_mul(1 << 20),
            max_plugins: api.max_plugins_per_tenant,
            max_total_bytes: api.max_plugin_bytes_per_tenant_mib.saturating_mul(1 << 20),
            max_concurrent_uploads: api.max_concurrent_uploads.max(1),
        }
    }
}

/// Admission of tenants' uploads: the limits, and one permit per upload in progress (an upload
/// holds its component in memory while it is compiled, so only a few run at once).
#[derive(Debug)]
pub struct TenantUploads {
    /// The limits.
    pub limits: TenantPluginLimits,
    /// `limits.max_concurrent_uploads` permits.
    pub permits: tokio::sync::Semaphore,
}

/// A tenant plugin that would break a [`TenantPluginLimits`] quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The component alone is larger than any plugin may be.
    #[error(
        "the component is {size} bytes, above the limit of {limit} bytes per plugin (api.max_plugin_mib)"
    )]
    ComponentTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The tenant already has as many plugins as it may.
    #[error(
        "the tenant already has {count} plugins, the most it may have (api.max_plugins_per_tenant = {limit}); delete one or replace one of the same name"
    )]
    TooManyPlugins {
        /// Its plugins.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The tenant's plugins together would take more bytes than it may store.
    #[error(
        "storing this component ({size} bytes) would bring the tenant's plugins to {total} bytes, above its quota of {limit} bytes (api.max_plugin_bytes_per_tenant_mib)"
    )]
    TooManyBytes {
        /// The component's size.
        size: usize,
        /// The tenant's plugins with this one.
        total: usize,
        /// The quota.
        limit: usize,
    },
}

/// Why [`strip_custom_sections`] kept the bytes as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripError {
    /// The bytes are not framed as a WebAssembly binary (the compiler says what is wrong).
    #[error("not a WebAssembly binary")]
    Malformed,
    /// Components nested deeper than the stripper follows.
    #[error("components are nested more than {MAX_COMPONENT_NESTING} levels deep")]
    TooDeep,
}

/// Nesting of components (and the modules inside them) that [`strip_custom_sections`] follows.
pub const MAX_COMPONENT_NESTING: usize = 32;

/// The component (or core module) `bytes` without its custom sections, nor those of the modules
/// and components nested in it. Custom sections (`name`, `producers`, `component-name`,
/// `.debug_*`, anything a toolchain or a padder adds) carry nothing the engine runs, so tenant
/// uploads are stripped before they are compiled, hashed and stored: a padded component costs
/// neither memory nor quota. Borrowed when there was nothing to strip.
pub fn strip_custom_sections(bytes: &[u8]) -> Result<Cow<'_, [u8]>, StripError> {
    if custom_section_bytes(bytes)? == 0 {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    strip_into(bytes, 0, &mut out)?;
    Ok(Cow::Owned(out))
}

/// [`strip_custom_sections`] of the `len` bytes of `file` (from its start), reading only what
/// is kept: the component's own custom sections are skipped, never read, so a component padded
/// with them costs no memory. The modules and components nested in it are read whole, then
/// stripped. Bytes that are not WebAssembly (or whose sections overrun `len`) are returned as
/// they are, for the compiler to explain.
pub fn read_stripped<R: std::io::Read + std::io::Seek>(
    file: R,
    len: u64,
) -> std::io::Result<Result<Vec<u8>, StripError>> {
    use std::io::{BufReader, Read, Seek};
    let mut r = BufReader::with_capacity(64 * 1024, file);
    r.rewind()?;
    let whole = |r: &mut BufReader<R>| -> std::io::Result<Vec<u8>> {
        r.rewind()?;
        let mut bytes = Vec::with_capacity(len as usize);
        r.take(len).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let mut preamble = [0u8; 8];
    if len < 8 || r.read_exact(&mut preamble).is_err() || &preamble[..4] != b"\0asm" {
        return whole(&mut r).map(Ok);
    }
    let component = preamble[6..8] == [1, 0];
    // Only touched pages cost memory: reserving the whole size avoids copies as it grows.
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&preamble);
    let mut pos: u64 = 8;
    while pos < len {
        let mut id = [0u8];
        r.read_exact(&mut id)?;
        let mut size: u64 = 0;
        let mut leb = 0;
        loop {
            let mut b = [0u8];
            if leb == 5 || pos + 1 + leb as u64 >= len {
                return whole(&mut r).map(Ok);
            }
            r.read_exact(&mut b)?;
            size |= u64::from(b[0] & 0x7f) << (7 * leb);
            leb += 1;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let payload_at = pos + 1 + leb as u64;
        if size > u64::from(u32::MAX) || payload_at + size > len {
            return whole(&mut r).map(Ok);
        }
        pos = payload_at + size;
        if id[0] == 0 {
            r.seek_relative(size as i64)?;
            continue;
        }
        // The section as it is (a nested module or component is stripped below).
        let start = out.len();
        out.push(id[0]);
        write_u32_leb(&mut out, size as u32);
        let payload = out.len();
        out.resize(payload + size as usize, 0);
        r.read_exact(&mut out[payload..])?;
        if component && matches!(id[0], 1 | 4) {
            let inner = &out[payload..];
            match count_custom(inner, 1) {
                Ok(0) => {}
                Ok(_) => {
                    let mut stripped = Vec::with_capacity(inner.len());
                    if let Err(e) = strip_into(inner, 1, &mut stripped) {
                        return Ok(Err(e));
                    }
                    out.truncate(start);
                    out.push(id[0]);
                    write_u32_leb(&mut out, stripped.len() as u32);
                    out.extend_from_slice(&stripped);
                }
                Err(StripError::Malformed) => return whole(&mut r).map(Ok),
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    Ok(Ok(out))
}

/// Bytes taken by the custom sections of `bytes` and of what is nested in it (see
/// [`strip_custom_sections`]).
pub fn custom_section_bytes(bytes: &[u8]) -> Result<usize, StripError> {
    count_custom(bytes, 0)
}

/// Appends `bytes` without custom sections to `out`.
fn strip_into(bytes: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), StripError> {
    let mut pos = header(bytes)?;
    let component = bytes[6..8] == [1, 0];
    out.extend_from_slice(&bytes[..pos]);
    while pos < bytes.len() {
        let (id, payload, end) = section(bytes, pos)?;
        match id {
            0 => {}
            // A nested core module (1) or component (4): strip it too.
            1 | 4 if component => {
                if depth >= MAX_COMPONENT_NESTING {
                    return Err(StripError::TooDeep);
                }
                let mut inner = Vec::with_capacity(payload.len());
                strip_into(payload, depth + 1, &mut inner)?;
                out.push(id);
                write_u32_leb(out, inner.len() as u32);
                out.extend_from_slice(&inner);
            }
            _ => out.extend_from_slice(&bytes[pos..end]),
        }
        pos = end;
    }
    Ok(())
}

/// Bytes taken by custom sections in `bytes`, at every level.
fn count_custom(bytes: &[u8], depth: usize) -> Result<usize, StripError> {
    let mut pos = header(bytes)?;
    let component = bytes[6..8] == [1, 0];
    let mut total = 0;
    while pos < bytes.len() {
        let (id, payload, end) = section(bytes, pos)?;
        match id {
            0 => total += end - pos,
            1 | 4 if component => {
                if depth >= MAX_COMPONENT_NESTING {
                    return Err(StripError::TooDeep);
                }
                total += count_custom(payload, depth + 1)?;
            }
            _ => {}
        }
        pos = end;
    }
    Ok(total)
}

/// Checks the preamble (`\0asm` and a version); the position of the first section.
fn header(bytes: &[u8]) -> Result<usize, StripError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(StripError::Malformed);
    }
    // A core module's version is `01 00 00 00`; a component's is `0d 00` with layer `01 00`.
    Ok(8)
}

/// The section at `pos`: its id, its payload, and where it ends.
fn section(bytes: &[u8], pos: usize) -> Result<(u8, &[u8], usize), StripError> {
    let id = bytes[pos];
    let (size, payload_at) = read_u32_leb(bytes, pos + 1)?;
    let end = payload_at
        .checked_add(size as usize)
        .filter(|end| *end <= bytes.len())
        .ok_or(StripError::Malformed)?;
    Ok((id, &bytes[payload_at..end], end))
}

/// An unsigned LEB128 `u32` at `at`; with the position after it.
fn read_u32_leb(bytes: &[u8], at: usize) -> Result<(u32, usize), StripError> {
    let mut value: u64 = 0;
    for i in 0..5 {
        let b = *bytes.get(at + i).ok_or(StripError::Malformed)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value)
                .map(|v| (v, at + i + 1))
                .map_err(|_| StripError::Malformed);
        }
    }
    Err(StripError::Malformed)
}

fn write_u32_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    /// Compiled into the host.
    BuiltIn,
    /// A `*.wasm` file of the watched plugin directory.
    Directory,
    /// Uploaded by this tenant.
    Tenant(String),
}

/// Whether the latest version of a plugin loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// The latest version is loaded and serving.
    Ready,
    /// The latest version failed to load (`last_error`); if `live`, the previous good version
    /// still serves.
    Failed,
}

/// What the registry knows about one plugin (for listings and the admin API).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginStatus {
    /// The name as endpoints write it (`api-key`, `tenant:x`).
    pub name: String,
    /// Where it comes from.
    pub source: PluginSource,
    /// `info()` of the serving version, if any.
    pub info: Option<PluginInfo>,
    /// sha256 of the serving version, if any.
    pub sha256: Option<String>,
    /// `ready`, or `failed` when the latest version did not load.
    pub status: PluginState,
    /// Why the latest version did not load.
    pub last_error: Option<String>,
    /// Whether a version is serving calls (true for `ready`; for `failed`, whether an older
    /// good version is still in use).
    pub live: bool,
    /// When the serving version was loaded, or the failure recorded (Unix seconds).
    pub loaded_at: i64,
    /// The file it was loaded from (directory plugins).
    pub path: Option<PathBuf>,
}

struct Slot {
    plugin: Option<Arc<LoadedPlugin>>,
    status: PluginStatus,
    /// sha256 of bytes that failed to load (not retried until they change).
    failed_sha256: Option<String>,
    /// Size of the latest version (tenant plugins: what counts against the tenant's quota).
    component_bytes: usize,
}

impl Slot {
    fn ready(
        name: String,
        source: PluginSource,
        plugin: Arc<LoadedPlugin>,
        path: Option<PathBuf>,
    ) -> Self {
        Slot {
            status: PluginStatus {
                name,
                source,
                info: Some(plugin.info().clone()),
                sha256: Some(plugin.sha256().to_string()),
                status: PluginState::Ready,
                last_error: None,
                live: true,
                loaded_at: now(),
                path,
            },
            plugin: Some(plugin),
            failed_sha256: None,
            component_bytes: 0,
        }
    }

    /// Records a failed load, keeping the previous good version (if any) in service.
    fn failed(
        previous: Option<Slot>,
        name: String,
        source: PluginSource,
        err: &LoadError,
        sha: String,
        path: Option<PathBuf>,
    ) -> Self {
        match previous {
            Some(mut slot) if slot.plugin.is_some() => {
                slot.status.status = PluginState::Failed;
                slot.status.last_error = Some(err.to_string());
                slot.status.loaded_at = now();
                slot.failed_sha256 = Some(sha);
                slot
            }
            _ => Slot {
                plugin: None,
                status: PluginStatus {
                    name,
                    source,
                    info: None,
                    sha256: None,
                    status: PluginState::Failed,
                    last_error: Some(err.to_string()),
                    live: false,
                    loaded_at: now(),
                    path,
                },
                failed_sha256: Some(sha),
                component_bytes: 0,
            },
        }
    }

    fn resolve(&self) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.plugin.clone().ok_or_else(|| PluginError::Unavailable {
            plugin: self.status.name.clone(),
            reason: self
                .status
                .last_error
                .clone()
                .unwrap_or_else(|| "it failed to load".into()),
        })
    }
}

#[derive(Default)]
struct Tables {
    builtins: HashMap<String, Slot>,
    directory: HashMap<String, Slot>,
    /// Directory plugins whose file was removed (for a clearer "not loaded" message).
    removed: HashSet<String>,
    tenants: HashMap<String, HashMap<String, Slot>>,
}

/// Name → live plugin. See the module documentation for naming and shadowing rules.
pub struct PluginRegistry {
    pub(crate) runtime: Arc<PluginRuntime>,
    cache_dir: PathBuf,
    tables: RwLock<Tables>,
    /// Serialises tenant uploads/deletes (store + table stay consistent).
    tenant_ops: tokio::sync::Mutex<()>,
    /// Limits and permits of tenant uploads (set once: [`Self::tenant_uploads`]).
    uploads: OnceLock<TenantUploads>,
    /// Incremented each time the directory loader has processed a batch of changes.
    pub(crate) watch_generation: tokio::sync::watch::Sender<u64>,
    /// Where the directory's load failures and swaps are reported (the operator's operational
    /// webhooks), once set.
    events: OnceLock<tokio::sync::mpsc::Sender<PluginEvent>>,
}

/// Something the operator should hear of about the plugins directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEvent {
    /// A file of the directory failed to load (the previous version, if any, stays live).
    LoadFailed {
        /// The plugin.
        plugin: String,
        /// Why.
        error: String,
        /// SHA-256 (hex) of the file that failed, when it could be read.
        sha256: Option<String>,
    },
    /// A new version of a directory plugin replaced the live one.
    Swapped {
        /// The plugin.
        plugin: String,
        /// SHA-256 (hex) of the new version.
        sha256: String,
        /// SHA-256 (hex) of the version it replaced.
        previous_sha256: String,
    },
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// Checks a plugin name: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn validate_plugin_name(name: &str) -> Result<(), LoadError> {
    let bad = |reason: &str| LoadError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !first_ok {
        return Err(bad("must start with a lower-case letter or a digit"));
    }
    if name.len() > 63 {
        return Err(bad("must be at most 63 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("may contain only a-z, 0-9 and '-'"));
    }
    Ok(())
}

/// Checks a tenant id before it becomes a directory name: `[A-Za-z0-9][A-Za-z0-9_-]{0,127}`.
fn validate_tenant(tenant: &str) -> Result<(), LoadError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 128
        && tenant.as_bytes()[0].is_ascii_alphanumeric()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LoadError::InvalidName {
            name: tenant.to_string(),
            reason: "tenant ids used for plugins may contain only A-Z, a-z, 0-9, '-' and '_' (at most 128)".into(),
        })
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Plugin name of a directory file (`api_key.wasm` → `api-key`); `None` for files to ignore.
pub(crate) fn directory_plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') {
        return None; // temporary files of atomic publishes, editor files
    }
    let stem = file.strip_suffix(".wasm")?;
    Some(stem.replace('_', "-"))
}

impl PluginRegistry {
    /// A registry using `runtime` and caching compiled code in `cache_dir`.
    pub fn new(runtime: Arc<PluginRuntime>, cache_dir: PathBuf) -> Arc<Self> {
        Arc::new(PluginRegistry {
            runtime,
            cache_dir,
            tables: RwLock::new(Tables::default()),
            tenant_ops: tokio::sync::Mutex::new(()),
            uploads: OnceLock::new(),
            watch_generation: tokio::sync::watch::Sender::new(0),
            events: OnceLock::new(),
        })
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads built-in plugin `name` from `bytes` (the host embeds them). A failure is recorded
    /// (status `failed`) and returned.
    pub async fn add_builtin(&self, name: &str, bytes: &'static [u8]) -> Result<(), LoadError> {
        validate_plugin_name(name)?;
        let sha = hex::encode(Sha256::digest(bytes));
        match self.runtime.load(name, bytes, Some(&self.cache_dir)).await {
            Ok(plugin) => {
                let slot = Slot::ready(name.to_string(), PluginSource::BuiltIn, plugin, None);
                self.write().builtins.insert(name.to_string(), slot);
                Ok(())
            }
            Err(e) => {
                tracing::error!(plugin = name, error = %e, "built-in plugin failed to load");
                let mut t = self.write();
                let prev = t.builtins.remove(name);
                let slot =
                    Slot::failed(prev, name.to_string(), PluginSource::BuiltIn, &e, sha, None);
                t.builtins.insert(name.to_string(), slot);
                Err(e)
            }
        }
    }

    /// Resolves `name` as an endpoint of `tenant` writes it: `api-key` (directory plugin, else
    /// built-in) or `tenant:x` (only `tenant`'s own).
    pub fn resolve(&self, tenant: &str, name: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        let t = self.read();
        if let Some(own) = name.strip_prefix("tenant:") {
            return match t.tenants.get(tenant).and_then(|m| m.get(own)) {
                Some(slot) => slot.resolve(),
                None => Err(PluginError::NotFound(format!(
                    "plugin `tenant:{own}` is not loaded for this tenant"
                ))),
            };
        }
        let dir = t.directory.get(name);
        if let Some(plugin) = dir.and_then(|s| s.plugin.clone()) {
            return Ok(plugin);
        }
        if let Some(plugin) = t.builtins.get(name).and_then(|s| s.plugin.clone()) {
            return Ok(plugin);
        }
        if let Some(slot) = dir.or_else(|| t.builtins.get(name)) {
            return slot.resolve();
        }
        if t.removed.contains(name) {
            return Err(PluginError::NotFound(format!(
                "plugin `{name}` is not loaded (its file was removed)"
            )));
        }
        Err(PluginError::NotFound(format!(
            "plugin `{name}` is not loaded"
        )))
    }

    /// Global plugins (built-ins and directory plugins; a built-in replaced by a directory
    /// plugin is listed once, as the directory plugin), or with `Some(tenant)` that tenant's own
    /// plugins. Sorted by name.
    pub fn list(&self, tenant: Option<&str>) -> Vec<PluginStatus> {
        let t = self.read();
        let mut out: BTreeMap<String, PluginStatus> = BTreeMap::new();
        match tenant {
            Some(tenant) => {
                if let Some(m) = t.tenants.get(tenant) {
                    for slot in m.values() {
                        out.insert(slot.status.name.clone(), slot.status.clone());
                    }
                }
            }
            None => {
                for (name, slot) in &t.builtins {
                    out.insert(name.clone(), slot.status.clone());
                }
                for (name, slot) in &t.directory {
                    out.insert(name.clone(), slot.status.clone());
                }
            }
        }
        out.into_values().collect()
    }

    // ---- directory plugins (driven by `watcher`) ----

    /// Loads (or reloads) every `*.wasm` of `dir` whose content changed, and drops directory
    /// plugins of `dir` whose file is gone. Called by the single loader task.
    pub(crate) async fn rescan_directory(&self, dir: &Path) -> Result<(), LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            LoadError::io(format!("reading plugin directory {}", dir.display()), &e)
        })?;
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = directory_plugin_name(&path) else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            if let Err(e) = validate_plugin_name(&name) {
                tracing::warn!(path = %path.display(), error = %e, "ignoring plugin file with an invalid name");
                continue;
            }
            if let Some(other) = files.get(&name) {
                tracing::warn!(path = %path.display(), other = %other.display(),
                    "two plugin files map to the same name; ignoring this one");
                continue;
            }
            files.insert(name, path);
        }

        for (name, path) in &files {
            self.load_directory_file(name, path).await;
        }

        // Files that are gone: only slots loaded from this directory.
        let mut t = self.write();
        let gone: Vec<String> = t
            .directory
            .iter()
            .filter(|(name, slot)| {
                !files.contains_key(*name)
                    && slot.status.path.as_deref().and_then(Path::parent) == Some(dir)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            t.directory.remove(&name);
            t.removed.insert(name.clone());
            tracing::info!(plugin = %name, "plugin file removed; plugin unloaded");
        }
        Ok(())
    }

    async fn load_directory_file(&self, name: &str, path: &Path) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return, // raced with a removal
            Err(e) => {
                let err = LoadError::io(format!("reading {}", path.display()), &e);
                self.record_directory_failure(name, path, &err, String::new());
                return;
            }
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        {
            let t = self.read();
            if let Some(slot) = t.directory.get(name) {
                let unchanged = slot.status.sha256.as_deref() == Some(sha.as_str())
                    && slot.status.status == PluginState::Ready;
                if unchanged || slot.failed_sha256.as_deref() == Some(sha.as_str()) {
                    return;
                }
            }
        }
        match self.runtime.load(name, &bytes, Some(&self.cache_dir)).await {
            Ok(plugin) => {
                let mut t = self.write();
                t.removed.remove(name);
                // A version that was serving (not a file that failed to load) is being swapped.
                let serving_sha256 = t
                    .directory
                    .get(name)
                    .filter(|slot| slot.status.live)
                    .and_then(|slot| slot.status.sha256.clone());
                let replaced = t
                    .directory
                    .insert(
                        name.to_string(),
                        Slot::ready(
                            name.to_string(),
                            PluginSource::Directory,
                            plugin,
                            Some(path.to_path_buf()),
                        ),
                    )
                    .is_some();
                tracing::info!(plugin = name, sha256 = %sha, replaced, "directory plugin is live");
                drop(t);
                if let Some(previous_sha256) = serving_sha256 {
                    self.report(PluginEvent::Swapped {
                        plugin: name.to_string(),
                        sha256: sha,
                        previous_sha256,
                    });
                }
            }
            Err(e) => {
                tracing::warn!(plugin = name, path = %path.display(), error = %e,
                    "directory plugin failed to load; keeping the previous version if any");
                self.report(PluginEvent::LoadFailed {
                    plugin: name.to_string(),
                    error: e.to_string(),
                    sha256: Some(sha.clone()),
                });
                self.record_directory_failure(name, path, &e, sha);
            }
        }
    }

    fn record_directory_failure(&self, name: &str, path: &Path, err: &LoadError, sha: String) {
        let mut t = self.write();
        t.removed.remove(name);
        let prev = t.directory.remove(name);
        let slot = Slot::failed(
            prev,
            name.to_string(),
            PluginSource::Directory,
            err,
            sha,
            Some(path.to_path_buf()),
        );
        t.directory.insert(name.to_string(), slot);
    }

    /// Reports the directory's load failures and swaps to `sink` from now on.
    pub fn report_events_to(&self, sink: tokio::sync::mpsc::Sender<PluginEvent>) {
        let _ = self.events.set(sink);
    }

    fn report(&self, event: PluginEvent) {
        if let Some(sink) = self.events.get()
            && sink.try_send(event).is_err()
        {
            tracing::warn!("too many plugin events waiting to be reported; one dropped");
        }
    }

    /// The number of change batches the directory loader has processed so far.
    pub fn watch_generation(&self) -> u64 {
        *self.watch_generation.borrow()
    }

    /// Waits until the directory loader has processed a batch after generation `after` (see
    /// [`Self::watch_generation`]); `false` on timeout. For tests and tooling.
    pub async fn wait_for_watcher(&self, after: u64, timeout: Duration) -> bool {
        let mut rx = self.watch_generation.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|g| *g > after))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    // ---- tenant plugins ----

    /// The limits and permits of tenant uploads: the first call's `limits` hold for the life of
    /// the registry (the engine's configuration does not change while it runs). Until then,
    /// [`TenantPluginLimits::default`] applies.
    pub fn tenant_uploads(&self, limits: impl FnOnce() -> TenantPluginLimits) -> &TenantUploads {
        self.uploads.get_or_init(|| {
            let limits = limits();
            TenantUploads {
                limits,
                permits: tokio::sync::Semaphore::new(limits.max_concurrent_uploads),
            }
        })
    }

    fn tenant_limits(&self) -> TenantPluginLimits {
        self.uploads.get().map(|u| u.limits).unwrap_or_default()
    }

    /// Whether `tenant` may store a component of `size` bytes as plugin `name` (replacing its
    /// current version, if any). [`Self::put_tenant_plugin`] checks the same while it holds the
    /// tenants' lock; this lets callers refuse early (before reading a body, before compiling).
    pub fn check_tenant_quota(
        &self,
        tenant: &str,
        name: &str,
        size: Option<usize>,
    ) -> Result<(), QuotaError> {
        let limits = self.tenant_limits();
        if let Some(size) = size
            && size > limits.max_component_bytes
        {
            return Err(QuotaError::ComponentTooLarge {
                size,
                limit: limits.max_component_bytes,
            });
        }
        let t = self.read();
        let plugins = t.tenants.get(tenant);
        let exists = plugins.is_some_and(|m| m.contains_key(name));
        let count = plugins.map_or(0, |m| m.len());
        if !exists && count >= limits.max_plugins {
            return Err(QuotaError::TooManyPlugins {
                count,
                limit: limits.max_plugins,
            });
        }
        if let Some(size) = size {
            let others: usize = plugins.map_or(0, |m| {
                m.iter()
                    .filter(|(n, _)| n.as_str() != name)
                    .map(|(_, slot)| slot.component_bytes)
                    .sum()
            });
            let total = others.saturating_add(size);
            if total > limits.max_total_bytes {
                return Err(QuotaError::TooManyBytes {
                    size,
                    total,
                    limit: limits.max_total_bytes,
                });
            }
        }
        Ok(())
    }
    //
    // The registry only keeps tenant plugins live; where their bytes are kept (the store, so
    // that every node loads them) is the caller's business: `put_tenant_plugin` takes the
    // persisting step as a future it runs between compiling and going live.

    /// Validates and compiles a tenant's component, runs `persist` (the component is stored
    /// only once it is known good), then makes it live as `tenant:<name>` (replacing an older
    /// version). A refused component is neither persisted nor live; the error says why.
    pub async fn put_tenant_plugin<E: std::fmt::Display>(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        persist: impl std::future::Future<Output = Result<(), E>>,
    ) -> Result<PluginStatus, LoadError> {
        validate_tenant(tenant)?;
        validate_plugin_name(name)?;
        self.check_tenant_quota(tenant, name, Some(bytes.len()))
            .map_err(|e| LoadError::Limit(e.to_string()))?;
        let _guard = self.tenant_ops.lock().await;
        // Again under the lock: another upload of this tenant may have finished meanwhile.
        self.check_tenant_quota(tenant, name, Some(bytes.len()))
            .map_err(|e| LoadError::Limit(e.to_string()))?;
        let full = format!("tenant:{name}");
        let plugin = self
            .runtime
            .load(&full, bytes, Some(&self.cache_dir))
            .await?;
        persist.await.map_err(|e| LoadError::Io {
            context: format!("storing tenant plugin {full}"),
            reason: e.to_string(),
        })?;
        let mut slot = Slot::ready(full, PluginSource::Tenant(tenant.to_string()), plugin, None);
        slot.component_bytes = bytes.len();
        let status = slot.status.clone();
        self.write()
            .tenants
            .entry(tenant.to_string())
            .or_default()
            .insert(name.to_string(), slot);
        tracing::info!(tenant, plugin = name, sha256 = ?status.sha256, "tenant plugin stored");
        Ok(status)
    }

    /// Makes a stored tenant plugin live (at start-up, or when another node uploaded it). A
    /// component that fails to load is recorded as `failed` (the previous good version, if
    /// any, keeps serving) and logged.
    pub async fn load_tenant_plugin(&self, tenant: &str, name: &str, bytes: &[u8]) {
        if validate_tenant(tenant).is_err() || validate_plugin_name(name).is_err() {
            tracing::warn!(
                tenant,
                plugin = name,
                "ignoring a stored tenant plugin with an invalid name"
            );
            return;
        }
        let _guard = self.tenant_ops.lock().await;
        let full = format!("tenant:{name}");
        let source = PluginSource::Tenant(tenant.to_string());
        match self.runtime.load(&full, bytes, Some(&self.cache_dir)).await {
            Ok(plugin) => {
                let mut slot = Slot::ready(full, source, plugin, None);
                slot.component_bytes = bytes.len();
                self.write()
                    .tenants
                    .entry(tenant.to_string())
                    .or_default()
                    .insert(name.to_string(), slot);
            }
            Err(e) => {
                tracing::warn!(tenant, plugin = name, error = %e, "tenant plugin failed to load");
                let sha = hex::encode(Sha256::digest(bytes));
                let mut t = self.write();
                let plugins = t.tenants.entry(tenant.to_string()).or_default();
                let previous = plugins.remove(name);
                let mut slot = Slot::failed(previous, full, source, &e, sha, None);
                slot.component_bytes = bytes.len();
                plugins.insert(name.to_string(), slot);
            }
        }
    }

    /// The tenant plugins known here: (tenant, name, sha256 of the latest version seen, loaded
    /// or failed). What the store holds is compared with this to see what changed.
    pub fn tenant_plugin_versions(&self) -> Vec<(String, String, String)> {
        let t = self.read();
        let mut versions = Vec::new();
        for (tenant, plugins) in &t.tenants {
            for (name, slot) in plugins {
                let sha = slot
                    .failed_sha256
                    .clone()
                    .or_else(|| slot.status.sha256.clone())
                    .unwrap_or_default();
                versions.push((tenant.clone(), name.clone(), sha));
            }
        }
        versions
    }

    /// Takes tenant plugin `name` out of service. `false` if there was none.
    pub async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> bool {
        let _guard = self.tenant_ops.lock().await;
        let mut t = self.write();
        let was_loaded = t
            .tenants
            .get_mut(tenant)
            .and_then(|m| m.remove(name))
            .is_some();
        if t.tenants.get(tenant).is_some_and(|m| m.is_empty()) {
            t.tenants.remove(tenant);
        }
        was_loaded
    }

    /// Takes every plugin of `tenant` out of service (the tenant was deleted).
    pub async fn forget_tenant(&self, tenant: &str) {
        let _guard = self.tenant_ops.lock().await;
        self.write().tenants.remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        write_u32_leb(&mut out, payload.len() as u32);
        out.extend_from_slice(payload);
        out
    }

    fn custom(name: &str, size: usize) -> Vec<u8> {
        let mut payload = vec![name.len() as u8];
        payload.extend_from_slice(name.as_bytes());
        payload.resize(payload.len() + size, 0xaa);
        section(0, &payload)
    }

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn custom_sections_are_stripped_at_every_level() {
        let types = section(1, &[1, 0x60, 0, 0]); // a core type section: one `func() -> ()`
        let module = [
            MODULE,
            &custom("name", 10),
            &types,
            &custom(".debug_info", 300),
        ]
        .concat();
        let clean_module = [MODULE, &types[..]].concat();
        assert_eq!(custom_section_bytes(&module).unwrap(), 17 + 315);
        assert_eq!(strip_custom_sections(&module).unwrap(), clean_module);
        let component = [
            COMPONENT,
            &custom("component-name", 5),
            &section(1, &module),
            &section(7, &[0]),
            &custom("padding", 200_000),
        ]
        .concat();
        let clean = [COMPONENT, &section(1, &clean_module), &section(7, &[0])].concat();
        assert_eq!(strip_custom_sections(&component).unwrap(), clean);
        // Nothing to strip: the same bytes, borrowed.
        assert!(matches!(
            strip_custom_sections(&clean).unwrap(),
            Cow::Borrowed(b) if b == clean.as_slice()
        ));
        // Not WebAssembly, truncated, or nested beyond the limit.
        assert_eq!(
            strip_custom_sections(b"garbage"),
            Err(StripError::Malformed)
        );
        assert_eq!(
            strip_custom_sections(&component[..component.len() - 1]),
            Err(StripError::Malformed)
        );
        let mut nested = [COMPONENT, &custom("x", 1)].concat();
        for _ in 0..=MAX_COMPONENT_NESTING {
            nested = [COMPONENT, &section(4, &nested)].concat();
        }
        assert_eq!(strip_custom_sections(&nested), Err(StripError::TooDeep));
    }

    #[test]
    fn reading_a_file_strips_the_same_and_passes_garbage_through() {
        let types = section(1, &[1, 0x60, 0, 0]);
        let module = [MODULE, &custom("name", 10), &types].concat();
        let component = [
            COMPONENT,
            &custom("padding", 100_000),
            &section(1, &module),
            &section(7, &[0]),
            &custom("producers", 5),
        ]
        .concat();
        let read = |bytes: &[u8]| {
            read_stripped(std::io::Cursor::new(bytes), bytes.len() as u64)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            read(&component),
            *strip_custom_sections(&component).unwrap()
        );
        assert_eq!(read(&module), *strip_custom_sections(&module).unwrap());
        for bad in [
            &b"garbage"[..],
            &component[..component.len() - 1],
            b"\0asm\x0d\0\x01\0\x07",
        ] {
            assert_eq!(read(bad), bad);
        }
        // Only the first `len` bytes count.
        let mut longer = component.clone();
        longer.extend_from_slice(b"trailing");
        assert_eq!(
            read_stripped(std::io::Cursor::new(&longer), component.len() as u64)
                .unwrap()
                .unwrap(),
            *strip_custom_sections(&component).unwrap()
        );
    }

    #[test]
    fn leb128_round_trips() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut out = Vec::new();
            write_u32_leb(&mut out, v);
            assert_eq!(read_u32_leb(&out, 0).unwrap(), (v, out.len()));
        }
        assert!(read_u32_leb(&[0x80, 0x80, 0x80, 0x80, 0x80, 0], 0).is_err());
        assert!(read_u32_leb(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0).is_err());
    }
}
