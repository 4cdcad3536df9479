//! Catalog and history at scale: seeds a marketplace of `SCALE_LISTINGS` listings
//! (default 200,000) and one busy agent with `SCALE_HISTORY` gateway requests and as many
//! ledger entries (default 1,000,000 each), starts the real host on it and times the
//! public catalog's routes and the agent's history, one sequential client, printing the
//! median and 90th percentile of `SCALE_SAMPLES` requests each (default 50), beside the
//! median of the same routes on the same host before anything was seeded.
//!
//!   cargo run --release -p crochet-benches --bin scale
//!   SCALE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p crochet-benches --bin scale
//!
//! On PostgreSQL a database of its own is created beside the one named, and dropped at
//! the end; `SCALE_KEEP=1` keeps it (or the SQLite file) and prints where, for looking
//! at query plans. Listings and sellers are written straight into the store (the API's proof of
//! work would make 200,000 creations a bench of its own); the history rows are generated
//! by the database itself. The agent registers through the API like any other.
//!
//! The words of names and descriptions: 2,000 made-up words plus a few real ones, drawn
//! uniformly (a listing's name has 3, its description 12), so a rare word such as
//! `router` is in about 0.7% of listings; `data` is in every tenth description, the case
//! of a word most listings share.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::AnyPool;

const SELLERS: usize = 2_000;
const REAL_WORDS: &[&str] = &[
    "router",
    "forecast",
    "translate",
    "weather",
    "invoice",
    "summarize",
    "vision",
    "speech",
    "ledger",
    "search",
    "classifier",
    "embedding",
];
const CATEGORIES: &[&str] = &[
    "ai-models",
    "agents",
    "data",
    "search",
    "developer-tools",
    "automation",
    "finance",
];

/// xorshift64*: a deterministic stream for the seed data (not for anything secret).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Vocabulary(Vec<String>);

impl Vocabulary {
    fn new() -> Self {
        let syllables = [
            "ka", "lo", "mi", "ten", "ru", "sa", "vo", "ne", "qui", "bra",
        ];
        let mut words: Vec<String> = REAL_WORDS.iter().map(|w| (*w).to_owned()).collect();
        for i in 0..2_000 {
            let (a, b, c) = (i % 10, (i / 10) % 10, (i / 100) % 20);
            words.push(format!(
                "{}{}{}{}",
                syllables[a],
                syllables[b],
                syllables[c % 10],
                c
            ));
        }
        Self(words)
    }

    fn phrase(&self, rng: &mut Rng, n: usize) -> String {
        (0..n)
            .map(|_| self.0[rng.below(self.0.len())].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn seed_catalog(pool: &AnyPool, listings: usize, now: i64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vocab = Vocabulary::new();
    let mut tx = pool.begin().await.unwrap();
    for s in 0..SELLERS {
        sqlx::query(
            "INSERT INTO profiles (id, display_name, role, status, created_at, updated_at) \
             VALUES ($1, $2, 'seller', 'active', $3, $3)",
        )
        .bind(format!("seller-{s:05}"))
        .bind(format!("Seller {s}"))
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        // Half the sellers have a Crochet Score.
        if s % 2 == 0 {
            sqlx::query(
                "INSERT INTO agent_scores (profile_id, score, snapshot_id, computed_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(format!("seller-{s:05}"))
            .bind((rng.below(1000)) as i64)
            .bind(format!("snapshot-{s}"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    const BATCH: usize = 500;
    const COLUMNS: usize = 17;
    let mut done = 0;
    while done < listings {
        let n = BATCH.min(listings - done);
        let rows = (0..n)
            .map(|r| {
                let b = r * COLUMNS;
                format!(
                    "({})",
                    (1..=COLUMNS)
                        .map(|c| format!("${}", b + c))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO listings (id, slug, seller_id, name, description, category, delivery_type, \
             auth_method, formats, pricing_model, price_cents, pricing_currency, status, created_at, \
             updated_at, review_count, rating_sum) VALUES {rows}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in done..done + n {
            let mut description = vocab.phrase(&mut rng, 12);
            if i % 10 == 0 {
                description.push_str(" data");
            }
            let reviews = if i % 3 == 0 { rng.below(40) as i64 } else { 0 };
            let free = i % 5 == 0;
            q = q
                .bind(format!("listing-{i:07}"))
                .bind(format!("listing-{i:07}"))
                .bind(format!("seller-{:05}", rng.below(SELLERS)))
                .bind(vocab.phrase(&mut rng, 3))
                .bind(description)
                .bind(CATEGORIES[rng.below(CATEGORIES.len())])
                .bind("api")
                .bind("bearer")
                .bind("[\"json\"]")
                .bind(if free { "free" } else { "per_call" })
                .bind(if free { 0 } else { 1 + rng.below(500) as i64 })
                .bind("USD")
                // One listing in twenty is a draft, which the catalog never shows.
                .bind(if i % 20 == 7 { "draft" } else { "active" })
                .bind(now - (listings - i) as i64 * 1_000)
                .bind(now)
                .bind(reviews)
                .bind(reviews * (1 + rng.below(5) as i64));
        }
        q.execute(pool).await.unwrap();
        done += n;
    }
}

async fn seed_history(pool: &AnyPool, postgres: bool, agent: &str, rows: usize, now: i64) {
    let start = now - rows as i64 * 1_000;
    let series = if postgres {
        "generate_series(1, $2) AS s(i)"
    } else {
        "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $2) SELECT i FROM s) AS s"
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO gateway_requests (id, buyer_id, seller_id, listing_id, relay_request_id, status, \
         billable, charged_cents, fee_cents, seller_cents, currency, request_bytes, request_sha256, \
         response_bytes, response_sha256, seller_status_code, latency_ms, error_code, created_at, updated_at) \
         SELECT 'request-' || CAST(s.i AS TEXT), $1, 'seller-00001', 'listing-0000001', NULL, \
         CASE WHEN s.i % 50 = 0 THEN 'seller_error' ELSE 'completed' END, 1, 5, 0, 5, 'USD', 54, 'sha', 20, 'sha', \
         200, 3, NULL, $3 + s.i * 1000, $3 + s.i * 1000 FROM {series}"
    )))
    .bind(agent)
    .bind(rows as i64)
    .bind(start)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ledger_entries (id, gateway_request_id, profile_id, entry_type, amount_cents, \
         currency, relay_request_id, listing_id, created_at) \
         SELECT 'entry-' || CAST(s.i AS TEXT), 'request-' || CAST(s.i AS TEXT), $1, 'gateway_debit', -5, \
         'USD', NULL, 'listing-0000001', $3 + s.i * 1000 FROM {series}"
    )))
    .bind(agent)
    .bind(rows as i64)
    .bind(start)
    .execute(pool)
    .await
    .unwrap();
}

/// p50 and p90 of `samples` sequential GETs (after five unmeasured ones), and the
/// `pagination` of the last answer.
async fn time_route(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    samples: usize,
) -> (Duration, Duration, Value) {
    let mut times = Vec::with_capacity(samples);
    let mut last = Value::Null;
    for i in 0..samples + 5 {
        let mut req = client.get(url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let t = Instant::now();
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{url}: {}", res.status());
        last = res.json().await.unwrap();
        if i >= 5 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.9), last["pagination"].clone())
}

/// p50 and p90 of `samples` single-row edits of seeded listings (a different listing
/// each time): `sql` binds a value (`$1`, the edit's number) and the listing's id (`$2`).
async fn time_edits(
    pool: &AnyPool,
    sql: &str,
    samples: usize,
    first: usize,
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(i as i64)
            .bind(format!("listing-{:07}", first + i * 97))
            .execute(pool)
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.9))
}

#[tokio::main]
async fn main() {
    let listings = env_usize("SCALE_LISTINGS", 200_000);
    let history = env_usize("SCALE_HISTORY", 1_000_000);
    let samples = env_usize("SCALE_SAMPLES", 50).max(1);
    let dir = std::env::temp_dir().join(format!("crochet-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // On PostgreSQL: a fresh database beside the one named, dropped at the end.
    let (url, admin) = match std::env::var("SCALE_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let admin = AnyPool::connect(&base).await.unwrap();
            let name = format!("crochet_scale_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            (format!("{prefix}/{name}"), Some((admin, name)))
        }
        _ => (format!("sqlite://{}", dir.join("scale.db").display()), None),
    };
    let postgres = admin.is_some();

    let host = crochet::app::start(crochet_benches::bench_config(url.clone()))
        .await
        .unwrap();
    let api = format!("http://{}/api/v1", host.addr);
    let client = reqwest::Client::new();

    let (key, agent) = crochet_benches::register(&client, &api).await;

    let routes: &[(&str, bool)] = &[
        ("/listings?limit=20", false),
        ("/listings?q=router&limit=20", false),
        ("/listings?q=forecast&page=50&limit=20", false),
        ("/listings?q=data&limit=20", false),
        ("/listings?q=router&sort=newest&limit=20", false),
        ("/listings?sort=price_asc&limit=20", false),
        ("/listings?sort=price_desc&limit=20", false),
        ("/listings?sort=score&limit=20", false),
        ("/listings?sort=rating&limit=20", false),
        ("/listings?category=finance&limit=20", false),
        ("/listings?page=500&limit=20", false),
        ("/gateway-requests?limit=20", true),
        ("/gateway-requests?page=500&limit=20", true),
        (
            "/gateway-requests?role=buyer&status=seller_error&limit=20",
            true,
        ),
        ("/ledger?limit=20", true),
        ("/ledger?page=500&limit=20", true),
    ];
    let time_all = async || {
        let mut times = Vec::new();
        for (route, authed) in routes {
            let url = format!("{api}{route}");
            times.push(time_route(&client, &url, authed.then_some(key.as_str()), samples).await);
        }
        times
    };
    // The reference: the same routes on the same host before anything is seeded.
    let empty = time_all().await;

    let db = crochet::storage::Database::connect(&url).await.unwrap();
    let now = crochet::storage::now_ms();
    let t = Instant::now();
    seed_catalog(db.pool(), listings, now).await;
    seed_history(db.pool(), postgres, &agent, history, now).await;
    // The statistics the planners keep up to date on a running database (autovacuum;
    // `PRAGMA optimize` on SQLite's connections) are gathered once after seeding.
    let analyze = if postgres {
        "VACUUM ANALYZE"
    } else {
        "ANALYZE"
    };
    sqlx::query(analyze).execute(db.pool()).await.unwrap();
    eprintln!(
        "seeded {listings} listings and {history} history rows in {:.0?}",
        t.elapsed()
    );

    let backend = if postgres { "PostgreSQL" } else { "SQLite" };
    println!(
        "{backend}: {listings} listings ({SELLERS} sellers), one agent with {history} gateway requests \
         and {history} ledger entries; one sequential client, {samples} requests per route"
    );
    println!("| route | p50, empty | p50 | p90 | total |");
    println!("| --- | --- | --- | --- | --- |");
    for (((route, _), (empty, _, _)), (p50, p90, pagination)) in
        routes.iter().zip(empty).zip(time_all().await)
    {
        let total = match pagination["total_exact"].as_bool() {
            Some(false) => format!("{}+", pagination["total"]),
            _ => pagination["total"].to_string(),
        };
        println!(
            "| `GET {route}` | {:.2} ms | {:.2} ms | {:.2} ms | {total} |",
            empty.as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
    }

    // Edits, as the catalog's update writes them: a name and description (the search
    // index's entry replaced by a trigger) beside a price (no search entry).
    println!();
    println!("| edit (one listing, {samples} listings in turn) | p50 | p90 |");
    println!("| --- | --- | --- |");
    for (label, sql, first) in [
        (
            "name and description",
            "UPDATE listings SET name = 'renamed ' || CAST($1 AS TEXT), \
             description = 'edited ' || CAST($1 AS TEXT) WHERE id = $2",
            11,
        ),
        (
            "price only",
            "UPDATE listings SET price_cents = $1 + 1 WHERE id = $2",
            13,
        ),
    ] {
        let (p50, p90) = time_edits(db.pool(), sql, samples, first).await;
        println!(
            "| {label} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
    }

    drop(db);
    host.shutdown().await.unwrap();
    if std::env::var_os("SCALE_KEEP").is_some() {
        eprintln!("kept: {url}");
        return;
    }
    if let Some((admin, name)) = admin {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
