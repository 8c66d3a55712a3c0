//! Run 2, the engine end to end: N events through `POST /events` (64 producers, keep-alive),
//! delivered to the sink; timed from the first POST until the sink has N requests, `/metrics`
//! counts N successes and a `/healthz` (which flushes the store's writer) has returned. 2b: the
//! same, 100 events per `POST /events/batch`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::api::Counters;
use crate::engine_proc::{EngineOptions, EngineProc, ProcStats, proc_stats, self_cpu_seconds};
use crate::produce::{ProduceSpec, produce};
use crate::report::ratio;
use crate::settings::Settings;
use crate::sink::Sink;
use crate::{BATCH, Bench, CONCURRENCY, EVENT_TYPE};

/// Run 2's ratio to the baseline before the store became a trait with two backends (README).
pub const RUN2_RATIO_BEFORE: f64 = 0.17;

/// Runs 2 and 2b; run 2 also when a section that compares with it runs.
pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.settings.events;
    let wants = |s: &str| bench.settings.wants(s);
    let (run2, run2b) = (
        wants("e2e") || wants("steps") || wants("scale") || wants("cluster"),
        wants("e2e"),
    );
    if run2 {
        progress!(
            bench.settings,
            "2. engine end to end: {n} events, 1 endpoint, no step"
        );
        let r = run_e2e(
            &bench.settings,
            &bench.sink,
            E2eSpec {
                label: "e2e-no-step".into(),
                steps: json!([]),
                endpoints: 1,
                events: n,
                batch: 1,
            },
        )
        .await?;
        bench
            .rss_rows
            .push(("2. no step".into(), r.engine.peak_rss_kib));
        bench.e2e.insert("no-step".into(), r);
    }
    if run2b {
        progress!(
            bench.settings,
            "2b. the same, posted {BATCH} events per POST /events/batch"
        );
        let r = run_e2e(
            &bench.settings,
            &bench.sink,
            E2eSpec {
                label: "e2e-no-step-batched".into(),
                steps: json!([]),
                endpoints: 1,
                events: n,
                batch: BATCH,
            },
        )
        .await?;
        bench
            .rss_rows
            .push(("2b. batched".into(), r.engine.peak_rss_kib));
        bench.e2e.insert("no-step-batched".into(), r);
    }
    let baseline_rate = bench.baseline;
    if let Some(r) = bench.e2e.get("no-step") {
        let x = ratio(Some(r.deliveries_per_second), baseline_rate);
        bench
            .report
            .add(
                "e2e.no_step",
                "2. end to end",
                "1 endpoint, no step: ingest→deliver→record",
                Some(r.deliveries_per_second),
                "deliv/s",
            )
            .ratio(x, "baseline")
            .target("≥ 0.5x baseline", x.map(|x| x >= 0.5 && !r.timed_out))
            .note(e2e_note(r));
        bench
            .report
            .add(
                "e2e.no_step.vs_before",
                "2. end to end",
                &format!("run 2's ratio to baseline vs before the store split ({RUN2_RATIO_BEFORE:.2}x, README)"),
                x,
                "x baseline",
            )
            .ratio(ratio(x, Some(RUN2_RATIO_BEFORE)), "before")
            .target(
                "≥ 0.95x before",
                x.map(|x| x >= 0.95 * RUN2_RATIO_BEFORE && !r.timed_out),
            );
    }
    if let Some(r) = bench.e2e.get("no-step-batched") {
        bench
            .report
            .add(
                "e2e.no_step_batched",
                "2. end to end",
                &format!("the same, {BATCH} events per POST /events/batch"),
                Some(r.deliveries_per_second),
                "deliv/s",
            )
            .ratio(
                ratio(Some(r.deliveries_per_second), baseline_rate),
                "baseline",
            )
            .note(e2e_note(r));
    }
    Ok(())
}

pub struct E2eSpec {
    pub label: String,
    pub steps: Value,
    pub endpoints: usize,
    pub events: u64,
    /// Events per POST: 1 = `POST /events`, more = `POST /events/batch`.
    pub batch: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct E2eResult {
    pub label: String,
    pub events: u64,
    pub accepted: u64,
    pub errors: u64,
    pub delivered_at_sink: u64,
    pub success_metric: f64,
    pub failures: f64,
    pub dead: f64,
    pub ingest_seconds: f64,
    pub seconds: f64,
    pub deliveries_per_second: f64,
    pub timed_out: bool,
    pub startup_seconds: f64,
    pub engine: ProcStats,
    pub engine_cpu_us_per_delivery: Option<f64>,
    pub bench_cpu_us_per_delivery: Option<f64>,
    pub pending_after_stop: Option<u64>,
    pub last_event_status: Option<String>,
    pub first_error: Option<String>,
}

/// Waits until the sink has `n` requests since `base`, the engines' `/metrics` count `n`
/// successes between them and each engine's `/healthz` (which flushes its store) has returned.
/// `true` when it timed out.
pub async fn wait_delivered(
    engines: &[&EngineProc],
    sink: &Sink,
    base: u64,
    n: u64,
    deadline: Instant,
) -> anyhow::Result<(bool, Counters)> {
    // The sink first (in-process, cheap), then the engine's own count, then a flush of the store.
    // No progress at all for 20 s counts as a time-out too (a broken engine fails fast).
    let (mut last, mut last_change) = (sink.count(), Instant::now());
    while sink.count() - base < n {
        let now = Instant::now();
        if sink.count() != last {
            (last, last_change) = (sink.count(), now);
        }
        if now > deadline || now - last_change > Duration::from_secs(20) {
            eprintln!(
                "  no delivery for {:.0}s or past the deadline: giving up on this run",
                (now - last_change).as_secs_f64()
            );
            return Ok((true, counters_of(engines).await.unwrap_or_default()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let counters = counters_of(engines).await?;
        if counters.success >= n as f64 {
            for engine in engines {
                let (status, _) = engine.api.call("GET", "/healthz", None, None).await?;
                if status != 200 {
                    bail!("/healthz of {} answered {status}", engine.label);
                }
            }
            return Ok((false, counters));
        }
        if Instant::now() > deadline {
            return Ok((true, counters));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The counters of several engines added up.
async fn counters_of(engines: &[&EngineProc]) -> anyhow::Result<Counters> {
    let mut total = Counters::default();
    for engine in engines {
        total += engine.counters().await?;
    }
    Ok(total)
}

pub async fn run_e2e(
    settings: &Settings,
    sink: &Arc<Sink>,
    spec: E2eSpec,
) -> anyhow::Result<E2eResult> {
    let engine = EngineProc::start(settings, EngineOptions::new(spec.label.clone())).await?;
    let token = engine.tenant("bench").await?;
    let mut types = Vec::new();
    for j in 0..spec.endpoints {
        let event_type = if spec.endpoints == 1 {
            EVENT_TYPE.to_string()
        } else {
            format!("bench.t{j}")
        };
        engine
            .endpoint(
                "bench",
                &token,
                json!({"url": sink.url(), "event_types": [event_type], "steps": spec.steps, "max_concurrency": CONCURRENCY}),
            )
            .await?;
        types.push(event_type);
    }
    progress!(
        settings,
        "  {}: engine up in {:.2}s, {} endpoint(s); posting {} events",
        spec.label,
        engine.startup.as_secs_f64(),
        spec.endpoints,
        spec.events
    );
    let base = sink.count();
    let cpu_before = proc_stats(engine.pid, settings.clock_ticks)
        .cpu_seconds
        .unwrap_or(0.0);
    let self_before = self_cpu_seconds(settings.clock_ticks);
    let started = Instant::now();
    let produced = produce(ProduceSpec {
        limit: spec.events,
        batch: spec.batch,
        ..ProduceSpec::new(&engine.api, "bench", &token, types)
    })
    .await;
    progress!(
        settings,
        "  {}: {} accepted in {:.2}s ({:.0}/s), {} delivered so far",
        spec.label,
        produced.accepted,
        produced.elapsed.as_secs_f64(),
        produced.accepted as f64 / produced.elapsed.as_secs_f64(),
        sink.count() - base
    );
    let (timed_out, counters) = wait_delivered(
        &[&engine],
        sink,
        base,
        produced.accepted,
        started + settings.run_deadline(),
    )
    .await?;
    let elapsed = started.elapsed();
    let delivered = sink.count() - base;
    let cpu_after = proc_stats(engine.pid, settings.clock_ticks)
        .cpu_seconds
        .unwrap_or(0.0);
    let self_after = self_cpu_seconds(settings.clock_ticks);
    let last_event_status = match &produced.last_event_id {
        Some(id) => engine
            .api
            .json(
                "GET",
                &format!("/v1/tenants/bench/events/{id}/deliveries"),
                Some(&token),
                None,
            )
            .await
            .ok()
            .and_then(|(_, v)| {
                v.get(0)
                    .and_then(|d| d["status"].as_str())
                    .map(str::to_string)
            }),
        None => None,
    };
    let startup_seconds = engine.startup.as_secs_f64();
    let (stats, pending) = engine.stop(!timed_out, settings.keep).await?;
    let result = E2eResult {
        label: spec.label.clone(),
        events: spec.events,
        accepted: produced.accepted,
        errors: produced.errors,
        delivered_at_sink: delivered,
        success_metric: counters.success,
        failures: counters.failure,
        dead: counters.dead,
        ingest_seconds: produced.elapsed.as_secs_f64(),
        seconds: elapsed.as_secs_f64(),
        deliveries_per_second: delivered.min(produced.accepted) as f64 / elapsed.as_secs_f64(),
        timed_out,
        startup_seconds,
        engine: stats,
        engine_cpu_us_per_delivery: (delivered > 0)
            .then(|| (cpu_after - cpu_before) * 1e6 / delivered as f64),
        bench_cpu_us_per_delivery: (delivered > 0)
            .then(|| (self_after - self_before) * 1e6 / delivered as f64),
        pending_after_stop: pending,
        last_event_status,
        first_error: produced.first_error,
    };
    progress!(
        settings,
        "  {}: {:.0} deliveries/s ({} in {:.2}s){}; engine peak RSS {} MiB, engine CPU {:.1} µs/delivery, bench CPU {:.1} µs/delivery",
        spec.label,
        result.deliveries_per_second,
        delivered,
        result.seconds,
        if timed_out { " TIMED OUT" } else { "" },
        result
            .engine
            .peak_rss_kib
            .map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "?".into()),
        result.engine_cpu_us_per_delivery.unwrap_or(f64::NAN),
        result.bench_cpu_us_per_delivery.unwrap_or(f64::NAN),
    );
    if let Some(e) = &result.first_error {
        progress!(
            settings,
            "  {}: {} producer errors, first: {e}",
            spec.label,
            result.errors
        );
    }
    Ok(result)
}

pub fn e2e_note(r: &E2eResult) -> String {
    let mut parts = vec![format!("{} in {:.1}s", r.delivered_at_sink, r.seconds)];
    if let Some(cpu) = r.engine_cpu_us_per_delivery {
        parts.push(format!("engine CPU {cpu:.0} µs/deliv"));
    }
    if r.failures > 0.0 || r.dead > 0.0 {
        parts.push(format!("failures {} dead {}", r.failures, r.dead));
    }
    if r.errors > 0 {
        parts.push(format!("{} POST errors", r.errors));
    }
    if let Some(p) = r.pending_after_stop
        && p > 0
    {
        parts.push(format!("{p} pending after stop"));
    }
    if r.engine.panics > 0 {
        parts.push(format!("engine panicked {}x", r.engine.panics));
    }
    if r.timed_out {
        parts.push("TIMED OUT".into());
    }
    parts.join(", ")
}
