//! The one Wasmtime [`Engine`]: pooling allocator, epoch interruption and its ticker thread.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::LoadError;

/// How often the ticker thread increments the engine's epoch. The CPU deadline of a call is
/// measured in these ticks, so it is accurate to about one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// WebAssembly page size: memory sizes are multiples of it.
const WASM_PAGE: usize = 64 * 1024;

/// Limits applied to every plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeLimits {
    /// CPU deadline of one call (guest execution time; time spent awaiting the host's
    /// services, such as an outbound request, does not count). Default 2 s.
    pub call_deadline: Duration,
    /// Maximum size of each linear memory of a plugin instance. Default 64 MiB.
    pub max_memory_bytes: usize,
    /// Maximum number of plugin instances alive at once (calls beyond it wait for a slot).
    /// Sizes the pooling allocator. Default 256.
    pub max_concurrent_instances: u32,
    /// Largest request body (or token) a plugin may return; above it the call fails with
    /// [`super::PluginError::OutputTooLarge`]. Default 16 MiB.
    pub max_body_bytes: usize,
    /// How a step's instance may be reused between the `apply` calls of one endpoint (see
    /// [`InstanceReuse`]). Default: up to 1,000 calls, at most 64 idle instances.
    pub reuse: InstanceReuse,
}

/// Reuse of a step plugin's instance across the `apply` calls of ONE endpoint.
///
/// Instantiating afresh costs a page-fault and TLB-shootdown storm per call (the slot's memory is
/// reset with `madvise` and re-faulted copy-on-write); a warm instance costs nothing of that. An
/// instance is only ever reused for the same plugin version, tenant, endpoint and configuration,
/// so nothing of one tenant can reach another tenant's delivery; it is discarded after a trap, an
/// error of the runtime, anything written to stderr, growing beyond `max_memory_bytes / 4`, or
/// `max_calls` calls. `validate`, `info` and `fetch-token` always run in a fresh instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Calls one instance may serve before it is dropped; 0 or 1 = a fresh instance per call.
    pub max_calls: u32,
    /// Idle warm instances kept across all plugins (each holds a pool slot and its memory).
    pub max_idle: u32,
    /// An idle instance unused for this long is dropped.
    pub idle_timeout: Duration,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        InstanceReuse {
            max_calls: 1000,
            max_idle: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl InstanceReuse {
    /// A fresh instance for every call.
    pub const NEVER: InstanceReuse = InstanceReuse {
        max_calls: 0,
        max_idle: 0,
        idle_timeout: Duration::ZERO,
    };

    /// Whether instances are reused at all.
    pub fn enabled(&self) -> bool {
        self.max_calls > 1 && self.max_idle > 0
    }
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            call_deadline: Duration::from_secs(2),
            max_memory_bytes: 64 << 20,
            max_concurrent_instances: 256,
            max_body_bytes: 16 << 20,
            reuse: InstanceReuse::default(),
        }
    }
}

impl RuntimeLimits {
    /// `max_memory_bytes` rounded up to whole WebAssembly pages.
    pub(crate) fn memory_bytes_rounded(&self) -> usize {
        self.max_memory_bytes.div_ceil(WASM_PAGE).max(1) * WASM_PAGE
    }
}

/// Builds the engine shared by every plugin.
pub(crate) fn build_engine(limits: &RuntimeLimits) -> Result<Engine, LoadError> {
    if limits.max_concurrent_instances == 0 {
        return Err(LoadError::Runtime(
            "max_concurrent_instances must be at least 1".into(),
        ));
    }
    // Calls in flight plus the idle warm instances kept for reuse.
    let idle = if limits.reuse.enabled() {
        limits.reuse.max_idle
    } else {
        0
    };
    let n = limits.max_concurrent_instances.saturating_add(idle);
    let memory = limits.memory_bytes_rounded();

    let mut pool = PoolingAllocationConfig::new();
    // One component instance per in-flight call, plus the idle warm ones.
    pool.total_component_instances(n);
    // A `wasm32-wasip2` component is several core instances: the guest's module plus the small
    // shim/fixup modules `wit-component` adds for lowered imports (and an adapter for components
    // built from wasip1). 16 per component is generous; the pool holds 8 per call on average.
    pool.max_core_instances_per_component(16);
    pool.total_core_instances(n.saturating_mul(8));
    // Linear memories: the guest's own, plus possibly an adapter's. The pool holds 2 per call.
    pool.max_memories_per_component(4);
    pool.total_memories(n.saturating_mul(2));
    // Tables: the guest's function table plus the shims' indirect-call tables.
    pool.max_tables_per_component(8);
    pool.total_tables(n.saturating_mul(4));
    // One fiber stack per in-flight async call.
    pool.total_stacks(n);
    // The hard cap of a linear memory within its slot: memory.grow beyond it fails (and the
    // store's limiter, set to the same value, turns that failure into a trap).
    pool.max_memory_size(memory);
    // Keep-resident knobs: on slot reuse, reset this many bytes with memset instead of
    // madvise(DONTNEED) so that hot slots avoid page faults; costs that much RSS per warm slot.
    // Measured (cargo bench --bench engine, perf): with 1 MiB, zeroing the resident pages on every
    // store drop was 18 % of engine CPU in the api-key run; 64 KiB took the per-call cost from
    // ~79 to ~53 µs and engine CPU per delivery from ~415 to ~272 µs.
    pool.linear_memory_keep_resident(64 << 10);
    // Same for tables (a plugin's table is a few KiB).
    pool.table_keep_resident(64 << 10);
    // Same for async fiber stacks (only used when stack zeroing is on, which it is not).
    pool.async_stack_keep_resident(64 << 10);
    // Slots that were used by some plugin and are now free, kept warm (affine to their module)
    // before cold slots are used: bounds the RSS of idle slots.
    pool.max_unused_warm_slots(32);

    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Deadlines: compiled code checks the engine's epoch at loop headers and function entries.
    config.epoch_interruption(true);
    // Each memory slot reserves just the capped size (plus guard) of virtual address space, so
    // the pool reserves about total_memories * (max_memory_bytes + guard) rather than 4 GiB per
    // slot. Bounds checks are then explicit, which costs a little speed.
    config.memory_reservation(memory as u64);
    // Guard region after each memory: lets Cranelift elide bounds checks for small static
    // offsets and catches out-of-bounds accesses as traps.
    config.memory_guard_size(16 << 20);
    // Memories live in fixed pool slots and never move.
    config.memory_may_move(false);
    // Copy-on-write images of the data segments: instantiation maps instead of copying.
    config.memory_init_cow(true);
    // Guest stack (512 KiB) within the 2 MiB fiber stack used for async calls. A recursion that
    // exhausts it is a stack-overflow trap, reported as such.
    config.max_wasm_stack(512 << 10);
    config.async_stack_size(2 << 20);

    Engine::new(&config).map_err(|e| LoadError::Runtime(super::error::chain(&e)))
}

/// Starts the thread that ticks the engine's epoch every [`EPOCH_TICK`].
///
/// It holds only a weak reference: when the last clone of the engine is dropped, `upgrade`
/// fails and the thread exits.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<(), LoadError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasmhook-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
            tracing::debug!("plugin engine dropped; epoch ticker stopped");
        })
        .map(|_| ())
        .map_err(|e| LoadError::Runtime(format!("cannot start the epoch ticker thread: {e}")))
}
