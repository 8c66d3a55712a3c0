//! The dispatcher: holds a bounded window of claimed deliveries in memory, runs attempts under a
//! global and a per-endpoint concurrency limit, and records every outcome.
//!
//! Where deliveries come from:
//! - this node's own ingests: the store leases them to this node at insert time
//!   ([`Dispatcher::reserve`] says how many fit in the window), so the hot path never polls;
//! - claims ([`leases`]): when the window has room and the store may hold due work (a
//!   PostgreSQL notice, a backlog this node left, or every `store.poll_interval`), the claimer
//!   leases due deliveries in batches;
//! - replays.
//!
//! The window (`store.window`) bounds what a node holds, whatever the backlog: deliveries not
//! leased at insert stay in the store until some node has room. Bodies are not part of a claim:
//! an attempt reads its event's body when it is sent ([`bodies`]).
//!
//! One attempt: run the endpoint's plugin steps, send the request (mTLS when the endpoint asks),
//! and on 401/403 after a token was used, drop the token, fetch a new one and send once more
//! within the same attempt. 2xx is success; otherwise the retry policy picks the next time (or
//! `Retry-After` on 429/503), or the delivery is dead when the schedule has run out. A retry due
//! soon stays in memory under this node's lease; a later one is released to the store.

mod attempt;
mod bodies;
mod health;
mod leases;
mod probe;
mod retry;
mod slots;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub use bodies::{BodyCache, HeldBodies};
use health::HealthTracker;
pub use probe::ProbeResult;
pub use retry::RetryPolicy;

use crate::http::HttpClient;
use crate::metrics::Metrics;
use crate::model::{Endpoint, new_id, now_millis};
use crate::mtls::TlsResolver;
use crate::pipeline::Pipeline;
use crate::store::{Lease, PendingDelivery, Store};
use slots::ClusterSlots;

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
    /// Deliveries held claimed in memory at most.
    pub window: usize,
    /// How long a lease lasts without a heartbeat.
    pub lease_ttl: Duration,
    /// How often the claimer looks for work it was not told about.
    pub poll_interval: Duration,
    /// Bytes of event bodies held with queued deliveries at most.
    pub max_held_body_bytes: usize,
    /// Time allowed for a whole attempt (bounds a cluster-wide endpoint slot).
    pub request_timeout: Duration,
}

/// A delivery this node holds, with the body it may already have.
#[derive(Debug)]
struct Job {
    delivery: PendingDelivery,
    body: Option<Arc<bodies::HeldBody>>,
}

#[derive(Debug)]
struct Scheduled {
    due_ms: i64,
    seq: u64,
    job: Job,
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
    waiting: VecDeque<Job>,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    endpoints: HashMap<String, EndpointLoad>,
}

impl State {
    fn push(&mut self, job: Job) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            due_ms: job.delivery.due_ms,
            seq: self.seq,
            job,
        }));
    }
}

/// The dispatcher. Shared as `Arc<Dispatcher>`; its tasks hold clones.
pub struct Dispatcher {
    store: Arc<Store>,
    pipeline: Arc<Pipeline>,
    http: Arc<HttpClient>,
    tls: Arc<TlsResolver>,
    metrics: Arc<Metrics>,
    settings: DispatchSettings,
    /// This node's identity in leases (new at every start).
    node: String,
    state: std::sync::Mutex<State>,
    /// Deliveries this node holds (scheduled, parked or in flight): at most `settings.window`.
    held: AtomicUsize,
    /// The store may hold due deliveries this node has not claimed (it left some unleased at
    /// ingest, or a claim came back full).
    backlog: AtomicBool,
    held_bodies: HeldBodies,
    bodies: BodyCache,
    /// The cluster-wide endpoint slots this node holds (on a shared store).
    cluster_slots: ClusterSlots,
    wake: Notify,
    claim_wake: Notify,
    global: Arc<Semaphore>,
    stopping: AtomicBool,
    stop: Notify,
    user_agent: String,
    /// Endpoint health seen since the last report to the store.
    health: HealthTracker,
    /// Where dead deliveries are reported (the engine's operational webhooks), once set.
    dead_sink: std::sync::OnceLock<tokio::sync::mpsc::Sender<DeadDelivery>>,
}

/// A delivery that just died (its retries ran out), for the operational webhooks.
#[derive(Debug, Clone)]
pub struct DeadDelivery {
    /// The tenant.
    pub tenant_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The delivery.
    pub delivery_id: String,
    /// Its event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
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
    Job(Job),
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
            held_bodies: HeldBodies::new(settings.max_held_body_bytes),
            store,
            pipeline,
            http,
            tls,
            metrics,
            settings,
            node: new_id("node"),
            state: Default::default(),
            held: AtomicUsize::new(0),
            backlog: AtomicBool::new(true),
            bodies: BodyCache::default(),
            cluster_slots: ClusterSlots::default(),
            wake: Notify::new(),
            claim_wake: Notify::new(),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            user_agent: format!("wasmhook/{}", env!("CARGO_PKG_VERSION")),
            health: HealthTracker::default(),
            dead_sink: std::sync::OnceLock::new(),
        })
    }

    /// Reports every delivery that dies from now on to `sink` (when it is full, reports are
    /// dropped with a warning: the channel bounds what waits).
    pub fn report_dead_to(&self, sink: tokio::sync::mpsc::Sender<DeadDelivery>) {
        let _ = self.dead_sink.set(sink);
    }

    fn report_dead(&self, dead: DeadDelivery) {
        if let Some(sink) = self.dead_sink.get()
            && sink.try_send(dead).is_err()
        {
            tracing::warn!("too many dead deliveries waiting to be reported; one report dropped");
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's id in leases.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A lease for this node, from now.
    pub fn lease(&self) -> Lease {
        Lease {
            owner: self.node.clone(),
            expires_at_ms: now_millis() + self.settings.lease_ttl.as_millis() as i64,
        }
    }

    /// Takes room in the window for up to `wanted` deliveries about to be leased to this node;
    /// returns how many fit. Give back what was not used with [`Dispatcher::unreserve`].
    pub fn reserve(&self, wanted: usize) -> usize {
        let window = self.settings.window;
        let mut granted = 0;
        let _ = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                granted = wanted.min(window.saturating_sub(held));
                Some(held + granted)
            });
        granted
    }

    /// Gives back reserved room that was not used.
    pub fn unreserve(&self, unused: usize) {
        if unused > 0 {
            self.held.fetch_sub(unused, Ordering::SeqCst);
        }
    }

    /// Notes that the store holds deliveries this node left unleased: the claimer looks as soon
    /// as the window has room.
    pub fn note_backlog(&self) {
        self.backlog.store(true, Ordering::SeqCst);
        self.claim_wake.notify_one();
    }

    /// Schedules deliveries leased to this node whose window room was reserved. Bodies that
    /// came with them are kept while they fit in the body budget.
    pub fn enqueue_reserved(&self, deliveries: Vec<PendingDelivery>) {
        let mut held: HashMap<String, Option<Arc<bodies::HeldBody>>> = HashMap::new();
        let jobs: Vec<Job> = deliveries
            .into_iter()
            .map(|mut delivery| {
                let body = delivery.body.take().and_then(|bytes| {
                    held.entry(delivery.event_id.clone())
                        .or_insert_with(|| self.held_bodies.hold(bytes))
                        .clone()
                });
                Job { delivery, body }
            })
            .collect();
        let mut state = self.state();
        for job in jobs {
            state.push(job);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Schedules deliveries leased to this node (a replay, a claim), taking window room for
    /// them even past the window (they are already leased).
    pub fn enqueue(&self, deliveries: Vec<PendingDelivery>) {
        self.held.fetch_add(deliveries.len(), Ordering::SeqCst);
        self.enqueue_reserved(deliveries);
    }

    /// Deliveries held in memory: scheduled, parked behind their endpoint, or in flight.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
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

    /// Bytes of event bodies held with queued deliveries.
    pub fn held_body_bytes(&self) -> usize {
        self.held_bodies.used()
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
        self.claim_wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn next_due(&self) -> Next {
        let mut state = self.state();
        let now = now_millis();
        match state.heap.peek() {
            Some(Reverse(top)) if top.due_ms <= now => match state.heap.pop() {
                Some(Reverse(scheduled)) => Next::Job(scheduled.job),
                None => Next::WaitUntil(None),
            },
            Some(Reverse(top)) => Next::WaitUntil(Some(top.due_ms)),
            None => Next::WaitUntil(None),
        }
    }

    /// Runs until [`Dispatcher::shutdown`]: the claimer and the heartbeat alongside the
    /// scheduler. Then waits (at most the grace period) for attempts in flight and for their
    /// records to be committed, and releases this node's leases so other nodes take over at
    /// once.
    pub async fn run(self: Arc<Self>) {
        let claimer = tokio::spawn(leases::claimer(self.clone()));
        let heartbeat = tokio::spawn(leases::heartbeat(self.clone()));
        let health = tokio::spawn(health::reporter(self.clone()));
        let sweeper = self
            .store
            .shared()
            .then(|| tokio::spawn(leases::slot_sweeper(self.clone())));
        self.schedule().await;
        claimer.abort();
        heartbeat.abort();
        health.abort();
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        let all = self.settings.max_in_flight as u32;
        if tokio::time::timeout(self.settings.shutdown_grace, self.global.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.in_flight(),
                "shutdown grace period over; attempts still in flight stay pending and are retried"
            );
        }
        self.report_health().await;
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "could not flush the store at shutdown");
        }
        match self.store.release_leases(&self.node, None).await {
            Ok(released) if released > 0 => {
                tracing::info!(released, "released this node's leases")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release leases; they lapse after store.lease_ttl")
            }
        }
        if let Err(e) = self.store.leave(&self.node).await {
            tracing::warn!(error = %e, "could not leave the cluster; this node's endpoint slots lapse after store.lease_ttl");
        }
    }

    async fn schedule(self: &Arc<Self>) {
        while !self.stopping() {
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
    }

    /// How many attempts to an endpoint this node runs at once: its `max_concurrency` (on a
    /// shared store, this node's share of it), else the default per-endpoint limit. Attempts
    /// beyond it park behind the running ones.
    fn endpoint_limit(&self, endpoint: Option<&Endpoint>) -> usize {
        match endpoint.and_then(|e| e.spec.max_concurrency) {
            Some(max) if self.store.shared() => self.cluster_slots.share(max),
            Some(max) => max.max(1) as usize,
            None => self.settings.endpoint_concurrency,
        }
    }

    /// Starts `job` if its endpoint has room here, else parks it behind the endpoint's attempts.
    fn start(self: &Arc<Self>, job: Job, permit: OwnedSemaphorePermit) {
        let endpoint = self.store.directory().endpoint(&job.delivery.endpoint_id);
        let limit = self.endpoint_limit(endpoint.as_deref());
        {
            let mut state = self.state();
            let load = state
                .endpoints
                .entry(job.delivery.endpoint_id.clone())
                .or_default();
            if load.in_flight >= limit {
                load.waiting.push_back(job);
                return;
            }
            load.in_flight += 1;
        }
        let slot = EndpointSlot {
            dispatcher: self.clone(),
            endpoint_id: job.delivery.endpoint_id.clone(),
            _permit: permit,
        };
        tokio::spawn(async move {
            // The slot is released when this task ends, even if it panics: a bug in one attempt
            // must not wedge the endpoint (the delivery then stays pending, and is claimed again
            // once this node's lease on it lapses or at the next start).
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
            job.delivery.due_ms = now_millis();
            state.push(job);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Puts a job back on the heap (kept in this node's window).
    fn reschedule(&self, mut job: Job, due_ms: i64) {
        job.delivery.due_ms = due_ms;
        self.state().push(job);
        self.wake.notify_one();
    }

    /// A job left this node (delivered, dead, or released to the store): its window room frees.
    fn let_go(&self) {
        let before = self.held.fetch_sub(1, Ordering::SeqCst);
        // Claim more once a quarter of the window is free and the store may hold work.
        if before.saturating_sub(1) <= self.settings.window * 3 / 4
            && self.backlog.load(Ordering::SeqCst)
        {
            self.claim_wake.notify_one();
        }
    }
}
