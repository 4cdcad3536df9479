//! `crochet example-seller`: a minimal seller endpoint for trying the marketplace locally.
//!
//! It answers every `POST` with JSON after checking the gateway's signature exactly as a
//! real seller should: the body's SHA-256 against `X-Crochet-Body-SHA256`, the timestamp
//! within five minutes, and `X-Crochet-Signature` (HMAC-SHA256 under the listing's
//! signing secret over `timestamp.request_id.listing_id.body_sha256`) compared in
//! constant time. A request that fails any check gets `401` and a JSON error.
//!
//! The signing secret is read from a file on every request, so the seller can start
//! before its listing exists (it answers `503` until the file is there) and keeps
//! working across a secret rotation as soon as the file holds the new secret.
//! `X-Crochet-Request-Id` is the idempotency key: a repeated request id gets the answer
//! the first delivery got.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Largest accepted age (either way) of `X-Crochet-Timestamp`, in seconds.
pub const MAX_SKEW_SECONDS: i64 = 300;
/// Answers remembered for repeated request ids, at most (then the memory starts over).
const REMEMBERED: usize = 10_000;

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("X-Crochet-Body-SHA256 does not match the body")]
    BodyHash,
    #[error("X-Crochet-Timestamp is not a recent Unix time")]
    Timestamp,
    #[error("X-Crochet-Signature does not match")]
    Signature,
}

/// Checks one forwarded request: body hash, timestamp age and HMAC signature.
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    let get = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let timestamp = get("x-crochet-timestamp")?;
    let request_id = get("x-crochet-request-id")?;
    let listing_id = get("x-crochet-listing-id")?;
    let claimed_sha = get("x-crochet-body-sha256")?;
    let signature = get("x-crochet-signature")?;

    let body_sha = hex::encode(Sha256::digest(body));
    if claimed_sha != body_sha {
        return Err(VerifyError::BodyHash);
    }
    match timestamp.parse::<i64>() {
        Ok(t) if (now_unix - t).abs() <= MAX_SKEW_SECONDS => {}
        _ => return Err(VerifyError::Timestamp),
    }
    let signature = hex::decode(signature).map_err(|_| VerifyError::Signature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| VerifyError::Signature)?;
    mac.update(format!("{timestamp}.{request_id}.{listing_id}.{body_sha}").as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| VerifyError::Signature)
}

/// Command-line settings of the example seller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// File holding the listing's signing secret (surrounding whitespace ignored).
    pub secret_file: PathBuf,
    pub bind: SocketAddr,
    /// When set, every verified request is written here as
    /// `{"headers": {name: value}, "body": "<exact body>"}` (the last one wins).
    pub capture: Option<PathBuf>,
}

struct Seller {
    settings: Settings,
    answers: Mutex<HashMap<String, Value>>,
}

/// Serves until SIGTERM or Ctrl-C; prints `listening on http://ADDR` once bound.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.bind).await?;
    let addr = listener.local_addr()?;
    let seller = Arc::new(Seller {
        settings,
        answers: Mutex::default(),
    });
    let app = Router::new().fallback(handle).with_state(seller);
    println!("listening on http://{addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn handle(State(seller): State<Arc<Seller>>, headers: HeaderMap, body: Bytes) -> Response {
    let secret = match tokio::fs::read_to_string(&seller.settings.secret_file).await {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "NO_SIGNING_SECRET",
                format!(
                    "no signing secret in {} yet",
                    seller.settings.secret_file.display()
                ),
            );
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(e) = verify(&secret, &headers, &body, now) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE", e.to_string());
    }
    let request_id = headers
        .get("x-crochet-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Some(path) = &seller.settings.capture
        && let Err(e) = capture(path, &headers, &body).await
    {
        eprintln!("example-seller: could not write {}: {e}", path.display());
    }
    let Ok(mut answers) = seller.answers.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "state poisoned".into(),
        );
    };
    if let Some(answer) = answers.get(&request_id) {
        return axum::Json(answer.clone()).into_response();
    }
    let received = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let answer = json!({
        "verified": true,
        "request_id": request_id,
        "received": received,
        "result": "done",
    });
    if answers.len() >= REMEMBERED {
        answers.clear();
    }
    answers.insert(request_id, answer.clone());
    axum::Json(answer).into_response()
}

/// Writes one verified request (its headers and exact body) for the verifiers' tests.
async fn capture(path: &std::path::Path, headers: &HeaderMap, body: &[u8]) -> anyhow::Result<()> {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), Value::from(v.to_str().ok()?))))
        .collect();
    let doc = json!({"headers": headers, "body": String::from_utf8_lossy(body)});
    tokio::fs::write(path, serde_json::to_vec_pretty(&doc)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// A request signed by hand, with the documented formula.
    fn signed(secret: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let sha = hex::encode(Sha256::digest(body));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.req-1.listing-1.{sha}").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-crochet-timestamp", ts.to_string()),
            ("x-crochet-request-id", "req-1".into()),
            ("x-crochet-listing-id", "listing-1".into()),
            ("x-crochet-buyer-id", "buyer-1".into()),
            ("x-crochet-body-sha256", sha),
            ("x-crochet-signature", sig),
        ] {
            h.insert(k, HeaderValue::from_str(&v).unwrap());
        }
        h
    }

    #[test]
    fn accepts_a_good_signature_and_refuses_tampering() {
        let body = br#"{"task":"run"}"#;
        let h = signed("cgs_example", 1_760_000_000, body);
        assert_eq!(verify("cgs_example", &h, body, 1_760_000_010), Ok(()));
        assert_eq!(
            verify("cgs_other", &h, body, 1_760_000_010),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify("cgs_example", &h, br#"{"task":"tampered"}"#, 1_760_000_010),
            Err(VerifyError::BodyHash)
        );
        assert_eq!(
            verify("cgs_example", &h, body, 1_760_000_000 + 301),
            Err(VerifyError::Timestamp)
        );
        let mut missing = h.clone();
        missing.remove("x-crochet-signature");
        assert_eq!(
            verify("cgs_example", &missing, body, 1_760_000_010),
            Err(VerifyError::MissingHeader("x-crochet-signature"))
        );
    }

    #[test]
    fn known_answer() {
        // Fixed vector, shared with docs/verify (verify.py, verify.mjs).
        let body = br#"{"task":"run"}"#;
        let h = signed("cgs_example", 1_760_000_000, body);
        assert_eq!(h["x-crochet-signature"].to_str().unwrap(), KNOWN_SIGNATURE,);
    }

    const KNOWN_SIGNATURE: &str =
        "58fafe25674412a2b5f05884f2d466c3ae9a9739bee53d5892e525681ad41bda";
}
