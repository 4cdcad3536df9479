//! Tests through the real bundled components.

use std::sync::OnceLock;

use super::*;

/// Limits for tests that are not about time: the default limits, but a long timeout, so
/// that a busy machine never turns a call into a timeout.
fn patient_limits() -> PluginLimits {
    PluginLimits {
        timeout: Duration::from_secs(30),
        ..PluginLimits::default()
    }
}

/// One host shared by most tests (each component compiles once), with
/// [`patient_limits`].
fn shared_host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        PluginHost::new(HostSettings {
            limits: patient_limits(),
            ..HostSettings::default()
        })
        .unwrap()
    })
}

/// A host with the default limits (200 ms), for the tests about timeouts.
fn strict_host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(HostSettings::default()).unwrap())
}

fn unique(what: &str) -> String {
    format!("{what}-{:016x}", rand::random::<u64>())
}

fn gateway_ctx(buyer: &str) -> CallContext {
    CallContext {
        kind: CallKind::Gateway,
        route: "POST /api/v1/gateway/{listing_id}".into(),
        client_ip: "203.0.113.7".into(),
        buyer_id: Some(buyer.into()),
        seller_id: Some("seller".into()),
        listing_id: Some("listing".into()),
        price_cents: 5,
        currency: "USD".into(),
        origin_currency: None,
        origin_chain_id: None,
        origin_wallet_id: None,
        body_size: 2,
        body_sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
        body_json: "{}".into(),
        buyer_score: None,
        seller_score: None,
        listing_config: None,
        headers: Vec::new(),
        attempt: Attempt::First,
        payment: PaymentFlow::Requirement,
    }
}

fn zero_stats() -> AgentStats {
    AgentStats {
        account_age_days: 0,
        successful_calls: 0,
        paid_calls: 0,
        paid_volume_cents: 0,
        distinct_buyers: 0,
        active_days: 0,
        seller_errors: 0,
        timeouts: 0,
        invalid_responses: 0,
        review_count: 0,
        rating_sum: 0,
        paid_reviewers: 0,
        purchases: 0,
        distinct_sellers: 0,
    }
}

const TIGHT_RATE_LIMIT: &str =
    r#"{"gateway":{"per_buyer":{"limit":3,"window_seconds":60,"burst":100},"per_listing":null}}"#;

#[tokio::test]
async fn rate_limit_denies_past_its_limit() {
    let host = shared_host();
    let policy = host
        .policy(
            "rate-limit",
            bundled::RATE_LIMIT,
            TIGHT_RATE_LIMIT.to_owned(),
        )
        .unwrap();
    assert_eq!(policy.name(), "rate-limit");
    let ctx = gateway_ctx(&unique("buyer"));
    for _ in 0..3 {
        assert_eq!(policy.check(&ctx).await.unwrap(), Decision::Allow);
    }
    match policy.check(&ctx).await.unwrap() {
        Decision::Deny(denial) => {
            assert_eq!(denial.status, 429, "{denial:?}");
            assert_eq!(denial.code, "RATE_LIMITED");
            assert!(denial.retry_after_seconds.is_some());
        }
        Decision::Allow => panic!("the fourth call must be refused"),
    }
    // Another buyer has its own budget.
    let other = gateway_ctx(&unique("buyer"));
    assert_eq!(policy.check(&other).await.unwrap(), Decision::Allow);
}

#[tokio::test]
async fn request_validation_loads_and_allows_an_object() {
    let policy = shared_host()
        .policy(
            "request-validation",
            bundled::REQUEST_VALIDATION,
            "{}".to_owned(),
        )
        .unwrap();
    // Whatever its rules, the plugin answers (allow or a 4xx denial) without failing.
    match policy.check(&gateway_ctx("b")).await.unwrap() {
        Decision::Allow => {}
        Decision::Deny(d) => assert!((400..500).contains(&d.status), "{d:?}"),
    }
}

/// The guests' 64 KiB stack still holds the deepest bodies validation accepts, and the
/// deepest JSON the parser reads (a schema walk over it included).
#[tokio::test]
async fn request_validation_handles_the_deepest_bodies_in_its_small_stack() {
    let operator = r#"{"max_depth": 128}"#.to_owned();
    let policy = shared_host()
        .policy("request-validation", bundled::REQUEST_VALIDATION, operator)
        .unwrap();
    for (depth, allowed) in [(100, true), (127, true), (128, false), (5000, false)] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let mut ctx = gateway_ctx("b");
        ctx.body_size = body.len() as u64;
        ctx.body_json = body;
        ctx.listing_config =
            Some(r#"{"schema": {"type": "array", "items": {"type": "array"}}}"#.into());
        match policy.check(&ctx).await {
            Ok(Decision::Allow) => assert!(allowed, "depth {depth} allowed"),
            Ok(Decision::Deny(d)) => {
                assert!(!allowed, "depth {depth} refused: {d:?}");
                assert_eq!(d.code, "VALIDATION_FAILED");
            }
            Err(e) => panic!("depth {depth}: the plugin failed: {e}"),
        }
    }
}

#[tokio::test]
async fn scoring_gives_300_for_zero_stats() {
    let scorer = shared_host()
        .scorer("scoring", bundled::SCORING, "{}".to_owned())
        .unwrap();
    let result = scorer.score(&zero_stats()).await.unwrap();
    assert_eq!(result.score, 300, "{result:?}");
}

#[tokio::test]
async fn chat_adapter_maps_a_request_and_a_response() {
    let host = shared_host();
    host.validate_adapter(bundled::CHAT_ADAPTER).unwrap();
    let adapter = host.adapter("chat", bundled::CHAT_ADAPTER).unwrap();
    let out = adapter
        .adapt_request(
            r#"{"model":"m1"}"#,
            r#"{"task":"Summarise","input":"text"}"#,
        )
        .await
        .unwrap()
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["model"], "m1");
    assert_eq!(out["messages"][0]["content"], "Summarise");
    assert_eq!(out["messages"][1]["content"], "text");
    // The guest's own refusal is `Ok(Err(..))`, not a host error.
    let refused = adapter.adapt_request("{}", "[]").await.unwrap();
    assert!(refused.is_err());
    let reply = adapter
        .adapt_response(
            "{}",
            200,
            r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"tokens":3}}"#,
        )
        .await
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["output"], "hi");
}

#[tokio::test]
async fn template_policy_blocks_what_it_says() {
    let policy = shared_host()
        .policy("template", bundled::TEMPLATE, "{}".to_owned())
        .unwrap();
    assert_eq!(
        policy.check(&gateway_ctx("b")).await.unwrap(),
        Decision::Allow
    );
    let blocked = CallContext {
        body_json: r#"{"blocked":true}"#.into(),
        ..gateway_ctx("b")
    };
    match policy.check(&blocked).await.unwrap() {
        Decision::Deny(denial) => assert_eq!(denial.status, 422, "{denial:?}"),
        Decision::Allow => panic!("a blocked body must be refused"),
    }
}

/// The fields 1.1 added, as the echo component reports them.
async fn echoed(policy: &PolicyPlugin, ctx: &CallContext) -> serde_json::Value {
    match policy.check(ctx).await.unwrap() {
        Decision::Deny(d) if d.code == "CONTEXT_ECHO" => serde_json::from_str(&d.message).unwrap(),
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[tokio::test]
async fn policies_of_1_0_and_1_1_run_side_by_side_in_one_host() {
    let host = shared_host();
    let legacy = host
        .policy(
            "legacy",
            bundled::testing::HOSTILE,
            r#"{"mode":"refuse"}"#.into(),
        )
        .unwrap();
    let current = host
        .policy("echo", bundled::testing::ECHO, "{}".into())
        .unwrap();
    assert_eq!(legacy.version(), WitVersion::V1_0);
    assert_eq!(current.version(), WitVersion::V1_1);
    assert_eq!(WitVersion::CURRENT.as_str(), "1.1.0");
    for bundled in [
        bundled::RATE_LIMIT,
        bundled::REQUEST_VALIDATION,
        bundled::TEMPLATE,
    ] {
        let plugin = host.policy("b", bundled, "{}".into()).unwrap();
        assert_eq!(plugin.version(), WitVersion::V1_1);
        assert!(plugin.validates_config());
    }

    let mut ctx = gateway_ctx("buyer-1");
    ctx.body_json = r#"{"echo": true}"#.into();
    ctx.headers = vec![("x-agent-team".into(), "blue".into())];
    ctx.attempt = Attempt::PaidRetry;
    // The 1.0 policy sees the fields it knows...
    match legacy.check(&ctx).await.unwrap() {
        Decision::Deny(d) => {
            assert_eq!(d.code, "HOSTILE_REFUSED");
            assert_eq!(
                d.message,
                "refused POST /api/v1/gateway/{listing_id} for buyer buyer-1 on listing listing"
            );
        }
        Decision::Allow => panic!("refuse mode refuses"),
    }
    // ...and the 1.1 policy the new ones too.
    assert_eq!(
        echoed(&current, &ctx).await,
        serde_json::json!({
            "headers": [["x-agent-team", "blue"]],
            "attempt": "paid-retry",
            "payment": "requirement",
        })
    );
}

#[tokio::test]
async fn validate_config_answers_for_the_plugins_that_export_it() {
    let host = shared_host();
    let load = |bytes: &[u8], config: &str| host.policy("p", bytes, config.into()).unwrap();
    let rejected = |answer: Option<Result<(), String>>| match answer {
        Some(Err(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        load(bundled::RATE_LIMIT, "{}")
            .validate_config()
            .await
            .unwrap(),
        Some(Ok(()))
    );
    let reason = rejected(
        load(
            bundled::RATE_LIMIT,
            r#"{"gateway": {"per_buyer": {"limt": 5}}}"#,
        )
        .validate_config()
        .await
        .unwrap(),
    );
    assert!(reason.contains("unknown key `limt`"), "{reason}");
    let reason = rejected(
        load(bundled::TEMPLATE, r#"{"mesage": "typo"}"#)
            .validate_config()
            .await
            .unwrap(),
    );
    assert!(reason.contains("mesage"), "{reason}");
    // Without the export there is nothing to ask: 1.0 policies, and 1.1 `policy`.
    assert_eq!(
        load(bundled::testing::ECHO, "{}")
            .validate_config()
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        load(bundled::testing::HOSTILE, "{}")
            .validate_config()
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn forwarded_headers_are_named_by_the_operator_and_never_secrets() {
    let host = shared_host();
    for refused in [
        "authorization",
        "Authorization",
        "cookie",
        "payment-signature",
        "x-crochet-relay-request-id",
        "not a header",
    ] {
        let err = policy::PolicyChain::prepare(host, &[], &[refused.to_owned()])
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused} must be refused"));
        assert!(matches!(err, LoadError::Config(_)), "{err}");
        assert!(err.to_string().contains("plugins.forward_headers"), "{err}");
    }
    let prepared = policy::PolicyChain::prepare(
        host,
        &[],
        &["X-Agent-Team".to_owned(), "x-trace".to_owned()],
    )
    .await
    .unwrap();
    let chain = policy::PolicyChain::new(prepared);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", "Bearer am_k_secret".parse().unwrap());
    headers.append("x-trace", "a".parse().unwrap());
    headers.append("x-trace", "b".parse().unwrap());
    headers.insert("x-agent-team", "blue".parse().unwrap());
    headers.insert("x-other", "no".parse().unwrap());
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        chain.forwarded_headers(&headers),
        vec![
            pair("x-agent-team", "blue"),
            pair("x-trace", "a"),
            pair("x-trace", "b")
        ]
    );
    assert!(
        policy::PolicyChain::default()
            .forwarded_headers(&headers)
            .is_empty()
    );
}

/// What the hostile `remember` mode answered: the body its instance saw before.
async fn remembered(policy: &PolicyPlugin, body: &str) -> String {
    remembered_for(policy, "b", body).await
}

/// [`remembered`] for a call of `buyer`.
async fn remembered_for(policy: &PolicyPlugin, buyer: &str, body: &str) -> String {
    let mut ctx = gateway_ctx(buyer);
    ctx.body_json = body.into();
    match policy.check(&ctx).await.unwrap() {
        Decision::Deny(d) if d.code == "REMEMBERED" => d.message,
        other => panic!("expected REMEMBERED, got {other:?}"),
    }
}

/// What carries from one call to the next: with `reuse`, what the plugin kept in its
/// memory (here, the previous call's body); with `buyer`, the same but only between
/// one buyer's calls; with `call`, nothing. A failed call's instance is never reused.
#[tokio::test]
async fn a_reused_instance_keeps_its_memory_and_a_fresh_one_does_not() {
    let host = shared_host();
    let load = |isolation| {
        host.policy_with(
            "remember",
            bundled::testing::HOSTILE,
            r#"{"mode":"remember"}"#.into(),
            isolation,
        )
        .unwrap()
    };
    let strict = load(Isolation::Call);
    assert_eq!(strict.isolation(), Isolation::Call);
    assert_eq!(remembered(&strict, r#"{"a":1}"#).await, "");
    assert_eq!(
        remembered(&strict, r#"{"b":2}"#).await,
        "",
        "nothing carries over"
    );

    let reused = load(Isolation::Reuse);
    assert_eq!(remembered(&reused, r#"{"a":1}"#).await, "");
    assert_eq!(remembered(&reused, r#"{"b":2}"#).await, r#"{"a":1}"#);
    // A trap drops the instance: the next call starts on a fresh one.
    let mut ctx = gateway_ctx("b");
    ctx.body_json = r#""trap""#.into();
    let err = reused.check(&ctx).await.unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    assert_eq!(remembered(&reused, r#"{"c":3}"#).await, "");
    // Dry runs (trial calls) never touch the warm instances.
    let mut dry = gateway_ctx("b");
    dry.body_json = r#"{"dry":0}"#.into();
    reused.dry_run(&dry).await.unwrap();
    assert_eq!(remembered(&reused, r#"{"d":4}"#).await, r#"{"c":3}"#);

    // `buyer`: warm instances too, but a buyer's calls never meet another buyer's.
    let per_buyer = load(Isolation::Buyer);
    assert_eq!(remembered_for(&per_buyer, "alice", r#"{"a":1}"#).await, "");
    assert_eq!(remembered_for(&per_buyer, "bob", r#"{"b":1}"#).await, "");
    assert_eq!(
        remembered_for(&per_buyer, "alice", r#"{"a":2}"#).await,
        r#"{"a":1}"#
    );
    assert_eq!(
        remembered_for(&per_buyer, "bob", r#"{"b":2}"#).await,
        r#"{"b":1}"#
    );
}

/// Every failure of the hostile plugin is contained with reused instances too, and the
/// plugin serves again on a fresh instance after it.
#[tokio::test]
async fn hostile_failures_are_contained_with_reused_instances() {
    for (mode, strict) in [
        ("loop", true),
        ("memory", false),
        ("recurse", false),
        ("trap", false),
        ("huge-output", false),
    ] {
        let host = if strict { strict_host() } else { shared_host() };
        let plugin = host
            .policy_with(
                "hostile",
                bundled::testing::HOSTILE,
                format!(r#"{{"mode":"{mode}"}}"#),
                Isolation::Reuse,
            )
            .unwrap();
        for _ in 0..2 {
            let err = plugin.check(&gateway_ctx("b")).await.unwrap_err();
            let expected = match mode {
                "loop" => matches!(err, PluginError::Timeout { .. }),
                "memory" => matches!(
                    err,
                    PluginError::MemoryLimit { .. } | PluginError::Trap { .. }
                ),
                // 64 MiB does not fit in the default 32 MiB memory.
                "huge-output" => matches!(
                    err,
                    PluginError::OutputTooLarge { .. } | PluginError::MemoryLimit { .. }
                ),
                _ => matches!(err, PluginError::Trap { .. }),
            };
            assert!(expected, "{mode}: {err:?}");
        }
        let allow = host
            .policy_with(
                "hostile",
                bundled::testing::HOSTILE,
                r#"{"mode":"allow"}"#.into(),
                Isolation::Reuse,
            )
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                allow.check(&gateway_ctx("b")).await.unwrap(),
                Decision::Allow
            );
        }
    }
}

fn hostile_on(host: &PluginHost, mode: &str) -> PolicyPlugin {
    host.policy(
        "hostile",
        bundled::testing::HOSTILE,
        format!(r#"{{"mode":"{mode}"}}"#),
    )
    .unwrap()
}

/// The hostile plugin on the host with the default limits.
fn strict_hostile(mode: &str) -> PolicyPlugin {
    hostile_on(strict_host(), mode)
}

/// The hostile plugin on the shared host.
fn hostile(mode: &str) -> PolicyPlugin {
    hostile_on(shared_host(), mode)
}

/// After a failure the same hosts still serve.
async fn host_still_serves() {
    for host in [shared_host(), strict_host()] {
        let ok = hostile_on(host, "allow")
            .check(&gateway_ctx("b"))
            .await
            .unwrap();
        assert_eq!(ok, Decision::Allow);
    }
}

#[tokio::test]
async fn hostile_loop_times_out() {
    let err = strict_hostile("loop")
        .check(&gateway_ctx("b"))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    host_still_serves().await;
}

#[tokio::test]
async fn hostile_memory_hits_the_limit() {
    let err = hostile("memory")
        .check(&gateway_ctx("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::MemoryLimit { .. } | PluginError::Trap { .. }
        ),
        "{err:?}"
    );
    host_still_serves().await;
}

#[tokio::test]
async fn hostile_recursion_traps() {
    let err = hostile("recurse")
        .check(&gateway_ctx("b"))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    host_still_serves().await;
}

#[tokio::test]
async fn hostile_panic_traps() {
    let err = hostile("trap").check(&gateway_ctx("b")).await.unwrap_err();
    match &err {
        PluginError::Trap { plugin, .. } => assert_eq!(plugin, "hostile"),
        other => panic!("expected a trap, got {other:?}"),
    }
    host_still_serves().await;
}

#[tokio::test]
async fn hostile_huge_output_is_refused() {
    let err = hostile("huge-output")
        .check(&gateway_ctx("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::OutputTooLarge { .. } | PluginError::MemoryLimit { .. }
        ),
        "{err:?}"
    );
    host_still_serves().await;
}

#[tokio::test]
async fn hostile_slow_counter_finishes_or_times_out() {
    match strict_hostile("slow-counter")
        .check(&gateway_ctx("b"))
        .await
    {
        Ok(decision) => assert_eq!(decision, Decision::Allow),
        Err(err) => assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}"),
    }
    host_still_serves().await;
}

#[tokio::test]
async fn output_limit_applies_to_adapters() {
    let host = PluginHost::new(HostSettings {
        limits: PluginLimits {
            max_output_bytes: 16,
            ..patient_limits()
        },
        ..HostSettings::default()
    })
    .unwrap();
    let adapter = host.adapter("chat", bundled::CHAT_ADAPTER).unwrap();
    let err = adapter
        .adapt_request("{}", r#"{"task":"a long enough task","input":"x"}"#)
        .await
        .unwrap_err();
    match err {
        PluginError::OutputTooLarge { bytes, limit, .. } => {
            assert_eq!(limit, 16);
            assert!(bytes > 16);
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}

#[test]
fn a_scorer_is_not_a_policy() {
    let err = shared_host()
        .policy("scoring", bundled::SCORING, "{}".to_owned())
        .err()
        .unwrap();
    match err {
        PluginError::WrongWorld {
            expected_world,
            detail,
            ..
        } => {
            assert_eq!(expected_world, "policy");
            assert!(detail.contains("does not export"), "{detail}");
            assert!(detail.contains("`score`"), "{detail}");
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
}

#[test]
fn a_policy_is_not_an_adapter() {
    let err = shared_host()
        .validate_adapter(bundled::RATE_LIMIT)
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::WrongWorld {
                expected_world: "seller-adapter",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_extra_import_is_refused_at_load() {
    let err = shared_host()
        .policy("evil", bundled::testing::EVIL_IMPORT, "{}".to_owned())
        .err()
        .unwrap();
    match err {
        PluginError::WrongWorld { detail, .. } => {
            assert!(detail.contains("imports something"), "{detail}");
            assert!(detail.contains("crochet:evil/shell"), "{detail}");
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
    let err = shared_host()
        .validate_adapter(bundled::testing::EVIL_IMPORT)
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{err:?}");
}

#[test]
fn oversized_upload_is_refused_before_compiling() {
    let host = shared_host();
    let limit = host.limits().max_component_bytes;
    let big = vec![0u8; limit + 1];
    match host.validate_adapter(&big).unwrap_err() {
        PluginError::TooLarge { bytes, limit: l } => assert_eq!((bytes, l), (limit + 1, limit)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn garbage_does_not_compile() {
    let host = shared_host();
    let err = host.validate_adapter(b"definitely not wasm").unwrap_err();
    assert!(matches!(err, PluginError::Compile(_)), "{err:?}");
    // A core module is not a component.
    let core_module = b"\0asm\x01\0\0\0";
    let err = host.validate_adapter(core_module).unwrap_err();
    assert!(matches!(err, PluginError::Compile(_)), "{err:?}");
}

#[test]
fn what_is_not_webassembly_is_refused_in_one_line() {
    let host = shared_host();
    let err = host.validate_adapter(b"definitely not wasm").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not WebAssembly"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    // Bytes that start like WebAssembly but are broken: wasmtime's reason, on one line.
    let err = host
        .validate_adapter(b"\0asm\x0d\0\x01\0garbage")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PluginError::Compile(_)), "{err:?}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn a_pinned_digest_must_match() {
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bundled::TEMPLATE));
    policy::check_digest("gate", "bundled:template", bundled::TEMPLATE, None).unwrap();
    policy::check_digest("gate", "bundled:template", bundled::TEMPLATE, Some(&digest)).unwrap();
    let upper = digest.to_ascii_uppercase();
    policy::check_digest("gate", "bundled:template", bundled::TEMPLATE, Some(&upper)).unwrap();
    let pinned = "0".repeat(64);
    let err = policy::check_digest("gate", "bundled:template", bundled::TEMPLATE, Some(&pinned))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LoadError::DigestMismatch { .. }), "{err:?}");
    assert!(text.contains(&pinned) && text.contains(&digest), "{text}");
    assert!(text.contains("`gate`"), "{text}");
}

fn cached_host(dir: &std::path::Path, key: [u8; 32]) -> PluginHost {
    PluginHost::new(HostSettings {
        cache_dir: Some(dir.to_owned()),
        cache_key: key,
        limits: patient_limits(),
        ..HostSettings::default()
    })
    .unwrap()
}

#[tokio::test]
async fn compile_cache_survives_restarts_and_refuses_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let key = [7u8; 32];

    let first = cached_host(dir.path(), key);
    first
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    // Same bytes again in the same process: no second compile.
    first
        .scorer("scoring-again", bundled::SCORING, "{}".into())
        .unwrap();
    let stats = first.cache_stats();
    assert_eq!(
        (stats.compiled, stats.reused_in_memory),
        (1, 1),
        "{stats:?}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];

    // A restart loads the artifact from disk, and it works.
    let second = cached_host(dir.path(), key);
    let scorer = second
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    assert_eq!(scorer.score(&zero_stats()).await.unwrap().score, 300);
    let stats = second.cache_stats();
    assert_eq!(
        (stats.compiled, stats.loaded_from_disk),
        (0, 1),
        "{stats:?}"
    );

    // A tampered file is refused, recompiled and rewritten.
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(file, &bytes).unwrap();
    let third = cached_host(dir.path(), key);
    third
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    let stats = third.cache_stats();
    assert_eq!(
        (
            stats.rejected_on_disk,
            stats.compiled,
            stats.loaded_from_disk
        ),
        (1, 1, 0),
        "{stats:?}"
    );
    let fourth = cached_host(dir.path(), key);
    fourth
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    assert_eq!(fourth.cache_stats().loaded_from_disk, 1);

    // A host with another key trusts none of these files; a truncated file is refused.
    let stranger = cached_host(dir.path(), [8u8; 32]);
    stranger
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    assert_eq!(stranger.cache_stats().rejected_on_disk, 1);
    std::fs::write(file, [1u8; 10]).unwrap();
    let truncated = cached_host(dir.path(), key);
    truncated
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    let stats = truncated.cache_stats();
    assert_eq!(
        (stats.rejected_on_disk, stats.compiled),
        (1, 1),
        "{stats:?}"
    );
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn rate_limit_with_redis_counters() {
    let Ok(url) = std::env::var("CROCHET_TEST_REDIS_URL") else {
        eprintln!(
            "SKIPPED (Redis) rate_limit_with_redis_counters: CROCHET_TEST_REDIS_URL is not set"
        );
        return;
    };
    let prefix = unique("crochet-test");
    let settings = async || {
        let counters = Counters::redis(&url, &prefix).unwrap();
        counters.connect().await.unwrap();
        HostSettings {
            counters,
            limits: patient_limits(),
            ..HostSettings::default()
        }
    };
    // Two hosts (two gateway instances) share the counters.
    let a = PluginHost::new(settings().await).unwrap();
    let b = PluginHost::new(settings().await).unwrap();
    let limit = |host: &PluginHost| {
        host.policy(
            "rate-limit",
            bundled::RATE_LIMIT,
            TIGHT_RATE_LIMIT.to_owned(),
        )
        .unwrap()
    };
    let (pa, pb) = (limit(&a), limit(&b));
    let ctx = gateway_ctx(&unique("buyer"));
    assert_eq!(pa.check(&ctx).await.unwrap(), Decision::Allow);
    assert_eq!(pb.check(&ctx).await.unwrap(), Decision::Allow);
    assert_eq!(pa.check(&ctx).await.unwrap(), Decision::Allow);
    assert!(matches!(
        pb.check(&ctx).await.unwrap(),
        Decision::Deny(Denial { status: 429, .. })
    ));
}

#[tokio::test]
async fn unreachable_counters_deny_with_503() {
    let host = PluginHost::new(HostSettings {
        counters: Counters::redis("redis://127.0.0.1:1", "x").unwrap(),
        ..HostSettings::default()
    })
    .unwrap();
    let policy = host
        .policy(
            "rate-limit",
            bundled::RATE_LIMIT,
            TIGHT_RATE_LIMIT.to_owned(),
        )
        .unwrap();
    // The plugin decides what a counter failure means; the host only reports it.
    match policy.check(&gateway_ctx("b")).await {
        Ok(Decision::Deny(denial)) => assert_eq!(denial.status, 503, "{denial:?}"),
        Ok(Decision::Allow) => panic!("the plugin allowed without counters"),
        Err(err) => assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}"),
    }
}

#[tokio::test]
async fn a_hanging_counter_store_times_out_the_call() {
    // Accepts connections and never answers, like a wedged Redis.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let host = PluginHost::new(HostSettings {
        counters: Counters::redis(&url, "x").unwrap(),
        ..HostSettings::default()
    })
    .unwrap();
    let policy = host
        .policy(
            "rate-limit",
            bundled::RATE_LIMIT,
            TIGHT_RATE_LIMIT.to_owned(),
        )
        .unwrap();
    let err = policy.check(&gateway_ctx("b")).await.unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    // The abandoned call left the host usable.
    let ok = hostile_on(&host, "allow")
        .check(&gateway_ctx("b"))
        .await
        .unwrap();
    assert_eq!(ok, Decision::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_calls() {
    let policy = shared_host()
        .policy(
            "rate-limit",
            bundled::RATE_LIMIT,
            r#"{"gateway":{"per_buyer":{"limit":1000,"window_seconds":60,"burst":null}}}"#
                .to_owned(),
        )
        .unwrap();
    let buyer = unique("buyer");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (policy, ctx) = (policy.clone(), gateway_ctx(&buyer));
        tasks.spawn(async move { policy.check(&ctx).await });
    }
    let mut allowed = 0;
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), Decision::Allow);
        allowed += 1;
    }
    assert_eq!(allowed, 200);
}
