//! Prisma Accelerate-compatible API: Prisma ORM 7 clients send compiled query plans, which
//! `tidepool-prisma` interprets on a lease from the shared pool. Routes: `GET /connection-info`,
//! `POST /query`, `POST /transaction/start`, `POST /transaction/{id}/query|commit|rollback`,
//! `POST /invalidate`. Every request carries `Authorization: Bearer <api key>`; the key selects
//! the database and the upstream role (`App::target_for_key`), whose pool every lease comes from. Errors use Prisma's `{code, error, meta}` shape and P-codes.

pub mod cache;
mod exec;
mod forward;
mod internal;
mod invalidate;
mod itx;
mod metered;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use rand::RngCore;
use serde_json::json;
use tidepool_prisma::{HttpResponse, Limits, QueryContext, QueryRequest, TransactionOptions};
use tokio::time::Instant;

use self::exec::PgExecutor;
pub(super) use self::internal::Internal;
pub use self::itx::ItxRegistry;
use self::itx::{Closed, Full, Itx, Lookup};
use self::metered::{end, itx_query_inner, query, start_inner};
use super::lease::{self, HttpLeaseError};
use super::{BodyError, ConnGuard};
use crate::app::{App, LeaseError};
use crate::cache::{Bypass, Filled, Request as CacheRequest, Status};
use crate::keys::ApiKey;
use crate::pool::PoolError;
use crate::stats::{ErrorNote, Front, RequestMeter};
use crate::target::Target;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/connection-info", get(connection_info))
        .route("/query", post(query))
        .route("/transaction/start", post(start))
        .route("/transaction/{id}/query", post(itx_query))
        .route("/transaction/{id}/commit", post(commit))
        .route("/transaction/{id}/rollback", post(rollback))
        .route("/invalidate", post(invalidate::invalidate))
}

pub(super) fn json_response(status: u16, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: u16, code: &str, message: impl Into<String>, meta: serde_json::Value) -> Response {
    let message = message.into();
    let note = ErrorNote(message.clone());
    let body = json!({"code": code, "error": message, "message": null, "meta": meta});
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.remove("message");
    }
    let mut r = json_response(status, body.to_string());
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("prisma-error-code", v);
    }
    r.extensions_mut().insert(note);
    r
}

fn from_interp(r: HttpResponse) -> Response {
    json_response(r.status, r.body)
}

/// The connection guard of a request (absent when the router is called without the listener).
pub(super) type Guard = Option<Extension<Arc<ConnGuard>>>;

/// The API key from `Authorization: Bearer`, or the 401 P6002 response. On success the
/// request's connection stops counting as unauthenticated.
#[allow(clippy::result_large_err)] // the error is the handler's finished response
pub(super) fn authenticate(app: &App, guard: &Guard, headers: &HeaderMap) -> Result<(ApiKey, Target), Response> {
    let unauthorized = || error(401, "P6002", "The provided API Key is invalid.", json!({}));
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(unauthorized)?;
    let key = app.api_keys.lookup(token.trim()).ok_or_else(unauthorized)?;
    let target = app.target_for_key(&key).ok_or_else(unauthorized)?;
    super::authenticated(guard.as_deref());
    Ok((key, target))
}

async fn read_body(app: &App, body: Body) -> Result<Bytes, Response> {
    let max = app.config().http.max_request_size;
    super::read_limited(body, max).await.map_err(|e| match e {
        BodyError::TooLarge => error(413, "P6005", format!("The request body exceeds the limit of {max} bytes."), json!({})),
        BodyError::Timeout => error(408, "P6000", "The request body was not received in time.", json!({})),
        BodyError::Broken => error(400, "P6000", "The request body could not be read.", json!({})),
    })
}

/// Transaction ids are 32 lowercase hex characters (128 random bits); anything else is
/// unknown without a lookup.
fn plausible_itx_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn limits(app: &App) -> Limits {
    Limits { max_response_bytes: app.config().http.prisma_max_response_size, ..Limits::default() }
}

fn lease_failed(e: LeaseError) -> Response {
    tracing::warn!(error = %e, "no connection for a Prisma request");
    match e {
        LeaseError::Pool(PoolError::Timeout { .. }) => {
            error(503, "P2024", format!("Timed out fetching a new connection from the connection pool. ({e})"), json!({}))
        }
        other => error(503, "P6008", format!("Could not reach the database: {other}"), json!({})),
    }
}

fn too_large(limit: usize) -> Response {
    error(413, "P6009", format!("The response size of the query exceeded the maximum of {limit} bytes."), json!({}))
}

fn timed_out(d: Duration) -> Response {
    error(504, "P6004", format!("Query timeout exceeded ({} ms); the query was cancelled.", d.as_millis()), json!({}))
}

async fn connection_info(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap) -> Response {
    if let Err(r) = authenticate(&app, &guard, &headers) {
        return r;
    }
    json_response(200, json!({"provider": "postgres", "connectionInfo": {"supportsRelationJoins": true}}).to_string())
}

/// `POST /query`. Authentication, the body and a cache hit need no database work and run in
/// the connection's own task; everything that leases runs detached (see `super::detached`).
async fn query_inner(app: Arc<App>, guard: Guard, headers: HeaderMap, body: Body, meter: &mut RequestMeter) -> Response {
    let (_key, target) = match authenticate(&app, &guard, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    meter.attach(&target.db.traffic);
    let body = match read_body(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let strategy = match cache::strategy_from(app.cache.config(), &headers) {
        Ok(s) => s,
        Err(e) => return cache::bad_strategy(e),
    };
    let request = match (strategy, app.cache.enabled()) {
        (None, _) => return uncached(app, target, body, Bypass::NoStrategy).await,
        (Some(_), false) => return uncached(app, target, body, Bypass::Disabled).await,
        (Some(strategy), true) => match cache::key(&target, &strategy.tags, &body) {
            Some(k) => CacheRequest { key: k, database: target.db.config.name.as_str().into(), strategy },
            None => return uncached(app, target, body, Bypass::Write).await,
        },
    };
    if let Some((entry, status)) = app.cache.lookup(&request, cache::refill(&app, &target, &body)).await {
        return cache::respond(&entry, status);
    }
    super::detached(&app, miss(app.clone(), target, body, request)).await
}

/// A cacheable request not in the local cache: decide whether the plan may be cached, then
/// fill (single-flight, shared tier, database).
async fn miss(app: Arc<App>, target: Target, body: Bytes, request: CacheRequest) -> Response {
    let tables = match QueryRequest::parse(&body, &limits(&app)).map_err(|_| Bypass::Write).and_then(|r| cache::analyze(&r)) {
        Ok(t) => t,
        Err(why) => return run_uncached(app, target, body, why).await,
    };
    let fetch = execute(app.clone(), target.clone(), body.clone());
    match app.cache.fill(&request, tables, cache::refill(&app, &target, &body), fetch).await {
        Filled::Hit(entry, status) => cache::respond(&entry, status),
        Filled::Miss(entry) => cache::respond(&entry, Status::Miss),
        Filled::Failed(r) => cache::with_status(r, Status::None, None),
    }
}

/// [`run_uncached`] in a detached task.
async fn uncached(app: Arc<App>, target: Target, body: Bytes, why: Bypass) -> Response {
    super::detached(&app.clone(), run_uncached(app, target, body, why)).await
}

/// Runs a request on the database without the cache (status `none`, counted by reason).
async fn run_uncached(app: Arc<App>, target: Target, body: Bytes, why: Bypass) -> Response {
    app.cache.metrics().bypass(why);
    let r = match execute(app.clone(), target, body).await {
        Ok(payload) => json_response(200, payload),
        Err(r) => r,
    };
    cache::with_status(r, Status::None, None)
}

/// Runs one `/query` body on a lease: the 200 payload, or the finished error response.
async fn execute(app: Arc<App>, target: Target, body: Bytes) -> Result<Bytes, Response> {
    let conn = match lease::lease(&target, Front::Prisma).await {
        Ok(c) => c,
        Err(e) => return Err(lease_failed(e)),
    };
    let limits = limits(&app);
    let timeout = app.config().http.prisma_query_timeout;
    let cache = app.cache.clone();
    let r = lease::run_bounded(conn, timeout, move |c| {
        Box::pin(async move {
            let mut exec = PgExecutor::new(c, limits.max_response_bytes);
            exec.track_writes = cache.config().invalidate_on_write;
            let r = tidepool_prisma::handle_query(&mut exec, &body, &QueryContext::default(), &limits).await;
            cache.written(&target.db.config.name, std::mem::take(&mut exec.writes));
            Ok(if exec.too_large {
                Err(too_large(limits.max_response_bytes))
            } else if r.status == 200 {
                Ok(Bytes::from(r.body))
            } else {
                Err(from_interp(r))
            })
        })
    })
    .await;
    match r {
        Ok(resp) => resp,
        Err(HttpLeaseError::Timeout(d)) => Err(timed_out(d)),
        Err(e) => Err(error(500, "P6000", e.to_string(), json!({}))),
    }
}

fn p2028(message: String, meta: serde_json::Value) -> Response {
    error(409, "P2028", format!("Transaction API error: {message}"), meta)
}

fn closed_error(c: Closed, operation: &str) -> Response {
    match c {
        Closed::Committed => p2028(format!("Transaction already closed: A {operation} cannot be executed on a committed transaction."), json!({})),
        Closed::RolledBack => p2028(format!("Transaction already closed: A {operation} cannot be executed on a transaction that was rolled back."), json!({})),
        Closed::Expired { timeout_ms, started } => {
            let taken_ms = started.elapsed().as_millis() as u64;
            p2028(
            format!("Transaction already closed: A {operation} cannot be executed on an expired transaction. The timeout for this transaction was {timeout_ms} ms, however {taken_ms} ms passed since the start of the transaction. Consider increasing the interactive transaction timeout or doing less work in the transaction."),
            json!({"operation": operation, "timeout": timeout_ms, "timeTaken": taken_ms}),
        )
        }
    }
}

fn not_found() -> Response {
    p2028("Transaction not found. Transaction ID is invalid, refers to an old closed transaction Prisma doesn't have information about anymore, or was obtained before disconnecting.".into(), json!({}))
}

async fn start(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, body: Body) -> Response {
    // Set when this handler is dropped (client gone): a transaction begun for nobody is undone.
    struct Gone(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let gone = Gone(Default::default());
    super::detached(&app, start_inner(app.clone(), guard, headers, body, gone.0.clone())).await
}

async fn start_run(
    app: Arc<App>,
    guard: Guard,
    headers: HeaderMap,
    body: Body,
    gone: Arc<std::sync::atomic::AtomicBool>,
    meter: &mut RequestMeter,
) -> Response {
    let (key, target) = match authenticate(&app, &guard, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    meter.attach(&target.db.traffic);
    let body = match read_body(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let opts = match TransactionOptions::parse(&body) {
        Ok(o) => o,
        Err(e) => return from_interp(HttpResponse::from_error(&e)),
    };
    let isolation = match opts.isolation() {
        Ok(i) => i,
        Err(e) => return from_interp(HttpResponse::from_error(&e)),
    };
    let cfg = &app.config().http;
    let max_wait = Duration::from_millis(opts.max_wait.unwrap_or(2000));
    let timeout = Duration::from_millis(opts.timeout.unwrap_or(5000)).min(cfg.prisma_max_transaction_timeout);
    // One key may not pin more than its share of the pool it leases from (its role's, or the
    // database's own): others must still get connections. Nor may all keys of that pool
    // together: the wire and /sql clients of the database need connections too.
    let (per_key, per_db) = (cfg.itx_max_per_key(target.pool_size()), cfg.itx_max_per_database(target.pool_size()));
    let db_name = target.pool_id();
    match app.itx.reserve(key.sha256, &db_name, per_key, per_db) {
        Ok(()) => {}
        Err(Full::Key(n)) => return error(429, "P5011", format!("Too many open interactive transactions for this API key (limit {n})."), json!({})),
        Err(Full::Database(n)) => {
            return error(429, "P5011", format!("Too many open interactive transactions on this database (limit {n})."), json!({}));
        }
    }
    let begun = tokio::time::timeout(max_wait, async {
        let mut conn = lease::lease(&target, Front::Prisma).await?;
        let mut sql = "BEGIN".to_owned();
        if let Some(level) = isolation {
            sql.push_str(&format!("; SET TRANSACTION ISOLATION LEVEL {}", level.as_sql()));
        }
        match conn.simple(&sql).await {
            Ok(()) => Ok(conn),
            Err(e) => {
                lease::finish(conn).await;
                Err(LeaseError::Upstream(e))
            }
        }
    })
    .await;
    let conn = match begun {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            app.itx.unreserve(&key.sha256, &db_name);
            return lease_failed(e);
        }
        Err(_) => {
            app.itx.unreserve(&key.sha256, &db_name);
            return p2028("Unable to start a transaction in the given time.".into(), json!({}));
        }
    };
    if gone.load(std::sync::atomic::Ordering::Relaxed) {
        let mut conn = conn;
        let _ = conn.simple("ROLLBACK").await;
        lease::finish(conn).await;
        app.itx.unreserve(&key.sha256, &db_name);
        return p2028("Unable to start a transaction: the client went away.".into(), json!({}));
    }
    let mut raw = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut raw);
    forward::tag_id(&app, &mut raw);
    let id = hex::encode(raw);
    let itx = Arc::new(Itx {
        id: id.clone(),
        key: key.sha256,
        target,
        started: Instant::now(),
        timeout,
        conn: tokio::sync::Mutex::new(Some(conn)),
        writes: Default::default(),
    });
    app.itx.insert(itx.clone());
    let app2 = app.clone();
    app.tracker.spawn(async move {
        tokio::time::sleep_until(itx.deadline()).await;
        expire(&app2, &itx).await;
    });
    let mut r = json_response(200, json!({"id": id}).to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("prisma-transaction-id", v);
    }
    r
}

/// Rolls back a transaction that ran past its timeout.
async fn expire(app: &App, itx: &Itx) {
    let conn = itx.conn.lock().await.take();
    if let Some(mut conn) = conn {
        let _ = conn.simple("ROLLBACK").await;
        lease::finish(conn).await;
        app.itx.close(itx, Closed::Expired { timeout_ms: itx.timeout.as_millis() as u64, started: itx.started });
    }
}

#[allow(clippy::result_large_err)] // the error is the handler's finished response
fn lookup(app: &App, guard: &Guard, headers: &HeaderMap, id: &str, operation: &str) -> Result<Arc<Itx>, Response> {
    let (key, _) = authenticate(app, guard, headers)?;
    if !plausible_itx_id(id) {
        return Err(not_found());
    }
    match app.itx.get(id, &key.sha256) {
        Lookup::Open(t) => Ok(t),
        Lookup::Closed(c) => Err(closed_error(c, operation)),
        Lookup::Unknown => Err(not_found()),
    }
}

fn expired_now(itx: &Itx) -> Closed {
    Closed::Expired { timeout_ms: itx.timeout.as_millis() as u64, started: itx.started }
}

async fn itx_query(State(app): State<Arc<App>>, guard: Guard, uri: axum::http::Uri, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    let body = match forward::divert(&app, &uri, &headers, &id, body).await {
        Ok(r) => return r,
        Err(body) => body,
    };
    // Never cached inside a transaction: it may see its own uncommitted writes.
    if matches!(cache::strategy_from(app.cache.config(), &headers), Ok(Some(_))) {
        app.cache.metrics().bypass(Bypass::Transaction);
    }
    let r = super::detached(&app, itx_query_inner(app.clone(), guard, headers, id, body)).await;
    cache::with_status(r, Status::None, None)
}

async fn itx_query_run(app: Arc<App>, guard: Guard, headers: HeaderMap, id: String, body: Body, meter: &mut RequestMeter) -> Response {
    let itx = match lookup(&app, &guard, &headers, &id, "query") {
        Ok(t) => t,
        Err(r) => return r,
    };
    meter.attach(&itx.target.db.traffic);
    let body = match read_body(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut guard = itx.conn.lock().await;
    let Some(conn) = guard.as_mut() else {
        drop(guard);
        return match app.itx.get(&id, &itx.key) {
            Lookup::Closed(c) => closed_error(c, "query"),
            _ => closed_error(expired_now(&itx), "query"),
        };
    };
    let now = Instant::now();
    if now >= itx.deadline() {
        drop(guard);
        expire(&app, &itx).await;
        return closed_error(expired_now(&itx), "query");
    }
    let limits = limits(&app);
    let budget = app.config().http.prisma_query_timeout.min(itx.deadline() - now);
    let ctx = QueryContext { in_transaction: true, ..Default::default() };
    let mut exec = PgExecutor::new(conn, limits.max_response_bytes);
    exec.track_writes = app.cache.config().invalidate_on_write;
    let r = tokio::time::timeout(budget, tidepool_prisma::handle_query(&mut exec, &body, &ctx, &limits)).await;
    if !exec.writes.is_empty() {
        let mut seen = itx.writes.lock();
        for t in &exec.writes {
            if !seen.contains(t) {
                seen.push(t.clone());
            }
        }
    }
    app.cache.written(&itx.target.db.config.name, std::mem::take(&mut exec.writes));
    let too_large_hit = exec.too_large;
    match r {
        Ok(_) if too_large_hit => too_large(limits.max_response_bytes),
        Ok(resp) => from_interp(resp),
        Err(_) => {
            if let Some(c) = guard.take() {
                crate::checkin::cancel_and_discard(c);
            }
            drop(guard);
            let how = if Instant::now() >= itx.deadline() { expired_now(&itx) } else { Closed::RolledBack };
            app.itx.close(&itx, how);
            timed_out(budget)
        }
    }
}

async fn end_run(app: Arc<App>, guard: Guard, headers: HeaderMap, id: String, commit: bool, meter: &mut RequestMeter) -> Response {
    let operation = if commit { "commit" } else { "rollback" };
    let itx = match lookup(&app, &guard, &headers, &id, operation) {
        Ok(t) => t,
        Err(r) => return r,
    };
    meter.attach(&itx.target.db.traffic);
    let conn = itx.conn.lock().await.take();
    let Some(mut conn) = conn else {
        return match app.itx.get(&id, &itx.key) {
            Lookup::Closed(c) => closed_error(c, operation),
            _ => closed_error(expired_now(&itx), operation),
        };
    };
    if Instant::now() >= itx.deadline() {
        let _ = conn.simple("ROLLBACK").await;
        lease::finish(conn).await;
        let how = expired_now(&itx);
        app.itx.close(&itx, how);
        return closed_error(how, operation);
    }
    let r = conn.simple(if commit { "COMMIT" } else { "ROLLBACK" }).await;
    lease::finish(conn).await;
    app.itx.close(&itx, if commit && r.is_ok() { Closed::Committed } else { Closed::RolledBack });
    if commit && r.is_ok() {
        // Entries read between a write and this commit still hold the old rows.
        app.cache.written(&itx.target.db.config.name, std::mem::take(&mut *itx.writes.lock()));
    }
    match r {
        Ok(()) => json_response(200, "{}"),
        Err(crate::upstream::UpstreamError::Db(f)) if f.code() == "40001" || f.code() == "40P01" => {
            error(400, "P2034", "Transaction failed due to a write conflict or a deadlock. Please retry your transaction", json!({}))
        }
        Err(crate::upstream::UpstreamError::Db(f)) => error(400, "P2028", format!("Transaction API error: {}", f.message()), json!({})),
        Err(e) => error(500, "P6000", format!("{operation} failed: {e}"), json!({})),
    }
}

async fn commit(State(app): State<Arc<App>>, guard: Guard, uri: axum::http::Uri, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    if let Ok(r) = forward::divert(&app, &uri, &headers, &id, body).await {
        return r;
    }
    super::detached(&app, end(app.clone(), guard, headers, id, true)).await
}

async fn rollback(State(app): State<Arc<App>>, guard: Guard, uri: axum::http::Uri, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    if let Ok(r) = forward::divert(&app, &uri, &headers, &id, body).await {
        return r;
    }
    super::detached(&app, end(app.clone(), guard, headers, id, false)).await
}
