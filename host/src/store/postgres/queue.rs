//! The queue: claims under leases (`FOR UPDATE SKIP LOCKED`: nodes claiming together never
//! take the same delivery and never wait for each other), lease renewal and release, the state
//! changes outside attempts (dead without an attempt, replay), bodies, and the cluster-wide
//! endpoint slots.

use super::error::OrStore;
use super::listen::WORK_CHANNEL;
use super::pool::Db;
use crate::model::{now_millis, now_unix};
use crate::store::{ClaimRequest, Lease, PendingDelivery, StoreError};

/// Lapsed leases cleared by one claim at most (the next claim clears more).
const REAP_LIMIT: i64 = 10_000;

const REAP: &str = "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL
     WHERE id IN (SELECT id FROM deliveries
                  WHERE lease_owner IS NOT NULL AND lease_expires_at < $1
                  LIMIT $2 FOR UPDATE SKIP LOCKED)";

const CLAIM: &str = "WITH claimable AS (
         SELECT id FROM deliveries
         WHERE status = 'pending' AND lease_owner IS NULL AND next_attempt_at <= $3
         ORDER BY next_attempt_at, id
         LIMIT $4
         FOR UPDATE SKIP LOCKED
     ), claimed AS (
         UPDATE deliveries d SET lease_owner = $1, lease_expires_at = $2
         FROM claimable c WHERE d.id = c.id
         RETURNING d.id, d.event_id, d.endpoint_id, d.tenant_id, d.attempts, d.round_start, d.next_attempt_at
     )
     SELECT c.id, c.event_id, e.type, c.endpoint_id, c.tenant_id, c.attempts, c.round_start, c.next_attempt_at
     FROM claimed c JOIN events e ON e.id = c.event_id
     ORDER BY c.next_attempt_at, c.id";

fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Clears lapsed leases, then leases due deliveries nobody holds, oldest due first.
pub(super) async fn claim(
    db: &Db,
    request: &ClaimRequest,
) -> Result<Vec<PendingDelivery>, StoreError> {
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let (reap, claim) =
        futures::try_join!(tx.prepare_cached(REAP), tx.prepare_cached(CLAIM)).db()?;
    let reaped = tx
        .execute(&reap, &[&request.now_ms, &REAP_LIMIT])
        .await
        .db()?;
    if reaped > 0 {
        tracing::info!(reaped, "took over deliveries whose lease lapsed");
    }
    let rows = if limit > 0 {
        tx.query(
            &claim,
            &[
                &request.lease.owner,
                &request.lease.expires_at_ms,
                &request.due_before_ms,
                &limit,
            ],
        )
        .await
        .db()?
    } else {
        Vec::new()
    };
    tx.commit().await.db()?;
    rows.iter()
        .map(|row| {
            Ok(PendingDelivery {
                delivery_id: row.try_get(0).db()?,
                event_id: row.try_get(1).db()?,
                event_type: row.try_get(2).db()?,
                endpoint_id: row.try_get(3).db()?,
                tenant_id: row.try_get(4).db()?,
                attempts: count(row.try_get(5).db()?),
                round_start: count(row.try_get(6).db()?),
                due_ms: row.try_get::<_, Option<i64>>(7).db()?.unwrap_or(0),
                body: None,
            })
        })
        .collect()
}

/// Runs one statement in a transaction that does not wait for the server to flush its WAL
/// (`synchronous_commit = off`): for writes whose loss in a server crash is harmless, as a
/// lease renewed again at the next heartbeat or a slot that lapses by itself. Other sessions see
/// the change at commit all the same; only its durability is relaxed.
async fn execute_relaxed(
    db: &Db,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let statement = tx.prepare_cached(sql).await.db()?;
    let relax = async { tx.batch_execute("SET LOCAL synchronous_commit = off").await };
    // Both go out at once (tokio-postgres pipelines them); they run in order.
    let ((), changed) = futures::try_join!(relax, tx.execute(&statement, params)).db()?;
    tx.commit().await.db()?;
    Ok(changed)
}

/// Extends every lease of `lease.owner` (a renewal lost in a server crash is made again at the
/// next heartbeat).
pub(super) async fn renew(db: &Db, lease: &Lease) -> Result<u64, StoreError> {
    execute_relaxed(
        db,
        "UPDATE deliveries SET lease_expires_at = $2 WHERE lease_owner = $1",
        &[&lease.owner, &lease.expires_at_ms],
    )
    .await
}

/// Releases `owner`'s leases (all of them, or only `deliveries`), and wakes the nodes when it
/// released any. Endpoint slots are not touched: an attempt still in flight holds its slot
/// until it gives it back or the slot lapses.
pub(super) async fn release(
    db: &Db,
    owner: &str,
    deliveries: Option<&[String]>,
) -> Result<u64, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let released = match deliveries {
        None => tx
            .execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1",
                &[&owner],
            )
            .await
            .db()?,
        Some([]) => 0,
        Some(ids) => tx
            .execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE lease_owner = $1 AND id = ANY($2)",
                &[&owner, &ids],
            )
            .await
            .db()?,
    };
    if released > 0 {
        tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
            .await
            .db()?;
    }
    tx.commit().await.db()?;
    if released > 0 {
        db.committed(1);
    }
    Ok(released)
}

/// Marks a delivery dead without an attempt; clears its lease.
pub(super) async fn mark_dead(db: &Db, delivery_id: &str, reason: &str) -> Result<(), StoreError> {
    let client = db.get().await?;
    let reason = super::attempts::text(reason);
    client
        .execute(
            "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = $2,
                 updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1",
            &[&delivery_id, &reason, &now_unix()],
        )
        .await
        .db()?;
    db.committed(1);
    Ok(())
}

/// Puts a delivered or dead delivery back in the queue, leased to `lease.owner`.
pub(super) async fn requeue(
    db: &Db,
    tenant: &str,
    event: &str,
    delivery: &str,
    lease: &Lease,
) -> Result<PendingDelivery, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let row = tx
        .query_opt(
            "SELECT d.status, d.attempts, d.endpoint_id, e.type
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = $1 AND d.event_id = $2 AND d.tenant_id = $3
             FOR UPDATE OF d",
            &[&delivery, &event, &tenant],
        )
        .await
        .db()?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            what: "delivery",
            id: delivery.to_string(),
        });
    };
    let status: String = row.try_get(0).db()?;
    let attempts: i32 = row.try_get(1).db()?;
    if status == "pending" || status == "held" {
        return Err(StoreError::Conflict(format!(
            "delivery `{delivery}` is still {status}; only delivered or dead deliveries can be replayed"
        )));
    }
    let now_ms = now_millis();
    tx.execute(
        "UPDATE deliveries SET status = 'pending', round_start = attempts, next_attempt_at = $2,
             updated_at = $3, lease_owner = $4, lease_expires_at = $5
         WHERE id = $1",
        &[
            &delivery,
            &now_ms,
            &now_unix(),
            &lease.owner,
            &lease.expires_at_ms,
        ],
    )
    .await
    .db()?;
    tx.commit().await.db()?;
    db.committed(1);
    Ok(PendingDelivery {
        delivery_id: delivery.to_string(),
        event_id: event.to_string(),
        event_type: row.try_get(3).db()?,
        endpoint_id: row.try_get(2).db()?,
        tenant_id: tenant.to_string(),
        attempts: count(attempts),
        round_start: count(attempts),
        due_ms: now_ms,
        body: None,
    })
}

/// The envelope of an event.
pub(super) async fn event_body(db: &Db, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let client = db.get().await?;
    let statement = client
        .prepare_cached("SELECT body FROM events WHERE id = $1")
        .await
        .db()?;
    match client.query_opt(&statement, &[&event_id]).await.db()? {
        Some(row) => Ok(Some(row.try_get(0).db()?)),
        None => Ok(None),
    }
}

/// Takes the lowest free slot (no row, or a lapsed one) among `0..max` in one statement: two
/// callers that pick the same slot meet on its primary key, and the loser's `ON CONFLICT`
/// update only happens where the row it finds (the winner's, once committed) has lapsed. So
/// there are never more than `max` live slots. The statement also says whether it saw a free
/// slot at all: one that lost a race tries again (another slot may be free), one that found
/// all taken does not.
const ACQUIRE_SLOT: &str = "WITH free AS (
         SELECT s FROM generate_series(0, $4 - 1) AS s
         WHERE NOT EXISTS (SELECT 1 FROM endpoint_slots l
                           WHERE l.endpoint_id = $1 AND l.slot = s AND l.expires_at >= $5)
         ORDER BY s LIMIT 1
     ), taken AS (
         INSERT INTO endpoint_slots (endpoint_id, slot, owner, expires_at)
         SELECT $1, s, $2, $3 FROM free
         ON CONFLICT (endpoint_id, slot) DO UPDATE
             SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
             WHERE endpoint_slots.expires_at < $5
         RETURNING slot
     )
     SELECT (SELECT slot FROM taken), (SELECT count(*) FROM free)";

/// Slots an endpoint may have at most (a larger `max_concurrency` is this many cluster-wide).
const MAX_SLOTS: u32 = 100_000;

/// Takes one of the endpoint's `max` slots for `lease.owner`; `None` when all are live.
pub(super) async fn acquire_slot(
    db: &Db,
    endpoint_id: &str,
    max: u32,
    lease: &Lease,
    now_ms: i64,
) -> Result<Option<u32>, StoreError> {
    let max = max.clamp(1, MAX_SLOTS);
    let max_param = i32::try_from(max).unwrap_or(i32::MAX);
    let client = db.get().await?;
    let statement = client.prepare_cached(ACQUIRE_SLOT).await.db()?;
    // Each lost race means another caller took a slot: after `max` of them all are taken.
    for _ in 0..=max.min(64) {
        let row = client
            .query_one(
                &statement,
                &[
                    &endpoint_id,
                    &lease.owner,
                    &lease.expires_at_ms,
                    &max_param,
                    &now_ms,
                ],
            )
            .await
            .db()?;
        let slot: Option<i32> = row.try_get(0).db()?;
        let free: i64 = row.try_get(1).db()?;
        if let Some(slot) = slot {
            return Ok(u32::try_from(slot).ok());
        }
        if free == 0 {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Gives a slot back (when `owner` still holds it). A release lost in a server crash only
/// leaves the slot taken until it lapses; a grant is never relaxed that way.
pub(super) async fn release_slot(
    db: &Db,
    endpoint_id: &str,
    slot: u32,
    owner: &str,
) -> Result<(), StoreError> {
    let slot = i32::try_from(slot).unwrap_or(i32::MAX);
    execute_relaxed(
        db,
        "DELETE FROM endpoint_slots WHERE endpoint_id = $1 AND slot = $2 AND owner = $3",
        &[&endpoint_id, &slot, &owner],
    )
    .await?;
    Ok(())
}

/// Registers the node until its lease expires, extends its slots as far, forgets nodes whose
/// registration lapsed, and counts the live ones. Relaxed: a registration lost in a server
/// crash is made again at the next heartbeat.
pub(super) async fn heartbeat_node(db: &Db, lease: &Lease, now_ms: i64) -> Result<u32, StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await
        .db()?;
    let (register, renew, forget, count) = futures::try_join!(
        tx.prepare_cached(
            "INSERT INTO nodes (owner, expires_at) VALUES ($1, $2)
             ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        ),
        tx.prepare_cached("UPDATE endpoint_slots SET expires_at = $2 WHERE owner = $1"),
        tx.prepare_cached("DELETE FROM nodes WHERE expires_at < $1"),
        tx.prepare_cached("SELECT count(*) FROM nodes WHERE expires_at >= $1"),
    )
    .db()?;
    tx.execute(&register, &[&lease.owner, &lease.expires_at_ms])
        .await
        .db()?;
    tx.execute(&renew, &[&lease.owner, &lease.expires_at_ms])
        .await
        .db()?;
    tx.execute(&forget, &[&now_ms]).await.db()?;
    let live: i64 = tx
        .query_one(&count, &[&now_ms])
        .await
        .db()?
        .try_get(0)
        .db()?;
    tx.commit().await.db()?;
    Ok(u32::try_from(live).unwrap_or(u32::MAX).max(1))
}

/// Removes the node and gives back every slot it holds.
pub(super) async fn leave(db: &Db, owner: &str) -> Result<(), StoreError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    tx.execute("DELETE FROM endpoint_slots WHERE owner = $1", &[&owner])
        .await
        .db()?;
    tx.execute("DELETE FROM nodes WHERE owner = $1", &[&owner])
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(())
}
