//! `GET /metrics` (the Prometheus text format) and the layer that counts and times every
//! request the router answers (`crochet_http_requests_total`,
//! `crochet_http_request_duration_seconds`), by route template, never by raw path.
//!
//! `/metrics` is served on the main listener, unless `metrics_bind` names a listener of
//! its own: then only there, and the main listener answers 404 for it. It is not part of
//! the OpenAPI document (it is for the operator's scraper, not for agents).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::{Layer, Service};

use crate::app::AppState;
use crate::metrics::{HttpRoutes, RouteSlot};

/// The path of the metrics route.
pub const METRICS_PATH: &str = "/metrics";

/// The Prometheus text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric, in the Prometheus text format. The pool and history-queue gauges are
/// read now, at scrape time.
pub async fn scrape(State(state): State<AppState>) -> Response {
    state.db.report_pool();
    crate::metrics::history_queue(state.gateway.history_queued());
    let mut response = crate::metrics::render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// The router of the separate metrics listener (`metrics_bind`): `/metrics` only.
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(METRICS_PATH, get(scrape))
        .fallback(super::route_not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .with_state(state)
}

/// Counts and times each request under its route template and method.
#[derive(Clone)]
pub struct HttpMetricsLayer(Arc<HttpRoutes>);

impl HttpMetricsLayer {
    /// The layer of a router serving these route templates.
    pub fn new<'a>(templates: impl IntoIterator<Item = &'a str>) -> Self {
        Self(Arc::new(HttpRoutes::new(templates)))
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            routes: self.0.clone(),
        }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    routes: Arc<HttpRoutes>,
}

impl<S, B> Service<Request> for HttpMetrics<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = axum::http::Response<B>;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let matched = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let slot = self.routes.slot(matched, req.method().as_str());
        Observed {
            inner: self.inner.call(req),
            routes: self.routes.clone(),
            slot,
            started: Instant::now(),
        }
    }
}

/// A request's response future, counted when it completes.
pub struct Observed<F> {
    inner: F,
    routes: Arc<HttpRoutes>,
    slot: RouteSlot,
    started: Instant,
}

impl<F, B> Future for Observed<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>> + Unpin,
{
    type Output = Result<axum::http::Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.inner).poll(cx));
        if let Ok(response) = &result {
            this.routes.record(
                this.slot,
                response.status().as_u16(),
                this.started.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}
