//! Configuration: built-in defaults, then `crochet.toml` (or the file named by `--config`
//! / `CROCHET_CONFIG`), then the fixed `CROCHET_*` environment variables, layered with
//! figment. [`Config::check_production`] refuses unsafe settings before the host starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

/// Which payment provider settles paid calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PaymentProviderKind {
    #[default]
    Mock,
    Relay,
}

/// The host's configuration. Field names are the `crochet.toml` keys; the environment
/// variables are `CROCHET_` + the upper-cased name, for the fields listed in [`ENV_KEYS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// A listener of its own for `GET /metrics` (then the main listener answers 404 for
    /// it); unset: `/metrics` is served on `bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// `sqlite://PATH` or `postgres://…`; default: `crochet.db` in the working directory.
    pub database_url: Option<String>,
    pub environment: Environment,
    pub payment_provider: PaymentProviderKind,
    /// Leading hex zeros asked of auth and listing proofs-of-work.
    pub pow_difficulty: Option<u8>,
    /// Absolute base URL used in links; default: derived from the bound address.
    pub public_url: Option<String>,
    /// Redis for counters shared by several host instances.
    pub redis_url: Option<String>,
    /// 32-byte master key, base64.
    pub encryption_key: Option<String>,
    /// Whether seller endpoints on loopback/private addresses are allowed (default: only
    /// in development).
    pub allow_private_endpoints: Option<bool>,
    /// Lifetime of wallet and proof-of-work challenges.
    pub challenge_ttl_seconds: u64,
    /// Largest request body accepted on any route.
    pub max_body_bytes: usize,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Master keys being rotated out (base64): still read, never written.
    pub previous_encryption_keys: Vec<String>,
    /// Categories added to the built-in set (`[[categories]]` tables in `crochet.toml`).
    pub categories: Vec<CategoryConfig>,
    /// Hostnames pinned to addresses for seller calls (split-horizon DNS, tests). Pinned
    /// addresses still pass through the production address rules.
    pub dns_overrides: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// The Relay provider (`[relay]` in `crochet.toml`; the API key may come from
    /// `CROCHET_RELAY_API_KEY` instead, so it stays out of files).
    pub relay: Option<crochet_payment_relay::RelayConfig>,
    /// WebAssembly plugins (`[plugins]` in `crochet.toml`).
    pub plugins: PluginsConfig,
    /// Reviews and the Crochet Score (`[reputation]` in `crochet.toml`).
    pub reputation: ReputationConfig,
    /// Recovery of paid calls interrupted by a crash (`[gateway]` in `crochet.toml`).
    pub gateway: GatewayConfig,
    /// x402 payments beside the relay flow (`[x402]` in `crochet.toml`, or the
    /// `CROCHET_X402_*` variables); off while no facilitator is set.
    pub x402: X402Config,
    /// Connection limits and timeouts of the HTTP server (`[server]` in `crochet.toml`).
    pub server: ServerConfig,
    /// The operator's credential for the admin routes (`Authorization: Bearer …`); the
    /// admin routes exist only when it (or `admin_token_file`) is set.
    pub admin_token: Option<Secret>,
    /// A file holding the operator's credential (its content is trimmed); instead of
    /// `admin_token`, so the credential stays out of the environment.
    pub admin_token_file: Option<PathBuf>,
    /// The file this configuration was loaded from when one was named (`--config` or
    /// `CROCHET_CONFIG`); a plugin reload reads the same sources again.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// A configured secret: read like a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// Shortest operator credential accepted in production.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// How long a forwarding attempt owns a paid call, and when an abandoned call is
/// resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// A paid call's forwarding attempt holds it for the endpoint's timeout plus this
    /// margin; after that a retry of the same payment may forward it again.
    pub lease_grace_seconds: u64,
    /// A call still unfinished this long after its lease passed, and not retried, is
    /// marked `interrupted` and its charge reversed.
    pub interrupted_after_seconds: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            lease_grace_seconds: 30,
            interrupted_after_seconds: 900,
        }
    }
}

/// x402 payments (`[x402]`). With a facilitator set, a paid listing's 402 also offers
/// x402's `exact` scheme on each network, and a retry with `PAYMENT-SIGNATURE` is
/// verified, forwarded, and settled only when the seller answered well.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct X402Config {
    /// The facilitator's base URL (`/verify`, `/settle`, `/supported` below it), or
    /// `builtin` (development only: verifies signatures, moves no money). Unset: x402 off.
    pub facilitator_url: Option<String>,
    /// Sent as the `Authorization` header to the facilitator, when it needs one.
    pub facilitator_auth: Option<Secret>,
    /// CAIP-2 networks offered (`eip155:8453` is Base).
    pub networks: Vec<String>,
    /// The operator's treasury on EVM networks (`payTo`).
    pub pay_to_evm: Option<String>,
    /// The operator's treasury on Solana networks (`payTo`).
    pub pay_to_solana: Option<String>,
    /// Whether a buyer without an API key may pay with x402 (the paying wallet then
    /// identifies the buyer).
    pub keyless: bool,
    /// Whether a buyer with an API key may pay from a wallet it has not linked.
    pub any_payer: bool,
    /// `maxTimeoutSeconds` of the offers: how long a buyer's signed authorization should
    /// stay valid. It must outlast the seller's answer and the settlement.
    pub max_timeout_seconds: u64,
    /// Timeout of one request to the facilitator.
    pub facilitator_timeout_seconds: u64,
}

impl Default for X402Config {
    fn default() -> Self {
        Self {
            facilitator_url: None,
            facilitator_auth: None,
            networks: vec!["eip155:8453".into()],
            pay_to_evm: None,
            pay_to_solana: None,
            keyless: true,
            any_payer: false,
            max_timeout_seconds: 300,
            facilitator_timeout_seconds: 15,
        }
    }
}

impl X402Config {
    /// Overrides from `CROCHET_X402_FACILITATOR_URL`, `CROCHET_X402_FACILITATOR_AUTH`,
    /// `CROCHET_X402_NETWORKS` (comma-separated), `CROCHET_X402_PAY_TO_EVM` and
    /// `CROCHET_X402_PAY_TO_SOLANA`; an empty variable counts as unset.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = var("CROCHET_X402_FACILITATOR_URL") {
            self.facilitator_url = Some(v);
        }
        if let Some(v) = var("CROCHET_X402_FACILITATOR_AUTH") {
            self.facilitator_auth = Some(Secret(v));
        }
        if let Some(v) = var("CROCHET_X402_NETWORKS") {
            self.networks = v
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
        }
        if let Some(v) = var("CROCHET_X402_PAY_TO_EVM") {
            self.pay_to_evm = Some(v);
        }
        if let Some(v) = var("CROCHET_X402_PAY_TO_SOLANA") {
            self.pay_to_solana = Some(v);
        }
    }

    /// Whether the built-in development facilitator is named.
    pub fn builtin(&self) -> bool {
        self.facilitator_url.as_deref() == Some("builtin")
    }
}

/// How long the HTTP server waits for slow clients, and how many it serves at once.
/// A timeout of 0 turns that timeout off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// A request's line and headers must arrive within this long of its first byte (of
    /// the connection being accepted, for the first request).
    pub header_read_timeout_ms: u64,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request in progress is closed after this long.
    pub idle_timeout_ms: u64,
    /// Connections served at once. A few more are accepted beyond it and only answer
    /// `GET /api/v1/health` (everything else: 503 `SERVER_BUSY`); further ones are
    /// closed at once. Lowered at start-up when the open-file limit is too small for it.
    pub max_connections: usize,
    /// Requests with more header fields get 431 `TOO_MANY_HEADERS`.
    pub max_headers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 4096,
            max_headers: 64,
        }
    }
}

/// Review rules and how fresh a Crochet Score is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationConfig {
    /// A review needs a successful gateway call to the listing within this many days.
    pub review_window_days: u32,
    /// Longest review comment, in characters.
    pub review_comment_max_chars: usize,
    /// A score older than this is recomputed when asked for (`GET /agents/{id}/score`,
    /// the scores given to policy plugins); 0 recomputes on every request.
    pub score_max_age_seconds: u64,
    /// How often agents with new score events are rescored in the background, so that
    /// listing sorts and verified marks follow behaviour; 0 turns it off.
    pub refresh_interval_seconds: u64,
    /// Score snapshots older than this many days are deleted, except each agent's
    /// current one; 0 keeps every snapshot.
    pub snapshot_retention_days: u32,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            review_window_days: 30,
            review_comment_max_chars: 2000,
            score_max_age_seconds: 60,
            refresh_interval_seconds: 60,
            snapshot_retention_days: 30,
        }
    }
}

/// Which plugins run, and the sandbox's limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Policy plugins, run in this order on every gateway call and on the
    /// unauthenticated identity routes. Unset: the bundled `rate-limit` then
    /// `request-validation`. An empty list turns policies off.
    pub policy: Option<Vec<PolicyPluginConfig>>,
    /// The Crochet Score formula: `bundled:scoring` or a component file (a relative
    /// path is taken from the configuration file's folder).
    pub scorer: String,
    /// The SHA-256 (hex) the scorer's component must have; a different component is
    /// refused. Unset: not checked.
    pub scorer_sha256: Option<String>,
    /// Wall-clock limit of one plugin call.
    pub timeout_ms: u64,
    /// Linear memory one plugin instance may grow to.
    pub max_memory_bytes: usize,
    /// Largest string a plugin may return.
    pub max_output_bytes: usize,
    /// Largest seller-adapter component a seller may upload.
    pub max_component_bytes: usize,
    /// Where compiled components are cached (MAC'd with a key derived from the master
    /// key). Default: `<database file>.plugins/` on SQLite, none on PostgreSQL.
    pub cache_dir: Option<PathBuf>,
    /// Request headers shown to policies built against `crochet:plugin@1.1.0` (their
    /// `headers` field), e.g. `["x-agent-team"]`. Credentials, cookies, payment proofs
    /// and `x-crochet-*` headers are refused. Default: none.
    pub forward_headers: Vec<String>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            policy: None,
            scorer: "bundled:scoring".into(),
            scorer_sha256: None,
            timeout_ms: 200,
            max_memory_bytes: 32 * 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            max_component_bytes: 8 * 1024 * 1024,
            cache_dir: None,
            forward_headers: Vec::new(),
        }
    }
}

/// One policy plugin (`[[plugins.policy]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPluginConfig {
    /// Names the plugin in logs, errors and listing configuration.
    pub name: String,
    /// `bundled:rate-limit`, `bundled:request-validation`, `bundled:template` or the
    /// path of a component file (a relative path is taken from the configuration
    /// file's folder).
    pub source: String,
    /// The SHA-256 (hex) the component must have; a different component is refused at
    /// start-up and on a reload. Unset: not checked.
    #[serde(default)]
    pub sha256: Option<String>,
    /// What a failing plugin (trap, timeout, limit, unreachable counters) does to the
    /// call: `closed` refuses it with 503 `PLUGIN_UNAVAILABLE`, `open` lets it through.
    #[serde(default)]
    pub failure: FailureMode,
    /// The plugin's own configuration, handed to it as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Whether a warm instance serves many calls (`reuse`, the default) or every call
    /// gets a fresh one (`call`).
    #[serde(default)]
    pub isolation: Isolation,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// How a failing plugin affects the call it was checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    #[default]
    Closed,
    Open,
}

/// How far apart a policy's calls are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A warm instance serves many calls, one at a time: what the plugin keeps in its
    /// memory (globals, caches, what it read from earlier calls) stays until the
    /// instance is recycled (after a failure, a number of calls, or when its memory
    /// grows large). For plugins the operator trusts, which the bundled ones are.
    #[default]
    Reuse,
    /// Warm instances as with `reuse`, each serving one buyer only: what a plugin keeps
    /// from a call is seen only by later calls of the same buyer (the identity routes,
    /// which have no buyer, share their own). Fast for buyers who call often.
    Buyer,
    /// Every call gets a fresh instance: nothing carries over from one call to the
    /// next. Slower (the instance is set up and reset on every call).
    Call,
}

impl Isolation {
    /// The configuration spelling: `reuse`, `buyer` or `call`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reuse => "reuse",
            Self::Buyer => "buyer",
            Self::Call => "call",
        }
    }
}

impl FailureMode {
    /// The configuration spelling: `closed` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// A marketplace category an operator adds in `crochet.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CategoryConfig {
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`pretty` is accepted as the earlier name); coloured only
    /// when stderr is a terminal.
    #[default]
    #[serde(alias = "pretty")]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The environment variables read (after the `CROCHET_` prefix, lower-cased).
pub const ENV_KEYS: &[&str] = &[
    "bind",
    "metrics_bind",
    "database_url",
    "environment",
    "payment_provider",
    "pow_difficulty",
    "public_url",
    "redis_url",
    "encryption_key",
    "allow_private_endpoints",
    "challenge_ttl_seconds",
    "max_body_bytes",
    "log_format",
    "previous_encryption_keys",
    "admin_token",
    "admin_token_file",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_bind: None,
            database_url: None,
            environment: Environment::Development,
            payment_provider: PaymentProviderKind::Mock,
            pow_difficulty: None,
            public_url: None,
            redis_url: None,
            encryption_key: None,
            allow_private_endpoints: None,
            challenge_ttl_seconds: 300,
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::Text,
            previous_encryption_keys: Vec::new(),
            categories: Vec::new(),
            dns_overrides: std::collections::HashMap::new(),
            relay: None,
            plugins: PluginsConfig::default(),
            reputation: ReputationConfig::default(),
            gateway: GatewayConfig::default(),
            x402: X402Config::default(),
            server: ServerConfig::default(),
            admin_token: None,
            admin_token_file: None,
            file: None,
        }
    }
}

/// Why configuration could not be loaded or is unsafe to run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("refusing to start in production: {setting} {problem}. Fix: {fix}")]
    Unsafe {
        setting: &'static str,
        problem: &'static str,
        fix: &'static str,
    },
    #[error("invalid configuration: {setting} {problem}. Fix: {fix}")]
    Setting {
        setting: &'static str,
        problem: String,
        fix: &'static str,
    },
}

/// The default SQLite database file, in the working directory.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://crochet.db";

impl Config {
    /// Loads defaults, then the TOML file (`explicit`, else `CROCHET_CONFIG`, else
    /// `crochet.toml` when present), then the environment.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let file: Option<PathBuf> = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CROCHET_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        figment = match file.clone() {
            // A file named explicitly must exist.
            Some(path) => figment.merge(Toml::file_exact(path)),
            None => figment.merge(Toml::file("crochet.toml")),
        };
        figment = figment.merge(Env::prefixed("CROCHET_").only(ENV_KEYS));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        if let Ok(key) = std::env::var("CROCHET_RELAY_API_KEY") {
            config.relay.get_or_insert_with(Default::default).api_key = Some(key);
        }
        config.x402.apply_env(|name| std::env::var(name).ok());
        config.file = file;
        Ok(config)
    }

    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_SQLITE_URL)
    }

    pub fn pow_difficulty(&self) -> u8 {
        self.pow_difficulty.unwrap_or(match self.environment {
            Environment::Development => 4,
            Environment::Production => 5,
        })
    }

    pub fn allow_private_endpoints(&self) -> bool {
        self.allow_private_endpoints
            .unwrap_or(self.environment == Environment::Development)
    }

    /// The public base URL (no trailing slash), from `public_url` or the bound address.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }

    /// Where the development master key is kept: beside the SQLite file, or in the
    /// working directory for PostgreSQL.
    /// The policy plugins to run: the configured list, or the bundled defaults. In
    /// development the auth-route limit is loose enough for a test suite registering
    /// hundreds of agents a minute from one address.
    /// Relative component paths are taken from the configuration file's folder
    /// ([`plugin_source`](Self::plugin_source)).
    pub fn policy_plugins(&self) -> Vec<PolicyPluginConfig> {
        if let Some(list) = &self.plugins.policy {
            return list
                .iter()
                .map(|p| PolicyPluginConfig {
                    source: self.plugin_source(&p.source),
                    ..p.clone()
                })
                .collect();
        }
        // Per buyer: 6000 calls a minute, 200 in any one second; per listing ten times
        // that. Per address on the auth routes: 60 a minute in production.
        let gateway = serde_json::json!({
            "per_buyer": {"limit": 6000, "window_seconds": 60, "burst": 200},
            "per_listing": {"limit": 60000, "window_seconds": 60, "burst": 2000}
        });
        let auth = match self.environment {
            Environment::Development => {
                serde_json::json!({"per_ip": {"limit": 6000, "window_seconds": 60, "burst": 1000}})
            }
            Environment::Production => {
                serde_json::json!({"per_ip": {"limit": 60, "window_seconds": 60, "burst": 10}})
            }
        };
        let rate_limit = serde_json::json!({"gateway": gateway, "auth": auth});
        vec![
            PolicyPluginConfig {
                name: "rate-limit".into(),
                source: "bundled:rate-limit".into(),
                failure: FailureMode::Closed,
                sha256: None,
                config: rate_limit,
                isolation: Isolation::Reuse,
            },
            PolicyPluginConfig {
                name: "request-validation".into(),
                source: "bundled:request-validation".into(),
                failure: FailureMode::Closed,
                sha256: None,
                config: empty_object(),
                isolation: Isolation::Reuse,
            },
        ]
    }

    /// Which policy chain runs, in one sentence for the start-up log: the operator's
    /// own list (which replaces the bundled defaults, never adds to them) or the
    /// defaults.
    pub fn policy_chain_summary(&self) -> String {
        let names = |list: &[PolicyPluginConfig]| {
            list.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.plugins.policy {
            Some(list) if list.is_empty() => format!(
                "no policy plugins run: [[plugins.policy]] in {} is an empty list, and the \
                 bundled defaults are not added",
                self.file_name()
            ),
            Some(list) => format!(
                "policy chain from [[plugins.policy]] in {}: [{}]; the bundled defaults \
                 (rate-limit, request-validation) are not added",
                self.file_name(),
                names(list)
            ),
            None => format!(
                "policy chain: the bundled defaults [{}] (no [[plugins.policy]] in {})",
                names(&self.policy_plugins()),
                self.file_name()
            ),
        }
    }

    /// The scorer's component: `plugins.scorer`, a relative path taken from the
    /// configuration file's folder.
    pub fn scorer_source(&self) -> String {
        self.plugin_source(&self.plugins.scorer)
    }

    /// A plugin `source` as the host reads it: `bundled:` names and absolute paths as
    /// written, a relative path joined to the folder of the configuration file it came
    /// from (the working directory when no file was named).
    pub fn plugin_source(&self, source: &str) -> String {
        if source.starts_with("bundled:") || Path::new(source).is_absolute() {
            return source.to_owned();
        }
        match self.file.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(source).display().to_string(),
            _ => source.to_owned(),
        }
    }

    /// The configuration file in use, for messages: the one named by `--config` or
    /// `CROCHET_CONFIG`, else `crochet.toml`.
    pub fn file_name(&self) -> String {
        match &self.file {
            Some(file) => file.display().to_string(),
            None => "crochet.toml".to_owned(),
        }
    }

    /// Where compiled plugins are cached: configured, or beside the SQLite file.
    pub fn plugin_cache_dir(&self) -> Option<PathBuf> {
        self.plugins.cache_dir.clone().or_else(|| {
            self.sqlite_file()
                .map(|file| PathBuf::from(format!("{file}.plugins")))
        })
    }

    /// The SQLite database file, when the database is one.
    fn sqlite_file(&self) -> Option<&str> {
        let url = self.database_url();
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|p| !p.is_empty() && !p.contains(":memory:"))
    }

    pub fn dev_key_path(&self) -> PathBuf {
        match self.sqlite_file() {
            Some(file) => PathBuf::from(format!("{file}.key")),
            None => PathBuf::from("crochet.key"),
        }
    }

    /// The operator's credential, from `admin_token` or the file `admin_token_file`
    /// names (trimmed); `None` when neither is set. Setting both, an unreadable file and
    /// an empty credential are errors.
    pub fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Setting {
                    setting: "CROCHET_ADMIN_TOKEN",
                    problem: "is set together with CROCHET_ADMIN_TOKEN_FILE".into(),
                    fix: "set only one of admin_token and admin_token_file",
                });
            }
            (Some(token), None) => token.expose().trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Setting {
                    setting: "CROCHET_ADMIN_TOKEN_FILE",
                    problem: format!("cannot be read ({}: {e})", path.display()),
                    fix: "point admin_token_file at a readable file holding the credential",
                })?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(ConfigError::Setting {
                setting: "CROCHET_ADMIN_TOKEN",
                problem: "is empty".into(),
                fix: "set a random credential (`openssl rand -base64 32`), or unset it to turn the admin routes off",
            });
        }
        Ok(Some(Secret(token)))
    }

    /// Refuses the settings that are unsafe in `production`; a no-op in development
    /// (except for a malformed operator credential, refused everywhere).
    pub fn check_production(&self) -> Result<(), ConfigError> {
        let admin_token = self.admin_token()?;
        if self.environment != Environment::Production {
            return Ok(());
        }
        if admin_token.is_some_and(|t| t.expose().chars().count() < MIN_ADMIN_TOKEN_CHARS) {
            return Err(ConfigError::Unsafe {
                setting: "CROCHET_ADMIN_TOKEN",
                problem: "is shorter than 32 characters, short enough to guess",
                fix: "set a random credential of at least 32 characters (`openssl rand -base64 32`)",
            });
        }
        if self.payment_provider == PaymentProviderKind::Mock {
            return Err(ConfigError::Unsafe {
                setting: "CROCHET_PAYMENT_PROVIDER",
                problem: "is `mock`, which settles payments without any money moving",
                fix: "set CROCHET_PAYMENT_PROVIDER=relay and configure the Relay provider",
            });
        }
        if self.encryption_key.is_none() {
            return Err(ConfigError::Unsafe {
                setting: "CROCHET_ENCRYPTION_KEY",
                problem: "is not set, so secrets at rest would have no stable key",
                fix: "set CROCHET_ENCRYPTION_KEY to 32 random bytes in base64 (`openssl rand -base64 32`)",
            });
        }
        if self.x402.builtin() {
            return Err(ConfigError::Unsafe {
                setting: "CROCHET_X402_FACILITATOR_URL",
                problem: "is `builtin`, a development facilitator that settles without any money moving",
                fix: "set CROCHET_X402_FACILITATOR_URL to your x402 facilitator's URL, or unset it to turn x402 off",
            });
        }
        if self.allow_private_endpoints == Some(true) {
            return Err(ConfigError::Unsafe {
                setting: "allow_private_endpoints",
                problem: "is true, which lets sellers point the gateway at loopback and private networks",
                fix: "remove allow_private_endpoints (or set it to false)",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn relative_plugin_sources_resolve_from_the_configuration_files_folder() {
        Jail::expect_with(|jail| {
            jail.create_dir("conf")?;
            jail.create_file(
                "conf/gateway.toml",
                r#"
                [plugins]
                scorer = "score.wasm"
                scorer_sha256 = "ab"

                [[plugins.policy]]
                name = "mine"
                source = "plugins/mine.wasm"
                sha256 = "cd"

                [[plugins.policy]]
                name = "absolute"
                source = "/opt/plugins/abs.wasm"

                [[plugins.policy]]
                name = "bundled"
                source = "bundled:template"
                "#,
            )?;
            let c = Config::load(Some(Path::new("conf/gateway.toml"))).unwrap();
            let policies = c.policy_plugins();
            assert_eq!(policies[0].source, "conf/plugins/mine.wasm");
            assert_eq!(policies[0].sha256.as_deref(), Some("cd"));
            assert_eq!(policies[1].source, "/opt/plugins/abs.wasm");
            assert_eq!(policies[1].sha256, None);
            assert_eq!(policies[2].source, "bundled:template");
            assert_eq!(c.scorer_source(), "conf/score.wasm");
            assert_eq!(c.plugins.scorer_sha256.as_deref(), Some("ab"));
            assert_eq!(c.file_name(), "conf/gateway.toml");

            // The implicit `crochet.toml` is in the working directory: paths stay as
            // written, and messages name it.
            let mut c = Config::load(None).unwrap();
            c.plugins.scorer = "score.wasm".into();
            assert_eq!(c.scorer_source(), "score.wasm");
            assert_eq!(c.file_name(), "crochet.toml");
            Ok(())
        });
    }

    #[test]
    fn an_operator_chain_replaces_the_defaults_and_says_so() {
        let mut c = Config::default();
        let defaults = c.policy_chain_summary();
        assert!(defaults.contains("bundled defaults [rate-limit, request-validation]"));
        c.plugins.policy = Some(vec![PolicyPluginConfig {
            name: "mine".into(),
            source: "bundled:template".into(),
            failure: FailureMode::Closed,
            sha256: None,
            config: empty_object(),
            isolation: Isolation::Reuse,
        }]);
        assert_eq!(c.policy_plugins().len(), 1, "the defaults are not added");
        let own = c.policy_chain_summary();
        assert!(own.contains("[mine]"), "{own}");
        assert!(own.contains("defaults (rate-limit, request-validation) are not added"));
        c.plugins.policy = Some(Vec::new());
        assert!(c.policy_chain_summary().contains("no policy plugins run"));
    }

    #[test]
    fn defaults_without_any_configuration() {
        Jail::expect_with(|_jail| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
            assert_eq!(c.database_url(), "sqlite://crochet.db");
            assert_eq!(c.environment, Environment::Development);
            assert_eq!(c.payment_provider, PaymentProviderKind::Mock);
            assert_eq!(c.pow_difficulty(), 4);
            assert!(c.allow_private_endpoints());
            assert_eq!(c.public_url(c.bind), "http://127.0.0.1:8080");
            Ok(())
        });
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "crochet.toml",
                "pow_difficulty = 6\nbind = \"0.0.0.0:9000\"\n",
            )?;
            jail.set_env("CROCHET_BIND", "127.0.0.1:0");
            jail.set_env("CROCHET_PUBLIC_URL", "https://gw.example/");
            let c = Config::load(None).unwrap();
            assert_eq!(c.pow_difficulty(), 6);
            assert_eq!(c.bind.port(), 0);
            assert_eq!(
                c.metrics_bind, None,
                "metrics on the main listener by default"
            );
            jail.set_env("CROCHET_METRICS_BIND", "127.0.0.1:9464");
            let c = Config::load(None).unwrap();
            assert_eq!(c.metrics_bind.unwrap().to_string(), "127.0.0.1:9464");
            assert_eq!(c.public_url(c.bind), "https://gw.example");
            Ok(())
        });
    }

    #[test]
    fn categories_and_previous_keys_from_file_and_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "crochet.toml",
                "[[categories]]\nslug = \"robotics\"\nname = \"Robotics\"\n\n[dns_overrides]\n\"seller.test\" = [\"10.0.0.7\"]\n",
            )?;
            jail.set_env("CROCHET_PREVIOUS_ENCRYPTION_KEYS", "[\"a2V5\"]");
            let c = Config::load(None).unwrap();
            assert_eq!(c.categories[0].slug, "robotics");
            assert_eq!(c.previous_encryption_keys, vec!["a2V5".to_owned()]);
            assert_eq!(c.dns_overrides["seller.test"][0].to_string(), "10.0.0.7");
            Ok(())
        });
    }

    #[test]
    fn log_format_text_json_and_the_earlier_pretty() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().log_format, LogFormat::Text);
            for (value, format) in [
                ("text", LogFormat::Text),
                ("pretty", LogFormat::Text),
                ("json", LogFormat::Json),
            ] {
                jail.set_env("CROCHET_LOG_FORMAT", value);
                assert_eq!(Config::load(None).unwrap().log_format, format);
            }
            jail.set_env("CROCHET_LOG_FORMAT", "xml");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn unknown_toml_keys_and_bad_values_are_errors() {
        Jail::expect_with(|jail| {
            jail.create_file("crochet.toml", "pow_dificulty = 6\n")?;
            assert!(Config::load(None).is_err());
            jail.create_file("other.toml", "environment = \"staging\"\n")?;
            assert!(Config::load(Some(Path::new("other.toml"))).is_err());
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn server_limits_from_file() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().server.max_connections, 4096);
            jail.create_file(
                "crochet.toml",
                "[server]\nheader_read_timeout_ms = 500\nmax_connections = 12\n",
            )?;
            let c = Config::load(None).unwrap();
            assert_eq!(c.server.header_read_timeout_ms, 500);
            assert_eq!(c.server.max_connections, 12);
            assert_eq!(c.server.idle_timeout_ms, 60_000);
            jail.create_file("crochet.toml", "[server]\nidle_timeout = 5\n")?;
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn production_refuses_unsafe_settings() {
        let mut c = Config {
            environment: Environment::Production,
            ..Config::default()
        };
        let err = c.check_production().unwrap_err().to_string();
        assert!(err.contains("CROCHET_PAYMENT_PROVIDER"), "{err}");
        c.payment_provider = PaymentProviderKind::Relay;
        assert!(
            c.check_production()
                .unwrap_err()
                .to_string()
                .contains("CROCHET_ENCRYPTION_KEY")
        );
        c.encryption_key = Some(crate::secrets::MasterKey::generate().to_base64());
        c.allow_private_endpoints = Some(true);
        assert!(
            c.check_production()
                .unwrap_err()
                .to_string()
                .contains("allow_private_endpoints")
        );
        c.allow_private_endpoints = None;
        c.check_production().unwrap();
        assert!(!c.allow_private_endpoints());
        assert_eq!(c.pow_difficulty(), 5);
    }

    #[test]
    fn admin_token_from_env_or_a_trimmed_file_never_both() {
        Jail::expect_with(|jail| {
            assert!(Config::load(None).unwrap().admin_token().unwrap().is_none());
            jail.create_file("admin.token", "  s3cret-from-a-file\n")?;
            jail.set_env("CROCHET_ADMIN_TOKEN_FILE", "admin.token");
            let c = Config::load(None).unwrap();
            assert_eq!(
                c.admin_token().unwrap().unwrap().expose(),
                "s3cret-from-a-file"
            );
            jail.set_env("CROCHET_ADMIN_TOKEN", "s3cret-from-the-env");
            let err = Config::load(None).unwrap().admin_token().unwrap_err();
            assert!(
                err.to_string().contains("CROCHET_ADMIN_TOKEN_FILE"),
                "{err}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CROCHET_ADMIN_TOKEN", "s3cret-from-the-env");
            let c = Config::load(None).unwrap();
            assert_eq!(
                c.admin_token().unwrap().unwrap().expose(),
                "s3cret-from-the-env"
            );
            // Never shown: not by the configuration's Debug, not by the secret's.
            let shown = format!("{c:?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("[redacted]"));
            jail.set_env("CROCHET_ADMIN_TOKEN", "   ");
            assert!(Config::load(None).unwrap().admin_token().is_err());
            Ok(())
        });
        let missing = Config {
            admin_token_file: Some("/nonexistent/admin.token".into()),
            ..Config::default()
        };
        let err = missing.admin_token().unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
    }

    #[test]
    fn production_refuses_a_short_admin_token() {
        let mut c = Config {
            environment: Environment::Production,
            payment_provider: PaymentProviderKind::Relay,
            encryption_key: Some(crate::secrets::MasterKey::generate().to_base64()),
            admin_token: Some(Secret::new("a".repeat(MIN_ADMIN_TOKEN_CHARS - 1))),
            ..Config::default()
        };
        let err = c.check_production().unwrap_err().to_string();
        assert!(err.contains("CROCHET_ADMIN_TOKEN"), "{err}");
        c.admin_token = Some(Secret::new("a".repeat(MIN_ADMIN_TOKEN_CHARS)));
        c.check_production().unwrap();
        c.environment = Environment::Development;
        c.admin_token = Some(Secret::new("short"));
        c.check_production().unwrap();
        c.admin_token_file = Some("admin.token".into());
        assert!(
            c.check_production().is_err(),
            "both set is refused everywhere"
        );
    }

    #[test]
    fn dev_key_sits_beside_the_sqlite_file() {
        let c = Config {
            database_url: Some("sqlite:///var/lib/crochet/main.db?mode=rwc".into()),
            ..Config::default()
        };
        assert_eq!(
            c.dev_key_path(),
            PathBuf::from("/var/lib/crochet/main.db.key")
        );
        let pg = Config {
            database_url: Some("postgres://localhost/db".into()),
            ..Config::default()
        };
        assert_eq!(pg.dev_key_path(), PathBuf::from("crochet.key"));
    }
}
