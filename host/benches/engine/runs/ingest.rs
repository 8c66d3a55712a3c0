//! Section 4, ingest alone (no endpoint): an open loop at 5,000/s on a fresh engine (after `sync`,
//! so the earlier runs' writeback does not stall it), then a closed loop at high concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::Api;
use crate::engine_proc::{EngineOptions, EngineProc, ProcStats};
use crate::produce::{ProduceSpec, event_body, produce};
use crate::report::{ms, percentile, ratio};
use crate::settings::Settings;
use crate::{Bench, INGEST_PRODUCERS, OPEN_LOOP_RATE};

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings,
        report,
        e2e,
        rss_rows,
        ..
    } = bench;
    let settings = &*settings;
    let run2 = e2e.get("no-step").map(|r| r.deliveries_per_second);
    if settings.wants("ingest") {
        progress!(settings, "4. ingest alone (tenant without endpoints)");
        let r = run_ingest(settings).await?;
        rss_rows.push(("4. ingest".into(), r.engine.peak_rss_kib));
        report
            .add(
                "ingest.closed",
                "4. ingest",
                &format!("POST /events, {INGEST_PRODUCERS} concurrent, no endpoint"),
                Some(r.closed_loop_events_per_second),
                "events/s",
            )
            .ratio(ratio(Some(r.closed_loop_events_per_second), run2), "run 2")
            .note(format!("{} errors", r.closed_loop_errors));
        let note = format!(
            "achieved {:.0}/s, {} requests, {} errors",
            r.open_loop_achieved_rate, r.open_loop_requests, r.open_loop_errors
        );
        report
            .add(
                "ingest.open.p50",
                "4. ingest",
                "open loop 5,000/s: p50 latency",
                r.p50_ms,
                "ms",
            )
            .note(note);
        report
            .add(
                "ingest.open.p99",
                "4. ingest",
                "open loop 5,000/s: p99 latency",
                r.p99_ms,
                "ms",
            )
            .target(
                "≤ 5 ms",
                r.p99_ms.map(|p| p <= 5.0 && r.open_loop_errors == 0),
            );
        report
            .add(
                "ingest.open.max",
                "4. ingest",
                "open loop 5,000/s: max latency",
                r.max_ms,
                "ms",
            )
            .note(format!(
                "p99.9 {:.2} ms; sender max lag {:.2} ms",
                r.p999_ms.unwrap_or(f64::NAN),
                r.max_start_lag_ms
            ));
        report.details.insert("ingest".into(), json!(r));
    }
    Ok(())
}

#[derive(Debug, Default, serde::Serialize)]
struct IngestResult {
    closed_loop_events_per_second: f64,
    closed_loop_errors: u64,
    open_loop_rate: f64,
    open_loop_requests: u64,
    open_loop_errors: u64,
    open_loop_achieved_rate: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    max_ms: Option<f64>,
    max_start_lag_ms: f64,
    engine: ProcStats,
}

/// What an open-loop run measured.
pub(crate) struct OpenLoop {
    /// Latency of each answered request, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or were refused.
    pub errors: u64,
    /// Requests sent per second (the target unless the sender fell behind).
    pub achieved_rate: f64,
    /// The most a send started after its time.
    pub max_lag: Duration,
    /// The slowest answer to a request sent in each second of the run (ms): where a tail came
    /// from (one stall, or a spread).
    pub max_ms_by_second: Vec<f64>,
}

/// Open loop: request i is sent at start + i/rate whatever the previous ones do. Latency is from
/// the send to the full answer.
pub(crate) async fn open_loop(
    api: &Api,
    path: &str,
    token: &str,
    rate: f64,
    duration: Duration,
) -> OpenLoop {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let path: Arc<str> = path.into();
    let token: Arc<str> = token.into();
    let start = Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::with_capacity(total as usize);
    let mut max_lag = Duration::ZERO;
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        max_lag = max_lag.max(Instant::now().saturating_duration_since(at));
        let (api, path, token) = (api.clone(), path.clone(), token.clone());
        handles.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = api
                .call(
                    "POST",
                    &path,
                    Some(&token),
                    Some(event_body("bench.nobody", i)),
                )
                .await;
            (sent.elapsed(), matches!(result, Ok((202, _))))
        }));
    }
    let sending = start.elapsed();
    let mut latencies = Vec::with_capacity(handles.len());
    let mut max_ms_by_second = vec![0.0f64; (duration.as_secs_f64().ceil() as usize).max(1)];
    let mut errors = 0;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok((latency, true)) => {
                let second = ((i as f64 / rate) as usize).min(max_ms_by_second.len() - 1);
                let latency_ms = latency.as_secs_f64() * 1e3;
                max_ms_by_second[second] = max_ms_by_second[second].max(latency_ms);
                latencies.push(latency);
            }
            _ => errors += 1,
        }
    }
    latencies.sort();
    OpenLoop {
        latencies,
        errors,
        achieved_rate: total as f64 / sending.as_secs_f64(),
        max_lag,
        max_ms_by_second,
    }
}

async fn run_ingest(settings: &Settings) -> anyhow::Result<IngestResult> {
    let engine = EngineProc::start(settings, EngineOptions::new("ingest")).await?;
    let token = engine.tenant("bench").await?;
    let n = settings.events;

    // Latency first, at a steady 5,000/s on a fresh engine: the earlier runs' dirty pages are
    // written back beforehand (`sync`), so that the kernel's writeback of THEIR data does not
    // stall this engine's fsyncs, and the closed-loop burst comes after, not before.
    let _ = std::process::Command::new("sync").status();
    let path = "/v1/tenants/bench/events";
    let warm = Duration::from_secs(1);
    let measure = Duration::from_secs(settings.scaled(5, 2));
    progress!(
        settings,
        "  ingest: open loop at {OPEN_LOOP_RATE:.0}/s: {:.0}s warm-up, then {:.0}s measured",
        warm.as_secs_f64(),
        measure.as_secs_f64()
    );
    let _ = open_loop(&engine.api, path, &token, OPEN_LOOP_RATE, warm).await;
    let OpenLoop {
        latencies: lat,
        errors,
        achieved_rate: achieved,
        max_lag: lag,
        ..
    } = open_loop(&engine.api, path, &token, OPEN_LOOP_RATE, measure).await;

    progress!(
        settings,
        "  ingest: closed loop, {INGEST_PRODUCERS} producers, {n} events, no endpoint"
    );
    let produced = produce(ProduceSpec {
        producers: INGEST_PRODUCERS,
        limit: n,
        ..ProduceSpec::new(&engine.api, "bench", &token, vec!["bench.nobody".into()])
    })
    .await;
    let closed = produced.accepted as f64 / produced.elapsed.as_secs_f64();
    progress!(
        settings,
        "  ingest: {closed:.0} events/s accepted ({} errors)",
        produced.errors
    );
    let (stats, _) = engine.stop(false, settings.keep).await?;
    let result = IngestResult {
        closed_loop_events_per_second: closed,
        closed_loop_errors: produced.errors,
        open_loop_rate: OPEN_LOOP_RATE,
        open_loop_requests: lat.len() as u64 + errors,
        open_loop_errors: errors,
        open_loop_achieved_rate: achieved,
        p50_ms: ms(percentile(&lat, 50.0)),
        p90_ms: ms(percentile(&lat, 90.0)),
        p99_ms: ms(percentile(&lat, 99.0)),
        p999_ms: ms(percentile(&lat, 99.9)),
        max_ms: ms(lat.last().copied()),
        max_start_lag_ms: lag.as_secs_f64() * 1000.0,
        engine: stats,
    };
    progress!(
        settings,
        "  ingest: open loop {:.0}/s achieved, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
        achieved,
        result.p50_ms.unwrap_or(f64::NAN),
        result.p99_ms.unwrap_or(f64::NAN),
        result.max_ms.unwrap_or(f64::NAN),
        errors
    );
    Ok(result)
}
