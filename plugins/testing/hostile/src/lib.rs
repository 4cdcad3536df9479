//! TEST ONLY: a policy plugin that misbehaves on purpose, so the host's tests can check
//! that fuel/epoch limits, memory limits, stack limits and trap handling hold.
//!
//! Configuration (host `config()`): `{"mode": "..."}` with one of
//!
//! - `"allow"`: allows the call (the default);
//! - `"loop"`: spins forever;
//! - `"memory"`: allocates and touches 1 MiB blocks forever;
//! - `"recurse"`: recurses without end (not a tail call);
//! - `"trap"`: panics, which traps;
//! - `"huge-output"`: denies with a 64 MiB message;
//! - `"slow-counter"`: calls `counter-add` 10 000 times, then allows;
//! - `"remember"`: keeps the call's body in a global and refuses the call with
//!   `409 REMEMBERED` and, as the message, the body the global held before (empty on a
//!   fresh instance); a body of `"trap"` panics instead. It shows what a reused
//!   instance carries from one call to the next;
//! - `"refuse"`: refuses every call with `403 HOSTILE_REFUSED`, naming the call's
//!   route, buyer and listing (what a 1.0 policy is told).
//!
//! Any other mode denies with `500 HOSTILE_BAD_MODE`.
//!
//! It is built against `crochet:plugin@1.0.0` (the frozen `wit/v1.0`), so the host's
//! tests run a 1.0 component beside the bundled 1.1 ones.

wit_bindgen::generate!({
    path: "../../../wit/v1.0",
    world: "policy",
});

use crochet::plugin::host::{self, LogLevel};
use crochet::plugin::types::Denial;
use std::hint::black_box;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Allow,
    Loop,
    Memory,
    Recurse,
    Trap,
    HugeOutput,
    SlowCounter,
    Remember,
    Refuse,
}

/// Reads `{"mode": ...}`; `Err` holds the unknown mode.
pub fn parse_mode(config: &str) -> Result<Mode, String> {
    let config: serde_json::Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    Ok(match config.get("mode").and_then(|m| m.as_str()) {
        None | Some("allow") => Mode::Allow,
        Some("loop") => Mode::Loop,
        Some("memory") => Mode::Memory,
        Some("recurse") => Mode::Recurse,
        Some("trap") => Mode::Trap,
        Some("huge-output") => Mode::HugeOutput,
        Some("slow-counter") => Mode::SlowCounter,
        Some("remember") => Mode::Remember,
        Some("refuse") => Mode::Refuse,
        Some(other) => return Err(format!("unknown mode `{other}`")),
    })
}

/// Never returns; `black_box` keeps the optimizer from proving the loop empty.
pub fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Never returns: keeps every block, writing to each page so it is really committed.
pub fn hog_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for byte in block.iter_mut().step_by(4096) {
            *byte = 1;
        }
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

/// Recurses until the stack runs out. The work after the call keeps it from being a
/// tail call, and `black_box` keeps it from being folded away.
#[allow(unconditional_recursion)]
pub fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 16]);
    let below = recurse(black_box(depth + 1));
    black_box(below.wrapping_add(frame[black_box(depth as usize) % 16]))
}

/// A denial with a `bytes`-long message.
pub fn huge_denial(bytes: usize) -> Decision {
    Decision::Deny(Denial {
        status: 422,
        code: "HUGE".to_owned(),
        message: "x".repeat(bytes),
        field: None,
        retry_after_seconds: None,
    })
}

/// Sends a panic's message to the host's log (error level) before the call traps, so
/// the reason shows beside the host's "plugin failed" line. Without it a panic's message
/// is lost: a plugin has no stderr.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            host::log(LogLevel::Error, &format!("panic{at}: {message}"));
        }));
    });
}

/// The last body `remember` saw, in this instance.
static LAST_BODY: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

struct Component;

impl Guest for Component {
    fn check(ctx: CallContext) -> Decision {
        install_panic_hook();
        match parse_mode(&host::config()) {
            Ok(Mode::Allow) => Decision::Allow,
            Ok(Mode::Loop) => spin(),
            Ok(Mode::Memory) => hog_memory(),
            Ok(Mode::Recurse) => {
                black_box(recurse(0));
                Decision::Allow
            }
            Ok(Mode::Trap) => panic!("hostile plugin: trap mode"),
            Ok(Mode::HugeOutput) => huge_denial(64 << 20),
            Ok(Mode::SlowCounter) => {
                for i in 0..10_000u32 {
                    let _ = black_box(host::counter_add(&format!("slow:{}", i % 10), 1, 60_000));
                }
                Decision::Allow
            }
            Ok(Mode::Remember) => {
                if ctx.body_json == "\"trap\"" {
                    panic!("hostile plugin: asked to trap");
                }
                let previous = match LAST_BODY.lock() {
                    Ok(mut last) => std::mem::replace(&mut *last, ctx.body_json.clone()),
                    Err(_) => String::new(),
                };
                Decision::Deny(Denial {
                    status: 409,
                    code: "REMEMBERED".to_owned(),
                    message: previous,
                    field: None,
                    retry_after_seconds: None,
                })
            }
            Ok(Mode::Refuse) => Decision::Deny(Denial {
                status: 403,
                code: "HOSTILE_REFUSED".to_owned(),
                message: format!(
                    "refused {} for buyer {} on listing {}",
                    ctx.route,
                    ctx.buyer_id.as_deref().unwrap_or("-"),
                    ctx.listing_id.as_deref().unwrap_or("-"),
                ),
                field: None,
                retry_after_seconds: None,
            }),
            Err(reason) => Decision::Deny(Denial {
                status: 500,
                code: "HOSTILE_BAD_MODE".to_owned(),
                message: reason,
                field: None,
                retry_after_seconds: None,
            }),
        }
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("{}"), Ok(Mode::Allow));
        assert_eq!(parse_mode(r#"{"mode": "allow"}"#), Ok(Mode::Allow));
        assert_eq!(parse_mode(r#"{"mode": "loop"}"#), Ok(Mode::Loop));
        assert_eq!(parse_mode(r#"{"mode": "memory"}"#), Ok(Mode::Memory));
        assert_eq!(parse_mode(r#"{"mode": "recurse"}"#), Ok(Mode::Recurse));
        assert_eq!(parse_mode(r#"{"mode": "trap"}"#), Ok(Mode::Trap));
        assert_eq!(
            parse_mode(r#"{"mode": "huge-output"}"#),
            Ok(Mode::HugeOutput)
        );
        assert_eq!(
            parse_mode(r#"{"mode": "slow-counter"}"#),
            Ok(Mode::SlowCounter)
        );
        assert!(parse_mode(r#"{"mode": "nope"}"#).is_err());
        assert!(parse_mode("nope").is_err());
    }

    #[test]
    fn huge_output_is_huge() {
        match huge_denial(1 << 20) {
            Decision::Deny(denial) => assert_eq!(denial.message.len(), 1 << 20),
            Decision::Allow => panic!("should deny"),
        }
    }
}
