//! The message log on SQLite: the statements [`LogQuery::page_sql`] and
//! [`crate::store::log::history_sql`] write, run on a read connection.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::connection::OrStore;
use super::reads;
use crate::model::Attempt;
use crate::store::log::{LogParam, history, history_sql};
use crate::store::{EventHistory, LogEvent, LogPage, LogQuery, StoreError};

/// A page of the log.
pub(super) fn log_events(conn: &Connection, query: &LogQuery) -> Result<LogPage, StoreError> {
    let (sql, params) = query.page_sql(|n| format!("?{n}"));
    let params = params.into_iter().map(|p| match p {
        LogParam::Text(text) => Value::Text(text),
        LogParam::Int(n) => Value::Integer(n),
    });
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
                held: r.get(6)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(LogPage::cut(events, query.page_limit()))
}

/// One event with its deliveries and their attempts.
pub(super) fn event_history(
    conn: &Connection,
    tenant: &str,
    event: &str,
) -> Result<EventHistory, StoreError> {
    let summary = reads::event(conn, tenant, event)?;
    let deliveries = reads::deliveries_of_event(conn, tenant, event)?;
    let attempts = conn
        .prepare_cached(&history_sql(|n| format!("?{n}")))
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
    Ok(history(summary, deliveries, attempts))
}
