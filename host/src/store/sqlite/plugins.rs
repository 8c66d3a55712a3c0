//! Tenant plugins: the components tenants upload, stored so that every node loads the same
//! bytes. Every write moves the `plugins` counter.

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use super::directory::bump;
use crate::store::{Aggregate, StoreError, StoredPlugin, StoredPluginInfo};

/// Inserts or replaces a tenant plugin's component.
pub(super) fn put(conn: &Connection, plugin: &StoredPlugin) -> Result<(), StoreError> {
    let size = i64::try_from(plugin.bytes.len())
        .map_err(|_| StoreError::Database("the plugin is too large".into()))?;
    conn.execute(
        "INSERT INTO tenant_plugins (tenant_id, name, sha256, size, bytes, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(tenant_id, name) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,
           bytes = excluded.bytes, updated_at = excluded.updated_at",
        params![
            plugin.tenant_id,
            plugin.name,
            plugin.sha256,
            size,
            plugin.bytes,
            plugin.updated_at
        ],
    )
    .db()?;
    bump(conn, Aggregate::Plugins)
}

/// Deletes a tenant plugin; `false` if there was none.
pub(super) fn delete(conn: &Connection, tenant: &str, name: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .execute(
            "DELETE FROM tenant_plugins WHERE tenant_id = ?1 AND name = ?2",
            [tenant, name],
        )
        .db()?
        > 0;
    if deleted {
        bump(conn, Aggregate::Plugins)?;
    }
    Ok(deleted)
}

/// Every tenant plugin without its bytes, by tenant then name.
pub(super) fn list(conn: &Connection) -> Result<Vec<StoredPluginInfo>, StoreError> {
    conn.prepare_cached(
        "SELECT tenant_id, name, sha256, size FROM tenant_plugins ORDER BY tenant_id, name",
    )
    .db()?
    .query_map([], |r| {
        Ok(StoredPluginInfo {
            tenant_id: r.get(0)?,
            name: r.get(1)?,
            sha256: r.get(2)?,
            size: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        })
    })
    .db()?
    .collect::<Result<Vec<_>, _>>()
    .db()
}

/// One tenant plugin with its bytes.
pub(super) fn get(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<Option<StoredPlugin>, StoreError> {
    conn.prepare_cached(
        "SELECT tenant_id, name, sha256, bytes, updated_at FROM tenant_plugins
         WHERE tenant_id = ?1 AND name = ?2",
    )
    .db()?
    .query_row([tenant, name], |r| {
        Ok(StoredPlugin {
            tenant_id: r.get(0)?,
            name: r.get(1)?,
            sha256: r.get(2)?,
            bytes: r.get(3)?,
            updated_at: r.get(4)?,
        })
    })
    .optional()
    .db()
}
