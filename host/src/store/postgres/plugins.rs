//! Tenant plugins: the components every node loads from the store. Every write moves the
//! `plugins` change counter.

use super::directory::bump;
use super::error::OrStore;
use super::pool::Db;
use crate::store::{Aggregate, StoreError, StoredPlugin, StoredPluginInfo};

/// Inserts or replaces a tenant plugin's component.
pub(super) async fn put(db: &Db, plugin: &StoredPlugin) -> Result<(), StoreError> {
    let size = i64::try_from(plugin.bytes.len()).unwrap_or(i64::MAX);
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.execute(
        "INSERT INTO tenant_plugins (tenant_id, name, sha256, size, bytes, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, name) DO UPDATE SET sha256 = EXCLUDED.sha256, size = EXCLUDED.size,
             bytes = EXCLUDED.bytes, updated_at = EXCLUDED.updated_at",
        &[
            &plugin.tenant_id,
            &plugin.name,
            &plugin.sha256,
            &size,
            &plugin.bytes,
            &plugin.updated_at,
        ],
    )
    .await
    .db()?;
    bump(&tx, &[Aggregate::Plugins]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(())
}

/// Deletes a tenant plugin; `false` if there was none.
pub(super) async fn delete(db: &Db, tenant: &str, name: &str) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let deleted = tx
        .execute(
            "DELETE FROM tenant_plugins WHERE tenant_id = $1 AND name = $2",
            &[&tenant, &name],
        )
        .await
        .db()?
        > 0;
    if !deleted {
        return Ok(false);
    }
    bump(&tx, &[Aggregate::Plugins]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(true)
}

/// Every tenant plugin, without bytes, by tenant and name.
pub(super) async fn list(db: &Db) -> Result<Vec<StoredPluginInfo>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT tenant_id, name, sha256, size FROM tenant_plugins ORDER BY tenant_id, name",
            &[],
        )
        .await
        .db()?;
    rows.iter()
        .map(|row| {
            Ok(StoredPluginInfo {
                tenant_id: row.try_get(0).db()?,
                name: row.try_get(1).db()?,
                sha256: row.try_get(2).db()?,
                size: u64::try_from(row.try_get::<_, i64>(3).db()?).unwrap_or(0),
            })
        })
        .collect()
}

/// One tenant plugin with its bytes.
pub(super) async fn get(
    db: &Db,
    tenant: &str,
    name: &str,
) -> Result<Option<StoredPlugin>, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "SELECT tenant_id, name, sha256, bytes, updated_at FROM tenant_plugins
             WHERE tenant_id = $1 AND name = $2",
            &[&tenant, &name],
        )
        .await
        .db()?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(StoredPlugin {
        tenant_id: row.try_get(0).db()?,
        name: row.try_get(1).db()?,
        sha256: row.try_get(2).db()?,
        bytes: row.try_get(3).db()?,
        updated_at: row.try_get(4).db()?,
    }))
}
