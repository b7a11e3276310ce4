//! The live dashboard: one self-contained HTML page (`dashboard.html`, inline JS/CSS, no external
//! resources) at `GET /`, refreshed every second from `GET /api/stats` (JSON: per database the
//! pool, clients by front end, request rate and p50/p99 over the last minutes, recent errors; the
//! cache's hit ratio). Optionally behind HTTP basic auth (`[server] dashboard_password`, any user
//! name). The history comes from a sampler task taking one sample a second (`crate::stats::history`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Serialize;

use crate::app::App;
use crate::stats::history::{ErrorEntry, Sample};

const PAGE: &str = include_str!("dashboard.html");

/// Takes one history sample per database each second until the admin listener stops.
pub async fn sampler(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = app.stopped.cancelled() => return,
            _ = tick.tick() => {}
        }
        for db in app.databases().iter() {
            db.traffic.history.sample(db.traffic.totals());
        }
    }
}

/// Whether the request may see the dashboard: no password configured, or basic auth carrying it.
fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(want) = &app.config().server.dashboard_password else { return true };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(_, pw)| pw.to_owned()));
    let Some(given) = given else { return false };
    // Compared as digests, every byte: the time taken does not depend on where they differ.
    let (a, b) = (crate::keys::hash_key(&given), crate::keys::hash_key(want));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tidepool\", charset=\"UTF-8\""));
    r
}

pub async fn page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Everything is inline and same-origin: nothing else may load or run.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"),
    );
    r
}

#[derive(Serialize)]
pub struct Stats {
    pub time: u64,
    pub draining: bool,
    pub cache: CacheStats,
    pub databases: Vec<DbStats>,
}

#[derive(Serialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); `null` before any lookup.
    pub hit_ratio: Option<f64>,
}

#[derive(Serialize)]
pub struct PoolView {
    pub active: i64,
    pub idle: i64,
    pub waiting: i64,
    pub max: usize,
}

#[derive(Serialize)]
pub struct DbStats {
    pub name: String,
    pub pool: PoolView,
    /// Connected sessions (wire, ws) or requests in progress (sql, prisma).
    pub clients: serde_json::Map<String, serde_json::Value>,
    /// Finished transactions/requests since start, and of those not `ok`.
    pub requests_total: u64,
    pub errors_total: u64,
    /// One sample a second, oldest first (five minutes at most).
    pub samples: Vec<Sample>,
    /// Most recent first.
    pub recent_errors: Vec<ErrorEntry>,
}

/// The figures `GET /api/stats` serves.
pub fn collect(app: &App) -> Stats {
    let m = app.cache.metrics();
    let hits = m.hits_ttl.get() + m.hits_swr.get();
    let misses = m.misses.get();
    let cache = CacheStats { enabled: app.cache.enabled(), hits, misses, hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64) };
    let mut databases: Vec<DbStats> = app
        .databases()
        .iter()
        .map(|db| {
            let mut pool = PoolView { active: 0, idle: 0, waiting: 0, max: db.config.pool_size };
            for p in db.pools() {
                let s = p.stats();
                pool.active += s.active.get();
                pool.idle += s.idle.get();
                pool.waiting += s.waiting.get();
            }
            let clients = db.traffic.clients().into_iter().map(|(f, n)| (f.name().to_owned(), n.into())).collect();
            let (buckets, errors_total) = db.traffic.totals();
            DbStats {
                name: db.config.name.clone(),
                pool,
                clients,
                requests_total: buckets.iter().sum(),
                errors_total,
                samples: db.traffic.history.samples(),
                recent_errors: db.traffic.history.errors(),
            }
        })
        .collect();
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Stats { time, draining: app.shutdown.is_cancelled(), cache, databases }
}

pub async fn api_stats(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    let mut r = Json(collect(&app)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
