//! The admin API: tenant isolation, SSRF refusal, idempotency keys, clear 4xx errors, and the
//! operational routes.

use std::time::Duration;

use serde_json::json;

use crate::support::{Receiver, TestEngine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_from_each_other() {
    let engine = TestEngine::start().await;
    let (acme, acme_token) = engine.tenant("acme").await;
    let (globex, globex_token) = engine.tenant("globex").await;
    let receiver = Receiver::ok().await;
    let acme_endpoint = engine.endpoint(&acme, json!({"url": receiver.url()})).await;
    let acme_event = engine.event(&acme, "invoice.paid", json!({})).await;

    let as_acme = engine.api.with_token(&acme_token);
    let as_globex = engine.api.with_token(&globex_token);
    // Own resources work with the tenant token.
    assert_eq!(as_acme.get(&format!("/v1/tenants/{acme}")).await.0, 200);
    assert_eq!(
        as_acme
            .get(&format!("/v1/tenants/{acme}/endpoints/{acme_endpoint}"))
            .await
            .0,
        200
    );
    assert_eq!(
        as_acme
            .get(&format!(
                "/v1/tenants/{acme}/events/{acme_event}/deliveries"
            ))
            .await
            .0,
        200
    );
    // Another tenant's: 404, as if they did not exist.
    for path in [
        format!("/v1/tenants/{acme}"),
        format!("/v1/tenants/{acme}/endpoints"),
        format!("/v1/tenants/{acme}/endpoints/{acme_endpoint}"),
        format!("/v1/tenants/{acme}/events/{acme_event}/deliveries"),
    ] {
        let (status, body) = as_globex.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = as_globex
        .post(&format!("/v1/tenants/{acme}/events"), json!({"type": "x"}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = as_globex
        .delete(&format!("/v1/tenants/{acme}/endpoints/{acme_endpoint}"))
        .await;
    assert_eq!(status, 404);
    // Globex cannot reach acme's event through its own tenant path either.
    let (status, _) = as_globex
        .get(&format!(
            "/v1/tenants/{globex}/events/{acme_event}/deliveries"
        ))
        .await;
    assert_eq!(status, 404);
    // Operator-only routes.
    let (status, body) = as_acme.get("/v1/tenants").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = as_acme.post("/v1/tenants", json!({"name": "sneaky"})).await;
    assert_eq!(status, 403);
    // No or wrong token.
    assert_eq!(engine.api.with_token("").get("/v1/tenants").await.0, 401);
    assert_eq!(
        engine.api.with_token("nope").get("/v1/tenants").await.0,
        401
    );
    // The tenant token is shown once and never again.
    let (_, listed) = engine.api.get("/v1/tenants").await;
    assert!(!listed.to_string().contains(&acme_token));
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_destinations_are_refused_unless_allowed() {
    let engine = TestEngine::start_with(|c| c.http.allow_cidrs.clear()).await;
    let (acme, _) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    // An IP literal is refused when the endpoint is created, naming the field.
    let (status, body) = engine
        .api
        .post(
            &format!("/v1/tenants/{acme}/endpoints"),
            json!({"url": receiver.url(), "event_types": ["ip"]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "url", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("loopback")),
        "{body}"
    );
    // A name resolving to loopback is refused when it is resolved, at delivery.
    engine.endpoint(&acme, json!({"url": format!("http://localhost:{}/hook", receiver.addr.port()), "event_types": ["name"]})).await;
    for kind in ["name"] {
        let event = engine.event(&acme, kind, json!({})).await;
        let deliveries = engine.settled(&acme, &event, Duration::from_secs(10)).await;
        assert_eq!(deliveries[0]["status"], "dead");
        let attempts = engine
            .attempts(&acme, &event, deliveries[0]["id"].as_str().unwrap())
            .await;
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(
            error.contains("refused") && error.contains("loopback"),
            "{kind}: {error}"
        );
    }
    assert!(
        receiver.received().is_empty(),
        "nothing may reach a refused destination"
    );
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_answer() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    engine.endpoint(&acme, json!({"url": receiver.url()})).await;
    let path = format!("/v1/tenants/{acme}/events");
    let body = json!({"type": "invoice.paid", "data": {"n": 1}})
        .to_string()
        .into_bytes();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-17"),
    ];
    let (s1, first) = engine.api.raw("POST", &path, body.clone(), &headers).await;
    let (s2, second) = engine.api.raw("POST", &path, body.clone(), &headers).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first, second, "a repeat returns the first answer");
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the repeat created no second event"
    );
    // Another key is another event; keys are per tenant.
    let (_, third) = engine
        .api
        .raw(
            "POST",
            &path,
            body,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "order-18"),
            ],
        )
        .await;
    assert_ne!(third["id"], first["id"]);
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_naming_the_field_and_nothing_is_written() {
    let engine = TestEngine::start_with(|c| c.api.max_body_kib = 4).await;
    let (acme, _) = engine.tenant("acme").await;
    let endpoints = format!("/v1/tenants/{acme}/endpoints");
    let cases = [
        (json!({"url": "ftp://example.com/x"}), "url", "http"),
        (json!({"url": "not a url"}), "url", "URL"),
        (
            json!({"url": "https://example.com", "steps": [{"plugin": "no-such-plugin", "config": {}}]}),
            "steps[0].plugin",
            "unknown plugin",
        ),
        (
            json!({"url": "https://example.com", "steps": [{"plugin": "api-key", "config": {}}]}),
            "steps[0].config.key",
            "required",
        ),
        (
            json!({"url": "https://example.com", "steps": [{"plugin": "api-key", "config": {"key": 42}}]}),
            "steps[0].config.key",
            "string",
        ),
        (
            json!({"url": "https://example.com", "event_types": ["bad type!"]}),
            "event_types[0]",
            "event type",
        ),
        (
            json!({"url": "https://example.com", "tls": {"trusted_issuers": "not a pem"}}),
            "tls.trusted_issuers",
            "",
        ),
        (
            json!({"url": "https://example.com", "tls": {"client_certificate": "cc_missing"}}),
            "tls.client_certificate",
            "no client certificate",
        ),
        (json!({"event_types": []}), "url", "missing"),
        (
            json!({"url": "https://example.com", "surprise": 1}),
            "surprise",
            "unknown field",
        ),
    ];
    for (body, field, words) in cases {
        let (status, answer) = engine.api.post(&endpoints, body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{body} → {message}");
    }
    // Malformed JSON, wrong content type, oversized body.
    let (status, answer) = engine
        .api
        .raw(
            "POST",
            &endpoints,
            b"{\"url\": ".to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "malformed_json");
    let (status, answer) = engine
        .api
        .raw(
            "POST",
            &endpoints,
            b"url=x".to_vec(),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(status, 415, "{answer}");
    let big = json!({"url": "https://example.com", "description": "x".repeat(8 * 1024)});
    let (status, answer) = engine.api.post(&endpoints, big).await;
    assert_eq!(status, 413, "{answer}");
    // Events (bad type, non-object resource, one bad event of a batch) and tenant ids.
    let events = format!("/v1/tenants/{acme}/events");
    let cases = [
        (events.clone(), json!({"type": ""}), "type"),
        (
            events.clone(),
            json!({"type": "a.b", "resource": [1]}),
            "resource",
        ),
        (
            format!("{events}/batch"),
            json!({"events": [{"type": "ok"}, {"type": "bad type"}]}),
            "events[1].type",
        ),
        (
            "/v1/tenants".to_string(),
            json!({"id": "Bad Id", "name": "x"}),
            "id",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = engine.api.post(&path, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{body} → {answer}"
        );
    }
    // Nothing half-written: no endpoint was created by any failed request, no event by the batch.
    let (_, listed) = engine.api.get(&endpoints).await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    assert_eq!(engine.count_rows("events").await, 0);
    let (status, _) = engine
        .api
        .post("/v1/tenants", json!({"id": "acme", "name": "again"}))
        .await;
    assert_eq!(status, 409);
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_secrets_are_redacted_and_operational_routes_answer() {
    let engine = TestEngine::start().await;
    let (acme, _) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    let endpoint = engine
        .endpoint(&acme, json!({"url": receiver.url(), "steps": [{"plugin": "api-key", "config": {"key": "sk_live_very_secret", "header": "x-api-key"}}]}))
        .await;
    let (_, shown) = engine
        .api
        .get(&format!("/v1/tenants/{acme}/endpoints/{endpoint}"))
        .await;
    assert!(
        !shown.to_string().contains("sk_live_very_secret"),
        "{shown}"
    );
    assert_eq!(shown["steps"][0]["config"]["header"], "x-api-key");
    let event = engine.event(&acme, "a.b", json!({})).await;
    engine.settled(&acme, &event, Duration::from_secs(10)).await;
    assert_eq!(
        receiver.received()[0].header("x-api-key"),
        Some("sk_live_very_secret")
    );

    let (status, health) = engine.api.with_token("").get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    let (status, metrics) = engine.api.with_token("").get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("wasmhook_deliveries_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmhook_attempt_latency_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("wasmhook_queue_depth"), "{metrics}");
    let (status, openapi) = engine.api.with_token("").get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/tenants",
        "/v1/tenants/{tenant}/endpoints/{endpoint}",
        "/v1/tenants/{tenant}/events",
        "/v1/tenants/{tenant}/plugins/{name}",
        "/.well-known/jwks.json",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_policy_names_what_an_endpoint_lacks() {
    let engine = TestEngine::start_with(|c| c.plugins.require_auth_and_security = true).await;
    let (acme, _) = engine.tenant("acme").await;
    let path = format!("/v1/tenants/{acme}/endpoints");
    let api_key = json!({"plugin": "api-key", "config": {"key": "k"}});
    let (status, answer) = engine
        .api
        .post(&path, json!({"url": "https://example.com"}))
        .await;
    assert_eq!(status, 422);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("authentication"),
        "{answer}"
    );
    let (status, answer) = engine
        .api
        .post(
            &path,
            json!({"url": "https://example.com", "steps": [api_key]}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("security"),
        "{answer}"
    );
    let recipient = wasmhook::demo::pki::TestCa::new("tenant").cert_pem();
    let jwe = json!({"plugin": "jwe", "config": {"recipient": recipient}});
    let (status, answer) = engine
        .api
        .post(
            &path,
            json!({"url": "https://example.com", "steps": [api_key, jwe]}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_with_the_json_error_shape() {
    let engine = TestEngine::start().await;
    let (status, body) = engine.api.get("/v1/no-such-route").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let (status, body) = engine.api.patch("/v1/tenants", json!({})).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    engine.server.shutdown().await;
}
