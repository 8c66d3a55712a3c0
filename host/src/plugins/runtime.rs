//! [`PluginRuntime`] (engine, linkers, limits) and [`LoadedPlugin`] (a compiled, checked
//! component ready to be instantiated afresh for every call).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime::{Engine, Store, UpdateDeadline};

use super::allowed_hosts::allowed_hosts_from_config;
use super::bindings::step::wasmhook::plugin::types as wit;
use super::bindings::{convert_info, step, token};
use super::cache::{self, CacheOutcome};
use super::engine::{RuntimeLimits, build_engine, start_epoch_ticker};
use super::error::{LoadError, PluginError, chain};
use super::host_imports::{Linkers, StoreState};
use super::services::{HostServices, NoHostServices};
use super::traps;
use super::types::{CallContext, HttpRequest, PluginInfo, PluginKind, Token};
use super::warm::{WarmKey, WarmPool, WarmStep};

/// Extra wall-clock time a call may take beyond its CPU deadline, for awaiting the host's
/// services (an outbound request, a token fetch). A call blocked longer than
/// `call_deadline + WALL_CLOCK_ALLOWANCE` (in a host service, or in a WASI sleep, which the CPU
/// deadline cannot see) is cancelled.
pub const WALL_CLOCK_ALLOWANCE: Duration = Duration::from_secs(30);

/// The world a component targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `wasmhook:plugin/step-plugin`: authentication, security and transform steps.
    StepPlugin,
    /// `wasmhook:plugin/token-plugin`: token providers.
    TokenPlugin,
}

impl World {
    /// The world's WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            World::StepPlugin => "step-plugin",
            World::TokenPlugin => "token-plugin",
        }
    }

    fn export(self) -> &'static str {
        match self {
            World::StepPlugin => "wasmhook:plugin/step@0.1.0",
            World::TokenPlugin => "wasmhook:plugin/token-provider@0.1.0",
        }
    }

    /// Interfaces of `wasmhook:plugin` the host provides to this world.
    fn own_imports(self) -> &'static [&'static str] {
        match self {
            World::StepPlugin => &["types", "log", "jose", "tokens"],
            World::TokenPlugin => &["types", "log", "outbound"],
        }
    }

    /// Whether the host provides import `name` to components of this world.
    fn provides(self, name: &str) -> bool {
        const WASI: &[&str] = &[
            "wasi:cli/",
            "wasi:io/",
            "wasi:clocks/",
            "wasi:random/",
            "wasi:filesystem/",
            "wasi:sockets/",
        ];
        if let Some(rest) = name.strip_prefix("wasmhook:plugin/") {
            let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
            return version.starts_with("0.1.") && self.own_imports().contains(&iface);
        }
        WASI.iter().any(|p| name.starts_with(p)) && name.contains("@0.2.")
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) struct RuntimeInner {
    engine: Engine,
    linkers: Linkers,
    limits: RuntimeLimits,
    /// One permit per instance slot of the pool: calls beyond it wait instead of failing.
    slots: Semaphore,
    /// Idle step instances kept for reuse by the same endpoint (they have slots of their own).
    warm: WarmPool,
    /// Identity of the next loaded plugin version (keys the warm pool).
    next_plugin_id: AtomicU64,
}

/// The plugin runtime: ONE Wasmtime engine (pooling allocator, epoch interruption), the linkers
/// of the two worlds, and the limits applied to every call.
pub struct PluginRuntime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

enum WorldPre {
    Step(step::StepPluginPre<StoreState>),
    Token(token::TokenPluginPre<StoreState>),
}

/// One export call; the configuration is borrowed from the caller (lowered into the guest as is).
enum Op<'a> {
    Info,
    Validate(&'a str),
    Apply(wit::Context, &'a str, wit::Request),
    FetchToken(wit::Context, &'a str),
}

enum Out {
    Info(wit::PluginInfo),
    Unit(Result<(), wit::Error>),
    Request(Result<wit::Request, wit::Error>),
    Token(Result<wit::Token, wit::Error>),
}

impl PluginRuntime {
    /// Builds the engine (see [`super::engine`]), starts its epoch ticker and links both worlds.
    pub fn new(limits: RuntimeLimits) -> Result<Arc<Self>, LoadError> {
        let engine = build_engine(&limits)?;
        start_epoch_ticker(&engine)?;
        let linkers = Linkers::new(&engine)?;
        let slots = Semaphore::new(limits.max_concurrent_instances as usize);
        let warm = WarmPool::new(limits.reuse);
        Ok(Arc::new(PluginRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linkers,
                limits,
                slots,
                warm,
                next_plugin_id: AtomicU64::new(1),
            }),
        }))
    }

    /// How often `apply` calls were served by a warm instance: `(reused, instantiated)`.
    pub fn reuse_counts(&self) -> (u64, u64) {
        let stats = &self.inner.warm.stats;
        (
            stats.reused.load(Ordering::Relaxed),
            stats.instantiated.load(Ordering::Relaxed),
        )
    }

    /// Idle warm instances held right now.
    pub fn idle_instances(&self) -> usize {
        self.inner.warm.idle_count()
    }

    /// The limits applied to every call.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.inner.limits
    }

    /// The engine (for diagnostics).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles `bytes` (or loads its compiled code from `cache_dir`), checks which world it
    /// targets (refusing unknown imports, naming them) and smoke-calls `info()` under the call
    /// limits.
    pub async fn load(
        &self,
        name: &str,
        bytes: &[u8],
        cache_dir: Option<&Path>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let engine = self.inner.engine.clone();
        let plugin = name.to_string();
        let owned = bytes.to_vec();
        let dir = cache_dir.map(Path::to_path_buf);
        let (sha256, compiled) = tokio::task::spawn_blocking(move || {
            let sha256 = hex::encode(Sha256::digest(&owned));
            let compiled =
                cache::load_or_compile(&engine, &plugin, &owned, &sha256, dir.as_deref());
            (sha256, compiled)
        })
        .await
        .map_err(|e| LoadError::Compile {
            plugin: name.to_string(),
            reason: format!("the compiler task failed: {e}"),
        })?;
        let compiled = compiled?;

        let (world, pre) = self.inner.classify(name, &compiled.component)?;
        let name_arc: Arc<str> = Arc::from(name);
        let out = self
            .inner
            .invoke(
                &name_arc,
                &pre,
                Op::Info,
                None,
                Arc::new(NoHostServices),
                Vec::new(),
                None,
            )
            .await
            .map_err(|e| LoadError::InfoFailed {
                plugin: name.to_string(),
                reason: e.to_string(),
            })?;
        let Out::Info(raw) = out else {
            unreachable!("info() returns Out::Info")
        };
        let info = convert_info(raw).map_err(|reason| LoadError::InfoFailed {
            plugin: name.to_string(),
            reason,
        })?;
        let kind_fits = match world {
            World::StepPlugin => info.kind.is_step(),
            World::TokenPlugin => info.kind == PluginKind::TokenProvider,
        };
        if !kind_fits {
            return Err(LoadError::InfoFailed {
                plugin: name.to_string(),
                reason: format!(
                    "it says its kind is `{}` but it targets the {world} world",
                    info.kind
                ),
            });
        }
        tracing::info!(
            plugin = name,
            sha256 = %sha256,
            world = %world,
            kind = %info.kind,
            version = %info.version,
            cache = ?compiled.outcome,
            elapsed_ms = compiled.elapsed.as_millis() as u64,
            "plugin loaded"
        );
        Ok(Arc::new(LoadedPlugin {
            id: self.inner.next_plugin_id.fetch_add(1, Ordering::Relaxed),
            name: name_arc,
            info,
            sha256,
            world,
            pre,
            cache: compiled.outcome,
            compile_time: compiled.elapsed,
            rt: self.inner.clone(),
        }))
    }
}

impl RuntimeInner {
    /// Works out the world of `component` from its exports and pre-instantiates it with that
    /// world's linker; unknown imports are named in the error.
    fn classify(&self, name: &str, component: &Component) -> Result<(World, WorldPre), LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports_world = |w: World| {
            let prefix = w.export().split('@').next().unwrap_or_default();
            exports
                .iter()
                .any(|e| e == w.export() || e.split('@').next() == Some(prefix))
        };
        let world = match (
            exports_world(World::StepPlugin),
            exports_world(World::TokenPlugin),
        ) {
            (true, false) => World::StepPlugin,
            (false, true) => World::TokenPlugin,
            (true, true) => {
                return Err(LoadError::WrongWorld {
                    plugin: name.to_string(),
                    reason: "it exports both `wasmhook:plugin/step` and `wasmhook:plugin/token-provider`; a plugin targets exactly one world".into(),
                    unknown_imports: Vec::new(),
                });
            }
            (false, false) => {
                let unknown: Vec<String> = imports
                    .iter()
                    .filter(|i| !World::StepPlugin.provides(i) && !World::TokenPlugin.provides(i))
                    .cloned()
                    .collect();
                let mut reason = format!(
                    "it exports neither `{}` (world step-plugin) nor `{}` (world token-plugin); its exports: [{}]",
                    World::StepPlugin.export(),
                    World::TokenPlugin.export(),
                    exports.join(", ")
                );
                if !unknown.is_empty() {
                    reason.push_str(&format!(
                        "; it also imports what the host does not provide: {}",
                        unknown.join(", ")
                    ));
                }
                return Err(LoadError::WrongWorld {
                    plugin: name.to_string(),
                    reason,
                    unknown_imports: unknown,
                });
            }
        };
        let linker = match world {
            World::StepPlugin => &self.linkers.step,
            World::TokenPlugin => &self.linkers.token,
        };
        let unknown: Vec<String> = imports
            .iter()
            .filter(|i| !world.provides(i))
            .cloned()
            .collect();
        let wrong = |detail: String, unknown: Vec<String>| LoadError::WrongWorld {
            plugin: name.to_string(),
            reason: detail,
            unknown_imports: unknown,
        };
        if !unknown.is_empty() {
            return Err(wrong(
                format!(
                    "it targets the {world} world but imports what the host does not provide to it: {}",
                    unknown.join(", ")
                ),
                unknown,
            ));
        }
        let pre = linker.instantiate_pre(component).map_err(|e| {
            wrong(
                format!(
                    "its imports do not match what the host provides to the {world} world: {}",
                    chain(&e)
                ),
                Vec::new(),
            )
        })?;
        let pre = match world {
            World::StepPlugin => step::StepPluginPre::new(pre).map(WorldPre::Step),
            World::TokenPlugin => token::TokenPluginPre::new(pre).map(WorldPre::Token),
        }
        .map_err(|e| {
            wrong(
                format!("its exports do not match the {world} world: {}", chain(&e)),
                Vec::new(),
            )
        })?;
        Ok((world, pre))
    }

    /// A fresh store for one call, with the memory limiter and the CPU deadline armed.
    fn new_store(
        &self,
        plugin: &Arc<str>,
        ctx: Option<CallContext>,
        host: Arc<dyn HostServices>,
        allowed_hosts: Vec<String>,
    ) -> Store<StoreState> {
        let state = StoreState::new(plugin.clone(), &self.limits, ctx, host, allowed_hosts);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // The deadline is checked every epoch tick: the callback compares the guest's time
        // (wall time minus time spent awaiting host services) with the call deadline, traps
        // with `Trap::Interrupt` once it is exceeded and otherwise yields to the async
        // executor, so a spinning plugin never monopolises a runtime worker thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if ctx.data().clock.remaining().is_zero() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs one export: in a warm instance of `warm_key` when one is idle, otherwise in a fresh
    /// instance; after a clean call the instance goes back to the warm pool when `warm_key` is
    /// given (only `apply` gives one, and only when reuse is enabled).
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        plugin: &Arc<str>,
        pre: &WorldPre,
        op: Op<'_>,
        ctx: Option<CallContext>,
        host: Arc<dyn HostServices>,
        allowed_hosts: Vec<String>,
        warm_key: Option<WarmKey>,
    ) -> Result<Out, PluginError> {
        let _permit = self
            .slots
            .acquire()
            .await
            .map_err(|_| PluginError::Unavailable {
                plugin: plugin.to_string(),
                reason: "the plugin runtime is shutting down".into(),
            })?;
        let warm = warm_key.as_ref().and_then(|key| self.warm.take(key));
        let (mut store, mut warm_bindings, calls) = match warm {
            Some(w) => {
                let mut store = w.store;
                store
                    .data_mut()
                    .begin_call(ctx, host, self.limits.call_deadline);
                store.set_epoch_deadline(1);
                (store, Some(w.bindings), w.calls)
            }
            None => (self.new_store(plugin, ctx, host, allowed_hosts), None, 0),
        };
        let mut instantiated = warm_bindings.is_some();
        let run = async {
            match pre {
                WorldPre::Step(pre) => {
                    let inst = match warm_bindings.take() {
                        Some(bindings) => bindings,
                        None => pre.instantiate_async(&mut store).await?,
                    };
                    instantiated = true;
                    let g = inst.wasmhook_plugin_step();
                    let out = match op {
                        Op::Info => Out::Info(g.call_info(&mut store).await?),
                        Op::Validate(c) => Out::Unit(g.call_validate(&mut store, c).await?),
                        Op::Apply(cx, c, r) => {
                            Out::Request(g.call_apply(&mut store, &cx, c, &r).await?)
                        }
                        Op::FetchToken(..) => unreachable!("checked by the caller"),
                    };
                    Ok((out, Some(inst)))
                }
                WorldPre::Token(pre) => {
                    let inst = pre.instantiate_async(&mut store).await?;
                    instantiated = true;
                    let g = inst.wasmhook_plugin_token_provider();
                    let out = match op {
                        Op::Info => Out::Info(g.call_info(&mut store).await?),
                        Op::Validate(c) => Out::Unit(g.call_validate(&mut store, c).await?),
                        Op::FetchToken(cx, c) => {
                            Out::Token(g.call_fetch_token(&mut store, &cx, c).await?)
                        }
                        Op::Apply(..) => unreachable!("checked by the caller"),
                    };
                    Ok((out, None))
                }
            }
        };
        let wall = self.limits.call_deadline + WALL_CLOCK_ALLOWANCE;
        let result: Result<wasmtime::Result<(Out, Option<step::StepPlugin>)>, _> =
            tokio::time::timeout(wall, run).await;
        match result {
            Ok(Ok((out, bindings))) => {
                if let (Some(key), Some(bindings)) = (warm_key, bindings)
                    && store
                        .data()
                        .reusable(self.limits.memory_bytes_rounded() / 4)
                {
                    self.warm.put(
                        key,
                        WarmStep {
                            store,
                            bindings,
                            calls: calls + 1,
                        },
                    );
                }
                Ok(out)
            }
            Ok(Err(e)) => {
                let state = store.data();
                let reason = traps::describe(&e, state, &self.limits);
                if !instantiated && !traps::is_trap(&e, state) {
                    tracing::warn!(plugin = %plugin, error = %reason, "plugin instantiation failed");
                    Err(PluginError::Unavailable {
                        plugin: plugin.to_string(),
                        reason: format!("instantiation failed: {reason}"),
                    })
                } else {
                    tracing::warn!(plugin = %plugin, error = %reason, "plugin call failed");
                    Err(PluginError::Trap {
                        plugin: plugin.to_string(),
                        reason,
                    })
                }
            }
            Err(_) => {
                tracing::warn!(plugin = %plugin, "plugin call exceeded its wall-clock limit");
                Err(PluginError::Trap {
                    plugin: plugin.to_string(),
                    reason: format!(
                        "exceeded its wall-clock limit of {} (blocked too long outside WebAssembly)",
                        traps::human_duration(wall)
                    ),
                })
            }
        }
    }
}

/// A compiled component whose world and `info()` are known. Cheap to share: calls instantiate it
/// from its pre-instantiation, or (`apply` only) reuse a warm instance of the same endpoint.
pub struct LoadedPlugin {
    /// Identity of this loaded version (keys its warm instances).
    id: u64,
    name: Arc<str>,
    info: PluginInfo,
    sha256: String,
    world: World,
    pre: WorldPre,
    cache: CacheOutcome,
    compile_time: Duration,
    rt: Arc<RuntimeInner>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("world", &self.world)
            .field("info", &self.info)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        // This version is gone (replaced or removed): its idle instances go with it.
        self.rt.warm.purge(self.id);
    }
}

impl LoadedPlugin {
    /// The name it was loaded under (`api-key`, `tenant:x` is resolved to `x`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What `info()` returned at load.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The plugin's kind (from `info()`).
    pub fn kind(&self) -> PluginKind {
        self.info.kind
    }

    /// The world the component targets.
    pub fn world(&self) -> World {
        self.world
    }

    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Time spent compiling (or loading from the cache).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    async fn run(
        &self,
        op: Op<'_>,
        ctx: Option<CallContext>,
        host: Arc<dyn HostServices>,
        allowed_hosts: Vec<String>,
    ) -> Result<Out, PluginError> {
        self.rt
            .invoke(&self.name, &self.pre, op, ctx, host, allowed_hosts, None)
            .await
    }

    /// Calls `validate(config)`: checks a configuration when an endpoint is created or changed.
    pub async fn validate(
        &self,
        config: &str,
        host: Arc<dyn HostServices>,
    ) -> Result<(), PluginError> {
        match self
            .run(Op::Validate(config), None, host, Vec::new())
            .await?
        {
            Out::Unit(r) => r.map_err(Into::into),
            _ => unreachable!("validate returns Out::Unit"),
        }
    }

    /// Calls `apply(ctx, config, request)` of a step plugin and returns the changed request.
    /// Fails with [`PluginError::WrongKind`] for a token provider, and with
    /// [`PluginError::OutputTooLarge`] when the returned body exceeds `max_body_bytes`.
    pub async fn apply(
        &self,
        ctx: &CallContext,
        config: &str,
        request: HttpRequest,
        host: Arc<dyn HostServices>,
    ) -> Result<HttpRequest, PluginError> {
        if self.world != World::StepPlugin {
            return Err(self.wrong_kind("apply", "step (authentication, security or transform)"));
        }
        let op = Op::Apply(ctx.into(), config, request.into());
        let key = self
            .rt
            .warm
            .enabled()
            .then(|| WarmKey::new(self.id, &ctx.tenant, &ctx.endpoint, config));
        let out = self
            .rt
            .invoke(
                &self.name,
                &self.pre,
                op,
                Some(ctx.clone()),
                host,
                Vec::new(),
                key,
            )
            .await?;
        match out {
            Out::Request(r) => {
                let req: HttpRequest = r.map_err(PluginError::from)?.into();
                let limit = self.rt.limits.max_body_bytes;
                if req.body.len() > limit {
                    return Err(PluginError::OutputTooLarge {
                        plugin: self.name.to_string(),
                        what: "a request body".into(),
                        size: req.body.len(),
                        limit,
                    });
                }
                Ok(req)
            }
            _ => unreachable!("apply returns Out::Request"),
        }
    }

    /// Calls `fetch-token(ctx, config)` of a token provider. Its outbound requests may only go
    /// to the hosts its config allows (see [`allowed_hosts_from_config`]).
    pub async fn fetch_token(
        &self,
        ctx: &CallContext,
        config: &str,
        host: Arc<dyn HostServices>,
    ) -> Result<Token, PluginError> {
        if self.world != World::TokenPlugin {
            return Err(self.wrong_kind("fetch_token", "token-provider"));
        }
        let allowed = allowed_hosts_from_config(config);
        let op = Op::FetchToken(ctx.into(), config);
        match self.run(op, Some(ctx.clone()), host, allowed).await? {
            Out::Token(r) => {
                let token: Token = r.map_err(PluginError::from)?.into();
                let limit = self.rt.limits.max_body_bytes;
                if token.value.len() > limit {
                    return Err(PluginError::OutputTooLarge {
                        plugin: self.name.to_string(),
                        what: "a token".into(),
                        size: token.value.len(),
                        limit,
                    });
                }
                Ok(token)
            }
            _ => unreachable!("fetch_token returns Out::Token"),
        }
    }

    /// Calls `info()` again in a fresh instance (used by `plugin check`).
    pub async fn call_info(&self) -> Result<PluginInfo, PluginError> {
        match self
            .run(Op::Info, None, Arc::new(NoHostServices), Vec::new())
            .await?
        {
            Out::Info(raw) => convert_info(raw).map_err(PluginError::Permanent),
            _ => unreachable!("info returns Out::Info"),
        }
    }

    /// Names of the component's imports and exports.
    pub fn imports_exports(&self) -> (Vec<String>, Vec<String>) {
        let component = match &self.pre {
            WorldPre::Step(p) => p.instance_pre().component(),
            WorldPre::Token(p) => p.instance_pre().component(),
        };
        let ty = component.component_type();
        let imports = ty
            .imports(&self.rt.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.rt.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        (imports, exports)
    }

    fn wrong_kind(&self, operation: &str, expected: &str) -> PluginError {
        PluginError::WrongKind {
            plugin: self.name.to_string(),
            operation: operation.into(),
            expected: expected.into(),
            actual: self.info.kind,
        }
    }
}
