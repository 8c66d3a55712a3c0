//! A cluster of three real `wasmhook` processes on one PostgreSQL database (leases of 3 s):
//!
//! - [`a_killed_node_s_deliveries_are_taken_over`]: events posted round-robin to all nodes, one
//!   node killed with SIGKILL mid-flight; every acknowledged event still reaches the receiver
//!   with its stable `webhook-id`, the live nodes share the work, and the dead node's
//!   deliveries are taken over once its leases lapse.
//! - [`nodes_agree_on_endpoints_plugins_keys_idempotency_and_concurrency`]: an endpoint changed
//!   on one node is used by another within 1 s; a tenant plugin uploaded to one node is used by
//!   deliveries of another within 1 s; the JWKS is the same on every node, before and after a
//!   rotation; an `Idempotency-Key` repeated on another node returns the first answer; an
//!   endpoint's `max_concurrency` holds across the cluster.
//!
//! The nodes share one master key (the secrets sealed in the database are theirs in common).
//! Each measured figure is printed. The two tests take turns (six engines at once on a small
//! machine would blur the timings they check).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use wasmhook::demo::client::ApiClient;

use crate::support::process::{EngineProcess, free_port, spawn_engine_with};
use crate::support::{ADMIN, Api, Receiver, Reply, StoreBackend, postgres};

/// Prints a measured figure past the test harness's output capture (straight to stderr), so
/// that the CI log shows it for a passing test too.
macro_rules! figure {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "cluster: {}", format_args!($($arg)*));
    }};
}

const LEASE_TTL: Duration = Duration::from_secs(3);

/// The cluster tests run one at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// False (with the reason printed) when there is no PostgreSQL to run a cluster on. With
/// `WASMHOOK_TEST_STORE=postgres` a missing PostgreSQL is an error instead (the server start
/// panics saying so).
fn postgres_or_skip() -> bool {
    if StoreBackend::current() == StoreBackend::Postgres || postgres::available() {
        return true;
    }
    figure!(
        "SKIPPED: a cluster needs PostgreSQL and no server binaries were found \
         (install postgresql, or run scripts/test, which does)"
    );
    false
}

struct Cluster {
    nodes: Vec<EngineProcess>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// `n` nodes on a fresh database, each with its own data directory; `toml` is added to each
    /// node's configuration. The first node starts alone (it creates the schema and the signing
    /// keys), the others together.
    async fn start(n: usize, toml: &str) -> Self {
        let began = Instant::now();
        let store = postgres::database().await;
        let ttl = format!("{}s", LEASE_TTL.as_secs());
        // The nodes share the secrets sealed in the database: one master key for all.
        let master_key = hex::encode(rand::random::<[u8; 32]>());
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let node = spawn_engine_with(
                dir.path(),
                free_port(),
                &[
                    "--store",
                    &store,
                    "--lease-ttl",
                    &ttl,
                    "--master-key",
                    &master_key,
                ],
                toml,
            );
            dirs.push(dir);
            nodes.push(node);
            if i == 0 {
                nodes[0].wait_healthy().await;
            }
        }
        for node in &mut nodes[1..] {
            node.wait_healthy().await;
        }
        let mut ids = Vec::new();
        for node in &nodes {
            let (_, health) = node.api.get("/healthz").await;
            assert_eq!(health["store"], "postgres", "{health}");
            ids.push(health["node"].to_string());
        }
        figure!(
            "cluster of {n} nodes ({}) on one PostgreSQL database healthy in {:?}",
            ids.join(", "),
            began.elapsed()
        );
        Self { nodes, _dirs: dirs }
    }

    fn api(&self, i: usize) -> &Api {
        &self.nodes[i].api
    }

    /// Creates a tenant through node 0 and waits until every node knows it.
    async fn tenant(&self, id: &str) {
        let (status, body) = self
            .api(0)
            .post("/v1/tenants", json!({"id": id, "name": id}))
            .await;
        assert_eq!(status, 201, "{body}");
        let took = self.visible_everywhere(&format!("/v1/tenants/{id}")).await;
        figure!("tenant {id} created on node 0, known to every node after {took:?}");
    }

    /// Creates an endpoint through node 0 and waits until every node knows it; returns its id.
    async fn endpoint(&self, tenant: &str, spec: Value) -> String {
        let (status, body) = self
            .api(0)
            .post(&format!("/v1/tenants/{tenant}/endpoints"), spec)
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let took = self
            .visible_everywhere(&format!("/v1/tenants/{tenant}/endpoints/{id}"))
            .await;
        figure!("endpoint {id} created on node 0, known to every node after {took:?}");
        id
    }

    /// Waits (10 s at most) until `GET path` answers 200 on every node; returns how long.
    async fn visible_everywhere(&self, path: &str) -> Duration {
        let began = Instant::now();
        for (i, node) in self.nodes.iter().enumerate() {
            until(Duration::from_secs(10), || async move {
                (node.api.get(path).await.0 == 200).then_some(())
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{path} not visible on node {i} within 10 s; its log:\n{}",
                    node.log()
                )
            });
        }
        began.elapsed()
    }

    /// Posts an event to node `i`; returns its id.
    async fn event(&self, i: usize, tenant: &str, data: Value) -> String {
        let (status, body) = self
            .api(i)
            .post(
                &format!("/v1/tenants/{tenant}/events"),
                json!({"type": "order.created", "data": data}),
            )
            .await;
        assert_eq!(status, 202, "node {i}: {body}");
        assert_eq!(body["deliveries"], 1, "node {i}: {body}");
        body["id"].as_str().unwrap().to_string()
    }
}

/// Calls `check` every 20 ms until it gives a value or `within` passed.
async fn until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A sample of a node's `/metrics` (counter `name` with label `label`), 0 when absent.
async fn metric(api: &Api, name: &str, label: &str) -> f64 {
    let (status, body) = api.get("/metrics").await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("metrics are text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// The `webhook-id`s a receiver got, each with the arrival of its first request.
fn first_arrivals(receiver: &Receiver) -> HashMap<String, Instant> {
    let mut first = HashMap::new();
    for request in receiver.received() {
        let id = request.header("webhook-id").unwrap().to_string();
        assert_eq!(request.json()["id"], id, "body and webhook-id agree");
        first
            .entry(id)
            .and_modify(|at: &mut Instant| *at = (*at).min(request.at))
            .or_insert(request.at);
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_deliveries_are_taken_over() {
    if !postgres_or_skip() {
        return;
    }
    let _turn = TURN.lock().await;
    // 8 attempts in flight per node and a receiver taking 100 ms: deliveries (240/s for the
    // cluster) lag behind the posting, so the node is killed with work of its own queued.
    let mut cluster = Cluster::start(3, "[delivery]\nendpoint_concurrency = 8\n").await;
    let receiver = Receiver::start(vec![], Reply::Slow(Duration::from_millis(100), 204)).await;
    cluster.tenant("acme").await;
    cluster
        .endpoint("acme", json!({"url": receiver.url()}))
        .await;

    const N: usize = 600;
    let clients: Vec<ApiClient> = cluster
        .nodes
        .iter()
        .map(|n| ApiClient::new(format!("http://127.0.0.1:{}", n.port), ADMIN))
        .collect();
    let began = Instant::now();
    let posting = tokio::spawn(async move {
        futures::stream::iter(0..N)
            .map(|i| {
                let client = clients[i % clients.len()].clone();
                async move {
                    let body = json!({"type": "order.created", "data": {"i": i}});
                    let (status, answer) = client
                        .send(
                            "POST",
                            "/v1/tenants/acme/events",
                            body.to_string().into_bytes(),
                            &[("content-type", "application/json")],
                        )
                        .await;
                    (i % 3, status, answer)
                }
            })
            .buffer_unordered(24)
            .collect::<Vec<_>>()
            .await
    });
    // Kill node 0 once deliveries are well under way (or the posting is over).
    loop {
        let received = receiver.received().len();
        if received >= N / 4 || (posting.is_finished() && received >= 30) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "only {received} deliveries within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let received_before_kill = receiver.received().len();
    let before_kill_metrics = metric(
        cluster.api(0),
        "wasmhook_attempts_total",
        "outcome=\"success\"",
    )
    .await;
    cluster.nodes[0].kill().expect("SIGKILL");
    let killed_at = Instant::now();
    cluster.nodes[0].wait().unwrap();
    let answers = posting.await.unwrap();
    figure!(
        "node 0 killed (SIGKILL) {:?} after the posting began, with {received_before_kill} of \
         {N} requests received ({before_kill_metrics} by node 0)",
        killed_at - began
    );

    // Every answer is an acknowledgement, or node 0 being gone.
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    let mut lost = 0;
    for (node, status, answer) in answers {
        match status {
            202 => {
                assert_eq!(answer["deliveries"], 1, "{answer}");
                acknowledged.insert(answer["id"].as_str().unwrap().to_string(), node);
            }
            0 if node == 0 => lost += 1,
            _ => panic!("node {node} answered {status}: {answer}"),
        }
    }
    figure!(
        "{} events acknowledged (202), {lost} posts to node 0 unanswered after the kill",
        acknowledged.len()
    );

    // Every acknowledged event reaches the receiver.
    let deadline = Instant::now() + Duration::from_secs(40);
    let first = loop {
        let first = first_arrivals(&receiver);
        let missing = acknowledged
            .keys()
            .filter(|id| !first.contains_key(*id))
            .count();
        if missing == 0 {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never reached the receiver",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all_done = acknowledged.keys().map(|id| first[id]).max().unwrap();

    // What node 0 held undelivered when it died was delivered by the others.
    let taken_over: Vec<Duration> = acknowledged
        .iter()
        .filter(|(id, node)| **node == 0 && first[*id] >= killed_at)
        .map(|(id, _)| first[id] - killed_at)
        .collect();
    assert!(
        !taken_over.is_empty(),
        "the kill must happen mid-flight: every event node 0 acknowledged had already arrived"
    );
    let redelivered = receiver
        .received()
        .iter()
        .filter(|r| r.at >= killed_at)
        .filter_map(|r| r.header("webhook-id"))
        .filter(|id| acknowledged.get(*id) == Some(&0) && first[*id] < killed_at)
        .count();
    let takeover_first = *taken_over.iter().min().unwrap();
    let takeover_last = *taken_over.iter().max().unwrap();
    figure!(
        "takeover: {} of node 0's acknowledged events were undelivered at the kill; the first \
         reached the receiver {takeover_first:?} after the kill, the last {takeover_last:?} \
         (lease ttl {LEASE_TTL:?}); {redelivered} requests node 0 had in flight were sent again",
        taken_over.len()
    );
    figure!(
        "the last acknowledged event arrived {:?} after the kill",
        all_done.saturating_duration_since(killed_at)
    );
    assert!(
        takeover_last <= LEASE_TTL + Duration::from_secs(5),
        "node 0's deliveries took {takeover_last:?} to be taken over (lease ttl {LEASE_TTL:?})"
    );
    let requests = receiver.received().len();
    figure!(
        "{requests} requests for {} events ({} duplicates, at least once)",
        first.len(),
        requests - first.len()
    );

    // Each live node did its share.
    for i in 1..3 {
        let delivered = metric(
            cluster.api(i),
            "wasmhook_attempts_total",
            "outcome=\"success\"",
        )
        .await;
        let share = delivered / acknowledged.len() as f64;
        figure!(
            "node {i} delivered {delivered} ({:.0} % of the acknowledged events)",
            share * 100.0
        );
        assert!(
            share >= 0.2,
            "node {i} delivered only {delivered} of {}",
            acknowledged.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_agree_on_endpoints_plugins_keys_idempotency_and_concurrency() {
    if !postgres_or_skip() {
        return;
    }
    let _turn = TURN.lock().await;
    let cluster = Cluster::start(3, "").await;
    endpoint_change_is_used_by_another_node_within_1s(&cluster).await;
    tenant_plugin_is_used_by_another_node_within_1s(&cluster).await;
    jwks_is_the_same_on_every_node_before_and_after_a_rotation(&cluster).await;
    idempotency_key_repeated_on_another_node_returns_the_first_answer(&cluster).await;
    max_concurrency_holds_across_the_cluster(&cluster).await;
}

async fn endpoint_change_is_used_by_another_node_within_1s(cluster: &Cluster) {
    let old = Receiver::ok().await;
    let new = Receiver::ok().await;
    cluster.tenant("moves").await;
    let endpoint = cluster.endpoint("moves", json!({"url": old.url()})).await;
    let before = cluster.event(2, "moves", json!({"n": 1})).await;
    old.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        old.received()[0].header("webhook-id"),
        Some(before.as_str())
    );

    let path = &format!("/v1/tenants/moves/endpoints/{endpoint}");
    let new_url = &new.url();
    let (status, body) = cluster.api(1).patch(path, json!({"url": new_url})).await;
    assert_eq!(status, 200, "{body}");
    let patched = Instant::now();
    let seen = until(Duration::from_secs(5), || async move {
        let (_, shown) = cluster.api(2).get(path).await;
        (shown["url"] == *new_url).then(|| patched.elapsed())
    })
    .await
    .expect("node 2 shows the new URL within 5 s");
    figure!("endpoint URL changed on node 1, shown by node 2 after {seen:?}");

    tokio::time::sleep_until((patched + Duration::from_secs(1)).into()).await;
    let after = cluster.event(2, "moves", json!({"n": 2})).await;
    let got = new.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), Some(after.as_str()));
    assert!(
        old.received()
            .iter()
            .all(|r| r.header("webhook-id") != Some(after.as_str())),
        "the event posted to node 2 1 s after the change went to the old URL"
    );
    figure!("an event posted to node 2 1 s after the change went to the new URL");
}

async fn tenant_plugin_is_used_by_another_node_within_1s(cluster: &Cluster) {
    let receiver = Receiver::ok().await;
    cluster.tenant("plugged").await;
    let component =
        std::fs::read(wasmhook::guests::path("swap-v1").expect("guest component swap-v1 built"))
            .unwrap();
    let (status, uploaded) = cluster
        .api(0)
        .raw("PUT", "/v1/tenants/plugged/plugins/swapper", component, &[])
        .await;
    assert_eq!(status, 200, "{uploaded}");
    assert_eq!(uploaded["status"], "ready", "{uploaded}");
    let (status, body) = cluster
        .api(0)
        .post(
            "/v1/tenants/plugged/endpoints",
            json!({"url": receiver.url(), "steps": [{"plugin": "tenant:swapper", "config": {}}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let uploaded_at = Instant::now();
    let seen = until(Duration::from_secs(5), || async move {
        let (status, shown) = cluster
            .api(1)
            .get("/v1/tenants/plugged/plugins/swapper")
            .await;
        (status == 200 && shown["status"] == "ready").then(|| uploaded_at.elapsed())
    })
    .await
    .expect("node 1 lists the plugin within 5 s");
    figure!("tenant plugin uploaded to node 0, ready on node 1 after {seen:?}");

    tokio::time::sleep_until((uploaded_at + Duration::from_secs(1)).into()).await;
    let event = cluster.event(1, "plugged", json!({})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), Some(event.as_str()));
    assert_eq!(
        got[0].header("x-plugin-version"),
        Some("1"),
        "the step ran the tenant plugin"
    );
    let deliveries_path = &format!("/v1/tenants/plugged/events/{event}/deliveries");
    let deliveries = until(Duration::from_secs(10), || async move {
        let (_, list) = cluster.api(1).get(deliveries_path).await;
        (list[0]["status"] == "delivered").then_some(list)
    })
    .await
    .expect("delivered");
    assert_eq!(
        deliveries[0]["attempts"], 1,
        "the first attempt on node 1 had the plugin: {deliveries}"
    );
    figure!("an event posted to node 1 1 s after the upload ran the plugin on its first attempt");
}

async fn jwks_is_the_same_on_every_node_before_and_after_a_rotation(cluster: &Cluster) {
    let jwks = |i: usize| async move {
        let (status, body) = cluster.api(i).get("/.well-known/jwks.json").await;
        assert_eq!(status, 200, "{body}");
        body
    };
    let before = jwks(0).await;
    assert!(!before["keys"].as_array().unwrap().is_empty(), "{before}");
    for i in 1..3 {
        assert_eq!(
            jwks(i).await,
            before,
            "node {i}'s JWKS differs from node 0's"
        );
    }
    let (status, body) = cluster.api(0).post("/v1/keys/rotate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let rotated = Instant::now();
    let after = jwks(0).await;
    assert_ne!(after, before, "the rotation changed node 0's JWKS");
    let after = &after;
    let converged = until(Duration::from_secs(5), || async move {
        for i in 1..3 {
            if jwks(i).await != *after {
                return None;
            }
        }
        Some(rotated.elapsed())
    })
    .await
    .expect("every node serves the rotated JWKS within 5 s");
    figure!(
        "JWKS identical on 3 nodes before the rotation ({} keys) and {converged:?} after it \
         ({} keys)",
        before["keys"].as_array().unwrap().len(),
        after["keys"].as_array().unwrap().len()
    );
    assert!(
        converged <= Duration::from_secs(1),
        "the rotated JWKS took {converged:?} to reach every node"
    );
}

async fn idempotency_key_repeated_on_another_node_returns_the_first_answer(cluster: &Cluster) {
    cluster.tenant("once").await;
    let receiver = Receiver::ok().await;
    cluster
        .endpoint("once", json!({"url": receiver.url()}))
        .await;
    let body = json!({"type": "order.created", "data": {"n": 1}})
        .to_string()
        .into_bytes();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-1-created"),
    ];
    let mut answers = Vec::new();
    for i in 0..3 {
        let (status, answer) = cluster
            .api(i)
            .raw("POST", "/v1/tenants/once/events", body.clone(), &headers)
            .await;
        assert!(matches!(status, 200 | 202), "node {i}: {status} {answer}");
        answers.push(answer);
    }
    assert!(answers[0]["id"].is_string(), "{}", answers[0]);
    for (i, answer) in answers.iter().enumerate().skip(1) {
        assert_eq!(
            answer, &answers[0],
            "node {i} answered the repeat differently"
        );
    }
    let id = answers[0]["id"].as_str().unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<_> = receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(ids, [id], "one event, delivered once");
    figure!("Idempotency-Key repeated on nodes 1 and 2: the first answer ({id}) both times");
}

async fn max_concurrency_holds_across_the_cluster(cluster: &Cluster) {
    let receiver = CountingReceiver::start(Duration::from_millis(200)).await;
    cluster.tenant("limited").await;
    cluster
        .endpoint(
            "limited",
            json!({"url": receiver.url(), "max_concurrency": 2}),
        )
        .await;
    const N: usize = 30;
    let began = Instant::now();
    let ids: Vec<String> =
        futures::future::join_all((0..N).map(|i| cluster.event(i % 3, "limited", json!({"i": i}))))
            .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let seen = receiver.ids();
        if ids.iter().all(|id| seen.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {N} events delivered within 40 s",
            ids.iter().filter(|id| seen.contains(*id)).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let max = receiver.max.load(Ordering::SeqCst);
    figure!(
        "max_concurrency 2, {N} events posted to 3 nodes, receiver taking 200 ms: at most {max} \
         requests at once, all delivered in {:?}",
        began.elapsed()
    );
    assert!(
        max <= 2,
        "{max} requests at once for an endpoint limited to 2"
    );
}

/// A receiver answering 204 after `delay`, counting the requests it holds at once.
#[derive(Clone)]
struct CountingReceiver {
    addr: SocketAddr,
    current: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<String>>>,
}

impl CountingReceiver {
    async fn start(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            current: Arc::default(),
            max: Arc::default(),
            ids: Arc::default(),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move {
                                let now = state.current.fetch_add(1, Ordering::SeqCst) + 1;
                                state.max.fetch_max(now, Ordering::SeqCst);
                                if let Some(id) = request
                                    .headers()
                                    .get("webhook-id")
                                    .and_then(|v| v.to_str().ok())
                                {
                                    state.ids.lock().unwrap().push(id.to_string());
                                }
                                tokio::time::sleep(delay).await;
                                state.current.fetch_sub(1, Ordering::SeqCst);
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(204)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn ids(&self) -> HashSet<String> {
        self.ids.lock().unwrap().iter().cloned().collect()
    }
}
