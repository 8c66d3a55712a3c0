//! Event bodies in memory, bounded.
//!
//! A claimed delivery does not carry its event's body: it is read from the store when the
//! attempt is sent. Two things keep that cheap without letting memory follow the backlog:
//! - [`HeldBodies`]: deliveries this node ingested itself keep the body they share with the
//!   other deliveries of their event, while the bytes held that way stay under a budget
//!   (`store.max_held_body_mib`); past it, new deliveries go without and read it when sent.
//! - [`BodyCache`]: attempts in flight for the same event share one copy (weak references,
//!   so a body lives exactly as long as some attempt uses it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A body held in memory, counted against the budget until the last holder drops it.
#[derive(Debug)]
pub struct HeldBody {
    bytes: Arc<[u8]>,
    budget: Arc<AtomicUsize>,
}

impl HeldBody {
    /// The envelope.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// The budget of bodies held with queued deliveries.
#[derive(Debug)]
pub struct HeldBodies {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl HeldBodies {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Holds `bytes` if they fit in the budget.
    pub fn hold(&self, bytes: Arc<[u8]>) -> Option<Arc<HeldBody>> {
        let len = bytes.len();
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + len <= self.limit).then_some(used + len)
            })
            .ok()?;
        Some(Arc::new(HeldBody {
            bytes,
            budget: self.used.clone(),
        }))
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bodies of attempts in flight, shared per event.
#[derive(Default)]
pub struct BodyCache {
    live: Mutex<HashMap<String, Weak<[u8]>>>,
}

impl BodyCache {
    /// The body of `event_id` if an attempt in flight already holds it.
    pub fn get(&self, event_id: &str) -> Option<Arc<[u8]>> {
        self.lock().get(event_id).and_then(Weak::upgrade)
    }

    /// Shares `bytes` (just read from the store) with later attempts of the same event.
    pub fn insert(&self, event_id: &str, bytes: Arc<[u8]>) -> Arc<[u8]> {
        let mut live = self.lock();
        if let Some(existing) = live.get(event_id).and_then(Weak::upgrade) {
            return existing;
        }
        if live.len() >= 1024 {
            live.retain(|_, body| body.strong_count() > 0);
        }
        live.insert(event_id.to_string(), Arc::downgrade(&bytes));
        bytes
    }

    /// Events with a live entry.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.lock()
            .values()
            .filter(|b| b.strong_count() > 0)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<[u8]>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_held_bodies_and_frees_on_drop() {
        let budget = HeldBodies::new(100);
        let body: Arc<[u8]> = vec![0u8; 60].into();
        let held = budget.hold(body.clone()).expect("fits");
        assert_eq!(budget.used(), 60);
        assert!(budget.hold(body.clone()).is_none(), "120 > 100");
        let shared = held.clone();
        drop(held);
        assert_eq!(budget.used(), 60, "one holder left");
        drop(shared);
        assert_eq!(budget.used(), 0);
        assert!(budget.hold(body).is_some());
    }

    #[test]
    fn attempts_of_one_event_share_one_copy() {
        let cache = BodyCache::default();
        let first = cache.insert("msg_1", vec![1u8; 10].into());
        let second = cache.insert("msg_1", vec![1u8; 10].into());
        assert!(Arc::ptr_eq(&first, &second));
        assert!(cache.get("msg_1").is_some());
        drop((first, second));
        assert!(
            cache.get("msg_1").is_none(),
            "dropped with its last attempt"
        );
        assert_eq!(cache.live(), 0);
    }
}
