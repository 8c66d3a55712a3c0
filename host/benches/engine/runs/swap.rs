//! Section 5, hot swap of a directory plugin under load: 100 atomic replacements (v1/v2
//! alternating).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;

use crate::engine_proc::{EngineOptions, EngineProc, ProcStats};
use crate::produce::{ProduceSpec, produce};
use crate::report::{ms, percentile};
use crate::runs::e2e::wait_delivered;
use crate::settings::Settings;
use crate::sink::Sink;
use crate::{ADMIN_TOKEN, Bench, CONCURRENCY, EVENT_TYPE};

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings,
        sink,
        report,
        e2e,
        rss_rows,
        ..
    } = bench;
    let (settings, sink) = (&*settings, &*sink);
    if settings.wants("swap") {
        let rate = e2e
            .get("api-key")
            .or(e2e.get("no-step"))
            .map(|r| 0.8 * r.deliveries_per_second)
            .unwrap_or(1000.0)
            .max(100.0);
        progress!(settings, "5. hot swap under load");
        let r = run_hot_swap(settings, sink, rate).await?;
        rss_rows.push(("5. hot swap".into(), r.engine.peak_rss_kib));
        let failed = r.failures + r.dead_attempts + r.dead_deliveries;
        let complete =
            r.delivered_at_sink == r.events && r.success_metric as u64 == r.events && !r.timed_out;
        report
            .add(
                "swap.failures",
                "5. hot swap",
                &format!("{} renames under load: failed attempts + dead", r.swaps),
                Some(failed),
                "count",
            )
            .target("0", Some(failed == 0.0 && r.errors == 0 && complete))
            .note(format!(
                "{} events at {:.0}/s, {} delivered, success metric {}, pending after stop {}",
                r.events,
                r.pacing_events_per_second,
                r.delivered_at_sink,
                r.success_metric,
                r.pending_after_stop
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into())
            ));
        report
            .add(
                "swap.p50",
                "5. hot swap",
                "rename → first delivery with new version: median",
                r.latency_p50_ms,
                "ms",
            )
            .note(format!(
                "{} of {} swaps seen at the sink; debounce 200 ms",
                r.observed, r.swaps
            ));
        report.add(
            "swap.max",
            "5. hot swap",
            "rename → first delivery with new version: max",
            r.latency_max_ms,
            "ms",
        );
        report.add(
            "swap.rate",
            "5. hot swap",
            "deliveries/s during the swaps (paced)",
            Some(r.deliveries_per_second),
            "deliv/s",
        );
        report.details.insert("hot_swap".into(), json!(r));
    }
    Ok(())
}

#[derive(Debug, Default, serde::Serialize)]
struct SwapResult {
    swaps: usize,
    interval_ms: f64,
    pacing_events_per_second: f64,
    events: u64,
    errors: u64,
    delivered_at_sink: u64,
    success_metric: f64,
    failures: f64,
    dead_attempts: f64,
    dead_deliveries: f64,
    deliveries_per_second: f64,
    timed_out: bool,
    observed: usize,
    not_observed: usize,
    latency_p50_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    latencies_ms: Vec<f64>,
    final_version_served: Option<String>,
    pending_after_stop: Option<u64>,
    engine: ProcStats,
}

async fn run_hot_swap(
    settings: &Settings,
    sink: &Arc<Sink>,
    rate: f64,
) -> anyhow::Result<SwapResult> {
    let v1 = PathBuf::from(
        wasmhook::guests::path("swap-v1").ok_or_else(|| anyhow!("no swap-v1 guest"))?,
    );
    let v2 = PathBuf::from(
        wasmhook::guests::path("swap-v2").ok_or_else(|| anyhow!("no swap-v2 guest"))?,
    );
    let bytes = [std::fs::read(&v1)?, std::fs::read(&v2)?];
    let engine = EngineProc::start(
        settings,
        EngineOptions {
            plugin_files: vec![("swap.wasm".into(), v1.clone())],
            ..EngineOptions::new("hot-swap")
        },
    )
    .await?;
    let token = engine.tenant("bench").await?;
    engine
        .endpoint(
            "bench",
            &token,
            json!({"url": sink.url(), "event_types": [EVENT_TYPE], "steps": [{"plugin": "swap", "config": {}}], "max_concurrency": CONCURRENCY}),
        )
        .await?;
    let swaps = settings.scaled(100, 10) as usize;
    let interval = Duration::from_millis(500);
    progress!(
        settings,
        "  hot-swap: {swaps} replacements every {} ms while events are posted at {rate:.0}/s (64 producers)",
        interval.as_millis()
    );
    sink.versions.lock().unwrap().clear();
    let base = sink.count();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let producer = tokio::spawn(produce(ProduceSpec {
        limit: u64::MAX,
        rate: Some(rate),
        stop: stop.clone(),
        ..ProduceSpec::new(&engine.api, "bench", &token, vec![EVENT_TYPE.into()])
    }));
    // Let the stream settle on v1 first.
    tokio::time::sleep(interval).await;
    let plugins_dir = engine.plugins_dir();
    let mut renames: Vec<(u8, Instant)> = Vec::with_capacity(swaps);
    let first = Instant::now();
    for k in 0..swaps {
        tokio::time::sleep_until((first + interval * k as u32).into()).await;
        let version: u8 = if k % 2 == 0 { 2 } else { 1 };
        let staging = plugins_dir.join(".swap.wasm.tmp");
        std::fs::write(&staging, &bytes[version as usize - 1])?;
        std::fs::rename(&staging, plugins_dir.join("swap.wasm"))?;
        renames.push((version, Instant::now()));
    }
    tokio::time::sleep(interval).await;
    stop.store(true, Ordering::Relaxed);
    let produced = producer.await?;
    let (timed_out, counters) = wait_delivered(
        &[&engine],
        sink,
        base,
        produced.accepted,
        Instant::now() + settings.run_deadline(),
    )
    .await?;
    let elapsed = started.elapsed();
    let delivered = sink.count() - base;
    let final_version_served = engine
        .api
        .json("GET", "/v1/plugins", Some(ADMIN_TOKEN), None)
        .await
        .ok()
        .and_then(|(_, list)| {
            list.as_array()?
                .iter()
                .find(|p| p["name"] == "swap")
                .and_then(|p| p["info"]["version"].as_str().map(str::to_string))
        });
    let (stats, pending) = engine.stop(!timed_out, settings.keep).await?;

    // For each rename: the first arrival carrying its version after it (and before the next
    // rename, which brings the other version back).
    let arrivals = std::mem::take(&mut *sink.versions.lock().unwrap());
    let mut latencies = Vec::new();
    let mut not_observed = 0;
    for (k, (version, at)) in renames.iter().enumerate() {
        let until = renames.get(k + 1).map(|(_, t)| *t);
        let seen = arrivals
            .iter()
            .filter(|(v, t)| *v == *version && *t > *at && until.is_none_or(|u| *t <= u))
            .map(|(_, t)| *t)
            .min();
        match seen {
            Some(t) => latencies.push(t - *at),
            None => not_observed += 1,
        }
    }
    latencies.sort();
    let result = SwapResult {
        swaps,
        interval_ms: interval.as_secs_f64() * 1000.0,
        pacing_events_per_second: rate,
        events: produced.accepted,
        errors: produced.errors,
        delivered_at_sink: delivered,
        success_metric: counters.success,
        failures: counters.failure,
        dead_attempts: counters.dead,
        dead_deliveries: counters.deliveries_dead,
        deliveries_per_second: delivered as f64 / elapsed.as_secs_f64(),
        timed_out,
        observed: latencies.len(),
        not_observed,
        latency_p50_ms: ms(percentile(&latencies, 50.0)),
        latency_max_ms: ms(latencies.last().copied()),
        latencies_ms: latencies
            .iter()
            .map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
            .collect(),
        final_version_served,
        pending_after_stop: pending,
        engine: stats,
    };
    progress!(
        settings,
        "  hot-swap: {} events, {} delivered, failures {} dead {}; swap→first new delivery p50 {:.1} ms max {:.1} ms ({} of {} seen)",
        result.events,
        delivered,
        result.failures,
        result.dead_attempts,
        result.latency_p50_ms.unwrap_or(f64::NAN),
        result.latency_max_ms.unwrap_or(f64::NAN),
        result.observed,
        swaps
    );
    Ok(result)
}
