//! Prometheus metrics: the name, type, labels and meaning of every metric the host
//! exports, the process-wide recorder, and the typed helpers the rest of the code calls
//! (one line per call site).
//!
//! - **The recorder.** `metrics-exporter-prometheus`'s recorder is installed once per
//!   process, on first use ([`install`]); every helper here goes through it, so no handle
//!   is ever taken from the no-op recorder. A thread runs its upkeep (draining histogram
//!   samples, which would otherwise pile up between scrapes) every [`UPKEEP_EVERY`].
//!   [`render`] writes the text exposition format the `/metrics` route serves.
//! - **Cost per call.** The metrics of the hot path are registered once and their
//!   handles kept (per route and method, per plugin, per cache, per gateway outcome that
//!   happens on every call), so recording one is an atomic add or a histogram push: no
//!   allocation, no lock, no registry lookup. Label values are `&'static str`, except the
//!   names an operator configured (plugins) and the route templates, registered once.
//!   Rarer events (error answers, policy denials) go through the registry.
//! - **Money** counters are in cents (USD, the only pricing currency) and are incremented
//!   only after the ledger transaction that moved the money has committed.
//!
//! The operator's list of every metric is in `docs/operations.md`, "Metrics".

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{
    Counter, Gauge, Histogram, SharedString, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests answered by the router, by `route` (template), `method` and `status`.
pub const HTTP_REQUESTS: &str = "crochet_http_requests_total";
/// Time to answer an HTTP request, by `route` and `method`.
pub const HTTP_DURATION: &str = "crochet_http_request_duration_seconds";
/// Gateway calls, by `outcome`, `code` and `seller_status`.
pub const GATEWAY_CALLS: &str = "crochet_gateway_calls_total";
/// Time a forwarded call spent with its seller.
pub const GATEWAY_SELLER_DURATION: &str = "crochet_gateway_seller_duration_seconds";
/// Payment events, by `provider` and `event`.
pub const PAYMENTS: &str = "crochet_payments_total";
/// Cents written to the ledger, by `entry_type`.
pub const LEDGER_CENTS: &str = "crochet_ledger_cents_total";
/// Plugin calls, by `plugin`, `kind` and `result`.
pub const PLUGIN_CALLS: &str = "crochet_plugin_calls_total";
/// Policy refusals, by `plugin` and `code`.
pub const PLUGIN_DENIALS: &str = "crochet_plugin_denials_total";
/// Time of one plugin call, by `plugin` and `kind`.
pub const PLUGIN_DURATION: &str = "crochet_plugin_call_duration_seconds";
/// History rows waiting for the writer.
pub const HISTORY_QUEUE: &str = "crochet_gateway_history_queue_rows";
/// Rows per committed history batch.
pub const HISTORY_BATCH_ROWS: &str = "crochet_gateway_history_batch_rows";
/// Time to write and commit one history batch.
pub const HISTORY_FLUSH_DURATION: &str = "crochet_gateway_history_flush_duration_seconds";
/// History rows that could not be written (after a retry).
pub const HISTORY_ROWS_LOST: &str = "crochet_gateway_history_rows_lost_total";
/// Pooled database connections, by `state` (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "crochet_db_pool_connections";
/// The pool's connection cap.
pub const DB_POOL_MAX: &str = "crochet_db_pool_max_connections";
/// Time to start a write transaction: waiting for a pooled connection, then `BEGIN`.
pub const DB_BEGIN_DURATION: &str = "crochet_db_transaction_begin_duration_seconds";
/// Hot-path cache lookups, by `cache` and `result`.
pub const CACHE_LOOKUPS: &str = "crochet_cache_lookups_total";
/// Whether this instance hears cache invalidations (1) or bypasses its caches (0).
pub const CACHE_BUS_LIVE: &str = "crochet_cache_bus_live";
/// Failed Redis operations, by `where`.
pub const REDIS_ERRORS: &str = "crochet_redis_errors_total";

/// How often the recorder's upkeep runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Buckets of every `*_seconds` histogram: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the history batch size: powers of two up to the writer's batch cap.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The `route` label of requests no route matched (never the raw path).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// The `route` label of a matched route missing from the table given to [`HttpRoutes`].
pub const UNLISTED_ROUTE: &str = "unlisted";

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(HISTORY_BATCH_ROWS.into()), BATCH_BUCKETS)
                })
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => {
                    describe();
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("crochet-metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                upkeep.run_upkeep();
                            }
                        });
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "cannot start the metrics upkeep thread; histograms are drained at each scrape only");
                    }
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot install the metrics recorder: /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Installs the process's recorder (once; later calls do nothing).
pub fn install() {
    let _ = recorder();
}

/// The text exposition format of every metric (empty if no recorder could be installed).
pub fn render() -> String {
    recorder().map(PrometheusHandle::render).unwrap_or_default()
}

/// The `# HELP` lines.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered by the router, by route template (`unmatched` when none matched), method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template and method."
    );
    describe_counter!(
        GATEWAY_CALLS,
        Unit::Count,
        "Gateway calls by outcome, error code (`none` when the call succeeded) and seller status class (`none` when the seller did not answer)."
    );
    describe_histogram!(
        GATEWAY_SELLER_DURATION,
        Unit::Seconds,
        "Time a forwarded gateway call spent with its seller."
    );
    describe_counter!(
        PAYMENTS,
        Unit::Count,
        "Payment events by provider: requirement_issued, settled, failed, pending."
    );
    describe_counter!(
        LEDGER_CENTS,
        Unit::Count,
        "Cents written to the ledger by entry type (absolute amounts, USD cents), counted after the transaction commits."
    );
    describe_counter!(
        PLUGIN_CALLS,
        Unit::Count,
        "Plugin calls by plugin, kind and result (ok, denied, trap, timeout, memory_limit, output_too_large, error)."
    );
    describe_counter!(
        PLUGIN_DENIALS,
        Unit::Count,
        "Policy plugin refusals by plugin and refusal code."
    );
    describe_histogram!(
        PLUGIN_DURATION,
        Unit::Seconds,
        "Time of one plugin call (instantiation included), by plugin and kind."
    );
    describe_gauge!(
        HISTORY_QUEUE,
        Unit::Count,
        "Gateway history rows waiting for the batched writer (read at scrape time)."
    );
    describe_histogram!(
        HISTORY_BATCH_ROWS,
        Unit::Count,
        "Rows per committed gateway history batch."
    );
    describe_histogram!(
        HISTORY_FLUSH_DURATION,
        Unit::Seconds,
        "Time to write and commit one gateway history batch."
    );
    describe_counter!(
        HISTORY_ROWS_LOST,
        Unit::Count,
        "Gateway history rows that could not be written after a retry (calls that moved no money)."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        Unit::Count,
        "Pooled database connections by state (in_use, idle), read at scrape time."
    );
    describe_gauge!(
        DB_POOL_MAX,
        Unit::Count,
        "The database pool's connection cap."
    );
    describe_histogram!(
        DB_BEGIN_DURATION,
        Unit::Seconds,
        "Time to start a write transaction: waiting for a pooled connection, then BEGIN (on SQLite BEGIN IMMEDIATE, which also waits for the write lock)."
    );
    describe_counter!(
        CACHE_LOOKUPS,
        Unit::Count,
        "Hot-path cache lookups by cache and result (hit, miss, bypass while invalidations are not heard)."
    );
    describe_gauge!(
        CACHE_BUS_LIVE,
        Unit::Count,
        "1 while this instance hears cache invalidations, 0 while it bypasses its caches."
    );
    describe_counter!(
        REDIS_ERRORS,
        Unit::Count,
        "Failed Redis operations by where: plugin_counters, bus_publish, bus_subscribe."
    );
}

/// Handles registered once, at the first use of any of them.
struct Cells {
    forwarded: Counter,
    payment_required: Counter,
    payment_pending: Counter,
    seller_duration: Histogram,
    /// By [`LedgerMove`].
    ledger: [Counter; 9],
    /// By provider ([`PROVIDERS`]) and [`PaymentEvent`], registered on first use.
    payments: [[OnceLock<Counter>; 4]; 2],
    history_queue: Gauge,
    history_batch_rows: Histogram,
    history_flush: Histogram,
    history_lost: Counter,
    pool_in_use: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    db_begin: Histogram,
    /// By [`RedisWhere`].
    redis: [Counter; 3],
    bus_live: Gauge,
}

fn cells() -> &'static Cells {
    static CELLS: OnceLock<Cells> = OnceLock::new();
    CELLS.get_or_init(|| {
        install();
        let ledger = LedgerMove::ALL.map(|m| counter!(LEDGER_CENTS, "entry_type" => m.as_str()));
        let redis = RedisWhere::ALL.map(|w| counter!(REDIS_ERRORS, "where" => w.as_str()));
        Cells {
            forwarded: counter!(GATEWAY_CALLS, "outcome" => "forwarded", "code" => "none", "seller_status" => "2xx"),
            payment_required: counter!(GATEWAY_CALLS, "outcome" => "payment_required", "code" => "PAYMENT_REQUIRED", "seller_status" => "none"),
            payment_pending: counter!(GATEWAY_CALLS, "outcome" => "payment_pending", "code" => "none", "seller_status" => "none"),
            seller_duration: histogram!(GATEWAY_SELLER_DURATION),
            ledger,
            payments: Default::default(),
            history_queue: gauge!(HISTORY_QUEUE),
            history_batch_rows: histogram!(HISTORY_BATCH_ROWS),
            history_flush: histogram!(HISTORY_FLUSH_DURATION),
            history_lost: counter!(HISTORY_ROWS_LOST),
            pool_in_use: gauge!(DB_POOL_CONNECTIONS, "state" => "in_use"),
            pool_idle: gauge!(DB_POOL_CONNECTIONS, "state" => "idle"),
            pool_max: gauge!(DB_POOL_MAX),
            db_begin: histogram!(DB_BEGIN_DURATION),
            redis,
            bus_live: gauge!(CACHE_BUS_LIVE),
        }
    })
}

// ---------------------------------------------------------------------------------
// HTTP

/// Methods with a label of their own; any other is `OTHER`.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OTHER"];
/// Statuses whose counters are kept per route and method (the others are looked up).
const HOT_STATUSES: [u16; 5] = [200, 201, 202, 204, 402];

/// Where an HTTP request is counted: its route and method.
#[derive(Debug, Clone, Copy)]
pub struct RouteSlot {
    route: usize,
    method: usize,
}

/// The HTTP metrics of one router: a handle table per route template and method, built
/// once from the router's templates, so a request costs a map lookup and atomic adds.
pub struct HttpRoutes {
    index: HashMap<Arc<str>, usize>,
    /// `[0]`: unmatched; `[1]`: unlisted; then one per template.
    routes: Box<[RouteCells]>,
}

struct RouteCells {
    route: SharedString,
    methods: [MethodCells; METHODS.len()],
}

#[derive(Default)]
struct MethodCells {
    duration: OnceLock<Histogram>,
    statuses: [OnceLock<Counter>; HOT_STATUSES.len()],
}

impl HttpRoutes {
    /// The table for a router serving these route templates (axum's `MatchedPath`).
    pub fn new<'a>(templates: impl IntoIterator<Item = &'a str>) -> Self {
        install();
        let cells = |route: SharedString| RouteCells {
            route,
            methods: Default::default(),
        };
        let mut routes = vec![
            cells(SharedString::const_str(UNMATCHED_ROUTE)),
            cells(SharedString::const_str(UNLISTED_ROUTE)),
        ];
        let mut index = HashMap::new();
        for template in templates {
            if index.contains_key(template) {
                continue;
            }
            let shared: Arc<str> = Arc::from(template);
            index.insert(shared.clone(), routes.len());
            routes.push(cells(SharedString::from(shared)));
        }
        Self {
            index,
            routes: routes.into_boxed_slice(),
        }
    }

    /// Where a request with this matched template (`None`: no route matched) and method
    /// is counted.
    pub fn slot(&self, matched: Option<&str>, method: &str) -> RouteSlot {
        let route = match matched {
            None => 0,
            Some(template) => self.index.get(template).copied().unwrap_or(1),
        };
        let method = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        RouteSlot { route, method }
    }

    /// Counts one answered request.
    pub fn record(&self, slot: RouteSlot, status: u16, elapsed: Duration) {
        let Some(route) = self.routes.get(slot.route) else {
            return;
        };
        let method = METHODS[slot.method];
        let cells = &route.methods[slot.method];
        cells
            .duration
            .get_or_init(
                || histogram!(HTTP_DURATION, "route" => route.route.clone(), "method" => method),
            )
            .record(elapsed);
        let status_label = status_label(status);
        let make = || counter!(HTTP_REQUESTS, "route" => route.route.clone(), "method" => method, "status" => status_label);
        match HOT_STATUSES.iter().position(|s| *s == status) {
            Some(i) => cells.statuses[i].get_or_init(make).increment(1),
            None => make().increment(1),
        }
    }
}

/// Three ASCII digits for each status code 0-599.
static STATUS_DIGITS: [[u8; 3]; 600] = {
    let mut table = [[0u8; 3]; 600];
    let mut i = 0;
    while i < 600 {
        table[i] = [
            b'0' + (i / 100) as u8,
            b'0' + (i / 10 % 10) as u8,
            b'0' + (i % 10) as u8,
        ];
        i += 1;
    }
    table
};

/// A status code as a label value (`"200"`), without allocating.
fn status_label(status: u16) -> &'static str {
    STATUS_DIGITS
        .get(usize::from(status))
        .and_then(|d| std::str::from_utf8(d).ok())
        .unwrap_or("other")
}

/// A seller's HTTP status as a class label: `2xx`, ..., `none` when it did not answer.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "none",
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
    }
}

// ---------------------------------------------------------------------------------
// Gateway

/// What became of a gateway call (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// Forwarded and answered by the seller (200).
    Forwarded,
    /// Answered with a payment requirement (402 `PAYMENT_REQUIRED`).
    PaymentRequired,
    /// Settlement pending (202).
    PaymentPending,
    /// A policy plugin refused it (its code is the `code`).
    PolicyRefused,
    /// Refused before any forward for another reason (listing not active, payment
    /// already used or failed, call in progress or interrupted, bad body, ...).
    Refused,
    /// Forwarded, and the seller failed (timeout, unreachable, error or invalid answer).
    SellerFailed,
    /// The host or a service it needs failed (database, payment provider, plugin).
    Error,
}

impl GatewayOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::PaymentRequired => "payment_required",
            Self::PaymentPending => "payment_pending",
            Self::PolicyRefused => "policy_refused",
            Self::Refused => "refused",
            Self::SellerFailed => "seller_failed",
            Self::Error => "error",
        }
    }
}

/// Counts one gateway call. `code` is the error code of a call that did not succeed.
pub fn gateway_call(
    outcome: GatewayOutcome,
    code: Option<&Cow<'static, str>>,
    seller_status: Option<u16>,
) {
    let cells = cells();
    let class = status_class(seller_status);
    match (outcome, code.map(|c| c.as_ref())) {
        (GatewayOutcome::Forwarded, None) if class == "2xx" => cells.forwarded.increment(1),
        (GatewayOutcome::PaymentRequired, Some("PAYMENT_REQUIRED")) if class == "none" => {
            cells.payment_required.increment(1);
        }
        (GatewayOutcome::PaymentPending, None) if class == "none" => {
            cells.payment_pending.increment(1);
        }
        _ => {
            let code = code.map_or(SharedString::const_str("none"), |c| c.clone().into());
            counter!(GATEWAY_CALLS, "outcome" => outcome.as_str(), "code" => code, "seller_status" => class)
                .increment(1);
        }
    }
}

/// Records the time a forwarded call spent with its seller.
pub fn seller_call(elapsed: Duration) {
    cells().seller_duration.record(elapsed);
}

// ---------------------------------------------------------------------------------
// Payments and money

/// Providers with handles kept; others are looked up.
const PROVIDERS: [&str; 2] = ["mock", "relay"];

/// A payment event (the `event` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// A new payment requirement was issued (a 402 that created one).
    RequirementIssued,
    /// The provider reported the payment settled.
    Settled,
    /// The provider reported the payment failed.
    Failed,
    /// The provider reported settlement still pending (a 202).
    Pending,
}

impl PaymentEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequirementIssued => "requirement_issued",
            Self::Settled => "settled",
            Self::Failed => "failed",
            Self::Pending => "pending",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts one payment event of `provider` (the provider's name).
pub fn payment(provider: &'static str, event: PaymentEvent) {
    let make = || counter!(PAYMENTS, "provider" => provider, "event" => event.as_str());
    match PROVIDERS.iter().position(|p| *p == provider) {
        Some(i) => cells().payments[i][event.index()]
            .get_or_init(make)
            .increment(1),
        None => make().increment(1),
    }
}

/// A movement of money, named by its ledger entry type (the `entry_type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LedgerMove {
    GatewayDebit,
    SellerCredit,
    MarketplaceFee,
    GatewayRefund,
    SellerCreditReversal,
    MarketplaceFeeReversal,
    BalanceDebit,
    DepositPayment,
    Deposit,
}

impl LedgerMove {
    const ALL: [Self; 9] = [
        Self::GatewayDebit,
        Self::SellerCredit,
        Self::MarketplaceFee,
        Self::GatewayRefund,
        Self::SellerCreditReversal,
        Self::MarketplaceFeeReversal,
        Self::BalanceDebit,
        Self::DepositPayment,
        Self::Deposit,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::GatewayDebit => "gateway_debit",
            Self::SellerCredit => "seller_credit",
            Self::MarketplaceFee => "marketplace_fee",
            Self::GatewayRefund => "gateway_refund",
            Self::SellerCreditReversal => "seller_credit_reversal",
            Self::MarketplaceFeeReversal => "marketplace_fee_reversal",
            Self::BalanceDebit => "balance_debit",
            Self::DepositPayment => "deposit_payment",
            Self::Deposit => "deposit",
        }
    }
}

fn add_cents(m: LedgerMove, cents: i64) {
    cells().ledger[m as usize].increment(cents.unsigned_abs());
}

/// A paid call's charge, after its accounting transaction committed: the buyer's
/// debit (from a payment, or from the balance), the marketplace fee, and the seller's
/// credit (the rest).
pub fn call_charged(charged_cents: i64, fee_cents: i64, from_balance: bool) {
    let debit = if from_balance {
        LedgerMove::BalanceDebit
    } else {
        LedgerMove::GatewayDebit
    };
    add_cents(debit, charged_cents);
    add_cents(LedgerMove::MarketplaceFee, fee_cents);
    add_cents(LedgerMove::SellerCredit, charged_cents - fee_cents);
}

/// A charge undone, after its reversal committed: the buyer's refund and the reversals
/// of the fee and of the seller's credit.
pub fn charge_reversed(refunded_cents: i64, fee_cents: i64) {
    add_cents(LedgerMove::GatewayRefund, refunded_cents);
    add_cents(LedgerMove::MarketplaceFeeReversal, fee_cents);
    add_cents(LedgerMove::SellerCreditReversal, refunded_cents - fee_cents);
}

/// A top-up credited to a balance, after its transaction committed.
pub fn deposit_credited(cents: i64) {
    add_cents(LedgerMove::DepositPayment, cents);
    add_cents(LedgerMove::Deposit, cents);
}

// ---------------------------------------------------------------------------------
// Plugins

/// Which kind of plugin (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Policy,
    Scorer,
    SellerAdapter,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Scorer => "scorer",
            Self::SellerAdapter => "seller-adapter",
        }
    }
}

/// How one plugin call ended (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginResult {
    /// It answered (a policy allowed the call).
    Ok,
    /// A policy refused the call, or an adapter rejected the body.
    Denied,
    /// The guest trapped or broke the canonical ABI.
    Trap,
    /// It ran past its time limit.
    Timeout,
    /// It ran out of memory.
    MemoryLimit,
    /// It returned more text than allowed.
    OutputTooLarge,
    /// Any other failure.
    Error,
}

impl PluginResult {
    const ALL: [Self; 7] = [
        Self::Ok,
        Self::Denied,
        Self::Trap,
        Self::Timeout,
        Self::MemoryLimit,
        Self::OutputTooLarge,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::OutputTooLarge => "output_too_large",
            Self::Error => "error",
        }
    }
}

/// The handles of one loaded plugin, registered when it is loaded.
pub struct PluginMetrics {
    plugin: SharedString,
    results: [Counter; PluginResult::ALL.len()],
    duration: Histogram,
}

impl PluginMetrics {
    /// The handles of the plugin labelled `plugin` (its configured name; one label for
    /// all seller adapters, which sellers upload).
    pub fn new(plugin: &str, kind: PluginKind) -> Self {
        install();
        let plugin = SharedString::from(Arc::<str>::from(plugin));
        let kind = kind.as_str();
        let results = PluginResult::ALL.map(|r| {
            counter!(PLUGIN_CALLS, "plugin" => plugin.clone(), "kind" => kind, "result" => r.as_str())
        });
        let duration = histogram!(PLUGIN_DURATION, "plugin" => plugin.clone(), "kind" => kind);
        Self {
            plugin,
            results,
            duration,
        }
    }

    /// Counts one call and its time.
    pub fn observe(&self, result: PluginResult, elapsed: Duration) {
        self.results[result as usize].increment(1);
        self.duration.record(elapsed);
    }

    /// Counts a policy's refusal under its code (`POLICY_DENIED` if the code is not
    /// `SCREAMING_SNAKE` of at most 64 characters, as the refusal's answer says).
    pub fn denied(&self, code: &str) {
        let well_formed = !code.is_empty()
            && code.len() <= 64
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let code = if well_formed {
            SharedString::from(code.to_owned())
        } else {
            SharedString::const_str("POLICY_DENIED")
        };
        counter!(PLUGIN_DENIALS, "plugin" => self.plugin.clone(), "code" => code).increment(1);
    }
}

// ---------------------------------------------------------------------------------
// Gateway history writer

/// Sets the number of history rows waiting for the writer (at scrape time).
pub fn history_queue(rows: usize) {
    cells().history_queue.set(rows as f64);
}

/// Records one committed history batch: its rows and how long it took.
pub fn history_batch(rows: usize, elapsed: Duration) {
    let cells = cells();
    cells.history_batch_rows.record(rows as f64);
    cells.history_flush.record(elapsed);
}

/// Counts history rows that could not be written.
pub fn history_rows_lost(rows: usize) {
    cells().history_lost.increment(rows as u64);
}

// ---------------------------------------------------------------------------------
// Database, caches, Redis

/// Sets the pool gauges (at scrape time).
pub fn db_pool(in_use: usize, idle: usize, max: u32) {
    let cells = cells();
    cells.pool_in_use.set(in_use as f64);
    cells.pool_idle.set(idle as f64);
    cells.pool_max.set(f64::from(max));
}

/// Records the time a write transaction took to start.
pub fn db_begin(elapsed: Duration) {
    cells().db_begin.record(elapsed);
}

/// The lookup counters of one cache (`cache` label: its name).
pub struct CacheMetrics {
    hit: Counter,
    miss: Counter,
    bypass: Counter,
}

impl CacheMetrics {
    pub fn new(cache: &'static str) -> Self {
        install();
        let make =
            |result: &'static str| counter!(CACHE_LOOKUPS, "cache" => cache, "result" => result);
        Self {
            hit: make("hit"),
            miss: make("miss"),
            bypass: make("bypass"),
        }
    }

    /// A fresh entry answered.
    pub fn hit(&self) {
        self.hit.increment(1);
    }

    /// No fresh entry: the database is read.
    pub fn miss(&self) {
        self.miss.increment(1);
    }

    /// The cache was skipped because invalidations are not heard.
    pub fn bypass(&self) {
        self.bypass.increment(1);
    }
}

/// Sets whether this instance hears cache invalidations.
pub fn cache_bus_live(live: bool) {
    cells().bus_live.set(if live { 1.0 } else { 0.0 });
}

/// Where a Redis operation failed (the `where` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisWhere {
    /// A plugin's `counter-add` (or connecting for it).
    PluginCounters,
    /// Publishing a cache invalidation.
    BusPublish,
    /// The cache-invalidation subscription (could not start, or dropped).
    BusSubscribe,
}

impl RedisWhere {
    const ALL: [Self; 3] = [Self::PluginCounters, Self::BusPublish, Self::BusSubscribe];

    fn as_str(self) -> &'static str {
        match self {
            Self::PluginCounters => "plugin_counters",
            Self::BusPublish => "bus_publish",
            Self::BusSubscribe => "bus_subscribe",
        }
    }
}

/// Counts a failed Redis operation.
pub fn redis_error(at: RedisWhere) {
    cells().redis[at as usize].increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of a series in the exposition, by its exact name and label text.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn status_labels_and_classes() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(402), "402");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(600), "other");
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
    }

    #[test]
    fn routes_methods_and_statuses_are_labelled() {
        let routes = HttpRoutes::new(["/unit/a/{id}", "/unit/b", "/unit/a/{id}"]);
        let a = routes.slot(Some("/unit/a/{id}"), "GET");
        routes.record(a, 200, Duration::from_millis(3));
        routes.record(a, 200, Duration::from_millis(3));
        routes.record(a, 418, Duration::from_millis(3));
        routes.record(
            routes.slot(Some("/unit/b"), "PROPFIND"),
            405,
            Duration::ZERO,
        );
        routes.record(routes.slot(None, "GET"), 404, Duration::ZERO);
        let text = render();
        assert_eq!(
            value(
                &text,
                r#"crochet_http_requests_total{route="/unit/a/{id}",method="GET",status="200"}"#
            ),
            2.0,
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"crochet_http_requests_total{route="/unit/a/{id}",method="GET",status="418"}"#
            ),
            1.0
        );
        assert!(
            value(
                &text,
                r#"crochet_http_requests_total{route="/unit/b",method="OTHER",status="405"}"#
            ) >= 1.0
        );
        assert!(
            value(
                &text,
                r#"crochet_http_requests_total{route="unmatched",method="GET",status="404"}"#
            ) >= 1.0
        );
        assert!(text.contains("# TYPE crochet_http_request_duration_seconds histogram"));
        assert!(
            value(
                &text,
                r#"crochet_http_request_duration_seconds_count{route="/unit/a/{id}",method="GET"}"#
            ) >= 3.0
        );
        // A matched template missing from the table still gets a bounded label.
        assert_eq!(routes.slot(Some("/elsewhere"), "GET").route, 1);
    }

    #[test]
    fn plugin_denial_codes_are_bounded() {
        let m = PluginMetrics::new("unit-policy", PluginKind::Policy);
        m.observe(PluginResult::Denied, Duration::from_micros(50));
        m.denied("UNIT_LIMITED");
        m.denied("not a code {with} \"quotes\"");
        let text = render();
        assert_eq!(
            value(
                &text,
                r#"crochet_plugin_denials_total{plugin="unit-policy",code="UNIT_LIMITED"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"crochet_plugin_denials_total{plugin="unit-policy",code="POLICY_DENIED"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"crochet_plugin_calls_total{plugin="unit-policy",kind="policy",result="denied"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"crochet_plugin_calls_total{plugin="unit-policy",kind="policy",result="trap"}"#
            ),
            0.0,
            "every result is registered at load"
        );
        assert!(text.contains(
            r#"crochet_plugin_calls_total{plugin="unit-policy",kind="policy",result="trap"} 0"#
        ));
    }

    #[test]
    fn upkeep_interval_is_short() {
        assert!(UPKEEP_EVERY <= Duration::from_secs(10));
    }
}
