//! Per-call store state: the host imports, the memory limiter, the empty WASI context,
//! and the mapping of wasmtime failures to [`PluginError`].

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{LogLevel, WindowCount, host};
use super::{Counters, PluginError};

/// Longest log line a guest may write; longer ones are cut.
const MAX_LOG_BYTES: usize = 1024;
/// Log lines one call may write; later ones are dropped.
const MAX_LOG_LINES: u32 = 64;
/// Longest counter key a guest may use.
const MAX_COUNTER_KEY_BYTES: usize = 256;

/// The `T` of every `Store<T>`: lives for one call.
pub(crate) struct HostState {
    plugin: Arc<str>,
    config: Arc<str>,
    counters: Counters,
    pub(crate) limiter: Limiter,
    log_lines: u32,
    /// Where the call's log lines are also recorded (`crochet plugin run`).
    pub(crate) trace: Option<CallTrace>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    /// Readies a reused instance's state for its next call: its log allowance and the
    /// record of a refused memory growth start over.
    pub(crate) fn begin_call(&mut self) {
        self.log_lines = 0;
        self.limiter.memory_refused = false;
    }

    pub(crate) fn new(
        plugin: Arc<str>,
        config: Arc<str>,
        counters: Counters,
        max_memory_bytes: usize,
    ) -> Self {
        // Nothing from the host: no preopened directories, environment, arguments or
        // stdio (stdin is closed, stdout/stderr are discarded), no sockets and no name
        // lookups. The interfaces exist because `wasm32-wasip2` guests import them.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            plugin,
            config,
            counters,
            limiter: Limiter::new(max_memory_bytes),
            log_lines: 0,
            trace: None,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

/// Records what the calls of a host did, for tools that show one call to a plugin's
/// author (`crochet plugin run`): the guest's log lines and the fuel each call burnt.
/// A host given one ([`super::HostSettings::trace`]) meters fuel, which a serving host
/// does not.
#[derive(Debug, Clone, Default)]
pub struct CallTrace(Arc<Mutex<Traced>>);

#[derive(Debug, Default)]
struct Traced {
    logs: Vec<GuestLog>,
    fuel: Option<u64>,
}

/// One line a guest wrote with the `log` import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestLog {
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The line, cut as the host's log cuts it.
    pub message: String,
}

impl CallTrace {
    /// Fuel a call starts with when traced: far more than any call finishes in its
    /// time limit, so the wall-clock limit, not the fuel, stops a runaway guest.
    pub const FUEL_BUDGET: u64 = u64::MAX / 2;

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        if let Ok(mut traced) = self.0.lock() {
            traced.logs.push(GuestLog {
                level,
                message: message.to_owned(),
            });
        }
    }

    pub(crate) fn record_fuel(&self, consumed: u64) {
        if let Ok(mut traced) = self.0.lock() {
            traced.fuel = Some(consumed);
        }
    }

    /// The log lines recorded so far, oldest first.
    pub fn logs(&self) -> Vec<GuestLog> {
        self.0.lock().map(|t| t.logs.clone()).unwrap_or_default()
    }

    /// Fuel the last finished call consumed (`None` before any call).
    pub fn fuel_consumed(&self) -> Option<u64> {
        self.0.lock().ok().and_then(|t| t.fuel)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for HostState {
    fn config(&mut self) -> String {
        self.config.to_string()
    }

    fn now_ms(&mut self) -> u64 {
        super::counters::now_ms()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES {
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut end = MAX_LOG_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        if self.log_lines == MAX_LOG_LINES {
            message.push_str(" (log limit reached: further lines of this call are dropped)");
        }
        if let Some(trace) = &self.trace {
            trace.log(level, &message);
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn counter_add(
        &mut self,
        key: String,
        delta: u32,
        window_ms: u64,
    ) -> impl Future<Output = Result<WindowCount, String>> + Send {
        let counters = self.counters.clone();
        let key = (key.len() <= MAX_COUNTER_KEY_BYTES).then(|| format!("{}:{key}", self.plugin));
        async move {
            let Some(key) = key else {
                return Err(format!(
                    "counter key longer than {MAX_COUNTER_KEY_BYTES} bytes"
                ));
            };
            counters
                .add(&key, delta, window_ms)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

impl super::bindings::policy::crochet::plugin::types::Host for HostState {}

/// [`StoreLimits`] plus a record of whether a memory growth was refused, which tells a
/// trap for want of memory from any other trap.
pub(crate) struct Limiter {
    limits: StoreLimits,
    pub(crate) memory_refused: bool,
    /// The largest linear memory the instance has grown to, in bytes.
    pub(crate) memory_bytes: usize,
}

impl Limiter {
    fn new(max_memory_bytes: usize) -> Self {
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory_bytes)
                .build(),
            memory_refused: false,
            memory_bytes: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes.max(desired);
        } else {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Maps the outcome of instantiating and calling a guest (`None`: the host-side timer
/// ran out while the guest awaited a host call) to the plugin's result.
pub(crate) fn classify<R>(
    plugin: &str,
    memory_refused: bool,
    outcome: Option<wasmtime::Result<R>>,
) -> Result<R, PluginError> {
    let plugin = plugin.to_owned();
    let error = match outcome {
        Some(Ok(value)) => return Ok(value),
        None => return Err(PluginError::Timeout { plugin }),
        Some(Err(error)) => error,
    };
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return Err(PluginError::Timeout { plugin });
    }
    if memory_refused && trap != Some(Trap::StackOverflow) {
        return Err(PluginError::MemoryLimit { plugin });
    }
    let message = match trap {
        Some(trap) => trap.to_string(),
        None if error.is::<wasmtime::PoolConcurrencyLimitError>() => {
            format!("too many plugin calls at once: {error}")
        }
        // Not a trap: a broken canonical ABI value, a failed instantiation, ...
        None => {
            let mut message = format!("{error:#}");
            if message.len() > MAX_LOG_BYTES {
                let mut end = MAX_LOG_BYTES;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            message
        }
    };
    Err(PluginError::Trap { plugin, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use host::Host as _;

    fn state() -> HostState {
        HostState::new("p".into(), "{\"a\":1}".into(), Counters::memory(), 1 << 20)
    }

    #[test]
    fn config_and_log_limits() {
        let mut s = state();
        assert_eq!(s.config(), r#"{"a":1}"#);
        assert!(s.now_ms() > 1_600_000_000_000);
        // Multi-byte characters across the cut do not panic.
        s.log(LogLevel::Info, "é".repeat(MAX_LOG_BYTES));
        for _ in 0..(MAX_LOG_LINES * 2) {
            s.log(LogLevel::Debug, "x".into());
        }
        assert_eq!(s.log_lines, MAX_LOG_LINES * 2 + 1);
    }

    #[test]
    fn a_trace_records_the_lines_the_log_keeps() {
        let trace = CallTrace::default();
        let mut s = state();
        s.trace = Some(trace.clone());
        s.log(LogLevel::Warn, "first".into());
        s.log(LogLevel::Error, "x".repeat(MAX_LOG_BYTES + 10));
        for _ in 0..MAX_LOG_LINES {
            s.log(LogLevel::Debug, "more".into());
        }
        let logs = trace.logs();
        assert_eq!(logs.len(), MAX_LOG_LINES as usize);
        assert_eq!((logs[0].level, logs[0].message.as_str()), ("warn", "first"));
        assert_eq!(logs[1].level, "error");
        assert_eq!(logs[1].message.len(), MAX_LOG_BYTES + 3);
        assert_eq!(trace.fuel_consumed(), None);
        trace.record_fuel(42);
        assert_eq!(trace.fuel_consumed(), Some(42));
    }

    #[tokio::test]
    async fn counters_are_namespaced_by_plugin() {
        let counters = Counters::memory();
        let mut a = HostState::new("a".into(), "{}".into(), counters.clone(), 1 << 20);
        let mut b = HostState::new("b".into(), "{}".into(), counters.clone(), 1 << 20);
        assert_eq!(
            a.counter_add("k".into(), 2, 60_000).await.unwrap().current,
            2
        );
        assert_eq!(
            b.counter_add("k".into(), 1, 60_000).await.unwrap().current,
            1
        );
        assert_eq!(counters.add("a:k", 0, 60_000).await.unwrap().current, 2);
        assert!(a.counter_add("k".repeat(300), 1, 60_000).await.is_err());
        assert!(a.counter_add("k".into(), 1, 0).await.is_err());
    }

    #[test]
    fn refused_growth_is_recorded() {
        let mut limiter = Limiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap());
        assert!(!limiter.memory_refused);
        assert!(!limiter.memory_growing(1 << 16, 2 << 20, None).unwrap());
        assert!(limiter.memory_refused);
    }

    #[test]
    fn classification() {
        let timeout = classify::<()>("p", false, None).unwrap_err();
        assert!(matches!(timeout, PluginError::Timeout { .. }));
        let interrupted = classify::<()>("p", true, Some(Err(Trap::Interrupt.into()))).unwrap_err();
        assert!(matches!(interrupted, PluginError::Timeout { .. }));
        let oom = classify::<()>("p", true, Some(Err(Trap::UnreachableCodeReached.into())));
        assert!(matches!(oom, Err(PluginError::MemoryLimit { .. })));
        let trap = classify::<()>("p", false, Some(Err(Trap::UnreachableCodeReached.into())));
        assert!(matches!(trap, Err(PluginError::Trap { .. })));
        assert_eq!(classify("p", false, Some(Ok(7))).unwrap(), 7);
    }
}
