//! Schema migrations, versioned in code. `PRAGMA user_version` holds the number of migrations
//! applied; each runs once, in its own transaction, in order.

use rusqlite::Connection;

use super::connection::OrStore;
use crate::store::StoreError;

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
    // 2: leases (claims by node), change counters, tenant plugins.
    r#"
    ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
    ALTER TABLE deliveries ADD COLUMN lease_expires_at INTEGER;
    DROP INDEX deliveries_pending;
    CREATE INDEX deliveries_claimable ON deliveries(next_attempt_at)
        WHERE status = 'pending' AND lease_owner IS NULL;
    CREATE INDEX deliveries_leased ON deliveries(lease_owner, lease_expires_at)
        WHERE lease_owner IS NOT NULL;
    CREATE TABLE revisions (
        kind TEXT PRIMARY KEY,
        rev  INTEGER NOT NULL
    );
    INSERT INTO revisions (kind, rev) VALUES
        ('directory', 0), ('keys', 0), ('certificates', 0), ('plugins', 0);
    CREATE TABLE tenant_plugins (
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        bytes       BLOB NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, name)
    );
    "#,
    // 3: the event-type catalog (types with their JSON Schemas, a tenant's strictness),
    // recovery (a mark on deliveries a recovery moved; an index of failed and dead deliveries by
    // endpoint, which a delivery enters only once an attempt failed or it died, so ingest and
    // first-attempt successes never write it) and the staged next certificate of a client
    // certificate record.
    r#"
    CREATE TABLE event_types (
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        description TEXT NOT NULL,
        schema      TEXT,
        deprecated  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE event_type_settings (
        tenant_id          TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
        strict_event_types INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO revisions (kind, rev) VALUES ('event_types', 0);
    ALTER TABLE deliveries ADD COLUMN recovered_at INTEGER;
    CREATE INDEX deliveries_recoverable ON deliveries(endpoint_id, id)
        WHERE status = 'dead' OR (status = 'pending' AND attempts > 0);
    CREATE TABLE staged_client_certificates (
        id              TEXT PRIMARY KEY REFERENCES client_certificates(id) ON DELETE CASCADE,
        tenant_id       TEXT NOT NULL,
        private_key_pem TEXT NOT NULL,
        csr_pem         TEXT,
        certificate_pem TEXT,
        activate_at     INTEGER,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    "#,
    // 4: the message log's indexes: a tenant's events newest first (all, or of one
    // type), and an event's deliveries by state and endpoint (covering the log's filters and
    // counts).
    r#"
    CREATE INDEX events_log ON events(tenant_id, created_at, id);
    CREATE INDEX events_log_by_type ON events(tenant_id, type, created_at, id);
    CREATE INDEX deliveries_log ON deliveries(event_id, status, endpoint_id);
    "#,
    // 5: running for months: endpoint health (a row per endpoint and five-minute buckets of
    // successes and failures), held deliveries (their endpoint is disabled; resumed in order of
    // creation, so claims take equal due times in order of id), the periodic jobs' lease,
    // one-time notices, and the index retention deletes idempotency keys by. Two indexes go:
    // `events_log` and `deliveries_log` (migration 4) begin with their columns, so they serve the
    // same lookups, and every ingest paid for both copies.
    r#"
    CREATE TABLE endpoint_health (
        endpoint_id          TEXT PRIMARY KEY,
        tenant_id            TEXT NOT NULL,
        last_success_at      INTEGER,
        last_failure_at      INTEGER,
        consecutive_failures INTEGER NOT NULL,
        failing_since        INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX endpoint_health_failing ON endpoint_health(failing_since)
        WHERE failing_since IS NOT NULL;
    CREATE TABLE endpoint_health_buckets (
        endpoint_id  TEXT NOT NULL,
        bucket_start INTEGER NOT NULL,
        successes    INTEGER NOT NULL,
        failures     INTEGER NOT NULL,
        PRIMARY KEY (endpoint_id, bucket_start)
    ) WITHOUT ROWID;
    CREATE INDEX endpoint_health_buckets_by_start ON endpoint_health_buckets(bucket_start);
    CREATE TABLE job_leases (
        job        TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE notices (
        key        TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_held ON deliveries(endpoint_id, id) WHERE status = 'held';
    DROP INDEX deliveries_claimable;
    CREATE INDEX deliveries_claimable ON deliveries(next_attempt_at, id)
        WHERE status = 'pending' AND lease_owner IS NULL;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    DROP INDEX events_by_tenant;
    DROP INDEX deliveries_by_event;
    "#,
];

/// Applies the migrations `conn` has not seen yet.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); upgrade wasmhook",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = index + 1;
        let failed =
            |e: rusqlite::Error| StoreError::Schema(format!("migration {version} failed: {e}"));
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Aggregate;

    #[test]
    fn migrations_apply_in_order_and_seed_every_revision_kind() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        // Idempotent: a second run applies nothing.
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mut kinds: Vec<String> = conn
            .prepare("SELECT kind FROM revisions WHERE rev = 0 ORDER BY kind")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        kinds.sort();
        let mut expected: Vec<String> = [
            Aggregate::Directory,
            Aggregate::Keys,
            Aggregate::Certificates,
            Aggregate::Plugins,
            Aggregate::EventTypes,
        ]
        .iter()
        .map(|a| a.as_str().to_string())
        .collect();
        expected.sort();
        assert_eq!(kinds, expected);
    }

    #[test]
    fn migration_2_keeps_version_1_data_claimable() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1_i64).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants VALUES ('t', 't', 'h', 1);
             INSERT INTO events VALUES ('msg_1', 't', 'x', X'7B7D', 1);
             INSERT INTO deliveries (id, event_id, endpoint_id, tenant_id, status, next_attempt_at, updated_at)
               VALUES ('dlv_1', 'msg_1', 'ep_1', 't', 'pending', 5, 1);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let claimable: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_claimable
                 WHERE status = 'pending' AND lease_owner IS NULL AND next_attempt_at <= 5",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(claimable, 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99_i64).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Schema(_))));
    }
}
