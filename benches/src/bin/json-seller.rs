//! A trivial JSON seller for load runs: answers every request with a small fixed JSON
//! body. `json-seller 127.0.0.1:18081`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = axum::Router::new()
        .fallback(|| async { axum::Json(serde_json::json!({"result": "ok", "score": 0.97})) });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
