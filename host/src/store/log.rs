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
pub(crate) fn take_attempts(attempts: &mut Vec<(String, Attempt)>, delivery: &str) -> Vec<Attempt> {
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
}
