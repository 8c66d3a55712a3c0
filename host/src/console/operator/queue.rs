//! The queue and delivery rates, from the same counters `/metrics` exposes: events ingested,
//! deliveries by outcome, attempts by outcome, and the gauges (queued, in flight, held, pending
//! in the store). Rates are over the time since this page was last shown in this process (and
//! since it was first shown, the first time).

use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use crate::api::AppState;
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{PageError, operator_only};
use crate::metrics::{Metrics, OutcomeLabel};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/admin/queue", get(page))
}

#[derive(Clone, Copy, Default)]
struct Counts {
    events: u64,
    delivered: u64,
    dead: u64,
    failed_attempts: u64,
}

fn counts(metrics: &Metrics) -> Counts {
    let outcome = |family: &prometheus_client::metrics::family::Family<
        OutcomeLabel,
        prometheus_client::metrics::counter::Counter,
    >,
                   name: &str| {
        family
            .get_or_create(&OutcomeLabel {
                outcome: name.to_string(),
            })
            .get()
    };
    Counts {
        events: metrics.events_ingested.get(),
        delivered: outcome(&metrics.deliveries, "success"),
        dead: outcome(&metrics.deliveries, "dead"),
        failed_attempts: outcome(&metrics.attempts, "failure"),
    }
}

/// The previous sample of the counters (one per process).
static LAST: Mutex<Option<(Instant, Counts)>> = Mutex::new(None);
/// When the counters were first sampled in this process.
static FIRST: Mutex<Option<Instant>> = Mutex::new(None);

async fn page(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    operator_only(&session)?;
    let engine = &state.engine;
    let now = Instant::now();
    let current = counts(&engine.metrics);
    let (since, before) = {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let mut first = FIRST.lock().unwrap_or_else(|p| p.into_inner());
        let start = *first.get_or_insert(now);
        last.replace((now, current))
            .unwrap_or((start, Counts::default()))
    };
    let seconds = now.duration_since(since).as_secs_f64().max(1.0);
    let rate = |now: u64, then: u64| format!("{:.2}/s", now.saturating_sub(then) as f64 / seconds);
    let pending = engine.store.count_pending().await.ok();
    let context = Context::operator(&session, Section::Queue);
    let card = |label: &str, value: String| {
        html! { div.card { div.n { (value) } div { (label) } } }
    };
    let body = html! {
        h1 { "Queue" }
        div.cards {
            (card("pending in the store (all nodes)", pending.map(|n| n.to_string()).unwrap_or_else(|| "—".into())))
            (card("queued on this node", engine.dispatcher.queued().to_string()))
            (card("in flight on this node", engine.dispatcher.in_flight().to_string()))
            (card("held by this node", engine.dispatcher.held().to_string()))
        }
        h2 { "Rates on this node" }
        p.hint { "Over the last " (format!("{seconds:.0}")) " s (since this page was last shown)." }
        div.table-wrap { table {
            caption.skip { "Counters and rates" }
            thead { tr { th scope="col" { "Counter" } th scope="col" { "Total" } th scope="col" { "Rate" } } }
            tbody {
                tr { td { "events ingested" } td { (current.events) } td { (rate(current.events, before.events)) } }
                tr { td { "deliveries delivered" } td { (current.delivered) } td { (rate(current.delivered, before.delivered)) } }
                tr { td { "deliveries dead" } td { (current.dead) } td { (rate(current.dead, before.dead)) } }
                tr { td { "failed attempts (retried)" } td { (current.failed_attempts) } td { (rate(current.failed_attempts, before.failed_attempts)) } }
            }
        } }
        p { "The same counters, for scraping: " a href="/metrics" { "/metrics" } "." }
    };
    Ok(layout::page("Queue", &context, body).into_response())
}
