//! `crochet agent …` as a person or a script drives it: the real binary, as a
//! subprocess, against a real host on both backends; its output, its files and its exit
//! codes, bad input included.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(
    an_agent_registers_finds_and_buys_from_the_command_line,
    a_seller_and_a_buyer_go_through_the_whole_story_from_the_command_line,
    refusals_and_bad_files_exit_non_zero_with_a_readable_message,
);

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

/// Asserts success and parses the `--json` output.
fn ok(ran: &Ran) -> Value {
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    serde_json::from_str::<Value>(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn an_agent_registers_finds_and_buys_from_the_command_line(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}/api/v1", app.base);

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

async fn a_seller_and_a_buyer_go_through_the_whole_story_from_the_command_line(app: TestApp) {
    let host = format!("{}/api/v1", app.base);
    let seller_dir = tempfile::tempdir().unwrap();
    let buyer_dir = tempfile::tempdir().unwrap();
    let (s, b) = (seller_dir.path(), buyer_dir.path());
    let live = Seller::start().await;

    // The seller: a wallet, a registration, a listing with its secret in a private file.
    ok(&agent(
        s,
        &host,
        &["wallet", "new", "--out", "seller.json", "--json"],
    )
    .await);
    let seller = ok(&agent(
        s,
        &host,
        &[
            "register",
            "--wallet",
            "seller.json",
            "--role",
            "seller",
            "--json",
        ],
    )
    .await);
    let seller_id = seller["profile_id"].as_str().unwrap().to_owned();
    let endpoint = live.url("/ok");
    let created = ok(&agent(
        s,
        &host,
        &[
            "sell",
            "create",
            "--name",
            "Route Planner",
            "--description",
            "Plans routes.",
            "--price",
            "0.25",
            "--endpoint",
            &endpoint,
            "--secret-out",
            "secret.txt",
            "--json",
        ],
    )
    .await);
    let listing = created["id"].as_str().unwrap().to_owned();
    assert!(
        created.get("signing_secret").is_none(),
        "the secret went to the file only"
    );
    let secret_file = s.join("secret.txt");
    assert_eq!(mode(&secret_file), 0o600);
    live.set_secret(&std::fs::read_to_string(&secret_file).unwrap());

    let updated = ok(&agent(
        s,
        &host,
        &["sell", "update", &listing, "--price", "0.30", "--json"],
    )
    .await);
    assert_eq!(updated["price_cents"], 30);
    let endpoint_info = ok(&agent(
        s,
        &host,
        &[
            "sell",
            "endpoint",
            &listing,
            "--timeout-ms",
            "4000",
            "--json",
        ],
    )
    .await);
    assert_eq!(endpoint_info["timeout_ms"], 4000);
    let shown = agent(s, &host, &["sell", "endpoint", &listing]).await;
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    assert!(
        !shown.stdout.contains(&endpoint),
        "the private URL is never shown"
    );
    let tested = ok(&agent(s, &host, &["sell", "test", &listing, "--json"]).await);
    assert_eq!(tested["ok"], true);
    let rotated = ok(&agent(
        s,
        &host,
        &[
            "sell",
            "rotate-secret",
            &listing,
            "--secret-out",
            "secret.txt",
            "--json",
        ],
    )
    .await);
    assert!(rotated["signing_secret_file"].is_string());
    live.set_secret(&std::fs::read_to_string(&secret_file).unwrap());

    // The buyer: registers, calls, verifies its receipt, reviews, reads the score.
    ok(&agent(
        b,
        &host,
        &[
            "wallet",
            "new",
            "--chain",
            "solana",
            "--out",
            "buyer.json",
            "--json",
        ],
    )
    .await);
    ok(&agent(
        b,
        &host,
        &[
            "register",
            "--wallet",
            "buyer.json",
            "--role",
            "buyer",
            "--json",
        ],
    )
    .await);
    let paid = ok(&agent(
        b,
        &host,
        &[
            "call",
            &listing,
            "--data",
            r#"{"from": "A", "to": "B"}"#,
            "--json",
        ],
    )
    .await);
    assert_eq!(paid["charged_cents"], 30);
    assert_eq!(paid["payment"]["status"], "verified");
    let seen = live.requests();
    let forwarded: Vec<_> = seen
        .iter()
        .filter(|r| r.headers["x-crochet-request-id"] == paid["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(forwarded.len(), 1, "the call was forwarded once");
    assert!(
        forwarded[0].signature_valid,
        "the seller verified with the rotated secret"
    );

    let receipts = ok(&agent(b, &host, &["receipts", "list", "--json"]).await);
    let receipt_id = receipts[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(receipts[0]["gateway_request_id"], paid["request_id"]);
    let verified = ok(&agent(b, &host, &["receipts", "verify", "--json"]).await);
    assert_eq!(verified[0]["id"], receipt_id.as_str());
    assert_eq!(verified[0]["valid"], true);
    let human = agent(b, &host, &["receipts", "verify", &receipt_id]).await;
    assert_eq!(human.code, Some(0), "{}", human.stderr);
    assert!(human.stdout.contains("valid"), "{}", human.stdout);

    let review = ok(&agent(
        b,
        &host,
        &[
            "review",
            &listing,
            "--rating",
            "4",
            "--comment",
            "Quick.",
            "--json",
        ],
    )
    .await);
    assert_eq!(review["rating"], 4);
    assert_eq!(review["paid_purchase"], true);
    let score = ok(&agent(b, &host, &["score", &seller_id, "--json"]).await);
    assert_eq!(score["agent_id"], seller_id.as_str());
    assert_eq!(score["inputs"]["paid_calls"], 1);
    let readable = agent(b, &host, &["score", &seller_id]).await;
    assert!(
        readable.stdout.contains(&format!("{seller_id} scores")),
        "{}",
        readable.stdout
    );

    // Identity: me, keys, a linked wallet, recovery into a fresh profile file.
    let me = ok(&agent(b, &host, &["me", "--json"]).await);
    let buyer_id = me["profile"]["id"].as_str().unwrap().to_owned();
    let key = ok(&agent(b, &host, &["keys", "create", "--name", "spare", "--json"]).await);
    assert!(key["api_key"].as_str().unwrap().starts_with("am_k_"));
    let keys = ok(&agent(b, &host, &["keys", "list", "--json"]).await);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let revoked = ok(&agent(
        b,
        &host,
        &["keys", "revoke", key["id"].as_str().unwrap(), "--json"],
    )
    .await);
    assert_eq!(revoked["status"], "revoked");
    ok(&agent(
        b,
        &host,
        &[
            "wallet",
            "new",
            "--chain",
            "evm",
            "--out",
            "second.json",
            "--json",
        ],
    )
    .await);
    let linked = ok(&agent(
        b,
        &host,
        &[
            "wallets",
            "link",
            "--wallet",
            "second.json",
            "--label",
            "hot",
            "--json",
        ],
    )
    .await);
    assert_eq!(linked["chain"], "evm");
    let wallets = ok(&agent(b, &host, &["wallets", "list", "--json"]).await);
    assert_eq!(wallets.as_array().unwrap().len(), 2);
    std::fs::remove_file(b.join("agent.toml")).unwrap();
    let recovered = ok(&agent(b, &host, &["recover", "--wallet", "buyer.json", "--json"]).await);
    assert_eq!(recovered["profile_id"], buyer_id.as_str());
    let me_again = ok(&agent(b, &host, &["me", "--json"]).await);
    assert_eq!(me_again["profile"]["id"], buyer_id.as_str());
}

async fn refusals_and_bad_files_exit_non_zero_with_a_readable_message(app: TestApp) {
    // A 5-cent listing: below what an EVM payment route can carry.
    let cheap = priced_listing(&app, Some(0.05), "/ok").await;
    let host = format!("{}/api/v1", app.base);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // No key yet: commands that need one say how to get one.
    let no_key = agent(d, &host, &["me"]).await;
    assert_eq!(no_key.code, Some(2), "{}", no_key.stderr);
    assert!(no_key.stderr.contains("register"), "{}", no_key.stderr);

    // A key file that is not a wallet.
    std::fs::write(d.join("junk.json"), "not a wallet").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("junk.json"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let junk = agent(d, &host, &["register", "--wallet", "junk.json"]).await;
    assert_eq!(junk.code, Some(2), "{}", junk.stderr);
    assert!(junk.stderr.contains("wallet"), "{}", junk.stderr);
    let missing = agent(d, &host, &["register", "--wallet", "nowhere.json"]).await;
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    let unset = agent(
        d,
        &host,
        &["register", "--wallet", "env:CROCHET_TEST_NO_SUCH_WALLET"],
    )
    .await;
    assert_eq!(unset.code, Some(2), "{}", unset.stderr);
    assert!(
        unset
            .stderr
            .contains("CROCHET_TEST_NO_SUCH_WALLET is not set"),
        "{}",
        unset.stderr
    );

    // An EVM buyer and the cheap listing: no payment route, with what to do next.
    ok(&agent(
        d,
        &host,
        &[
            "wallet", "new", "--chain", "evm", "--out", "evm.json", "--json",
        ],
    )
    .await);
    ok(&agent(
        d,
        &host,
        &[
            "register", "--wallet", "evm.json", "--role", "buyer", "--json",
        ],
    )
    .await);
    let no_route = agent(d, &host, &["call", &cheap.id, "--data", "{}"]).await;
    assert_eq!(no_route.code, Some(1), "{}", no_route.stderr);
    assert!(
        no_route.stderr.contains("PAYMENT_ROUTE_MINIMUM_NOT_MET"),
        "{}",
        no_route.stderr
    );
    assert!(
        no_route.stderr.contains("what to do:"),
        "{}",
        no_route.stderr
    );
    assert!(cheap.seller.requests().is_empty(), "nothing was forwarded");

    // A review without a purchase, a rating out of range, an unknown agent.
    let review = agent(d, &host, &["review", &cheap.id, "--rating", "5"]).await;
    assert_eq!(review.code, Some(1), "{}", review.stderr);
    let range = agent(d, &host, &["review", &cheap.id, "--rating", "7"]).await;
    assert_eq!(range.code, Some(2), "{}", range.stderr);
    let unknown = agent(d, &host, &["score", "no-such-agent"]).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stderr);

    // A profile others can read is refused before anything is sent.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("agent.toml"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let exposed = agent(d, &host, &["me"]).await;
    assert_eq!(exposed.code, Some(2), "{}", exposed.stderr);
    assert!(exposed.stderr.contains("chmod 600"), "{}", exposed.stderr);
}
