//! The HTTP listener (`http_listen`): HTTP/1.1 and HTTP/2 served with hyper-util's auto builder,
//! WebSocket upgrades that carry the Postgres protocol into the same session code as the TCP
//! listener, and the JSON APIs (axum routes).
//!
//! Every byte is hostile until a request has authenticated, so each connection runs under:
//! * `header_read_timeout`: the TLS handshake plus the first request head (whatever the
//!   protocol), and on HTTP/1.1 every further request head (idle keep-alive included);
//! * `body_read_timeout`: each request body, from its first read;
//! * `max_header_size`, `http2_max_concurrent_streams`: request head size and stream count;
//! * `max_preauth_connections`: connections not yet authenticated hold a permit of the
//!   listener's semaphore (a WebSocket until its Postgres login succeeds); connections accepted
//!   beyond it are answered 503 and closed.
//!
//! Every connection task (and every WebSocket session) is spawned on `app.tracker`, so a drain
//! waits for them; on shutdown HTTP connections finish their requests and close.

pub mod dataproxy;
mod lease;
mod neon;
mod neon_cache;
pub mod prisma;
mod ws_io;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::app::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/sql", post(neon::sql).options(neon::preflight).fallback(neon::unsupported))
        .merge(prisma::routes())
        .merge(dataproxy::routes())
        .fallback(websocket)
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(app)
}

/// One `tracing` span per HTTP request (method, path), with the status logged at the end.
async fn trace_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path());
    async move {
        let started = std::time::Instant::now();
        let r = next.run(req).await;
        tracing::debug!(status = r.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request done");
        r
    }
    .instrument(span)
    .await
}

async fn health(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "draining"})))
    } else {
        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
    }
}

/// Per-connection state handed to handlers (request extension): the connection's pre-auth
/// permit, returned as soon as one of its requests authenticates.
pub(crate) struct ConnGuard {
    preauth: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
    semaphore: Arc<Semaphore>,
    /// Accepted while `max_preauth_connections` were in use: every request gets a 503.
    over_cap: bool,
    /// A request head has arrived (ends the first-request deadline).
    saw_request: AtomicBool,
    /// The TCP peer (the failed-login throttle is kept per client address and user).
    pub(crate) peer: Option<std::net::SocketAddr>,
}

impl ConnGuard {
    fn new(semaphore: Arc<Semaphore>, peer: Option<std::net::SocketAddr>) -> ConnGuard {
        let permit = semaphore.clone().try_acquire_owned().ok();
        ConnGuard { over_cap: permit.is_none(), preauth: parking_lot::Mutex::new(permit), semaphore, saw_request: AtomicBool::new(false), peer }
    }

    /// A request on this connection authenticated: it no longer counts as pre-auth.
    pub(crate) fn authenticated(&self) {
        self.preauth.lock().take();
    }

    /// The permit for a WebSocket about to log in: the connection's own, or a fresh one when
    /// the connection already authenticated; `None` when the listener is at its cap.
    fn permit_for_upgrade(&self) -> Option<OwnedSemaphorePermit> {
        self.preauth.lock().take().or_else(|| self.semaphore.clone().try_acquire_owned().ok())
    }
}

/// Marks the request's connection authenticated (no-op for requests without a connection
/// guard, e.g. in unit tests of the router).
pub(crate) fn authenticated(guard: Option<&Arc<ConnGuard>>) {
    if let Some(g) = guard {
        g.authenticated();
    }
}

fn over_cap_response(path: &str) -> Response {
    let message = "too many unauthenticated connections; try again later";
    let body = if path == "/sql" { serde_json::json!({"message": message, "code": "53300"}) } else { serde_json::json!({"code": "P5011", "error": message}) };
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Any path (e.g. `/v2?address=…`): a WebSocket whose binary frames carry the Postgres protocol.
/// HTTP/1.1 `Upgrade: websocket` and HTTP/2 extended CONNECT (RFC 8441) are accepted; no
/// extension (compression) or subprotocol is negotiated.
async fn websocket(State(app): State<Arc<App>>, mut req: Request) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"message": "not found"}))).into_response();
    let accept = match websocket_accept(&req) {
        Some(a) => a,
        None => return not_found(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return not_found();
    };
    let guard = req.extensions().get::<Arc<ConnGuard>>().cloned();
    let peer = guard.as_ref().and_then(|g| g.peer);
    let permit = match &guard {
        Some(g) => match g.permit_for_upgrade() {
            Some(p) => Some(p),
            None => return over_cap_response(req.uri().path()),
        },
        None => None,
    };
    let cfg = &app.config().http;
    let limits = ws_io::WsLimits { max_login_bytes: cfg.ws_max_login_bytes, max_message: cfg.max_ws_message_size, idle_timeout: cfg.ws_idle_timeout };
    let task_app = app.clone();
    app.tracker.spawn(async move {
        use tracing::Instrument;
        let upgraded = match tokio::time::timeout(task_app.config().http.header_read_timeout, on_upgrade).await {
            Ok(Ok(u)) => u,
            _ => return,
        };
        let stream = ws_io::WsStream::new(TokioIo::new(upgraded), limits, permit);
        // A drain ends logins in progress; a logged-in session runs in its own task (spawned by
        // serve_stream, which then returns) and ends itself when idle.
        let shutdown = task_app.shutdown.clone();
        tokio::select! {
            _ = crate::frontend::pg::serve_stream(task_app, stream, peer).instrument(tracing::info_span!("ws")) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    match accept {
        Accept::Http1(key) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            if let Ok(v) = HeaderValue::from_str(&key) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
            }
            r
        }
        Accept::Http2 => Response::new(Body::empty()),
    }
}

enum Accept {
    Http1(String),
    Http2,
}

/// Validates a WebSocket opening handshake; for HTTP/1.1 returns the `Sec-WebSocket-Accept`.
fn websocket_accept(req: &Request) -> Option<Accept> {
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return None;
    }
    if req.version() >= Version::HTTP_2 {
        let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
        return (req.method() == Method::CONNECT && protocol.as_str().eq_ignore_ascii_case("websocket")).then_some(Accept::Http2);
    }
    if req.method() != Method::GET || !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return None;
    }
    // The key is 16 random bytes in base64 (24 characters); anything else is refused.
    let key = h.get(header::SEC_WEBSOCKET_KEY)?.as_bytes();
    if key.len() != 24 {
        return None;
    }
    use base64::Engine;
    use sha1::Digest;
    let mut sha = sha1::Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    Some(Accept::Http1(base64::engine::general_purpose::STANDARD.encode(sha.finalize())))
}

/// Runs a request's work in its own (tracked) task, so a client that goes away cannot cancel
/// it midway: leases are returned, transactions reach commit/rollback and timeouts still cancel
/// queries.
pub(crate) async fn detached<F>(app: &App, work: F) -> Response
where
    F: Future<Output = Response> + Send + 'static,
{
    match app.tracker.spawn(work).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(serde_json::json!({"message": "internal error"}))).into_response()
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Larger than the limit (it was drained, bounded, so the client can read the answer).
    TooLarge,
    /// Not delivered within `body_read_timeout`.
    Timeout,
    /// The connection broke or the body was malformed (e.g. bad chunked encoding).
    Broken,
}

/// Reads a body of at most `max` bytes; past that, drains the rest (bounded).
pub(crate) async fn read_limited(body: Body, max: usize) -> Result<axum::body::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| if is_body_timeout(e) { BodyError::Timeout } else { BodyError::Broken })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                drain(body, max).await;
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn is_body_timeout(e: axum::Error) -> bool {
    let inner = e.into_inner();
    inner.is::<BodyTimeout>() || inner.source().is_some_and(|s| s.is::<BodyTimeout>())
}

/// Discards up to `4 * max` more bytes of a refused body, for at most 5 seconds.
pub(crate) async fn drain(mut body: Body, max: usize) {
    use http_body_util::BodyExt;
    let budget = max.saturating_mul(4);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > budget {
                break;
            }
        }
    })
    .await;
}

/// Discards a little of the body of a request refused before it was read (bad credentials), so
/// a well-behaved client can read the answer; a large or slow one finds the connection closed.
pub(crate) async fn drain_refused(body: Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > 256 * 1024 {
                break;
            }
        }
    })
    .await;
}

/// The error a [`TimedBody`] ends with.
#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not received within body_read_timeout")
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that fails with [`BodyTimeout`] unless it is complete within `timeout` of
/// its first read.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let timeout = this.timeout;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper's executor for HTTP/2 stream tasks: spawned on `app.tracker`.
#[derive(Clone)]
struct TrackedExecutor(tokio_util::task::TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// Serves the HTTP APIs; HTTPS when `[http] tls_cert`/`tls_key` are set.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    // Built (and checked) with the app; a reload may swap the certificate, so each handshake
    // takes the current acceptor. Whether the listener speaks TLS at all is fixed at start.
    let tls_on = app.http_tls().is_some();
    let router = router(app.clone());
    let preauth = Arc::new(Semaphore::new(app.config().http.max_preauth_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Taken at accept, so connections that never send anything count as well.
        let guard = Arc::new(ConnGuard::new(preauth.clone(), Some(peer)));
        let (app2, router) = (app.clone(), router.clone());
        match app.http_tls().filter(|_| tls_on) {
            None => {
                app.tracker.spawn(serve_conn(app2, router, tcp, guard));
            }
            Some(acceptor) => {
                app.tracker.spawn(async move {
                    let started = tokio::time::Instant::now();
                    match tokio::time::timeout(app2.config().http.header_read_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_conn_within(app2, router, tls, guard, started).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

async fn serve_conn<I>(app: Arc<App>, router: Router, io: I, guard: Arc<ConnGuard>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_conn_within(app, router, io, guard, tokio::time::Instant::now()).await
}

/// Serves one connection. Until a first request head has arrived, the connection lives at
/// most `header_read_timeout` from `started` (hyper's own timeout covers HTTP/1.1 heads only
/// once it knows the protocol, and HTTP/2 has none).
async fn serve_conn_within<I>(app: Arc<App>, router: Router, io: I, guard: Arc<ConnGuard>, started: tokio::time::Instant)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &app.config().http;
    let body_timeout = cfg.body_read_timeout;
    let svc_guard = guard.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (router, guard) = (router.clone(), svc_guard.clone());
        async move {
            guard.saw_request.store(true, Ordering::Relaxed);
            if guard.over_cap {
                return Ok::<_, Infallible>(over_cap_response(req.uri().path()));
            }
            let req = req.map(|inner| Body::new(TimedBody { inner, timeout: body_timeout, deadline: None }));
            let mut req = req;
            req.extensions_mut().insert(guard);
            let mut router = router;
            let r = tower_service::Service::call(&mut router, req).await;
            Ok(r.unwrap_or_else(|e: Infallible| match e {}))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TrackedExecutor(app.tracker.clone()));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_size.max(8192))
        .keep_alive(!guard.over_cap);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let first_request = tokio::time::sleep_until(started + cfg.header_read_timeout);
    tokio::pin!(first_request);
    let mut waiting_first = true;
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = &mut first_request, if waiting_first => {
                if !guard.saw_request.load(Ordering::Relaxed) {
                    tracing::debug!("no request head within header_read_timeout; closing");
                    return;
                }
                waiting_first = false;
            }
            _ = app.shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
