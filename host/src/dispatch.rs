//! The dispatcher: schedules deliveries in memory, runs attempts with a global and a per-endpoint
//! concurrency limit, and records every outcome.
//!
//! SQLite is the durable log: the API commits an event and its deliveries, then hands them to
//! [`Dispatcher::enqueue`]; at start-up [`Dispatcher::recover`] reads back what a previous process
//! left pending. Nothing polls the database per delivery.
//!
//! One attempt: run the endpoint's plugin steps, send the request (mTLS when the endpoint asks),
//! and on 401/403 after a token was used, drop the token, fetch a new one and send once more
//! within the same attempt. 2xx is success; otherwise the retry policy picks the next time (or
//! `Retry-After` on 429/503), or the delivery is dead when the schedule has run out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::http::{HttpClient, Received};
use crate::metrics::Metrics;
use crate::model::{DeliveryStatus, Endpoint, now_millis, now_unix};
use crate::mtls::TlsResolver;
use crate::pipeline::Pipeline;
use crate::plugins::{CallContext, HttpRequest};
use crate::store::{AttemptRecord, PendingDelivery, Store};

/// When to try again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt of a round.
    pub schedule: Vec<Duration>,
    /// Random spread (0.2 = ±20 %).
    pub jitter: f64,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// Delay before the next attempt after the `failed_in_round`-th failure (1-based), or `None`
    /// when the schedule has run out. A receiver's `Retry-After` replaces the scheduled delay.
    pub fn next_delay(
        &self,
        failed_in_round: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let scheduled = *self
            .schedule
            .get(failed_in_round.checked_sub(1)? as usize)?;
        if let Some(asked) = retry_after {
            return Some(asked.min(self.max_retry_after));
        }
        if self.jitter <= 0.0 || scheduled.is_zero() {
            return Some(scheduled);
        }
        let factor = rand::rng().random_range((1.0 - self.jitter)..(1.0 + self.jitter));
        Some(scheduled.mul_f64(factor))
    }
}

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Attempts in flight at most.
    pub max_in_flight: usize,
    /// Per-endpoint limit unless the endpoint sets one.
    pub endpoint_concurrency: usize,
    /// Bytes of the response kept with the attempt.
    pub response_snippet_bytes: usize,
    /// How long shutdown waits for attempts in flight.
    pub shutdown_grace: Duration,
}

#[derive(Debug)]
struct Scheduled {
    due_ms: i64,
    seq: u64,
    job: PendingDelivery,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due_ms, self.seq).cmp(&(other.due_ms, other.seq))
    }
}

#[derive(Default)]
struct EndpointLoad {
    in_flight: usize,
    waiting: VecDeque<PendingDelivery>,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    endpoints: HashMap<String, EndpointLoad>,
}

impl State {
    fn push(&mut self, job: PendingDelivery) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            due_ms: job.due_ms,
            seq: self.seq,
            job,
        }));
    }
}

/// What one attempt came to.
struct AttemptResult {
    status_code: Option<u16>,
    error: Option<String>,
    snippet: Option<String>,
    retry_after: Option<Duration>,
}

/// The dispatcher.
pub struct Dispatcher {
    store: Arc<Store>,
    pipeline: Arc<Pipeline>,
    http: Arc<HttpClient>,
    tls: Arc<TlsResolver>,
    metrics: Arc<Metrics>,
    settings: DispatchSettings,
    state: std::sync::Mutex<State>,
    wake: Notify,
    global: Arc<Semaphore>,
    stopping: AtomicBool,
    stop: Notify,
    user_agent: String,
}

/// An attempt's hold on the global limit and its endpoint's slot; released on drop.
struct EndpointSlot {
    dispatcher: Arc<Dispatcher>,
    endpoint_id: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        self.dispatcher.finished(&self.endpoint_id);
    }
}

enum Next {
    Job(PendingDelivery),
    WaitUntil(Option<i64>),
}

impl Dispatcher {
    /// A dispatcher; call [`Dispatcher::run`] to start it.
    pub fn new(
        store: Arc<Store>,
        pipeline: Arc<Pipeline>,
        http: Arc<HttpClient>,
        tls: Arc<TlsResolver>,
        metrics: Arc<Metrics>,
        settings: DispatchSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            global: Arc::new(Semaphore::new(settings.max_in_flight)),
            store,
            pipeline,
            http,
            tls,
            metrics,
            settings,
            state: Default::default(),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            user_agent: format!("wasmhook/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Schedules committed deliveries.
    pub fn enqueue(&self, jobs: impl IntoIterator<Item = PendingDelivery>) {
        let mut state = self.state();
        for job in jobs {
            state.push(job);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Loads every pending delivery from the store (what a previous process left).
    pub async fn recover(&self) -> Result<usize, crate::store::StoreError> {
        let pending = self.store.pending_deliveries().await?;
        let count = pending.len();
        self.enqueue(pending);
        Ok(count)
    }

    /// Deliveries scheduled in memory (waiting or due).
    pub fn queued(&self) -> usize {
        let state = self.state();
        state.heap.len()
            + state
                .endpoints
                .values()
                .map(|e| e.waiting.len())
                .sum::<usize>()
    }

    /// Attempts in flight.
    pub fn in_flight(&self) -> usize {
        self.settings.max_in_flight - self.global.available_permits()
    }

    /// Stops taking new attempts; [`Dispatcher::run`] then waits for those in flight.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        self.wake.notify_one();
    }

    fn next_due(&self) -> Next {
        let mut state = self.state();
        let now = now_millis();
        match state.heap.peek() {
            Some(Reverse(top)) if top.due_ms <= now => {
                let Reverse(scheduled) = state.heap.pop().expect("peeked");
                Next::Job(scheduled.job)
            }
            Some(Reverse(top)) => Next::WaitUntil(Some(top.due_ms)),
            None => Next::WaitUntil(None),
        }
    }

    /// Runs until [`Dispatcher::shutdown`], then waits (at most the grace period) for attempts in
    /// flight and for their records to be committed.
    pub async fn run(self: Arc<Self>) {
        while !self.stopping.load(Ordering::SeqCst) {
            let permit = tokio::select! {
                permit = self.global.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
                _ = self.stop.notified() => break,
            };
            match self.next_due() {
                Next::Job(job) => self.start(job, permit),
                Next::WaitUntil(due) => {
                    drop(permit);
                    let sleep = match due {
                        Some(due_ms) => {
                            Duration::from_millis((due_ms - now_millis()).max(1) as u64)
                        }
                        None => Duration::from_secs(3600),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = self.wake.notified() => {}
                        _ = self.stop.notified() => break,
                    }
                }
            }
        }
        let all = self.settings.max_in_flight as u32;
        if tokio::time::timeout(self.settings.shutdown_grace, self.global.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.in_flight(),
                "shutdown grace period over; attempts still in flight stay pending and are retried after restart"
            );
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "could not flush the store at shutdown");
        }
    }

    fn endpoint_limit(&self, endpoint: Option<&Endpoint>) -> usize {
        endpoint
            .and_then(|e| e.spec.max_concurrency)
            .map(|n| n.max(1) as usize)
            .unwrap_or(self.settings.endpoint_concurrency)
    }

    /// Starts `job` if its endpoint has room, else parks it behind the endpoint's attempts.
    fn start(self: &Arc<Self>, job: PendingDelivery, permit: OwnedSemaphorePermit) {
        let endpoint = self.store.directory().endpoint(&job.endpoint_id);
        let limit = self.endpoint_limit(endpoint.as_deref());
        {
            let mut state = self.state();
            let load = state.endpoints.entry(job.endpoint_id.clone()).or_default();
            if load.in_flight >= limit {
                load.waiting.push_back(job);
                return;
            }
            load.in_flight += 1;
        }
        let slot = EndpointSlot {
            dispatcher: self.clone(),
            endpoint_id: job.endpoint_id.clone(),
            _permit: permit,
        };
        tokio::spawn(async move {
            // The slot is released when this task ends, even if it panics: a bug in one attempt
            // must not wedge the endpoint (the delivery then stays pending and is retried after
            // a restart).
            let this = slot.dispatcher.clone();
            this.deliver(job, endpoint).await;
            drop(slot);
        });
    }

    /// Frees the endpoint's slot and releases the next job parked behind it.
    fn finished(&self, endpoint_id: &str) {
        let mut state = self.state();
        let released = match state.endpoints.get_mut(endpoint_id) {
            Some(load) => {
                load.in_flight = load.in_flight.saturating_sub(1);
                let next = load.waiting.pop_front();
                if load.in_flight == 0 && load.waiting.is_empty() {
                    state.endpoints.remove(endpoint_id);
                }
                next
            }
            None => None,
        };
        if let Some(mut job) = released {
            job.due_ms = now_millis();
            state.push(job);
            drop(state);
            self.wake.notify_one();
        }
    }

    async fn deliver(self: &Arc<Self>, job: PendingDelivery, endpoint: Option<Arc<Endpoint>>) {
        let endpoint = match endpoint {
            Some(e) if e.spec.enabled => e,
            Some(_) => {
                self.store
                    .mark_dead(&job.delivery_id, "endpoint is disabled");
                self.metrics.attempt("dead", 0.0);
                return;
            }
            None => {
                self.store
                    .mark_dead(&job.delivery_id, "endpoint was deleted");
                self.metrics.attempt("dead", 0.0);
                return;
            }
        };
        let attempt = job.attempts + 1;
        let started_ms = now_millis();
        let started = Instant::now();
        let timestamp = now_unix().max(0) as u64;
        let ctx = CallContext {
            tenant: job.tenant_id.clone(),
            endpoint: endpoint.id.clone(),
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            attempt,
            timestamp,
        };
        let result = self.attempt(&endpoint, &ctx, &job.body).await;
        let latency = started.elapsed();
        let success =
            result.error.is_none() && result.status_code.is_some_and(|s| (200..300).contains(&s));
        let (new_status, next_attempt_at) = if success {
            (DeliveryStatus::Delivered, None)
        } else {
            let honour = result.status_code.is_some_and(|s| s == 429 || s == 503);
            let failed_in_round = attempt.saturating_sub(job.round_start);
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
            DeliveryStatus::Pending => "failure",
            DeliveryStatus::Dead => "dead",
        };
        self.metrics.attempt(outcome, latency.as_secs_f64());
        if let Some(error) = &result.error {
            tracing::debug!(delivery = %job.delivery_id, attempt, %error, "attempt failed");
        }
        let record = AttemptRecord {
            delivery_id: job.delivery_id.clone(),
            attempt,
            started_at_ms: started_ms,
            status_code: result.status_code,
            latency_ms: latency.as_millis() as u64,
            error: result.error,
            response_snippet: result.snippet,
            new_status,
            next_attempt_at,
        };
        let recorded = self.store.record_attempt(record, |result| {
            if let Err(e) = result {
                tracing::error!(error = %e, "could not record an attempt; the delivery stays pending and will be retried");
            }
        });
        if recorded.is_err() {
            return;
        }
        if let (DeliveryStatus::Pending, Some(due_ms)) = (new_status, next_attempt_at) {
            self.enqueue([PendingDelivery {
                attempts: attempt,
                due_ms,
                ..job
            }]);
        }
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

    async fn attempt(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_runs_out_and_retry_after_wins() {
        let policy = RetryPolicy {
            schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
            jitter: 0.2,
            max_retry_after: Duration::from_secs(60),
        };
        let first = policy.next_delay(1, None).unwrap();
        assert!(
            first >= Duration::from_secs(4) && first <= Duration::from_secs(6),
            "{first:?}"
        );
        assert!(policy.next_delay(2, None).is_some());
        assert_eq!(policy.next_delay(3, None), None);
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(7200))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(policy.next_delay(3, Some(Duration::from_secs(1))), None);
    }
}
