//! Registry tests: directory watching (add, atomic swap, bad version, removal), built-in
//! shadowing, tenant plugins (isolation, persistence, refusal).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::plugin_host::{FakeHost, ctx, guest_or_skip, request};
use wasmhook::plugins::{
    PluginError, PluginRegistry, PluginRuntime, PluginSource, PluginState, RuntimeLimits,
};

fn registry(root: &Path) -> Arc<PluginRegistry> {
    let rt = PluginRuntime::new(RuntimeLimits::default()).unwrap();
    PluginRegistry::new(rt, root.join("cache"))
}

async fn version_header(
    reg: &PluginRegistry,
    tenant: &str,
    name: &str,
) -> Result<String, PluginError> {
    let p = reg.resolve(tenant, name)?;
    let out = p.apply(&ctx(), "{}", request(), FakeHost::new()).await?;
    Ok(out
        .header("x-plugin-version")
        .unwrap_or("<none>")
        .to_string())
}

/// Applies a file-system change, waits for the watcher to process it, then until it is quiet
/// (no further batch within 600 ms), so a late batch of this change cannot be mistaken later.
async fn change(reg: &PluginRegistry, f: impl FnOnce()) {
    let g = reg.watch_generation();
    f();
    assert!(
        reg.wait_for_watcher(g, Duration::from_secs(20)).await,
        "watcher did not process the change"
    );
    loop {
        let g = reg.watch_generation();
        if !reg.wait_for_watcher(g, Duration::from_millis(600)).await {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_watch_add_swap_bad_version_remove() {
    let v1 = guest_or_skip!("swap_v1");
    let v2 = guest_or_skip!("swap_v2");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let reg = registry(root.path());
    let _guard = reg.watch_directory(dir.clone()).await.unwrap();
    assert!(matches!(
        reg.resolve("t1", "swap"),
        Err(PluginError::NotFound(_))
    ));

    // Add.
    change(&reg, || std::fs::write(dir.join("swap.wasm"), &v1).unwrap()).await;
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "1");
    let in_flight = reg.resolve("t1", "swap").unwrap();

    // Atomic rename of v2 over it.
    change(&reg, || {
        std::fs::write(dir.join(".swap.wasm.tmp"), &v2).unwrap();
        std::fs::rename(dir.join(".swap.wasm.tmp"), dir.join("swap.wasm")).unwrap();
    })
    .await;
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "2");
    // A call that resolved before the swap keeps its version.
    let out = in_flight
        .apply(&ctx(), "{}", request(), FakeHost::new())
        .await
        .unwrap();
    assert_eq!(out.header("x-plugin-version"), Some("1"));

    // Garbage written over it: v2 stays live, status shows the failure.
    change(&reg, || {
        std::fs::write(dir.join("swap.wasm"), b"garbage, not wasm").unwrap()
    })
    .await;
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "2");
    let status = reg
        .list(None)
        .into_iter()
        .find(|s| s.name == "swap")
        .unwrap();
    println!("after garbage: {}", serde_json::to_string(&status).unwrap());
    assert_eq!(status.status, PluginState::Failed);
    assert!(status.live);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("not a WebAssembly component")
    );
    assert_eq!(status.source, PluginSource::Directory);

    // Fixed by publishing v1 again.
    change(&reg, || std::fs::write(dir.join("swap.wasm"), &v1).unwrap()).await;
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "1");
    let status = reg
        .list(None)
        .into_iter()
        .find(|s| s.name == "swap")
        .unwrap();
    assert_eq!(status.status, PluginState::Ready);
    assert!(status.last_error.is_none());

    // Remove.
    change(&reg, || {
        std::fs::remove_file(dir.join("swap.wasm")).unwrap()
    })
    .await;
    let err = reg.resolve("t1", "swap").unwrap_err();
    println!("after removal: {err}");
    assert_eq!(
        err,
        PluginError::NotFound("plugin `swap` is not loaded (its file was removed)".into())
    );
    assert!(reg.list(None).iter().all(|s| s.name != "swap"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_plugin_replaces_builtin_and_failed_first_load() {
    let v1: &'static [u8] =
        Box::leak(crate::support::plugin_host::guest("swap_v1").into_boxed_slice());
    let v2 = guest_or_skip!("swap_v2");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.wasm"), b"\0asm\x0d\0\x01\0junk").unwrap();
    let reg = registry(root.path());
    reg.add_builtin("swap", v1).await.unwrap();
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "1");

    let _guard = reg.watch_directory(dir.clone()).await.unwrap();
    // A file that never loaded: Unavailable with the reason; listed as failed.
    let err = reg.resolve("t1", "broken").unwrap_err();
    println!("broken: {err}");
    assert!(matches!(err, PluginError::Unavailable { .. }));
    let st = reg
        .list(None)
        .into_iter()
        .find(|s| s.name == "broken")
        .unwrap();
    assert!(!st.live && st.status == PluginState::Failed);

    // A directory plugin named like a built-in replaces it ...
    change(&reg, || std::fs::write(dir.join("swap.wasm"), &v2).unwrap()).await;
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "2");
    let st = reg
        .list(None)
        .into_iter()
        .find(|s| s.name == "swap")
        .unwrap();
    assert_eq!(st.source, PluginSource::Directory);
    // ... and removing the file brings the built-in back.
    change(&reg, || {
        std::fs::remove_file(dir.join("swap.wasm")).unwrap()
    })
    .await;
    assert_eq!(version_header(&reg, "t1", "swap").await.unwrap(), "1");
    let st = reg
        .list(None)
        .into_iter()
        .find(|s| s.name == "swap")
        .unwrap();
    assert_eq!(st.source, PluginSource::BuiltIn);
}

/// A persisting step that records what it was asked to keep.
fn keep(
    kept: &Arc<std::sync::Mutex<Vec<String>>>,
    what: &str,
) -> impl std::future::Future<Output = Result<(), String>> + use<> {
    let (kept, what) = (kept.clone(), what.to_string());
    async move {
        kept.lock().unwrap().push(what);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_plugins_are_isolated_persisted_and_validated() {
    let v1 = guest_or_skip!("swap_v1");
    let v2 = guest_or_skip!("swap_v2");
    let bad = guest_or_skip!("bad_import");
    let root = tempfile::tempdir().unwrap();
    let reg = registry(root.path());
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));

    let st = reg
        .put_tenant_plugin("acme", "mine", &v1, keep(&kept, "acme/mine v1"))
        .await
        .unwrap();
    println!("put: {}", serde_json::to_string(&st).unwrap());
    assert_eq!(st.name, "tenant:mine");
    assert_eq!(st.source, PluginSource::Tenant("acme".into()));
    assert_eq!(*kept.lock().unwrap(), ["acme/mine v1"]);
    assert_eq!(
        version_header(&reg, "acme", "tenant:mine").await.unwrap(),
        "1"
    );

    // Another tenant cannot see it, and the error does not reveal it exists.
    let err = reg.resolve("globex", "tenant:mine").unwrap_err();
    let err_missing = reg.resolve("globex", "tenant:nothing").unwrap_err();
    println!("other tenant: {err}");
    assert!(matches!(err, PluginError::NotFound(_)));
    assert_eq!(
        err.to_string().replace("mine", "X"),
        err_missing.to_string().replace("nothing", "X")
    );
    assert!(reg.list(Some("globex")).is_empty());
    assert_eq!(reg.list(Some("acme")).len(), 1);
    // Tenant plugins are not global, and global names are not tenant ones.
    assert!(reg.list(None).is_empty());
    assert!(reg.resolve("acme", "mine").is_err());

    // Replace with v2.
    reg.put_tenant_plugin("acme", "mine", &v2, keep(&kept, "acme/mine v2"))
        .await
        .unwrap();
    assert_eq!(
        version_header(&reg, "acme", "tenant:mine").await.unwrap(),
        "2"
    );

    // Refused components are not persisted and say why.
    let err = reg
        .put_tenant_plugin("acme", "evil", &bad, keep(&kept, "acme/evil"))
        .await
        .unwrap_err();
    println!("refused: {err}");
    assert!(err.to_string().contains("evil:escape/sockets"));
    let err = reg
        .put_tenant_plugin("acme", "Bad_Name", &v1, keep(&kept, "bad name"))
        .await
        .unwrap_err();
    println!("bad name: {err}");
    let err = reg
        .put_tenant_plugin("../etc", "x", &v1, keep(&kept, "bad tenant"))
        .await
        .unwrap_err();
    println!("bad tenant: {err}");
    assert_eq!(*kept.lock().unwrap(), ["acme/mine v1", "acme/mine v2"]);

    // A version that cannot be stored does not go live: v1 keeps serving.
    let err = reg
        .put_tenant_plugin("acme", "mine", &v1, async { Err::<(), _>("disk full") })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(
        version_header(&reg, "acme", "tenant:mine").await.unwrap(),
        "2"
    );

    // Stored bytes load into a fresh registry (another node, a restart), and a stored
    // component that no longer loads is recorded as failed, not fatal.
    let reg2 = registry(root.path());
    reg2.load_tenant_plugin("acme", "mine", &v2).await;
    assert_eq!(
        version_header(&reg2, "acme", "tenant:mine").await.unwrap(),
        "2"
    );
    assert!(reg2.resolve("globex", "tenant:mine").is_err());
    reg2.load_tenant_plugin("acme", "broken", &bad).await;
    let versions = reg2.tenant_plugin_versions();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(reg2.resolve("acme", "tenant:broken").is_err());

    // Delete.
    assert!(reg.delete_tenant_plugin("acme", "mine").await);
    assert!(!reg.delete_tenant_plugin("acme", "mine").await);
    assert!(matches!(
        reg.resolve("acme", "tenant:mine"),
        Err(PluginError::NotFound(_))
    ));
}
