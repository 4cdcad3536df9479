//! Catalog and seller endpoint routes, with a real local seller that verifies the
//! gateway's signatures.

use serde_json::{Value, json};

use crate::common::{Agent, Backend, Published, Seller, TestApp, Wallet, listing_body};
use crate::on_both_backends;

on_both_backends!(
    master_key_rotation_keeps_secrets_and_keys_working,
    seller_publishes_and_buyers_discover,
    listing_pow_is_single_use_and_bound_to_the_seller,
    buyer_only_profiles_cannot_list,
    listing_fields_are_validated,
    browse_filters_sort_and_paginate,
    owners_update_delete_and_suspend,
    endpoint_metadata_and_updates_stay_safe,
    endpoint_test_is_signed_like_the_gateway,
    endpoint_test_reports_seller_failures,
    secrets_are_encrypted_at_rest_and_never_leak,
);

async fn seller(app: &TestApp) -> Agent {
    app.register_as(Wallet::evm(), "seller").await
}

async fn seller_publishes_and_buyers_discover(app: TestApp) {
    let s = Seller::start().await;
    let seller = seller(&app).await;
    let created = app
        .create_listing(&seller, listing_body("Signal Router", &s.url("/ok")))
        .await
        .expect(201);
    let d = created.data();
    let id = d["id"].as_str().unwrap();
    assert_eq!(d["slug"], "signal-router");
    assert_eq!(d["pricing_model"], "per_call");
    assert_eq!(d["pricing_amount"], 0.01);
    assert_eq!(d["price_cents"], 1);
    assert_eq!(d["status"], "active");
    assert_eq!(d["seller_id"], seller.profile_id.as_str());
    assert_eq!(
        d["gateway_url"],
        format!("{}/api/v1/gateway/{id}", app.base)
    );
    let secret = d["gateway_endpoint"]["signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("cgs_") && secret.len() == 4 + 64);
    assert_eq!(d["gateway_endpoint"]["configured"], true);

    let list = app.get("/listings", None).await.expect(200);
    assert_eq!(list.body["pagination"]["total"], 1);
    assert_eq!(list.data()[0]["id"], id);
    for path in [
        format!("/listings/{id}"),
        "/listings/signal-router".to_owned(),
    ] {
        let one = app.get(&path, None).await.expect(200);
        assert_eq!(one.data()["id"], id);
        assert!(one.data().get("gateway_endpoint").is_none());
    }
    // Slugs stay unique.
    let twin = app
        .create_listing(&seller, listing_body("Signal Router", &s.url("/ok")))
        .await
        .expect(201);
    let slug = twin.data()["slug"].as_str().unwrap();
    assert!(
        slug.starts_with("signal-router-") && slug != "signal-router",
        "{slug}"
    );
    app.get("/listings/no-such-listing", None)
        .await
        .expect_error(404, "LISTING_NOT_FOUND");
}

async fn listing_pow_is_single_use_and_bound_to_the_seller(app: TestApp) {
    let s = Seller::start().await;
    let seller = seller(&app).await;
    let other = seller_other(&app).await;
    let mut body = listing_body("Pow Test", &s.url("/ok"));
    body["pow_nonce"] = json!("1");
    // No challenge yet.
    let r = app
        .post("/listings", seller.key(), body.clone())
        .await
        .expect_error(400, "LISTING_CHALLENGE_NOT_FOUND");
    assert_eq!(r.next_action(), "restart_listing_challenge");

    let c = app
        .post("/listings/challenge", seller.key(), json!({}))
        .await
        .expect(200);
    let challenge = c.data()["challenge"].as_str().unwrap().to_owned();
    assert_eq!(c.data()["algorithm"], "sha256");
    // Another seller cannot spend it.
    let mut stolen = body.clone();
    stolen["pow_challenge"] = json!(challenge);
    stolen["pow_nonce"] = json!(crate::common::solve_pow(&challenge, 2));
    app.post("/listings", other.key(), stolen)
        .await
        .expect_error(400, "LISTING_CHALLENGE_NOT_FOUND");
    // A wrong answer burns it.
    body["pow_nonce"] = json!(crate::common::wrong_pow(&challenge, 2));
    app.post("/listings", seller.key(), body.clone())
        .await
        .expect_error(400, "INVALID_POW");
    body["pow_nonce"] = json!(crate::common::solve_pow(&challenge, 2));
    let r = app
        .post("/listings", seller.key(), body)
        .await
        .expect_error(409, "LISTING_CHALLENGE_ALREADY_USED");
    assert_eq!(r.next_action(), "restart_listing_challenge");

    // Expiry, on a host with one-second challenges.
    let short = TestApp::start(app.backend, |c| c.challenge_ttl_seconds = 1)
        .await
        .unwrap();
    let seller = short.register_as(Wallet::solana(), "seller").await;
    let c = short
        .post("/listings/challenge", seller.key(), json!({}))
        .await
        .expect(200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut body = listing_body("Late", &s.url("/ok"));
    body["pow_nonce"] = json!(crate::common::solve_pow(
        c.data()["challenge"].as_str().unwrap(),
        2
    ));
    short
        .post("/listings", seller.key(), body)
        .await
        .expect_error(400, "LISTING_CHALLENGE_EXPIRED");
}

async fn seller_other(app: &TestApp) -> Agent {
    app.register_as(Wallet::solana(), "both").await
}

async fn buyer_only_profiles_cannot_list(app: TestApp) {
    let buyer = app.register_as(Wallet::evm(), "buyer").await;
    let r = app
        .post("/listings/challenge", buyer.key(), json!({}))
        .await
        .expect_error(403, "SELLER_ROLE_REQUIRED");
    assert!(
        r.body["error"]["recovery"]["summary"]
            .as_str()
            .unwrap()
            .contains("seller")
    );
    let mut body = listing_body("Nope", "http://127.0.0.1:9/");
    body["pow_nonce"] = json!("0");
    app.post("/listings", buyer.key(), body)
        .await
        .expect_error(403, "SELLER_ROLE_REQUIRED");
    app.post("/listings/challenge", None, json!({}))
        .await
        .expect_error(401, "AUTH_REQUIRED");
}

async fn listing_fields_are_validated(app: TestApp) {
    let seller = seller(&app).await;
    let ok_url = "http://127.0.0.1:9/ok";
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"private_endpoint_url": null}),
            "private_endpoint_url",
        ),
        (json!({"pricing_amount": 0.001}), "pricing_amount"),
        (json!({"pricing_amount": 0}), "pricing_amount"),
        (json!({"pricing_amount": -1}), "pricing_amount"),
        (json!({"pricing_currency": "EUR"}), "pricing_currency"),
        (json!({"category": "not-a-category"}), "category"),
        (json!({"name": "  "}), "name"),
        (json!({"delivery_type": "API Call!"}), "delivery_type"),
        (
            json!({"private_endpoint_url": "ftp://seller.example/x"}),
            "private_endpoint_url",
        ),
        (
            json!({"pricing_model": "free", "pricing_amount": 1}),
            "pricing_amount",
        ),
        (json!({"status": "suspended"}), "status"),
    ];
    for (patch, field) in cases {
        let mut body = listing_body("Valid Name", ok_url);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.create_listing(&seller, body).await;
        assert_eq!(r.status.as_u16(), 422, "{patch}: {}", r.body);
        assert_eq!(
            r.body["error"]["details"]["field"], field,
            "{patch}: {}",
            r.body
        );
    }
    // Wrong types and unknown enum values are refused by the parser.
    for patch in [
        json!({"pricing_model": "subscription"}),
        json!({"pricing_amount": "cheap"}),
        json!({"formats": "json"}),
    ] {
        let mut body = listing_body("Valid Name", ok_url);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        app.create_listing(&seller, body)
            .await
            .expect_error(422, "VALIDATION_ERROR");
    }
    // A free listing needs no endpoint.
    let mut free = listing_body("Free Thing", ok_url);
    free["pricing_model"] = json!("free");
    free.as_object_mut().unwrap().remove("pricing_amount");
    free.as_object_mut().unwrap().remove("private_endpoint_url");
    let r = app.create_listing(&seller, free).await.expect(201);
    assert_eq!(r.data()["price_cents"], 0);
    assert!(
        r.data().get("gateway_url").is_none(),
        "free listing without endpoint is not callable"
    );
}

async fn browse_filters_sort_and_paginate(app: TestApp) {
    let seller = seller(&app).await;
    let url = "http://127.0.0.1:9/ok";
    let specs = [
        (
            "Weather Oracle",
            "Forecasts for any city",
            "data",
            "per_call",
            Some(0.5),
        ),
        (
            "Signal Router",
            "Routes buyer JSON requests",
            "agents",
            "per_call",
            Some(0.01),
        ),
        (
            "Image Upscaler",
            "Makes pictures sharper, behind any router",
            "media",
            "per_call",
            Some(2.0),
        ),
        (
            "Free Router Demo",
            "A free demo of routing",
            "agents",
            "free",
            None,
        ),
    ];
    for (name, description, category, model, price) in specs {
        let mut body = listing_body(name, url);
        body["description"] = json!(description);
        body["category"] = json!(category);
        body["pricing_model"] = json!(model);
        match price {
            Some(p) => body["pricing_amount"] = json!(p),
            None => {
                body.as_object_mut().unwrap().remove("pricing_amount");
            }
        }
        app.create_listing(&seller, body).await.expect(201);
    }
    let mut draft = listing_body("Hidden Router Draft", url);
    draft["status"] = json!("draft");
    app.create_listing(&seller, draft).await.expect(201);

    let names = |r: &crate::common::Reply| -> Vec<String> {
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = app.get("/listings?q=router", None).await.expect(200);
    let found = names(&r);
    assert_eq!(found.len(), 3, "drafts are never listed: {found:?}");
    let mut in_name = found[..2].to_vec();
    in_name.sort();
    assert_eq!(
        (in_name, found[2].as_str()),
        (
            vec!["Free Router Demo".to_owned(), "Signal Router".to_owned()],
            "Image Upscaler"
        ),
        "a search ranks by relevance: the word in the name before the word in the description"
    );
    let r = app
        .get("/listings?q=router&sort=newest", None)
        .await
        .expect(200);
    assert_eq!(
        names(&r),
        vec!["Free Router Demo", "Image Upscaler", "Signal Router"],
        "an explicit sort overrides relevance"
    );
    let r = app.get("/listings?sort=relevance", None).await.expect(200);
    assert_eq!(
        names(&r)[0],
        "Free Router Demo",
        "relevance without a search is newest"
    );
    let r = app.get("/listings?q=forecast", None).await.expect(200);
    assert_eq!(
        names(&r),
        vec!["Weather Oracle"],
        "description and prefix match"
    );
    let r = app
        .get("/listings?category=agents&pricing_model=per_call", None)
        .await
        .expect(200);
    assert_eq!(names(&r), vec!["Signal Router"]);
    let r = app
        .get("/listings?min_price=0.10&max_price=1&sort=price_asc", None)
        .await
        .expect(200);
    assert_eq!(names(&r), vec!["Weather Oracle"]);
    let r = app
        .get("/listings?pricing_model=per_call&sort=price_desc", None)
        .await
        .expect(200);
    assert_eq!(
        names(&r),
        vec!["Image Upscaler", "Weather Oracle", "Signal Router"]
    );
    let r = app
        .get("/listings?sort=price_asc&limit=2&page=2", None)
        .await
        .expect(200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 2, "limit": 2, "total": 4, "total_exact": true})
    );
    assert_eq!(names(&r), vec!["Weather Oracle", "Image Upscaler"]);
    let r = app
        .get("/listings?q=%22%20OR%201%3D1%20--", None)
        .await
        .expect(200);
    assert_eq!(r.body["pagination"]["total"], 0, "query syntax is inert");
    app.get("/listings?sort=cheapest", None)
        .await
        .expect_error(400, "INVALID_QUERY");
    app.get("/listings?pricing_model=subscription", None)
        .await
        .expect_error(400, "INVALID_QUERY");
    app.get("/listings?limit=abc", None)
        .await
        .expect_error(400, "INVALID_QUERY");
}

async fn owners_update_delete_and_suspend(app: TestApp) {
    let Published {
        seller: s,
        agent: seller,
        id,
        ..
    } = app.publish("Original Name", "/ok").await;
    let other = seller_other(&app).await;
    let path = format!("/listings/{id}");

    let r = app
        .patch(&path, seller.key(), json!({"name": "Renamed", "pricing_amount": 1.25, "private_endpoint_url": s.url("/text")}))
        .await
        .expect(200);
    assert_eq!(r.data()["name"], "Renamed");
    assert_eq!(r.data()["slug"], "original-name", "slugs are stable");
    assert_eq!(r.data()["price_cents"], 125);
    app.get("/listings/original-name", None).await.expect(200);
    // The search index follows the edit: the new name is found, the old one is not.
    let found = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/listings?q={q}"), None).await.expect(200);
            r.body["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(found("renamed").await, 1);
    assert_eq!(found("original").await, 0);

    for (method, p) in [("patch", path.clone()), ("delete", path.clone())] {
        let r = match method {
            "patch" => {
                app.patch(&p, other.key(), json!({"name": "Hijacked"}))
                    .await
            }
            _ => app.delete(&p, other.key()).await,
        };
        r.expect_error(403, "NOT_LISTING_OWNER");
    }
    app.patch("/listings/does-not-exist", seller.key(), json!({}))
        .await
        .expect_error(404, "LISTING_NOT_FOUND");

    // Published listings are suspended, not deleted; the public no longer sees them.
    let r = app.delete(&path, seller.key()).await.expect(200);
    assert_eq!(r.data()["status"], "suspended");
    app.get(&path, None)
        .await
        .expect_error(404, "LISTING_NOT_FOUND");
    let own = app.get(&path, seller.key()).await.expect(200);
    assert_eq!(own.data()["status"], "suspended");
    assert_eq!(
        app.get("/listings", None).await.body["pagination"]["total"],
        0
    );

    // Drafts are deleted.
    let mut draft = listing_body("Draft Only", &s.url("/ok"));
    draft["status"] = json!("draft");
    let d = app.create_listing(&seller, draft).await.expect(201);
    let dpath = format!("/listings/{}", d.data()["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&dpath, seller.key()).await.expect(200).data()["status"],
        "deleted"
    );
    app.get(&dpath, seller.key())
        .await
        .expect_error(404, "LISTING_NOT_FOUND");
}

async fn endpoint_metadata_and_updates_stay_safe(app: TestApp) {
    let Published {
        seller: s,
        agent: seller,
        id,
        ..
    } = app.publish("Endpoint Meta", "/ok").await;
    let other = seller_other(&app).await;
    let ep = format!("/listings/{id}/endpoint");

    let r = app.get(&ep, seller.key()).await.expect(200);
    assert_eq!(r.data()["configured"], true);
    assert_eq!(r.data()["status"], "active");
    assert_eq!(r.data()["auth_header_configured"], false);
    assert!(!r.body.to_string().contains(&s.base));

    let r = app
        .send(
            reqwest::Method::PUT,
            &ep,
            seller.key(),
            Some(&json!({"auth_header_value": "Bearer seller-upstream-token", "timeout_ms": 5000, "max_response_bytes": 2048, "status": "paused"})),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["auth_header_configured"], true);
    assert_eq!(r.data()["auth_header_name"], "Authorization");
    assert_eq!(r.data()["timeout_ms"], 5000);
    assert_eq!(r.data()["max_response_bytes"], 2048);
    assert_eq!(r.data()["status"], "paused");
    assert!(!r.body.to_string().contains("seller-upstream-token"));

    for bad in [
        json!({"timeout_ms": 5}),
        json!({"max_request_bytes": 0}),
        json!({"auth_header_name": "X-Crochet-Signature", "auth_header_value": "x"}),
        json!({"status": "deleted"}),
    ] {
        let r = app
            .send(reqwest::Method::PUT, &ep, seller.key(), Some(&bad))
            .await;
        assert_eq!(r.status.as_u16(), 422, "{bad}: {}", r.body);
    }
    // Non-owners get 403 on every owner route; unknown listings 404.
    for (m, p) in [
        (reqwest::Method::GET, ep.clone()),
        (reqwest::Method::PUT, ep.clone()),
        (reqwest::Method::POST, format!("{ep}/test")),
        (reqwest::Method::POST, format!("{ep}/rotate-secret")),
    ] {
        let r = app.send(m.clone(), &p, other.key(), Some(&json!({}))).await;
        r.expect_error(403, "NOT_LISTING_OWNER");
        let r = app
            .send(
                m.clone(),
                &p.replace(&id, "nope"),
                seller.key(),
                Some(&json!({})),
            )
            .await;
        assert_eq!(r.status.as_u16(), 404, "{m} {}", r.body);
        let r = app.send(m, &p, None, Some(&json!({}))).await;
        r.expect_error(401, "AUTH_REQUIRED");
    }
}

async fn endpoint_test_is_signed_like_the_gateway(app: TestApp) {
    let Published {
        seller: s,
        agent: seller,
        id,
        data,
    } = app.publish("Signed Test", "/ok").await;
    let ep = format!("/listings/{id}/endpoint");
    app.send(
        reqwest::Method::PUT,
        &ep,
        seller.key(),
        Some(&json!({"auth_header_name": "X-Api-Key", "auth_header_value": "upstream-123"})),
    )
    .await
    .expect(200);

    let r = app
        .post(&format!("{ep}/test"), seller.key(), json!({}))
        .await
        .expect(200);
    assert_eq!(r.data()["ok"], true, "{}", r.body);
    assert_eq!(r.data()["status_code"], 200);
    assert_eq!(r.data()["json"], true);
    let seen = s.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert!(
        req.signature_valid,
        "seller verifies the HMAC: {:?}",
        req.headers
    );
    assert_eq!(req.headers["x-crochet-listing-id"], id);
    assert_eq!(
        req.headers["x-crochet-request-id"],
        r.data()["request_id"].as_str().unwrap()
    );
    assert_eq!(
        req.headers["x-api-key"], "upstream-123",
        "upstream auth header is delivered"
    );
    assert_eq!(req.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["type"], "crochet.endpoint_test");
    assert_eq!(body["listing_id"], id.as_str());
    let ts: i64 = req.headers["x-crochet-timestamp"].parse().unwrap();
    assert!((ts - time_now()).abs() < 60, "timestamp is Unix seconds");
    assert!(
        !req.headers.values().any(|v| v.contains(&seller.api_key)),
        "the API key never reaches the seller"
    );
    assert!(!req.headers.contains_key("authorization"));

    // Rotation: the new secret signs at once and the old one no longer verifies.
    let old = data["gateway_endpoint"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = app
        .post(&format!("{ep}/rotate-secret"), seller.key(), json!({}))
        .await
        .expect(200);
    let new = rotated.data()["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    app.post(&format!("{ep}/test"), seller.key(), json!({}))
        .await
        .expect(200);
    assert!(!s.requests()[1].signature_valid, "old secret is dead");
    s.set_secret(&new);
    app.post(&format!("{ep}/test"), seller.key(), json!({}))
        .await
        .expect(200);
    assert!(s.requests()[2].signature_valid);
    let info = app.get(&ep, seller.key()).await.expect(200);
    assert_eq!(
        info.data()["signing_secret_rotated_at"],
        rotated.data()["rotated_at"]
    );
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn endpoint_test_reports_seller_failures(app: TestApp) {
    let Published {
        seller: s,
        agent: seller,
        id,
        ..
    } = app.publish("Failing Seller", "/fail").await;
    let test = async |update: Option<Value>| {
        if let Some(body) = update {
            let ep = format!("/listings/{id}/endpoint");
            app.send(reqwest::Method::PUT, &ep, seller.key(), Some(&body))
                .await
                .expect(200);
        }
        app.post(
            &format!("/listings/{id}/endpoint/test"),
            seller.key(),
            json!({}),
        )
        .await
        .expect(200)
    };

    let r = test(None).await;
    assert_eq!(
        (r.data()["ok"].clone(), r.data()["status_code"].clone()),
        (json!(false), json!(500))
    );
    let r = test(Some(json!({"private_endpoint_url": s.url("/text")}))).await;
    assert_eq!(
        (r.data()["ok"].clone(), r.data()["json"].clone()),
        (json!(false), json!(false))
    );
    let r = test(Some(json!({"private_endpoint_url": s.url("/redirect")}))).await;
    assert_eq!(r.data()["status_code"], 302);
    assert!(
        !s.requests().iter().any(|q| q.path == "/ok"),
        "redirects are not followed"
    );
    let r = test(Some(
        json!({"private_endpoint_url": s.url("/slow"), "timeout_ms": 200}),
    ))
    .await;
    assert_eq!(r.data()["error"], "SELLER_TIMEOUT");
    let r = test(Some(json!({"private_endpoint_url": s.url("/big"), "timeout_ms": 5000, "max_response_bytes": 1024}))).await;
    assert_eq!(r.data()["error"], "SELLER_RESPONSE_TOO_LARGE");
    let r = test(Some(
        json!({"private_endpoint_url": "http://127.0.0.1:9/closed"}),
    ))
    .await;
    assert_eq!(r.data()["error"], "SELLER_UNREACHABLE");

    // A listing without a URL cannot be tested.
    let mut free = listing_body("No Url", "");
    free["pricing_model"] = json!("free");
    free.as_object_mut().unwrap().remove("pricing_amount");
    free.as_object_mut().unwrap().remove("private_endpoint_url");
    let f = app.create_listing(&seller, free).await.expect(201);
    app.post(
        &format!(
            "/listings/{}/endpoint/test",
            f.data()["id"].as_str().unwrap()
        ),
        seller.key(),
        json!({}),
    )
    .await
    .expect_error(409, "ENDPOINT_NOT_CONFIGURED");
}

async fn secrets_are_encrypted_at_rest_and_never_leak(app: TestApp) {
    let Published {
        seller: s,
        agent: seller,
        id,
        data,
    } = app
        .publish("Secret Keeper", "/ok?tenant=private-tenant-42")
        .await;
    let other = seller_other(&app).await;
    let private_url = s.url("/ok?tenant=private-tenant-42");
    let secret = data["gateway_endpoint"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth_value = "Bearer upstream-token-xyz-987";
    let ep = format!("/listings/{id}/endpoint");
    app.send(
        reqwest::Method::PUT,
        &ep,
        seller.key(),
        Some(&json!({"auth_header_value": auth_value})),
    )
    .await
    .expect(200);

    let secrets = [
        private_url.as_str(),
        "private-tenant-42",
        &secret,
        &secret[4..],
        auth_value,
        "upstream-token-xyz-987",
    ];
    let at_rest = format!(
        "{}{}",
        app.table_text("listing_gateway_endpoints").await,
        app.table_text("listings").await
    );
    for s in secrets {
        assert!(!at_rest.contains(s), "{s} is stored in plain text");
    }
    // Every public and non-owner response.
    let mut bodies = Vec::new();
    for p in [
        "/listings",
        "/categories",
        &format!("/listings/{id}"),
        "/listings/secret-keeper",
        "/listings?q=secret",
    ] {
        bodies.push(app.get(p, None).await.body);
        bodies.push(app.get(p, other.key()).await.body);
    }
    for (m, p) in [
        (reqwest::Method::GET, ep.clone()),
        (reqwest::Method::PUT, ep.clone()),
        (reqwest::Method::POST, format!("{ep}/test")),
        (reqwest::Method::POST, format!("{ep}/rotate-secret")),
        (reqwest::Method::PATCH, format!("/listings/{id}")),
        (reqwest::Method::DELETE, format!("/listings/{id}")),
    ] {
        bodies.push(app.send(m, &p, other.key(), Some(&json!({}))).await.body);
    }
    // The owner's own metadata routes do not echo them either.
    bodies.push(app.get(&ep, seller.key()).await.body);
    bodies.push(app.get(&format!("/listings/{id}"), seller.key()).await.body);
    bodies.push(
        app.post(&format!("{ep}/test"), seller.key(), json!({}))
            .await
            .body,
    );
    let all: String = bodies.iter().map(Value::to_string).collect();
    for s in secrets {
        assert!(!all.contains(s), "{s} leaked in a response");
    }
}

#[tokio::test]
async fn operator_categories_extend_the_defaults() {
    let app = TestApp::start(Backend::Sqlite, |c| {
        c.categories = vec![crochet::config::CategoryConfig {
            slug: "robotics".into(),
            name: "Robotics".into(),
            description: String::new(),
        }]
    })
    .await
    .unwrap();
    let r = app.get("/categories", None).await.expect(200);
    let slugs: Vec<&str> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    assert!(
        slugs.contains(&"data") && slugs.contains(&"robotics"),
        "{slugs:?}"
    );
    let seller = app.register_as(Wallet::evm(), "seller").await;
    let mut body = listing_body("Robot Arm", "http://127.0.0.1:9/");
    body["category"] = json!("robotics");
    app.create_listing(&seller, body).await.expect(201);
}

/// A production host: HTTPS only, no private, loopback or internal targets, checked on the
/// address actually connected to.
#[tokio::test]
async fn production_refuses_every_private_endpoint_form() {
    let s = Seller::start().await;
    let port = s.port();
    let app = TestApp::start(Backend::Sqlite, |c| {
        crate::common::production(c);
        c.dns_overrides
            .insert("rebind.test".into(), vec!["93.184.215.14".parse().unwrap()]);
    })
    .await
    .unwrap();
    let seller = app.register_as(Wallet::evm(), "seller").await;
    let cases = [
        (
            "http://seller.example.com/x".to_string(),
            "ENDPOINT_HTTPS_REQUIRED",
        ),
        ("https://localhost/x".into(), "ENDPOINT_HOST_NOT_ALLOWED"),
        (
            "https://api.localhost/x".into(),
            "ENDPOINT_HOST_NOT_ALLOWED",
        ),
        (
            "https://printer.local/x".into(),
            "ENDPOINT_HOST_NOT_ALLOWED",
        ),
        (
            "https://billing.internal/x".into(),
            "ENDPOINT_HOST_NOT_ALLOWED",
        ),
        ("https://127.0.0.1/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        (
            "https://0x7f000001/x".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        ("https://[::1]/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        ("https://10.1.2.3/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        (
            "https://172.16.0.1/x".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        (
            "https://192.168.1.1/x".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        (
            "https://169.254.169.254/latest/meta-data".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        (
            "https://100.64.0.1/x".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        ("https://224.0.0.1/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        ("https://0.0.0.0/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        ("https://[fd00::1]/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        ("https://[fe80::1]/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        ("https://[ff02::1]/x".into(), "ENDPOINT_ADDRESS_NOT_ALLOWED"),
        (
            "https://[::ffff:127.0.0.1]/x".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        (
            "https://[::ffff:10.0.0.1]/x".into(),
            "ENDPOINT_ADDRESS_NOT_ALLOWED",
        ),
        (
            "https://user:pass@seller.example.com/x".into(),
            "ENDPOINT_URL_INVALID",
        ),
    ];
    for (url, code) in &cases {
        let r = app
            .create_listing(&seller, listing_body("Prod Listing", url))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (422, *code),
            "{url}: {}",
            r.body
        );
        assert!(
            !r.body.to_string().contains(url.as_str()),
            "the refused URL is not echoed"
        );
    }
    // A name that resolved to a public address when it was set, and to loopback later
    // (DNS rebinding), is refused on the address actually connected to.
    let created = app
        .create_listing(
            &seller,
            listing_body("Rebinding", &format!("https://rebind.test:{port}/ok")),
        )
        .await
        .expect(201);
    let id = created.data()["id"].as_str().unwrap();
    let app = app
        .restart(|c| {
            c.dns_overrides
                .insert("rebind.test".into(), vec!["127.0.0.1".parse().unwrap()]);
        })
        .await;
    app.post(
        &format!("/listings/{id}/endpoint/test"),
        seller.key(),
        json!({}),
    )
    .await
    .expect_error(422, "ENDPOINT_ADDRESS_NOT_ALLOWED");
    // PUT applies the same rules.
    let ep = format!("/listings/{id}/endpoint");
    let r = app
        .send(
            reqwest::Method::PUT,
            &ep,
            seller.key(),
            Some(&json!({"private_endpoint_url": "https://10.0.0.1/"})),
        )
        .await;
    r.expect_error(422, "ENDPOINT_ADDRESS_NOT_ALLOWED");
    assert!(
        s.requests().is_empty(),
        "the seller behind the private address was never called"
    );
}

async fn master_key_rotation_keeps_secrets_and_keys_working(app: TestApp) {
    let Published {
        seller: s,
        agent: seller,
        id,
        ..
    } = app.publish("Rotating", "/ok").await;
    let test_path = format!("/listings/{id}/endpoint/test");
    let old_key = app.config.encryption_key.clone().unwrap();
    let before = app.table_text("listing_gateway_endpoints").await;

    // 1. New master key, old one kept readable: everything still works.
    let new_key = crochet::secrets::MasterKey::generate().to_base64();
    let app = app
        .restart(|c| {
            c.encryption_key = Some(new_key.clone());
            c.previous_encryption_keys = vec![old_key.clone()];
        })
        .await;
    app.get("/me", seller.key()).await.expect(200);
    assert_eq!(
        app.post(&test_path, seller.key(), json!({}))
            .await
            .expect(200)
            .data()["ok"],
        true
    );

    // 2. Re-encrypt everything under the new key.
    let changed = crochet::app::rotate_secrets(app.config.clone())
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let after = app.table_text("listing_gateway_endpoints").await;
    assert_ne!(before, after);
    assert_eq!(
        crochet::app::rotate_secrets(app.config.clone())
            .await
            .unwrap(),
        0,
        "idempotent"
    );

    // 3. The old key is gone: secrets and the (re-hashed) API key still work.
    let app = app.restart(|c| c.previous_encryption_keys.clear()).await;
    app.get("/me", seller.key()).await.expect(200);
    assert_eq!(
        app.post(&test_path, seller.key(), json!({}))
            .await
            .expect(200)
            .data()["ok"],
        true
    );
    assert!(
        s.requests().iter().all(|r| r.signature_valid),
        "same signing secret throughout"
    );
}
