//! Client certificate records (mutual TLS). Every write moves the `certificates` counter.

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use super::directory::bump;
use crate::store::{Aggregate, StoreError, StoredClientCertificate};

/// A `client_certificates` row in the column order of the selects below.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredClientCertificate> {
    Ok(StoredClientCertificate {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        private_key_pem: r.get(3)?,
        csr_pem: r.get(4)?,
        certificate_pem: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

/// Inserts or replaces a client certificate record.
pub(super) fn put(conn: &Connection, record: &StoredClientCertificate) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO client_certificates (id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET private_key_pem = excluded.private_key_pem, csr_pem = excluded.csr_pem,
           certificate_pem = excluded.certificate_pem, name = excluded.name, updated_at = excluded.updated_at",
        params![
            record.id,
            record.tenant_id,
            record.name,
            record.private_key_pem,
            record.csr_pem,
            record.certificate_pem,
            record.created_at,
            record.updated_at
        ],
    )
    .db()?;
    bump(conn, Aggregate::Certificates)
}

/// The tenant's records, oldest first.
pub(super) fn list(
    conn: &Connection,
    tenant: &str,
) -> Result<Vec<StoredClientCertificate>, StoreError> {
    conn.prepare_cached(
        "SELECT id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at
         FROM client_certificates WHERE tenant_id = ?1 ORDER BY created_at, id",
    )
    .db()?
    .query_map([tenant], row)
    .db()?
    .collect::<Result<Vec<_>, _>>()
    .db()
}

/// One record of the tenant (`NotFound` otherwise).
pub(super) fn get(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<StoredClientCertificate, StoreError> {
    conn.prepare_cached(
        "SELECT id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at
         FROM client_certificates WHERE tenant_id = ?1 AND id = ?2",
    )
    .db()?
    .query_row([tenant, id], row)
    .optional()
    .db()?
    .ok_or_else(|| StoreError::NotFound {
        what: "client certificate",
        id: id.to_string(),
    })
}

/// Deletes a record of the tenant; `false` if there was none.
pub(super) fn delete(conn: &Connection, tenant: &str, id: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .execute(
            "DELETE FROM client_certificates WHERE tenant_id = ?1 AND id = ?2",
            [tenant, id],
        )
        .db()?
        > 0;
    if deleted {
        bump(conn, Aggregate::Certificates)?;
    }
    Ok(deleted)
}
