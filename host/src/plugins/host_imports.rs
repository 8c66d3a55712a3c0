//! Per-call store state and the host side of the plugin imports (`log`, `jose`, `tokens`,
//! `outbound`), plus the WASI context that grants nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{step, token};
use super::engine::RuntimeLimits;
use super::error::{LoadError, chain};
use super::services::HostServices;
use super::types::{CallContext, LogLevel};

/// How much of a plugin's stderr is kept (for panic messages).
pub(crate) const STDERR_CAPACITY: usize = 4096;
/// Longest log line kept from a plugin (longer ones are cut).
const MAX_LOG_LINE: usize = 2048;
/// Log lines a plugin may write per call; the rest are dropped (with one warning).
const MAX_LOG_LINES: u32 = 64;

use step::wasmhook::plugin::{jose, log, tokens, types as wit};
use token::wasmhook::plugin::outbound;

/// Wraps [`StoreLimits`] to remember that the memory cap was hit, so that the resulting trap
/// can be reported as such.
pub(crate) struct CallLimiter {
    inner: StoreLimits,
    pub(crate) memory_limit_hit: bool,
    /// Largest size any linear memory of the instance was allowed to grow to, in bytes.
    pub(crate) largest_memory: usize,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        if matches!(r, Ok(true)) {
            self.largest_memory = self.largest_memory.max(desired);
        } else {
            self.memory_limit_hit = true;
        }
        r
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_limit_hit = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Tracks guest execution time against the call's CPU deadline: wall time since the call
/// started, minus the time spent awaiting host services.
pub(crate) struct CallClock {
    started: Instant,
    in_host: Duration,
    budget: Duration,
}

impl CallClock {
    /// Guest time left before the deadline (zero when exceeded).
    pub(crate) fn remaining(&self) -> Duration {
        let used = self.started.elapsed().saturating_sub(self.in_host);
        self.budget.saturating_sub(used)
    }
}

/// The data of a plugin instance's [`wasmtime::Store`]: built with the store, and re-armed by
/// [`StoreState::begin_call`] when a warm instance serves another call.
pub(crate) struct StoreState {
    plugin: Arc<str>,
    ctx: Option<CallContext>,
    host: Arc<dyn HostServices>,
    /// Hosts a token provider may reach (empty: outbound denied).
    allowed_hosts: Vec<String>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) clock: CallClock,
    log_lines: u32,
}

impl StoreState {
    pub(crate) fn new(
        plugin: Arc<str>,
        limits: &RuntimeLimits,
        ctx: Option<CallContext>,
        host: Arc<dyn HostServices>,
        allowed_hosts: Vec<String>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Grants nothing: no args, no env, no preopened directories, stdin closed, stdout
        // discarded, no sockets (no TCP/UDP, no address allowed, no name lookup). Clocks and
        // random are WASI's harmless defaults.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let limiter = CallLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes_rounded())
                // A component is a handful of core instances; this only bounds pathological ones.
                .instances(32)
                .tables(32)
                .memories(8)
                .trap_on_grow_failure(true)
                .build(),
            memory_limit_hit: false,
            largest_memory: 0,
        };
        StoreState {
            plugin,
            ctx,
            host,
            allowed_hosts,
            wasi,
            table: ResourceTable::new(),
            limiter,
            stderr,
            clock: CallClock {
                started: Instant::now(),
                in_host: Duration::ZERO,
                budget: limits.call_deadline,
            },
            log_lines: 0,
        }
    }

    /// Re-arms a warm instance's state for its next call: the call's context and services, a
    /// new CPU-time budget, a new log allowance.
    pub(crate) fn begin_call(
        &mut self,
        ctx: Option<CallContext>,
        host: Arc<dyn HostServices>,
        budget: Duration,
    ) {
        self.ctx = ctx;
        self.host = host;
        self.clock = CallClock {
            started: Instant::now(),
            in_host: Duration::ZERO,
            budget,
        };
        self.log_lines = 0;
    }

    /// Whether this instance may serve another call: it wrote nothing to stderr (a panic's
    /// message would be mixed with older output), and its memory stayed under `max_memory`.
    pub(crate) fn reusable(&self, max_memory: usize) -> bool {
        !self.limiter.memory_limit_hit
            && self.limiter.largest_memory <= max_memory
            && self.stderr.contents().is_empty()
    }

    /// Awaits a host service, excluding the time spent from the guest's CPU deadline.
    async fn in_host<F: Future>(&mut self, fut: F) -> F::Output {
        let t = Instant::now();
        let out = fut.await;
        self.clock.in_host += t.elapsed();
        out
    }

    fn call_ctx(&self, what: &str) -> Result<CallContext, String> {
        self.ctx.clone().ok_or_else(|| {
            format!("{what} is only available while a delivery is running (apply/fetch-token)")
        })
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for StoreState {}

impl log::Host for StoreState {
    async fn log(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin, "plugin wrote more than {MAX_LOG_LINES} log lines in one call; dropping the rest");
            }
            return;
        }
        let message = truncate(&message, MAX_LOG_LINE);
        let level = LogLevel::from(level);
        self.host
            .log(&self.plugin, self.ctx.as_ref(), level, message);
    }
}

impl jose::Host for StoreState {
    async fn sign(
        &mut self,
        alg: String,
        header_json: String,
        payload: Vec<u8>,
    ) -> Result<String, String> {
        let ctx = self.call_ctx("jose.sign")?;
        let fut = self.host.jose_sign(&ctx, &alg, &header_json, &payload);
        self.in_host(fut).await
    }

    async fn encrypt(
        &mut self,
        alg: String,
        enc: String,
        recipient: String,
        header_json: String,
        payload: Vec<u8>,
    ) -> Result<String, String> {
        let ctx = self.call_ctx("jose.encrypt")?;
        let fut = self
            .host
            .jose_encrypt(&ctx, &alg, &enc, &recipient, &header_json, &payload);
        self.in_host(fut).await
    }
}

impl tokens::Host for StoreState {
    async fn get_token(&mut self, provider: String, config: String) -> Result<String, String> {
        let ctx = self.call_ctx("tokens.get-token")?;
        let fut = self.host.get_token(&ctx, &provider, &config);
        self.in_host(fut).await
    }
}

impl outbound::Host for StoreState {
    async fn send(&mut self, req: wit::Request) -> Result<wit::Response, String> {
        let ctx = self.call_ctx("outbound.send")?;
        if self.allowed_hosts.is_empty() {
            return Err(
                "outbound requests are denied: the provider's config has neither `allowed_hosts` nor `token_url`"
                    .to_string(),
            );
        }
        let fut = self
            .host
            .send_outbound(&ctx, self.allowed_hosts.clone(), req.into());
        self.in_host(fut).await.map(Into::into)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The linkers of the two worlds: WASI p2 (granting nothing, see [`StoreState::new`]) plus the
/// world's own imports.
pub(crate) struct Linkers {
    pub(crate) step: Linker<StoreState>,
    pub(crate) token: Linker<StoreState>,
}

impl Linkers {
    pub(crate) fn new(engine: &Engine) -> Result<Self, LoadError> {
        let err = |e: wasmtime::Error| LoadError::Runtime(format!("linker: {}", chain(&e)));
        let mut step_linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut step_linker).map_err(err)?;
        step::StepPlugin::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut step_linker, |s| s)
            .map_err(err)?;
        let mut token_linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut token_linker).map_err(err)?;
        token::TokenPlugin::add_to_linker::<StoreState, HasSelf<StoreState>>(
            &mut token_linker,
            |s| s,
        )
        .map_err(err)?;
        Ok(Linkers {
            step: step_linker,
            token: token_linker,
        })
    }
}
