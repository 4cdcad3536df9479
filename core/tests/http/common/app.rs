//! Test hosts: a temporary database on either backend, the test configuration, a
//! running host (restart, peers) and direct looks into its database.

use std::io::Write as _;

use crochet::app::{Running, start};
use crochet::config::Config;
use crochet::secrets::MasterKey;
use serde_json::Value;

use super::*;

/// Proof-of-work difficulty the tests run with (one test checks the real default).
pub const TEST_POW_DIFFICULTY: u8 = 2;

/// Which database a test host runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
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
        sha256: None,
        config,
        isolation: crochet::config::Isolation::default(),
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
    /// On PostgreSQL each row is read as its JSON text, since some column types (the
    /// catalog's `tsvector`) have no decoding in sqlx's `Any` driver.
    pub async fn table_text(&self, table: &str) -> String {
        use sqlx::{Column as _, Row as _};
        let sql = match self.backend {
            Backend::Sqlite => format!("SELECT * FROM {table}"),
            Backend::Postgres => format!("SELECT CAST(row_to_json(t) AS TEXT) FROM {table} t"),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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

/// A rate limit of `limit` calls per buyer and minute, and a loose burst.
pub fn per_buyer_limit(limit: u32) -> impl FnOnce(&mut crochet::config::Config) {
    move |c| {
        c.plugins.policy = Some(vec![policy_plugin(
            "rate-limit",
            "bundled:rate-limit",
            serde_json::json!({"gateway": {
                "per_buyer": {"limit": limit, "window_seconds": 60, "burst": 1000},
                "per_listing": null
            }}),
        )]);
    }
}
