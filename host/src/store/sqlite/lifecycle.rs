//! Endpoint health, held deliveries, retention, the periodic jobs' lease and one-time notices.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::connection::OrStore;
use crate::model::now_unix;
use crate::store::{
    FailingEndpoint, HEALTH_BUCKET_MS, HEALTH_KEPT_MS, HELD_ENDPOINTS, HealthDelta, HoldOutcome,
    Lease, PruneCounts, PruneRequest, StoreError, StoredHealth,
};

/// Holds a pending delivery while its endpoint is stored disabled: no attempt, no lease, no due
/// time. Writes are serialised, so a hold either comes before the enable, whose
/// resume then takes it, or sees the endpoint enabled.
pub(super) fn hold(
    conn: &Connection,
    delivery_id: &str,
    endpoint_id: &str,
) -> Result<HoldOutcome, StoreError> {
    let held = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'held', next_attempt_at = NULL, updated_at = ?3,
               lease_owner = NULL, lease_expires_at = NULL
             WHERE id = ?1 AND status = 'pending' AND EXISTS (
               SELECT 1 FROM endpoints WHERE id = ?2 AND json_extract(spec, '$.enabled') = 0)",
        )
        .db()?
        .execute(params![delivery_id, endpoint_id, now_unix()])
        .db()?;
    if held > 0 {
        return Ok(HoldOutcome::Held);
    }
    let pending = conn
        .prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1 AND status = 'pending'")
        .db()?
        .exists([delivery_id])
        .db()?;
    Ok(if pending {
        HoldOutcome::EndpointEnabled
    } else {
        HoldOutcome::NotPending
    })
}

/// Makes the endpoint's held deliveries pending, all due at `now_ms`: claims take equal due
/// times in order of id, which is the order of creation.
pub(super) fn resume_held(
    conn: &Connection,
    endpoint_id: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let resumed = conn
        .prepare_cached(
            "UPDATE deliveries INDEXED BY deliveries_held
             SET status = 'pending', next_attempt_at = ?2, updated_at = ?3
             WHERE endpoint_id = ?1 AND status = 'held'",
        )
        .db()?
        .execute(params![endpoint_id, now_ms, now_unix()])
        .db()?;
    Ok(resumed as u64)
}

/// The endpoints stored enabled that have held deliveries.
static STRANDED_ENDPOINTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{HELD_ENDPOINTS} SELECT e.id FROM held JOIN endpoints e ON e.id = held.id
         WHERE coalesce(json_extract(e.spec, '$.enabled'), 1) != 0"
    )
});

/// See [`crate::store::Backend::resume_stranded`].
pub(super) fn resume_stranded(conn: &Connection, now_ms: i64) -> Result<u64, StoreError> {
    let stranded: Vec<String> = conn
        .prepare_cached(&STRANDED_ENDPOINTS)
        .db()?
        .query_map([], |r| r.get(0))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut resumed = 0;
    for endpoint_id in &stranded {
        resumed += resume_held(conn, endpoint_id, now_ms)?;
    }
    Ok(resumed)
}

/// Adds each delta to its endpoint's health row and buckets.
pub(super) fn add_health(conn: &Connection, deltas: &[HealthDelta]) -> Result<(), StoreError> {
    let mut row = conn
        .prepare_cached(
            "INSERT INTO endpoint_health (endpoint_id, tenant_id, last_success_at, last_failure_at,
               consecutive_failures, failing_since)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (endpoint_id) DO UPDATE SET
               last_success_at = coalesce(max(last_success_at, excluded.last_success_at),
                                          last_success_at, excluded.last_success_at),
               last_failure_at = coalesce(max(last_failure_at, excluded.last_failure_at),
                                          last_failure_at, excluded.last_failure_at),
               consecutive_failures = CASE WHEN excluded.last_success_at IS NOT NULL
                   THEN excluded.consecutive_failures
                   ELSE consecutive_failures + excluded.consecutive_failures END,
               failing_since = CASE WHEN excluded.last_success_at IS NOT NULL
                   THEN excluded.failing_since
                   ELSE coalesce(failing_since, excluded.failing_since) END",
        )
        .db()?;
    let mut bucket = conn
        .prepare_cached(
            "INSERT INTO endpoint_health_buckets (endpoint_id, bucket_start, successes, failures)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (endpoint_id, bucket_start) DO UPDATE SET
               successes = successes + excluded.successes, failures = failures + excluded.failures",
        )
        .db()?;
    for delta in deltas {
        row.execute(params![
            delta.endpoint_id,
            delta.tenant_id,
            delta.last_success_ms,
            delta.last_failure_ms,
            count(delta.trailing_failures),
            delta.first_trailing_failure_ms,
        ])
        .db()?;
        for &(start, ok, failed) in &delta.buckets {
            bucket
                .execute(params![delta.endpoint_id, start, count(ok), count(failed)])
                .db()?;
        }
    }
    Ok(())
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uncount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The health of each endpoint of `endpoint_ids` that has a row.
pub(super) fn health(
    conn: &Connection,
    endpoint_ids: &[String],
    now_ms: i64,
) -> Result<Vec<StoredHealth>, StoreError> {
    let hour = now_ms - 3600 * 1000;
    let day = now_ms - 24 * 3600 * 1000;
    let mut row = conn
        .prepare_cached(
            "SELECT last_success_at, last_failure_at, consecutive_failures, failing_since
             FROM endpoint_health WHERE endpoint_id = ?1",
        )
        .db()?;
    let mut sums = conn
        .prepare_cached(
            "SELECT coalesce(sum(CASE WHEN bucket_start + ?3 > ?2 THEN successes END), 0),
                    coalesce(sum(CASE WHEN bucket_start + ?3 > ?2 THEN failures END), 0),
                    coalesce(sum(successes), 0), coalesce(sum(failures), 0)
             FROM endpoint_health_buckets WHERE endpoint_id = ?1 AND bucket_start + ?3 > ?4",
        )
        .db()?;
    let mut out = Vec::new();
    for id in endpoint_ids {
        let Some((last_success_ms, last_failure_ms, consecutive, failing_since_ms)) = row
            .query_row([id], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .optional()
            .db()?
        else {
            continue;
        };
        let (hour_ok, hour_failed, day_ok, day_failed) = sums
            .query_row(params![id, hour, HEALTH_BUCKET_MS, day], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .db()?;
        out.push(StoredHealth {
            endpoint_id: id.clone(),
            last_success_ms,
            last_failure_ms,
            consecutive_failures: uncount(consecutive),
            failing_since_ms,
            hour: (uncount(hour_ok), uncount(hour_failed)),
            day: (uncount(day_ok), uncount(day_failed)),
        });
    }
    Ok(out)
}

/// Forgets an endpoint's failure streak.
pub(super) fn reset_failure_streak(conn: &Connection, endpoint_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE endpoint_health SET consecutive_failures = 0, failing_since = NULL
         WHERE endpoint_id = ?1",
    )
    .db()?
    .execute([endpoint_id])
    .db()?;
    Ok(())
}

/// Endpoints failing since before `before_ms`, `min_failures` times in a row at least.
pub(super) fn failing_endpoints(
    conn: &Connection,
    before_ms: i64,
    min_failures: u64,
) -> Result<Vec<FailingEndpoint>, StoreError> {
    conn.prepare_cached(
        "SELECT endpoint_id, tenant_id, consecutive_failures, failing_since FROM endpoint_health
         WHERE failing_since IS NOT NULL AND failing_since <= ?1 AND consecutive_failures >= ?2",
    )
    .db()?
    .query_map(params![before_ms, count(min_failures)], |r| {
        Ok(FailingEndpoint {
            endpoint_id: r.get(0)?,
            tenant_id: r.get(1)?,
            consecutive_failures: uncount(r.get(2)?),
            failing_since_ms: r.get(3)?,
        })
    })
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

/// Takes or renews a periodic job's lease (see [`crate::store::Backend::take_job_lease`]).
pub(super) fn take_job_lease(
    conn: &Connection,
    job: &str,
    lease: &Lease,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO job_leases (job, owner, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE job_leases.owner = excluded.owner OR job_leases.expires_at < ?4",
        )
        .db()?
        .execute(params![job, lease.owner, lease.expires_at_ms, now_ms])
        .db()?;
    Ok(changed > 0)
}

/// Records notice `key`; `false` when it was there already.
pub(super) fn note_once(conn: &Connection, key: &str, now: i64) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO notices (key, created_at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .db()?
        .execute(params![key, now])
        .db()?;
    Ok(inserted > 0)
}

/// The condition an event must meet to go, after its tenant filter: nothing pending or held,
/// and older than the window of its outcome (`?1`: delivered before, `?2`: dead before).
const EXPIRED: &str = "e.created_at < max(?1, ?2)
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                       AND d.status NOT IN ('delivered', 'dead'))
       AND CASE WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'dead')
                THEN e.created_at < ?2 ELSE e.created_at < ?1 END";

/// Events a batch of retention looks at: expired ones after the request's cursor, oldest
/// first, `request.limit` at most. Read on any connection (a reader's snapshot): the writer
/// checks each again as it deletes it ([`delete_expired`]).
pub(super) fn expired_events(
    conn: &Connection,
    request: &PruneRequest,
) -> Result<Vec<String>, StoreError> {
    // ?1 delivered before, ?2 dead before, ?3 after (id), ?4 id bound, ?5 limit, ?6.. tenants.
    let mut sql = format!("SELECT e.id FROM events e WHERE e.id > ?3 AND e.id < ?4 AND {EXPIRED}");
    let tenants: Vec<&str> = match &request.tenant {
        Some(tenant) => {
            sql.push_str(" AND e.tenant_id = ?6");
            vec![tenant.as_str()]
        }
        None if request.except.is_empty() => Vec::new(),
        None => {
            let marks: Vec<String> = (0..request.except.len())
                .map(|i| format!("?{}", i + 6))
                .collect();
            sql.push_str(&format!(" AND e.tenant_id NOT IN ({})", marks.join(", ")));
            request.except.iter().map(String::as_str).collect()
        }
    };
    sql.push_str(" ORDER BY e.id LIMIT ?5");
    let after = request.after.clone().unwrap_or_default();
    let bound = request.id_bound();
    let limit = count(request.limit as u64);
    let mut values: Vec<rusqlite::types::Value> = vec![
        request.delivered_before.into(),
        request.dead_before.into(),
        after.into(),
        bound.into(),
        limit.into(),
    ];
    values.extend(
        tenants
            .iter()
            .map(|t| rusqlite::types::Value::from(t.to_string())),
    );
    conn.prepare_cached(&sql)
        .db()?
        .query_map(params_from_iter(values), |r| r.get(0))
        .db()?
        .collect::<Result<_, _>>()
        .db()
}

/// What deleting `ids` would remove (a dry run).
pub(super) fn count_expired(conn: &Connection, ids: &[String]) -> Result<PruneCounts, StoreError> {
    let mut counts = PruneCounts::default();
    let mut deliveries = conn
        .prepare_cached("SELECT count(*) FROM deliveries WHERE event_id = ?1")
        .db()?;
    let mut attempts = conn
        .prepare_cached(
            "SELECT count(*) FROM attempts a JOIN deliveries d ON a.delivery_id = d.id
             WHERE d.event_id = ?1",
        )
        .db()?;
    for id in ids {
        counts.deliveries += uncount(deliveries.query_row([id], |r| r.get(0)).db()?);
        counts.attempts += uncount(attempts.query_row([id], |r| r.get(0)).db()?);
    }
    counts.events = ids.len() as u64;
    Ok(counts)
}

/// Deletes those of `ids` that are still expired under `request`'s windows (one replayed
/// since it was read is kept), children first, each delete counting what it removed (the
/// cascade would do the same work without telling how much). At most [`SLICE`] ids: each
/// statement takes the whole slice at once (a shorter one is padded with its first id, which
/// `IN` counts once), so a slice costs four statements, not four per event.
pub(super) fn delete_expired(
    conn: &Connection,
    request: &PruneRequest,
    ids: &[String],
) -> Result<PruneCounts, StoreError> {
    let mut counts = PruneCounts::default();
    if ids.len() > SLICE {
        for chunk in ids.chunks(SLICE) {
            counts += delete_expired(conn, request, chunk)?;
        }
        return Ok(counts);
    }
    let Some(slice) = padded(ids) else {
        return Ok(counts);
    };
    let still: Vec<String> = {
        let mut statement = conn.prepare_cached(&SLICE_SQL.still_expired).db()?;
        let mut values: Vec<&dyn rusqlite::ToSql> =
            vec![&request.delivered_before, &request.dead_before];
        values.extend(slice.iter().map(|id| id as &dyn rusqlite::ToSql));
        statement
            .query_map(values.as_slice(), |r| r.get(0))
            .db()?
            .collect::<Result<_, _>>()
            .db()?
    };
    let Some(still) = padded(&still) else {
        return Ok(counts);
    };
    let run = |sql: &str| -> Result<u64, StoreError> {
        let removed = conn
            .prepare_cached(sql)
            .db()?
            .execute(params_from_iter(still.iter()))
            .db()?;
        Ok(removed as u64)
    };
    counts.attempts += run(&SLICE_SQL.attempts)?;
    counts.deliveries += run(&SLICE_SQL.deliveries)?;
    counts.events += run(&SLICE_SQL.events)?;
    Ok(counts)
}

/// Events retention deletes per background write, and per [`delete_expired`] statement: a
/// slice is a short write, and the longest an ingest waits behind retention is one slice.
pub(super) const SLICE: usize = 20;

/// The statements of [`delete_expired`], built once.
struct SliceSql {
    /// `?1` delivered before, `?2` dead before, `?3..` the slice: those still expired.
    still_expired: String,
    /// `?1..` the still expired events: their attempts, deliveries and themselves.
    attempts: String,
    deliveries: String,
    events: String,
}

static SLICE_SQL: std::sync::LazyLock<SliceSql> = std::sync::LazyLock::new(|| {
    let slice = placeholders(3);
    let still = placeholders(1);
    SliceSql {
        still_expired: format!("SELECT e.id FROM events e WHERE e.id IN ({slice}) AND {EXPIRED}"),
        attempts: format!(
            "DELETE FROM attempts WHERE delivery_id IN
               (SELECT id FROM deliveries WHERE event_id IN ({still}))"
        ),
        deliveries: format!("DELETE FROM deliveries WHERE event_id IN ({still})"),
        events: format!("DELETE FROM events WHERE id IN ({still})"),
    }
});

/// `ids` (at most [`SLICE`]) padded to [`SLICE`] with the first; `None` when there are none.
fn padded(ids: &[String]) -> Option<Vec<&str>> {
    let first = ids.first()?;
    Some(
        (0..SLICE)
            .map(|i| ids.get(i).unwrap_or(first).as_str())
            .collect(),
    )
}

/// `?from, ?from+1, …`: [`SLICE`] numbered placeholders.
fn placeholders(from: usize) -> String {
    (from..from + SLICE)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Idempotency keys created before `before` and health buckets past their day, `limit` of each
/// at most.
pub(super) fn prune_keys(
    conn: &Connection,
    before: i64,
    now_ms: i64,
    limit: usize,
    dry_run: bool,
) -> Result<PruneCounts, StoreError> {
    let limit = count(limit as u64);
    let buckets_before = now_ms - HEALTH_KEPT_MS;
    let (keys, buckets) = if dry_run {
        let keys: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM idempotency_keys INDEXED BY idempotency_keys_by_age
                 WHERE created_at < ?1 LIMIT ?2)",
            )
            .db()?
            .query_row(params![before, limit], |r| r.get(0))
            .db()?;
        let buckets: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM endpoint_health_buckets
                 WHERE bucket_start < ?1 LIMIT ?2)",
            )
            .db()?
            .query_row(params![buckets_before, limit], |r| r.get(0))
            .db()?;
        (keys as usize, buckets as usize)
    } else {
        let keys = conn
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE (tenant_id, key) IN
                   (SELECT tenant_id, key FROM idempotency_keys INDEXED BY idempotency_keys_by_age
                    WHERE created_at < ?1 LIMIT ?2)",
            )
            .db()?
            .execute(params![before, limit])
            .db()?;
        let buckets = conn
            .prepare_cached(
                "DELETE FROM endpoint_health_buckets WHERE (endpoint_id, bucket_start) IN
                   (SELECT endpoint_id, bucket_start FROM endpoint_health_buckets
                    WHERE bucket_start < ?1 LIMIT ?2)",
            )
            .db()?
            .execute(params![buckets_before, limit])
            .db()?;
        (keys, buckets)
    };
    Ok(PruneCounts {
        idempotency_keys: keys as u64,
        health_buckets: buckets as u64,
        ..PruneCounts::default()
    })
}
