//! The message log: a page of a tenant's events (newest first, filtered, after a cursor) and
//! one event's deliveries with their attempts.
//!
//! A page is one statement walking `events_log` (or `events_log_by_type` for a type filter)
//! backwards from the cursor, the status and endpoint filters checked per event through the
//! covering `deliveries_log` index, and stopping after `limit + 1` rows.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::connection::OrStore;
use super::reads;
use crate::model::Attempt;
use crate::store::log::take_attempts;
use crate::store::{
    DeliveryHistory, EventHistory, LogEvent, LogPage, LogQuery, MAX_LOG_LIMIT, StoreError,
};

/// A page of the log.
pub(super) fn log_events(conn: &Connection, query: &LogQuery) -> Result<LogPage, StoreError> {
    let mut sql = String::from(
        "SELECT e.id, e.type, e.created_at,
           (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending'),
           (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'delivered'),
           (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'dead')
         FROM events e WHERE e.tenant_id = ?1",
    );
    let mut params: Vec<Value> = vec![Value::Text(query.tenant.clone())];
    // Binds a value; returns its placeholder (`?N`).
    let mut param = |value: Value| {
        params.push(value);
        format!("?{}", params.len())
    };
    if let Some(event_type) = &query.event_type {
        sql.push_str(&format!(
            " AND e.type = {}",
            param(Value::Text(event_type.clone()))
        ));
    }
    if let Some(after) = query.after {
        sql.push_str(&format!(
            " AND e.created_at >= {}",
            param(Value::Integer(after))
        ));
    }
    if let Some(before) = query.before {
        sql.push_str(&format!(
            " AND e.created_at < {}",
            param(Value::Integer(before))
        ));
    }
    if let Some(cursor) = &query.cursor {
        let at = param(Value::Integer(cursor.created_at));
        let id = param(Value::Text(cursor.id.clone()));
        sql.push_str(&format!(
            " AND (e.created_at < {at} OR (e.created_at = {at} AND e.id < {id}))"
        ));
    }
    if query.status.is_some() || query.endpoint.is_some() {
        sql.push_str(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id");
        if let Some(status) = query.status {
            sql.push_str(&format!(
                " AND d.status = {}",
                param(Value::Text(status.as_str().into()))
            ));
        }
        if let Some(endpoint) = &query.endpoint {
            sql.push_str(&format!(
                " AND d.endpoint_id = {}",
                param(Value::Text(endpoint.clone()))
            ));
        }
        sql.push(')');
    }
    let limit = query.limit.clamp(1, MAX_LOG_LIMIT);
    sql.push_str(&format!(
        " ORDER BY e.created_at DESC, e.id DESC LIMIT {}",
        param(Value::Integer(i64::from(limit) + 1))
    ));
    let events = conn
        .prepare_cached(&sql)
        .db()?
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok(LogEvent {
                id: r.get(0)?,
                event_type: r.get(1)?,
                created_at: r.get(2)?,
                pending: r.get(3)?,
                delivered: r.get(4)?,
                dead: r.get(5)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(LogPage::cut(events, limit))
}

/// One event with its deliveries and their attempts.
pub(super) fn event_history(
    conn: &Connection,
    tenant: &str,
    event: &str,
) -> Result<EventHistory, StoreError> {
    let summary = reads::event(conn, tenant, event)?;
    let deliveries = reads::deliveries_of_event(conn, tenant, event)?;
    let mut attempts: Vec<(String, Attempt)> = conn
        .prepare_cached(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.status_code, a.latency_ms, a.outcome,
                    a.error, a.response_snippet
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = ?1 AND d.tenant_id = ?2
             ORDER BY a.delivery_id, a.attempt",
        )
        .db()?
        .query_map([event, tenant], |r| {
            Ok((
                r.get(0)?,
                Attempt {
                    attempt: r.get(1)?,
                    started_at: r.get(2)?,
                    status_code: r.get(3)?,
                    latency_ms: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    outcome: r.get(5)?,
                    error: r.get(6)?,
                    response_snippet: r.get(7)?,
                },
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(EventHistory {
        event: summary,
        deliveries: deliveries
            .into_iter()
            .map(|delivery| {
                let attempt_log = take_attempts(&mut attempts, &delivery.id);
                DeliveryHistory {
                    delivery,
                    attempt_log,
                }
            })
            .collect(),
    })
}
