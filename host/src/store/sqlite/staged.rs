//! Staged next certificates of client certificate records. Every write moves the
//! `certificates` counter.

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use super::directory::bump;
use crate::store::{Aggregate, StoreError, StoredStagedCertificate};

/// A record's staged certificate, if any.
pub(super) fn get(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredStagedCertificate>, StoreError> {
    conn.prepare_cached(
        "SELECT id, tenant_id, private_key_pem, csr_pem, certificate_pem, activate_at, created_at, updated_at
         FROM staged_client_certificates WHERE tenant_id = ?1 AND id = ?2",
    )
    .db()?
    .query_row([tenant, id], |r| {
        Ok(StoredStagedCertificate {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            private_key_pem: r.get(2)?,
            csr_pem: r.get(3)?,
            certificate_pem: r.get(4)?,
            activate_at: r.get(5)?,
            created_at: r.get(6)?,
            updated_at: r.get(7)?,
        })
    })
    .optional()
    .db()
}

/// Inserts or replaces a record's staged certificate; `NotFound` without the record.
pub(super) fn put(conn: &Connection, staged: &StoredStagedCertificate) -> Result<(), StoreError> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM client_certificates WHERE id = ?1 AND tenant_id = ?2",
            [&staged.id, &staged.tenant_id],
            |_| Ok(()),
        )
        .optional()
        .db()?
        .is_some();
    if !exists {
        return Err(StoreError::NotFound {
            what: "client certificate",
            id: staged.id.clone(),
        });
    }
    conn.execute(
        "INSERT INTO staged_client_certificates
           (id, tenant_id, private_key_pem, csr_pem, certificate_pem, activate_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET private_key_pem = excluded.private_key_pem, csr_pem = excluded.csr_pem,
           certificate_pem = excluded.certificate_pem, activate_at = excluded.activate_at,
           updated_at = excluded.updated_at",
        params![
            staged.id,
            staged.tenant_id,
            staged.private_key_pem,
            staged.csr_pem,
            staged.certificate_pem,
            staged.activate_at,
            staged.created_at,
            staged.updated_at
        ],
    )
    .db()?;
    bump(conn, Aggregate::Certificates)
}

/// Drops a record's staged certificate; `false` if there was none.
pub(super) fn delete(conn: &Connection, tenant: &str, id: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .execute(
            "DELETE FROM staged_client_certificates WHERE tenant_id = ?1 AND id = ?2",
            [tenant, id],
        )
        .db()?
        > 0;
    if deleted {
        bump(conn, Aggregate::Certificates)?;
    }
    Ok(deleted)
}

/// Makes a due staged certificate the record's current one; `false` if none was due.
pub(super) fn promote(
    conn: &Connection,
    tenant: &str,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(staged) = get(conn, tenant, id)? else {
        return Ok(false);
    };
    if !staged.is_due(now) {
        return Ok(false);
    }
    conn.execute(
        "UPDATE client_certificates SET private_key_pem = ?3, csr_pem = ?4, certificate_pem = ?5, updated_at = ?6
         WHERE id = ?1 AND tenant_id = ?2",
        params![
            id,
            tenant,
            staged.private_key_pem,
            staged.csr_pem,
            staged.certificate_pem,
            now
        ],
    )
    .db()?;
    delete(conn, tenant, id)
}
