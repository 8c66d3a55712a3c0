//! Reads for the API: events, their deliveries and attempts, and the pending count.

use super::error::OrStore;
use super::pool::Db;
use crate::model::{Attempt, Delivery, DeliveryStatus, EventSummary};
use crate::store::StoreError;

/// One event of a tenant.
pub(super) async fn event(db: &Db, tenant: &str, event: &str) -> Result<EventSummary, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_opt(
            "SELECT id, type, created_at, body FROM events WHERE id = $1 AND tenant_id = $2",
            &[&event, &tenant],
        )
        .await
        .db()?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            what: "event",
            id: event.to_string(),
        });
    };
    let body: &[u8] = row.try_get(3).db()?;
    Ok(EventSummary {
        id: row.try_get(0).db()?,
        event_type: row.try_get(1).db()?,
        created_at: row.try_get(2).db()?,
        envelope: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    })
}

/// The deliveries of one event of a tenant, by id.
pub(super) async fn deliveries_of_event(
    db: &Db,
    tenant: &str,
    event: &str,
) -> Result<Vec<Delivery>, StoreError> {
    let client = db.get().await?;
    let exists = async {
        client
            .query_opt(
                "SELECT 1 FROM events WHERE id = $1 AND tenant_id = $2",
                &[&event, &tenant],
            )
            .await
    };
    let rows = async {
        client
            .query(
                "SELECT id, event_id, endpoint_id, status, attempts, next_attempt_at, last_status, last_error, updated_at
                 FROM deliveries WHERE event_id = $1 AND tenant_id = $2 ORDER BY id",
                &[&event, &tenant],
            )
            .await
    };
    let (exists, rows) = futures::try_join!(exists, rows).db()?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            what: "event",
            id: event.to_string(),
        });
    }
    rows.iter()
        .map(|row| {
            let status: String = row.try_get(3).db()?;
            Ok(Delivery {
                id: row.try_get(0).db()?,
                event_id: row.try_get(1).db()?,
                endpoint_id: row.try_get(2).db()?,
                status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
                attempts: u32::try_from(row.try_get::<_, i32>(4).db()?).unwrap_or(0),
                next_attempt_at: row.try_get(5).db()?,
                last_status_code: row
                    .try_get::<_, Option<i32>>(6)
                    .db()?
                    .and_then(|code| u16::try_from(code).ok()),
                last_error: row.try_get(7).db()?,
                updated_at: row.try_get(8).db()?,
            })
        })
        .collect()
}

/// The attempts of one delivery of a tenant's event, in order.
pub(super) async fn attempts_of_delivery(
    db: &Db,
    tenant: &str,
    event: &str,
    delivery: &str,
) -> Result<Vec<Attempt>, StoreError> {
    let client = db.get().await?;
    let exists = async {
        client
            .query_opt(
                "SELECT 1 FROM deliveries WHERE id = $1 AND event_id = $2 AND tenant_id = $3",
                &[&delivery, &event, &tenant],
            )
            .await
    };
    let rows = async {
        client
            .query(
                "SELECT attempt, started_at, status_code, latency_ms, outcome, error, response_snippet
                 FROM attempts WHERE delivery_id = $1 ORDER BY attempt",
                &[&delivery],
            )
            .await
    };
    let (exists, rows) = futures::try_join!(exists, rows).db()?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            what: "delivery",
            id: delivery.to_string(),
        });
    }
    rows.iter()
        .map(|row| {
            Ok(Attempt {
                attempt: u32::try_from(row.try_get::<_, i32>(0).db()?).unwrap_or(0),
                started_at: row.try_get(1).db()?,
                status_code: row
                    .try_get::<_, Option<i32>>(2)
                    .db()?
                    .and_then(|code| u16::try_from(code).ok()),
                latency_ms: u64::try_from(row.try_get::<_, i64>(3).db()?).unwrap_or(0),
                outcome: row.try_get(4).db()?,
                error: row.try_get(5).db()?,
                response_snippet: row.try_get(6).db()?,
            })
        })
        .collect()
}

/// Deliveries waiting: those nobody holds plus those leased (a leased delivery is always
/// pending: the `deliveries_leased_only_pending` check). Each half is an index-only count of
/// one of the partial indexes, never a scan of the deliveries' whole history.
pub(super) async fn count_pending(db: &Db) -> Result<u64, StoreError> {
    let client = db.get().await?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending' AND lease_owner IS NULL)
                  + (SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL)",
            &[],
        )
        .await
        .db()?;
    Ok(u64::try_from(row.try_get::<_, i64>(0).db()?).unwrap_or(0))
}
