//! Connection-level behaviour of the host: slow and stalled clients are timed out, the
//! connection cap keeps health checks answering, and malformed HTTP gets envelopes.

use std::time::Duration;

use crochet::config::Config;

use crate::common::{RawConn, TestApp};
use crate::on_both_backends;

const WAIT: Duration = Duration::from_secs(5);

on_both_backends!(mod short_header_timeout, configure = crate::connections::short_header_timeout;
    half_sent_headers_are_closed_after_the_header_timeout);
on_both_backends!(mod short_body_timeout, configure = crate::connections::short_body_timeout;
    a_body_shorter_than_its_content_length_gets_408);
on_both_backends!(mod short_idle_timeout, configure = crate::connections::short_idle_timeout;
    an_idle_keep_alive_connection_is_closed_after_the_idle_timeout);
on_both_backends!(mod eight_connections, configure = crate::connections::eight_connections;
    health_answers_at_the_connection_cap);
on_both_backends!(
    malformed_http_gets_envelopes,
    a_malformed_request_after_a_good_one_gets_an_envelope,
);

fn short_header_timeout(c: &mut Config) {
    c.server.header_read_timeout_ms = 400;
    c.server.idle_timeout_ms = 30_000;
}

fn short_body_timeout(c: &mut Config) {
    c.server.body_read_timeout_ms = 400;
}

fn short_idle_timeout(c: &mut Config) {
    c.server.idle_timeout_ms = 400;
    c.server.header_read_timeout_ms = 30_000;
}

/// 8 served connections, and a spare allowance of 8 that only answers health.
fn eight_connections(c: &mut Config) {
    c.server.max_connections = 8;
    c.server.header_read_timeout_ms = 2_500;
}

async fn half_sent_headers_are_closed_after_the_header_timeout(app: TestApp) {
    let mut conn = RawConn::open(&app).await;
    conn.send(b"GET /api/v1/hea").await.unwrap();
    let took = conn.closed_within(WAIT).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");

    // A client that connects and sends nothing is held no longer.
    let mut silent = RawConn::open(&app).await;
    silent.closed_within(WAIT).await;
}

async fn a_body_shorter_than_its_content_length_gets_408(app: TestApp) {
    let mut conn = RawConn::open(&app).await;
    conn.send(
        b"POST /api/v1/auth/challenge HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"wallet_a",
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let r = conn.response(WAIT).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "REQUEST_TIMEOUT");
    conn.closed_within(WAIT).await;
}

async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(app: TestApp) {
    let mut conn = RawConn::open(&app).await;
    for _ in 0..2 {
        conn.send(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(conn.response(WAIT).await.status, 200);
    }
    let took = conn.closed_within(WAIT).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
}

async fn health_answers_at_the_connection_cap(app: TestApp) {
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut c = RawConn::open(&app).await;
        c.send(b"GET /api/v1/categ").await.unwrap();
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut health = RawConn::open(&app).await;
    health
        .send(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let r = health.response(WAIT).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let mut busy = RawConn::open(&app).await;
    busy.send(b"GET /api/v1/categories HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let r = busy.response(WAIT).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "SERVER_BUSY");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    busy.closed_within(WAIT).await;
    health.closed_within(WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // With the allowance full too, new connections are closed unanswered.
    let mut spare = Vec::new();
    for _ in 0..8 {
        let mut c = RawConn::open(&app).await;
        c.send(b"GET /api/v1/categ").await.unwrap();
        spare.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = RawConn::open(&app).await;
    let took = refused.closed_within(WAIT).await;
    assert!(
        took < Duration::from_millis(1_000),
        "refused after {took:?}"
    );

    // Once the stalled clients time out, service resumes.
    for c in stalled.iter_mut().chain(spare.iter_mut()) {
        c.closed_within(WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conn = RawConn::open(&app).await;
    conn.send(b"GET /api/v1/categories HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(conn.response(WAIT).await.status, 200);
}

/// Sends `request` on a new connection and returns the answer.
async fn answer(app: &TestApp, request: &[u8]) -> crate::common::RawResponse {
    let mut conn = RawConn::open(app).await;
    // hyper may answer and close before all of a long request is written.
    let _ = conn.send(request).await;
    conn.response(WAIT).await
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut req = b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 1..n {
        req.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

async fn malformed_http_gets_envelopes(app: TestApp) {
    // (request, status, code)
    let too_long_target = format!(
        "GET /api/v1/{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (with_headers(64), 200, ""),
        (with_headers(65), 431, "TOO_MANY_HEADERS"),
        (with_headers(150), 431, "HEADERS_TOO_LARGE"),
        (
            b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "MALFORMED_REQUEST",
        ),
        (
            b"GET /api/v1/\xff HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            400,
            "MALFORMED_REQUEST",
        ),
        (
            b"G(T /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            400,
            "MALFORMED_REQUEST",
        ),
        (too_long_target.into_bytes(), 414, "URI_TOO_LONG"),
    ];
    for (request, status, code) in cases {
        let r = answer(&app, &request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(
            r.status,
            status,
            "{shown}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if status != 200 {
            assert_eq!(r.error_code(), code, "{shown}");
        }
    }
}

async fn a_malformed_request_after_a_good_one_gets_an_envelope(app: TestApp) {
    let mut conn = RawConn::open(&app).await;
    conn.send(b"GET /api/v1/nowhere HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "ROUTE_NOT_FOUND");
    conn.send(b"GET /api/v1/health HTTP/1.1\r\nx-bad: \x7f\r\n\r\n")
        .await
        .unwrap();
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "MALFORMED_REQUEST");
}
