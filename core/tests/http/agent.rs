//! `crochet agent …` as a person or a script drives it: the real binary, as a
//! subprocess, against a real host on both backends; its output, its files and its exit
//! codes, bad input included.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(an_agent_registers_finds_and_buys_from_the_command_line);

/// Runs `crochet agent ARGS --profile PROFILE --host HOST` off the test's runtime (the
/// host it talks to runs on that runtime).
async fn agent(dir: &Path, host: &str, args: &[&str]) -> Ran {
    let profile = dir.join("agent.toml");
    let mut all: Vec<String> = vec!["agent".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend([
        "--profile".into(),
        profile.to_string_lossy().into_owned(),
        "--host".into(),
        host.into(),
    ]);
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run_crochet(&dir, &refs)
    })
    .await
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn an_agent_registers_finds_and_buys_from_the_command_line(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}/api/v1", app.base);
    let ok = |ran: &Ran| {
        assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
        serde_json::from_str::<Value>(ran.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
    };

    let made = ok(&agent(
        dir.path(),
        &host,
        &[
            "wallet", "new", "--chain", "solana", "--out", "w.json", "--json",
        ],
    )
    .await);
    assert_eq!(made["chain"], "solana");
    let wallet = dir.path().join("w.json");
    assert_eq!(mode(&wallet), 0o600);
    assert!(
        !std::fs::read_to_string(&wallet)
            .unwrap()
            .contains(made["address"].as_str().unwrap()),
        "the file holds the key, not a printout"
    );

    let registered = ok(&agent(
        dir.path(),
        &host,
        &[
            "register", "--wallet", "w.json", "--role", "buyer", "--json",
        ],
    )
    .await);
    assert!(registered["profile_id"].is_string());
    let profile = dir.path().join("agent.toml");
    assert_eq!(mode(&profile), 0o600);
    assert!(std::fs::read_to_string(&profile).unwrap().contains("am_k_"));

    let found = ok(&agent(dir.path(), &host, &["listings", "search", "--json"]).await);
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == listing.id.as_str()),
        "{found}"
    );

    let paid = ok(&agent(
        dir.path(),
        &host,
        &["call", &listing.id, "--data", r#"{"input": 1}"#, "--json"],
    )
    .await);
    assert_eq!(paid["charged_cents"], 25);
    assert_eq!(paid["seller_response"]["echo"]["input"], 1);
    assert_eq!(listing.seller.requests().len(), 1);

    // Readable output for people.
    let human = agent(dir.path(), &host, &["listings", "show", &listing.id]).await;
    assert_eq!(human.code, Some(0), "{}", human.stderr);
    assert!(human.stdout.contains(&listing.id));

    // Refusals: a readable message and an exit code a script can branch on.
    let unknown = agent(
        dir.path(),
        &host,
        &["call", "no-such-listing", "--data", "{}"],
    )
    .await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("LISTING_NOT_FOUND"),
        "{}",
        unknown.stderr
    );
    let bad_json = agent(dir.path(), &host, &["call", &listing.id, "--data", "{nope"]).await;
    assert_eq!(bad_json.code, Some(2), "{}", bad_json.stderr);
    assert!(bad_json.stderr.contains("not JSON"), "{}", bad_json.stderr);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wallet, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let exposed = agent(dir.path(), &host, &["register", "--wallet", "w.json"]).await;
    assert_eq!(exposed.code, Some(2), "{}", exposed.stderr);
    assert_eq!(
        listing.seller.requests().len(),
        1,
        "nothing more was forwarded"
    );
}
