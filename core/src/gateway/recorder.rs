//! Batched history writes for gateway attempts that move no money (free calls, 402s,
//! 202s, refusals), with the score event of each forwarded one.
//!
//! Those rows go through a bounded channel to one writer task that commits up to
//! [`MAX_BATCH`] rows per transaction: on SQLite, one writer with batched commits
//! instead of a write transaction per call. On PostgreSQL up to [`PG_BATCHES_IN_FLIGHT`]
//! batches commit at once (their rows never touch the same rows, so they cannot
//! deadlock); one at a time capped the history, and so the gateway, at one batch per
//! insert-and-commit round on the server. On SQLite a batch is a write transaction like
//! any other, on the host's one writer connection ([`Database::begin`]), whose page
//! cache stays warm from batch to batch. After the first row of a batch the writer
//! waits [`LINGER`] for more, so that under load a commit carries hundreds of rows rather
//! than a handful (each commit rewrites the same index pages to the WAL and wakes the
//! database thread several times). Paid calls never use it: their request row,
//! ledger entries and receipt are written synchronously in the transaction that consumes
//! the payment. Nothing is dropped: a full channel makes callers wait (backpressure);
//! history reads and shutdown call [`Recorder::flush`], which cuts the wait short and
//! returns once every row sent before it is committed. A crash loses at most the rows
//! of calls that moved no money from the last [`LINGER`] (and whatever was queued).
//!
//! Metrics: each committed batch's rows and time, rows that could not be written, and
//! ([`Recorder::queued`], read at scrape time) the rows waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::gateway::model::GatewayRequestStatus;
use crate::reputation::events::{self, EventKind, ScoreEvent};
use crate::storage::{Backend, Database, PendingWrites, insert_runs};

/// Rows per transaction, at most.
pub const MAX_BATCH: usize = 512;
/// Batches being committed at once on PostgreSQL (SQLite: one, its single writer).
pub const PG_BATCHES_IN_FLIGHT: usize = 4;
/// Rows waiting for the writer, at most, before callers wait.
const CHANNEL: usize = 8192;
/// How long the writer lets a batch gather after its first row (unless the previous
/// batch was full, or a flush is asked for).
pub const LINGER: Duration = Duration::from_millis(10);

/// A finished attempt, complete, ready to insert.
#[derive(Debug, Clone)]
pub struct FinishedRequest {
    pub id: String,
    pub buyer_id: String,
    pub seller_id: String,
    pub listing_id: String,
    pub relay_request_id: Option<String>,
    pub status: GatewayRequestStatus,
    pub currency: String,
    pub request_bytes: i64,
    pub request_sha256: String,
    pub response_bytes: Option<i64>,
    pub response_sha256: Option<String>,
    pub seller_status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error_code: Option<&'static str>,
    pub created_at: i64,
}

enum Msg {
    Row(Box<FinishedRequest>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    /// Wakes a lingering writer when a flush is asked for.
    flush_now: Arc<Notify>,
}

impl Recorder {
    /// Starts the writer task on the current runtime.
    pub fn start(db: Database) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let flush_now = Arc::new(Notify::new());
        tokio::spawn(writer(db, rx, flush_now.clone()));
        Self { tx, flush_now }
    }

    /// Queues a row (waits while the queue is full).
    pub async fn record(&self, row: FinishedRequest) {
        if self.tx.send(Msg::Row(Box::new(row))).await.is_err() {
            tracing::error!("gateway history writer stopped; a request row was not recorded");
        }
    }

    /// Rows (and flush requests) waiting in the queue for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Returns once every row queued before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            self.flush_now.notify_one();
            let _ = wait.await;
        }
    }
}

impl PendingWrites for Recorder {
    fn flush(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(Recorder::flush(self))
    }
}

async fn writer(db: Database, mut rx: mpsc::Receiver<Msg>, flush_now: Arc<Notify>) {
    let max_in_flight = match db.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => PG_BATCHES_IN_FLIGHT,
    };
    let mut in_flight = JoinSet::new();
    let mut rows = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::new();
    let mut last_batch_full = false;
    while let Some(first) = rx.recv().await {
        if matches!(first, Msg::Row(_)) && !last_batch_full {
            // A flush asked for before this wait began left a permit: it ends the wait
            // at once, which only costs a smaller batch.
            tokio::select! {
                () = tokio::time::sleep(LINGER) => {}
                () = flush_now.notified() => {}
            }
        }
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(r) => rows.push(*r),
                Msg::Flush(ack) => acks.push(ack),
            }
            if rows.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        last_batch_full = rows.len() >= MAX_BATCH;
        if !rows.is_empty() {
            while in_flight.len() >= max_in_flight {
                in_flight.join_next().await;
            }
            let batch = std::mem::replace(&mut rows, Vec::with_capacity(MAX_BATCH));
            in_flight.spawn(commit(db.clone(), batch));
        }
        if !acks.is_empty() {
            // Every row queued before these flushes is in a batch spawned by now.
            while in_flight.join_next().await.is_some() {}
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Commits one batch. One retry covers a transient lock timeout or a broken
/// connection; a second failure is logged loudly.
async fn commit(db: Database, rows: Vec<FinishedRequest>) {
    let started = std::time::Instant::now();
    let mut last_error = None;
    for _ in 0..2 {
        match write(&db, &rows).await {
            Ok(()) => {
                crate::metrics::history_batch(rows.len(), started.elapsed());
                return;
            }
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(e) = last_error {
        crate::metrics::history_rows_lost(rows.len());
        tracing::error!(error = %e, rows = rows.len(), "could not record gateway history rows");
    }
}

async fn write(db: &Database, rows: &[FinishedRequest]) -> sqlx::Result<()> {
    // Multi-row statements: one round through the driver per chunk, not per row.
    const TUPLE: &str =
        "($1, $2, $3, $4, $5, $6, 0, 0, 0, 0, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
    let mut tx = db.begin().await?;
    let backend = db.backend();
    for chunk in insert_runs(rows) {
        let sql = format!(
            "INSERT INTO gateway_requests (id, buyer_id, seller_id, listing_id, relay_request_id, status, billable, \
             charged_cents, fee_cents, seller_cents, currency, request_bytes, request_sha256, response_bytes, \
             response_sha256, seller_status_code, latency_ms, error_code, created_at, updated_at) \
             VALUES {} ON CONFLICT (id) DO NOTHING",
            backend.values_list(TUPLE, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(&r.buyer_id)
                .bind(&r.seller_id)
                .bind(&r.listing_id)
                .bind(r.relay_request_id.as_deref())
                .bind(r.status.as_str())
                .bind(&r.currency)
                .bind(r.request_bytes)
                .bind(&r.request_sha256)
                .bind(r.response_bytes)
                .bind(r.response_sha256.as_deref())
                .bind(r.seller_status_code)
                .bind(r.latency_ms)
                .bind(r.error_code)
                .bind(r.created_at)
                .bind(r.created_at);
        }
        q.execute(&mut *tx).await?;
    }
    // Score events carry the time they are recorded, not the call's start (see
    // `reputation::events`); one row per kind, seller, buyer and listing in this batch.
    let recorded_at = crate::storage::now_ms();
    let mut events: Vec<ScoreEvent<'_>> = Vec::new();
    let mut index: HashMap<(EventKind, &str, &str, &str), usize> = HashMap::new();
    for r in rows {
        let Some(kind) = r.status.score_event(r.error_code) else {
            continue;
        };
        let key = (kind, &*r.seller_id, &*r.buyer_id, &*r.listing_id);
        match index.get(&key) {
            Some(&i) => events[i].n += 1,
            None => {
                index.insert(key, events.len());
                events.push(ScoreEvent {
                    id: &r.id,
                    kind,
                    subject_id: &r.seller_id,
                    actor_id: &r.buyer_id,
                    listing_id: &r.listing_id,
                    gateway_request_id: Some(&r.id),
                    n: 1,
                    amount_cents: 0,
                    rating: None,
                    created_at: recorded_at,
                });
            }
        }
    }
    events::record_many(&mut tx, &events).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: &str) -> FinishedRequest {
        FinishedRequest {
            id: id.to_owned(),
            buyer_id: "buyer".into(),
            seller_id: "seller".into(),
            listing_id: "listing".into(),
            relay_request_id: None,
            status: GatewayRequestStatus::PaymentRequired,
            currency: "USD".into(),
            request_bytes: 2,
            request_sha256: "00".into(),
            response_bytes: None,
            response_sha256: None,
            seller_status_code: None,
            latency_ms: None,
            error_code: None,
            created_at: 1,
        }
    }

    async fn rows(db: &Database) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_requests")
            .fetch_one(db.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn rows_are_committed_in_batches_and_the_pool_closes_after_them() {
        let (_dir, db) = crate::storage::temp_sqlite().await;
        let recorder = Recorder::start(db.clone());
        recorder.record(attempt("gw_req_1")).await;
        recorder.flush().await;
        assert_eq!(rows(&db).await, 1);
        recorder.record(attempt("gw_req_2")).await;
        recorder.record(attempt("gw_req_3")).await;
        // No flush: the batch commits once its linger is over.
        let committed = async {
            while rows(&db).await < 3 {
                tokio::time::sleep(LINGER).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), committed)
            .await
            .expect("the batch was committed");
        tokio::time::timeout(Duration::from_secs(10), db.close())
            .await
            .expect("the pool closed");
    }
}
