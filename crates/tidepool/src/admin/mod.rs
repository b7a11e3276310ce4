//! The admin listener: Prometheus `/metrics` and `/healthz` (200 while serving, 503 while
//! draining), and the live dashboard (`GET /`, `GET /api/stats`, see [`dashboard`]), on its own
//! address so it can stay private. It stays up until draining is over.

pub mod dashboard;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/", get(dashboard::page))
        .route("/api/stats", get(dashboard::api_stats))
        .with_state(app)
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.render_metrics())
}

async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let shutdown = app.stopped.clone();
    tokio::spawn(dashboard::sampler(app.clone()));
    let r = axum::serve(listener, router(app)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = r {
        tracing::error!(error = %e, "admin server failed");
    }
}
