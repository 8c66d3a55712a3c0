//! Staged next certificates of client certificate records. Every write moves the
//! `certificates` counter and notifies the nodes.

use super::directory::bump;
use super::error::OrStore;
use super::pool::Db;
use crate::store::{Aggregate, StoreError, StoredStagedCertificate};

const SELECT: &str = "SELECT id, tenant_id, private_key_pem, csr_pem, certificate_pem, activate_at, created_at, updated_at
     FROM staged_client_certificates WHERE tenant_id = $1 AND id = $2";

fn staged(row: &tokio_postgres::Row) -> Result<StoredStagedCertificate, StoreError> {
    Ok(StoredStagedCertificate {
        id: row.try_get(0).db()?,
        tenant_id: row.try_get(1).db()?,
        private_key_pem: row.try_get(2).db()?,
        csr_pem: row.try_get(3).db()?,
        certificate_pem: row.try_get(4).db()?,
        activate_at: row.try_get(5).db()?,
        created_at: row.try_get(6).db()?,
        updated_at: row.try_get(7).db()?,
    })
}

/// A record's staged certificate, if any.
pub(super) async fn get(
    db: &Db,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredStagedCertificate>, StoreError> {
    let client = db.get().await?;
    match client.query_opt(SELECT, &[&tenant, &id]).await.db()? {
        Some(row) => Ok(Some(staged(&row)?)),
        None => Ok(None),
    }
}

/// Inserts or replaces a record's staged certificate; `NotFound` without the record.
pub(super) async fn put(db: &Db, record: &StoredStagedCertificate) -> Result<(), StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let parent = tx
        .query_opt(
            "SELECT 1 FROM client_certificates WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            &[&record.id, &record.tenant_id],
        )
        .await
        .db()?;
    if parent.is_none() {
        return Err(StoreError::NotFound {
            what: "client certificate",
            id: record.id.clone(),
        });
    }
    tx.execute(
        "INSERT INTO staged_client_certificates
             (id, tenant_id, private_key_pem, csr_pem, certificate_pem, activate_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET private_key_pem = EXCLUDED.private_key_pem,
             csr_pem = EXCLUDED.csr_pem, certificate_pem = EXCLUDED.certificate_pem,
             activate_at = EXCLUDED.activate_at, updated_at = EXCLUDED.updated_at",
        &[
            &record.id,
            &record.tenant_id,
            &record.private_key_pem,
            &record.csr_pem,
            &record.certificate_pem,
            &record.activate_at,
            &record.created_at,
            &record.updated_at,
        ],
    )
    .await
    .db()?;
    bump(&tx, &[Aggregate::Certificates]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(())
}

/// Drops a record's staged certificate; `false` if there was none.
pub(super) async fn delete(db: &Db, tenant: &str, id: &str) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let deleted = tx
        .execute(
            "DELETE FROM staged_client_certificates WHERE tenant_id = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await
        .db()?
        > 0;
    if deleted {
        bump(&tx, &[Aggregate::Certificates]).await?;
        tx.commit().await.db()?;
        db.committed(1);
    }
    Ok(deleted)
}

/// Makes a due staged certificate the record's current one; `false` if none was due (nodes
/// promoting together: the row lock makes one do it, the others find nothing).
pub(super) async fn promote(db: &Db, tenant: &str, id: &str, now: i64) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let row = tx
        .query_opt(&format!("{SELECT} FOR UPDATE"), &[&tenant, &id])
        .await
        .db()?;
    let Some(row) = row else {
        return Ok(false);
    };
    let staged = staged(&row)?;
    if !staged.is_due(now) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE client_certificates SET private_key_pem = $3, csr_pem = $4, certificate_pem = $5, updated_at = $6
         WHERE id = $1 AND tenant_id = $2",
        &[
            &id,
            &tenant,
            &staged.private_key_pem,
            &staged.csr_pem,
            &staged.certificate_pem,
            &now,
        ],
    )
    .await
    .db()?;
    tx.execute(
        "DELETE FROM staged_client_certificates WHERE id = $1",
        &[&id],
    )
    .await
    .db()?;
    bump(&tx, &[Aggregate::Certificates]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(true)
}
