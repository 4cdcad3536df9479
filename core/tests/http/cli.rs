//! `crochet plugin check` and `crochet plugin run` as a plugin author runs them: the real
//! binary on component files, with their reports, exit codes and JSON output. These
//! commands use no database, so there is one run of each test, not one per backend.

use std::path::Path;

use crochet::plugins::bundled;
use serde_json::Value;

use crate::common::{Ran, run_crochet};

/// Writes `bytes` to `dir/name` and returns the path as a string.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

fn json(ran: &Ran) -> Value {
    serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", ran.stdout, ran.stderr))
}

#[test]
fn check_passes_a_good_component_and_detects_its_world() {
    let dir = tempfile::tempdir().unwrap();
    let template = file(dir.path(), "template.wasm", bundled::TEMPLATE);
    let ran = run_crochet(dir.path(), &["plugin", "check", &template]);
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    for line in [
        "size:",
        "sha256:",
        "ok   world     policy",
        "ok   imports",
        "ok   dry call",
        "passed",
    ] {
        assert!(ran.stdout.contains(line), "{line}: {}", ran.stdout);
    }

    let scoring = file(dir.path(), "scoring.wasm", bundled::SCORING);
    let report = json(&run_crochet(
        dir.path(),
        &["plugin", "check", &scoring, "--json"],
    ));
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["world"], "scorer");
    assert_eq!(report["bytes"], bundled::SCORING.len());
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);

    let adapter = file(dir.path(), "chat.wasm", bundled::CHAT_ADAPTER);
    let report = json(&run_crochet(
        dir.path(),
        &["plugin", "check", &adapter, "--json"],
    ));
    assert_eq!(report["world"], "seller-adapter", "{report}");
    assert_eq!(report["passed"], true, "{report}");
}

#[test]
fn check_refuses_the_wrong_world_bad_imports_and_non_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let scoring = file(dir.path(), "scoring.wasm", bundled::SCORING);
    let ran = run_crochet(
        dir.path(),
        &["plugin", "check", &scoring, "--world", "policy"],
    );
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("FAIL world"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("is not a valid `policy` plugin"),
        "the host's message: {}",
        ran.stdout
    );

    let evil = file(dir.path(), "evil.wasm", bundled::testing::EVIL_IMPORT);
    let ran = run_crochet(dir.path(), &["plugin", "check", &evil]);
    assert_eq!(ran.code, Some(1));
    assert!(ran.stdout.contains("FAIL imports"), "{}", ran.stdout);
    assert!(ran.stdout.contains("does not provide"), "{}", ran.stdout);

    let text = file(dir.path(), "notes.wasm", &[b'x'; 4096]);
    let ran = run_crochet(dir.path(), &["plugin", "check", &text]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stdout.contains("FAIL component not a WebAssembly file"),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("xxxx"), "no byte dump: {}", ran.stdout);

    let missing = dir.path().join("missing.wasm");
    let ran = run_crochet(dir.path(), &["plugin", "check", missing.to_str().unwrap()]);
    assert_eq!(ran.code, Some(2), "a usage error");
    let ran = run_crochet(
        dir.path(),
        &["plugin", "check", &scoring, "--world", "nope"],
    );
    assert_eq!(ran.code, Some(2), "a usage error");
}

#[test]
fn check_and_run_report_hostile_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = file(dir.path(), "hostile.wasm", bundled::testing::HOSTILE);
    let trap = file(dir.path(), "trap.json", br#"{"mode": "trap"}"#);
    let spin = file(dir.path(), "loop.json", br#"{"mode": "loop"}"#);
    let ctx = file(dir.path(), "ctx.json", b"{}");

    let ran = run_crochet(
        dir.path(),
        &["plugin", "check", &hostile, "--config", &trap],
    );
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("FAIL dry call"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("failed: "),
        "the trap's reason: {}",
        ran.stdout
    );

    let ran = run_crochet(
        dir.path(),
        &[
            "plugin", "run", &hostile, "--world", "policy", "--ctx", &ctx, "--config", &trap,
            "--json",
        ],
    );
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    let report = json(&ran);
    assert_eq!(report["ok"], false);
    assert!(
        report["error"].as_str().unwrap().contains("failed: "),
        "{report}"
    );
    // The guest's panic hook sent the panic's message to the host's log first.
    let panic = &report["logs"][0];
    assert_eq!(panic["level"], "error", "{report}");
    assert!(
        panic["message"]
            .as_str()
            .unwrap()
            .contains("hostile plugin: trap mode"),
        "{report}"
    );

    let ran = run_crochet(
        dir.path(),
        &[
            "plugin", "run", &hostile, "--world", "policy", "--ctx", &ctx, "--config", &spin,
        ],
    );
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("ran past its time limit"),
        "{}",
        ran.stdout
    );
}

#[test]
fn run_prints_the_decision_the_logs_the_time_and_the_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let template = file(dir.path(), "template.wasm", bundled::TEMPLATE);
    let config = file(dir.path(), "config.json", br#"{"message": "no thanks"}"#);
    let blocked = file(
        dir.path(),
        "blocked.json",
        br#"{"body": {"blocked": true}}"#,
    );
    let ran = run_crochet(
        dir.path(),
        &[
            "plugin", "run", &template, "--world", "policy", "--ctx", &blocked, "--config",
            &config, "--json",
        ],
    );
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    let report = json(&ran);
    assert_eq!(report["result"]["decision"], "deny", "{report}");
    assert_eq!(report["result"]["code"], "BLOCKED_BY_POLICY");
    assert_eq!(report["result"]["message"], "no thanks");
    let logs = report["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l["level"] == "info"
            && l["message"]
                .as_str()
                .unwrap()
                .starts_with("blocked a call to /api/v1/gateway/")),
        "the guest's log line is captured: {report}"
    );
    assert!(report["fuel"].as_u64().unwrap() > 0, "{report}");
    assert!(report["wall_ms"].as_f64().unwrap() > 0.0);

    // The text form; `{}` is the sample gateway call, which the template allows.
    let empty = file(dir.path(), "empty.json", b"{}");
    let ran = run_crochet(
        dir.path(),
        &[
            "plugin", "run", &template, "--world", "policy", "--ctx", &empty,
        ],
    );
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    for line in [
        "result:   {\"decision\":\"allow\"}",
        "log:      (none)",
        "time:",
        "fuel:",
    ] {
        assert!(ran.stdout.contains(line), "{line}: {}", ran.stdout);
    }

    // A scorer and an adapter.
    let scoring = file(dir.path(), "scoring.wasm", bundled::SCORING);
    let stats = file(
        dir.path(),
        "stats.json",
        br#"{"paid_calls": 0, "successful_calls": 0}"#,
    );
    let report = json(&run_crochet(
        dir.path(),
        &[
            "plugin", "run", &scoring, "--world", "scorer", "--ctx", &stats, "--json",
        ],
    ));
    assert!(report["result"]["score"].as_u64().unwrap() > 0, "{report}");
    let chat = file(dir.path(), "chat.wasm", bundled::CHAT_ADAPTER);
    let request = file(
        dir.path(),
        "request.json",
        br#"{"body": {"task": "t", "input": "hi"}}"#,
    );
    let report = json(&run_crochet(
        dir.path(),
        &[
            "plugin",
            "run",
            &chat,
            "--world",
            "seller-adapter",
            "--ctx",
            &request,
            "--json",
        ],
    ));
    assert_eq!(
        report["result"]["ok"]["messages"][1]["content"], "hi",
        "{report}"
    );

    // Input errors are usage errors.
    let bad = file(dir.path(), "bad.json", br#"{"kind": "other"}"#);
    let ran = run_crochet(
        dir.path(),
        &[
            "plugin", "run", &template, "--world", "policy", "--ctx", &bad,
        ],
    );
    assert_eq!(ran.code, Some(2), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("`kind`"), "{}", ran.stderr);
}
