//! Secrets never appear in clear: not in API answers, not in error messages, not in the engine's
//! log (`RUST_LOG=debug`, everything the process writes), not in the database (the raw bytes of
//! the SQLite file and its WAL, or every PostgreSQL table as text). Sealed secrets still work:
//! deliveries carry them, an answer sent back with its redaction markers keeps them, a master key
//! rotation seals everything again under the new key, and a node started with the wrong master
//! key refuses to start and names both keys.
//!
//! The engine runs as a child process (the real binary) so that its whole log is captured; the
//! clear private keys, which never leave the host, are read at the end from an engine started in
//! this process on the same store ([`TestEngine`]), and their PEM bodies searched for too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::support::process::{free_port, try_get};
use crate::support::{ADMIN, Api, Received, Receiver, TestEngine};

/// The marker answers show instead of a secret.
const MARKER: &str = "wh:redacted";
/// The marker as a URL password.
const URL_MARKER: &str = "wh%3Aredacted";

/// A distinctive random secret: `<kind>-<32 hex>`.
fn secret(kind: &str) -> String {
    format!("{kind}{:032x}", rand::random::<u128>())
}

/// The `wasmhook serve` child process of this test, killed when dropped.
struct Node {
    child: Child,
    api: Api,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasmhook serve` on `dir` (and `store`), logging at debug level to `<dir>/engine.log`.
fn spawn(dir: &Path, port: u16, store: Option<&str>, extra: &[&str]) -> Child {
    let config = dir.join("test.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ncache_dir = {:?}\n",
            crate::support::shared_cache_dir().to_str().unwrap()
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("engine.log"))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmhook"));
    command
        .arg("serve")
        .args(["--config", config.to_str().unwrap()])
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--allow-cidr", "127.0.0.1/32"])
        .args(["--retry-schedule", "200ms,200ms"])
        .args(["--require-auth-and-security", "false"])
        .args(extra)
        .env("WASMHOOK_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "debug")
        .env_remove("WASMHOOK_CONFIG")
        .env_remove("WASMHOOK_STORE")
        .env_remove("WASMHOOK_MASTER_KEY")
        .env_remove("WASMHOOK_LEASE_TTL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(url) = store {
        command.args(["--store", url]);
    }
    command.spawn().expect("start the wasmhook binary")
}

async fn start_node(dir: &Path, store: Option<&str>) -> Node {
    let port = free_port();
    let mut child = spawn(dir, port, store, &[]);
    let api = Api::new(format!("http://127.0.0.1:{port}"), ADMIN);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the engine exited early: {status}\n{}", tail(dir));
        }
        if let Ok(Ok((200, _))) =
            tokio::time::timeout(Duration::from_secs(1), try_get(&api, "/healthz")).await
        {
            return Node { child, api };
        }
        assert!(
            Instant::now() < deadline,
            "engine not healthy\n{}",
            tail(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a node with SIGTERM (a graceful shutdown: the store is flushed and closed).
async fn stop(mut node: Node) {
    let pid = node.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "engine did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The end of the engine's log (for failure messages).
fn tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("engine.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Everything the store holds, as text: the raw bytes of the SQLite database and its WAL (and
/// any other `wasmhook.sqlite3*` file), or every table of the PostgreSQL database's `public`
/// schema as `SELECT t::text FROM <table> t` (bytea columns then read as hex: search for the hex
/// of a secret too).
async fn dump_store(dir: &Path, store: Option<&str>) -> String {
    match store {
        Some(url) if url.starts_with("postgres") => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            let connection = tokio::spawn(connection);
            let tables: Vec<String> = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' ORDER BY 1",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert!(tables.iter().any(|t| t == "endpoints"), "{tables:?}");
            let mut text = String::new();
            for table in tables {
                let sql = format!("SELECT t::text FROM \"{table}\" t");
                for row in client.query(sql.as_str(), &[]).await.unwrap() {
                    text.push_str(&table);
                    text.push_str(": ");
                    text.push_str(row.get::<_, &str>(0));
                    text.push('\n');
                }
            }
            drop(client);
            let _ = connection.await;
            text
        }
        _ => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("wasmhook.sqlite3"))
                })
                .collect();
            files.sort();
            assert!(
                files.iter().any(|p| p.ends_with("wasmhook.sqlite3")),
                "{files:?}"
            );
            let mut text = String::new();
            for file in files {
                let bytes = std::fs::read(&file).unwrap_or_default();
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
            text
        }
    }
}

/// The needles (label, text) found in `haystack`, also as hex (PostgreSQL's bytea text form).
fn found_in(haystack: &str, needles: &[(String, String)]) -> Vec<String> {
    let lower = haystack.to_ascii_lowercase();
    needles
        .iter()
        .filter(|(_, needle)| {
            haystack.contains(needle.as_str()) || lower.contains(&hex::encode(needle.as_bytes()))
        })
        .map(|(label, _)| label.clone())
        .collect()
}

/// The lines of `text` holding a needle (for failure messages).
fn lines_with(text: &str, needles: &[(String, String)]) -> String {
    text.lines()
        .filter(|line| !found_in(line, needles).is_empty())
        .map(|line| line.chars().take(600).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Master key ids that sealed values in `dump` name (`whsealed:v1:<id>:`).
fn sealing_key_ids(dump: &str) -> BTreeSet<String> {
    dump.match_indices("whsealed:v1:")
        .filter_map(|(at, prefix)| {
            let rest = &dump[at + prefix.len()..];
            let id = rest.get(..16)?;
            (id.bytes().all(|b| b.is_ascii_hexdigit()) && rest[16..].starts_with(':'))
                .then(|| id.to_string())
        })
        .collect()
}

/// A token route on 127.0.0.1: `judge(path, headers, body)` gives the status and JSON answer.
async fn token_route(
    judge: impl Fn(&str, &http::HeaderMap, &[u8]) -> (u16, Value) + Send + Sync + 'static,
) -> (SocketAddr, Arc<Mutex<usize>>) {
    let judge = Arc::new(judge);
    let calls = Arc::new(Mutex::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let judge = judge.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let judge = judge.clone();
                        let counted = counted.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            *counted.lock().unwrap() += 1;
                            let (status, answer) = judge(parts.uri.path(), &parts.headers, &body);
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
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
    (addr, calls)
}

/// `application/x-www-form-urlencoded` pairs (the test's values need no decoding).
fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The secrets of the test, the endpoints holding them and what their receivers must get.
struct Fixture {
    tenant_token: String,
    api_key: String,
    basic_password: String,
    webhook_secret: String,
    url_password: String,
    oauth_secret: String,
    extra_resource: String,
    extra_assertion: String,
    audience_password: String,
    header_secret: String,
    body_secret: String,
    iss_password: String,
    oauth_token: String,
    http_token: String,
}

impl Fixture {
    fn new() -> Self {
        Self {
            tenant_token: String::new(),
            api_key: secret("apikey"),
            basic_password: secret("basicpw"),
            webhook_secret: STANDARD.encode(rand::random::<[u8; 32]>()),
            url_password: secret("urlpw"),
            oauth_secret: secret("oauthsecret"),
            extra_resource: secret("extraresource"),
            extra_assertion: secret("extraassertion"),
            audience_password: secret("audpw"),
            header_secret: secret("headersecret"),
            body_secret: secret("bodysecret"),
            iss_password: secret("isspw"),
            oauth_token: secret("oauthtoken"),
            http_token: secret("httptoken"),
        }
    }

    fn body(&self) -> String {
        format!(r#"{{"user":"acme","password":"{}"}}"#, self.body_secret)
    }

    /// Every secret value (and derived form a leak could take), labelled.
    fn needles(&self) -> Vec<(String, String)> {
        let mut needles: Vec<(String, String)> = [
            ("api-key key", &self.api_key),
            ("basic-auth password", &self.basic_password),
            ("standard-webhooks secret", &self.webhook_secret),
            ("endpoint URL password", &self.url_password),
            ("oauth2 client_secret", &self.oauth_secret),
            ("oauth2 extra_params.resource", &self.extra_resource),
            ("oauth2 extra_params.assertion", &self.extra_assertion),
            ("oauth2 audience URL password", &self.audience_password),
            ("http-token header value", &self.header_secret),
            ("http-token body secret", &self.body_secret),
            ("jws iss URL password", &self.iss_password),
            ("fetched oauth2 token", &self.oauth_token),
            ("fetched http-token token", &self.http_token),
        ]
        .into_iter()
        .map(|(label, value)| (label.to_string(), value.clone()))
        .collect();
        needles.push((
            "basic-auth credentials (base64)".into(),
            STANDARD.encode(format!("acme:{}", self.basic_password)),
        ));
        needles.push((
            "standard-webhooks secret (whsec_)".into(),
            format!("whsec_{}", self.webhook_secret),
        ));
        needles
    }

    /// Needles for what the engine keeps (log, database): the secrets, the tenant's token and the
    /// admin token (both shown once, in the answer that creates them or in the configuration).
    fn stored_needles(&self) -> Vec<(String, String)> {
        let mut needles = self.needles();
        needles.push(("tenant token".into(), self.tenant_token.clone()));
        needles.push(("admin token".into(), ADMIN.into()));
        needles.push(("private key PEM header".into(), "PRIVATE KEY-----".into()));
        needles.push((
            "private key PEM begin".into(),
            "-----BEGIN PRIVATE KEY".into(),
        ));
        needles
    }
}

/// Every answer of the API read during the test, for the final scan.
#[derive(Default)]
struct Answers(Vec<(String, String)>);

impl Answers {
    fn keep(&mut self, what: impl Into<String>, body: &Value) {
        self.0.push((what.into(), body.to_string()));
    }

    async fn get(&mut self, api: &Api, path: &str) -> Value {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        self.keep(format!("GET {path}"), &body);
        body
    }

    fn scan(&self, needles: &[(String, String)], leaks: &mut Leaks) {
        for (what, body) in &self.0 {
            leaks.scan(what, body, needles);
        }
    }
}

/// What the scans found, reported together at the end (one run shows every leak).
#[derive(Default)]
struct Leaks(Vec<String>);

impl Leaks {
    /// Notes the needles `text` (what `what` names) holds, with the lines holding them.
    fn scan(&mut self, what: &str, text: &str, needles: &[(String, String)]) {
        let found = found_in(text, needles);
        if !found.is_empty() {
            self.0.push(format!(
                "{what} holds {found:?} in clear:\n{}",
                lines_with(text, needles)
            ));
        }
    }

    fn note(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn assert_none(&self) {
        assert!(
            self.0.is_empty(),
            "{} leak(s):\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

/// Waits until `receiver` got `n` more requests than `before`; returns the new ones by path.
async fn deliveries(receiver: &Receiver, before: usize, n: usize) -> Vec<Received> {
    let got = receiver
        .wait_for(before + n, Duration::from_secs(60))
        .await
        .split_off(before);
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/basic", "/http", "/jws", "/key", "/oauth"][..],
        "one delivery per endpoint"
    );
    got
}

/// Checks that every endpoint's receiver got its clear credential.
fn check_credentials(got: &[Received], fx: &Fixture, api_key: &str) {
    let by = |path: &str| got.iter().find(|r| r.path == path).unwrap();
    assert_eq!(by("/key").header("x-api-key"), Some(api_key));
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("acme:{}", fx.basic_password))
    );
    let request = by("/basic");
    assert_eq!(request.header("authorization"), Some(basic.as_str()));
    // The Standard Webhooks signature verifies with the clear secret.
    let signed = format!(
        "{}.{}.{}",
        request.header("webhook-id").unwrap(),
        request.header("webhook-timestamp").unwrap(),
        String::from_utf8_lossy(&request.body)
    );
    let key = STANDARD.decode(&fx.webhook_secret).unwrap();
    let expected = format!(
        "v1,{}",
        STANDARD.encode(hmac_sha256(&key, signed.as_bytes()))
    );
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
    let bearer = |token: &str| format!("Bearer {token}");
    assert_eq!(
        by("/oauth").header("authorization"),
        Some(bearer(&fx.oauth_token).as_str())
    );
    assert_eq!(
        by("/http").header("authorization"),
        Some(bearer(&fx.http_token).as_str())
    );
    assert_eq!(by("/jws").header("content-type"), Some("application/jwt"));
}

/// HMAC-SHA256 (RFC 2104), to verify Standard Webhooks signatures.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

async fn post_event(api: &Api, n: u32) -> String {
    let (status, body) = api
        .post(
            "/v1/tenants/acme/events",
            json!({"type": "order.created", "data": {"n": n}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_clear_in_answers_logs_errors_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::store_url().await;
    let store = store.as_deref();
    let mut fx = Fixture::new();
    let mut answers = Answers::default();

    // Token routes that only answer the right credentials.
    let (token_addr, token_calls) = {
        let (oauth_secret, resource, assertion) = (
            fx.oauth_secret.clone(),
            fx.extra_resource.clone(),
            fx.extra_assertion.clone(),
        );
        let (header_secret, body) = (fx.header_secret.clone(), fx.body());
        let (oauth_token, http_token) = (fx.oauth_token.clone(), fx.http_token.clone());
        token_route(move |path, headers, request_body| {
            let ok = match path {
                "/oauth" => {
                    let form = form(request_body);
                    let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
                    has("client_secret", &oauth_secret)
                        && has("resource", &resource)
                        && has("assertion", &assertion)
                }
                "/http" => {
                    headers.get("x-token-key").and_then(|v| v.to_str().ok())
                        == Some(header_secret.as_str())
                        && request_body == body.as_bytes()
                }
                _ => false,
            };
            match (ok, path) {
                (true, "/oauth") => (
                    200,
                    json!({"access_token": oauth_token, "expires_in": 3600}),
                ),
                (true, _) => (200, json!({"access_token": http_token})),
                (false, _) => (401, json!({"error": "invalid_client"})),
            }
        })
        .await
    };
    let receiver = Receiver::ok().await;
    let hook = |path: &str| format!("http://{}{path}", receiver.addr);
    let token_url = |path: &str| format!("http://{token_addr}{path}");

    let node = start_node(dir.path(), store).await;
    let api = node.api.clone();
    let (status, body) = api
        .post("/v1/tenants", json!({"id": "acme", "name": "Acme"}))
        .await;
    assert_eq!(status, 201, "{body}");
    fx.tenant_token = body["token"].as_str().unwrap().to_string();

    // A client certificate: its private key is generated by the host and never leaves it.
    let (status, certificate) = api
        .post(
            "/v1/tenants/acme/client-certificates",
            json!({"name": "mtls", "dns_names": ["client.example.com"]}),
        )
        .await;
    assert_eq!(status, 201, "{certificate}");
    answers.keep("create client certificate", &certificate);
    let certificate_id = certificate["id"].as_str().unwrap().to_string();

    // One endpoint per kind of secret.
    let basic_url = format!(
        "http://hookuser:{}@{}/basic",
        fx.url_password, receiver.addr
    );
    let audience = format!("https://aud:{}@api.example.com/", fx.audience_password);
    let iss = format!("https://iss:{}@issuer.example.com/", fx.iss_password);
    let specs = [
        (
            "key",
            json!({"url": hook("/key"), "steps": [
                {"plugin": "api-key", "config": {"key": fx.api_key, "header": "x-api-key"}}]}),
        ),
        (
            "basic",
            json!({"url": basic_url, "steps": [
                {"plugin": "basic-auth", "config": {"client_id": "acme", "client_secret": fx.basic_password}},
                {"plugin": "standard-webhooks", "config": {"secret": format!("whsec_{}", fx.webhook_secret)}}]}),
        ),
        (
            // No `provider`: bearer's default (oauth2-client-credentials) is the provider.
            "oauth",
            json!({"url": hook("/oauth"), "steps": [{"plugin": "bearer", "config": {"provider_config": {
                "token_url": token_url("/oauth"), "client_id": "acme-client",
                "client_secret": fx.oauth_secret, "auth_method": "client_secret_post",
                "audience": audience,
                "extra_params": {"resource": fx.extra_resource, "assertion": fx.extra_assertion}}}}]}),
        ),
        (
            "http",
            json!({"url": hook("/http"), "steps": [{"plugin": "bearer", "config": {"provider": "http-token", "provider_config": {
                "token_url": token_url("/http"),
                "headers": {"x-token-key": fx.header_secret, "content-type": "application/json"},
                "body": fx.body(), "token_pointer": "/access_token"}}}]}),
        ),
        (
            "jws",
            json!({"url": hook("/jws"), "steps": [{"plugin": "jws", "config": {"alg": "ES256", "iss": iss}}]}),
        ),
    ];
    let mut ids = std::collections::BTreeMap::new();
    for (name, spec) in &specs {
        let (status, body) = api.post("/v1/tenants/acme/endpoints", spec.clone()).await;
        assert_eq!(status, 201, "{name}: {body}");
        answers.keep(format!("create endpoint {name}"), &body);
        ids.insert(*name, body["id"].as_str().unwrap().to_string());
    }
    let id = |name: &str| ids[name].clone();

    // Every secret reads as the marker; the rest is shown.
    let view = answers
        .get(&api, &format!("/v1/tenants/acme/endpoints/{}", id("key")))
        .await;
    assert_eq!(view["steps"][0]["config"]["key"], MARKER);
    assert_eq!(view["steps"][0]["config"]["header"], "x-api-key");
    let view = answers
        .get(&api, &format!("/v1/tenants/acme/endpoints/{}", id("basic")))
        .await;
    assert_eq!(
        view["url"],
        format!("http://hookuser:{URL_MARKER}@{}/basic", receiver.addr)
    );
    assert_eq!(view["steps"][0]["config"]["client_secret"], MARKER);
    assert_eq!(view["steps"][0]["config"]["client_id"], "acme");
    assert_eq!(view["steps"][1]["config"]["secret"], MARKER);
    let view = answers
        .get(&api, &format!("/v1/tenants/acme/endpoints/{}", id("oauth")))
        .await;
    let provider = &view["steps"][0]["config"]["provider_config"];
    assert_eq!(provider["client_secret"], MARKER);
    assert_eq!(provider["client_id"], "acme-client");
    assert_eq!(provider["token_url"], token_url("/oauth"));
    assert_eq!(provider["extra_params"]["resource"], MARKER);
    assert_eq!(provider["extra_params"]["assertion"], MARKER);
    assert_eq!(
        provider["audience"],
        format!("https://aud:{URL_MARKER}@api.example.com/")
    );
    let view = answers
        .get(&api, &format!("/v1/tenants/acme/endpoints/{}", id("http")))
        .await;
    let provider = &view["steps"][0]["config"]["provider_config"];
    assert_eq!(provider["headers"]["x-token-key"], MARKER);
    assert_eq!(provider["headers"]["content-type"], MARKER);
    assert_eq!(provider["body"], MARKER);
    assert_eq!(provider["token_pointer"], "/access_token");
    let view = answers
        .get(&api, &format!("/v1/tenants/acme/endpoints/{}", id("jws")))
        .await;
    assert_eq!(
        view["steps"][0]["config"]["iss"],
        format!("https://iss:{URL_MARKER}@issuer.example.com/")
    );
    let list = answers.get(&api, "/v1/tenants/acme/endpoints").await;
    assert_eq!(list.as_array().unwrap().len(), 5);

    // Deliveries carry the clear secrets.
    let first = post_event(&api, 1).await;
    let got = deliveries(&receiver, 0, 5).await;
    check_credentials(&got, &fx, &fx.api_key);

    // Every answer sent back as is (markers included) keeps every secret.
    for name in ids.keys() {
        let path = format!("/v1/tenants/acme/endpoints/{}", id(name));
        let (status, view) = api.get(&path).await;
        assert_eq!(status, 200, "{view}");
        let (status, body) = api
            .patch(
                &path,
                json!({"url": view["url"], "steps": view["steps"], "description": format!("{name}, sent back")}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        answers.keep(format!("PATCH {name} sent back"), &body);
        assert_eq!(body["steps"], view["steps"], "{name}");
        assert_eq!(body["url"], view["url"], "{name}");
    }
    let token_fetches = *token_calls.lock().unwrap();
    post_event(&api, 2).await;
    let got = deliveries(&receiver, 5, 5).await;
    check_credentials(&got, &fx, &fx.api_key);
    assert_eq!(
        *token_calls.lock().unwrap(),
        token_fetches,
        "the tokens' configs are unchanged (cached tokens still serve)"
    );

    // A marker that stands for nothing is refused, naming the field, echoing no secret.
    let bad_secret = secret("badsecret");
    let key_path = format!("/v1/tenants/acme/endpoints/{}", id("key"));
    let basic_path = format!("/v1/tenants/acme/endpoints/{}", id("basic"));
    let refusals = [
        (
            "POST",
            "/v1/tenants/acme/endpoints".to_string(),
            json!({"url": hook("/new"), "steps": [{"plugin": "api-key", "config": {"key": MARKER}}]}),
            "steps[0].config.key",
        ),
        (
            "PATCH",
            key_path.clone(),
            json!({"steps": [{"plugin": "basic-auth", "config": {"client_id": "a", "client_secret": MARKER}}]}),
            "steps[0].config.client_secret",
        ),
        (
            "PATCH",
            key_path.clone(),
            json!({"steps": [{"plugin": "api-key", "config": {"key": MARKER, "header": MARKER}}]}),
            "steps[0].config.header",
        ),
        (
            "PATCH",
            key_path.clone(),
            json!({"url": format!("http://u:{URL_MARKER}@{}/key", receiver.addr)}),
            "url",
        ),
        (
            // The stored password never follows the URL to another host.
            "PATCH",
            basic_path.clone(),
            json!({"url": format!("http://hookuser:{URL_MARKER}@localhost:{}/basic", receiver.addr.port())}),
            "url",
        ),
        (
            "PATCH",
            key_path.clone(),
            json!({"description": MARKER}),
            "description",
        ),
        (
            // Validation errors name the field, not the value.
            "PATCH",
            basic_path.clone(),
            json!({"steps": [{"plugin": "standard-webhooks", "config": {"secret": format!("not base64 {bad_secret}")}}]}),
            "steps[0].config",
        ),
        (
            "PATCH",
            key_path.clone(),
            json!({"steps": [{"plugin": "api-key", "config": {"key": format!("{bad_secret}\u{7}")}}]}),
            "steps[0].config",
        ),
    ];
    for (method, path, body, field) in refusals {
        let (status, answer) = api.json(method, &path, body.clone()).await;
        assert_eq!(status, 422, "{method} {path} {body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        answers.keep(format!("refused {method} {path} {body}"), &answer);
    }
    // Nothing refused was stored.
    let view = answers.get(&api, &key_path).await;
    assert_eq!(view["steps"][0]["plugin"], "api-key");
    assert_eq!(view["description"], "key, sent back");

    // A new value replaces the stored one.
    let new_key = secret("newapikey");
    let (status, body) = api
        .patch(
            &key_path,
            json!({"steps": [{"plugin": "api-key", "config": {"key": new_key, "header": "x-api-key"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["steps"][0]["config"]["key"], MARKER);
    answers.keep("PATCH new key", &body);
    post_event(&api, 3).await;
    let got = deliveries(&receiver, 10, 5).await;
    check_credentials(&got, &fx, &new_key);

    // Everything else the API shows.
    for path in [
        "/v1/tenants".to_string(),
        "/v1/tenants/acme".to_string(),
        "/v1/tenants/acme/endpoints".to_string(),
        "/v1/tenants/acme/client-certificates".to_string(),
        format!("/v1/tenants/acme/client-certificates/{certificate_id}"),
        "/v1/keys".to_string(),
        "/.well-known/jwks.json".to_string(),
        "/v1/plugins".to_string(),
        "/v1/tenants/acme/plugins".to_string(),
        "/metrics".to_string(),
        "/openapi.json".to_string(),
    ] {
        answers.get(&api, &path).await;
    }
    let keys = answers.get(&api, "/v1/keys").await;
    assert!(!keys.as_array().unwrap().is_empty(), "a signing key exists");
    let deliveries_of_first = answers
        .get(&api, &format!("/v1/tenants/acme/events/{first}/deliveries"))
        .await;
    for delivery in deliveries_of_first.as_array().unwrap() {
        let delivery_id = delivery["id"].as_str().unwrap();
        answers
            .get(
                &api,
                &format!("/v1/tenants/acme/events/{first}/deliveries/{delivery_id}/attempts"),
            )
            .await;
    }
    answers
        .get(&api, &format!("/v1/tenants/acme/events/{first}"))
        .await;
    let mut needles = fx.needles();
    needles.push(("new api key".into(), new_key.clone()));
    needles.push(("refused secret".into(), bad_secret.clone()));
    needles.push(("private key PEM".into(), "PRIVATE KEY".into()));
    let mut leaks = Leaks::default();
    answers.scan(&needles, &mut leaks);

    // The database holds none of it; every sealed value names one key.
    let mut stored_needles = fx.stored_needles();
    stored_needles.push(("new api key".into(), new_key.clone()));
    stored_needles.push(("refused secret".into(), bad_secret.clone()));
    let dump = dump_store(dir.path(), store).await;
    leaks.scan("the database", &dump, &stored_needles);
    let old_keys = sealing_key_ids(&dump);
    assert_eq!(old_keys.len(), 1, "{old_keys:?}");
    let old_key = old_keys.into_iter().next().unwrap();

    // Rotating the master key seals everything again under a new key; deliveries go on.
    let (status, rotation) = api.post("/v1/secrets/rotate-master", json!({})).await;
    assert_eq!(status, 200, "{rotation}");
    answers.keep("rotate-master", &rotation);
    let new_key_id = rotation["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_key_id, old_key, "{rotation}");
    assert!(
        rotation["previous_key_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == old_key.as_str()),
        "{rotation}"
    );
    assert!(rotation["resealed"].as_u64().unwrap() >= 5, "{rotation}");
    post_event(&api, 4).await;
    let got = deliveries(&receiver, 15, 5).await;
    check_credentials(&got, &fx, &new_key);
    // Nothing sealed under the old key is left in the database's bytes: neither live values nor
    // stale copies (on SQLite, earlier versions of rewritten pages stay in the WAL, and
    // overwritten cells in the free space of pages, unless the rotation scrubs them).
    let dump = dump_store(dir.path(), store).await;
    let keys_after_rotation = sealing_key_ids(&dump);
    assert!(keys_after_rotation.contains(&new_key_id));
    if keys_after_rotation.contains(&old_key) {
        leaks.note(format!(
            "after the rotation, the database still holds values sealed under the old key {old_key} ({} of them)",
            dump.matches(&format!("whsealed:v1:{old_key}:")).count()
        ));
    }
    leaks.scan("the database after the rotation", &dump, &stored_needles);
    stop(node).await;

    // A node with another master key refuses to start, naming the keys.
    let wrong = hex::encode(rand::random::<[u8; 32]>());
    let wrong_id = wasmhook::secrets::MasterKey::parse(&wrong, "test")
        .unwrap()
        .id()
        .to_string();
    let before = std::fs::read_to_string(dir.path().join("engine.log"))
        .unwrap_or_default()
        .len();
    let mut child = spawn(dir.path(), free_port(), store, &["--master-key", &wrong]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "a node with the wrong master key kept running\n{}",
                tail(dir.path())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("engine.log")).unwrap();
    let refusal = &log[before..];
    assert!(
        refusal.contains(&new_key_id) && refusal.contains(&wrong_id),
        "the refusal names the key that sealed ({new_key_id}) and the one configured ({wrong_id}):\n{refusal}"
    );

    // The right key starts again, and the secrets still work.
    let node = start_node(dir.path(), store).await;
    post_event(&node.api, 5).await;
    let got = deliveries(&receiver, 20, 5).await;
    check_credentials(&got, &fx, &new_key);
    stop(node).await;

    // The whole log (debug level, three runs) holds no secret.
    let log = std::fs::read_to_string(dir.path().join("engine.log")).unwrap();
    assert!(log.contains("DEBUG"), "the log is at debug level");
    leaks.scan("the engine's log", &log, &stored_needles);

    // The private keys, read back in clear by an engine on the same store, appear nowhere
    // either; the stored URL kept its password through the round trip.
    let dump = dump_store(dir.path(), store).await;
    let data_dir = dir.path().to_path_buf();
    let store_url = store.map(str::to_string);
    let engine = TestEngine::start_with(move |config| {
        config.data_dir = data_dir;
        config.store.url = store_url;
    })
    .await;
    let stored = engine
        .server
        .engine
        .store
        .directory()
        .endpoint(&id("basic"))
        .unwrap();
    assert_eq!(stored.spec.url, basic_url);
    let stored = engine
        .server
        .engine
        .store
        .directory()
        .endpoint(&id("oauth"))
        .unwrap();
    assert_eq!(
        stored.spec.steps[0].config["provider_config"]["audience"],
        audience
    );
    // (key, the public documents made from it: certificate, CSR)
    let mut pems: Vec<(&str, String, Vec<String>)> = Vec::new();
    for record in engine
        .server
        .engine
        .store
        .client_certificates("acme")
        .await
        .unwrap()
    {
        let public = [record.csr_pem, record.certificate_pem];
        let public = public.into_iter().flatten().collect();
        pems.push((
            "client certificate private key",
            record.private_key_pem,
            public,
        ));
    }
    for key in engine.server.engine.store.signing_keys().await.unwrap() {
        pems.push((
            "signing private key",
            key.private_key_pem,
            vec![key.certificate_pem],
        ));
    }
    assert!(pems.len() >= 2, "a client key and a signing key");
    let base64_of = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    let mut pem_needles = Vec::new();
    for (what, pem, public) in pems {
        assert!(pem.contains("PRIVATE KEY-----"), "{what} unsealed");
        // The base64 lines of the key, but those that also appear in its certificate or CSR:
        // a private key embeds its public key (an RSA key its modulus), which is public.
        let public: Vec<String> = public.iter().map(|p| base64_of(p)).collect();
        let private: Vec<&str> = pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .filter(|l| !public.iter().any(|p| p.contains(l)))
            .collect();
        assert!(!private.is_empty(), "{what}: no private-only line");
        for line in private {
            pem_needles.push((what.to_string(), line.to_string()));
        }
    }
    assert!(!pem_needles.is_empty());
    engine.server.shutdown().await;
    leaks.scan("the database at rest", &dump, &pem_needles);
    leaks.scan("the engine's log", &log, &pem_needles);
    answers.scan(&pem_needles, &mut leaks);
    if sealing_key_ids(&dump).contains(&old_key) {
        leaks.note(format!(
            "at rest, the database still holds values sealed under the old key {old_key}"
        ));
    }
    leaks.scan("the database at rest", &dump, &stored_needles);
    leaks.assert_none();
}
