//! End-to-end benchmark of the engine through its HTTP API: `cargo bench --bench engine`.
//!
//! The engine runs as a CHILD PROCESS (`wasmhook serve`, the bench-profile binary), one fresh
//! process and data directory per run, so that its peak RSS (`VmHWM`) and CPU time are its own.
//! This process runs the load generators and a fast local receiver ("sink": hyper 1, HTTP/1.1,
//! answers 204 and counts). Everything is on 127.0.0.1.
//!
//! Sections (progress on stderr, ONE table on stdout, the same as JSON in
//! `target/bench/engine.json`):
//!
//! 1. baseline: a bare hyper client posting the same envelope to the sink, same concurrency as the
//!    engine's endpoint;
//! 2. engine end to end: N events through `POST /events` (64 producers, keep-alive), delivered to
//!    the sink; timed from the first POST until the sink has N requests, `/metrics` counts N
//!    successes and a `/healthz` (which flushes the store's writer) has returned;
//! 3. the same with an `api-key` step, a `jws` (ES256) step, and `jws` + `jwe`;
//! 4. ingest alone (no endpoint): an open loop at 5,000/s on a fresh engine (after `sync`, so the
//!    earlier runs' writeback does not stall it), then a closed loop at high concurrency;
//! 5. hot swap of a directory plugin under load: 100 atomic replacements (v1/v2 alternating);
//! 6. peak RSS of the engine per run, and throughput with 1, 10 and 100 endpoints;
//! 7. run 2 on PostgreSQL (a throwaway server the bench starts, fsync on) with 1, 2 and 3 engine
//!    nodes, events posted round robin to the nodes;
//! 8. memory with the receivers down: 1,000,000 pending deliveries on SQLite (RSS while
//!    ingesting, then a restart: time to healthy, RSS), and a fan-out of 20 events of 500 KiB to
//!    200 endpoints;
//!
//! - console: page loads of the web console's message log for a tenant with 10,000 events;
//! - soak: ingest at 5,000/s while delivering, without and with the retention pruner (ingest
//!   p99 with over without; the database's size reaches a plateau with it);
//!
//! - micro (last: its fsync storm must not disturb the end-to-end runs): the store's group commit
//!   (`max_batch` 1 and 1024, synchronous=FULL, concurrent `ingest`) and the per-call cost of a
//!   Wasm step (`apply` of `api-key`, fresh and warm instance) against a native function doing
//!   the same header insertion.
//!
//! Environment: `WASMHOOK_BENCH_EVENTS` (default 50000), `WASMHOOK_BENCH_QUICK=1` (about 10x
//! smaller), `WASMHOOK_BENCH_ONLY=micro,baseline,e2e,steps,ingest,swap,scale,cluster,memory,console,soak` (a
//! subset, for profiling), `WASMHOOK_BENCH_STEPS=api-key,jws,jws+jwe` (a subset of run 3),
//! `WASMHOOK_BENCH_KEEP=1` (keep the engines' data directories),
//! `WASMHOOK_BENCH_ENGINE_WRAPPER="perf record -g -o f --"` (run the engine under a profiler).

#[macro_use]
mod settings;
mod api;
mod engine_proc;
mod pg;
mod produce;
mod report;
mod runs;
mod sink;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::report::{Report, mib};
use crate::runs::e2e::E2eResult;
use crate::settings::Settings;
use crate::sink::{Sink, start_sink};

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// Concurrency of the endpoint, of the baseline client and of the producers.
const CONCURRENCY: usize = 64;
/// Producers of the closed-loop ingest-only run.
const INGEST_PRODUCERS: usize = 128;
/// Open-loop ingest rate.
const OPEN_LOOP_RATE: f64 = 5000.0;
const EVENT_TYPE: &str = "bench.event";
/// Events per `POST /events/batch` in run 2b.
const BATCH: u64 = 100;

/// What the sections share: the settings, the sink, the report and the results later sections
/// compare with.
struct Bench {
    settings: Settings,
    sink: Arc<Sink>,
    report: Report,
    /// Run 1's requests/s.
    baseline: Option<f64>,
    /// The single-node end-to-end runs by name (`no-step`, `api-key`, `10-endpoints`, …).
    e2e: BTreeMap<String, E2eResult>,
    /// Peak RSS of each run's engine, for section 6.
    rss_rows: Vec<(String, Option<u64>)>,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    std::fs::create_dir_all(&settings.out_dir)?;
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    progress!(
        settings,
        "wasmhook engine benchmark: {} events per run{}; engine binary {}; load average {loadavg}",
        settings.events,
        if settings.quick { " (QUICK)" } else { "" },
        env!("CARGO_BIN_EXE_wasmhook")
    );
    let sink = start_sink().await?;
    let mut bench = Bench {
        settings,
        sink,
        report: Report::default(),
        baseline: None,
        e2e: BTreeMap::new(),
        rss_rows: Vec::new(),
    };

    runs::baseline::section(&mut bench).await?;
    runs::e2e::section(&mut bench).await?;
    runs::steps::section(&mut bench).await?;
    runs::ingest::section(&mut bench).await?;
    runs::swap::section(&mut bench).await?;
    runs::scale::section(&mut bench).await?;
    runs::cluster::section(&mut bench).await?;
    runs::memory::section(&mut bench).await?;
    runs::console::section(&mut bench).await?;
    runs::soak::section(&mut bench).await?;
    // Last: its fsync storm must not disturb the end-to-end runs.
    runs::micro::section(&mut bench).await?;

    let Bench {
        settings,
        mut report,
        e2e,
        rss_rows,
        ..
    } = bench;
    for (label, kib) in &rss_rows {
        report.add(
            &format!("rss.{label}"),
            "6. peak RSS",
            &format!("engine VmHWM: {label}"),
            mib(*kib),
            "MiB",
        );
    }
    if let Some(max) = rss_rows.iter().filter_map(|(_, k)| *k).max() {
        report.add(
            "rss.max",
            "6. peak RSS",
            "engine VmHWM: max over runs",
            mib(Some(max)),
            "MiB",
        );
    }
    report.details.insert("e2e".into(), json!(e2e));
    report::finish(&settings, &report, &loadavg)
}
