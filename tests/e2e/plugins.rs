//! The plugin runtime end to end: hot loading from the plugins directory, hostile plugins, tenant
//! plugins, the compiled-code cache, and `wasmhook plugin check`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmhook::demo::client::ApiClient;

use crate::support::{Receiver, Reply, TestEngine};

fn guest(name: &str) -> PathBuf {
    PathBuf::from(
        wasmhook::guests::path(name).unwrap_or_else(|| panic!("guest component {name} not built")),
    )
}

/// Publishes `source` as `<dir>/<name>.wasm` the way operators should: write aside, then rename.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let staging = dir.join(format!(".{name}.wasm.partial"));
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, dir.join(format!("{name}.wasm"))).unwrap();
}

async fn plugin_status(engine: &TestEngine, name: &str) -> Option<Value> {
    let (_, list) = engine.api.get("/v1/plugins").await;
    list.as_array()?.iter().find(|p| p["name"] == name).cloned()
}

/// Waits until plugin `name` is listed with a status for which `check` holds.
async fn wait_status(
    engine: &TestEngine,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = plugin_status(engine, name).await
            && check(&status)
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "plugin {name}: never {what}: {:?}",
            plugin_status(engine, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn plugins_dir(engine: &TestEngine) -> PathBuf {
    engine.server.engine.config.plugins_dir()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_in_plugin_is_used_swapped_under_load_without_failures_and_removed_clearly() {
    let engine = TestEngine::start().await;
    let dir = plugins_dir(&engine);
    let (acme, _) = engine.tenant("acme").await;
    publish(&dir, "swap", &std::fs::read(guest("swap-v1")).unwrap());
    wait_status(&engine, "swap", "ready v1", |s| {
        s["status"] == "ready" && s["info"]["version"] == "1.0.0"
    })
    .await;
    let receiver = Receiver::ok().await;
    engine
        .endpoint(
            &acme,
            json!({"url": receiver.url(), "steps": [{"plugin": "swap", "config": {}}]}),
        )
        .await;

    // A steady stream of deliveries while the file is replaced by v2.
    let producer = {
        let api = engine.api.clone();
        let acme = acme.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..150 {
                let (status, body) = api
                    .post(
                        &format!("/v1/tenants/{acme}/events"),
                        json!({"type": "tick", "data": {"i": i}}),
                    )
                    .await;
                assert_eq!(status, 202);
                ids.push(body["id"].as_str().unwrap().to_string());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let swapped_at = Instant::now();
    publish(&dir, "swap", &std::fs::read(guest("swap-v2")).unwrap());
    wait_status(&engine, "swap", "ready v2", |s| {
        s["info"]["version"] == "2.0.0"
    })
    .await;
    let ids = producer.await.unwrap();
    receiver.wait_for(ids.len(), Duration::from_secs(30)).await;
    for id in &ids {
        let deliveries = engine.settled(&acme, id, Duration::from_secs(20)).await;
        assert_eq!(deliveries[0]["status"], "delivered");
        assert_eq!(
            deliveries[0]["attempts"], 1,
            "no delivery failed during the swap"
        );
    }
    let versions: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.header("x-plugin-version").unwrap_or("none").to_string())
        .collect();
    assert_eq!(versions.first().map(String::as_str), Some("1"));
    assert_eq!(
        versions.last().map(String::as_str),
        Some("2"),
        "later deliveries use the new version"
    );
    let first_v2 = receiver
        .received()
        .into_iter()
        .find(|r| r.header("x-plugin-version") == Some("2"))
        .unwrap();
    eprintln!(
        "hot swap: rename to first delivery by v2 took {:?}",
        first_v2.at.saturating_duration_since(swapped_at)
    );
    // The endpoint's deliveries reused warm instances, and none of v1's served v2's calls (the
    // version headers above): reuse is keyed by the loaded version.
    let (_, metrics) = engine.api.with_token("").get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    let warm = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmhook_plugin_apply_calls_total{instance=\"warm\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(warm > 0, "no warm instance was reused: {metrics}");

    // Removing the file: new deliveries fail, clearly.
    std::fs::remove_file(dir.join("swap.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while plugin_status(&engine, "swap")
        .await
        .is_some_and(|s| s["status"] == "ready")
    {
        assert!(
            Instant::now() < deadline,
            "removed plugin still listed as ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = engine.event(&acme, "tick", json!({})).await;
    let deliveries = engine.settled(&acme, &event, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0]["status"], "dead");
    let attempts = engine
        .attempts(&acme, &event, deliveries[0]["id"].as_str().unwrap())
        .await;
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains("swap") && error.contains("not loaded"),
        "{error}"
    );
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_only_their_own_attempt() {
    let engine = TestEngine::start_with(|c| {
        c.plugins.call_deadline = Duration::from_millis(500);
        c.delivery.retry_schedule = vec![];
    })
    .await;
    let dir = plugins_dir(&engine);
    let (acme, _) = engine.tenant("acme").await;
    for name in [
        "spin-forever",
        "grow-memory",
        "panic-step",
        "huge-body",
        "forbidden-host",
    ] {
        publish(&dir, name, &std::fs::read(guest(name)).unwrap());
        wait_status(&engine, name, "ready", |s| s["status"] == "ready").await;
    }
    // Refused at load, with the reason shown; never usable.
    publish(
        &dir,
        "bad-import",
        &std::fs::read(guest("bad-import")).unwrap(),
    );
    publish(&dir, "garbage", b"\0asm this is not a component at all");
    let bad = wait_status(&engine, "bad-import", "refused", |s| {
        s["status"] == "failed"
    })
    .await;
    assert!(
        bad["last_error"].as_str().unwrap().contains("evil:escape"),
        "{bad}"
    );
    let garbage = wait_status(&engine, "garbage", "refused", |s| s["status"] == "failed").await;
    assert!(
        !garbage["last_error"].as_str().unwrap().is_empty(),
        "{garbage}"
    );
    let (status, answer) = engine
        .api
        .post(
            &format!("/v1/tenants/{acme}/endpoints"),
            json!({"url": "http://127.0.0.1:9/x", "steps": [{"plugin": "bad-import"}]}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");

    let healthy = Receiver::ok().await;
    let hostile = Receiver::ok().await;
    let token_route = Receiver::start(vec![], Reply::Status(200, vec![])).await;
    engine
        .endpoint(
            &acme,
            json!({"url": healthy.url(), "event_types": ["healthy"]}),
        )
        .await;
    let cases = [
        ("spin-forever", json!({}), "deadline"),
        ("grow-memory", json!({}), "memory"),
        (
            "panic-step",
            json!({}),
            "hostile plugin panicked on purpose",
        ),
        ("huge-body", json!({}), "body"),
    ];
    let mut events = Vec::new();
    for (name, config, _) in &cases {
        engine.endpoint(&acme, json!({"url": hostile.url(), "event_types": [name], "steps": [{"plugin": name, "config": config}]})).await;
    }
    engine
        .endpoint(&acme, json!({"url": hostile.url(), "event_types": ["forbidden-host"], "steps": [{"plugin": "bearer", "config": {
            "provider": "forbidden-host",
            "provider_config": {"token_url": token_route.url(), "evil_url": "http://127.0.0.1:9/steal"}}}]}))
        .await;
    for (name, _, _) in &cases {
        events.push(engine.event(&acme, name, json!({})).await);
        // The engine keeps delivering for other endpoints meanwhile.
        let ok = engine.event(&acme, "healthy", json!({})).await;
        let delivered = engine.settled(&acme, &ok, Duration::from_secs(20)).await;
        assert_eq!(delivered[0]["status"], "delivered");
    }
    let forbidden = engine.event(&acme, "forbidden-host", json!({})).await;
    for ((name, _, words), event) in cases.iter().zip(&events) {
        let deliveries = engine.settled(&acme, event, Duration::from_secs(20)).await;
        assert_eq!(deliveries[0]["status"], "dead", "{name}");
        let attempts = engine
            .attempts(&acme, event, deliveries[0]["id"].as_str().unwrap())
            .await;
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(
            error.contains(name) && error.to_lowercase().contains(words),
            "{name}: {error}"
        );
    }
    let deliveries = engine
        .settled(&acme, &forbidden, Duration::from_secs(20))
        .await;
    let attempts = engine
        .attempts(&acme, &forbidden, deliveries[0]["id"].as_str().unwrap())
        .await;
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.contains("denied"), "{error}");
    assert!(
        token_route.received().is_empty(),
        "the forbidden host was never contacted (nor the token route)"
    );
    assert!(
        hostile.received().is_empty(),
        "no hostile attempt reached the receiver"
    );
    // The engine is still healthy.
    assert_eq!(engine.api.get("/healthz").await.0, 200);
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_name_list_or_overwrite_each_others_plugins() {
    let engine = TestEngine::start().await;
    let (acme, acme_token) = engine.tenant("acme").await;
    let (globex, globex_token) = engine.tenant("globex").await;
    let component = std::fs::read(guest("tenant-token-provider")).unwrap();
    let as_acme = engine.api.with_token(&acme_token);
    let as_globex = engine.api.with_token(&globex_token);
    let (status, uploaded) = as_acme
        .raw(
            "PUT",
            &format!("/v1/tenants/{acme}/plugins/acme-token"),
            component.clone(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{uploaded}");
    assert_eq!(uploaded["status"], "ready");

    // Globex cannot list, overwrite or delete it.
    let (status, _) = as_globex.get(&format!("/v1/tenants/{acme}/plugins")).await;
    assert_eq!(status, 404);
    let (status, _) = as_globex
        .raw(
            "PUT",
            &format!("/v1/tenants/{acme}/plugins/acme-token"),
            component.clone(),
            &[],
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = as_globex
        .delete(&format!("/v1/tenants/{acme}/plugins/acme-token"))
        .await;
    assert_eq!(status, 404);
    let (_, own) = as_globex
        .get(&format!("/v1/tenants/{globex}/plugins"))
        .await;
    assert_eq!(own.as_array().unwrap().len(), 0, "{own}");
    let (_, global) = as_globex.get("/v1/plugins").await;
    assert!(
        !global.to_string().contains("acme-token"),
        "tenant plugins are not in the global list"
    );
    // Nor name it in an endpoint.
    let step = json!({"url": "http://127.0.0.1:9/x", "steps": [{"plugin": "bearer", "config": {"provider": "tenant:acme-token", "provider_config": {}}}]});
    let (status, answer) = as_globex
        .post(&format!("/v1/tenants/{globex}/endpoints"), step.clone())
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "steps[0].config.provider");
    // Its own upload of the same name is its own plugin.
    let (status, _) = as_globex
        .raw(
            "PUT",
            &format!("/v1/tenants/{globex}/plugins/acme-token"),
            component,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let (_, acme_list) = as_acme.get(&format!("/v1/tenants/{acme}/plugins")).await;
    assert_eq!(acme_list.as_array().unwrap().len(), 1);
    // Refused uploads say why and keep nothing.
    let (status, answer) = as_acme
        .raw(
            "PUT",
            &format!("/v1/tenants/{acme}/plugins/broken"),
            b"garbage".to_vec(),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let (_, acme_list) = as_acme.get(&format!("/v1/tenants/{acme}/plugins")).await;
    assert_eq!(acme_list.as_array().unwrap().len(), 1, "{acme_list}");
    engine.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_uses_the_compiled_code_cache() {
    let data = tempfile::tempdir().unwrap();
    let cache = data.path().join("own-cache");
    // Two engines, one after the other, sharing only the cache directory.
    let start = |cache: PathBuf| {
        let dir = tempfile::tempdir_in(data.path()).unwrap().keep();
        async move {
            let began = Instant::now();
            let engine = wasmhook::server::start({
                let mut c = crate::support::test_config(dir);
                c.plugins.cache_dir = Some(cache);
                c
            })
            .await
            .unwrap();
            (engine, began.elapsed())
        }
    };
    let (first, cold) = start(cache.clone()).await;
    let (status, _) = ApiClient::new(first.url(), crate::support::ADMIN)
        .send("PUT", "/v1/tenants/x/plugins/y", vec![], &[])
        .await;
    assert_eq!(status, 404);
    first.shutdown().await;
    let cached_files = std::fs::read_dir(&cache).unwrap().count();
    assert!(
        cached_files >= wasmhook::guests::BUILT_IN_PLUGINS.len(),
        "{cached_files} files in the cache"
    );
    let (second, warm) = start(cache).await;
    let plugins = ApiClient::new(second.url(), crate::support::ADMIN)
        .get("/v1/plugins")
        .await
        .unwrap();
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "ready"),
        "{plugins}"
    );
    eprintln!(
        "start-up with {} built-in plugins: cold {cold:?}, from the cache {warm:?}",
        wasmhook::guests::BUILT_IN_PLUGINS.len()
    );
    assert!(
        warm < cold,
        "the cached start ({warm:?}) must beat the cold one ({cold:?})"
    );
    second.shutdown().await;
}

#[test]
fn plugin_check_prints_world_info_and_schema_or_why_not() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(["plugin", "check", guest("api-key").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for words in ["step-plugin", "authentication", "api-key", "\"key\""] {
        assert!(text.contains(words), "missing {words} in:\n{text}");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(["plugin", "check", guest("bad-import").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("evil:escape"));
}
