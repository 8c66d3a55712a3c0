//! The engine's data: tenants, endpoints, events, deliveries and attempts, as the API shows them
//! and the store keeps them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 rendering of a Unix timestamp in seconds.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A new sortable id with a type prefix: `msg_01J…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A customer of the provider: owns endpoints, events and plugins.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Slug chosen at creation (`acme`), or generated.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// What an endpoint is: where to deliver, which events, and how to prove and protect each call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Absolute `http` or `https` URL of the receiver.
    pub url: String,
    /// Event types delivered here: exact names (`invoice.paid`) or prefixes (`invoice.*`). Empty
    /// means every event.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Plugin steps run in order on each outgoing request.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Mutual TLS: the client certificate we present and the issuers we trust for the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// A disabled endpoint is not attempted: its deliveries are held (not lost) until it is
    /// enabled again, then sent in order of creation.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Attempts in flight to this endpoint at most (default: the engine's
    /// `delivery.endpoint_concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Free text for the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Also receives the tenant's system events (operational webhooks: `endpoint.disabled`,
    /// `delivery.dead`, ...; see the README), whatever its `event_types`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system_events: bool,
}

fn yes() -> bool {
    true
}

/// One plugin call in an endpoint's pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Plugin name: a built-in or operator plugin (`api-key`) or the tenant's own
    /// (`tenant:my-plugin`).
    pub plugin: String,
    /// The plugin's configuration (see its `config_schema` in `GET /v1/plugins`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Mutual TLS settings of an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Id of a client certificate record of the tenant (`POST .../client-certificates`),
    /// presented to the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// PEM certificate(s) of the issuer(s) that must have issued the receiver's certificate.
    /// Replaces the public roots for this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_issuers: Option<String>,
}

impl TlsSettings {
    /// True when this asks for mutual TLS (a client certificate is presented).
    pub fn is_mutual(&self) -> bool {
        self.client_certificate.is_some()
    }
}

/// A stored endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// `ep_…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// What it is.
    #[serde(flatten)]
    pub spec: EndpointSpec,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Endpoint {
    /// True when an event of `event_type` goes to this endpoint (attempted when the endpoint
    /// is enabled, held while it is disabled).
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        matches_event_types(&self.spec.event_types, event_type)
    }
}

/// Exact names and `prefix.*` patterns; an empty list matches everything; `*` matches everything.
pub fn matches_event_types(patterns: &[String], event_type: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|pattern| {
            if pattern == "*" {
                true
            } else if let Some(prefix) = pattern.strip_suffix(".*") {
                event_type.len() > prefix.len()
                    && event_type.starts_with(prefix)
                    && event_type.as_bytes()[prefix.len()] == b'.'
            } else {
                pattern == event_type
            }
        })
}

/// State of a delivery (one event to one endpoint).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// The retry schedule ran out (or the endpoint is gone); can be replayed.
    Dead,
    /// Its endpoint is disabled: not attempted until the endpoint is enabled again.
    Held,
}

impl DeliveryStatus {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Held => "held",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            "held" => Some(Self::Held),
            _ => None,
        }
    }
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// `dlv_…`.
    pub id: String,
    /// The event.
    pub event_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// State.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt, when pending.
    pub next_attempt_at: Option<i64>,
    /// HTTP status of the last attempt, if it got one.
    pub last_status_code: Option<u16>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix milliseconds when it started.
    pub started_at: i64,
    /// HTTP status, if the receiver answered.
    pub status_code: Option<u16>,
    /// Milliseconds from start to the end of the response.
    pub latency_ms: u64,
    /// `success`, `failure` (will retry) or `dead` (the last one).
    pub outcome: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The first bytes of the response body.
    pub response_snippet: Option<String>,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventSummary {
    /// `msg_…`; also the `webhook-id` header of every delivery.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The envelope as delivered.
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches_event_types(&[], "a.b"));
        assert!(matches_event_types(&p(&["invoice.*"]), "invoice.paid"));
        assert!(!matches_event_types(&p(&["invoice.*"]), "invoices.paid"));
        assert!(!matches_event_types(&p(&["invoice.*"]), "invoice"));
        assert!(matches_event_types(
            &p(&["user.created", "x.*"]),
            "user.created"
        ));
        assert!(!matches_event_types(&p(&["user.created"]), "user.deleted"));
        assert!(matches_event_types(&p(&["*"]), "anything"));
    }
}
