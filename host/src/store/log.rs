//! The message log's shapes: a filtered, cursor-paginated listing of a tenant's events (newest
//! first) and one event with every delivery and attempt. Both backends answer them with one
//! indexed query per page (`events(tenant_id, created_at, id)` and, for a type filter,
//! `events(tenant_id, type, created_at, id)`), never by loading the tenant's events in memory.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Attempt, Delivery, DeliveryStatus, EventSummary};

/// Events of a page at most.
pub const MAX_LOG_LIMIT: u32 = 200;

/// Where a page starts: just after (older than) this event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// Unix seconds of the last event of the previous page.
    pub created_at: i64,
    /// Its id (ties on `created_at` are broken by id, descending).
    pub id: String,
}

impl LogCursor {
    /// The opaque text form given to clients (`next_cursor`).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at, self.id))
    }

    /// Reads [`LogCursor::encode`]'s form; `None` when it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (created_at, id) = text.split_once(':')?;
        let created_at = created_at.parse().ok()?;
        (!id.is_empty() && id.len() <= 100).then(|| Self {
            created_at,
            id: id.to_string(),
        })
    }
}

/// Which of a tenant's events to list.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// The tenant.
    pub tenant: String,
    /// Only events of this exact type.
    pub event_type: Option<String>,
    /// Only events with at least one delivery in this state.
    pub status: Option<DeliveryStatus>,
    /// Only events with a delivery to this endpoint (combined with `status`: the same delivery).
    pub endpoint: Option<String>,
    /// Only events created at or after this (Unix seconds).
    pub after: Option<i64>,
    /// Only events created before this (Unix seconds).
    pub before: Option<i64>,
    /// Continue after this event (from the previous page's `next_cursor`).
    pub cursor: Option<LogCursor>,
    /// Events per page (1 to [`MAX_LOG_LIMIT`]).
    pub limit: u32,
}

/// One event of the log, with how its deliveries stand.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LogEvent {
    /// `msg_…`.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Deliveries waiting for an attempt.
    pub pending: u32,
    /// Deliveries a receiver accepted.
    pub delivered: u32,
    /// Deliveries whose retries ran out.
    pub dead: u32,
    /// Deliveries held while their endpoint is disabled.
    pub held: u32,
}

/// A page of the log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// Newest first.
    pub events: Vec<LogEvent>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryHistory {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Every recorded attempt.
    pub attempt_log: Vec<Attempt>,
}

/// One event with every delivery and attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventHistory {
    /// The event.
    pub event: EventSummary,
    /// Its deliveries (by id) with their attempts.
    pub deliveries: Vec<DeliveryHistory>,
}

/// A value bound to a page's statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LogParam {
    /// A text value.
    Text(String),
    /// An integer value.
    Int(i64),
}

impl LogQuery {
    /// The statement of a page and its parameters, for both backends: `placeholder(n)` writes
    /// the n-th (from 1) parameter's placeholder (`?n` for SQLite, `$n` for PostgreSQL). It walks
    /// `events_log` (or `events_log_by_type`) backwards from the cursor (a row-value comparison
    /// on `(created_at, id)`), checks the status and endpoint filters per event through
    /// `deliveries_log`, and stops after `limit + 1` rows (the extra one says there is more).
    pub(crate) fn page_sql(&self, placeholder: fn(usize) -> String) -> (String, Vec<LogParam>) {
        let mut sql = String::from(
            "SELECT e.id, e.type, e.created_at,
               (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending'),
               (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'delivered'),
               (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'dead'),
               (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id AND d.status = 'held')
             FROM events e WHERE e.tenant_id = ",
        );
        let mut params = Vec::new();
        let mut bind = |sql: &mut String, value: LogParam| {
            params.push(value);
            sql.push_str(&placeholder(params.len()));
        };
        bind(&mut sql, LogParam::Text(self.tenant.clone()));
        if let Some(event_type) = &self.event_type {
            sql.push_str(" AND e.type = ");
            bind(&mut sql, LogParam::Text(event_type.clone()));
        }
        if let Some(after) = self.after {
            sql.push_str(" AND e.created_at >= ");
            bind(&mut sql, LogParam::Int(after));
        }
        if let Some(before) = self.before {
            sql.push_str(" AND e.created_at < ");
            bind(&mut sql, LogParam::Int(before));
        }
        if let Some(cursor) = &self.cursor {
            sql.push_str(" AND (e.created_at, e.id) < (");
            bind(&mut sql, LogParam::Int(cursor.created_at));
            sql.push_str(", ");
            bind(&mut sql, LogParam::Text(cursor.id.clone()));
            sql.push(')');
        }
        if self.status.is_some() || self.endpoint.is_some() {
            sql.push_str(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id");
            if let Some(status) = self.status {
                sql.push_str(" AND d.status = ");
                bind(&mut sql, LogParam::Text(status.as_str().into()));
            }
            if let Some(endpoint) = &self.endpoint {
                sql.push_str(" AND d.endpoint_id = ");
                bind(&mut sql, LogParam::Text(endpoint.clone()));
            }
            sql.push(')');
        }
        sql.push_str(" ORDER BY e.created_at DESC, e.id DESC LIMIT ");
        bind(&mut sql, LogParam::Int(i64::from(self.page_limit()) + 1));
        (sql, params)
    }

    /// `limit`, within 1 ..= [`MAX_LOG_LIMIT`].
    pub(crate) fn page_limit(&self) -> u32 {
        self.limit.clamp(1, MAX_LOG_LIMIT)
    }
}

/// The statement reading every attempt of one event's deliveries (parameters: the event id,
/// the tenant id), by delivery then attempt.
pub(crate) fn history_sql(placeholder: fn(usize) -> String) -> String {
    format!(
        "SELECT a.delivery_id, a.attempt, a.started_at, a.status_code, a.latency_ms, a.outcome,
                a.error, a.response_snippet
         FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.event_id = {} AND d.tenant_id = {}
         ORDER BY a.delivery_id, a.attempt",
        placeholder(1),
        placeholder(2)
    )
}

/// An event's history from its parts: each delivery gets its attempts (`(delivery id,
/// attempt)` pairs, in order).
pub(crate) fn history(
    event: EventSummary,
    deliveries: Vec<Delivery>,
    mut attempts: Vec<(String, Attempt)>,
) -> EventHistory {
    EventHistory {
        event,
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
    }
}

impl LogPage {
    /// The page of `events` fetched `limit + 1` at most: the extra one, if any, says there is
    /// a next page, which starts after the last one kept.
    pub(crate) fn cut(mut events: Vec<LogEvent>, limit: u32) -> Self {
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_cursor = events.last().filter(|_| more).map(|last| {
            LogCursor {
                created_at: last.created_at,
                id: last.id.clone(),
            }
            .encode()
        });
        Self {
            events,
            next_cursor,
        }
    }
}

/// Removes and returns the attempts of `delivery` from `(delivery id, attempt)` pairs.
fn take_attempts(attempts: &mut Vec<(String, Attempt)>, delivery: &str) -> Vec<Attempt> {
    let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(attempts)
        .into_iter()
        .partition(|(id, _)| id == delivery);
    *attempts = rest;
    mine.into_iter().map(|(_, a)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = LogCursor {
            created_at: 1_700_000_000,
            id: "msg_01abc".into(),
        };
        assert_eq!(LogCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(LogCursor::decode("not a cursor"), None);
        assert_eq!(LogCursor::decode(&URL_SAFE_NO_PAD.encode("x:msg")), None);
        assert_eq!(LogCursor::decode(&URL_SAFE_NO_PAD.encode("12:")), None);
    }

    #[test]
    fn a_page_binds_only_the_filters_given_in_order() {
        let query = LogQuery {
            tenant: "t".into(),
            status: Some(DeliveryStatus::Dead),
            cursor: Some(LogCursor {
                created_at: 5,
                id: "msg_5".into(),
            }),
            limit: 10,
            ..Default::default()
        };
        let (sql, params) = query.page_sql(|n| format!("${n}"));
        assert!(sql.contains("(e.created_at, e.id) < ($2, $3)"), "{sql}");
        assert!(sql.contains("d.status = $4"), "{sql}");
        assert!(sql.ends_with("LIMIT $5"), "{sql}");
        assert!(!sql.contains("e.type ="));
        assert_eq!(
            params,
            vec![
                LogParam::Text("t".into()),
                LogParam::Int(5),
                LogParam::Text("msg_5".into()),
                LogParam::Text("dead".into()),
                LogParam::Int(11),
            ]
        );
    }
}
