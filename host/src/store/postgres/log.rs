//! The message log: a page of a tenant's events (newest first, filtered, after a cursor) and
//! one event's deliveries with their attempts.
//!
//! A page is one statement walking `events_log` (or `events_log_by_type` for a type filter)
//! backwards from the cursor, the status and endpoint filters checked per event through the
//! `deliveries_log` index, and stopping after `limit + 1` rows.

use tokio_postgres::types::ToSql;

use super::error::OrStore;
use super::pool::Db;
use super::reads;
use crate::model::Attempt;
use crate::store::log::take_attempts;
use crate::store::{
    DeliveryHistory, EventHistory, LogEvent, LogPage, LogQuery, MAX_LOG_LIMIT, StoreError,
};

/// A page of the log.
pub(super) async fn log_events(db: &Db, query: &LogQuery) -> Result<LogPage, StoreError> {
    let mut sql = String::from(
        "SELECT e.id, e.type, e.created_at,
           (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending'),
           (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'delivered'),
           (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'dead')
         FROM events e WHERE e.tenant_id = $1",
    );
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(query.tenant.clone())];
    // Binds a value; returns its placeholder (`$N`).
    let mut param = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        format!("${}", params.len())
    };
    if let Some(event_type) = &query.event_type {
        sql.push_str(&format!(
            " AND e.type = {}",
            param(Box::new(event_type.clone()))
        ));
    }
    if let Some(after) = query.after {
        sql.push_str(&format!(" AND e.created_at >= {}", param(Box::new(after))));
    }
    if let Some(before) = query.before {
        sql.push_str(&format!(" AND e.created_at < {}", param(Box::new(before))));
    }
    if let Some(cursor) = &query.cursor {
        let at = param(Box::new(cursor.created_at));
        let id = param(Box::new(cursor.id.clone()));
        sql.push_str(&format!(" AND (e.created_at, e.id) < ({at}, {id})"));
    }
    if query.status.is_some() || query.endpoint.is_some() {
        sql.push_str(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id");
        if let Some(status) = query.status {
            sql.push_str(&format!(
                " AND d.status = {}",
                param(Box::new(status.as_str().to_string()))
            ));
        }
        if let Some(endpoint) = &query.endpoint {
            sql.push_str(&format!(
                " AND d.endpoint_id = {}",
                param(Box::new(endpoint.clone()))
            ));
        }
        sql.push(')');
    }
    let limit = query.limit.clamp(1, MAX_LOG_LIMIT);
    sql.push_str(&format!(
        " ORDER BY e.created_at DESC, e.id DESC LIMIT {}",
        param(Box::new(i64::from(limit) + 1))
    ));
    let client = db.get().await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(sql.as_str(), &refs).await.db()?;
    let count = |row: &tokio_postgres::Row, i: usize| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.try_get::<_, i64>(i).db()?).unwrap_or(u32::MAX))
    };
    let events = rows
        .iter()
        .map(|row| {
            Ok(LogEvent {
                id: row.try_get(0).db()?,
                event_type: row.try_get(1).db()?,
                created_at: row.try_get(2).db()?,
                pending: count(row, 3)?,
                delivered: count(row, 4)?,
                dead: count(row, 5)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(LogPage::cut(events, limit))
}

/// One event with its deliveries and their attempts.
pub(super) async fn event_history(
    db: &Db,
    tenant: &str,
    event: &str,
) -> Result<EventHistory, StoreError> {
    let summary = reads::event(db, tenant, event).await?;
    let deliveries = reads::deliveries_of_event(db, tenant, event).await?;
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.status_code, a.latency_ms, a.outcome,
                    a.error, a.response_snippet
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = $1 AND d.tenant_id = $2
             ORDER BY a.delivery_id, a.attempt",
            &[&event, &tenant],
        )
        .await
        .db()?;
    let mut attempts = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<_, String>(0).db()?,
                Attempt {
                    attempt: u32::try_from(row.try_get::<_, i32>(1).db()?).unwrap_or(0),
                    started_at: row.try_get(2).db()?,
                    status_code: row
                        .try_get::<_, Option<i32>>(3)
                        .db()?
                        .and_then(|code| u16::try_from(code).ok()),
                    latency_ms: u64::try_from(row.try_get::<_, i64>(4).db()?).unwrap_or(0),
                    outcome: row.try_get(5).db()?,
                    error: row.try_get(6).db()?,
                    response_snippet: row.try_get(7).db()?,
                },
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
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
