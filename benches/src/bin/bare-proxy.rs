//! The floor under the gateway's load figures: a proxy on the same stack (axum server,
//! hyper-util's pooled client, tokio) that only relays the body to one seller and its
//! answer back. No authentication, signing, validation or recording. The load run puts
//! it beside nginx and the gateway, so what the gateway's own work costs per request is
//! the difference between the two. `bare-proxy 127.0.0.1:18084 http://127.0.0.1:18081/run`.
//! Same allocator, client and TCP_NODELAY as the `crochet` binary.

use axum::body::Bytes;
use axum::http::{Request, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::serve::ListenerExt as _;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18084".into());
    let upstream: Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18081/run".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(http);
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let relayed = async {
                let request = Request::post(upstream)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))
                    .map_err(|_| ())?;
                let answer = client.request(request).await.map_err(|_| ())?;
                let status = answer.status();
                let bytes = answer.into_body().collect().await.map_err(|_| ())?;
                Ok::<_, ()>((status, bytes.to_bytes()))
            };
            match relayed.await {
                Ok((status, bytes)) => {
                    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
                }
                Err(()) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
