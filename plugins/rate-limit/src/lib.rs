//! Rate limiting policy: sliding-window counters per buyer and per listing on gateway
//! calls, and per client IP on the unauthenticated identity routes.
//!
//! Configuration (the operator's JSON; every key optional, a rule may be `null` to
//! turn it off, and `"burst": null` turns off only the one-second limit):
//!
//! ```json
//! {
//!   "gateway": {
//!     "per_buyer":   {"limit": 1200,  "window_seconds": 60, "burst": 50},
//!     "per_listing": {"limit": 12000, "window_seconds": 60, "burst": 400}
//!   },
//!   "auth": {
//!     "per_ip": {"limit": 60, "window_seconds": 60, "burst": 10}
//!   }
//! }
//! ```
//!
//! A rule refuses a call when the sliding-window estimate
//! `previous * remaining_ms / window_ms + current` exceeds `limit` (over `window_seconds`)
//! or `burst` (over one second). The counters come from the host's `counter-add`.
//!
//! A purchase counts once: a priced call usually comes twice (the attempt answered with
//! a payment requirement, then the paid retry), and the two attempts count in separate
//! counters (`buyer:<id>` and `retry:buyer:<id>`, for instance) under the same rule.
//! Each limit therefore bounds purchases, not attempts, and a flood of retries with
//! made-up payment proofs is still limited.
//!
//! The host calls `validate-config` when it loads the plugin, so a configuration with
//! a typo or an unknown key stops the host from starting (or a reload from going
//! through) with this plugin's message.

wit_bindgen::generate!({
    path: "../../wit",
    world: "configurable-policy",
});

use crochet::plugin::host::{self, LogLevel, WindowCount};
use crochet::plugin::types::{Attempt, CallKind, Denial};
use serde_json::{Map, Value};

/// One limit: at most `limit` calls per `window_seconds`, and at most `burst` in any
/// one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u64,
    pub window_seconds: u64,
    pub burst: Option<u64>,
}

/// The whole configuration; `None` turns a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub per_buyer: Option<Rule>,
    pub per_listing: Option<Rule>,
    pub per_ip: Option<Rule>,
}

const DEFAULT_PER_BUYER: Rule = Rule {
    limit: 1200,
    window_seconds: 60,
    burst: Some(50),
};
const DEFAULT_PER_LISTING: Rule = Rule {
    limit: 12000,
    window_seconds: 60,
    burst: Some(400),
};
const DEFAULT_PER_IP: Rule = Rule {
    limit: 60,
    window_seconds: 60,
    burst: Some(10),
};

impl Default for Config {
    fn default() -> Self {
        Self {
            per_buyer: Some(DEFAULT_PER_BUYER),
            per_listing: Some(DEFAULT_PER_LISTING),
            per_ip: Some(DEFAULT_PER_IP),
        }
    }
}

impl Config {
    /// Parses the operator's JSON. On any error returns the defaults and the reason.
    pub fn parse(json: &str) -> (Self, Option<String>) {
        match Self::try_parse(json) {
            Ok(config) => (config, None),
            Err(err) => (
                Self::default(),
                Some(format!(
                    "invalid rate-limit configuration ({err}); using the defaults"
                )),
            ),
        }
    }

    fn try_parse(json: &str) -> Result<Self, String> {
        let root: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let root = as_object(&root, "the configuration")?;
        check_keys(root, &["gateway", "auth"], "the configuration")?;
        let empty = Map::new();
        let gateway = match root.get("gateway") {
            None => &empty,
            Some(v) => as_object(v, "`gateway`")?,
        };
        check_keys(gateway, &["per_buyer", "per_listing"], "`gateway`")?;
        let auth = match root.get("auth") {
            None => &empty,
            Some(v) => as_object(v, "`auth`")?,
        };
        check_keys(auth, &["per_ip"], "`auth`")?;
        Ok(Self {
            per_buyer: parse_rule(
                gateway.get("per_buyer"),
                DEFAULT_PER_BUYER,
                "`gateway.per_buyer`",
            )?,
            per_listing: parse_rule(
                gateway.get("per_listing"),
                DEFAULT_PER_LISTING,
                "`gateway.per_listing`",
            )?,
            per_ip: parse_rule(auth.get("per_ip"), DEFAULT_PER_IP, "`auth.per_ip`")?,
        })
    }
}

fn as_object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} must be an object"))
}

fn check_keys(object: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(format!("unknown key `{key}` in {what}")),
        None => Ok(()),
    }
}

/// Missing: the default rule. `null`: off. An object: its keys over the default's.
fn parse_rule(value: Option<&Value>, default: Rule, what: &str) -> Result<Option<Rule>, String> {
    let object = match value {
        None => return Ok(Some(default)),
        Some(Value::Null) => return Ok(None),
        Some(v) => as_object(v, what)?,
    };
    check_keys(object, &["limit", "window_seconds", "burst"], what)?;
    let positive = |key: &str| -> Result<Option<u64>, String> {
        match object.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!("{what}.{key} must be a positive integer")),
            },
        }
    };
    let limit = positive("limit")?.unwrap_or(default.limit);
    let window_seconds = positive("window_seconds")?.unwrap_or(default.window_seconds);
    if window_seconds > 366 * 24 * 3600 {
        return Err(format!("{what}.window_seconds must be at most a year"));
    }
    let burst = match object.get("burst") {
        Some(Value::Null) => None,
        None => default.burst,
        Some(_) => positive("burst")?,
    };
    Ok(Some(Rule {
        limit,
        window_seconds,
        burst,
    }))
}

/// What the policy needs to know about a call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub kind: CallKind,
    pub client_ip: &'a str,
    pub buyer_id: Option<&'a str>,
    pub listing_id: Option<&'a str>,
    /// Paid retries count apart from first attempts, so a purchase counts once.
    pub attempt: Attempt,
}

/// The window of the one-second burst counters.
const BURST_WINDOW_MS: u64 = 1000;

/// Decides on one call. `counter_add` is the host's `counter-add`.
pub fn decide(
    config: &Config,
    call: Call<'_>,
    counter_add: &mut dyn FnMut(&str, u32, u64) -> Result<WindowCount, String>,
) -> Decision {
    // (rule, counter key, whose calls, for the message)
    let mut checks: Vec<(Rule, String, &str)> = Vec::with_capacity(2);
    match call.kind {
        CallKind::Gateway => {
            if let (Some(rule), Some(buyer)) = (config.per_buyer, call.buyer_id) {
                checks.push((rule, format!("buyer:{buyer}"), "for this buyer"));
            }
            if let (Some(rule), Some(listing)) = (config.per_listing, call.listing_id) {
                checks.push((rule, format!("listing:{listing}"), "for this listing"));
            }
        }
        CallKind::Auth => {
            if let Some(rule) = config.per_ip {
                checks.push((
                    rule,
                    format!("ip:{}", call.client_ip),
                    "from this IP address",
                ));
            }
        }
    }
    let counter = match call.attempt {
        Attempt::First => "",
        Attempt::PaidRetry => "retry:",
    };
    for (rule, key, whose) in checks {
        let key = format!("{counter}{key}");
        // The one-second counter first: a burst is the cheaper thing to trip.
        if let Some(burst) = rule.burst {
            let counts = match counter_add(&format!("{key}:burst"), 1, BURST_WINDOW_MS) {
                Ok(counts) => counts,
                Err(err) => return unavailable(&err),
            };
            if estimate(&counts, BURST_WINDOW_MS) > burst as f64 {
                return limited(
                    format!("more than {burst} calls per second {whose}"),
                    &counts,
                );
            }
        }
        let window_ms = rule.window_seconds * 1000;
        let counts = match counter_add(&key, 1, window_ms) {
            Ok(counts) => counts,
            Err(err) => return unavailable(&err),
        };
        if estimate(&counts, window_ms) > rule.limit as f64 {
            return limited(
                format!(
                    "more than {} calls per {} s {whose}",
                    rule.limit, rule.window_seconds
                ),
                &counts,
            );
        }
    }
    Decision::Allow
}

/// The sliding-window-counter estimate of the calls in the last `window_ms`.
pub fn estimate(counts: &WindowCount, window_ms: u64) -> f64 {
    let remaining = counts.remaining_ms.min(window_ms) as f64;
    counts.previous as f64 * (remaining / window_ms as f64) + counts.current as f64
}

fn limited(message: String, counts: &WindowCount) -> Decision {
    let retry_after = counts.remaining_ms.div_ceil(1000).clamp(1, u32::MAX as u64) as u32;
    Decision::Deny(Denial {
        status: 429,
        code: "RATE_LIMITED".to_owned(),
        message,
        field: None,
        retry_after_seconds: Some(retry_after),
    })
}

fn unavailable(err: &str) -> Decision {
    Decision::Deny(Denial {
        status: 503,
        code: "RATE_LIMIT_UNAVAILABLE".to_owned(),
        message: format!("the rate-limit counters are unavailable: {err}"),
        field: None,
        retry_after_seconds: None,
    })
}

/// The refusal that reports an operator configuration this plugin cannot use.
fn config_invalid(message: String) -> Decision {
    Decision::Deny(Denial {
        status: 500,
        code: "PLUGIN_CONFIG_INVALID".to_owned(),
        message,
        field: None,
        retry_after_seconds: None,
    })
}

/// The operator's configuration, read and parsed once per instance: it never changes
/// for an instance (a reload starts new ones), and an instance may serve many calls.
fn operator_config() -> &'static (Config, Option<String>) {
    static CONFIG: std::sync::OnceLock<(Config, Option<String>)> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| Config::parse(&host::config()))
}

struct Component;

impl Guest for Component {
    fn check(ctx: CallContext) -> Decision {
        let (config, problem) = operator_config();
        if let Some(problem) = problem {
            // The host tries every policy before it serves: this refusal stops a bad
            // configuration at start-up or reload instead of running on defaults.
            host::log(LogLevel::Error, problem);
            return config_invalid(problem.clone());
        }
        let call = Call {
            kind: ctx.kind,
            client_ip: &ctx.client_ip,
            buyer_id: ctx.buyer_id.as_deref(),
            listing_id: ctx.listing_id.as_deref(),
            attempt: ctx.attempt,
        };
        decide(config, call, &mut |key, delta, window_ms| {
            host::counter_add(key, delta, window_ms)
        })
    }

    fn validate_config(config: String) -> Result<(), String> {
        Config::try_parse(&config)
            .map(drop)
            .map_err(|e| format!("invalid rate-limit configuration: {e}"))
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Fixed-window counters with a settable clock, like the host's.
    #[derive(Default)]
    struct Counters {
        now_ms: u64,
        /// (key, window length, window index) -> count
        windows: HashMap<(String, u64, u64), u64>,
        calls: Vec<(String, u64)>,
        fail: bool,
    }

    impl Counters {
        fn add(&mut self, key: &str, delta: u32, window_ms: u64) -> Result<WindowCount, String> {
            self.calls.push((key.to_owned(), window_ms));
            if self.fail {
                return Err("redis is down".to_owned());
            }
            let index = self.now_ms / window_ms;
            let count = |i: u64| -> u64 {
                self.windows
                    .get(&(key.to_owned(), window_ms, i))
                    .copied()
                    .unwrap_or(0)
            };
            let previous = if index == 0 { 0 } else { count(index - 1) };
            let current = count(index) + u64::from(delta);
            self.windows
                .insert((key.to_owned(), window_ms, index), current);
            Ok(WindowCount {
                current,
                previous,
                remaining_ms: (index + 1) * window_ms - self.now_ms,
            })
        }

        fn decide(&mut self, config: &Config, call: Call<'_>) -> Decision {
            decide(config, call, &mut |k, d, w| self.add(k, d, w))
        }
    }

    fn gateway(buyer: &'static str, listing: &'static str) -> Call<'static> {
        Call {
            kind: CallKind::Gateway,
            client_ip: "203.0.113.7",
            buyer_id: Some(buyer),
            listing_id: Some(listing),
            attempt: Attempt::First,
        }
    }

    fn auth(ip: &'static str) -> Call<'static> {
        Call {
            kind: CallKind::Auth,
            client_ip: ip,
            buyer_id: None,
            listing_id: None,
            attempt: Attempt::First,
        }
    }

    fn denied(decision: Decision) -> Denial {
        match decision {
            Decision::Deny(denial) => denial,
            Decision::Allow => panic!("expected a denial"),
        }
    }

    fn allowed(decision: &Decision) -> bool {
        matches!(decision, Decision::Allow)
    }

    #[test]
    fn defaults() {
        let (config, warning) = Config::parse("{}");
        assert!(warning.is_none());
        assert_eq!(config, Config::default());
        assert_eq!(config.per_buyer, Some(DEFAULT_PER_BUYER));
    }

    #[test]
    fn partial_and_null_rules() {
        let (config, warning) = Config::parse(
            r#"{"gateway": {"per_buyer": {"limit": 5}, "per_listing": null},
                "auth": {"per_ip": {"burst": null, "window_seconds": 10}}}"#,
        );
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(
            config.per_buyer,
            Some(Rule {
                limit: 5,
                window_seconds: 60,
                burst: Some(50)
            })
        );
        assert_eq!(config.per_listing, None);
        assert_eq!(
            config.per_ip,
            Some(Rule {
                limit: 60,
                window_seconds: 10,
                burst: None
            })
        );
    }

    #[test]
    fn invalid_config_uses_defaults() {
        for json in [
            "not json",
            "[]",
            r#"{"gateway": {"per_buyer": {"limit": 0}}}"#,
            r#"{"gateway": {"per_buyer": {"limit": -1}}}"#,
            r#"{"gateway": {"per_buyer": {"limit": 1.5}}}"#,
            r#"{"gateway": {"per_byer": {}}}"#,
            r#"{"auth": {"per_ip": {"burst": "10"}}}"#,
            r#"{"auth": 3}"#,
        ] {
            let (config, warning) = Config::parse(json);
            assert!(warning.is_some(), "{json}");
            assert_eq!(config, Config::default());
        }
    }

    #[test]
    fn burst_trips_within_one_second() {
        let config = Config::default();
        let mut counters = Counters {
            now_ms: 10_000,
            ..Counters::default()
        };
        for _ in 0..50 {
            assert!(allowed(&counters.decide(&config, gateway("b1", "l1"))));
        }
        let denial = denied(counters.decide(&config, gateway("b1", "l1")));
        assert_eq!(denial.status, 429);
        assert_eq!(denial.code, "RATE_LIMITED");
        assert_eq!(
            denial.message,
            "more than 50 calls per second for this buyer"
        );
        assert_eq!(denial.retry_after_seconds, Some(1));
        // Another buyer is not affected.
        assert!(allowed(&counters.decide(&config, gateway("b2", "l1"))));
    }

    #[test]
    fn window_limit_with_sliding_estimate() {
        let (config, _) = Config::parse(
            r#"{"gateway": {"per_buyer": {"limit": 10, "window_seconds": 60, "burst": null},
                            "per_listing": null}}"#,
        );
        let mut counters = Counters {
            now_ms: 0,
            ..Counters::default()
        };
        for i in 0..10 {
            counters.now_ms = i * 1000;
            assert!(allowed(&counters.decide(&config, gateway("b", "l"))));
        }
        counters.now_ms = 20_000;
        let denial = denied(counters.decide(&config, gateway("b", "l")));
        assert_eq!(denial.message, "more than 10 calls per 60 s for this buyer");
        assert_eq!(denial.retry_after_seconds, Some(40));
        assert_eq!(
            counters.calls.last().unwrap(),
            &("buyer:b".to_owned(), 60_000)
        );

        // 30 s into the next window, half of the previous window's 11 still counts:
        // 5.5 + 1 = 6.5 <= 10.
        counters.now_ms = 90_000;
        for _ in 0..4 {
            assert!(allowed(&counters.decide(&config, gateway("b", "l"))));
        }
        // 5.5 + 5 = 10.5 > 10.
        let denial = denied(counters.decide(&config, gateway("b", "l")));
        assert_eq!(denial.retry_after_seconds, Some(30));
    }

    #[test]
    fn a_purchase_counts_once() {
        let (config, _) = Config::parse(
            r#"{"gateway": {"per_buyer": {"limit": 2, "window_seconds": 60, "burst": null},
                            "per_listing": null}}"#,
        );
        let mut counters = Counters::default();
        let retry = |call: Call<'static>| Call {
            attempt: Attempt::PaidRetry,
            ..call
        };
        // Two purchases: each a first attempt (402) and a paid retry.
        for _ in 0..2 {
            assert!(allowed(&counters.decide(&config, gateway("b", "l"))));
            assert!(allowed(&counters.decide(&config, retry(gateway("b", "l")))));
        }
        // A third purchase is refused at its first attempt...
        let denial = denied(counters.decide(&config, gateway("b", "l")));
        assert_eq!(denial.code, "RATE_LIMITED");
        // ...and retries with made-up payment proofs are limited on their own.
        let denial = denied(counters.decide(&config, retry(gateway("b", "l"))));
        assert_eq!(denial.code, "RATE_LIMITED");
        let keys: std::collections::HashSet<_> =
            counters.calls.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["buyer:b", "retry:buyer:b"].into());
    }

    #[test]
    fn validate_config_names_the_problem() {
        assert_eq!(Component::validate_config("{}".into()), Ok(()));
        let error = Component::validate_config(r#"{"gatway": {}}"#.into()).unwrap_err();
        assert!(error.contains("unknown key `gatway`"), "{error}");
    }

    #[test]
    fn per_listing_rule_and_keys() {
        let (config, _) = Config::parse(
            r#"{"gateway": {"per_buyer": null,
                            "per_listing": {"limit": 3, "window_seconds": 1, "burst": null}}}"#,
        );
        let mut counters = Counters {
            now_ms: 500,
            ..Counters::default()
        };
        for buyer in ["a", "b", "c"] {
            assert!(allowed(&counters.decide(&config, gateway(buyer, "lst"))));
        }
        let denial = denied(counters.decide(&config, gateway("d", "lst")));
        assert_eq!(denial.message, "more than 3 calls per 1 s for this listing");
        assert_eq!(denial.retry_after_seconds, Some(1));
        assert!(counters.calls.iter().all(|(k, _)| k == "listing:lst"));
    }

    #[test]
    fn auth_routes_limit_by_ip_only() {
        let config = Config::default();
        let mut counters = Counters {
            now_ms: 5_000,
            ..Counters::default()
        };
        for i in 0..10 {
            counters.now_ms = 5_000 + i;
            assert!(allowed(&counters.decide(&config, auth("198.51.100.1"))));
        }
        let denial = denied(counters.decide(&config, auth("198.51.100.1")));
        assert_eq!(
            denial.message,
            "more than 10 calls per second from this IP address"
        );
        assert!(allowed(&counters.decide(&config, auth("198.51.100.2"))));
        let keys: Vec<&str> = counters.calls.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"ip:198.51.100.1"));
        assert!(keys.contains(&"ip:198.51.100.1:burst"));
        assert!(keys.iter().all(|k| k.starts_with("ip:")));

        // Spread over a minute, the 61st call trips the window limit.
        let mut counters = Counters::default();
        for i in 0..60 {
            counters.now_ms = 60_000 + i * 900;
            assert!(allowed(&counters.decide(&config, auth("198.51.100.1"))));
        }
        counters.now_ms = 119_999;
        let denial = denied(counters.decide(&config, auth("198.51.100.1")));
        assert_eq!(
            denial.message,
            "more than 60 calls per 60 s from this IP address"
        );
        assert_eq!(denial.retry_after_seconds, Some(1));
    }

    #[test]
    fn disabled_rules_allow_without_counting() {
        let (config, warning) = Config::parse(
            r#"{"gateway": {"per_buyer": null, "per_listing": null}, "auth": {"per_ip": null}}"#,
        );
        assert!(warning.is_none());
        let mut counters = Counters::default();
        assert!(allowed(&counters.decide(&config, gateway("b", "l"))));
        assert!(allowed(&counters.decide(&config, auth("1.2.3.4"))));
        assert!(counters.calls.is_empty());
    }

    #[test]
    fn counter_errors_deny_with_503() {
        let mut counters = Counters {
            fail: true,
            ..Counters::default()
        };
        let denial = denied(counters.decide(&Config::default(), gateway("b", "l")));
        assert_eq!(denial.status, 503);
        assert_eq!(denial.code, "RATE_LIMIT_UNAVAILABLE");
        assert!(denial.message.contains("redis is down"));
    }

    #[test]
    fn estimate_formula() {
        let counts = WindowCount {
            current: 4,
            previous: 10,
            remaining_ms: 15_000,
        };
        assert_eq!(estimate(&counts, 60_000), 6.5);
    }
}
