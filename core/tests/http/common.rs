//! Test helpers shared by every HTTP-level test: a real host on an ephemeral port with
//! a temporary database (SQLite file, or a fresh PostgreSQL schema), an HTTP client, and
//! agents that hold real EVM and Solana keys.

use std::io::Write as _;
use std::time::Duration;

use crochet::app::{Running, start};
use crochet::config::Config;
use crochet::secrets::MasterKey;
use ed25519_dalek::Signer as _;
use rand::RngCore as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sha3::Keccak256;

/// Proof-of-work difficulty the tests run with (one test checks the real default).
pub const TEST_POW_DIFFICULTY: u8 = 2;

/// Which database a test host runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL
/// (PostgreSQL only when `CROCHET_TEST_POSTGRES_URL` is set; otherwise it says so).
///
/// `on_both_backends!(mod NAME, configure = FN; tests...)` does the same on hosts whose
/// configuration `FN(&mut Config)` adjusts, in a module of its own.
#[macro_export]
macro_rules! on_both_backends {
    (mod $module:ident, configure = $configure:path; $($name:ident),* $(,)?) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let app = $crate::common::TestApp::start($crate::common::Backend::Sqlite, $configure).await.unwrap();
                        super::super::$name(app).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(app) = $crate::common::TestApp::start($crate::common::Backend::Postgres, $configure).await else {
                            return;
                        };
                        super::super::$name(app).await;
                    }
                )*
            }
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::start($crate::common::Backend::Sqlite, |_| {}).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::common::TestApp::start($crate::common::Backend::Postgres, |_| {}).await else {
                        return;
                    };
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// A fresh database for one test: a SQLite file in a temporary directory, or a new
/// PostgreSQL schema (dropped with this value).
pub struct TestDatabase {
    pub url: String,
    /// The temporary directory (SQLite: it holds the database file).
    pub dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
}

impl TestDatabase {
    /// A new database on `backend`; `None` (and a note) when PostgreSQL is not available.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("crochet.db").display()),
                None,
            ),
            Backend::Postgres => {
                let Ok(base) = std::env::var("CROCHET_TEST_POSTGRES_URL") else {
                    report_skip(std::thread::current().name().unwrap_or("test"));
                    return None;
                };
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                pg_admin(&base, &format!("CREATE SCHEMA {schema}")).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                (url, Some((base, schema)))
            }
        };
        Some(Self {
            url,
            dir,
            pg_schema,
        })
    }

    /// A connection pool of its own (for checks the API does not show, such as the
    /// marketplace's ledger entries).
    pub async fn connect(&self) -> crochet::storage::Database {
        crochet::storage::Database::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg_schema.take() {
            // Drop the schema from a separate runtime: Drop cannot await.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(pg_admin(
                        &base,
                        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                    ));
                }
            })
            .join();
        }
    }
}

/// A running host plus what is needed to tear it down.
pub struct TestApp {
    pub client: Client,
    pub backend: Backend,
    pub running: Option<Running>,
    /// The configuration the host runs with (same database on restart).
    pub config: Config,
    _db: TestDatabase,
}

impl std::ops::Deref for TestApp {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A second host instance on a [`TestApp`]'s database.
pub struct Peer {
    pub client: Client,
    _running: Running,
}

impl std::ops::Deref for Peer {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// The Redis server for tests that share state through Redis, or `None` (and a note on
/// stderr) when `CROCHET_TEST_REDIS_URL` is not set.
pub fn test_redis_url() -> Option<String> {
    let url = std::env::var("CROCHET_TEST_REDIS_URL").ok();
    if url.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (Redis) {}: CROCHET_TEST_REDIS_URL is not set",
            std::thread::current().name().unwrap_or("test")
        );
    }
    url
}

/// A policy plugin entry for `config.plugins.policy`.
pub fn policy_plugin(
    name: &str,
    source: &str,
    config: Value,
) -> crochet::config::PolicyPluginConfig {
    crochet::config::PolicyPluginConfig {
        name: name.into(),
        source: source.into(),
        failure: crochet::config::FailureMode::Closed,
        config,
    }
}

/// Rows in a table of the app's database.
pub async fn count_rows(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(app.state().db.pool())
        .await
        .unwrap()
}

/// Says, past the test harness's output capture, that a PostgreSQL test did not run.
pub fn report_skip(what: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (PostgreSQL) {what}: CROCHET_TEST_POSTGRES_URL is not set"
    );
}

/// A test configuration: ephemeral port, fast proof-of-work, fresh master key.
pub fn test_config(database_url: String) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url),
        pow_difficulty: Some(TEST_POW_DIFFICULTY),
        encryption_key: Some(MasterKey::generate().to_base64()),
        ..Config::default()
    }
}

/// Turns a test configuration into a production one: Relay (with a treasury address on
/// the default destination chain) instead of the mock provider.
pub fn production(config: &mut Config) {
    let mut relay = crochet_payment_relay::RelayConfig::default();
    relay.recipients.insert(
        crochet_payment::SOLANA_CHAIN_ID.to_string(),
        "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV".into(),
    );
    config.environment = crochet::config::Environment::Production;
    config.payment_provider = crochet::config::PaymentProviderKind::Relay;
    config.relay = Some(relay);
}

impl TestApp {
    /// Starts a host on `backend`; `None` when that backend is not available here.
    pub async fn start(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let db = TestDatabase::new(backend).await?;
        let mut config = test_config(db.url.clone());
        configure(&mut config);
        let running = start(config.clone()).await.expect("host starts");
        let base = format!("http://{}", running.addr);
        Some(Self {
            client: Client::new(base),
            backend,
            running: Some(running),
            config,
            _db: db,
        })
    }

    /// Stops the host and starts it again on the same database with a changed
    /// configuration (a new port).
    pub async fn restart(mut self, configure: impl FnOnce(&mut Config)) -> Self {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
        configure(&mut self.config);
        let running = start(self.config.clone()).await.expect("host restarts");
        self.client = Client::new(format!("http://{}", running.addr));
        self.running = Some(running);
        self
    }

    /// Starts another instance of this deployment: same database and configuration,
    /// its own port and memory (as a second stateless host would be).
    pub async fn peer(&self) -> Peer {
        let running = start(self.config.clone()).await.expect("peer starts");
        Peer {
            client: Client::new(format!("http://{}", running.addr)),
            _running: running,
        }
    }

    pub fn state(&self) -> &crochet::app::AppState {
        &self.running.as_ref().expect("running").state
    }

    /// Every text value stored in the named table's columns, for scanning at-rest data.
    pub async fn table_text(&self, table: &str) -> String {
        use sqlx::{Column as _, Row as _};
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(self.state().db.pool())
            .await
            .unwrap();
        let mut out = String::new();
        for row in rows {
            for col in row.columns() {
                if let Ok(Some(v)) = row.try_get::<Option<String>, _>(col.ordinal()) {
                    out.push_str(&v);
                    out.push('\n');
                }
            }
        }
        out
    }
}

async fn pg_admin(url: &str, sql: &str) {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("connect to CROCHET_TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect(sql);
    let _ = conn.close().await;
}

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
}

/// A request the test seller received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
    /// Body hash and HMAC signature check out under the seller's current secret.
    pub signature_valid: bool,
}

#[derive(Default)]
pub struct SellerState {
    secret: std::sync::Mutex<Option<String>>,
    seen: std::sync::Mutex<Vec<SeenRequest>>,
    /// While set, `/hold` never answers (a seller stuck mid-call).
    hold: std::sync::atomic::AtomicBool,
}

/// What the test seller's `/exact` path answers: JSON that a parse into a tree and
/// back would change (a number beyond `f64`, a duplicate key).
pub const EXACT_JSON: &str = r#"{"n":123456789012345678901234567890,"k":1,"k":2}"#;

/// A real seller: an axum server on an ephemeral port that verifies the gateway's HMAC
/// headers on every request (computed here, independently of the host's signer).
///
/// Routes: `/ok` answers JSON echoing the request, `/fail` 500 JSON, `/text` plain text,
/// `/exact` [`EXACT_JSON`], `/slow` sleeps 2 s, `/redirect` 302 to `/ok`, `/big` 64 KiB
/// of JSON, `/hold` never answers while [`Seller::hold`] is on (else as `/ok`).
pub struct Seller {
    pub base: String,
    pub state: std::sync::Arc<SellerState>,
}

impl Seller {
    pub async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, Uri};
        use axum::response::IntoResponse;
        let state = std::sync::Arc::new(SellerState::default());
        async fn handle(
            State(state): State<std::sync::Arc<SellerState>>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            let headers: std::collections::HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let secret = state.secret.lock().unwrap().clone().unwrap_or_default();
            let signature_valid = verify_signature(&secret, &headers, &body);
            let path = uri.path().to_owned();
            state.seen.lock().unwrap().push(SeenRequest {
                path: path.clone(),
                headers,
                body: body.to_vec(),
                signature_valid,
            });
            match path.as_str() {
                "/fail" => (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": "boom"})),
                )
                    .into_response(),
                "/text" => "plain text, not JSON".into_response(),
                "/exact" => (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    EXACT_JSON,
                )
                    .into_response(),
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    axum::Json(json!({"late": true})).into_response()
                }
                "/redirect" => {
                    (axum::http::StatusCode::FOUND, [("location", "/ok")]).into_response()
                }
                "/big" => axum::Json(json!({"blob": "x".repeat(64 * 1024)})).into_response(),
                "/hold" if state.hold.load(std::sync::atomic::Ordering::SeqCst) => {
                    std::future::pending::<axum::response::Response>().await
                }
                // A chat-completions style seller: answers with the last message upper-cased.
                "/chat" => {
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let last = req["messages"]
                        .as_array()
                        .and_then(|m| m.last())
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or("")
                        .to_uppercase();
                    axum::Json(json!({
                        "model": req["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": last}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1}
                    }))
                    .into_response()
                }
                _ => {
                    let echo: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    axum::Json(json!({"result": "ok", "echo": echo})).into_response()
                }
            }
        }
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The signing secret the seller verifies with.
    pub fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = Some(secret.to_owned());
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Makes `/hold` hang (true) or answer (false).
    pub fn hold(&self, on: bool) {
        self.state
            .hold
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The seller-side check of SPEC §7.
pub fn verify_signature(
    secret: &str,
    headers: &std::collections::HashMap<String, String>,
    body: &[u8],
) -> bool {
    use hmac::{Hmac, Mac};
    let get = |k: &str| headers.get(k).cloned().unwrap_or_default();
    let body_sha = hex::encode(Sha256::digest(body));
    if get("x-crochet-body-sha256") != body_sha {
        return false;
    }
    let payload = format!(
        "{}.{}.{}.{}",
        get("x-crochet-timestamp"),
        get("x-crochet-request-id"),
        get("x-crochet-listing-id"),
        body_sha
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    let Ok(sig) = hex::decode(get("x-crochet-signature")) else {
        return false;
    };
    mac.verify_slice(&sig).is_ok()
}

impl Client {
    /// Solves a fresh listing challenge and creates a listing from `body` (the seed 002
    /// example fields); returns the whole reply.
    pub async fn create_listing(&self, seller: &Agent, mut body: Value) -> Reply {
        let c = self
            .post("/listings/challenge", seller.key(), json!({}))
            .await
            .expect(200);
        let pow = c.data()["challenge"].as_str().unwrap();
        body["pow_nonce"] = json!(solve_pow(
            pow,
            c.data()["difficulty"].as_u64().unwrap() as usize
        ));
        self.post("/listings", seller.key(), body).await
    }
}

/// A seller agent, its live local seller and one active `per_call` listing.
pub struct Published {
    pub seller: Seller,
    pub agent: Agent,
    pub id: String,
    /// `data` of the creation response (with the one-time signing secret).
    pub data: Value,
}

impl Client {
    /// Starts a local seller, registers a seller agent and publishes `name` pointing at the
    /// seller's `path`; the seller verifies signatures with the returned secret.
    pub async fn publish(&self, name: &str, path: &str) -> Published {
        self.publish_with(name, path, |_| {}).await
    }

    /// [`Client::publish`] with the listing body adjusted by `edit` first.
    pub async fn publish_with(
        &self,
        name: &str,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Published {
        let seller = Seller::start().await;
        let agent = self.register_as(Wallet::evm(), "seller").await;
        let mut body = listing_body(name, &seller.url(path));
        edit(&mut body);
        let data = self
            .create_listing(&agent, body)
            .await
            .expect(201)
            .data()
            .clone();
        seller.set_secret(data["gateway_endpoint"]["signing_secret"].as_str().unwrap());
        Published {
            id: data["id"].as_str().unwrap().to_owned(),
            seller,
            agent,
            data,
        }
    }
}

/// A gateway call with optional extra headers.
pub async fn gateway_call(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = app
        .http
        .post(app.url(&format!("/gateway/{listing}")))
        .bearer_auth(&buyer.api_key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap();
    Reply {
        status,
        body,
        headers,
    }
}

/// The same call again, paying with `relay_id` (`X-Crochet-Relay-Request-Id`).
pub async fn retry(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    relay_id: &str,
) -> Reply {
    gateway_call(
        app,
        buyer,
        listing,
        body,
        &[("X-Crochet-Relay-Request-Id", relay_id)],
    )
    .await
}

/// The whole paid flow: 402, settle, retry with the relay request id. Returns the relay
/// request id and the retry's reply (whatever its status).
pub async fn pay_and_call(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
) -> (String, Reply) {
    let r = gateway_call(app, buyer, listing, body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let relay_id = settle(app, buyer, &r, "settled").await;
    let reply = retry(app, buyer, listing, body, &relay_id).await;
    (relay_id, reply)
}

/// Completes the mock payment of a 402 with `outcome`.
pub async fn settle(app: &Client, buyer: &Agent, reply: &Reply, outcome: &str) -> String {
    let payment = &reply.body["error"]["details"]["payment"];
    let url = payment["requirements"]["settle_url"].as_str().unwrap();
    let path = &url[app.base.len()..];
    app.post(path, buyer.key(), json!({"outcome": outcome}))
        .await
        .expect(200);
    payment["relay_request_id"].as_str().unwrap().to_owned()
}

/// Calls `call` until `done` holds for its reply or `within` has passed (for effects
/// that arrive asynchronously: another instance's invalidation, a background task);
/// returns the last reply, for the caller to assert on.
pub async fn poll_until(
    within: Duration,
    mut call: impl AsyncFnMut() -> Reply,
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = std::time::Instant::now() + within;
    loop {
        let reply = call().await;
        if done(&reply) || std::time::Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A published listing with the given price in USD (None = free) and seller path.
pub async fn priced_listing(app: &Client, price: Option<f64>, path: &str) -> Published {
    app.publish_with("Capability", path, |body| match price {
        Some(p) => body["pricing_amount"] = json!(p),
        None => {
            body["pricing_model"] = json!("free");
            body.as_object_mut().unwrap().remove("pricing_amount");
        }
    })
    .await
}

/// The seed 002 listing example, pointed at `endpoint`.
pub fn listing_body(name: &str, endpoint: &str) -> Value {
    json!({
        "name": name,
        "description": "Routes buyer JSON requests to a specialist agent.",
        "delivery_type": "api",
        "auth_method": "none",
        "formats": ["json"],
        "connection_instructions": "Call through Crochet gateway_url. Do not call seller directly.",
        "pricing_model": "per_call",
        "pricing_amount": 0.01,
        "pricing_currency": "USD",
        "private_endpoint_url": endpoint,
        "status": "active"
    })
}

/// A raw TCP client for connection-level tests (slow clients, malformed HTTP).
pub struct RawConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// One response read by a [`RawConn`].
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as a failure envelope; returns its code.
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "status {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v: Value = serde_json::from_slice(&self.body).expect("a JSON envelope");
        assert_eq!(v["success"], false, "{v}");
        v["error"]["code"].as_str().expect("error.code").to_owned()
    }
}

impl RawConn {
    /// Opens a connection to the app.
    pub async fn open(app: &TestApp) -> Self {
        let addr = app.running.as_ref().expect("host is running").addr;
        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .expect("connect in time")
                .expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`; an error (the server may already have closed) is returned.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        self.stream.write_all(bytes).await
    }

    /// Reads more bytes; `None` when the server closed (EOF or reset) or `within` passed.
    async fn fill(&mut self, within: Duration) -> Option<usize> {
        use tokio::io::AsyncReadExt as _;
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => None,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
        }
    }

    /// Reads one response (head and `content-length` body); panics unless it arrives
    /// within `within`.
    pub async fn response(&mut self, within: Duration) -> RawResponse {
        let deadline = tokio::time::Instant::now() + within;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill(left()).await.unwrap_or_else(|| {
                panic!(
                    "no complete response within {within:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            });
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < head_end + len {
            self.fill(left())
                .await
                .unwrap_or_else(|| panic!("body of a {status} cut short"));
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// Waits for the server to close the connection, sending nothing; panics if it is
    /// still open after `within` or sends bytes. Returns how long it took.
    pub async fn closed_within(&mut self, within: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        let got = self.fill(within).await;
        let elapsed = started.elapsed();
        assert!(
            got.is_none() && elapsed < within,
            "connection still open after {elapsed:?} (read {:?})",
            String::from_utf8_lossy(&self.buf)
        );
        elapsed
    }
}
