//! The HTTP/1.1 serving loop: accepts TCP connections and drives each with hyper,
//! adding what `axum::serve` lacks: header, body and idle timeouts, a cap on concurrent
//! connections that keeps `/api/v1/health` answering, and JSON envelopes instead of
//! hyper's empty answers to unparsable requests.
//!
//! - Timeouts. Each connection's socket is wrapped in [`TimedIo`], which knows whether a
//!   request is in progress (the service marks it): between requests reads must resume
//!   within `idle_timeout_ms`; once a request's first byte arrives its line and headers
//!   must be complete within `header_read_timeout_ms` (the first request of a connection
//!   counts from the accept). While a handler runs there is no read deadline; the body
//!   is read through a per-chunk timeout (`body_read_timeout_ms`) that ends in 408
//!   `REQUEST_TIMEOUT`. A timed-out read closes the connection.
//! - Connection cap. `max_connections` connections are served normally. A small spare
//!   allowance beyond it is served with keep-alive off and answers only
//!   `GET /api/v1/health`; every other request there gets 503 `SERVER_BUSY` with
//!   `Retry-After` and `Connection: close`. Connections beyond the allowance are closed
//!   as soon as they are accepted. The cap is lowered when the process's open-file
//!   limit (raised to its hard limit at start-up) could not hold it.
//! - Parse errors. hyper answers a request it cannot parse (bad request line, bad header
//!   byte, too many or too large headers, too long a target) with a bare status and no
//!   body, then closes. [`TimedIo`] recognises that answer (it answers a request head
//!   that never reached the service, and carries `content-length: 0`)
//!   and writes a prepared JSON envelope with the same status instead.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

use super::error::{ApiError, RequestError};
use crate::config::ServerConfig;

/// The only route an over-the-cap connection is served.
const HEALTH_PATH: &str = "/api/v1/health";
/// hyper's parser keeps up to this many header fields on the stack; asking for more
/// makes it allocate per request.
const PARSER_INLINE_HEADERS: usize = 100;
/// Descriptors kept for everything but client connections (database, Redis, logs,
/// plugin files) when the cap is fitted to the open-file limit.
const RESERVED_FILES: u64 = 320;

/// The server's limits, resolved from `[server]` and the process's open-file limit.
#[derive(Debug, Clone)]
pub struct Limits {
    header_read_timeout: Option<Duration>,
    body_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// Connections served normally.
    pub max_connections: usize,
    /// Connections accepted beyond `max_connections` that answer only health checks.
    pub spare_connections: usize,
    max_headers: usize,
}

fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Limits {
    /// Resolves the limits; raises the soft open-file limit to the hard one and lowers
    /// the connection cap (with a warning) when the files could not hold it: every
    /// gateway call may hold a seller connection beside its client's.
    pub fn new(config: &ServerConfig) -> Self {
        let mut max_connections = config.max_connections.max(1);
        if let Some(files) = raise_file_limit() {
            let fits = usize::try_from(files.saturating_sub(RESERVED_FILES) / 2)
                .unwrap_or(usize::MAX)
                .max(1);
            if fits < max_connections {
                tracing::warn!(
                    max_connections,
                    open_file_limit = files,
                    lowered_to = fits,
                    "[server] max_connections does not fit the open-file limit; lowering it"
                );
                max_connections = fits;
            }
        }
        Self {
            header_read_timeout: millis(config.header_read_timeout_ms),
            body_read_timeout: millis(config.body_read_timeout_ms),
            idle_timeout: millis(config.idle_timeout_ms),
            max_connections,
            spare_connections: (max_connections / 16).clamp(8, 64),
            max_headers: config.max_headers.max(1),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit in force.
#[cfg(unix)]
fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    }
}

#[cfg(not(unix))]
fn raise_file_limit() -> Option<u64> {
    None
}

/// Envelopes written without going through the router, serialized once.
struct Prepared {
    too_many_headers: Bytes,
    busy: Bytes,
    /// Full HTTP responses replacing hyper's empty parse-error answers.
    malformed: Bytes,
    headers_too_large: Bytes,
    uri_too_long: Bytes,
}

impl Prepared {
    fn new(limits: &Limits) -> Self {
        let body = |e: RequestError| Bytes::from(ApiError::from(e).envelope_bytes().1);
        let raw = |e: RequestError| {
            let (status, json) = ApiError::from(e).envelope_bytes();
            let mut out = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                json.len()
            )
            .into_bytes();
            out.extend_from_slice(&json);
            Bytes::from(out)
        };
        Self {
            too_many_headers: body(RequestError::TooManyHeaders(limits.max_headers)),
            busy: body(RequestError::ServerBusy),
            malformed: raw(RequestError::MalformedHttp),
            headers_too_large: raw(RequestError::HeadersTooLarge),
            uri_too_long: raw(RequestError::UriTooLong),
        }
    }

    /// The envelope to send instead of hyper's bare answer `head`, if it is one.
    fn replacement(&self, head: &[u8]) -> Option<Bytes> {
        let replacement = match head.get(..13)? {
            b"HTTP/1.1 400 " => &self.malformed,
            b"HTTP/1.1 431 " => &self.headers_too_large,
            b"HTTP/1.1 414 " => &self.uri_too_long,
            _ => return None,
        };
        // hyper's answer is the status line, `content-length: 0` and `date`, nothing else.
        let bare = head.len() <= 256
            && head.ends_with(b"\r\n\r\n")
            && head
                .windows(21)
                .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
        bare.then(|| replacement.clone())
    }

    fn response(status: StatusCode, body: &Bytes) -> Response<Body> {
        let mut res = Response::new(Body::from(body.clone()));
        *res.status_mut() = status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// Whether a connection's current request has reached the service and its response
/// is not finished; shared by the connection's service and its [`TimedIo`].
#[derive(Default)]
struct Activity {
    busy: AtomicBool,
    /// Requests that reached the service.
    dispatched: AtomicU32,
    /// The connection task while it waits on a read during a request: the end of the
    /// response wakes it, so that the idle deadline starts.
    reader: AtomicWaker,
}

/// Marks a request in progress from the service call until its response body is done
/// (or dropped).
struct BusyGuard(Arc<Activity>);

impl BusyGuard {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.busy.store(true, Ordering::Release);
        activity.dispatched.fetch_add(1, Ordering::Release);
        Self(activity.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
        self.0.reader.wake();
    }
}

/// A response body that keeps its connection marked busy until it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: BusyGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request line and headers.
    Head,
    /// No request in progress and no byte of the next one yet.
    Idle,
    /// A request is with the service (or its response is being written).
    Busy,
}

/// A connection's socket with read deadlines that follow the connection's phase, and
/// the replacement of hyper's bare parse-error answers.
struct TimedIo {
    io: TcpStream,
    activity: Arc<Activity>,
    limits: Arc<Shared>,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    /// `Activity::dispatched` when the current request's head started.
    head_mark: u32,
    /// A replacement answer still to be written, and how much of it is.
    pending: Option<(Bytes, usize)>,
}

impl TimedIo {
    fn new(io: TcpStream, activity: Arc<Activity>, limits: Arc<Shared>) -> Self {
        let timeout = limits.limits.header_read_timeout;
        let mut this = Self {
            io,
            activity,
            limits,
            phase: Phase::Head,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: false,
            head_mark: 0,
            pending: None,
        };
        this.arm(timeout);
        this
    }

    fn arm(&mut self, timeout: Option<Duration>) {
        self.armed = timeout.is_some();
        if let Some(t) = timeout {
            self.deadline.as_mut().reset(Instant::now() + t);
        }
    }

    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written >= bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether `buf` is hyper's own answer to a request it could not parse; if so, the
    /// envelope replacing it is queued.
    fn intercept(&mut self, buf: &[u8]) -> bool {
        // Only an answer to a head that never reached the service can be hyper's own.
        if self.phase != Phase::Head
            || self.activity.dispatched.load(Ordering::Acquire) != self.head_mark
        {
            return false;
        }
        match self.limits.prepared.replacement(buf) {
            Some(bytes) => {
                self.pending = Some((bytes, 0));
                true
            }
            None => false,
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.busy.load(Ordering::Acquire) {
            this.phase = Phase::Busy;
            let read = Pin::new(&mut this.io).poll_read(cx, buf);
            if read.is_pending() {
                this.activity.reader.register(cx.waker());
            }
            return read;
        }
        if this.phase == Phase::Busy {
            // The previous response is done: the connection is idle from now on.
            this.phase = Phase::Idle;
            let idle = this.limits.limits.idle_timeout;
            this.arm(idle);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.phase = Phase::Head;
                    this.head_mark = this.activity.dispatched.load(Ordering::Acquire);
                    let head = this.limits.limits.header_read_timeout;
                    this.arm(head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.armed && this.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if this.intercept(buf) {
            // hyper's bytes count as written; the envelope goes out in their place.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let [only] = bufs
            && this.intercept(only)
        {
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// What every connection task shares.
struct Shared {
    limits: Limits,
    prepared: Prepared,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish and returns.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The timeouts are [`TimedIo`]'s, which also covers idle keep-alive connections.
    http.header_read_timeout(None);
    if limits.max_headers >= PARSER_INLINE_HEADERS {
        // Room for the middleware's count check to answer with an envelope.
        http.max_headers(limits.max_headers + 16);
    }
    let mut spare_http = http.clone();
    spare_http.keep_alive(false);
    let normal = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(limits.spare_connections));
    let shared = Arc::new(Shared {
        prepared: Prepared::new(&limits),
        limits,
    });
    let graceful = GracefulShutdown::new();
    let mut last_full_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let (permit, over_cap): (OwnedSemaphorePermit, bool) =
            match normal.clone().try_acquire_owned() {
                Ok(p) => (p, false),
                Err(_) => match spare.clone().try_acquire_owned() {
                    Ok(p) => (p, true),
                    Err(_) => {
                        if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            tracing::warn!(
                                max_connections = shared.limits.max_connections,
                                "connection limit reached: closing new connections"
                            );
                            last_full_warning = Some(Instant::now());
                        }
                        drop(stream);
                        continue;
                    }
                },
            };
        // Replies go out as soon as they are written (as nginx's `tcp_nodelay on`):
        // with Nagle a reply can wait for the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(TimedIo::new(stream, activity.clone(), shared.clone()));
        let service = {
            let shared = shared.clone();
            let router = router.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let guard = BusyGuard::enter(&activity);
                let shared = shared.clone();
                let router = router.clone();
                async move {
                    let res = handle(req, remote, over_cap, &shared, router).await;
                    Ok::<_, Infallible>(res.map(|inner| GuardedBody {
                        inner,
                        _guard: guard,
                    }))
                }
            })
        };
        let builder = if over_cap { &spare_http } else { &http };
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handle(
    mut req: Request<Incoming>,
    remote: SocketAddr,
    over_cap: bool,
    shared: &Shared,
    router: axum::Router,
) -> Response<Body> {
    if req.headers().len() > shared.limits.max_headers {
        return Prepared::response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &shared.prepared.too_many_headers,
        );
    }
    if over_cap && req.uri().path() != HEALTH_PATH {
        let mut res = Prepared::response(StatusCode::SERVICE_UNAVAILABLE, &shared.prepared.busy);
        let headers = res.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    req.extensions_mut().insert(ConnectInfo(remote));
    let req = match shared.limits.body_read_timeout {
        Some(t) => req.map(|b| Body::new(TimeoutBody::new(t, b))),
        None => req.map(Body::new),
    };
    match router.oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    // Out of descriptors or memory: wait for some to be released.
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
}
