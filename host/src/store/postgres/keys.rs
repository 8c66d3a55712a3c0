//! Signing keys and client certificates: secrets the host keeps for its own use. Every write
//! moves its change counter (`keys`, `certificates`).
//!
//! A first key for an algorithm ([`KeyInsert::IfNoCurrent`]) is race-free across nodes: the
//! transaction takes an advisory lock on the algorithm before looking for a current key, so of
//! nodes starting together one inserts and the others find its key.

use tokio_postgres::Row;

use super::directory::bump;
use super::error::OrStore;
use super::pool::Db;
use crate::store::{Aggregate, KeyInsert, StoreError, StoredClientCertificate, StoredSigningKey};

/// First half of the advisory lock key of an algorithm's signing keys (`whsk`); the second is
/// `hashtext(alg)`.
const SIGNING_KEY_LOCK: i32 = 0x7768_736b;

/// Every signing key, oldest first.
pub(super) async fn signing_keys(db: &Db) -> Result<Vec<StoredSigningKey>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT kid, alg, private_key_pem, certificate_pem, created_at, retired_at
             FROM signing_keys ORDER BY created_at, kid",
            &[],
        )
        .await
        .db()?;
    rows.iter()
        .map(|row| {
            Ok(StoredSigningKey {
                kid: row.try_get(0).db()?,
                alg: row.try_get(1).db()?,
                private_key_pem: row.try_get(2).db()?,
                certificate_pem: row.try_get(3).db()?,
                created_at: row.try_get(4).db()?,
                retired_at: row.try_get(5).db()?,
            })
        })
        .collect()
}

/// Adds a signing key; `false` when `IfNoCurrent` found a current key of its algorithm.
pub(super) async fn add_signing_key(
    db: &Db,
    key: &StoredSigningKey,
    mode: KeyInsert,
) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&SIGNING_KEY_LOCK, &key.alg],
    )
    .await
    .db()?;
    match mode {
        KeyInsert::IfNoCurrent => {
            let current = tx
                .query_opt(
                    "SELECT 1 FROM signing_keys WHERE alg = $1 AND retired_at IS NULL LIMIT 1",
                    &[&key.alg],
                )
                .await
                .db()?;
            if current.is_some() {
                return Ok(false);
            }
        }
        KeyInsert::Rotate => {
            tx.execute(
                "UPDATE signing_keys SET retired_at = $2 WHERE alg = $1 AND retired_at IS NULL",
                &[&key.alg, &key.created_at],
            )
            .await
            .db()?;
        }
    }
    tx.execute(
        "INSERT INTO signing_keys (kid, alg, private_key_pem, certificate_pem, created_at, retired_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &key.kid,
            &key.alg,
            &key.private_key_pem,
            &key.certificate_pem,
            &key.created_at,
            &key.retired_at,
        ],
    )
    .await
    .db()?;
    bump(&tx, &[Aggregate::Keys]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(true)
}

/// Replaces the stored private key of signing key `key.kid`.
pub(super) async fn replace_secret(db: &Db, key: &StoredSigningKey) -> Result<(), StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let replaced = tx
        .execute(
            "UPDATE signing_keys SET private_key_pem = $2 WHERE kid = $1",
            &[&key.kid, &key.private_key_pem],
        )
        .await
        .db()?;
    if replaced == 0 {
        return Ok(());
    }
    bump(&tx, &[Aggregate::Keys]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(())
}

/// Deletes keys retired before `cutoff` (unix seconds).
pub(super) async fn prune_signing_keys(db: &Db, cutoff: i64) -> Result<u64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let deleted = tx
        .execute(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
            &[&cutoff],
        )
        .await
        .db()?;
    if deleted == 0 {
        return Ok(0);
    }
    bump(&tx, &[Aggregate::Keys]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(deleted)
}

/// Inserts or replaces a client certificate record.
pub(super) async fn put_client_certificate(
    db: &Db,
    record: &StoredClientCertificate,
) -> Result<(), StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.execute(
        "INSERT INTO client_certificates (id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET private_key_pem = EXCLUDED.private_key_pem, csr_pem = EXCLUDED.csr_pem,
             certificate_pem = EXCLUDED.certificate_pem, name = EXCLUDED.name, updated_at = EXCLUDED.updated_at",
        &[
            &record.id,
            &record.tenant_id,
            &record.name,
            &record.private_key_pem,
            &record.csr_pem,
            &record.certificate_pem,
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

const CERTIFICATE_COLUMNS: &str =
    "id, tenant_id, name, private_key_pem, csr_pem, certificate_pem, created_at, updated_at";

fn certificate(row: &Row) -> Result<StoredClientCertificate, StoreError> {
    Ok(StoredClientCertificate {
        id: row.try_get(0).db()?,
        tenant_id: row.try_get(1).db()?,
        name: row.try_get(2).db()?,
        private_key_pem: row.try_get(3).db()?,
        csr_pem: row.try_get(4).db()?,
        certificate_pem: row.try_get(5).db()?,
        created_at: row.try_get(6).db()?,
        updated_at: row.try_get(7).db()?,
    })
}

/// The tenant's client certificate records, oldest first.
pub(super) async fn client_certificates(
    db: &Db,
    tenant: &str,
) -> Result<Vec<StoredClientCertificate>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM client_certificates WHERE tenant_id = $1
                 ORDER BY created_at, id"
            ),
            &[&tenant],
        )
        .await
        .db()?;
    rows.iter().map(certificate).collect()
}

/// One client certificate record of a tenant (`NotFound` otherwise).
pub(super) async fn client_certificate(
    db: &Db,
    tenant: &str,
    id: &str,
) -> Result<StoredClientCertificate, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM client_certificates WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tenant, &id],
        )
        .await
        .db()?;
    match row {
        Some(row) => certificate(&row),
        None => Err(StoreError::NotFound {
            what: "client certificate",
            id: id.to_string(),
        }),
    }
}

/// Deletes a client certificate record; `false` if there was none.
pub(super) async fn delete_client_certificate(
    db: &Db,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let deleted = tx
        .execute(
            "DELETE FROM client_certificates WHERE tenant_id = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await
        .db()?
        > 0;
    if !deleted {
        return Ok(false);
    }
    bump(&tx, &[Aggregate::Certificates]).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(true)
}
