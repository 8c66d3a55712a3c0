//! Tenants, endpoints and the change counters: the writes every node must agree on move a
//! counter of `revisions` in the same write ([`bump`]), and the reads the in-memory directory is
//! built from.

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use crate::model::{Endpoint, EndpointSpec, Tenant, now_unix};
use crate::store::{Aggregate, DirectoryRows, Revisions, StoreError};

/// Moves the change counter of `aggregate` (inside the caller's write).
pub(super) fn bump(conn: &Connection, aggregate: Aggregate) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE revisions SET rev = rev + 1 WHERE kind = ?1")
        .db()?
        .execute([aggregate.as_str()])
        .db()?;
    Ok(())
}

/// Reads the change counters (a kind missing from the table reads as 0).
pub(super) fn revisions(conn: &Connection) -> Result<Revisions, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT kind, rev FROM revisions")
        .db()?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .db()?;
    let mut revisions = Revisions::default();
    for row in rows {
        let (kind, rev) = row.db()?;
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

/// Every tenant (by id) with its token hash, and every endpoint, oldest first.
pub(super) fn directory_rows(conn: &Connection) -> Result<DirectoryRows, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, name, token_hash, created_at FROM tenants ORDER BY id")
        .db()?;
    let tenants = stmt
        .query_map([], |r| {
            Ok((
                Tenant {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(3)?,
                },
                r.get::<_, String>(2)?,
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let mut stmt = conn
        .prepare(
            "SELECT id, tenant_id, spec, created_at, updated_at FROM endpoints ORDER BY created_at, id",
        )
        .db()?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .db()?;
    let mut endpoints = Vec::new();
    for row in rows {
        let (id, tenant_id, spec, created_at, updated_at) = row.db()?;
        let spec: EndpointSpec = serde_json::from_str(&spec).map_err(|e| {
            StoreError::Schema(format!("endpoint `{id}` has an unreadable spec: {e}"))
        })?;
        endpoints.push(Endpoint {
            id,
            tenant_id,
            spec,
            created_at,
            updated_at,
        });
    }
    Ok(DirectoryRows { tenants, endpoints })
}

/// Creates a tenant; `Conflict` if the id is taken.
pub(super) fn create_tenant(
    conn: &Connection,
    tenant: &Tenant,
    token_hash: &str,
) -> Result<(), StoreError> {
    let exists = conn
        .query_row("SELECT 1 FROM tenants WHERE id = ?1", [&tenant.id], |_| {
            Ok(())
        })
        .optional()
        .db()?
        .is_some();
    if exists {
        return Err(StoreError::Conflict(format!(
            "tenant `{}` already exists",
            tenant.id
        )));
    }
    conn.execute(
        "INSERT INTO tenants (id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![tenant.id, tenant.name, token_hash, tenant.created_at],
    )
    .db()?;
    bump(conn, Aggregate::Directory)
}

/// Deletes a tenant and (by cascade) its endpoints, events, deliveries, keys of its own,
/// certificates and plugins: every counter moves. `false` if there was none.
pub(super) fn delete_tenant(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .execute("DELETE FROM tenants WHERE id = ?1", [id])
        .db()?
        > 0;
    if deleted {
        for aggregate in [
            Aggregate::Directory,
            Aggregate::Keys,
            Aggregate::Certificates,
            Aggregate::Plugins,
        ] {
            bump(conn, aggregate)?;
        }
    }
    Ok(deleted)
}

/// Inserts or replaces an endpoint (`spec` already serialized).
pub(super) fn put_endpoint(
    conn: &Connection,
    endpoint: &Endpoint,
    spec: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO endpoints (id, tenant_id, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
        params![
            endpoint.id,
            endpoint.tenant_id,
            spec,
            endpoint.created_at,
            endpoint.updated_at
        ],
    )
    .db()?;
    bump(conn, Aggregate::Directory)
}

/// Deletes an endpoint; its pending deliveries become dead (and lose their leases). `false` if
/// there was none.
pub(super) fn delete_endpoint(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let deleted = conn
        .execute(
            "DELETE FROM endpoints WHERE id = ?1 AND tenant_id = ?2",
            [id, tenant],
        )
        .db()?
        > 0;
    if deleted {
        conn.execute(
            "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = 'endpoint was deleted',
               updated_at = ?3, lease_owner = NULL, lease_expires_at = NULL
             WHERE endpoint_id = ?1 AND tenant_id = ?2 AND status IN ('pending', 'held')",
            params![id, tenant, now_unix()],
        )
        .db()?;
        bump(conn, Aggregate::Directory)?;
    }
    Ok(deleted)
}
