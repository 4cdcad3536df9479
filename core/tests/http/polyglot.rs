//! The WIT contract is language-neutral: a `policy` written in Python
//! (`plugins/python-policy`, built into a component by componentize-py) runs in the real
//! host beside nothing but the `host` interface and an empty WASI context.
//!
//! The component comes from `CROCHET_TEST_POLYGLOT_WASM` when set (CI builds it first),
//! otherwise from running `plugins/python-policy/build.sh`; when that cannot run (no
//! `python3`, no way to install componentize-py) the test says `SKIPPED (...)` and
//! passes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crochet::plugins::CallKind;
use crochet::plugins::policy::context;
use serde_json::json;

use crate::common::{TestApp, Wallet, gateway_call, policy_plugin, priced_listing};
use crate::on_both_backends;

on_both_backends!(python_policy_refuses_blocked_bodies_and_lets_others_through);

/// Where the component is built when CI has not built it.
const BUILT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/python-policy.wasm");

/// The Python policy component: its path, or why there is none.
fn python_policy() -> Result<PathBuf, String> {
    static BUILD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILD
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("CROCHET_TEST_POLYGLOT_WASM") {
                let path = PathBuf::from(path);
                assert!(
                    path.is_file(),
                    "CROCHET_TEST_POLYGLOT_WASM names {}, which does not exist",
                    path.display()
                );
                return Ok(path);
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins/python-policy/build.sh")
                .canonicalize()
                .map_err(|e| format!("plugins/python-policy/build.sh: {e}"))?;
            let out = Command::new("bash")
                .arg(&script)
                .arg(BUILT)
                .output()
                .map_err(|e| format!("cannot run bash: {e}"))?;
            if out.status.success() {
                Ok(PathBuf::from(BUILT))
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().last().unwrap_or("no output");
                Err(format!(
                    "plugins/python-policy/build.sh failed ({}): {last}",
                    out.status
                ))
            }
        })
        .clone()
}

async fn python_policy_refuses_blocked_bodies_and_lets_others_through(app: TestApp) {
    let built = tokio::task::spawn_blocking(python_policy).await.unwrap();
    let wasm = match built {
        Ok(path) => path,
        Err(why) => {
            // Straight to stderr, past the test harness's capture, as the other skips.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (componentize-py) {}: {why}",
                std::thread::current().name().unwrap_or("polyglot")
            );
            return;
        }
    };
    let bytes = std::fs::metadata(&wasm).unwrap().len();
    // A Python component carries its interpreter: about 18 MB, past the default 8 MiB
    // cap. A call (a fresh instance) takes about 5 ms, within the default 200 ms, but
    // tests share a busy machine: 1 s leaves room.
    let loading = Instant::now();
    let app = app
        .restart(|c| {
            c.plugins.max_component_bytes = 64 << 20;
            c.plugins.timeout_ms = 1_000;
            c.plugins.policy = Some(vec![policy_plugin(
                "python-policy",
                wasm.to_str().unwrap(),
                json!({"message": "no blocked calls here"}),
            )]);
        })
        .await;
    let loaded_in = loading.elapsed();

    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;

    let mut refusals = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let refused = gateway_call(&app, &buyer, &p.id, &json!({"blocked": true}), &[])
            .await
            .expect_error(422, "BLOCKED_BY_POLICY");
        refusals.push(started.elapsed());
        assert_eq!(
            refused.body["error"]["message"], "no blocked calls here",
            "{}",
            refused.body
        );
        assert_eq!(refused.body["error"]["details"]["plugin"], "python-policy");
        assert_eq!(refused.body["error"]["details"]["field"], "/blocked");
    }
    assert!(
        p.seller.requests().is_empty(),
        "refused calls never reach the seller"
    );

    for body in [json!({"task": "t"}), json!({"blocked": false})] {
        gateway_call(&app, &buyer, &p.id, &body, &[])
            .await
            .expect(200);
    }
    assert_eq!(p.seller.requests().len(), 2);

    // What one policy call costs (a fresh instance, then `check`), beside the same rule
    // in Rust (the bundled template), for the plugin guide.
    let python_call = median_check(&app).await;
    let app = app
        .restart(|c| {
            c.plugins.policy = Some(vec![policy_plugin(
                "template",
                "bundled:template",
                json!({}),
            )]);
        })
        .await;
    let rust_call = median_check(&app).await;
    refusals.sort();
    // Seen with `--nocapture`.
    eprintln!(
        "python-policy: {bytes} bytes; host restart with it {}; one refusal: policy call \
         {} (the Rust template: {}), whole gateway call {}",
        ms(loaded_in),
        ms(python_call),
        ms(rust_call),
        ms(refusals[refusals.len() / 2]),
    );
}

/// Median time of the host's policy chain refusing a `{"blocked": true}` body, over 21
/// calls.
async fn median_check(app: &TestApp) -> Duration {
    let mut times = Vec::new();
    for _ in 0..21 {
        let mut ctx = context(
            CallKind::Gateway,
            "POST /api/v1/gateway/{listing_id}",
            "203.0.113.7".into(),
        );
        ctx.body_json = r#"{"blocked": true}"#.into();
        let started = Instant::now();
        let refused = app.state().plugins.policies.check(&mut ctx, None).await;
        times.push(started.elapsed());
        assert!(refused.is_err(), "the policy refuses the call");
    }
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
