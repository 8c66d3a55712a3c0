//! Section 9, soak with retention: events ingested at 5,000/s (open loop) and delivered to the
//! sink continuously, on fresh engines: without the pruner, and with a short retention
//! (`delivered = "2s"`) and the periodic jobs every second. What is compared: ingest p99 with the
//! pruner over without it (target ≤ 1.2×), and the database's size over a run (with the pruner
//! it reaches a plateau: the size at the end over the size at the middle stays near 1; without
//! it the database grows with every event).
//!
//! One run's p99 at 5,000/s on two shared cores swings by 100× from run to run (a stall of a few
//! hundred milliseconds anywhere on the machine is the whole 1 %), so the two configurations are
//! run in interleaved rounds (without/with, then with/without, …: drift over time hits both
//! alike; five by default, `WASMHOOK_BENCH_SOAK_ROUNDS`) and compared by their median p99.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::engine_proc::{EngineOptions, EngineProc, ProcStats};
use crate::pg::{Backlog, Postgres};
use crate::report::{Report, mib, ms, percentile, ratio};
use crate::runs::ingest::{OpenLoop, open_loop};
use crate::settings::Settings;
use crate::{Bench, OPEN_LOOP_RATE};

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings,
        report,
        sink,
        ..
    } = bench;
    let settings = &*settings;
    // `soak` runs both backends; `soak.sqlite` or `soak.pg` one of them.
    let on_sqlite = settings.wants("soak") || settings.wants("soak.sqlite");
    let on_postgres = settings.wants("soak") || settings.wants("soak.pg");
    if !on_sqlite && !on_postgres {
        return Ok(());
    }
    // Five rounds by default: with three, one configuration's median still moved the ratio
    // between runs by more than any change measured (1.08–1.57× for one engine).
    // `WASMHOOK_BENCH_SOAK_ROUNDS` sets another number.
    let rounds = std::env::var("WASMHOOK_BENCH_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(settings.scaled(5, 1) as usize);
    progress!(
        settings,
        "9. soak: ingest and deliver at 5,000/s, without and with the pruner, {rounds} interleaved round(s)"
    );
    let url = sink.url();
    let mut details = json!({});
    if on_sqlite {
        let (without, with) = run_rounds(settings, &url, rounds, None).await?;
        add_rows(report, "soak", "9. soak", &without, &with);
        details = json!({"without": without, "with": with});
    }
    if !on_postgres {
        report.details.insert("soak".into(), details);
        return Ok(());
    }

    // The same on PostgreSQL: a throwaway server, a fresh database per run.
    let log = settings.out_dir.join("logs").join("postgres-soak.log");
    std::fs::create_dir_all(settings.out_dir.join("logs"))?;
    match Postgres::start(&log).await {
        Ok(pg) => {
            progress!(settings, "9. soak on PostgreSQL {}", pg.version);
            let (without, with) = run_rounds(settings, &url, rounds, Some(&pg)).await?;
            add_rows(report, "soak.pg", "9. soak (PostgreSQL)", &without, &with);
            details["postgres"] = json!({"without": without, "with": with});
        }
        Err(e) => {
            progress!(settings, "  PostgreSQL could not start: {e:#}");
            report
                .add(
                    "soak.pg.p99.with",
                    "9. soak (PostgreSQL)",
                    "ingest p99 at 5,000/s with the pruner",
                    None,
                    "ms",
                )
                .note(format!("no PostgreSQL: {e}"));
        }
    }
    report.details.insert("soak".into(), details);
    Ok(())
}

/// `rounds` interleaved pairs of runs (without, with the pruner), on SQLite or on `pg`.
async fn run_rounds(
    settings: &Settings,
    sink_url: &str,
    rounds: usize,
    pg: Option<&Postgres>,
) -> anyhow::Result<(Vec<SoakResult>, Vec<SoakResult>)> {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which configuration goes first, so that neither always follows the other.
        for pruner in [round % 2 == 1, round % 2 == 0] {
            let store = match pg {
                Some(pg) => {
                    let name = format!("soak_{round}_{}", u8::from(pruner));
                    let url = pg.create_database(&name).await?;
                    Some((pg, name, url))
                }
                None => None,
            };
            let result = run_soak(settings, sink_url, pruner, store).await?;
            if pruner {
                with.push(result);
            } else {
                without.push(result);
            }
        }
    }
    Ok((without, with))
}

/// The rows of one backend's rounds: both medians, their ratio, and the plateau.
fn add_rows(
    report: &mut Report,
    id: &str,
    section: &str,
    without: &[SoakResult],
    with: &[SoakResult],
) {
    let p99s = |runs: &[SoakResult]| runs.iter().filter_map(|r| r.p99_ms).collect::<Vec<f64>>();
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let (p99_without, p99_with) = (p99s(without), p99s(with));
    let (median_without, median_with) = (median(&p99_without), median(&p99_with));
    let errors = |runs: &[SoakResult]| runs.iter().map(|r| r.errors).sum::<u64>();
    let requests = |runs: &[SoakResult]| runs.iter().map(|r| r.requests).sum::<u64>();
    report
        .add(
            &format!("{id}.p99.without"),
            section,
            "ingest p99 at 5,000/s, delivering, no pruner (median of the rounds)",
            median_without,
            "ms",
        )
        .note(format!(
            "rounds: {} ms; {} requests, {} errors",
            list(&p99_without),
            requests(without),
            errors(without)
        ));
    let slower = ratio(median_with, median_without);
    report
        .add(
            &format!("{id}.p99.with"),
            section,
            "ingest p99 at 5,000/s, delivering, pruner every 1 s, delivered kept 2 s (median)",
            median_with,
            "ms",
        )
        .ratio(slower, "no pruner")
        .target(
            "≤ 1.2× no pruner",
            slower.map(|r| r <= 1.2 && errors(with) == 0),
        )
        .note(format!(
            "rounds: {} ms; {} requests, {} errors",
            list(&p99_with),
            requests(with),
            errors(with)
        ));
    // The plateau: every run with the pruner ends near its size at the middle.
    let growth = |r: &SoakResult| r.db_end_kib as f64 / r.db_mid_kib.max(1) as f64;
    let worst = with.iter().max_by(|a, b| growth(a).total_cmp(&growth(b)));
    let unpruned = without.iter().max_by_key(|r| r.db_end_kib);
    if let Some(worst) = worst {
        let plateau = growth(worst);
        report
            .add(
                &format!("{id}.db.with"),
                section,
                "database size at the end, with the pruner (the round that grew most)",
                mib(Some(worst.db_end_kib)),
                "MiB",
            )
            .ratio(Some(plateau), "its size at the middle")
            .target("plateau (≤ 1.25× the middle)", Some(plateau <= 1.25))
            .note(match unpruned {
                Some(r) => format!(
                    "without the pruner: {:.1} MiB at the end ({:.2}× its middle)",
                    mib(Some(r.db_end_kib)).unwrap_or(f64::NAN),
                    growth(r)
                ),
                None => String::new(),
            });
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[derive(Debug, Default, serde::Serialize)]
struct SoakResult {
    pruner: bool,
    requests: u64,
    errors: u64,
    achieved_rate: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Database file and WAL, sampled every 500 ms (KiB).
    db_kib: Vec<u64>,
    db_mid_kib: u64,
    db_end_kib: u64,
    /// On PostgreSQL, what the database held at each sample.
    backlog: Vec<Backlog>,
    /// The slowest ingest answer of each second (ms).
    max_ms_by_second: Vec<f64>,
    engine: ProcStats,
}

fn database_kib(data_dir: &Path) -> u64 {
    ["wasmhook.sqlite3", "wasmhook.sqlite3-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.join(f)).ok())
        .map(|m| m.len() / 1024)
        .sum()
}

/// One run on a fresh engine: on SQLite in its data directory, or on PostgreSQL (the server, the
/// database's name and its URL).
async fn run_soak(
    settings: &Settings,
    sink_url: &str,
    pruner: bool,
    store: Option<(&Postgres, String, String)>,
) -> anyhow::Result<SoakResult> {
    let label = match (pruner, store.is_some()) {
        (true, false) => "soak-pruner",
        (false, false) => "soak-no-pruner",
        (true, true) => "soak-pg-pruner",
        (false, true) => "soak-pg-no-pruner",
    };
    let extra_config = if pruner {
        // Settings to try, as TOML lines of `[retention]` (`\n` between them).
        let trying = std::env::var("WASMHOOK_BENCH_SOAK_RETENTION")
            .unwrap_or_default()
            .replace("\\n", "\n");
        format!(
            "[retention]\nenabled = true\ndelivered = \"2s\"\n{trying}\n\n\
         [jobs]\ninterval = \"1s\"\nlease_ttl = \"5s\"\n"
        )
    } else {
        "[retention]\nenabled = false\n".to_string()
    };
    let engine = EngineProc::start(
        settings,
        EngineOptions {
            extra_config,
            store: store.as_ref().map(|(_, _, url)| url.clone()),
            ..EngineOptions::new(label)
        },
    )
    .await?;
    let token = engine.tenant("bench").await?;
    engine
        .endpoint("bench", &token, json!({"url": sink_url}))
        .await?;
    let _ = std::process::Command::new("sync").status();
    let duration = Duration::from_secs(settings.scaled(20, 10));
    progress!(
        settings,
        "  soak ({}): {:.0}/s for {:.0}s",
        if pruner { "pruner" } else { "no pruner" },
        OPEN_LOOP_RATE,
        duration.as_secs_f64()
    );
    let sampling = AtomicBool::new(true);
    // The database's size every 500 ms while the load runs (same task: `pg` is borrowed).
    // On PostgreSQL also what the database holds (what retention may not delete yet, and
    // what waits for a vacuum), to tell a pruner that fell behind from a delivery backlog.
    let sampler = async {
        let (mut sizes, mut backlog) = (Vec::new(), Vec::new());
        while sampling.load(Ordering::Relaxed) {
            sizes.push(match &store {
                Some((pg, name, _)) => {
                    backlog.extend(pg.backlog(name).await);
                    pg.database_kib(name).await
                }
                None => database_kib(&engine.data_dir),
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (sizes, backlog)
    };
    let load = async {
        let result = open_loop(
            &engine.api,
            "/v1/tenants/bench/events",
            &token,
            OPEN_LOOP_RATE,
            duration,
        )
        .await;
        sampling.store(false, Ordering::Relaxed);
        result
    };
    let ((db_kib, backlog), loaded) = tokio::join!(sampler, load);
    let OpenLoop {
        latencies,
        errors,
        achieved_rate,
        max_ms_by_second,
        ..
    } = loaded;
    let (stats, _) = engine.stop(false, settings.keep).await?;
    let result = SoakResult {
        pruner,
        requests: latencies.len() as u64 + errors,
        errors,
        achieved_rate,
        p50_ms: ms(percentile(&latencies, 50.0)),
        p99_ms: ms(percentile(&latencies, 99.0)),
        max_ms: ms(latencies.last().copied()),
        db_mid_kib: db_kib.get(db_kib.len() / 2).copied().unwrap_or(0),
        db_end_kib: db_kib.last().copied().unwrap_or(0),
        db_kib,
        backlog,
        max_ms_by_second,
        engine: stats,
    };
    let mut slowest: Vec<(usize, f64)> = result
        .max_ms_by_second
        .iter()
        .copied()
        .enumerate()
        .collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    progress!(
        settings,
        "  soak ({label}): slowest seconds (second: max ms): {}",
        slowest
            .iter()
            .take(6)
            .map(|(s, m)| format!("{s}: {m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    progress!(
        settings,
        "  soak ({label}): p99 {:.2} ms, {} errors, database {} KiB at the middle, {} KiB at the end",
        result.p99_ms.unwrap_or(f64::NAN),
        result.errors,
        result.db_mid_kib,
        result.db_end_kib
    );
    if let (Some(middle), Some(end)) = (
        result.backlog.get(result.backlog.len() / 2),
        result.backlog.last(),
    ) {
        progress!(
            settings,
            "  soak ({label}): unfinished deliveries / live events / dead event rows: {} / {} / {} at the middle, {} / {} / {} at the end",
            middle.unfinished_deliveries,
            middle.live_events,
            middle.dead_event_rows,
            end.unfinished_deliveries,
            end.live_events,
            end.dead_event_rows
        );
    }
    Ok(result)
}
