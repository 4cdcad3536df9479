//! Read-through caches for the gateway's hot path, and the bus that keeps them honest.
//!
//! A paid or free call needs the caller's API key and the listing with its decrypted
//! endpoint. Reading both from the database on every call costs two round trips (and,
//! on SQLite, two hops to the driver's worker threads), which capped the gateway far
//! below a plain reverse proxy. So both are kept in memory, and every write that could
//! change them publishes an [`Invalidation`] on the [`Bus`]:
//!
//! - the writing instance drops the entries before the write's HTTP response is sent;
//! - other instances hear of it through Redis pub/sub (when `CROCHET_REDIS_URL` is set)
//!   or PostgreSQL `LISTEN/NOTIFY` (otherwise, on PostgreSQL); a single SQLite host
//!   needs no channel at all;
//! - while an instance is not subscribed (starting, or its connection to the channel is
//!   lost) its caches are bypassed and every lookup reads the database, and they are
//!   emptied when the subscription comes back, because messages may have been missed.
//!
//! Revoking a key, suspending a listing or an agent, or rotating a signing secret
//! therefore takes effect on every instance within one message delivery. Entries also
//! expire after [`ENTRY_TTL`], which bounds staleness should a message ever be lost in
//! flight.
//!
//! A fill that raced an invalidation is discarded: each cache has a generation counter,
//! read before the database query and compared before the insert.
//!
//! Each cache counts its lookups by name (`crochet_cache_lookups_total`: hit, miss, or
//! bypass while the bus is not live); the bus sets `crochet_cache_bus_live` and counts
//! its Redis failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{Backend, Database};
use crate::metrics::{self, CacheMetrics, RedisWhere};

/// How long a cached entry is trusted without a message saying otherwise.
pub const ENTRY_TTL: Duration = Duration::from_secs(30);

/// Most entries one cache holds; a full cache is emptied rather than evicted one by one.
const MAX_ENTRIES: usize = 100_000;

/// PostgreSQL channel of the invalidation messages.
const PG_CHANNEL: &str = "crochet_invalidate";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// A listing or its endpoint (by listing id).
    Listing(String),
    /// An API key (by key id).
    ApiKey(String),
    /// Everything that belongs to a profile: its API keys and its listings (by profile
    /// id), when the profile's standing changes (an operator suspends or reinstates it).
    Profile(String),
    /// Anything: drop every entry.
    All,
}

impl Invalidation {
    fn encode(&self) -> String {
        match self {
            Self::Listing(id) => format!("l:{id}"),
            Self::ApiKey(id) => format!("k:{id}"),
            Self::Profile(id) => format!("p:{id}"),
            Self::All => "*".into(),
        }
    }

    fn decode(s: &str) -> Self {
        match s.split_once(':') {
            Some(("l", id)) => Self::Listing(id.into()),
            Some(("k", id)) => Self::ApiKey(id.into()),
            Some(("p", id)) => Self::Profile(id.into()),
            // Unknown messages (a newer peer) are treated as "everything changed".
            _ => Self::All,
        }
    }
}

type Subscriber = Box<dyn Fn(&Invalidation) + Send + Sync>;

/// Delivers invalidations to this instance's caches and to its peers.
#[derive(Clone)]
pub struct Bus(Arc<BusInner>);

struct BusInner {
    subscribers: RwLock<Vec<Subscriber>>,
    /// Whether this instance hears every peer's messages (always true without peers).
    subscribed: AtomicBool,
    remote: Remote,
    /// Scopes messages to instances of one database.
    scope: String,
    /// Dropped or set when the bus closes, which ends the subscriber task.
    closed: tokio::sync::watch::Sender<bool>,
}

// One per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Remote {
    /// One process owns the database (SQLite without Redis).
    None,
    Redis {
        client: redis::Client,
        publisher: tokio::sync::OnceCell<redis::aio::MultiplexedConnection>,
        channel: String,
    },
    Postgres {
        db: Database,
        url: String,
    },
}

impl Bus {
    /// A bus for a host that shares its database with nobody (tests, single SQLite host).
    pub fn local() -> Self {
        Self::with_remote(Remote::None, String::new())
    }

    /// The bus a host on `db` uses: Redis when `redis_url` is given, PostgreSQL
    /// notifications on PostgreSQL, local otherwise. Starts the subscriber task.
    pub async fn connect(
        db: &Database,
        database_url: &str,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let scope = database_scope(db, database_url).await?;
        let remote = match (redis_url, db.backend()) {
            (Some(url), _) => Remote::Redis {
                client: redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("invalid CROCHET_REDIS_URL: {e}"))?,
                publisher: tokio::sync::OnceCell::new(),
                channel: format!("crochet:invalidate:{scope}"),
            },
            (None, Backend::Postgres) => Remote::Postgres {
                db: db.clone(),
                url: database_url.to_owned(),
            },
            (None, Backend::Sqlite) => Remote::None,
        };
        let bus = Self::with_remote(remote, scope);
        let weak = Arc::downgrade(&bus.0);
        if !matches!(bus.0.remote, Remote::None) {
            bus.0.subscribed.store(false, Ordering::SeqCst);
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let closed = bus.0.closed.subscribe();
            tokio::spawn(async move {
                let mut closed = closed;
                tokio::select! {
                    () = listen(weak, ready_tx) => {}
                    _ = closed.wait_for(|c| *c) => {}
                }
            });
            // Serve without caches rather than wait forever for the channel.
            let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
        }
        Ok(bus)
    }

    fn with_remote(remote: Remote, scope: String) -> Self {
        metrics::cache_bus_live(true);
        Self(Arc::new(BusInner {
            subscribers: RwLock::new(Vec::new()),
            subscribed: AtomicBool::new(true),
            remote,
            scope,
            closed: tokio::sync::watch::channel(false).0,
        }))
    }

    /// Names the database this bus is scoped to (for keys shared through Redis).
    pub fn scope(&self) -> &str {
        &self.0.scope
    }

    /// Ends the subscription (at shutdown).
    pub fn close(&self) {
        self.0.closed.send_replace(true);
    }

    /// Whether caches may answer: this instance is hearing its peers' messages.
    pub fn is_live(&self) -> bool {
        self.0.subscribed.load(Ordering::Acquire)
    }

    /// Registers a cache's handler.
    pub fn subscribe(&self, f: impl Fn(&Invalidation) + Send + Sync + 'static) {
        if let Ok(mut subs) = self.0.subscribers.write() {
            subs.push(Box::new(f));
        }
    }

    /// Applies `what` here at once, then tells the peers. Call after the write commits.
    pub async fn publish(&self, what: Invalidation) {
        self.0.deliver(&what);
        let payload = format!("{}|{}", self.0.scope, what.encode());
        let sent = match &self.0.remote {
            Remote::None => Ok(()),
            Remote::Redis {
                client,
                publisher,
                channel,
            } => async {
                let conn = publisher
                    .get_or_try_init(|| client.get_multiplexed_async_connection())
                    .await?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(&payload)
                    .query_async::<i64>(&mut conn.clone())
                    .await
                    .map(drop)
            }
            .await
            .map_err(|e| e.to_string()),
            // Selected through a subquery: the Any driver cannot decode pg_notify's `void`.
            Remote::Postgres { db, .. } => {
                sqlx::query("SELECT 1 AS sent FROM (SELECT pg_notify($1, $2)) AS n")
                    .bind(PG_CHANNEL)
                    .bind(&payload)
                    .execute(db.pool())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(error) = sent {
            if matches!(self.0.remote, Remote::Redis { .. }) {
                metrics::redis_error(RedisWhere::BusPublish);
            }
            // Peers that miss this fall back on ENTRY_TTL; a peer whose own subscription
            // broke has already stopped trusting its caches.
            tracing::warn!(%error, "could not publish a cache invalidation to other instances");
        }
    }
}

impl BusInner {
    fn deliver(&self, what: &Invalidation) {
        if let Ok(subs) = self.subscribers.read() {
            for f in subs.iter() {
                f(what);
            }
        }
    }

    fn receive(&self, payload: &str) {
        if let Some((scope, what)) = payload.split_once('|')
            && scope == self.scope
        {
            self.deliver(&Invalidation::decode(what));
        }
    }

    fn set_subscribed(&self, live: bool) {
        // Either way the caches may hold what a missed message would have dropped.
        self.deliver(&Invalidation::All);
        self.subscribed.store(live, Ordering::Release);
        metrics::cache_bus_live(live);
    }
}

/// Names the database, so that instances sharing a Redis but not a database ignore
/// each other: the SQLite file's path, or the PostgreSQL database and schema.
async fn database_scope(db: &Database, url: &str) -> anyhow::Result<String> {
    Ok(match db.backend() {
        Backend::Sqlite => {
            let path = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            std::fs::canonicalize(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.to_owned())
        }
        Backend::Postgres => {
            sqlx::query_scalar::<_, String>("SELECT current_database() || '.' || current_schema()")
                .fetch_one(db.pool())
                .await?
        }
    })
}

/// Keeps this instance subscribed, reconnecting with backoff; ends with the bus.
async fn listen(bus: std::sync::Weak<BusInner>, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(inner) = bus.upgrade() else { return };
        let result = match &inner.remote {
            Remote::None => return,
            Remote::Redis {
                client, channel, ..
            } => listen_redis(&bus, client.clone(), channel.clone(), &mut ready).await,
            Remote::Postgres { url, .. } => listen_postgres(&bus, url.clone(), &mut ready).await,
        };
        drop(inner);
        let Some(inner) = bus.upgrade() else { return };
        if inner.subscribed.load(Ordering::Acquire) {
            backoff = Duration::from_millis(100);
        }
        inner.set_subscribed(false);
        if let Err(error) = result {
            if matches!(inner.remote, Remote::Redis { .. }) {
                metrics::redis_error(RedisWhere::BusSubscribe);
            }
            tracing::warn!(%error, "cache invalidation channel lost; caches bypassed until it is back");
        }
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_redis(
    bus: &std::sync::Weak<BusInner>,
    client: redis::Client,
    channel: String,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    went_live(bus, ready);
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Some(inner) = bus.upgrade() else {
            return Ok(());
        };
        if let Ok(payload) = msg.get_payload::<String>() {
            inner.receive(&payload);
        }
    }
    anyhow::bail!("Redis subscription ended")
}

async fn listen_postgres(
    bus: &std::sync::Weak<BusInner>,
    url: String,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(PG_CHANNEL).await?;
    went_live(bus, ready);
    loop {
        // `None`: the connection dropped. Messages may have been missed meanwhile, so
        // the caller empties the caches before subscribing again.
        let notification = listener.try_recv().await?;
        let Some(inner) = bus.upgrade() else {
            return Ok(());
        };
        match notification {
            Some(n) => inner.receive(n.payload()),
            None => anyhow::bail!("PostgreSQL listener connection lost"),
        }
    }
}

fn went_live(
    bus: &std::sync::Weak<BusInner>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) {
    if let Some(inner) = bus.upgrade() {
        inner.set_subscribed(true);
    }
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
}

/// A map from a lookup key to a value, trusted for [`ENTRY_TTL`] while the bus is live.
pub struct Cache<V> {
    entries: RwLock<HashMap<String, (V, Instant)>>,
    generation: AtomicU64,
    bus: Bus,
    metrics: CacheMetrics,
}

/// Taken before a database read; an insert with a stale ticket is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// A cache, named `name` in metrics, whose entries `drop_on` says to drop for each
    /// invalidation.
    pub fn new(
        bus: &Bus,
        name: &'static str,
        drop_on: impl Fn(&Invalidation, &V) -> bool + Send + Sync + 'static,
    ) -> Arc<Self> {
        let cache = Arc::new(Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            bus: bus.clone(),
            metrics: CacheMetrics::new(name),
        });
        let weak = Arc::downgrade(&cache);
        bus.subscribe(move |what| {
            if let Some(cache) = weak.upgrade() {
                cache.invalidate(|v| matches!(what, Invalidation::All) || drop_on(what, v));
            }
        });
        cache
    }

    /// The cached value, if the bus is live and the entry is fresh.
    pub fn get(&self, key: &str) -> Option<V> {
        if !self.bus.is_live() {
            self.metrics.bypass();
            return None;
        }
        let found = self.entries.read().ok().and_then(|entries| {
            let (value, at) = entries.get(key)?;
            (at.elapsed() < ENTRY_TTL).then(|| value.clone())
        });
        match found {
            Some(_) => self.metrics.hit(),
            None => self.metrics.miss(),
        }
        found
    }

    /// The bus this cache listens on (to publish a write's invalidation).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Marks the start of a database read whose result may be inserted.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    /// Caches what a read begun at `ticket` found, unless something changed since.
    pub fn insert(&self, ticket: Ticket, key: String, value: V) {
        if !self.bus.is_live() {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        // Checked under the lock, which invalidations also take.
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    fn invalidate(&self, drop: impl Fn(&V) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            entries.retain(|_, (v, _)| !drop(v));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing_cache(bus: &Bus) -> Arc<Cache<String>> {
        Cache::new(
            bus,
            "unit_listings",
            |what, v: &String| matches!(what, Invalidation::Listing(id) if id == v),
        )
    }

    #[tokio::test]
    async fn invalidation_drops_matching_entries_only() {
        let bus = Bus::local();
        let cache = listing_cache(&bus);
        let t = cache.ticket();
        cache.insert(t, "a".into(), "L1".into());
        cache.insert(t, "slug-a".into(), "L1".into());
        cache.insert(t, "b".into(), "L2".into());
        bus.publish(Invalidation::Listing("L1".into())).await;
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("slug-a"), None);
        assert_eq!(cache.get("b").as_deref(), Some("L2"));
        bus.publish(Invalidation::All).await;
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn a_fill_that_raced_an_invalidation_is_dropped() {
        let bus = Bus::local();
        let cache = listing_cache(&bus);
        let before_read = cache.ticket();
        bus.publish(Invalidation::Listing("other".into())).await;
        cache.insert(before_read, "a".into(), "L1".into());
        assert_eq!(cache.get("a"), None);
        cache.insert(cache.ticket(), "a".into(), "L1".into());
        assert_eq!(cache.get("a").as_deref(), Some("L1"));
    }

    #[test]
    fn a_bus_that_is_not_subscribed_bypasses_its_caches() {
        let bus = Bus::local();
        let cache = listing_cache(&bus);
        cache.insert(cache.ticket(), "a".into(), "L1".into());
        bus.0.set_subscribed(false);
        assert_eq!(cache.get("a"), None);
        cache.insert(cache.ticket(), "a".into(), "L1".into());
        bus.0.set_subscribed(true);
        assert_eq!(cache.get("a"), None, "emptied while not subscribed");
    }

    #[test]
    fn messages_round_trip_and_other_scopes_are_ignored() {
        for m in [
            Invalidation::Listing("x".into()),
            Invalidation::ApiKey("k".into()),
            Invalidation::Profile("p".into()),
            Invalidation::All,
        ] {
            assert_eq!(Invalidation::decode(&m.encode()), m);
        }
        let bus = Bus::with_remote(Remote::None, "db1".into());
        let cache = listing_cache(&bus);
        cache.insert(cache.ticket(), "a".into(), "L1".into());
        bus.0.receive("db2|l:L1");
        assert!(cache.get("a").is_some());
        bus.0.receive("db1|l:L1");
        assert!(cache.get("a").is_none());
    }
}
