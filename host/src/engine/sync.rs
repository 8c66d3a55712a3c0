//! Keeping this node in step with what every node must agree on.
//!
//! Every write to tenants, endpoints, event types, signing keys, client certificates or tenant
//! plugins moves a change counter in the store. This task reads the counters every
//! `store.poll_interval` (and at once on a PostgreSQL notice) and reloads what moved: the
//! directory, the keys, the TLS configurations, the tenant plugins; the event-type catalogs
//! are dropped from the cache and read again on their next use. With a poll interval of 500 ms a change made on one
//! node is in use on every other within a second. On SQLite (one node) the counters only move
//! by this node's own writes, which already updated it; the reloads are then no-ops in effect.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::StartError;
use crate::event_types::EventTypeCache;
use crate::keys::KeyManager;
use crate::mtls::TlsResolver;
use crate::plugins::PluginRegistry;
use crate::store::{Notice, Store, StoreError, StoredPlugin, next_notice};

/// Loads every stored tenant plugin into the registry (at start-up). Tenant plugins that an
/// earlier version kept as files under `<data_dir>/tenant-plugins/<tenant>/<name>.wasm` are
/// moved into the store first (once: each file is removed when stored).
pub(super) async fn load_tenant_plugins(
    store: &Store,
    registry: &PluginRegistry,
    data_dir: &Path,
) -> Result<(), StartError> {
    import_plugin_files(store, &data_dir.join("tenant-plugins")).await?;
    sync_plugins(store, registry).await?;
    Ok(())
}

/// Moves tenant plugin files of an earlier version into the store.
async fn import_plugin_files(store: &Store, dir: &Path) -> Result<(), StartError> {
    let Ok(tenants) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let known: std::collections::HashSet<String> = store
        .directory()
        .tenants()
        .into_iter()
        .map(|t| t.id)
        .collect();
    for tenant in tenants.flatten() {
        let Some(tenant_id) = tenant.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(tenant.path()) else {
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
            if !known.contains(&tenant_id) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| StartError::Io {
                context: format!("reading {}", path.display()),
                source,
            })?;
            store
                .put_tenant_plugin(&StoredPlugin {
                    tenant_id: tenant_id.clone(),
                    name: name.clone(),
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    bytes,
                    updated_at: crate::model::now_unix(),
                })
                .await?;
            let _ = std::fs::remove_file(&path);
            tracing::info!(tenant = %tenant_id, plugin = %name, "moved a tenant plugin file into the store");
        }
    }
    Ok(())
}

/// Follows the change counters until aborted.
pub(super) async fn follow_changes(
    store: Arc<Store>,
    registry: Arc<PluginRegistry>,
    keys: Arc<KeyManager>,
    tls: Arc<TlsResolver>,
    event_types: Arc<EventTypeCache>,
    poll: Duration,
) {
    // What this node loaded reflects the counters read before loading; anything newer is
    // reloaded at the first look.
    let mut seen = store.opened_at();
    let mut notices = store.notices();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = next_notice(&mut notices, Notice::Changed) => {}
        }
        let now = match store.revisions().await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the change counters");
                continue;
            }
        };
        if now == seen {
            continue;
        }
        let mut applied = seen;
        if now.directory != seen.directory {
            match store.reload_directory().await {
                Ok(()) => applied.directory = now.directory,
                Err(e) => tracing::warn!(error = %e, "cannot reload tenants and endpoints"),
            }
        }
        // A catalog read before a change (or of a tenant deleted since) is dropped.
        if now.event_types != seen.event_types || now.directory != seen.directory {
            event_types.invalidate();
            applied.event_types = now.event_types;
        }
        if now.keys != seen.keys {
            match keys.reload().await {
                Ok(()) => applied.keys = now.keys,
                Err(e) => tracing::warn!(error = %e, "cannot reload signing keys"),
            }
        }
        if now.certificates != seen.certificates {
            tls.client_certificates_changed();
            applied.certificates = now.certificates;
        }
        if now.plugins != seen.plugins {
            match sync_plugins(&store, &registry).await {
                Ok(()) => applied.plugins = now.plugins,
                Err(e) => tracing::warn!(error = %e, "cannot reload tenant plugins"),
            }
        }
        seen = applied;
    }
}

/// Makes the registry's tenant plugins what the store holds: loads new and changed ones,
/// drops removed ones.
async fn sync_plugins(store: &Store, registry: &PluginRegistry) -> Result<(), StoreError> {
    let stored = store.tenant_plugins().await?;
    let live: HashMap<(String, String), String> = registry
        .tenant_plugin_versions()
        .into_iter()
        .map(|(tenant, name, sha)| ((tenant, name), sha))
        .collect();
    for info in &stored {
        let key = (info.tenant_id.clone(), info.name.clone());
        if live.get(&key) == Some(&info.sha256) {
            continue;
        }
        if let Some(plugin) = store.tenant_plugin(&info.tenant_id, &info.name).await? {
            registry
                .load_tenant_plugin(&plugin.tenant_id, &plugin.name, &plugin.bytes)
                .await;
        }
    }
    for (tenant, name) in live.keys() {
        if !stored
            .iter()
            .any(|s| &s.tenant_id == tenant && &s.name == name)
        {
            registry.delete_tenant_plugin(tenant, name).await;
        }
    }
    Ok(())
}
