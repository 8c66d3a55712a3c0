//! Fan-out, envelope and headers, retries, Retry-After, dead letters and replay.

use std::time::Duration;

use serde_json::json;

use crate::support::{Receiver, Reply, TestEngine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_fans_out_to_exactly_the_subscribed_endpoints_with_envelope_and_headers() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    let (other, _) = engine.tenant("other").await;
    let invoices = Receiver::ok().await;
    let everything = Receiver::ok().await;
    let users_only = Receiver::ok().await;
    let other_tenant = Receiver::ok().await;
    let disabled = Receiver::ok().await;
    engine
        .endpoint(
            &acme,
            json!({"url": invoices.url(), "event_types": ["invoice.*"]}),
        )
        .await;
    engine
        .endpoint(&acme, json!({"url": everything.url()}))
        .await;
    engine
        .endpoint(
            &acme,
            json!({"url": users_only.url(), "event_types": ["user.created"]}),
        )
        .await;
    engine
        .endpoint(&acme, json!({"url": disabled.url(), "enabled": false}))
        .await;
    engine
        .endpoint(&other, json!({"url": other_tenant.url()}))
        .await;

    let (status, accepted) = engine
        .api
        .post(&format!("/v1/tenants/{acme}/events"), json!({"type": "invoice.paid", "resource": {"type": "invoice", "id": "in_42"}, "data": {"amount": 1200}}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        accepted["deliveries"], 3,
        "invoice.*, the catch-all endpoint, and the disabled catch-all (held): {accepted}"
    );
    let event_id = accepted["id"].as_str().unwrap().to_string();

    let got = invoices.wait_for(1, Duration::from_secs(10)).await;
    everything.wait_for(1, Duration::from_secs(10)).await;
    let deliveries = engine
        .settled(&acme, &event_id, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries.len(), 3);
    let mut statuses: Vec<&str> = deliveries
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        ["delivered", "delivered", "held"],
        "{deliveries:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        users_only.received().is_empty(),
        "user.created endpoint must not get invoice.paid"
    );
    assert!(
        other_tenant.received().is_empty(),
        "another tenant's endpoint must not get acme's event"
    );
    assert!(
        disabled.received().is_empty(),
        "a disabled endpoint gets nothing (its delivery is held)"
    );

    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("webhook-id"), Some(event_id.as_str()));
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((timestamp - wasmhook::model::now_unix()).abs() < 60);
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("wasmhook/")
    );
    let envelope = request.json();
    assert_eq!(envelope["id"], event_id);
    assert_eq!(envelope["type"], "invoice.paid");
    assert_eq!(
        envelope["resource"],
        json!({"type": "invoice", "id": "in_42"})
    );
    assert_eq!(envelope["data"], json!({"amount": 1200}));
    assert!(envelope["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        envelope,
        everything.received()[0].json(),
        "every endpoint gets the same envelope"
    );
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_recorded_and_retry_after_is_honoured() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    // 500, then a dropped connection, then 204.
    let flaky = Receiver::start(
        vec![Reply::Status(500, vec![]), Reply::Drop],
        Reply::Status(204, vec![]),
    )
    .await;
    engine.endpoint(&acme, json!({"url": flaky.url()})).await;
    let event = engine.event(&acme, "invoice.paid", json!({"n": 1})).await;
    let deliveries = engine.settled(&acme, &event, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0]["status"], "delivered", "{deliveries:?}");
    assert_eq!(deliveries[0]["attempts"], 3);
    let attempts = engine
        .attempts(&acme, &event, deliveries[0]["id"].as_str().unwrap())
        .await;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["outcome"], "failure");
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(attempts[0]["response_snippet"], "ok");
    assert!(attempts[1]["status_code"].is_null());
    assert!(
        attempts[1]["error"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{}",
        attempts[1]
    );
    assert_eq!(attempts[2]["status_code"], 204);
    assert_eq!(attempts[2]["outcome"], "success");
    let got = flaky.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == Some(event.as_str())),
        "webhook-id is stable across retries"
    );

    // Retry-After: 1 second instead of the 100 ms schedule.
    let limited = Receiver::start(
        vec![Reply::Status(429, vec![("retry-after".into(), "1".into())])],
        Reply::Status(200, vec![]),
    )
    .await;
    engine
        .endpoint(
            &acme,
            json!({"url": limited.url(), "event_types": ["limited"]}),
        )
        .await;
    let event = engine.event(&acme, "limited", json!({})).await;
    let got = limited.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 must delay the retry by a second, got {gap:?}"
    );
    let deliveries = engine.settled(&acme, &event, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0]["status"], "delivered");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_succeeds_ends_dead_and_replay_delivers_again() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    // Fails the first round (1 attempt + 2 retries), then accepts.
    let failing = Receiver::start(
        vec![
            Reply::Status(500, vec![]),
            Reply::Status(502, vec![]),
            Reply::Status(503, vec![]),
        ],
        Reply::Status(200, vec![]),
    )
    .await;
    engine.endpoint(&acme, json!({"url": failing.url()})).await;
    let event = engine.event(&acme, "order.created", json!({})).await;
    let deliveries = engine.settled(&acme, &event, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0]["status"], "dead", "{deliveries:?}");
    assert_eq!(
        deliveries[0]["attempts"], 3,
        "one attempt plus the two of the schedule"
    );
    let delivery = deliveries[0]["id"].as_str().unwrap().to_string();
    let attempts = engine.attempts(&acme, &event, &delivery).await;
    assert_eq!(attempts.last().unwrap()["outcome"], "dead");

    let retry_path = format!("/v1/tenants/{acme}/events/{event}/deliveries/{delivery}/retry");
    let (status, body) = engine.api.post(&retry_path, json!({})).await;
    assert_eq!(status, 202, "{body}");
    let deliveries = engine.settled(&acme, &event, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(deliveries[0]["attempts"], 4);
    assert_eq!(failing.received().len(), 4);

    // Replaying a delivered one sends it again.
    let (status, _) = engine.api.post(&retry_path, json!({})).await;
    assert_eq!(status, 202);
    failing.wait_for(5, Duration::from_secs(10)).await;
    engine.settled(&acme, &event, Duration::from_secs(10)).await;
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_endpoint_concurrency_is_respected() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    let slow = Receiver::start(vec![], Reply::Slow(Duration::from_millis(150), 204)).await;
    engine
        .endpoint(&acme, json!({"url": slow.url(), "max_concurrency": 2}))
        .await;
    for i in 0..6 {
        engine.event(&acme, "tick", json!({"i": i})).await;
    }
    let got = slow.wait_for(6, Duration::from_secs(10)).await;
    // With 2 at a time and 150 ms each, 6 requests take at least 3 rounds.
    let span = got[5].at - got[0].at;
    assert!(
        span >= Duration::from_millis(280),
        "6 requests at concurrency 2 arrived within {span:?}"
    );
    engine.server.shutdown().await;
}
