//! A test attempt: one request sent through an endpoint's TLS settings and steps exactly as a
//! delivery's would be, outside the queue (no delivery, no record, no retry, not counted in the
//! delivery metrics).

use std::sync::Arc;
use std::time::Instant;

use super::Dispatcher;
use crate::model::Endpoint;
use crate::plugins::CallContext;

/// What a test attempt came to.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ProbeResult {
    /// True when the receiver answered 2xx.
    pub success: bool,
    /// HTTP status, if the receiver answered.
    pub status_code: Option<u16>,
    /// Milliseconds from the start (steps included) to the end of the response.
    pub latency_ms: u64,
    /// Why it failed (a step, TLS, the connection, or the receiver's status).
    pub error: Option<String>,
    /// The first bytes of the response body (`delivery.response_snippet_bytes`).
    pub response_snippet: Option<String>,
}

impl Dispatcher {
    /// Sends `envelope` to `endpoint` once, as attempt `ctx.attempt` of event `ctx.event_id`.
    pub async fn probe(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        ctx: &CallContext,
        envelope: &[u8],
    ) -> ProbeResult {
        let started = Instant::now();
        let result = self.attempt(endpoint, ctx, envelope).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let success =
            result.error.is_none() && result.status_code.is_some_and(|s| (200..300).contains(&s));
        ProbeResult {
            success,
            status_code: result.status_code,
            latency_ms,
            error: result.error,
            response_snippet: result.snippet,
        }
    }
}
