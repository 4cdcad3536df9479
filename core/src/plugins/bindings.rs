//! `bindgen!` output for the worlds of `wit/crochet-plugin.wit` (`crochet:plugin@1.1.0`)
//! and, for components built before it, the `policy` world of
//! `wit/v1.0/crochet-plugin.wit` (`crochet:plugin@1.0.0`).
//!
//! The current `policy` world generates the shared `types` and `host` interfaces; the
//! `scorer` and `seller-adapter` worlds reuse them through `with`, so all of them speak
//! the same Rust types and one `Host` implementation serves every world. The host
//! interface did not change in 1.1, and the linker resolves a 1.0 import of it to the
//! 1.1 definition (semver-compatible names), so one linker serves both versions. Of
//! 1.0 only the policy's export differs (its `call-context` has fewer fields): the
//! `v1_0` bindings type-check and call it. Scorers and seller adapters have the same
//! exports in both versions.
//!
//! Only `counter-add` is an `async` import (it may wait on Redis); the exports are
//! called with `call_async` so that epoch interruption and async host calls work.

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

/// The 1.0 `policy` world, for its export only: the host links the current `host`.
pub mod v1_0 {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit/v1.0/crochet-plugin.wit",
        imports: { "crochet:plugin/host.counter-add": async },
        exports: { default: async },
    });

    use super::policy::crochet::plugin::types as current;
    // The world `use`s `call-context` and `decision`: bindgen put them in scope here.
    use self::crochet::plugin::types::{CallKind, Denial, ScoreInfo};

    /// The 1.0 view of a call: the current context without the fields 1.1 added.
    pub fn context(ctx: &current::CallContext) -> CallContext {
        let score = |s: &Option<current::ScoreInfo>| {
            s.as_ref().map(|s| ScoreInfo {
                score: s.score,
                tier: s.tier.clone(),
            })
        };
        CallContext {
            kind: match ctx.kind {
                current::CallKind::Gateway => CallKind::Gateway,
                current::CallKind::Auth => CallKind::Auth,
            },
            route: ctx.route.clone(),
            client_ip: ctx.client_ip.clone(),
            buyer_id: ctx.buyer_id.clone(),
            seller_id: ctx.seller_id.clone(),
            listing_id: ctx.listing_id.clone(),
            price_cents: ctx.price_cents,
            currency: ctx.currency.clone(),
            origin_currency: ctx.origin_currency.clone(),
            origin_chain_id: ctx.origin_chain_id.clone(),
            origin_wallet_id: ctx.origin_wallet_id.clone(),
            body_size: ctx.body_size,
            body_sha256: ctx.body_sha256.clone(),
            body_json: ctx.body_json.clone(),
            buyer_score: score(&ctx.buyer_score),
            seller_score: score(&ctx.seller_score),
            listing_config: ctx.listing_config.clone(),
        }
    }

    /// A 1.0 decision in the current types (they did not change).
    pub fn decision(decision: Decision) -> current::Decision {
        match decision {
            Decision::Allow => current::Decision::Allow,
            Decision::Deny(Denial {
                status,
                code,
                message,
                field,
                retry_after_seconds,
            }) => current::Decision::Deny(current::Denial {
                status,
                code,
                message,
                field,
                retry_after_seconds,
            }),
        }
    }
}

pub use policy::crochet::plugin::host::{self, LogLevel, WindowCount};
pub use policy::crochet::plugin::types::{
    AgentStats, Attempt, CallContext, CallKind, Decision, Denial, PaymentFlow, ScoreComponent,
    ScoreInfo, ScoreResult,
};
