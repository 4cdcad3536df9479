//! Plugin reloads on a running host: the configuration file is read again, the new
//! chain is compiled and tried before it serves, calls in flight are not disturbed, a
//! broken chain never serves, and counters carry over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;

use crate::common::{Backend, TestApp, Wallet, gateway_call, priced_listing, with_admin};

/// The template policy named `gate`, refusing `{"blocked": true}` with `message`, then
/// whatever `more` adds.
fn gate(message: &str, more: &str) -> String {
    format!(
        "[[plugins.policy]]\nname = \"gate\"\nsource = \"bundled:template\"\n\
         config = {{ message = \"{message}\" }}\n{more}"
    )
}

/// A host whose plugins come from `file` (written with `toml` first), as a host started
/// with `--config FILE` has them, with the admin API on.
async fn host_with_plugin_file(backend: Backend, file: &Path, toml: &str) -> Option<TestApp> {
    std::fs::write(file, toml).unwrap();
    let file = file.to_path_buf();
    TestApp::start(backend, move |c| {
        with_admin(c);
        c.plugins = crochet::config::Config::load(Some(&file))
            .expect("the test configuration loads")
            .plugins;
        c.file = Some(file);
    })
    .await
}

fn hostile_file(dir: &Path) -> PathBuf {
    let path = dir.join("hostile.wasm");
    std::fs::write(&path, crochet::plugins::bundled::testing::HOSTILE).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_chain_under_load_sqlite() {
    reload_swaps_the_chain_under_load(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_chain_under_load_postgres() {
    reload_swaps_the_chain_under_load(Backend::Postgres).await;
}

/// Calls keep flowing through two reloads (one good, one refused): none fails because
/// of a swap, the good reload serves at once, the refused one changes nothing.
async fn reload_swaps_the_chain_under_load(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crochet.toml");
    let Some(app) = host_with_plugin_file(backend, &file, &gate("first", "")).await else {
        return;
    };
    let app = Arc::new(app);
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = Arc::new(app.register(Wallet::solana()).await);
    let blocked = json!({"blocked": true});
    let message = async || {
        let r = gateway_call(&app, &buyer, &p.id, &blocked, &[])
            .await
            .expect_error(422, "BLOCKED_BY_POLICY");
        r.body["error"]["message"].as_str().unwrap().to_owned()
    };
    assert_eq!(message().await, "first");

    // Two buyers' worth of calls for as long as the reloads take.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (app, buyer, id) = (app.clone(), buyer.clone(), p.id.clone());
        let (stop, served) = (stop.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = gateway_call(&app, &buyer, &id, &json!({"task": "t"}), &[]).await;
                if r.status == 200 {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(r.body);
                }
            }
            failures
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    std::fs::write(&file, gate("second", "")).unwrap();
    let report = app.reload_plugins().await.expect(200);
    let plugins = report.data()["plugins"].as_array().unwrap().clone();
    assert_eq!(plugins[0]["name"], "gate");
    assert_eq!(plugins[0]["world"], "policy");
    assert_eq!(plugins[0]["source"], "bundled:template");
    assert_eq!(plugins[0]["failure"], "closed");
    assert_eq!(plugins[0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(plugins[1]["world"], "scorer");
    assert_eq!(message().await, "second", "the new chain serves at once");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // A plugin that traps on every call: refused by its trial call, never serving.
    let hostile = hostile_file(dir.path());
    let broken = format!(
        "[[plugins.policy]]\nname = \"hostile\"\nsource = \"{}\"\nfailure = \"closed\"\n\
         config = {{ mode = \"trap\" }}\n",
        hostile.display()
    );
    std::fs::write(&file, broken).unwrap();
    let refused = app
        .reload_plugins()
        .await
        .expect_error(422, "PLUGIN_RELOAD_REFUSED");
    assert_eq!(refused.body["error"]["details"]["plugin"], "hostile");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trial call"),
        "{}",
        refused.body
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failures = task.await.unwrap();
        assert!(
            failures.is_empty(),
            "calls failed during reloads: {failures:?}"
        );
    }
    assert!(served.load(Ordering::Relaxed) > 0, "the load ran");
    assert_eq!(message().await, "second", "the refused chain never served");

    // Both reloads are in the audit log: the plugins before and after, or the reason.
    let audit = app.admin_get("/admin/audit").await.expect(200);
    let entries = audit.data().as_array().unwrap();
    let refused = &entries[0];
    assert_eq!(refused["action"], "plugins.reload_refused");
    assert!(
        refused["after"]["error"]
            .as_str()
            .unwrap()
            .contains("hostile")
    );
    let done = &entries[1];
    assert_eq!(done["action"], "plugins.reload");
    assert_eq!(done["before"]["plugins"][0]["name"], "gate");
    assert_eq!(done["after"]["plugins"][0]["sha256"], plugins[0]["sha256"]);
    assert!(done["actor"].as_str().unwrap().starts_with("admin:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_sources_are_refused_with_the_reason_sqlite() {
    broken_sources_are_refused_with_the_reason(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_sources_are_refused_with_the_reason_postgres() {
    broken_sources_are_refused_with_the_reason(Backend::Postgres).await;
}

/// Each way a new configuration can be wrong is refused with the plugin and the reason,
/// and leaves the running chain in place.
async fn broken_sources_are_refused_with_the_reason(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crochet.toml");
    let Some(app) = host_with_plugin_file(backend, &file, &gate("first", "")).await else {
        return;
    };
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").unwrap();
    let policy = |name: &str, source: &str| {
        format!("[[plugins.policy]]\nname = \"{name}\"\nsource = \"{source}\"\n")
    };
    let cases = [
        (
            policy("gate", &garbage.display().to_string()),
            Some("gate"),
            "cannot be loaded",
        ),
        (
            policy("gate", "bundled:scoring"),
            Some("gate"),
            "not a valid `policy` plugin",
        ),
        (policy("gate", "missing.wasm"), Some("gate"), "cannot read"),
        (
            format!(
                "{}{}",
                policy("twin", "bundled:template"),
                policy("twin", "bundled:template")
            ),
            Some("twin"),
            "unique",
        ),
        (
            "[plugins]\nunknown_setting = 1\n".to_owned(),
            None,
            "cannot be read",
        ),
        (
            "[[plugins.policy]]\nname = \"limit\"\nsource = \"bundled:rate-limit\"\n\
             config = { gateway = { per_buyer = { limt = 5 } } }\n"
                .to_owned(),
            Some("limit"),
            "plugin `limit` refused its configuration: invalid rate-limit configuration",
        ),
    ];
    for (toml, plugin, reason) in cases {
        std::fs::write(&file, &toml).unwrap();
        let r = app
            .reload_plugins()
            .await
            .expect_error(422, "PLUGIN_RELOAD_REFUSED");
        assert_eq!(
            r.body["error"]["details"]["plugin"],
            json!(plugin),
            "{toml}"
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{toml}: {message}");
    }
    let listed = app.state().plugins.describe();
    assert_eq!(listed[0].name, "gate");
    assert_eq!(listed[0].source, "bundled:template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_carry_over_a_reload_sqlite() {
    counters_carry_over_a_reload(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_carry_over_a_reload_postgres() {
    counters_carry_over_a_reload(Backend::Postgres).await;
}

/// In-memory counters belong to the host, by plugin name: a reloaded rate limit goes on
/// counting where the old one was.
async fn counters_carry_over_a_reload(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crochet.toml");
    let limit = "[[plugins.policy]]\nname = \"rate-limit\"\nsource = \"bundled:rate-limit\"\n\
                 config = { gateway = { per_buyer = { limit = 3, window_seconds = 60, burst = 1000 } } }\n";
    let Some(app) = host_with_plugin_file(backend, &file, limit).await else {
        return;
    };
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "t"});
    for _ in 0..2 {
        gateway_call(&app, &buyer, &p.id, &body, &[])
            .await
            .expect(200);
    }
    app.reload_plugins().await.expect(200);
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect(200);
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(429, "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_and_pinned_digests_sqlite() {
    relative_paths_and_pinned_digests(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_and_pinned_digests_postgres() {
    relative_paths_and_pinned_digests(Backend::Postgres).await;
}

/// A relative `source` is read from the configuration file's folder (not the working
/// directory), and a component whose SHA-256 is not the pinned one is refused with both
/// digests, for a policy and for the scorer alike.
async fn relative_paths_and_pinned_digests(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(
        dir.path().join("plugins/gate.wasm"),
        crochet::plugins::bundled::TEMPLATE,
    )
    .unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        crochet::plugins::bundled::TEMPLATE,
    ));
    let pinned = |sha: &str, scorer_sha: &str| {
        format!(
            "[plugins]\nscorer_sha256 = \"{scorer_sha}\"\n\n[[plugins.policy]]\nname = \"gate\"\n\
             source = \"plugins/gate.wasm\"\nsha256 = \"{sha}\"\nconfig = {{ message = \"pinned\" }}\n"
        )
    };
    let scoring = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        crochet::plugins::bundled::SCORING,
    ));
    let file = dir.path().join("crochet.toml");
    let Some(app) = host_with_plugin_file(backend, &file, &pinned(&digest, &scoring)).await else {
        return;
    };
    let listed = app.state().plugins.describe();
    assert_eq!(
        listed[0].source,
        dir.path().join("plugins/gate.wasm").display().to_string()
    );
    assert_eq!(listed[0].sha256, digest);
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let r = gateway_call(&app, &buyer, &p.id, &json!({"blocked": true}), &[])
        .await
        .expect_error(422, "BLOCKED_BY_POLICY");
    assert_eq!(r.body["error"]["message"], "pinned");

    let other = "0".repeat(64);
    for (toml, plugin) in [
        (pinned(&other, &scoring), "gate"),
        (pinned(&digest, &other), "scorer"),
    ] {
        std::fs::write(&file, &toml).unwrap();
        let r = app
            .reload_plugins()
            .await
            .expect_error(422, "PLUGIN_RELOAD_REFUSED");
        assert_eq!(r.body["error"]["details"]["plugin"], plugin, "{toml}");
        let message = r.body["error"]["message"].as_str().unwrap();
        let actual = if plugin == "gate" { &digest } else { &scoring };
        assert!(
            message.contains(&other) && message.contains(actual.as_str()),
            "{message}"
        );
    }
    std::fs::write(&file, pinned(&digest.to_uppercase(), &scoring)).unwrap();
    app.reload_plugins().await.expect(200);
}
