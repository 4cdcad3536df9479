//! The `crochet` binary as an operator runs it: start-up, logs, shutdown, and recovery
//! of paid calls after the process is killed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Agent, Backend, Client, Deployment, Host, Published, Wallet, balance_of, crochet, gateway_call,
    poll_until, retry, settle,
};

#[tokio::test]
async fn serve_prints_its_address_logs_no_secrets_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(
        dir.path(),
        &[
            ("CROCHET_LOG", "debug"),
            ("CROCHET_ADMIN_TOKEN", crate::common::ADMIN_TOKEN),
        ],
    )
    .await;
    let client = host.client.clone();
    let agent = client.register(Wallet::evm()).await;
    client.get("/me", agent.key()).await.expect(200);
    let proof = client.proof(&agent.wallet, "recover", None).await;
    let signature = proof["signature"].as_str().unwrap().to_owned();
    client.post("/auth/recover", None, proof).await.expect(201);
    // A listing whose private URL, upstream auth value and secret must never be logged,
    // including on the seller-failure path (the port is closed).
    let private_url = "http://127.0.0.1:9/private-path-xyz?token=url-secret-123";
    let created = client
        .create_listing(
            &agent,
            crate::common::listing_body("Logged Listing", private_url),
        )
        .await
        .expect(201);
    let id = created.data()["id"].as_str().unwrap().to_owned();
    let listing_secret = created.data()["gateway_endpoint"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let ep = format!("/listings/{id}/endpoint");
    let auth = json!({"auth_header_value": "Bearer upstream-log-secret"});
    client
        .send(reqwest::Method::PUT, &ep, agent.key(), Some(&auth))
        .await
        .expect(200);
    let test = client
        .post(&format!("{ep}/test"), agent.key(), json!({}))
        .await
        .expect(200);
    assert_eq!(test.data()["error"], "SELLER_UNREACHABLE");

    // The rest of a day's run: a paid call through a live seller whose private URL
    // carries a secret, a failing call, the operator's reads, a suspension, a plugin
    // reload and a metrics scrape.
    let live = client
        .publish_with("Live Listing", "/ok?token=live-url-secret-456", |body| {
            body["pricing_amount"] = json!(0.25);
        })
        .await;
    let live_secret = live.data["gateway_endpoint"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let buyer = client.register(Wallet::solana()).await;
    let body = json!({"task": "t"});
    let (_, paid) = crate::common::pay_and_call(&client, &buyer, &live.id, &body).await;
    paid.expect(200);
    crate::common::gateway_call(&client, &buyer, &id, &json!({"task": "t"}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    for path in [
        "/admin/stats",
        "/admin/gateway-requests/failed",
        "/admin/plugins",
    ] {
        client.admin_get(path).await.expect(200);
    }
    let listing = format!("/admin/listings/{}", live.id);
    client
        .admin_post(&format!("{listing}/suspend"), Some(json!({"reason": "r"})))
        .await
        .expect(200);
    client
        .admin_post(&format!("{listing}/reinstate"), None)
        .await
        .expect(200);
    client.reload_plugins().await.expect(200);
    assert!(host.metrics().await.contains("crochet_gateway_calls_total"));

    let (status, logs) = host.stop("TERM").await;
    assert!(status.success(), "exit status {status:?}\n{logs}");
    assert!(logs.contains("gateway call"), "gateway calls are logged");
    assert!(logs.contains("plugins reloaded"), "the reload is logged");
    assert!(
        !logs.contains(crate::common::ADMIN_TOKEN),
        "no operator credential"
    );
    assert!(!logs.contains(&crate::common::ADMIN_TOKEN[10..30]));
    assert!(!logs.contains(&buyer.api_key[5..20]), "no buyer key");
    assert!(!logs.contains(&live_secret[4..]), "no signing secret");
    assert!(!logs.contains("live-url-secret-456"), "no endpoint URL");
    assert!(
        !logs.contains(&format!(":{}/ok", live.seller.port())),
        "no seller address"
    );
    assert!(logs.contains("request_id"), "requests are logged with ids");
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
    assert!(!logs.contains(&agent.api_key), "no API key in logs");
    assert!(!logs.contains(&agent.api_key[5..20]));
    assert!(!logs.contains(&signature[2..40]), "no signature in logs");
    for secret in [
        "private-path-xyz",
        "url-secret-123",
        "upstream-log-secret",
        &listing_secret[4..],
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
    assert!(
        dir.path().join("crochet.db").exists(),
        "embedded SQLite by default"
    );
    assert!(
        dir.path().join("crochet.db.key").exists(),
        "development key beside the database"
    );
}

#[test]
fn production_refusal_names_the_setting_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = crochet()
        .arg("serve")
        .current_dir(dir.path())
        .env("CROCHET_ENVIRONMENT", "production")
        .env("CROCHET_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CROCHET_PAYMENT_PROVIDER") && err.contains("Fix:"),
        "{err}"
    );
    assert!(
        !dir.path().join("crochet.db").exists(),
        "nothing is created before refusing"
    );
}

#[test]
fn migrate_applies_migrations_and_bad_config_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let out = crochet()
        .arg("migrate")
        .env("CROCHET_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    assert!(dir.path().join("m.db").exists());

    let out = crochet()
        .arg("serve")
        .env("CROCHET_ENVIRONMENT", "staging")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment"));
}

/// Publishes a listing on `seller` (price in USD, `None` = free) with a four-second
/// endpoint timeout (long enough for the host to be killed mid-call on a busy machine),
/// so the forwarding lease is five seconds.
async fn publish(client: &Client, seller: &crate::common::Seller, price: Option<f64>) -> Published {
    let agent = client.register_as(Wallet::evm(), "seller").await;
    let mut body = crate::common::listing_body("Held Capability", &seller.url("/hold"));
    match price {
        Some(p) => body["pricing_amount"] = json!(p),
        None => {
            body["pricing_model"] = json!("free");
            body.as_object_mut().unwrap().remove("pricing_amount");
        }
    }
    let data = client
        .create_listing(&agent, body)
        .await
        .expect(201)
        .data()
        .clone();
    let id = data["id"].as_str().unwrap().to_owned();
    client
        .send(
            reqwest::Method::PUT,
            &format!("/listings/{id}/endpoint"),
            agent.key(),
            Some(&json!({"timeout_ms": 4000})),
        )
        .await
        .expect(200);
    seller.set_secret(data["gateway_endpoint"]["signing_secret"].as_str().unwrap());
    Published {
        seller: crate::common::Seller {
            base: seller.base.clone(),
            state: seller.state.clone(),
        },
        agent,
        id,
        data,
    }
}

/// Sends the paid retry in the background (its host is about to die) and waits until
/// the seller holds it; returns the gateway request id the seller saw.
async fn retry_held_at_seller(
    client: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    relay_id: Option<&str>,
    seller: &crate::common::Seller,
) -> String {
    let before = seller.requests().len();
    let mut req = client
        .http
        .post(client.url(&format!("/gateway/{listing}")))
        .bearer_auth(&buyer.api_key)
        .json(body);
    if let Some(relay_id) = relay_id {
        req = req.header("X-Crochet-Relay-Request-Id", relay_id);
    }
    tokio::spawn(async move {
        let _ = req.send().await;
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seller.requests().len() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the seller was never reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seller.requests()[before].headers["x-crochet-request-id"].clone()
}

/// Retries a consumed payment until its lease has passed and the call is forwarded.
async fn retry_until_forwarded(
    client: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    relay_id: &str,
) -> crate::common::Reply {
    poll_until(
        Duration::from_secs(20),
        async || retry(client, buyer, listing, body, relay_id).await,
        |r| r.status.as_u16() != 409,
    )
    .await
    .expect(200)
}

/// 402 and a settled mock payment; returns the relay request id.
async fn paid_requirement(client: &Client, buyer: &Agent, listing: &str, body: &Value) -> String {
    let r = gateway_call(client, buyer, listing, body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    settle(client, buyer, &r, "settled").await
}

/// The crash tests of paid-call recovery, against the real binary killed with SIGKILL
/// (and aborting at a fault point), restarted on the same database.
async fn interrupted_calls_are_recovered(backend: Backend) {
    let Some(dep) = Deployment::new(backend).await else {
        return;
    };
    // Each listing has its own signing secret, so each its own seller.
    let seller = crate::common::Seller::start().await;
    let free_seller = crate::common::Seller::start().await;
    seller.hold(true);
    free_seller.hold(true);

    // 1. A paid call and a free call are both inside the seller when the host is killed.
    let host = dep.host(600, &[]).await;
    let c = host.client.clone();
    let paid = publish(&c, &seller, Some(0.25)).await;
    let free = publish(&c, &free_seller, None).await;
    let buyer = c.register(Wallet::solana()).await;
    let body = json!({"task": "crash"});
    let relay_1 = paid_requirement(&c, &buyer, &paid.id, &body).await;
    let request_1 =
        retry_held_at_seller(&c, &buyer, &paid.id, &body, Some(&relay_1), &seller).await;
    retry_held_at_seller(&c, &buyer, &free.id, &body, None, &free_seller).await;
    // Meanwhile a retry of the same payment is told to wait, and when.
    let busy = retry(&c, &buyer, &paid.id, &body, &relay_1)
        .await
        .expect_error(409, "GATEWAY_REQUEST_IN_PROGRESS");
    assert_eq!(
        busy.body["error"]["details"]["gateway_request_id"],
        request_1.as_str()
    );
    assert_eq!(busy.next_action(), "retry_gateway_payment_later");
    assert!(busy.headers.contains_key("retry-after"));
    let (status, _) = host.stop("KILL").await;
    assert!(!status.success());
    seller.hold(false);

    // The restarted host: a retry of the same payment waits out the lease, then forwards
    // the call again under the same request id, without charging again.
    let host = dep.host(600, &[]).await;
    let c = host.client.clone();
    let done = retry_until_forwarded(&c, &buyer, &paid.id, &body, &relay_1).await;
    assert_eq!(done.data()["request_id"], request_1.as_str());
    assert_eq!(done.data()["charged_amount"]["amount_cents"], 25);
    let to_seller: Vec<_> = seller
        .requests()
        .into_iter()
        .filter(|r| r.headers["x-crochet-request-id"] == request_1)
        .collect();
    assert_eq!(to_seller.len(), 2, "delivered twice under one request id");
    assert!(to_seller.iter().all(|r| r.signature_valid));
    retry(&c, &buyer, &paid.id, &body, &relay_1)
        .await
        .expect_error(409, "PAYMENT_ALREADY_USED");
    let history = c
        .get("/gateway-requests?role=buyer", buyer.key())
        .await
        .expect(200);
    let rows = history.data().as_array().unwrap().clone();
    let row = rows.iter().find(|r| r["id"] == request_1.as_str()).unwrap();
    assert_eq!(row["status"], "completed");
    assert_eq!(row["attempts"], 2);
    // The free call left no row behind in `forwarding` (it is recorded after its forward).
    assert!(rows.iter().all(|r| r["status"] != "forwarding"), "{rows:?}");
    let charged = "SELECT COUNT(*) FROM ledger_entries WHERE gateway_request_id = $1";
    assert_eq!(dep.scalar(charged, &request_1).await, 3, "charged once");

    // 2. The host aborts right after the accounting commit, before the seller is called.
    let (status, _) = host.stop("TERM").await;
    assert!(status.success());
    let host = dep
        .host(600, &[("CROCHET_TEST_FAULT_POINT", "after_accounting")])
        .await;
    let c = host.client.clone();
    let seen = seller.requests().len();
    let relay_2 = paid_requirement(&c, &buyer, &paid.id, &body).await;
    let died = c
        .http
        .post(c.url(&format!("/gateway/{}", paid.id)))
        .bearer_auth(&buyer.api_key)
        .header("X-Crochet-Relay-Request-Id", &relay_2)
        .json(&body)
        .send()
        .await;
    assert!(died.is_err(), "the host aborted mid-call: {died:?}");
    let (status, _) = host.wait().await;
    assert!(!status.success());
    assert_eq!(
        seller.requests().len(),
        seen,
        "the seller was never reached"
    );
    let host = dep.host(600, &[]).await;
    let c = host.client.clone();
    let done = retry_until_forwarded(&c, &buyer, &paid.id, &body, &relay_2).await;
    let request_2 = done.data()["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        seller.requests().len(),
        seen + 1,
        "forwarded once, by the retry"
    );
    assert_eq!(dep.scalar(charged, &request_2).await, 3, "charged once");

    // 3. Nobody retries: the janitor resolves the call as interrupted and reverses it.
    seller.hold(true);
    let relay_3 = paid_requirement(&c, &buyer, &paid.id, &body).await;
    let request_3 =
        retry_held_at_seller(&c, &buyer, &paid.id, &body, Some(&relay_3), &seller).await;
    host.stop("KILL").await;
    seller.hold(false);
    let host = dep.host(1, &[]).await;
    let c = host.client.clone();
    let interrupted = poll_until(
        Duration::from_secs(30),
        async || {
            c.get(
                "/gateway-requests?role=buyer&status=interrupted",
                buyer.key(),
            )
            .await
        },
        |r| r.data().as_array().is_some_and(|a| !a.is_empty()),
    )
    .await
    .expect(200);
    let row = &interrupted.data()[0];
    assert_eq!(row["id"], request_3.as_str());
    assert_eq!(row["error_code"], "GATEWAY_REQUEST_INTERRUPTED");
    let entries = |kind: &'static str| {
        let c = c.clone();
        let key = buyer.api_key.clone();
        async move {
            c.get(&format!("/ledger?type={kind}"), Some(&key))
                .await
                .expect(200)
                .data()
                .clone()
        }
    };
    let refunds = entries("gateway_refund").await;
    assert_eq!(refunds.as_array().unwrap().len(), 1);
    assert_eq!(refunds[0]["gateway_request_id"], request_3.as_str());
    assert_eq!(refunds[0]["amount_cents"], 25);
    let seller_reversals = c
        .get("/ledger?type=seller_credit_reversal", paid.agent.key())
        .await
        .expect(200);
    assert_eq!(seller_reversals.data()[0]["amount_cents"], -24);
    assert_eq!(
        dep.scalar(charged, &request_3).await,
        6,
        "three entries and their mirror"
    );
    let net = "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM ledger_entries WHERE gateway_request_id = $1";
    assert_eq!(dep.scalar(net, &request_3).await, 0);
    let buyer_net = "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM ledger_entries WHERE profile_id = $1";
    assert_eq!(
        dep.scalar(buyer_net, &buyer.profile_id).await,
        -50,
        "two calls paid, the interrupted one refunded"
    );
    let receipts = c.get("/receipts", buyer.key()).await.expect(200);
    let receipt = |id: &str| {
        receipts
            .data()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["gateway_request_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(receipt(&request_3)["status"], "reversed");
    assert_eq!(receipt(&request_3)["call_status"], "interrupted");
    // The refund went to the buyer's balance, in the janitor's transaction, and the
    // key's spend (three calls of 25 cents) got the refunded call back.
    assert_eq!(balance_of(&c, &buyer).await, 25);
    let keys = c.get("/api-keys", buyer.key()).await.expect(200);
    assert_eq!(keys.data()[0]["spend"]["month"]["spent_cents"], 50);
    assert_eq!(receipt(&request_1)["status"], "charged");
    // A late retry is told, and nothing is forwarded.
    let seen = seller.requests().len();
    let late = retry(&c, &buyer, &paid.id, &body, &relay_3)
        .await
        .expect_error(409, "GATEWAY_REQUEST_INTERRUPTED");
    assert_eq!(late.body["error"]["details"]["charge_reversed"], true);
    assert_eq!(seller.requests().len(), seen);
    let forwarding =
        "SELECT COUNT(*) FROM gateway_requests WHERE status = 'forwarding' AND id <> $1";
    assert_eq!(
        dep.scalar(forwarding, "").await,
        0,
        "no call left forwarding"
    );
    let (status, logs) = host.stop("TERM").await;
    assert!(status.success(), "{logs}");
    assert!(logs.contains("resolved an interrupted call"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_calls_are_recovered_sqlite() {
    interrupted_calls_are_recovered(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_calls_are_recovered_postgres() {
    interrupted_calls_are_recovered(Backend::Postgres).await;
}

/// `crochet.toml` with one policy: the bundled template, refusing `{"blocked": true}`
/// with `message`.
fn template_policy_config(dir: &std::path::Path, message: &str) -> String {
    let path = dir.join("crochet.toml");
    std::fs::write(
        &path,
        format!(
            "[[plugins.policy]]\nname = \"gate\"\nsource = \"bundled:template\"\n\
             config = {{ message = \"{message}\" }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// SIGHUP reloads the plugins from the same file: the new configuration serves at once,
/// each plugin is logged again, and a broken plugin leaves the running chain serving.
#[tokio::test]
async fn sighup_reloads_the_plugins_and_a_broken_reload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_policy_config(dir.path(), "first");
    let host = Host::start(
        dir.path(),
        &[
            ("CROCHET_CONFIG", &config),
            ("CROCHET_LOG_FORMAT", "json"),
            ("CROCHET_ADMIN_TOKEN", crate::common::ADMIN_TOKEN),
        ],
    )
    .await;
    let c = host.client.clone();
    let seller = crate::common::Seller::start().await;
    let listing = publish(&c, &seller, None).await;
    let buyer = c.register(Wallet::solana()).await;
    let blocked = json!({"blocked": true});
    let refusal = async || {
        let r = gateway_call(&c, &buyer, &listing.id, &blocked, &[]).await;
        assert_eq!(r.status, 422, "{}", r.body);
        r
    };
    let message = |r: &crate::common::Reply| r.body["error"]["message"].clone();
    assert_eq!(message(&refusal().await), "first");

    template_policy_config(dir.path(), "second");
    host.signal("HUP");
    let r = poll_until(Duration::from_secs(30), refusal, |r| message(r) == "second").await;
    assert_eq!(message(&r), "second");

    // A component that is not WebAssembly: refused, the running chain keeps serving.
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").unwrap();
    std::fs::write(
        &config,
        "[[plugins.policy]]\nname = \"gate\"\nsource = \"broken.wasm\"\n",
    )
    .unwrap();
    host.signal("HUP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(message(&refusal().await), "second");
    gateway_call(&c, &buyer, &listing.id, &json!({"task": "t"}), &[])
        .await
        .expect(200);
    // Both signals are in the audit log, the refused one with its reason.
    let audit = c.admin_get("/admin/audit").await.expect(200);
    let actions: Vec<(&str, &str)> = audit
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("signal:SIGHUP", "plugins.reload_refused"),
            ("signal:SIGHUP", "plugins.reload")
        ]
    );

    let (status, logs) = host.stop("TERM").await;
    assert!(status.success(), "{logs}");
    let loaded: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "plugin loaded")
        .collect();
    let events: Vec<&str> = loaded
        .iter()
        .map(|l| l["fields"]["event"].as_str().unwrap())
        .collect();
    // The policy then the scorer, at start and after the one reload that succeeded.
    assert_eq!(events, ["start", "start", "reload", "reload"], "{logs}");
    let gate = &loaded[0]["fields"];
    assert_eq!(gate["plugin"], "gate");
    assert_eq!(gate["world"], "policy");
    assert_eq!(gate["source"], "bundled:template");
    assert_eq!(gate["failure"], "closed");
    assert_eq!(gate["sha256"].as_str().unwrap().len(), 64);
    assert!(gate["timeout_ms"].as_u64().is_some(), "{gate}");
    assert!(
        logs.contains("plugin reload refused"),
        "the refused reload says why: {logs}"
    );
}
