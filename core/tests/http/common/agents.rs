//! The agents' side: a JSON HTTP client and its replies, wallets with real EVM and
//! Solana keys, registered agents, and proof-of-work solving.

use std::time::Duration;

use ed25519_dalek::Signer as _;
use rand::RngCore as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sha3::Keccak256;

/// A JSON HTTP client for one host; every response is parsed as an envelope.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

/// Status and parsed JSON body of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn next_action(&self) -> &str {
        self.body["error"]["recovery"]["next_action"]
            .as_str()
            .unwrap_or("")
    }

    /// Asserts the status and returns self, printing the body on failure.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an error envelope with this status and code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(self.body["success"], json!(false), "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        self
    }
}

impl Client {
    pub fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self { base, http }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/api/") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1{path}", self.base)
        }
    }

    /// Sends a request with an optional bearer key and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        read(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, key, Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, key: Option<&str>, body: Value) -> Reply {
        self.send(reqwest::Method::PATCH, path, key, Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str, key: Option<&str>) -> Reply {
        self.send(reqwest::Method::DELETE, path, key, None).await
    }

    /// Sends exact bytes with an optional content type and extra headers (none added by
    /// the client); the answer must still be a JSON envelope.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        headers: &[(&str, &[u8])],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path)).body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (name, value) in headers {
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(value) {
                req = req.header(*name, v);
            }
        }
        read(req.send().await.expect("request sent")).await
    }

    /// Every operation of the served OpenAPI document, as (method, path, operation).
    pub async fn operations(&self) -> Vec<(reqwest::Method, String, Value)> {
        let doc = self.get("/api/openapi.json", None).await.expect(200).body;
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if let Ok(m) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                    && op.is_object()
                    && ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str())
                {
                    out.push((m, path.clone(), op.clone()));
                }
            }
        }
        out
    }

    /// `POST /auth/challenge`; returns `data`.
    pub async fn challenge(
        &self,
        wallet: &Wallet,
        purpose: &str,
        profile_id: Option<&str>,
    ) -> Value {
        let mut body = json!({"wallet_address": wallet.address(), "purpose": purpose});
        if let Some(p) = profile_id {
            body["profile_id"] = json!(p);
        }
        self.post("/auth/challenge", None, body)
            .await
            .expect(200)
            .data()
            .clone()
    }

    /// A complete wallet proof for `purpose`: challenge, signature, solved proof-of-work.
    pub async fn proof(&self, wallet: &Wallet, purpose: &str, profile_id: Option<&str>) -> Value {
        let c = self.challenge(wallet, purpose, profile_id).await;
        proof_for(wallet, &c)
    }

    /// Registers `wallet` as a new agent.
    pub async fn register(&self, wallet: Wallet) -> Agent {
        self.register_as(wallet, "both").await
    }

    pub async fn register_as(&self, wallet: Wallet, role: &str) -> Agent {
        let mut body = self.proof(&wallet, "register", None).await;
        body["role"] = json!(role);
        body["display_name"] = json!("test agent");
        let reply = self.post("/register", None, body).await.expect(201);
        Agent {
            api_key: reply.data()["api_key"].as_str().unwrap().to_owned(),
            profile_id: reply.data()["profile"]["id"].as_str().unwrap().to_owned(),
            wallet,
        }
    }
}

async fn read(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("response is not JSON ({status}): {text}"));
    Reply {
        status,
        body,
        headers,
    }
}

/// Builds the proof fields from a challenge's `data`.
pub fn proof_for(wallet: &Wallet, challenge: &Value) -> Value {
    let message = challenge["message"].as_str().unwrap();
    let pow = &challenge["pow"];
    json!({
        "wallet_address": wallet.address(),
        "nonce": challenge["nonce"],
        "signature": wallet.sign(message),
        "pow_nonce": solve_pow(pow["challenge"].as_str().unwrap(), pow["difficulty"].as_u64().unwrap() as usize),
    })
}

/// Finds `n` with `sha256(challenge + n)` starting with `difficulty` hex zeros.
pub fn solve_pow(challenge: &str, difficulty: usize) -> String {
    let zeros = "0".repeat(difficulty);
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| hex::encode(Sha256::digest(format!("{challenge}{n}"))).starts_with(&zeros))
        .unwrap()
}

/// A proof-of-work nonce that does *not* solve the challenge.
pub fn wrong_pow(challenge: &str, difficulty: usize) -> String {
    let zeros = "0".repeat(difficulty);
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| !hex::encode(Sha256::digest(format!("{challenge}{n}"))).starts_with(&zeros))
        .unwrap()
}

/// How a Solana signature is encoded on the wire.
#[derive(Debug, Clone, Copy)]
pub enum SolEncoding {
    Base58,
    Base64,
    Hex,
    PrefixedHex,
}

/// A wallet with a real private key.
#[derive(Clone)]
pub enum Wallet {
    Evm(k256::ecdsa::SigningKey),
    Solana(ed25519_dalek::SigningKey, SolEncoding),
}

impl Wallet {
    pub fn evm() -> Self {
        loop {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            if let Ok(key) = k256::ecdsa::SigningKey::from_slice(&bytes) {
                return Wallet::Evm(key);
            }
        }
    }

    pub fn solana() -> Self {
        Self::solana_with(SolEncoding::Base58)
    }

    pub fn solana_with(encoding: SolEncoding) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Wallet::Solana(ed25519_dalek::SigningKey::from_bytes(&bytes), encoding)
    }

    /// The address, as a wallet would show it (EVM in lowercase hex).
    pub fn address(&self) -> String {
        match self {
            Wallet::Evm(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let hash = Keccak256::digest(&point.as_bytes()[1..]);
                format!("0x{}", hex::encode(&hash[12..]))
            }
            Wallet::Solana(key, _) => bs58::encode(key.verifying_key().as_bytes()).into_string(),
        }
    }

    /// EIP-191 `personal_sign` (0x + r||s||v, v = 27/28) or raw ed25519, computed here
    /// independently of the host's code.
    pub fn sign(&self, message: &str) -> String {
        match self {
            Wallet::Evm(key) => {
                let prefixed =
                    format!("\x19Ethereum Signed Message:\n{}{}", message.len(), message);
                let digest = Keccak256::digest(prefixed.as_bytes());
                let (sig, recid) = key.sign_prehash_recoverable(&digest).unwrap();
                let mut bytes = sig.to_bytes().to_vec();
                bytes.push(27 + recid.to_byte());
                format!("0x{}", hex::encode(bytes))
            }
            Wallet::Solana(key, encoding) => {
                use base64::Engine as _;
                let sig = key.sign(message.as_bytes()).to_bytes();
                match encoding {
                    SolEncoding::Base58 => bs58::encode(sig).into_string(),
                    SolEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(sig),
                    SolEncoding::Hex => hex::encode(sig),
                    SolEncoding::PrefixedHex => format!("0x{}", hex::encode(sig)),
                }
            }
        }
    }
}

/// A registered agent.
pub struct Agent {
    pub wallet: Wallet,
    pub api_key: String,
    pub profile_id: String,
}

impl Agent {
    pub fn key(&self) -> Option<&str> {
        Some(&self.api_key)
    }

    /// The same agent acting with another of its profile's keys.
    pub fn with_key(&self, api_key: &str) -> Agent {
        Agent {
            wallet: self.wallet.clone(),
            api_key: api_key.to_owned(),
            profile_id: self.profile_id.clone(),
        }
    }
}
