//! Paid calls under load, for `benches/load/run.sh`: many buyers, each on its own
//! connection, buy a priced listing through the whole flow (the 402, the mock
//! settlement, the retry that is forwarded and charged).
//!
//!   paid-load API_URL LISTING_ID GATEWAY_PID
//!
//! `CONNS` buyers (default 32) register through the API. Phase one runs the 402 and the
//! settlement for `DURATION_SECS` (default 8) and keeps each settled payment; phase two
//! sends every retry. Each phase prints one row of the load run's table, with the CPU the
//! gateway process (`GATEWAY_PID`) spent per request from `/proc` (`HZ`, default 100, is
//! the kernel's clock tick: `getconf CLK_TCK`), so the retry's cost stands alone; then
//! the whole flow's rate, paid calls per second.
//!
//! Phase three pays the same number of calls from each buyer's marketplace balance
//! (`X-Crochet-Pay-From: balance`, topped up beforehand through a deposit): one request
//! per call, debited in the call's accounting transaction. Its row stands beside the
//! 402 flow's, so the round trip it saves reads directly.
//!
//! When the gateway takes x402 (its 402 carries `PAYMENT-REQUIRED`), phase three sends
//! as many x402 retries (phase four): each buyer is a wallet without an API key that signs its
//! payments (EIP-3009, before the phase starts), and each retry is verified, forwarded
//! and settled through the facilitator. Its row stands beside the relay retry's, so the
//! x402 flow's added cost reads directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BODY: &str = r#"{"task":"classify","input":{"text":"a short request"}}"#;

fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn percentile(times: &mut [Duration], q: f64) -> Duration {
    times.sort();
    times
        .get(((times.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn row(name: &str, n: usize, elapsed: Duration, times: &mut [Duration], cpu_us: f64, note: &str) {
    let (p50, p99) = (percentile(times, 0.5), percentile(times, 0.99));
    println!(
        "| {name:<26} | {:>10.2} | {:>6.2}ms | {:>6.2}ms | {cpu_us:>10.1} | {note}",
        n as f64 / elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, api, listing, pid] = &args[..] else {
        eprintln!("usage: paid-load API_URL LISTING_ID GATEWAY_PID");
        std::process::exit(2);
    };
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let conns = env("CONNS", 32) as usize;
    let duration = Duration::from_secs(env("DURATION_SECS", 8));
    let hz = env("HZ", 100) as f64;
    let gateway = format!("{api}/gateway/{listing}");

    let mut buyers = Vec::new();
    for _ in 0..conns {
        // One client per buyer: one keep-alive connection each, as wrk's.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let (key, _) = crochet_benches::register(&client, api).await;
        buyers.push((client, key));
    }

    // Phase one: the 402 and the settlement, as fast as the buyers go.
    let stop = Arc::new(AtomicBool::new(false));
    let before = cpu_ticks(pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, key) in buyers.clone() {
        let (stop, gateway) = (stop.clone(), gateway.clone());
        tasks.push(tokio::spawn(async move {
            let mut paid = Vec::new();
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .post(&gateway)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(BODY)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 402, "a priced call first answers 402");
                let body: Value = r.json().await.unwrap();
                let payment = &body["error"]["details"]["payment"];
                let settle = payment["requirements"]["settle_url"].as_str().unwrap();
                let relay = payment["relay_request_id"].as_str().unwrap().to_owned();
                let s = client
                    .post(settle)
                    .bearer_auth(&key)
                    .json(&json!({"outcome": "settled"}))
                    .send()
                    .await
                    .unwrap();
                assert!(s.status().is_success(), "settle: {}", s.status());
                times.push(t.elapsed());
                paid.push(relay);
            }
            (client, key, paid, times)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut settled = Vec::new();
    let mut times = Vec::new();
    for t in tasks {
        let (client, key, paid, t) = t.await.unwrap();
        times.extend(t);
        settled.push((client, key, paid));
    }
    let prepare = started.elapsed();
    let pairs: usize = settled.iter().map(|(_, _, p)| p.len()).sum();
    let cpu = (cpu_ticks(pid) - before) as f64 * 1e6 / hz / (2 * pairs).max(1) as f64;
    row(
        "paid: 402 + settle",
        pairs,
        prepare,
        &mut times,
        cpu,
        "pairs/s; CPU per request (two per pair)",
    );

    // Phase two: every retry, which is forwarded to the seller and charged.
    let before = cpu_ticks(pid);
    let started = Instant::now();
    let per_buyer: Vec<usize> = settled.iter().map(|(_, _, p)| p.len()).collect();
    let clients: Vec<reqwest::Client> = settled.iter().map(|(c, _, _)| c.clone()).collect();
    let keys: Vec<String> = settled.iter().map(|(_, k, _)| k.clone()).collect();
    let batches = settled
        .into_iter()
        .map(|(client, key, paid)| {
            let auth = format!("Bearer {key}");
            let requests = paid
                .into_iter()
                .map(|relay| {
                    vec![
                        ("authorization", auth.clone()),
                        ("X-Crochet-Relay-Request-Id", relay),
                    ]
                })
                .collect();
            (client, requests)
        })
        .collect();
    let (mut times, failed) = send_all(&gateway, batches).await;
    let retry = started.elapsed();
    let cpu = (cpu_ticks(pid) - before) as f64 * 1e6 / hz / pairs.max(1) as f64;
    row(
        "paid: retry (forwarded)",
        pairs,
        retry,
        &mut times,
        cpu,
        &format!("{failed} non-2xx"),
    );
    println!(
        "paid calls (402, settle, retry) per second: {:.0} ({pairs} calls by {conns} buyers)",
        pairs as f64 / (prepare + retry).as_secs_f64()
    );
    balance_calls(api, &gateway, pid, hz, &clients, &keys, &per_buyer).await;
    x402_retries(&gateway, pid, hz, clients, per_buyer).await;
}

/// Phase three: as many calls per buyer as phase two sent, each paid from the buyer's
/// balance in one request. Each buyer tops its balance up first (a deposit through the
/// mock provider), outside the measured time.
async fn balance_calls(
    api: &str,
    gateway: &str,
    pid: &str,
    hz: f64,
    clients: &[reqwest::Client],
    keys: &[String],
    per_buyer: &[usize],
) {
    let deposits = format!("{api}/balance/deposits");
    for (client, key) in clients.iter().zip(keys) {
        let asked: Value = client
            .post(&deposits)
            .bearer_auth(key)
            .json(&json!({"amount_cents": 1_000_000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let payment = &asked["error"]["details"]["payment"];
        let settle = payment["requirements"]["settle_url"].as_str().unwrap();
        let relay = payment["relay_request_id"].as_str().unwrap();
        client
            .post(settle)
            .bearer_auth(key)
            .json(&json!({"outcome": "settled"}))
            .send()
            .await
            .unwrap();
        let credited = client
            .post(&deposits)
            .bearer_auth(key)
            .header("X-Crochet-Relay-Request-Id", relay)
            .send()
            .await
            .unwrap();
        assert_eq!(credited.status(), 201, "the deposit is credited");
    }
    let total: usize = per_buyer.iter().sum();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    let batches = clients
        .iter()
        .zip(keys)
        .zip(per_buyer)
        .map(|((client, key), n)| {
            let auth = format!("Bearer {key}");
            let requests = (0..*n)
                .map(|_| {
                    vec![
                        ("authorization", auth.clone()),
                        ("X-Crochet-Pay-From", "balance".to_owned()),
                    ]
                })
                .collect();
            (client.clone(), requests)
        })
        .collect();
    let (mut times, failed) = send_all(gateway, batches).await;
    let elapsed = started.elapsed();
    let cpu = (cpu_ticks(pid) - before) as f64 * 1e6 / hz / total.max(1) as f64;
    row(
        "paid: from balance",
        total,
        elapsed,
        &mut times,
        cpu,
        &format!("{failed} non-2xx; one request per paid call"),
    );
}

/// Phase four: x402 retries, as many per buyer as phase two sent, each paid by a
/// payment the buyer's wallet signed beforehand.
async fn x402_retries(
    gateway: &str,
    pid: &str,
    hz: f64,
    clients: Vec<reqwest::Client>,
    per_buyer: Vec<usize>,
) {
    use crochet_payment_x402::{PaymentRequired, decode_header, encode_header};
    let Some(client) = clients.first() else {
        return;
    };
    let r = client
        .post(gateway)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    let offer = r
        .headers()
        .get("payment-required")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| decode_header::<PaymentRequired>(v).ok())
        .and_then(|p| p.accepts.into_iter().next());
    let Some(offer) = offer else {
        println!("paid: x402 retry: skipped (the gateway does not take x402)");
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut signed = Vec::new();
    for (client, n) in clients.into_iter().zip(per_buyer) {
        let key = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let payments: Vec<String> = (0..n)
            .map(|_| {
                let mut nonce = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
                let payload = crochet_payment_x402::evm::sign_exact_evm(
                    &key,
                    &offer,
                    None,
                    now - 60,
                    now + 600,
                    nonce,
                );
                encode_header(&payload)
            })
            .collect();
        signed.push((client, payments));
    }
    let total: usize = signed.iter().map(|(_, p)| p.len()).sum();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    let batches = signed
        .into_iter()
        .map(|(client, payments)| {
            let requests = payments
                .into_iter()
                .map(|p| vec![("PAYMENT-SIGNATURE", p)])
                .collect();
            (client, requests)
        })
        .collect();
    let (mut times, failed) = send_all(gateway, batches).await;
    let elapsed = started.elapsed();
    let cpu = (cpu_ticks(pid) - before) as f64 * 1e6 / hz / total.max(1) as f64;
    row(
        "paid: x402 retry (settled)",
        total,
        elapsed,
        &mut times,
        cpu,
        &format!("{failed} non-2xx; verify, forward, settle (built-in facilitator)"),
    );
}

/// The extra headers of one call.
type Headers = Vec<(&'static str, String)>;

/// Each buyer's POSTs of the body to `gateway`, one after another on its own connection
/// (each with its headers), all buyers at once. Returns every call's latency and how
/// many were not 2xx.
async fn send_all(
    gateway: &str,
    batches: Vec<(reqwest::Client, Vec<Headers>)>,
) -> (Vec<Duration>, usize) {
    let mut tasks = Vec::new();
    for (client, requests) in batches {
        let gateway = gateway.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut failed = 0usize;
            for headers in requests {
                let t = Instant::now();
                let mut req = client
                    .post(&gateway)
                    .header("content-type", "application/json")
                    .body(BODY);
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                let r = req.send().await.unwrap();
                if !r.status().is_success() {
                    failed += 1;
                }
                let _ = r.bytes().await;
                times.push(t.elapsed());
            }
            (times, failed)
        }));
    }
    let mut times = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (t, f) = t.await.unwrap();
        times.extend(t);
        failed += f;
    }
    (times, failed)
}
