//! The memory bound: a node holds at most `store.window` deliveries, whatever the backlog, and
//! event bodies are held once per event (within `store.max_held_body_mib`), never once per
//! delivery. Runs on either backend.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Receiver, Reply, TestEngine};

/// Samples `probe` every few milliseconds until `stop`; returns the largest value seen.
fn sample_max(
    stop: Arc<AtomicBool>,
    probe: impl Fn() -> usize + Send + 'static,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(probe());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        max.max(probe())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_window_stays_in_the_store_until_there_is_room() {
    const WINDOW: usize = 40;
    const EVENTS: usize = 400;
    let engine = TestEngine::start_with(|config| {
        config.store.window = WINDOW;
        config.store.poll_interval = Duration::from_millis(100);
    })
    .await;
    let (tenant, _) = engine.tenant("acme").await;
    let receiver = Receiver::start(vec![], Reply::Slow(Duration::from_millis(20), 204)).await;
    engine
        .endpoint(
            &tenant,
            json!({"url": receiver.url(), "max_concurrency": 8}),
        )
        .await;
    let dispatcher = engine.server.engine.dispatcher.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let max_held = sample_max(stop.clone(), move || dispatcher.held());

    let mut ids = HashSet::new();
    for chunk in 0..(EVENTS / 100) {
        let events: Vec<_> = (0..100)
            .map(|i| json!({"type": "invoice.paid", "data": {"n": chunk * 100 + i}}))
            .collect();
        let (status, body) = engine
            .api
            .post(
                &format!("/v1/tenants/{tenant}/events/batch"),
                json!({ "events": events }),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        for event in body["events"].as_array().unwrap() {
            ids.insert(event["id"].as_str().unwrap().to_string());
        }
    }
    let started = Instant::now();
    let got = receiver.wait_for(EVENTS, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let max_held = max_held.await.unwrap();
    let delivered: HashSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    eprintln!(
        "window {WINDOW}: {EVENTS} deliveries in {:?}, at most {max_held} held at once",
        started.elapsed()
    );
    assert_eq!(delivered, ids, "every acknowledged event arrives");
    assert!(
        max_held <= WINDOW,
        "the node held {max_held} deliveries, more than its window of {WINDOW}"
    );
    assert!(max_held > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_held_once_per_event_within_their_budget_and_read_back_when_sent() {
    const EVENTS: usize = 12;
    const ENDPOINTS: usize = 15;
    const PAYLOAD: usize = 100 * 1024;
    let engine = TestEngine::start_with(|config| {
        config.store.max_held_body_mib = 1;
        config.delivery.retry_schedule = vec![Duration::from_millis(100); 100];
    })
    .await;
    let (tenant, _) = engine.tenant("acme").await;
    // Hold every request until released, so that all deliveries are queued or in flight.
    let release = Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    let in_receiver = Arc::new(AtomicUsize::new(0));
    let seen = in_receiver.clone();
    let receiver = Receiver::judging(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        if gate.load(Ordering::SeqCst) {
            Reply::Status(204, vec![])
        } else {
            Reply::Status(503, vec![])
        }
    })
    .await;
    for _ in 0..ENDPOINTS {
        engine
            .endpoint(&tenant, json!({"url": receiver.url()}))
            .await;
    }
    let dispatcher = engine.server.engine.dispatcher.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = dispatcher.clone();
    let max_bytes = sample_max(stop.clone(), move || probe.held_body_bytes());
    let mut ids = Vec::new();
    for i in 0..EVENTS {
        let payload = format!("{i:02}").repeat(PAYLOAD / 2);
        ids.push(
            engine
                .event(&tenant, "invoice.paid", json!({ "blob": payload }))
                .await,
        );
    }
    // Let a few rounds of failures happen, then open the gate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.store(true, Ordering::SeqCst);
    let got = receiver
        .wait_for(EVENTS * ENDPOINTS, Duration::from_secs(60))
        .await;
    for id in &ids {
        engine.settled(&tenant, id, Duration::from_secs(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let max_bytes = max_bytes.await.unwrap();
    eprintln!(
        "{EVENTS} events of {PAYLOAD} B x {ENDPOINTS} endpoints: at most {max_bytes} B of bodies held (budget 1 MiB; one copy per delivery would be {} B)",
        EVENTS * ENDPOINTS * PAYLOAD
    );
    assert!(
        max_bytes <= 1024 * 1024,
        "{max_bytes} B held, over the 1 MiB budget"
    );
    assert!(
        max_bytes >= PAYLOAD,
        "the ingesting node holds the bodies it can"
    );
    // Every delivery carried its own event's body, whether held or read back.
    for request in got.iter().filter(|r| r.header("webhook-id").is_some()) {
        let body = request.json();
        let id = request.header("webhook-id").unwrap();
        let n: usize = ids.iter().position(|e| e == id).expect("a known event");
        assert_eq!(body["id"], id);
        let blob = body["data"]["blob"].as_str().unwrap();
        assert_eq!(blob.len(), PAYLOAD);
        assert!(blob.starts_with(&format!("{n:02}")));
    }
    assert_eq!(
        dispatcher.held_body_bytes(),
        0,
        "nothing held once all is delivered"
    );
    assert_eq!(dispatcher.held(), 0);
    assert!(in_receiver.load(Ordering::SeqCst) >= EVENTS * ENDPOINTS);
}
