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
    /// Tokens fetched from token providers.
    pub token_fetches: Counter,
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
        let token_fetches = Counter::default();
        registry.register(
            "token_fetches",
            "Tokens fetched from token providers",
            token_fetches.clone(),
        );
        Self {
            registry,
            events_ingested,
            attempts,
            deliveries,
            attempt_latency,
            queue_depth,
            in_flight,
            token_fetches,
        }
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
