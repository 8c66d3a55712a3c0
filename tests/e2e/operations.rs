//! Running for months: endpoint health, auto-disable with held deliveries, manual disable and
//! enable, retention (and `prune --dry-run`), the periodic jobs on one node at a time, and the
//! operational webhooks (system events), with test-set durations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Receiver, Reply, StoreBackend, TestEngine, postgres};

/// The system events a receiver got, as `(type, data)`, in arrival order.
fn system_events(receiver: &Receiver) -> Vec<(String, Value)> {
    receiver
        .received()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["type"].as_str().unwrap_or("").to_string(),
                body["data"].clone(),
            )
        })
        .collect()
}

/// Waits until `receiver` got a system event of `event_type`; returns its `data`.
async fn wait_for_system_event(receiver: &Receiver, event_type: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some((_, data)) = system_events(receiver)
            .into_iter()
            .find(|(t, _)| t == event_type)
        {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "no `{event_type}` within {within:?}; got {:?}",
            system_events(receiver)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A receiver answering 200 while the flag is up, `down` otherwise.
async fn switchable_receiver(up: bool, down: u16) -> (Arc<AtomicBool>, Receiver) {
    let flag = Arc::new(AtomicBool::new(up));
    let judge = flag.clone();
    let receiver = Receiver::judging(move |_| {
        if judge.load(Ordering::SeqCst) {
            Reply::Status(200, vec![])
        } else {
            Reply::Status(down, vec![])
        }
    })
    .await;
    (flag, receiver)
}

/// Creates an endpoint receiving only the tenant's system events.
async fn system_endpoint(engine: &TestEngine, tenant: &str, receiver: &Receiver) -> String {
    engine
        .endpoint(
            tenant,
            json!({"url": receiver.url(), "event_types": ["no.such.type"], "system_events": true}),
        )
        .await
}

async fn endpoint_view(engine: &TestEngine, tenant: &str, endpoint: &str) -> Value {
    let (status, body) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/endpoints/{endpoint}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the endpoint until `check` holds for its view.
async fn wait_for_endpoint(
    engine: &TestEngine,
    tenant: &str,
    endpoint: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let view = endpoint_view(engine, tenant, endpoint).await;
        if check(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "endpoint never got there: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delivery_statuses(engine: &TestEngine, tenant: &str, event: &str) -> Vec<String> {
    let (status, body) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/events/{event}/deliveries"))
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn health_shows_the_last_success_the_failure_streak_and_the_rates() {
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let (up, receiver) = switchable_receiver(true, 500).await;
    let endpoint = engine
        .endpoint(&tenant, json!({"url": receiver.url()}))
        .await;
    let view = endpoint_view(&engine, &tenant, &endpoint).await;
    assert!(view.get("health").is_none(), "no attempts yet: {view}");

    for n in 0..2 {
        let event = engine.event(&tenant, "invoice.paid", json!({"n": n})).await;
        engine
            .settled(&tenant, &event, Duration::from_secs(10))
            .await;
    }
    up.store(false, Ordering::SeqCst);
    // One attempt and two retries, all failing.
    let event = engine.event(&tenant, "invoice.paid", json!({"n": 2})).await;
    let deliveries = engine
        .settled(&tenant, &event, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries[0]["status"], "dead");

    // Health reaches the store within a second of the attempts.
    let view = wait_for_endpoint(&engine, &tenant, &endpoint, Duration::from_secs(5), |v| {
        v["health"]["attempts_last_hour"] == 5
    })
    .await;
    let health = &view["health"];
    assert_eq!(health["consecutive_failures"], 3, "{health}");
    assert!(
        health["last_success_at_ms"].as_i64().unwrap() > 0,
        "{health}"
    );
    assert!(
        health["last_failure_at_ms"].as_i64().unwrap()
            >= health["last_success_at_ms"].as_i64().unwrap(),
        "{health}"
    );
    assert!(health["failing_since_ms"].as_i64().is_some(), "{health}");
    assert_eq!(health["success_rate_last_hour"], 0.4, "{health}");
    assert_eq!(health["attempts_last_day"], 5, "{health}");
    assert_eq!(health["success_rate_last_day"], 0.4, "{health}");
    // The list shows it too.
    let (_, list) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/endpoints"))
        .await;
    assert_eq!(list[0]["health"], *health, "{list}");
}

#[tokio::test]
async fn a_failing_endpoint_is_disabled_its_deliveries_held_and_resumed_in_order_when_enabled() {
    let engine = TestEngine::start_with(|c| {
        c.delivery.disable_after = Duration::from_secs(2);
        c.delivery.disable_min_attempts = 3;
        c.jobs.interval = Duration::from_millis(200);
        c.jobs.lease_ttl = Duration::from_secs(1);
        c.operations.dead_summary_interval = Duration::from_millis(300);
    })
    .await;
    let (tenant, _) = engine.tenant("acme").await;
    let (up, receiver) = switchable_receiver(false, 503).await;
    let system = Receiver::ok().await;
    system_endpoint(&engine, &tenant, &system).await;
    let endpoint = engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "event_types": ["invoice.*"], "max_concurrency": 1}),
        )
        .await;

    // Failing continuously: an event every 200 ms until the job disables the endpoint.
    let start = Instant::now();
    loop {
        engine.event(&tenant, "invoice.paid", json!({})).await;
        let view = endpoint_view(&engine, &tenant, &endpoint).await;
        if view["enabled"] == false {
            assert!(
                start.elapsed() >= Duration::from_secs(2),
                "disabled after {:?}, before disable_after",
                start.elapsed()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never disabled: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let disabled =
        wait_for_system_event(&system, "endpoint.disabled", Duration::from_secs(5)).await;
    assert_eq!(disabled["endpoint_id"], endpoint.as_str(), "{disabled}");
    assert_eq!(disabled["reason"], "failing", "{disabled}");
    assert!(
        disabled["consecutive_failures"].as_u64().unwrap() >= 3,
        "{disabled}"
    );
    // The deaths before that were summarised, per endpoint.
    let dead = wait_for_system_event(&system, "delivery.dead", Duration::from_secs(5)).await;
    assert_eq!(dead["endpoint_id"], endpoint.as_str(), "{dead}");
    assert!(dead["count"].as_u64().unwrap() >= 1, "{dead}");
    assert!(
        dead["last_error"].as_str().unwrap().contains("503"),
        "{dead}"
    );

    // While disabled: new events are held, not attempted, not lost.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts_before = receiver.received().len();
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(
            engine
                .event(&tenant, "invoice.paid", json!({"held": n}))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.received().len(),
        attempts_before,
        "nothing attempted"
    );
    for event in &held {
        assert_eq!(delivery_statuses(&engine, &tenant, event).await, ["held"]);
    }
    // A held delivery is not replayable (it will be sent).
    let (_, deliveries) = engine
        .api
        .get(&format!(
            "/v1/tenants/{tenant}/events/{}/deliveries",
            held[0]
        ))
        .await;
    let (status, body) = engine
        .api
        .post(
            &format!(
                "/v1/tenants/{tenant}/events/{}/deliveries/{}/retry",
                held[0],
                deliveries[0]["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Enabled again: the held deliveries go out, in order of creation.
    up.store(true, Ordering::SeqCst);
    let (status, view) = engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/endpoints/{endpoint}/enable"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["enabled"], true);
    for event in &held {
        let deliveries = engine
            .settled(&tenant, event, Duration::from_secs(10))
            .await;
        assert_eq!(deliveries[0]["status"], "delivered", "{deliveries:?}");
    }
    let order: Vec<String> = receiver
        .received()
        .iter()
        .skip(attempts_before)
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .filter(|id| held.contains(id))
        .collect();
    assert_eq!(order, held, "held deliveries are sent in order of creation");
    let enabled = wait_for_system_event(&system, "endpoint.enabled", Duration::from_secs(5)).await;
    assert!(
        enabled["resumed_deliveries"].as_u64().unwrap() >= 3,
        "{enabled}"
    );
    // The failure streak is forgotten: the job does not disable it again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let view = endpoint_view(&engine, &tenant, &endpoint).await;
    assert_eq!(view["enabled"], true, "{view}");
    assert_eq!(view["health"]["consecutive_failures"], 0, "{view}");
}

/// A crash between an enable and its resume leaves the endpoint stored enabled with held
/// deliveries; the periodic jobs send them on, in order of creation.
#[tokio::test]
async fn deliveries_left_held_on_an_enabled_endpoint_are_resumed_by_the_jobs() {
    let engine = TestEngine::start_with(|c| c.jobs.interval = Duration::from_millis(200)).await;
    let (tenant, _) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    let endpoint = engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "event_types": ["order.*"], "max_concurrency": 1}),
        )
        .await;
    let (status, view) = engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/endpoints/{endpoint}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(
            engine
                .event(&tenant, "order.created", json!({"n": n}))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for event in &held {
        assert_eq!(delivery_statuses(&engine, &tenant, event).await, ["held"]);
    }
    // The enable's store write without its resume: what a crash between the two leaves.
    let store = &engine.server.engine.store;
    let mut enabled = (*store.directory().endpoint(&endpoint).unwrap()).clone();
    enabled.spec.enabled = true;
    store.put_endpoint(enabled, &[]).await.unwrap();

    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    let ids: Vec<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, held, "resumed in order of creation");
}

#[tokio::test]
async fn manual_disable_holds_and_enable_resumes() {
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let (other, _) = engine.tenant("other").await;
    let receiver = Receiver::ok().await;
    let system = Receiver::ok().await;
    system_endpoint(&engine, &tenant, &system).await;
    let endpoint = engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "event_types": ["order.*"], "max_concurrency": 1}),
        )
        .await;
    let disable = format!("/v1/tenants/{tenant}/endpoints/{endpoint}/disable");
    let (status, body) = engine
        .api
        .post(
            &format!("/v1/tenants/{other}/endpoints/{endpoint}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "another tenant's endpoint: {body}");
    let (status, view) = engine.api.post(&disable, json!({})).await;
    assert_eq!((status, &view["enabled"]), (200, &json!(false)), "{view}");
    let disabled =
        wait_for_system_event(&system, "endpoint.disabled", Duration::from_secs(5)).await;
    assert_eq!(disabled["reason"], "manual");

    let first = engine
        .event(&tenant, "order.created", json!({"n": 1}))
        .await;
    let second = engine
        .event(&tenant, "order.created", json!({"n": 2}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    assert_eq!(delivery_statuses(&engine, &tenant, &first).await, ["held"]);
    // The message log counts them as held.
    let (_, page) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/events?status=held"))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["events"][0]["held"], 1, "{page}");

    // PATCH `enabled: true` is an enable too.
    let (status, view) = engine
        .api
        .patch(
            &format!("/v1/tenants/{tenant}/endpoints/{endpoint}"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let ids: Vec<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    let enabled = wait_for_system_event(&system, "endpoint.enabled", Duration::from_secs(5)).await;
    assert_eq!(enabled["resumed_deliveries"], 2, "{enabled}");
}

#[tokio::test]
async fn retention_prunes_what_is_past_its_window_and_a_dry_run_only_counts() {
    let engine = TestEngine::start_with(|c| {
        c.retention.enabled = false; // pruned by hand below
        c.retention.delivered = Duration::from_secs(1);
        c.retention.dead = Duration::from_secs(3600);
        c.retention.idempotency_keys = Duration::from_secs(1);
        c.retention.batch_size = Some(2); // several batches
    })
    .await;
    let (tenant, _) = engine.tenant("acme").await;
    let ok = Receiver::ok().await;
    let down = Receiver::start(vec![], Reply::Status(500, vec![])).await;
    engine
        .endpoint(&tenant, json!({"url": ok.url(), "event_types": ["ok.*"]}))
        .await;
    engine
        .endpoint(
            &tenant,
            json!({"url": down.url(), "event_types": ["down.*"]}),
        )
        .await;
    let mut delivered = Vec::new();
    for n in 0..4 {
        delivered.push(engine.event(&tenant, "ok.sent", json!({"n": n})).await);
    }
    let (status, body) = engine
        .api
        .raw(
            "POST",
            &format!("/v1/tenants/{tenant}/events"),
            json!({"type": "ok.sent", "data": {}})
                .to_string()
                .into_bytes(),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "once"),
            ],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let keyed = body["id"].as_str().unwrap().to_string();
    delivered.push(keyed);
    let dead = engine.event(&tenant, "down.sent", json!({})).await;
    for event in delivered.iter().chain([&dead]) {
        engine
            .settled(&tenant, event, Duration::from_secs(10))
            .await;
    }
    // Created at least a second before the cutoff (created_at is in whole seconds).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Pending ones are never pruned: one more event to the failing endpoint, still retrying.
    let recent = engine
        .event(&tenant, "ok.sent", json!({"recent": true}))
        .await;
    engine
        .settled(&tenant, &recent, Duration::from_secs(10))
        .await;

    let dry = engine.server.engine.prune(true).await.unwrap();
    assert_eq!(
        (
            dry.events,
            dry.deliveries,
            dry.attempts,
            dry.idempotency_keys
        ),
        (5, 5, 5, 1),
        "{dry:?}"
    );
    assert_eq!(
        engine.count_rows("events").await,
        7,
        "a dry run deletes nothing"
    );

    let done = engine.server.engine.prune(false).await.unwrap();
    assert_eq!(done, dry, "deleted what the dry run counted");
    engine.server.engine.store.flush().await.unwrap();
    assert_eq!(
        engine.count_rows("events").await,
        2,
        "the dead event and the recent one"
    );
    assert_eq!(engine.count_rows("deliveries").await, 2);
    assert_eq!(engine.count_rows("attempts").await, 3 + 1);
    assert_eq!(engine.count_rows("idempotency_keys").await, 0);
    let (status, _) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/events/{}", delivered[0]))
        .await;
    assert_eq!(status, 404, "pruned events are gone from the API");
    let (status, _) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/events/{dead}"))
        .await;
    assert_eq!(status, 200, "the dead event is kept for `retention.dead`");
    if engine.backend == StoreBackend::Postgres {
        // The run vacuumed the message tables: their freed space is reusable now, not at
        // autovacuum's next visit.
        let vacuumed = "pg_stat_user_tables WHERE relname IN ('events', 'deliveries', 'attempts') \
                        AND vacuum_count > 0";
        let deadline = Instant::now() + Duration::from_secs(5);
        while engine.count_rows(vacuumed).await < 3 {
            assert!(
                Instant::now() < deadline,
                "retention did not vacuum the message tables"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Again: nothing left to prune.
    assert_eq!(engine.server.engine.prune(false).await.unwrap().events, 0);
}

#[tokio::test]
async fn a_tenant_override_keeps_its_events_longer() {
    let engine = TestEngine::start_with(|c| {
        c.retention.enabled = false;
        c.retention.delivered = Duration::from_secs(1);
        c.retention.tenants.insert(
            "keeper".into(),
            wasmhook::config::TenantRetention {
                delivered: Some(Duration::from_secs(3600)),
                dead: None,
            },
        );
    })
    .await;
    let receiver = Receiver::ok().await;
    let mut events = Vec::new();
    for id in ["keeper", "plain"] {
        let (tenant, _) = engine.tenant(id).await;
        engine
            .endpoint(&tenant, json!({"url": receiver.url()}))
            .await;
        let event = engine.event(&tenant, "x.y", json!({})).await;
        engine
            .settled(&tenant, &event, Duration::from_secs(10))
            .await;
        events.push((tenant, event));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let counts = engine.server.engine.prune(false).await.unwrap();
    assert_eq!(counts.events, 1, "{counts:?}");
    let (status, _) = engine
        .api
        .get(&format!(
            "/v1/tenants/{}/events/{}",
            events[0].0, events[0].1
        ))
        .await;
    assert_eq!(status, 200, "the keeper's event stays");
    let (status, _) = engine
        .api
        .get(&format!(
            "/v1/tenants/{}/events/{}",
            events[1].0, events[1].1
        ))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_prune_command_counts_with_dry_run_and_then_deletes() {
    let engine = TestEngine::start_with(|c| c.retention.enabled = false).await;
    let (tenant, _) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    engine
        .endpoint(&tenant, json!({"url": receiver.url()}))
        .await;
    for _ in 0..3 {
        let event = engine.event(&tenant, "x.y", json!({})).await;
        engine
            .settled(&tenant, &event, Duration::from_secs(10))
            .await;
    }
    let data_dir = engine.server.engine.config.data_dir.clone();
    let store_url = engine.store_url.clone();
    engine.server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let config = data_dir.join("prune.toml");
    std::fs::write(&config, "[retention]\ndelivered = \"1s\"\n").unwrap();
    let run = |dry_run: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasmhook"));
        command
            .arg("prune")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("WASMHOOK_STORE");
        if let Some(url) = &store_url {
            command.arg("--store").arg(url);
        }
        if dry_run {
            command.arg("--dry-run");
        }
        let output = command.output().expect("run wasmhook prune");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("JSON counts")
    };
    let dry = run(true);
    assert_eq!(
        (&dry["events"], &dry["dry_run"]),
        (&json!(3), &json!(true)),
        "{dry}"
    );
    let done = run(false);
    assert_eq!(
        (&done["events"], &done["dry_run"]),
        (&json!(3), &json!(false)),
        "{done}"
    );
    assert_eq!(run(true)["events"], 0, "nothing left");
}

/// The periodic jobs run on one node at a time: two engines on one PostgreSQL database, one of
/// them holds the jobs' lease and runs them; when it stops, the other takes over.
#[tokio::test]
async fn the_periodic_jobs_run_on_one_node_at_a_time() {
    let url = postgres::database().await;
    let master_key = hex::encode(rand::random::<[u8; 32]>());
    let start = |url: String| {
        let master_key = master_key.clone();
        TestEngine::start_with(move |c| {
            c.store.url = Some(url);
            c.secrets.master_key = Some(master_key);
            c.jobs.interval = Duration::from_millis(100);
            c.jobs.lease_ttl = Duration::from_millis(800);
        })
    };
    let first = start(url.clone()).await;
    let second = start(url).await;
    let runs = |e: &TestEngine| e.server.engine.metrics.jobs_run.get();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (a, b) = (runs(&first), runs(&second));
    assert!(
        (a > 0) != (b > 0),
        "exactly one node runs the jobs: {a} and {b} runs"
    );
    let (holder, other) = if a > 0 {
        (first, second)
    } else {
        (second, first)
    };
    let before = runs(&other);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        runs(&other),
        before,
        "the other node waits while the lease is held"
    );
    holder.server.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs(&other) == before {
        assert!(Instant::now() < deadline, "the jobs were not taken over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_certificate_near_its_expiry_is_announced_once() {
    let engine = TestEngine::start_with(|c| {
        c.jobs.interval = Duration::from_millis(200);
        c.jobs.lease_ttl = Duration::from_secs(1);
    })
    .await;
    let (tenant, _) = engine.tenant("acme").await;
    let system = Receiver::ok().await;
    system_endpoint(&engine, &tenant, &system).await;
    let certificates = format!("/v1/tenants/{tenant}/client-certificates");
    let (status, record) = engine
        .api
        .post(&certificates, json!({"name": "main"}))
        .await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap().to_string();
    // Valid for 30 days: within the first warning (30 days before notAfter).
    let signed =
        wasmhook::demo::pki::TestCa::new("Client CA").sign_csr(record["csr_pem"].as_str().unwrap());
    let (status, body) = engine
        .api
        .json(
            "PUT",
            &format!("{certificates}/{id}/certificate"),
            json!({"certificate_pem": signed}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let expiring = wait_for_system_event(
        &system,
        "client_certificate.expiring",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(expiring["certificate_id"], id.as_str(), "{expiring}");
    assert_eq!(expiring["warning"], "30days", "{expiring}");
    assert_eq!(expiring["expired"], false, "{expiring}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = system_events(&system)
        .iter()
        .filter(|(t, _)| t == "client_certificate.expiring")
        .count();
    assert_eq!(sent, 1, "sent once, not at every run");
}

#[tokio::test]
async fn a_token_route_failing_in_a_row_is_announced() {
    let engine = TestEngine::start_with(|c| c.operations.token_failures = 3).await;
    let (tenant, _) = engine.tenant("acme").await;
    let system = Receiver::ok().await;
    system_endpoint(&engine, &tenant, &system).await;
    let token_route = Receiver::start(vec![], Reply::Status(500, vec![])).await;
    let receiver = Receiver::ok().await;
    let endpoint = engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "event_types": ["invoice.*"], "steps": [{"plugin": "bearer", "config": {
                "provider": "oauth2-client-credentials",
                "provider_config": {"token_url": token_route.url(), "client_id": "id", "client_secret": "secret"}}}]}),
        )
        .await;
    // One event: three attempts, each failing to get a token.
    let event = engine.event(&tenant, "invoice.paid", json!({})).await;
    engine
        .settled(&tenant, &event, Duration::from_secs(10))
        .await;
    assert!(receiver.received().is_empty(), "never sent without a token");
    let failing =
        wait_for_system_event(&system, "token_provider.failing", Duration::from_secs(5)).await;
    assert_eq!(failing["endpoint_id"], endpoint.as_str(), "{failing}");
    assert_eq!(
        failing["provider"], "oauth2-client-credentials",
        "{failing}"
    );
    assert_eq!(failing["consecutive_failures"], 3, "{failing}");
    assert!(
        !failing.to_string().contains("secret\""),
        "no secret in the event: {failing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_hears_of_plugin_load_failures_and_swaps() {
    let engine =
        TestEngine::start_with(|c| c.operations.operator_tenant = Some("ops".into())).await;
    let (ops, _) = engine.tenant("ops").await;
    let system = Receiver::ok().await;
    system_endpoint(&engine, &ops, &system).await;
    let dir = engine.server.engine.config.plugins_dir();
    let registry = engine.server.engine.registry.clone();
    let change = |write: Box<dyn FnOnce()>| {
        let registry = registry.clone();
        async move {
            let generation = registry.watch_generation();
            write();
            assert!(
                registry
                    .wait_for_watcher(generation, Duration::from_secs(20))
                    .await,
                "the watcher did not see the change"
            );
        }
    };
    let sha256_hex = |bytes: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let v1 = crate::support::plugin_host::guest("swap_v1");
    let v2 = crate::support::plugin_host::guest("swap_v2");
    let path = dir.join("swap.wasm");
    change(Box::new({
        let path = path.clone();
        move || std::fs::write(path, b"garbage, not wasm").unwrap()
    }))
    .await;
    let failed =
        wait_for_system_event(&system, "plugin.load_failed", Duration::from_secs(10)).await;
    assert_eq!(failed["plugin"], "swap", "{failed}");
    assert!(failed["error"].as_str().unwrap().len() > 3, "{failed}");

    change(Box::new({
        let (path, bytes) = (path.clone(), v1.clone());
        move || std::fs::write(path, bytes).unwrap()
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    change(Box::new({
        let (dir, path, bytes) = (dir.clone(), path.clone(), v2.clone());
        move || {
            std::fs::write(dir.join(".swap.wasm.tmp"), bytes).unwrap();
            std::fs::rename(dir.join(".swap.wasm.tmp"), path).unwrap();
        }
    }))
    .await;
    let swapped = wait_for_system_event(&system, "plugin.swapped", Duration::from_secs(10)).await;
    assert_eq!(swapped["plugin"], "swap", "{swapped}");
    // v1 replaced a file that had failed to load (nothing was serving): not a swap. The one swap
    // is v2 over v1.
    assert_eq!(swapped["sha256"], sha256_hex(&v2), "{swapped}");
    assert_eq!(swapped["previous_sha256"], sha256_hex(&v1), "{swapped}");
    let swaps = system_events(&system)
        .iter()
        .filter(|(t, _)| t == "plugin.swapped")
        .count();
    assert_eq!(swaps, 1, "{:?}", system_events(&system));
}
