//! JWS signing keys: every node signs with the current key of an algorithm, so a key is added
//! either only if its algorithm has none ([`KeyInsert::IfNoCurrent`]) or by rotation. Every
//! write moves the `keys` counter.

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use super::directory::bump;
use crate::store::{Aggregate, KeyInsert, StoreError, StoredSigningKey};

/// Every signing key, oldest first.
pub(super) fn signing_keys(conn: &Connection) -> Result<Vec<StoredSigningKey>, StoreError> {
    conn.prepare_cached(
        "SELECT kid, alg, private_key_pem, certificate_pem, created_at, retired_at
         FROM signing_keys ORDER BY created_at, kid",
    )
    .db()?
    .query_map([], |r| {
        Ok(StoredSigningKey {
            kid: r.get(0)?,
            alg: r.get(1)?,
            private_key_pem: r.get(2)?,
            certificate_pem: r.get(3)?,
            created_at: r.get(4)?,
            retired_at: r.get(5)?,
        })
    })
    .db()?
    .collect::<Result<Vec<_>, _>>()
    .db()
}

/// Adds `key` as the current key of its algorithm; `false` (nothing written) when `mode` is
/// `IfNoCurrent` and the algorithm already has a current key.
pub(super) fn add_signing_key(
    conn: &Connection,
    key: &StoredSigningKey,
    mode: KeyInsert,
) -> Result<bool, StoreError> {
    match mode {
        KeyInsert::IfNoCurrent => {
            let current = conn
                .query_row(
                    "SELECT 1 FROM signing_keys WHERE alg = ?1 AND retired_at IS NULL LIMIT 1",
                    [&key.alg],
                    |_| Ok(()),
                )
                .optional()
                .db()?
                .is_some();
            if current {
                return Ok(false);
            }
        }
        KeyInsert::Rotate => {
            conn.execute(
                "UPDATE signing_keys SET retired_at = ?2 WHERE alg = ?1 AND retired_at IS NULL",
                params![key.alg, key.created_at],
            )
            .db()?;
        }
    }
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, private_key_pem, certificate_pem, created_at, retired_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            key.kid,
            key.alg,
            key.private_key_pem,
            key.certificate_pem,
            key.created_at,
            key.retired_at
        ],
    )
    .db()?;
    bump(conn, Aggregate::Keys)?;
    Ok(true)
}

/// Replaces the stored private key of signing key `key.kid` (re-sealed under a new master key).
/// A key that is gone (pruned meanwhile) needs no re-sealing: nothing is written.
pub(super) fn replace_secret(conn: &Connection, key: &StoredSigningKey) -> Result<(), StoreError> {
    let replaced = conn
        .execute(
            "UPDATE signing_keys SET private_key_pem = ?2 WHERE kid = ?1",
            params![key.kid, key.private_key_pem],
        )
        .db()?;
    if replaced > 0 {
        bump(conn, Aggregate::Keys)?;
    }
    Ok(())
}

/// Deletes the keys retired before `cutoff` (unix seconds); how many.
pub(super) fn prune_signing_keys(conn: &Connection, cutoff: i64) -> Result<u64, StoreError> {
    let pruned = conn
        .execute(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
            [cutoff],
        )
        .db()?;
    if pruned > 0 {
        bump(conn, Aggregate::Keys)?;
    }
    Ok(pruned as u64)
}
