//! Recovery (`POST …/endpoints/{e}/recover`): every failed or dead delivery of an endpoint since
//! a time is re-sent once, paced by the endpoint's concurrency, in bounded batches, safe to
//! repeat; and the endpoint test (`POST …/endpoints/{e}/test`): a sample event through the
//! endpoint's steps, answered with the attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wasmhook::config::Synchronous;
use wasmhook::model::{DeliveryStatus, Tenant, rfc3339};
use wasmhook::secrets::{MasterKey, Sealer};
use wasmhook::store::{
    AttemptRecord, IngestOutcome, IngestRequest, Lease, NewEvent, OpenOptions, RecoverRequest,
    Store, StoreLocation,
};

use crate::support::{Receiver, Reply, TestEngine};

/// Requests per `webhook-id`.
fn per_event(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.received() {
        *counts
            .entry(request.header("webhook-id").unwrap_or_default().to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn recover_resends_failed_and_dead_deliveries_once_paced_by_the_endpoint() {
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let up = Arc::new(AtomicBool::new(false));
    let judge_up = up.clone();
    // Down (500) until `up`; then slow enough that overlapping requests would show.
    let receiver = Receiver::judging(move |_| {
        if judge_up.load(Ordering::SeqCst) {
            Reply::Slow(Duration::from_millis(120), 200)
        } else {
            Reply::Status(500, vec![])
        }
    })
    .await;
    let endpoint = engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "max_concurrency": 1}),
        )
        .await;
    let recover = format!("/v1/tenants/{tenant}/endpoints/{endpoint}/recover");

    // Before `since`: dead, and stays so.
    let old = engine.event(&tenant, "invoice.paid", json!({"n": 0})).await;
    engine.settled(&tenant, &old, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = rfc3339(wasmhook::model::now_unix());
    let mut recent = Vec::new();
    for n in 1..=4 {
        recent.push(engine.event(&tenant, "invoice.paid", json!({"n": n})).await);
    }
    for event in &recent {
        let deliveries = engine
            .settled(&tenant, event, Duration::from_secs(10))
            .await;
        assert_eq!(deliveries[0]["status"], "dead", "{deliveries:?}");
        assert_eq!(deliveries[0]["attempts"], 3);
    }
    let before = receiver.received().len();
    assert_eq!(before, 15, "3 attempts for each of 5 events");

    up.store(true, Ordering::SeqCst);
    let (status, body) = engine.api.post(&recover, json!({"since": since})).await;
    assert_eq!((status, &body), (202, &json!({"requeued": 4})));
    // Repeated while they are pending (or already delivered): nothing is sent twice.
    let (status, body) = engine.api.post(&recover, json!({"since": since})).await;
    assert_eq!((status, &body), (202, &json!({"requeued": 0})));
    for event in &recent {
        let deliveries = engine
            .settled(&tenant, event, Duration::from_secs(10))
            .await;
        assert_eq!(deliveries[0]["status"], "delivered", "{deliveries:?}");
        assert_eq!(deliveries[0]["attempts"], 4);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = receiver.received();
    assert_eq!(received.len(), before + 4);
    let counts = per_event(&receiver);
    for event in &recent {
        assert_eq!(counts[event], 4, "{event}: 3 failures and one recovery");
    }
    assert_eq!(counts[&old], 3, "the event before `since` is not re-sent");
    let (_, deliveries) = engine
        .api
        .get(&format!("/v1/tenants/{tenant}/events/{old}/deliveries"))
        .await;
    assert_eq!(deliveries[0]["status"], "dead");
    // Paced: with max_concurrency 1 and 120 ms answers, no two re-sends overlapped.
    let mut resent: Vec<_> = received[before..].iter().map(|r| r.at).collect();
    resent.sort();
    for pair in resent.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(110),
            "two re-sends {:?} apart with max_concurrency 1",
            pair[1] - pair[0]
        );
    }
    let (status, body) = engine.api.post(&recover, json!({"since": since})).await;
    assert_eq!((status, &body), (202, &json!({"requeued": 0})));

    // Errors name their field; an unknown endpoint is a 404.
    let (status, body) = engine
        .api
        .post(&recover, json!({"since": "yesterday"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("since"))
    );
    let (status, _) = engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/endpoints/ep_nope/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, other) = engine.tenant("globex").await;
    let (status, _) = engine
        .api
        .with_token(&other)
        .post(&recover, json!({"since": since}))
        .await;
    assert_eq!(status, 404);
}

/// The store's side: batches in order of id, bounded by `limit`, each delivery moved once, only
/// the endpoint's, only since the time, and a failed delivery waiting for its retry counted.
#[tokio::test]
async fn recovery_batches_are_bounded_and_move_each_delivery_once() {
    // A store of its own (no dispatcher to send what is requeued), on the suite's backend.
    let dir = tempfile::tempdir().unwrap();
    let location = match crate::support::store_url().await {
        Some(url) => StoreLocation::Postgres(url),
        None => StoreLocation::Sqlite(dir.path().join("wasmhook.sqlite3")),
    };
    let store = Store::open(&OpenOptions {
        sealer: Sealer::new(MasterKey::from_bytes(&[7; 32]), Vec::new()),
        location,
        data_dir: dir.path().to_path_buf(),
        max_batch: 64,
        synchronous: Synchronous::Normal,
        pool_size: 4,
    })
    .await
    .unwrap();
    let tenant = "acme".to_string();
    store
        .create_tenant(
            Tenant {
                id: tenant.clone(),
                name: "Acme".into(),
                created_at: 1,
            },
            "hash-acme".into(),
        )
        .await
        .unwrap();
    let (a, b) = ("ep_a".to_string(), "ep_b".to_string());
    let lease = Lease {
        owner: "node_test".into(),
        expires_at_ms: wasmhook::model::now_millis() + 60_000,
    };
    let now = wasmhook::model::now_unix();
    let event = |n: usize, created_at: i64| NewEvent {
        id: format!("msg_{n:03}"),
        event_type: "t".into(),
        created_at,
        body: Arc::from(&b"{}"[..]),
        endpoint_ids: vec![a.clone(), b.clone()],
        held_endpoint_ids: Vec::new(),
    };
    let mut events: Vec<NewEvent> = (0..7).map(|n| event(n, now)).collect();
    events.push(event(7, now - 3600));
    let IngestOutcome::Created { claimed, .. } = store
        .ingest(IngestRequest {
            tenant: tenant.clone(),
            events,
            idempotency_key: None,
            response: Value::Null,
            lease: lease.clone(),
            claim: usize::MAX,
        })
        .await
        .unwrap()
    else {
        panic!("created");
    };
    assert_eq!(claimed.len(), 16);
    // Every delivery failed once; all but one are dead, that one waits for a retry in an hour.
    let waiting = claimed
        .iter()
        .find(|d| d.endpoint_id == a && d.event_id == "msg_003")
        .unwrap()
        .delivery_id
        .clone();
    for delivery in &claimed {
        let retry = delivery.delivery_id == waiting;
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.record_attempt(
            AttemptRecord {
                delivery_id: delivery.delivery_id.clone(),
                attempt: 1,
                started_at_ms: 0,
                status_code: Some(500),
                latency_ms: 1,
                error: Some("receiver answered 500".into()),
                response_snippet: None,
                new_status: if retry {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Dead
                },
                next_attempt_at: retry.then(|| wasmhook::model::now_millis() + 3_600_000),
                keep_lease: false,
            },
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap().unwrap();
    }
    let mut request = RecoverRequest {
        tenant: tenant.clone(),
        endpoint: a.clone(),
        since: now - 60,
        after: None,
        limit: 3,
        now_ms: wasmhook::model::now_millis(),
    };
    let mut batches = Vec::new();
    loop {
        let batch = store.recover_deliveries(&request).await.unwrap();
        assert!(batch.requeued <= 3);
        batches.push(batch.requeued);
        match batch.last {
            Some(last) if batch.requeued == 3 => {
                assert!(request.after.as_ref().is_none_or(|after| &last > after));
                request.after = Some(last);
            }
            _ => break,
        }
    }
    // Seven events since the time (msg_007 is older), endpoint `a` only.
    assert_eq!(batches, [3, 3, 1]);
    let status_of = |event: &'static str| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move {
            store
                .deliveries_of_event(&tenant, event)
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.endpoint_id, d.status))
                .collect::<HashMap<_, _>>()
        }
    };
    let first = status_of("msg_001").await;
    assert_eq!(first[&a], DeliveryStatus::Pending);
    assert_eq!(first[&b], DeliveryStatus::Dead);
    assert_eq!(status_of("msg_007").await[&a], DeliveryStatus::Dead);
    let waited = store.deliveries_of_event(&tenant, "msg_003").await.unwrap();
    let waited = waited.iter().find(|d| d.endpoint_id == a).unwrap();
    assert_eq!(waited.status, DeliveryStatus::Pending);
    assert!(
        waited.next_attempt_at.unwrap() <= wasmhook::model::now_millis(),
        "the retry that waited an hour is due now"
    );
    // Again from the start: everything moved is pending now, nothing moves twice.
    request.after = None;
    request.now_ms = wasmhook::model::now_millis();
    assert_eq!(
        store.recover_deliveries(&request).await.unwrap().requeued,
        0
    );
    // The other endpoint's, all at once.
    request.endpoint = b.clone();
    request.limit = 100;
    assert_eq!(
        store.recover_deliveries(&request).await.unwrap().requeued,
        7
    );
}

#[tokio::test]
async fn the_endpoint_test_sends_a_sample_through_the_steps() {
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let receiver = Receiver::judging(|r| match r.header("x-api-key") {
        Some("k-right") => Reply::Status(200, vec![]),
        _ => Reply::Status(401, vec![]),
    })
    .await;
    engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/event-types"),
            json!({"name": "invoice.paid", "schema": {
                "type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}},
                "examples": [{"amount": 42}]}}),
        )
        .await;
    let with_key = |key: &str| json!({"url": receiver.url(), "steps": [{"plugin": "api-key", "config": {"header": "x-api-key", "key": key}}]});
    let good = engine.endpoint(&tenant, with_key("k-right")).await;
    let bad = engine.endpoint(&tenant, with_key("k-wrong")).await;
    let test = |endpoint: &str| format!("/v1/tenants/{tenant}/endpoints/{endpoint}/test");

    let (status, answer) = engine
        .api
        .post(&test(&good), json!({"event_type": "invoice.paid"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let attempt = &answer["attempt"];
    assert_eq!(attempt["success"], true, "{answer}");
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["response_snippet"], "ok");
    assert!(attempt["error"].is_null());
    assert!(attempt["latency_ms"].as_u64().is_some());
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].header("webhook-id"), answer["event_id"].as_str());
    let envelope = got[0].json();
    assert_eq!(envelope["type"], "invoice.paid");
    assert_eq!(
        envelope["data"],
        json!({"amount": 42}),
        "the schema's example"
    );

    // Data given; a refused attempt is still an answer.
    let (status, answer) = engine
        .api
        .post(
            &test(&bad),
            json!({"event_type": "invoice.paid", "data": {"amount": 7}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["attempt"]["success"], false);
    assert_eq!(answer["attempt"]["status_code"], 401);
    assert_eq!(answer["attempt"]["error"], "receiver answered 401");
    assert_eq!(
        receiver.wait_for(2, Duration::from_secs(5)).await[1].json()["data"],
        json!({"amount": 7})
    );
    // A type outside the catalog gets `{}`; an unreachable receiver is an error, not a status.
    let down = engine
        .endpoint(&tenant, json!({"url": "http://127.0.0.1:9/hook"}))
        .await;
    let (status, answer) = engine
        .api
        .post(&test(&down), json!({"event_type": "ping"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["attempt"]["status_code"].is_null());
    assert!(
        answer["attempt"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{answer}"
    );

    // Data must satisfy the type's schema; nothing is stored.
    let (status, body) = engine
        .api
        .post(
            &test(&good),
            json!({"event_type": "invoice.paid", "data": {"amount": "x"}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("data/amount")),
        "{body}"
    );
    let (status, body) = engine
        .api
        .post(&test(&good), json!({"event_type": "no spaces"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("event_type")),
        "{body}"
    );
    assert_eq!(
        engine
            .api
            .post(&test("ep_nope"), json!({"event_type": "ping"}))
            .await
            .0,
        404
    );
    assert_eq!(engine.count_rows("events").await, 0);
    assert_eq!(engine.count_rows("deliveries").await, 0);
    assert_eq!(receiver.received().len(), 2);
}
