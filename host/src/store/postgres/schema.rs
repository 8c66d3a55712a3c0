//! Schema migrations, versioned in code: `schema_migrations` holds one row per migration
//! applied. They run in one transaction under a transaction-scoped advisory lock, so nodes that
//! start together against a fresh database wait for each other instead of racing; a database
//! migrated by a newer binary is refused.
//!
//! The tables are those of the SQLite schema (its migrations 1 and 2) with PostgreSQL types
//! (`BIGINT` for unix seconds and milliseconds, `BYTEA` for bodies and components, JSON specs as
//! `TEXT`), plus `endpoint_slots` (the cluster-wide concurrency of an endpoint).

use deadpool_postgres::Object;

use super::error::describe;
use crate::model::now_unix;
use crate::store::StoreError;

/// Key of the advisory lock migrations hold (`wasmhook` in ASCII).
const MIGRATION_LOCK: i64 = 0x7761_736d_686f_6f6b;

/// Every migration, oldest first. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migrations 1 and 2, and the endpoint slots.
    r#"
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        token_hash  TEXT NOT NULL UNIQUE,
        created_at  BIGINT NOT NULL
    );
    CREATE TABLE endpoints (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL
    );
    CREATE INDEX endpoints_by_tenant ON endpoints(tenant_id);
    CREATE TABLE events (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        body        BYTEA NOT NULL,
        created_at  BIGINT NOT NULL
    );
    CREATE INDEX events_by_tenant ON events(tenant_id, created_at);
    CREATE TABLE deliveries (
        id               TEXT PRIMARY KEY,
        event_id         TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        endpoint_id      TEXT NOT NULL,
        tenant_id        TEXT NOT NULL,
        status           TEXT NOT NULL,
        attempts         INT NOT NULL DEFAULT 0,
        round_start      INT NOT NULL DEFAULT 0,
        next_attempt_at  BIGINT,
        last_status      INT,
        last_error       TEXT,
        updated_at       BIGINT NOT NULL,
        lease_owner      TEXT,
        lease_expires_at BIGINT,
        CONSTRAINT deliveries_leased_only_pending CHECK (status = 'pending' OR lease_owner IS NULL)
    );
    CREATE INDEX deliveries_by_event ON deliveries(event_id);
    CREATE INDEX deliveries_claimable ON deliveries(next_attempt_at)
        WHERE status = 'pending' AND lease_owner IS NULL;
    CREATE INDEX deliveries_leased ON deliveries(lease_owner, lease_expires_at)
        WHERE lease_owner IS NOT NULL;
    CREATE TABLE attempts (
        delivery_id      TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        attempt          INT NOT NULL,
        started_at       BIGINT NOT NULL,
        status_code      INT,
        latency_ms       BIGINT NOT NULL,
        outcome          TEXT NOT NULL,
        error            TEXT,
        response_snippet TEXT,
        PRIMARY KEY (delivery_id, attempt)
    );
    CREATE TABLE idempotency_keys (
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key         TEXT NOT NULL,
        response    TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, key)
    );
    CREATE TABLE signing_keys (
        kid             TEXT PRIMARY KEY,
        alg             TEXT NOT NULL,
        private_key_pem TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        retired_at      BIGINT
    );
    CREATE TABLE client_certificates (
        id              TEXT PRIMARY KEY,
        tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        private_key_pem TEXT NOT NULL,
        csr_pem         TEXT,
        certificate_pem TEXT,
        created_at      BIGINT NOT NULL,
        updated_at      BIGINT NOT NULL
    );
    CREATE INDEX client_certificates_by_tenant ON client_certificates(tenant_id);
    CREATE TABLE revisions (
        kind TEXT PRIMARY KEY,
        rev  BIGINT NOT NULL
    );
    INSERT INTO revisions (kind, rev) VALUES
        ('directory', 0), ('keys', 0), ('certificates', 0), ('plugins', 0);
    CREATE TABLE tenant_plugins (
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        size        BIGINT NOT NULL,
        bytes       BYTEA NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, name)
    );
    CREATE TABLE endpoint_slots (
        endpoint_id TEXT NOT NULL,
        slot        INT NOT NULL,
        owner       TEXT NOT NULL,
        expires_at  BIGINT NOT NULL,
        PRIMARY KEY (endpoint_id, slot)
    );
    "#,
    // 2: the live nodes (each renews its row by heartbeat; an endpoint's slots are shared
    // among them) and the slots a node holds, found by owner at renewal and release.
    r#"
    CREATE TABLE nodes (
        owner      TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX endpoint_slots_by_owner ON endpoint_slots(owner);
    "#,
    // 3: the event-type catalog, recovery and staged client certificates (as SQLite's
    // migration 3).
    r#"
    CREATE TABLE event_types (
        tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        description TEXT NOT NULL,
        schema      TEXT,
        deprecated  BOOLEAN NOT NULL,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, name)
    );
    CREATE TABLE event_type_settings (
        tenant_id          TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
        strict_event_types BOOLEAN NOT NULL
    );
    INSERT INTO revisions (kind, rev) VALUES ('event_types', 0);
    ALTER TABLE deliveries ADD COLUMN recovered_at BIGINT;
    CREATE INDEX deliveries_recoverable ON deliveries(endpoint_id, id)
        WHERE status = 'dead' OR (status = 'pending' AND attempts > 0);
    CREATE TABLE staged_client_certificates (
        id              TEXT PRIMARY KEY REFERENCES client_certificates(id) ON DELETE CASCADE,
        tenant_id       TEXT NOT NULL,
        private_key_pem TEXT NOT NULL,
        csr_pem         TEXT,
        certificate_pem TEXT,
        activate_at     BIGINT,
        created_at      BIGINT NOT NULL,
        updated_at      BIGINT NOT NULL
    );
    "#,
    // 4: the message log's indexes: a tenant's events newest first (all, or of one
    // type), and an event's deliveries by state and endpoint (covering the log's filters and
    // counts).
    r#"
    CREATE INDEX events_log ON events(tenant_id, created_at DESC, id DESC);
    CREATE INDEX events_log_by_type ON events(tenant_id, type, created_at DESC, id DESC);
    CREATE INDEX deliveries_log ON deliveries(event_id, status, endpoint_id);
    "#,
    // 5: running for months (as SQLite's migration 5): endpoint health and its buckets, held
    // deliveries, the periodic jobs' lease, one-time notices, idempotency keys by age; the two
    // indexes that `events_log` and `deliveries_log` begin with are dropped.
    r#"
    CREATE TABLE endpoint_health (
        endpoint_id          TEXT PRIMARY KEY,
        tenant_id            TEXT NOT NULL,
        last_success_at      BIGINT,
        last_failure_at      BIGINT,
        consecutive_failures BIGINT NOT NULL,
        failing_since        BIGINT
    );
    CREATE INDEX endpoint_health_failing ON endpoint_health(failing_since)
        WHERE failing_since IS NOT NULL;
    CREATE TABLE endpoint_health_buckets (
        endpoint_id  TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        successes    BIGINT NOT NULL,
        failures     BIGINT NOT NULL,
        PRIMARY KEY (endpoint_id, bucket_start)
    );
    CREATE INDEX endpoint_health_buckets_by_start ON endpoint_health_buckets(bucket_start);
    CREATE TABLE job_leases (
        job        TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE notices (
        key        TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX deliveries_held ON deliveries(endpoint_id, id) WHERE status = 'held';
    DROP INDEX deliveries_claimable;
    CREATE INDEX deliveries_claimable ON deliveries(next_attempt_at, id)
        WHERE status = 'pending' AND lease_owner IS NULL;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    DROP INDEX events_by_tenant;
    DROP INDEX deliveries_by_event;
    "#,
    // 6: the hot path locks no shared row. Each foreign key below made every inserted row
    // key-share-lock its parent: every event of a tenant locked the same tenants row, in every
    // batch committing at once and on every node (MultiXacts), every delivery its event, every
    // attempt its delivery. Deleting a tenant deletes its events, deliveries and attempts
    // itself (`directory::delete_tenant`), as retention does.
    r#"
    ALTER TABLE events DROP CONSTRAINT IF EXISTS events_tenant_id_fkey;
    ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
    ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
    "#,
];

/// The schema version this binary writes.
pub(super) fn latest() -> i32 {
    MIGRATIONS.len() as i32
}

/// Applies the migrations the database has not seen yet (all in one transaction, under the
/// migration lock); refuses a database newer than this binary.
pub(super) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let failed = |what: &str, e: tokio_postgres::Error| {
        StoreError::Schema(format!("{what}: {}", describe(&e)))
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed("cannot begin the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed("cannot take the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await
    .map_err(|e| failed("cannot create schema_migrations", e))?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(|e| failed("cannot read schema_migrations", e))?
        .get(0);
    if applied > latest() {
        return Err(StoreError::Schema(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); \
             upgrade wasmhook",
            latest()
        )));
    }
    let applied = usize::try_from(applied).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = index as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| failed(&format!("migration {version} failed"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_unix()],
        )
        .await
        .map_err(|e| failed(&format!("migration {version} failed"), e))?;
    }
    tx.commit()
        .await
        .map_err(|e| failed("cannot commit the migrations", e))?;
    Ok(())
}
