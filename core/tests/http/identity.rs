//! Identity routes and their error paths, acted out by agents with real keys.

use serde_json::json;

use crate::common::{Agent, SolEncoding, TestApp, Wallet, proof_for, wrong_pow};
use crate::on_both_backends;

on_both_backends!(
    register_evm_then_me,
    register_solana_in_every_signature_encoding,
    evm_signature_without_prefix_and_checksummed_address,
    registered_wallet_gets_409_recover_api_key,
    bad_signature_burns_the_challenge,
    bad_pow_restarts_the_challenge,
    expired_challenge_restarts,
    challenge_for_other_purpose_or_wallet_is_refused,
    racing_submissions_of_one_nonce_succeed_once,
    racing_registrations_of_one_wallet_create_one_profile,
    recover_issues_a_fresh_key,
    api_keys_list_create_revoke,
    missing_or_bad_authorization,
    link_wallet_with_both_proofs,
    link_wallet_refusals,
    update_wallet_keeps_a_recovery_wallet,
    human_claim_is_recorded_without_verification,
    roles_and_field_validation,
);

async fn register_evm_then_me(app: TestApp) {
    let wallet = Wallet::evm();
    let address = wallet.address();
    let challenge = app.challenge(&wallet, "register", None).await;
    assert_eq!(challenge["pow"]["algorithm"], "sha256");
    assert_eq!(challenge["pow"]["difficulty"], 2);
    assert_eq!(challenge["chain"], "evm");
    let message = challenge["message"].as_str().unwrap();
    for part in [
        address.as_str(),
        "register",
        challenge["nonce"].as_str().unwrap(),
        "Domain: 127.0.0.1:",
    ] {
        assert!(message.contains(part), "message names {part}: {message}");
    }
    let mut body = proof_for(&wallet, &challenge);
    body["display_name"] = json!("Signal Router");
    let reply = app.post("/register", None, body).await.expect(201);
    let data = reply.data();
    let key = data["api_key"].as_str().unwrap();
    assert!(key.starts_with("am_k_") && key.len() >= 5 + 43, "{key}");
    assert_eq!(data["authorization_header"], format!("Bearer {key}"));
    assert_eq!(data["api_key_prefix"], &key[..12]);
    assert_eq!(data["profile"]["role"], "both");
    assert_eq!(data["profile"]["display_name"], "Signal Router");

    let me = app.get("/me", Some(key)).await.expect(200);
    assert_eq!(me.data()["profile"]["id"], data["profile"]["id"]);
    let wallets = me.data()["wallets"].as_array().unwrap();
    assert_eq!(wallets.len(), 1);
    assert_eq!(wallets[0]["wallet_address"], address);
    assert_eq!(wallets[0]["can_recover"], true);
    assert_eq!(me.data()["api_key"]["key_prefix"], &key[..12]);
    // The raw key never reaches the database; only its keyed hash does.
    assert!(!app.table_text("api_keys").await.contains(key));
    assert!(!app.table_text("api_keys").await.contains(&key[5..]));
}

async fn register_solana_in_every_signature_encoding(app: TestApp) {
    for encoding in [
        SolEncoding::Base58,
        SolEncoding::Base64,
        SolEncoding::Hex,
        SolEncoding::PrefixedHex,
    ] {
        let agent = app.register(Wallet::solana_with(encoding)).await;
        let me = app.get("/me", agent.key()).await.expect(200);
        assert_eq!(me.data()["wallets"][0]["chain"], "solana", "{encoding:?}");
        assert_eq!(
            me.data()["wallets"][0]["wallet_address"],
            agent.wallet.address()
        );
    }
}

async fn evm_signature_without_prefix_and_checksummed_address(app: TestApp) {
    let wallet = Wallet::evm();
    // Mixed-case (EIP-55 style) input is accepted and compared case-insensitively.
    let mixed: String = wallet
        .address()
        .char_indices()
        .map(|(i, c)| {
            if i > 1 && i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let c = app
        .post("/auth/challenge", None, json!({"wallet_address": mixed}))
        .await
        .expect(200);
    assert_eq!(c.data()["wallet_address"], wallet.address());
    let mut body = proof_for(&wallet, c.data());
    let sig = body["signature"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x")
        .to_owned();
    body["signature"] = json!(sig);
    body["wallet_address"] = json!(mixed);
    app.post("/register", None, body).await.expect(201);
}

async fn registered_wallet_gets_409_recover_api_key(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let body = app.proof(&agent.wallet, "register", None).await;
    let reply = app
        .post("/register", None, body)
        .await
        .expect_error(409, "WALLET_ALREADY_REGISTERED");
    assert_eq!(reply.next_action(), "recover_api_key");
    assert_eq!(
        reply.body["error"]["recovery"]["preserve"],
        json!(["wallet_address"])
    );
}

async fn bad_signature_burns_the_challenge(app: TestApp) {
    let wallet = Wallet::evm();
    let other = Wallet::evm();
    let challenge = app.challenge(&wallet, "register", None).await;
    let mut body = proof_for(&wallet, &challenge);
    body["signature"] = json!(other.sign(challenge["message"].as_str().unwrap()));
    let reply = app
        .post("/register", None, body)
        .await
        .expect_error(401, "INVALID_SIGNATURE");
    assert_eq!(reply.next_action(), "restart_wallet_challenge");
    let discard = &reply.body["error"]["recovery"]["discard"];
    assert_eq!(discard, &json!(["nonce", "pow_nonce", "signature"]));
    // The nonce is single use even after a failure: the right signature now fails too.
    let good = proof_for(&wallet, &challenge);
    let reply = app
        .post("/register", None, good)
        .await
        .expect_error(409, "CHALLENGE_ALREADY_USED");
    assert_eq!(reply.next_action(), "restart_wallet_challenge");

    // Garbage signature encodings get the same answer, never a 500.
    for sig in ["", "0x12", "zz", &"a".repeat(300)] {
        let mut body = app.proof(&wallet, "register", None).await;
        body["signature"] = json!(sig);
        let r = app.post("/register", None, body).await;
        assert!(r.status.is_client_error(), "{sig}: {}", r.body);
    }
}

async fn bad_pow_restarts_the_challenge(app: TestApp) {
    let wallet = Wallet::solana();
    let challenge = app.challenge(&wallet, "register", None).await;
    let mut body = proof_for(&wallet, &challenge);
    body["pow_nonce"] = json!(wrong_pow(
        challenge["pow"]["challenge"].as_str().unwrap(),
        2
    ));
    let reply = app
        .post("/register", None, body)
        .await
        .expect_error(400, "INVALID_POW");
    assert_eq!(reply.next_action(), "restart_wallet_challenge");
}

async fn expired_challenge_restarts(app: TestApp) {
    // A second host on the same backend with a one-second challenge lifetime.
    let short = TestApp::start(app.backend, |c| c.challenge_ttl_seconds = 1)
        .await
        .unwrap();
    let wallet = Wallet::evm();
    let challenge = short.challenge(&wallet, "register", None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reply = short
        .post("/register", None, proof_for(&wallet, &challenge))
        .await
        .expect_error(400, "CHALLENGE_EXPIRED");
    assert_eq!(reply.next_action(), "restart_wallet_challenge");
    // Unknown nonces are refused the same way.
    let mut body = proof_for(&wallet, &challenge);
    body["nonce"] = json!("0".repeat(32));
    short
        .post("/register", None, body)
        .await
        .expect_error(400, "CHALLENGE_NOT_FOUND");
}

async fn challenge_for_other_purpose_or_wallet_is_refused(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    // A recover challenge cannot register.
    let wallet = Wallet::evm();
    let body = app.proof(&wallet, "recover", None).await;
    app.post("/auth/recover", None, body.clone())
        .await
        .expect_error(404, "WALLET_NOT_REGISTERED");
    let reply = app
        .post("/register", None, body)
        .await
        .expect_error(400, "CHALLENGE_MISMATCH");
    assert_eq!(reply.body["error"]["details"]["field"], "purpose");
    // A challenge issued to one wallet cannot be answered by another.
    let challenge = app.challenge(&agent.wallet, "recover", None).await;
    let mut stolen = proof_for(&wallet, &challenge);
    stolen["wallet_address"] = json!(wallet.address());
    let reply = app.post("/auth/recover", None, stolen).await;
    assert!(reply.status.is_client_error());
}

async fn racing_submissions_of_one_nonce_succeed_once(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let proof = app.proof(&agent.wallet, "recover", None).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = app.client.clone();
            let proof = proof.clone();
            tokio::spawn(async move { client.post("/auth/recover", None, proof).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        match reply.status.as_u16() {
            201 => created += 1,
            409 => assert_eq!(reply.code(), "CHALLENGE_ALREADY_USED"),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(created, 1);
}

async fn racing_registrations_of_one_wallet_create_one_profile(app: TestApp) {
    let wallet = std::sync::Arc::new(Wallet::evm());
    let mut proofs = Vec::new();
    for _ in 0..6 {
        proofs.push(app.proof(&wallet, "register", None).await);
    }
    let tasks: Vec<_> = proofs
        .into_iter()
        .map(|p| {
            let client = app.client.clone();
            tokio::spawn(async move { client.post("/register", None, p).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status.as_u16() == 409 {
            assert_eq!(r.code(), "WALLET_ALREADY_REGISTERED");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
}

async fn recover_issues_a_fresh_key(app: TestApp) {
    let agent = app.register(Wallet::solana()).await;
    let proof = app.proof(&agent.wallet, "recover", None).await;
    let reply = app.post("/auth/recover", None, proof).await.expect(201);
    let new_key = reply.data()["api_key"].as_str().unwrap();
    assert_ne!(new_key, agent.api_key);
    assert_eq!(reply.data()["profile"]["id"], agent.profile_id.as_str());
    assert_eq!(
        reply.data()["authorization_header"],
        format!("Bearer {new_key}")
    );
    app.get("/me", Some(new_key)).await.expect(200);
    app.get("/me", agent.key()).await.expect(200);
}

async fn api_keys_list_create_revoke(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let other = app.register(Wallet::evm()).await;
    let created = app
        .post("/api-keys", agent.key(), json!({"name": "ci"}))
        .await
        .expect(201);
    let second = created.data()["api_key"].as_str().unwrap().to_owned();
    let second_id = created.data()["api_key_info"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get("/me", Some(&second)).await.expect(200);

    let list = app.get("/api-keys?limit=1", agent.key()).await.expect(200);
    assert_eq!(
        list.body["pagination"],
        json!({"page": 1, "limit": 1, "total": 2, "total_exact": true})
    );
    assert_eq!(list.data().as_array().unwrap().len(), 1);
    let all = app.get("/api-keys", agent.key()).await.expect(200);
    let text = all.body.to_string();
    assert!(
        !text.contains(&second) && !text.contains(&agent.api_key),
        "list never shows keys"
    );

    // Another profile cannot revoke it.
    app.delete(&format!("/api-keys/{second_id}"), other.key())
        .await
        .expect_error(404, "API_KEY_NOT_FOUND");
    let revoked = app
        .delete(&format!("/api-keys/{second_id}"), agent.key())
        .await
        .expect(200);
    assert_eq!(revoked.data()["status"], "revoked");
    // Revocation is immediate.
    let r = app
        .get("/me", Some(&second))
        .await
        .expect_error(401, "INVALID_API_KEY");
    assert_eq!(r.next_action(), "send_api_key_authorization");
    app.delete(&format!("/api-keys/{second_id}"), agent.key())
        .await
        .expect_error(404, "API_KEY_NOT_FOUND");
    app.get("/me", agent.key()).await.expect(200);
}

async fn missing_or_bad_authorization(app: TestApp) {
    for (header, code) in [
        (None, "AUTH_REQUIRED"),
        (Some("Basic dXNlcjpwYXNz"), "INVALID_AUTHORIZATION_HEADER"),
        (
            Some("Bearer not-a-crochet-key"),
            "INVALID_AUTHORIZATION_HEADER",
        ),
        (
            Some("Bearer am_k_1111111111111111111111111111111111111111111"),
            "INVALID_API_KEY",
        ),
    ] {
        let mut req = app.http.get(app.url("/me"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
        assert_eq!(
            body["error"]["recovery"]["next_action"],
            "send_api_key_authorization"
        );
    }
    for path in ["/me/wallets", "/api-keys"] {
        app.get(path, None).await.expect_error(401, "AUTH_REQUIRED");
    }
}

async fn link(
    app: &TestApp,
    agent: &Agent,
    new: &Wallet,
    extra: serde_json::Value,
) -> crate::common::Reply {
    let pid = Some(agent.profile_id.as_str());
    let mut body = json!({
        "existing_wallet": app.proof(&agent.wallet, "link_wallet_existing", pid).await,
        "new_wallet": app.proof(new, "link_wallet_new", pid).await,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.post("/me/wallets", agent.key(), body).await
}

async fn link_wallet_with_both_proofs(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let sol = Wallet::solana();
    let linked = link(
        &app,
        &agent,
        &sol,
        json!({"label": "payer", "is_default_payment": true}),
    )
    .await
    .expect(201);
    assert_eq!(linked.data()["chain"], "solana");
    assert_eq!(linked.data()["is_default_payment"], true);
    let list = app.get("/me/wallets", agent.key()).await.expect(200);
    assert_eq!(list.body["pagination"]["total"], 2);
    let wallets = list.data().as_array().unwrap();
    let evm = wallets.iter().find(|w| w["chain"] == "evm").unwrap();
    assert_eq!(evm["is_default_payment"], false, "only one default payer");
    let id = linked.data()["id"].as_str().unwrap();
    app.get(&format!("/me/wallets/{id}"), agent.key())
        .await
        .expect(200);

    // The linked wallet recovers the same profile.
    let proof = app.proof(&sol, "recover", None).await;
    let rec = app.post("/auth/recover", None, proof).await.expect(201);
    assert_eq!(rec.data()["profile"]["id"], agent.profile_id.as_str());
}

async fn link_wallet_refusals(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let other = app.register(Wallet::solana()).await;
    let pid = Some(agent.profile_id.as_str());

    // Linking a wallet that already belongs to a profile.
    link(&app, &agent, &other.wallet, json!({}))
        .await
        .expect_error(409, "WALLET_ALREADY_LINKED");

    // The existing-wallet proof must come from a wallet of this profile.
    let stranger = Wallet::evm();
    let body = json!({
        "existing_wallet": app.proof(&stranger, "link_wallet_existing", pid).await,
        "new_wallet": app.proof(&Wallet::solana(), "link_wallet_new", pid).await,
    });
    app.post("/me/wallets", agent.key(), body)
        .await
        .expect_error(403, "WALLET_NOT_LINKED");

    // Proofs scoped to another profile are refused.
    let new = Wallet::solana();
    let body = json!({
        "existing_wallet": app.proof(&agent.wallet, "link_wallet_existing", pid).await,
        "new_wallet": app.proof(&new, "link_wallet_new", Some(&other.profile_id)).await,
    });
    app.post("/me/wallets", agent.key(), body)
        .await
        .expect_error(400, "CHALLENGE_MISMATCH");

    // Purpose-scoped challenges need a profile id that exists.
    let r = app
        .post(
            "/auth/challenge",
            None,
            json!({"wallet_address": new.address(), "purpose": "link_wallet_new"}),
        )
        .await;
    r.expect_error(422, "VALIDATION_ERROR");
    let r = app
        .post("/auth/challenge", None, json!({"wallet_address": new.address(), "purpose": "link_wallet_new", "profile_id": "nope"}))
        .await;
    r.expect_error(404, "AGENT_NOT_FOUND");
    // Linking needs an API key.
    app.post("/me/wallets", None, json!({}))
        .await
        .expect_error(401, "AUTH_REQUIRED");
}

async fn update_wallet_keeps_a_recovery_wallet(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let pid = Some(agent.profile_id.as_str());
    let first_id = app.get("/me/wallets", agent.key()).await.data()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The only recovery wallet cannot be disabled, revoked or lose recovery.
    for change in [
        json!({"status": "disabled"}),
        json!({"status": "compromised"}),
        json!({"can_recover": false}),
    ] {
        let mut body = change.clone();
        body["proof"] = app.proof(&agent.wallet, "update_wallet", pid).await;
        app.patch(&format!("/me/wallets/{first_id}"), agent.key(), body)
            .await
            .expect_error(409, "LAST_RECOVERY_WALLET");
    }
    let w = app
        .get(&format!("/me/wallets/{first_id}"), agent.key())
        .await
        .expect(200);
    assert_eq!(
        w.data()["status"],
        "active",
        "a refused change leaves the wallet as it was"
    );

    // With a second recovery wallet, the first can be disabled…
    let sol = Wallet::solana();
    let second = link(&app, &agent, &sol, json!({})).await.expect(201);
    let second_id = second.data()["id"].as_str().unwrap().to_owned();
    let body = json!({"status": "disabled", "label": "old", "proof": app.proof(&agent.wallet, "update_wallet", pid).await});
    let r = app
        .patch(&format!("/me/wallets/{first_id}"), agent.key(), body)
        .await
        .expect(200);
    assert_eq!(r.data()["status"], "disabled");
    assert_eq!(r.data()["label"], "old");
    // …and then the second is the last one.
    let body = json!({"can_recover": false, "proof": app.proof(&sol, "update_wallet", pid).await});
    app.patch(&format!("/me/wallets/{second_id}"), agent.key(), body)
        .await
        .expect_error(409, "LAST_RECOVERY_WALLET");
    // A disabled wallet can neither prove updates nor recover.
    let body = json!({"label": "x", "proof": app.proof(&agent.wallet, "update_wallet", pid).await});
    app.patch(&format!("/me/wallets/{second_id}"), agent.key(), body)
        .await
        .expect_error(403, "WALLET_NOT_LINKED");
    let proof = app.proof(&agent.wallet, "recover", None).await;
    app.post("/auth/recover", None, proof)
        .await
        .expect_error(403, "WALLET_NOT_RECOVERY_ENABLED");

    // Another profile's wallet is not found.
    let other = app.register(Wallet::evm()).await;
    app.get(&format!("/me/wallets/{first_id}"), other.key())
        .await
        .expect_error(404, "WALLET_NOT_FOUND");
    let body = json!({"status": "active", "proof": app.proof(&other.wallet, "update_wallet", Some(&other.profile_id)).await});
    app.patch(&format!("/me/wallets/{first_id}"), other.key(), body)
        .await
        .expect_error(404, "WALLET_NOT_FOUND");
    // Unknown status values are refused by type.
    let body = json!({"status": "deleted", "proof": app.proof(&sol, "update_wallet", pid).await});
    app.patch(&format!("/me/wallets/{second_id}"), agent.key(), body)
        .await
        .expect_error(422, "VALIDATION_ERROR");
}

async fn human_claim_is_recorded_without_verification(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let pid = Some(agent.profile_id.as_str());
    let mut body = app.proof(&agent.wallet, "claim", pid).await;
    body["claimant_name"] = json!("Ada Operator");
    body["claimant_contact"] = json!("ada@example.com");
    let r = app
        .post(&format!("/agents/{}/claim", agent.profile_id), None, body)
        .await
        .expect(201);
    assert_eq!(r.data()["agent_id"], agent.profile_id.as_str());
    assert_eq!(r.data()["affects_verification"], false);

    // A wallet that is not the agent's cannot claim it.
    let stranger = Wallet::solana();
    let mut body = app.proof(&stranger, "claim", pid).await;
    body["claimant_name"] = json!("Mallory");
    app.post(&format!("/agents/{}/claim", agent.profile_id), None, body)
        .await
        .expect_error(403, "WALLET_NOT_LINKED");
    let mut body = app.proof(&agent.wallet, "claim", pid).await;
    body["claimant_name"] = json!("Ada");
    app.post("/agents/unknown-agent/claim", None, body)
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
}

async fn roles_and_field_validation(app: TestApp) {
    let buyer = app.register_as(Wallet::evm(), "buyer").await;
    let me = app.get("/me", buyer.key()).await.expect(200);
    assert_eq!(me.data()["profile"]["role"], "buyer");

    let wallet = Wallet::evm();
    let mut body = app.proof(&wallet, "register", None).await;
    body["role"] = json!("admin");
    let r = app
        .post("/register", None, body)
        .await
        .expect_error(422, "VALIDATION_ERROR");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("role"),
        "{}",
        r.body
    );

    let mut body = app.proof(&wallet, "register", None).await;
    body["display_name"] = json!("x".repeat(65));
    let r = app
        .post("/register", None, body)
        .await
        .expect_error(422, "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"]["field"], "display_name");

    let mut body = app.proof(&wallet, "register", None).await;
    body["api_key"] = json!("am_k_never_in_bodies");
    app.post("/register", None, body)
        .await
        .expect_error(422, "VALIDATION_ERROR");

    for bad in ["0x1234", "hello", ""] {
        app.post("/auth/challenge", None, json!({"wallet_address": bad}))
            .await
            .expect_error(400, "INVALID_WALLET_ADDRESS");
    }
    app.post(
        "/auth/challenge",
        None,
        json!({"wallet_address": wallet.address(), "purpose": "steal"}),
    )
    .await
    .expect_error(422, "VALIDATION_ERROR");
    app.post("/auth/challenge", None, json!({"wallet_address": wallet.address(), "purpose": "register", "profile_id": buyer.profile_id}))
        .await
        .expect_error(422, "VALIDATION_ERROR");
}
