//! Schema migrations, versioned in code. `PRAGMA user_version` holds the number of migrations
//! applied; each runs once, in its own transaction, in order.

use rusqlite::Connection;

use super::StoreError;

/// Every migration, oldest first. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        token_hash  TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE endpoints (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX endpoints_by_tenant ON endpoints(tenant_id);
    CREATE TABLE events (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        body        BLOB NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX events_by_tenant ON events(tenant_id, created_at);
    CREATE TABLE deliveries (
        id              TEXT PRIMARY KEY,
        event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        endpoint_id     TEXT NOT NULL,
        tenant_id       TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        round_start     INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        last_status     INTEGER,
        last_error      TEXT,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX deliveries_by_event ON deliveries(event_id);
    CREATE INDEX deliveries_pending ON deliveries(next_attempt_at) WHERE status = 'pending';
    CREATE TABLE attempts (
        delivery_id      TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        attempt          INTEGER NOT NULL,
        started_at       INTEGER NOT NULL,
        status_code      INTEGER,
        latency_ms       INTEGER NOT NULL,
        outcome          TEXT NOT NULL,
        error            TEXT,
        response_snippet TEXT,
        PRIMARY KEY (delivery_id, attempt)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency_keys (
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key         TEXT NOT NULL,
        response    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE signing_keys (
        kid             TEXT PRIMARY KEY,
        alg             TEXT NOT NULL,
        private_key_pem TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        retired_at      INTEGER
    );
    CREATE TABLE client_certificates (
        id              TEXT PRIMARY KEY,
        tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        private_key_pem TEXT NOT NULL,
        csr_pem         TEXT,
        certificate_pem TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    "#,
];

/// Applies the migrations `conn` has not seen yet.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = applied.max(0) as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); upgrade wasmhook",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Schema(format!("migration {} failed: {e}", index + 1)))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
