//! The operator's admin API: its credential, suspensions of agents and listings and
//! what they do to keys, calls, search and profiles, the audit log, the marketplace
//! statistics and the failed-call list.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::{
    ADMIN_TOKEN, Backend, Client, Reply, TestApp, Wallet, count_rows, from_balance, gateway_call,
    pay_and_call, poll_until, priced_listing, test_redis_url, top_up, with_admin,
};
use crate::on_both_backends;

on_both_backends!(mod with_credential, configure = crate::common::with_admin;
    admin_routes_take_only_the_operator_credential,
    suspending_an_agent_stops_its_keys_and_listings,
    suspending_a_listing_holds_it_until_the_operator_reinstates_it,
    every_action_is_audited_with_before_and_after,
    stats_count_paid_calls_fees_and_parties,
    stats_count_calls_paid_from_the_balance,
    failed_calls_show_their_error_codes,
    admin_lists_filter_agents_and_listings,
);
on_both_backends!(admin_routes_do_not_exist_without_a_credential);

/// A well-formed id that names nothing.
const NOBODY: &str = "00000000-0000-0000-0000-000000000000";

/// The admin routes (method, path under `/api/v1`; `{id}` for an agent or listing id).
const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/agents"),
    ("POST", "/admin/agents/{id}/suspend"),
    ("POST", "/admin/agents/{id}/reinstate"),
    ("GET", "/admin/listings"),
    ("POST", "/admin/listings/{id}/suspend"),
    ("POST", "/admin/listings/{id}/reinstate"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/gateway-requests/failed"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/plugins"),
    ("POST", "/admin/plugins/reload"),
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

/// Whether public search shows the listing.
async fn listed(app: &Client, id: &str) -> bool {
    let r = app.get("/listings?limit=100", None).await.expect(200);
    r.data().as_array().unwrap().iter().any(|l| l["id"] == id)
}

async fn admin_routes_take_only_the_operator_credential(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let doc = app.get("/api/openapi.json", None).await.expect(200).body;
    let scheme = &doc["components"]["securitySchemes"]["admin_token"];
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");

    // Every documented admin operation: tagged, secured, and refusing anything but the
    // operator credential (an agent's key included) before it looks at the request.
    let mut documented = BTreeSet::new();
    for (m, path, op) in app.operations().await {
        let Some(route) = path.strip_prefix("/api/v1") else {
            continue;
        };
        if !route.starts_with("/admin/") {
            continue;
        }
        assert_eq!(op["tags"], json!(["admin"]), "{m} {path}");
        assert_eq!(op["security"], json!([{"admin_token": []}]), "{m} {path}");
        documented.insert((m.to_string(), route.to_owned()));
        let concrete = route.replace("{id}", NOBODY);
        app.send(m.clone(), &concrete, None, None)
            .await
            .expect_error(401, "ADMIN_TOKEN_REQUIRED");
        let basic = app
            .send_raw(
                m.clone(),
                &concrete,
                None,
                None,
                &[("authorization", b"Basic YWRtaW46YWRtaW4=")],
                vec![],
            )
            .await;
        basic.expect_error(401, "ADMIN_TOKEN_REQUIRED");
        for wrong in [
            Some("not-the-operator-credential"),
            agent.key(),
            Some(&ADMIN_TOKEN[1..]),
        ] {
            app.send(m.clone(), &concrete, wrong, None)
                .await
                .expect_error(403, "ADMIN_TOKEN_INVALID");
        }
    }
    for (m, route) in ADMIN_ROUTES {
        assert!(
            documented.contains(&(m.to_string(), route.to_string())),
            "{m} {route} is documented"
        );
    }

    // The right credential: every route answers.
    let p = priced_listing(&app, None, "/ok").await;
    for (m, route) in ADMIN_ROUTES {
        let id = if route.starts_with("/admin/agents/") {
            &p.agent.profile_id
        } else {
            &p.id
        };
        let path = route.replace("{id}", id);
        let r = app.send(method(m), &path, Some(ADMIN_TOKEN), None).await;
        r.expect(200);
    }
}

async fn admin_routes_do_not_exist_without_a_credential(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    for (m, route) in ADMIN_ROUTES {
        let path = route.replace("{id}", &agent.profile_id);
        for key in [Some(ADMIN_TOKEN), agent.key(), None] {
            app.send(method(m), &path, key, None)
                .await
                .expect_error(404, "ROUTE_NOT_FOUND");
        }
    }
    let documented = app.operations().await;
    assert!(
        !documented
            .iter()
            .any(|(_, path, _)| path.starts_with("/api/v1/admin")),
        "no admin operation is documented"
    );
}

async fn suspending_an_agent_stops_its_keys_and_listings(app: TestApp) {
    let p = priced_listing(&app, None, "/ok").await;
    let seller = &p.agent;
    let buyer = app.register(Wallet::evm()).await;
    let body = json!({"task": "t"});
    // Warm the caches: the seller's key and the listing.
    app.get("/me", seller.key()).await.expect(200);
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect(200);
    assert!(listed(&app, &p.id).await);

    let suspend = format!("/admin/agents/{}/suspend", seller.profile_id);
    let reinstate = format!("/admin/agents/{}/reinstate", seller.profile_id);
    let r = app
        .admin_post(&suspend, Some(json!({"reason": "  fraud reports "})))
        .await
        .expect(200);
    assert_eq!(r.data()["status"], "suspended");
    assert_eq!(r.data()["suspension_reason"], "fraud reports");
    assert!(
        r.data()["suspended_by"]
            .as_str()
            .unwrap()
            .starts_with("admin:")
    );
    assert_eq!(r.data()["active_api_keys"], 1);

    // Every key of the agent is refused, on every authenticated route.
    for path in ["/me", "/api-keys", &format!("/listings/{}", p.id)] {
        let refused = app.get(path, seller.key()).await;
        let refused = refused.expect_error(403, "AGENT_SUSPENDED");
        assert_eq!(
            refused.body["error"]["recovery"]["next_action"],
            "contact_marketplace_operator"
        );
    }
    // Its listing takes no calls and is gone from public reads; its profile says so.
    let refused = gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(409, "LISTING_NOT_ACTIVE");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("seller is suspended"), "{message}");
    assert!(!listed(&app, &p.id).await);
    app.get(&format!("/listings/{}", p.id), None)
        .await
        .expect_error(404, "LISTING_NOT_FOUND");
    let profile = app
        .get(&format!("/agents/{}", seller.profile_id), None)
        .await
        .expect(200);
    assert_eq!(profile.data()["status"], "suspended");
    app.admin_post(&suspend, None)
        .await
        .expect_error(409, "AGENT_ALREADY_SUSPENDED");

    // A suspended buyer cannot call either.
    let buyer_suspend = format!("/admin/agents/{}/suspend", buyer.profile_id);
    app.admin_post(&buyer_suspend, None).await.expect(200);
    let other = priced_listing(&app, None, "/ok").await;
    gateway_call(&app, &buyer, &other.id, &body, &[])
        .await
        .expect_error(403, "AGENT_SUSPENDED");
    app.admin_post(
        &format!("/admin/agents/{}/reinstate", buyer.profile_id),
        None,
    )
    .await
    .expect(200);

    // Reinstated: everything works again.
    let r = app.admin_post(&reinstate, None).await.expect(200);
    assert_eq!(r.data()["status"], "active");
    assert_eq!(r.data()["suspension_reason"], Value::Null);
    app.get("/me", seller.key()).await.expect(200);
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect(200);
    assert!(listed(&app, &p.id).await);
    let profile = app
        .get(&format!("/agents/{}", seller.profile_id), None)
        .await
        .expect(200);
    assert_eq!(profile.data()["status"], "active");
    app.admin_post(&reinstate, None)
        .await
        .expect_error(409, "AGENT_NOT_SUSPENDED");

    for action in ["suspend", "reinstate"] {
        app.admin_post(&format!("/admin/agents/{NOBODY}/{action}"), None)
            .await
            .expect_error(404, "AGENT_NOT_FOUND");
    }
    app.get(&format!("/agents/{NOBODY}"), None)
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
}

async fn suspending_a_listing_holds_it_until_the_operator_reinstates_it(app: TestApp) {
    let p = priced_listing(&app, None, "/ok").await;
    let owner = &p.agent;
    let buyer = app.register(Wallet::evm()).await;
    let body = json!({"task": "t"});
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect(200);

    let suspend = format!("/admin/listings/{}/suspend", p.id);
    let reinstate = format!("/admin/listings/{}/reinstate", p.id);
    let r = app
        .admin_post(&suspend, Some(json!({"reason": "malware reports"})))
        .await
        .expect(200);
    assert_eq!(r.data()["status"], "suspended");
    assert_eq!(r.data()["suspended_by_operator"], true);
    assert_eq!(r.data()["status_before_suspension"], "active");
    assert_eq!(r.data()["suspension_reason"], "malware reports");

    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(409, "LISTING_NOT_ACTIVE");
    assert!(!listed(&app, &p.id).await);
    let seen = app
        .get(&format!("/listings/{}", p.id), owner.key())
        .await
        .expect(200);
    assert_eq!(seen.data()["status"], "suspended");

    // The owner cannot undo it: not by publishing, deleting, or changing the endpoint.
    let listing = format!("/listings/{}", p.id);
    app.patch(&listing, owner.key(), json!({"status": "active"}))
        .await
        .expect_error(403, "LISTING_SUSPENDED_BY_OPERATOR");
    app.delete(&listing, owner.key())
        .await
        .expect_error(403, "LISTING_SUSPENDED_BY_OPERATOR");
    app.send(
        Method::PUT,
        &format!("{listing}/endpoint"),
        owner.key(),
        Some(&json!({"status": "active"})),
    )
    .await
    .expect_error(403, "LISTING_SUSPENDED_BY_OPERATOR");
    // Rotating a possibly leaked secret is still the owner's to do.
    let rotated = app
        .post(
            &format!("{listing}/endpoint/rotate-secret"),
            owner.key(),
            json!({}),
        )
        .await
        .expect(200);
    p.seller
        .set_secret(rotated.data()["signing_secret"].as_str().unwrap());
    app.admin_post(&suspend, None)
        .await
        .expect_error(409, "LISTING_ALREADY_SUSPENDED");

    let r = app.admin_post(&reinstate, None).await.expect(200);
    assert_eq!(r.data()["status"], "active");
    assert_eq!(r.data()["suspended_by_operator"], false);
    assert_eq!(r.data()["status_before_suspension"], Value::Null);
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect(200);
    assert!(listed(&app, &p.id).await);
    app.patch(&listing, owner.key(), json!({"name": "Renamed"}))
        .await
        .expect(200);
    app.admin_post(&reinstate, None)
        .await
        .expect_error(409, "LISTING_NOT_SUSPENDED");

    // Reinstating restores what the owner had left: here its own suspension (by slug).
    app.delete(&listing, owner.key()).await.expect(200);
    let slug = p.data["slug"].as_str().unwrap();
    let r = app
        .admin_post(&format!("/admin/listings/{slug}/suspend"), None)
        .await
        .expect(200);
    assert_eq!(r.data()["status_before_suspension"], "suspended");
    let r = app
        .admin_post(&format!("/admin/listings/{slug}/reinstate"), None)
        .await
        .expect(200);
    assert_eq!(r.data()["status"], "suspended");
    assert_eq!(r.data()["suspended_by_operator"], false);
    // ... which the owner may lift again.
    app.patch(&listing, owner.key(), json!({"status": "active"}))
        .await
        .expect(200);
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect(200);

    for action in ["suspend", "reinstate"] {
        app.admin_post(&format!("/admin/listings/{NOBODY}/{action}"), None)
            .await
            .expect_error(404, "LISTING_NOT_FOUND");
    }
}

async fn every_action_is_audited_with_before_and_after(app: TestApp) {
    let p = priced_listing(&app, None, "/ok").await;
    let agent = format!("/admin/agents/{}", p.agent.profile_id);
    let listing = format!("/admin/listings/{}", p.id);
    let reason = Some(json!({"reason": "spam"}));
    app.admin_post(&format!("{agent}/suspend"), reason.clone())
        .await
        .expect(200);
    app.admin_post(&format!("{agent}/reinstate"), None)
        .await
        .expect(200);
    app.admin_post(&format!("{listing}/suspend"), reason)
        .await
        .expect(200);
    app.admin_post(&format!("{listing}/reinstate"), None)
        .await
        .expect(200);
    // A refused action changes nothing and records nothing.
    app.admin_post(&format!("{listing}/reinstate"), None)
        .await
        .expect_error(409, "LISTING_NOT_SUSPENDED");
    assert_eq!(count_rows(&app, "admin_audit_log").await, 4);

    let log = app.admin_get("/admin/audit").await.expect(200);
    assert_eq!(log.body["pagination"]["total"], 4);
    let entries = log.data().as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "listing.reinstate",
            "listing.suspend",
            "agent.reinstate",
            "agent.suspend"
        ],
        "newest first"
    );
    let actor = entries[0]["actor"].as_str().unwrap();
    assert!(actor.starts_with("admin:") && actor.len() == 14, "{actor}");
    for e in entries {
        assert_eq!(e["actor"], actor, "one credential, one actor");
        assert_eq!(e["client_addr"], "127.0.0.1");
        assert!(!e["request_id"].as_str().unwrap().is_empty());
    }
    let agent_suspend = &entries[3];
    assert_eq!(agent_suspend["target_type"], "agent");
    assert_eq!(agent_suspend["target_id"], p.agent.profile_id.as_str());
    assert_eq!(agent_suspend["reason"], "spam");
    assert_eq!(agent_suspend["before"]["status"], "active");
    assert_eq!(agent_suspend["after"]["status"], "suspended");
    assert_eq!(entries[2]["before"]["status"], "suspended");
    assert_eq!(entries[2]["after"]["status"], "active");
    let listing_suspend = &entries[1];
    assert_eq!(listing_suspend["target_type"], "listing");
    assert_eq!(listing_suspend["target_id"], p.id.as_str());
    assert_eq!(listing_suspend["before"]["status"], "active");
    assert_eq!(listing_suspend["before"]["suspended_by_operator"], false);
    assert_eq!(listing_suspend["after"]["status"], "suspended");
    assert_eq!(listing_suspend["after"]["suspended_by_operator"], true);
    assert_eq!(
        listing_suspend["after"]["status_before_suspension"],
        "active"
    );
    assert_eq!(entries[0]["after"]["status"], "active");
    assert_eq!(entries[0]["reason"], Value::Null);

    let only = app
        .admin_get("/admin/audit?target_type=listing&limit=1")
        .await
        .expect(200);
    assert_eq!(only.body["pagination"]["total"], 2);
    assert_eq!(only.data()[0]["action"], "listing.reinstate");
    let only = app
        .admin_get(&format!(
            "/admin/audit?action=agent.suspend&target_id={}",
            p.agent.profile_id
        ))
        .await
        .expect(200);
    assert_eq!(only.body["pagination"]["total"], 1);

    // The credential is never stored, nor its hash.
    let stored = app.table_text("admin_audit_log").await;
    assert!(!stored.contains(ADMIN_TOKEN));
    assert!(!stored.contains(&hex::encode(Sha256::digest(ADMIN_TOKEN))));
    // Append-only, enforced by the database.
    let pool = app.state().db.pool();
    assert!(
        sqlx::query("UPDATE admin_audit_log SET reason = 'rewritten'")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM admin_audit_log")
            .execute(pool)
            .await
            .is_err()
    );
    assert_eq!(count_rows(&app, "admin_audit_log").await, 4);
}

async fn stats_count_paid_calls_fees_and_parties(app: TestApp) {
    let p = priced_listing(&app, Some(10.00), "/ok").await;
    let a = app.register(Wallet::solana()).await;
    let b = app.register(Wallet::solana()).await;
    for (buyer, calls) in [(&a, 2), (&b, 1)] {
        for i in 0..calls {
            let (_, r) = pay_and_call(&app, buyer, &p.id, &json!({"call": i})).await;
            r.expect(200);
        }
    }
    let failing = priced_listing(&app, None, "/fail").await;
    gateway_call(&app, &a, &failing.id, &json!({}), &[])
        .await
        .expect_error(502, "SELLER_ERROR_RESPONSE");

    let stats = app.admin_get("/admin/stats").await.expect(200);
    let s = stats.data();
    assert_eq!(s["currency"], "USD");
    assert_eq!(s["fee_rate"], 0.049);
    assert_eq!(s["paid_calls"], 3);
    assert_eq!(s["gross_volume_cents"], 3000);
    assert_eq!(s["marketplace_fees_cents"], 147, "4.9 % of 3 x 1000");
    assert_eq!(s["seller_credits_cents"], 2853);
    assert_eq!(s["net_marketplace_fees_cents"], 147);
    assert_eq!(s["refunds_cents"], 0);
    assert_eq!(s["fee_reversals_cents"], 0);
    assert_eq!(s["distinct_buyers"], 2);
    assert_eq!(s["distinct_sellers"], 2);
    // Each paid call is a 402 then the paid retry; plus the failure.
    assert_eq!(s["gateway_calls"], 7);
    assert_eq!(s["calls_by_status"]["payment_required"], 3);
    assert_eq!(s["calls_by_status"]["completed"], 3);
    assert_eq!(s["calls_by_status"]["seller_error"], 1);
    assert_eq!(s["calls_by_status"]["seller_timeout"], 0);
    assert_eq!(s["failed_calls"], 1);
    assert_eq!(s["failure_rate"], 0.1429);

    // An explicit range, in Unix seconds: the same calls; a later one: none.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hour = app
        .admin_get(&format!("/admin/stats?from={}&to={}", now - 3600, now + 60))
        .await
        .expect(200);
    assert_eq!(hour.data()["gross_volume_cents"], 3000);
    assert_eq!(hour.data()["gateway_calls"], 7);
    let later = app
        .admin_get("/admin/stats?from=2999-01-01T00:00:00Z&to=2999-01-02T00:00:00Z")
        .await
        .expect(200);
    assert_eq!(later.data()["from"], "2999-01-01T00:00:00Z");
    assert_eq!(later.data()["gateway_calls"], 0);
    assert_eq!(later.data()["gross_volume_cents"], 0);
    assert_eq!(later.data()["failure_rate"], 0.0);
    assert_eq!(later.data()["calls_by_status"]["completed"], 0);
    for bad in ["from=yesterday", "from=1700000001&to=1700000000", "to=%2B"] {
        app.admin_get(&format!("/admin/stats?{bad}"))
            .await
            .expect_error(422, "VALIDATION_ERROR");
    }
}

async fn failed_calls_show_their_error_codes(app: TestApp) {
    let buyer = app.register(Wallet::evm()).await;
    let failing = priced_listing(&app, None, "/fail").await;
    let invalid = priced_listing(&app, None, "/text").await;
    let fine = priced_listing(&app, None, "/ok").await;
    let body = json!({"task": "t"});
    gateway_call(&app, &buyer, &failing.id, &body, &[])
        .await
        .expect_error(502, "SELLER_ERROR_RESPONSE");
    gateway_call(&app, &buyer, &fine.id, &body, &[])
        .await
        .expect(200);
    gateway_call(&app, &buyer, &invalid.id, &body, &[])
        .await
        .expect_error(502, "SELLER_INVALID_RESPONSE");

    let r = app
        .admin_get("/admin/gateway-requests/failed")
        .await
        .expect(200);
    assert_eq!(r.body["pagination"]["total"], 2);
    let newest = &r.data()[0];
    assert_eq!(newest["error_code"], "SELLER_INVALID_RESPONSE");
    assert_eq!(newest["listing_id"], invalid.id.as_str());
    let first = &r.data()[1];
    assert_eq!(first["error_code"], "SELLER_ERROR_RESPONSE");
    assert_eq!(first["status"], "seller_error");
    assert_eq!(first["listing_id"], failing.id.as_str());
    assert_eq!(first["listing_name"], "Capability");
    assert_eq!(first["buyer_id"], buyer.profile_id.as_str());
    assert_eq!(first["seller_id"], failing.agent.profile_id.as_str());
    assert_eq!(first["seller_status_code"], 500);
    assert_eq!(first["billable"], false);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));

    let one = app
        .admin_get("/admin/gateway-requests/failed?limit=1&page=2")
        .await
        .expect(200);
    assert_eq!(one.data().as_array().unwrap().len(), 1);
    assert_eq!(one.data()[0]["error_code"], "SELLER_ERROR_RESPONSE");
}

async fn admin_lists_filter_agents_and_listings(app: TestApp) {
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register_as(Wallet::evm(), "buyer").await;
    app.admin_post(&format!("/admin/agents/{}/suspend", buyer.profile_id), None)
        .await
        .expect(200);

    let all = app.admin_get("/admin/agents").await.expect(200);
    assert_eq!(all.body["pagination"]["total"], 2);
    let suspended = app
        .admin_get("/admin/agents?status=suspended")
        .await
        .expect(200);
    assert_eq!(suspended.body["pagination"]["total"], 1);
    assert_eq!(suspended.data()[0]["id"], buyer.profile_id.as_str());
    assert_eq!(suspended.data()[0]["active_api_keys"], 1);
    let sellers = app
        .admin_get("/admin/agents?role=seller&status=active")
        .await
        .expect(200);
    assert_eq!(sellers.body["pagination"]["total"], 1);
    assert_eq!(sellers.data()[0]["id"], p.agent.profile_id.as_str());
    assert_eq!(sellers.data()[0]["listings"], 1);
    let paged = app
        .admin_get("/admin/agents?limit=1&page=2")
        .await
        .expect(200);
    assert_eq!(paged.body["pagination"]["limit"], 1);
    assert_eq!(paged.data().as_array().unwrap().len(), 1);
    app.admin_get("/admin/agents?role=operator")
        .await
        .expect_error(400, "INVALID_QUERY");

    app.admin_post(&format!("/admin/listings/{}/suspend", p.id), None)
        .await
        .expect(200);
    let by_seller = app
        .admin_get(&format!("/admin/listings?seller_id={}", p.agent.profile_id))
        .await
        .expect(200);
    assert_eq!(by_seller.body["pagination"]["total"], 1);
    let l = &by_seller.data()[0];
    assert_eq!(l["status"], "suspended");
    assert_eq!(l["suspended_by_operator"], true);
    assert_eq!(l["seller_status"], "active");
    for (query, total) in [
        ("status=suspended", 1),
        ("status=active", 0),
        (&format!("seller_id={}", buyer.profile_id) as &str, 0),
        ("category=data", 0),
    ] {
        let r = app
            .admin_get(&format!("/admin/listings?{query}"))
            .await
            .expect(200);
        assert_eq!(r.body["pagination"]["total"], total, "{query}");
    }
    app.admin_get("/admin/listings?status=gone")
        .await
        .expect_error(400, "INVALID_QUERY");
}

/// How long a peer may take to hear an invalidation (milliseconds in practice).
const PROPAGATION: Duration = Duration::from_secs(2);

/// An operator's suspension on one instance is honoured at once by another whose
/// caches hold the agent's key and the listing.
async fn suspensions_reach_the_other_instance(app: TestApp) {
    let peer = app.peer().await;
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::evm()).await;
    let body = json!({"task": "t"});
    for _ in 0..2 {
        gateway_call(&peer, &buyer, &p.id, &body, &[])
            .await
            .expect(200);
        peer.get("/me", p.agent.key()).await.expect(200);
    }
    let until = |status: u16| move |r: &Reply| r.status == status;

    app.admin_post(
        &format!("/admin/agents/{}/suspend", p.agent.profile_id),
        None,
    )
    .await
    .expect(200);
    poll_until(
        PROPAGATION,
        async || peer.get("/me", p.agent.key()).await,
        until(403),
    )
    .await
    .expect_error(403, "AGENT_SUSPENDED");
    poll_until(
        PROPAGATION,
        async || gateway_call(&peer, &buyer, &p.id, &body, &[]).await,
        until(409),
    )
    .await
    .expect_error(409, "LISTING_NOT_ACTIVE");

    app.admin_post(
        &format!("/admin/agents/{}/reinstate", p.agent.profile_id),
        None,
    )
    .await
    .expect(200);
    poll_until(
        PROPAGATION,
        async || gateway_call(&peer, &buyer, &p.id, &body, &[]).await,
        until(200),
    )
    .await
    .expect(200);

    app.admin_post(&format!("/admin/listings/{}/suspend", p.id), None)
        .await
        .expect(200);
    poll_until(
        PROPAGATION,
        async || gateway_call(&peer, &buyer, &p.id, &body, &[]).await,
        until(409),
    )
    .await
    .expect_error(409, "LISTING_NOT_ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_hear_suspensions_through_notify() {
    let Some(app) = TestApp::start(Backend::Postgres, with_admin).await else {
        return;
    };
    suspensions_reach_the_other_instance(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_hear_suspensions_through_redis() {
    let Some(redis) = test_redis_url() else {
        return;
    };
    let app = TestApp::start(Backend::Sqlite, |c| {
        with_admin(c);
        c.redis_url = Some(redis);
    })
    .await
    .unwrap();
    suspensions_reach_the_other_instance(app).await;
}

async fn stats_count_calls_paid_from_the_balance(app: TestApp) {
    let p = priced_listing(&app, Some(1.00), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    top_up(&app, &buyer, 250).await;
    from_balance(&app, &buyer, &p.id, &json!({}), None)
        .await
        .expect(200);
    let s = app.admin_get("/admin/stats").await.expect(200);
    // The charge counts; the top-up is money held, not volume.
    assert_eq!(s.data()["paid_calls"], 1);
    assert_eq!(s.data()["gross_volume_cents"], 100);
    assert_eq!(s.data()["marketplace_fees_cents"], 5);
}
