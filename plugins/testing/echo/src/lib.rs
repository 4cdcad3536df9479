//! TEST ONLY: a `crochet:plugin@1.1.0` policy that shows the host's tests what it was
//! given. It allows every call except those whose JSON body has `"echo": true`, which it
//! refuses with `409 CONTEXT_ECHO` and, as the message, a JSON object of the fields 1.1
//! added to the call context: `{"headers": [[name, value], ...], "attempt": "first" |
//! "paid-retry", "payment": "free" | "requirement" | "x402" | "balance"}`.
//!
//! It exports no `validate-config` (the plain `policy` world of 1.1), unlike the
//! bundled policies.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy",
});

use crochet::plugin::types::{Attempt, Denial, PaymentFlow};

/// The fields 1.1 added, as the JSON the denial carries.
pub fn echo(ctx: &CallContext) -> serde_json::Value {
    serde_json::json!({
        "headers": ctx.headers,
        "attempt": match ctx.attempt {
            Attempt::First => "first",
            Attempt::PaidRetry => "paid-retry",
        },
        "payment": match ctx.payment {
            PaymentFlow::Free => "free",
            PaymentFlow::Requirement => "requirement",
            PaymentFlow::X402 => "x402",
            PaymentFlow::Balance => "balance",
        },
    })
}

struct Component;

impl Guest for Component {
    fn check(ctx: CallContext) -> Decision {
        let body: serde_json::Value = serde_json::from_str(&ctx.body_json).unwrap_or_default();
        if body.get("echo") != Some(&serde_json::Value::Bool(true)) {
            return Decision::Allow;
        }
        Decision::Deny(Denial {
            status: 409,
            code: "CONTEXT_ECHO".to_owned(),
            message: echo(&ctx).to_string(),
            field: None,
            retry_after_seconds: None,
        })
    }
}

export!(Component);
