//! `crochet plugin check` and `crochet plugin run`: a plugin author's loop without a
//! running host. Both load the component exactly as the host does
//! ([`PluginHost::policy`], [`PluginHost::scorer`], [`PluginHost::adapter`], so the
//! messages are the host's), on a host that records the guest's log lines and the fuel
//! each call burns ([`CallTrace`]), with in-memory counters.
//!
//! The input of `run` is JSON, one object per world; every key is optional:
//!
//! - `policy`: a call-context, keys as in the WIT record with `_` for `-` (`kind`
//!   `"gateway"`/`"auth"`, `route`, `client_ip`, `buyer_id`, `seller_id`, `listing_id`,
//!   `price_cents`, `currency`, `origin_currency`, `origin_chain_id`,
//!   `origin_wallet_id`, `buyer_score`/`seller_score` as `{"score", "tier"}` or `null`,
//!   `listing_config` as any JSON or `null`, `headers` as an object of lowercase
//!   names to strings or a list of `[name, value]` pairs, `attempt` `"first"` /
//!   `"paid-retry"`, `payment` `"free"` / `"requirement"` / `"x402"` / `"balance"`;
//!   a 1.0 policy is given the 1.0 view) plus `body`, any JSON, from which
//!   `body_json`, `body_size` and `body_sha256` are derived. Missing keys take the
//!   values of the sample gateway call ([`sample_contexts`]`()[0]`), so `{}` works.
//! - `scorer`: agent-stats, keys as in the WIT record with `_` for `-`; missing keys
//!   take [`sample_stats`]'s values.
//! - `seller-adapter`: `{"direction": "request" | "response", "status": 200, "body":
//!   <any JSON>}`; the default is a request with the body `{"task": "sample", "input":
//!   "hello"}` (a response's status defaults to 200).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::inventory::{sample_contexts, sample_stats};
use super::scaffold::World;
use super::{
    AgentStats, Attempt, CallContext, CallKind, CallTrace, Counters, Decision, GuestLog,
    HostSettings, PaymentFlow, PluginError, PluginHost, PluginLimits, ScoreInfo, ScoreResult,
};

/// The name plugins are loaded under (their log and counter namespace).
const NAME: &str = "plugin";
/// The body an adapter is tried on when none is given.
const SAMPLE_ADAPTER_BODY: &str = r#"{"task":"sample","input":"hello"}"#;

/// Why the input of a check or run is unusable (a usage error, not a plugin failure).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

/// One step of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `component`, `world`, `imports`, `config` (policies) or `dry call`.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// What `crochet plugin check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Size of the file in bytes.
    pub bytes: usize,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The world the component implements, when it loaded.
    pub world: Option<&'static str>,
    /// The steps, in order; a failed step ends the check.
    pub steps: Vec<Step>,
    /// What the guest logged during the dry calls.
    pub logs: Vec<GuestLog>,
    /// Whether every step passed.
    pub passed: bool,
}

/// What `crochet plugin run` did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `policy`, `scorer` or `seller-adapter`.
    pub world: &'static str,
    /// Whether the plugin loaded and the call returned (a denial or an adapter's
    /// refusal is a returned answer).
    pub ok: bool,
    /// The answer, as JSON.
    pub result: Option<Value>,
    /// Why loading or the call failed.
    pub error: Option<String>,
    /// The guest's log lines during the call.
    pub logs: Vec<GuestLog>,
    /// Wall time of the call (instantiation included), in milliseconds.
    pub wall_ms: f64,
    /// Fuel the call consumed (about one unit per WebAssembly instruction).
    pub fuel: Option<u64>,
}

/// A host that records what calls do, with the given limits.
fn traced_host(timeout: Option<Duration>) -> Result<(PluginHost, CallTrace), PluginError> {
    let trace = CallTrace::default();
    let mut limits = PluginLimits::default();
    if let Some(timeout) = timeout {
        limits.timeout = timeout;
    }
    let host = PluginHost::new(HostSettings {
        limits,
        counters: Counters::memory(),
        trace: Some(trace.clone()),
        ..HostSettings::default()
    })?;
    Ok((host, trace))
}

/// Whether `bytes` look like a WebAssembly component; the reason when not.
fn component_header(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly file (no `\\0asm` header)".to_owned());
    }
    match bytes.get(4..8) {
        Some([0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0x01, 0x00, 0x00, 0x00]) => {
            Err("a core WebAssembly module, not a component: build for `wasm32-wasip2`".to_owned())
        }
        _ => Err("an unknown WebAssembly version or layer".to_owned()),
    }
}

/// Adds a step to a check's report; returns whether it passed.
fn step(report: &mut CheckReport, name: &'static str, passed: bool, detail: String) -> bool {
    report.steps.push(Step {
        name,
        passed,
        detail,
    });
    passed
}

/// A loaded plugin of some world.
enum Loaded {
    Policy(super::PolicyPlugin),
    Scorer(super::ScorerPlugin),
    Adapter(super::AdapterPlugin),
}

fn load(host: &PluginHost, wasm: &[u8], world: World, config: &str) -> Result<Loaded, PluginError> {
    Ok(match world {
        World::Policy => Loaded::Policy(host.policy(NAME, wasm, config.to_owned())?),
        World::Scorer => Loaded::Scorer(host.scorer(NAME, wasm, config.to_owned())?),
        World::SellerAdapter => Loaded::Adapter(host.adapter(NAME, wasm)?),
    })
}

/// Whether a load failure is an import the host does not give.
fn is_import_error(error: &PluginError) -> bool {
    matches!(error, PluginError::WrongWorld { detail, .. } if detail.starts_with("it imports"))
}

/// Checks a component: header, world (`world`, or each in turn), imports, and dry calls
/// on the samples with `config` as its configuration.
pub async fn check(wasm: &[u8], world: Option<World>, config: &str) -> CheckReport {
    let mut report = CheckReport {
        bytes: wasm.len(),
        sha256: hex::encode(Sha256::digest(wasm)),
        world: None,
        steps: Vec::new(),
        logs: Vec::new(),
        passed: false,
    };
    if let Err(reason) = component_header(wasm) {
        step(&mut report, "component", false, reason);
        return report;
    }
    let (host, trace) = match traced_host(None) {
        Ok(host) => host,
        Err(e) => {
            step(&mut report, "component", false, e.to_string());
            return report;
        }
    };
    let worlds: Vec<World> = world.map_or_else(|| World::ALL.to_vec(), |w| vec![w]);
    let mut failures = Vec::new();
    let mut loaded = None;
    for candidate in worlds {
        match load(&host, wasm, candidate, config) {
            Ok(plugin) => {
                loaded = Some((candidate, plugin));
                break;
            }
            Err(e @ (PluginError::Compile(_) | PluginError::TooLarge { .. })) => {
                step(&mut report, "component", false, e.to_string());
                return report;
            }
            Err(e) => failures.push(e),
        }
    }
    step(
        &mut report,
        "component",
        true,
        "a WebAssembly component that compiles".to_owned(),
    );
    let Some((world, plugin)) = loaded else {
        if let Some(import) = failures.iter().find(|e| is_import_error(e)) {
            step(&mut report, "imports", false, import.to_string());
        } else {
            let detail = failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            step(&mut report, "world", false, detail);
        }
        return report;
    };
    report.world = Some(world.name());
    let version = match &plugin {
        Loaded::Policy(policy) => format!(" of `crochet:plugin@{}`", policy.version().as_str()),
        _ => String::new(),
    };
    step(
        &mut report,
        "world",
        true,
        format!("{}{version}", world.name()),
    );
    step(
        &mut report,
        "imports",
        true,
        "only `crochet:plugin/host` and WASI 0.2".to_owned(),
    );
    if let Loaded::Policy(policy) = &plugin {
        let (passed, detail) = match policy.validate_config().await {
            Ok(None) => (true, "no `validate-config` export: not checked".to_owned()),
            Ok(Some(Ok(()))) => (true, "`validate-config` accepts it".to_owned()),
            Ok(Some(Err(reason))) => (false, format!("`validate-config` refuses it: {reason}")),
            Err(e) => (false, format!("`validate-config` failed: {e}")),
        };
        if !step(&mut report, "config", passed, detail) {
            report.logs = trace.logs();
            return report;
        }
    }
    let dry = dry_call(&plugin, config).await;
    report.logs = trace.logs();
    report.passed = match dry {
        Ok(detail) => step(&mut report, "dry call", true, detail),
        Err(e) => step(&mut report, "dry call", false, e.to_string()),
    };
    report
}

/// The sample calls of a check; what they answered.
async fn dry_call(plugin: &Loaded, config: &str) -> Result<String, PluginError> {
    Ok(match plugin {
        Loaded::Policy(policy) => {
            let mut answers = Vec::new();
            for ctx in sample_contexts() {
                let kind = match ctx.kind {
                    CallKind::Gateway => "gateway call",
                    CallKind::Auth => "auth call",
                };
                let answer = match policy.dry_run(&ctx).await? {
                    Decision::Allow => "allow".to_owned(),
                    Decision::Deny(d) => format!("deny {} {}", d.status, d.code),
                };
                answers.push(format!("{kind}: {answer}"));
            }
            answers.join("; ")
        }
        Loaded::Scorer(scorer) => {
            let result = scorer.score(&sample_stats()).await?;
            format!(
                "sample agent: score {} ({} components)",
                result.score,
                result.components.len()
            )
        }
        Loaded::Adapter(adapter) => match adapter.adapt_request(config, SAMPLE_ADAPTER_BODY).await?
        {
            Ok(body) => format!("adapt-request on a sample body: {} bytes", body.len()),
            Err(reason) => format!("adapt-request refused a sample body: {reason}"),
        },
    })
}

/// Runs one call of `world` on `input` (JSON, see the module's documentation) with
/// `config` as the plugin's configuration. `Err` is a usage error (bad input); a plugin
/// that fails to load or to answer is a report with `ok: false`.
pub async fn run(
    wasm: &[u8],
    world: World,
    input: &str,
    config: &str,
    timeout: Option<Duration>,
) -> Result<RunReport, InputError> {
    let input: Value = serde_json::from_str(input)
        .map_err(|e| InputError(format!("the input is not JSON: {e}")))?;
    let Value::Object(input) = input else {
        return Err(InputError("the input must be a JSON object".to_owned()));
    };
    let call = Call::parse(world, input)?;
    let mut report = RunReport {
        world: world.name(),
        ok: false,
        result: None,
        error: None,
        logs: Vec::new(),
        wall_ms: 0.0,
        fuel: None,
    };
    if let Err(reason) = component_header(wasm) {
        report.error = Some(reason);
        return Ok(report);
    }
    let loaded = traced_host(timeout).and_then(|(host, trace)| {
        load(&host, wasm, world, config).map(|plugin| (host, trace, plugin))
    });
    let (_host, trace, plugin) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            report.error = Some(e.to_string());
            return Ok(report);
        }
    };
    // The host refuses a configuration the plugin's `validate-config` refuses.
    if let Loaded::Policy(policy) = &plugin {
        let refused = match policy.validate_config().await {
            Ok(None | Some(Ok(()))) => None,
            Ok(Some(Err(reason))) => {
                Some(format!("the plugin refused its configuration: {reason}"))
            }
            Err(e) => Some(format!("validate-config failed: {e}")),
        };
        if let Some(refused) = refused {
            report.logs = trace.logs();
            report.error = Some(refused);
            return Ok(report);
        }
    }
    let started = Instant::now();
    let answer = call.call(&plugin, config).await;
    report.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    report.logs = trace.logs();
    report.fuel = trace.fuel_consumed();
    match answer {
        Ok(result) => {
            report.ok = true;
            report.result = Some(result);
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    Ok(report)
}

/// One call's input.
enum Call {
    Policy(Box<CallContext>),
    Scorer(AgentStats),
    Request(String),
    Response(u16, String),
}

impl Call {
    fn parse(world: World, input: Map<String, Value>) -> Result<Self, InputError> {
        match world {
            World::Policy => policy_context(input).map(|c| Call::Policy(Box::new(c))),
            World::Scorer => agent_stats(input).map(Call::Scorer),
            World::SellerAdapter => adapter_call(input),
        }
    }

    async fn call(&self, plugin: &Loaded, config: &str) -> Result<Value, PluginError> {
        let adapted = |answer: Result<String, String>| match answer {
            // The adapted body, as JSON when it is JSON.
            Ok(body) => {
                json!({"ok": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body))})
            }
            Err(reason) => json!({"error": reason}),
        };
        match (self, plugin) {
            (Call::Policy(ctx), Loaded::Policy(p)) => Ok(decision_json(&p.dry_run(ctx).await?)),
            (Call::Scorer(stats), Loaded::Scorer(p)) => Ok(score_json(&p.score(stats).await?)),
            (Call::Request(body), Loaded::Adapter(p)) => {
                Ok(adapted(p.adapt_request(config, body).await?))
            }
            (Call::Response(status, body), Loaded::Adapter(p)) => {
                Ok(adapted(p.adapt_response(config, *status, body).await?))
            }
            // `run` parses the input for the world it loads.
            _ => Err(PluginError::Compile(
                "the input does not match the world".to_owned(),
            )),
        }
    }
}

/// A decision as JSON: `{"decision": "allow"}` or `{"decision": "deny", "status", ...}`.
pub fn decision_json(decision: &Decision) -> Value {
    match decision {
        Decision::Allow => json!({"decision": "allow"}),
        Decision::Deny(d) => json!({
            "decision": "deny",
            "status": d.status,
            "code": d.code,
            "message": d.message,
            "field": d.field,
            "retry_after_seconds": d.retry_after_seconds,
        }),
    }
}

/// A score result as JSON: `{"score", "components": [{"name", "points", "detail"}]}`.
pub fn score_json(result: &ScoreResult) -> Value {
    json!({
        "score": result.score,
        "components": result.components.iter().map(|c| json!({
            "name": c.name,
            "points": c.points,
            "detail": c.detail,
        })).collect::<Vec<_>>(),
    })
}

fn bad(key: &str, what: &str) -> InputError {
    InputError(format!("`{key}` must be {what}"))
}

fn string(key: &str, value: Value) -> Result<String, InputError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(bad(key, "a string")),
    }
}

fn optional_string(key: &str, value: Value) -> Result<Option<String>, InputError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(bad(key, "a string or null")),
    }
}

fn number<T: TryFrom<u64>>(key: &str, value: &Value) -> Result<T, InputError> {
    value
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| bad(key, "a non-negative integer in range"))
}

fn score_info(key: &str, value: Value) -> Result<Option<ScoreInfo>, InputError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(o) => Ok(Some(ScoreInfo {
            score: number(key, o.get("score").unwrap_or(&Value::Null))?,
            tier: o
                .get("tier")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(key, "`{\"score\": <0-1000>, \"tier\": <string>}` or null"))?
                .to_owned(),
        })),
        _ => Err(bad(
            key,
            "`{\"score\": <0-1000>, \"tier\": <string>}` or null",
        )),
    }
}

/// A call-context from JSON (see the module's documentation).
pub fn policy_context(input: Map<String, Value>) -> Result<CallContext, InputError> {
    let [mut ctx, _] = sample_contexts();
    for (key, value) in input {
        let k = key.as_str();
        match k {
            "kind" => {
                ctx.kind = match value.as_str() {
                    Some("gateway") => CallKind::Gateway,
                    Some("auth") => CallKind::Auth,
                    _ => return Err(bad(k, "\"gateway\" or \"auth\"")),
                }
            }
            "route" => ctx.route = string(k, value)?,
            "client_ip" => ctx.client_ip = string(k, value)?,
            "buyer_id" => ctx.buyer_id = optional_string(k, value)?,
            "seller_id" => ctx.seller_id = optional_string(k, value)?,
            "listing_id" => ctx.listing_id = optional_string(k, value)?,
            "price_cents" => ctx.price_cents = number(k, &value)?,
            "currency" => ctx.currency = string(k, value)?,
            "origin_currency" => ctx.origin_currency = optional_string(k, value)?,
            "origin_chain_id" => ctx.origin_chain_id = optional_string(k, value)?,
            "origin_wallet_id" => ctx.origin_wallet_id = optional_string(k, value)?,
            "body" => {
                let body = value.to_string();
                ctx.body_size = body.len() as u64;
                ctx.body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
                ctx.body_json = body;
            }
            "buyer_score" => ctx.buyer_score = score_info(k, value)?,
            "seller_score" => ctx.seller_score = score_info(k, value)?,
            "listing_config" => {
                ctx.listing_config = (!value.is_null()).then(|| value.to_string());
            }
            "headers" => ctx.headers = headers(k, value)?,
            "attempt" => {
                ctx.attempt = match value.as_str() {
                    Some("first") => Attempt::First,
                    Some("paid-retry") => Attempt::PaidRetry,
                    _ => return Err(bad(k, "\"first\" or \"paid-retry\"")),
                }
            }
            "payment" => {
                ctx.payment = match value.as_str() {
                    Some("free") => PaymentFlow::Free,
                    Some("requirement") => PaymentFlow::Requirement,
                    Some("x402") => PaymentFlow::X402,
                    Some("balance") => PaymentFlow::Balance,
                    _ => {
                        return Err(bad(k, "\"free\", \"requirement\", \"x402\" or \"balance\""));
                    }
                }
            }
            _ => return Err(InputError(format!("unknown call-context key `{k}`"))),
        }
    }
    Ok(ctx)
}

/// Request headers from JSON: `{"name": "value"}` or `[["name", "value"], ...]`; names
/// are lower-cased, as the host gives them.
fn headers(key: &str, value: Value) -> Result<Vec<(String, String)>, InputError> {
    let what = "an object of header names to strings, or a list of [name, value] pairs";
    let pair = |name: String, value: Value| match value {
        Value::String(v) => Ok((name.to_ascii_lowercase(), v)),
        _ => Err(bad(key, what)),
    };
    match value {
        Value::Object(o) => o.into_iter().map(|(n, v)| pair(n, v)).collect(),
        Value::Array(pairs) => pairs
            .into_iter()
            .map(|p| match p {
                Value::Array(mut nv) if nv.len() == 2 => {
                    let v = nv.pop().unwrap_or_default();
                    let n = string(key, nv.pop().unwrap_or_default())?;
                    pair(n, v)
                }
                _ => Err(bad(key, what)),
            })
            .collect(),
        _ => Err(bad(key, what)),
    }
}

/// Agent statistics from JSON (see the module's documentation).
pub fn agent_stats(input: Map<String, Value>) -> Result<AgentStats, InputError> {
    let mut s = sample_stats();
    for (key, value) in input {
        let k = key.as_str();
        match k {
            "account_age_days" => s.account_age_days = number(k, &value)?,
            "successful_calls" => s.successful_calls = number(k, &value)?,
            "paid_calls" => s.paid_calls = number(k, &value)?,
            "paid_volume_cents" => s.paid_volume_cents = number(k, &value)?,
            "distinct_buyers" => s.distinct_buyers = number(k, &value)?,
            "active_days" => s.active_days = number(k, &value)?,
            "seller_errors" => s.seller_errors = number(k, &value)?,
            "timeouts" => s.timeouts = number(k, &value)?,
            "invalid_responses" => s.invalid_responses = number(k, &value)?,
            "review_count" => s.review_count = number(k, &value)?,
            "rating_sum" => s.rating_sum = number(k, &value)?,
            "paid_reviewers" => s.paid_reviewers = number(k, &value)?,
            "purchases" => s.purchases = number(k, &value)?,
            "distinct_sellers" => s.distinct_sellers = number(k, &value)?,
            _ => return Err(InputError(format!("unknown agent-stats key `{k}`"))),
        }
    }
    Ok(s)
}

fn adapter_call(mut input: Map<String, Value>) -> Result<Call, InputError> {
    let direction = input
        .remove("direction")
        .map_or(Ok("request".to_owned()), |v| string("direction", v))?;
    let status = match input.remove("status") {
        Some(v) => number("status", &v)?,
        None => 200,
    };
    let body = input
        .remove("body")
        .map_or_else(|| SAMPLE_ADAPTER_BODY.to_owned(), |v| v.to_string());
    if let Some(key) = input.keys().next() {
        return Err(InputError(format!(
            "unknown seller-adapter input key `{key}`"
        )));
    }
    match direction.as_str() {
        "request" => Ok(Call::Request(body)),
        "response" => Ok(Call::Response(status, body)),
        _ => Err(bad("direction", "\"request\" or \"response\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_empty_context_is_the_sample_gateway_call() {
        let ctx = policy_context(Map::new()).unwrap();
        assert_eq!(ctx, sample_contexts()[0]);
        let ctx = policy_context(object(
            r#"{"kind": "auth", "buyer_id": null, "body": {"blocked": true},
                "buyer_score": {"score": 420, "tier": "Moderate"}, "listing_config": {"a": 1}}"#,
        ))
        .unwrap();
        assert_eq!(ctx.kind, CallKind::Auth);
        assert_eq!(ctx.buyer_id, None);
        assert_eq!(ctx.body_json, r#"{"blocked":true}"#);
        assert_eq!(ctx.body_size, 16);
        assert_eq!(ctx.buyer_score.map(|s| s.score), Some(420));
        assert_eq!(ctx.listing_config.as_deref(), Some(r#"{"a":1}"#));
        assert!(policy_context(object(r#"{"kind": "other"}"#)).is_err());
        assert!(policy_context(object(r#"{"price": 1}"#)).is_err());
        assert!(policy_context(object(r#"{"price_cents": -1}"#)).is_err());
    }

    #[test]
    fn stats_and_adapter_inputs() {
        let stats = agent_stats(object(r#"{"paid_calls": 7}"#)).unwrap();
        assert_eq!(stats.paid_calls, 7);
        assert_eq!(stats.account_age_days, sample_stats().account_age_days);
        assert!(agent_stats(object(r#"{"account_age_days": 5000000000}"#)).is_err());
        assert!(
            matches!(adapter_call(Map::new()), Ok(Call::Request(b)) if b == SAMPLE_ADAPTER_BODY)
        );
        assert!(matches!(
            adapter_call(object(r#"{"direction": "response", "body": {"x": 1}}"#)),
            Ok(Call::Response(200, b)) if b == r#"{"x":1}"#
        ));
        assert!(adapter_call(object(r#"{"direction": "sideways"}"#)).is_err());
        assert!(adapter_call(object(r#"{"bdy": 1}"#)).is_err());
    }

    #[test]
    fn headers_are_told_apart() {
        assert!(component_header(b"\0asm\x0d\x00\x01\x00rest").is_ok());
        assert!(
            component_header(b"\0asm\x01\x00\x00\x00")
                .unwrap_err()
                .contains("core")
        );
        assert!(
            component_header(b"hello")
                .unwrap_err()
                .contains("not a WebAssembly")
        );
    }
}
