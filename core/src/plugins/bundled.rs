//! The plugins shipped inside the binary, built from `plugins/` by `core/build.rs` for
//! `wasm32-wasip2`.

/// Rate limiting policy (`policy` world): per buyer, per listing, per client IP.
pub const RATE_LIMIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/rate_limit.wasm"));

/// Request validation policy (`policy` world).
pub const REQUEST_VALIDATION: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plugins/request_validation.wasm"));

/// The Crochet Score formula (`scorer` world).
pub const SCORING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/scoring.wasm"));

/// Seller adapter for chat-completions APIs (`seller-adapter` world).
pub const CHAT_ADAPTER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plugins/chat_adapter.wasm"));

/// The minimal example policy (`policy` world) that plugin authors copy.
pub const TEMPLATE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/template.wasm"));

/// Names of the bundled plugins, as `bundled:<name>` sources use them.
pub const NAMES: &[&str] = &[
    "rate-limit",
    "request-validation",
    "scoring",
    "chat-adapter",
    "template",
];

/// A bundled plugin's component by name (`rate-limit`, `chat-adapter`, ...).
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "rate-limit" => RATE_LIMIT,
        "request-validation" => REQUEST_VALIDATION,
        "scoring" => SCORING,
        "chat-adapter" => CHAT_ADAPTER,
        "template" => TEMPLATE,
        _ => return None,
    })
}

/// Components that misbehave on purpose, for the host's own tests. Never load them in
/// production.
#[doc(hidden)]
pub mod testing {
    /// A policy that loops, exhausts memory, recurses, traps or floods its output,
    /// as its configuration `{"mode": ...}` says. Built against `crochet:plugin@1.0.0`.
    pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/hostile.wasm"));

    /// A `crochet:plugin@1.1.0` policy that refuses bodies with `"echo": true` with
    /// `409 CONTEXT_ECHO` and the context's headers, attempt and payment flow as JSON.
    pub const ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/echo.wasm"));

    /// A policy that also imports `crochet:evil/shell`, which the host does not give.
    pub const EVIL_IMPORT: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/evil_import.wasm"));
}
