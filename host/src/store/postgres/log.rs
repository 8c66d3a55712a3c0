//! The message log on PostgreSQL: the statements [`LogQuery::page_sql`] and
//! [`crate::store::log::history_sql`] write.

use tokio_postgres::types::ToSql;

use super::error::OrStore;
use super::pool::Db;
use super::reads;
use crate::model::Attempt;
use crate::store::log::{LogParam, history, history_sql};
use crate::store::{EventHistory, LogEvent, LogPage, LogQuery, StoreError};

/// A page of the log.
pub(super) async fn log_events(db: &Db, query: &LogQuery) -> Result<LogPage, StoreError> {
    let (sql, params) = query.page_sql(|n| format!("${n}"));
    let params: Vec<Box<dyn ToSql + Sync + Send>> = params
        .into_iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                LogParam::Text(text) => Box::new(text),
                LogParam::Int(n) => Box::new(n),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let client = db.get().await?;
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
                held: count(row, 6)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(LogPage::cut(events, query.page_limit()))
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
            history_sql(|n| format!("${n}")).as_str(),
            &[&event, &tenant],
        )
        .await
        .db()?;
    let attempts = rows
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
    Ok(history(summary, deliveries, attempts))
}
