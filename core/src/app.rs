//! Application wiring: shared state, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, Environment};
use crate::identity::keys::ApiKeyHasher;
use crate::identity::{Identity, IdentitySettings};
use crate::secrets::MasterKey;
use crate::storage::Database;

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub db: Database,
    pub identity: Identity,
    /// Absolute base URL, no trailing slash.
    pub public_url: String,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, db: Database, key: &MasterKey, public_url: String) -> Self {
        let domain = public_url
            .split_once("://")
            .map_or(public_url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_owned();
        let identity = Identity::new(
            db.clone(),
            ApiKeyHasher::new(key.derive("api-key-hash")),
            IdentitySettings {
                pow_difficulty: config.pow_difficulty(),
                challenge_ttl_ms: i64::try_from(config.challenge_ttl_seconds.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                domain,
            },
        );
        Self(Arc::new(AppInner {
            config,
            db,
            identity,
            public_url,
        }))
    }
}

/// The master key: configured, or in development generated once beside the database.
pub fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    match (&config.encryption_key, config.environment) {
        (Some(encoded), _) => Ok(MasterKey::from_base64(encoded)?),
        (None, Environment::Development) => Ok(MasterKey::load_or_create(&config.dev_key_path())?),
        (None, Environment::Production) => {
            anyhow::bail!("CROCHET_ENCRYPTION_KEY is required in production")
        }
    }
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
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Asks the server to stop accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.finish().await
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.task.await.context("server task failed")??;
        self.state.db.close().await;
        Ok(())
    }
}

/// Checks the configuration, opens the database, binds and starts serving in the
/// background. `serve` and the tests both start the host through here.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    config.check_production()?;
    let key = master_key(&config)?;
    let db = open_database(&config).await?;
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {} (check CROCHET_BIND)", config.bind))?;
    let addr = listener.local_addr()?;
    let public_url = config.public_url(addr);
    let state = AppState::new(config, db, &key, public_url);
    let router = crate::http::router(state.clone());

    let (tx, rx) = oneshot::channel::<()>();
    let purge = state.identity.clone();
    let task = tokio::spawn(async move {
        let janitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
            loop {
                tick.tick().await;
                if let Err(e) = purge.purge_expired_challenges().await {
                    tracing::warn!(error = %e, "could not purge expired challenges");
                }
            }
        });
        let result = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await;
        janitor.abort();
        result
    });
    Ok(Running {
        addr,
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
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    match tokio::time::timeout(crate::http::SHUTDOWN_GRACE, running.shutdown()).await {
        Ok(result) => result,
        Err(_) => {
            anyhow::bail!("in-flight requests did not finish within the shutdown grace period")
        }
    }
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
