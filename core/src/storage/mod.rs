//! Storage: the database connection pool and its migrations.
//!
//! The host runs on an embedded SQLite file (WAL mode) or on PostgreSQL for several
//! stateless instances. Both go through one [`sqlx::AnyPool`], and every query in the
//! code base is written once in the SQL both understand: `$N` placeholders, `BIGINT`
//! and `TEXT` columns, timestamps as Unix milliseconds, `INSERT … ON CONFLICT … RETURNING`.
//! Each backend has its own migration folder under `migrations/`. [`cache`] holds the
//! hot path's in-memory caches and the bus that invalidates them across instances;

pub mod cache;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Executor};

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Tells the backend from a database URL.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StorageError::UnsupportedUrl)
        }
    }

    /// The backend a connection talks to (for code that only holds a connection).
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == "SQLite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A connection pool plus the backend it talks to.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// SQLite's one write turn, handed out in order, and the connection every write
    /// transaction of this host runs on (see [`Database::begin`]).
    write_turn: Arc<tokio::sync::Mutex<Writer>>,
}

/// The SQLite writer connection, kept between write transactions.
#[derive(Debug, Default)]
struct Writer {
    conn: Option<PoolConnection<sqlx::Any>>,
}

/// A transaction that will write, from [`Database::begin`]: `&mut tx` serves wherever
/// a connection does. On SQLite it holds this host's write turn and its writer
/// connection, both given back when it commits, rolls back or is dropped (a dropped
/// transaction is rolled back before the next one begins).
pub struct WriteTx(TxKind);

enum TxKind {
    /// PostgreSQL: a pooled connection's transaction.
    Pooled(sqlx::Transaction<'static, sqlx::Any>),
    /// SQLite: `BEGIN IMMEDIATE` on the writer connection, inside the write turn.
    /// `None` once finished (committed, rolled back or handed to the rollback task).
    Writer(Option<tokio::sync::OwnedMutexGuard<Writer>>),
}

impl WriteTx {
    pub async fn commit(mut self) -> sqlx::Result<()> {
        match std::mem::replace(&mut self.0, TxKind::Writer(None)) {
            TxKind::Pooled(tx) => tx.commit().await,
            TxKind::Writer(turn) => end_writer(turn, "COMMIT").await,
        }
    }

    pub async fn rollback(mut self) -> sqlx::Result<()> {
        match std::mem::replace(&mut self.0, TxKind::Writer(None)) {
            TxKind::Pooled(tx) => tx.rollback().await,
            TxKind::Writer(turn) => end_writer(turn, "ROLLBACK").await,
        }
    }
}

/// Ends a SQLite write transaction with `statement` (`COMMIT` or `ROLLBACK`). One that
/// fails (a COMMIT refused while another process holds the file, say) may leave the
/// transaction open: [`finish_writer`] ends it, or closes the connection, before the
/// turn is given back.
async fn end_writer(
    turn: Option<tokio::sync::OwnedMutexGuard<Writer>>,
    statement: &'static str,
) -> sqlx::Result<()> {
    let Some(mut turn) = turn else {
        return Ok(());
    };
    let result = writer_conn(&mut turn).execute(statement).await;
    if result.is_err() {
        finish_writer(turn).await;
    }
    result.map(|_| ())
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let TxKind::Writer(turn) = &mut self.0 else {
            return;
        };
        let Some(turn) = turn.take() else {
            return;
        };
        // Unfinished (an error returned early, or the caller's future was dropped): the
        // rollback runs in a task that keeps the turn until it is done, so the next
        // transaction never starts inside this one.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(finish_writer(turn));
            }
            Err(_) => drop_writer(turn),
        }
    }
}

/// The writer connection of a turn that holds one (every open [`TxKind::Writer`] does).
fn writer_conn(turn: &mut Writer) -> &mut sqlx::AnyConnection {
    match turn.conn.as_deref_mut() {
        Some(conn) => conn,
        // `begin` puts a connection in the turn before it hands the turn out, and only
        // `finish_writer`/`drop_writer` take it away, after the transaction ends.
        None => unreachable!("a write transaction's turn holds the writer connection"),
    }
}

/// Rolls back whatever is open on the writer connection; a connection that cannot is
/// closed (closing a SQLite connection rolls its transaction back).
async fn finish_writer(mut turn: tokio::sync::OwnedMutexGuard<Writer>) {
    let rolled_back = match turn.conn.as_deref_mut() {
        Some(conn) => conn.execute("ROLLBACK").await.is_ok(),
        None => true,
    };
    if !rolled_back {
        drop_writer(turn);
    }
}

/// Closes the writer connection instead of returning it to the pool with a transaction
/// possibly open.
fn drop_writer(mut turn: tokio::sync::OwnedMutexGuard<Writer>) {
    if let Some(conn) = turn.conn.take() {
        drop(conn.detach());
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        match &self.0 {
            TxKind::Pooled(tx) => tx,
            TxKind::Writer(turn) => match turn.as_ref().and_then(|t| t.conn.as_deref()) {
                Some(conn) => conn,
                None => unreachable!("an open write transaction holds its connection"),
            },
        }
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        match &mut self.0 {
            TxKind::Pooled(tx) => tx,
            TxKind::Writer(turn) => match turn.as_deref_mut() {
                Some(turn) => writer_conn(turn),
                None => unreachable!("an open write transaction holds its connection"),
            },
        }
    }
}

impl Database {
    /// Connects to `url`, creating the SQLite file when it does not exist yet.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            Backend::Sqlite => {
                pool_options
                    .max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets readers run beside the one writer; the busy timeout
                            // makes a second writer wait instead of failing at once. Temp
                            // storage in memory: a multi-row INSERT's statement journal
                            // otherwise spills to a temp file created and deleted each time.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                pool_options
                    .max_connections(16)
                    .connect_with(options)
                    .await?
            }
        };
        Ok(Self {
            pool,
            backend,
            write_turn: Arc::default(),
        })
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The pool, for the domain stores.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite, which has one writer at a time, the host's write transactions take
    /// turns in-process, in arrival order, and all run on one kept connection:
    /// - left to SQLite, every waiter polls the lock in its busy handler, sleeping
    ///   longer each time; under many concurrent paid calls most of the time went to
    ///   those sleeps and wake-ups (another process on the same file still meets the
    ///   busy handler);
    /// - each SQLite connection has its own page cache, which a commit on another
    ///   connection invalidates: writes spread over the pool re-read the pages they
    ///   touch (the ledger's and the history's indexes) on every transaction.
    ///
    /// The transaction is `BEGIN IMMEDIATE`, which takes the write lock first: a
    /// deferred transaction reads a snapshot before it asks for the lock, and if another
    /// process commits while it waits, SQLite fails it with `SQLITE_BUSY_SNAPSHOT` at
    /// once instead of waiting out the busy timeout.
    ///
    /// Its time (waiting for the turn or a pooled connection, then `BEGIN`) is recorded
    /// in `crochet_db_transaction_begin_duration_seconds`: sqlx counts no waiters, so
    /// this is the measure of waiting for the pool (and, on SQLite, for the write turn).
    pub async fn begin(&self) -> sqlx::Result<WriteTx> {
        let started = std::time::Instant::now();
        let tx = match self.backend {
            Backend::Sqlite => {
                let mut turn = self.write_turn.clone().lock_owned().await;
                if turn.conn.is_none() {
                    turn.conn = Some(self.pool.acquire().await?);
                }
                if let Err(e) = writer_conn(&mut turn).execute("BEGIN IMMEDIATE").await {
                    // A connection that cannot begin is closed, not kept or pooled: it
                    // may still be inside a transaction whose COMMIT was abandoned.
                    drop_writer(turn);
                    return Err(e);
                }
                WriteTx(TxKind::Writer(Some(turn)))
            }
            Backend::Postgres => WriteTx(TxKind::Pooled(self.pool.begin().await?)),
        };
        crate::metrics::db_begin(started.elapsed());
        Ok(tx)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sets the pool gauges (connections in use, idle, the cap) from the pool's state.
    pub fn report_pool(&self) {
        let size = self.pool.size() as usize;
        let idle = self.pool.num_idle();
        crate::metrics::db_pool(
            size.saturating_sub(idle),
            idle,
            self.pool.options().get_max_connections(),
        );
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool, after the last write transaction (closing waits for every
    /// connection, the kept writer's too).
    pub async fn close(&self) {
        self.write_turn.lock().await.conn = None;
        self.pool.close().await;
    }
}

/// Rows per multi-row `INSERT`, at most: well under SQLite's 32766 and PostgreSQL's
/// 65535 bind parameters for the widest row written this way.
pub const ROWS_PER_INSERT: usize = 256;

/// Splits `rows` into runs for multi-row inserts: [`ROWS_PER_INSERT`] at most, and
/// otherwise powers of two (`37` gives `32, 4, 1`), so that a table's inserts use a
/// handful of statement texts that stay in the prepared-statement cache instead of one
/// new text, parsed afresh, per batch size.
pub fn insert_runs<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1 << rest.len().ilog2()
        };
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

impl Backend {
    /// The `VALUES` list of a multi-row insert: `tuple` (one row, placeholders `$1..$k`
    /// in order, each once) repeated `rows` times, bound row after row.
    ///
    /// PostgreSQL gets each copy's placeholders shifted past the previous row's. SQLite
    /// gets anonymous `?`: it resolves a named or numbered parameter (`$N`, `?N`) by a
    /// linear scan of the statement's parameter list, both when parsing and when sqlx
    /// binds, so a statement of thousands of `$N` costs time quadratic in its size
    /// (measured: 18% of the gateway's CPU under load), while `?` costs nothing.
    pub fn values_list(self, tuple: &str, rows: usize) -> String {
        let params_per_row = tuple.matches('$').count();
        let mut out = String::with_capacity((tuple.len() + 8) * rows);
        for row in 0..rows {
            if row > 0 {
                out.push_str(", ");
            }
            let base = row * params_per_row;
            let mut expected = 1;
            let mut chars = tuple.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '$' {
                    out.push(c);
                    continue;
                }
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                debug_assert_eq!(n, expected, "placeholders must be $1..$k in order");
                expected += 1;
                match self {
                    Backend::Sqlite => out.push('?'),
                    Backend::Postgres => {
                        out.push('$');
                        out.push_str(&(base + n).to_string());
                    }
                }
            }
        }
        out
    }
}

/// A new id for a row of an append-only, high-volume table (gateway requests, ledger
/// entries, receipts): a UUID v7, whose leading bits are the time, so new rows land at
/// the right edge of the primary-key index instead of on a random page of it (with v4
/// ids every history batch rewrote one index page per row).
pub fn append_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// Lowercase hex of `bytes`, the form every stored digest and MAC takes. Runs on each
/// gateway call (four digests), so it fills the string through [`hex::encode_to_slice`]
/// instead of `hex::encode`'s character-by-character collect, which cost 2,000
/// instructions per 32-byte digest.
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // The output is exactly twice the input's length, so this cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes held back in memory and committed in batches (the gateway's history writer).
/// A reader that must see every earlier write flushes it first; storage owns the
/// contract, the domain that batches owns the rows.
pub trait PendingWrites: Send + Sync {
    /// Returns once every write queued before the call is committed.
    fn flush(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// A migrated SQLite database in a fresh temporary directory, for unit tests.
#[cfg(test)]
pub(crate) async fn temp_sqlite() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Database::connect(&url)
        .await
        .expect("temporary SQLite database");
    db.migrate().await.expect("migrations");
    (dir, db)
}

/// Inserts a bare profile `id`, for unit tests of rows that refer to one.
#[cfg(test)]
pub(crate) async fn test_profile(db: &Database, id: &str) {
    sqlx::query(
        "INSERT INTO profiles (id, role, status, created_at, updated_at) VALUES ($1, 'buyer', 'active', 0, 0)",
    )
    .bind(id)
    .execute(db.pool())
    .await
    .expect("profile");
}

/// Current time as Unix milliseconds, the unit every timestamp column uses.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Formats Unix milliseconds as RFC 3339 (UTC), the form timestamps take on the wire.
/// Serializes Unix milliseconds as [`rfc3339`] (`#[serde(serialize_with = …)]`).
pub fn serialize_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The ids of a newest-first page of one table's rows that match any of `branches`
/// (each a WHERE condition; no row may match two), for `WHERE id IN (…)` of a statement
/// that reads the page's rows and orders them by `created_at DESC, id` again.
///
/// Each branch is read through an index on `(…, created_at DESC, id)`, at most
/// `window` entries of it (`window` = offset + limit: the placeholder the caller binds),
/// and only the page's ids then reach the table. So a page costs its offset in index
/// entries, never a sort of everything the agent ever did, which an `OR` of two columns
/// would make the planner do.
pub fn newest_first_ids(
    table: &str,
    branches: &[String],
    window: &str,
    limit: &str,
    offset: &str,
) -> String {
    let ids = branches
        .iter()
        .enumerate()
        .map(|(i, cond)| {
            format!(
                "SELECT id, created_at FROM (SELECT id, created_at FROM {table} WHERE {cond} \
                 ORDER BY created_at DESC, id LIMIT {window}) AS b{i}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "SELECT id FROM ({ids}) AS u ORDER BY created_at DESC, id LIMIT {limit} OFFSET {offset}"
    )
}

/// How many rows of `table` match any of `branches`, counted up to
/// [`Total::CAP`](crate::pagination::Total::CAP) (see [`newest_first_ids`]).
pub fn newest_first_count(table: &str, branches: &[String]) -> String {
    let union = branches
        .iter()
        .map(|cond| format!("SELECT 1 FROM {table} WHERE {cond}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    crate::pagination::Total::capped_count(&union)
}

/// A newest-first page of an agent's rows of `table` and how many there are (counted up
/// to [`Total::CAP`](crate::pagination::Total::CAP)), through [`newest_first_ids`].
/// Each of `branches` may use `$1` (the agent), `$2` and `$3` (the `from`, `to` time
/// range) and, when `extra` is given, `$4` (a filter's value).
#[allow(clippy::too_many_arguments)]
pub async fn newest_first<R>(
    pool: &AnyPool,
    table: &str,
    columns: &str,
    branches: &[String],
    agent: &str,
    (from, to): (i64, i64),
    extra: Option<&str>,
    page: Page,
) -> sqlx::Result<(Vec<R>, crate::pagination::Total)>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let next = if extra.is_some() { 5 } else { 4 };
    let ids = newest_first_ids(
        table,
        branches,
        &format!("${next}"),
        &format!("${}", next + 1),
        &format!("${}", next + 2),
    );
    let list_sql =
        format!("SELECT {columns} FROM {table} WHERE id IN ({ids}) ORDER BY created_at DESC, id");
    let count_sql = newest_first_count(table, branches);
    let mut list = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(list_sql))
        .bind(agent)
        .bind(from)
        .bind(to);
    let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql))
        .bind(agent)
        .bind(from)
        .bind(to);
    if let Some(value) = extra {
        list = list.bind(value);
        count = count.bind(value);
    }
    let rows = list
        .bind(page.offset() + i64::from(page.limit))
        .bind(i64::from(page.limit))
        .bind(page.offset())
        .fetch_all(pool)
        .await?;
    let total = crate::pagination::Total::from_capped_count(count.fetch_one(pool).await?);
    Ok((rows, total))
}

/// Page and limit of a list route, already clamped.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: u32,
    pub limit: u32,
}

impl Page {
    pub const MAX_LIMIT: u32 = 100;
    pub const DEFAULT_LIMIT: u32 = 20;

    pub fn new(page: Option<u32>, limit: Option<u32>) -> Self {
        Self {
            page: page.unwrap_or(1).max(1),
            limit: limit
                .unwrap_or(Self::DEFAULT_LIMIT)
                .clamp(1, Self::MAX_LIMIT),
        }
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgres://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn lower_hex_matches_the_hex_crate() {
        assert_eq!(lower_hex(&[]), "");
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let digest: Vec<u8> = (0..=255u8).collect();
        assert_eq!(lower_hex(&digest), hex::encode(&digest));
    }

    #[test]
    fn page_is_clamped() {
        let p = Page::new(Some(0), Some(1000));
        assert_eq!((p.page, p.limit, p.offset()), (1, 100, 0));
        assert_eq!(Page::new(Some(3), Some(10)).offset(), 20);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn values_lists_shift_placeholders_per_row_on_postgres() {
        let pg = Backend::Postgres;
        assert_eq!(pg.values_list("($1, 0, $2)", 1), "($1, 0, $2)");
        assert_eq!(
            pg.values_list("($1, 0, $2)", 3),
            "($1, 0, $2), ($3, 0, $4), ($5, 0, $6)"
        );
        let ten = "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)";
        assert!(
            pg.values_list(ten, 2)
                .ends_with("($11,$12,$13,$14,$15,$16,$17,$18,$19,$20)")
        );
    }

    #[test]
    fn insert_runs_are_powers_of_two_up_to_the_cap() {
        let sizes = |n: usize| {
            let rows = vec![0u8; n];
            insert_runs(&rows).map(<[u8]>::len).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(37), [32, 4, 1]);
        assert_eq!(sizes(600), [256, 256, 64, 16, 8]);
    }

    #[test]
    fn values_lists_are_anonymous_on_sqlite() {
        assert_eq!(
            Backend::Sqlite.values_list("($1, 0, $2)", 2),
            "(?, 0, ?), (?, 0, ?)"
        );
    }

    #[tokio::test]
    async fn multi_row_inserts_bind_in_order_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Database::connect(&url).await.unwrap();
        let mut conn = db.pool().acquire().await.unwrap();
        assert_eq!(Backend::of(&conn), Backend::Sqlite);
        sqlx::query("CREATE TABLE t (a BIGINT, b TEXT, c BIGINT)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let sql = format!(
            "INSERT INTO t (a, b, c) VALUES {}",
            Backend::of(&conn).values_list("($1, $2, 7)", 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in 0..3i64 {
            q = q.bind(i).bind(format!("row {i}"));
        }
        q.execute(&mut *conn).await.unwrap();
        let rows: Vec<(i64, String, i64)> = sqlx::query_as("SELECT a, b, c FROM t ORDER BY a")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (0, "row 0".into(), 7),
                (1, "row 1".into(), 7),
                (2, "row 2".into(), 7)
            ]
        );
    }

    #[tokio::test]
    async fn sqlite_migrates_and_pings() {
        let (_dir, db) = temp_sqlite().await;
        db.migrate().await.unwrap(); // idempotent
        assert!(db.ping().await);
    }

    async fn with_writes_table() -> (tempfile::TempDir, Database) {
        let (dir, db) = temp_sqlite().await;
        sqlx::query("CREATE TABLE writes (n BIGINT)")
            .execute(db.pool())
            .await
            .unwrap();
        (dir, db)
    }

    async fn count(db: &Database) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM writes")
            .fetch_one(db.pool())
            .await
            .unwrap()
    }

    async fn write(tx: &mut WriteTx, n: i64) {
        sqlx::query("INSERT INTO writes (n) VALUES ($1)")
            .bind(n)
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sqlite_write_transactions_share_one_connection_and_undo_when_dropped() {
        let (_dir, db) = with_writes_table().await;

        // One connection: a TEMP table (private to its connection) made in one
        // transaction is there in the next.
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TEMP TABLE mine (x BIGINT)")
            .execute(&mut *tx)
            .await
            .unwrap();
        write(&mut tx, 1).await;
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO mine (x) VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("the next write transaction runs on the same connection");
        tx.rollback().await.unwrap();

        // Dropped unfinished: undone, and the next transaction starts clean.
        let mut tx = db.begin().await.unwrap();
        write(&mut tx, 2).await;
        drop(tx);
        let mut tx = db.begin().await.unwrap();
        write(&mut tx, 3).await;
        tx.commit().await.unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM writes ORDER BY n")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(rows, [1, 3]);

        // A caller's future dropped mid-transaction: the same.
        let abandoned = async {
            let mut tx = db.begin().await.unwrap();
            write(&mut tx, 4).await;
            std::future::pending::<()>().await;
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(50), abandoned)
                .await
                .is_err()
        );
        let mut tx = db.begin().await.unwrap();
        write(&mut tx, 5).await;
        tx.commit().await.unwrap();
        assert_eq!(count(&db).await, 3);

        // Closing does not wait for the kept writer connection.
        tokio::time::timeout(Duration::from_secs(10), db.close())
            .await
            .expect("the pool closed with the writer connection given back");
    }

    #[tokio::test]
    async fn concurrent_sqlite_write_transactions_all_commit() {
        let (_dir, db) = with_writes_table().await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..32 {
            let db = db.clone();
            tasks.spawn(async move {
                let mut tx = db.begin().await.unwrap();
                write(&mut tx, n).await;
                tokio::task::yield_now().await;
                tx.commit().await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(count(&db).await, 32);
    }
}
