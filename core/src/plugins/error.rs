//! The one error type of the plugin host.

/// Why loading or running a plugin failed.
///
/// Load-time failures (`Compile`, `WrongWorld`, `TooLarge`, `Cache`) are reported when a
/// plugin is loaded or an upload is validated; run-time failures (`Trap`, `Timeout`,
/// `MemoryLimit`, `OutputTooLarge`, `Counter`) when it is called. A run-time failure
/// concerns that one call only: the host keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a WebAssembly component this host can compile (garbage, a core
    /// module instead of a component, a feature the host does not enable, a memory or
    /// table larger than the sandbox allows).
    #[error("plugin does not compile: {0}")]
    Compile(String),

    /// The component compiled but is not a plugin of the expected world: it lacks or
    /// mistypes an export of that world, or imports something the host does not give.
    #[error("plugin `{plugin}` is not a valid `{expected_world}` plugin: {detail}")]
    WrongWorld {
        /// The plugin's name (`upload` for validation of an upload).
        plugin: String,
        /// `policy`, `scorer` or `seller-adapter`.
        expected_world: &'static str,
        /// What is wrong: the missing export or the import the host does not provide.
        detail: String,
    },

    /// The guest trapped (panic, `unreachable`, stack overflow, out-of-bounds access, a
    /// failed instantiation) or broke the canonical ABI.
    #[error("plugin `{plugin}` failed: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The trap, as wasmtime describes it.
        message: String,
    },

    /// The call ran past [`PluginLimits::timeout`](super::PluginLimits::timeout).
    #[error("plugin `{plugin}` ran past its time limit")]
    Timeout {
        /// The plugin's name.
        plugin: String,
    },

    /// The guest asked for more memory than
    /// [`PluginLimits::max_memory_bytes`](super::PluginLimits::max_memory_bytes) and
    /// trapped for want of it.
    #[error("plugin `{plugin}` ran out of memory")]
    MemoryLimit {
        /// The plugin's name.
        plugin: String,
    },

    /// The guest returned more than
    /// [`PluginLimits::max_output_bytes`](super::PluginLimits::max_output_bytes) of text.
    #[error("plugin `{plugin}` returned {bytes} bytes, more than the {limit}-byte limit")]
    OutputTooLarge {
        /// The plugin's name.
        plugin: String,
        /// Bytes of text returned.
        bytes: usize,
        /// The limit.
        limit: usize,
    },

    /// An uploaded component is larger than
    /// [`PluginLimits::max_component_bytes`](super::PluginLimits::max_component_bytes).
    #[error("plugin component is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Size of the upload.
        bytes: usize,
        /// The limit.
        limit: usize,
    },

    /// The compile cache directory could not be prepared.
    #[error("plugin compile cache: {0}")]
    Cache(String),

    /// The counter store (Redis) failed or is misconfigured.
    #[error("plugin counter store: {0}")]
    Counter(String),
}

/// Why the configured plugins could not be put in service (at start-up or on a reload).
/// A reload that fails with one of these leaves the running plugins serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration holding the plugin list could not be read.
    #[error("the plugin configuration cannot be read: {0}")]
    Config(String),

    /// A component file could not be read, or a `bundled:` name is unknown.
    #[error("plugin `{plugin}`: {reason}")]
    Source {
        /// The configured name.
        plugin: String,
        /// What went wrong.
        reason: String,
    },

    /// The component was refused: it does not compile, is not of its world, imports
    /// what the host does not give, or is too large.
    #[error("{world} plugin `{plugin}` ({origin}) cannot be loaded: {error}")]
    Refused {
        /// `policy` or `scorer`.
        world: &'static str,
        /// The configured name.
        plugin: String,
        /// `bundled:<name>` or the file's path.
        origin: String,
        /// The sandbox's reason.
        error: PluginError,
    },

    /// The component's SHA-256 is not the one pinned in the configuration (`sha256`
    /// of a policy, `plugins.scorer_sha256`).
    #[error(
        "plugin `{plugin}` ({origin}) has SHA-256 {actual}, not the pinned {expected}; \
         it was not loaded"
    )]
    DigestMismatch {
        /// The configured name.
        plugin: String,
        /// `bundled:<name>` or the file's path.
        origin: String,
        /// The pinned digest, as configured (lower-cased).
        expected: String,
        /// The digest of the bytes read.
        actual: String,
    },

    /// Two policies share a name (names key their counters and listing settings).
    #[error("two policy plugins are named `{0}`; names must be unique")]
    DuplicateName(String),

    /// A sample call refused with a 5xx status: the plugin says it cannot work as
    /// configured (a policy without `validate-config` can only say so this way).
    #[error("plugin `{plugin}` cannot work with its configuration ({code}): {message}")]
    Misconfigured {
        /// The configured name.
        plugin: String,
        /// The plugin's code.
        code: String,
        /// The plugin's reason.
        message: String,
    },

    /// The plugin's `validate-config` export refused its configuration.
    #[error("plugin `{plugin}` refused its configuration: {message}")]
    ConfigRejected {
        /// The configured name.
        plugin: String,
        /// The plugin's reason.
        message: String,
    },

    /// The plugin failed a sample call: it trapped or ran out of time or memory.
    #[error("plugin `{plugin}` failed its trial call: {reason}")]
    Trial {
        /// The configured name.
        plugin: String,
        /// What the sample call did.
        reason: String,
    },
}
