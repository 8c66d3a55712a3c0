//! The event-type catalog (types and a tenant's strictness; every write moves the `event_types`
//! counter and notifies the nodes) and recovery (an endpoint's failed and dead deliveries put
//! back in the queue, with a wake-up for idle nodes).

use super::directory::bump;
use super::error::OrStore;
use super::listen::WORK_CHANNEL;
use super::pool::Db;
use crate::model::now_unix;
use crate::store::{
    Aggregate, RecoverBatch, RecoverRequest, StoreError, StoredCatalog, StoredEventType,
};

/// A tenant's settings and event types, read in one snapshot.
pub(super) async fn catalog(db: &Db, tenant: &str) -> Result<StoredCatalog, StoreError> {
    let mut client = db.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .db()?;
    let strict = tx
        .query_opt(
            "SELECT strict_event_types FROM event_type_settings WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .db()?;
    let rows = tx
        .query(
            "SELECT tenant_id, name, description, schema, deprecated, created_at, updated_at
             FROM event_types WHERE tenant_id = $1 ORDER BY name",
            &[&tenant],
        )
        .await
        .db()?;
    tx.commit().await.db()?;
    let strict_event_types = match strict {
        Some(row) => row.try_get(0).db()?,
        None => false,
    };
    let mut event_types = Vec::with_capacity(rows.len());
    for row in rows {
        event_types.push(StoredEventType {
            tenant_id: row.try_get(0).db()?,
            name: row.try_get(1).db()?,
            description: row.try_get(2).db()?,
            schema: row.try_get(3).db()?,
            deprecated: row.try_get(4).db()?,
            created_at: row.try_get(5).db()?,
            updated_at: row.try_get(6).db()?,
        });
    }
    Ok(StoredCatalog {
        strict_event_types,
        event_types,
    })
}

/// Runs `statement` with `params` in a transaction that also moves the `event_types` counter
/// when it changed a row; returns the rows changed.
async fn write(
    db: &Db,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let changed = tx.execute(statement, params).await.db()?;
    if changed > 0 {
        bump(&tx, &[Aggregate::EventTypes]).await?;
    }
    tx.commit().await.db()?;
    db.committed(1);
    Ok(changed)
}

/// Adds an event type; `Conflict` if the tenant has one of that name.
pub(super) async fn create(db: &Db, event_type: &StoredEventType) -> Result<(), StoreError> {
    let inserted = write(
        db,
        "INSERT INTO event_types (tenant_id, name, description, schema, deprecated, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, name) DO NOTHING",
        &[
            &event_type.tenant_id,
            &event_type.name,
            &event_type.description,
            &event_type.schema,
            &event_type.deprecated,
            &event_type.created_at,
            &event_type.updated_at,
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "event type `{}` already exists",
            event_type.name
        )));
    }
    Ok(())
}

/// Replaces an event type; `NotFound` if there is none of that name.
pub(super) async fn update(db: &Db, event_type: &StoredEventType) -> Result<(), StoreError> {
    let updated = write(
        db,
        "UPDATE event_types SET description = $3, schema = $4, deprecated = $5, updated_at = $6
         WHERE tenant_id = $1 AND name = $2",
        &[
            &event_type.tenant_id,
            &event_type.name,
            &event_type.description,
            &event_type.schema,
            &event_type.deprecated,
            &event_type.updated_at,
        ],
    )
    .await?;
    if updated == 0 {
        return Err(StoreError::NotFound {
            what: "event type",
            id: event_type.name.clone(),
        });
    }
    Ok(())
}

/// Deletes an event type; `false` if there was none.
pub(super) async fn delete(db: &Db, tenant: &str, name: &str) -> Result<bool, StoreError> {
    let deleted = write(
        db,
        "DELETE FROM event_types WHERE tenant_id = $1 AND name = $2",
        &[&tenant, &name],
    )
    .await?;
    Ok(deleted > 0)
}

/// Sets the tenant's strictness.
pub(super) async fn set_strict(db: &Db, tenant: &str, strict: bool) -> Result<(), StoreError> {
    // Nothing is written for a tenant that is gone (deleted meanwhile): `NotFound`, not a
    // foreign-key error.
    let changed = write(
        db,
        "INSERT INTO event_type_settings (tenant_id, strict_event_types)
         SELECT $1::text, $2 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1::text)
         ON CONFLICT (tenant_id) DO UPDATE SET strict_event_types = EXCLUDED.strict_event_types",
        &[&tenant, &strict],
    )
    .await?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "tenant",
            id: tenant.to_string(),
        });
    }
    Ok(())
}

/// Requeues one batch of an endpoint's failed or dead deliveries, in order of id. The rows are
/// locked (waiting for a node recording an attempt on one of them), then checked again.
pub(super) async fn recover(db: &Db, request: &RecoverRequest) -> Result<RecoverBatch, StoreError> {
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let after = request.after.as_deref().unwrap_or("");
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let rows = tx
        .query(
            "WITH picked AS (
                 SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.endpoint_id = $1
                   AND (d.status = 'dead' OR (d.status = 'pending' AND d.attempts > 0))
                   AND d.tenant_id = $2 AND d.id > $3 AND e.created_at >= $4
                   AND (d.status = 'dead'
                        OR (d.recovered_at IS NULL AND d.lease_owner IS NULL AND d.next_attempt_at > $5))
                 ORDER BY d.id
                 LIMIT $6
                 FOR UPDATE OF d
             )
             UPDATE deliveries d SET
                 round_start = CASE WHEN d.status = 'dead' THEN d.attempts ELSE d.round_start END,
                 status = 'pending', next_attempt_at = $5, recovered_at = $5, updated_at = $7,
                 lease_owner = NULL, lease_expires_at = NULL
             FROM picked p WHERE d.id = p.id
             RETURNING d.id",
            &[
                &request.endpoint,
                &request.tenant,
                &after,
                &request.since,
                &request.now_ms,
                &limit,
                &now_unix(),
            ],
        )
        .await
        .db()?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(row.try_get::<_, String>(0).db()?);
    }
    if !ids.is_empty() {
        tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
            .await
            .db()?;
    }
    tx.commit().await.db()?;
    db.committed(1);
    Ok(RecoverBatch {
        requeued: ids.len() as u64,
        last: ids.into_iter().max(),
    })
}
