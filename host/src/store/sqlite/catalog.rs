//! The event-type catalog (types and a tenant's strictness; every write moves the `event_types`
//! counter) and recovery (an endpoint's failed and dead deliveries put back in the queue).

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use super::directory::bump;
use crate::model::now_unix;
use crate::store::{
    Aggregate, RecoverBatch, RecoverRequest, StoreError, StoredCatalog, StoredEventType,
};

/// A tenant's settings and event types.
pub(super) fn catalog(conn: &Connection, tenant: &str) -> Result<StoredCatalog, StoreError> {
    let strict: Option<bool> = conn
        .prepare_cached("SELECT strict_event_types FROM event_type_settings WHERE tenant_id = ?1")
        .db()?
        .query_row([tenant], |r| r.get(0))
        .optional()
        .db()?;
    let event_types = conn
        .prepare_cached(
            "SELECT tenant_id, name, description, schema, deprecated, created_at, updated_at
             FROM event_types WHERE tenant_id = ?1 ORDER BY name",
        )
        .db()?
        .query_map([tenant], |r| {
            Ok(StoredEventType {
                tenant_id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                schema: r.get(3)?,
                deprecated: r.get(4)?,
                created_at: r.get(5)?,
                updated_at: r.get(6)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(StoredCatalog {
        strict_event_types: strict.unwrap_or(false),
        event_types,
    })
}

/// Adds an event type; `Conflict` if the tenant has one of that name.
pub(super) fn create(conn: &Connection, event_type: &StoredEventType) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO event_types (tenant_id, name, description, schema, deprecated, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .db()?
        .execute(params![
            event_type.tenant_id,
            event_type.name,
            event_type.description,
            event_type.schema,
            event_type.deprecated,
            event_type.created_at,
            event_type.updated_at
        ])
        .db()?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "event type `{}` already exists",
            event_type.name
        )));
    }
    bump(conn, Aggregate::EventTypes)
}

/// Replaces an event type; `NotFound` if there is none of that name.
pub(super) fn update(conn: &Connection, event_type: &StoredEventType) -> Result<(), StoreError> {
    let updated = conn
        .prepare_cached(
            "UPDATE event_types SET description = ?3, schema = ?4, deprecated = ?5, updated_at = ?6
             WHERE tenant_id = ?1 AND name = ?2",
        )
        .db()?
        .execute(params![
            event_type.tenant_id,
            event_type.name,
            event_type.description,
            event_type.schema,
            event_type.deprecated,
            event_type.updated_at
        ])
        .db()?;
    if updated == 0 {
        return Err(StoreError::NotFound {
            what: "event type",
            id: event_type.name.clone(),
        });
    }
    bump(conn, Aggregate::EventTypes)
}

/// Deletes an event type; `false` if there was none.
pub(super) fn delete(conn: &Connection, tenant: &str, name: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .execute(
            "DELETE FROM event_types WHERE tenant_id = ?1 AND name = ?2",
            [tenant, name],
        )
        .db()?
        > 0;
    if deleted {
        bump(conn, Aggregate::EventTypes)?;
    }
    Ok(deleted)
}

/// Sets the tenant's strictness.
pub(super) fn set_strict(conn: &Connection, tenant: &str, strict: bool) -> Result<(), StoreError> {
    // Nothing is written for a tenant that is gone (deleted meanwhile): `NotFound`, not a
    // foreign-key error.
    let changed = conn
        .execute(
            "INSERT INTO event_type_settings (tenant_id, strict_event_types)
             SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1)
             ON CONFLICT (tenant_id) DO UPDATE SET strict_event_types = excluded.strict_event_types",
            params![tenant, strict],
        )
        .db()?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "tenant",
            id: tenant.to_string(),
        });
    }
    bump(conn, Aggregate::EventTypes)
}

/// Requeues one batch of an endpoint's failed or dead deliveries, in order of id.
pub(super) fn recover(
    conn: &Connection,
    request: &RecoverRequest,
) -> Result<RecoverBatch, StoreError> {
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    // The partial index's condition is repeated word for word, so the planner can use it.
    let picked: Vec<String> = conn
        .prepare_cached(
            "SELECT d.id FROM deliveries d INDEXED BY deliveries_recoverable
               JOIN events ev ON ev.id = d.event_id
             WHERE d.endpoint_id = ?1 AND (status = 'dead' OR (status = 'pending' AND attempts > 0))
               AND d.tenant_id = ?2 AND d.id > ?3 AND ev.created_at >= ?4
               AND (d.status = 'dead'
                    OR (d.recovered_at IS NULL AND d.lease_owner IS NULL AND d.next_attempt_at > ?5))
             ORDER BY d.id
             LIMIT ?6",
        )
        .db()?
        .query_map(
            params![
                request.endpoint,
                request.tenant,
                request.after.as_deref().unwrap_or(""),
                request.since,
                request.now_ms,
                limit
            ],
            |r| r.get(0),
        )
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut requeue = conn
        .prepare_cached(
            "UPDATE deliveries SET
               round_start = CASE WHEN status = 'dead' THEN attempts ELSE round_start END,
               status = 'pending', next_attempt_at = ?2, recovered_at = ?2, updated_at = ?3,
               lease_owner = NULL, lease_expires_at = NULL
             WHERE id = ?1",
        )
        .db()?;
    let now_s = now_unix();
    for id in &picked {
        requeue.execute(params![id, request.now_ms, now_s]).db()?;
    }
    Ok(RecoverBatch {
        requeued: picked.len() as u64,
        last: picked.last().cloned(),
    })
}
