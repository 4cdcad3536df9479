//! The one wasmtime [`Engine`] of a plugin host, and the thread that drives its epochs.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{PluginError, PluginLimits};

/// Instances of components alive at once (calls in flight) across the whole host. A call
/// past this many fails with a trap ("maximum concurrent limit ... reached") instead of
/// queueing.
pub(crate) const MAX_CONCURRENT_INSTANCES: u32 = 1000;
/// Core module instances inside one component (a `wasm32-wasip2` Rust component has the
/// main module plus a few shim modules); a component with more fails to compile.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Linear memories inside one component; a component with more fails to compile.
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables inside one component; a component with more fails to compile.
const MAX_TABLES_PER_COMPONENT: u32 = 8;
/// Elements of one table (8 bytes each: 80 KiB of address space per table slot).
const MAX_TABLE_ELEMENTS: usize = 10_000;
/// Guard region after each linear memory. Small, to keep the pool's reservation small;
/// it still lets loads and stores with a constant offset under 64 KiB share a bounds
/// check.
const MEMORY_GUARD_BYTES: u64 = 64 << 10;
/// Guest stack: deep enough for ordinary JSON handling, small enough that unbounded
/// recursion traps quickly.
const MAX_WASM_STACK: usize = 512 << 10;
/// Stack of the fiber a call runs on: the guest's 512 KiB plus 1.5 MiB for host code
/// (WASI, the `counter-add` future, Redis) called from the guest.
const ASYNC_STACK: usize = 2 << 20;
/// Period of the epoch ticker; timeouts are counted in these ticks (the epoch is
/// advanced by the real time elapsed, so late wake-ups do not stretch a timeout).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Builds the engine: component model, epoch interruption, pooling allocator sized for a
/// server.
///
/// Pool figures with the default 32 MiB memory limit: 1,000 concurrent component
/// instances; 1,000 linear memories (each a 32 MiB reservation plus a 64 KiB guard on
/// each side, about 32 GiB of reserved, not committed, address space in all); 4,000
/// tables of 10,000 elements (about 320 MiB reserved); 1,000 fiber stacks of 2 MiB
/// (about 2 GiB reserved). Because the reservation equals the memory limit rather than
/// wasmtime's default 4 GiB, compiled code keeps explicit bounds checks; the trade is a
/// pool 200 times smaller.
/// Memory of a finished instance kept mapped, and zeroed, for the next one: a Rust
/// guest's stack and data fit in it.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

pub(crate) fn build_engine(limits: &PluginLimits) -> Result<Engine, PluginError> {
    // The largest memory a guest may have, in whole 64 KiB wasm pages.
    let max_memory = (limits.max_memory_bytes.max(1) as u64).div_ceil(65_536) * 65_536;

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 4)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_memories_per_module(1)
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        .total_tables(MAX_CONCURRENT_INSTANCES * 4)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_tables_per_module(1)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        // Reset a finished instance's memory, tables and stack with memset rather than
        // madvise: under load the TLB shootdowns of madvise dominated a gateway call.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(ASYNC_STACK);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .memory_reservation(max_memory)
        .memory_guard_size(MEMORY_GUARD_BYTES)
        // Copy initial data in instead of mapping it copy-on-write, so that resetting a
        // memory never needs to unmap pages (see keep_resident above).
        .memory_init_cow(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| PluginError::Compile(format!("plugin engine: {e:#}")))
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    /// Dropping the sender wakes the thread, which then exits.
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Result<Self, PluginError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("crochet-plugin-epoch".into())
            .spawn(move || {
                // The epoch counts whole milliseconds since the start, catching up when a
                // sleep overshoots, so that a deadline of N ticks is close to N ms.
                let start = Instant::now();
                let mut epoch: u128 = 0;
                // Ends when the sender is dropped (or the engine is gone).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    let Some(engine) = engine.upgrade() else {
                        break;
                    };
                    let now = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                    while epoch < now {
                        engine.increment_epoch();
                        epoch += 1;
                    }
                }
            })
            .map_err(|e| PluginError::Compile(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self { _stop: stop })
    }
}
