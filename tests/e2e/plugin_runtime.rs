//! Plugin runtime tests with the real guest components.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::plugin_host::{FakeHost, ctx, guest_or_skip, request};
use wasmhook::plugins::{
    CacheOutcome, CallContext, HostServices, InstanceReuse, LoadError, LoadedPlugin, PluginError,
    PluginKind, PluginRuntime, RuntimeLimits, World, check_component,
};

fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::new(RuntimeLimits::default()).expect("runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_load_with_the_right_kinds() {
    let rt = runtime();
    let expected = [
        ("api_key", PluginKind::Authentication),
        ("basic_auth", PluginKind::Authentication),
        ("bearer", PluginKind::Authentication),
        ("http_token", PluginKind::TokenProvider),
        ("oauth2_client_credentials", PluginKind::TokenProvider),
        ("jws", PluginKind::Authentication),
        ("jwe", PluginKind::Security),
        ("standard_webhooks", PluginKind::Authentication),
        ("tenant_token_provider", PluginKind::TokenProvider),
    ];
    for (file, kind) in expected {
        let bytes = guest_or_skip!(file);
        let p = rt
            .load(&file.replace('_', "-"), &bytes, None)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        println!(
            "{file}: {} {} {:?} world={} compile={:?}",
            p.info().name,
            p.info().version,
            p.info().kind,
            p.world(),
            p.compile_time()
        );
        assert_eq!(p.info().kind, kind, "{file}");
        assert_eq!(
            p.world() == World::TokenPlugin,
            kind == PluginKind::TokenProvider
        );
        assert!(p.info().config_schema.is_object(), "{file} schema");
        assert_eq!(p.sha256().len(), 64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_adds_header_and_validates() {
    let rt = runtime();
    let bytes = guest_or_skip!("api_key");
    let p = rt.load("api-key", &bytes, None).await.unwrap();
    let host = FakeHost::new();
    let out = p
        .apply(
            &ctx(),
            r#"{"key":"sk_test_123","header":"X-Api-Key"}"#,
            request(),
            host.clone(),
        )
        .await
        .unwrap();
    assert_eq!(out.header("x-api-key"), Some("sk_test_123"));
    assert_eq!(out.body, request().body);
    p.validate(r#"{"key":"k"}"#, host.clone()).await.unwrap();
    let err = p.validate("{}", host.clone()).await.unwrap_err();
    assert!(matches!(err, PluginError::InvalidConfig(_)), "{err}");
    // A step plugin cannot fetch tokens.
    let err = p.fetch_token(&ctx(), "{}", host).await.unwrap_err();
    assert!(matches!(err, PluginError::WrongKind { .. }), "{err}");
    println!("{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_forever_hits_the_deadline_and_others_keep_running() {
    let rt = PluginRuntime::new(RuntimeLimits {
        call_deadline: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let spin_bytes = guest_or_skip!("spin_forever");
    let api_bytes = guest_or_skip!("api_key");
    let spin = rt.load("spin-forever", &spin_bytes, None).await.unwrap();
    let api = rt.load("api-key", &api_bytes, None).await.unwrap();
    let host = FakeHost::new();

    let spinning = {
        let (spin, host) = (spin.clone(), host.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = spin.apply(&ctx(), "{}", request(), host).await;
            (r, t.elapsed())
        })
    };
    // While it spins, other calls are served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let mut served = 0;
    while t.elapsed() < Duration::from_millis(1000) {
        api.apply(&ctx(), r#"{"key":"k"}"#, request(), host.clone())
            .await
            .unwrap();
        served += 1;
    }
    let (r, elapsed) = spinning.await.unwrap();
    let err = r.unwrap_err();
    println!("spin_forever: {err} after {elapsed:?}; {served} api-key calls served meanwhile");
    assert!(
        matches!(&err, PluginError::Trap { reason, .. } if reason.contains("exceeded its CPU deadline of 2s")),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert!(served > 10, "only {served} calls served while spinning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_memory_hits_the_memory_limit() {
    let rt = runtime();
    let bytes = guest_or_skip!("grow_memory");
    let p = rt.load("grow-memory", &bytes, None).await.unwrap();
    let err = p
        .apply(&ctx(), "{}", request(), FakeHost::new())
        .await
        .unwrap_err();
    println!("grow_memory: {err}");
    assert!(
        matches!(&err, PluginError::Trap { reason, .. } if reason.contains("exceeded its memory limit of 64 MiB")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_message_is_in_the_error() {
    let rt = runtime();
    let bytes = guest_or_skip!("panic_step");
    let p = rt.load("panic-step", &bytes, None).await.unwrap();
    let err = p
        .apply(&ctx(), "{}", request(), FakeHost::new())
        .await
        .unwrap_err();
    println!("panic_step: {err}");
    let msg = err.to_string();
    assert!(msg.contains("plugin `panic-step` trapped"), "{msg}");
    assert!(msg.contains("stderr:") && msg.contains("panicked"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_import_is_refused_at_load() {
    let rt = runtime();
    let bytes = guest_or_skip!("bad_import");
    let err = rt.load("bad-import", &bytes, None).await.unwrap_err();
    println!("bad_import: {err}");
    match &err {
        LoadError::WrongWorld {
            unknown_imports, ..
        } => {
            assert!(
                unknown_imports
                    .iter()
                    .any(|i| i.starts_with("evil:escape/sockets"))
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("evil:escape/sockets"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_core_modules_are_refused() {
    let rt = runtime();
    let err = rt
        .load("junk", b"this is not wasm at all", None)
        .await
        .unwrap_err();
    println!("garbage: {err}");
    assert!(matches!(err, LoadError::NotAComponent { .. }));
    let core = b"\0asm\x01\0\0\0";
    let err = rt.load("core", core, None).await.unwrap_err();
    println!("core module: {err}");
    assert!(err.to_string().contains("core WebAssembly module"));
    // A component header followed by garbage.
    let err = rt
        .load("broken", b"\0asm\x0d\0\x01\0garbage-garbage", None)
        .await
        .unwrap_err();
    println!("broken component: {err}");
    assert!(matches!(err, LoadError::Compile { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_body_fails_clearly() {
    let rt = runtime();
    let bytes = guest_or_skip!("huge_body");
    let p = rt.load("huge-body", &bytes, None).await.unwrap();
    let err = p
        .apply(&ctx(), "{}", request(), FakeHost::new())
        .await
        .unwrap_err();
    println!("huge_body: {err}");
    assert!(
        matches!(&err, PluginError::OutputTooLarge { .. })
            || matches!(&err, PluginError::Trap { reason, .. } if reason.contains("memory limit")),
        "{err}"
    );

    // With a larger memory cap the body is produced, and the body limit applies.
    // (A generous deadline: copying 100 MB out of the instance takes a while on a loaded CI box.)
    let rt = PluginRuntime::new(RuntimeLimits {
        max_memory_bytes: 512 << 20,
        max_concurrent_instances: 4,
        call_deadline: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    let p = rt.load("huge-body", &bytes, None).await.unwrap();
    let err = p
        .apply(&ctx(), "{}", request(), FakeHost::new())
        .await
        .unwrap_err();
    println!("huge_body (512 MiB cap): {err}");
    assert!(
        matches!(&err, PluginError::OutputTooLarge { size, limit, .. } if *size > *limit),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_host_is_refused_by_the_allow_list() {
    let rt = runtime();
    let bytes = guest_or_skip!("forbidden_host");
    let p = rt.load("forbidden-host", &bytes, None).await.unwrap();
    let host = FakeHost::new();
    let config = r#"{"token_url":"https://auth.example.com/token","evil_url":"https://evil.example.net/steal"}"#;
    let err = p
        .fetch_token(&ctx(), config, host.clone())
        .await
        .unwrap_err();
    println!("forbidden_host: {err}");
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("evil.example.net")),
        "{err}"
    );
    let calls = host.outbound.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, vec!["auth.example.com".to_string()]);

    // An empty allow-list: the runtime denies outbound itself, the host is not asked.
    let err = p
        .fetch_token(
            &ctx(),
            r#"{"token_url":"https://auth.example.com/token","allowed_hosts":[],"evil_url":"https://evil.example.net/"}"#,
            host.clone(),
        )
        .await
        .unwrap_err();
    println!("forbidden_host (empty allow-list): {err}");
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("denied")),
        "{err}"
    );
    assert_eq!(host.outbound.lock().unwrap().len(), 1);
    // A step plugin cannot be asked for a token; a token provider cannot apply.
    let err = p.apply(&ctx(), "{}", request(), host).await.unwrap_err();
    assert!(matches!(err, PluginError::WrongKind { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_cache_hits_in_a_fresh_runtime() {
    let bytes = guest_or_skip!("jws");
    let dir = tempfile::tempdir().unwrap();
    let rt1 = runtime();
    let t = Instant::now();
    let p1 = rt1.load("jws", &bytes, Some(dir.path())).await.unwrap();
    let cold = t.elapsed();
    assert_eq!(p1.cache_outcome(), CacheOutcome::Compiled);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let fname = files[0].file_name().into_string().unwrap();
    assert!(
        fname.starts_with(p1.sha256()) && fname.ends_with(".cwasm"),
        "{fname}"
    );

    let rt2 = runtime();
    let t = Instant::now();
    let p2 = rt2.load("jws", &bytes, Some(dir.path())).await.unwrap();
    let warm = t.elapsed();
    assert_eq!(p2.cache_outcome(), CacheOutcome::Hit);
    println!(
        "cache: compile+load {cold:?} (compile {:?}), cache hit load {warm:?} (deserialize {:?}); {} bytes component",
        p1.compile_time(),
        p2.compile_time(),
        bytes.len()
    );
    assert!(
        warm * 3 < cold,
        "cache hit {warm:?} not much faster than {cold:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_report() {
    let rt = runtime();
    let bytes = guest_or_skip!("api_key");
    let report = check_component(&rt, &bytes).await.unwrap();
    println!("{report}");
    assert!(report.ok);
    assert_eq!(report.world, World::StepPlugin);
    assert!(report.validate_empty.is_err());
    // `check` smoke-calls info and validate only: a plugin whose apply spins still passes.
    let spin = guest_or_skip!("spin_forever");
    let report = check_component(&rt, &spin).await.unwrap();
    assert!(report.ok && report.validate_empty.is_ok(), "{report}");
    let err = check_component(&rt, b"nope").await.unwrap_err();
    assert!(
        err.to_string().contains("not a WebAssembly component"),
        "{err}"
    );
}

/// `x-instance-calls` of one `apply` of the call-counter plugin: how many calls its instance has
/// served, this one included.
async fn instance_calls(
    plugin: &LoadedPlugin,
    ctx: &CallContext,
    config: &str,
    host: &Arc<dyn HostServices>,
) -> u32 {
    let out = plugin
        .apply(ctx, config, request(), host.clone())
        .await
        .unwrap_or_else(|e| panic!("apply for {}/{}: {e}", ctx.tenant, ctx.endpoint));
    out.header("x-instance-calls")
        .and_then(|v| v.parse().ok())
        .expect("x-instance-calls header")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_serve_only_their_own_endpoint_and_die_after_a_trap() {
    let rt = PluginRuntime::new(RuntimeLimits {
        reuse: InstanceReuse {
            max_calls: 5,
            ..InstanceReuse::default()
        },
        ..RuntimeLimits::default()
    })
    .unwrap();
    let bytes = guest_or_skip!("call_counter");
    let plugin = rt.load("call-counter", &bytes, None).await.unwrap();
    let host: Arc<dyn HostServices> = Arc::new(FakeHost::default());
    let a = ctx();
    let config = "{}";

    // One endpoint's sequential calls share an instance, for at most max_calls calls.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(instance_calls(&plugin, &a, config, &host).await);
    }
    assert_eq!(
        seen,
        [1, 2, 3, 4, 5, 1],
        "reused up to max_calls, then fresh"
    );

    // Another tenant, another endpoint of the same tenant, a changed config: never that instance.
    let other_tenant = CallContext {
        tenant: "t2".into(),
        endpoint: "ep2".into(),
        ..ctx()
    };
    let other_endpoint = CallContext {
        endpoint: "ep3".into(),
        ..ctx()
    };
    assert_eq!(
        instance_calls(&plugin, &other_tenant, config, &host).await,
        1
    );
    assert_eq!(
        instance_calls(&plugin, &other_endpoint, config, &host).await,
        1
    );
    assert_eq!(instance_calls(&plugin, &a, r#"{"v":2}"#, &host).await, 1);
    // ... while the first endpoint's warm instance is still there.
    assert_eq!(instance_calls(&plugin, &a, config, &host).await, 2);

    // A trap fails that call and drops the instance: the next call starts afresh.
    let panicking = CallContext {
        event_type: "panic".into(),
        ..ctx()
    };
    let err = plugin
        .apply(&panicking, config, request(), host.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("call-counter panicked on request"),
        "{err}"
    );
    assert_eq!(instance_calls(&plugin, &a, config, &host).await, 1);

    // Output on stderr also retires the instance (a later panic message must not mix with it).
    let noisy = CallContext {
        event_type: "stderr".into(),
        ..ctx()
    };
    assert_eq!(instance_calls(&plugin, &a, config, &host).await, 2);
    assert_eq!(instance_calls(&plugin, &noisy, config, &host).await, 3);
    assert_eq!(instance_calls(&plugin, &a, config, &host).await, 1);

    let (reused, instantiated) = rt.reuse_counts();
    assert_eq!((reused, instantiated), (8, 7), "(reused, instantiated)");

    // Unloading the plugin version drops its idle instances.
    assert!(rt.idle_instances() > 0);
    drop(plugin);
    assert_eq!(rt.idle_instances(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_off_gives_a_fresh_instance_to_every_call() {
    let rt = PluginRuntime::new(RuntimeLimits {
        reuse: InstanceReuse::NEVER,
        ..RuntimeLimits::default()
    })
    .unwrap();
    let bytes = guest_or_skip!("call_counter");
    let plugin = rt.load("call-counter", &bytes, None).await.unwrap();
    let host: Arc<dyn HostServices> = Arc::new(FakeHost::default());
    for _ in 0..3 {
        assert_eq!(instance_calls(&plugin, &ctx(), "{}", &host).await, 1);
    }
    assert_eq!(rt.idle_instances(), 0);
}
