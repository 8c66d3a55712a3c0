//! Network hardening of the admin API: the listener's limits (header and body timeouts, declared
//! body size, connection cap) against raw, misbehaving TCP clients, and the refusal of internal
//! IP literals in endpoint and token URLs at creation. Every socket goes to the engine on
//! 127.0.0.1; the refused literals are never connected to.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ADMIN, TestEngine};

/// A complete `/healthz` request that asks the server to close the connection after answering.
const HEALTHZ_REQUEST: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// A raw connection to the engine's API.
async fn connect(engine: &TestEngine) -> TcpStream {
    TcpStream::connect(engine.server.addr).await.unwrap()
}

/// Reads one HTTP/1.1 response (status and body) within `within`. `None` when the server closes
/// or resets the connection first, or when nothing complete arrives in time.
async fn read_response(stream: &mut TcpStream, within: Duration) -> Option<(u16, Value)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + length {
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = &buf[end + 4..end + 4 + length];
                let body = serde_json::from_slice(body).unwrap_or(Value::Null);
                return Some((status, body));
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// Waits until the server closes `stream` (EOF or reset); `false` if it is still open after
/// `within`. Anything the server sends first is ignored.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let wait = async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

/// Connections the server side has accepted on `port` (Linux: sockets still in the accept queue
/// have no inode in `/proc/net/tcp`). `None` where that cannot be read.
fn accepted_connections(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = format!(":{port:04X}");
    Some(
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 9
                    && fields[1].ends_with(&port)
                    && fields[3] == "01"
                    && fields[9] != "0"
            })
            .count(),
    )
}

/// Checks that the engine still answers a new client: `/healthz` on a fresh connection.
///
/// Not through the pooled API client: with the 1 s header timeouts set here, the server closes
/// the pooled keep-alive connection while it idles, and a request written at that instant fails
/// with a send error although the engine is healthy.
async fn healthz(engine: &TestEngine) {
    let mut stream = connect(engine).await;
    stream.write_all(HEALTHZ_REQUEST).await.unwrap();
    let (status, body) = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer to /healthz within 5s");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_after_the_header_timeout() {
    let engine = TestEngine::start_with(|c| {
        c.api.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let port = engine.server.addr.port();
    let started = Instant::now();
    let mut streams = Vec::new();
    for i in 0..200 {
        let mut stream = connect(&engine).await;
        // Half of them stop inside the headers, half before sending a single byte.
        if i % 2 == 0 {
            stream
                .write_all(b"POST /v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
                .await
                .unwrap();
        }
        streams.push(stream);
    }
    // The engine answers meanwhile.
    healthz(&engine).await;
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(10)).await,
            "connection {i} still open"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(6),
        "closed long after the timeout: {elapsed:?}"
    );
    if let Some(open) = accepted_connections(port) {
        // None of the half-sent connections remains (a margin of two for sockets still being
        // torn down, such as the first `/healthz`'s).
        assert!(open <= 2, "{open} connections still accepted");
    }
    healthz(&engine).await;
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_declared_body_is_refused_at_once() {
    let engine = TestEngine::start().await;
    let mut stream = connect(&engine).await;
    let started = Instant::now();
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"{\"id\": \"a\"").await.unwrap();
    let (status, body) = read_response(&mut stream, Duration::from_secs(2))
        .await
        .expect("an answer within 2s");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The connection is closed: the rest of the body is never read.
    assert!(closed_within(&mut stream, Duration::from_secs(2)).await);
    healthz(&engine).await;
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_after_the_body_timeout() {
    let engine = TestEngine::start_with(|c| {
        c.api.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let stream = connect(&engine).await;
    let body = json!({"id": "slow", "name": "a tenant sent one byte at a time"}).to_string();
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: the body would take several seconds, and is never idle for long.
    let trickle = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut stream_read = Vec::new();
    let mut chunk = [0u8; 4096];
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => stream_read.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(outcome.is_ok(), "the connection stayed open");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "cut after {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&stream_read);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    trickle.abort();
    // The tenant was not created from a partial body.
    assert_eq!(engine.api.get("/v1/tenants/slow").await.0, 404);
    healthz(&engine).await;
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_and_are_served_when_others_close() {
    const CAP: usize = 8;
    let engine = TestEngine::start_with(|c| {
        c.api.max_connections = CAP;
        c.api.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let port = engine.server.addr.port();
    // Fill every slot with a connection that never finishes its headers.
    let mut holders = Vec::new();
    for _ in 0..CAP {
        let mut stream = connect(&engine).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127")
            .await
            .unwrap();
        holders.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepted_connections(port).is_some_and(|n| n < CAP) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Many more clients: they connect (the kernel queues them) but are not served.
    let mut waiting = Vec::new();
    for _ in 0..4 * CAP {
        let mut stream = connect(&engine).await;
        stream.write_all(HEALTHZ_REQUEST).await.unwrap();
        waiting.push(stream);
    }
    assert!(
        read_response(&mut waiting[0], Duration::from_secs(1))
            .await
            .is_none(),
        "a connection beyond the cap was served"
    );
    if let Some(accepted) = accepted_connections(port) {
        assert_eq!(accepted, CAP, "the server accepted beyond its cap");
    }
    // The holders leave: everyone waiting is served, a few at a time.
    drop(holders);
    for (i, stream) in waiting.iter_mut().enumerate() {
        let (status, body) = read_response(stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("waiting connection {i} was not served"));
        assert_eq!(status, 200, "{body}");
    }
    drop(waiting);
    healthz(&engine).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepted_connections(port).is_some_and(|n| n > 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(accepted) = accepted_connections(port) {
        assert!(accepted <= 1, "{accepted} connections left open");
    }
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ip_literals_are_refused_at_endpoint_creation() {
    // No allowed networks: loopback is refused too.
    let engine = TestEngine::start_with(|c| c.http.allow_cidrs.clear()).await;
    let (acme, _) = engine.tenant("acme").await;
    let path = format!("/v1/tenants/{acme}/endpoints");
    for (url, reason) in [
        ("http://[::7f00:1]/", "IPv4-compatible"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::a00:1]/", "NAT64"),
        ("http://169.254.169.254/", "link-local"),
        ("http://127.0.0.1:9/hook", "loopback"),
        ("https://[fd00::1]:8443/", "unique local"),
        ("http://[2002:a00:1::]/", "6to4"),
    ] {
        let (status, body) = engine.api.post(&path, json!({"url": url})).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("refused") && message.contains(reason),
            "{url}: {message}"
        );
    }
    // Token URLs of bearer steps, for both built-in providers.
    for (provider, config) in [
        (
            "oauth2-client-credentials",
            json!({"token_url": "http://10.0.0.1/token", "client_id": "id", "client_secret": "secret"}),
        ),
        ("http-token", json!({"token_url": "https://[::1]/token"})),
    ] {
        let spec = json!({"url": "https://hooks.example.com/", "steps": [
            {"plugin": "bearer", "config": {"provider": provider, "provider_config": config}}]});
        let (status, body) = engine.api.post(&path, spec).await;
        assert_eq!(status, 422, "{provider}: {body}");
        assert_eq!(
            body["error"]["field"], "steps[0].config.provider_config.token_url",
            "{provider}: {body}"
        );
    }
    // Names are checked when they are resolved, not here; public literals pass.
    let created = engine
        .endpoint(&acme, json!({"url": "https://hooks.example.com/"}))
        .await;
    engine
        .endpoint(&acme, json!({"url": "https://[2606:4700::1111]/hook"}))
        .await;
    // An update is checked like a creation.
    let (status, body) = engine
        .api
        .patch(
            &format!("{path}/{created}"),
            json!({"url": "http://192.168.1.1/"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "url");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_networks_still_apply_at_creation() {
    // The test config allows 127.0.0.1/32 only.
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    engine
        .endpoint(&acme, json!({"url": "http://127.0.0.1:9/hook"}))
        .await;
    // The mapped form reaches the same allowed address.
    engine
        .endpoint(&acme, json!({"url": "http://[::ffff:127.0.0.1]:9/hook"}))
        .await;
    // Other forms embedding it reach other hosts, and other loopback addresses are not allowed.
    for url in [
        "http://[::7f00:1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://127.0.0.2/",
    ] {
        let (status, body) = engine
            .api
            .post(
                &format!("/v1/tenants/{acme}/endpoints"),
                json!({"url": url}),
            )
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url");
    }
    engine.server.shutdown().await;
}
