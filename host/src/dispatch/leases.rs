//! The node's two background duties toward the store: claiming due deliveries when the window
//! has room, and renewing its leases by heartbeat.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Dispatcher;
use super::slots::IDLE_RELEASE;
use crate::model::now_millis;
use crate::store::{ClaimRequest, Notice, next_notice};

/// Deliveries claimed in one statement at most.
const CLAIM_BATCH: usize = 1000;

/// Claims due deliveries whenever the window has room and the store may hold work: woken by a
/// PostgreSQL notice, by this node leaving work in the store, or every `store.poll_interval`.
pub(super) async fn claimer(dispatcher: Arc<Dispatcher>) {
    let mut notices = dispatcher.store.notices();
    let poll = dispatcher.settings.poll_interval;
    loop {
        if dispatcher.stopping() {
            return;
        }
        let claimed = claim_once(&dispatcher).await;
        if claimed == CLAIM_BATCH {
            // There may be more right away.
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = dispatcher.claim_wake.notified() => {}
            _ = next_notice(&mut notices, Notice::Work) => {}
        }
    }
}

/// One claim for the room in the window; returns how many were claimed.
async fn claim_once(dispatcher: &Arc<Dispatcher>) -> usize {
    let wanted = CLAIM_BATCH.min(dispatcher.settings.window);
    let room = dispatcher.reserve(wanted);
    if room == 0 {
        return 0;
    }
    let now = now_millis();
    let request = ClaimRequest {
        lease: dispatcher.lease(),
        limit: room,
        // A little ahead, so the heap (not the next poll) times what is due soon.
        due_before_ms: now + dispatcher.settings.poll_interval.as_millis() as i64,
        now_ms: now,
    };
    match dispatcher.store.claim(&request).await {
        Ok(claimed) => {
            let count = claimed.len();
            dispatcher.unreserve(room - count);
            if count < room {
                dispatcher.backlog.store(false, Ordering::SeqCst);
            }
            if count > 0 {
                tracing::debug!(count, "claimed deliveries");
                dispatcher.enqueue_reserved(claimed);
            }
            count
        }
        Err(e) => {
            dispatcher.unreserve(room);
            tracing::warn!(error = %e, "claiming deliveries failed; trying again");
            0
        }
    }
}

/// Renews this node's leases three times per `store.lease_ttl`.
pub(super) async fn heartbeat(dispatcher: Arc<Dispatcher>) {
    let every = (dispatcher.settings.lease_ttl / 3).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first beat at once: the other nodes count this one from now on.
        ticker.tick().await;
        if dispatcher.stopping() {
            return;
        }
        let lease = dispatcher.lease();
        match dispatcher.store.heartbeat_node(&lease, now_millis()).await {
            Ok(nodes) => dispatcher.cluster_slots.set_live_nodes(nodes),
            Err(e) => tracing::warn!(error = %e, "registering this node failed; trying again"),
        }
        if let Err(e) = dispatcher.store.renew_leases(&lease).await {
            tracing::warn!(error = %e, "renewing leases failed; other nodes may take this node's deliveries over");
        }
    }
}

/// Gives back to the store the endpoint slots this node left idle for
/// [`super::slots::IDLE_RELEASE`] (on a shared store).
pub(super) async fn slot_sweeper(dispatcher: Arc<Dispatcher>) {
    let mut ticker = tokio::time::interval(IDLE_RELEASE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if dispatcher.stopping() {
            return;
        }
        for (endpoint, slot) in dispatcher.cluster_slots.sweep(IDLE_RELEASE) {
            dispatcher.give_slot_to_store(&endpoint, slot).await;
        }
    }
}
