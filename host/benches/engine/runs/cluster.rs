//! Section 7, end to end on PostgreSQL with 1, 2 and 3 engine nodes: each node `wasmhook serve
//! --store postgres://…` with its own data directory and port, one endpoint (the sink), events
//! posted round robin to the nodes (64 producers in all, one event per POST, as run 2). The server
//! is a throwaway PostgreSQL started by the bench ([`crate::pg`]), a fresh database per run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::engine_proc::{
    EngineOptions, EngineProc, ProcStats, count_pending, proc_stats, self_cpu_seconds,
};
use crate::pg::Postgres;
use crate::produce::{ProduceSpec, produce};
use crate::report::{mib, ratio};
use crate::runs::e2e::wait_delivered;
use crate::settings::Settings;
use crate::sink::Sink;
use crate::{Bench, CONCURRENCY, EVENT_TYPE};

/// svix-server on its own PostgreSQL on the same kind of 2-core machine (deliveries/s).
const SVIX_REFERENCE: f64 = 1100.0;

#[derive(Debug, Default, serde::Serialize)]
pub struct ClusterResult {
    nodes: usize,
    database: String,
    postgres_version: String,
    events: u64,
    accepted: u64,
    errors: u64,
    delivered_at_sink: u64,
    /// Requests the sink got beyond the events accepted (a delivery sent twice).
    duplicates: u64,
    success_metric: f64,
    success_per_node: Vec<f64>,
    failures: f64,
    dead: f64,
    ingest_seconds: f64,
    seconds: f64,
    deliveries_per_second: f64,
    timed_out: bool,
    startup_seconds: Vec<f64>,
    engines: Vec<ProcStats>,
    engine_cpu_us_per_delivery: Option<f64>,
    postgres_cpu_us_per_delivery: Option<f64>,
    bench_cpu_us_per_delivery: Option<f64>,
    pending_after_stop: Option<u64>,
    first_error: Option<String>,
}

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings,
        sink,
        report,
        e2e,
        rss_rows,
        baseline,
        ..
    } = bench;
    let (settings, sink) = (&*settings, &*sink);
    if !settings.wants("cluster") {
        return Ok(());
    }
    let n = settings.events;
    let run2 = e2e.get("no-step").map(|r| r.deliveries_per_second);
    progress!(
        settings,
        "7. PostgreSQL: starting a throwaway server (fsync on, shared_buffers 256MB)"
    );
    let log = settings.out_dir.join("logs").join("postgres.log");
    std::fs::create_dir_all(settings.out_dir.join("logs"))?;
    let pg = match Postgres::start(&log).await {
        Ok(pg) => pg,
        Err(e) => {
            progress!(settings, "  PostgreSQL could not start: {e:#}");
            report
                .add(
                    "cluster.pg.1",
                    "7. PostgreSQL",
                    "1 node, 1 endpoint, no step",
                    None,
                    "deliv/s",
                )
                .note(format!("no PostgreSQL: {e}"));
            return Ok(());
        }
    };
    progress!(
        settings,
        "  PostgreSQL {} on 127.0.0.1:{}",
        pg.version,
        pg.port
    );
    let mut results = Vec::new();
    let mut one_node = None;
    for nodes in [1usize, 2, 3] {
        progress!(
            settings,
            "7. PostgreSQL, {nodes} node(s): {n} events round robin, 1 endpoint, no step"
        );
        let outcome = match pg.create_database(&format!("bench_{nodes}n")).await {
            Ok(url) => {
                let outcome = run_cluster(settings, sink, &pg, &url, nodes, n).await;
                for line in pg
                    .top_statements(&format!("bench_{nodes}n"), 12)
                    .await
                    .unwrap_or_default()
                {
                    progress!(settings, "    {line}");
                }
                outcome
            }
            Err(e) => Err(e),
        };
        let id = format!("cluster.pg.{nodes}");
        let measurement = format!(
            "{nodes} node{}, 1 endpoint, no step, round robin",
            if nodes == 1 { "" } else { "s" }
        );
        match outcome {
            Ok(r) => {
                let x = ratio(Some(r.deliveries_per_second), *baseline);
                let mut notes = vec![
                    format!(
                        "{:.2}x SQLite run 2",
                        ratio(Some(r.deliveries_per_second), run2).unwrap_or(f64::NAN)
                    ),
                    format!(
                        "{:.1}x svix-server ref ~1,100/s",
                        r.deliveries_per_second / SVIX_REFERENCE
                    ),
                ];
                if nodes == 1 {
                    one_node = Some(r.deliveries_per_second);
                } else if let Some(one) = one_node {
                    notes.push(format!("{:.2}x 1 node", r.deliveries_per_second / one));
                }
                notes.push(cluster_note(&r));
                report
                    .add(
                        &id,
                        "7. PostgreSQL",
                        &measurement,
                        Some(r.deliveries_per_second),
                        "deliv/s",
                    )
                    .ratio(x, "baseline")
                    .note(notes.join("; "));
                rss_rows.push((
                    format!("7. PostgreSQL {nodes} node(s), max per node"),
                    r.engines.iter().filter_map(|s| s.peak_rss_kib).max(),
                ));
                results.push(json!(r));
            }
            Err(e) => {
                progress!(settings, "  PostgreSQL, {nodes} node(s) failed: {e:#}");
                report
                    .add(&id, "7. PostgreSQL", &measurement, None, "deliv/s")
                    .note(format!("failed: {e}"));
                results.push(json!({"nodes": nodes, "error": format!("{e:#}")}));
            }
        }
    }
    drop(pg);
    report.details.insert("cluster".into(), json!(results));
    Ok(())
}

fn cluster_note(r: &ClusterResult) -> String {
    let mut parts = vec![format!("{} in {:.1}s", r.delivered_at_sink, r.seconds)];
    if r.nodes > 1 {
        let per: Vec<String> = r
            .success_per_node
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect();
        parts.push(format!("per node {}", per.join("/")));
    }
    if let Some(cpu) = r.engine_cpu_us_per_delivery {
        parts.push(format!("engines CPU {cpu:.0} µs/deliv"));
    }
    if let Some(cpu) = r.postgres_cpu_us_per_delivery {
        parts.push(format!("postgres CPU {cpu:.0} µs/deliv"));
    }
    if r.duplicates > 0 {
        parts.push(format!("{} duplicates", r.duplicates));
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
    let panics: u64 = r.engines.iter().map(|s| s.panics).sum();
    if panics > 0 {
        parts.push(format!("engines panicked {panics}x"));
    }
    if r.timed_out {
        parts.push("TIMED OUT".into());
    }
    parts.join(", ")
}

async fn run_cluster(
    settings: &Settings,
    sink: &Arc<Sink>,
    pg: &Postgres,
    url: &str,
    nodes: usize,
    events: u64,
) -> anyhow::Result<ClusterResult> {
    // One at a time: the first creates the schema.
    let mut engines = Vec::new();
    for k in 0..nodes {
        let engine = EngineProc::start(
            settings,
            EngineOptions {
                store: Some(url.into()),
                ..EngineOptions::new(format!("pg-{nodes}n-node{}", k + 1))
            },
        )
        .await?;
        engines.push(engine);
    }
    let first = &engines[0];
    let token = first.tenant("bench").await?;
    let endpoint = first
        .endpoint(
            "bench",
            &token,
            json!({"url": sink.url(), "event_types": [EVENT_TYPE], "steps": [], "max_concurrency": CONCURRENCY}),
        )
        .await?;
    // Every node must know the tenant and the endpoint before it is sent events.
    let deadline = Instant::now() + Duration::from_secs(30);
    for engine in &engines {
        let path = format!("/v1/tenants/bench/endpoints/{endpoint}");
        loop {
            if let Ok((200, _)) = engine.api.call("GET", &path, Some(&token), None).await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not see the endpoint created on {} within 30 s",
                    engine.label,
                    first.label
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    progress!(
        settings,
        "  {nodes} node(s) up in {}s; posting {events} events",
        engines
            .iter()
            .map(|e| format!("{:.2}", e.startup.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("/")
    );
    let refs: Vec<&EngineProc> = engines.iter().collect();
    let cpu = |engines: &[&EngineProc]| -> f64 {
        engines
            .iter()
            .filter_map(|e| proc_stats(e.pid, settings.clock_ticks).cpu_seconds)
            .sum()
    };
    let base = sink.count();
    let (cpu_before, pg_before, self_before) = (
        cpu(&refs),
        pg.cpu_seconds(settings.clock_ticks),
        self_cpu_seconds(settings.clock_ticks),
    );
    let started = Instant::now();
    let produced = produce(ProduceSpec {
        apis: engines.iter().map(|e| e.api.clone()).collect(),
        limit: events,
        ..ProduceSpec::new(&first.api, "bench", &token, vec![EVENT_TYPE.into()])
    })
    .await;
    progress!(
        settings,
        "  {nodes} node(s): {} accepted in {:.2}s ({:.0}/s), {} delivered so far",
        produced.accepted,
        produced.elapsed.as_secs_f64(),
        produced.accepted as f64 / produced.elapsed.as_secs_f64(),
        sink.count() - base
    );
    let (timed_out, counters) = wait_delivered(
        &refs,
        sink,
        base,
        produced.accepted,
        started + settings.run_deadline(),
    )
    .await?;
    let elapsed = started.elapsed();
    let delivered = sink.count() - base;
    let (cpu_after, pg_after, self_after) = (
        cpu(&refs),
        pg.cpu_seconds(settings.clock_ticks),
        self_cpu_seconds(settings.clock_ticks),
    );
    let mut success_per_node = Vec::new();
    for engine in &refs {
        success_per_node.push(engine.counters().await.map(|c| c.success).unwrap_or(0.0));
    }
    let startup_seconds = engines.iter().map(|e| e.startup.as_secs_f64()).collect();
    drop(refs);
    let mut stats = Vec::new();
    for engine in engines {
        let (s, _) = engine.stop(false, settings.keep).await?;
        stats.push(s);
    }
    let pending = if timed_out {
        None
    } else {
        Some(count_pending(Some(url), &std::env::temp_dir()).await?)
    };
    let total_at_sink = sink.count() - base;
    let per = |a: f64, b: f64| (delivered > 0).then(|| (b - a) * 1e6 / delivered as f64);
    let result = ClusterResult {
        nodes,
        database: wasmhook::store::redact_url(url),
        postgres_version: pg.version.clone(),
        events,
        accepted: produced.accepted,
        errors: produced.errors,
        delivered_at_sink: delivered,
        duplicates: total_at_sink.saturating_sub(produced.accepted),
        success_metric: counters.success,
        success_per_node,
        failures: counters.failure,
        dead: counters.dead,
        ingest_seconds: produced.elapsed.as_secs_f64(),
        seconds: elapsed.as_secs_f64(),
        deliveries_per_second: delivered.min(produced.accepted) as f64 / elapsed.as_secs_f64(),
        timed_out,
        startup_seconds,
        engines: stats,
        engine_cpu_us_per_delivery: per(cpu_before, cpu_after),
        postgres_cpu_us_per_delivery: per(pg_before, pg_after),
        bench_cpu_us_per_delivery: per(self_before, self_after),
        pending_after_stop: pending,
        first_error: produced.first_error,
    };
    progress!(
        settings,
        "  {nodes} node(s): {:.0} deliveries/s ({} in {:.2}s){}; peak RSS per node {} MiB; CPU µs/delivery: engines {:.1}, postgres {:.1}, bench {:.1}",
        result.deliveries_per_second,
        delivered,
        result.seconds,
        if timed_out { " TIMED OUT" } else { "" },
        result
            .engines
            .iter()
            .map(|s| mib(s.peak_rss_kib)
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "?".into()))
            .collect::<Vec<_>>()
            .join("/"),
        result.engine_cpu_us_per_delivery.unwrap_or(f64::NAN),
        result.postgres_cpu_us_per_delivery.unwrap_or(f64::NAN),
        result.bench_cpu_us_per_delivery.unwrap_or(f64::NAN),
    );
    if let Some(e) = &result.first_error {
        progress!(
            settings,
            "  {nodes} node(s): {} producer errors, first: {e}",
            result.errors
        );
    }
    Ok(result)
}
