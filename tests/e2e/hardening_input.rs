//! Hostile input at the admin API: events nested too deep for the engine to read back, plugin
//! uploads that are too large, padded with custom sections, too many, or too many at once, and
//! plugin names that are not names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ADMIN, Receiver, TestEngine};

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        wasmhook::guests::path(name).unwrap_or_else(|| panic!("guest component {name} not built")),
    );
    std::fs::read(path).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `depth` levels of alternating objects and arrays around a number (`{"a":[{"a":[1]}]}` is 4).
fn nested_value(depth: usize) -> Value {
    let mut v = json!(1);
    for i in (0..depth).rev() {
        v = if i % 2 == 0 {
            json!({ "a": v })
        } else {
            json!([v])
        };
    }
    v
}

/// The same as JSON text, built without recursion (for depths serde_json would not print).
fn nested_text(depth: usize) -> String {
    let mut s = String::new();
    for i in 0..depth {
        s.push_str(if i % 2 == 0 { "{\"a\":" } else { "[" });
    }
    s.push('1');
    for i in (0..depth).rev() {
        s.push(if i % 2 == 0 { '}' } else { ']' });
    }
    s
}

/// A custom section named `name` holding `size` bytes.
fn custom_section(name: &str, size: usize) -> Vec<u8> {
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    payload.resize(payload.len() + size, 0x5a);
    let mut section = vec![0u8];
    let mut len = payload.len() as u32;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            section.push(byte);
            break;
        }
        section.push(byte | 0x80);
    }
    section.extend_from_slice(&payload);
    section
}

fn addr(engine: &TestEngine) -> SocketAddr {
    engine
        .server
        .url()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a connection
/// of its own; returns the whole answer as text (`Connection: close` is added).
async fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn post_event(engine: &TestEngine, tenant: &str, body: String) -> (u16, Value) {
    engine
        .api
        .raw(
            "POST",
            &format!("/v1/tenants/{tenant}/events"),
            body.into_bytes(),
            &[("content-type", "application/json")],
        )
        .await
}

fn assert_depth_refused(status: u16, answer: &Value, field: &str) {
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
    assert_eq!(answer["error"]["field"], field, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("64") && message.contains("api.max_json_depth"),
        "the message names the limit: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_nested_beyond_the_limit_are_refused_naming_the_field_and_the_limit() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;

    // One level too deep, in `data` and in `resource`.
    let (status, answer) = post_event(
        &engine,
        &acme,
        format!(r#"{{"type":"deep","data":{}}}"#, nested_text(65)),
    )
    .await;
    assert_depth_refused(status, &answer, "data");
    let (status, answer) = post_event(
        &engine,
        &acme,
        format!(r#"{{"type":"deep","resource":{}}}"#, nested_text(65)),
    )
    .await;
    assert_depth_refused(status, &answer, "resource");

    // Around and far beyond serde_json's own limit (128): still a clear 422, never a 400/500.
    for depth in [100, 127, 128, 129, 200, 100_000] {
        let (status, answer) = post_event(
            &engine,
            &acme,
            format!(r#"{{"type":"deep","data":{}}}"#, nested_text(depth)),
        )
        .await;
        assert_depth_refused(status, &answer, "data");
    }
    // Brackets inside strings are text, not nesting.
    let brackets = "[{".repeat(500);
    let (status, answer) = post_event(
        &engine,
        &acme,
        json!({"type": "flat", "data": {"text": brackets, "quote": "\"[[", "slash": "\\"}})
            .to_string(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    // A whole request nested deep (not in `data`) is a JSON error with a message, not a 5xx.
    for depth in [100, 200] {
        let (status, answer) = post_event(&engine, &acme, nested_text(depth)).await;
        assert!(status == 400 || status == 422, "{depth}: {status} {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }

    // In a batch, the deep event is named by its index, and nothing of the batch is kept.
    let receiver = Receiver::ok().await;
    engine.endpoint(&acme, json!({"url": receiver.url()})).await;
    let batch = format!(
        r#"{{"events":[{{"type":"ok","data":{{}}}},{{"type":"deep","data":{}}}]}}"#,
        nested_text(65)
    );
    let (status, answer) = engine
        .api
        .raw(
            "POST",
            &format!("/v1/tenants/{acme}/events/batch"),
            batch.into_bytes(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_depth_refused(status, &answer, "events[1].data");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received().is_empty(),
        "the refused batch delivered nothing"
    );
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_the_depth_limit_are_delivered_intact_also_signed_with_ed25519() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    let plain = Receiver::ok().await;
    let signed = Receiver::ok().await;
    engine.endpoint(&acme, json!({"url": plain.url()})).await;
    // `Ed25519` (RFC 9864) is accepted as jws's `alg`; the header says `EdDSA`.
    engine
        .endpoint(
            &acme,
            json!({"url": signed.url(), "steps": [{"plugin": "jws", "config": {"alg": "Ed25519"}}]}),
        )
        .await;
    let data = nested_value(64);
    let resource = json!({"type": "tree", "id": "t_1", "path": nested_value(63)});
    let (status, answer) = engine
        .api
        .post(
            &format!("/v1/tenants/{acme}/events"),
            json!({"type": "deep", "resource": resource, "data": data}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let deliveries = engine.settled(&acme, &id, Duration::from_secs(20)).await;
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{deliveries:?}"
    );

    // The envelope reads back, and the receiver got the data as sent.
    let (status, event) = engine
        .api
        .get(&format!("/v1/tenants/{acme}/events/{id}"))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["envelope"]["data"], data);
    assert_eq!(event["envelope"]["resource"], resource);
    let received = plain.wait_for(1, Duration::from_secs(10)).await;
    let envelope = received[0].json();
    assert_eq!(envelope["data"], data);
    assert_eq!(envelope["resource"], resource);

    let received = signed.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].header("content-type"), Some("application/jwt"));
    let token = String::from_utf8(received[0].body.to_vec()).unwrap();
    let claims = wasmhook::demo::verify_jws(&engine.server.url(), &token, Some(&id))
        .await
        .unwrap();
    assert_eq!(claims["data"], data);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA", "{header}");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_uploads_above_the_limit_are_refused_before_they_are_read() {
    let engine = TestEngine::start_with(|c| c.api.max_plugin_mib = 2).await;
    let (acme, _) = engine.tenant("acme").await;
    let path = format!("/v1/tenants/{acme}/plugins/big");

    // With a Content-Length: refused from the header, before a byte of the body is sent.
    let began = Instant::now();
    let mut stream = TcpStream::connect(addr(&engine)).await.unwrap();
    stream
        .write_all(
            format!(
                "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\n\r\n",
                3 << 20
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(answer.contains("api.max_plugin_mib"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(5));

    // Streamed without a length: refused as soon as it passes the limit, not at its end.
    let stream = TcpStream::connect(addr(&engine)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/wasm\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let began = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        let chunk = [
            format!("{:x}\r\n", 64 * 1024).into_bytes(),
            vec![0u8; 64 * 1024],
            b"\r\n".to_vec(),
        ]
        .concat();
        let mut sent = 0usize;
        // Up to 64 MiB; the server stops reading long before.
        while sent < 64 << 20 {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
            sent += 64 * 1024;
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}}") {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(10));
    drop(read);
    let sent = writer.await.unwrap();
    assert!(sent < 64 << 20, "the server stopped reading the upload");
    let (_, list) = engine.api.get(&format!("/v1/tenants/{acme}/plugins")).await;
    assert_eq!(list, json!([]));
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_sections_are_stripped_before_a_component_is_stored() {
    let engine = TestEngine::start_with(|c| {
        c.api.max_plugin_mib = 4;
        c.api.max_plugin_bytes_per_tenant_mib = 4;
    })
    .await;
    let (acme, _) = engine.tenant("acme").await;
    let original = guest("swap-v1");
    // 3 MiB of padding: below the upload limit, and what two of them would take of the quota.
    let padded = [original.clone(), custom_section("padding", 3 << 20)].concat();
    let stripped = wasmhook::plugins::strip_custom_sections(&original)
        .unwrap()
        .into_owned();
    assert!(
        stripped.len() < original.len(),
        "the guest has custom sections"
    );

    let mut shas = Vec::new();
    for (name, bytes) in [
        ("padded", &padded),
        ("padded-too", &padded),
        ("plain", &original),
    ] {
        let (status, status_json) = engine
            .api
            .raw(
                "PUT",
                &format!("/v1/tenants/{acme}/plugins/{name}"),
                bytes.clone(),
                &[("content-type", "application/wasm")],
            )
            .await;
        assert_eq!(status, 200, "{name}: {status_json}");
        assert_eq!(status_json["status"], "ready");
        shas.push(status_json["sha256"].as_str().unwrap().to_string());
    }
    // The stored and served sha256 is that of the stripped component: the same for the padded
    // and the plain upload, neither the upload's.
    assert!(shas.iter().all(|s| *s == sha256(&stripped)), "{shas:?}");
    assert_ne!(shas[0], sha256(&padded));
    assert_ne!(shas[0], sha256(&original));
    let (status, got) = engine
        .api
        .get(&format!("/v1/tenants/{acme}/plugins/padded"))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["sha256"], sha256(&stripped).as_str());

    // The stripped plugin runs.
    let receiver = Receiver::ok().await;
    engine
        .endpoint(
            &acme,
            json!({"url": receiver.url(), "steps": [{"plugin": "tenant:padded", "config": {}}]}),
        )
        .await;
    let id = engine.event(&acme, "tick", json!({})).await;
    let deliveries = engine.settled(&acme, &id, Duration::from_secs(20)).await;
    assert_eq!(deliveries[0]["status"], "delivered", "{deliveries:?}");
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].header("x-plugin-version"), Some("1"));
    engine.server.shutdown().await;
}

async fn put(engine: &TestEngine, tenant: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    engine
        .api
        .raw(
            "PUT",
            &format!("/v1/tenants/{tenant}/plugins/{name}"),
            bytes,
            &[],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_plugin_count_quota() {
    let engine = TestEngine::start_with(|c| c.api.max_plugins_per_tenant = 3).await;
    let (acme, _) = engine.tenant("acme").await;
    let (globex, _) = engine.tenant("globex").await;
    let small = guest("swap-v1");
    for name in ["a", "b", "c"] {
        let (status, answer) = put(&engine, &acme, name, small.clone()).await;
        assert_eq!(status, 200, "{name}: {answer}");
    }
    // A fourth is refused before its body is read; replacing one is not adding one.
    let (status, answer) = put(&engine, &acme, "d", small.clone()).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "quota_exceeded");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("api.max_plugins_per_tenant = 3"),
        "{message}"
    );
    let (status, answer) = put(&engine, &acme, "a", guest("swap-v2")).await;
    assert_eq!(status, 200, "replacing: {answer}");
    assert_eq!(answer["info"]["version"], "2.0.0");
    // The quota is per tenant.
    let (status, answer) = put(&engine, &globex, "d", small.clone()).await;
    assert_eq!(status, 200, "{answer}");
    // A delete makes room.
    let deleted = engine
        .api
        .delete(&format!("/v1/tenants/{acme}/plugins/b"))
        .await;
    assert_eq!(deleted.0, 204, "{}", deleted.1);
    let (status, answer) = put(&engine, &acme, "d", small).await;
    assert_eq!(status, 200, "after a delete: {answer}");
    let (_, list) = engine.api.get(&format!("/v1/tenants/{acme}/plugins")).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_plugin_byte_quota_counts_stripped_components() {
    let engine = TestEngine::start_with(|c| {
        c.api.max_plugin_mib = 1;
        c.api.max_plugin_bytes_per_tenant_mib = 1;
    })
    .await;
    let (acme, _) = engine.tenant("acme").await;
    let big = guest("oauth2-client-credentials");
    let size = wasmhook::plugins::strip_custom_sections(&big)
        .unwrap()
        .len();
    let fits = (1 << 20) / size;
    assert!((2..16).contains(&fits), "{size} bytes: {fits} fit in 1 MiB");
    for i in 0..fits {
        let (status, answer) = put(&engine, &acme, &format!("p{i}"), big.clone()).await;
        assert_eq!(status, 200, "p{i}: {answer}");
    }
    let (status, answer) = put(&engine, &acme, "over", big.clone()).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "quota_exceeded");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.max_plugin_bytes_per_tenant_mib"),
        "{answer}"
    );
    // Replacing a plugin counts its new size, not both versions; smaller ones still fit.
    let (status, answer) = put(&engine, &acme, "p0", big.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let small = guest("swap-v1");
    let room = (1 << 20) - fits * size;
    let small_size = wasmhook::plugins::strip_custom_sections(&small)
        .unwrap()
        .len();
    let (status, answer) = put(&engine, &acme, "small", small).await;
    assert_eq!(
        status == 200,
        small_size <= room,
        "{small_size} in {room}: {answer}"
    );
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_concurrency_cap_wait_then_get_503() {
    let engine = TestEngine::start_with(|c| {
        c.api.max_concurrent_uploads = 1;
        c.api.upload_wait = Duration::from_millis(300);
    })
    .await;
    let (acme, _) = engine.tenant("acme").await;
    let component = guest("swap-v1");
    let addr = addr(&engine);

    // A slow upload holds the only slot: its body never finishes.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "PUT /v1/tenants/{acme}/plugins/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\n\r\n",
                component.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&component[..1000]).await.unwrap();
    // Wait until it is admitted (probes get the slot until then).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = engine
            .api
            .raw(
                "PUT",
                &format!("/v1/tenants/{acme}/plugins/probe"),
                component.clone(),
                &[],
            )
            .await;
        if status == 503 {
            assert_eq!(answer["error"]["code"], "uploads_busy", "{answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("api.max_concurrent_uploads")
            );
            break;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the slow upload never took the slot"
        );
    }
    // Others wait (bounded), then get 503 with Retry-After.
    let answer = raw_http(
        addr,
        &format!(
            "PUT /v1/tenants/{acme}/plugins/other HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}",
            component.len()
        ),
        &component,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("uploads_busy"), "{answer}");
    // The slow client gives up: its slot is free again.
    drop(stalled);

    // A burst: each answer is 200 or 503, never another error.
    let began = Instant::now();
    let uploads: Vec<_> = (0..8)
        .map(|i| {
            let api = engine.api.clone();
            let path = format!("/v1/tenants/{acme}/plugins/burst-{}", i % 4);
            let bytes = component.clone();
            tokio::spawn(async move { api.raw("PUT", &path, bytes, &[]).await })
        })
        .collect();
    let mut ok = 0;
    for upload in uploads {
        let (status, answer) = upload.await.unwrap();
        assert!(status == 200 || status == 503, "{status}: {answer}");
        if status == 200 {
            ok += 1;
        } else {
            assert_eq!(answer["error"]["code"], "uploads_busy", "{answer}");
        }
    }
    eprintln!(
        "burst of 8 uploads with 1 slot: {ok} stored, {} refused, in {:?}",
        8 - ok,
        began.elapsed()
    );
    assert!(ok >= 1, "the slot was released by the slow upload");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_names_are_checked_and_one_plugin_can_be_read() {
    let engine = TestEngine::start().await;
    let (acme, acme_token) = engine.tenant("acme").await;
    let (globex, _) = engine.tenant("globex").await;
    let base = format!("/v1/tenants/{acme}/plugins");

    // A bad name is a 422 naming `name` for every method; an unknown plugin a 404; never a 5xx.
    for bad in ["Bad", "-x", "a_b", &"x".repeat(64)] {
        for (method, body) in [
            ("DELETE", Vec::new()),
            ("GET", Vec::new()),
            ("PUT", guest("swap-v1")),
        ] {
            let (status, answer) = engine
                .api
                .raw(method, &format!("{base}/{bad}"), body, &[])
                .await;
            assert_eq!(status, 422, "{method} {bad}: {answer}");
            assert_eq!(answer["error"]["field"], "name", "{answer}");
            assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
        }
    }
    for method in ["DELETE", "GET"] {
        let (status, answer) = engine
            .api
            .raw(method, &format!("{base}/missing"), Vec::new(), &[])
            .await;
        assert_eq!(status, 404, "{method}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{answer}");
    }
    // Not a component's media type.
    let (status, answer) = engine
        .api
        .raw(
            "PUT",
            &format!("{base}/x"),
            b"{}".to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, 415, "{answer}");
    let (status, answer) = engine
        .api
        .raw("PUT", &format!("{base}/x"), Vec::new(), &[])
        .await;
    assert_eq!(status, 400, "{answer}");

    // GET answers what the list says.
    let (status, put) = engine
        .api
        .raw(
            "PUT",
            &format!("{base}/token"),
            guest("tenant-token-provider"),
            &[("content-type", "application/wasm")],
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let as_acme = engine.api.with_token(&acme_token);
    let (status, one) = as_acme.get(&format!("{base}/token")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["name"], "tenant:token");
    let (_, list) = as_acme.get(&base).await;
    assert_eq!(list, json!([one]));
    assert_eq!(one["sha256"], put["sha256"]);
    // Another tenant's plugin does not exist for it.
    let (status, _) = engine
        .api
        .get(&format!("/v1/tenants/{globex}/plugins/token"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(as_acme.delete(&format!("{base}/token")).await.0, 204);
    let (status, answer) = as_acme.get(&format!("{base}/token")).await;
    assert_eq!(status, 404, "{answer}");

    // The OpenAPI document lists the route with its answers.
    let (_, doc) = engine.api.get("/openapi.json").await;
    let route = &doc["paths"]["/v1/tenants/{tenant}/plugins/{name}"];
    for status in ["200", "401", "403", "404", "422"] {
        assert!(
            route["get"]["responses"][status].is_object(),
            "GET {status}"
        );
    }
    for status in ["200", "400", "404", "413", "415", "422", "503"] {
        assert!(
            route["put"]["responses"][status].is_object(),
            "PUT {status}"
        );
    }
    assert!(route["put"]["requestBody"]["content"]["application/wasm"].is_object());
    assert!(route["delete"]["responses"]["422"].is_object());
    engine.server.shutdown().await;
}
