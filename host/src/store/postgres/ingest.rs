//! Ingest: events and their deliveries.
//!
//! - Without an idempotency key, requests go through a [`Batcher`]: one transaction inserts the
//!   events and deliveries of every request of the batch with two multi-row statements
//!   (`UNNEST`ed arrays), and each caller is answered after the commit. A few batches commit
//!   at once ([`IN_FLIGHT`]). A batch the database refuses is written again request by
//!   request, so that one bad request fails alone.
//! - With a key, a request runs in its own transaction that first inserts the key
//!   (`ON CONFLICT DO NOTHING`). When the key exists (or a concurrent request on any node holds
//!   it and then commits) nothing is written and the stored answer is returned.
//!
//! The first `claim` new deliveries of a request are leased to its node at insert and returned
//! with the event's body (the request's `Arc`, shared by the event's deliveries); when some are
//! left unleased, `NOTIFY wasmhook_work` in the same transaction wakes the other nodes.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::batch::{Batcher, Weighted, batch_error, retry_one_by_one};
use super::error::OrStore;
use super::listen::WORK_CHANNEL;
use super::pool::Db;
use crate::model::{new_id, now_millis, now_unix};
use crate::store::{IngestOutcome, IngestRequest, PendingDelivery, StoreError};

/// One queued ingest and where its answer goes.
pub(super) struct IngestJob {
    pub(super) request: IngestRequest,
    pub(super) answer: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

impl Weighted for IngestJob {
    fn weight(&self) -> usize {
        self.request.events.len()
    }
}

/// Batches of ingests committing at once: each is new rows only, so they never wait on each
/// other, and while one waits for its commit the others use the server.
const IN_FLIGHT: usize = 4;

/// Starts the batcher of ingests without an idempotency key.
pub(super) fn start(db: Db, max_batch: usize) -> Batcher<IngestJob> {
    Batcher::start(max_batch, IN_FLIGHT, move |jobs| {
        let db = db.clone();
        async move { commit(&db, jobs).await }
    })
}

/// Events of existing tenants only: the statement checks the tenant without locking its row
/// (there is no foreign key, schema migration 6), and a short count is an error.
const INSERT_EVENTS: &str = "INSERT INTO events (id, tenant_id, type, body, created_at)
     SELECT u.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[])
         AS u(id, tenant_id, type, body, created_at)
     WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = u.tenant_id)";

const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (id, event_id, endpoint_id, tenant_id, status, attempts,
         round_start, next_attempt_at, updated_at, lease_owner, lease_expires_at)
     SELECT u.id, u.event_id, u.endpoint_id, u.tenant_id, u.status, 0, 0,
         CASE WHEN u.status = 'held' THEN NULL ELSE $7::bigint END, $8, u.lease_owner, u.lease_expires_at
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $9::text[])
         AS u(id, event_id, endpoint_id, tenant_id, lease_owner, lease_expires_at, status)";

const INSERT_KEY: &str = "INSERT INTO idempotency_keys (tenant_id, key, response, created_at)
     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, key) DO NOTHING";

const READ_KEY: &str = "SELECT response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2";

/// What one request comes to once committed.
struct Created {
    claimed: Vec<PendingDelivery>,
    unclaimed: usize,
}

/// The rows of some requests, as the arrays the statements take.
struct Plan<'a> {
    event_id: Vec<&'a str>,
    event_tenant: Vec<&'a str>,
    event_type: Vec<&'a str>,
    event_body: Vec<&'a [u8]>,
    event_created: Vec<i64>,
    delivery_id: Vec<String>,
    delivery_event: Vec<&'a str>,
    delivery_endpoint: Vec<&'a str>,
    delivery_tenant: Vec<&'a str>,
    delivery_owner: Vec<Option<&'a str>>,
    delivery_expires: Vec<Option<i64>>,
    delivery_status: Vec<&'static str>,
    now_ms: i64,
    now_s: i64,
    notify_work: bool,
    created: Vec<Created>,
}

impl<'a> Plan<'a> {
    fn new(requests: &[&'a IngestRequest]) -> Self {
        let events: usize = requests.iter().map(|r| r.events.len()).sum();
        let deliveries: usize = requests
            .iter()
            .flat_map(|r| r.events.iter())
            .map(|e| e.deliveries())
            .sum();
        let mut plan = Plan {
            event_id: Vec::with_capacity(events),
            event_tenant: Vec::with_capacity(events),
            event_type: Vec::with_capacity(events),
            event_body: Vec::with_capacity(events),
            event_created: Vec::with_capacity(events),
            delivery_id: Vec::with_capacity(deliveries),
            delivery_event: Vec::with_capacity(deliveries),
            delivery_endpoint: Vec::with_capacity(deliveries),
            delivery_tenant: Vec::with_capacity(deliveries),
            delivery_owner: Vec::with_capacity(deliveries),
            delivery_expires: Vec::with_capacity(deliveries),
            delivery_status: Vec::with_capacity(deliveries),
            now_ms: now_millis(),
            now_s: now_unix(),
            notify_work: false,
            created: Vec::with_capacity(requests.len()),
        };
        for request in requests {
            let mut created = Created {
                claimed: Vec::with_capacity(request.claim.min(deliveries)),
                unclaimed: 0,
            };
            for event in &request.events {
                plan.event_id.push(&event.id);
                plan.event_tenant.push(&request.tenant);
                plan.event_type.push(&event.event_type);
                plan.event_body.push(&event.body[..]);
                plan.event_created.push(event.created_at);
                for endpoint in &event.held_endpoint_ids {
                    plan.delivery_id.push(new_id("dlv"));
                    plan.delivery_event.push(&event.id);
                    plan.delivery_endpoint.push(endpoint);
                    plan.delivery_tenant.push(&request.tenant);
                    plan.delivery_owner.push(None);
                    plan.delivery_expires.push(None);
                    plan.delivery_status.push("held");
                }
                for endpoint in &event.endpoint_ids {
                    let id = new_id("dlv");
                    plan.delivery_status.push("pending");
                    let leased = created.claimed.len() < request.claim;
                    plan.delivery_event.push(&event.id);
                    plan.delivery_endpoint.push(endpoint);
                    plan.delivery_tenant.push(&request.tenant);
                    if leased {
                        plan.delivery_owner.push(Some(&request.lease.owner));
                        plan.delivery_expires
                            .push(Some(request.lease.expires_at_ms));
                        created.claimed.push(PendingDelivery {
                            delivery_id: id.clone(),
                            event_id: event.id.clone(),
                            event_type: event.event_type.clone(),
                            endpoint_id: endpoint.clone(),
                            tenant_id: request.tenant.clone(),
                            attempts: 0,
                            round_start: 0,
                            due_ms: plan.now_ms,
                            body: Some(Arc::clone(&event.body)),
                        });
                    } else {
                        plan.delivery_owner.push(None);
                        plan.delivery_expires.push(None);
                        created.unclaimed += 1;
                    }
                    plan.delivery_id.push(id);
                }
            }
            plan.notify_work |= created.unclaimed > 0;
            plan.created.push(created);
        }
        plan
    }

    /// Inserts the rows inside `tx` (not committed).
    async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
        if self.event_id.is_empty() {
            return Ok(());
        }
        let (events, deliveries) = futures::try_join!(
            tx.prepare_cached(INSERT_EVENTS),
            tx.prepare_cached(INSERT_DELIVERIES)
        )
        .db()?;
        // The statements go out together (tokio-postgres pipelines them); they run in order.
        let insert_events = async {
            tx.execute(
                &events,
                &[
                    &self.event_id,
                    &self.event_tenant,
                    &self.event_type,
                    &self.event_body,
                    &self.event_created,
                ],
            )
            .await
        };
        let insert_deliveries = async {
            if self.delivery_id.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &deliveries,
                &[
                    &self.delivery_id,
                    &self.delivery_event,
                    &self.delivery_endpoint,
                    &self.delivery_tenant,
                    &self.delivery_owner,
                    &self.delivery_expires,
                    &self.now_ms,
                    &self.now_s,
                    &self.delivery_status,
                ],
            )
            .await
        };
        let notify = async {
            if !self.notify_work {
                return Ok(0);
            }
            tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
                .await
        };
        let (inserted, _, _) = futures::try_join!(insert_events, insert_deliveries, notify).db()?;
        if inserted != self.event_id.len() as u64 {
            // A tenant is gone (deleted before or while this was written); nothing commits.
            let first = self.event_tenant.first().copied().unwrap_or_default();
            return Err(if self.event_tenant.iter().all(|t| *t == first) {
                StoreError::NotFound {
                    what: "tenant",
                    id: first.to_string(),
                }
            } else {
                StoreError::Database("a batch holds events of a tenant that does not exist".into())
            });
        }
        Ok(())
    }
}

async fn commit(db: &Db, jobs: Vec<IngestJob>) {
    let result = {
        let requests: Vec<&IngestRequest> = jobs.iter().map(|job| &job.request).collect();
        write_batch(db, &requests).await
    };
    match result {
        Ok(created) => {
            db.committed(jobs.len());
            for (job, created) in jobs.into_iter().zip(created) {
                let _ = job.answer.send(Ok(outcome(job.request, created)));
            }
        }
        Err(error) if retry_one_by_one(&error, jobs.len()) => {
            tracing::warn!(%error, ingests = jobs.len(), "a batch of ingests failed; writing them one by one");
            for job in jobs {
                let answer = match write_batch(db, &[&job.request]).await {
                    Ok(mut created) => {
                        db.committed(1);
                        match created.pop() {
                            Some(created) => Ok(outcome(job.request, created)),
                            None => Err(StoreError::Database("ingest wrote nothing".into())),
                        }
                    }
                    Err(error) => Err(batch_error(error)),
                };
                let _ = job.answer.send(answer);
            }
        }
        Err(error) => {
            let error = batch_error(error);
            for job in jobs {
                let _ = job.answer.send(Err(error.clone()));
            }
        }
    }
}

fn outcome(request: IngestRequest, created: Created) -> IngestOutcome {
    IngestOutcome::Created {
        response: request.response,
        claimed: created.claimed,
        unclaimed: created.unclaimed,
    }
}

/// Writes `requests` in one transaction.
async fn write_batch(db: &Db, requests: &[&IngestRequest]) -> Result<Vec<Created>, StoreError> {
    let plan = Plan::new(requests);
    let mut client = db.get().await?;
    let tx = client.transaction().await.db()?;
    plan.write(&tx).await?;
    tx.commit().await.db()?;
    Ok(plan.created)
}

/// How often a request whose key another request holds looks again (that request rolled back,
/// or its tenant was deleted, between the conflict and the read).
const KEY_TRIES: usize = 5;

/// An ingest with an idempotency key, in its own transaction.
pub(super) async fn keyed(
    db: &Db,
    request: IngestRequest,
    key: &str,
) -> Result<IngestOutcome, StoreError> {
    let response = request.response.to_string();
    for _ in 0..KEY_TRIES {
        let mut client = db.get().await?;
        let tx = client.transaction().await.db()?;
        let inserted = tx
            .execute(INSERT_KEY, &[&request.tenant, &key, &response, &now_unix()])
            .await
            .db()?;
        if inserted == 0 {
            // Seen before (or committed meanwhile by a concurrent request it waited for).
            tx.rollback().await.db()?;
            let stored = client
                .query_opt(READ_KEY, &[&request.tenant, &key])
                .await
                .db()?;
            match stored {
                Some(row) => {
                    let text: String = row.try_get(0).db()?;
                    return Ok(IngestOutcome::Replayed(
                        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                    ));
                }
                None => continue,
            }
        }
        let plan = Plan::new(&[&request]);
        plan.write(&tx).await?;
        tx.commit().await.db()?;
        db.committed(1);
        let created = plan.created.into_iter().next().unwrap_or(Created {
            claimed: Vec::new(),
            unclaimed: 0,
        });
        return Ok(outcome(request, created));
    }
    Err(StoreError::Conflict(format!(
        "idempotency key `{key}` is in use by a request that did not complete; try again"
    )))
}
