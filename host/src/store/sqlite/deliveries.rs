//! Events and deliveries: ingest, attempt records, replays, and the leases under which a node
//! holds deliveries (claims, renewals, releases).
//!
//! Invariant kept by every statement here: a delivery whose status is not `pending` has no lease
//! (each statement that makes one delivered or dead clears `lease_owner` and `lease_expires_at`).

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::OrStore;
use crate::model::{DeliveryStatus, now_millis, now_unix};
use crate::store::{
    AttemptRecord, ClaimRequest, IngestOutcome, IngestRequest, Lease, PendingDelivery, StoreError,
};

/// Stores the events and their deliveries, leasing the first `request.claim` new deliveries to
/// `request.lease.owner`; a known idempotency key returns the first answer instead.
pub(super) fn ingest(
    conn: &Connection,
    request: IngestRequest,
) -> Result<IngestOutcome, StoreError> {
    let IngestRequest {
        tenant,
        events,
        idempotency_key,
        response,
        lease,
        claim,
    } = request;
    if let Some(key) = &idempotency_key {
        let previous: Option<String> = conn
            .prepare_cached(
                "SELECT response FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2",
            )
            .db()?
            .query_row([&tenant, key], |r| r.get(0))
            .optional()
            .db()?;
        if let Some(previous) = previous {
            let value = serde_json::from_str(&previous).unwrap_or(serde_json::Value::Null);
            return Ok(IngestOutcome::Replayed(value));
        }
    }
    let now_s = now_unix();
    let now_ms = now_millis();
    let mut claimed =
        Vec::with_capacity(claim.min(events.iter().map(|e| e.endpoint_ids.len()).sum()));
    let mut unclaimed = 0usize;
    {
        let mut insert_event = conn
            .prepare_cached(
                "INSERT INTO events (id, tenant_id, type, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?;
        let mut insert_delivery = conn
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, endpoint_id, tenant_id, status, attempts, next_attempt_at,
                   updated_at, lease_owner, lease_expires_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?7, ?8)",
            )
            .db()?;
        let mut insert_held = conn
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, endpoint_id, tenant_id, status, attempts, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'held', 0, ?5)",
            )
            .db()?;
        for event in &events {
            insert_event
                .execute(params![
                    event.id,
                    tenant,
                    event.event_type,
                    &event.body[..],
                    event.created_at
                ])
                .db()?;
            for endpoint in &event.held_endpoint_ids {
                insert_held
                    .execute(params![
                        crate::model::new_id("dlv"),
                        event.id,
                        endpoint,
                        tenant,
                        now_s
                    ])
                    .db()?;
            }
            for endpoint in &event.endpoint_ids {
                let id = crate::model::new_id("dlv");
                let leased = claimed.len() < claim;
                let (owner, expires) = if leased {
                    (Some(lease.owner.as_str()), Some(lease.expires_at_ms))
                } else {
                    (None, None)
                };
                insert_delivery
                    .execute(params![
                        id, event.id, endpoint, tenant, now_ms, now_s, owner, expires
                    ])
                    .db()?;
                if leased {
                    claimed.push(PendingDelivery {
                        delivery_id: id,
                        event_id: event.id.clone(),
                        event_type: event.event_type.clone(),
                        endpoint_id: endpoint.clone(),
                        tenant_id: tenant.clone(),
                        attempts: 0,
                        round_start: 0,
                        due_ms: now_ms,
                        // The event's one copy, shared by all its deliveries.
                        body: Some(event.body.clone()),
                    });
                } else {
                    unclaimed += 1;
                }
            }
        }
    }
    if let Some(key) = &idempotency_key {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (tenant_id, key, response, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?
        .execute(params![tenant, key, response.to_string(), now_s])
        .db()?;
    }
    Ok(IngestOutcome::Created {
        response,
        claimed,
        unclaimed,
    })
}

/// Records an attempt and the delivery's new state. The lease is kept only when the delivery
/// stays pending and `record.keep_lease`.
pub(super) fn record_attempt(conn: &Connection, record: &AttemptRecord) -> Result<(), StoreError> {
    let outcome = match record.new_status {
        DeliveryStatus::Delivered => "success",
        DeliveryStatus::Pending => "failure",
        DeliveryStatus::Dead => "dead",
        DeliveryStatus::Held => "failure",
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at, status_code, latency_ms, outcome, error, response_snippet)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .db()?
    .execute(params![
        record.delivery_id,
        record.attempt,
        record.started_at_ms,
        record.status_code,
        i64::try_from(record.latency_ms).unwrap_or(i64::MAX),
        outcome,
        record.error,
        record.response_snippet
    ])
    .db()?;
    let pending = record.new_status == DeliveryStatus::Pending;
    // A pending delivery without a next attempt time would never come due again: due now.
    let next_attempt_at = match (pending, record.next_attempt_at) {
        (true, None) => Some(now_millis()),
        (_, next) => next,
    };
    let sql = if pending && record.keep_lease {
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_status = ?5, last_error = ?6,
           updated_at = ?7
         WHERE id = ?1"
    } else {
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_status = ?5, last_error = ?6,
           updated_at = ?7, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1"
    };
    conn.prepare_cached(sql)
        .db()?
        .execute(params![
            record.delivery_id,
            record.new_status.as_str(),
            record.attempt,
            next_attempt_at,
            record.status_code,
            record.error,
            now_unix()
        ])
        .db()?;
    Ok(())
}

/// Marks a delivery dead without an attempt; clears its lease.
pub(super) fn mark_dead(
    conn: &Connection,
    delivery_id: &str,
    reason: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = ?2, updated_at = ?3,
           lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1",
    )
    .db()?
    .execute(params![delivery_id, reason, now_unix()])
    .db()?;
    Ok(())
}

/// Puts a delivered or dead delivery of the tenant's event back in the queue, due now, leased to
/// `lease.owner`, starting a new retry round. The body is not loaded.
pub(super) fn requeue(
    conn: &Connection,
    tenant: &str,
    event: &str,
    delivery: &str,
    lease: &Lease,
) -> Result<PendingDelivery, StoreError> {
    let row = conn
        .query_row(
            "SELECT d.status, d.attempts, d.endpoint_id, ev.type FROM deliveries d JOIN events ev ON ev.id = d.event_id
             WHERE d.id = ?1 AND d.event_id = ?2 AND d.tenant_id = ?3",
            [delivery, event, tenant],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()
        .db()?;
    let Some((status, attempts, endpoint_id, event_type)) = row else {
        return Err(StoreError::NotFound {
            what: "delivery",
            id: delivery.to_string(),
        });
    };
    if status == DeliveryStatus::Pending.as_str() || status == DeliveryStatus::Held.as_str() {
        return Err(StoreError::Conflict(format!(
            "delivery `{delivery}` is still {status}; only delivered or dead deliveries can be replayed"
        )));
    }
    let now_ms = now_millis();
    conn.execute(
        "UPDATE deliveries SET status = 'pending', round_start = attempts, next_attempt_at = ?2, updated_at = ?3,
           lease_owner = ?4, lease_expires_at = ?5
         WHERE id = ?1",
        params![delivery, now_ms, now_unix(), lease.owner, lease.expires_at_ms],
    )
    .db()?;
    Ok(PendingDelivery {
        delivery_id: delivery.to_string(),
        event_id: event.to_string(),
        event_type,
        endpoint_id,
        tenant_id: tenant.to_string(),
        attempts,
        round_start: attempts,
        due_ms: now_ms,
        body: None,
    })
}

/// Clears lapsed leases, then leases up to `request.limit` unleased pending deliveries due by
/// `request.due_before_ms`, oldest due first (bodies not loaded).
pub(super) fn claim(
    conn: &Connection,
    request: &ClaimRequest,
) -> Result<Vec<PendingDelivery>, StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries INDEXED BY deliveries_leased SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner IS NOT NULL AND lease_expires_at < ?1",
    )
    .db()?
    .execute([request.now_ms])
    .db()?;
    if request.limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let due: Vec<PendingDelivery> = conn
        .prepare_cached(
            "SELECT d.id, d.event_id, ev.type, d.endpoint_id, d.tenant_id, d.attempts, d.round_start, d.next_attempt_at
             FROM deliveries d INDEXED BY deliveries_claimable JOIN events ev ON ev.id = d.event_id
             WHERE d.status = 'pending' AND d.lease_owner IS NULL AND d.next_attempt_at <= ?1
             ORDER BY d.next_attempt_at, d.id
             LIMIT ?2",
        )
        .db()?
        .query_map(params![request.due_before_ms, limit], |r| {
            Ok(PendingDelivery {
                delivery_id: r.get(0)?,
                event_id: r.get(1)?,
                event_type: r.get(2)?,
                endpoint_id: r.get(3)?,
                tenant_id: r.get(4)?,
                attempts: r.get(5)?,
                round_start: r.get(6)?,
                due_ms: r.get(7)?,
                body: None,
            })
        })
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut lease = conn
        .prepare_cached(
            "UPDATE deliveries SET lease_owner = ?2, lease_expires_at = ?3 WHERE id = ?1",
        )
        .db()?;
    for delivery in &due {
        lease
            .execute(params![
                delivery.delivery_id,
                request.lease.owner,
                request.lease.expires_at_ms
            ])
            .db()?;
    }
    Ok(due)
}

/// Extends every lease of `lease.owner` to `lease.expires_at_ms`; how many.
pub(super) fn renew_leases(conn: &Connection, lease: &Lease) -> Result<u64, StoreError> {
    let renewed = conn
        .prepare_cached(
            "UPDATE deliveries INDEXED BY deliveries_leased SET lease_expires_at = ?2 WHERE lease_owner = ?1",
        )
        .db()?
        .execute(params![lease.owner, lease.expires_at_ms])
        .db()?;
    Ok(renewed as u64)
}

/// Releases `owner`'s leases: all of them, or only those of `deliveries`; how many.
pub(super) fn release_leases(
    conn: &Connection,
    owner: &str,
    deliveries: Option<&[String]>,
) -> Result<u64, StoreError> {
    let released = match deliveries {
        None => conn
            .prepare_cached(
                "UPDATE deliveries INDEXED BY deliveries_leased SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE lease_owner = ?1",
            )
            .db()?
            .execute([owner])
            .db()?,
        Some(ids) => {
            let mut release = conn
                .prepare_cached(
                    "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ?2 AND lease_owner = ?1",
                )
                .db()?;
            let mut released = 0;
            for id in ids {
                released += release.execute([owner, id.as_str()]).db()?;
            }
            released
        }
    };
    Ok(released as u64)
}

/// The envelope of an event.
pub(super) fn event_body(conn: &Connection, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT body FROM events WHERE id = ?1")
        .db()?
        .query_row([event_id], |r| r.get(0))
        .optional()
        .db()
}
