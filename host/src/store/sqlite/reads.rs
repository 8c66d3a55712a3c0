//! What the API reads back: an event, its deliveries, a delivery's attempts, and the count of
//! pending deliveries.

use rusqlite::{Connection, OptionalExtension};

use super::connection::OrStore;
use crate::model::{Attempt, Delivery, DeliveryStatus, EventSummary};
use crate::store::StoreError;

/// One event of a tenant (`NotFound` otherwise).
pub(super) fn event(
    conn: &Connection,
    tenant: &str,
    event: &str,
) -> Result<EventSummary, StoreError> {
    conn.prepare_cached(
        "SELECT id, type, created_at, body FROM events WHERE id = ?1 AND tenant_id = ?2",
    )
    .db()?
    .query_row([event, tenant], |r| {
        let body: Vec<u8> = r.get(3)?;
        Ok(EventSummary {
            id: r.get(0)?,
            event_type: r.get(1)?,
            created_at: r.get(2)?,
            envelope: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        })
    })
    .optional()
    .db()?
    .ok_or_else(|| StoreError::NotFound {
        what: "event",
        id: event.to_string(),
    })
}

fn event_exists(conn: &Connection, tenant: &str, event: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM events WHERE id = ?1 AND tenant_id = ?2")
        .db()?
        .query_row([event, tenant], |_| Ok(()))
        .optional()
        .db()
        .map(|row| row.is_some())
}

/// The deliveries of one event of a tenant, by id (`NotFound` if the event is not the
/// tenant's).
pub(super) fn deliveries_of_event(
    conn: &Connection,
    tenant: &str,
    event: &str,
) -> Result<Vec<Delivery>, StoreError> {
    if !event_exists(conn, tenant, event)? {
        return Err(StoreError::NotFound {
            what: "event",
            id: event.to_string(),
        });
    }
    let rows = conn
        .prepare_cached(
            "SELECT id, event_id, endpoint_id, status, attempts, next_attempt_at, last_status, last_error, updated_at
             FROM deliveries WHERE event_id = ?1 AND tenant_id = ?2 ORDER BY id",
        )
        .db()?
        .query_map([event, tenant], |r| {
            Ok((
                r.get::<_, String>(3)?,
                Delivery {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    endpoint_id: r.get(2)?,
                    status: DeliveryStatus::Pending,
                    attempts: r.get(4)?,
                    next_attempt_at: r.get(5)?,
                    last_status_code: r.get(6)?,
                    last_error: r.get(7)?,
                    updated_at: r.get(8)?,
                },
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    rows.into_iter()
        .map(|(status, mut delivery)| {
            delivery.status = DeliveryStatus::parse(&status).ok_or_else(|| {
                StoreError::Schema(format!(
                    "delivery `{}` has an unknown status `{status}`",
                    delivery.id
                ))
            })?;
            Ok(delivery)
        })
        .collect()
}

/// The attempts of one delivery of a tenant's event, in order (`NotFound` if the delivery is
/// not of that event of that tenant).
pub(super) fn attempts_of_delivery(
    conn: &Connection,
    tenant: &str,
    event: &str,
    delivery: &str,
) -> Result<Vec<Attempt>, StoreError> {
    let exists = conn
        .prepare_cached(
            "SELECT 1 FROM deliveries WHERE id = ?1 AND event_id = ?2 AND tenant_id = ?3",
        )
        .db()?
        .query_row([delivery, event, tenant], |_| Ok(()))
        .optional()
        .db()?
        .is_some();
    if !exists {
        return Err(StoreError::NotFound {
            what: "delivery",
            id: delivery.to_string(),
        });
    }
    conn.prepare_cached(
        "SELECT attempt, started_at, status_code, latency_ms, outcome, error, response_snippet
         FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )
    .db()?
    .query_map([delivery], |r| {
        Ok(Attempt {
            attempt: r.get(0)?,
            started_at: r.get(1)?,
            status_code: r.get(2)?,
            latency_ms: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            outcome: r.get(4)?,
            error: r.get(5)?,
            response_snippet: r.get(6)?,
        })
    })
    .db()?
    .collect::<Result<Vec<_>, _>>()
    .db()
}

/// Deliveries waiting (leased or not). Counted from the two partial indexes (unleased pending
/// ones, leased ones) rather than the table, which also holds every delivered and dead one.
pub(super) fn count_pending(conn: &Connection) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT
               (SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_claimable
                 WHERE status = 'pending' AND lease_owner IS NULL)
             + (SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_leased
                 WHERE lease_owner IS NOT NULL AND status = 'pending')",
        )
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    Ok(u64::try_from(count).unwrap_or(0))
}
