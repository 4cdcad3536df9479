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
/// Finest and coarsest period of the epoch ticker.
const EPOCH_TICK_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_millis(10));

/// Period of the epoch ticker for a call timeout: a twentieth of it, between 1 and
/// 10 ms, so a timeout is enforced within about 5% while the ticker wakes at most 100
/// times a second for the default 200 ms (a 1 ms ticker cost 8% of the gateway's CPU
/// under load: a thousand context switches a second). Timeouts are counted in these
/// ticks; the epoch follows the real time elapsed, so late wake-ups do not stretch one.
pub(crate) fn epoch_tick(timeout: Duration) -> Duration {
    (timeout / 20).clamp(EPOCH_TICK_RANGE.0, EPOCH_TICK_RANGE.1)
}

/// Memory of a finished instance kept mapped, and zeroed, for the next one: a Rust
/// guest's stack and data fit in it.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

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
/// `meter_fuel` also counts the fuel guests burn (`crochet plugin run`); a serving host
/// leaves it off.
pub(crate) fn build_engine(limits: &PluginLimits, meter_fuel: bool) -> Result<Engine, PluginError> {
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
        .consume_fuel(meter_fuel)
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

/// Increments the engine's epoch every `tick` (see [`epoch_tick`]) until dropped.
pub(crate) struct EpochTicker {
    /// Dropping the sender wakes the thread, which then exits.
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<Self, PluginError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("crochet-plugin-epoch".into())
            .spawn(move || {
                // The epoch counts whole ticks since the start, catching up when a
                // sleep overshoots, so that a deadline of N ticks is close to N ticks' time.
                let start = Instant::now();
                let mut epoch: u128 = 0;
                // Ends when the sender is dropped (or the engine is gone).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    let Some(engine) = engine.upgrade() else {
                        break;
                    };
                    let now = start.elapsed().as_nanos() / tick.as_nanos();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_tick_is_a_twentieth_of_the_timeout_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(epoch_tick(ms(200)), ms(10));
        assert_eq!(epoch_tick(ms(100)), ms(5));
        assert_eq!(epoch_tick(ms(5)), ms(1));
        assert_eq!(epoch_tick(Duration::from_secs(30)), ms(10));
    }
}
