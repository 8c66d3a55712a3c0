//! Crash safety: the real binary is killed with SIGKILL mid-flight and restarted; every event it
//! acknowledged reaches the receiver at least once, with its stable `webhook-id`.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::process::{free_port, spawn_engine};
use crate::support::{Receiver, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flight_then_restart_delivers_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![], Reply::Slow(Duration::from_millis(300), 204)).await;
    let port = free_port();
    // On PostgreSQL the restarted process is a new node: the dead one's leases must lapse first.
    let store = crate::support::store_url().await;
    let mut flags = vec!["--lease-ttl", "3s"];
    if let Some(url) = &store {
        flags.extend(["--store", url.as_str()]);
    }

    let mut child = spawn_engine(dir.path(), port, &flags);
    child.wait_healthy().await;
    let api = child.api.clone();
    let (status, body) = api
        .post("/v1/tenants", json!({"id": "acme", "name": "Acme"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .post(
            "/v1/tenants/acme/endpoints",
            json!({"url": receiver.url(), "max_concurrency": 4}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    const N: usize = 40;
    let mut acknowledged = Vec::new();
    for i in 0..N {
        let (status, body) = api
            .post(
                "/v1/tenants/acme/events",
                json!({"type": "order.created", "data": {"i": i}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        acknowledged.push(body["id"].as_str().unwrap().to_string());
    }
    // Let some deliveries start (the receiver is slow: 4 at a time, 300 ms each), then kill -9.
    receiver.wait_for(4, Duration::from_secs(20)).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let before_restart = receiver.received().len();
    assert!(
        before_restart < N,
        "the kill must happen mid-flight ({before_restart} of {N} already received)"
    );

    let mut child = spawn_engine(dir.path(), port, &flags);
    child.wait_healthy().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: HashSet<String> = receiver
            .received()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_string))
            .collect();
        if acknowledged.iter().all(|id| seen.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restart, {} of {N} acknowledged events reached the receiver",
            acknowledged.iter().filter(|id| seen.contains(*id)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every request carried an acknowledged id and a body whose id matches it.
    for request in receiver.received() {
        let id = request.header("webhook-id").unwrap().to_string();
        assert!(acknowledged.contains(&id));
        assert_eq!(request.json()["id"], id);
    }
    // SIGTERM: graceful shutdown.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "engine did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.wait().unwrap().success(), "graceful shutdown exits 0");
}
