//! One attempt of one delivery: the cluster-wide endpoint slot, the body, the endpoint's steps,
//! the request, the outcome and its record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slots::Take;
use super::{Dispatcher, Job};
use crate::http::Received;
use crate::model::{DeliveryStatus, Endpoint, now_millis, now_unix};
use crate::plugins::{CallContext, HttpRequest};
use crate::store::{AttemptRecord, HoldOutcome};

/// What one attempt came to.
pub(super) struct AttemptResult {
    pub(super) status_code: Option<u16>,
    pub(super) error: Option<String>,
    pub(super) snippet: Option<String>,
    pub(super) retry_after: Option<Duration>,
}

/// How long a job waits before asking again for a cluster-wide endpoint slot.
const SLOT_RETRY: Duration = Duration::from_millis(20);
/// How long a job whose endpoint this node sees disabled, but the store enabled, waits before
/// it is tried again (this node's directory follows the store within `store.poll_interval`).
const HOLD_RECHECK: Duration = Duration::from_millis(250);

impl Dispatcher {
    pub(super) async fn deliver(self: &Arc<Self>, job: Job, endpoint: Option<Arc<Endpoint>>) {
        let endpoint = match endpoint {
            Some(e) if e.spec.enabled => e,
            Some(_) => return self.hold(job).await,
            None => return self.dead_without_attempt(job, "endpoint was deleted").await,
        };
        // An endpoint's `max_concurrency` holds across the cluster: on a shared store the
        // attempt first takes one of the endpoint's slots there (one this node holds idle, or
        // a new one from the store).
        let cluster_slot = match self.cluster_slot(&endpoint).await {
            Ok(slot) => slot,
            Err(due) => return self.reschedule(job, due),
        };
        let body = match self.body(&job).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                self.release_cluster_slot(&endpoint, cluster_slot).await;
                return self
                    .dead_without_attempt(job, "the event is no longer stored")
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, delivery = %job.delivery.delivery_id, "cannot read the event body; trying again");
                self.release_cluster_slot(&endpoint, cluster_slot).await;
                let due = now_millis() + 1000;
                return self.reschedule(job, due);
            }
        };
        let delivery = &job.delivery;
        let attempt = delivery.attempts + 1;
        let started_ms = now_millis();
        let started = Instant::now();
        let timestamp = now_unix().max(0) as u64;
        let ctx = CallContext {
            tenant: delivery.tenant_id.clone(),
            endpoint: endpoint.id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt,
            timestamp,
        };
        let result = self.attempt(&endpoint, &ctx, &body).await;
        drop(body);
        self.release_cluster_slot(&endpoint, cluster_slot).await;
        let latency = started.elapsed();
        let success =
            result.error.is_none() && result.status_code.is_some_and(|s| (200..300).contains(&s));
        let (new_status, next_attempt_at) = if success {
            (DeliveryStatus::Delivered, None)
        } else {
            let honour = result.status_code.is_some_and(|s| s == 429 || s == 503);
            let failed_in_round = attempt.saturating_sub(delivery.round_start);
            match self
                .settings
                .retry
                .next_delay(failed_in_round, result.retry_after.filter(|_| honour))
            {
                Some(delay) => (
                    DeliveryStatus::Pending,
                    Some(now_millis() + delay.as_millis() as i64),
                ),
                None => (DeliveryStatus::Dead, None),
            }
        };
        let outcome = match new_status {
            DeliveryStatus::Delivered => "success",
            DeliveryStatus::Pending | DeliveryStatus::Held => "failure",
            DeliveryStatus::Dead => "dead",
        };
        self.health
            .record(&delivery.tenant_id, &endpoint.id, started_ms, success);
        if new_status == DeliveryStatus::Dead {
            self.report_dead(super::DeadDelivery {
                tenant_id: delivery.tenant_id.clone(),
                endpoint_id: endpoint.id.clone(),
                delivery_id: delivery.delivery_id.clone(),
                event_id: delivery.event_id.clone(),
                event_type: delivery.event_type.clone(),
                error: result.error.clone().or_else(|| {
                    result
                        .status_code
                        .map(|code| format!("the receiver answered {code}"))
                }),
            });
        }
        self.metrics.attempt(outcome, latency.as_secs_f64());
        if let Some(error) = &result.error {
            tracing::debug!(delivery = %delivery.delivery_id, attempt, %error, "attempt failed");
        }
        // A retry due within half a lease stays here under this node's lease; a later one goes
        // back to the store, and whichever node has room claims it when due.
        let keep_until = now_millis() + (self.settings.lease_ttl / 2).as_millis() as i64;
        let keep = next_attempt_at.is_some_and(|due| due <= keep_until) && !self.stopping();
        let record = AttemptRecord {
            delivery_id: delivery.delivery_id.clone(),
            attempt,
            started_at_ms: started_ms,
            status_code: result.status_code,
            latency_ms: latency.as_millis() as u64,
            error: result.error,
            response_snippet: result.snippet,
            new_status,
            next_attempt_at,
            keep_lease: keep,
        };
        // A retry released to the store may be claimed by any node once its record is in.
        let released_retry = (!keep && next_attempt_at.is_some()).then(|| self.clone());
        self.store.record_attempt(
            record,
            Box::new(move |result| {
                if let Err(e) = result {
                    tracing::error!(error = %e, "could not record an attempt; the delivery stays pending and will be retried");
                }
                if let Some(this) = released_retry {
                    this.note_backlog();
                }
            }),
        );
        match (keep, next_attempt_at) {
            (true, Some(due_ms)) => {
                let mut job = job;
                job.delivery.attempts = attempt;
                self.reschedule(job, due_ms);
            }
            _ => self.let_go(),
        }
    }

    /// The endpoint is disabled: the delivery waits in the store, held, until it is enabled.
    /// When the store has it enabled by now (this node's directory has not caught up yet), the
    /// job is tried again shortly, by which time the directory has.
    async fn hold(&self, job: Job) {
        let delivery = &job.delivery;
        match self
            .store
            .hold_delivery(&delivery.delivery_id, &delivery.endpoint_id)
            .await
        {
            Ok(HoldOutcome::Held | HoldOutcome::NotPending) => self.let_go(),
            Ok(HoldOutcome::EndpointEnabled) => {
                tracing::debug!(delivery = %delivery.delivery_id, "not held: its endpoint is enabled in the store; trying again");
                let due = now_millis() + HOLD_RECHECK.as_millis() as i64;
                self.reschedule(job, due);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not hold a delivery; it stays pending under this node's lease until the lease lapses");
                self.let_go();
            }
        }
    }

    async fn dead_without_attempt(&self, job: Job, reason: &str) {
        if let Err(e) = self
            .store
            .mark_dead(&job.delivery.delivery_id, reason)
            .await
        {
            tracing::error!(error = %e, "could not mark a delivery dead");
        }
        self.metrics.attempt("dead", 0.0);
        self.let_go();
    }

    /// A cluster-wide slot of `endpoint` for one attempt: `Ok(None)` when no slot is needed
    /// (one node, or no `max_concurrency`), `Err(due)` when the attempt must wait until `due`.
    async fn cluster_slot(&self, endpoint: &Endpoint) -> Result<Option<u32>, i64> {
        let Some(max) = endpoint
            .spec
            .max_concurrency
            .filter(|_| self.store.shared())
        else {
            return Ok(None);
        };
        let max = max.max(1);
        let retry = now_millis() + SLOT_RETRY.as_millis() as i64;
        match self.cluster_slots.take(&endpoint.id, max) {
            Take::Reused(slot) => Ok(Some(slot)),
            Take::Wait => Err(retry),
            Take::Ask => {
                let lease = crate::store::Lease {
                    owner: self.node.clone(),
                    expires_at_ms: now_millis()
                        + (self.settings.lease_ttl + self.settings.request_timeout).as_millis()
                            as i64,
                };
                match self
                    .store
                    .acquire_endpoint_slot(&endpoint.id, max, &lease, now_millis())
                    .await
                {
                    Ok(Some(slot)) => {
                        self.cluster_slots.acquired(&endpoint.id);
                        Ok(Some(slot))
                    }
                    Ok(None) => {
                        self.cluster_slots.refused(&endpoint.id);
                        Err(retry)
                    }
                    Err(e) => {
                        self.cluster_slots.refused(&endpoint.id);
                        tracing::warn!(error = %e, endpoint = %endpoint.id, "cannot take an endpoint slot; trying again");
                        Err(now_millis() + 500)
                    }
                }
            }
        }
    }

    /// An attempt is over: its slot stays with this node for the endpoint's next attempt, or
    /// goes back to the store (see [`super::slots`]).
    async fn release_cluster_slot(&self, endpoint: &Endpoint, slot: Option<u32>) {
        let (Some(slot), Some(max)) = (slot, endpoint.spec.max_concurrency) else {
            return;
        };
        if let Some(slot) = self.cluster_slots.give_back(&endpoint.id, slot, max.max(1)) {
            self.give_slot_to_store(&endpoint.id, slot).await;
        }
    }

    /// Gives a slot back to the store.
    pub(super) async fn give_slot_to_store(&self, endpoint_id: &str, slot: u32) {
        if let Err(e) = self
            .store
            .release_endpoint_slot(endpoint_id, slot, &self.node)
            .await
        {
            tracing::warn!(error = %e, endpoint = %endpoint_id, "cannot release an endpoint slot; it lapses by itself");
        }
    }

    /// The body of the job's event: held since ingest, shared with an attempt in flight, or
    /// read from the store now. `None` when the event is gone.
    async fn body(&self, job: &Job) -> Result<Option<Arc<[u8]>>, crate::store::StoreError> {
        if let Some(held) = &job.body {
            return Ok(Some(held.bytes().clone()));
        }
        let event_id = &job.delivery.event_id;
        if let Some(shared) = self.bodies.get(event_id) {
            return Ok(Some(shared));
        }
        Ok(self
            .store
            .event_body(event_id)
            .await?
            .map(|bytes| self.bodies.insert(event_id, bytes.into())))
    }

    /// The request of one attempt before the endpoint's steps: the envelope as JSON with the
    /// `webhook-*` headers. Built again (not cloned up front) for the rare resend after a 401.
    fn request(&self, endpoint: &Endpoint, ctx: &CallContext, envelope: &[u8]) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: endpoint.spec.url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("user-agent".into(), self.user_agent.clone()),
                ("webhook-id".into(), ctx.event_id.clone()),
                ("webhook-timestamp".into(), ctx.timestamp.to_string()),
            ],
            body: envelope.to_vec(),
        }
    }

    /// Sends one request of `envelope` through the endpoint's TLS, steps and HTTP client (with
    /// the one resend after a refused token); records nothing.
    pub(super) async fn attempt(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        ctx: &CallContext,
        envelope: &[u8],
    ) -> AttemptResult {
        let failure = |error: String| AttemptResult {
            status_code: None,
            error: Some(error),
            snippet: None,
            retry_after: None,
        };
        let tls = match self.tls.for_endpoint(endpoint).await {
            Ok(tls) => tls,
            Err(e) => return failure(e),
        };
        let prepared = match self
            .pipeline
            .run(
                ctx,
                &endpoint.spec.steps,
                self.request(endpoint, ctx, envelope),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => return failure(e.to_string()),
        };
        let tokens_used = prepared.tokens_used;
        let mut received = match self.http.send(prepared.request, tls.as_ref()).await {
            Ok(r) => r,
            Err(e) => return failure(e.to_string()),
        };
        let mut note = None;
        let refused = matches!(received.response.status, 401 | 403);
        if refused && !tokens_used.is_empty() {
            // The token was refused: fetch a fresh one and try once more, in this attempt.
            self.pipeline.tokens().invalidate(&tokens_used);
            let request = self.request(endpoint, ctx, envelope);
            let retry = match self.pipeline.run(ctx, &endpoint.spec.steps, request).await {
                Ok(p) => p,
                Err(e) => {
                    return failure(format!(
                        "after a {} the token was refreshed, but: {e}",
                        received.response.status
                    ));
                }
            };
            received = match self.http.send(retry.request, tls.as_ref()).await {
                Ok(r) => r,
                Err(e) => {
                    return failure(format!(
                        "after a {} the token was refreshed, but: {e}",
                        received.response.status
                    ));
                }
            };
            note =
                Some("the first token was refused, a fresh one was fetched and sent".to_string());
        }
        self.outcome(received, note)
    }

    fn outcome(&self, received: Received, note: Option<String>) -> AttemptResult {
        let status = received.response.status;
        let retry_after = received.retry_after();
        let body = &received.response.body;
        let snippet_len = body.len().min(self.settings.response_snippet_bytes);
        let snippet =
            (snippet_len > 0).then(|| String::from_utf8_lossy(&body[..snippet_len]).into_owned());
        let error = if (200..300).contains(&status) {
            None
        } else {
            Some(match &note {
                Some(note) => format!("receiver answered {status} ({note})"),
                None => format!("receiver answered {status}"),
            })
        };
        AttemptResult {
            status_code: Some(status),
            error,
            snippet,
            retry_after,
        }
    }
}
