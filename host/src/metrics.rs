//! Prometheus metrics, served as text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of an attempt's or a delivery's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `success`, `failure` (will retry) or `dead`.
    pub outcome: String,
}

/// How a step's `apply` got its plugin instance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    /// `warm` (reused, same endpoint) or `fresh` (instantiated for the call).
    pub instance: String,
}

/// Every metric of the engine.
pub struct Metrics {
    registry: Registry,
    /// Events accepted by the API.
    pub events_ingested: Counter,
    /// Attempts by outcome.
    pub attempts: Family<OutcomeLabel, Counter>,
    /// Deliveries finished, by final outcome (`success` or `dead`).
    pub deliveries: Family<OutcomeLabel, Counter>,
    /// Attempt latency in seconds.
    pub attempt_latency: Histogram,
    /// Deliveries scheduled in memory (due now or later).
    pub queue_depth: Gauge,
    /// Attempts in flight.
    pub in_flight: Gauge,
    /// Deliveries this node holds claimed (at most `store.window`).
    pub held: Gauge,
    /// Bytes of event bodies held with claimed deliveries.
    pub held_body_bytes: Gauge,
    /// Tokens fetched from token providers.
    pub token_fetches: Counter,
    /// Step `apply` calls by how they got their instance.
    pub plugin_calls: Family<InstanceLabel, Counter>,
    /// Idle warm plugin instances.
    pub plugin_idle_instances: Gauge,
    /// Runs of the periodic jobs on this node (it held their lease).
    pub jobs_run: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasmhook");
        let events_ingested = Counter::default();
        registry.register(
            "events_ingested",
            "Events accepted by the API",
            events_ingested.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register("attempts", "Delivery attempts by outcome", attempts.clone());
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries finished, by outcome (success or dead)",
            deliveries.clone(),
        );
        let attempt_latency = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "attempt_latency_seconds",
            "Latency of delivery attempts",
            attempt_latency.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting for an attempt",
            queue_depth.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "attempts_in_flight",
            "Delivery attempts in flight",
            in_flight.clone(),
        );
        let held = Gauge::default();
        registry.register(
            "deliveries_held",
            "Deliveries this node holds claimed in memory (at most store.window)",
            held.clone(),
        );
        let held_body_bytes = Gauge::default();
        registry.register(
            "held_body_bytes",
            "Bytes of event bodies held with claimed deliveries (at most store.max_held_body_mib)",
            held_body_bytes.clone(),
        );
        let jobs_run = Counter::default();
        registry.register(
            "jobs_runs",
            "Runs of the periodic jobs (retention, auto-disable, certificate warnings) on this node",
            jobs_run.clone(),
        );
        let token_fetches = Counter::default();
        registry.register(
            "token_fetches",
            "Tokens fetched from token providers",
            token_fetches.clone(),
        );
        let plugin_calls = Family::<InstanceLabel, Counter>::default();
        registry.register(
            "plugin_apply_calls",
            "Step apply() calls, by instance: warm (reused for the same endpoint) or fresh",
            plugin_calls.clone(),
        );
        let plugin_idle_instances = Gauge::default();
        registry.register(
            "plugin_idle_instances",
            "Warm plugin instances idle, kept for reuse by their endpoint",
            plugin_idle_instances.clone(),
        );
        Self {
            registry,
            events_ingested,
            attempts,
            deliveries,
            attempt_latency,
            queue_depth,
            in_flight,
            held,
            held_body_bytes,
            token_fetches,
            plugin_calls,
            plugin_idle_instances,
            jobs_run,
        }
    }

    /// Sets the plugin instance counters from the runtime's own counts (read at scrape time).
    pub fn set_plugin_instances(&self, reused: u64, instantiated: u64, idle: usize) {
        for (label, value) in [("warm", reused), ("fresh", instantiated)] {
            self.plugin_calls
                .get_or_create(&InstanceLabel {
                    instance: label.to_string(),
                })
                .inner()
                .store(value, std::sync::atomic::Ordering::Relaxed);
        }
        self.plugin_idle_instances.set(idle as i64);
    }

    /// Counts an attempt.
    pub fn attempt(&self, outcome: &str, latency_seconds: f64) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.attempt_latency.observe(latency_seconds);
        if outcome != "failure" {
            self.deliveries
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.to_string(),
                })
                .inc();
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
