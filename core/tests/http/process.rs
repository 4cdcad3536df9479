//! The `crochet` binary as an operator runs it.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Client, Wallet};

fn crochet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crochet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CROCHET_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[tokio::test]
async fn serve_prints_its_address_logs_no_secrets_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = crochet()
        .arg("serve")
        .current_dir(dir.path())
        .env("CROCHET_BIND", "127.0.0.1:0")
        .env("CROCHET_POW_DIFFICULTY", "2")
        .env("CROCHET_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes are drained from the start: a debug log outgrows the pipe's buffer, and a
    // server blocked on writing its log would stop answering.
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        BufReader::new(stderr).read_to_string(&mut logs).unwrap();
        logs
    });
    let stdout = child.stdout.take().unwrap();
    let (first_line, first_line_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let _ = first_line.send(line);
        std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
    });
    let line = tokio::time::timeout(Duration::from_secs(60), first_line_rx)
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"));
    assert_ne!(addr, "127.0.0.1:0", "the chosen port is printed");

    let client = Client::new(format!("http://{addr}"));
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
    let auth = serde_json::json!({"auth_header_value": "Bearer upstream-log-secret"});
    client
        .send(reqwest::Method::PUT, &ep, agent.key(), Some(&auth))
        .await
        .expect(200);
    let test = client
        .post(&format!("{ep}/test"), agent.key(), serde_json::json!({}))
        .await
        .expect(200);
    assert_eq!(test.data()["error"], "SELLER_UNREACHABLE");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let logs = logs.join().unwrap();
    assert!(status.success(), "exit status {status:?}\n{logs}");
    assert!(logs.contains("request_id"), "requests are logged with ids");
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
