//! Fixed-window counters behind the `counter-add` host import.
//!
//! A counter `key` with window `w` ms lives in window `idx = now_ms / w`; an increment
//! returns the count of window `idx` (this increment included), of window `idx - 1`,
//! and the milliseconds left in window `idx`, which is what a sliding-window rate limit
//! needs. [`Counters::memory`] keeps them in this process; [`Counters::redis`] shares
//! them between gateway instances and lets Redis expire them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::PluginError;
pub use super::bindings::WindowCount;
use crate::metrics::{self, RedisWhere};

/// Where plugin counters live. Cheap to clone.
#[derive(Clone)]
pub enum Counters {
    /// In this process only (single-instance deployments and tests).
    Memory(MemoryCounters),
    /// In Redis, shared by every gateway instance using the same URL and prefix.
    Redis(RedisCounters),
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("Counters::Memory"),
            Self::Redis(r) => write!(f, "Counters::Redis({:?})", r.0.prefix),
        }
    }
}

impl Counters {
    /// Counters kept in this process.
    pub fn memory() -> Self {
        Self::Memory(MemoryCounters::default())
    }

    /// Counters kept in Redis at `url`, under keys `{prefix}:{key}:{window index}`.
    /// Connects lazily, on the first increment, and again after a connection failure.
    pub fn redis(url: &str, prefix: &str) -> Result<Self, PluginError> {
        let client = redis::Client::open(url)
            .map_err(|e| PluginError::Counter(format!("invalid Redis URL: {e}")))?;
        Ok(Self::Redis(RedisCounters(Arc::new(RedisInner {
            client,
            prefix: prefix.to_owned(),
            conn: tokio::sync::Mutex::new(None),
        }))))
    }

    /// Connects to Redis now rather than during the first plugin call (whose time limit
    /// would include the connection). Nothing to do for memory counters.
    pub async fn connect(&self) -> Result<(), PluginError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(r) => r.connection().await.map(drop).map_err(|e| {
                metrics::redis_error(RedisWhere::PluginCounters);
                PluginError::Counter(format!("Redis: {e}"))
            }),
        }
    }

    /// Adds `delta` to `key` in fixed windows of `window_ms` milliseconds and returns
    /// the current and previous window's counts. One atomic round trip with Redis.
    pub async fn add(
        &self,
        key: &str,
        delta: u32,
        window_ms: u64,
    ) -> Result<WindowCount, PluginError> {
        if window_ms == 0 {
            return Err(PluginError::Counter("window_ms must be positive".into()));
        }
        let now = now_ms();
        let idx = now / window_ms;
        let remaining_ms = (idx + 1) * window_ms - now;
        let (current, previous) = match self {
            Self::Memory(m) => m.add(key, u64::from(delta), window_ms, idx, now),
            Self::Redis(r) => r.add(key, delta, window_ms, idx).await?,
        };
        Ok(WindowCount {
            current,
            previous,
            remaining_ms,
        })
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How many increments pass between two sweeps of expired windows.
const PRUNE_EVERY: u32 = 1024;

/// In-process counters.
#[derive(Clone, Default)]
pub struct MemoryCounters(Arc<Mutex<MemoryState>>);

#[derive(Default)]
struct MemoryState {
    /// `{key}:{idx}` → (count, Unix ms after which the window is neither current nor
    /// previous and may go).
    windows: HashMap<String, (u64, u64)>,
    since_prune: u32,
}

impl MemoryCounters {
    fn add(&self, key: &str, delta: u64, window_ms: u64, idx: u64, now: u64) -> (u64, u64) {
        // A poisoned lock only means another thread panicked mid-update of plain
        // integers; the map is still usable.
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.since_prune += 1;
        if state.since_prune >= PRUNE_EVERY {
            state.since_prune = 0;
            state.windows.retain(|_, (_, expires)| *expires > now);
        }
        let expires = idx.saturating_add(2).saturating_mul(window_ms);
        let entry = state
            .windows
            .entry(format!("{key}:{idx}"))
            .or_insert((0, expires));
        entry.0 = entry.0.saturating_add(delta);
        let current = entry.0;
        let previous = match idx.checked_sub(1) {
            Some(prev) => state
                .windows
                .get(&format!("{key}:{prev}"))
                .map_or(0, |(n, _)| *n),
            None => 0,
        };
        (current, previous)
    }
}

/// Counters in Redis.
#[derive(Clone)]
pub struct RedisCounters(Arc<RedisInner>);

struct RedisInner {
    client: redis::Client,
    prefix: String,
    /// The shared connection, dropped after an I/O failure so the next call reconnects.
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

/// Upper bound on connecting to Redis and on one reply.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisCounters {
    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        let mut slot = self.0.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = self
            .0
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn add(
        &self,
        key: &str,
        delta: u32,
        window_ms: u64,
        idx: u64,
    ) -> Result<(u64, u64), PluginError> {
        let current_key = format!("{}:{key}:{idx}", self.0.prefix);
        let previous_key = format!("{}:{key}:{}", self.0.prefix, idx.wrapping_sub(1));
        let result = async {
            let mut conn = self.connection().await?;
            redis::pipe()
                .atomic()
                .cmd("INCRBY")
                .arg(&current_key)
                .arg(delta)
                .cmd("PEXPIRE")
                .arg(&current_key)
                .arg(window_ms.saturating_mul(2))
                .ignore()
                .cmd("GET")
                .arg(&previous_key)
                .query_async::<(u64, Option<u64>)>(&mut conn)
                .await
        }
        .await;
        match result {
            Ok((current, previous)) => {
                Ok((current, if idx == 0 { 0 } else { previous.unwrap_or(0) }))
            }
            Err(e) => {
                metrics::redis_error(RedisWhere::PluginCounters);
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || e.is_timeout()
                {
                    *self.0.conn.lock().await = None;
                }
                Err(PluginError::Counter(format!("Redis: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_counts_within_a_window() {
        let c = Counters::memory();
        let a = c.add("k", 1, 3_600_000).await.unwrap();
        let b = c.add("k", 2, 3_600_000).await.unwrap();
        let other = c.add("other", 5, 3_600_000).await.unwrap();
        // Unless an hour boundary fell between the two calls, they share a window.
        if b.remaining_ms <= a.remaining_ms {
            assert_eq!((a.current, b.current, b.previous), (1, 3, 0));
        }
        assert_eq!(other.current, 5);
        assert!(a.remaining_ms <= 3_600_000);
    }

    #[test]
    fn memory_previous_window_and_pruning() {
        let m = MemoryCounters::default();
        let w = 1000;
        assert_eq!(m.add("k", 3, w, 10, 10_500), (3, 0));
        assert_eq!(m.add("k", 4, w, 10, 10_600), (7, 0));
        // Next window sees the previous one.
        assert_eq!(m.add("k", 1, w, 11, 11_100), (1, 7));
        // Two windows later, the old counts are gone from view.
        assert_eq!(m.add("k", 1, w, 13, 13_100), (1, 0));
        // Force a sweep: every window but the latest expires.
        for _ in 0..PRUNE_EVERY {
            m.add("k", 1, w, 13, 13_200);
        }
        let state = m.0.lock().unwrap();
        assert_eq!(state.windows.len(), 1, "stale windows pruned");
    }

    #[tokio::test]
    async fn zero_window_is_refused() {
        assert!(matches!(
            Counters::memory().add("k", 1, 0).await,
            Err(PluginError::Counter(_))
        ));
    }

    fn redis_url(test: &str) -> Option<String> {
        match std::env::var("CROCHET_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("SKIPPED (Redis) {test}: CROCHET_TEST_REDIS_URL is not set");
                None
            }
        }
    }

    fn random_prefix() -> String {
        format!("crochet-test:{:016x}", rand::random::<u64>())
    }

    #[tokio::test]
    async fn redis_counts_and_shares_between_clients() {
        let Some(url) = redis_url("redis_counts_and_shares_between_clients") else {
            return;
        };
        let prefix = random_prefix();
        let a = Counters::redis(&url, &prefix).unwrap();
        let b = Counters::redis(&url, &prefix).unwrap();
        let w = 3_600_000;
        let first = a.add("k", 2, w).await.unwrap();
        let second = b.add("k", 3, w).await.unwrap();
        // Unless an hour boundary fell between the two calls, they share a window.
        if second.remaining_ms <= first.remaining_ms {
            assert_eq!((first.current, second.current), (2, 5));
        }
        assert!(second.remaining_ms <= w);
        // Another prefix is another namespace.
        let c = Counters::redis(&url, &random_prefix()).unwrap();
        assert_eq!(c.add("k", 1, w).await.unwrap().current, 1);
    }

    #[tokio::test]
    async fn redis_sets_expiry_and_reads_previous_window() {
        let Some(url) = redis_url("redis_sets_expiry_and_reads_previous_window") else {
            return;
        };
        let prefix = random_prefix();
        let counters = Counters::redis(&url, &prefix).unwrap();
        let Counters::Redis(r) = &counters else {
            unreachable!()
        };
        let w = 60_000;
        let idx = now_ms() / w;
        // Seed the previous window directly, as another instance would have.
        let mut conn = r.connection().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:k:{}", idx - 1))
            .arg(9)
            .query_async(&mut conn)
            .await
            .unwrap();
        let (current, previous) = r.add("k", 1, w, idx).await.unwrap();
        assert_eq!((current, previous), (1, 9));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}:k:{idx}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 120_000, "ttl {ttl}");
        let _: () = redis::cmd("DEL")
            .arg(format!("{prefix}:k:{}", idx - 1))
            .arg(format!("{prefix}:k:{idx}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn redis_unreachable_is_a_counter_error() {
        let counters = Counters::redis("redis://127.0.0.1:1", "x").unwrap();
        assert!(matches!(
            counters.connect().await,
            Err(PluginError::Counter(_))
        ));
        assert!(matches!(
            counters.add("k", 1, 1000).await,
            Err(PluginError::Counter(_))
        ));
        assert!(Counters::memory().connect().await.is_ok());
    }

    #[test]
    fn invalid_url_is_a_counter_error() {
        assert!(matches!(
            Counters::redis("not a url", "x"),
            Err(PluginError::Counter(_))
        ));
    }
}
