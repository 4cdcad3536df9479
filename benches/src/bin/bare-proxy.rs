//! The floor under the gateway's load figures: a proxy on the same stack (axum server,
//! the shared reqwest client, tokio) that only relays the body to one seller and its
//! answer back. No authentication, signing, validation or recording. The load run puts
//! it beside nginx and the gateway, so what the gateway's own work costs per request is
//! the difference between the two. `bare-proxy 127.0.0.1:18084 http://127.0.0.1:18081/run`.
//! Same allocator and TCP_NODELAY as the `crochet` binary.

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::serve::ListenerExt as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18084".into());
    let upstream: &'static str = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18081/run".into())
        .leak();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(std::io::Error::other)?;
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let client = client.clone();
        async move {
            let relayed = async {
                let answer = client
                    .post(upstream)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = answer.status().as_u16();
                Ok::<_, reqwest::Error>((status, answer.bytes().await?))
            };
            match relayed.await {
                Ok((status, bytes)) => (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    [(header::CONTENT_TYPE, "application/json")],
                    bytes,
                )
                    .into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
