//! The WebAssembly plugin host: policies, the scorer and seller adapters run as
//! components of `wit/crochet-plugin.wit` (`crochet:plugin@1.1.0`, or the earlier
//! `1.0.0`, which the host still runs unchanged) in a wasmtime sandbox.
//!
//! This module owns:
//!
//! - **the sandbox.** One [`wasmtime::Engine`] per [`PluginHost`] (component model,
//!   pooling allocator, epoch interruption). A call runs in a `Store` instantiated from a
//!   pre-linked component: a fresh one, dropped after the call, or for a policy a warm
//!   one kept for its later calls (see instance reuse below); no state passes between
//!   plugins, or between the calls of a fresh-instance plugin, except through the
//!   `counter-add` import. A guest sees only the `host`
//!   interface (its configuration, the time, a log, counters) and a WASI context with
//!   nothing in it: no files, environment, arguments, stdio, network or name lookup.
//! - **the limits** ([`PluginLimits`]): wall time per call (epoch interruption for guest
//!   code, a timer for time spent awaiting the host), linear memory, the size of what a
//!   guest returns, and the size of an uploaded component.
//! - **the versions** ([`WitVersion`]): a policy is bound to the newest version whose
//!   `check` export it matches; a 1.0 policy is given the 1.0 view of each call. A
//!   policy that exports `validate-config` (the `configurable-policy` world) is asked
//!   about its configuration before it serves ([`PolicyPlugin::validate_config`]).
//! - **instance reuse** ([`Isolation`]): a policy set to `reuse` (the default) keeps
//!   warm instances, each serving one call at a time (with `buyer`, one buyer's calls
//!   only), and replaces one after a failure,
//!   [`REUSE_MAX_CALLS`] calls, or when its memory passes [`REUSE_MAX_MEMORY_BYTES`];
//!   one set to `call` gets a fresh instance per call. Dry runs, `validate-config`,
//!   traced hosts, scorers and seller adapters always use a fresh instance.
//! - **the failure modes** ([`PluginError`]): a component that does not compile, is not
//!   of the expected world or imports something the host does not give is refused when
//!   it is loaded; a trap, timeout, exhausted memory or oversized output fails that one
//!   call, and the host goes on serving.
//! - **the compile cache**: compiled components are reused in memory and written, under
//!   an HMAC, to a cache directory so a restart does not recompile them.
//! - **the counters** ([`Counters`]) behind `counter-add`: in memory or in Redis.
//! - **the metrics** of every call ([`crate::metrics::PluginMetrics`], registered when a
//!   plugin is loaded): its result (ok, denied, trap, timeout, ...), a policy's refusal
//!   code, and its time.
//!
//! Loading a plugin ([`PluginHost::policy`] and the like) may compile it with cranelift,
//! which is CPU-bound and can take a while: call it from a blocking context
//! (`tokio::task::spawn_blocking`) when serving. Calls are `async` and must run inside
//! a Tokio runtime with timers enabled.

pub mod authoring;
mod bindings;
pub mod bundled;
mod cache;
mod counters;
mod engine;
mod error;
pub mod inventory;
pub mod policy;
mod sandbox;
pub mod scaffold;
pub mod scorer;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

pub use bindings::{
    AgentStats, Attempt, CallContext, CallKind, Decision, Denial, PaymentFlow, ScoreComponent,
    ScoreInfo, ScoreResult, WindowCount,
};
use bindings::{adapter::SellerAdapterPre, policy::PolicyPre, scorer::ScorerPre};
pub use cache::CacheStats;
pub use counters::{Counters, MemoryCounters, RedisCounters};
pub use error::{LoadError, PluginError};
use sandbox::HostState;
pub use sandbox::{CallTrace, GuestLog};

pub use crate::config::Isolation;
use crate::metrics::{PluginKind, PluginMetrics, PluginResult};

/// Calls one reused policy instance serves before it is replaced.
pub const REUSE_MAX_CALLS: u32 = 10_000;
/// Linear memory past which a reused policy instance is replaced after its call.
pub const REUSE_MAX_MEMORY_BYTES: usize = 8 << 20;
/// Idle warm instances kept per policy (one per call in flight, up to this many; with
/// [`Isolation::Buyer`], across all buyers).
const REUSE_MAX_IDLE: usize = 32;

/// The first bytes of every WebAssembly module or component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// The export a `configurable-policy` adds.
const VALIDATE_CONFIG: &str = "validate-config";

/// The version of the `crochet:plugin` package a policy was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitVersion {
    /// `crochet:plugin@1.0.0`.
    V1_0,
    /// `crochet:plugin@1.1.0`: headers, attempt and payment flow in the context, and
    /// `validate-config`.
    V1_1,
}

impl WitVersion {
    /// The newest version the host runs.
    pub const CURRENT: Self = Self::V1_1;

    /// `1.0.0` or `1.1.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0.0",
            Self::V1_1 => "1.1.0",
        }
    }
}

/// What one plugin call may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall time of one call, instantiation included (default 200 ms: generous, because
    /// a loaded machine can delay a microsecond call by tens of milliseconds).
    pub timeout: Duration,
    /// Linear memory of one instance (default 32 MiB). Also sizes the engine's pool, so
    /// it is fixed for the life of a [`PluginHost`].
    pub max_memory_bytes: usize,
    /// Text a guest may return from one call, all strings together (default 1 MiB).
    pub max_output_bytes: usize,
    /// Size of a component's bytes (default 8 MiB): the upload cap.
    pub max_component_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(200),
            max_memory_bytes: 32 << 20,
            max_output_bytes: 1 << 20,
            max_component_bytes: 8 << 20,
        }
    }
}

/// How to build a [`PluginHost`].
#[derive(Clone)]
pub struct HostSettings {
    /// Per-call limits.
    pub limits: PluginLimits,
    /// Where compiled components are kept across restarts; `None` compiles on every
    /// start.
    pub cache_dir: Option<PathBuf>,
    /// Secret key authenticating the files in `cache_dir` (derive it from the master
    /// key). Whoever knows it and can write the directory can make this host run
    /// arbitrary native code.
    pub cache_key: [u8; 32],
    /// Where `counter-add` counts.
    pub counters: Counters,
    /// Records every call's guest log lines and fuel, and turns on wasmtime's fuel
    /// metering for that: for `crochet plugin run`, never for serving (which stays on
    /// epoch interruption alone).
    pub trace: Option<CallTrace>,
}

impl std::fmt::Debug for HostSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSettings")
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .field("cache_key", &"<redacted>")
            .field("counters", &self.counters)
            .field("trace", &self.trace.is_some())
            .finish()
    }
}

impl Default for HostSettings {
    /// Default limits, no cache directory, in-memory counters.
    fn default() -> Self {
        Self {
            limits: PluginLimits::default(),
            cache_dir: None,
            cache_key: [0; 32],
            counters: Counters::memory(),
            trace: None,
        }
    }
}

/// The plugin runtime: one engine, its linker, the compile cache and the counters.
/// Cheap to clone; the engine's epoch thread stops when the last clone (and the last
/// plugin loaded from it) is dropped.
#[derive(Clone)]
pub struct PluginHost(Arc<HostInner>);

struct HostInner {
    engine: Engine,
    linker: Linker<HostState>,
    limits: PluginLimits,
    counters: Counters,
    cache: cache::ComponentCache,
    /// Epoch deadline of a call, in ticks of [`engine::epoch_tick`].
    deadline_ticks: u64,
    /// Set: calls are metered and their logs recorded.
    trace: Option<CallTrace>,
    _ticker: engine::EpochTicker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("limits", &self.0.limits)
            .field("counters", &self.0.counters)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Builds the engine, starts its epoch thread, prepares the cache directory.
    pub fn new(settings: HostSettings) -> Result<Self, PluginError> {
        let HostSettings {
            limits,
            cache_dir,
            cache_key,
            counters,
            trace,
        } = settings;
        let engine = engine::build_engine(&limits, trace.is_some())?;
        let mut linker = Linker::<HostState>::new(&engine);
        let link = |e: wasmtime::Error| PluginError::Compile(format!("plugin linker: {e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        // The host interface is the same in every world and version: link it once, from
        // the current `policy`. A 1.0 import of it resolves here by semver.
        bindings::policy::Policy::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| {
            state
        })
        .map_err(link)?;
        let cache = cache::ComponentCache::new(&engine, cache_dir, cache_key)?;
        let tick = engine::epoch_tick(limits.timeout);
        let deadline_ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick.as_nanos()))
            .unwrap_or(u64::MAX)
            .max(1);
        let ticker = engine::EpochTicker::start(&engine, tick)?;
        Ok(Self(Arc::new(HostInner {
            engine,
            linker,
            limits,
            counters,
            cache,
            deadline_ticks,
            trace,
            _ticker: ticker,
        })))
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.0.limits
    }

    /// What the compile cache has done since this host started.
    pub fn cache_stats(&self) -> CacheStats {
        self.0.cache.stats()
    }

    /// Loads a `policy` component of any version the host runs, configured with
    /// `config_json` (the operator's JSON), with a fresh instance for every call
    /// ([`Isolation::Call`]).
    pub fn policy(
        &self,
        name: &str,
        wasm: &[u8],
        config_json: String,
    ) -> Result<PolicyPlugin, PluginError> {
        self.policy_with(name, wasm, config_json, Isolation::Call)
    }

    /// [`policy`](Self::policy) with the given isolation of its calls.
    pub fn policy_with(
        &self,
        name: &str,
        wasm: &[u8],
        config_json: String,
        isolation: Isolation,
    ) -> Result<PolicyPlugin, PluginError> {
        let (pre, validate) = self.prepare(name, wasm, "policy", |pre| {
            let validate = pre.component().get_export_index(None, VALIDATE_CONFIG);
            let pre = match PolicyPre::new(pre.clone()) {
                Ok(pre) => PolicyPres::Current(pre),
                Err(current) => bindings::v1_0::PolicyPre::new(pre)
                    .map(PolicyPres::V1_0)
                    // The current version's mismatch is the one worth reading.
                    .map_err(|_| current)?,
            };
            Ok((pre, validate))
        })?;
        Ok(PolicyPlugin(Arc::new(PolicyLoaded {
            loaded: Loaded {
                host: self.clone(),
                name: name.into(),
                config: config_json.into(),
                pre,
                metrics: PluginMetrics::new(name, PluginKind::Policy),
            },
            validate,
            isolation,
            warm: Mutex::new(WarmPool::default()),
        })))
    }

    /// Loads a `scorer` component, configured with `config_json`.
    pub fn scorer(
        &self,
        name: &str,
        wasm: &[u8],
        config_json: String,
    ) -> Result<ScorerPlugin, PluginError> {
        let pre = self.prepare(name, wasm, "scorer", ScorerPre::new)?;
        Ok(ScorerPlugin(Arc::new(Loaded {
            host: self.clone(),
            name: name.into(),
            config: config_json.into(),
            pre,
            metrics: PluginMetrics::new(name, PluginKind::Scorer),
        })))
    }

    /// Loads a `seller-adapter` component; its configuration comes with each call.
    /// Sellers upload adapters, so all of them share one metrics label,
    /// [`ADAPTER_METRICS_LABEL`].
    pub fn adapter(&self, name: &str, wasm: &[u8]) -> Result<AdapterPlugin, PluginError> {
        let pre = self.prepare(name, wasm, "seller-adapter", SellerAdapterPre::new)?;
        Ok(AdapterPlugin(Arc::new(Loaded {
            host: self.clone(),
            name: name.into(),
            config: "{}".into(),
            pre,
            metrics: PluginMetrics::new(ADAPTER_METRICS_LABEL, PluginKind::SellerAdapter),
        })))
    }

    /// Checks an uploaded component: size cap, compiles, is a seller-adapter, imports
    /// nothing else. The compiled result is cached, so loading it next is cheap.
    pub fn validate_adapter(&self, wasm: &[u8]) -> Result<(), PluginError> {
        self.prepare("upload", wasm, "seller-adapter", SellerAdapterPre::new)
            .map(drop)
    }

    /// Size cap, compile (or cache), link against the host, check the world's exports.
    fn prepare<P>(
        &self,
        name: &str,
        wasm: &[u8],
        world: &'static str,
        bind: impl FnOnce(InstancePre<HostState>) -> wasmtime::Result<P>,
    ) -> Result<P, PluginError> {
        let limit = self.0.limits.max_component_bytes;
        if wasm.len() > limit {
            return Err(PluginError::TooLarge {
                bytes: wasm.len(),
                limit,
            });
        }
        if !wasm.starts_with(WASM_MAGIC) {
            return Err(PluginError::Compile(
                "the file is not WebAssembly (it does not start with the `\\0asm` magic \
                 bytes); a plugin is a WebAssembly component built for wasm32-wasip2"
                    .to_owned(),
            ));
        }
        let component = self.0.cache.get(&self.0.engine, wasm)?;
        let wrong_world = |detail: String| PluginError::WrongWorld {
            plugin: name.to_owned(),
            expected_world: world,
            detail,
        };
        let pre = self.0.linker.instantiate_pre(&component).map_err(|e| {
            wrong_world(format!(
                "it imports something the host does not provide ({e:#}); a plugin may import \
                 only `crochet:plugin/host` (1.1.0 or 1.0.0) and WASI 0.2"
            ))
        })?;
        bind(pre).map_err(|e| {
            wrong_world(format!(
                "it does not export the functions of the `{world}` world of \
                 `crochet:plugin@1.1.0` or `@1.0.0` ({e:#}); it exports: {}",
                self.export_names(&component)
            ))
        })
    }

    fn export_names(&self, component: &Component) -> String {
        let ty = component.component_type();
        let names: Vec<&str> = ty.exports(&self.0.engine).map(|(name, _)| name).collect();
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// A fresh store for one call, its deadline armed. `counters` replaces the host's
    /// counters (a dry call counts in a scratch store).
    fn store(
        &self,
        name: &Arc<str>,
        config: Arc<str>,
        counters: Option<&Counters>,
    ) -> Store<HostState> {
        let counters = counters.unwrap_or(&self.0.counters).clone();
        let state = HostState::new(
            name.clone(),
            config,
            counters,
            self.0.limits.max_memory_bytes,
        );
        let mut store = Store::new(&self.0.engine, state);
        if let Some(trace) = &self.0.trace {
            store.data_mut().trace = Some(trace.clone());
            // Cannot fail: the engine meters fuel whenever there is a trace.
            let _ = store.set_fuel(CallTrace::FUEL_BUDGET);
        }
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.0.deadline_ticks);
        store.epoch_deadline_trap();
        store
    }

    /// Awaits `call` (instantiate and call) under the wall-clock limit: `None` when the
    /// timer ran out. Guest code is stopped by the epoch deadline; this timer stops a call
    /// that is waiting on the host (a slow counter store). Dropping the call's future
    /// unwinds the guest safely.
    async fn within_deadline<R>(
        &self,
        call: impl Future<Output = wasmtime::Result<R>>,
    ) -> Option<wasmtime::Result<R>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::time::timeout(self.0.limits.timeout, call).await.ok()
        } else {
            Some(call.await)
        }
    }

    /// With a trace, records the fuel a finished call's store consumed.
    fn record_fuel(&self, store: &Store<HostState>) {
        if let (Some(trace), Ok(left)) = (&self.0.trace, store.get_fuel()) {
            trace.record_fuel(CallTrace::FUEL_BUDGET.saturating_sub(left));
        }
    }

    fn check_output(&self, name: &str, bytes: usize) -> Result<(), PluginError> {
        let limit = self.0.limits.max_output_bytes;
        if bytes > limit {
            return Err(PluginError::OutputTooLarge {
                plugin: name.to_owned(),
                bytes,
                limit,
            });
        }
        Ok(())
    }
}

/// One sandboxed call of a loaded plugin: a fresh store with its deadline armed, the
/// guest instantiated and called under the wall-clock limit, and the outcome classified
/// (trap, timeout, memory refused). The caller checks the output size, which depends
/// on the world.
macro_rules! sandboxed {
    ($host:expr, $name:expr, $config:expr, $pre:expr, |$guest:ident, $store:ident| $call:expr) => {
        sandboxed!($host, $name, $config, None, $pre, |$guest, $store| $call)
    };
    ($host:expr, $name:expr, $config:expr, $counters:expr, $pre:expr, |$guest:ident, $store:ident| $call:expr) => {{
        let mut $store = $host.store($name, $config, $counters);
        let outcome = $host
            .within_deadline(async {
                let $guest = $pre.instantiate_async(&mut $store).await?;
                $call.await
            })
            .await;
        $host.record_fuel(&$store);
        sandbox::classify($name, $store.data().limiter.memory_refused, outcome)
    }};
}

/// The `plugin` label of every seller adapter's metrics (one per listing would be
/// unbounded).
pub const ADAPTER_METRICS_LABEL: &str = "seller-adapter";

/// A loaded plugin: its host, name, operator configuration, pre-linked component and
/// metrics.
struct Loaded<P> {
    host: PluginHost,
    name: Arc<str>,
    config: Arc<str>,
    pre: P,
    metrics: PluginMetrics,
}

impl<P> Loaded<P> {
    /// Counts a finished call begun at `started`; `denied` says whether an answer is a
    /// refusal.
    fn observe<T>(
        &self,
        started: Instant,
        result: &Result<T, PluginError>,
        denied: impl FnOnce(&T) -> bool,
    ) {
        let kind = match result {
            Ok(answer) if denied(answer) => PluginResult::Denied,
            Ok(_) => PluginResult::Ok,
            Err(PluginError::Trap { .. }) => PluginResult::Trap,
            Err(PluginError::Timeout { .. }) => PluginResult::Timeout,
            Err(PluginError::MemoryLimit { .. }) => PluginResult::MemoryLimit,
            Err(PluginError::OutputTooLarge { .. }) => PluginResult::OutputTooLarge,
            Err(_) => PluginResult::Error,
        };
        self.metrics.observe(kind, started.elapsed());
    }
}

/// A policy's exports, in the version it was built against.
enum PolicyPres {
    Current(PolicyPre<HostState>),
    V1_0(bindings::v1_0::PolicyPre<HostState>),
}

impl PolicyPres {
    fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            Self::Current(pre) => pre.instance_pre(),
            Self::V1_0(pre) => pre.instance_pre(),
        }
    }

    async fn instantiate_async(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<PolicyGuest> {
        Ok(match self {
            Self::Current(pre) => PolicyGuest::Current(pre.instantiate_async(store).await?),
            Self::V1_0(pre) => PolicyGuest::V1_0(pre.instantiate_async(store).await?),
        })
    }
}

/// An instantiated policy, in its version.
enum PolicyGuest {
    Current(bindings::policy::Policy),
    V1_0(bindings::v1_0::Policy),
}

impl PolicyGuest {
    /// Calls `check`, giving a 1.0 policy the 1.0 view of the call.
    async fn check(
        &self,
        store: &mut Store<HostState>,
        ctx: &CallContext,
    ) -> wasmtime::Result<Decision> {
        match self {
            Self::Current(guest) => guest.call_check(store, ctx).await,
            Self::V1_0(guest) => {
                let ctx = bindings::v1_0::context(ctx);
                guest
                    .call_check(store, &ctx)
                    .await
                    .map(bindings::v1_0::decision)
            }
        }
    }
}

/// A policy's idle warm instances, by the buyer they serve (one key, `""`, with
/// [`Isolation::Reuse`]).
#[derive(Default)]
struct WarmPool {
    by_key: std::collections::HashMap<String, Vec<Warm>>,
    idle: usize,
}

impl WarmPool {
    fn take(&mut self, key: &str) -> Option<Warm> {
        let list = self.by_key.get_mut(key)?;
        let warm = list.pop();
        if list.is_empty() {
            self.by_key.remove(key);
        }
        if warm.is_some() {
            self.idle -= 1;
        }
        warm
    }

    /// Keeps `warm` for `key`; when the pool is full, one instance of another key makes
    /// room (the pool is small, and a busy key should stay warm).
    fn put(&mut self, key: &str, warm: Warm) {
        if self.idle >= REUSE_MAX_IDLE {
            let Some(other) = self.by_key.keys().find(|k| k.as_str() != key).cloned() else {
                return;
            };
            drop(self.take(&other));
        }
        self.by_key.entry(key.to_owned()).or_default().push(warm);
        self.idle += 1;
    }
}

/// A warm policy instance and the calls it has served.
struct Warm {
    store: Store<HostState>,
    guest: PolicyGuest,
    calls: u32,
}

struct PolicyLoaded {
    loaded: Loaded<PolicyPres>,
    /// The `validate-config` export, when the policy has one.
    validate: Option<ComponentExportIndex>,
    isolation: Isolation,
    /// Idle warm instances ([`Isolation::Reuse`], [`Isolation::Buyer`]).
    warm: Mutex<WarmPool>,
}

/// A loaded `policy` plugin. Cheap to clone.
#[derive(Clone)]
pub struct PolicyPlugin(Arc<PolicyLoaded>);

impl PolicyPlugin {
    /// The name it was loaded under (the log and counter namespace).
    pub fn name(&self) -> &str {
        &self.0.loaded.name
    }

    /// The version of `crochet:plugin` it was built against.
    pub fn version(&self) -> WitVersion {
        match self.0.loaded.pre {
            PolicyPres::Current(_) => WitVersion::V1_1,
            PolicyPres::V1_0(_) => WitVersion::V1_0,
        }
    }

    /// How far apart its calls are kept.
    pub fn isolation(&self) -> Isolation {
        self.0.isolation
    }

    /// Whether it exports `validate-config`.
    pub fn validates_config(&self) -> bool {
        self.0.validate.is_some()
    }

    /// Asks the policy whether its operator configuration is usable, when it exports
    /// `validate-config`: `Ok(None)` when it does not, `Ok(Some(Err(reason)))` when it
    /// refuses the configuration. Runs with scratch counters and is not counted in
    /// metrics.
    pub async fn validate_config(&self) -> Result<Option<Result<(), String>>, PluginError> {
        let Some(index) = self.0.validate else {
            return Ok(None);
        };
        let Loaded {
            host, name, config, ..
        } = &self.0.loaded;
        let instance_pre = self.0.loaded.pre.instance_pre();
        let scratch = Counters::memory();
        let answer = sandboxed!(
            host,
            name,
            config.clone(),
            Some(&scratch),
            instance_pre,
            |instance, store| async {
                let func = instance
                    .get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, index)
                    .map_err(|e| {
                        wasmtime::Error::msg(format!(
                            "its `{VALIDATE_CONFIG}` export is not \
                             `func(config: string) -> result<_, string>`: {e:#}"
                        ))
                    })?;
                let (answer,) = func.call_async(&mut store, (&**config,)).await?;
                Ok(answer)
            }
        )?;
        host.check_output(name, answer.as_ref().err().map_or(0, String::len))?;
        Ok(Some(answer))
    }

    /// Asks the policy about one call.
    pub async fn check(&self, ctx: &CallContext) -> Result<Decision, PluginError> {
        self.check_counting_in(ctx, None).await
    }

    /// Asks the policy about a sample call without touching the host's counters or its
    /// metrics: what it counts goes to a scratch store dropped afterwards. Used to try a
    /// plugin before it serves.
    pub async fn dry_run(&self, ctx: &CallContext) -> Result<Decision, PluginError> {
        self.check_counting_in(ctx, Some(&Counters::memory())).await
    }

    /// One call on a warm instance (a new one when none is idle), which goes back to
    /// the idle ones unless the call failed, it has served [`REUSE_MAX_CALLS`] calls or
    /// its memory passed [`REUSE_MAX_MEMORY_BYTES`].
    async fn check_warm(&self, ctx: &CallContext) -> Result<Decision, PluginError> {
        let PolicyLoaded { loaded, warm, .. } = &*self.0;
        let Loaded {
            host,
            name,
            config,
            pre,
            ..
        } = loaded;
        let key = match self.0.isolation {
            Isolation::Buyer => ctx.buyer_id.as_deref().unwrap_or(""),
            Isolation::Reuse | Isolation::Call => "",
        };
        let idle = warm.lock().ok().and_then(|mut pool| pool.take(key));
        let (mut store, guest, calls) = match idle {
            Some(w) => (w.store, Some(w.guest), w.calls),
            None => (host.store(name, config.clone(), None), None, 0),
        };
        store.data_mut().begin_call();
        store.set_epoch_deadline(host.0.deadline_ticks);
        let outcome = host
            .within_deadline(async {
                let guest = match guest {
                    Some(guest) => guest,
                    None => pre.instantiate_async(&mut store).await?,
                };
                let decision = guest.check(&mut store, ctx).await?;
                Ok((guest, decision))
            })
            .await;
        // A failed call drops its instance: a trap or a timeout may leave it half-way.
        let (guest, decision) =
            sandbox::classify(name, store.data().limiter.memory_refused, outcome)?;
        let calls = calls.saturating_add(1);
        if calls < REUSE_MAX_CALLS
            && store.data().limiter.memory_bytes <= REUSE_MAX_MEMORY_BYTES
            && let Ok(mut pool) = warm.lock()
        {
            pool.put(
                key,
                Warm {
                    store,
                    guest,
                    calls,
                },
            );
        }
        Ok(decision)
    }

    /// One call; `scratch` counters mark a dry run (not observed in metrics).
    async fn check_counting_in(
        &self,
        ctx: &CallContext,
        scratch: Option<&Counters>,
    ) -> Result<Decision, PluginError> {
        let loaded = &self.0.loaded;
        let Loaded {
            host,
            name,
            config,
            pre,
            ..
        } = loaded;
        let started = Instant::now();
        let reuse =
            self.0.isolation != Isolation::Call && scratch.is_none() && host.0.trace.is_none();
        let decision = if reuse {
            self.check_warm(ctx).await
        } else {
            sandboxed!(host, name, config.clone(), scratch, pre, |guest, store| {
                guest.check(&mut store, ctx)
            })
        }
        .and_then(|decision| {
            let bytes = match &decision {
                Decision::Allow => 0,
                Decision::Deny(d) => {
                    d.code.len() + d.message.len() + d.field.as_ref().map_or(0, String::len)
                }
            };
            host.check_output(name, bytes)?;
            Ok(decision)
        });
        if scratch.is_none() {
            loaded.observe(started, &decision, |d| matches!(d, Decision::Deny(_)));
            if let Ok(Decision::Deny(denial)) = &decision {
                loaded.metrics.denied(&denial.code);
            }
        }
        decision
    }
}

/// A loaded `scorer` plugin. Cheap to clone.
#[derive(Clone)]
pub struct ScorerPlugin(Arc<Loaded<ScorerPre<HostState>>>);

impl ScorerPlugin {
    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Scores one agent. The result is the guest's: callers clamp `score` to 0-1000.
    pub async fn score(&self, stats: &AgentStats) -> Result<ScoreResult, PluginError> {
        let loaded = &*self.0;
        let Loaded {
            host,
            name,
            config,
            pre,
            ..
        } = loaded;
        let started = Instant::now();
        let result = sandboxed!(host, name, config.clone(), pre, |guest, store| guest
            .call_score(&mut store, *stats))
        .and_then(|result| {
            // Strings, plus the fixed part of each component, count against the limit.
            let bytes = result
                .components
                .iter()
                .map(|c| c.name.len() + c.detail.len() + 8)
                .sum();
            host.check_output(name, bytes)?;
            Ok(result)
        });
        loaded.observe(started, &result, |_| false);
        result
    }
}

/// A loaded `seller-adapter` plugin. Cheap to clone.
#[derive(Clone)]
pub struct AdapterPlugin(Arc<Loaded<SellerAdapterPre<HostState>>>);

impl AdapterPlugin {
    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Reshapes the buyer's body for the seller: `Ok(Err(reason))` refuses the call.
    pub async fn adapt_request(
        &self,
        config_json: &str,
        body: &str,
    ) -> Result<Result<String, String>, PluginError> {
        let loaded = &*self.0;
        let Loaded {
            host, name, pre, ..
        } = loaded;
        let started = Instant::now();
        let result = sandboxed!(host, name, config_json.into(), pre, |guest, store| guest
            .call_adapt_request(&mut store, body))
        .and_then(|result| {
            host.check_output(name, result.as_ref().map_or_else(String::len, String::len))?;
            Ok(result)
        });
        loaded.observe(started, &result, Result::is_err);
        result
    }

    /// Reshapes the seller's reply (HTTP `status`, JSON `body`) for the buyer.
    pub async fn adapt_response(
        &self,
        config_json: &str,
        status: u16,
        body: &str,
    ) -> Result<Result<String, String>, PluginError> {
        let loaded = &*self.0;
        let Loaded {
            host, name, pre, ..
        } = loaded;
        let started = Instant::now();
        let result = sandboxed!(host, name, config_json.into(), pre, |guest, store| guest
            .call_adapt_response(&mut store, status, body))
        .and_then(|result| {
            host.check_output(name, result.as_ref().map_or_else(String::len, String::len))?;
            Ok(result)
        });
        loaded.observe(started, &result, Result::is_err);
        result
    }
}
