//! A minimal Crochet Gateway policy plugin: copy this crate to start your own.
//!
//! It allows every call except those whose JSON body has `"blocked": true` at the top
//! level, which it refuses with `422 BLOCKED_BY_POLICY`.
//!
//! Layout, which every bundled plugin follows:
//!
//! - the decision itself is a plain Rust function ([`decide`]) that takes everything
//!   it needs as arguments, so `cargo test` can check it natively, without a host;
//! - the [`Component`] at the bottom is the thin glue that the WebAssembly host calls:
//!   it fetches what the plugin needs from the host imports and calls [`decide`].
//!
//! Configuration (the operator's JSON, from the host's `config()`; `{}` if none):
//!
//! ```json
//! {"message": "this request is blocked by policy"}
//! ```

// Generates Rust bindings for the `configurable-policy` world of
// `../../wit/crochet-plugin.wit` (the `policy` world plus `validate-config`):
// - `crochet::plugin::types::*`: the records and variants (`CallContext`, `Decision`, ...);
// - `crochet::plugin::host::*`: the host imports (`config`, `now_ms`, `log`, `counter_add`);
// - a `Guest` trait with the policy's export (`check`), a second one for
//   `validate-config`, and an `export!` macro.
// Host imports only work inside the host: natively they panic, so keep them out of the
// logic you unit-test.
wit_bindgen::generate!({
    path: "../../wit",
    world: "configurable-policy",
});

use crochet::plugin::host::{self, LogLevel};
// The world `use`s `call-context` and `decision`, so those are already in scope here.
use crochet::plugin::types::Denial;
use serde::Deserialize;

/// The operator's configuration. Every field has a default, so `{}` is valid.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The message of the denial.
    pub message: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            message: "this request is blocked by policy".to_owned(),
        }
    }
}

impl Config {
    /// Parses the operator's JSON; on error returns the defaults and the reason.
    pub fn parse(json: &str) -> (Self, Option<String>) {
        match serde_json::from_str(json) {
            Ok(config) => (config, None),
            Err(err) => (
                Self::default(),
                Some(format!("invalid configuration ({err}); using defaults")),
            ),
        }
    }
}

/// The policy: refuse bodies with `"blocked": true`, allow everything else.
pub fn decide(config: &Config, body_json: &str) -> Decision {
    // The host has already checked that the body is JSON; `"null"` when there is none.
    let body: serde_json::Value = serde_json::from_str(body_json).unwrap_or_default();
    if body.get("blocked") == Some(&serde_json::Value::Bool(true)) {
        return Decision::Deny(Denial {
            status: 422,
            code: "BLOCKED_BY_POLICY".to_owned(),
            message: config.message.clone(),
            // A JSON pointer to the field that made the call fail.
            field: Some("/blocked".to_owned()),
            // Only rate limits say when to retry.
            retry_after_seconds: None,
        });
    }
    Decision::Allow
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

/// The glue between the host and [`decide`].
struct Component;

impl Guest for Component {
    fn check(ctx: CallContext) -> Decision {
        install_panic_hook();
        // `config()` returns the operator's JSON for this plugin. Parsing it on every
        // call is cheap; the host may also reuse one instance for many calls.
        let (config, warning) = Config::parse(&host::config());
        if let Some(warning) = warning {
            // One line in the host's log, tagged with this plugin's name.
            host::log(LogLevel::Warn, &warning);
        }
        let decision = decide(&config, &ctx.body_json);
        if let Decision::Deny(_) = decision {
            // `now_ms()` is the only clock a plugin has (Unix time in milliseconds).
            let at = host::now_ms();
            host::log(
                LogLevel::Info,
                &format!("blocked a call to {} at {at} ms", ctx.route),
            );
        }
        decision
    }

    /// The host calls this when it loads the plugin and on every reload: an error stops the
    /// host from starting (or the reload from going through) with this message, so a typo
    /// in the configuration never runs on defaults.
    fn validate_config(config: String) -> Result<(), String> {
        match Config::parse(&config) {
            (_, None) => Ok(()),
            (_, Some(problem)) => Err(problem),
        }
    }
}

// Registers `Component` as the implementation of the world's exports.
export!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_ordinary_bodies() {
        let config = Config::default();
        for body in [
            "null",
            "{}",
            r#"{"blocked": false}"#,
            r#"{"input": {"blocked": true}}"#,
            "[1, 2]",
        ] {
            assert!(matches!(decide(&config, body), Decision::Allow), "{body}");
        }
    }

    #[test]
    fn refuses_blocked_bodies() {
        let (config, warning) = Config::parse(r#"{"message": "no"}"#);
        assert!(warning.is_none());
        match decide(&config, r#"{"blocked": true, "input": 1}"#) {
            Decision::Deny(denial) => {
                assert_eq!(denial.status, 422);
                assert_eq!(denial.code, "BLOCKED_BY_POLICY");
                assert_eq!(denial.message, "no");
                assert_eq!(denial.field.as_deref(), Some("/blocked"));
            }
            Decision::Allow => panic!("should deny"),
        }
    }

    #[test]
    fn invalid_config_falls_back_to_defaults() {
        let (config, warning) = Config::parse(r#"{"mesage": "typo"}"#);
        assert!(warning.is_some());
        assert_eq!(config.message, Config::default().message);
    }

    #[test]
    fn validate_config_refuses_a_typo() {
        assert_eq!(
            Component::validate_config(r#"{"message": "no"}"#.into()),
            Ok(())
        );
        let problem = Component::validate_config(r#"{"mesage": "typo"}"#.into()).unwrap_err();
        assert!(problem.contains("unknown field `mesage`"), "{problem}");
    }
}
