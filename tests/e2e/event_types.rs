//! The event-type catalog: CRUD, JSON Schema validation of `data` at ingest (422 naming the
//! JSON pointer of the first violation), `strict_event_types`, and a change made on one node
//! used by another (PostgreSQL).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Receiver, StoreBackend, TestEngine, runs_on};

fn invoice_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["amount"],
        "properties": {
            "amount": {"type": "integer", "minimum": 0},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}
        },
        "examples": [{"amount": 5, "items": [{"sku": "a-1"}]}]
    })
}

async fn post_event(
    engine: &TestEngine,
    tenant: &str,
    event_type: &str,
    data: Value,
) -> (u16, Value) {
    engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/events"),
            json!({"type": event_type, "data": data}),
        )
        .await
}

#[tokio::test]
async fn the_catalog_validates_event_data_against_its_schemas() {
    let engine = TestEngine::start().await;
    let (tenant, token) = engine.tenant("acme").await;
    let receiver = Receiver::ok().await;
    engine
        .endpoint(&tenant, json!({"url": receiver.url()}))
        .await;
    let types = format!("/v1/tenants/{tenant}/event-types");
    let api = engine.api.with_token(&token);

    let (status, created) = api
        .post(
            &types,
            json!({"name": "invoice.paid", "description": "An invoice was paid", "schema": invoice_schema()}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "invoice.paid");
    assert_eq!(created["deprecated"], false);
    assert_eq!(created["schema"], invoice_schema());
    let (status, body) = api.post(&types, json!({"name": "invoice.paid"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        api.post(&types, json!({"name": "user.created"})).await.0,
        201
    );

    // Schemas that cannot be used are refused, naming the field.
    let deep = (0..40).fold(
        json!({"type": "string"}),
        |inner, _| json!({"type": "object", "properties": {"a": inner}}),
    );
    for schema in [
        json!({"type": "nonsense"}),
        json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
        json!({"$ref": "https://example.com/elsewhere.json"}),
        json!({"type": "string", "pattern": "(a+)+(?=b)"}),
        json!(42),
        deep,
        json!({"description": "x".repeat(70 * 1024)}),
    ] {
        let (status, body) = api
            .post(&types, json!({"name": "bad.schema", "schema": schema}))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], "schema", "{body}");
    }
    let (status, body) = api.post(&types, json!({"name": "bad name!"})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("name"))
    );

    // Ingest: valid data passes, the first violation is named by its JSON pointer.
    let (status, body) = post_event(
        &engine,
        &tenant,
        "invoice.paid",
        json!({"amount": 3, "items": [{"sku": "x"}]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post_event(
        &engine,
        &tenant,
        "invoice.paid",
        json!({"amount": 3, "items": [{"sku": "x"}, {"sku": 12345}]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert_eq!(body["error"]["field"], "data/items/1/sku", "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().contains("12345"),
        "{body}"
    );
    let (status, body) = post_event(&engine, &tenant, "invoice.paid", json!({"items": []})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("data")),
        "{body}"
    );
    // A type without a schema, and a type outside the catalog, take any data.
    assert_eq!(
        post_event(&engine, &tenant, "user.created", json!({"x": [1]}))
            .await
            .0,
        202
    );
    assert_eq!(
        post_event(&engine, &tenant, "not.catalogued", json!({"x": 1}))
            .await
            .0,
        202
    );

    // A batch is refused whole, naming the event.
    let (status, body) = engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/events/batch"),
            json!({"events": [
                {"type": "invoice.paid", "data": {"amount": 1}},
                {"type": "invoice.paid", "data": {"amount": -1}}
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "events[1].data/amount", "{body}");
    // Three accepted events reached the receiver; the refused ones were never stored.
    receiver.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(engine.count_rows("events").await, 3);

    // Read, list, change: a new schema applies to the next event at once.
    let one = format!("{types}/invoice.paid");
    let (status, got) = api.get(&one).await;
    assert_eq!((status, &got), (200, &created));
    let (status, list) = api.get(&types).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["invoice.paid", "user.created"]);
    let (status, changed) = api
        .patch(
            &one,
            json!({"deprecated": true, "schema": {"type": "object", "required": ["currency"]}}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["deprecated"], true);
    assert_eq!(changed["description"], "An invoice was paid");
    let (status, body) = post_event(&engine, &tenant, "invoice.paid", json!({"amount": 3})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("data")),
        "{body}"
    );
    assert_eq!(
        post_event(&engine, &tenant, "invoice.paid", json!({"currency": "EUR"}))
            .await
            .0,
        202
    );
    let (status, _) = api.patch(&one, json!({"schema": null})).await;
    assert_eq!(status, 200);
    assert_eq!(
        post_event(&engine, &tenant, "invoice.paid", json!({"anything": true}))
            .await
            .0,
        202
    );
    let (status, body) = api.patch(&one, json!({"schema": {"type": 7}})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("schema"))
    );

    // Another tenant sees none of it.
    let (_, other) = engine.tenant("globex").await;
    let other_api = engine.api.with_token(&other);
    assert_eq!(other_api.get(&types).await.0, 404);
    assert_eq!(other_api.get(&one).await.0, 404);

    // Delete.
    assert_eq!(api.delete(&one).await.0, 204);
    assert_eq!(api.get(&one).await.0, 404);
    assert_eq!(api.delete(&one).await.0, 404);
    assert_eq!(api.patch(&one, json!({"deprecated": false})).await.0, 404);
}

#[tokio::test]
async fn strict_tenants_subscribe_only_to_known_types() {
    let engine = TestEngine::start().await;
    let (tenant, _) = engine.tenant("acme").await;
    let settings = format!("/v1/tenants/{tenant}/settings");
    let endpoints = format!("/v1/tenants/{tenant}/endpoints");
    let (status, body) = engine.api.get(&settings).await;
    assert_eq!((status, body), (200, json!({"strict_event_types": false})));
    let spec = |types: Value| json!({"url": "http://127.0.0.1:9/hook", "event_types": types});
    // Not strict: anything goes.
    assert_eq!(
        engine
            .api
            .post(&endpoints, spec(json!(["invoice.paid"])))
            .await
            .0,
        201
    );

    let (status, body) = engine
        .api
        .patch(&settings, json!({"strict_event_types": true}))
        .await;
    assert_eq!((status, body), (200, json!({"strict_event_types": true})));
    let (status, body) = engine
        .api
        .post(&endpoints, spec(json!(["invoice.paid"])))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "event_types[0]");
    engine
        .api
        .post(
            &format!("/v1/tenants/{tenant}/event-types"),
            json!({"name": "invoice.paid"}),
        )
        .await;
    for ok in [
        json!(["invoice.paid"]),
        json!(["invoice.*"]),
        json!(["*"]),
        json!([]),
    ] {
        let (status, body) = engine.api.post(&endpoints, spec(ok.clone())).await;
        assert_eq!(status, 201, "{ok}: {body}");
    }
    let (status, body) = engine
        .api
        .post(&endpoints, spec(json!(["invoice.paid", "user.*"])))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("event_types[1]")),
        "{body}"
    );
    // An update is checked too.
    let (_, list) = engine.api.get(&endpoints).await;
    let first = list[0]["id"].as_str().unwrap();
    let (status, body) = engine
        .api
        .patch(
            &format!("{endpoints}/{first}"),
            json!({"event_types": ["invoice.refunded"]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("event_types[0]")),
        "{body}"
    );

    assert_eq!(
        engine
            .api
            .patch(&settings, json!({"strict_event_types": false}))
            .await
            .0,
        200
    );
    assert_eq!(
        engine.api.post(&endpoints, spec(json!(["user.*"]))).await.0,
        201
    );
    let (status, body) = engine.api.patch(&settings, json!({"strict": true})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("strict")),
        "{body}"
    );
    assert_eq!(engine.api.get("/v1/tenants/nobody/settings").await.0, 404);
}

#[tokio::test]
async fn a_schema_changed_on_one_node_is_enforced_by_another() {
    if !runs_on(
        StoreBackend::Postgres,
        "two nodes share one PostgreSQL database",
    ) {
        return;
    }
    // Nodes of a cluster share the master key.
    let master_key = hex::encode([9u8; 32]);
    let key = master_key.clone();
    let first = TestEngine::start_with(|config| config.secrets.master_key = Some(key)).await;
    let url = first.store_url.clone();
    let second = TestEngine::start_with(|config| {
        config.store.url = url;
        config.store.poll_interval = Duration::from_millis(500);
        config.secrets.master_key = Some(master_key);
    })
    .await;
    let (tenant, _) = first.tenant("acme").await;
    let types = format!("/v1/tenants/{tenant}/event-types");
    // The second node caches the (empty) catalog first.
    let wait_for = |expected: u16, data: Value| {
        let second = &second;
        let tenant = tenant.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                let (status, body) =
                    post_event(second, &tenant, "order.placed", data.clone()).await;
                if status == expected {
                    return body;
                }
                assert!(
                    Instant::now() < deadline,
                    "node 2 still answers {status} after 1 s: {body}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(202, json!({"qty": "many"})).await;
    let (status, body) = first
        .api
        .post(
            &types,
            json!({"name": "order.placed", "schema": {"properties": {"qty": {"type": "integer"}}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let body = wait_for(422, json!({"qty": "many"})).await;
    assert_eq!(body["error"]["field"], "data/qty");
    assert_eq!(
        post_event(&second, &tenant, "order.placed", json!({"qty": 2}))
            .await
            .0,
        202
    );
    let (status, _) = first.api.delete(&format!("{types}/order.placed")).await;
    assert_eq!(status, 204);
    wait_for(202, json!({"qty": "many"})).await;
    // Strictness too.
    first
        .api
        .patch(
            &format!("/v1/tenants/{tenant}/settings"),
            json!({"strict_event_types": true}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _) = second
            .api
            .post(
                &format!("/v1/tenants/{tenant}/endpoints"),
                json!({"url": "http://127.0.0.1:9/", "event_types": ["order.placed"]}),
            )
            .await;
        if status == 422 {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 not strict after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
