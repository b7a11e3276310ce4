//! Prisma 5/6 clients (the "DataProxy" protocol of `@prisma/client` with Accelerate) served
//! unchanged. Routes under `/{clientVersion}/{schemaHash}/`: `POST graphql` (one JSON-protocol
//! query or a `batch`), `PUT schema` (base64 upload, triggered by our `EngineNotStarted` reply),
//! `POST transaction/start` (answers an absolute itx endpoint), and `POST itx/{id}/graphql|commit|
//! rollback`. Requests are compiled to Prisma 7 plans by Prisma's own query compiler running
//! in-process ([`state`], crate `tidepool-qc`) and then run through the Prisma 7 routes in-process
//! (same auth, pool, cache, ITX registry); [`reply`] reshapes the answers as 5.x engines sent them.

mod batch;
mod reply;
mod state;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tidepool_qc::JobKind;
use tidepool_qc::J;

use self::batch::{isolation, BatchRun};
pub use self::state::DataProxy;
use self::state::{CompileFailure, Schema};
use super::prisma::{self, authenticate, Guard};
use super::BodyError;
use crate::app::App;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/{version}/{hash}/graphql", post(graphql))
        .route("/{version}/{hash}/schema", put(schema))
        .route("/{version}/{hash}/transaction/start", post(tx_start))
        .route("/{version}/{hash}/itx/{id}/graphql", post(itx_graphql))
        .route("/{version}/{hash}/itx/{id}/commit", post(itx_commit))
        .route("/{version}/{hash}/itx/{id}/rollback", post(itx_rollback))
}

/// What an in-process Prisma 7 call produced.
enum Outcome {
    /// The JSON text of the answer's `data` (spliced into the 5.x reply, not re-encoded).
    Data(Bytes, HeaderMap),
    Error {
        code: Option<String>,
        message: String,
        meta: Value,
    },
    Service(Response),
}

/// Calls a Prisma 7 route in-process (its handler directly, no router) with the client's
/// credentials and cache headers.
async fn internal(app: &Arc<App>, guard: &Guard, headers: &HeaderMap, path: &str, body: Vec<u8>) -> (StatusCode, HeaderMap, Bytes) {
    let Some(route) = prisma::Internal::from_path(path) else {
        return (StatusCode::NOT_FOUND, HeaderMap::new(), Bytes::new());
    };
    let mut h = HeaderMap::new();
    for name in [header::AUTHORIZATION.as_str(), "cache-control", "accelerate-cache-tags"] {
        if let Some(v) = headers.get(name) {
            h.insert(header::HeaderName::from_static(name), v.clone());
        }
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let resp = route.call(app.clone(), guard.clone(), h, Body::from(body)).await;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    (parts.status, parts.headers, bytes)
}

fn outcome((status, headers, bytes): (StatusCode, HeaderMap, Bytes)) -> Outcome {
    if status == StatusCode::OK {
        // The interpreter (and the cache) answer exactly `{"data":…}`.
        let data = match bytes.strip_prefix(b"{\"data\":").and_then(|b| b.strip_suffix(b"}")) {
            Some(inner) => bytes.slice_ref(inner),
            None => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(mut m)) => Bytes::from(m.remove("data").unwrap_or(Value::Null).to_string()),
                _ => Bytes::from_static(b"null"),
            },
        };
        return Outcome::Data(data, headers);
    }
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = v.get("code").and_then(Value::as_str).map(str::to_owned);
    let message = v.get("error").and_then(Value::as_str).unwrap_or("request failed").to_owned();
    match code {
        Some(c) if c.starts_with("P2") => Outcome::Error { code: Some(c), message, meta: v.get("meta").cloned().unwrap_or(Value::Null) },
        c => Outcome::Service(reply::service_error(status, c.as_deref().unwrap_or("P6000"), &message)),
    }
}

fn compile_failed(f: CompileFailure, model: Option<&str>) -> Response {
    match f {
        CompileFailure::Unavailable(msg) => reply::startup_error(format!("the query compiler is unavailable: {msg}")),
        CompileFailure::Busy => reply::service_error(StatusCode::TOO_MANY_REQUESTS, "P5008", "The query compiler is busy; retry later."),
        CompileFailure::Compile(tidepool_qc::CompileError::Rejected { message, code, meta }) => {
            let e = reply::error_entry(code.as_deref(), &message, meta.unwrap_or(Value::Null), model, None);
            reply::json(StatusCode::OK, &json!({"errors": [e]}))
        }
        CompileFailure::Compile(e) => {
            tracing::warn!(error = %e, "query compiler failure");
            reply::service_error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", &e.to_string())
        }
    }
}

/// Authenticates and finds the schema: (database, schema) or the finished reply.
#[allow(clippy::result_large_err)] // the error is the handler's finished response
fn scope(app: &App, guard: &Guard, headers: &HeaderMap, hash: &str) -> Result<(String, Schema), Response> {
    let (_key, target) = authenticate(app, guard, headers)?;
    let db = target.db.config.name.to_string();
    match app.dataproxy.schema(&db, hash) {
        Some(s) => Ok((db, s)),
        None => Err(reply::schema_missing()),
    }
}

async fn read(body: Body, max: usize) -> Result<Bytes, Response> {
    super::read_limited(body, max).await.map_err(|e| match e {
        BodyError::TooLarge => reply::invalid_request(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body exceeds {max} bytes")),
        BodyError::Timeout => reply::invalid_request(StatusCode::REQUEST_TIMEOUT, "the request body was not received in time"),
        BodyError::Broken => reply::invalid_request(StatusCode::BAD_REQUEST, "the request body could not be read"),
    })
}

async fn graphql(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, hash)): Path<(String, String)>, body: Body) -> Response {
    run(app, guard, headers, hash, None, body).await.unwrap_or_else(|r| r)
}

async fn itx_graphql(
    State(app): State<Arc<App>>,
    guard: Guard,
    headers: HeaderMap,
    Path((_v, hash, id)): Path<(String, String, String)>,
    body: Body,
) -> Response {
    run(app, guard, headers, hash, Some(id), body).await.unwrap_or_else(|r| r)
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The interpreter's request; `plan` is JSON text (a cached plan is spliced in, not re-encoded).
fn plan_body(model: Option<&str>, action: &str, plan: &str, params: &Map<String, Value>) -> Vec<u8> {
    let head = serde_json::to_string(&json!({"model": model, "operation": action})).unwrap_or_default();
    let params = serde_json::to_string(params).unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + plan.len() + params.len() + 20);
    out.extend_from_slice(&head.as_bytes()[..head.len().saturating_sub(1)]);
    out.extend_from_slice(b",\"plan\":");
    out.extend_from_slice(plan.as_bytes());
    out.extend_from_slice(b",\"params\":");
    out.extend_from_slice(params.as_bytes());
    out.push(b'}');
    out
}

async fn run(app: Arc<App>, guard: Guard, headers: HeaderMap, hash: String, itx: Option<String>, body: Body) -> Result<Response, Response> {
    let (db, schema) = scope(&app, &guard, &headers, &hash)?;
    let body = read(body, app.config().http.max_request_size).await?;
    let request: J = serde_json::from_slice(&body).map_err(|e| reply::invalid_request(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    // By shape: literals become parameters, so the plan is compiled once per shape.
    let (text, params) = match schema.graph.as_deref().and_then(|g| tidepool_qc::parameterize(g, &request)) {
        Some(p) => (Bytes::from(p.request), p.params),
        None => (body.clone(), Map::new()),
    };
    let schema = schema.text;
    let config = app.config();
    let cfg = &config.dataproxy;
    let query_path = match &itx {
        Some(id) => format!("/transaction/{id}/query"),
        None => "/query".to_owned(),
    };
    if let Some(batch) = request.get("batch") {
        let items = match batch.to_value() {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        let compiled = app.dataproxy.compile(cfg, &db, &hash, schema, JobKind::CompileBatch, &text).await.map_err(|f| compile_failed(f, None))?;
        let tx = request.get("transaction").map(J::to_value).filter(|t| t.is_object());
        let run = BatchRun { app: &app, guard: &guard, headers: &headers, query_path: &query_path, in_itx: itx.is_some(), params: &params };
        return Ok(run.batch(tx, &items, &compiled.tree).await);
    }
    let model = request.get("modelName").and_then(J::as_str);
    let action = request.get("action").and_then(J::as_str).unwrap_or("");
    let plan = app.dataproxy.compile(cfg, &db, &hash, schema, JobKind::Compile, &text).await.map_err(|f| compile_failed(f, model))?;
    let key = reply::data_key(action, model);
    Ok(match outcome(internal(&app, &guard, &headers, &query_path, plan_body(model, action, &plan.text, &params)).await) {
        Outcome::Data(x, h) => {
            let mut r = reply::data(&key, &x);
            for (name, v) in h.iter() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    r.headers_mut().insert(name.clone(), v.clone());
                }
            }
            r
        }
        Outcome::Error { code, message, meta } => {
            reply::json(StatusCode::OK, &json!({"errors": [reply::error_entry(code.as_deref(), &message, meta, model, None)]}))
        }
        Outcome::Service(r) => r,
    })
}

/// `PUT …/schema`: the base64 schema text, whose sha256 (of the base64) must be the path's hash.
async fn schema(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, hash)): Path<(String, String)>, body: Body) -> Response {
    let (_key, target) = match authenticate(&app, &guard, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let config = app.config();
    let cfg = &config.dataproxy;
    let body = match read(body, cfg.max_schema_size).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b64: &[u8] = body.trim_ascii();
    if hex::encode(Sha256::digest(b64)) != hash {
        return reply::invalid_request(StatusCode::BAD_REQUEST, "the schema does not match the schema hash of the URL");
    }
    let text = match base64::engine::general_purpose::STANDARD.decode(b64).ok().and_then(|t| String::from_utf8(t).ok()) {
        Some(t) => t,
        None => return reply::invalid_request(StatusCode::BAD_REQUEST, "the schema is not base64-encoded UTF-8 text"),
    };
    let db = target.db.config.name.to_string();
    let text: Arc<str> = text.into();
    // Build the compiler now: a schema it cannot load is refused here, not on every query.
    match app.dataproxy.compile(cfg, &db, &hash, text.clone(), JobKind::Load, b"").await {
        Ok(_) => {}
        Err(CompileFailure::Compile(e)) => {
            return reply::json(StatusCode::BAD_REQUEST, &json!({"EngineStartupError": {"msg": format!("the schema could not be loaded: {e}"), "logs": []}}))
        }
        Err(f) => return compile_failed(f, None),
    }
    // A re-upload of a schema still held keeps its graph: the DMMF is built once per schema.
    let graph = match app.dataproxy.schema(&db, &hash).and_then(|s| s.graph) {
        Some(g) => Some(g),
        None => app.dataproxy.graph(cfg, text.clone()).await,
    };
    app.dataproxy.insert_schema(cfg, &db, &hash, Schema { text, graph });
    reply::json(StatusCode::OK, &json!({}))
}

/// `POST …/transaction/start` → `{"id", "data-proxy": {"endpoint": "<absolute itx URL>"}}`.
async fn tx_start(
    State(app): State<Arc<App>>,
    guard: Guard,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((version, hash)): Path<(String, String)>,
    body: Body,
) -> Response {
    if let Err(r) = authenticate(&app, &guard, &headers) {
        return r;
    }
    let body = match read(body, app.config().http.max_request_size).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let opts: Value = if body.trim_ascii().is_empty() { json!({}) } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    if !opts.is_object() {
        return reply::invalid_request(StatusCode::BAD_REQUEST, "the transaction options are not a JSON object");
    }
    let mut p7 = serde_json::Map::new();
    for (from, to) in [("max_wait", "maxWait"), ("timeout", "timeout")] {
        if let Some(v) = opts.get(from).filter(|v| v.is_u64()) {
            p7.insert(to.into(), v.clone());
        }
    }
    if let Some(level) = str_field(&opts, "isolation_level") {
        p7.insert("isolationLevel".into(), isolation(level).into());
    }
    let (status, h, bytes) = internal(&app, &guard, &headers, "/transaction/start", Value::Object(p7).to_string().into_bytes()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match (status, str_field(&v, "id")) {
        (StatusCode::OK, Some(id)) => {
            let scheme = if app.config().http.tls_cert.is_some() { "https" } else { "http" };
            // HTTP/1.1 `Host`, else the HTTP/2 `:authority`.
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str())).unwrap_or("localhost");
            let endpoint = format!("{scheme}://{host}/{version}/{hash}/itx/{id}");
            reply::json(StatusCode::OK, &json!({"id": id, "data-proxy": {"endpoint": endpoint}}))
        }
        _ => match outcome((status, h, bytes)) {
            Outcome::Error { code, message, .. } => reply::service_error(status, code.as_deref().unwrap_or("P2028"), &message),
            Outcome::Service(r) => r,
            Outcome::Data(..) => reply::service_error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", "could not start the transaction"),
        },
    }
}

async fn itx_end(app: Arc<App>, guard: Guard, headers: HeaderMap, id: String, commit: bool) -> Response {
    let path = format!("/transaction/{id}/{}", if commit { "commit" } else { "rollback" });
    let (status, h, bytes) = internal(&app, &guard, &headers, &path, Vec::new()).await;
    if status == StatusCode::OK {
        return reply::json(StatusCode::OK, &json!({}));
    }
    match outcome((status, h, bytes)) {
        Outcome::Error { code, message, .. } => reply::service_error(status, code.as_deref().unwrap_or("P2028"), &message),
        Outcome::Service(r) => r,
        Outcome::Data(..) => reply::json(StatusCode::OK, &json!({})),
    }
}

async fn itx_commit(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, _h, id)): Path<(String, String, String)>) -> Response {
    itx_end(app, guard, headers, id, true).await
}

async fn itx_rollback(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, _h, id)): Path<(String, String, String)>) -> Response {
    itx_end(app, guard, headers, id, false).await
}
