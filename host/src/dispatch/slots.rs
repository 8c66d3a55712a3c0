//! An endpoint's `max_concurrency` across the cluster, without a database round trip per
//! attempt.
//!
//! On a shared store the cap is kept by the store's endpoint slots: at most `max` live slot
//! rows per endpoint, whoever holds them. Taking and giving back a row for every attempt costs
//! two transactions per delivery and makes the nodes queue on the same rows, so a node keeps
//! the slots it took while it has work for the endpoint: an attempt that ends puts its slot
//! here, idle, and the next attempt to that endpoint takes it again without asking the store.
//! A slot idle for [`IDLE_RELEASE`] goes back to the store (the sweeper), so an endpoint this
//! node stopped sending to is free for the others within a fraction of a second.
//!
//! Fairness: a node holds at most its share of an endpoint's slots, `max` divided by the live
//! nodes (rounded up), which it learns at each heartbeat. A node above its share (another node
//! joined) gives slots back as its attempts end. The dispatcher parks a node's attempts beyond
//! its share locally, so they wait without polling the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A slot idle this long goes back to the store.
pub(super) const IDLE_RELEASE: Duration = Duration::from_millis(250);

/// How long a node does not ask the store again for an endpoint's slot after it said all were
/// taken (attempts waiting meanwhile are tried again after this).
pub(super) const REFUSED_BACKOFF: Duration = Duration::from_millis(20);

/// What [`ClusterSlots::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Take {
    /// An idle slot this node holds: use it.
    Reused(u32),
    /// Room in this node's share: ask the store for a slot, then report with
    /// [`ClusterSlots::acquired`] or [`ClusterSlots::refused`].
    Ask,
    /// This node holds its share, or the store said all were taken a moment ago: try later.
    Wait,
}

/// The endpoint slots this node holds.
#[derive(Default)]
struct Held {
    /// Slots taken from the store, in use, idle or being asked for.
    count: usize,
    /// Idle slots, with when they became idle (the newest last).
    idle: Vec<(u32, Instant)>,
    /// The store refused a slot: no asking again before this.
    refused_until: Option<Instant>,
}

/// The endpoint slots this node holds, by endpoint.
pub(super) struct ClusterSlots {
    endpoints: Mutex<HashMap<String, Held>>,
    live_nodes: AtomicU32,
}

impl Default for ClusterSlots {
    fn default() -> Self {
        Self {
            endpoints: Mutex::default(),
            live_nodes: AtomicU32::new(1),
        }
    }
}

impl ClusterSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes how many nodes are live (this one included), as the store counted them.
    pub(super) fn set_live_nodes(&self, nodes: u32) {
        self.live_nodes.store(nodes.max(1), Ordering::Relaxed);
    }

    /// How many of an endpoint's `max` slots this node may hold: `max` over the live nodes,
    /// rounded up, at least one.
    pub(super) fn share(&self, max: u32) -> usize {
        let nodes = self.live_nodes.load(Ordering::Relaxed).max(1);
        max.max(1).div_ceil(nodes) as usize
    }

    /// Takes a slot of `endpoint` for one attempt (see [`Take`]).
    pub(super) fn take(&self, endpoint: &str, max: u32) -> Take {
        let share = self.share(max);
        let now = Instant::now();
        let mut endpoints = self.lock();
        let held = endpoints.entry(endpoint.to_string()).or_default();
        // The newest idle slot first; one numbered beyond a lowered `max` stays idle until the
        // sweeper gives it back.
        if let Some(index) = held.idle.iter().rposition(|(slot, _)| *slot < max) {
            let (slot, _) = held.idle.remove(index);
            return Take::Reused(slot);
        }
        if held.refused_until.is_some_and(|until| now < until) || held.count >= share {
            return Take::Wait;
        }
        held.count += 1;
        Take::Ask
    }

    /// The store granted the slot asked for after [`Take::Ask`].
    pub(super) fn acquired(&self, endpoint: &str) {
        if let Some(held) = self.lock().get_mut(endpoint) {
            held.refused_until = None;
        }
    }

    /// The store had no slot (or failed) after [`Take::Ask`].
    pub(super) fn refused(&self, endpoint: &str) {
        let mut endpoints = self.lock();
        if let Some(held) = endpoints.get_mut(endpoint) {
            held.count = held.count.saturating_sub(1);
            held.refused_until = Some(Instant::now() + REFUSED_BACKOFF);
        }
    }

    /// An attempt ended: its slot stays here, idle, unless this node holds more than its share
    /// or the slot lies beyond the endpoint's `max`; then it is returned for the caller to give
    /// back to the store.
    pub(super) fn give_back(&self, endpoint: &str, slot: u32, max: u32) -> Option<u32> {
        let share = self.share(max);
        let mut endpoints = self.lock();
        let held = endpoints.entry(endpoint.to_string()).or_default();
        if held.count > share || slot >= max {
            held.count = held.count.saturating_sub(1);
            if held.count == 0 {
                endpoints.remove(endpoint);
            }
            return Some(slot);
        }
        held.idle.push((slot, Instant::now()));
        None
    }

    /// Removes the slots idle for `idle_for` or longer; the caller gives them back to the store.
    pub(super) fn sweep(&self, idle_for: Duration) -> Vec<(String, u32)> {
        let now = Instant::now();
        let mut swept = Vec::new();
        let mut endpoints = self.lock();
        endpoints.retain(|endpoint, held| {
            let idle_before = held.idle.len();
            held.idle.retain(|(slot, since)| {
                let keep = now.duration_since(*since) < idle_for;
                if !keep {
                    swept.push((endpoint.clone(), *slot));
                }
                keep
            });
            held.count = held.count.saturating_sub(idle_before - held.idle.len());
            held.count > 0 || held.refused_until.is_some_and(|until| now < until)
        });
        swept
    }

    /// Slots of `endpoint` held here (in use, idle or being asked for).
    #[cfg(test)]
    fn held(&self, endpoint: &str) -> usize {
        self.lock().get(endpoint).map_or(0, |h| h.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_reuses_its_idle_slot_instead_of_asking_the_store() {
        let slots = ClusterSlots::default();
        assert_eq!(slots.take("e", 2), Take::Ask);
        slots.acquired("e");
        assert_eq!(slots.give_back("e", 0, 2), None);
        assert_eq!(slots.take("e", 2), Take::Reused(0));
        assert_eq!(slots.held("e"), 1);
    }

    #[test]
    fn a_node_asks_for_at_most_its_share() {
        let slots = ClusterSlots::default();
        slots.set_live_nodes(3);
        assert_eq!(slots.share(8), 3);
        for _ in 0..3 {
            assert_eq!(slots.take("e", 8), Take::Ask);
            slots.acquired("e");
        }
        assert_eq!(slots.take("e", 8), Take::Wait);
        // Alone again: the whole cap is its share.
        slots.set_live_nodes(1);
        assert_eq!(slots.take("e", 8), Take::Ask);
    }

    #[test]
    fn above_its_share_a_node_gives_slots_back_as_attempts_end() {
        let slots = ClusterSlots::default();
        for _ in 0..4 {
            assert_eq!(slots.take("e", 4), Take::Ask);
        }
        slots.set_live_nodes(2);
        assert_eq!(slots.give_back("e", 3, 4), Some(3));
        assert_eq!(slots.give_back("e", 2, 4), Some(2));
        assert_eq!(
            slots.give_back("e", 1, 4),
            None,
            "at its share of 2 it keeps the slot"
        );
        assert_eq!(slots.held("e"), 2);
    }

    #[test]
    fn a_refusal_backs_off_and_frees_the_reservation() {
        let slots = ClusterSlots::default();
        assert_eq!(slots.take("e", 2), Take::Ask);
        slots.refused("e");
        assert_eq!(slots.held("e"), 0);
        assert_eq!(
            slots.take("e", 2),
            Take::Wait,
            "the store said no a moment ago"
        );
        std::thread::sleep(REFUSED_BACKOFF + Duration::from_millis(5));
        assert_eq!(slots.take("e", 2), Take::Ask);
    }

    #[test]
    fn idle_slots_are_swept_and_slots_beyond_a_lowered_cap_are_not_reused() {
        let slots = ClusterSlots::default();
        for _ in 0..3 {
            assert_eq!(slots.take("e", 3), Take::Ask);
        }
        assert_eq!(slots.take("f", 1), Take::Ask);
        assert_eq!(slots.give_back("e", 2, 3), None);
        assert_eq!(slots.give_back("f", 0, 1), None);
        // The cap drops to 2: slot 2 is not handed out again.
        assert_eq!(slots.take("e", 2), Take::Wait);
        let mut swept = slots.sweep(Duration::ZERO);
        swept.sort();
        assert_eq!(swept, vec![("e".to_string(), 2), ("f".to_string(), 0)]);
        assert_eq!(slots.held("e"), 2);
        assert_eq!(slots.held("f"), 0);
        assert!(slots.sweep(Duration::ZERO).is_empty());
    }
}
