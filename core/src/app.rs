//! Application wiring: shared state, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, CatalogSettings, Category, DEFAULT_CATEGORIES};
use crate::config::PluginsConfig;
use crate::config::{Config, Environment};
use crate::identity::keys::ApiKeyHasher;
use crate::identity::{Identity, IdentitySettings};
use crate::plugins::inventory::PluginInfo;
use crate::plugins::policy::PolicyChain;
use crate::plugins::scorer::{Scorer, ScorerSlot};
use crate::plugins::{Counters, HostSettings, LoadError, PluginHost, PluginLimits};
use crate::secrets::{Cipher, MasterKey};
use crate::seller_client::upstream::{EndpointPolicy, UpstreamClient};
use crate::storage::Database;
use crate::storage::cache::Bus;

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub db: Database,
    pub identity: Identity,
    pub catalog: Catalog,
    pub payments: crate::payments::Payments,
    pub gateway: crate::gateway::Gateway,
    /// Signs receipts; previous keys stay published during a master-key rotation.
    pub receipt_signer: crate::ledger::receipts::ReceiptSigner,
    pub previous_receipt_keys: Vec<crate::ledger::receipts::ReceiptSigner>,
    /// The one pooled client for seller endpoints.
    pub upstream: UpstreamClient,
    /// Absolute base URL, no trailing slash.
    pub public_url: String,
    /// Invalidates the hot-path caches here and on every other instance.
    pub bus: Bus,
    /// The plugin sandbox and the policy plugins every call goes through.
    pub plugins: Plugins,
    /// Reviews and the Crochet Score.
    pub reputation: crate::reputation::Reputation,
    /// The operator's routes; `None` (and not mounted) without an operator credential.
    pub admin: Option<crate::admin::Admin>,
}

/// The plugin runtime, the policy chain and the scorer in service.
#[derive(Clone)]
pub struct Plugins {
    pub host: PluginHost,
    pub policies: PolicyChain,
    /// The Crochet Score formula (`plugins.scorer`).
    pub scorer: ScorerSlot,
    /// One reload at a time.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

/// What a plugin reload put in service.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// The plugins now serving: the policies in order, then the scorer.
    pub plugins: Vec<PluginInfo>,
    /// `[plugins]` settings that changed in the configuration but take effect only on a
    /// restart (the sandbox's limits and compile cache are fixed for the process).
    pub restart_required_for: Vec<&'static str>,
    /// Time spent reading, compiling and trying the new plugins.
    pub took_ms: u64,
}

impl Plugins {
    /// Builds the sandbox (counters in Redis when configured) and loads the policy
    /// plugins and the scorer of the configuration, compiling them or taking them from
    /// the cache.
    ///
    /// Each policy that exports `validate-config` is asked about its configuration, and
    /// each is tried on sample calls. A policy that refuses its configuration, or
    /// reports on a sample call that it cannot work with it (a 5xx refusal), stops the
    /// start; a trap or timeout is only logged at start-up (the plugin's `failure`
    /// setting decides what its failures do to calls). A reload refuses both.
    pub async fn load(config: &Config, keys: &Keys, bus: &Bus) -> anyhow::Result<Self> {
        let p = &config.plugins;
        let counters = match &config.redis_url {
            Some(url) => Counters::redis(url, &format!("crochet:counters:{}", bus.scope()))?,
            None => Counters::memory(),
        };
        if let Err(error) = counters.connect().await {
            // Plugins that count fail as configured until Redis is back.
            tracing::warn!(%error, "cannot reach Redis for plugin counters yet");
        }
        let host = PluginHost::new(HostSettings {
            limits: limits(p),
            cache_dir: config.plugin_cache_dir(),
            cache_key: keys.current.derive("plugin-cache"),
            counters,
            trace: None,
        })?;
        tracing::info!("{}", config.policy_chain_summary());
        let policies = PolicyChain::prepare(&host, &config.policy_plugins(), &p.forward_headers)
            .await
            .with_context(|| {
                format!(
                    "cannot load the policy plugins ([[plugins.policy]] in {})",
                    config.file_name()
                )
            })?;
        let scorer = Scorer::prepare(&host, &config.scorer_source(), p.scorer_sha256.as_deref())
            .await
            .with_context(|| {
                format!(
                    "cannot load the scorer plugin (plugins.scorer in {})",
                    config.file_name()
                )
            })?;
        match policies.try_out().await {
            Ok(()) => {}
            // The plugin itself says it cannot work as configured: do not serve with it.
            Err(error @ (LoadError::Misconfigured { .. } | LoadError::ConfigRejected { .. })) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "cannot start with the policy plugins ([[plugins.policy]] in {})",
                    config.file_name()
                )));
            }
            Err(error) => tracing::warn!(%error, "a policy plugin fails on a sample call"),
        }
        if let Err(error) = scorer.try_out().await {
            tracing::warn!(%error, "the scorer plugin fails on a sample call");
        }
        let plugins = Self {
            host,
            policies: PolicyChain::new(policies),
            scorer: ScorerSlot::new(scorer),
            reloading: Arc::default(),
        };
        plugins.log_loaded("start");
        Ok(plugins)
    }

    /// The plugins in service: the policies in order, then the scorer.
    pub fn describe(&self) -> Vec<PluginInfo> {
        let mut all = self.policies.describe();
        all.push(self.scorer.current().info.clone());
        all
    }

    fn log_loaded(&self, event: &'static str) {
        for info in self.describe() {
            info.log(self.host.limits(), event);
        }
    }

    /// Puts the policies and the scorer of `config` in service in place of the running
    /// ones: compiles them on the blocking pool, tries each on sample calls, and only then
    /// swaps. Calls already running finish on the plugins they started with. On any
    /// error nothing changes. Counters are the host's, kept across reloads by plugin
    /// name (in memory or in Redis alike), so a reloaded rate limit keeps counting.
    pub async fn reload(&self, config: &Config) -> Result<ReloadReport, LoadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let started = std::time::Instant::now();
        let policies = PolicyChain::prepare(
            &self.host,
            &config.policy_plugins(),
            &config.plugins.forward_headers,
        )
        .await?;
        policies.try_out().await?;
        let scorer = Scorer::prepare(
            &self.host,
            &config.scorer_source(),
            config.plugins.scorer_sha256.as_deref(),
        )
        .await?;
        scorer.try_out().await?;
        self.policies.install(policies);
        self.scorer.install(scorer);
        self.log_loaded("reload");
        let restart_required_for = restart_required_for(self, &config.plugins);
        if !restart_required_for.is_empty() {
            tracing::warn!(
                settings = ?restart_required_for,
                "changed plugin settings take effect only after a restart"
            );
        }
        Ok(ReloadReport {
            plugins: self.describe(),
            restart_required_for,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// The sandbox limits of `[plugins]`.
fn limits(p: &PluginsConfig) -> PluginLimits {
    PluginLimits {
        timeout: std::time::Duration::from_millis(p.timeout_ms),
        max_memory_bytes: p.max_memory_bytes,
        max_output_bytes: p.max_output_bytes,
        max_component_bytes: p.max_component_bytes,
    }
}

/// The `[plugins]` settings that differ from those the sandbox was built with.
fn restart_required_for(plugins: &Plugins, new: &PluginsConfig) -> Vec<&'static str> {
    let (now, next) = (plugins.host.limits(), limits(new));
    [
        ("timeout_ms", now.timeout != next.timeout),
        (
            "max_memory_bytes",
            now.max_memory_bytes != next.max_memory_bytes,
        ),
        (
            "max_output_bytes",
            now.max_output_bytes != next.max_output_bytes,
        ),
        (
            "max_component_bytes",
            now.max_component_bytes != next.max_component_bytes,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Builds every service; fails only when the payment provider or the operator
    /// credential is misconfigured. Of the operator credential only its hash is kept.
    pub fn new(
        mut config: Config,
        db: Database,
        keys: &Keys,
        public_url: String,
        bus: Bus,
        plugins: Plugins,
        x402: Option<crate::payments::x402::X402>,
    ) -> anyhow::Result<Self> {
        let key = &keys.current;
        let domain = public_url
            .split_once("://")
            .map_or(public_url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_owned();
        let identity = Identity::new(
            db.clone(),
            ApiKeyHasher::with_previous(
                key.derive("api-key-hash"),
                keys.previous
                    .iter()
                    .map(|k| k.derive("api-key-hash"))
                    .collect(),
            ),
            IdentitySettings {
                pow_difficulty: config.pow_difficulty(),
                challenge_ttl_ms: i64::try_from(config.challenge_ttl_seconds.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                domain,
            },
            &bus,
        );
        let policy = EndpointPolicy {
            allow_private: config.allow_private_endpoints(),
            require_https: config.environment == Environment::Production,
        };
        let upstream = UpstreamClient::new(policy, config.dns_overrides.clone());
        let catalog = Catalog::new(
            db.clone(),
            Arc::new(Cipher::new(key, &keys.previous)),
            upstream.clone(),
            CatalogSettings {
                public_url: public_url.clone(),
                pow_difficulty: config.pow_difficulty(),
                challenge_ttl_ms: i64::try_from(config.challenge_ttl_seconds.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                categories: categories(&config),
            },
            &bus,
            plugins.host.clone(),
        );
        let payments = crate::payments::Payments::from_config(&config, &db, &public_url)
            .context("cannot set up the payment provider")?
            .with_x402(x402);
        let receipt_signer = crate::ledger::receipts::ReceiptSigner::new(key);
        let recorder = crate::gateway::recorder::Recorder::start(db.clone());
        let admin = config.admin_token()?.map(|token| {
            let credential = crate::admin::AdminCredential::new(token.expose());
            crate::admin::Admin::new(db.clone(), credential, &bus, Arc::new(recorder.clone()))
        });
        config.admin_token = None;
        let reputation = crate::reputation::Reputation::new(
            db.clone(),
            plugins.scorer.clone(),
            (&config.reputation).into(),
            Arc::new(recorder.clone()),
        );
        let gateway = crate::gateway::Gateway::new(crate::gateway::GatewayParts {
            db: db.clone(),
            catalog: catalog.clone(),
            identity: identity.clone(),
            payments: payments.clone(),
            upstream: upstream.clone(),
            receipts: receipt_signer.clone(),
            issuer: public_url.clone(),
            plugins: plugins.host.clone(),
            policies: plugins.policies.clone(),
            recorder,
            reputation: reputation.clone(),
            recovery: recovery_settings(&config)?,
        });
        Ok(Self(Arc::new(AppInner {
            config,
            db,
            identity,
            catalog,
            payments,
            gateway,
            receipt_signer,
            previous_receipt_keys: keys
                .previous
                .iter()
                .map(crate::ledger::receipts::ReceiptSigner::new)
                .collect(),
            upstream,
            public_url,
            bus,
            plugins,
            reputation,
            admin,
        })))
    }
}

impl AppState {
    /// Runs the policy plugins on an unauthenticated identity route (per-address rate
    /// limits), before any work is done for the caller.
    /// `headers` are the request headers the policies are shown.
    pub async fn guard_auth_route(
        &self,
        route: &'static str,
        peer: SocketAddr,
        headers: Vec<(String, String)>,
    ) -> Result<(), crate::http::error::ApiError> {
        if self.plugins.policies.is_empty() {
            return Ok(());
        }
        let mut ctx = crate::plugins::policy::context(
            crate::plugins::CallKind::Auth,
            route,
            peer.ip().to_string(),
        );
        ctx.headers = headers;
        self.plugins
            .policies
            .check(&mut ctx, None)
            .await
            .map_err(|e| crate::gateway::GatewayError::Policy(e).into())
    }

    /// Reads the configuration again from where it came (the same file and environment)
    /// and reloads the plugins it names ([`Plugins::reload`]). Only `[plugins]` is
    /// taken from it; every other setting needs a restart.
    pub async fn reload_plugins(&self) -> Result<ReloadReport, LoadError> {
        let file = self.config.file.clone();
        let config = tokio::task::spawn_blocking(move || Config::load(file.as_deref()))
            .await
            .map_err(|e| LoadError::Config(e.to_string()))?
            .map_err(|e| LoadError::Config(e.to_string()))?;
        self.plugins.reload(&config).await
    }

    /// [`reload_plugins`](Self::reload_plugins) on behalf of `operator`, written to the
    /// audit log (when the admin API is on) whether it succeeded or was refused.
    pub async fn reload_plugins_as(
        &self,
        operator: &crate::admin::Operator,
    ) -> Result<ReloadReport, crate::http::error::ApiError> {
        let before = Some(serde_json::json!({"plugins": self.plugins.describe()}));
        let outcome = self.reload_plugins().await;
        if let Some(admin) = &self.admin {
            let (action, after) = match &outcome {
                Ok(report) => (
                    "plugins.reload",
                    Some(serde_json::json!({"plugins": report.plugins})),
                ),
                Err(e) => (
                    "plugins.reload_refused",
                    Some(serde_json::json!({"error": e.to_string()})),
                ),
            };
            let entry = crate::admin::AuditEntry {
                action,
                target_type: "plugins",
                target_id: "plugins",
                reason: None,
                before,
                after,
            };
            admin.record(operator, entry).await?;
        }
        match &outcome {
            Ok(report) => tracing::info!(
                actor = %operator.actor,
                plugins = report.plugins.len(),
                took_ms = report.took_ms,
                "plugins reloaded"
            ),
            Err(error) => tracing::error!(
                actor = %operator.actor,
                %error,
                "plugin reload refused; the running plugins go on serving"
            ),
        }
        Ok(outcome?)
    }

    /// The published receipt verification keys, current first.
    pub fn receipt_keys(&self) -> Vec<crate::ledger::receipts::PublicReceiptKey> {
        let key = |s: &crate::ledger::receipts::ReceiptSigner, status| {
            crate::ledger::receipts::PublicReceiptKey {
                key_id: s.key_id().to_owned(),
                algorithm: "ed25519",
                public_key: s.public_key_hex(),
                status,
            }
        };
        std::iter::once(key(&self.receipt_signer, "current"))
            .chain(
                self.previous_receipt_keys
                    .iter()
                    .map(|s| key(s, "previous")),
            )
            .collect()
    }
}

/// The `[gateway]` recovery settings, and the test-only fault point (development only).
fn recovery_settings(
    config: &Config,
) -> anyhow::Result<crate::gateway::recovery::RecoverySettings> {
    use crate::gateway::recovery::{FaultPoint, RecoverySettings};
    let fault = match std::env::var(FaultPoint::ENV) {
        Err(_) => None,
        Ok(_) if config.environment == Environment::Production => {
            anyhow::bail!(
                "{} is a test setting and is refused in production",
                FaultPoint::ENV
            )
        }
        Ok(name) => Some(
            FaultPoint::parse(&name)
                .with_context(|| format!("{}: unknown fault point `{name}`", FaultPoint::ENV))?,
        ),
    };
    if let Some(point) = fault {
        tracing::warn!(?point, "a test fault point is armed: the host aborts there");
    }
    Ok(RecoverySettings {
        lease_grace: std::time::Duration::from_secs(config.gateway.lease_grace_seconds),
        interrupted_after: std::time::Duration::from_secs(config.gateway.interrupted_after_seconds),
        fault,
    })
}

/// The built-in categories followed by the operator's (an operator entry with a built-in
/// slug replaces it).
fn categories(config: &Config) -> Vec<Category> {
    let mut all: Vec<Category> = DEFAULT_CATEGORIES
        .iter()
        .filter(|(slug, _, _)| !config.categories.iter().any(|c| c.slug == *slug))
        .map(|(slug, name, description)| Category {
            slug: (*slug).into(),
            name: (*name).into(),
            description: (*description).into(),
        })
        .collect();
    all.extend(config.categories.iter().map(|c| Category {
        slug: c.slug.clone(),
        name: c.name.clone(),
        description: c.description.clone(),
    }));
    all
}

/// The current master key and the ones being rotated out.
pub struct Keys {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

/// The master keys: configured, or in development generated once beside the database.
pub fn master_keys(config: &Config) -> anyhow::Result<Keys> {
    let current = match (&config.encryption_key, config.environment) {
        (Some(encoded), _) => MasterKey::from_base64(encoded)?,
        (None, Environment::Development) => MasterKey::load_or_create(&config.dev_key_path())?,
        (None, Environment::Production) => {
            anyhow::bail!("CROCHET_ENCRYPTION_KEY is required in production")
        }
    };
    let previous = config
        .previous_encryption_keys
        .iter()
        .map(|k| MasterKey::from_base64(k).context("previous_encryption_keys"))
        .collect::<anyhow::Result<_>>()?;
    Ok(Keys { current, previous })
}

/// Re-encrypts every secret at rest under the current master key (`crochet rotate-secrets`).
pub async fn rotate_secrets(config: Config) -> anyhow::Result<usize> {
    let keys = master_keys(&config)?;
    let db = open_database(&config).await?;
    let public_url = config.public_url(config.bind);
    let bus = Bus::connect(&db, config.database_url(), config.redis_url.as_deref()).await?;
    let host = PluginHost::new(HostSettings::default())?;
    let plugins = Plugins {
        scorer: ScorerSlot::new(
            Scorer::prepare(
                &host,
                &config.scorer_source(),
                config.plugins.scorer_sha256.as_deref(),
            )
            .await?,
        ),
        host,
        policies: PolicyChain::default(),
        reloading: Arc::default(),
    };
    let state = AppState::new(config, db, &keys, public_url, bus, plugins, None)?;
    let changed = state.catalog.reencrypt_all().await?;
    state.bus.close();
    state.db.close().await;
    Ok(changed)
}

/// Connects to the configured database and applies its migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    let db = Database::connect(config.database_url())
        .await
        .context("cannot open the database (check CROCHET_DATABASE_URL)")?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

/// A host that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    /// The listener of `GET /metrics`, when `metrics_bind` gives it one of its own.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    /// Set (or dropped) to stop the listeners.
    shutdown: Option<watch::Sender<bool>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Asks the servers to stop accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        self.finish().await
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.task.await.context("server task failed")??;
        // In-flight requests are done: commit the history rows still queued.
        self.state.gateway.flush().await;
        self.state.bus.close();
        self.state.db.close().await;
        Ok(())
    }
}

/// Checks the configuration, opens the database, binds and starts serving in the
/// background. `serve` and the tests both start the host through here.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    config.check_production()?;
    let keys = master_keys(&config)?;
    let db = open_database(&config).await?;
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {} (check CROCHET_BIND)", config.bind))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_bind {
        Some(bind) => Some(TcpListener::bind(bind).await.with_context(|| {
            format!("cannot listen on {bind} for metrics (check CROCHET_METRICS_BIND)")
        })?),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let public_url = config.public_url(addr);
    let bus = Bus::connect(&db, config.database_url(), config.redis_url.as_deref())
        .await
        .context("cannot subscribe to cache invalidations (check CROCHET_REDIS_URL)")?;
    let plugins = Plugins::load(&config, &keys, &bus).await?;
    let x402 = crate::payments::x402::X402::from_config(&config.x402, config.environment)
        .await
        .context("cannot set up x402 (check the CROCHET_X402_* settings)")?;
    let state = AppState::new(config, db, &keys, public_url, bus, plugins, x402)?;
    let router = crate::http::router(state.clone());
    let limits = crate::http::server::Limits::new(&state.config.server);
    let metrics_server = metrics_listener.map(|listener| {
        let router = crate::http::metrics::metrics_router(state.clone());
        (listener, router, limits.clone())
    });

    let (tx, rx) = watch::channel(false);
    let purge = state.identity.clone();
    let reputation = state.reputation.clone();
    let pruner = state.reputation.clone();
    let gateway = state.gateway.clone();
    let task = tokio::spawn(async move {
        let janitor = tokio::spawn(async move {
            // The first round waits a full period: a start-up is no time for
            // housekeeping, and tests that stage old rows must not race it.
            let period = std::time::Duration::from_secs(300);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tick.tick().await;
                if let Err(e) = purge.purge_expired_challenges().await {
                    tracing::warn!(error = %e, "could not purge expired challenges");
                }
                match pruner.prune_snapshots().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(snapshots = n, "pruned old score snapshots"),
                    Err(e) => tracing::warn!(error = %e, "could not prune score snapshots"),
                }
            }
        });
        let refresher = reputation.spawn_refresher();
        let recovery = gateway.spawn_recovery_janitor();
        let stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let main = crate::http::server::serve(listener, router, limits, stop(rx.clone()));
        let result = match metrics_server {
            None => main.await,
            Some((listener, router, limits)) => {
                let metrics = crate::http::server::serve(listener, router, limits, stop(rx));
                let (main, metrics) = tokio::join!(main, metrics);
                main.and(metrics)
            }
        };
        janitor.abort();
        recovery.abort();
        if let Some(refresher) = refresher {
            refresher.abort();
        }
        result
    });
    Ok(Running {
        addr,
        metrics_addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Runs the host until SIGTERM or Ctrl-C, then drains in-flight requests and exits.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    println!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, public_url = %running.state.public_url, "crochet is ready");
    if let Some(metrics) = running.metrics_addr {
        tracing::info!(addr = %metrics, "metrics served at /metrics on their own listener");
    }
    let reloader = reload_on_hangup(running.state.clone());
    shutdown_signal().await;
    reloader.abort();
    tracing::info!("shutting down: draining in-flight requests");
    match tokio::time::timeout(crate::http::SHUTDOWN_GRACE, running.shutdown()).await {
        Ok(result) => result,
        Err(_) => {
            anyhow::bail!("in-flight requests did not finish within the shutdown grace period")
        }
    }
}

/// Reloads the plugins on every SIGHUP (nothing to wait for elsewhere).
fn reload_on_hangup(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP: reload plugins through the admin API");
                return;
            };
            let operator = crate::admin::Operator {
                actor: "signal:SIGHUP".into(),
                client_addr: None,
                request_id: None,
            };
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the plugins");
                // The outcome is logged (and audited) by `reload_plugins_as`.
                let _ = state.reload_plugins_as(&operator).await;
            }
        }
        #[cfg(not(unix))]
        drop(state);
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
