//! SQL for listings, their gateway endpoints and listing challenges. Portable between
//! SQLite and PostgreSQL except full-text search, which uses each backend's own index
//! (FTS5 ranked by BM25 / a `tsvector` column ranked by `ts_rank`) behind [`Search`].
//!
//! The public catalog reads listed listings only (active, seller not suspended); each
//! sort has a partial index over them in its own order, so a page costs its rows and
//! its offset whatever the size of the catalog. A browse counts up to [`Total::CAP`];
//! a search counts every match as it ranks them.

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::model::{
    AdapterInfo, EndpointInfo, EndpointStatus, Listing, ListingQuery, ListingRating, ListingSort,
    ListingStatus, PricingModel,
};
use crate::pagination::Total;
use crate::reputation::model::{RatingSummary, ScoreBadge};
use crate::storage::{Backend, Page, rfc3339};

#[derive(Debug, Clone, FromRow)]
pub struct ListingRow {
    pub id: String,
    pub slug: String,
    pub seller_id: String,
    pub name: String,
    pub description: String,
    pub category: Option<String>,
    pub delivery_type: String,
    pub auth_method: String,
    pub formats: String,
    pub connection_instructions: Option<String>,
    #[sqlx(try_from = "String")]
    pub pricing_model: PricingModel,
    pub price_cents: i64,
    pub pricing_currency: String,
    #[sqlx(try_from = "String")]
    pub status: ListingStatus,
    pub created_at: i64,
    pub updated_at: i64,
    /// JSON object: plugin name → the listing's configuration for it.
    pub policy_config: Option<String>,
    /// `<source>:<component sha256>:<updated_at>@<listing id>` of the seller adapter, if
    /// one is attached: changes whenever the adapter or its configuration does.
    pub adapter: Option<String>,
    /// Rating summary, kept with each review.
    pub review_count: i64,
    pub rating_sum: i64,
    /// The seller's current Crochet Score, once computed.
    pub seller_score: Option<i64>,
    /// 1 while the marketplace's operator has the listing suspended (its seller cannot
    /// change it then); 0 otherwise.
    pub operator_suspended: i64,
    /// 1 while the operator has the listing's seller suspended; 0 otherwise.
    pub seller_suspended: i64,
}

impl ListingRow {
    pub fn pricing_model(&self) -> PricingModel {
        self.pricing_model
    }

    /// Whether an operator's suspension holds the listing (only the operator lifts it).
    pub fn is_operator_suspended(&self) -> bool {
        self.operator_suspended != 0
    }

    /// Whether the listing's seller is suspended (the listing takes no calls meanwhile).
    pub fn is_seller_suspended(&self) -> bool {
        self.seller_suspended != 0
    }

    /// The public view; `gateway_url` is set when the listing can be called.
    pub fn to_listing(&self, public_url: &str, endpoint_configured: bool) -> Listing {
        let model = self.pricing_model();
        let callable = model == PricingModel::PerCall || endpoint_configured;
        Listing {
            id: self.id.clone(),
            slug: self.slug.clone(),
            seller_id: self.seller_id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            delivery_type: self.delivery_type.clone(),
            auth_method: self.auth_method.clone(),
            formats: serde_json::from_str(&self.formats).unwrap_or_default(),
            connection_instructions: self.connection_instructions.clone(),
            pricing_model: model,
            pricing_amount: self.price_cents as f64 / 100.0,
            price_cents: self.price_cents,
            pricing_currency: self.pricing_currency.clone(),
            status: self.status,
            gateway_url: callable.then(|| format!("{public_url}/api/v1/gateway/{}", self.id)),
            policy_config: self
                .policy_config
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok()),
            adapter: self.adapter.as_deref().map(|key| {
                let versioned = key.split('@').next().unwrap_or(key);
                let mut parts = versioned.rsplitn(3, ':');
                parts.nth(2).unwrap_or(versioned).to_owned()
            }),
            rating: ListingRating {
                review_count: self.review_count,
                average_rating: RatingSummary::average(self.review_count, self.rating_sum),
            },
            seller_score: self.seller_score.map(ScoreBadge::of),
            seller_verified: self
                .seller_score
                .is_some_and(|s| ScoreBadge::of(s).verified),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

const LISTING_COLUMNS: &str = "l.id, l.slug, l.seller_id, l.name, l.description, l.category, l.delivery_type, \
     l.auth_method, l.formats, l.connection_instructions, l.pricing_model, l.price_cents, \
     l.pricing_currency, l.status, l.created_at, l.updated_at, l.policy_config, \
     (SELECT a.source || ':' || a.component_sha256 || ':' || CAST(a.updated_at AS TEXT) || '@' || a.listing_id \
      FROM listing_adapters a WHERE a.listing_id = l.id) AS adapter, l.review_count, l.rating_sum, \
     (SELECT s.score FROM agent_scores s WHERE s.profile_id = l.seller_id) AS seller_score, \
     CASE WHEN l.suspended_by IS NULL THEN 0 ELSE 1 END AS operator_suspended, \
     CASE WHEN EXISTS (SELECT 1 FROM profiles p WHERE p.id = l.seller_id AND p.status = 'suspended') \
     THEN 1 ELSE 0 END AS seller_suspended";

/// The listings the public catalog shows: active, and their seller not suspended. The
/// partial indexes of the catalog's sorts carry this same condition, written the same
/// way, so that both backends' planners match it.
const LISTED: &str = "l.status = 'active' AND l.seller_suspended = 0";

/// A listing row with whether its endpoint has a URL.
#[derive(Debug, FromRow)]
pub struct ListingWithEndpoint {
    #[sqlx(flatten)]
    pub listing: ListingRow,
    pub endpoint_configured: i64,
}

/// Inserts a listing unless its slug is taken; returns whether it was inserted.
pub async fn insert_listing(conn: &mut AnyConnection, l: &ListingRow) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "INSERT INTO listings (id, slug, seller_id, name, description, category, delivery_type, \
         auth_method, formats, connection_instructions, pricing_model, price_cents, pricing_currency, \
         status, created_at, updated_at, policy_config) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (slug) DO NOTHING RETURNING id",
    )
    .bind(&l.id)
    .bind(&l.slug)
    .bind(&l.seller_id)
    .bind(&l.name)
    .bind(&l.description)
    .bind(l.category.as_deref())
    .bind(&l.delivery_type)
    .bind(&l.auth_method)
    .bind(&l.formats)
    .bind(l.connection_instructions.as_deref())
    .bind(l.pricing_model.as_str())
    .bind(l.price_cents)
    .bind(&l.pricing_currency)
    .bind(l.status.as_str())
    .bind(l.created_at)
    .bind(l.updated_at)
    .bind(l.policy_config.as_deref())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Rewrites every mutable column of a listing, unless an operator's suspension holds it
/// (then nothing changes and this returns false: the seller cannot undo it).
pub async fn update_listing(conn: &mut AnyConnection, l: &ListingRow) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE listings SET name = $1, description = $2, category = $3, delivery_type = $4, \
         auth_method = $5, formats = $6, connection_instructions = $7, pricing_model = $8, \
         price_cents = $9, status = $10, updated_at = $11, policy_config = $13 \
         WHERE id = $12 AND suspended_by IS NULL",
    )
    .bind(&l.name)
    .bind(&l.description)
    .bind(l.category.as_deref())
    .bind(&l.delivery_type)
    .bind(&l.auth_method)
    .bind(&l.formats)
    .bind(l.connection_instructions.as_deref())
    .bind(l.pricing_model.as_str())
    .bind(l.price_cents)
    .bind(l.status.as_str())
    .bind(l.updated_at)
    .bind(&l.id)
    .bind(l.policy_config.as_deref())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a listing and its endpoint, unless an operator's suspension holds it (then
/// nothing changes and this returns false). The listing's row is locked first, so an
/// operator's suspension cannot slip in between the check and the delete.
pub async fn delete_listing(conn: &mut AnyConnection, id: &str) -> sqlx::Result<bool> {
    let free = sqlx::query(
        "UPDATE listings SET updated_at = updated_at WHERE id = $1 AND suspended_by IS NULL",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !free {
        return Ok(false);
    }
    sqlx::query("DELETE FROM listing_gateway_endpoints WHERE listing_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM listings WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(true)
}

/// A listing by UUID or slug, any status.
pub async fn listing_by_ref(
    pool: &AnyPool,
    id_or_slug: &str,
) -> sqlx::Result<Option<ListingWithEndpoint>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LISTING_COLUMNS}, CASE WHEN e.url_enc IS NULL THEN 0 ELSE 1 END AS endpoint_configured \
         FROM listings l LEFT JOIN listing_gateway_endpoints e ON e.listing_id = l.id \
         WHERE l.id = $1 OR l.slug = $1"
    )))
    .bind(id_or_slug)
    .fetch_optional(pool)
    .await
}

enum Arg {
    Text(String),
    Int(i64),
}

/// Numbered placeholders for a statement built at run time.
#[derive(Default)]
struct Args(Vec<Arg>);

impl Args {
    fn push(&mut self, a: Arg) -> String {
        self.0.push(a);
        format!("${}", self.0.len())
    }
}

/// Turns free text into a prefix search for the backend's full-text index: alphanumeric
/// words only (at most 8), so the user's text never becomes query syntax.
pub fn search_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().take(32).collect::<String>().to_lowercase())
        .take(8)
        .collect()
}

/// A full-text search as SQL pieces: what it joins, what it filters on, and its
/// relevance (a value per match, and the direction that puts the best match first).
struct Search {
    join: String,
    filter: String,
    relevance: String,
    best_first: &'static str,
}

impl Search {
    fn new(backend: Backend, terms: &[String], args: &mut Args) -> Self {
        match backend {
            Backend::Sqlite => {
                let q = terms
                    .iter()
                    .map(|t| format!("\"{t}\"*"))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let p = args.push(Arg::Text(q));
                // FTS5's `rank` is BM25 with the column weights the migration set
                // (lower is better).
                Search {
                    join: "JOIN listings_fts ON listings_fts.rowid = l.search_rowid".into(),
                    filter: format!("listings_fts MATCH {p}"),
                    relevance: "listings_fts.rank".into(),
                    best_first: "ASC",
                }
            }
            Backend::Postgres => {
                let q = terms
                    .iter()
                    .map(|t| format!("{t}:*"))
                    .collect::<Vec<_>>()
                    .join(" & ");
                let p = args.push(Arg::Text(q));
                Search {
                    join: String::new(),
                    filter: format!("l.search_doc @@ to_tsquery('simple', {p})"),
                    // Normalization 1: divided by 1 + log(length), so a short listing
                    // about the words outranks a long one that mentions them.
                    relevance: format!("ts_rank(l.search_doc, to_tsquery('simple', {p}), 1)"),
                    best_first: "DESC",
                }
            }
        }
    }
}

/// The ORDER BY of a public sort, over `l` (the listing) and, with a search, the column
/// `relevance` names (its relevance value).
fn sort_order(sort: ListingSort, search: Option<&Search>, relevance: &str) -> String {
    match (sort, search) {
        (ListingSort::Relevance, Some(s)) => {
            format!("{relevance} {}, l.created_at DESC, l.id", s.best_first)
        }
        (ListingSort::Relevance | ListingSort::Newest, _) => "l.created_at DESC, l.id".into(),
        (ListingSort::PriceAsc, _) => "l.price_cents ASC, l.created_at DESC, l.id".into(),
        (ListingSort::PriceDesc, _) => "l.price_cents DESC, l.created_at DESC, l.id".into(),
        // Unscored sellers (-1) last; ties by rating, then newest.
        (ListingSort::Score, _) => {
            "l.score_rank DESC, l.rating_rank DESC, l.created_at DESC, l.id".into()
        }
        // Unrated listings (-1) last; ties by number of reviews, then newest. The average
        // is compared in thousandths, in integers, alike on both backends.
        (ListingSort::Rating, _) => {
            "l.rating_rank DESC, l.review_count DESC, l.created_at DESC, l.id".into()
        }
    }
}

/// The partial index that serves a browse (no search) in its sort's order. SQLite is
/// told to use it (`INDEXED BY`): its planner would otherwise filter through another
/// index and sort every listed listing to return twenty.
fn sort_index(sort: ListingSort, category: bool) -> &'static str {
    match sort {
        ListingSort::Relevance | ListingSort::Newest if category => "listings_listed_category",
        ListingSort::Relevance | ListingSort::Newest => "listings_listed_newest",
        ListingSort::PriceAsc | ListingSort::PriceDesc => "listings_listed_price",
        ListingSort::Score => "listings_listed_score",
        ListingSort::Rating => "listings_listed_rating",
    }
}

/// A page of a catalog read, with how many listings matched when the read counted them
/// (a search counts every match as it ranks them).
#[derive(Debug, FromRow)]
struct PageRow {
    #[sqlx(flatten)]
    row: ListingWithEndpoint,
    matches: Option<i64>,
}

/// Listed listings matching the filters, and how many match. Without `sort`, a search is
/// ordered by relevance and a browse by newest.
///
/// The page's ids are chosen first, from the sort's index or the search's matches, with
/// only what ordering and filtering need; the page's rows are then read for those ids
/// alone. A search counts its matches in the same pass; a browse counts up to
/// [`Total::CAP`].
pub async fn search_listings(
    pool: &AnyPool,
    backend: Backend,
    q: &ListingQuery,
    min_cents: Option<i64>,
    max_cents: Option<i64>,
    page: Page,
) -> sqlx::Result<(Vec<ListingWithEndpoint>, Total)> {
    let mut args = Args::default();
    let mut clauses = vec![LISTED.to_owned()];
    let search =
        q.q.as_deref()
            .map(search_terms)
            .filter(|t| !t.is_empty())
            .map(|terms| Search::new(backend, &terms, &mut args));
    if let Some(s) = &search {
        clauses.push(s.filter.clone());
    }
    if let Some(c) = &q.category {
        clauses.push(format!("l.category = {}", args.push(Arg::Text(c.clone()))));
    }
    if let Some(m) = q.pricing_model {
        clauses.push(format!(
            "l.pricing_model = {}",
            args.push(Arg::Text(m.as_str().into()))
        ));
    }
    if let Some(d) = &q.delivery_type {
        clauses.push(format!(
            "l.delivery_type = {}",
            args.push(Arg::Text(d.clone()))
        ));
    }
    if let Some(min) = min_cents {
        clauses.push(format!("l.price_cents >= {}", args.push(Arg::Int(min))));
    }
    if let Some(max) = max_cents {
        clauses.push(format!("l.price_cents <= {}", args.push(Arg::Int(max))));
    }
    let filter = clauses.join(" AND ");
    let sort = q.sort.unwrap_or(if search.is_some() {
        ListingSort::Relevance
    } else {
        ListingSort::Newest
    });
    let order = sort_order(sort, search.as_ref(), "relevance");
    let count_sql = Total::capped_count(&format!(
        "SELECT 1 FROM listings l {} WHERE {filter}",
        search.as_ref().map_or("", |s| s.join.as_str())
    ));
    let filter_args = args.0.len();
    let limit = args.push(Arg::Int(i64::from(page.limit)));
    let offset = args.push(Arg::Int(page.offset()));
    // The page's ids, and for a search its relevance and number of matches (counted as
    // they are ranked). On PostgreSQL a search's matches are gathered on their own first
    // (`MATERIALIZED`), through the full-text index: left to itself, its planner would
    // walk a sort's index and test every listing against the search. On SQLite the
    // full-text index drives the join anyway, and the extra step only costs.
    let (with, ids) = match (&search, backend) {
        (Some(s), Backend::Postgres) => (
            format!(
                "WITH m AS MATERIALIZED (SELECT l.id, l.created_at, l.price_cents, l.score_rank, \
                 l.rating_rank, l.review_count, {} AS relevance FROM listings l WHERE {filter}) ",
                s.relevance
            ),
            format!(
                "SELECT l.id AS pid, l.relevance, COUNT(*) OVER () AS matches FROM m AS l \
                 ORDER BY {order} LIMIT {limit} OFFSET {offset}"
            ),
        ),
        (Some(s), Backend::Sqlite) => (
            String::new(),
            format!(
                "SELECT l.id AS pid, {} AS relevance, COUNT(*) OVER () AS matches \
                 FROM listings l {} WHERE {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
                s.relevance, s.join
            ),
        ),
        (None, _) => {
            let hint = match backend {
                Backend::Sqlite => {
                    format!("INDEXED BY {}", sort_index(sort, q.category.is_some()))
                }
                Backend::Postgres => String::new(),
            };
            (
                String::new(),
                format!(
                    "SELECT l.id AS pid, CAST(NULL AS BIGINT) AS matches FROM listings l {hint} \
                     WHERE {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
                ),
            )
        }
    };
    let outer_order = sort_order(sort, search.as_ref(), "p.relevance");
    let list_sql = format!(
        "{with}SELECT {LISTING_COLUMNS}, CASE WHEN e.url_enc IS NULL THEN 0 ELSE 1 END AS endpoint_configured, \
         p.matches FROM ({ids}) AS p \
         JOIN listings l ON l.id = p.pid LEFT JOIN listing_gateway_endpoints e ON e.listing_id = l.id \
         ORDER BY {outer_order}"
    );
    let mut list = sqlx::query_as::<_, PageRow>(sqlx::AssertSqlSafe(list_sql));
    let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
    for (i, a) in args.0.iter().enumerate() {
        match a {
            Arg::Text(s) => {
                list = list.bind(s.clone());
                if i < filter_args {
                    count = count.bind(s.clone());
                }
            }
            Arg::Int(n) => {
                list = list.bind(*n);
                if i < filter_args {
                    count = count.bind(*n);
                }
            }
        }
    }
    let rows = list.fetch_all(pool).await?;
    let total = match rows.first().and_then(|r| r.matches) {
        Some(matches) => Total::exact(matches),
        None => Total::from_capped_count(count.fetch_one(pool).await?),
    };
    Ok((rows.into_iter().map(|r| r.row).collect(), total))
}

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub listing_id: String,
    pub url_enc: Option<String>,
    pub upstream_auth_enc: Option<String>,
    pub signing_secret_enc: String,
    pub timeout_ms: i64,
    pub max_request_bytes: i64,
    pub max_response_bytes: i64,
    #[sqlx(rename = "endpoint_status", try_from = "String")]
    pub status: EndpointStatus,
    pub secret_rotated_at: i64,
    #[sqlx(rename = "endpoint_updated_at")]
    pub updated_at: i64,
}

impl EndpointRow {
    pub fn info(&self, auth_header_name: Option<String>) -> EndpointInfo {
        EndpointInfo {
            listing_id: self.listing_id.clone(),
            configured: self.url_enc.is_some(),
            status: self.status.as_str().into(),
            timeout_ms: self.timeout_ms,
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            auth_header_configured: self.upstream_auth_enc.is_some(),
            auth_header_name,
            signing_secret_rotated_at: rfc3339(self.secret_rotated_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// The seller's current Crochet Score, as listing reads show it beside each listing.
pub async fn seller_score(conn: &mut AnyConnection, seller_id: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT score FROM agent_scores WHERE profile_id = $1")
        .bind(seller_id)
        .fetch_optional(conn)
        .await
}

pub async fn insert_endpoint(
    conn: &mut AnyConnection,
    e: &EndpointRow,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO listing_gateway_endpoints (listing_id, url_enc, upstream_auth_enc, \
         signing_secret_enc, timeout_ms, max_request_bytes, max_response_bytes, status, \
         secret_rotated_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(&e.listing_id)
    .bind(e.url_enc.as_deref())
    .bind(e.upstream_auth_enc.as_deref())
    .bind(&e.signing_secret_enc)
    .bind(e.timeout_ms)
    .bind(e.max_request_bytes)
    .bind(e.max_response_bytes)
    .bind(e.status.as_str())
    .bind(e.secret_rotated_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn endpoint(
    conn: &mut AnyConnection,
    listing_id: &str,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as(
        "SELECT listing_id, url_enc, upstream_auth_enc, signing_secret_enc, timeout_ms, \
         max_request_bytes, max_response_bytes, status AS endpoint_status, secret_rotated_at, \
         updated_at AS endpoint_updated_at FROM listing_gateway_endpoints WHERE listing_id = $1",
    )
    .bind(listing_id)
    .fetch_optional(conn)
    .await
}

/// A listing (by UUID or slug) with its endpoint row, in one query: the gateway's read.
#[derive(Debug, FromRow)]
pub struct ListingAndEndpoint {
    #[sqlx(flatten)]
    pub listing: ListingRow,
    #[sqlx(flatten)]
    pub endpoint: EndpointRow,
}

pub async fn listing_and_endpoint(
    pool: &AnyPool,
    id_or_slug: &str,
) -> sqlx::Result<Option<ListingAndEndpoint>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LISTING_COLUMNS}, e.listing_id, e.url_enc, e.upstream_auth_enc, e.signing_secret_enc,          e.timeout_ms, e.max_request_bytes, e.max_response_bytes, e.status AS endpoint_status,          e.secret_rotated_at, e.updated_at AS endpoint_updated_at          FROM listings l JOIN listing_gateway_endpoints e ON e.listing_id = l.id          WHERE l.id = $1 OR l.slug = $1"
    )))
    .bind(id_or_slug)
    .fetch_optional(pool)
    .await
}

pub async fn all_endpoints(pool: &AnyPool) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as(
        "SELECT listing_id, url_enc, upstream_auth_enc, signing_secret_enc, timeout_ms, \
         max_request_bytes, max_response_bytes, status AS endpoint_status, secret_rotated_at, \
         updated_at AS endpoint_updated_at FROM listing_gateway_endpoints",
    )
    .fetch_all(pool)
    .await
}

/// Rewrites every column of an endpoint row.
pub async fn update_endpoint(conn: &mut AnyConnection, e: &EndpointRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE listing_gateway_endpoints SET url_enc = $1, upstream_auth_enc = $2, \
         signing_secret_enc = $3, timeout_ms = $4, max_request_bytes = $5, max_response_bytes = $6, \
         status = $7, secret_rotated_at = $8, updated_at = $9 WHERE listing_id = $10",
    )
    .bind(e.url_enc.as_deref())
    .bind(e.upstream_auth_enc.as_deref())
    .bind(&e.signing_secret_enc)
    .bind(e.timeout_ms)
    .bind(e.max_request_bytes)
    .bind(e.max_response_bytes)
    .bind(e.status.as_str())
    .bind(e.secret_rotated_at)
    .bind(e.updated_at)
    .bind(&e.listing_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_challenge(
    pool: &AnyPool,
    challenge: &str,
    profile_id: &str,
    difficulty: u8,
    now: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO listing_challenges (challenge, profile_id, difficulty, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(challenge)
    .bind(profile_id)
    .bind(i64::from(difficulty))
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
pub struct ChallengeRow {
    pub challenge: String,
    pub difficulty: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

/// The named challenge of this profile, or its newest one.
pub async fn find_challenge(
    pool: &AnyPool,
    profile_id: &str,
    challenge: Option<&str>,
) -> sqlx::Result<Option<ChallengeRow>> {
    match challenge {
        Some(c) => {
            sqlx::query_as(
                "SELECT challenge, difficulty, expires_at, consumed_at FROM listing_challenges \
                 WHERE profile_id = $1 AND challenge = $2",
            )
            .bind(profile_id)
            .bind(c)
            .fetch_optional(pool)
            .await
        }
        None => {
            sqlx::query_as(
                "SELECT challenge, difficulty, expires_at, consumed_at FROM listing_challenges \
                 WHERE profile_id = $1 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(profile_id)
            .fetch_optional(pool)
            .await
        }
    }
}

/// Consumes a challenge; false when another request consumed it first.
pub async fn consume_challenge(pool: &AnyPool, challenge: &str, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE listing_challenges SET consumed_at = $1 \
         WHERE challenge = $2 AND consumed_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(challenge)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_strip_query_syntax() {
        assert_eq!(search_terms("Signal  router*"), vec!["signal", "router"]);
        assert_eq!(search_terms("\" OR 1=1 --"), vec!["or", "1", "1"]);
        assert!(search_terms("*** ---").is_empty());
        assert_eq!(search_terms("a b c d e f g h i j").len(), 8);
    }
}

/// A listing's seller adapter.
#[derive(Debug, FromRow)]
pub struct AdapterRow {
    pub listing_id: String,
    pub source: String,
    pub component: Option<Vec<u8>>,
    pub component_sha256: String,
    pub component_bytes: i64,
    pub config: String,
    pub updated_at: i64,
}

impl AdapterRow {
    pub fn info(&self) -> AdapterInfo {
        AdapterInfo {
            listing_id: self.listing_id.clone(),
            source: self.source.clone(),
            component_sha256: self.component_sha256.clone(),
            component_bytes: self.component_bytes,
            config: serde_json::from_str(&self.config).unwrap_or_default(),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// Attaches (or replaces) a listing's adapter.
pub async fn put_adapter(conn: &mut AnyConnection, a: &AdapterRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO listing_adapters (listing_id, source, component, component_sha256, \
         component_bytes, config, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (listing_id) DO UPDATE SET source = excluded.source, \
         component = excluded.component, component_sha256 = excluded.component_sha256, \
         component_bytes = excluded.component_bytes, config = excluded.config, \
         updated_at = excluded.updated_at",
    )
    .bind(&a.listing_id)
    .bind(&a.source)
    .bind(a.component.as_deref())
    .bind(&a.component_sha256)
    .bind(a.component_bytes)
    .bind(&a.config)
    .bind(a.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A listing's adapter; `with_component` also reads the uploaded bytes.
pub async fn adapter(
    pool: &AnyPool,
    listing_id: &str,
    with_component: bool,
) -> sqlx::Result<Option<AdapterRow>> {
    let component = if with_component {
        "component"
    } else {
        "NULL AS component"
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT listing_id, source, {component}, component_sha256, component_bytes, config, \
         updated_at FROM listing_adapters WHERE listing_id = $1"
    )))
    .bind(listing_id)
    .fetch_optional(pool)
    .await
}

pub async fn delete_adapter(pool: &AnyPool, listing_id: &str) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("DELETE FROM listing_adapters WHERE listing_id = $1")
            .bind(listing_id)
            .execute(pool)
            .await?
            .rows_affected()
            > 0,
    )
}
