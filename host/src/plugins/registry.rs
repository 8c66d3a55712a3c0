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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cache::write_atomically;
use super::error::{LoadError, PluginError};
use super::runtime::{LoadedPlugin, PluginRuntime};
use super::types::PluginInfo;

/// Largest component accepted from a tenant.
pub const MAX_TENANT_COMPONENT_BYTES: usize = 32 << 20;
/// Most plugins one tenant may have.
pub const MAX_PLUGINS_PER_TENANT: usize = 64;

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
    tenant_dir: PathBuf,
    tables: RwLock<Tables>,
    /// Serialises tenant uploads/deletes (file + table stay consistent).
    tenant_ops: tokio::sync::Mutex<()>,
    /// Incremented each time the directory loader has processed a batch of changes.
    pub(crate) watch_generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("cache_dir", &self.cache_dir)
            .field("tenant_dir", &self.tenant_dir)
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
    /// A registry using `runtime`, caching compiled code in `cache_dir` and persisting tenant
    /// plugins under `tenant_dir/<tenant>/<name>.wasm`.
    pub fn new(runtime: Arc<PluginRuntime>, cache_dir: PathBuf, tenant_dir: PathBuf) -> Arc<Self> {
        Arc::new(PluginRegistry {
            runtime,
            cache_dir,
            tenant_dir,
            tables: RwLock::new(Tables::default()),
            tenant_ops: tokio::sync::Mutex::new(()),
            watch_generation: tokio::sync::watch::Sender::new(0),
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
            }
            Err(e) => {
                tracing::warn!(plugin = name, path = %path.display(), error = %e,
                    "directory plugin failed to load; keeping the previous version if any");
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

    fn tenant_path(&self, tenant: &str, name: &str) -> PathBuf {
        self.tenant_dir.join(tenant).join(format!("{name}.wasm"))
    }

    /// Loads every tenant plugin persisted under `tenant_dir/<tenant>/<name>.wasm` (at
    /// start-up). A plugin that fails to load is recorded as `failed` (and logged); only an
    /// unreadable tenant directory is an error.
    pub async fn load_tenant_plugins(&self) -> Result<(), LoadError> {
        let tenants = match std::fs::read_dir(&self.tenant_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(LoadError::io(
                    format!(
                        "reading tenant plugin directory {}",
                        self.tenant_dir.display()
                    ),
                    &e,
                ));
            }
        };
        let _guard = self.tenant_ops.lock().await;
        for tenant_entry in tenants.flatten() {
            let Some(tenant) = tenant_entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_tenant(&tenant).is_err() || !tenant_entry.path().is_dir() {
                continue;
            }
            let Ok(files) = std::fs::read_dir(tenant_entry.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".wasm"))
                    .map(str::to_string)
                else {
                    continue;
                };
                if validate_plugin_name(&name).is_err() {
                    continue;
                }
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, plugin = %name, error = %e, "cannot read tenant plugin");
                        continue;
                    }
                };
                let full = format!("tenant:{name}");
                let slot = match self
                    .runtime
                    .load(&full, &bytes, Some(&self.cache_dir))
                    .await
                {
                    Ok(p) => Slot::ready(full, PluginSource::Tenant(tenant.clone()), p, Some(path)),
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, plugin = %name, error = %e, "tenant plugin failed to load");
                        let sha = hex::encode(Sha256::digest(&bytes));
                        Slot::failed(
                            None,
                            full,
                            PluginSource::Tenant(tenant.clone()),
                            &e,
                            sha,
                            Some(path),
                        )
                    }
                };
                self.write()
                    .tenants
                    .entry(tenant.clone())
                    .or_default()
                    .insert(name, slot);
            }
        }
        Ok(())
    }

    /// Validates and loads a tenant's component, then persists it atomically under
    /// `tenant_dir/<tenant>/<name>.wasm` and makes it live as `tenant:<name>` (replacing an
    /// older version). A refused component is not persisted; the error says why.
    pub async fn put_tenant_plugin(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<PluginStatus, LoadError> {
        validate_tenant(tenant)?;
        validate_plugin_name(name)?;
        if bytes.len() > MAX_TENANT_COMPONENT_BYTES {
            return Err(LoadError::Limit(format!(
                "component of {} bytes is above the limit of {} bytes",
                bytes.len(),
                MAX_TENANT_COMPONENT_BYTES
            )));
        }
        let _guard = self.tenant_ops.lock().await;
        {
            let t = self.read();
            let count = t.tenants.get(tenant).map_or(0, |m| m.len());
            let exists = t.tenants.get(tenant).is_some_and(|m| m.contains_key(name));
            if !exists && count >= MAX_PLUGINS_PER_TENANT {
                return Err(LoadError::Limit(format!(
                    "a tenant may have at most {MAX_PLUGINS_PER_TENANT} plugins"
                )));
            }
        }
        let full = format!("tenant:{name}");
        let plugin = self
            .runtime
            .load(&full, bytes, Some(&self.cache_dir))
            .await?;
        let dir = self.tenant_dir.join(tenant);
        let path = self.tenant_path(tenant, name);
        let (d, p, owned) = (dir.clone(), path.clone(), bytes.to_vec());
        tokio::task::spawn_blocking(move || write_atomically(&d, &p, &owned))
            .await
            .map_err(|e| LoadError::Io {
                context: format!("writing {}", path.display()),
                reason: e.to_string(),
            })?
            .map_err(|e| LoadError::io(format!("writing {}", path.display()), &e))?;
        let slot = Slot::ready(
            full,
            PluginSource::Tenant(tenant.to_string()),
            plugin,
            Some(path),
        );
        let status = slot.status.clone();
        self.write()
            .tenants
            .entry(tenant.to_string())
            .or_default()
            .insert(name.to_string(), slot);
        tracing::info!(tenant, plugin = name, sha256 = ?status.sha256, "tenant plugin stored");
        Ok(status)
    }

    /// Deletes tenant plugin `name` (file and live version). `Ok(false)` if there was none.
    pub async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> Result<bool, LoadError> {
        validate_tenant(tenant)?;
        validate_plugin_name(name)?;
        let _guard = self.tenant_ops.lock().await;
        let path = self.tenant_path(tenant, name);
        let file_existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(LoadError::io(format!("removing {}", path.display()), &e)),
        };
        let mut t = self.write();
        let was_loaded = t
            .tenants
            .get_mut(tenant)
            .and_then(|m| m.remove(name))
            .is_some();
        if t.tenants.get(tenant).is_some_and(|m| m.is_empty()) {
            t.tenants.remove(tenant);
        }
        Ok(file_existed || was_loaded)
    }
}
