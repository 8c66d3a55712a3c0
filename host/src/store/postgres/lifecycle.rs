//! Endpoint health, held deliveries, retention, the periodic jobs' lease and one-time notices.

use super::error::OrStore;
use super::pool::Db;
use crate::model::now_unix;
use crate::store::{
    FailingEndpoint, HEALTH_BUCKET_MS, HEALTH_KEPT_MS, HELD_ENDPOINTS, HealthDelta, HoldOutcome,
    Lease, PruneBatch, PruneCounts, PruneRequest, StoreError, StoredHealth,
};

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uncount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Holds a pending delivery while its endpoint is stored disabled: no attempt, no lease, no due
/// time.
///
/// The endpoint's row is locked for share, so the hold and an enable are ordered: an enable
/// committed first is seen (the lock re-reads the row), and one that comes after waits for the
/// hold to commit and then resumes what it held. A node whose directory has not yet heard of
/// the enable therefore cannot leave a delivery held on an enabled endpoint.
pub(super) async fn hold(
    db: &Db,
    delivery_id: &str,
    endpoint_id: &str,
) -> Result<HoldOutcome, StoreError> {
    let client = db.get().await?;
    let held = client
        .execute(
            "WITH disabled AS (
                 SELECT 1 FROM endpoints
                 WHERE id = $2 AND spec::jsonb -> 'enabled' = 'false'::jsonb
                 FOR SHARE)
             UPDATE deliveries SET status = 'held', next_attempt_at = NULL, updated_at = $3,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM disabled)",
            &[&delivery_id, &endpoint_id, &now_unix()],
        )
        .await
        .db()?;
    db.committed(1);
    if held > 0 {
        return Ok(HoldOutcome::Held);
    }
    let pending = client
        .query_opt(
            "SELECT 1 FROM deliveries WHERE id = $1 AND status = 'pending'",
            &[&delivery_id],
        )
        .await
        .db()?
        .is_some();
    Ok(if pending {
        HoldOutcome::EndpointEnabled
    } else {
        HoldOutcome::NotPending
    })
}

/// Makes the endpoint's held deliveries pending, due at `now_ms` (claimed in order of id, the
/// order of creation), and wakes the nodes.
pub(super) async fn resume_held(
    db: &Db,
    endpoint_id: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let resumed = resume(&tx, &[endpoint_id.to_string()], now_ms).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(resumed)
}

/// The endpoints stored enabled that have held deliveries, their rows locked for share (an
/// endpoint being disabled meanwhile is then seen disabled, and keeps its held deliveries).
static STRANDED_ENDPOINTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{HELD_ENDPOINTS} SELECT e.id FROM held JOIN endpoints e ON e.id = held.id
         WHERE coalesce(e.spec::jsonb -> 'enabled', 'true'::jsonb) <> 'false'::jsonb
         FOR SHARE OF e"
    )
});

/// See [`crate::store::Backend::resume_stranded`].
pub(super) async fn resume_stranded(db: &Db, now_ms: i64) -> Result<u64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let stranded: Vec<String> = tx
        .query(STRANDED_ENDPOINTS.as_str(), &[])
        .await
        .db()?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let resumed = resume(&tx, &stranded, now_ms).await?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(resumed)
}

/// Makes the held deliveries of these endpoints pending, due at `now_ms`, and wakes the nodes
/// when there were any (at the commit of `tx`).
async fn resume(
    tx: &tokio_postgres::Transaction<'_>,
    endpoint_ids: &[String],
    now_ms: i64,
) -> Result<u64, StoreError> {
    if endpoint_ids.is_empty() {
        return Ok(0);
    }
    let resumed = tx
        .execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $3
             WHERE endpoint_id = ANY($1) AND status = 'held'",
            &[&endpoint_ids, &now_ms, &now_unix()],
        )
        .await
        .db()?;
    if resumed > 0 {
        tx.execute("SELECT pg_notify($1, '')", &[&super::listen::WORK_CHANNEL])
            .await
            .db()?;
    }
    Ok(resumed)
}

const ADD_HEALTH: &str = "INSERT INTO endpoint_health AS h (endpoint_id, tenant_id, last_success_at,
         last_failure_at, consecutive_failures, failing_since)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
     ON CONFLICT (endpoint_id) DO UPDATE SET
         last_success_at = GREATEST(h.last_success_at, excluded.last_success_at),
         last_failure_at = GREATEST(h.last_failure_at, excluded.last_failure_at),
         consecutive_failures = CASE WHEN excluded.last_success_at IS NOT NULL
             THEN excluded.consecutive_failures
             ELSE h.consecutive_failures + excluded.consecutive_failures END,
         failing_since = CASE WHEN excluded.last_success_at IS NOT NULL
             THEN excluded.failing_since
             ELSE COALESCE(h.failing_since, excluded.failing_since) END";

const ADD_BUCKETS: &str =
    "INSERT INTO endpoint_health_buckets AS b (endpoint_id, bucket_start, successes, failures)
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
     ON CONFLICT (endpoint_id, bucket_start) DO UPDATE SET
         successes = b.successes + excluded.successes, failures = b.failures + excluded.failures";

/// Adds the deltas in one transaction of two multi-row upserts, rows in endpoint order (nodes
/// reporting together lock the rows in the same order, so they never deadlock).
pub(super) async fn add_health(db: &Db, deltas: &[HealthDelta]) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&HealthDelta> = deltas.iter().collect();
    sorted.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
    sorted.dedup_by(|a, b| a.endpoint_id == b.endpoint_id);
    let ids: Vec<&str> = sorted.iter().map(|d| d.endpoint_id.as_str()).collect();
    let tenants: Vec<&str> = sorted.iter().map(|d| d.tenant_id.as_str()).collect();
    let success: Vec<Option<i64>> = sorted.iter().map(|d| d.last_success_ms).collect();
    let failure: Vec<Option<i64>> = sorted.iter().map(|d| d.last_failure_ms).collect();
    let trailing: Vec<i64> = sorted.iter().map(|d| count(d.trailing_failures)).collect();
    let since: Vec<Option<i64>> = sorted.iter().map(|d| d.first_trailing_failure_ms).collect();
    let mut buckets: Vec<(&str, i64, i64, i64)> = sorted
        .iter()
        .flat_map(|d| {
            d.buckets.iter().map(|&(start, ok, failed)| {
                (d.endpoint_id.as_str(), start, count(ok), count(failed))
            })
        })
        .collect();
    buckets.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    buckets.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    let bucket_ids: Vec<&str> = buckets.iter().map(|b| b.0).collect();
    let bucket_starts: Vec<i64> = buckets.iter().map(|b| b.1).collect();
    let bucket_ok: Vec<i64> = buckets.iter().map(|b| b.2).collect();
    let bucket_failed: Vec<i64> = buckets.iter().map(|b| b.3).collect();
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.execute(
        ADD_HEALTH,
        &[&ids, &tenants, &success, &failure, &trailing, &since],
    )
    .await
    .db()?;
    if !buckets.is_empty() {
        tx.execute(
            ADD_BUCKETS,
            &[&bucket_ids, &bucket_starts, &bucket_ok, &bucket_failed],
        )
        .await
        .db()?;
    }
    tx.commit().await.db()?;
    db.committed(1);
    Ok(())
}

/// The health of each endpoint of `endpoint_ids` that has a row.
pub(super) async fn health(
    db: &Db,
    endpoint_ids: &[String],
    now_ms: i64,
) -> Result<Vec<StoredHealth>, StoreError> {
    let hour = now_ms - 3600 * 1000;
    let day = now_ms - 24 * 3600 * 1000;
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT h.endpoint_id, h.last_success_at, h.last_failure_at, h.consecutive_failures,
                    h.failing_since,
                    COALESCE(SUM(b.successes) FILTER (WHERE b.bucket_start + $3 > $2), 0)::bigint,
                    COALESCE(SUM(b.failures) FILTER (WHERE b.bucket_start + $3 > $2), 0)::bigint,
                    COALESCE(SUM(b.successes), 0)::bigint, COALESCE(SUM(b.failures), 0)::bigint
             FROM endpoint_health h
             LEFT JOIN endpoint_health_buckets b
                 ON b.endpoint_id = h.endpoint_id AND b.bucket_start + $3 > $4
             WHERE h.endpoint_id = ANY($1)
             GROUP BY h.endpoint_id",
            &[&endpoint_ids, &hour, &HEALTH_BUCKET_MS, &day],
        )
        .await
        .db()?;
    rows.iter()
        .map(|row| {
            Ok(StoredHealth {
                endpoint_id: row.try_get(0).db()?,
                last_success_ms: row.try_get(1).db()?,
                last_failure_ms: row.try_get(2).db()?,
                consecutive_failures: uncount(row.try_get(3).db()?),
                failing_since_ms: row.try_get(4).db()?,
                hour: (uncount(row.try_get(5).db()?), uncount(row.try_get(6).db()?)),
                day: (uncount(row.try_get(7).db()?), uncount(row.try_get(8).db()?)),
            })
        })
        .collect()
}

/// Forgets an endpoint's failure streak.
pub(super) async fn reset_failure_streak(db: &Db, endpoint_id: &str) -> Result<(), StoreError> {
    let client = db.get().await?;
    client
        .execute(
            "UPDATE endpoint_health SET consecutive_failures = 0, failing_since = NULL
             WHERE endpoint_id = $1",
            &[&endpoint_id],
        )
        .await
        .db()?;
    db.committed(1);
    Ok(())
}

/// Endpoints failing since before `before_ms`, `min_failures` times in a row at least.
pub(super) async fn failing_endpoints(
    db: &Db,
    before_ms: i64,
    min_failures: u64,
) -> Result<Vec<FailingEndpoint>, StoreError> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT endpoint_id, tenant_id, consecutive_failures, failing_since FROM endpoint_health
             WHERE failing_since IS NOT NULL AND failing_since <= $1 AND consecutive_failures >= $2",
            &[&before_ms, &count(min_failures)],
        )
        .await
        .db()?;
    rows.iter()
        .map(|row| {
            Ok(FailingEndpoint {
                endpoint_id: row.try_get(0).db()?,
                tenant_id: row.try_get(1).db()?,
                consecutive_failures: uncount(row.try_get(2).db()?),
                failing_since_ms: row.try_get(3).db()?,
            })
        })
        .collect()
}

/// Takes or renews a periodic job's lease. Two nodes asking at once serialize on the row; the
/// second sees the first's lease (the `WHERE` is checked again on the updated row) and gets
/// nothing.
pub(super) async fn take_job_lease(
    db: &Db,
    job: &str,
    lease: &Lease,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let changed = client
        .execute(
            "INSERT INTO job_leases AS j (job, owner, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE j.owner = excluded.owner OR j.expires_at < $4",
            &[&job, &lease.owner, &lease.expires_at_ms, &now_ms],
        )
        .await
        .db()?;
    db.committed(1);
    Ok(changed > 0)
}

/// Records notice `key`; `false` when it was there already.
pub(super) async fn note_once(db: &Db, key: &str, now: i64) -> Result<bool, StoreError> {
    let client = db.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO notices (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &now],
        )
        .await
        .db()?;
    db.committed(1);
    Ok(inserted > 0)
}

/// The condition an event must meet to go, after its tenant filter: nothing pending or held,
/// and older than the window of its outcome (`$1`: delivered before, `$2`: dead before).
///
/// Each `EXISTS` here and in [`delete_expired`] ends in `OFFSET 0`, which keeps it a
/// per-event probe of `deliveries_log`: without it the planner may turn it into an anti join,
/// and with the statistics of a table that grows fast it chose to hash the whole `deliveries`
/// table for each batch of 200 events (seen with `auto_explain` in the bench's soak: the
/// pruner then deleted about 1,000 events/s against 5,000/s ingested).
const EXPIRED: &str = "e.created_at < GREATEST($1::bigint, $2::bigint)
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                       AND d.status NOT IN ('delivered', 'dead') OFFSET 0)
       AND CASE WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'dead')
                THEN e.created_at < $2 ELSE e.created_at < $1 END";

/// One batch of retention, in one transaction: the candidate events are read and locked with
/// `SKIP LOCKED` (a batch never waits for another node's), then checked again as they are
/// deleted ([`delete_expired`]).
pub(super) async fn prune_events(
    db: &Db,
    request: &PruneRequest,
) -> Result<PruneBatch, StoreError> {
    // $1 delivered before, $2 dead before, $3 after (id), $4 id bound, $5 limit, $6 tenant(s).
    let mut sql = format!("SELECT e.id FROM events e WHERE e.id > $3 AND e.id < $4 AND {EXPIRED}");
    let tenants: Vec<String> = match &request.tenant {
        Some(tenant) => {
            sql.push_str(" AND e.tenant_id = ANY($6)");
            vec![tenant.clone()]
        }
        None => {
            sql.push_str(" AND NOT (e.tenant_id = ANY($6))");
            request.except.clone()
        }
    };
    sql.push_str(" ORDER BY e.id LIMIT $5");
    if !request.dry_run {
        sql.push_str(" FOR UPDATE OF e SKIP LOCKED");
    }
    let after = request.after.clone().unwrap_or_default();
    let bound = request.id_bound();
    let limit = count(request.limit as u64);
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let ids: Vec<String> = tx
        .query(
            &sql,
            &[
                &request.delivered_before,
                &request.dead_before,
                &after,
                &bound,
                &limit,
                &tenants,
            ],
        )
        .await
        .db()?
        .iter()
        .map(|row| row.try_get(0).db())
        .collect::<Result<_, _>>()?;
    let mut counts = PruneCounts {
        events: ids.len() as u64,
        ..PruneCounts::default()
    };
    if !ids.is_empty() && request.dry_run {
        let deliveries: i64 = tx
            .query_one(
                "SELECT count(*) FROM deliveries WHERE event_id = ANY($1)",
                &[&ids],
            )
            .await
            .db()?
            .try_get(0)
            .db()?;
        let attempts: i64 = tx
            .query_one(
                "SELECT count(*) FROM attempts WHERE delivery_id = ANY(ARRAY(
                     SELECT id FROM deliveries WHERE event_id = ANY($1)))",
                &[&ids],
            )
            .await
            .db()?
            .try_get(0)
            .db()?;
        counts.deliveries = uncount(deliveries);
        counts.attempts = uncount(attempts);
    } else if !ids.is_empty() {
        counts = delete_expired(&tx, request, &ids).await?;
    }
    tx.commit().await.db()?;
    if !request.dry_run {
        db.committed(1);
    }
    Ok(PruneBatch {
        counts,
        last: ids.last().cloned(),
    })
}

/// Deletes the events of `candidates` (locked by this transaction) that are still expired, with
/// their deliveries and attempts. A replay or a recovery may have put one of their deliveries
/// back in the queue since the candidates were read: one that committed since is seen by the
/// fresh snapshot of the first statement (each statement of a READ COMMITTED transaction takes
/// its own), and one still in flight holds its delivery's row, which the delete waits for and
/// then checks again (`status` in the `WHERE`), so a requeued delivery and its event stay.
async fn delete_expired(
    tx: &tokio_postgres::Transaction<'_>,
    request: &PruneRequest,
    candidates: &[String],
) -> Result<PruneCounts, StoreError> {
    let still: Vec<String> = tx
        .query(
            &format!("SELECT e.id FROM events e WHERE e.id = ANY($3) AND {EXPIRED}"),
            &[&request.delivered_before, &request.dead_before, &candidates],
        )
        .await
        .db()?
        .iter()
        .map(|row| row.try_get(0).db())
        .collect::<Result<_, _>>()?;
    if still.is_empty() {
        return Ok(PruneCounts::default());
    }
    let row = tx
        .query_one(
            "WITH gone AS (
                 DELETE FROM deliveries WHERE event_id = ANY($1) AND status IN ('delivered', 'dead')
                 RETURNING id
             ), dropped AS (
                 DELETE FROM attempts WHERE delivery_id = ANY(ARRAY(SELECT id FROM gone)) RETURNING 1
             )
             SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM dropped)",
            &[&still],
        )
        .await
        .db()?;
    let events = tx
        .execute(
            "DELETE FROM events e WHERE e.id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id OFFSET 0)",
            &[&still],
        )
        .await
        .db()?;
    Ok(PruneCounts {
        events,
        deliveries: uncount(row.try_get(0).db()?),
        attempts: uncount(row.try_get(1).db()?),
        ..PruneCounts::default()
    })
}

/// Idempotency keys created before `before` and health buckets past their day, `limit` of each
/// at most.
pub(super) async fn prune_keys(
    db: &Db,
    before: i64,
    now_ms: i64,
    limit: usize,
    dry_run: bool,
) -> Result<PruneCounts, StoreError> {
    let limit = count(limit as u64);
    let buckets_before = now_ms - HEALTH_KEPT_MS;
    let client = db.get().await?;
    let (keys, buckets) = if dry_run {
        let keys: i64 = client
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM idempotency_keys WHERE created_at < $1 LIMIT $2) k",
                &[&before, &limit],
            )
            .await
            .db()?
            .try_get(0)
            .db()?;
        let buckets: i64 = client
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM endpoint_health_buckets
                 WHERE bucket_start < $1 LIMIT $2) b",
                &[&buckets_before, &limit],
            )
            .await
            .db()?
            .try_get(0)
            .db()?;
        (uncount(keys), uncount(buckets))
    } else {
        let keys = client
            .execute(
                "DELETE FROM idempotency_keys WHERE (tenant_id, key) IN
                   (SELECT tenant_id, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2
                    FOR UPDATE SKIP LOCKED)",
                &[&before, &limit],
            )
            .await
            .db()?;
        let buckets = client
            .execute(
                "DELETE FROM endpoint_health_buckets WHERE (endpoint_id, bucket_start) IN
                   (SELECT endpoint_id, bucket_start FROM endpoint_health_buckets
                    WHERE bucket_start < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&buckets_before, &limit],
            )
            .await
            .db()?;
        db.committed(2);
        (keys, buckets)
    };
    Ok(PruneCounts {
        idempotency_keys: keys,
        health_buckets: buckets,
        ..PruneCounts::default()
    })
}

/// Vacuums the message tables (each table skipped while another session holds a conflicting
/// lock): the rows retention deleted become free space their next inserts reuse. Not in a
/// transaction (`VACUUM` cannot run in one).
pub(super) async fn vacuum_messages(db: &Db) -> Result<(), StoreError> {
    let client = db.get().await?;
    client
        .batch_execute("VACUUM (SKIP_LOCKED) attempts, deliveries, events")
        .await
        .db()?;
    Ok(())
}
