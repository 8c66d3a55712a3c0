//! Attempt records: fire-and-forget into a [`Batcher`], written a batch at a time in one
//! transaction with two multi-row statements (the attempts upserted from `UNNEST`ed arrays, the
//! deliveries updated from them), then each record's `done` is called. A batch the database
//! refuses is written again record by record, so that one bad record fails alone.

use std::borrow::Cow;
use std::collections::HashMap;

use super::batch::{Batcher, Weighted, batch_error, retry_one_by_one};
use super::error::OrStore;
use super::pool::Db;
use crate::model::{DeliveryStatus, now_unix};
use crate::store::{AttemptRecord, RecordDone, StoreError};

/// One queued record and whom to tell.
pub(super) struct RecordJob {
    pub(super) record: AttemptRecord,
    pub(super) done: RecordDone,
}

impl Weighted for RecordJob {}

/// Starts the batcher of attempt records: one batch at a time, so that two records of one
/// delivery are applied in the order they were made.
pub(super) fn start(db: Db, max_batch: usize) -> Batcher<RecordJob> {
    Batcher::start(max_batch, 1, move |jobs| {
        let db = db.clone();
        async move { commit(&db, jobs).await }
    })
}

const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (delivery_id, attempt, started_at, status_code, latency_ms, outcome, error, response_snippet)
     SELECT u.* FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::int[], $5::bigint[], $6::text[], $7::text[], $8::text[])
         AS u(delivery_id, attempt, started_at, status_code, latency_ms, outcome, error, response_snippet)
     WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = u.delivery_id)
     ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = EXCLUDED.started_at,
         status_code = EXCLUDED.status_code, latency_ms = EXCLUDED.latency_ms, outcome = EXCLUDED.outcome,
         error = EXCLUDED.error, response_snippet = EXCLUDED.response_snippet";

/// A delivered or dead delivery never keeps a lease; a pending one keeps it only when asked.
const UPDATE_DELIVERIES: &str = "UPDATE deliveries d SET status = u.status, attempts = u.attempt,
         next_attempt_at = u.next_attempt_at, last_status = u.status_code, last_error = u.error,
         updated_at = $8,
         lease_owner = CASE WHEN u.status = 'pending' AND u.keep THEN d.lease_owner END,
         lease_expires_at = CASE WHEN u.status = 'pending' AND u.keep THEN d.lease_expires_at END
     FROM UNNEST($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::text[], $7::bool[])
         AS u(id, status, attempt, next_attempt_at, status_code, error, keep)
     WHERE d.id = u.id";

/// Text PostgreSQL accepts: no NUL (a receiver's response may hold one).
pub(super) fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(value)
    }
}

fn outcome(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Delivered => "success",
        DeliveryStatus::Pending | DeliveryStatus::Held => "failure",
        DeliveryStatus::Dead => "dead",
    }
}

fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

async fn commit(db: &Db, jobs: Vec<RecordJob>) {
    let result = {
        let records: Vec<&AttemptRecord> = jobs.iter().map(|job| &job.record).collect();
        write(db, &records).await
    };
    match result {
        Ok(()) => {
            db.committed(jobs.len());
            for job in jobs {
                (job.done)(Ok(()));
            }
        }
        Err(error) if retry_one_by_one(&error, jobs.len()) => {
            tracing::warn!(%error, records = jobs.len(), "a batch of attempt records failed; writing them one by one");
            for job in jobs {
                let result = write(db, &[&job.record]).await;
                if result.is_ok() {
                    db.committed(1);
                }
                (job.done)(result.map_err(batch_error));
            }
        }
        Err(error) => {
            let error = batch_error(error);
            for job in jobs {
                (job.done)(Err(error.clone()));
            }
        }
    }
}

/// Writes `records` in one transaction. A later record of the same attempt (or, for the
/// delivery's state, of the same delivery) wins, as it would have written last.
async fn write(db: &Db, records: &[&AttemptRecord]) -> Result<(), StoreError> {
    let mut attempt_index: HashMap<(&str, u32), usize> = HashMap::with_capacity(records.len());
    let mut delivery_index: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut attempts: Vec<&AttemptRecord> = Vec::with_capacity(records.len());
    let mut deliveries: Vec<&AttemptRecord> = Vec::with_capacity(records.len());
    for &record in records {
        match attempt_index.get(&(record.delivery_id.as_str(), record.attempt)) {
            Some(&at) => attempts[at] = record,
            None => {
                attempt_index.insert((&record.delivery_id, record.attempt), attempts.len());
                attempts.push(record);
            }
        }
        match delivery_index.get(record.delivery_id.as_str()) {
            Some(&at) => deliveries[at] = record,
            None => {
                delivery_index.insert(&record.delivery_id, deliveries.len());
                deliveries.push(record);
            }
        }
    }

    let a_delivery: Vec<&str> = attempts.iter().map(|r| r.delivery_id.as_str()).collect();
    let a_attempt: Vec<i32> = attempts.iter().map(|r| int(r.attempt)).collect();
    let a_started: Vec<i64> = attempts.iter().map(|r| r.started_at_ms).collect();
    let a_status: Vec<Option<i32>> = attempts
        .iter()
        .map(|r| r.status_code.map(i32::from))
        .collect();
    let a_latency: Vec<i64> = attempts
        .iter()
        .map(|r| i64::try_from(r.latency_ms).unwrap_or(i64::MAX))
        .collect();
    let a_outcome: Vec<&str> = attempts.iter().map(|r| outcome(r.new_status)).collect();
    let a_error: Vec<Option<Cow<'_, str>>> = attempts
        .iter()
        .map(|r| r.error.as_deref().map(text))
        .collect();
    let a_snippet: Vec<Option<Cow<'_, str>>> = attempts
        .iter()
        .map(|r| r.response_snippet.as_deref().map(text))
        .collect();

    let d_id: Vec<&str> = deliveries.iter().map(|r| r.delivery_id.as_str()).collect();
    let d_status: Vec<&str> = deliveries.iter().map(|r| r.new_status.as_str()).collect();
    let d_attempt: Vec<i32> = deliveries.iter().map(|r| int(r.attempt)).collect();
    let d_next: Vec<Option<i64>> = deliveries
        .iter()
        .map(|r| match r.new_status {
            DeliveryStatus::Pending => r.next_attempt_at,
            _ => None,
        })
        .collect();
    let d_status_code: Vec<Option<i32>> = deliveries
        .iter()
        .map(|r| r.status_code.map(i32::from))
        .collect();
    let d_error: Vec<Option<Cow<'_, str>>> = deliveries
        .iter()
        .map(|r| r.error.as_deref().map(text))
        .collect();
    let d_keep: Vec<bool> = deliveries.iter().map(|r| r.keep_lease).collect();
    let now_s = now_unix();

    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    let (insert, update) = futures::try_join!(
        tx.prepare_cached(INSERT_ATTEMPTS),
        tx.prepare_cached(UPDATE_DELIVERIES)
    )
    .db()?;
    // Both statements go out at once (tokio-postgres pipelines them); they run in order.
    let insert_attempts = async {
        tx.execute(
            &insert,
            &[
                &a_delivery,
                &a_attempt,
                &a_started,
                &a_status,
                &a_latency,
                &a_outcome,
                &a_error,
                &a_snippet,
            ],
        )
        .await
    };
    let update_deliveries = async {
        tx.execute(
            &update,
            &[
                &d_id,
                &d_status,
                &d_attempt,
                &d_next,
                &d_status_code,
                &d_error,
                &d_keep,
                &now_s,
            ],
        )
        .await
    };
    futures::try_join!(insert_attempts, update_deliveries).db()?;
    tx.commit().await.db()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_nul_is_borrowed_and_nul_is_replaced() {
        assert!(matches!(text("fine"), Cow::Borrowed("fine")));
        assert_eq!(text("a\0b"), "a\u{fffd}b");
    }
}
