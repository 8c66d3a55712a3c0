//! Crash safety: the real binary is killed with SIGKILL mid-flight and restarted; every event it
//! acknowledged reaches the receiver at least once, with its stable `webhook-id`.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{ADMIN, Api, Receiver, Reply};

/// The engine process; killed when dropped so a failing test leaves nothing running.
struct EngineProcess(Child);

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for EngineProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for EngineProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn_engine(data_dir: &std::path::Path, port: u16) -> EngineProcess {
    // Endpoints without steps need the operator policy off; the rest comes from flags.
    let config = data_dir.join("test.toml");
    std::fs::write(&config, "[plugins]\nrequire_auth_and_security = false\n").unwrap();
    EngineProcess(
        Command::new(env!("CARGO_BIN_EXE_wasmhook"))
            .arg("serve")
            .args(["--config", config.to_str().unwrap()])
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--allow-cidr", "127.0.0.1/32"])
            .args(["--retry-schedule", "200ms,200ms,200ms"])
            .env("WASMHOOK_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .env_remove("WASMHOOK_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the wasmhook binary"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(api: &Api, child: &mut EngineProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the engine exited early: {status}");
        }
        if let Ok(Ok((200, _))) =
            tokio::time::timeout(Duration::from_secs(1), try_get(api, "/healthz")).await
        {
            return;
        }
        assert!(Instant::now() < deadline, "engine not healthy within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn try_get(api: &Api, path: &str) -> Result<(u16, serde_json::Value), ()> {
    let api = api.clone();
    let path = path.to_string();
    tokio::spawn(async move { api.get(&path).await })
        .await
        .map_err(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flight_then_restart_delivers_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![], Reply::Slow(Duration::from_millis(300), 204)).await;
    let port = free_port();
    let api = Api::new(format!("http://127.0.0.1:{port}"), ADMIN);

    let mut child = spawn_engine(dir.path(), port);
    wait_healthy(&api, &mut child).await;
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

    let mut child = spawn_engine(dir.path(), port);
    wait_healthy(&api, &mut child).await;
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
