//! Idle step instances kept for reuse by the same endpoint (see [`InstanceReuse`]).
//!
//! A warm instance is only handed back for exactly the key it served: one loaded plugin version,
//! one tenant, one endpoint, one configuration. The pool is bounded (`max_idle` across all
//! plugins, oldest dropped first), idle instances expire after `idle_timeout`, and a plugin's
//! instances are purged when that version is unloaded or replaced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::Store;

use super::bindings::step;
use super::engine::InstanceReuse;
use super::host_imports::StoreState;

/// What a warm instance may serve: the same plugin version, tenant, endpoint and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WarmKey {
    /// Identity of the loaded plugin version (a new load of the same name gets a new one).
    pub(crate) plugin_id: u64,
    /// The tenant whose deliveries the instance has seen.
    pub(crate) tenant: String,
    /// The endpoint whose deliveries the instance has seen.
    pub(crate) endpoint: String,
    /// Hash of the step's configuration (a changed endpoint config gets fresh instances).
    pub(crate) config_hash: u64,
}

impl WarmKey {
    /// The key of an `apply` call.
    pub(crate) fn new(plugin_id: u64, tenant: &str, endpoint: &str, config: &str) -> Self {
        let mut hasher = DefaultHasher::new();
        config.hash(&mut hasher);
        WarmKey {
            plugin_id,
            tenant: tenant.to_string(),
            endpoint: endpoint.to_string(),
            config_hash: hasher.finish(),
        }
    }
}

/// An instantiated step plugin with its store, between two calls.
pub(crate) struct WarmStep {
    pub(crate) store: Store<StoreState>,
    pub(crate) bindings: step::StepPlugin,
    /// Calls it has served so far.
    pub(crate) calls: u32,
}

struct Idle {
    key: WarmKey,
    since: Instant,
    instance: WarmStep,
}

/// How often calls found a warm instance.
#[derive(Debug, Default)]
pub struct WarmStats {
    /// `apply` calls served by a warm instance.
    pub reused: AtomicU64,
    /// `apply` calls that instantiated afresh (no idle instance for their key).
    pub instantiated: AtomicU64,
}

/// The idle warm instances of one runtime.
pub(crate) struct WarmPool {
    reuse: InstanceReuse,
    /// Oldest first (instances are pushed when returned).
    idle: Mutex<Vec<Idle>>,
    pub(crate) stats: WarmStats,
}

impl WarmPool {
    pub(crate) fn new(reuse: InstanceReuse) -> Self {
        WarmPool {
            reuse,
            idle: Mutex::new(Vec::new()),
            stats: WarmStats::default(),
        }
    }

    /// Whether calls may reuse instances at all.
    pub(crate) fn enabled(&self) -> bool {
        self.reuse.enabled()
    }

    /// Takes the most recently returned idle instance for `key`, if there is one.
    pub(crate) fn take(&self, key: &WarmKey) -> Option<WarmStep> {
        let now = Instant::now();
        let (found, expired) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let expired = self.drain_expired(&mut idle, now);
            let found = idle
                .iter()
                .rposition(|e| e.key == *key)
                .map(|i| idle.remove(i).instance);
            (found, expired)
        };
        // Dropping a store resets its slot (madvise): never under the lock.
        drop(expired);
        let counter = if found.is_some() {
            &self.stats.reused
        } else {
            &self.stats.instantiated
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Returns an instance after a clean call; it is dropped instead when it has served its
    /// `max_calls`. When the pool is full the oldest idle instance makes room.
    pub(crate) fn put(&self, key: WarmKey, instance: WarmStep) {
        if instance.calls >= self.reuse.max_calls {
            return;
        }
        let now = Instant::now();
        let evicted = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut evicted = self.drain_expired(&mut idle, now);
            while idle.len() >= self.reuse.max_idle as usize && !idle.is_empty() {
                evicted.push(idle.remove(0));
            }
            idle.push(Idle {
                key,
                since: now,
                instance,
            });
            evicted
        };
        drop(evicted);
    }

    /// Drops every idle instance of the plugin version `plugin_id` (it was unloaded).
    pub(crate) fn purge(&self, plugin_id: u64) {
        let purged: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.extract_if(.., |e| e.key.plugin_id == plugin_id)
                .collect()
        };
        drop(purged);
    }

    /// Number of idle instances (for tests and diagnostics).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn drain_expired(&self, idle: &mut Vec<Idle>, now: Instant) -> Vec<Idle> {
        let timeout = self.reuse.idle_timeout;
        // Oldest first: the expired ones are a prefix.
        let n = idle
            .iter()
            .take_while(|e| now.duration_since(e.since) >= timeout)
            .count();
        idle.drain(..n).collect()
    }
}
