//! Section 8, memory with deliveries waiting in the store while their receivers are down (the
//! endpoint URLs name a closed port; the retry schedule is `1h`, so nothing is retried during the
//! run):
//!
//! - pending: 1,000,000 deliveries on SQLite (10 endpoints × 100,000 events, 1,000 per
//!   `POST /events/batch`; 10x fewer with QUICK), the engine's RSS sampled during the ingest; then
//!   SIGTERM, a restart on the same data directory: the time to the first healthy `/healthz`, and
//!   the RSS until 5 s after it;
//! - fan-out: 20 events of 500 KiB to 200 endpoints, the same stop and restart.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use serde_json::json;

use crate::engine_proc::{
    EngineOptions, EngineProc, ProcStats, RssSampler, RssSamples, proc_stats,
};
use crate::produce::{ProduceSpec, produce};
use crate::report::{Report, mib};
use crate::settings::Settings;
use crate::{Bench, CONCURRENCY, EVENT_TYPE};

/// Targets: RSS while ingesting and after a restart with the 1M pending deliveries, time to a
/// healthy `/healthz` after the restart, RSS after the restart with the fan-out.
const PENDING_RSS_MIB: f64 = 150.0;
const RESTART_HEALTHZ_S: f64 = 1.0;
const FANOUT_RSS_MIB: f64 = 200.0;
/// How long the RSS is watched after the restart became healthy.
const WATCH_AFTER_RESTART: Duration = Duration::from_secs(5);

/// One stop-and-restart measurement.
#[derive(Debug, Default, serde::Serialize)]
struct MemoryResult {
    label: String,
    endpoints: usize,
    events: u64,
    event_bytes: usize,
    deliveries: u64,
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
    ingest_seconds: f64,
    /// `VmRSS` sampled every 50 ms while the events were posted.
    ingest_rss: RssSamples,
    /// Failed first attempts (the receivers are down) when the engine was stopped.
    attempted_before_stop: f64,
    first: ProcStats,
    restart_healthy_seconds: f64,
    /// `VmRSS` sampled every 100 ms from the first healthy `/healthz` for 5 s.
    restart_rss: RssSamples,
    /// `VmHWM` of the restarted engine at the end (its peak since it was spawned).
    restart_peak_rss_kib: Option<u64>,
    attempted_after_restart: f64,
    restarted: ProcStats,
    pending_after_stop: Option<u64>,
}

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings, report, ..
    } = bench;
    let settings = &*settings;
    if !settings.wants("memory") {
        return Ok(());
    }
    let mut details = serde_json::Map::new();

    let per_endpoint = settings.scaled(100_000, 10_000);
    let deliveries = per_endpoint * 10;
    progress!(
        settings,
        "8. memory: {deliveries} pending deliveries (10 endpoints × {per_endpoint} events), receivers down"
    );
    let label = format!("{}k pending", deliveries / 1000);
    match pending(settings, 10, per_endpoint).await {
        Ok(r) => {
            pending_rows(
                report,
                &label,
                &r,
                Some(PENDING_RSS_MIB),
                Some(PENDING_RSS_MIB),
            );
            details.insert("pending".into(), json!(r));
        }
        Err(e) => {
            progress!(settings, "  memory ({label}) failed: {e:#}");
            report
                .add("memory.pending", "8. memory", &label, None, "MiB")
                .note(format!("failed: {e}"));
        }
    }

    progress!(
        settings,
        "8. memory: fan-out, 20 events of 500 KiB to 200 endpoints, receivers down"
    );
    match fanout(settings, 200, 20, 500 * 1024).await {
        Ok(r) => {
            pending_rows(
                report,
                "fan-out 20 × 500 KiB × 200",
                &r,
                None,
                Some(FANOUT_RSS_MIB),
            );
            details.insert("fanout".into(), json!(r));
        }
        Err(e) => {
            progress!(settings, "  memory (fan-out) failed: {e:#}");
            report
                .add(
                    "memory.fanout",
                    "8. memory",
                    "fan-out 20 × 500 KiB × 200",
                    None,
                    "MiB",
                )
                .note(format!("failed: {e}"));
        }
    }
    report
        .details
        .insert("memory".into(), serde_json::Value::Object(details));
    Ok(())
}

fn pending_rows(
    report: &mut Report,
    label: &str,
    r: &MemoryResult,
    ingest_target: Option<f64>,
    restart_target: Option<f64>,
) {
    let id = if r.event_bytes > 100_000 {
        "memory.fanout"
    } else {
        "memory.pending"
    };
    let ingest = mib(r.ingest_rss.max_kib);
    let row = report
        .add(
            &format!("{id}.ingest_rss"),
            "8. memory",
            &format!("{label}: max RSS while ingesting"),
            ingest,
            "MiB",
        )
        .note(format!(
            "{} deliveries ({} events) in {:.1}s, {} samples; at the max {}; VmHWM {:.0} MiB; {} attempted (failed) before SIGTERM{}",
            r.deliveries,
            r.accepted,
            r.ingest_seconds,
            r.ingest_rss.samples,
            anon_file(&r.ingest_rss),
            mib(r.first.peak_rss_kib).unwrap_or(f64::NAN),
            r.attempted_before_stop,
            if r.errors > 0 {
                format!(", {} POST errors: {}", r.errors, r.first_error.as_deref().unwrap_or("?"))
            } else {
                String::new()
            }
        ));
    if let Some(t) = ingest_target {
        row.target(
            &format!("≤ {t:.0} MiB"),
            ingest.map(|m| m <= t && r.errors == 0),
        );
    }
    report
        .add(
            &format!("{id}.restart_healthz"),
            "8. memory",
            &format!("{label}: restart → first healthy /healthz"),
            Some(r.restart_healthy_seconds),
            "s",
        )
        .target(
            &format!("≤ {RESTART_HEALTHZ_S:.0} s"),
            Some(r.restart_healthy_seconds <= RESTART_HEALTHZ_S),
        )
        .note(if id == "memory.fanout" {
            "before the bounded window: 13.3 s".to_string()
        } else {
            String::new()
        });
    let peak = mib(r.restart_peak_rss_kib);
    let row = report
        .add(
            &format!("{id}.restart_rss"),
            "8. memory",
            &format!(
                "{label}: RSS after restart (peak to healthy + {}s)",
                WATCH_AFTER_RESTART.as_secs()
            ),
            peak,
            "MiB",
        )
        .note(format!(
            "VmRSS max {:.0} ({}), last {:.0} MiB over {} samples; {} attempted in that time; {} pending after stop{}",
            mib(r.restart_rss.max_kib).unwrap_or(f64::NAN),
            anon_file(&r.restart_rss),
            mib(r.restart_rss.last_kib).unwrap_or(f64::NAN),
            r.restart_rss.samples,
            r.attempted_after_restart,
            r.pending_after_stop
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into()),
            if id == "memory.fanout" {
                "; before the bounded window: 2,351 MiB"
            } else {
                ""
            }
        ));
    if let Some(t) = restart_target {
        row.target(&format!("≤ {t:.0} MiB"), peak.map(|m| m <= t));
    }
}

/// `anon 120 + file 20 MiB` of the largest sample.
fn anon_file(samples: &RssSamples) -> String {
    format!(
        "anon {:.0} + file {:.0} MiB",
        mib(samples.max_anon_kib).unwrap_or(f64::NAN),
        mib(samples.max_file_kib).unwrap_or(f64::NAN)
    )
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn options(label: &str) -> EngineOptions {
    EngineOptions {
        retry_schedule: Some("1h".into()),
        ..EngineOptions::new(label)
    }
}

/// An engine with `endpoints` endpoints to a closed port, all subscribed to [`EVENT_TYPE`].
async fn engine_with_dead_endpoints(
    settings: &Settings,
    label: &str,
    endpoints: usize,
) -> anyhow::Result<(EngineProc, String)> {
    let engine = EngineProc::start(settings, options(label)).await?;
    let token = engine.tenant("bench").await?;
    let url = format!("http://127.0.0.1:{}/hook", closed_port()?);
    for _ in 0..endpoints {
        engine
            .endpoint(
                "bench",
                &token,
                json!({"url": url, "event_types": [EVENT_TYPE], "steps": [], "max_concurrency": CONCURRENCY}),
            )
            .await?;
    }
    Ok((engine, token))
}

/// 10 endpoints × `per_endpoint` events.
async fn pending(
    settings: &Settings,
    endpoints: usize,
    per_endpoint: u64,
) -> anyhow::Result<MemoryResult> {
    let label = "memory-pending";
    let (engine, token) = engine_with_dead_endpoints(settings, label, endpoints).await?;
    let sampler = RssSampler::start(engine.pid, Duration::from_millis(50));
    let produced = produce(ProduceSpec {
        producers: 4,
        limit: per_endpoint,
        batch: 1000,
        ..ProduceSpec::new(&engine.api, "bench", &token, vec![EVENT_TYPE.into()])
    })
    .await;
    let ingest_rss = sampler.stop().await;
    progress!(
        settings,
        "  {label}: {} events ({} deliveries) accepted in {:.1}s, max RSS {:.0} MiB{}",
        produced.accepted,
        produced.accepted * endpoints as u64,
        produced.elapsed.as_secs_f64(),
        mib(ingest_rss.max_kib).unwrap_or(f64::NAN),
        produced
            .first_error
            .as_deref()
            .map(|e| format!("; {} errors, first: {e}", produced.errors))
            .unwrap_or_default()
    );
    let result = MemoryResult {
        label: label.into(),
        endpoints,
        events: per_endpoint,
        event_bytes: crate::produce::event_body(EVENT_TYPE, 0).len(),
        deliveries: produced.accepted * endpoints as u64,
        accepted: produced.accepted,
        errors: produced.errors,
        first_error: produced.first_error,
        ingest_seconds: produced.elapsed.as_secs_f64(),
        ingest_rss,
        ..MemoryResult::default()
    };
    stop_and_restart(settings, engine, result).await
}

/// `events` events of `bytes` each to `endpoints` endpoints.
async fn fanout(
    settings: &Settings,
    endpoints: usize,
    events: u64,
    bytes: usize,
) -> anyhow::Result<MemoryResult> {
    let label = "memory-fanout";
    let (engine, token) = engine_with_dead_endpoints(settings, label, endpoints).await?;
    let sampler = RssSampler::start(engine.pid, Duration::from_millis(50));
    let started = Instant::now();
    let filler = "x".repeat(bytes);
    let (mut accepted, mut errors, mut first_error) = (0, 0, None);
    for i in 0..events {
        let body = Bytes::from(format!(
            r#"{{"type":"{EVENT_TYPE}","resource":{{"type":"blob","id":"b_{i}"}},"data":{{"blob":"{filler}"}}}}"#
        ));
        match engine
            .api
            .call("POST", "/v1/tenants/bench/events", Some(&token), Some(body))
            .await
        {
            Ok((202, _)) => accepted += 1,
            Ok((status, body)) => {
                errors += 1;
                first_error.get_or_insert_with(|| {
                    format!(
                        "{status} {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )
                });
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    // The first attempts (all failing) go on after the last POST: watch them too, and let them
    // finish (up to 30 s) so that the restart finds every delivery waiting for its retry.
    let deliveries = accepted * endpoints as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.counters().await?.failure < deliveries as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ingest_rss = sampler.stop().await;
    progress!(
        settings,
        "  {label}: {accepted} events ({deliveries} deliveries) accepted in {ingest_seconds:.1}s, max RSS {:.0} MiB{}",
        mib(ingest_rss.max_kib).unwrap_or(f64::NAN),
        first_error
            .as_deref()
            .map(|e| format!("; {errors} errors, first: {e}"))
            .unwrap_or_default()
    );
    let result = MemoryResult {
        label: label.into(),
        endpoints,
        events,
        event_bytes: bytes,
        deliveries,
        accepted,
        errors,
        first_error,
        ingest_seconds,
        ingest_rss,
        ..MemoryResult::default()
    };
    stop_and_restart(settings, engine, result).await
}

/// SIGTERM, a restart on the same data directory, the RSS until 5 s after it is healthy, stop.
async fn stop_and_restart(
    settings: &Settings,
    engine: EngineProc,
    mut result: MemoryResult,
) -> anyhow::Result<MemoryResult> {
    if result.accepted == 0 {
        bail!(
            "no event was accepted: {}",
            result.first_error.as_deref().unwrap_or("?")
        );
    }
    result.attempted_before_stop = engine.counters().await.map(|c| c.failure).unwrap_or(0.0);
    let stopping = Instant::now();
    let (first, dir) = engine.stop_keeping_dir().await?;
    progress!(
        settings,
        "  {}: stopped in {:.1}s ({} first attempts made); restarting on the same data directory",
        result.label,
        stopping.elapsed().as_secs_f64(),
        result.attempted_before_stop
    );
    result.first = first;
    let label = format!("{}-restart", result.label);
    let engine = EngineProc::restart(settings, options(&label), dir).await?;
    result.restart_healthy_seconds = engine.healthy_after_spawn.as_secs_f64();
    let sampler = RssSampler::start(engine.pid, Duration::from_millis(100));
    tokio::time::sleep(WATCH_AFTER_RESTART).await;
    result.restart_rss = sampler.stop().await;
    result.restart_peak_rss_kib = proc_stats(engine.pid, settings.clock_ticks).peak_rss_kib;
    result.attempted_after_restart = engine.counters().await.map(|c| c.failure).unwrap_or(0.0);
    let (restarted, pending) = engine.stop(true, settings.keep).await?;
    result.restarted = restarted;
    result.pending_after_stop = pending;
    progress!(
        settings,
        "  {}: healthy {:.2}s after spawn; peak RSS {:.0} MiB (VmRSS max {:.0}, last {:.0}); {} attempts in {}s; {} pending after stop",
        label,
        result.restart_healthy_seconds,
        mib(result.restart_peak_rss_kib).unwrap_or(f64::NAN),
        mib(result.restart_rss.max_kib).unwrap_or(f64::NAN),
        mib(result.restart_rss.last_kib).unwrap_or(f64::NAN),
        result.attempted_after_restart,
        WATCH_AFTER_RESTART.as_secs(),
        result
            .pending_after_stop
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into())
    );
    Ok(result)
}
