//! The HTTP listener (`http_listen`): HTTP/1.1 and HTTP/2 via axum/hyper, WebSocket upgrades that
//! carry the Postgres protocol into the same session code as the TCP listener, and the JSON APIs.

mod lease;
mod neon;
pub mod prisma;
mod tls_listener;
mod ws_io;

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/sql", post(neon::sql).options(neon::preflight))
        .merge(prisma::routes())
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

/// Any path (e.g. `/v2?address=…`): a WebSocket whose binary frames carry the Postgres protocol.
async fn websocket(State(app): State<Arc<App>>, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    let Ok(ws) = ws else {
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"message": "not found"}))).into_response();
    };
    let max = app.config.http.max_ws_message_size;
    let idle = app.config.http.ws_idle_timeout;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        use tracing::Instrument;
        let stream = ws_io::WsStream::new(socket, idle);
        crate::frontend::pg::serve_stream(app, stream).instrument(tracing::info_span!("ws")).await;
    })
}

/// Runs a request's work in its own task, so a client that goes away cannot cancel it midway:
/// leases are returned, transactions reach commit/rollback and timeouts still cancel queries.
pub(crate) async fn detached<F>(work: F) -> Response
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(serde_json::json!({"message": "internal error"}))).into_response()
        }
    }
}

/// Reads a body of at most `max` bytes; past that, drains the rest (bounded) so the client can
/// read the error response, and returns `None`.
pub(crate) async fn read_limited(body: axum::body::Body, max: usize) -> Option<axum::body::Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                drain(body, max).await;
                return None;
            }
            buf.extend_from_slice(&data);
        }
    }
    Some(buf.freeze())
}

/// Discards up to `4 * max` more bytes of a refused body, for at most 5 seconds.
pub(crate) async fn drain(mut body: axum::body::Body, max: usize) {
    use http_body_util::BodyExt;
    let budget = max.saturating_mul(4);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
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

/// Serves the HTTP APIs; HTTPS when `[http] tls_cert`/`tls_key` are set.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let shutdown = app.shutdown.clone();
    let stop = async move { shutdown.cancelled().await };
    let tls = match (&app.config.http.tls_cert, &app.config.http.tls_key) {
        (Some(c), Some(k)) => match crate::net::server_tls_config(c, k, &[b"h2", b"http/1.1"]) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                tracing::error!(error = %e, "cannot load the HTTPS certificate; HTTP listener not started");
                return;
            }
        },
        _ => None,
    };
    let r = match tls {
        Some(cfg) => match tls_listener::TlsListener::new(listener, cfg) {
            Ok(l) => axum::serve(l, router(app)).with_graceful_shutdown(stop).await,
            Err(e) => Err(e),
        },
        None => axum::serve(listener, router(app)).with_graceful_shutdown(stop).await,
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
