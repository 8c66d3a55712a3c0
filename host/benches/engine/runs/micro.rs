//! The micro-benchmarks: the store's group commit (`max_batch` 1 and 1024, synchronous=FULL,
//! concurrent `ingest`) and the per-call cost of a Wasm step (`apply` of `api-key`, fresh and warm
//! instance) against a native function doing the same header insertion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde_json::{Value, json};

use crate::produce::envelope;
use crate::report::ratio;
use crate::settings::Settings;
use crate::{Bench, EVENT_TYPE};

pub async fn section(bench: &mut Bench) -> anyhow::Result<()> {
    let Bench {
        settings, report, ..
    } = bench;
    let settings = &*settings;
    if settings.wants("micro") {
        let seconds = Duration::from_millis(settings.scaled(3000, 1000));
        progress!(
            settings,
            "micro: store group commit, 256 concurrent ingests, synchronous=FULL, {:.0}s each",
            seconds.as_secs_f64()
        );
        let one = group_commit(1, seconds, 256).await?;
        progress!(
            settings,
            "  max_batch=1: {:.0} events/s ({} commits)",
            one.events_per_second,
            one.commits
        );
        let many = group_commit(1024, seconds, 256).await?;
        progress!(
            settings,
            "  max_batch=1024: {:.0} events/s (mean group {:.1})",
            many.events_per_second,
            many.mean_group
        );
        report
            .add(
                "micro.store.batch1",
                "micro: store",
                "ingest, max_batch=1 (fsync per event)",
                Some(one.events_per_second),
                "events/s",
            )
            .note(format!("{} commits", one.commits));
        let r = ratio(Some(many.events_per_second), Some(one.events_per_second));
        report
            .add(
                "micro.store.batch1024",
                "micro: store",
                "ingest, max_batch=1024 (group commit)",
                Some(many.events_per_second),
                "events/s",
            )
            .ratio(r, "max_batch=1")
            .note(format!("mean group {:.1} writes/commit", many.mean_group));
        report
            .details
            .insert("micro_group_commit".into(), json!([one, many]));

        let calls = settings.scaled(3000, 300);
        progress!(
            settings,
            "micro: plugin step cost, {calls} sequential apply() of api-key, fresh and warm instances"
        );
        let modes = [
            (
                "fresh",
                "fresh instance",
                wasmhook::plugins::InstanceReuse::NEVER,
            ),
            (
                "warm",
                "warm instance",
                wasmhook::plugins::InstanceReuse::default(),
            ),
        ];
        let mut fresh_us = None;
        for (key, what, reuse) in modes {
            match step_cost(settings, calls, reuse).await {
                Ok(cost) => {
                    progress!(
                        settings,
                        "  api-key ({what}): {:.1} µs/call (wasm), {:.2} µs/call native; {:.0} calls/s with 2 callers",
                        cost.wasm_us_per_call,
                        cost.native_us_per_call,
                        cost.wasm_concurrent_calls_per_second
                    );
                    if key == "fresh" {
                        fresh_us = Some(cost.wasm_us_per_call);
                        report.add(
                            "micro.step.native",
                            "micro: step",
                            "native header insertion (parse config + set header)",
                            Some(cost.native_us_per_call),
                            "µs/call",
                        );
                    }
                    let row = report
                        .add(
                            &format!("micro.step.{key}"),
                            "micro: step",
                            &format!("api-key: {what} + apply()"),
                            Some(cost.wasm_us_per_call),
                            "µs/call",
                        )
                        .ratio(
                            ratio(Some(cost.wasm_us_per_call), Some(cost.native_us_per_call)),
                            "native",
                        );
                    if key == "warm" {
                        row.note(format!(
                            "{:.1}x faster than a fresh instance",
                            fresh_us.unwrap_or(f64::NAN) / cost.wasm_us_per_call
                        ));
                    } else {
                        row.note(format!("load {:.0} ms", cost.load_ms));
                    }
                    report.add(
                        &format!("micro.step.{key}2"),
                        "micro: step",
                        &format!("api-key apply(), {what}, 2 concurrent callers"),
                        Some(cost.wasm_concurrent_calls_per_second),
                        "calls/s",
                    );
                    report
                        .details
                        .insert(format!("micro_step_{key}"), json!(cost));
                }
                Err(e) => {
                    progress!(
                        settings,
                        "  plugin step micro-benchmark ({what}) failed: {e:#}"
                    );
                    report
                        .add(
                            &format!("micro.step.{key}"),
                            "micro: step",
                            &format!("api-key: {what} + apply()"),
                            None,
                            "µs/call",
                        )
                        .note(format!("failed: {e}"));
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, serde::Serialize)]
struct GroupCommit {
    max_batch: usize,
    events_per_second: f64,
    commits: u64,
    writes: u64,
    mean_group: f64,
}

async fn group_commit(
    max_batch: usize,
    duration: Duration,
    tasks: usize,
) -> anyhow::Result<GroupCommit> {
    use wasmhook::model::{Tenant, new_id, now_unix};
    use wasmhook::store::{IngestRequest, Lease, NewEvent, OpenOptions, Store, StoreLocation};
    let dir = tempfile::Builder::new()
        .prefix("wasmhook-bench-store-")
        .tempdir()?;
    let store = Store::open(&OpenOptions {
        // A key of its own: nothing the bench stores is sealed.
        sealer: wasmhook::secrets::Sealer::new(wasmhook::secrets::MasterKey::generate().0, vec![]),
        location: StoreLocation::Sqlite(dir.path().join("wasmhook.sqlite3")),
        data_dir: dir.path().to_path_buf(),
        max_batch,
        synchronous: wasmhook::config::Synchronous::Full,
        pool_size: 1,
    })
    .await
    .map_err(|e| anyhow!("{e}"))?;
    store
        .create_tenant(
            Tenant {
                id: "bench".into(),
                name: "bench".into(),
                created_at: now_unix(),
            },
            "00".repeat(32),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let body: Arc<[u8]> = envelope(0).to_vec().into();
    let before = store.write_stats();
    // Nothing is claimed at insert (`claim: 0`): the deliveries stay in the store for any node.
    let lease = Lease {
        owner: "node_bench".into(),
        expires_at_ms: (now_unix() + 60) * 1000,
    };
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, body, lease) = (store.clone(), body.clone(), lease.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let event = NewEvent {
                        id: new_id("msg"),
                        event_type: EVENT_TYPE.into(),
                        created_at: now_unix(),
                        body: body.clone(),
                        endpoint_ids: vec!["ep_bench".into()],
                        held_endpoint_ids: Vec::new(),
                    };
                    store
                        .ingest(IngestRequest {
                            tenant: "bench".into(),
                            events: vec![event],
                            idempotency_key: None,
                            response: json!({}),
                            lease: lease.clone(),
                            claim: 0,
                        })
                        .await
                        .map_err(|e| anyhow!("{e}"))?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    let elapsed = started.elapsed();
    let after = store.write_stats();
    let (commits, writes) = (after.commits - before.commits, after.writes - before.writes);
    Ok(GroupCommit {
        max_batch,
        events_per_second: total as f64 / elapsed.as_secs_f64(),
        commits,
        writes,
        mean_group: if commits > 0 {
            writes as f64 / commits as f64
        } else {
            0.0
        },
    })
}

#[derive(Debug, Default, serde::Serialize)]
struct StepCost {
    calls: u64,
    wasm_us_per_call: f64,
    wasm_concurrent_calls_per_second: f64,
    native_us_per_call: f64,
    load_ms: f64,
}

/// What `api-key` does, natively: parse the config, replace the header.
fn native_api_key(
    config: &str,
    mut request: wasmhook::plugins::HttpRequest,
) -> Result<wasmhook::plugins::HttpRequest, String> {
    let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let key = config
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("key is required")?;
    let header = config
        .get("header")
        .and_then(Value::as_str)
        .unwrap_or("x-api-key");
    if !header
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
    {
        return Err("invalid header".into());
    }
    request
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case(header));
    request.headers.push((header.to_string(), key.to_string()));
    Ok(request)
}

/// Per-call cost of `api-key`'s `apply` with the given instance reuse (NEVER = a fresh instance
/// per call; the default = warm instances of the same endpoint), and the native equivalent.
async fn step_cost(
    settings: &Settings,
    calls: u64,
    reuse: wasmhook::plugins::InstanceReuse,
) -> anyhow::Result<StepCost> {
    use wasmhook::plugins::{
        CallContext, HostServices, HttpRequest, NoHostServices, PluginRuntime, RuntimeLimits,
    };
    let bytes = wasmhook::guests::BUILT_IN_PLUGINS
        .iter()
        .find(|(name, _)| *name == "api-key")
        .map(|(_, b)| *b)
        .ok_or_else(|| anyhow!("no built-in api-key plugin"))?;
    std::fs::create_dir_all(&settings.cache_dir)?;
    let runtime = PluginRuntime::new(RuntimeLimits {
        reuse,
        ..RuntimeLimits::default()
    })
    .map_err(|e| anyhow!("plugin runtime: {e}"))?;
    let load_started = Instant::now();
    let plugin = runtime
        .load("api-key", bytes, Some(&settings.cache_dir))
        .await
        .map_err(|e| anyhow!("loading api-key: {e}"))?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1000.0;
    let host: Arc<dyn HostServices> = Arc::new(NoHostServices);
    let ctx = CallContext {
        tenant: "bench".into(),
        endpoint: "ep_bench".into(),
        event_id: "msg_01jbenchbenchbenchbenchbench".into(),
        event_type: EVENT_TYPE.into(),
        attempt: 1,
        timestamp: 1_735_689_600,
    };
    let config = r#"{"key":"k_bench_secret_0123456789","header":"x-api-key"}"#;
    let request = HttpRequest {
        method: "POST".into(),
        url: "http://127.0.0.1:9/hook".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), "wasmhook/0.1.0".into()),
            (
                "webhook-id".into(),
                "msg_01jbenchbenchbenchbenchbench".into(),
            ),
            ("webhook-timestamp".into(), "1735689600".into()),
        ],
        body: envelope(0).to_vec(),
    };
    // Correctness, then warm-up.
    let out = plugin
        .apply(&ctx, config, request.clone(), host.clone())
        .await
        .map_err(|e| anyhow!("apply: {e}"))?;
    if out.header("x-api-key") != Some("k_bench_secret_0123456789") {
        bail!("api-key did not add its header: {:?}", out.headers);
    }
    let native = native_api_key(config, request.clone()).map_err(|e| anyhow!(e))?;
    if native.header("x-api-key") != out.header("x-api-key")
        || native.headers.len() != out.headers.len()
    {
        bail!("the native baseline does not do what api-key does");
    }
    for _ in 0..(calls / 10).max(20) {
        plugin
            .apply(&ctx, config, request.clone(), host.clone())
            .await
            .map_err(|e| anyhow!("apply: {e}"))?;
    }
    let started = Instant::now();
    for _ in 0..calls {
        let out = plugin
            .apply(&ctx, config, request.clone(), host.clone())
            .await
            .map_err(|e| anyhow!("apply: {e}"))?;
        std::hint::black_box(out);
    }
    let wasm_us = started.elapsed().as_secs_f64() * 1e6 / calls as f64;

    // Two concurrent callers (the machine has 2 cores): calls/s.
    let started = Instant::now();
    let per_task = calls / 2;
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (plugin, host, ctx, request) =
                (plugin.clone(), host.clone(), ctx.clone(), request.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let out = plugin
                        .apply(&ctx, config, request.clone(), host.clone())
                        .await
                        .map_err(|e| anyhow!("apply: {e}"))?;
                    std::hint::black_box(out);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    let concurrent = (per_task * 2) as f64 / started.elapsed().as_secs_f64();

    let native_calls = calls.max(1000) * 100;
    let started = Instant::now();
    for _ in 0..native_calls {
        let out = native_api_key(std::hint::black_box(config), request.clone())
            .map_err(|e| anyhow!(e))?;
        std::hint::black_box(out);
    }
    let native_us = started.elapsed().as_secs_f64() * 1e6 / native_calls as f64;
    Ok(StepCost {
        calls,
        wasm_us_per_call: wasm_us,
        wasm_concurrent_calls_per_second: concurrent,
        native_us_per_call: native_us,
        load_ms,
    })
}
