//! Shared pieces of the end-to-end tests: an engine on a temporary SQLite file (or, with
//! `WASMHOOK_TEST_STORE=postgres`, a fresh database of a throwaway PostgreSQL server: see
//! [`postgres`]), scripted HTTP receivers on 127.0.0.1, and a small JSON client for the admin
//! API. Everything runs over real loopback sockets.

#![allow(dead_code)]

pub mod browser;
pub mod plugin_host;
pub mod postgres;
pub mod process;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use wasmhook::config::Config;
use wasmhook::demo::client::ApiClient;
use wasmhook::server::{self, Server};

/// Admin token of test engines.
pub const ADMIN: &str = "test-admin-token-0123456789";

/// A config for tests: temporary data dir, random port, 127.0.0.1 allowed, a short retry schedule
/// without jitter, the auth+security policy off (tests that check it turn it on), a shared
/// compiled-code cache so that each engine does not recompile the built-in plugins.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut config = Config {
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN.into()),
        ..Default::default()
    };
    config.http.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    config.delivery.retry_schedule = vec![Duration::from_millis(100), Duration::from_millis(200)];
    config.delivery.jitter = 0.0;
    config.delivery.request_timeout = Duration::from_secs(5);
    config.delivery.shutdown_grace = Duration::from_secs(2);
    config.plugins.require_auth_and_security = false;
    config.plugins.cache_dir = Some(shared_cache_dir());
    config
}

/// The store backend the suite runs on: `WASMHOOK_TEST_STORE=postgres` (or `postgresql`, `pg`)
/// for PostgreSQL, unset or `sqlite` for SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    /// `<data_dir>/wasmhook.sqlite3` (the default).
    Sqlite,
    /// A fresh database per engine on the test PostgreSQL server.
    Postgres,
}

impl StoreBackend {
    /// The backend chosen by `WASMHOOK_TEST_STORE`; panics on an unknown value.
    pub fn current() -> Self {
        match std::env::var("WASMHOOK_TEST_STORE")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "sqlite" => Self::Sqlite,
            "postgres" | "postgresql" | "pg" => Self::Postgres,
            other => panic!("WASMHOOK_TEST_STORE={other}: expected `sqlite` or `postgres`"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// True when the suite runs on `backend`; otherwise prints why the calling test skips and
/// returns false: `if !support::runs_on(StoreBackend::Sqlite, "reads the file") { return; }`.
pub fn runs_on(backend: StoreBackend, reason: &str) -> bool {
    let current = StoreBackend::current();
    if current != backend {
        // Straight to stderr, past the harness's capture: the log shows every skip.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED on {}: only meaningful on {}: {reason}",
            current.name(),
            backend.name()
        );
    }
    current == backend
}

/// The `store.url` for a new engine on the current backend: `None` (SQLite in its data dir) or
/// a fresh PostgreSQL database.
pub async fn store_url() -> Option<String> {
    match StoreBackend::current() {
        StoreBackend::Sqlite => None,
        StoreBackend::Postgres => Some(postgres::database().await),
    }
}

/// Compiled-code cache shared by the tests of this run.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasmhook-test-cache")
}

/// An engine running in this process with its temporary directory.
pub struct TestEngine {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub api: Api,
    /// The backend it stores in ([`StoreBackend::current`] unless the test chose otherwise).
    pub backend: StoreBackend,
    /// Its `store.url` (`None`: SQLite in `dir`).
    pub store_url: Option<String>,
}

impl TestEngine {
    /// Starts an engine with [`test_config`] changed by `adjust`, on the backend chosen by
    /// `WASMHOOK_TEST_STORE` (a fresh database per engine on PostgreSQL).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path().to_path_buf());
        config.store.url = store_url().await;
        adjust(&mut config);
        let store_url = config.store.url.clone();
        let backend = match &store_url {
            Some(url) if url.starts_with("postgres") => StoreBackend::Postgres,
            _ => StoreBackend::Sqlite,
        };
        let server = server::start(config).await.expect("engine starts");
        let api = Api::new(server.url(), ADMIN);
        Self {
            server,
            dir,
            api,
            backend,
            store_url,
        }
    }

    /// `SELECT COUNT(*) FROM <table>` straight from the engine's store (SQLite file or
    /// PostgreSQL database), bypassing the engine.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.store_url {
            Some(url) if url.starts_with("postgres") => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test database");
                let connection = tokio::spawn(connection);
                let count: i64 = client
                    .query_one(sql.as_str(), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {}", postgres::describe(&e)))
                    .get(0);
                drop(client);
                let _ = connection.await;
                count
            }
            other => {
                let path = match other.as_deref().and_then(|u| u.strip_prefix("sqlite://")) {
                    Some(path) if !path.is_empty() => std::path::PathBuf::from(path),
                    _ => self.server.engine.config.data_dir.join("wasmhook.sqlite3"),
                };
                rusqlite::Connection::open(&path)
                    .unwrap()
                    .query_row(&sql, [], |r| r.get(0))
                    .unwrap_or_else(|e| panic!("{sql} in {}: {e}", path.display()))
            }
        }
    }

    /// Starts an engine with [`test_config`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Creates a tenant; returns (id, token).
    pub async fn tenant(&self, id: &str) -> (String, String) {
        let (status, body) = self
            .api
            .post("/v1/tenants", serde_json::json!({"id": id, "name": id}))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["tenant"]["id"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    /// Creates an endpoint for `tenant`; returns its id.
    pub async fn endpoint(&self, tenant: &str, spec: Value) -> String {
        let (status, body) = self
            .api
            .post(&format!("/v1/tenants/{tenant}/endpoints"), spec)
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Posts an event; returns its id.
    pub async fn event(&self, tenant: &str, event_type: &str, data: Value) -> String {
        let (status, body) = self
            .api
            .post(&format!("/v1/tenants/{tenant}/events"), serde_json::json!({"type": event_type, "resource": {"type": "invoice", "id": "in_1"}, "data": data}))
            .await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Waits until every delivery of `event` has left `pending`; returns them.
    pub async fn settled(&self, tenant: &str, event: &str, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self
                .api
                .get(&format!("/v1/tenants/{tenant}/events/{event}/deliveries"))
                .await;
            assert_eq!(status, 200, "{body}");
            let deliveries = body.as_array().unwrap().clone();
            if deliveries.iter().all(|d| d["status"] != "pending") {
                return deliveries;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries still pending after {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The attempts of a delivery.
    pub async fn attempts(&self, tenant: &str, event: &str, delivery: &str) -> Vec<Value> {
        let (status, body) = self
            .api
            .get(&format!(
                "/v1/tenants/{tenant}/events/{event}/deliveries/{delivery}/attempts"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body.as_array().unwrap().clone()
    }
}

/// A JSON client of the admin API.
#[derive(Clone)]
pub struct Api(ApiClient);

impl Api {
    pub fn new(base: String, token: &str) -> Self {
        Self(ApiClient::new(base, token))
    }

    /// The same API with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self(self.0.with_token(token))
    }

    /// Sends a request with raw body bytes and extra headers; returns status and parsed JSON
    /// (`Value::Null` for an empty body, a string for a non-JSON one). Panics when the API is
    /// unreachable.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, value) = self.0.send(method, path, body, headers).await;
        assert_ne!(status, 0, "API unreachable: {value}");
        (status, value)
    }

    /// Sends `body` as JSON.
    pub async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.raw(
            method,
            path,
            body.to_string().into_bytes(),
            &[("content-type", "application/json")],
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.json("POST", path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.json("PATCH", path, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.raw("GET", path, Vec::new(), &[]).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.raw("DELETE", path, Vec::new(), &[]).await
    }
}

/// What a receiver does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this status (and optional headers).
    Status(u16, Vec<(String, String)>),
    /// Close the connection without answering.
    Drop,
    /// Wait, then answer with the status.
    Slow(Duration, u16),
}

/// A request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

type Judge = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

struct ReceiverState {
    script: VecDeque<Reply>,
    default: Reply,
    judge: Option<Judge>,
    received: Vec<Received>,
}

/// An HTTP receiver on 127.0.0.1 that records requests and answers from a script.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// A receiver answering `script` in order, then `default`.
    pub async fn start(script: Vec<Reply>, default: Reply) -> Self {
        Self::start_inner(script, default, None).await
    }

    /// A receiver answering 204 to everything.
    pub async fn ok() -> Self {
        Self::start(vec![], Reply::Status(204, vec![])).await
    }

    /// A receiver whose answer is decided by `judge` (e.g. checking a credential).
    pub async fn judging(judge: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_inner(vec![], Reply::Status(204, vec![]), Some(Arc::new(judge))).await
    }

    async fn start_inner(script: Vec<Reply>, default: Reply, judge: Option<Judge>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState {
            script: script.into(),
            default,
            judge,
            received: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                            let state = state.clone();
                            async move { handle(state, request).await }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:port/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}
impl std::error::Error for Dropped {}

async fn handle(
    state: Arc<Mutex<ReceiverState>>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let received = Received {
        at: Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
    };
    let reply = {
        let mut state = state.lock().unwrap();
        let reply = match &state.judge {
            Some(judge) => judge(&received),
            None => state
                .script
                .pop_front()
                .unwrap_or_else(|| state.default.clone()),
        };
        state.received.push(received);
        reply
    };
    let (status, headers) = match reply {
        Reply::Drop => return Err(Dropped),
        Reply::Slow(delay, status) => {
            tokio::time::sleep(delay).await;
            (status, vec![])
        }
        Reply::Status(status, headers) => (status, headers),
    };
    let mut response = hyper::Response::builder().status(status);
    for (k, v) in headers {
        response = response.header(k, v);
    }
    Ok(response.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
}
