//! `bindgen!` output for the three worlds of `wit/crochet-plugin.wit`.
//!
//! The `policy` world generates the shared `types` and `host` interfaces; the `scorer`
//! and `seller-adapter` worlds reuse them through `with`, so all three speak the same
//! Rust types and one `Host` implementation serves every world. Only `counter-add` is
//! an `async` import (it may wait on Redis); the exports are called with `call_async`
//! so that epoch interruption and async host calls work.

#![allow(missing_docs, clippy::all)]

pub mod policy {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit/crochet-plugin.wit",
        imports: { "crochet:plugin/host.counter-add": async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

pub mod scorer {
    wasmtime::component::bindgen!({
        world: "scorer",
        path: "../wit/crochet-plugin.wit",
        exports: { default: async },
        with: {
            "crochet:plugin/host": super::policy::crochet::plugin::host,
            "crochet:plugin/types": super::policy::crochet::plugin::types,
        },
    });
}

pub mod adapter {
    wasmtime::component::bindgen!({
        world: "seller-adapter",
        path: "../wit/crochet-plugin.wit",
        exports: { default: async },
        with: { "crochet:plugin/host": super::policy::crochet::plugin::host },
    });
}

pub use policy::crochet::plugin::host::{self, LogLevel, WindowCount};
pub use policy::crochet::plugin::types::{
    AgentStats, CallContext, CallKind, Decision, Denial, ScoreComponent, ScoreInfo, ScoreResult,
};
