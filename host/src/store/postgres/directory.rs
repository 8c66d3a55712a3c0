//! Tenants, endpoints and the change counters. Every write to what all nodes must agree on
//! moves its counter of `revisions` in the same transaction and notifies `wasmhook_changes`
//! ([`bump`]; PostgreSQL delivers the notification at commit, and only if it commits).

use deadpool_postgres::Transaction;

use super::error::{OrStore, is_unique_violation, pg};
use super::listen::CHANGES_CHANNEL;
use super::pool::Db;
use crate::model::{Endpoint, EndpointSpec, Tenant, now_unix};
use crate::store::{Aggregate, DirectoryRows, Revisions, StoreError};

/// Moves the counters of `aggregates` and notifies the nodes (inside the caller's transaction).
pub(super) async fn bump(tx: &Transaction<'_>, aggregates: &[Aggregate]) -> Result<(), StoreError> {
    let kinds: Vec<&str> = aggregates.iter().map(|a| a.as_str()).collect();
    let statement = tx
        .prepare_cached(
            "WITH bumped AS (UPDATE revisions SET rev = rev + 1 WHERE kind = ANY($1))
             SELECT pg_notify($2, '')",
        )
        .await
        .db()?;
    tx.execute(&statement, &[&kinds, &CHANGES_CHANNEL])
        .await
        .db()?;
    Ok(())
}

/// The change counters (a kind missing from the table reads as 0).
pub(super) async fn revisions(db: &Db) -> Result<Revisions, StoreError> {
    let client = db.get().await?;
    let statement = client
        .prepare_cached("SELECT kind, rev FROM revisions")
        .await
        .db()?;
    let mut revisions = Revisions::default();
    for row in client.query(&statement, &[]).await.db()? {
        let kind: String = row.try_get(0).db()?;
        let rev: i64 = row.try_get(1).db()?;
        let slot = match kind.as_str() {
            k if k == Aggregate::Directory.as_str() => &mut revisions.directory,
            k if k == Aggregate::Keys.as_str() => &mut revisions.keys,
            k if k == Aggregate::Certificates.as_str() => &mut revisions.certificates,
            k if k == Aggregate::Plugins.as_str() => &mut revisions.plugins,
            k if k == Aggregate::EventTypes.as_str() => &mut revisions.event_types,
            _ => continue,
        };
        *slot = rev;
    }
    Ok(revisions)
}

/// Every tenant (by id) with its token hash, and every endpoint, oldest first; read in one
/// snapshot.
pub(super) async fn directory_rows(db: &Db) -> Result<DirectoryRows, StoreError> {
    let mut client = db.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .db()?;
    let tenant_rows = tx
        .query(
            "SELECT id, name, token_hash, created_at FROM tenants ORDER BY id",
            &[],
        )
        .await
        .db()?;
    let endpoint_rows = tx
        .query(
            "SELECT id, tenant_id, spec, created_at, updated_at FROM endpoints ORDER BY created_at, id",
            &[],
        )
        .await
        .db()?;
    tx.commit().await.db()?;
    let mut tenants = Vec::with_capacity(tenant_rows.len());
    for row in tenant_rows {
        tenants.push((
            Tenant {
                id: row.try_get(0).db()?,
                name: row.try_get(1).db()?,
                created_at: row.try_get(3).db()?,
            },
            row.try_get::<_, String>(2).db()?,
        ));
    }
    let mut endpoints = Vec::with_capacity(endpoint_rows.len());
    for row in endpoint_rows {
        let id: String = row.try_get(0).db()?;
        let spec: String = row.try_get(2).db()?;
        let spec: EndpointSpec = serde_json::from_str(&spec).map_err(|e| {
            StoreError::Schema(format!("endpoint `{id}` has an unreadable spec: {e}"))
        })?;
        endpoints.push(Endpoint {
            id,
            tenant_id: row.try_get(1).db()?,
            spec,
            created_at: row.try_get(3).db()?,
            updated_at: row.try_get(4).db()?,
        });
    }
    Ok(DirectoryRows { tenants, endpoints })
}

/// Creates a tenant; `Conflict` if the id is taken.
pub(super) async fn create_tenant(
    db: &Db,
    tenant: &Tenant,
    token_hash: &str,
) -> Result<(), StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let inserted = tx
        .execute(
            "INSERT INTO tenants (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
            &[&tenant.id, &tenant.name, &token_hash, &tenant.created_at],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("another tenant has the same token".to_string())
            } else {
                pg(e)
            }
        })?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "tenant `{}` already exists",
            tenant.id
        )));
    }
    bump(&tx, &[Aggregate::Directory]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(())
}

/// Deletes a tenant, its events, deliveries and attempts, its endpoints' slots and (by cascade)
/// its endpoints, idempotency keys, certificates and plugins: every counter moves. `false` if
/// there was none.
pub(super) async fn delete_tenant(db: &Db, id: &str) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    // The message tables have no foreign keys (schema migration 6): their rows go here.
    for sql in [
        "DELETE FROM endpoint_slots WHERE endpoint_id IN (SELECT id FROM endpoints WHERE tenant_id = $1)",
        // Through the tenant's events (indexed), not a scan of every delivery.
        "DELETE FROM attempts a USING events e, deliveries d
         WHERE e.tenant_id = $1 AND d.event_id = e.id AND a.delivery_id = d.id",
        "DELETE FROM deliveries d USING events e WHERE e.tenant_id = $1 AND d.event_id = e.id",
        "DELETE FROM events WHERE tenant_id = $1",
    ] {
        tx.execute(sql, &[&id]).await.db()?;
    }
    let deleted = tx
        .execute("DELETE FROM tenants WHERE id = $1", &[&id])
        .await
        .db()?
        > 0;
    if !deleted {
        return Ok(false);
    }
    bump(
        &tx,
        &[
            Aggregate::Directory,
            Aggregate::Keys,
            Aggregate::Certificates,
            Aggregate::Plugins,
        ],
    )
    .await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(true)
}

/// Inserts or replaces an endpoint.
pub(super) async fn put_endpoint(db: &Db, endpoint: &Endpoint) -> Result<(), StoreError> {
    let spec = serde_json::to_string(&endpoint.spec).map_err(StoreError::database)?;
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.execute(
        "INSERT INTO endpoints (id, tenant_id, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at",
        &[
            &endpoint.id,
            &endpoint.tenant_id,
            &spec,
            &endpoint.created_at,
            &endpoint.updated_at,
        ],
    )
    .await
    .db()?;
    bump(&tx, &[Aggregate::Directory]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(())
}

/// Deletes an endpoint; its pending deliveries become dead (and lose their leases), its slots
/// go. `false` if there was none.
pub(super) async fn delete_endpoint(db: &Db, tenant: &str, id: &str) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let deleted = tx
        .execute(
            "DELETE FROM endpoints WHERE id = $1 AND tenant_id = $2",
            &[&id, &tenant],
        )
        .await
        .db()?
        > 0;
    if !deleted {
        return Ok(false);
    }
    tx.execute(
        "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = 'endpoint was deleted',
             updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
         WHERE endpoint_id = $1 AND tenant_id = $2 AND status IN ('pending', 'held')",
        &[&id, &tenant, &now_unix()],
    )
    .await
    .db()?;
    tx.execute("DELETE FROM endpoint_slots WHERE endpoint_id = $1", &[&id])
        .await
        .db()?;
    bump(&tx, &[Aggregate::Directory]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(true)
}
